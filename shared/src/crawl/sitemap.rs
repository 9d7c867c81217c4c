//! sitemaps.org XML: `<urlset>` (pages) and `<sitemapindex>` (more sitemaps). Uncompressed only.

use quick_xml::Reader;
use quick_xml::events::Event;

/// The sitemap protocol's per-file limit; more entries than this are ignored.
pub const MAX_SITEMAP_ENTRIES: usize = 50_000;

/// A parsed sitemap file: the `<loc>` values, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SitemapDoc {
    /// `<urlset>`: page URLs.
    UrlSet(Vec<String>),
    /// `<sitemapindex>`: URLs of further sitemaps.
    Index(Vec<String>),
}

/// Why a body is not a usable sitemap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SitemapError {
    #[error("not a sitemap (root element {0:?})")]
    NotASitemap(String),
    #[error("malformed sitemap XML: {0}")]
    Malformed(String),
}

/// Parses a sitemap or sitemap index. XML errors after the root element stop parsing but keep the
/// URLs read so far (a truncated file still lists its first pages). Entities are not expanded beyond
/// XML's predefined ones and character references, so there is no entity-expansion attack surface.
pub fn parse_sitemap(body: &[u8], max_entries: usize) -> Result<SitemapDoc, SitemapError> {
    // Sitemaps must be UTF-8; a stray invalid byte should not lose the whole file.
    let text = String::from_utf8_lossy(body);
    let mut reader = Reader::from_str(&text);
    let mut is_index: Option<bool> = None;
    let mut locs = Vec::new();
    let mut in_loc = false;
    let mut current = String::new();
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) if is_index.is_some() => {
                tracing::debug!(error = %e, "sitemap XML error; keeping the URLs read so far");
                break;
            }
            Err(e) => return Err(SitemapError::Malformed(e.to_string())),
        };
        match event {
            Event::Start(e) | Event::Empty(e) if is_index.is_none() => {
                let root = e.local_name().as_ref().to_string();
                is_index = match root.as_str() {
                    "urlset" => Some(false),
                    "sitemapindex" => Some(true),
                    _ => return Err(SitemapError::NotASitemap(root)),
                };
            }
            Event::Start(e) if e.local_name().as_ref() == "loc" => {
                in_loc = true;
                current.clear();
            }
            Event::End(e) if in_loc && e.local_name().as_ref() == "loc" => {
                in_loc = false;
                let loc = current.trim();
                if !loc.is_empty() {
                    locs.push(loc.to_string());
                    if locs.len() >= max_entries {
                        break;
                    }
                }
            }
            Event::Text(t) if in_loc => current.push_str(&t.xml10_content()),
            Event::CData(t) if in_loc => current.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_loc => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    _ => quick_xml::escape::unescape(&format!("&{};", &*r))
                        .ok()
                        .map(|s| s.into_owned()),
                };
                current.push_str(&resolved.unwrap_or_default());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    match is_index {
        Some(true) => Ok(SitemapDoc::Index(locs)),
        Some(false) => Ok(SitemapDoc::UrlSet(locs)),
        None => Err(SitemapError::NotASitemap(String::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlset_with_entities_and_namespaces() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc> https://example.jp/a?x=1&amp;y=2 </loc><lastmod>2024-01-01</lastmod></url>
  <url><loc><![CDATA[https://example.jp/b]]></loc></url>
  <url><loc>https://example.jp/&#x65E5;</loc></url>
  <url><loc></loc></url>
</urlset>"#;
        assert_eq!(
            parse_sitemap(xml, 100).unwrap(),
            SitemapDoc::UrlSet(vec![
                "https://example.jp/a?x=1&y=2".into(),
                "https://example.jp/b".into(),
                "https://example.jp/日".into(),
            ])
        );
    }

    #[test]
    fn index_with_prefixed_names() {
        let xml = br#"<sm:sitemapindex xmlns:sm="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sm:sitemap><sm:loc>https://example.jp/s1.xml</sm:loc></sm:sitemap>
  <sm:sitemap><sm:loc>https://example.jp/s2.xml</sm:loc></sm:sitemap>
</sm:sitemapindex>"#;
        assert_eq!(
            parse_sitemap(xml, 100).unwrap(),
            SitemapDoc::Index(vec![
                "https://example.jp/s1.xml".into(),
                "https://example.jp/s2.xml".into()
            ])
        );
    }

    #[test]
    fn limits_and_bad_input() {
        let many: String = (0..10)
            .map(|i| format!("<url><loc>https://e.jp/{i}</loc></url>"))
            .collect();
        let xml = format!("<urlset>{many}</urlset>");
        match parse_sitemap(xml.as_bytes(), 3).unwrap() {
            SitemapDoc::UrlSet(l) => assert_eq!(l.len(), 3),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_sitemap(b"<html><body>404</body></html>", 10),
            Err(SitemapError::NotASitemap("html".into()))
        );
        assert!(parse_sitemap(b"", 10).is_err());
        assert!(parse_sitemap(b"not xml at all", 10).is_err());
        // Truncated after the root: keeps what it read.
        assert_eq!(
            parse_sitemap(
                b"<urlset><url><loc>https://e.jp/1</loc></url><url><loc>htt",
                10
            )
            .unwrap(),
            SitemapDoc::UrlSet(vec!["https://e.jp/1".into()])
        );
        let _ = parse_sitemap(b"<urlset><loc>&bogus;</loc></urlset>", 10);
        let _ = parse_sitemap(
            b"<!DOCTYPE x [<!ENTITY a \"aaaa\">]><urlset><loc>&a;</loc></urlset>",
            10,
        );
    }
}
