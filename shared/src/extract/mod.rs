//! Main-content extraction: turns a crawled HTML page (already decoded to UTF-8 by the crawler) or a
//! plain-text document into a title, a language and an ordered list of text blocks, each tagged with the
//! headings above it. Site chrome (navigation, headers, footers, sidebars, cookie banners, share widgets,
//! ads, comments), scripts and hidden elements are dropped; `<main>` / `[role=main]` / `<article>` are
//! preferred when present.
//!
//! Whitespace is normalised the way a browser would render it, with the CJK rule that matters for our
//! Japanese tenants: a source line break between two Han/kana characters is removed, not turned into a
//! space (Hangul is excluded: Korean separates words with spaces). The output is deterministic and the
//! walk is iterative, so deeply nested or malformed markup cannot overflow the stack.

mod chrome;
mod html;
pub(crate) mod text;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use html::extract_html;

/// The useful text of one page, ready for chunking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractedPage {
    /// `<title>` (whitespace-normalised, site-name suffix kept), else the first `<h1>`; for plain text
    /// the first line. Empty when the page has none of these.
    pub title: String,
    /// The declared language (`<html lang>`, else `Content-Language` meta), trimmed, as written.
    pub lang: Option<String>,
    /// The content blocks in document order.
    pub blocks: Vec<Block>,
}

/// One paragraph-like unit of text: a paragraph, list item, table row (or cell of a layout table),
/// preformatted text, quote paragraph, term or definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Texts of the headings (h1…h6) in force above this block, outermost first; empty when none.
    pub heading_path: Vec<String>,
    /// Normalised text: inline whitespace collapsed, explicit line breaks (`<br>`, lines of `<pre>`)
    /// kept as `\n`, never empty.
    pub text: String,
}

/// Maximum length of the title taken from a plain-text document, in characters.
const TEXT_TITLE_MAX_CHARS: usize = 120;

/// Splits a plain-text document into blocks at blank lines. Lines inside a block are joined like inline
/// HTML text (a space, except between two CJK characters); every block has an empty heading path. The
/// title is the first non-empty line, trimmed and cut to 120 characters; the language is unknown.
pub fn extract_text(text: &str) -> ExtractedPage {
    let mut blocks = Vec::new();
    let mut title = String::new();
    let mut buf = text::InlineText::default();
    for line in text.lines() {
        if line
            .chars()
            .all(|c| c.is_whitespace() || text::is_invisible(c))
        {
            push_text_block(&mut blocks, &mut buf);
            continue;
        }
        if title.is_empty() {
            let mut first = text::InlineText::default();
            first.push_str(line);
            title = first.take().chars().take(TEXT_TITLE_MAX_CHARS).collect();
            // Cutting at a char count may leave a trailing space; titles are always trimmed.
            title.truncate(title.trim_end().len());
        }
        buf.push_str(line);
        // The line end is a source line break: a space, or nothing between two CJK characters.
        buf.push_str("\n");
    }
    push_text_block(&mut blocks, &mut buf);
    ExtractedPage {
        title,
        lang: None,
        blocks,
    }
}

fn push_text_block(blocks: &mut Vec<Block>, buf: &mut text::InlineText) {
    let text = buf.take();
    if !text.is_empty() {
        blocks.push(Block {
            heading_path: Vec::new(),
            text,
        });
    }
}
