//! Webhook burst benchmark: does a burst of 10,000 webhook events slow chat down, and how fast does the
//! local worker deliver them?
//!
//!   cargo run -p kotoba-tests --example webhook_burst_bench [-- REQUESTS EVENTS]   # default 100 10000
//!
//! Set-up as `chat_bench`: the local runner in-process (embedded backend, its webhook worker running),
//! the local OpenAI-compatible peer answering instantly, a `pro` tenant with the standard test site
//! trained. A second tenant has one webhook endpoint on a loopback receiver that answers 200 at once.
//! Then, on one keep-alive connection, one chat request at a time:
//! - quiet: REQUESTS chat requests with no webhook traffic;
//! - burst: EVENTS events enqueued for the second tenant (`webhooks::emit`, 8 tasks) while REQUESTS
//!   chat requests run;
//! - draining: REQUESTS chat requests while the worker delivers the backlog; then the time until the
//!   receiver has every delivery.
//!
//! Ten warm-up requests are not counted. Only loopback addresses are used.
//!
//! The whole run is made twice, in one process, one after the other, each on a fresh runner and data
//! directory: with the local runner's background work (the webhook worker) on equal terms with
//! requests for the embedded database (`KOTOBA_BACKGROUND_YIELDS=false`, the baseline) and yielding
//! to them (`true`, the default).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kotoba_tests::peer::{ChatMode, ModelPeer};
use kotoba_tests::site::{TestSite, standard_site};
use kotoba_tests::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;

fn quantile(samples: &[Duration], q: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1].as_secs_f64() * 1e3
}

async fn chat_round(app: &TestApp, key: &str, site_id: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let r = app
            .post(
                "/api/chat",
                key,
                json!({"site_id": site_id, "message": format!("What are your opening hours? ({i})")}),
            )
            .await;
        out.push(t.elapsed());
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    out
}

/// One run's measurements.
struct Run {
    quiet: Vec<Duration>,
    during: Vec<Duration>,
    draining: Vec<Duration>,
    chat_phase: Duration,
    enqueued: Duration,
    backlog: usize,
    delivered: Duration,
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runs = [
        (
            "equal terms (`false`, baseline)",
            run(false, requests, events).await,
        ),
        (
            "yields to requests (`true`, default)",
            run(true, requests, events).await,
        ),
    ];
    println!(
        "chat requests: {requests} per phase, sequential, one connection; events: {events}; cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| background work | chat quiet p50 / p99 (ms) | while enqueued p50 / p99 | while draining p50 / p99 | events enqueued in | all delivered after |"
    );
    println!("|---|---|---|---|---|---|");
    for (work, r) in &runs {
        let pair = |s: &[Duration]| format!("{:.2} / {:.2}", quantile(s, 0.5), quantile(s, 0.99));
        println!(
            "| {work} | {} | {} | {} | {:.1} s | {:.1} s ({:.0}/s; {} left after the enqueue phase, whose chats took {:.1} s) |",
            pair(&r.quiet),
            pair(&r.during),
            pair(&r.draining),
            r.enqueued.as_secs_f64(),
            r.delivered.as_secs_f64(),
            events as f64 / r.delivered.as_secs_f64(),
            r.backlog,
            r.chat_phase.as_secs_f64(),
        );
    }
}

async fn run(yields: bool, requests: usize, events: usize) -> Run {
    let peer = ModelPeer::start(ChatMode::Reply {
        reply: "We are open from 9am to 5pm on weekends.".into(),
        delay: Duration::ZERO,
    })
    .await;
    let mut vars = peer.vars(Some("gpt-4o-mini"), Some("text-embedding-3-small"));
    vars.push(("RUST_LOG".into(), "error".into()));
    // Hundreds of chats of one new tenant in an hour are a burst to the anomaly detector: not here.
    vars.push(("KOTOBA_ANOMALY_MIN_BASELINE".into(), "1000000".into()));
    vars.push(("KOTOBA_BACKGROUND_YIELDS".into(), yields.to_string()));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut app = TestApp::spawn_with(Backend::Embedded, &extra).await;
    let site = TestSite::start().await;
    standard_site(&site);
    let (tenant, key) = app.create_tenant("pro").await;
    app.set_subscription(&tenant, "active").await;
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // The receiving tenant and its endpoint.
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, receiver).await;
    });
    let (hook_tenant, hook_key) = app.create_tenant("pro").await;
    let r = app
        .post(
            "/api/webhooks",
            &hook_key,
            json!({"url": url, "events": ["credits.low"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let hook_tenant = shared::ids::TenantId::parse(&hook_tenant).unwrap();

    chat_round(&app, &key, &site_id, 10).await;
    let quiet = chat_round(&app, &key, &site_id, requests).await;

    let started = Instant::now();
    let per_task = events.div_ceil(8);
    let mut producers = Vec::new();
    for t in 0..8 {
        let platform = app.platform.clone();
        let tenant = hook_tenant.clone();
        let n = per_task.min(events.saturating_sub(t * per_task));
        producers.push(tokio::spawn(async move {
            for i in 0..n {
                let event =
                    shared::webhooks::Event::credits_low(platform.clock.now(), i as i64, 1_000);
                shared::webhooks::emit_to(
                    platform.webhook_queue.as_ref(),
                    platform.ids.as_ref(),
                    &tenant,
                    event,
                )
                .await
                .expect("queued");
            }
        }));
    }
    let during = chat_round(&app, &key, &site_id, requests).await;
    let chat_done = started.elapsed();
    for p in producers {
        p.await.unwrap();
    }
    let enqueued = started.elapsed();
    // Enqueueing is over; the worker is still delivering.
    let backlog = events - received.load(Ordering::SeqCst);
    let draining = chat_round(&app, &key, &site_id, requests).await;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while received.load(Ordering::SeqCst) < events {
        assert!(
            Instant::now() < deadline,
            "only {} of {events} delivered",
            received.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // poll:
    }
    let delivered = started.elapsed();
    app.stop().await;
    Run {
        quiet,
        during,
        draining,
        chat_phase: chat_done,
        enqueued,
        backlog,
        delivered,
    }
}
