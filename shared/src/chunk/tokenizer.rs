//! The o200k_base tokenizer (the GPT-4o / GPT-4.1 / GPT-5 / text-embedding family), for measuring chunks.
//!
//! `tiktoken-rs` compiles the BPE ranks into the binary (`include_str!` of its bundled
//! `o200k_base.tiktoken`), so nothing is downloaded at run time. The ranks are parsed once, on first use,
//! and shared by every thread.

use std::sync::LazyLock;

use tiktoken_rs::CoreBPE;

/// Parsed on first use: about 200k ranks, a noticeable fraction of a second, so never per call.
static O200K: LazyLock<Option<CoreBPE>> = LazyLock::new(|| match tiktoken_rs::o200k_base() {
    Ok(bpe) => Some(bpe),
    Err(error) => {
        // Cannot happen with the bundled data; fall back to an upper bound rather than panic.
        tracing::error!(%error, "o200k_base failed to load; counting bytes as tokens");
        None
    }
});

/// Longest piece of text handed to the BPE in one call. The pre-tokenising regex backtracks, and on
/// pathological input (a megabyte of one punctuation mark) exceeds its step limit, which tiktoken-rs
/// turns into a panic; BPE merging is also quadratic in the length of one pre-token. Longer texts are
/// cut where pre-tokens necessarily break (see [`segment_end`]), so counts stay exact for ordinary text.
const SEGMENT_BYTES: usize = 8 * 1024;

/// Counts and splits text in o200k_base tokens. Cheap to copy; all instances share one loaded model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokenizer {
    _private: (),
}

impl Tokenizer {
    /// The shared o200k_base tokenizer (loaded lazily on first count).
    pub fn o200k() -> Self {
        Tokenizer { _private: () }
    }

    /// Number of o200k_base tokens in `text`, special-token markers counted as ordinary text.
    pub fn count(&self, text: &str) -> usize {
        let Some(bpe) = O200K.as_ref() else {
            return text.len();
        };
        segments(text).map(|s| bpe.encode_ordinary(s).len()).sum()
    }

    /// Byte offset in `text` of the end of each token, in order; the last is `text.len()` (for
    /// non-empty text). Offsets may fall inside a UTF-8 character when a token holds part of one, so
    /// callers must check `is_char_boundary` before cutting.
    pub(crate) fn token_ends(&self, text: &str) -> Vec<usize> {
        let Some(bpe) = O200K.as_ref() else {
            return text.char_indices().map(|(i, c)| i + c.len_utf8()).collect();
        };
        let mut ends = Vec::new();
        let mut base = 0usize;
        for seg in segments(text) {
            let mut pos = base;
            for token in bpe.encode_ordinary(seg) {
                match bpe.decode_bytes(&[token]) {
                    Ok(bytes) => pos += bytes.len(),
                    // Unreachable for ranks the encoder just produced; stay consistent anyway.
                    Err(_) => pos = base + seg.len(),
                }
                ends.push(pos.min(base + seg.len()));
            }
            base += seg.len();
        }
        ends.dedup();
        ends
    }
}

/// Splits text into pieces of at most [`SEGMENT_BYTES`] (approximately, see [`segment_end`]).
fn segments(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = segment_end(rest);
        let (seg, tail) = rest.split_at(end);
        rest = tail;
        Some(seg)
    })
}

/// Where to end the first segment of `text`. Prefers a position just before a single ASCII space that
/// follows a non-space character: no o200k pre-token spans such a position (a word, number or
/// punctuation run cannot contain a space, and the following pre-token starts with it), so counting the
/// pieces separately gives exactly the count of the whole. Text without such a position (long runs of
/// CJK without spaces, or pathological repetition) is cut at a character boundary, which may shift the
/// count by a token or two per 8 KiB.
fn segment_end(text: &str) -> usize {
    if text.len() <= SEGMENT_BYTES {
        return text.len();
    }
    let bytes = text.as_bytes();
    let low = SEGMENT_BYTES / 2;
    let mut i = SEGMENT_BYTES;
    while i > low {
        // An ASCII byte is always a character boundary, so slicing at `i` is safe.
        if bytes[i] == b' '
            && text[..i]
                .chars()
                .next_back()
                .is_some_and(|c| !c.is_whitespace())
        {
            return i;
        }
        i -= 1;
    }
    let mut cut = SEGMENT_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segmented_count_equals_whole_text_count() {
        let Some(bpe) = O200K.as_ref() else {
            panic!("o200k_base must load from the bundled data");
        };
        let mut text = String::new();
        for i in 0..600 {
            text.push_str(&format!(
                "Line {i}: the bakery opens at 7am, \"fresh\" bread! 영업시간은 오전 9시부터입니다.  営業時間は平日です。\n"
            ));
        }
        let segs: Vec<&str> = segments(&text).collect();
        assert!(segs.len() > 4);
        assert!(segs.iter().all(|s| s.len() <= SEGMENT_BYTES));
        assert_eq!(segs.concat(), text);
        assert_eq!(
            Tokenizer::o200k().count(&text),
            bpe.encode_ordinary(&text).len()
        );
        let ends = Tokenizer::o200k().token_ends(&text);
        assert_eq!(ends.len(), bpe.encode_ordinary(&text).len());
        assert_eq!(ends.last(), Some(&text.len()));
        assert!(ends.windows(2).all(|w| w[0] < w[1]));
    }
}
