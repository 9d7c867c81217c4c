//! Answers without a chat model: the sentences of the retrieved passages that share the most terms with
//! the question. It keeps the local runner (and any deployment without a model key) useful and honest:
//! every word of the answer comes from the site.

use std::collections::{HashMap, HashSet};

use crate::index::lexical;

/// Sentences picked at most.
const MAX_SENTENCES: usize = 3;
/// A sentence is quoted when it scores at least this share of the best sentence's score.
const RELEVANT_SHARE: f32 = 0.5;

/// The language a question is written in, for the few fixed phrases we say ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Japanese,
    Korean,
    English,
}

pub fn detect_lang(text: &str) -> Lang {
    let kana = text.chars().any(|c| matches!(c as u32, 0x3040..=0x30FF));
    let hangul = text.chars().any(|c| matches!(c as u32, 0xAC00..=0xD7AF));
    let han = text.chars().any(|c| matches!(c as u32, 0x4E00..=0x9FFF));
    if kana || (han && !hangul) {
        Lang::Japanese
    } else if hangul {
        Lang::Korean
    } else {
        Lang::English
    }
}

/// What we say when nothing on the site matches.
pub fn not_found(lang: Lang) -> &'static str {
    match lang {
        Lang::Japanese => "申し訳ありません。このサイトの情報からは回答が見つかりませんでした。",
        Lang::Korean => "죄송합니다. 이 사이트의 정보에서 답을 찾지 못했습니다.",
        Lang::English => "Sorry, I couldn't find an answer to that on this website.",
    }
}

/// Splits text into sentences, keeping their end punctuation (。！？.!? and line breaks end sentences).
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '。' | '！' | '？' | '\n' => true,
            '.' | '!' | '?' => chars.peek().is_none_or(|(_, next)| next.is_whitespace()),
            _ => false,
        };
        if end {
            let stop = i + c.len_utf8();
            let s = text[start..stop].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = stop;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The extractive answer from passages (best first) for a question: the most relevant sentences of
/// one passage, in the order the site wrote them. One passage only, because sentences of different
/// pages glued into one paragraph read as one statement and can say something no page says. The
/// passage is the best-ranked one that shares a term with the question (retrieval already weighed
/// the passages; the answer should not second-guess it on a sentence's word count). Sentences are
/// scored by the weighted terms they share with the question (particles count little, see
/// [`lexical::query_terms`]).
pub fn answer(question: &str, passages: &[&str]) -> String {
    let lang = detect_lang(question);
    let wanted: HashMap<String, f32> = lexical::query_terms(question).into_iter().collect();
    let score = |sentence: &str| -> f32 {
        let terms: HashSet<String> = lexical::terms(sentence).into_iter().collect();
        terms.iter().filter_map(|t| wanted.get(t)).sum()
    };
    let scored: Vec<Vec<(f32, &str)>> = passages
        .iter()
        .map(|p| sentences(p).into_iter().map(|s| (score(s), s)).collect())
        .collect();
    let chosen = scored
        .iter()
        .position(|sentences| sentences.iter().any(|(s, _)| *s > 0.0))
        .or_else(|| (!scored.is_empty()).then_some(0));
    let Some(chosen) = chosen else {
        return not_found(lang).to_string();
    };
    let sentences = &scored[chosen];
    // Sentences that share only a word or two with the question next to one that shares many are
    // not part of the answer.
    let best = sentences.iter().map(|(s, _)| *s).fold(0.0f32, f32::max);
    let mut picked: Vec<usize> = (0..sentences.len())
        .filter(|&i| sentences[i].0 > 0.0 && sentences[i].0 >= best * RELEVANT_SHARE)
        .collect();
    // Highest score first, earlier first among equals.
    picked.sort_by(|&a, &b| sentences[b].0.total_cmp(&sentences[a].0).then(a.cmp(&b)));
    picked.truncate(MAX_SENTENCES);
    if picked.is_empty() {
        // Nothing shares a term: the top passage's opening is the most honest thing we have.
        picked = (0..sentences.len().min(2)).collect();
    }
    if picked.is_empty() {
        return not_found(lang).to_string();
    }
    // Read in the order the site wrote them.
    picked.sort_unstable();
    let separator = if lang == Lang::English { " " } else { "" };
    picked
        .iter()
        .map(|&i| sentences[i].1)
        .collect::<Vec<_>>()
        .join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_sentences_that_answer() {
        let passages = [
            "Welcome to Café Kotoba. We are open from 9am to 6pm on weekdays. Closed on Sundays.",
            "Our shop is near Shibuya station.",
        ];
        let a = answer("What are your opening hours on weekdays?", &passages);
        assert!(a.contains("open from 9am to 6pm"), "{a}");
        assert!(!a.contains("Shibuya"), "{a}");
    }

    #[test]
    fn quotes_the_relevant_sentences_of_one_passage_not_the_first_ones() {
        let passages = [
            "Cargo is the Rust package manager. It downloads dependencies. \
             To run only some tests, pass a filter: cargo test foo runs the tests whose names contain foo. \
             Tests run in parallel.",
            "The test profile is used for cargo test. Filters are matched against test names.",
        ];
        let a = answer(
            "How do I run only the tests whose names match a filter?",
            &passages,
        );
        assert!(a.contains("pass a filter: cargo test foo"), "{a}");
        assert!(
            !a.starts_with("Cargo is the Rust package manager"),
            "not the opening: {a}"
        );
        assert!(
            !a.contains("Filters are matched"),
            "nothing from a second passage is mixed in: {a}"
        );
        // The passage order is retrieval's: a lower-ranked passage with more matching words does not win.
        let a = answer(
            "tests filter names",
            &[
                "Filters select tests.",
                "tests filter names names tests filter",
            ],
        );
        assert_eq!(a, "Filters select tests.");
        // A top passage sharing nothing gives way to the first one that does.
        let a = answer(
            "opening hours",
            &["Welcome!", "We are open; opening hours are 9 to 5."],
        );
        assert_eq!(a, "We are open; opening hours are 9 to 5.");
    }

    #[test]
    fn particles_do_not_pick_the_sentence() {
        let a = answer(
            "パッケージを保留するには？",
            &[
                "インストールするにはどうすればよいでしょうか。パッケージを保留 (hold) するには dpkg を使います。",
            ],
        );
        assert_eq!(a, "パッケージを保留 (hold) するには dpkg を使います。");
    }

    #[test]
    fn japanese_sentences_split_on_kuten() {
        assert_eq!(
            sentences("営業時間は9時からです。日曜日は休みです。"),
            vec!["営業時間は9時からです。", "日曜日は休みです。"]
        );
        let a = answer(
            "日曜日は営業していますか？",
            &["営業時間は9時からです。日曜日は休みです。"],
        );
        assert!(a.contains("日曜日は休みです。"), "{a}");
    }

    #[test]
    fn nothing_found_is_said_in_the_question_language() {
        assert_eq!(answer("営業時間は？", &[]), not_found(Lang::Japanese));
        assert_eq!(answer("영업시간?", &[]), not_found(Lang::Korean));
        assert_eq!(answer("hours?", &[]), not_found(Lang::English));
        assert_eq!(sentences("v1.2 is out. Next"), vec!["v1.2 is out.", "Next"]);
    }
}
