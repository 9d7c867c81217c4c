//! Character classes and the inline-text accumulator shared by extraction and chunking.

/// Characters dropped outright: zero-width space, word joiner, BOM / zero-width no-break space and soft
/// hyphen. They are invisible when rendered and only split words for search. (ZWJ is kept: emoji use it.)
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}')
}

/// Han, kana, CJK punctuation, full-width forms and other East Asian wide characters, excluding
/// Hangul. Between two of these a source line break is removed rather than rendered as a space (CSS Text
/// 3 segment-break rule); Hangul is excluded because Korean separates words with spaces.
pub(crate) fn is_wide_cjk(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x2FFF      // CJK radicals, Kangxi radicals, ideographic description
        | 0x3000..=0x303F    // CJK symbols and punctuation (、。「」 …)
        | 0x3040..=0x30FF    // hiragana, katakana
        | 0x3100..=0x312F    // bopomofo
        | 0x3190..=0x31FF    // kanbun, bopomofo ext, CJK strokes, katakana ext
        | 0x3200..=0x33FF    // enclosed CJK, CJK compatibility
        | 0x3400..=0x4DBF    // CJK ext A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFE30..=0xFE4F    // CJK compatibility forms
        | 0xFF00..=0xFFEF    // full-width and half-width forms
        | 0x20000..=0x3FFFF  // CJK ext B and beyond
    )
}

/// Hangul syllables and jamo.
pub(crate) fn is_hangul(c: char) -> bool {
    matches!(c as u32, 0x1100..=0x11FF | 0x3130..=0x318F | 0xA960..=0xA97F | 0xAC00..=0xD7AF | 0xD7B0..=0xD7FF)
}

/// What kind of whitespace has been seen since the last visible character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
enum Pending {
    #[default]
    None,
    /// Spaces, tabs, U+3000 and other non-breaking whitespace.
    Space,
    /// A run that contained a source line break.
    SegmentBreak,
}

/// Accumulates inline text the way a browser lays it out: whitespace runs collapse to one space,
/// leading and trailing whitespace disappear, a source line break between two CJK characters vanishes,
/// and explicit breaks (`<br>`) survive as a single `\n`.
#[derive(Debug, Default)]
pub(crate) struct InlineText {
    out: String,
    pending: Pending,
}

impl InlineText {
    /// Appends source text.
    pub(crate) fn push_str(&mut self, s: &str) {
        for c in s.chars() {
            self.push_char(c);
        }
    }

    fn push_char(&mut self, c: char) {
        if is_invisible(c) {
            return;
        }
        if c.is_whitespace() {
            let kind = if matches!(c, '\n' | '\r') {
                Pending::SegmentBreak
            } else {
                Pending::Space
            };
            self.pending = self.pending.max(kind);
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        if pending != Pending::None
            && let Some(prev) = self.out.chars().next_back()
            && prev != '\n'
            && !(pending == Pending::SegmentBreak && is_wide_cjk(prev) && is_wide_cjk(c))
        {
            self.out.push(' ');
        }
        self.out.push(c);
    }

    /// A boundary that renders as a space when text follows (table cells, blocks inside a cell, line
    /// breaks inside a heading).
    pub(crate) fn soft_space(&mut self) {
        self.pending = self.pending.max(Pending::Space);
    }

    /// An explicit line break (`<br>`): kept as `\n`, never doubled, never leading.
    pub(crate) fn hard_break(&mut self) {
        self.pending = Pending::None;
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    /// Returns the accumulated text (trimmed) and resets.
    pub(crate) fn take(&mut self) -> String {
        self.pending = Pending::None;
        let mut s = std::mem::take(&mut self.out);
        s.truncate(s.trim_end().len());
        s
    }
}

/// Normalises the text of `<pre>`: line structure and indentation are kept, line ends unified,
/// trailing whitespace and blank lines at either end removed, runs of blank lines collapsed to one.
pub(crate) fn normalise_pre(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut blank_run = 0usize;
    for line in raw.split('\n') {
        let line: String = line
            .chars()
            .filter(|&c| !is_invisible(c) && c != '\r')
            .map(|c| if c == '\u{00A0}' { ' ' } else { c })
            .collect();
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank_run > 0 {
                out.push('\n');
            }
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(parts: &[&str]) -> String {
        let mut b = InlineText::default();
        for p in parts {
            b.push_str(p);
        }
        b.take()
    }

    #[test]
    fn collapses_whitespace_and_keeps_cjk_tight() {
        assert_eq!(inline(&["  hello \n\t world  "]), "hello world");
        assert_eq!(inline(&["東京", "\n   ", "大阪"]), "東京大阪");
        assert_eq!(inline(&["山田　太郎"]), "山田 太郎");
        assert_eq!(inline(&["영업\n시간"]), "영업 시간");
        assert_eq!(inline(&["\u{3000}本日は"]), "本日は");
        assert_eq!(inline(&["zero\u{200B}width"]), "zerowidth");
        assert_eq!(inline(&["営業時間\n9:00"]), "営業時間 9:00");
    }

    #[test]
    fn hard_breaks_are_single_and_trimmed() {
        let mut b = InlineText::default();
        b.hard_break();
        b.push_str("a ");
        b.hard_break();
        b.hard_break();
        b.push_str("  b");
        b.hard_break();
        assert_eq!(b.take(), "a\nb");
    }

    #[test]
    fn pre_keeps_indentation() {
        assert_eq!(
            normalise_pre("\n\nfn main() {\r\n    x();  \n\n\n}\n\n"),
            "fn main() {\n    x();\n\n}"
        );
    }
}
