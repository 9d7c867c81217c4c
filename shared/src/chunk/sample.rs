//! Deterministic sample text for chunking tests and benchmarks: English and Japanese sentences from a
//! fixed word list and a seeded generator, so the same seed gives the same text on every run.

/// Deterministic pseudo-random numbers (tests must not depend on a RNG crate's stream).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

pub fn english_sentences(count: usize, seed: u64) -> Vec<String> {
    let words = [
        "bread",
        "harbour",
        "morning",
        "oven",
        "flour",
        "customer",
        "delivery",
        "order",
        "fresh",
        "weekend",
        "bakery",
        "sourdough",
        "rye",
        "butter",
        "coffee",
        "table",
        "window",
        "street",
        "market",
        "price",
    ];
    let mut rng = Lcg(seed);
    (0..count)
        .map(|i| {
            let len = 6 + rng.next(14);
            let body: Vec<&str> = (0..len).map(|_| words[rng.next(words.len())]).collect();
            format!("Sentence {i} says the {}.", body.join(" "))
        })
        .collect()
}

pub fn japanese_sentences(count: usize, seed: u64) -> Vec<String> {
    let phrases = [
        "当社の",
        "営業時間は",
        "平日",
        "午前九時から",
        "午後六時まで",
        "となっております",
        "駐車場は",
        "ございません",
        "最寄り駅から",
        "徒歩五分",
        "製品の",
        "お問い合わせは",
        "担当者まで",
        "ご連絡ください",
    ];
    let mut rng = Lcg(seed);
    (0..count)
        .map(|i| {
            let len = 4 + rng.next(8);
            let body: String = (0..len).map(|_| phrases[rng.next(phrases.len())]).collect();
            format!("第{i}項{body}。")
        })
        .collect()
}
