//! Regression tests for the security review's findings (issue 10), driven through the local runner as a
//! client would: operator-provisioned phone numbers, error bodies without internal detail, training
//! caps and ports, refusals that reveal no addresses, site-scoped sessions, and the bridge's cap on
//! media sockets that have not authenticated yet.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kotoba_tests::peer::{ChatMode, ModelPeer};
use kotoba_tests::site::{TestSite, standard_site};
use kotoba_tests::{Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn active_tenant(app: &TestApp, plan: &str) -> (String, String) {
    let (tenant, key) = app.create_tenant(plan).await;
    app.set_subscription(&tenant, "active").await;
    (tenant, key)
}

fn id(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .to_string()
}

// Finding 1 ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn phone_numbers_are_provisioned_by_the_operator_not_self_declared() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (tenant_a, a) = active_tenant(&app, "pro").await;
    let (tenant_b, b) = active_tenant(&app, "pro").await;

    // A number nobody provisioned cannot be declared by a tenant.
    let r = app
        .post("/api/phone-numbers", &a, json!({"number": "+81312345678"}))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "a tenant declared a number nobody provisioned: {:?}",
        r.body
    );

    // The operator adds it to the pool; tenants see it and the first to pick it gets it.
    let r = app
        .post(
            "/api/admin/phone-numbers",
            &app.admin_key,
            json!({"number": "+81 3-1234-5678"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["number"], "+81312345678");
    assert_eq!(r.body["status"], "available");
    let r = app
        .post(
            "/api/admin/phone-numbers",
            &app.admin_key,
            json!({"number": "+81312345678"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "provisioned twice");
    let r = app
        .post(
            "/api/admin/phone-numbers",
            &a,
            json!({"number": "+81312345670"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "tenants cannot provision"
    );

    let pool = app.get("/api/phone-numbers/available", &b).await;
    assert_eq!(pool.status, StatusCode::OK, "{:?}", pool.body);
    assert_eq!(pool.body["phone_numbers"][0]["number"], "+81312345678");
    let r = app
        .post("/api/phone-numbers", &a, json!({"number": "+81312345678"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["tenant_id"], tenant_a.as_str());
    let r = app
        .post("/api/phone-numbers", &b, json!({"number": "+81312345678"}))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::CONFLICT, "conflict"),
        "another tenant's number cannot be taken: {:?}",
        r.body
    );
    assert!(
        app.get("/api/phone-numbers/available", &b).await.body["phone_numbers"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The operator can assign a number straight to a tenant; it never enters the pool.
    let r = app
        .post(
            "/api/admin/phone-numbers",
            &app.admin_key,
            json!({"number": "+14158675309", "tenant_id": tenant_b}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"], "assigned");
    let mine = app.get("/api/phone-numbers", &b).await;
    assert_eq!(mine.body["phone_numbers"][0]["number"], "+14158675309");
    let all = app
        .get("/api/admin/phone-numbers", &app.admin_key)
        .await
        .body;
    assert_eq!(all["phone_numbers"].as_array().unwrap().len(), 2, "{all}");

    // Releasing gives the number back to the pool, not to whoever asks next by name.
    let r = app
        .call(
            Method::DELETE,
            "/api/phone-numbers/%2B81312345678",
            Some(&a),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let pool = app.get("/api/phone-numbers/available", &b).await;
    assert_eq!(pool.body["phone_numbers"][0]["number"], "+81312345678");
    // The operator withdraws a number entirely.
    let r = app
        .call(
            Method::DELETE,
            "/api/admin/phone-numbers/%2B81312345678",
            Some(&app.admin_key),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .post("/api/phone-numbers", &b, json!({"number": "+81312345678"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
}

// Findings 2 and 5 ---------------------------------------------------------------------------------

struct Trained {
    app: TestApp,
    peer: ModelPeer,
    _site: TestSite,
    key: String,
    sites: Vec<String>,
}

/// A runner with a model peer and an active pro tenant with `n` trained, embed-enabled sites.
async fn trained(chat_model: Option<&str>, mode: ChatMode, n: usize) -> Trained {
    let peer = ModelPeer::start(mode).await;
    let vars = peer.vars(chat_model, None);
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(Backend::Embedded, &extra).await;
    let site = TestSite::start().await;
    standard_site(&site);
    let (_, key) = active_tenant(&app, "pro").await;
    let mut sites = Vec::new();
    for _ in 0..n {
        let site_id = id(&app.create_site(&key, &["127.0.0.1"]).await, "site_id");
        let job = app.train(&key, &site_id, &site.url("/"), false).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let r = app
            .patch(
                &format!("/api/sites/{site_id}"),
                &key,
                json!({"is_embed_enabled": true}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        sites.push(site_id);
    }
    Trained {
        app,
        peer,
        _site: site,
        key,
        sites,
    }
}

async fn embed_chat(app: &TestApp, body: Value, stream: bool) -> reqwest::Response {
    app.client
        .post(app.url("/api/embed/chat"))
        .header("origin", "http://127.0.0.1:8080")
        .header("content-type", "text/plain;charset=UTF-8")
        .header(
            "accept",
            if stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// The SSE events of a response as (event, data).
async fn events(response: reqwest::Response) -> Vec<(String, String)> {
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = Some(e.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            event.map(|e| (e, data))
        })
        .collect()
}

fn assert_no_internal_detail(error: &Value, peer: &ModelPeer) {
    let text = error.to_string();
    for secret in [
        "failing on cue",
        "server_error",
        peer.base_url.as_str(),
        "127.0.0.1",
        "provider",
    ] {
        assert!(!text.contains(secret), "{secret:?} leaked: {text}");
    }
    assert_eq!(error["error"]["code"], "unavailable", "{text}");
    assert!(
        error["error"]["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "the request id lets support find the detail: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn model_failures_reach_clients_without_provider_detail() {
    let t = trained(Some("gpt-4o-mini"), ChatMode::Fail(400), 1).await;
    let site = &t.sites[0];
    let question = json!({"site_id": site, "message": "When do you open?"});

    // Tenant API, JSON.
    let r = t.app.post("/api/chat", &t.key, question.clone()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_no_internal_detail(&r.body, &t.peer);
    assert_eq!(
        r.headers["x-request-id"].to_str().unwrap(),
        r.body["error"]["request_id"].as_str().unwrap()
    );

    // Anonymous visitor, JSON and SSE; a 5xx from the provider too.
    let r = embed_chat(&t.app, question.clone(), false).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_no_internal_detail(&r.json().await.unwrap(), &t.peer);
    t.peer.set_mode(ChatMode::Fail(500));
    let r = embed_chat(&t.app, question.clone(), true).await;
    let status = r.status();
    let body = if status == StatusCode::OK {
        let events = events(r).await;
        let (_, data) = events
            .iter()
            .find(|(e, _)| e == "error")
            .unwrap_or_else(|| panic!("no error event: {events:?}"));
        serde_json::from_str(data).unwrap()
    } else {
        r.json().await.unwrap()
    };
    assert_no_internal_detail(&body, &t.peer);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_belong_to_their_site() {
    let t = trained(None, ChatMode::Echo, 2).await;
    let (a, b) = (&t.sites[0], &t.sites[1]);
    let ask = |site: &str, session: Option<&str>| {
        let mut body = json!({"site_id": site, "message": "What are your opening hours?"});
        if let Some(s) = session {
            body["session_id"] = s.into();
        }
        embed_chat(&t.app, body, false)
    };
    let first = ask(b, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let session_b = id(&first.json().await.unwrap(), "session_id");
    let again = ask(b, Some(&session_b))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        again["session_id"],
        session_b.as_str(),
        "a site keeps its own session"
    );

    // A visitor of site A presenting B's session gets a session of A's own …
    let r = ask(a, Some(&session_b)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let foreign = id(&r.json().await.unwrap(), "session_id");
    assert_ne!(foreign, session_b, "site A adopted site B's session id");
    // … and cannot use up B's per-session rate limit (12 a minute) from A.
    for _ in 0..11 {
        let r = ask(a, Some(&session_b)).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = ask(b, Some(&session_b)).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "site A's visitor exhausted site B's session"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["session_id"], session_b.as_str());
}

// Findings 3 and 4 ---------------------------------------------------------------------------------

async fn train_request(app: &TestApp, key: &str, site: &str, url: &str) -> kotoba_tests::Reply {
    app.post("/api/train/url", key, json!({"site_id": site, "url": url}))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn training_needs_a_subscription_and_stays_within_the_plan() {
    // Paused: jobs stay queued and nothing is fetched (no traffic leaves the machine).
    let app = TestApp::spawn_paused(Backend::Embedded, &[]).await;
    let (tenant, key) = app.create_tenant("starter").await;

    // A lapsed subscription cannot train.
    app.set_subscription(&tenant, "canceled").await;
    let site = id(&app.create_site(&key, &[]).await, "site_id");
    let r = train_request(&app, &key, &site, "http://93.184.215.14/").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::PAYMENT_REQUIRED, "subscription_inactive"),
        "{:?}",
        r.body
    );
    app.set_subscription(&tenant, "active").await;

    // One job at a time on the starter plan, across the tenant's sites.
    let second = id(&app.create_site(&key, &[]).await, "site_id");
    let r = train_request(&app, &key, &site, "http://93.184.215.14/").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let r = train_request(&app, &key, &second, "http://93.184.215.14/").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::CONFLICT, "conflict"),
        "a second concurrent job on the starter plan: {:?}",
        r.body
    );
    assert_eq!(r.body["error"]["details"]["max_concurrent_jobs"], 1);

    // Sites: at most the plan's number.
    let limit = r.body["error"]["details"]["max_concurrent_jobs"].as_u64();
    assert_eq!(limit, Some(1));
    let mut created = 2;
    loop {
        let r = app
            .post(
                "/api/sites",
                &key,
                json!({"name": format!("site {created}")}),
            )
            .await;
        if r.status == StatusCode::PAYMENT_REQUIRED {
            assert_eq!(r.error_code(), "quota_exceeded");
            assert_eq!(r.body["error"]["plan"], "starter");
            break;
        }
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        created += 1;
        assert!(created <= 3, "the starter plan allowed more than 3 sites");
    }
    assert_eq!(created, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_web_ports_are_crawled_unless_the_operator_allows_more() {
    let app = TestApp::spawn_paused(Backend::Embedded, &[]).await;
    let (_, key) = active_tenant(&app, "enterprise").await;
    for (url, expected) in [
        ("http://93.184.215.14:8080/", StatusCode::BAD_REQUEST),
        ("https://93.184.215.14:22/", StatusCode::BAD_REQUEST),
        ("http://93.184.215.14:443/", StatusCode::ACCEPTED),
        ("https://93.184.215.14/", StatusCode::ACCEPTED),
    ] {
        let site = id(&app.create_site(&key, &[]).await, "site_id");
        let r = train_request(&app, &key, &site, url).await;
        assert_eq!(r.status, expected, "{url}: {:?}", r.body);
    }

    let app =
        TestApp::spawn_paused(Backend::Embedded, &[("KOTOBA_FETCH_ALLOWED_PORTS", "8080")]).await;
    let (_, key) = active_tenant(&app, "enterprise").await;
    for (url, expected) in [
        ("http://93.184.215.14:8080/", StatusCode::ACCEPTED),
        ("http://93.184.215.14:8081/", StatusCode::BAD_REQUEST),
    ] {
        let site = id(&app.create_site(&key, &[]).await, "site_id");
        let r = train_request(&app, &key, &site, url).await;
        assert_eq!(r.status, expected, "{url}: {:?}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn train_url_refusals_reveal_no_addresses() {
    // As deployed: loopback is refused like any internal address.
    let app = TestApp::spawn_paused(
        Backend::Embedded,
        &[("KOTOBA_FETCH_ALLOW_LOOPBACK", "false")],
    )
    .await;
    let (_, key) = active_tenant(&app, "pro").await;
    let site = id(&app.create_site(&key, &[]).await, "site_id");
    let mut messages = Vec::new();
    for url in [
        "http://localhost/",
        "http://10.0.0.1/",
        "http://[fd00::1]/",
        "http://name-that-does-not-exist.invalid/",
    ] {
        let r = train_request(&app, &key, &site, url).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], "url");
        let message = r.body["error"]["message"].as_str().unwrap().to_string();
        for detail in [
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "fd00",
            "loopback",
            "private",
            "resolve",
        ] {
            assert!(
                !message.contains(detail),
                "{url}: {message:?} tells {detail:?}"
            );
        }
        messages.push(message);
    }
    messages.dedup();
    assert_eq!(
        messages.len(),
        1,
        "refusals can be told apart: {messages:?}"
    );
}

// Finding 9 ----------------------------------------------------------------------------------------

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_media_socket(app: &TestApp) -> Result<Socket, u16> {
    let url = format!(
        "{}/twilio-media",
        app.bridge_url.replacen("http://", "ws://", 1)
    );
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("connecting: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_media_sockets_are_capped() {
    let app = TestApp::spawn_with(
        Backend::Embedded,
        &[("KOTOBA_BRIDGE_MAX_PENDING_PER_IP", "2")],
    )
    .await;
    // Two sockets that never send `start` (so never show a token) are held …
    let first = open_media_socket(&app).await.expect("first pending socket");
    let _second = open_media_socket(&app)
        .await
        .expect("second pending socket");
    // … a third from the same address is refused at the handshake.
    assert_eq!(
        open_media_socket(&app).await.err(),
        Some(429),
        "a third unauthenticated socket was accepted"
    );
    // Once one goes away its place is free again.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open_media_socket(&app).await {
            Ok(mut ws) => {
                let _ = ws.close(None).await;
                let _ = ws.next().await;
                break;
            }
            Err(status) => {
                assert_eq!(status, 429);
                assert!(Instant::now() < deadline, "the freed place never came back");
                tokio::time::sleep(Duration::from_millis(20)).await; // poll: inside a loop with a deadline
            }
        }
    }
}
