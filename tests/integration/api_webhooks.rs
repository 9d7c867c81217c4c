//! Outbound webhooks through the local runner, on both adapter families: every event type delivered and
//! verified by the official `standardwebhooks` library, retries under one `webhook-id`, rotation,
//! replay, the SSRF guard at creation and at delivery, disabling after three days, and isolation of a
//! hanging endpoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use kotoba_tests::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

use shared::clock::{Clock, ManualClock};
use shared::crawl::guard::{StaticResolver, SystemResolver};
use shared::ids::TenantId;
use shared::webhooks::{Event, EventType};

/// What a receiver does with a request.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers 500 this many times, then 200.
    FailFirst(usize),
    /// Never answers.
    Hang,
    /// Answers 302 to this loopback port.
    RedirectTo(u16),
}

#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = got.clone();
        let handler = move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(Received {
                        id: h("webhook-id"),
                        timestamp: h("webhook-timestamp"),
                        signature: h("webhook-signature"),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    seen.len()
                };
                match behaviour {
                    Behaviour::FailFirst(k) if n <= k => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        HeaderMap::new(),
                        "not now",
                    ),
                    Behaviour::FailFirst(_) => (StatusCode::OK, HeaderMap::new(), "thanks"),
                    Behaviour::Hang => std::future::pending().await,
                    Behaviour::RedirectTo(port) => {
                        let mut h = HeaderMap::new();
                        h.insert(
                            "location",
                            format!("http://127.0.0.1:{port}/elsewhere")
                                .parse()
                                .unwrap(),
                        );
                        (StatusCode::FOUND, h, "moved")
                    }
                }
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hook", axum::routing::post(handler));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Polls until `n` requests arrived (at most a minute).
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} deliveries arrived",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await; // poll:
        }
    }
}

/// A TCP listener that only counts connections: proof that nothing connected.
async fn connection_counter() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

/// Verifies every delivery with the official Standard Webhooks library (Python); returns its output.
fn verify_with_standardwebhooks(secret: &str, deliveries: &[Received]) -> String {
    let python =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/dev/tool"))
            .arg("standardwebhooks")
            .output()
            .expect("infra/dev/tool runs");
    assert!(
        python.status.success(),
        "{}",
        String::from_utf8_lossy(&python.stderr)
    );
    let python = String::from_utf8(python.stdout).unwrap().trim().to_string();
    let input = json!({
        "secret": secret,
        "deliveries": deliveries.iter().map(|d| json!({
            "headers": {"webhook-id": d.id, "webhook-timestamp": d.timestamp, "webhook-signature": d.signature},
            "body": d.body,
        })).collect::<Vec<_>>(),
    });
    let script = r#"
import json, sys
from standardwebhooks import Webhook
data = json.load(sys.stdin)
hook = Webhook(data["secret"])
types = [hook.verify(d["body"], d["headers"])["type"] for d in data["deliveries"]]
print("verified", len(types), " ".join(sorted(types)))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python starts");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "verification failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn create_webhook(app: &TestApp, key: &str, url: &str, events: &[&str]) -> Value {
    let r = app
        .post(
            "/api/webhooks",
            key,
            json!({"url": url, "events": events, "description": "test"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body
}

fn all_events() -> Vec<&'static str> {
    EventType::SUBSCRIBABLE.iter().map(|t| t.as_str()).collect()
}

fn one_of_each(now: time::OffsetDateTime) -> Vec<Event> {
    vec![
        Event::limit_reached(now, "chat_messages", "starter", Some("site_x")),
        Event::credits_low(now, 120, 500),
        Event::credits_purchased(now, "pur_1", 10_000, 10_120),
        Event::feedback_created(
            now,
            "site_x",
            "sess_1",
            "msg_1",
            "down",
            Some("wrong hours"),
        ),
        Event::chat_error(
            now,
            Some("site_x"),
            "unavailable",
            "model unavailable",
            Some("req-1"),
        ),
        Event::call_completed(
            now,
            "CA1",
            "+819012345678",
            "+81501234567",
            95,
            Some("booked"),
            "0.310000",
        ),
        Event::training_succeeded(now, "job_1", "site_x", json!({"pages_crawled": 12})),
        Event::training_failed(now, "job_2", "site_x", "robots.txt disallows the site"),
        Event::subscription_updated(now, "pro", "active", Some("trialing")),
    ]
}

async fn every_event_type_is_delivered_signed_rotated_and_replayed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, key) = app.create_tenant("starter").await;
    let tenant = TenantId::parse(&tenant).unwrap();
    let receiver = Receiver::start(Behaviour::FailFirst(0)).await;
    let created = create_webhook(&app, &key, &receiver.url, &all_events()).await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = created["webhook_id"].as_str().unwrap().to_string();
    // Listed without the secret.
    let listed = app.get("/api/webhooks", &key).await;
    assert_eq!(listed.body["webhooks"][0]["webhook_id"], id.as_str());
    assert!(!listed.body.to_string().contains(&secret[6..]));

    let now = app.platform.clock.now();
    for event in one_of_each(now) {
        shared::webhooks::emit(&app.platform, &tenant, event).await;
    }
    let got = receiver.wait_for(9).await;
    let verified = verify_with_standardwebhooks(&secret, &got);
    let mut types = all_events();
    types.sort();
    assert_eq!(verified, format!("verified 9 {}", types.join(" ")));
    // Each type once.
    let mut ids: Vec<_> = got.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 9);

    // Rotation: both secrets verify the next delivery.
    let rotated = app
        .post(
            &format!("/api/webhooks/{id}/rotate-secret"),
            &key,
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    shared::webhooks::emit(&app.platform, &tenant, Event::credits_low(now, 1, 2)).await;
    let got = receiver.wait_for(10).await;
    let last = got[9].clone();
    assert_eq!(last.signature.split(' ').count(), 2, "{}", last.signature);
    assert_eq!(
        verify_with_standardwebhooks(&secret, std::slice::from_ref(&last)),
        "verified 1 credits.low"
    );
    assert_eq!(
        verify_with_standardwebhooks(&new_secret, std::slice::from_ref(&last)),
        "verified 1 credits.low"
    );

    // The test ping is signed like the rest.
    let ping = app
        .post(&format!("/api/webhooks/{id}/test"), &key, json!({}))
        .await;
    assert_eq!(ping.status, StatusCode::ACCEPTED, "{:?}", ping.body);
    let got = receiver.wait_for(11).await;
    assert_eq!(got[10].id, ping.body["delivery_id"].as_str().unwrap());
    assert_eq!(
        verify_with_standardwebhooks(&new_secret, &got[10..]),
        "verified 1 ping"
    );

    // The delivery log, then a replay of the first delivery: same id, same payload.
    let log = app
        .get(&format!("/api/webhooks/{id}/deliveries"), &key)
        .await;
    assert_eq!(log.status, StatusCode::OK, "{:?}", log.body);
    let deliveries = log.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 11);
    let first = deliveries
        .iter()
        .find(|d| d["delivery_id"] == got[0].id.as_str())
        .expect("the first delivery is logged");
    assert_eq!(first["status"], "delivered");
    assert_eq!(first["attempts"][0]["status_code"], 200);
    assert_eq!(first["attempts"][0]["response_body"], "thanks");
    let replay = app
        .post(
            &format!("/api/webhooks/{id}/deliveries/{}/replay", got[0].id),
            &key,
            json!({}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{:?}", replay.body);
    let got = receiver.wait_for(12).await;
    assert_eq!(got[11].id, got[0].id);
    assert_eq!(got[11].body, got[0].body);

    // Another tenant sees none of it.
    let (_, other) = app.create_tenant("starter").await;
    assert_eq!(
        app.get("/api/webhooks", &other).await.body["webhooks"],
        json!([])
    );
    let r = app
        .get(&format!("/api/webhooks/{id}/deliveries"), &other)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .post(
            &format!("/api/webhooks/{id}/deliveries/{}/replay", got[0].id),
            &other,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_event_type_is_delivered_signed_rotated_and_replayed_embedded() {
    every_event_type_is_delivered_signed_rotated_and_replayed(Backend::Embedded).await;
}

#[tokio::test]
async fn every_event_type_is_delivered_signed_rotated_and_replayed_on_aws() {
    every_event_type_is_delivered_signed_rotated_and_replayed(Backend::Aws).await;
}

/// Takes every message off the webhook queue and hands it to the worker once; returns the records
/// the worker kept (deliveries waiting for their next attempt).
async fn drain(
    app: &TestApp,
    worker: &webhook_worker::Worker,
) -> Vec<aws_lambda_events::event::sqs::SqsMessage> {
    let mut kept = Vec::new();
    loop {
        let messages = app
            .platform
            .webhook_queue
            .receive(10, Duration::from_secs(60), Duration::from_millis(200))
            .await
            .unwrap();
        if messages.is_empty() {
            return kept;
        }
        for m in messages {
            let record =
                webhook_worker::sqs_record(&m.message_id, &m.receipt, &m.body, m.receive_count);
            if worker.handle_one(record.clone()).await {
                app.platform.webhook_queue.delete(&m.receipt).await.unwrap();
            } else {
                kept.push(record);
            }
        }
    }
}

async fn delivery_log(app: &TestApp, key: &str, id: &str) -> Value {
    let r = app
        .get(&format!("/api/webhooks/{id}/deliveries"), key)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["deliveries"][0].clone()
}

fn rfc(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        v.as_str().expect("a time"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

async fn retries_keep_the_webhook_id_until_the_fourth_attempt_succeeds(backend: Backend) {
    let app = TestApp::spawn_paused(backend, &[]).await;
    let (tenant, key) = app.create_tenant("starter").await;
    let tenant = TenantId::parse(&tenant).unwrap();
    let receiver = Receiver::start(Behaviour::FailFirst(3)).await;
    let created = create_webhook(&app, &key, &receiver.url, &["training.failed"]).await;
    let (id, secret) = (
        created["webhook_id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    );
    let clock = Arc::new(ManualClock::at(time::OffsetDateTime::now_utc()));
    let worker =
        webhook_worker::Worker::with(&app.platform, clock.clone(), Arc::new(SystemResolver))
            .unwrap()
            .with_jitter(|| 1.0);
    shared::webhooks::emit(
        &app.platform,
        &tenant,
        Event::training_failed(clock.now(), "job_1", "site_1", "x"),
    )
    .await;
    let mut kept = drain(&app, &worker).await;
    assert_eq!(kept.len(), 1, "the first attempt failed and waits");
    for (n, wait) in [(1, 5u64), (2, 300), (3, 1800)] {
        let d = delivery_log(&app, &key, &id).await;
        assert_eq!(d["attempt_count"], n);
        assert_eq!(d["status"], "pending");
        let next = rfc(&d["attempts"][n - 1]["next_retry_at"]);
        assert_eq!(
            next - rfc(&d["attempts"][n - 1]["at"]),
            time::Duration::seconds(wait as i64)
        );
        // Not due yet: the worker leaves it alone.
        assert!(!worker.handle_one(kept[0].clone()).await);
        assert_eq!(receiver.received().len(), n);
        clock.set(next);
        let done = worker.handle_one(kept[0].clone()).await;
        assert_eq!(done, n == 3, "attempt {}", n + 1);
    }
    kept.clear();
    let got = receiver.received();
    assert_eq!(got.len(), 4);
    assert!(
        got.iter().all(|r| r.id == got[0].id),
        "one webhook-id on every retry"
    );
    let s = shared::webhooks::secret::SigningSecret::parse(&secret).unwrap();
    for r in &got {
        let ts: i64 = r.timestamp.parse().unwrap();
        assert!(shared::webhooks::signing::verify(
            &s,
            &r.id,
            ts,
            &r.body,
            &r.signature
        ));
    }
    let d = delivery_log(&app, &key, &id).await;
    assert_eq!(d["status"], "delivered");
    let codes: Vec<_> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(500), json!(500), json!(200)]);
    assert_eq!(d["attempts"][0]["response_body"], "not now");
    assert_eq!(d["attempts"][3]["next_retry_at"], Value::Null);
}

#[tokio::test]
async fn retries_keep_the_webhook_id_until_the_fourth_attempt_succeeds_embedded() {
    retries_keep_the_webhook_id_until_the_fourth_attempt_succeeds(Backend::Embedded).await;
}

#[tokio::test]
async fn retries_keep_the_webhook_id_until_the_fourth_attempt_succeeds_on_aws() {
    retries_keep_the_webhook_id_until_the_fourth_attempt_succeeds(Backend::Aws).await;
}

#[tokio::test]
async fn an_endpoint_failing_for_three_days_is_disabled_and_the_tenant_emailed() {
    let app = TestApp::spawn_paused(Backend::Embedded, &[]).await;
    let (tenant, key) = app.create_tenant("starter").await;
    let r = app
        .patch(
            "/api/tenant",
            &key,
            json!({"billing_email": "ops@tenant.example", "language": "ja"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let tenant = TenantId::parse(&tenant).unwrap();
    let receiver = Receiver::start(Behaviour::FailFirst(usize::MAX)).await;
    let created = create_webhook(&app, &key, &receiver.url, &["chat.error"]).await;
    let id = created["webhook_id"].as_str().unwrap().to_string();
    let start = time::OffsetDateTime::now_utc();
    let clock = Arc::new(ManualClock::at(start));
    let worker =
        webhook_worker::Worker::with(&app.platform, clock.clone(), Arc::new(SystemResolver))
            .unwrap()
            .with_jitter(|| 1.0);
    shared::webhooks::emit(
        &app.platform,
        &tenant,
        Event::chat_error(start, None, "internal", "x", None),
    )
    .await;
    let kept = drain(&app, &worker).await;
    let record = kept[0].clone();
    let mut rounds = 0;
    loop {
        let d = delivery_log(&app, &key, &id).await;
        if d["status"] != "pending" {
            assert_eq!(d["status"], "failed");
            break;
        }
        clock.set(rfc(&d["next_attempt_at"]));
        worker.handle_one(record.clone()).await;
        rounds += 1;
        assert!(rounds < 20, "never gave up");
    }
    assert!(clock.now() - start <= time::Duration::days(3));
    let hooks = app.get("/api/webhooks", &key).await;
    assert_eq!(
        hooks.body["webhooks"][0]["enabled"], false,
        "{:?}",
        hooks.body
    );
    assert!(
        hooks.body["webhooks"][0]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("failed")
    );
    let outbox = shared::mail::Outbox::new(app.platform.config.data_dir.join("outbox")).unwrap();
    let mails: Vec<String> = outbox
        .list()
        .unwrap()
        .iter()
        .map(|p| {
            let raw = std::fs::read(p).unwrap();
            let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
            format!(
                "{}\n{}\n{}",
                m.subject().unwrap_or(""),
                m.to()
                    .and_then(|t| t.first())
                    .and_then(|a| a.address())
                    .unwrap_or(""),
                m.body_text(0).unwrap_or_default()
            )
        })
        // In the tenant's language.
        .filter(|m| m.contains("【Kotoba】Webhookの送信先を停止しました"))
        .collect();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("ops@tenant.example"), "{}", mails[0]);
    assert!(mails[0].contains(&id), "{}", mails[0]);
    // Re-enabling clears the reason; new events flow again.
    let r = app
        .patch(
            &format!("/api/webhooks/{id}"),
            &key,
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["disabled_reason"], Value::Null);
}

#[tokio::test]
async fn private_targets_are_refused_at_creation_and_at_delivery_without_connecting() {
    let app = TestApp::spawn_paused(
        Backend::Embedded,
        &[("KOTOBA_FETCH_ALLOW_LOOPBACK", "false")],
    )
    .await;
    let (tenant, key) = app.create_tenant("starter").await;
    for url in [
        "https://10.0.0.1/hook",
        "https://192.168.1.20/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://127.0.0.1/hook",
        // A name that resolves to loopback (the hosts file; no outside DNS).
        "https://localhost/hook",
        "http://hooks.example.com/plain-http",
        "ftp://hooks.example.com/",
    ] {
        let r = app
            .post(
                "/api/webhooks",
                &key,
                json!({"url": url, "events": ["ping.not"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {:?}", r.body);
        let r = app
            .post(
                "/api/webhooks",
                &key,
                json!({"url": url, "events": ["chat.error"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], "url", "{url}");
    }
    // DNS rebinding: a name that led to a public address when the endpoint was created leads to
    // private ones at delivery. Refused before any connection (the loopback answer is the counter).
    let (port, connections) = connection_counter().await;
    let name = "rebind.kotoba-test.invalid";
    let tenant_id = TenantId::parse(&tenant).unwrap();
    let at_creation = shared::webhooks::target::TargetGuard::new(
        shared::webhooks::target::TargetPolicy {
            allow_loopback: false,
            allowed_ports: vec![port],
        },
        Arc::new(StaticResolver::new().with(name, &["93.184.216.34".parse().unwrap()])),
    );
    let p = &app.platform;
    let (record, _secret) = shared::webhooks::endpoints::create(
        &shared::webhooks::endpoints::Ports {
            store: p.store.as_ref(),
            ids: p.ids.as_ref(),
            clock: p.clock.as_ref(),
            key: p.webhook_key.as_ref(),
            guard: &at_creation,
        },
        &tenant_id,
        shared::webhooks::NewEndpoint {
            url: format!("https://{name}:{port}/hook"),
            events: vec!["chat.error".into()],
            description: None,
        },
    )
    .await
    .unwrap();
    let id = record.webhook_id.to_string();
    let resolver = StaticResolver::new().with(
        name,
        &[
            "10.0.0.7".parse().unwrap(),
            "169.254.169.254".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ],
    );
    let worker = webhook_worker::Worker::with(
        &app.platform,
        app.platform.clock.clone(),
        Arc::new(resolver),
    )
    .unwrap();
    shared::webhooks::emit(
        &app.platform,
        &tenant_id,
        Event::chat_error(app.platform.clock.now(), None, "internal", "x", None),
    )
    .await;
    drain(&app, &worker).await;
    let d = delivery_log(&app, &key, &id).await;
    let attempt = &d["attempts"][0];
    assert_eq!(attempt["status_code"], Value::Null, "{d:?}");
    let error = attempt["error"].as_str().unwrap();
    assert!(
        error.contains("10.0.0.7") && error.contains("private"),
        "{error}"
    );
    assert!(error.contains("cloud metadata"), "{error}");
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = TestApp::spawn_paused(Backend::Embedded, &[]).await;
    let (tenant, key) = app.create_tenant("starter").await;
    let (target_port, connections) = connection_counter().await;
    let receiver = Receiver::start(Behaviour::RedirectTo(target_port)).await;
    let created = create_webhook(&app, &key, &receiver.url, &["chat.error"]).await;
    let id = created["webhook_id"].as_str().unwrap().to_string();
    let worker = webhook_worker::Worker::new(&app.platform).unwrap();
    let tenant = TenantId::parse(&tenant).unwrap();
    shared::webhooks::emit(
        &app.platform,
        &tenant,
        Event::chat_error(app.platform.clock.now(), None, "internal", "x", None),
    )
    .await;
    drain(&app, &worker).await;
    assert_eq!(receiver.received().len(), 1);
    let d = delivery_log(&app, &key, &id).await;
    assert_eq!(
        d["status"], "pending",
        "a redirect is a failed attempt: {d:?}"
    );
    assert_eq!(d["attempts"][0]["status_code"], 302);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the redirect target was never contacted"
    );
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_delay_another_tenants_deliveries() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (slow_tenant, slow_key) = app.create_tenant("starter").await;
    let (fast_tenant, fast_key) = app.create_tenant("starter").await;
    let hanging = Receiver::start(Behaviour::Hang).await;
    let fast = Receiver::start(Behaviour::FailFirst(0)).await;
    let slow_hook = create_webhook(&app, &slow_key, &hanging.url, &["chat.error"]).await;
    create_webhook(&app, &fast_key, &fast.url, &["chat.error"]).await;
    let (slow_tenant, fast_tenant) = (
        TenantId::parse(&slow_tenant).unwrap(),
        TenantId::parse(&fast_tenant).unwrap(),
    );
    let now = app.platform.clock.now();
    for _ in 0..20 {
        shared::webhooks::emit(
            &app.platform,
            &slow_tenant,
            Event::chat_error(now, None, "internal", "x", None),
        )
        .await;
    }
    hanging.wait_for(1).await;
    shared::webhooks::emit(
        &app.platform,
        &fast_tenant,
        Event::chat_error(now, None, "internal", "y", None),
    )
    .await;
    fast.wait_for(1).await;
    // Ordering proof: the other tenant's delivery landed while the hanging endpoint still held its
    // first attempts (none of them has finished, not even by timing out).
    let slow_id = slow_hook["webhook_id"].as_str().unwrap();
    let r = app
        .get(&format!("/api/webhooks/{slow_id}/deliveries"), &slow_key)
        .await;
    let finished: usize = r.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["attempts"].as_array().unwrap().len())
        .sum();
    assert_eq!(finished, 0, "{:?}", r.body);
    assert!(hanging.received().len() <= shared::webhooks::MAX_IN_FLIGHT_PER_ENDPOINT);
}

#[tokio::test]
async fn bad_input_is_refused_in_the_contract_shape() {
    let app = TestApp::spawn_paused(Backend::Embedded, &[]).await;
    let (_, key) = app.create_tenant("starter").await;
    let receiver = Receiver::start(Behaviour::FailFirst(0)).await;
    for (body, field) in [
        (json!({"url": receiver.url, "events": []}), "events"),
        (
            json!({"url": receiver.url, "events": ["chat.errors"]}),
            "events",
        ),
        (json!({"url": "not a url", "events": ["chat.error"]}), "url"),
        (
            json!({"url": receiver.url, "events": ["chat.error"], "description": "x".repeat(300)}),
            "description",
        ),
    ] {
        let r = app.post("/api/webhooks", &key, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}");
    }
    let r = app
        .call(Method::DELETE, "/api/webhooks/wh_nothere", Some(&key), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");
    assert_eq!(
        app.get("/api/webhooks", &key).await.body["webhooks"],
        json!([])
    );
}

/// The events come from where things happen: a training job ends, the operator changes a
/// subscription — not only from `emit` called by hand.
#[tokio::test]
async fn training_and_subscription_changes_reach_the_tenants_webhook() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (tenant, key) = app.create_tenant("pro").await;
    let receiver = Receiver::start(Behaviour::FailFirst(0)).await;
    let created = create_webhook(
        &app,
        &key,
        &receiver.url,
        &[
            "training.succeeded",
            "training.failed",
            "subscription.updated",
        ],
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    // Another tenant's activity must not reach this endpoint.
    let (other, other_key) = app.create_tenant("pro").await;

    app.set_subscription(&tenant, "active").await;
    app.set_subscription(&other, "active").await;
    let site = kotoba_tests::site::TestSite::start().await;
    kotoba_tests::site::standard_site(&site);
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let other_site = app.create_site(&other_key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.train(&other_key, &other_site, &site.url("/"), false)
        .await;

    let got = receiver.wait_for(2).await;
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let of_type = |t: &str| {
        bodies
            .iter()
            .filter(|b| b["type"] == t)
            .cloned()
            .collect::<Vec<_>>()
    };
    let updated = of_type("subscription.updated");
    assert_eq!(updated.len(), 1, "{bodies:?}");
    assert_eq!(updated[0]["data"]["status"], "active");
    let trained = of_type("training.succeeded");
    assert_eq!(trained.len(), 1, "{bodies:?}");
    assert_eq!(trained[0]["data"]["job_id"], job["job_id"]);
    assert_eq!(trained[0]["data"]["site_id"], site_id.as_str());
    assert!(trained[0]["data"]["chunks"].as_u64().unwrap() > 0);
    assert_eq!(
        verify_with_standardwebhooks(&secret, &got[..2]),
        "verified 2 subscription.updated training.succeeded"
    );
    // Nothing of the other tenant's: its job id appears in no delivery.
    assert!(got.iter().all(|r| !r.body.contains(&other_site)));
}

/// Chat failures and plan limits reach the tenant's webhook from the chat path itself: a failing model
/// makes `chat.error` (with the request id the client saw, also in the error log), an exhausted quota
/// makes `limit.reached` once a day, however many requests it refuses.
#[tokio::test]
async fn chat_failures_and_limits_reach_the_tenants_webhook() {
    use kotoba_tests::peer::{ChatMode, ModelPeer};
    let peer = ModelPeer::start(ChatMode::Fail(500)).await;
    let vars = peer.vars(Some("gpt-4o-mini"), None);
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(Backend::Embedded, &extra).await;
    let (tenant, key) = app.create_tenant("starter").await;
    app.set_subscription(&tenant, "active").await;
    let receiver = Receiver::start(Behaviour::FailFirst(0)).await;
    create_webhook(&app, &key, &receiver.url, &["chat.error", "limit.reached"]).await;
    let site = kotoba_tests::site::TestSite::start().await;
    kotoba_tests::site::standard_site(&site);
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let ask = json!({"site_id": site_id, "message": "When are you open?"});
    let r = app.post("/api/chat", &key, ask.clone()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    let request_id = r.body["error"]["request_id"].as_str().unwrap().to_string();
    let got = receiver.wait_for(1).await;
    let event: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(event["type"], "chat.error");
    assert_eq!(event["data"]["site_id"], site_id.as_str());
    assert_eq!(event["data"]["code"], "model_failed");
    assert_eq!(event["data"]["request_id"], request_id.as_str());
    let errors = app.get("/api/errors", &key).await;
    assert_eq!(errors.body["errors"][0]["request_id"], request_id.as_str());
    assert_eq!(errors.body["errors"][0]["status"], 503);

    // The month's chats used up: two refused requests, one event.
    let tenant_id = TenantId::parse(&tenant).unwrap();
    let month = shared::usage::month_of(app.platform.clock.now());
    let limit = shared::tenants::Plan::Starter.limits().monthly_chats as i64;
    app.platform
        .store
        .add(shared::store::Add::new(
            shared::usage::tenant_month(&tenant_id, &month),
            shared::usage::counters::CHATS,
            limit,
        ))
        .await
        .unwrap();
    for _ in 0..2 {
        let r = app.post("/api/chat", &key, ask.clone()).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{:?}", r.body);
    }
    let got = receiver.wait_for(2).await;
    let event: Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(event["type"], "limit.reached");
    assert_eq!(event["data"]["limit"], "monthly_chats");
    assert_eq!(event["data"]["plan"], "starter");
    // A third delivery would be the second refusal's: none comes. Proof by a later event that does.
    shared::webhooks::emit(
        &app.platform,
        &tenant_id,
        Event::chat_error(app.platform.clock.now(), None, "marker", "after", None),
    )
    .await;
    let got = receiver.wait_for(3).await;
    let last: Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(
        last["data"]["code"], "marker",
        "no second limit.reached: {got:?}"
    );
}
