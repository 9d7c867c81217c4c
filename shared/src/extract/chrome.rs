//! Which elements are site chrome or invisible, and so never part of the main content.
//!
//! Three layers, cheapest first: tags that never carry content (`script`, `nav`, `form` …), visibility
//! (`hidden`, `aria-hidden`, inline `display:none`), and heuristics on ARIA roles and class/id tokens
//! (`gnav`, `breadcrumb`, `cookie-banner`, `l-header` …). The heuristics never drop an element that holds
//! the page's `<main>` (the guard set), and header/footer only count as chrome outside
//! article/main/section, because an article's own `<header>` holds its title.

use scraper::node::Element;

/// Why the walker might keep or drop an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Keep,
    Drop,
    /// Looks like a menu/pager/tag list: drop only if it is mostly links.
    DropIfLinkDense,
}

/// Context the rules need about the element's position.
#[derive(Debug, Clone, Copy)]
pub(super) struct Context {
    /// Inside article/main/section/[role=main] (so header/footer belong to that content).
    pub in_content: bool,
    /// The element contains the page's main landmark: never drop it on heuristics.
    pub guarded: bool,
    /// The element contains a heading: a `<form>` wrapping a whole page (ASP.NET) is kept.
    pub has_heading: bool,
    /// Apply the class/id/role heuristics (off in the lenient fallback pass).
    pub heuristics: bool,
}

/// Tags whose content is never page text.
const DROP_TAGS: &[&str] = &[
    "applet", "aside", "audio", "base", "button", "canvas", "datalist", "dialog", "embed", "frame",
    "frameset", "head", "iframe", "input", "link", "map", "math", "menu", "meta", "nav", "noembed",
    "noframes", "noscript", "object", "option", "rp", "rt", "rtc", "script", "select", "style",
    "svg", "template", "textarea", "title", "video",
];

/// ARIA roles of site chrome and overlays.
const DROP_ROLES: &[&str] = &[
    "alertdialog",
    "banner",
    "complementary",
    "contentinfo",
    "dialog",
    "menu",
    "menubar",
    "navigation",
    "search",
    "toolbar",
];

/// Class/id parts (after splitting on `-`, `_` and camelCase) that always mean chrome (besides any part
/// ending in `nav`/`navi`).
const STRONG_PARTS: &[&str] = &[
    "ad",
    "ads",
    "adsbygoogle",
    "adsense",
    "adslot",
    "advertisement",
    "backtotop",
    "breadcrumbs",
    "comments",
    "consent",
    "crumbs",
    "navigation",
    "pagetop",
    "popup",
    "respond",
    "share",
    "sharing",
    "skip",
    "skiplink",
    "sns",
    "sponsor",
    "sponsored",
    "totop",
];

/// Substrings of a lower-cased class/id token that always mean chrome.
const STRONG_SUBSTRINGS: &[&str] = &[
    "addtoany",
    "advert",
    "breadcrumb",
    "commentlist",
    "cookie",
    "disqus",
    "gdpr",
    "navbar",
    "onetrust",
    "pankuzu",
    "sidebar",
    "topicpath",
];

/// Parts that, next to a singular "comment", mean a comment thread (`comment-list`, `comment-respond`);
/// alone, "comment" is often a remark inside the content (a Japanese shop's staff comment).
const COMMENT_THREAD_PARTS: &[&str] = &[
    "area", "author", "count", "form", "list", "meta", "reply", "respond", "section", "thread",
    "wrap",
];

/// Parts that mean site header/footer when outside article/main/section.
const HEADER_FOOTER_PARTS: &[&str] = &["colophon", "copyright", "footer", "header", "masthead"];

/// Parts that, next to header/footer, mean a piece of content (`entry-header`, `card-footer`).
const CONTENT_QUALIFIERS: &[&str] = &[
    "article", "block", "box", "card", "content", "contents", "entry", "heading", "item", "list",
    "main", "page", "panel", "post", "sec", "section", "table", "title",
];

/// Parts that are chrome only when the element is mostly links (a restaurant's "menu" is content), besides
/// any part ending in `menu`.
const WEAK_PARTS: &[&str] = &[
    "dropdown",
    "menus",
    "pager",
    "pagination",
    "paging",
    "social",
    "tagcloud",
    "tags",
    "toc",
];

/// State/modifier prefixes: `has-sidebar`, `no-comments`, `is-menu-open` describe the page, not the
/// element.
const MODIFIER_PREFIXES: &[&str] = &[
    "has", "is", "no", "with", "without", "show", "hide", "enable", "disable",
];

/// Decides whether an element is kept, dropped, or dropped if link-dense.
pub(super) fn verdict(el: &Element, ctx: Context) -> Verdict {
    let tag = el.name();
    if DROP_TAGS.contains(&tag) {
        return Verdict::Drop;
    }
    match tag {
        "header" | "footer" if !ctx.in_content => return Verdict::Drop,
        "form" if !ctx.guarded && !ctx.has_heading => return Verdict::Drop,
        _ => {}
    }
    if is_hidden(el) {
        return Verdict::Drop;
    }
    if !ctx.heuristics || ctx.guarded || matches!(tag, "html" | "body" | "main" | "article") {
        return Verdict::Keep;
    }
    if let Some(role) = el.attr("role") {
        for r in role.split_ascii_whitespace() {
            if r.eq_ignore_ascii_case("main") {
                return Verdict::Keep;
            }
            if DROP_ROLES.iter().any(|d| r.eq_ignore_ascii_case(d)) {
                return Verdict::Drop;
            }
        }
    }
    let mut verdict = Verdict::Keep;
    let tokens = el
        .attr("class")
        .into_iter()
        .chain(el.id())
        .flat_map(str::split_ascii_whitespace);
    for token in tokens {
        match token_verdict(token, ctx.in_content) {
            Verdict::Drop => return Verdict::Drop,
            Verdict::DropIfLinkDense => verdict = Verdict::DropIfLinkDense,
            Verdict::Keep => {}
        }
    }
    verdict
}

/// `hidden` (except `until-found`, which is searchable collapsed content), `aria-hidden="true"`, or an
/// inline style with `display:none` / `visibility:hidden`.
fn is_hidden(el: &Element) -> bool {
    if el
        .attr("hidden")
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("until-found"))
    {
        return true;
    }
    if el
        .attr("aria-hidden")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return true;
    }
    if let Some(style) = el.attr("style") {
        let compact: String = style
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        return compact.split(';').any(|decl| {
            let decl = decl.trim_end_matches("!important");
            decl == "display:none" || decl == "visibility:hidden"
        });
    }
    false
}

/// Classifies one class or id token.
fn token_verdict(token: &str, in_content: bool) -> Verdict {
    let parts = split_parts(token);
    if parts
        .first()
        .is_some_and(|p| MODIFIER_PREFIXES.contains(&p.as_str()))
    {
        return Verdict::Keep;
    }
    let lower = token.to_ascii_lowercase();
    if STRONG_SUBSTRINGS.iter().any(|s| lower.contains(s)) {
        return Verdict::Drop;
    }
    let has = |set: &[&str]| parts.iter().any(|p| set.contains(&p.as_str()));
    // Navigation glued to a prefix: `localnavi`, `sidenav`, `footernav` (no common word ends so).
    let nav_suffix = parts
        .iter()
        .any(|p| p.ends_with("nav") || p.ends_with("navi"));
    if has(STRONG_PARTS) || nav_suffix || (has(&["comment"]) && has(COMMENT_THREAD_PARTS)) {
        return Verdict::Drop;
    }
    if !in_content && has(HEADER_FOOTER_PARTS) && !has(CONTENT_QUALIFIERS) {
        return Verdict::Drop;
    }
    if has(WEAK_PARTS) || parts.iter().any(|p| p.ends_with("menu")) {
        return Verdict::DropIfLinkDense;
    }
    Verdict::Keep
}

/// Splits `globalNav`, `l-header__inner`, `ad_slot` into lower-case parts.
fn split_parts(token: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in token.chars() {
        if c == '-' || c == '_' || c == '.' || c == ':' {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            parts.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_tokens() {
        use Verdict::*;
        assert_eq!(split_parts("globalNav"), ["global", "nav"]);
        assert_eq!(split_parts("l-header__inner"), ["l", "header", "inner"]);
        for t in [
            "gnav",
            "site-nav",
            "globalNav",
            "breadcrumbs",
            "pankuzu",
            "cookie-banner",
            "sidebar-left",
            "ad-slot",
            "share-buttons",
            "comments",
            "comment-list",
            "commentlist",
            "localnavi",
            "footernav",
            "skip-link",
            "CybotCookiebotDialog",
        ] {
            assert_eq!(token_verdict(t, true), Drop, "{t}");
        }
        for t in ["l-header", "site-footer", "header", "copyright"] {
            assert_eq!(token_verdict(t, false), Drop, "{t}");
            assert_eq!(token_verdict(t, true), Keep, "{t}");
        }
        for t in [
            "entry-header",
            "card-footer",
            "has-sidebar",
            "no-comments",
            "content",
            "address",
            "badge",
            "download",
            "shared",
            "unavailable",
            "canvas-wrap",
            "staff-comment",
            "bg-navy",
        ] {
            assert_eq!(token_verdict(t, false), Keep, "{t}");
        }
        assert_eq!(token_verdict("food-menu", false), DropIfLinkDense);
        assert_eq!(token_verdict("spmenu", false), DropIfLinkDense);
    }
}
