//! Chat benchmark: latency of `POST /api/chat` through the local runner, and the platform's own share of
//! it, with an instant model peer.
//!
//!   cargo run -p kotoba-tests --example chat_bench [-- REQUESTS]      # default 300
//!
//! Set-up: the local runner in-process (embedded backend), the local OpenAI-compatible peer as chat model
//! (`gpt-4o-mini`, replying a short sentence with no delay between chunks) and embedding model, a `pro`
//! tenant and the standard test site trained. Then, on one keep-alive connection, one request at a time:
//! - baseline: `GET /api/sites/{id}` (HTTP round trip, API-key auth, one store read): the floor of any
//!   authenticated request;
//! - chat: `POST /api/chat` (auth, quota, query embedding, retrieval, prompt, streamed model call, usage
//!   and history writes). The peer adds up the time it spends inside its handlers (request parsed → last
//!   chunk produced) per request; "platform" is the request's total minus that.
//! - chat streamed: the same with `Accept: text/event-stream`, timed to the final `done` event (the
//!   answer delivered; the settle runs after it) and to the stream's end (after the settle).
//!
//! Ten warm-up requests of each kind are not counted. Only loopback addresses are used.
//!
//! Then the platform's time per stage (`shared::chat::timings`: auth, admit, reserve, retrieve, prompt,
//! first model byte, stream, settle, flushed), from the `chat timings` tracing event every answer
//! records, so a regression shows where it is. `first_byte` and `stream` include the peer's own time.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::chat::timings::{Stage, TIMINGS_TARGET};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use kotoba_tests::peer::{ChatMode, ModelPeer};
use kotoba_tests::site::{TestSite, standard_site};
use kotoba_tests::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;

const QUESTIONS: [&str; 5] = [
    "What are your opening hours on weekends?",
    "Where do you roast your beans?",
    "How much is a flat white?",
    "営業時間は何時からですか？",
    "駅からのアクセスを教えてください",
];

/// The `chat timings` events, each as its `<stage>_ms` fields.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<HashMap<&'static str, f64>>>>);

struct Fields(HashMap<&'static str, f64>);

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name(), value);
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields(HashMap::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

fn quantile(samples: &[Duration], q: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let requests: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let captured = Captured::default();
    tracing_subscriber::registry()
        .with(
            captured
                .clone()
                .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                    m.target() == TIMINGS_TARGET
                })),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .init();
    let peer = ModelPeer::start(ChatMode::Reply {
        reply: "We are open from 9am to 5pm on weekends.".into(),
        delay: Duration::ZERO,
    })
    .await;
    let mut vars = peer.vars(Some("gpt-4o-mini"), Some("text-embedding-3-small"));
    vars.push(("RUST_LOG".into(), "warn".into()));
    // Hundreds of chats of one new tenant in an hour are a burst to the anomaly detector: not here.
    vars.push(("KOTOBA_ANOMALY_MIN_BASELINE".into(), "1000000".into()));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(Backend::Embedded, &extra).await;
    let site = TestSite::start().await;
    standard_site(&site);
    let (tenant, key) = app.create_tenant("pro").await;
    let r = app
        .call(
            reqwest::Method::PUT,
            &format!("/api/admin/tenants/{tenant}/subscription"),
            Some(&app.admin_key),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // Baseline: the cheapest authenticated request.
    let path = format!("/api/sites/{site_id}");
    let mut baseline = Vec::with_capacity(requests);
    for i in 0..requests + 10 {
        let t = Instant::now();
        let r = app.get(&path, &key).await;
        let elapsed = t.elapsed();
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        if i >= 10 {
            baseline.push(elapsed);
        }
    }

    // Chat, one request at a time.
    captured.0.lock().unwrap().clear();
    let mut total = Vec::with_capacity(requests);
    let mut model = Vec::with_capacity(requests);
    let mut platform = Vec::with_capacity(requests);
    for i in 0..requests + 10 {
        let question = QUESTIONS[i % QUESTIONS.len()];
        let before = peer.state.busy_ns.load(Ordering::SeqCst);
        let t = Instant::now();
        let r = app
            .post(
                "/api/chat",
                &key,
                json!({"site_id": site_id, "message": question}),
            )
            .await;
        let elapsed = t.elapsed();
        let inside = Duration::from_nanos(peer.state.busy_ns.load(Ordering::SeqCst) - before);
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["model_used"], "gpt-4o-mini", "{:?}", r.body);
        if i >= 10 {
            total.push(elapsed);
            model.push(inside);
            platform.push(elapsed.saturating_sub(inside));
        }
    }

    let json_events: Vec<HashMap<&'static str, f64>> = captured
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains_key("total_ms"))
        .skip(10)
        .cloned()
        .collect();

    // Chat streamed (SSE), one request at a time: to the `done` event, and to the end of the stream.
    captured.0.lock().unwrap().clear();
    let mut sse_done = Vec::with_capacity(requests);
    let mut sse_end = Vec::with_capacity(requests);
    let mut sse_platform = Vec::with_capacity(requests);
    for i in 0..requests + 10 {
        use futures::StreamExt;
        let question = QUESTIONS[i % QUESTIONS.len()];
        let before = peer.state.busy_ns.load(Ordering::SeqCst);
        let t = Instant::now();
        let response = app
            .client
            .post(app.url("/api/chat"))
            .bearer_auth(&key)
            .header("accept", "text/event-stream")
            .json(&json!({"site_id": site_id, "message": question}))
            .send()
            .await
            .expect("chat sent");
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.bytes_stream();
        let (mut text, mut done) = (String::new(), None);
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
            if done.is_none() && text.contains("event: done") && text.ends_with("\n\n") {
                done = Some(t.elapsed());
            }
        }
        let end = t.elapsed();
        let done = done.unwrap_or_else(|| panic!("no done event in {text:?}"));
        let inside = Duration::from_nanos(peer.state.busy_ns.load(Ordering::SeqCst) - before);
        if i >= 10 {
            sse_done.push(done);
            sse_end.push(end);
            sse_platform.push(done.saturating_sub(inside));
        }
    }
    let sse_events: Vec<HashMap<&'static str, f64>> = captured
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains_key("total_ms"))
        .skip(10)
        .cloned()
        .collect();

    println!(
        "requests: {requests} of each kind, sequential, one connection; cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| measure | p50 (ms) | p99 (ms) |");
    println!("|---|---|---|");
    for (name, samples) in [
        ("baseline: `GET /api/sites/{id}` round trip", &baseline[..]),
        ("`POST /api/chat` total", &total[..]),
        (
            "… of which inside the model peer (embed + chat)",
            &model[..],
        ),
        ("… platform's own (total − peer)", &platform[..]),
        ("`POST /api/chat` SSE: to the `done` event", &sse_done[..]),
        ("… platform's own (to `done` − peer)", &sse_platform[..]),
        (
            "… to the end of the stream (after the settle)",
            &sse_end[..],
        ),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} |",
            quantile(samples, 0.5),
            quantile(samples, 0.99)
        );
    }

    // The stages of the counted requests (the first ten events are the warm-ups').
    stage_table("JSON", &json_events);
    stage_table("SSE", &sse_events);
}

fn stage_table(kind: &str, events: &[HashMap<&'static str, f64>]) {
    println!();
    println!(
        "stages of the {} counted {kind} chat requests (`chat timings` events; ms):",
        events.len()
    );
    println!("| stage | p50 (ms) | p99 (ms) | mean (ms) |");
    println!("|---|---|---|---|");
    let names: Vec<String> = Stage::ALL
        .iter()
        .map(|s| format!("{}_ms", s.name()))
        .chain(["total_ms".to_string()])
        .collect();
    for name in &names {
        let samples: Vec<Duration> = events
            .iter()
            .filter_map(|e| e.get(name.as_str()))
            .map(|&ms| Duration::from_secs_f64(ms / 1e3))
            .collect();
        if samples.is_empty() {
            println!("| {name} | – | – | – |");
            continue;
        }
        let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1e3 / samples.len() as f64;
        println!(
            "| {} | {:.3} | {:.3} | {:.3} |",
            name.trim_end_matches("_ms"),
            quantile(&samples, 0.5),
            quantile(&samples, 0.99),
            mean
        );
    }
}
