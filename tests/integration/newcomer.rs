//! The newcomer's path: a fresh `make dev` answers questions about the demo site at once (trained on the
//! sample site the runner serves itself, through the normal training pipeline over loopback), in
//! Japanese and English, with sources; and the silent surprises are said out loud in the API.

use reqwest::StatusCode;
use serde_json::{Value, json};

use kotoba_tests::TestApp;
use kotoba_tests::peer::{ChatMode, ModelPeer};
use local_runner::DemoTraining;

async fn ask(app: &TestApp, message: &str) -> Value {
    let reply = app
        .post(
            "/api/chat",
            &app.demo.api_key,
            json!({"site_id": app.demo.site_id, "message": message}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

/// The first source's path on the runner, and every source on the sample site.
fn first_source(app: &TestApp, answer: &Value) -> String {
    let sources = answer["sources"].as_array().expect("sources");
    assert!(!sources.is_empty(), "no sources: {answer}");
    let site = app.url(local_runner::sample_site::PREFIX);
    for source in sources {
        let url = source["url"].as_str().unwrap();
        assert!(url.starts_with(&site), "{url} is not on {site}");
    }
    sources[0]["url"].as_str().unwrap()[app.base_url.len()..].to_string()
}

#[tokio::test]
async fn a_fresh_runner_answers_the_demo_site_in_japanese_and_english_with_sources() {
    let (app, training) = TestApp::spawn_dev(&[]).await;
    let DemoTraining::Trained { url, pages, .. } = &training else {
        panic!("the demo site was not trained: {training}");
    };
    assert_eq!(url, &app.url("/demo/site/"));
    assert_eq!(*pages, local_runner::sample_site::PAGE_COUNT as u64);
    let site = app
        .get(
            &format!("/api/sites/{}", app.demo.site_id),
            &app.demo.api_key,
        )
        .await;
    assert_eq!(site.body["status"], "ready", "{:?}", site.body);

    let en = ask(&app, "What time is check-in?").await;
    assert_eq!(first_source(&app, &en), "/demo/site/en/checkin.html");
    assert!(en["answer"].as_str().unwrap().contains("3:00 pm"), "{en}");
    assert_eq!(en["model_used"], "extractive");
    assert_eq!(en["warnings"], json!([]));

    let ja = ask(&app, "チェックアウトは何時までですか？").await;
    assert_eq!(first_source(&app, &ja), "/demo/site/ja/checkin.html");
    assert!(ja["answer"].as_str().unwrap().contains("11時まで"), "{ja}");

    // The Shift_JIS page was decoded, not mangled.
    let onsen = ask(&app, "温泉は何時まで入れますか？").await;
    assert_eq!(first_source(&app, &onsen), "/demo/site/ja/onsen.html");
    assert!(
        onsen["answer"].as_str().unwrap().contains("翌朝10時"),
        "{onsen}"
    );
    assert!(
        onsen["sources"][0]["title"]
            .as_str()
            .unwrap()
            .contains("温泉")
    );

    // A page no link leads to: found through the sitemap named in /robots.txt.
    let pets = ask(&app, "Can I bring my pet dog?").await;
    assert_eq!(first_source(&app, &pets), "/demo/site/en/policies.html");
}

#[tokio::test]
async fn the_demo_page_widget_and_stream_work_on_a_fresh_runner() {
    let (app, training) = TestApp::spawn_dev(&[]).await;
    assert!(
        matches!(training, DemoTraining::Trained { .. }),
        "{training}"
    );
    let page = app.client.get(app.url("/demo")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains(app.demo.site_id.as_str())
    );
    let script = app
        .client
        .get(app.url(&format!("/api/embed/script?site_id={}", app.demo.site_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        script.status(),
        StatusCode::OK,
        "the demo site is ready to embed"
    );

    // What the widget on /demo sends: a visitor's question from the runner's own origin.
    let visitor = app
        .client
        .post(app.url("/api/embed/chat"))
        .header("origin", app.base_url.clone())
        .json(&json!({"site_id": app.demo.site_id, "message": "When is breakfast served?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(visitor.status(), StatusCode::OK);
    let visitor: Value = visitor.json().await.unwrap();
    assert_eq!(first_source(&app, &visitor), "/demo/site/en/dining.html");
    assert_eq!(visitor["warnings"], json!([]));

    // The README's `curl -N`: a streamed answer ends with the whole object.
    let stream = app
        .client
        .post(app.url("/api/chat"))
        .bearer_auth(&app.demo.api_key)
        .header("accept", "text/event-stream")
        .json(&json!({"site_id": app.demo.site_id, "message": "駐車場はありますか？"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let body = stream.text().await.unwrap();
    assert!(body.contains("event: delta"), "{body}");
    let done = body
        .split("event: done\ndata: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("a done event");
    let done: Value = serde_json::from_str(done).unwrap();
    assert_eq!(first_source(&app, &done), "/demo/site/ja/access.html");
}

#[tokio::test]
async fn a_restart_on_another_port_retrains_so_sources_point_at_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = |listen: &str| {
        let vars = [
            ("KOTOBA_LISTEN", listen),
            ("KOTOBA_BRIDGE_LISTEN", "127.0.0.1:0"),
            ("KOTOBA_DATA_DIR", dir.path().to_str().unwrap()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        shared::config::Config::from_vars(&vars, shared::config::Mode::Local).unwrap()
    };
    let first = local_runner::start(config("127.0.0.1:0")).await.unwrap();
    let (demo, first_url) = (first.demo.clone(), first.base_url());
    let stop = first.stop_handle();
    let (server, training) = first.spawn_dev().await;
    assert!(
        matches!(training, DemoTraining::Trained { .. }),
        "{training}"
    );
    stop.stop();
    server.await.unwrap();

    // The demo key and ids are kept in the data directory.
    let kept = std::fs::read_to_string(dir.path().join("demo-api-key")).unwrap();
    assert_eq!(kept.trim(), demo.api_key);

    let second = local_runner::start(config("127.0.0.1:0")).await.unwrap();
    assert_eq!(second.demo.site_id, demo.site_id);
    let second_url = second.base_url();
    assert_ne!(first_url, second_url);
    let stop = second.stop_handle();
    let (server, training) = second.spawn_dev().await;
    let DemoTraining::Trained { url, .. } = &training else {
        panic!("a new address needs a re-train: {training}");
    };
    assert_eq!(url, &format!("{second_url}/demo/site/"));
    let answer: Value = reqwest::Client::new()
        .post(format!("{second_url}/api/chat"))
        .bearer_auth(&demo.api_key)
        .json(&json!({"site_id": demo.site_id, "message": "Is there parking?"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for source in answer["sources"].as_array().unwrap() {
        assert!(
            source["url"].as_str().unwrap().starts_with(&second_url),
            "{answer}"
        );
    }
    stop.stop();
    server.await.unwrap();

    // The same address again: nothing to re-train.
    let third = local_runner::start(config(second_url.trim_start_matches("http://")))
        .await
        .unwrap();
    let stop = third.stop_handle();
    let (server, training) = third.spawn_dev().await;
    assert_eq!(
        training,
        DemoTraining::AlreadyTrained {
            url: format!("{second_url}/demo/site/")
        }
    );
    stop.stop();
    server.await.unwrap();
}

#[tokio::test]
async fn a_configured_model_outside_the_plan_falls_back_and_says_so() {
    let peer = ModelPeer::start(ChatMode::Reply {
        reply: "Check-in is from 3:00 pm.".into(),
        delay: std::time::Duration::ZERO,
    })
    .await;
    // gpt-4.1 is an enterprise model; the tenant is on starter.
    let vars = peer.vars(Some("gpt-4.1"), None);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (app, _) = TestApp::spawn_dev(&vars).await;
    let (_, key) = app.create_tenant("starter").await;
    let site = app.create_site(&key, &["127.0.0.1"]).await;
    let site_id = site["site_id"].as_str().unwrap();
    let job = app
        .train(&key, site_id, &app.url("/demo/site/en/"), false)
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let reply = app
        .post(
            "/api/chat",
            &key,
            json!({"site_id": site_id, "message": "What time is check-in?"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["model_used"], "gpt-4o-mini");
    assert_eq!(reply.body["warnings"][0]["code"], "model_fallback");
    let message = reply.body["warnings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("gpt-4.1") && message.contains("starter"),
        "{message}"
    );
    let sent = peer.state.last_chat.lock().unwrap().clone().unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini", "the fallback really answered");

    // Asking for the model explicitly is refused rather than silently replaced.
    let explicit = app
        .post(
            "/api/chat",
            &key,
            json!({"site_id": site_id, "message": "What time is check-in?", "model": "gpt-4.1"}),
        )
        .await;
    assert_eq!(
        explicit.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        explicit.body
    );
}

#[tokio::test]
async fn turning_embeddings_on_says_a_retrain_is_needed_until_one_runs() {
    let peer = ModelPeer::start(ChatMode::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let config = |extra: &[(String, String)]| {
        let mut vars: std::collections::HashMap<String, String> = [
            ("KOTOBA_LISTEN", "127.0.0.1:0"),
            ("KOTOBA_BRIDGE_LISTEN", "127.0.0.1:0"),
            ("KOTOBA_DATA_DIR", dir.path().to_str().unwrap()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.extend(extra.iter().cloned());
        shared::config::Config::from_vars(&vars, shared::config::Mode::Local).unwrap()
    };
    // Trained lexically, as `make dev` without a model does…
    let lexical = local_runner::start(config(&[])).await.unwrap();
    let (demo, stop) = (lexical.demo.clone(), lexical.stop_handle());
    let (server, training) = lexical.spawn_dev().await;
    assert!(
        matches!(training, DemoTraining::Trained { .. }),
        "{training}"
    );
    stop.stop();
    server.await.unwrap();

    // …then started with an embedding model (without the start-up re-train of the demo site).
    let embedded = local_runner::start(config(&peer.vars(None, Some("peer-embed"))))
        .await
        .unwrap();
    let base = embedded.base_url();
    let stop = embedded.stop_handle();
    let server = embedded.spawn();
    let client = reqwest::Client::new();
    let ask = || async {
        let reply: Value = client
            .post(format!("{base}/api/chat"))
            .bearer_auth(&demo.api_key)
            .json(&json!({"site_id": demo.site_id, "message": "When is breakfast served?"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reply
    };
    let before = ask().await;
    assert_eq!(before["warnings"][0]["code"], "retrain_needed", "{before}");
    assert!(
        before["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("peer-embed")
    );
    assert_eq!(before["tokens_consumed"]["embedding"], 0);
    assert!(
        !before["sources"].as_array().unwrap().is_empty(),
        "lexical still answers"
    );

    // A plain re-train (no force) embeds the pages; the warning goes away.
    let queued: Value = client
        .post(format!("{base}/api/train/url"))
        .bearer_auth(&demo.api_key)
        .json(&json!({"site_id": demo.site_id, "url": format!("{base}/demo/site/")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = queued["job_id"].as_str().expect("job_id").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let job = loop {
        let job: Value = client
            .get(format!("{base}/api/train/jobs/{job_id}"))
            .bearer_auth(&demo.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(job["status"].as_str(), Some("succeeded" | "failed")) {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await; // poll: inside a loop with a deadline
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["embedding_tokens"].as_u64().unwrap() > 0, "{job}");
    // The chat function caches a site for a few seconds, so the new index serves shortly after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let after = loop {
        let after = ask().await;
        if after["warnings"] == json!([]) {
            break after;
        }
        assert_eq!(after["warnings"][0]["code"], "retrain_needed", "{after}");
        assert!(std::time::Instant::now() < deadline, "{after}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await; // poll: inside a loop with a deadline
    };
    assert!(
        after["tokens_consumed"]["embedding"].as_u64().unwrap() > 0,
        "{after}"
    );
    stop.stop();
    server.await.unwrap();
}
