//! The sample site the demo site is trained on: a bilingual (ja/en) FAQ of a fictional hotel under
//! `/demo/site/`, embedded in the binary, with its own sitemap (announced in `/robots.txt`) and one page
//! served in Shift_JIS, as many Japanese sites still are. Training reaches it over the runner's own
//! loopback address, through the same crawler a tenant's site goes through.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Where the sample site lives on the runner.
pub const PREFIX: &str = "/demo/site/";

/// How a page goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf8,
    /// Kept as UTF-8 in the repository (readable, diffable) and encoded when served.
    ShiftJis,
}

/// `(path under PREFIX, source, encoding)`. `index.html` is also served as the directory itself.
const PAGES: &[(&str, &str, Encoding)] = &[
    (
        "index.html",
        include_str!("../site/index.html"),
        Encoding::Utf8,
    ),
    (
        "en/checkin.html",
        include_str!("../site/en/checkin.html"),
        Encoding::Utf8,
    ),
    (
        "en/dining.html",
        include_str!("../site/en/dining.html"),
        Encoding::Utf8,
    ),
    (
        "en/access.html",
        include_str!("../site/en/access.html"),
        Encoding::Utf8,
    ),
    // Linked from nowhere: only the sitemap leads to it.
    (
        "en/policies.html",
        include_str!("../site/en/policies.html"),
        Encoding::Utf8,
    ),
    (
        "ja/index.html",
        include_str!("../site/ja/index.html"),
        Encoding::Utf8,
    ),
    (
        "ja/checkin.html",
        include_str!("../site/ja/checkin.html"),
        Encoding::Utf8,
    ),
    (
        "ja/access.html",
        include_str!("../site/ja/access.html"),
        Encoding::Utf8,
    ),
    (
        "ja/onsen.html",
        include_str!("../site/ja/onsen.html"),
        Encoding::ShiftJis,
    ),
];

/// How many pages a full crawl of the sample site finds (the index is reachable both as `/demo/site/`
/// and `index.html`; the sitemap and links use the directory URLs, so each page is crawled once).
pub const PAGE_COUNT: usize = PAGES.len();

/// A fingerprint of the pages (FNV-1a over paths and sources, stable across builds), so a runner whose
/// sample site changed re-trains the demo site instead of serving an index of the old pages.
pub fn fingerprint() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (path, source, _) in PAGES {
        for byte in path.bytes().chain([0]).chain(source.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The sample site's routes, and `/robots.txt` pointing crawlers at its sitemap.
pub fn routes() -> Router {
    Router::new()
        .route("/robots.txt", get(robots))
        .route("/demo/site/sitemap.xml", get(sitemap))
        .route("/demo/site/", get(|| async { page("") }))
        .route(
            "/demo/site/{*path}",
            get(|Path(path): Path<String>| async move { page(&path) }),
        )
}

/// The page a path names (`""` and `ja/` are directory URLs for their `index.html`).
fn lookup(path: &str) -> Option<(&'static str, Encoding)> {
    let path = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_string()
    };
    PAGES
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, source, encoding)| (*source, *encoding))
}

fn page(path: &str) -> Response {
    let Some((source, encoding)) = lookup(path) else {
        return (StatusCode::NOT_FOUND, "no such page on the sample site\n").into_response();
    };
    let (bytes, content_type) = match encoding {
        Encoding::Utf8 => (source.as_bytes().to_vec(), "text/html; charset=utf-8"),
        Encoding::ShiftJis => {
            // A test checks every character maps; one that did not would go out as a numeric
            // character reference, which still decodes.
            let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(source);
            (bytes.into_owned(), "text/html; charset=Shift_JIS")
        }
    };
    let mut response = bytes.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The base URL the request came in on, so the sitemap's absolute URLs work on any port.
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn robots(headers: HeaderMap) -> impl IntoResponse {
    let body = format!(
        "User-agent: *\nDisallow: /api/\nSitemap: {}{PREFIX}sitemap.xml\n",
        origin(&headers)
    );
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body)
}

async fn sitemap(headers: HeaderMap) -> impl IntoResponse {
    let origin = origin(&headers);
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for (path, _, _) in PAGES {
        let path = path.strip_suffix("index.html").unwrap_or(path);
        xml.push_str(&format!("  <url><loc>{origin}{PREFIX}{path}</loc></url>\n"));
    }
    xml.push_str("</urlset>\n");
    ([(header::CONTENT_TYPE, "application/xml")], xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_encodes_exactly() {
        for (path, source, encoding) in PAGES {
            if *encoding == Encoding::ShiftJis {
                let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(source);
                assert!(!unmappable, "{path}");
                assert!(
                    std::str::from_utf8(&bytes).is_err(),
                    "{path} is really Shift_JIS"
                );
                let (back, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
                assert!(!bad);
                assert_eq!(back, *source);
                assert!(source.contains(r#"<meta charset="Shift_JIS">"#));
            }
        }
    }

    #[test]
    fn the_fingerprint_is_stable_and_covers_every_page() {
        assert_eq!(fingerprint(), fingerprint());
        assert_eq!(fingerprint().len(), 16);
        assert_eq!(PAGE_COUNT, 9);
    }

    #[test]
    fn directory_urls_serve_their_index() {
        assert!(lookup("").unwrap().0.contains("Frequently asked questions"));
        assert!(lookup("ja/").unwrap().0.contains("よくあるご質問"));
        assert!(lookup("en/nothing.html").is_none());
        assert!(lookup("../Cargo.toml").is_none());
    }

    #[test]
    fn the_host_header_cannot_inject_markup() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("evil\"><x>"));
        assert_eq!(origin(&headers), "http://127.0.0.1");
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:3000"));
        assert_eq!(origin(&headers), "http://127.0.0.1:3000");
    }
}
