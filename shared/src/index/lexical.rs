//! Lexical analysis for BM25 that works without dictionaries: words for alphabetic scripts, character
//! bigrams for Japanese, Chinese and Korean.
//!
//! Text is NFKC-normalised first, so full-width Latin (`ＡＢＣ１２３`) matches ASCII and half-width
//! katakana matches full-width.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

/// The script of a character written without spaces between words (bigrammed), if it is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Hiragana,
    Katakana,
    Han,
    Hangul,
}

fn script(c: char) -> Option<Script> {
    Some(match c as u32 {
        0x3040..=0x309F => Script::Hiragana,
        0x30A0..=0x30FF | 0x31F0..=0x31FF => Script::Katakana,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF => Script::Han,
        0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F => Script::Hangul,
        _ => return None,
    })
}

/// The long vowel mark and iteration marks belong to the word they sit in, whatever its script.
fn joins_cjk(c: char) -> bool {
    matches!(c, 'ー' | '々' | 'ゝ' | 'ゞ' | 'ヽ' | 'ヾ')
}

/// How much a query term counts: Japanese function words (particles, auxiliary verb endings) are
/// written in hiragana, so a term made only of hiragana (`には`, `です`, `ますか`) says little about the
/// topic, yet is frequent enough in questions to drown the content words. It still counts a little: a
/// few words (`ふりがな`, `ひらがな`) are content written in hiragana.
pub const HIRAGANA_TERM_WEIGHT: f32 = 0.2;

/// English function words: frequent in questions ("how do I …"), they say nothing about the topic.
/// Like hiragana-only terms they count [`FUNCTION_WORD_WEIGHT`] in a query. Sorted (binary search).
const ENGLISH_FUNCTION_WORDS: [&str; 58] = [
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "by", "can", "could", "do", "does",
    "for", "from", "get", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me",
    "my", "of", "on", "one", "or", "our", "should", "so", "that", "the", "their", "them", "then",
    "there", "these", "this", "to", "us", "was", "we", "what", "when", "where", "which", "who",
    "why", "will", "with", "would", "you",
];

/// How much a function word (English, or a hiragana-only term) counts in a query.
pub const FUNCTION_WORD_WEIGHT: f32 = HIRAGANA_TERM_WEIGHT;

/// English words reduced to their stem with the Snowball (Porter 2) stemmer, the one Lucene's and
/// Postgres's English analyzers use: `building` → `build`, `compilation` and `compile` → `compil`,
/// `dependencies` → `depend`, so a question's wording finds the page's. Only ASCII words longer than
/// three characters are stemmed (numbers and short tokens such as `9am`, `toml` stay as written), and
/// function words are kept whole so a query can recognise and down-weight them.
fn stem(word: &mut String) {
    if word.len() <= 3
        || !word.bytes().all(|b| b.is_ascii_alphanumeric())
        || !word.bytes().any(|b| b.is_ascii_alphabetic())
        || is_function_word(word)
    {
        return;
    }
    let stemmer = rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English);
    if let std::borrow::Cow::Owned(stemmed) = stemmer.stem(word) {
        *word = stemmed;
    }
}

fn is_function_word(word: &str) -> bool {
    ENGLISH_FUNCTION_WORDS.binary_search(&word).is_ok()
}

/// The terms of a text, in order: lowercase words (letters and digits, apostrophes dropped, English
/// words stemmed) and
/// overlapping bigrams of each run of one CJK script. A run ends at punctuation, spaces and script
/// changes, so no bigram spans `東京|と` or `設定|する`: those bigrams are mostly a word glued to a
/// particle or an inflection. A one-character run is its own term (a lone kanji is usually a word),
/// except a lone hiragana, which is nearly always a particle (`を`, `の`, `は`) and is dropped.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    // The word before a hyphen: "check-in" is also the one term "checkin", so it does not match
    // "check-out" as well as it matches itself ("in" alone counts for little).
    let mut before_hyphen: Option<String> = None;
    let mut run: Vec<char> = Vec::new();
    let mut run_script: Option<Script> = None;
    let flush_word = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            stem(word);
            out.push(std::mem::take(word));
        }
    };
    let flush_run = |run: &mut Vec<char>, run_script: Option<Script>, out: &mut Vec<String>| {
        match run.len() {
            0 => {}
            1 if run_script == Some(Script::Hiragana) => {}
            1 => out.push(run[0].to_string()),
            _ => out.extend(run.windows(2).map(|w| w.iter().collect::<String>())),
        }
        run.clear();
    };
    for c in normalized_lowercase(text).chars() {
        if joins_cjk(c) && !run.is_empty() {
            run.push(c);
        } else if let Some(sc) = script(c) {
            flush_word(&mut word, &mut out);
            if run_script != Some(sc) {
                flush_run(&mut run, run_script, &mut out);
                run_script = Some(sc);
            }
            run.push(c);
        } else if c.is_alphanumeric() {
            flush_run(&mut run, run_script, &mut out);
            word.push(c);
        } else if c == '\'' || c == '’' {
            // "customer's" → "customers" (then "customer"); keeps contractions one term.
        } else if c == '-' && !word.is_empty() {
            let first = word.clone();
            flush_word(&mut word, &mut out);
            before_hyphen = Some(first);
            continue;
        } else {
            compound(&mut before_hyphen, &word, &mut out);
            flush_word(&mut word, &mut out);
            flush_run(&mut run, run_script, &mut out);
        }
        if !c.is_alphanumeric() {
            before_hyphen = None;
        }
    }
    compound(&mut before_hyphen, &word, &mut out);
    flush_word(&mut word, &mut out);
    flush_run(&mut run, run_script, &mut out);
    out
}

/// NFKC, then lowercase. Most text is already NFKC (all ASCII text is): the quick check skips the
/// normaliser for it, and `str::to_lowercase` lowers ASCII a word at a time. Training runs this over
/// every chunk, so it is the analyzer's hot path.
fn normalized_lowercase(text: &str) -> String {
    use unicode_normalization::{IsNormalized, is_nfkc_quick};
    if is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        text.to_lowercase()
    } else {
        text.nfkc().collect::<String>().to_lowercase()
    }
}

/// Adds the joined term of a hyphenated pair ("check" + "in" → "checkin") once its second word is whole.
fn compound(before_hyphen: &mut Option<String>, word: &str, out: &mut Vec<String>) {
    if let Some(first) = before_hyphen.take()
        && !word.is_empty()
    {
        let mut joined = first + word;
        stem(&mut joined);
        out.push(joined);
    }
}

/// The distinct terms of a query with their weights (see [`HIRAGANA_TERM_WEIGHT`]), sorted by term.
pub fn query_terms(text: &str) -> Vec<(String, f32)> {
    let mut all = terms(text);
    all.sort();
    all.dedup();
    all.into_iter()
        .map(|t| {
            let weight = if t
                .chars()
                .all(|c| script(c) == Some(Script::Hiragana) || joins_cjk(c))
            {
                HIRAGANA_TERM_WEIGHT
            } else if is_function_word(&t) {
                FUNCTION_WORD_WEIGHT
            } else {
                1.0
            };
            (t, weight)
        })
        .collect()
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
            vec!["open", "hour", "9am", "5pm", "mon", "monfri", "fri"]
        );
        assert_eq!(
            terms("the customer's order"),
            vec!["the", "custom", "order"]
        );
    }

    #[test]
    fn japanese_becomes_bigrams_within_one_script() {
        assert_eq!(terms("営業時間"), vec!["営業", "業時", "時間"]);
        assert_eq!(terms("コーヒー"), vec!["コー", "ーヒ", "ヒー"]);
        assert_eq!(
            terms("東京とOsaka"),
            vec!["東京", "osaka"],
            "a lone particle is dropped"
        );
        assert_eq!(
            terms("設定するには、パッケージを削除"),
            vec![
                "設定", "する", "るに", "には", "パッ", "ッケ", "ケー", "ージ", "削除"
            ]
        );
        assert_eq!(terms("何を"), vec!["何"], "a lone kanji is a word");
    }

    #[test]
    fn mixed_script_queries_use_words_and_bigrams() {
        assert_eq!(terms("「Wi-Fi の設定」"), vec!["wi", "wifi", "fi", "設定"]);
        let weighted = query_terms("設定するには？");
        assert_eq!(
            weighted,
            vec![
                ("する".to_string(), HIRAGANA_TERM_WEIGHT),
                ("には".to_string(), HIRAGANA_TERM_WEIGHT),
                ("るに".to_string(), HIRAGANA_TERM_WEIGHT),
                ("設定".to_string(), 1.0),
            ]
        );
    }

    #[test]
    fn hyphenated_words_are_also_one_term() {
        assert_eq!(
            terms("check-in, check-out"),
            ["check", "checkin", "in", "check", "checkout", "out"]
        );
        assert_eq!(terms("Wi-Fi"), ["wi", "wifi", "fi"]);
        assert_eq!(terms("a - b"), ["a", "b"]);
    }

    #[test]
    fn english_words_are_stemmed_so_a_question_finds_the_page_wording() {
        // The question's form and the page's form meet in one stem.
        for (question, page) in [
            ("dependencies", "dependency"),
            ("building", "builds"),
            ("compile", "compilation"),
            ("targets", "target"),
            ("configured", "configuring"),
        ] {
            assert_eq!(terms(question), terms(page), "{question} / {page}");
        }
        // Short words, numbers and mixed tokens stay as written; function words stay whole so a
        // query can down-weight them.
        assert_eq!(
            terms("toml 9am v1beta does this class"),
            vec!["toml", "9am", "v1beta", "does", "this", "class"]
        );
        assert!(
            ENGLISH_FUNCTION_WORDS.windows(2).all(|w| w[0] < w[1]),
            "sorted"
        );
        let weights: Vec<(String, f32)> = query_terms("How do I add targets?");
        assert_eq!(
            weights,
            vec![
                ("add".to_string(), 1.0),
                ("do".to_string(), FUNCTION_WORD_WEIGHT),
                ("how".to_string(), FUNCTION_WORD_WEIGHT),
                ("i".to_string(), FUNCTION_WORD_WEIGHT),
                ("target".to_string(), 1.0),
            ]
        );
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
        let (tf, len) = term_frequencies("milk milk tea");
        assert_eq!((tf["milk"], tf["tea"], len), (2, 1, 3));
    }
}
