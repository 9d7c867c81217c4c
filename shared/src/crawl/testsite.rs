//! Test sites served on loopback: fixed responses per path, with hit counting, the request headers
//! recorded, and every accepted TCP connection counted (a refused fetch must not even connect).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::serve::ListenerExt;
use url::Url;

/// A canned response.
#[derive(Clone)]
pub struct Route {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send the body as a stream of 1 KiB chunks (no Content-Length).
    chunked: bool,
    /// Wait this long before answering.
    delay: Option<std::time::Duration>,
}

impl Route {
    pub fn html(body: &str) -> Self {
        Self::bytes("text/html; charset=utf-8", body.as_bytes().to_vec())
    }

    pub fn bytes(content_type: &str, body: Vec<u8>) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            body,
            chunked: false,
            delay: None,
        }
    }

    /// A body with no Content-Type header at all.
    pub fn untyped(body: Vec<u8>) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body,
            chunked: false,
            delay: None,
        }
    }

    pub fn redirect(status: u16, location: &str) -> Self {
        Self {
            status,
            headers: vec![("location".into(), location.into())],
            body: Vec::new(),
            chunked: false,
            delay: None,
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
            delay: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    pub fn delayed(mut self, delay: std::time::Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

#[derive(Default)]
struct SiteState {
    routes: Mutex<HashMap<String, Route>>,
    hits: Mutex<HashMap<String, usize>>,
    requests: Mutex<Vec<(String, HashMap<String, String>)>>,
    accepted: AtomicUsize,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

/// Counts a request as in flight while its handler runs.
struct InFlight<'a>(&'a SiteState);

impl<'a> InFlight<'a> {
    fn enter(state: &'a SiteState) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running test site.
#[derive(Clone)]
pub struct TestSite {
    pub addr: SocketAddr,
    state: Arc<SiteState>,
}

impl TestSite {
    /// Serves on `ip` (a loopback address) on a free port until the test's runtime ends.
    pub async fn serve(ip: &str) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback(), "test sites live on loopback only");
        let state = Arc::new(SiteState::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let counted = state.clone();
        let listener = listener.tap_io(move |stream| {
            crate::http::sockets::set_nodelay(stream);
            counted.accepted.fetch_add(1, Ordering::SeqCst);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    /// `http://ip:port{path}`.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    pub fn route(&self, path: &str, route: Route) -> &Self {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), route);
        self
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// TCP connections accepted so far (counted at `accept()`, before any request is read).
    pub fn connections(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// The most requests that were ever being answered at the same moment.
    pub fn peak_in_flight(&self) -> usize {
        self.state.peak_in_flight.load(Ordering::SeqCst)
    }

    /// The lowercase request headers of every request to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<HashMap<String, String>> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
            .collect()
    }
}

async fn handle(State(state): State<Arc<SiteState>>, req: Request) -> Response {
    let _in_flight = InFlight::enter(&state);
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    state
        .requests
        .lock()
        .unwrap()
        .push((path.clone(), headers.clone()));
    let route = state.routes.lock().unwrap().get(&path).cloned();
    let route = route.unwrap_or_else(|| Route::status(404));
    // Answer If-None-Match like a real server would.
    let etag = route
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
        .map(|(_, v)| v.clone());
    if let (Some(etag), Some(inm)) = (etag, headers.get("if-none-match"))
        && *inm == etag
    {
        return Response::builder()
            .status(304)
            .header("etag", etag)
            .body(Body::empty())
            .unwrap();
    }
    if let Some(delay) = route.delay {
        tokio::time::sleep(delay).await; // sleep-ok: simulates a slow server
    }
    let mut builder = Response::builder().status(route.status);
    for (k, v) in &route.headers {
        builder = builder.header(k, v);
    }
    let body = if route.chunked {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            route.body.chunks(1024).map(|c| Ok(c.to_vec())).collect();
        Body::from_stream(futures::stream::iter(chunks))
    } else {
        Body::from(route.body)
    };
    builder.body(body).unwrap()
}
