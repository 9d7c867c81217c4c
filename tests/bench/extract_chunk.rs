//! Extraction and chunking throughput on a 1 MiB bilingual page (English and Japanese paragraphs under
//! h2 sections, the shape of a long product or FAQ page).
//!
//!   cargo run -p kotoba-tests --example extract_chunk_bench [-- ROUNDS]
//!   cargo run -p kotoba-tests --profile perf --example extract_chunk_bench -- 10
//!
//! Prints one line per round and the best round (the least disturbed by other work on the machine).

use std::time::{Duration, Instant};

use shared::chunk::sample::{english_sentences, japanese_sentences};
use shared::chunk::{ChunkOptions, chunk_page};
use shared::extract::extract_html;

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
