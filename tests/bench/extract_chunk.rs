//! Extraction and chunking throughput on a 1 MiB bilingual page (English and Japanese paragraphs under
//! h2 sections, the shape of a long product or FAQ page).
//!
//!   cargo run -p kotoba-tests --example extract_chunk_bench [-- ROUNDS]
//!   cargo run -p kotoba-tests --profile perf --example extract_chunk_bench -- 10
//!
//! Prints one line per round and the best round (the least disturbed by other work on the machine).

use std::time::{Duration, Instant};

use shared::chunk::{ChunkOptions, chunk_page};
use shared::extract::extract_html;

/// Deterministic pseudo-random numbers (the page is the same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn english_sentences(count: usize, seed: u64) -> Vec<String> {
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

fn japanese_sentences(count: usize, seed: u64) -> Vec<String> {
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

fn megabyte_page() -> String {
    let mut html = String::from("<html lang=\"ja\"><body><nav><a href=\"/\">Home</a></nav><main>");
    let mut i = 0;
    while html.len() < 1 << 20 {
        html.push_str(&format!("<h2>Section {i}</h2>"));
        for p in 0..6 {
            html.push_str(&format!(
                "<p>{}</p><p>{}</p>",
                english_sentences(4, i * 10 + p).join(" "),
                japanese_sentences(4, i * 10 + p).concat()
            ));
        }
        i += 1;
    }
    html.push_str("</main></body></html>");
    html
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS is a number"))
        .unwrap_or(3);
    let html = megabyte_page();
    let mut best: Option<(Duration, Duration)> = None;
    for round in 1..=rounds.max(1) {
        let t = Instant::now();
        let page = extract_html(&html);
        let extract = t.elapsed();
        let t = Instant::now();
        let chunks = chunk_page(&page, ChunkOptions::default());
        let chunk = t.elapsed();
        let text_bytes: usize = page.blocks.iter().map(|b| b.text.len()).sum();
        let tokens: usize = chunks.iter().map(|c| c.token_count).sum();
        println!(
            "round {round}: html {} KiB -> {} blocks ({} KiB text) extracted in {extract:?}; {} chunks ({tokens} tokens) in {chunk:?}",
            html.len() / 1024,
            page.blocks.len(),
            text_bytes / 1024,
            chunks.len()
        );
        if best.is_none_or(|(e, c)| extract + chunk < e + c) {
            best = Some((extract, chunk));
        }
    }
    if let Some((extract, chunk)) = best {
        let mib = html.len() as f64 / (1 << 20) as f64;
        println!(
            "best: extract {extract:?} ({:.2} MiB/s), chunk {chunk:?} ({:.2} MiB/s of HTML)",
            mib / extract.as_secs_f64(),
            mib / chunk.as_secs_f64()
        );
    }
}
