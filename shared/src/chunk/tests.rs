use super::sample::{Lcg, english_sentences, japanese_sentences};
use super::*;
use crate::extract::{Block, ExtractedPage, extract_html};

fn tok() -> Tokenizer {
    Tokenizer::o200k()
}

fn block(path: &[&str], text: &str) -> Block {
    Block {
        heading_path: path.iter().map(|s| s.to_string()).collect(),
        text: text.to_owned(),
    }
}

fn page(blocks: Vec<Block>) -> ExtractedPage {
    ExtractedPage {
        title: "t".into(),
        lang: None,
        blocks,
    }
}

/// Checks the invariants every chunking must satisfy and returns the chunks of each section.
fn check_invariants(chunks: &[Chunk], opts: ChunkOptions) {
    let opts = opts.normalised();
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.ordinal, i);
        assert!(!c.text.is_empty());
        assert_eq!(c.text, c.text.trim());
        assert_eq!(c.token_count, tok().count(&c.text), "chunk {i} token count");
        assert!(
            c.token_count <= opts.max_tokens,
            "chunk {i} has {} > max {}",
            c.token_count,
            opts.max_tokens
        );
    }
}

/// Rebuilds a section's text from its chunks: each chunk after the first must start with a non-empty
/// suffix of its predecessor (the overlap); the rest is appended. Returns the rebuilt text with
/// whitespace removed, and asserts overlaps exist when `expect_overlap`.
fn rebuild(chunks: &[&Chunk], original: &str, expect_overlap: bool) -> String {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let target = squash(original);
    let mut rebuilt = squash(&chunks[0].text);
    for pair in chunks.windows(2) {
        let (prev, next) = (squash(&pair[0].text), squash(&pair[1].text));
        // The overlap is the k for which the prefix of `next` ends `prev` and the remainder continues the
        // original text (the second condition disambiguates accidental repeats).
        let k = (0..=next.len().min(prev.len()))
            .rev()
            .filter(|&k| next.is_char_boundary(k) && prev.ends_with(&next[..k]))
            .find(|&k| target[rebuilt.len()..].starts_with(&next[k..]))
            .unwrap_or_else(|| panic!("chunk does not continue the text: {:?}", pair[1].text));
        if expect_overlap {
            assert!(
                k > 0,
                "no overlap between {:?} and {:?}",
                pair[0].text,
                pair[1].text
            );
        }
        rebuilt.push_str(&next[k..]);
    }
    // Not assert_eq!: the texts are long.
    assert!(
        rebuilt == target,
        "rebuilt text differs: {} vs {} bytes",
        rebuilt.len(),
        target.len()
    );
    rebuilt
}

#[test]
fn token_counts_match_o200k_base() {
    // Reference counts from OpenAI's tiktoken (Python) with the same o200k_base ranks.
    for (text, expected) in [
        ("hello world", 2),
        ("Hello, world!", 4),
        ("", 0),
        ("The quick brown fox jumps over the lazy dog.", 10),
        ("株式会社さくら製作所の営業時間は平日9:00〜18:00です。", 20),
        ("영업시간은 평일 오전 9시부터 오후 6시까지입니다.", 18),
        ("  leading and trailing  \n\n", 5),
        // Special-token markers in page text are ordinary text.
        ("<|endoftext|>", 7),
        ("café naïve e\u{301}", 6),
    ] {
        assert_eq!(tok().count(text), expected, "{text:?}");
    }
}

#[test]
fn pathological_input_does_not_panic() {
    for text in [
        "^".repeat(300_000),
        " ".repeat(300_000),
        "\n".repeat(300_000),
        "a".repeat(300_000),
        "日".repeat(100_000),
        "1".repeat(300_000),
    ] {
        let n = tok().count(&text);
        assert!(n > 0);
        let chunks = chunk_page(&page(vec![block(&[], &text)]), ChunkOptions::default());
        check_invariants(&chunks, ChunkOptions::default());
    }
}

#[test]
fn chunks_respect_target_and_max() {
    let sentences = english_sentences(300, 7);
    let text = sentences.join(" ");
    let opts = ChunkOptions::default();
    let chunks = chunk_page(&page(vec![block(&["Guide"], &text)]), opts);
    check_invariants(&chunks, opts);
    assert!(chunks.len() > 5);
    let (last, full) = chunks.split_last().unwrap();
    for c in full {
        // Packed up to the target (exact counts differ from the packing estimate by a few join tokens),
        // and never left half-empty: the next sentence would not have fitted.
        assert!(
            c.token_count <= opts.target_tokens + 8,
            "{} tokens",
            c.token_count
        );
        assert!(
            c.token_count >= opts.target_tokens - 60,
            "{} tokens",
            c.token_count
        );
        // Sentence boundaries: every chunk ends at the end of a sentence.
        assert!(c.text.ends_with('.'));
    }
    assert!(last.token_count <= opts.target_tokens + 8);
    rebuild(&chunks.iter().collect::<Vec<_>>(), &text, true);
}

#[test]
fn sections_are_never_mixed() {
    let a = english_sentences(60, 1)
        .join(" ")
        .replace("Sentence", "Alpha");
    let b = "Short section.".to_string();
    let c = english_sentences(60, 3)
        .join(" ")
        .replace("Sentence", "Gamma");
    let blocks = vec![
        block(&["A"], &a),
        block(&["A", "B"], &b),
        block(&["C"], &c[..c.len() / 2]),
        block(&["C"], &c[c.len() / 2..]),
    ];
    let chunks = chunk_page(&page(blocks), ChunkOptions::default());
    check_invariants(&chunks, ChunkOptions::default());
    let paths: Vec<String> = chunks.iter().map(|c| c.heading_path.join(">")).collect();
    let mut dedup = paths.clone();
    dedup.dedup();
    assert_eq!(dedup, ["A", "A>B", "C"]);
    for c in &chunks {
        let marker = match c.heading_path.join(">").as_str() {
            "A" => "Alpha",
            "A>B" => "Short section.",
            _ => "Gamma",
        };
        assert!(c.text.contains(marker));
        for other in ["Alpha", "Short section.", "Gamma"]
            .into_iter()
            .filter(|m| *m != marker)
        {
            assert!(
                !c.text.contains(other),
                "{other} leaked into section {:?}",
                c.heading_path
            );
        }
    }
    // The first chunk of a section carries no overlap from the previous section.
    let first_c = chunks.iter().find(|c| c.heading_path == ["C"]).unwrap();
    assert!(first_c.text.starts_with("Gamma 0 "));
    // Two blocks of one section are packed together, separated by a blank line.
    assert!(
        chunks
            .iter()
            .any(|c| c.heading_path == ["C"] && c.text.contains("\n\n"))
    );
}

#[test]
fn long_japanese_paragraph_splits_at_full_stops() {
    let sentences = japanese_sentences(400, 11);
    let text: String = sentences.concat();
    let opts = ChunkOptions::default();
    let chunks = chunk_page(&page(vec![block(&["会社概要"], &text)]), opts);
    check_invariants(&chunks, opts);
    assert!(chunks.len() > 5);
    for c in &chunks {
        assert!(c.text.ends_with('。'), "{:?}", c.text);
        // Every chunk, overlap included, is made of whole sentences.
        let mut rest = c.text.as_str();
        while !rest.is_empty() {
            let s = sentences
                .iter()
                .find(|s| rest.starts_with(s.as_str()))
                .unwrap_or_else(|| panic!("{rest:?}"));
            rest = &rest[s.len()..];
        }
    }
    rebuild(&chunks.iter().collect::<Vec<_>>(), &text, true);
}

#[test]
fn enormous_sentence_without_punctuation_is_cut_on_tokens() {
    let pool: Vec<char> =
        "東京大阪名古屋営業時間製品案内会社概要採用情報お問い合わせアクセス駐車場予約受付"
            .chars()
            .collect();
    let mut rng = Lcg(5);
    let text: String = (0..30_000).map(|_| pool[rng.next(pool.len())]).collect();
    let opts = ChunkOptions::default();
    let chunks = chunk_page(&page(vec![block(&[], &text)]), opts);
    check_invariants(&chunks, opts);
    assert!(chunks.len() > 20);
    for c in &chunks {
        assert!(
            text.contains(&c.text),
            "every chunk is a verbatim piece of the text"
        );
        assert!(!c.text.contains('\u{FFFD}'));
    }
    rebuild(&chunks.iter().collect::<Vec<_>>(), &text, true);

    // The same with spaces but no punctuation: chunks start on words.
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let text: Vec<&str> = (0..20_000).map(|_| words[rng.next(words.len())]).collect();
    let text = text.join(" ");
    let chunks = chunk_page(&page(vec![block(&[], &text)]), opts);
    check_invariants(&chunks, opts);
    for c in &chunks {
        let first = c.text.split(' ').next().unwrap();
        assert!(words.contains(&first), "chunk starts mid-word: {first:?}");
    }
    rebuild(&chunks.iter().collect::<Vec<_>>(), &text, true);
}

#[test]
fn cuts_never_split_combining_sequences() {
    // Decomposed "é" (e + U+0301), "が" (か + U+3099) and Korean jamo, in random order with no break
    // opportunity.
    let graphemes = [
        "e\u{301}",
        "か\u{3099}",
        "\u{1100}\u{1161}\u{11A8}",
        "a",
        "日",
        "n\u{303}\u{323}",
    ];
    let mut rng = Lcg(17);
    let text: String = (0..12_000)
        .map(|_| graphemes[rng.next(graphemes.len())])
        .collect();
    let opts = ChunkOptions {
        target_tokens: 100,
        max_tokens: 120,
        overlap_tokens: 20,
    };
    let chunks = chunk_page(&page(vec![block(&[], &text)]), opts);
    check_invariants(&chunks, opts);
    assert!(chunks.len() > 10);
    for c in &chunks {
        let first = c.text.chars().next().unwrap();
        assert!(
            !matches!(
                first,
                '\u{301}' | '\u{3099}' | '\u{303}' | '\u{323}' | '\u{1161}' | '\u{11A8}'
            ),
            "chunk starts inside a grapheme: {first:?}"
        );
    }
    rebuild(&chunks.iter().collect::<Vec<_>>(), &text, true);
}

#[test]
fn overlap_repeats_the_end_of_the_previous_chunk() {
    let sentences = english_sentences(200, 3);
    let text = sentences.join(" ");
    let opts = ChunkOptions::default();
    let chunks = chunk_page(&page(vec![block(&[], &text)]), opts);
    assert!(chunks.len() > 3);
    for pair in chunks.windows(2) {
        // Overlap = whole trailing sentences of the previous chunk, up to ~overlap_tokens.
        let first_sentence_of_next = sentences
            .iter()
            .find(|s| pair[1].text.starts_with(s.as_str()))
            .unwrap();
        let at = pair[0]
            .text
            .find(first_sentence_of_next.as_str())
            .expect("next chunk starts inside the previous one");
        let overlap = &pair[0].text[at..];
        let n = tok().count(overlap);
        assert!(n > 0 && n <= opts.overlap_tokens, "overlap of {n} tokens");
        assert!(pair[1].text.starts_with(overlap));
    }
    // No overlap when disabled.
    let chunks = chunk_page(
        &page(vec![block(&[], &text)]),
        ChunkOptions {
            overlap_tokens: 0,
            ..opts
        },
    );
    let joined = chunks
        .iter()
        .map(|c| c.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(joined, text);
}

#[test]
fn long_sentence_overlap_falls_back_to_a_token_tail() {
    // Sentences of ~200 tokens: no whole sentence fits in 50 overlap tokens.
    let sentences: Vec<String> = english_sentences(400, 9)
        .chunks(12)
        .map(|g| g.join(" ").replace('.', ",") + ".")
        .collect();
    let text = sentences.join(" ");
    let opts = ChunkOptions::default();
    let chunks = chunk_page(&page(vec![block(&[], &text)]), opts);
    check_invariants(&chunks, opts);
    rebuild(&chunks.iter().collect::<Vec<_>>(), &text, true);
}

#[test]
fn small_options_are_normalised_and_respected() {
    let text = english_sentences(50, 2).join(" ");
    for opts in [
        ChunkOptions {
            target_tokens: 0,
            max_tokens: 0,
            overlap_tokens: 100,
        },
        ChunkOptions {
            target_tokens: 40,
            max_tokens: 40,
            overlap_tokens: 40,
        },
        ChunkOptions {
            target_tokens: 1000,
            max_tokens: 30,
            overlap_tokens: 5,
        },
    ] {
        let chunks = chunk_page(&page(vec![block(&["x"], &text)]), opts);
        check_invariants(&chunks, opts);
        rebuild(&chunks.iter().collect::<Vec<_>>(), &text, false);
    }
    assert_eq!(
        ChunkOptions {
            target_tokens: 0,
            max_tokens: 0,
            overlap_tokens: 100
        }
        .normalised(),
        ChunkOptions {
            target_tokens: 1,
            max_tokens: ChunkOptions::MIN_MAX_TOKENS,
            overlap_tokens: 0
        }
    );
}

#[test]
fn empty_and_blank_blocks_yield_no_chunks() {
    assert!(chunk_page(&ExtractedPage::default(), ChunkOptions::default()).is_empty());
    assert!(
        chunk_page(
            &page(vec![block(&["a"], "  \n "), block(&[], "")]),
            ChunkOptions::default()
        )
        .is_empty()
    );
}

#[test]
fn extracted_page_chunks_end_to_end() {
    let html = r#"<html lang="ja"><body><main>
        <h1>会社概要</h1><p>当社は1950年に創業しました。</p>
        <h2>営業時間</h2><p>平日9:00〜18:00です。</p><p>土日祝は休業です。</p>
        <h2>アクセス</h2><p>東京駅から徒歩5分です。</p>
    </main></body></html>"#;
    let chunks = chunk_page(&extract_html(html), ChunkOptions::default());
    let got: Vec<(String, &str)> = chunks
        .iter()
        .map(|c| (c.heading_path.join(" > "), c.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("会社概要".to_string(), "当社は1950年に創業しました。"),
            (
                "会社概要 > 営業時間".to_string(),
                "平日9:00〜18:00です。\n\n土日祝は休業です。"
            ),
            ("会社概要 > アクセス".to_string(), "東京駅から徒歩5分です。"),
        ]
    );
}

#[test]
fn chunking_is_deterministic() {
    let text = format!(
        "{}\n{}",
        english_sentences(100, 4).join(" "),
        japanese_sentences(100, 4).concat()
    );
    let p = page(vec![block(&["a"], &text), block(&["b"], &text)]);
    assert_eq!(
        chunk_page(&p, ChunkOptions::default()),
        chunk_page(&p, ChunkOptions::default())
    );
}

#[test]
fn content_hash_is_sha256_of_normalised_text() {
    assert_eq!(
        content_hash("hello world"),
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
    assert_eq!(
        content_hash("  hello \n\t world\u{3000}"),
        content_hash("hello world")
    );
    assert_ne!(content_hash("hello world"), content_hash("hello  worlds"));
    assert_eq!(
        content_hash(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}
