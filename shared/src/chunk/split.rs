//! Where text may be cut: sentence ends (Latin, Japanese and Korean conventions) and, for sentences too
//! long for one chunk, token boundaries that never split a character or a combining sequence.

use super::tokenizer::Tokenizer;
use crate::extract::text::{is_hangul, is_wide_cjk};

/// Punctuation that ends a sentence wherever it appears (Japanese/Chinese full stops and marks).
fn is_wide_terminal(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '．' | '｡')
}

/// Punctuation that ends a sentence when followed by a space, the end, or CJK text.
fn is_ascii_terminal(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…')
}

/// Closing quotes and brackets that stay with the sentence they close.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\''
            | ')'
            | ']'
            | '}'
            | '」'
            | '』'
            | '）'
            | '】'
            | '〕'
            | '〉'
            | '》'
            | '”'
            | '’'
            | '］'
            | '｝'
            | '〙'
            | '〗'
    )
}

/// Byte offsets just past each sentence of `text`, trailing whitespace included, so consecutive sentences
/// tile the text exactly. The last offset is always `text.len()` (for non-empty text).
///
/// A sentence ends at a newline; after `。！？．`; and after `.`, `!`, `?`, `…` when what follows
/// (past closing quotes/brackets) is whitespace, the end of the text, or CJK/Hangul text (for `.` only
/// when the character before it is CJK/Hangul, so `Co.Ltd.東京` and `3.14` stay whole). Korean sentences
/// end with `.`, `?` or `!` followed by a space, which the rule covers.
pub(crate) fn sentence_ends(text: &str) -> Vec<usize> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let mut ends = Vec::new();
    let mut i = 0;
    while i < n {
        let c = chars[i].1;
        let mut j = i + 1;
        let is_end = if c == '\n' {
            true
        } else if is_wide_terminal(c) || is_ascii_terminal(c) {
            while j < n
                && (is_wide_terminal(chars[j].1)
                    || is_ascii_terminal(chars[j].1)
                    || is_closer(chars[j].1))
            {
                j += 1;
            }
            if is_wide_terminal(c) {
                true
            } else {
                match chars.get(j).map(|&(_, c)| c) {
                    None => true,
                    Some(next) if next.is_whitespace() => true,
                    Some(next) if is_wide_cjk(next) || is_hangul(next) => {
                        c != '.'
                            || i > 0 && (is_wide_cjk(chars[i - 1].1) || is_hangul(chars[i - 1].1))
                    }
                    Some(_) => false,
                }
            }
        } else {
            false
        };
        if !is_end {
            i += 1;
            continue;
        }
        while j < n && chars[j].1.is_whitespace() {
            j += 1;
        }
        ends.push(chars.get(j).map_or(text.len(), |&(pos, _)| pos));
        i = j;
    }
    if !text.is_empty() && ends.last() != Some(&text.len()) {
        ends.push(text.len());
    }
    ends
}

/// Characters that extend the preceding one into a single grapheme (combining marks, the Japanese
/// combining (han)dakuten, variation selectors, emoji modifiers and tags, joiners, Hangul medial/final
/// jamo). Cutting before one would orphan it. A cheap table, not full UAX #29.
fn is_extender(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05BD | 0x0610..=0x061A | 0x064B..=0x065F
        | 0x0E31 | 0x0E34..=0x0E3A | 0x0E47..=0x0E4E
        | 0x1160..=0x11FF | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x200C..=0x200D | 0x20D0..=0x20FF
        | 0x302A..=0x302F | 0x3099..=0x309A | 0xD7B0..=0xD7FF | 0xFE00..=0xFE0F | 0xFE20..=0xFE2F
        | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F | 0xE0100..=0xE01EF
    )
}

/// True if `text` may be cut at byte `i`: a character boundary, inside the text, not before an
/// extending character and not after a zero-width joiner.
pub(crate) fn is_safe_cut(text: &str, i: usize) -> bool {
    if i == 0 || i >= text.len() || !text.is_char_boundary(i) {
        return false;
    }
    let next_ok = text[i..].chars().next().is_some_and(|c| !is_extender(c));
    let prev_ok = text[..i]
        .chars()
        .next_back()
        .is_some_and(|c| c != '\u{200D}');
    next_ok && prev_ok
}

/// The nearest character boundary at or below `i`.
pub(crate) fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Cuts `text` into consecutive pieces of at most `limit` tokens each (counted on the trimmed piece)
/// and returns the end offset of each piece. Cuts fall on token boundaries that are safe per
/// [`is_safe_cut`]; if a single grapheme is longer than the limit, it is cut at a character boundary
/// instead, and a single character always fits (limits below 4 tokens are raised to 4).
pub(crate) fn split_by_tokens(text: &str, limit: usize, tok: Tokenizer) -> Vec<usize> {
    let limit = limit.max(4);
    let mut ends = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        let cut = next_cut(rest, limit, tok);
        // `next_cut` returns a non-empty prefix ending on a character boundary; enforce it anyway so
        // the loop always advances and never slices inside a character.
        let first_char = rest.chars().next().map_or(rest.len(), char::len_utf8);
        pos += if cut == 0 || cut > rest.len() || !rest.is_char_boundary(cut) {
            first_char
        } else {
            cut
        };
        ends.push(pos);
    }
    ends
}

/// Length of the first piece of `rest` holding at most `limit` tokens.
fn next_cut(rest: &str, limit: usize, tok: Tokenizer) -> usize {
    // Look at a window a few times the expected size rather than the whole (possibly huge) text; widen
    // it when it holds too few tokens (very long tokens) until it covers the rest.
    let mut window_len = limit.saturating_mul(8).max(256);
    loop {
        let window_end = floor_boundary(rest, window_len);
        let window = &rest[..window_end];
        let ends = tok.token_ends(window);
        if ends.len() <= limit {
            if window_end == rest.len() && tok.count(rest.trim()) <= limit {
                return rest.len();
            }
            if window_end < rest.len() {
                window_len = window_len.saturating_mul(2);
                continue;
            }
        }
        // Take `k` tokens, fewer while the cut is unsafe or re-encoding the piece comes out too long
        // (BPE on a prefix can differ from the prefix of the BPE). Second pass: any character boundary,
        // for a grapheme longer than the limit (zalgo text).
        for strict in [true, false] {
            let mut k = limit.min(ends.len());
            while k > 0 {
                let cut = ends[k - 1];
                let allowed = if strict {
                    is_safe_cut(window, cut)
                } else {
                    cut > 0 && window.is_char_boundary(cut)
                };
                if allowed && tok.count(window[..cut].trim()) <= limit {
                    return cut;
                }
                k -= 1;
            }
        }
        // Unreachable with a limit of at least 4 tokens (a character is at most 4 bytes, a token at
        // least 1): one character.
        return window.chars().next().map_or(window.len(), char::len_utf8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentences(text: &str) -> Vec<&str> {
        let mut start = 0;
        sentence_ends(text)
            .into_iter()
            .map(|end| {
                let s = &text[start..end];
                start = end;
                s
            })
            .collect()
    }

    #[test]
    fn splits_english_japanese_korean() {
        assert_eq!(
            sentences("Hello world. It is 3.14 today! Right?"),
            ["Hello world. ", "It is 3.14 today! ", "Right?"]
        );
        assert_eq!(
            sentences("He said \"stop.\" Then left."),
            ["He said \"stop.\" ", "Then left."]
        );
        assert_eq!(
            sentences("営業時間は9時からです。定休日は日曜日です！「本当？」はい"),
            [
                "営業時間は9時からです。",
                "定休日は日曜日です！",
                "「本当？」",
                "はい"
            ]
        );
        assert_eq!(
            sentences("영업시간은 9시부터입니다. 주차가 가능한가요? 네!"),
            ["영업시간은 9시부터입니다. ", "주차가 가능한가요? ", "네!"]
        );
        assert_eq!(
            sentences("株式会社ABC.東京本社\n次の行"),
            ["株式会社ABC.東京本社\n", "次の行"]
        );
        assert_eq!(sentences("终于.好"), ["终于.", "好"]);
        assert!(sentence_ends("").is_empty());
    }

    #[test]
    fn safe_cuts_respect_characters_and_marks() {
        let s = "e\u{301}a";
        assert!(!is_safe_cut(s, 1));
        assert!(is_safe_cut(s, 3));
        let k = "か\u{3099}き";
        assert!(!is_safe_cut(k, 3));
        assert!(!is_safe_cut("日本", 1));
        assert!(is_safe_cut("日本", 3));
    }
}
