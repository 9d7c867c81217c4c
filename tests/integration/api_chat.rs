//! Chat through the local runner: answers from a trained local site (English and Japanese), streamed
//! SSE, cost from the price table, quotas under concurrency, model failures and disconnects, the public
//! embed routes (origins, readiness, rate limits) and feedback.

use std::time::Duration;

use futures::StreamExt;
use kotoba_tests::peer::{ChatMode, ModelPeer, prompt_tokens};
use kotoba_tests::site::{TestSite, standard_site};
use kotoba_tests::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

use shared::ids::{SiteId, TenantId};
use shared::store::Add;
use shared::usage;

struct Trained {
    app: TestApp,
    peer: ModelPeer,
    site: TestSite,
    key: String,
    tenant_id: String,
    site_id: String,
}

/// A runner with a model peer, a tenant on `plan`, and the standard site trained.
async fn trained(
    backend: Backend,
    plan: &str,
    chat_model: Option<&str>,
    mode: ChatMode,
) -> Trained {
    let peer = ModelPeer::start(mode).await;
    let vars = peer.vars(chat_model, Some("text-embedding-3-small"));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(backend, &extra).await;
    let site = TestSite::start().await;
    standard_site(&site);
    let (tenant_id, key) = app.create_tenant(plan).await;
    let path = format!("/api/admin/tenants/{tenant_id}/subscription");
    let r = app
        .call(
            reqwest::Method::PUT,
            &path,
            Some(&app.admin_key),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let site_id = app
        .create_site(&key, &["127.0.0.1", "*.allowed.test"])
        .await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    Trained {
        app,
        peer,
        site,
        key,
        tenant_id,
        site_id,
    }
}

fn top_urls(answer: &Value) -> Vec<String> {
    answer["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap().to_string())
        .collect()
}

async fn answers_from_the_right_pages(backend: Backend) {
    let t = trained(backend, "pro", None, ChatMode::Echo).await;
    let ask = |q: &str| {
        t.app.post(
            "/api/chat",
            &t.key,
            json!({"site_id": t.site_id, "message": q}),
        )
    };
    let r = ask("What are your opening hours on weekends?").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(
        top_urls(&r.body).iter().any(|u| u.ends_with("/hours")),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["model_used"], "extractive");
    assert!(
        r.body["answer"]
            .as_str()
            .unwrap()
            .contains("9am to 5pm on weekends"),
        "{:?}",
        r.body["answer"]
    );
    for field in ["session_id", "message_id"] {
        assert!(r.body[field].is_string(), "{field}");
    }
    assert!(
        r.body["tokens_consumed"]["embedding"].as_u64().unwrap() > 0,
        "the query was embedded"
    );
    let r = ask("営業時間は何時からですか？").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        top_urls(&r.body).iter().any(|u| u.ends_with("/ja/sjis")),
        "{:?}",
        r.body
    );
    assert!(
        r.body["answer"].as_str().unwrap().contains("午前八時"),
        "{:?}",
        r.body["answer"]
    );
    let r = ask("京都駅からのアクセスを教えてください").await;
    assert!(
        top_urls(&r.body).iter().any(|u| u.ends_with("/ja/eucjp")),
        "{:?}",
        r.body
    );
    let r = ask("How much is a flat white?").await;
    assert!(
        top_urls(&r.body).iter().any(|u| u.ends_with("/menu")),
        "{:?}",
        r.body
    );
    // Never a page that was excluded.
    let r = ask("what is the safe code for staff").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(!r.body.to_string().contains("1234"), "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_from_the_right_pages_on_embedded_adapters() {
    answers_from_the_right_pages(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_from_the_right_pages_on_aws_adapters() {
    answers_from_the_right_pages(Backend::Aws).await;
}

/// Reads an SSE response into (event, data) pairs.
async fn read_sse(response: reqwest::Response) -> Vec<(String, Value)> {
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = "message".to_string();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            (!data.is_empty()).then(|| (event, serde_json::from_str(&data).unwrap()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_answers_and_charges_the_price_table() {
    let reply = "We open at eight on weekdays and at nine on weekends.";
    let t = trained(
        Backend::Embedded,
        "pro",
        Some("gpt-4o-mini"),
        ChatMode::Reply {
            reply: reply.into(),
            delay: Duration::from_millis(5),
        },
    )
    .await;
    let response = t
        .app
        .client
        .post(t.app.url("/api/chat"))
        .bearer_auth(&t.key)
        .header("accept", "text/event-stream")
        .json(&json!({"site_id": t.site_id, "message": "When do you open on weekends?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_sse(response).await;
    let deltas: String = events
        .iter()
        .filter(|(e, _)| e == "delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, reply);
    assert!(
        events.iter().filter(|(e, _)| e == "delta").count() > 3,
        "streamed in pieces"
    );
    let (last_event, done) = events.last().unwrap();
    assert_eq!(last_event, "done");
    assert_eq!(done["answer"], reply);
    assert_eq!(done["model_used"], "gpt-4o-mini");
    assert!(top_urls(done).iter().any(|u| u.ends_with("/hours")));

    // Cost = tokens × the price table (gpt-4o-mini $0.15/$0.60 per 1M; text-embedding-3-small $0.02 per 1M).
    let sent = t.peer.state.last_chat.lock().unwrap().clone().unwrap();
    let prompt = prompt_tokens(&sent);
    let completion = reply.split_inclusive(' ').count() as u64;
    let embedding = done["tokens_consumed"]["embedding"].as_u64().unwrap();
    assert_eq!(
        done["tokens_consumed"]["chat"].as_u64().unwrap(),
        prompt + completion
    );
    let micros = |tokens: u64, per_1k: u64| (tokens * per_1k).div_ceil(1000);
    let expected = micros(prompt, 150) + micros(completion, 600) + micros(embedding, 20);
    assert_eq!(
        (done["cost_usd"].as_f64().unwrap() * 1e6).round() as u64,
        expected
    );
    // The prompt fenced the passages as untrusted data, with the site's system prompt first.
    let messages = sent["messages"].as_array().unwrap();
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("untrusted")
    );
    assert!(
        messages.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .contains("<passage id=\"1\"")
    );

    // The usage API shows what was spent.
    let usage = t.app.get("/api/usage", &t.key).await.body;
    assert_eq!(usage["totals"]["chats"], 1);
    let micros_of = |v: &Value| (v["cost_usd"].as_f64().unwrap() * 1e6).round() as u64;
    let total = micros_of(&usage["totals"]);
    assert!(total >= expected);
    // … by site (the training's embeddings and the chat) and by model, adding up to the total.
    let sites = usage["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 1, "{usage}");
    assert_eq!(sites[0]["site_id"], t.site_id.as_str());
    assert_eq!(sites[0]["chats"], 1);
    assert_eq!(micros_of(&sites[0]), total);
    let models = usage["models"].as_array().unwrap();
    let model = |name: &str| {
        models
            .iter()
            .find(|m| m["model"] == name)
            .unwrap_or_else(|| panic!("{name} in {usage}"))
    };
    let chat = model("gpt-4o-mini");
    assert_eq!(chat["requests"], 1);
    assert_eq!(chat["input_tokens"], prompt);
    assert_eq!(chat["output_tokens"], completion);
    assert_eq!(
        micros_of(chat),
        micros(prompt, 150) + micros(completion, 600)
    );
    let embedder = model("text-embedding-3-small");
    assert!(
        embedder["requests"].as_u64().unwrap() >= 2,
        "training and the query"
    );
    assert!(embedder["input_tokens"].as_u64().unwrap() > embedding);
    assert_eq!(models.len(), 2, "{usage}");
    assert_eq!(micros_of(chat) + micros_of(embedder), total);
    assert_eq!(
        sites[0]["embedding_tokens"], usage["totals"]["embedding_tokens"],
        "every embedding token was spent for the one site"
    );

    // A model outside the plan is refused with 403; an unknown one with 400.
    let r = t
        .app
        .post(
            "/api/chat",
            &t.key,
            json!({"site_id": t.site_id, "message": "hi", "model": "gpt-4o"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = t
        .app
        .post(
            "/api/chat",
            &t.key,
            json!({"site_id": t.site_id, "message": "hi", "model": "no-such-model"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
}

/// The address of an `http://host:port/…` URL.
fn socket_addr(url: &str) -> std::net::SocketAddr {
    let url = url::Url::parse(url).unwrap();
    url.socket_addrs(|| None).unwrap()[0]
}

/// Every socket on a chat's path has TCP_NODELAY (ISSUE: ~40 ms p99 was Nagle's algorithm waiting for
/// a delayed ACK): the runner's and the bridge's accepted sockets, and the runner's own connections to
/// the model. Connections stay open in the clients' keep-alive pools, so the process's descriptors
/// show them (`shared::http::sockets::tcp_sockets`, getsockopt on each).
#[tokio::test(flavor = "multi_thread")]
async fn every_socket_on_the_chat_path_has_nodelay() {
    let t = trained(
        Backend::Embedded,
        "pro",
        Some("gpt-4o-mini"),
        ChatMode::Reply {
            reply: "We open at eight.".into(),
            delay: Duration::ZERO,
        },
    )
    .await;
    let r = t
        .app
        .post(
            "/api/chat",
            &t.key,
            json!({"site_id": t.site_id, "message": "When do you open?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let health = t
        .app
        .client
        .get(format!("{}/healthz", t.app.bridge_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (runner, bridge, model) = (
        socket_addr(&t.app.base_url),
        socket_addr(&t.app.bridge_url),
        socket_addr(&t.peer.base_url),
    );
    let sockets = shared::http::sockets::tcp_sockets();
    type Matcher = Box<dyn Fn(&shared::http::sockets::TcpSocketInfo) -> bool>;
    let cases: [(&str, Matcher); 3] = [
        (
            "accepted by the runner",
            Box::new(move |s| s.local == runner),
        ),
        (
            "accepted by the bridge",
            Box::new(move |s| s.local == bridge),
        ),
        (
            "opened by the runner to the model",
            Box::new(move |s| s.peer == model),
        ),
    ];
    for (what, matches) in cases {
        let found: Vec<_> = sockets.iter().filter(|s| matches(s)).collect();
        assert!(!found.is_empty(), "no socket {what} among {sockets:?}");
        assert!(
            found.iter().all(|s| s.nodelay),
            "a socket {what} without TCP_NODELAY: {found:?}"
        );
    }
}

async fn monthly_chats(app: &TestApp, tenant: &str) -> i64 {
    let tenant = TenantId::parse(tenant).unwrap();
    let month = usage::month_of(app.platform.clock.now());
    let item = app
        .platform
        .store
        .get(&usage::tenant_month(&tenant, &month))
        .await
        .unwrap();
    item.map_or(0, |i| i.count(usage::counters::CHATS))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_failure_gives_the_reserved_chat_back() {
    let t = trained(
        Backend::Embedded,
        "pro",
        Some("gpt-4o-mini"),
        ChatMode::Fail(500),
    )
    .await;
    // Pro allows 10,000 chats a month: leave exactly one.
    let tenant = TenantId::parse(&t.tenant_id).unwrap();
    let month = usage::month_of(t.app.platform.clock.now());
    let used = monthly_chats(&t.app, &t.tenant_id).await;
    t.app
        .platform
        .store
        .add(Add::new(
            usage::tenant_month(&tenant, &month),
            usage::counters::CHATS,
            9_999 - used,
        ))
        .await
        .unwrap();
    let ask = || {
        t.app.post(
            "/api/chat",
            &t.key,
            json!({"site_id": t.site_id, "message": "When do you open?"}),
        )
    };
    let r = ask().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert!(r.body["error"]["request_id"].is_string());
    assert_eq!(
        t.peer
            .state
            .chat_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        3,
        "retried before the first token"
    );
    assert_eq!(monthly_chats(&t.app, &t.tenant_id).await, 9_999);
    // The failed chat gave its reservation back: the last chat of the month is still there, once.
    t.peer.set_mode(ChatMode::Reply {
        reply: "We open at nine.".into(),
        delay: Duration::from_millis(1),
    });
    let r = ask().await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(monthly_chats(&t.app, &t.tenant_id).await, 10_000);
    let r = ask().await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{:?}", r.body);
    assert_eq!(r.error_code(), "quota_exceeded");
    assert_eq!(monthly_chats(&t.app, &t.tenant_id).await, 10_000);
}

/// Polls the tenant's usage log until an entry with `outcome` appears (at most ten seconds).
async fn wait_for_log(t: &Trained, outcome: &str) -> shared::store::Item {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logs = t
            .app
            .platform
            .store
            .query(
                shared::store::Query::on(
                    shared::store::Index::ByTenant,
                    format!("TENANT#{}", t.tenant_id),
                )
                .prefix("LOG#"),
            )
            .await
            .unwrap();
        let mut found: Vec<_> = logs
            .items
            .into_iter()
            .filter(|i| i.attributes["outcome"] == outcome)
            .collect();
        assert!(found.len() <= 1, "one {outcome} entry, not {}", found.len());
        if let Some(item) = found.pop() {
            return item;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {outcome} usage log entry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll:
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disconnect_stops_generation_and_charges_exactly_what_was_generated() {
    let t = trained(
        Backend::Embedded,
        "pro",
        Some("gpt-4o-mini"),
        ChatMode::Echo,
    )
    .await;
    // A slow answer, and a client that leaves after the first deltas.
    let words: Vec<String> = (0..200).map(|i| format!("word{i} ")).collect();
    t.peer.set_mode(ChatMode::Reply {
        reply: words.concat(),
        delay: Duration::from_millis(50),
    });
    let response = t
        .app
        .client
        .post(t.app.url("/api/chat"))
        .bearer_auth(&t.key)
        .header("accept", "text/event-stream")
        .json(&json!({"site_id": t.site_id, "message": "Tell me everything about your coffee."}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut received = 0;
    while let Some(chunk) = body.next().await {
        received += String::from_utf8_lossy(&chunk.unwrap())
            .matches("event: delta")
            .count();
        if received >= 3 {
            break;
        }
    }
    drop(body);
    // Generation stops: the peer sees its stream dropped before its last word.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t
        .peer
        .state
        .chat_disconnects
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the model stream was never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll:
    }
    let log = wait_for_log(&t, "cancelled").await;
    let sent = t.peer.state.sent_text.lock().unwrap().clone();
    let sent_words = sent.split_inclusive(' ').count();
    assert!(
        sent_words >= 3 && sent_words < words.len(),
        "the peer stopped part-way ({sent_words} words)"
    );
    // Charged for exactly the words the peer sent (no usage report on a cut stream: the platform counts
    // them itself with the o200k tokenizer), and for the prompt it sent.
    let tokenizer = shared::chunk::Tokenizer::o200k();
    let output = tokenizer.count(&sent) as u64;
    let request = t.peer.state.last_chat.lock().unwrap().clone().unwrap();
    let prompt_text: Vec<&str> = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    let input = tokenizer.count(&prompt_text.join("\n")) as u64;
    let attr = |name: &str| log.attributes[name].as_u64().unwrap();
    assert_eq!(attr("chat_output_tokens"), output, "{sent:?}");
    assert_eq!(attr("chat_input_tokens"), input);
    // The logged cost is those tokens × the price table (gpt-4o-mini $0.15/$0.60 per 1M input/output,
    // text-embedding-3-small $0.02 per 1M), each rounded up to a micro-dollar.
    let micros = |tokens: u64, per_1k: u64| (tokens * per_1k).div_ceil(1000);
    let expected = micros(input, 150) + micros(output, 600) + micros(attr("embedding_tokens"), 20);
    assert_eq!(attr("cost"), expected, "{:?}", log.attributes);
}

async fn concurrent_chats_serve_exactly_the_remaining_quota(backend: Backend) {
    let t = trained(backend, "starter", None, ChatMode::Echo).await;
    // Starter allows 1,000 chats a month: leave 50.
    let tenant = TenantId::parse(&t.tenant_id).unwrap();
    let month = usage::month_of(t.app.platform.clock.now());
    t.app
        .platform
        .store
        .add(Add::new(
            usage::tenant_month(&tenant, &month),
            usage::counters::CHATS,
            950,
        ))
        .await
        .unwrap();
    let (ok, refused) = t.app.chat_burst(&t.key, &t.site_id, 200).await;
    assert_eq!((ok, refused.len()), (50, 150));
    assert_eq!(refused[0].body["error"]["plan"], "starter");
    assert!(
        refused[0].body["error"]["upgrade_hint"]
            .as_str()
            .unwrap()
            .contains("pro")
    );
    assert_eq!(
        monthly_chats(&t.app, &t.tenant_id).await,
        1000,
        "the counter stops at the limit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_chats_serve_exactly_the_remaining_quota_on_embedded_adapters() {
    concurrent_chats_serve_exactly_the_remaining_quota(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_chats_serve_exactly_the_remaining_quota_on_aws_adapters() {
    concurrent_chats_serve_exactly_the_remaining_quota(Backend::Aws).await;
}

/// The store's 50-way race on one counter (conformance: 50 adds, 20 fit), through the whole request
/// path: 50 chats from five tasks on a multi-threaded runtime, released together, with 20 chats left.
async fn fifty_chats_from_several_tasks_race_for_twenty(backend: Backend) {
    let t = trained(backend, "starter", None, ChatMode::Echo).await;
    let tenant = TenantId::parse(&t.tenant_id).unwrap();
    let month = usage::month_of(t.app.platform.clock.now());
    let used = monthly_chats(&t.app, &t.tenant_id).await;
    t.app
        .platform
        .store
        .add(Add::new(
            usage::tenant_month(&tenant, &month),
            usage::counters::CHATS,
            980 - used,
        ))
        .await
        .unwrap();
    const TASKS: usize = 5;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (client, url, key, site) = (
                t.app.client.clone(),
                t.app.url("/api/chat"),
                t.key.clone(),
                t.site_id.clone(),
            );
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let chats = (0..10).map(|i| {
                    client
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&json!({"site_id": site, "message": format!("opening hours {task}-{i}")}))
                        .send()
                });
                let mut out = Vec::new();
                for response in futures::future::join_all(chats).await {
                    let response = response.unwrap();
                    let status = response.status();
                    out.push((status, response.json::<Value>().await.unwrap_or(Value::Null)));
                }
                out
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.extend(task.await.unwrap());
    }
    let ok: Vec<&Value> = replies
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, b)| b)
        .collect();
    let refused = replies
        .iter()
        .filter(|(s, b)| {
            *s == StatusCode::PAYMENT_REQUIRED && b["error"]["code"] == "quota_exceeded"
        })
        .count();
    assert_eq!((ok.len(), refused), (20, 30), "{replies:?}");
    let ids: std::collections::BTreeSet<&str> = ok
        .iter()
        .map(|b| b["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 20, "every answer its own message");
    assert_eq!(monthly_chats(&t.app, &t.tenant_id).await, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_chats_from_several_tasks_race_for_twenty_on_embedded_adapters() {
    fifty_chats_from_several_tasks_race_for_twenty(Backend::Embedded).await;
}

// On moto, DynamoDB operations run under one lock (infra/dev/moto-serialized.py): moto's own
// TransactWriteItems restores a table snapshot on a failed condition, undoing concurrent writes, which
// DynamoDB never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_chats_from_several_tasks_race_for_twenty_on_aws_adapters() {
    fifty_chats_from_several_tasks_race_for_twenty(Backend::Aws).await;
}

async fn embed_chat(
    app: &TestApp,
    site_id: &str,
    origin: &str,
    message: &str,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let r = app
        .client
        .post(app.url("/api/embed/chat"))
        .header("origin", origin)
        .header("content-type", "text/plain;charset=UTF-8")
        .body(json!({"site_id": site_id, "message": message}).to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_public_embed_routes_check_origin_readiness_and_rate() {
    let t = trained(Backend::Embedded, "pro", None, ChatMode::Echo).await;
    let app = &t.app;
    // Not yet embed-enabled.
    let (status, body, _) = embed_chat(app, &t.site_id, "http://127.0.0.1:8080", "hours?").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let r = app
        .patch(
            &format!("/api/sites/{}", t.site_id),
            &t.key,
            json!({"is_embed_enabled": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Allowed origins: exact host, and a subdomain of a wildcard.
    for origin in ["http://127.0.0.1:8080", "https://shop.allowed.test"] {
        let (status, body, headers) =
            embed_chat(app, &t.site_id, origin, "What are your opening hours?").await;
        assert_eq!(status, StatusCode::OK, "{origin}: {body}");
        assert_eq!(headers["access-control-allow-origin"], origin);
        assert!(top_urls(&body).iter().any(|u| u.ends_with("/hours")));
        assert!(
            !body.to_string().contains(&t.key),
            "no tenant key reaches the browser"
        );
    }
    // Other origins: refused, and preflights too.
    for origin in [
        "https://evil.example",
        "https://allowed.test",
        "https://allowed.test.evil.example",
    ] {
        let (status, _, _) = embed_chat(app, &t.site_id, origin, "hours?").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}");
    }
    let preflight = |origin: &'static str| {
        app.client
            .request(
                reqwest::Method::OPTIONS,
                app.url(&format!("/api/embed/chat?site_id={}", t.site_id)),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight("https://shop.allowed.test").await.unwrap();
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://shop.allowed.test"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // Feedback on an answer, from its session only.
    let (_, answer, _) = embed_chat(
        app,
        &t.site_id,
        "http://127.0.0.1:8080",
        "Where is the shop?",
    )
    .await;
    let feedback = json!({"site_id": t.site_id, "session_id": answer["session_id"], "message_id": answer["message_id"], "rating": "up", "comment": "助かりました"});
    let r = app
        .client
        .post(app.url("/api/embed/feedback"))
        .header("origin", "http://127.0.0.1:8080")
        .json(&feedback)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let message =
        shared::chat::logs::MessageId::parse(answer["message_id"].as_str().unwrap()).unwrap();
    let log = shared::chat::logs::read(app.platform.store.as_ref(), &message)
        .await
        .unwrap()
        .unwrap();
    let stored = log.feedback.expect("feedback stored");
    assert_eq!(
        (stored.rating, stored.comment.as_deref()),
        (shared::chat::logs::Rating::Up, Some("助かりました"))
    );
    let mut wrong = feedback.clone();
    wrong["session_id"] = json!("sess_00000000000000000000000000");
    let r = app
        .client
        .post(app.url("/api/embed/feedback"))
        .header("origin", "http://127.0.0.1:8080")
        .json(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Message length cap.
    let (status, _, _) =
        embed_chat(app, &t.site_id, "http://127.0.0.1:8080", &"あ".repeat(2001)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Rate limit per visitor: 30 a minute, then 429 with Retry-After.
    let mut limited = None;
    for i in 0..40 {
        let (status, body, headers) = embed_chat(
            app,
            &t.site_id,
            "http://127.0.0.1:8080",
            &format!("hours {i}"),
        )
        .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((body, headers));
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (body, headers) = limited.expect("the rate limit was reached");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );

    // A site that is not trained is refused, as "not ready" (not as "not enabled": it is enabled).
    let fresh = app.create_site(&t.key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .patch(
            &format!("/api/sites/{fresh}"),
            &t.key,
            json!({"is_embed_enabled": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["is_embed_enabled"], true, "{:?}", r.body);
    let stored = shared::sites::get_site(
        app.platform.store.as_ref(),
        &TenantId::parse(&t.tenant_id).unwrap(),
        &SiteId::parse(&fresh).unwrap(),
    )
    .await
    .unwrap();
    assert!(stored.is_embed_enabled && stored.index_version.is_none());
    let (status, body, _) = embed_chat(app, &fresh, "http://127.0.0.1:8080", "hours?").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    let _ = &t.site;
}

#[tokio::test]
async fn a_configured_reranker_reorders_the_passages() {
    let peer = ModelPeer::start(ChatMode::Echo).await;
    let mut vars = peer.vars(None, Some("text-embedding-3-small"));
    vars.push(("KOTOBA_RERANK_MODEL".into(), "rerank-test".into()));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(Backend::Embedded, &extra).await;
    let site = TestSite::start().await;
    standard_site(&site);
    let (_, key) = app.create_tenant("pro").await;
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let ask = || {
        app.post(
            "/api/chat",
            &key,
            json!({"site_id": site_id, "message": "What are your opening hours on weekends?"}),
        )
    };

    // The reranker keeps the fused order: the hours page answers.
    let r = ask().await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(top_urls(&r.body)[0].ends_with("/hours"), "{:?}", r.body);
    assert_eq!(
        peer.state
            .rerank_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // The reranker prefers the roastery passage: it becomes the first source and the answer.
    *peer.state.rerank_prefer.lock().unwrap() = Some("Melbourne".into());
    let r = ask().await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let urls = top_urls(&r.body);
    assert!(urls[0].ends_with("/about"), "{urls:?}");
    assert!(urls.iter().any(|u| u.ends_with("/hours")), "{urls:?}");
    assert_eq!(
        peer.state
            .rerank_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}
