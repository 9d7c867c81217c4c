//! The HTML walker: finds the content roots, then walks them iteratively (an explicit stack, never
//! recursion) emitting blocks and tracking the heading path.

use std::collections::HashSet;

use ego_tree::{NodeId, NodeRef};
use scraper::{Html, Node, node::Element};

use super::chrome::{self, Context, Verdict};
use super::text::{InlineText, normalise_pre};
use super::{Block, ExtractedPage};

type NodeR<'a> = NodeRef<'a, Node>;

/// Elements that break the inline flow (everything not listed in [`INLINE_TAGS`] is treated as a block
/// too, so unknown custom elements never glue neighbouring texts together).
const INLINE_TAGS: &[&str] = &[
    "a", "abbr", "acronym", "b", "bdi", "bdo", "big", "cite", "code", "data", "del", "dfn", "em",
    "font", "i", "img", "ins", "kbd", "label", "mark", "meter", "nobr", "output", "progress", "q",
    "rb", "ruby", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "time", "tt",
    "u", "var", "wbr",
];

/// Descendants that make a table row a layout row (walked cell by cell) rather than a data row
/// (one block per row).
const LAYOUT_ROW_TAGS: &[&str] = &[
    "article",
    "blockquote",
    "dl",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "main",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "ul",
];

/// How many nodes a bounded look-ahead (row shape, link density) may visit before giving up.
const SCAN_BUDGET: usize = 4000;

/// Extracts the title, language and main-content blocks of an HTML document. Never panics; malformed
/// markup is repaired by the HTML5 parser, and the walk is iterative so nesting depth does not matter.
pub fn extract_html(html: &str) -> ExtractedPage {
    let doc = Html::parse_document(html);
    let guards = Guards::new(&doc);
    let body = find_body(&doc);

    let roots = content_roots(&doc, &guards);
    let mut walk = if roots.is_empty() {
        Walker::run(&guards, &[(body, false)], true)
    } else {
        let roots: Vec<_> = roots.into_iter().map(|r| (r, true)).collect();
        let walk = Walker::run(&guards, &roots, true);
        // An empty landmark (a bare `<main>` shell filled by script) is no reason to lose the page.
        if walk.blocks.is_empty() {
            Walker::run(&guards, &[(body, false)], true)
        } else {
            walk
        }
    };
    if walk.blocks.is_empty() {
        // The class/id heuristics ate everything (a wrapper named like chrome): keep only the hard rules.
        walk = Walker::run(&guards, &[(body, false)], false);
    }

    let title = find_title(&doc)
        .or(walk.first_h1.take())
        .or_else(|| first_h1_anywhere(&doc, &guards))
        .unwrap_or_default();
    ExtractedPage {
        title,
        lang: find_lang(&doc),
        blocks: walk.blocks,
    }
}

fn element(node: NodeR<'_>) -> Option<&Element> {
    node.value().as_element()
}

fn has_role(el: &Element, role: &str) -> bool {
    el.attr("role").is_some_and(|r| {
        r.split_ascii_whitespace()
            .any(|t| t.eq_ignore_ascii_case(role))
    })
}

fn is_main_landmark(el: &Element) -> bool {
    el.name() == "main" || has_role(el, "main")
}

/// Precomputed ancestor sets, so rules about descendants cost O(1) per element.
struct Guards {
    /// Ancestors of the main landmark(s) (or of the articles when there is no main): never dropped on
    /// class/id/role heuristics, so a wrapper named `content-sidebar-wrap` cannot swallow the page.
    landmark_ancestors: HashSet<NodeId>,
    /// Ancestors of headings: a `<form>` wrapping a whole page keeps its content.
    heading_ancestors: HashSet<NodeId>,
}

impl Guards {
    fn new(doc: &Html) -> Self {
        let mut mains = HashSet::new();
        let mut articles = HashSet::new();
        let mut heading_ancestors = HashSet::new();
        for node in doc.tree.nodes() {
            let Some(el) = element(node) else { continue };
            if is_main_landmark(el) {
                insert_ancestors(&mut mains, node);
            } else if el.name() == "article" {
                insert_ancestors(&mut articles, node);
            }
            if heading_level(el).is_some() {
                insert_ancestors(&mut heading_ancestors, node);
            }
        }
        Guards {
            landmark_ancestors: if mains.is_empty() { articles } else { mains },
            heading_ancestors,
        }
    }

    fn context(&self, id: NodeId, in_content: bool, heuristics: bool) -> Context {
        Context {
            in_content,
            guarded: self.landmark_ancestors.contains(&id),
            has_heading: self.heading_ancestors.contains(&id),
            heuristics,
        }
    }
}

/// Adds the strict ancestors of `node`; stops at the first one already present, so building a set for
/// every node of a document stays linear.
fn insert_ancestors(set: &mut HashSet<NodeId>, node: NodeR<'_>) {
    let mut cur = node.parent();
    while let Some(p) = cur {
        if !set.insert(p.id()) {
            break;
        }
        cur = p.parent();
    }
}

fn heading_level(el: &Element) -> Option<u8> {
    match el.name() {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ if has_role(el, "heading") => {
            let level = el
                .attr("aria-level")
                .and_then(|l| l.trim().parse::<u8>().ok())
                .unwrap_or(2);
            Some(level.clamp(1, 6))
        }
        _ => None,
    }
}

fn find_body(doc: &Html) -> NodeR<'_> {
    doc.tree
        .nodes()
        .find(|n| element(*n).is_some_and(|e| e.name() == "body"))
        .unwrap_or_else(|| doc.tree.root())
}

/// Link density of a subtree (share of visible characters inside links), None if it is too large to
/// measure within the scan budget.
fn link_density(node: NodeR<'_>) -> Option<f64> {
    let mut total = 0usize;
    let mut linked = 0usize;
    let mut stack = vec![(node, false)];
    let mut budget = SCAN_BUDGET;
    while let Some((n, in_link)) = stack.pop() {
        budget = budget.checked_sub(1)?;
        match n.value() {
            Node::Text(t) => {
                let chars = t.chars().filter(|c| !c.is_whitespace()).count();
                total += chars;
                if in_link {
                    linked += chars;
                }
            }
            Node::Element(el) => {
                if matches!(el.name(), "script" | "style" | "template") {
                    continue;
                }
                let link = in_link || el.name() == "a";
                stack.extend(n.children().rev().map(|c| (c, link)));
            }
            _ => {}
        }
    }
    if total == 0 {
        Some(1.0)
    } else {
        Some(linked as f64 / total as f64)
    }
}

/// The element's fate under the current context, with the link-density check resolved.
fn keeps(
    node: NodeR<'_>,
    el: &Element,
    guards: &Guards,
    in_content: bool,
    heuristics: bool,
) -> bool {
    match chrome::verdict(el, guards.context(node.id(), in_content, heuristics)) {
        Verdict::Keep => true,
        Verdict::Drop => false,
        // Too big to measure means it is not a small menu.
        Verdict::DropIfLinkDense => link_density(node).is_none_or(|d| d < 0.5),
    }
}

/// Elements that make header/footer inside them part of the content.
fn is_content_container(el: &Element) -> bool {
    matches!(el.name(), "article" | "main" | "section") || is_main_landmark(el)
}

/// The `<main>`/`[role=main]` elements (outermost, visible), else all outermost `<article>`s; empty
/// means "use the body".
fn content_roots<'a>(doc: &'a Html, guards: &Guards) -> Vec<NodeR<'a>> {
    let mut mains = Vec::new();
    let mut articles = Vec::new();
    // (node, inside article/main/section, inside an article)
    let mut stack = vec![(doc.tree.root(), false, false)];
    while let Some((node, in_content, in_article)) = stack.pop() {
        let Some(el) = element(node) else {
            stack.extend(node.children().rev().map(|c| (c, in_content, in_article)));
            continue;
        };
        if !keeps(node, el, guards, in_content, true) {
            continue;
        }
        if is_main_landmark(el) {
            mains.push(node);
            continue;
        }
        let is_article = el.name() == "article";
        // Only outermost articles: one nested in another is already covered by its parent.
        if is_article && !in_article {
            articles.push(node);
        }
        let inner = in_content || is_content_container(el);
        stack.extend(
            node.children()
                .rev()
                .map(|c| (c, inner, in_article || is_article)),
        );
    }
    if mains.is_empty() { articles } else { mains }
}

/// What to do when leaving an element.
#[derive(Clone, Copy)]
struct Exit {
    flush: bool,
    leaves_content: bool,
}

enum Step<'a> {
    Enter(NodeR<'a>),
    Exit(Exit),
    RootStart { in_content: bool },
}

/// Walks content roots and collects blocks.
struct Walker<'g> {
    guards: &'g Guards,
    heuristics: bool,
    /// Depth of article/main/section ancestors; > 0 means header/footer are content.
    content_depth: usize,
    headings: Vec<(u8, String)>,
    buf: InlineText,
    blocks: Vec<Block>,
    first_h1: Option<String>,
}

impl<'g> Walker<'g> {
    fn run(guards: &'g Guards, roots: &[(NodeR<'_>, bool)], heuristics: bool) -> Self {
        let mut w = Walker {
            guards,
            heuristics,
            content_depth: 0,
            headings: Vec::new(),
            buf: InlineText::default(),
            blocks: Vec::new(),
            first_h1: None,
        };
        let mut stack: Vec<Step<'_>> = Vec::new();
        for &(root, in_content) in roots.iter().rev() {
            // Roots are entered through their children: the root element itself passed the filters.
            stack.push(Step::Exit(Exit {
                flush: true,
                leaves_content: false,
            }));
            stack.extend(root.children().rev().map(Step::Enter));
            stack.push(Step::RootStart { in_content });
        }
        while let Some(step) = stack.pop() {
            match step {
                Step::RootStart { in_content } => {
                    // Each article is its own document outline.
                    w.flush();
                    w.headings.clear();
                    w.content_depth = usize::from(in_content);
                }
                Step::Exit(exit) => {
                    if exit.flush {
                        w.flush();
                    }
                    if exit.leaves_content {
                        w.content_depth = w.content_depth.saturating_sub(1);
                    }
                }
                Step::Enter(node) => w.enter(node, &mut stack),
            }
        }
        w.flush();
        w
    }

    fn in_content(&self) -> bool {
        self.content_depth > 0
    }

    fn keeps(&self, node: NodeR<'_>, el: &Element) -> bool {
        keeps(node, el, self.guards, self.in_content(), self.heuristics)
    }

    fn enter<'a>(&mut self, node: NodeR<'a>, stack: &mut Vec<Step<'a>>) {
        let el = match node.value() {
            Node::Text(t) => {
                self.buf.push_str(t);
                return;
            }
            Node::Element(el) => el,
            _ => return,
        };
        if !self.keeps(node, el) {
            return;
        }
        let tag = el.name();
        if let Some(level) = heading_level(el) {
            self.flush();
            self.heading(node, level);
            return;
        }
        match tag {
            "br" => {
                self.buf.hard_break();
                return;
            }
            "pre" | "listing" | "xmp" | "plaintext" => {
                self.flush();
                let text = normalise_pre(&self.raw_text(node));
                self.push_block(text);
                return;
            }
            "tr" if is_data_row(node) => {
                self.flush();
                let text = self.row_text(node);
                self.push_block(text);
                return;
            }
            _ => {}
        }
        if INLINE_TAGS.contains(&tag) {
            stack.extend(node.children().rev().map(Step::Enter));
            return;
        }
        self.flush();
        let enters_content = is_content_container(el);
        if enters_content {
            self.content_depth += 1;
        }
        stack.push(Step::Exit(Exit {
            flush: true,
            leaves_content: enters_content,
        }));
        stack.extend(node.children().rev().map(Step::Enter));
    }

    /// Updates the heading path: a heading replaces those at its level and below.
    fn heading(&mut self, node: NodeR<'_>, level: u8) {
        let text = self.inline_text(node);
        if text.is_empty() {
            return;
        }
        if level == 1 && self.first_h1.is_none() {
            self.first_h1 = Some(text.clone());
        }
        while self.headings.last().is_some_and(|(l, _)| *l >= level) {
            self.headings.pop();
        }
        self.headings.push((level, text));
    }

    fn flush(&mut self) {
        let text = self.buf.take();
        self.push_block(text);
    }

    fn push_block(&mut self, text: String) {
        if text.is_empty() {
            return;
        }
        self.blocks.push(Block {
            heading_path: self.headings.iter().map(|(_, t)| t.clone()).collect(),
            text,
        });
    }

    /// Visible text of a subtree on one line: block boundaries and `<br>` become spaces.
    fn inline_text(&self, node: NodeR<'_>) -> String {
        let mut buf = InlineText::default();
        let mut stack: Vec<Option<NodeR<'_>>> = node.children().rev().map(Some).collect();
        while let Some(item) = stack.pop() {
            // `None` marks the end of a block-level element.
            let Some(n) = item else {
                buf.soft_space();
                continue;
            };
            match n.value() {
                Node::Text(t) => buf.push_str(t),
                Node::Element(el) => {
                    if !self.keeps(n, el) {
                        continue;
                    }
                    if INLINE_TAGS.contains(&el.name()) {
                        stack.extend(n.children().rev().map(Some));
                    } else {
                        buf.soft_space();
                        stack.push(None);
                        stack.extend(n.children().rev().map(Some));
                    }
                }
                _ => {}
            }
        }
        buf.take()
    }

    /// Raw text of a `<pre>`, whitespace untouched, `<br>` as a newline.
    fn raw_text(&self, node: NodeR<'_>) -> String {
        let mut out = String::new();
        let mut stack: Vec<NodeR<'_>> = node.children().rev().collect();
        while let Some(n) = stack.pop() {
            match n.value() {
                Node::Text(t) => out.push_str(t),
                Node::Element(el) if el.name() == "br" => out.push('\n'),
                Node::Element(el) if self.keeps(n, el) => stack.extend(n.children().rev()),
                _ => {}
            }
        }
        out
    }

    /// A data row as one line: `header: value` for a two-cell row led by `<th>`, else cells joined with
    /// ` | `.
    fn row_text(&self, row: NodeR<'_>) -> String {
        let mut cells = Vec::new();
        for cell in row.children() {
            let Some(el) = element(cell) else { continue };
            if !matches!(el.name(), "td" | "th") || !self.keeps(cell, el) {
                continue;
            }
            let text = self.inline_text(cell);
            if !text.is_empty() {
                cells.push((el.name() == "th", text));
            }
        }
        match cells.as_slice() {
            [(true, head), (false, value)] => format!("{head}: {value}"),
            _ => cells
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }
}

/// A row whose cells hold only inline content (no headings, paragraphs, lists or nested tables) within
/// the scan budget.
fn is_data_row(row: NodeR<'_>) -> bool {
    let mut budget = SCAN_BUDGET;
    let mut stack: Vec<NodeR<'_>> = row.children().collect();
    while let Some(n) = stack.pop() {
        let Some(b) = budget.checked_sub(1) else {
            return false;
        };
        budget = b;
        if let Some(el) = element(n) {
            if LAYOUT_ROW_TAGS.contains(&el.name()) {
                return false;
            }
            stack.extend(n.children());
        }
    }
    true
}

/// The document `<title>` (not an SVG one), whitespace-normalised.
fn find_title(doc: &Html) -> Option<String> {
    let title = doc.tree.nodes().find(|n| {
        element(*n)
            .is_some_and(|e| e.name() == "title" && &*e.name.ns == "http://www.w3.org/1999/xhtml")
    })?;
    let mut buf = InlineText::default();
    for child in title.children() {
        if let Node::Text(t) = child.value() {
            buf.push_str(t);
        }
    }
    Some(buf.take()).filter(|t| !t.is_empty())
}

/// Fallback title: the first non-empty `<h1>` in the document, chrome included.
fn first_h1_anywhere(doc: &Html, guards: &Guards) -> Option<String> {
    let walker = Walker {
        guards,
        heuristics: false,
        content_depth: 1,
        headings: Vec::new(),
        buf: InlineText::default(),
        blocks: Vec::new(),
        first_h1: None,
    };
    doc.tree
        .nodes()
        .filter(|n| element(*n).is_some_and(|e| e.name() == "h1"))
        .map(|n| walker.inline_text(n))
        .find(|t| !t.is_empty())
}

/// `<html lang>` (or `xml:lang`), else `<meta http-equiv="content-language">`.
fn find_lang(doc: &Html) -> Option<String> {
    let clean = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
    for node in doc.tree.nodes() {
        let Some(el) = element(node) else { continue };
        match el.name() {
            "html" => {
                let lang = el.attr("lang").and_then(clean).or_else(|| {
                    el.attrs()
                        .find(|(k, _)| k.eq_ignore_ascii_case("xml:lang"))
                        .and_then(|(_, v)| clean(v))
                });
                if lang.is_some() {
                    return lang;
                }
            }
            "meta"
                if el
                    .attr("http-equiv")
                    .is_some_and(|h| h.trim().eq_ignore_ascii_case("content-language")) =>
            {
                // The header may list several languages; the first is the primary one.
                if let Some(lang) = el
                    .attr("content")
                    .and_then(|c| c.split(',').next())
                    .and_then(clean)
                {
                    return Some(lang);
                }
            }
            _ => {}
        }
    }
    None
}
