//! What a page says about other URLs and about itself: links, canonical URL, robots directives.

use scraper::{Html, Selector};
use url::Url;

use super::robots::ROBOTS_TOKEN;

/// Links kept from one page at most; the rest are ignored (a page is not a sitemap).
pub const MAX_LINKS_PER_PAGE: usize = 5_000;

/// `noindex` / `nofollow` from `<meta name=robots>` and `X-Robots-Tag`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RobotsDirectives {
    pub noindex: bool,
    pub nofollow: bool,
}

impl RobotsDirectives {
    /// Both sets of directives together (either one restricting is enough).
    pub fn union(self, other: Self) -> Self {
        Self {
            noindex: self.noindex || other.noindex,
            nofollow: self.nofollow || other.nofollow,
        }
    }

    fn apply(&mut self, directive: &str) {
        match directive.trim().to_ascii_lowercase().as_str() {
            "noindex" => self.noindex = true,
            "nofollow" => self.nofollow = true,
            "none" => {
                self.noindex = true;
                self.nofollow = true;
            }
            _ => {}
        }
    }
}

/// What [`extract`] found in an HTML page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageLinks {
    /// Normalised http(s) URLs from `<a href>`, `<area href>`, `<iframe src>` and `<frame src>`
    /// (links marked `rel=nofollow` left out), de-duplicated, in document order.
    pub links: Vec<Url>,
    /// The normalised `<link rel=canonical>` URL, if any.
    pub canonical: Option<Url>,
    /// From `<meta name="robots">` or `<meta name="KotobaBot">`.
    pub directives: RobotsDirectives,
}

/// Reads links, canonical and robots directives from HTML, resolving relative URLs against
/// `<base href>` or else `page_url`. Any input is accepted (html5ever recovers from anything).
pub fn extract(html: &str, page_url: &Url) -> PageLinks {
    let doc = Html::parse_document(html);
    let mut out = PageLinks::default();

    let base = first_attr(&doc, "base[href]", "href")
        .and_then(|href| page_url.join(href.trim()).ok())
        .filter(|b| matches!(b.scheme(), "http" | "https"))
        .unwrap_or_else(|| page_url.clone());

    if let Ok(sel) = Selector::parse("meta[name][content]") {
        for meta in doc.select(&sel) {
            let name = meta.value().attr("name").unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("robots") || name.eq_ignore_ascii_case(ROBOTS_TOKEN) {
                let content = meta.value().attr("content").unwrap_or_default();
                for directive in content.split(',') {
                    out.directives.apply(directive);
                }
            }
        }
    }

    if let Ok(sel) = Selector::parse("link[rel][href]") {
        out.canonical = doc
            .select(&sel)
            .filter(|l| has_token(l.value().attr("rel"), "canonical"))
            .find_map(|l| resolve(&base, l.value().attr("href")?));
    }

    let mut seen = std::collections::HashSet::new();
    if let Ok(sel) = Selector::parse("a[href], area[href], iframe[src], frame[src]") {
        for el in doc.select(&sel) {
            if out.links.len() >= MAX_LINKS_PER_PAGE {
                break;
            }
            let v = el.value();
            if has_token(v.attr("rel"), "nofollow") {
                continue;
            }
            let Some(target) = v.attr("href").or_else(|| v.attr("src")) else {
                continue;
            };
            if let Some(url) = resolve(&base, target)
                && seen.insert(url.as_str().to_string())
            {
                out.links.push(url);
            }
        }
    }
    out
}

fn first_attr<'a>(doc: &'a Html, selector: &str, attr: &str) -> Option<&'a str> {
    let sel = Selector::parse(selector).ok()?;
    doc.select(&sel).find_map(|e| e.value().attr(attr))
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| {
        v.split_ascii_whitespace()
            .any(|t| t.eq_ignore_ascii_case(token))
    })
}

/// Resolves an href against `base` and normalises it; `None` for non-http(s) targets (`mailto:`,
/// `javascript:`, `tel:`, `data:` …) and unparsable ones.
pub fn resolve(base: &Url, href: &str) -> Option<Url> {
    let href = href.trim();
    if href.is_empty() {
        return None;
    }
    normalise(&base.join(href).ok()?)
}

/// The form URLs are compared in: http(s) only, fragment removed. The url crate has already
/// lowercased the host, removed the default port, resolved dot segments and percent-encoded.
pub fn normalise(url: &Url) -> Option<Url> {
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return None;
    }
    let mut url = url.clone();
    url.set_fragment(None);
    Some(url)
}

/// Directives from an `X-Robots-Tag` header value. Directives after `agent:` apply only when the
/// agent is us (`KotobaBot: noindex`); unprefixed ones apply to everyone.
pub fn x_robots_tag(value: &str) -> RobotsDirectives {
    // Directives that legitimately contain a colon, so their prefix is not a user agent.
    const VALUED: [&str; 4] = [
        "unavailable_after",
        "max-snippet",
        "max-image-preview",
        "max-video-preview",
    ];
    let mut out = RobotsDirectives::default();
    let mut for_us = true;
    for part in value.split(',') {
        let mut directive = part.trim();
        if let Some((prefix, rest)) = directive.split_once(':') {
            let prefix = prefix.trim();
            if !VALUED.iter().any(|v| prefix.eq_ignore_ascii_case(v)) {
                for_us = prefix.eq_ignore_ascii_case(ROBOTS_TOKEN);
                directive = rest.trim();
            }
        }
        if for_us {
            out.apply(directive);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn links_are_resolved_normalised_and_filtered() {
        let html = r#"<html><head>
            <link rel="Canonical" href="/ja/about#top">
            <meta name="ROBOTS" content="NOINDEX">
        </head><body>
            <a href="contact.html#form">contact</a>
            <a href="HTTP://Example.JP:80/a/../b?q=1">b</a>
            <a href="https://example.jp:443/c">c</a>
            <a href="mailto:info@example.jp">mail</a>
            <a href="javascript:void(0)">js</a>
            <a href="tel:+81-3-0000-0000">tel</a>
            <a href="  ">blank</a>
            <a href="/login" rel="nofollow">login</a>
            <a href="contact.html">again</a>
            <iframe src="/embed/map"></iframe>
            <a href="http://[::1">broken</a>
        </body></html>"#;
        let p = extract(html, &u("http://example.jp/ja/index.html"));
        assert_eq!(
            p.links,
            vec![
                u("http://example.jp/ja/contact.html"),
                u("http://example.jp/b?q=1"),
                u("https://example.jp/c"),
                u("http://example.jp/embed/map"),
            ]
        );
        assert_eq!(p.links[2].as_str(), "https://example.jp/c");
        assert_eq!(p.canonical, Some(u("http://example.jp/ja/about")));
        assert_eq!(
            p.directives,
            RobotsDirectives {
                noindex: true,
                nofollow: false
            }
        );
    }

    #[test]
    fn base_href_and_meta_none() {
        let html = r#"<base href="https://cdn.example.jp/docs/"><meta name="kotobabot" content="none"><a href="x">x</a>"#;
        let p = extract(html, &u("https://example.jp/"));
        assert_eq!(p.links, vec![u("https://cdn.example.jp/docs/x")]);
        assert!(p.directives.noindex && p.directives.nofollow);
        // A javascript: base is ignored.
        let p = extract(
            r#"<base href="javascript:x"><a href="y">"#,
            &u("https://e.jp/d/"),
        );
        assert_eq!(p.links, vec![u("https://e.jp/d/y")]);
    }

    #[test]
    fn x_robots_tag_agents() {
        assert!(x_robots_tag("noindex").noindex);
        assert!(!x_robots_tag("googlebot: nofollow, noindex").noindex);
        let d = x_robots_tag("googlebot: noindex, KotobaBot: nofollow");
        assert!(!d.noindex && d.nofollow);
        let d = x_robots_tag("unavailable_after: 25 Jun 2010 15:00:00 PST, noindex");
        assert!(d.noindex);
        assert_eq!(x_robots_tag(""), RobotsDirectives::default());
    }

    #[test]
    fn malformed_html_does_not_panic() {
        for html in [
            "",
            "<",
            "<a href=",
            "<a href='http://%zz'>",
            "<<<<>>>><a href=\"\u{0}\">",
            "<html><a href=\"//\">",
            "<a href=\"http://a.jp/\u{FFFF}\">",
        ] {
            let _ = extract(html, &u("http://a.jp/"));
        }
        let many = "<a href=\"/x\">x</a>".repeat(10).to_string()
            + &(0..6000)
                .map(|i| format!("<a href=\"/p{i}\">"))
                .collect::<String>();
        assert_eq!(
            extract(&many, &u("http://a.jp/")).links.len(),
            MAX_LINKS_PER_PAGE
        );
    }
}
