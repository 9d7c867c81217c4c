//! Answers without a chat model: the sentences of the retrieved passages that share the most terms with
//! the question. It keeps the local runner (and any deployment without a model key) useful and honest:
//! every word of the answer comes from the site.

use std::collections::HashSet;

use crate::index::lexical;

/// Sentences picked at most.
const MAX_SENTENCES: usize = 3;

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

/// The extractive answer from passages (best first) for a question.
pub fn answer(question: &str, passages: &[&str]) -> String {
    let lang = detect_lang(question);
    let wanted: HashSet<String> = lexical::terms(question).into_iter().collect();
    // (passage rank, position, score, sentence)
    let mut scored: Vec<(usize, usize, usize, &str)> = Vec::new();
    for (rank, passage) in passages.iter().enumerate() {
        for (pos, sentence) in sentences(passage).into_iter().enumerate() {
            let terms: HashSet<String> = lexical::terms(sentence).into_iter().collect();
            let score = terms.intersection(&wanted).count();
            scored.push((rank, pos, score, sentence));
        }
    }
    let mut best: Vec<_> = scored.iter().filter(|s| s.2 > 0).cloned().collect();
    best.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    best.truncate(MAX_SENTENCES);
    if best.is_empty() {
        // Nothing shares a term: the top passage's opening is the most honest thing we have.
        best = scored
            .iter()
            .filter(|s| s.0 == 0)
            .take(2)
            .cloned()
            .collect();
    }
    if best.is_empty() {
        return not_found(lang).to_string();
    }
    // Read in the order the site wrote them.
    best.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let separator = if lang == Lang::English { " " } else { "" };
    best.iter().map(|s| s.3).collect::<Vec<_>>().join(separator)
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
