//! Lexical analysis for BM25 that works without dictionaries: words for alphabetic scripts, character
//! bigrams for Japanese, Chinese and Korean.
//!
//! Text is NFKC-normalised first, so full-width Latin (`ＡＢＣ１２３`) matches ASCII and half-width
//! katakana matches full-width.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

/// Whether a character is written without spaces between words (bigrammed).
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x31F0..=0x31FF    // Katakana phonetic extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0x1100..=0x11FF    // Hangul jamo
        | 0x3130..=0x318F    // Hangul compatibility jamo
        | 0x20000..=0x2FFFF) // CJK extensions B+
}

/// The long vowel mark and iteration marks belong to the word they sit in.
fn joins_cjk(c: char) -> bool {
    matches!(c, 'ー' | '々' | 'ゝ' | 'ゞ' | 'ヽ' | 'ヾ')
}

/// The terms of a text, in order: lowercase words (letters and digits, apostrophes dropped) and
/// overlapping bigrams of each CJK run (a lone CJK character is its own term).
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut run: Vec<char> = Vec::new();
    let flush_word = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word));
        }
    };
    let flush_run = |run: &mut Vec<char>, out: &mut Vec<String>| {
        match run.len() {
            0 => {}
            1 => out.push(run[0].to_string()),
            _ => out.extend(run.windows(2).map(|w| w.iter().collect::<String>())),
        }
        run.clear();
    };
    for c in text.nfkc().flat_map(char::to_lowercase) {
        if is_cjk(c) || (joins_cjk(c) && !run.is_empty()) {
            flush_word(&mut word, &mut out);
            run.push(c);
        } else if c.is_alphanumeric() {
            flush_run(&mut run, &mut out);
            word.push(c);
        } else if c == '\'' || c == '’' {
            // "customer's" → "customers"; keeps contractions one term.
        } else {
            flush_word(&mut word, &mut out);
            flush_run(&mut run, &mut out);
        }
    }
    flush_word(&mut word, &mut out);
    flush_run(&mut run, &mut out);
    out
}

/// Term frequencies of one text, and its length in terms.
pub fn term_frequencies(text: &str) -> (HashMap<String, u32>, u32) {
    let all = terms(text);
    let len = all.len() as u32;
    let mut tf = HashMap::with_capacity(all.len());
    for t in all {
        *tf.entry(t).or_insert(0) += 1;
    }
    (tf, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_words_are_lowercased_and_split() {
        assert_eq!(
            terms("Opening Hours: 9am–5pm, Mon-Fri."),
            vec!["opening", "hours", "9am", "5pm", "mon", "fri"]
        );
        assert_eq!(
            terms("the customer's order"),
            vec!["the", "customers", "order"]
        );
    }

    #[test]
    fn japanese_becomes_bigrams() {
        assert_eq!(terms("営業時間"), vec!["営業", "業時", "時間"]);
        assert_eq!(terms("コーヒー"), vec!["コー", "ーヒ", "ヒー"]);
        assert_eq!(terms("東京とOsaka"), vec!["東京", "京と", "osaka"]);
    }

    #[test]
    fn width_variants_match() {
        assert_eq!(terms("ＡＢＣ１２３"), terms("abc123"));
        assert_eq!(terms("ｺｰﾋｰ"), terms("コーヒー"));
    }

    #[test]
    fn korean_words_become_syllable_bigrams() {
        assert_eq!(terms("영업시간 안내"), vec!["영업", "업시", "시간", "안내"]);
    }

    #[test]
    fn frequencies_count_terms() {
        let (tf, len) = term_frequencies("coffee coffee tea");
        assert_eq!((tf["coffee"], tf["tea"], len), (2, 1, 3));
    }
}
