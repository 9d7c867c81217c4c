//! Heading-aware chunking, measured in o200k_base tokens.
//!
//! A page's blocks are grouped into sections (consecutive blocks with the same heading path); a chunk
//! never spans two sections. Inside a section, sentences are packed up to `target_tokens`; a sentence
//! longer than `max_tokens` is cut on token boundaries. Each chunk after the first of its section starts
//! with the last ~`overlap_tokens` of the previous one, cut at a sentence boundary where possible, so a
//! fact straddling a boundary is retrievable from either side. Every emitted chunk is re-counted exactly
//! and never exceeds `max_tokens`.

mod split;
mod tokenizer;

/// Sample text for the chunking tests and the extraction/chunking benchmark (compiled for test binaries).
#[cfg(any(test, feature = "conformance"))]
pub mod sample;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::extract::{Block, ExtractedPage};
use split::{is_safe_cut, sentence_ends, split_by_tokens};
pub use tokenizer::Tokenizer;

/// Chunk sizes, in o200k_base tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkOptions {
    /// Size sentences are packed up to (soft).
    pub target_tokens: usize,
    /// Hard cap on a chunk, overlap included.
    pub max_tokens: usize,
    /// How much of the previous chunk of the same section each chunk repeats.
    pub overlap_tokens: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            target_tokens: 350,
            max_tokens: 500,
            overlap_tokens: 50,
        }
    }
}

impl ChunkOptions {
    /// Smallest accepted `max_tokens`: room for any character (at most 4 tokens) with some text around.
    pub const MIN_MAX_TOKENS: usize = 16;

    /// The options made consistent: `max_tokens >= 16`, `1 <= target_tokens <= max_tokens`,
    /// `overlap_tokens <= target_tokens / 2` (so every chunk brings mostly new text).
    pub fn normalised(self) -> Self {
        let max_tokens = self.max_tokens.max(Self::MIN_MAX_TOKENS);
        let target_tokens = self.target_tokens.clamp(1, max_tokens);
        ChunkOptions {
            target_tokens,
            max_tokens,
            overlap_tokens: self.overlap_tokens.min(target_tokens / 2),
        }
    }
}

/// One retrievable piece of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Headings above the text (stored separately by the index; not part of `text`).
    pub heading_path: Vec<String>,
    /// The chunk text: blocks separated by a blank line, overlap with the previous chunk at the start.
    pub text: String,
    /// Exact o200k_base token count of `text`.
    pub token_count: usize,
    /// Position of the chunk in the page, from 0.
    pub ordinal: usize,
}

/// Splits a page into chunks; see the module docs. Deterministic; never panics.
pub fn chunk_page(page: &ExtractedPage, opts: ChunkOptions) -> Vec<Chunk> {
    let opts = opts.normalised();
    let tok = Tokenizer::o200k();
    let mut chunks = Vec::new();
    for section in sections(&page.blocks) {
        let heading_path = section[0].heading_path.clone();
        let (text, units) = section_units(section, opts, tok);
        for (text, token_count) in pack(&text, &units, opts, tok) {
            chunks.push(Chunk {
                heading_path: heading_path.clone(),
                text,
                token_count,
                ordinal: chunks.len(),
            });
        }
    }
    chunks
}

/// SHA-256 (lower-case hex) of `text` with whitespace normalised (trimmed, every run collapsed to one
/// space), so re-crawls that only reflow whitespace keep their embeddings.
pub fn content_hash(text: &str) -> String {
    let mut hasher = Sha256::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            hasher.update(b" ");
        }
        hasher.update(word.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Separator between blocks inside a chunk.
const BLOCK_SEPARATOR: &str = "\n\n";

/// Sentences longer than this many bytes per allowed token are cut without being counted first:
/// tokenising a huge unbroken run costs quadratic time in the BPE, and no real text averages 8 bytes
/// per token.
const BYTES_PER_TOKEN_CEILING: usize = 8;

/// Maximal runs of consecutive non-empty blocks with equal heading paths.
fn sections(blocks: &[Block]) -> Vec<Vec<&Block>> {
    let mut out: Vec<Vec<&Block>> = Vec::new();
    for block in blocks.iter().filter(|b| !b.text.trim().is_empty()) {
        match out.last_mut() {
            Some(section) if section[0].heading_path == block.heading_path => section.push(block),
            _ => out.push(vec![block]),
        }
    }
    out
}

/// A run of a section's text that is never cut further when packing: a sentence, or a piece of an
/// over-long one. Units tile the section text; their trailing whitespace (and block separator) is part
/// of them.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    /// Tokens of the trimmed unit text.
    tokens: usize,
    /// First unit of a block (joining it to the previous unit costs a separator token).
    starts_block: bool,
}

/// The section text (trimmed blocks joined by a blank line) and its units.
fn section_units(section: Vec<&Block>, opts: ChunkOptions, tok: Tokenizer) -> (String, Vec<Unit>) {
    let piece_limit = opts
        .target_tokens
        .saturating_sub(opts.overlap_tokens)
        .max(1);
    let mut text = String::new();
    let mut units: Vec<Unit> = Vec::new();
    for (i, block) in section.iter().enumerate() {
        let base = text.len();
        let body = block.text.trim();
        text.push_str(body);
        if i + 1 < section.len() {
            text.push_str(BLOCK_SEPARATOR);
        }
        let mut start = base;
        let mut starts_block = true;
        for end in sentence_ends(body) {
            let end = base + end;
            let sentence = &text[start..end];
            let trimmed = sentence.trim();
            let tokens = if trimmed.len() > opts.max_tokens.saturating_mul(BYTES_PER_TOKEN_CEILING)
            {
                None
            } else {
                Some(tok.count(trimmed)).filter(|&n| n <= opts.max_tokens)
            };
            match tokens {
                Some(tokens) => units.push(Unit {
                    start,
                    end,
                    tokens,
                    starts_block,
                }),
                None => {
                    let mut piece_start = start;
                    for piece_end in split_by_tokens(sentence, piece_limit, tok) {
                        let piece_end = start + piece_end;
                        units.push(Unit {
                            start: piece_start,
                            end: piece_end,
                            tokens: tok.count(text[piece_start..piece_end].trim()),
                            starts_block: starts_block && piece_start == start,
                        });
                        piece_start = piece_end;
                    }
                }
            }
            start = end;
            starts_block = false;
        }
        // The block separator belongs to the block's last unit.
        if let Some(last) = units.last_mut() {
            last.end = text.len();
        }
    }
    let units = merge_blank_units(&text, units);
    (text, units)
}

/// Folds units that are only whitespace (a piece cut from a long run of spaces) into their neighbours,
/// so no chunk is empty.
fn merge_blank_units(text: &str, units: Vec<Unit>) -> Vec<Unit> {
    let mut out: Vec<Unit> = Vec::with_capacity(units.len());
    let mut carry: Option<usize> = None;
    for mut unit in units {
        if text[unit.start..unit.end].trim().is_empty() {
            match out.last_mut() {
                Some(prev) => prev.end = unit.end,
                None => carry = Some(carry.unwrap_or(unit.start)),
            }
            continue;
        }
        if let Some(start) = carry.take() {
            unit.start = start;
        }
        out.push(unit);
    }
    out
}

/// Packs a section's units into chunks; returns each chunk's text and exact token count.
fn pack(text: &str, units: &[Unit], opts: ChunkOptions, tok: Tokenizer) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut prev: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < units.len() {
        let overlap =
            prev.and_then(|(a, b)| overlap_start(text, &units[a..b], opts.overlap_tokens, tok));
        let (mut begin, overlap_tokens) = overlap.unwrap_or((units[i].start, 0));
        let mut estimate = overlap_tokens + units[i].tokens;
        let mut j = i + 1;
        while j < units.len() {
            let next = estimate + units[j].tokens + usize::from(units[j].starts_block);
            if next > opts.target_tokens {
                break;
            }
            estimate = next;
            j += 1;
        }
        // Estimates add per-unit counts; the exact count of the joined text can differ by a few tokens
        // at the joins, so verify against the hard cap and give back units (then the overlap) if needed.
        loop {
            let chunk = text[begin..units[j - 1].end].trim();
            let count = tok.count(chunk);
            if count <= opts.max_tokens || (j == i + 1 && begin == units[i].start) {
                out.push((chunk.to_owned(), count));
                break;
            }
            if j > i + 1 {
                j -= 1;
            } else {
                begin = units[i].start;
            }
        }
        prev = Some((i, j));
        i = j;
    }
    out
}

/// Where the next chunk starts inside the previous chunk's new units `prev`, and the overlap's token
/// count: whole trailing sentences totalling at most `overlap` tokens, else the last ~`overlap` tokens of
/// the last sentence starting at a word boundary where there is one.
fn overlap_start(
    text: &str,
    prev: &[Unit],
    overlap: usize,
    tok: Tokenizer,
) -> Option<(usize, usize)> {
    if overlap == 0 || prev.is_empty() {
        return None;
    }
    let mut k = prev.len();
    let mut total = 0;
    while k > 0 && total + prev[k - 1].tokens <= overlap {
        total += prev[k - 1].tokens;
        k -= 1;
    }
    if k < prev.len() {
        return Some((prev[k].start, total));
    }
    let last = prev[prev.len() - 1];
    let body = text[last.start..last.end].trim_end();
    let ends = tok.token_ends(body);
    let first = ends.len().checked_sub(overlap)?;
    let mut cut = if first == 0 { 0 } else { ends[first - 1] };
    // Start on a word where the tail has one (a token boundary may be mid-word), else on a safe cut.
    let tail_start = cut;
    let half = split::floor_boundary(body, tail_start + (body.len() - tail_start) / 2);
    if let Some(space) = body
        .get(tail_start..half)
        .and_then(|t| t.find(char::is_whitespace))
    {
        cut = tail_start + space;
        while let Some(c) = body[cut..].chars().next().filter(|c| c.is_whitespace()) {
            cut += c.len_utf8();
        }
    }
    while cut < body.len() && !is_safe_cut(body, cut) {
        cut += 1;
    }
    if cut == 0 || cut >= body.len() {
        return None;
    }
    let start = last.start + cut;
    Some((start, tok.count(text[start..last.end].trim())))
}
