//! A small website on loopback for training tests: pages that can be changed, removed or slowed down,
//! ETag support (so re-crawls are conditional), and a request log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// `Location` for redirects.
    pub location: Option<String>,
}

impl Page {
    pub fn html(body: &str) -> Page {
        Page {
            status: 200,
            content_type: "text/html; charset=utf-8".into(),
            body: body.as_bytes().to_vec(),
            location: None,
        }
    }

    pub fn bytes(content_type: &str, body: Vec<u8>) -> Page {
        Page {
            status: 200,
            content_type: content_type.into(),
            body,
            location: None,
        }
    }

    pub fn redirect(status: u16, to: &str) -> Page {
        Page {
            status,
            content_type: "text/html".into(),
            body: Vec::new(),
            location: Some(to.into()),
        }
    }

    pub fn status(status: u16) -> Page {
        Page {
            status,
            content_type: "text/html".into(),
            body: b"<h1>no</h1>".to_vec(),
            location: None,
        }
    }

    fn etag(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.body.hash(&mut h);
        format!("\"{:x}\"", h.finish())
    }
}

#[derive(Default)]
pub struct SiteState {
    pub pages: Mutex<HashMap<String, Page>>,
    pub requests: Mutex<Vec<String>>,
    pub delay: Mutex<Duration>,
    /// Paths whose requests wait until released (to stop a crawl at a known point).
    pub held: Mutex<std::collections::HashSet<String>>,
    pub released: tokio::sync::Notify,
}

pub struct TestSite {
    pub base_url: String,
    pub state: Arc<SiteState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestSite {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestSite {
    pub async fn start() -> TestSite {
        let state = Arc::new(SiteState::default());
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test site");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(shared::http::sockets::nodelay(listener), app).await;
        });
        TestSite {
            base_url: format!("http://{addr}"),
            state,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn set(&self, path: &str, page: Page) {
        self.state
            .pages
            .lock()
            .unwrap()
            .insert(path.to_string(), page);
    }

    pub fn remove(&self, path: &str) {
        self.state.pages.lock().unwrap().remove(path);
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Requests for `path` wait until [`release`](Self::release).
    pub fn hold(&self, path: &str) {
        self.state.held.lock().unwrap().insert(path.to_string());
    }

    pub fn release(&self) {
        self.state.held.lock().unwrap().clear();
        self.state.released.notify_waiters();
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }
}

async fn serve(State(state): State<Arc<SiteState>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    state.requests.lock().unwrap().push(path.clone());
    loop {
        let released = state.released.notified();
        if !state.held.lock().unwrap().contains(&path) {
            break;
        }
        released.await;
    }
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() && !path.ends_with(".txt") && !path.ends_with(".xml") {
        tokio::time::sleep(delay).await; // sleep-ok: a slow web server
    }
    let page = state.pages.lock().unwrap().get(&path).cloned();
    let Some(page) = page else {
        return Response::builder()
            .status(404)
            .body(Body::from("not found"))
            .expect("response");
    };
    let etag = page.etag();
    if page.status == 200 {
        let matches = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            == Some(etag.as_str());
        if matches {
            return Response::builder()
                .status(304)
                .header(header::ETAG, etag)
                .body(Body::empty())
                .expect("response");
        }
    }
    let mut response = Response::builder()
        .status(StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK))
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&page.content_type)
                .unwrap_or(HeaderValue::from_static("text/html")),
        )
        .body(Body::from(page.body.clone()))
        .expect("response");
    if page.status == 200 {
        response
            .headers_mut()
            .insert(header::ETAG, HeaderValue::from_str(&etag).expect("etag"));
    }
    if let Some(location) = &page.location {
        response.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(location).expect("location"),
        );
    }
    response
}

/// The standard training fixture. Indexable: `/`, `/about`, `/hours`, `/menu` (via a redirect chain),
/// `/ja/sjis` (Shift_JIS), `/ja/eucjp` (EUC-JP). Not indexable: `/private/secret` (robots.txt),
/// `/noindex`, `/dup` (canonical of /about), `/gone` (404).
pub fn standard_site(site: &TestSite) {
    let base = &site.base_url;
    site.set(
        "/robots.txt",
        Page::bytes(
            "text/plain",
            format!("User-agent: *\nDisallow: /private/\n\nSitemap: {base}/sitemap.xml\n")
                .into_bytes(),
        ),
    );
    site.set(
        "/sitemap.xml",
        Page::bytes(
            "application/xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{base}/</loc></url><url><loc>{base}/about</loc></url><url><loc>{base}/hours</loc></url><url><loc>{base}/ja/sjis</loc></url><url><loc>{base}/ja/eucjp</loc></url><url><loc>{base}/noindex</loc></url></urlset>"#
            )
            .into_bytes(),
        ),
    );
    site.set("/", Page::html(r#"<html><head><title>Kotoba Coffee</title></head><body>
        <nav><a href="/about">About</a> <a href="/hours">Hours</a> <a href="/old">Menu</a> <a href="/private/secret">Staff</a>
        <a href="/dup">About us</a> <a href="/noindex">Draft</a> <a href="/gone">Old page</a> <a href="/ja/sjis">日本語</a> <a href="/ja/eucjp">アクセス</a></nav>
        <main><h1>Welcome to Kotoba Coffee</h1><p>Kotoba Coffee is a small roastery and cafe in Kyoto serving single origin coffee.</p></main>
        <footer>Copyright Kotoba Coffee</footer></body></html>"#));
    site.set("/about", Page::html(r#"<html><head><title>About us | Kotoba Coffee</title></head><body><main><h1>About us</h1>
        <h2>Our roastery</h2><p>We roast our beans every morning in small batches. Our head roaster trained in Melbourne for ten years.</p>
        </main></body></html>"#));
    site.set("/dup", Page::html(&format!(r#"<html><head><title>About (copy)</title><link rel="canonical" href="{base}/about"></head><body><main><h1>About us</h1>
        <p>We roast our beans every morning in small batches.</p></main></body></html>"#)));
    site.set("/hours", Page::html(r#"<html><head><title>Opening hours</title></head><body><main><h1>Opening hours</h1>
        <p>We are open from 8am to 6pm on weekdays and from 9am to 5pm on weekends. We are closed on national holidays.</p></main></body></html>"#));
    site.set("/old", Page::redirect(301, "/older"));
    site.set("/older", Page::redirect(302, "/menu"));
    site.set("/menu", Page::html(r#"<html><head><title>Menu</title></head><body><main><h1>Menu</h1><h2>Drinks</h2>
        <ul><li>Espresso 400 yen</li><li>Flat white 550 yen</li><li>Hojicha latte 600 yen</li></ul></main></body></html>"#));
    site.set(
        "/private/secret",
        Page::html(
            "<html><body><main><p>Staff only: the safe code is 1234.</p></main></body></html>",
        ),
    );
    site.set("/noindex", Page::html(r#"<html><head><meta name="robots" content="noindex"><title>Draft</title></head><body><main><p>Draft pricing that must not be indexed.</p></main></body></html>"#));
    let sjis_html = "<html><head><meta charset=\"Shift_JIS\"><title>営業時間のご案内</title></head><body><main><h1>営業時間</h1><p>当店の営業時間は午前八時から午後六時までです。定休日は祝日です。</p></main></body></html>";
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(sjis_html);
    site.set("/ja/sjis", Page::bytes("text/html", sjis.into_owned()));
    let euc_html = "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=EUC-JP\"><title>アクセス</title></head><body><main><h1>アクセス</h1><p>京都駅から徒歩五分、烏丸通り沿いにございます。</p></main></body></html>";
    let (euc, _, _) = encoding_rs::EUC_JP.encode(euc_html);
    site.set("/ja/eucjp", Page::bytes("text/html", euc.into_owned()));
}

/// Paths of the pages the standard site should index (canonical URLs).
pub const STANDARD_INDEXED: [&str; 6] = ["/", "/about", "/hours", "/menu", "/ja/sjis", "/ja/eucjp"];
