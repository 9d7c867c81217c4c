//! The tenant console: a single-page app served at `/console` and `/console/{proxy+}`.
//!
//! The app (functions/console/app: Preact and uPlot, bundled by esbuild) is built by `build.rs` and
//! embedded in the binary, so a deployment serves exactly the bundle it was built with. Every response
//! carries a strong ETag (the body's SHA-256; `If-None-Match` answers 304) and a strict
//! Content-Security-Policy: scripts, styles and connections from this origin only, plus Stripe.js's
//! origin for the payment element. Bundles are also embedded gzipped (at build time) and sent so to
//! browsers that accept it (`Vary: Accept-Encoding`, a validator per encoding). Hashed bundle files are cached for a year (`immutable`); the page
//! itself is revalidated on every load (`no-cache`), so a deployment reaches browsers at once. Paths
//! that are not files are the app's own routes (`/console/sites/…`): they get the page, and the app's
//! router shows the view. A missing file under `/console/assets/` is a 404, never the page.

/// The secret variables this function's code reads: none (it serves static files).
pub const SECRETS: &[&str] = &[];

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use url::Url;

use shared::config::Config;
use shared::http::ApiError;

mod built {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// Where the console is mounted.
pub const BASE: &str = "/console";

/// Hashed bundle files never change under their name.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The page names the current bundle: always revalidated (a 304 costs one round trip).
pub const REVALIDATE: &str = "no-cache";

/// The widget preview frame's page: it runs the real widget, whose `<style>` is admitted by its hash.
const PREVIEW_PAGE: &str = "preview.html";
const INDEX_PAGE: &str = "index.html";
/// Build facts (`meta/…`), embedded but never served.
const META_PREFIX: &str = "meta/";

/// One file as served.
#[derive(Debug, Clone)]
pub struct Asset {
    pub body: Arc<[u8]>,
    pub content_type: &'static str,
    pub etag: String,
    pub cache_control: &'static str,
    pub csp: Arc<str>,
    /// The same bytes gzipped at build time (bundles only), with their own validator.
    pub gzip: Option<(Arc<[u8]>, String)>,
}

/// The console's files and headers, built once per process.
#[derive(Debug)]
pub struct Console {
    files: HashMap<&'static str, Asset>,
    index: Asset,
}

impl Console {
    /// The embedded app, with the Content-Security-Policy admitting Stripe.js from `stripe_js`.
    pub fn new(stripe_js: &Url) -> Self {
        let meta = |name: &str| {
            built::FILES
                .iter()
                .find(|(path, _)| *path == format!("{META_PREFIX}{name}"))
                .map(|(_, body)| String::from_utf8_lossy(body).trim().to_string())
                .unwrap_or_default()
        };
        let csp: Arc<str> = page_csp(stripe_js).into();
        let preview_csp: Arc<str> = preview_csp(&meta("widget-style-hash")).into();
        let mut files = HashMap::new();
        let gzipped = |path: &str| {
            built::FILES
                .iter()
                .find(|(p, _)| p.strip_suffix(".gz") == Some(path))
                .map(|(_, body)| {
                    let body: Arc<[u8]> = (*body).into();
                    let tag = etag(&body);
                    (body, tag)
                })
        };
        for (path, body) in built::FILES {
            if path.starts_with(META_PREFIX) || path.ends_with(".gz") {
                continue;
            }
            let body: Arc<[u8]> = if *path == INDEX_PAGE {
                // The page tells the app where Stripe.js is (the only setting it needs from here).
                String::from_utf8_lossy(body)
                    .replace(
                        "__KOTOBA_STRIPE_JS__",
                        &escape_attribute(stripe_js.as_str()),
                    )
                    .into_bytes()
                    .into()
            } else {
                (*body).into()
            };
            let page = path.ends_with(".html");
            files.insert(
                *path,
                Asset {
                    etag: etag(&body),
                    body,
                    content_type: content_type(path),
                    cache_control: if page { REVALIDATE } else { IMMUTABLE },
                    csp: if *path == PREVIEW_PAGE {
                        preview_csp.clone()
                    } else {
                        csp.clone()
                    },
                    gzip: gzipped(path),
                },
            );
        }
        let index = files
            .get(INDEX_PAGE)
            .cloned()
            .unwrap_or_else(|| unreachable!("build.rs always writes index.html"));
        Self { files, index }
    }

    /// What `/console/{path}` serves: a file, the page for an app route, or nothing (a missing asset).
    pub fn lookup(&self, path: &str) -> Option<&Asset> {
        let path = path.trim_start_matches('/');
        if let Some(file) = self.files.get(path) {
            return Some(file);
        }
        if path.starts_with("assets/") || path.starts_with(META_PREFIX) {
            return None;
        }
        Some(&self.index)
    }

    /// Every file the app consists of (paths under `/console/`).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().copied()
    }
}

/// The policy of the console's page: this origin, and Stripe for the payment element (Stripe.js's own
/// origin; on Stripe itself, also the API and the 3-D Secure frames its documentation lists).
pub fn page_csp(stripe_js: &Url) -> String {
    let stripe = stripe_js.origin().ascii_serialization();
    let (api, frames) = if stripe_js.host_str() == Some("js.stripe.com") {
        (
            " https://api.stripe.com".to_string(),
            " https://hooks.stripe.com".to_string(),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        "default-src 'self'; script-src 'self' {stripe}; style-src 'self'; img-src 'self' data:; \
         font-src 'self'; connect-src 'self' {stripe}{api}; frame-src 'self' {stripe}{frames}; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The policy of the widget preview frame: the console's bundle, the widget's stylesheet by hash, and
/// the https icons a tenant may give the bubble; framed only by the console.
pub fn preview_csp(widget_style_hash: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' {widget_style_hash}; \
         img-src 'self' data: https:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'self'"
    )
}

fn escape_attribute(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The type of a file, by extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A strong validator: the body's SHA-256, which changes exactly when the bytes do.
pub fn etag(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..16]))
}

/// Whether `If-None-Match` names this ETag (`*` included); compared weakly, as RFC 9110 asks.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// The routes, without the shared edge layers (the local runner merges several functions' routes).
pub fn routes(config: &Config) -> Router {
    let console = Arc::new(Console::new(&config.stripe_js_url));
    Router::new()
        .route(BASE, get(page))
        .route("/console/", get(page))
        .route("/console/{*path}", get(file))
        .with_state(console)
}

/// The function as deployed: the routes plus the shared edge (request ids, JSON 404s elsewhere).
pub fn app(config: &Config) -> Router {
    shared::http::finish(routes(config))
}

async fn page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    serve(&console.index, &headers)
}

async fn file(
    State(console): State<Arc<Console>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    match console.lookup(&path) {
        Some(asset) => serve(asset, &headers),
        None => ApiError::NotFound("no such console file".into()).into_response(),
    }
}

/// Whether the request accepts gzip (`Accept-Encoding: gzip`, not with `q=0`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let (body, tag, gzipped) = match &asset.gzip {
        Some((body, tag)) if accepts_gzip(request) => (body, tag, true),
        _ => (&asset.body, &asset.etag, false),
    };
    let mut response = if not_modified(request, tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body.to_vec()).into_response()
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, value);
    }
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if asset.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(asset.cache_control),
    );
    if let Ok(value) = HeaderValue::from_str(&asset.csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console() -> Console {
        Console::new(&Url::parse("https://js.stripe.com/v3/").unwrap())
    }

    #[test]
    fn app_routes_get_the_page_and_missing_assets_do_not() {
        let c = console();
        let index = c.lookup("index.html").unwrap().etag.clone();
        assert_eq!(c.lookup("").unwrap().etag, index);
        assert_eq!(c.lookup("sites/site_123/prompt").unwrap().etag, index);
        assert!(c.lookup("assets/app-MISSING.js").is_none());
        assert!(c.lookup("meta/widget-style-hash").is_none());
        let js = c
            .paths()
            .find(|p| p.starts_with("assets/app-") && p.ends_with(".js"));
        let js = js.expect("the bundle is embedded");
        let asset = c.lookup(js).unwrap();
        assert_eq!(asset.content_type, "text/javascript; charset=utf-8");
        assert_eq!(asset.cache_control, IMMUTABLE);
        assert_eq!(c.lookup("").unwrap().cache_control, REVALIDATE);
    }

    #[test]
    fn the_page_names_its_bundle_and_runs_no_inline_script() {
        let c = console();
        let page = String::from_utf8(c.lookup("").unwrap().body.to_vec()).unwrap();
        for tag in page.split("<script").skip(1) {
            let open = &tag[..tag.find('>').unwrap()];
            assert!(
                open.contains("src=\"/console/assets/"),
                "inline script: {tag}"
            );
        }
        assert!(!page.contains("style="), "no inline style attributes");
        assert!(page.contains("https://js.stripe.com/v3/"), "Stripe.js URL");
        for path in c.paths().filter(|p| p.starts_with("assets/")) {
            if path.starts_with("assets/app-") {
                assert!(page.contains(&format!("/console/{path}")), "{path} linked");
            }
        }
    }

    #[test]
    fn the_policy_admits_only_this_origin_and_stripe() {
        let csp = page_csp(&Url::parse("http://127.0.0.1:4242/js.stripe.com/v3/").unwrap());
        assert!(csp.contains("script-src 'self' http://127.0.0.1:4242;"));
        assert!(csp.contains("default-src 'self'"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert!(
            !csp.contains("stripe.com"),
            "a test Stripe.js admits no real Stripe origin"
        );
        let real = page_csp(&Url::parse("https://js.stripe.com/v3/").unwrap());
        assert!(real.contains("script-src 'self' https://js.stripe.com;"));
        assert!(real.contains("connect-src 'self' https://js.stripe.com https://api.stripe.com;"));
        let preview = console();
        let preview = &preview.lookup(PREVIEW_PAGE).unwrap().csp;
        assert!(preview.contains("style-src 'self' 'sha256-"), "{preview}");
        assert!(!preview.contains("unsafe-inline"));
    }

    #[test]
    fn bundles_go_gzipped_to_browsers_that_accept_it() {
        let c = console();
        let js = c
            .paths()
            .find(|p| p.starts_with("assets/app-") && p.ends_with(".js"))
            .unwrap();
        let asset = c.lookup(js).unwrap();
        let (gz, gz_tag) = asset.gzip.clone().expect("the bundle has a gzip variant");
        assert!(gz.len() * 2 < asset.body.len(), "gzip saves at least half");
        assert_ne!(gz_tag, asset.etag, "each encoding has its own validator");
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip"),
        );
        assert!(accepts_gzip(&h));
        let r = serve(asset, &h);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()[header::ETAG], gz_tag.as_str());
        assert_eq!(r.headers()[header::VARY], "accept-encoding");
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&gz_tag).unwrap(),
        );
        assert_eq!(serve(asset, &h).status(), StatusCode::NOT_MODIFIED);
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0, identity"),
        );
        assert!(!accepts_gzip(&h));
        let r = serve(asset, &h);
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "the gzip validator does not match the identity body"
        );
        assert!(
            c.lookup("").unwrap().gzip.is_none(),
            "the page is served as written"
        );
    }

    #[test]
    fn if_none_match_is_compared_weakly_and_accepts_lists() {
        let tag = etag(b"body");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &tag));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{tag}")).unwrap(),
        );
        assert!(not_modified(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&h, &tag));
    }

    #[test]
    fn the_app_never_parses_html_or_evaluates_strings() {
        fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("app/src"),
            &mut files,
        );
        let mut seen = 0;
        for path in files {
            let code = std::fs::read_to_string(&path).unwrap();
            seen += 1;
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "dangerouslySetInnerHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!code.contains(banned), "{} uses {banned}", path.display());
            }
        }
        assert!(seen > 3, "the app's sources were read");
    }
}
