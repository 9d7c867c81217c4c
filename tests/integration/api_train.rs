//! Training through the local runner, as a tenant drives it: a local website with every case the
//! crawler must handle, trained on both adapter families; differential re-training; failures that end
//! in the dead-letter queue; a job killed mid-run and finished by redelivery; the SSRF refusal.

use std::collections::BTreeSet;

use kotoba_tests::peer::{ChatMode, ModelPeer};
use kotoba_tests::site::{Page, STANDARD_INDEXED, TestSite, standard_site};
use kotoba_tests::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

use shared::ids::SiteId;
use shared::index::SiteIndex;
use shared::training::documents::{self, DocumentStatus};

async fn app_with_peer(backend: Backend, peer: &ModelPeer) -> TestApp {
    let vars = peer.vars(None, Some("text-embedding-3-small"));
    let mut extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    extra.push(("KOTOBA_TRAIN_RETRY_SECS", "1"));
    TestApp::spawn_with(backend, &extra).await
}

async fn active_paths(app: &TestApp, site: &TestSite, site_id: &str) -> BTreeSet<String> {
    let docs = documents::load_all(
        app.platform.store.as_ref(),
        &SiteId::parse(site_id).unwrap(),
    )
    .await
    .unwrap();
    docs.iter()
        .filter(|d| d.status == DocumentStatus::Active)
        .map(|d| {
            d.canonical_url
                .trim_start_matches(&site.base_url)
                .to_string()
        })
        .collect()
}

async fn current_index(app: &TestApp, site_id: &str, key: &str) -> SiteIndex {
    let site = app.get(&format!("/api/sites/{site_id}"), key).await.body;
    let version = site["index_version"].as_u64().expect("an index version");
    let blob = app
        .platform
        .blobs
        .get(&shared::index::blob_key(
            &SiteId::parse(site_id).unwrap(),
            version,
        ))
        .await
        .unwrap()
        .expect("the index blob");
    SiteIndex::decode(&blob.bytes).unwrap()
}

async fn trains_and_retrains(backend: Backend) {
    let peer = ModelPeer::start(ChatMode::Echo).await;
    let app = app_with_peer(backend, &peer).await;
    let site = TestSite::start().await;
    standard_site(&site);
    let (_, key) = app.create_tenant("pro").await;
    let created = app.create_site(&key, &["127.0.0.1"]).await;
    let site_id = created["site_id"].as_str().unwrap().to_string();

    // First training: the right pages are in, the others are not, the Japanese text is correct.
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["pages_changed"], 6, "{job}");
    assert_eq!(job["pages_removed"], 0, "{job}");
    assert!(job["chunks"].as_u64().unwrap() >= 6, "{job}");
    assert!(job["embedding_tokens"].as_u64().unwrap() > 0, "{job}");
    assert!(job["estimated_cost_usd"].as_f64().unwrap() > 0.0, "{job}");
    assert_eq!(job["embedding_model"], "text-embedding-3-small");
    let expected: BTreeSet<String> = STANDARD_INDEXED.iter().map(|s| s.to_string()).collect();
    assert_eq!(active_paths(&app, &site, &site_id).await, expected);
    assert!(
        !site.requests().contains(&"/private/secret".to_string()),
        "robots.txt was not honoured"
    );
    let index = current_index(&app, &site_id, &key).await;
    let all_text: String = index
        .chunks
        .iter()
        .map(|c| format!("{} {} {}\n", c.title, c.heading_path.join(" "), c.text))
        .collect();
    assert!(
        all_text.contains("当店の営業時間は午前八時から午後六時までです。"),
        "Shift_JIS page decoded: {all_text}"
    );
    assert!(
        all_text.contains("京都駅から徒歩五分、烏丸通り沿いにございます。"),
        "EUC-JP page decoded: {all_text}"
    );
    assert!(
        all_text.contains("Hojicha latte"),
        "the redirect chain was followed"
    );
    for absent in ["safe code", "Draft pricing", "Copyright Kotoba Coffee"] {
        assert!(!all_text.contains(absent), "{absent:?} must not be indexed");
    }
    assert!(
        index
            .vectors
            .as_ref()
            .is_some_and(|v| v.len() == index.chunks.len())
    );
    let site_json = app.get(&format!("/api/sites/{site_id}"), &key).await.body;
    assert_eq!(
        (
            site_json["status"].as_str(),
            site_json["index_version"].as_u64()
        ),
        (Some("ready"), Some(1))
    );
    assert!(site_json["last_trained_at"].is_string());

    // Nothing changed: nothing re-embedded.
    let calls = peer.embedding_requests();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(
        (job["status"].as_str(), job["pages_changed"].as_u64()),
        (Some("succeeded"), Some(0)),
        "{job}"
    );
    assert_eq!(job["embedding_tokens"], 0, "{job}");
    assert_eq!(
        peer.embedding_requests(),
        calls,
        "an unchanged site makes no embedding calls"
    );
    assert_eq!(
        current_index(&app, &site_id, &key).await.chunks.len(),
        index.chunks.len()
    );

    // One page changes: only its chunks are embedded.
    site.set(
        "/hours",
        Page::html(
            r#"<html><head><title>Opening hours</title></head><body><main><h1>Opening hours</h1>
        <p>From December we open at 7am every day, and close at 7pm.</p></main></body></html>"#,
        ),
    );
    let inputs = peer.embedded_inputs();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(
        (job["status"].as_str(), job["pages_changed"].as_u64()),
        (Some("succeeded"), Some(1)),
        "{job}"
    );
    let docs = documents::load_all(
        app.platform.store.as_ref(),
        &SiteId::parse(&site_id).unwrap(),
    )
    .await
    .unwrap();
    let hours = docs
        .iter()
        .find(|d| d.canonical_url.ends_with("/hours"))
        .unwrap();
    assert_eq!(hours.version, 2);
    assert_eq!(
        peer.embedded_inputs() - inputs,
        hours.chunk_count as usize,
        "only the changed page's chunks"
    );
    let index = current_index(&app, &site_id, &key).await;
    assert!(
        index
            .chunks
            .iter()
            .any(|c| c.text.contains("open at 7am every day"))
    );
    assert!(
        !index
            .chunks
            .iter()
            .any(|c| c.text.contains("8am to 6pm on weekdays"))
    );

    // One page is deleted (with the alias that names it canonical): it leaves the index.
    site.remove("/about");
    site.remove("/dup");
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(
        (job["status"].as_str(), job["pages_removed"].as_u64()),
        (Some("succeeded"), Some(1)),
        "{job}"
    );
    let expected: BTreeSet<String> = STANDARD_INDEXED
        .iter()
        .filter(|p| **p != "/about")
        .map(|s| s.to_string())
        .collect();
    assert_eq!(active_paths(&app, &site, &site_id).await, expected);
    let index = current_index(&app, &site_id, &key).await;
    assert!(!index.chunks.iter().any(|c| c.url.ends_with("/about")));

    // Forced: everything is rebuilt and re-embedded.
    let inputs = peer.embedded_inputs();
    let job = app.train(&key, &site_id, &site.url("/"), true).await;
    assert_eq!(
        (job["status"].as_str(), job["pages_changed"].as_u64()),
        (Some("succeeded"), Some(5)),
        "{job}"
    );
    assert_eq!(
        peer.embedded_inputs() - inputs,
        current_index(&app, &site_id, &key).await.chunks.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trains_and_retrains_on_embedded_adapters() {
    trains_and_retrains(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trains_and_retrains_on_aws_adapters() {
    trains_and_retrains(Backend::Aws).await;
}

async fn failing_job_is_dead_lettered(backend: Backend) {
    let peer = ModelPeer::start(ChatMode::Echo).await;
    let app = app_with_peer(backend, &peer).await;
    let site = TestSite::start().await;
    site.set("/", Page::status(500));
    let (_, key) = app.create_tenant("starter").await;
    let site_id = app.create_site(&key, &[]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempt"], 3, "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("failed after 3 attempts"),
        "{job}"
    );
    // The message reaches the dead-letter queue (on its fourth receive, as SQS does).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let dead = loop {
        let dead = app
            .platform
            .train_queue
            .receive_dead_letters(10)
            .await
            .unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the message never reached the dead-letter queue"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await; // poll:
    };
    assert!(dead[0].body.contains(job["job_id"].as_str().unwrap()));
    let site_json = app.get(&format!("/api/sites/{site_id}"), &key).await.body;
    assert_eq!(
        site_json["status"], "failed",
        "a first training that fails leaves the site failed"
    );
    assert!(
        site_json["last_training_error"]
            .as_str()
            .unwrap()
            .contains("no pages")
    );
    // The site is free to train again.
    let reply = app
        .post(
            "/api/train/url",
            &key,
            json!({"site_id": site_id, "url": site.url("/")}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_job_is_dead_lettered_on_embedded_adapters() {
    failing_job_is_dead_lettered(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_job_is_dead_lettered_on_aws_adapters() {
    failing_job_is_dead_lettered(Backend::Aws).await;
}

/// Receives the next training message and hands it to the worker, as the runner's loop would.
async fn deliver(
    app: &TestApp,
) -> tokio::task::JoinHandle<aws_lambda_events::event::sqs::SqsBatchResponse> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let message = loop {
        let mut got = app
            .platform
            .train_queue
            .receive(
                1,
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(1),
            )
            .await
            .unwrap();
        if let Some(m) = got.pop() {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no training message to deliver"
        );
    };
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records.push(train_worker::sqs_record(
        &message.message_id,
        &message.receipt,
        &message.body,
        message.receive_count,
    ));
    let worker = app.worker.clone();
    let queue = app.platform.train_queue.clone();
    tokio::spawn(async move {
        let response = worker.handle(event).await;
        if response.batch_item_failures.is_empty() {
            queue.delete(&message.receipt).await.unwrap();
        }
        response
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_killed_mid_run_is_finished_exactly_by_redelivery() {
    let peer = ModelPeer::start(ChatMode::Echo).await;
    let vars = peer.vars(None, Some("text-embedding-3-small"));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_paused(Backend::Embedded, &extra).await;
    let site = TestSite::start().await;
    standard_site(&site);
    site.hold("/menu"); // the crawl stops there until released
    let (_, key) = app.create_tenant("pro").await;
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = app
        .post(
            "/api/train/url",
            &key,
            json!({"site_id": site_id, "url": site.url("/")}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let job_id = reply.body["job_id"].as_str().unwrap().to_string();

    // A second request while this one is queued is refused with its id.
    let again = app
        .post(
            "/api/train/url",
            &key,
            json!({"site_id": site_id, "url": site.url("/")}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["error"]["details"]["job_id"], job_id.as_str());

    // First attempt: kill the worker once every page but the held one is done.
    let first = deliver(&app).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let job = app
            .get(&format!("/api/train/jobs/{job_id}"), &key)
            .await
            .body;
        if job["pages_changed"].as_u64() == Some(5) {
            assert_eq!(job["status"], "running");
            assert_eq!(job["attempt"], 1);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first attempt made no progress: {job}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // poll:
    }
    first.abort();
    let _ = first.await;
    site.release();
    let inputs_before_redelivery = peer.embedded_inputs();

    // Redelivery (after the visibility timeout) finishes the job.
    let second = deliver(&app).await.await.unwrap();
    assert!(second.batch_item_failures.is_empty());
    let job = app.wait_for_job(&key, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempt"], 2);
    assert_eq!(
        job["pages_changed"], 6,
        "every page counted once across both attempts: {job}"
    );
    let index = current_index(&app, &site_id, &key).await;
    let docs = documents::load_all(
        app.platform.store.as_ref(),
        &SiteId::parse(&site_id).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(docs.len(), 6, "no duplicate documents");
    let doc_chunks: u32 = docs.iter().map(|d| d.chunk_count).sum();
    assert_eq!(index.chunks.len(), doc_chunks as usize);
    assert_eq!(job["chunks"].as_u64(), Some(index.chunks.len() as u64));
    let mut seen = BTreeSet::new();
    for c in &index.chunks {
        assert!(
            seen.insert((c.url.clone(), c.text.clone())),
            "duplicate chunk {c:?}"
        );
    }
    // Embedding spend: every chunk embedded exactly once over both attempts.
    assert_eq!(peer.embedded_inputs(), index.chunks.len());
    let menu = docs
        .iter()
        .find(|d| d.canonical_url.ends_with("/menu"))
        .unwrap();
    assert_eq!(
        peer.embedded_inputs() - inputs_before_redelivery,
        menu.chunk_count as usize,
        "the redelivery embedded only the unfinished page"
    );
}

/// Polls `done` until it holds (at most a minute).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // poll:
    }
}

async fn a_job_killed_during_an_embedding_request_is_finished_exactly(backend: Backend) {
    let peer = ModelPeer::start(ChatMode::Echo).await;
    let vars = peer.vars(None, Some("text-embedding-3-small"));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_paused(backend, &extra).await;
    let site = TestSite::start().await;
    standard_site(&site);
    let (tenant_id, key) = app.create_tenant("pro").await;
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    peer.hold_embeddings(true);
    let reply = app
        .post(
            "/api/train/url",
            &key,
            json!({"site_id": site_id, "url": site.url("/")}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let job_id = reply.body["job_id"].as_str().unwrap().to_string();

    // First attempt: killed while its first embedding request is with the model.
    let first = deliver(&app).await;
    let state = peer.state.clone();
    eventually("an embedding request in flight", || {
        state
            .embeddings_waiting
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
    let job = app
        .get(&format!("/api/train/jobs/{job_id}"), &key)
        .await
        .body;
    assert_eq!(
        (job["status"].as_str(), job["attempt"].as_u64()),
        (Some("running"), Some(1)),
        "{job}"
    );
    first.abort();
    let _ = first.await;
    eventually("the killed request abandoned at the model", || {
        state
            .embeddings_abandoned
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
    assert_eq!(peer.embedding_requests(), 0, "nothing was answered");
    peer.hold_embeddings(false);

    // Redelivery finishes the job: every page once, every chunk embedded once.
    let second = deliver(&app).await.await.unwrap();
    assert!(second.batch_item_failures.is_empty());
    let job = app.wait_for_job(&key, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempt"], 2);
    assert_eq!(job["pages_changed"], 6, "{job}");
    let docs = documents::load_all(
        app.platform.store.as_ref(),
        &SiteId::parse(&site_id).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(docs.len(), 6, "no duplicate documents");
    let index = current_index(&app, &site_id, &key).await;
    let doc_chunks: u32 = docs.iter().map(|d| d.chunk_count).sum();
    assert_eq!(index.chunks.len(), doc_chunks as usize);
    assert!(index.chunks.iter().all(|c| !c.text.is_empty()));
    assert_eq!(
        index.embedding_model.as_deref(),
        Some("text-embedding-3-small")
    );
    assert_eq!(
        peer.embedded_inputs(),
        index.chunks.len(),
        "each chunk embedded once"
    );
    // The job and its documents count what the model answered. The tenant's monthly quota also keeps
    // the reservation of the request the kill abandoned: the provider may have billed it, the worker
    // cannot know, so it stays counted (never under-counted), at exactly its estimate.
    let answered: u64 = docs.iter().map(|d| d.embedding_tokens).sum();
    assert!(answered > 0);
    assert_eq!(job["embedding_tokens"].as_u64(), Some(answered), "{job}");
    let tokenizer = shared::chunk::Tokenizer::o200k();
    let abandoned: Vec<String> = peer.state.abandoned_inputs.lock().unwrap().clone();
    assert!(!abandoned.is_empty());
    let reserved: u64 = abandoned
        .iter()
        .map(|text| tokenizer.count(text) as u64)
        .sum::<u64>()
        .max(1);
    let tenant = shared::ids::TenantId::parse(&tenant_id).unwrap();
    let month = shared::usage::month_of(app.platform.clock.now());
    let counted = app
        .platform
        .store
        .get(&shared::usage::tenant_month(&tenant, &month))
        .await
        .unwrap()
        .map_or(0, |i| i.count(shared::usage::counters::EMBEDDING_TOKENS));
    assert_eq!(
        counted,
        (answered + reserved) as i64,
        "the monthly embedding tokens"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_killed_during_an_embedding_request_is_finished_exactly_on_embedded_adapters() {
    a_job_killed_during_an_embedding_request_is_finished_exactly(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_killed_during_an_embedding_request_is_finished_exactly_on_aws_adapters() {
    a_job_killed_during_an_embedding_request_is_finished_exactly(Backend::Aws).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_and_malformed_urls_are_refused_before_queueing() {
    let app = TestApp::spawn_paused(Backend::Embedded, &[]).await;
    let (_, key) = app.create_tenant("starter").await;
    let site_id = app.create_site(&key, &[]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[fd00::1]/",
        "http://[::ffff:192.168.1.1]/",
        "http://100.64.0.1/",
    ] {
        let r = app
            .post(
                "/api/train/url",
                &key,
                json!({"site_id": site_id, "url": url}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], "url");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot be fetched"),
            "{:?}",
            r.body
        );
    }
    for (body, field) in [
        (
            json!({"site_id": site_id, "url": "ftp://example.com/"}),
            "url",
        ),
        (
            json!({"site_id": site_id, "url": "https://user:pw@example.com/"}),
            "url",
        ),
        (
            json!({"site_id": site_id, "url": "http://127.0.0.1:9/", "max_depth": 10_001}),
            "max_depth",
        ),
        (
            json!({"site_id": site_id, "url": "http://127.0.0.1:9/", "scope": "everything"}),
            "scope",
        ),
        (
            json!({"site_id": site_id, "url": "http://127.0.0.1:9/", "max_pages": 0}),
            "max_pages",
        ),
        (json!({"site_id": site_id}), "url"),
    ] {
        let r = app.post("/api/train/url", &key, body.clone()).await;
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{body}"
        );
    }
    // Another tenant's site does not exist for this tenant.
    let (_, other) = app.create_tenant("starter").await;
    let r = app
        .post(
            "/api/train/url",
            &other,
            json!({"site_id": site_id, "url": "http://127.0.0.1:9/"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The plan caps max_pages.
    let r = app
        .post(
            "/api/train/url",
            &key,
            json!({"site_id": site_id, "url": "http://127.0.0.1:9/", "max_pages": 100000}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body["max_pages"], 100);
    let job: Value = app
        .get(
            &format!("/api/train/jobs/{}", r.body["job_id"].as_str().unwrap()),
            &key,
        )
        .await
        .body;
    assert_eq!(
        (job["status"].as_str(), job["max_pages"].as_u64()),
        (Some("queued"), Some(100))
    );
    assert_eq!(
        app.get(
            &format!("/api/train/jobs/{}", r.body["job_id"].as_str().unwrap()),
            &other
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

/// A host with an English and a Japanese section; robots.txt lists the English sitemap first, so a
/// crawl that takes sitemaps in order would spend its budget there.
fn two_section_site(site: &TestSite) {
    let base = &site.base_url;
    site.set(
        "/robots.txt",
        Page::bytes(
            "text/plain",
            format!("User-agent: *\nAllow: /\nSitemap: {base}/en/sitemap.xml\nSitemap: {base}/ja/sitemap.xml\n")
                .into_bytes(),
        ),
    );
    let sections = [
        (
            "en",
            "ja",
            ["Shipping", "Returns", "Gift wrapping", "Store hours"],
        ),
        (
            "ja",
            "en",
            ["配送について", "返品について", "ギフト包装", "営業時間"],
        ),
    ];
    for (lang, other, titles) in sections {
        let paths: Vec<String> = (0..titles.len()).map(|i| format!("/{lang}/q{i}")).collect();
        let locs: String = paths
            .iter()
            .map(|p| format!("<url><loc>{base}{p}</loc></url>"))
            .collect();
        site.set(
            &format!("/{lang}/sitemap.xml"),
            Page::bytes(
                "application/xml",
                format!(r#"<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>"#)
                    .into_bytes(),
            ),
        );
        // The section's start page links to the other section (the language switcher).
        site.set(
            &format!("/{lang}/"),
            Page::html(&format!(
                r#"<html lang="{lang}"><head><title>Help ({lang})</title></head><body><nav><a href="/{other}/">{other}</a></nav><main><h1>Help</h1><p>Help pages in {lang}.</p></main></body></html>"#
            )),
        );
        for (p, title) in paths.iter().zip(titles) {
            site.set(
                p,
                Page::html(&format!(
                    r#"<html lang="{lang}"><head><title>{title}</title></head><body><nav><a href="/">Home</a> <a href="/{other}/">{other}</a></nav><main><h1>{title}</h1><p>{title}: section {lang}, page {p}.</p></main></body></html>"#
                )),
            );
        }
    }
    site.set(
        "/",
        Page::html(
            r#"<html><body><a href="/en/">English</a> <a href="/ja/">日本語</a></body></html>"#,
        ),
    );
}

async fn train_with(app: &TestApp, key: &str, body: Value) -> Value {
    let reply = app.post("/api/train/url", key, body).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let job = reply.body["job_id"].as_str().expect("job_id").to_string();
    app.wait_for_job(key, &job).await
}

#[tokio::test]
async fn training_a_section_indexes_only_that_section_unless_scope_is_host() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let site = TestSite::start().await;
    two_section_site(&site);
    let (_, key) = app.create_tenant("pro").await;
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Default scope: the /ja/ section, with a budget the whole host would overrun.
    let job = train_with(
        &app,
        &key,
        json!({"site_id": site_id, "url": site.url("/ja/"), "max_pages": 5}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        (job["scope"].as_str(), job["max_depth"].as_u64()),
        (Some("prefix"), Some(5)),
        "{job}"
    );
    let ja: BTreeSet<String> = ["/ja/", "/ja/q0", "/ja/q1", "/ja/q2", "/ja/q3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(active_paths(&app, &site, &site_id).await, ja);
    // The 4 English sitemap entries, /en/ (linked from every Japanese page) and / (from each page).
    assert_eq!(job["urls_out_of_scope"], 6, "{job}");
    assert!(
        site.requests()
            .iter()
            .all(|p| !p.starts_with("/en/q") && p != "/en/" && p != "/"),
        "nothing outside /ja/ was fetched as a page: {:?}",
        site.requests()
    );
    let read = app
        .get(
            &format!("/api/train/jobs/{}", job["job_id"].as_str().unwrap()),
            &key,
        )
        .await;
    assert_eq!(read.body["urls_out_of_scope"], 6);

    // A question in the other section's language finds nothing of it.
    let index = current_index(&app, &site_id, &key).await;
    assert!(index.chunks.iter().all(|c| c.url.contains("/ja/")));

    // scope "host": both sections (and the root), nothing out of scope.
    let job = train_with(
        &app,
        &key,
        json!({"site_id": site_id, "url": site.url("/ja/"), "scope": "host"}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["scope"], "host");
    assert_eq!(job["urls_out_of_scope"], 0, "{job}");
    let paths = active_paths(&app, &site, &site_id).await;
    for p in ["/ja/q3", "/en/", "/en/q0", "/en/q3", "/"] {
        assert!(paths.contains(p), "{p} missing from {paths:?}");
    }
    assert_eq!(paths.len(), 11, "{paths:?}");

    // A scope that is neither is refused before anything is queued.
    let reply = app
        .post(
            "/api/train/url",
            &key,
            json!({"site_id": site_id, "url": site.url("/ja/"), "scope": "everything"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scope"),
        "{:?}",
        reply.body
    );
}
