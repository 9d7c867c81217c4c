//! A training job bigger than one invocation: a 3,000-page site trained with a 20 s time budget per slice
//! (`KOTOBA_TRAIN_SLICE_SECS`) through the local runner's queue and the worker's entry point. The job
//! suspends at each budget, checkpoints its crawl frontier, continues in follow-up messages, and
//! finishes as one job with exact counts, every chunk embedded exactly once.
//!
//! Several slices are certain, not a matter of machine speed: the site answers each page after 50 ms and
//! the crawler keeps at most 4 requests in flight per host, so 3,000 pages take at least 37.5 s.
//!
//! And a slice killed mid-way (its invocation dropped, as a Lambda timeout or crash would) is taken
//! over by the redelivery of its message, from the latest checkpoint, without embedding anything twice.

use std::time::Duration;

use kotoba_tests::peer::{ChatMode, ModelPeer};
use kotoba_tests::site::{Page, TestSite};
use kotoba_tests::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;

const PAGES: usize = 3_000;

/// `/` links every page and robots.txt names a sitemap of them all; each page has text of its own.
fn generate(site: &TestSite) {
    generate_pages(site, PAGES);
}

fn generate_pages(site: &TestSite, pages: usize) {
    let base = &site.base_url;
    let paths: Vec<String> = (1..pages).map(|i| format!("/p/{i}")).collect();
    site.set(
        "/robots.txt",
        Page::bytes(
            "text/plain",
            format!("User-agent: *\nAllow: /\n\nSitemap: {base}/sitemap.xml\n").into_bytes(),
        ),
    );
    let mut sitemap = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">"#,
    );
    for p in &paths {
        sitemap.push_str(&format!("<url><loc>{base}{p}</loc></url>"));
    }
    sitemap.push_str("</urlset>");
    site.set(
        "/sitemap.xml",
        Page::bytes("application/xml", sitemap.into_bytes()),
    );
    site.set(
        "/",
        Page::html(
            "<html><head><title>Big shop</title></head><body><main><h1>Big shop</h1>\
             <p>Every product of the big shop has a page of its own.</p></main></body></html>",
        ),
    );
    for (n, p) in paths.iter().enumerate() {
        let i = n + 1;
        site.set(
            p,
            Page::html(&format!(
                "<html><head><title>Product {i}</title></head><body><main><h1>Product {i}</h1>\
                 <p>Product {i} is sold in box size {} and ships from warehouse {} within {} days.</p>\
                 </main></body></html>",
                i % 7 + 1,
                i % 13 + 1,
                i % 5 + 2
            )),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_site_trains_in_slices_with_exact_counts_and_each_chunk_embedded_once() {
    let site = TestSite::start().await;
    generate(&site);
    site.set_delay(Duration::from_millis(50));
    let peer = ModelPeer::start(ChatMode::Echo).await;
    let mut vars = peer.vars(None, Some("text-embedding-3-small"));
    vars.push(("KOTOBA_TRAIN_SLICE_SECS".into(), "20".into()));
    vars.push(("RUST_LOG".into(), "warn".into()));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(Backend::Embedded, &extra).await;
    let (_tenant, key) = app.create_tenant("enterprise").await;
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();

    let r = app
        .post(
            "/api/train/url",
            &key,
            json!({"site_id": site_id, "url": site.url("/"), "max_pages": PAGES, "max_depth": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let job_id = r.body["job_id"].as_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1_800);
    let mut slices_seen = Vec::new();
    let job = loop {
        let r = app.get(&format!("/api/train/jobs/{job_id}"), &key).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let slices = r.body["slices"].as_u64().unwrap();
        if slices_seen.last() != Some(&slices) {
            slices_seen.push(slices);
        }
        if matches!(r.body["status"].as_str(), Some("succeeded" | "failed")) {
            break r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not finish: {:?}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await; // poll: inside a loop with a deadline
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    // One job, exact counts.
    assert_eq!(job["pages_crawled"], PAGES, "{job}");
    assert_eq!(job["pages_changed"], PAGES, "{job}");
    assert_eq!(job["pages_removed"], 0, "{job}");
    assert_eq!(job["pages_skipped"], 0, "{job}");
    assert!(
        job["slices"].as_u64().unwrap() >= 2,
        "a 37.5 s crawl in 20 s slices: {job}"
    );
    assert!(
        slices_seen.windows(2).all(|w| w[0] < w[1]),
        "slices only move forward: {slices_seen:?}"
    );
    // Each chunk embedded once: the peer embedded exactly as many texts as the index holds chunks.
    let chunks = job["chunks"].as_u64().unwrap();
    assert!(chunks >= PAGES as u64, "{job}");
    assert_eq!(peer.embedded_inputs() as u64, chunks, "{job}");
    // Every page was requested once (robots.txt and the sitemap aside).
    let requests = site.requests();
    let pages: Vec<&String> = requests
        .iter()
        .filter(|r| !r.ends_with(".txt") && !r.ends_with(".xml"))
        .collect();
    assert_eq!(pages.len(), PAGES, "no page fetched twice across slices");

    // The trained site answers.
    let r = app
        .post(
            "/api/chat",
            &key,
            json!({"site_id": site_id, "message": "Which warehouse ships product 2024?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(
        r.body["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["url"].as_str().unwrap().ends_with("/p/2024")),
        "{:?}",
        r.body
    );
}

/// The next message on the runner's training queue, as the SQS event Lambda would deliver.
async fn next_delivery(app: &TestApp) -> Option<(aws_lambda_events::event::sqs::SqsEvent, String)> {
    let received = app
        .platform
        .train_queue
        .receive(1, Duration::from_secs(3_600), Duration::ZERO)
        .await
        .unwrap();
    let message = received.into_iter().next()?;
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records.push(train_worker::sqs_record(
        &message.message_id,
        &message.receipt,
        &message.body,
        message.receive_count,
    ));
    Some((event, message.receipt))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_slice_is_taken_over_on_redelivery_without_embedding_twice() {
    const SMALL: usize = 300;
    let site = TestSite::start().await;
    generate_pages(&site, SMALL);
    site.set_delay(Duration::from_millis(20));
    let peer = ModelPeer::start(ChatMode::Echo).await;
    let mut vars = peer.vars(None, Some("text-embedding-3-small"));
    vars.push(("KOTOBA_TRAIN_SLICE_SECS".into(), "1".into()));
    vars.push(("RUST_LOG".into(), "warn".into()));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_paused(Backend::Embedded, &extra).await;
    let (_tenant, key) = app.create_tenant("pro").await;
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post(
            "/api/train/url",
            &key,
            json!({"site_id": site_id, "url": site.url("/"), "max_pages": SMALL, "max_depth": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let job_id = r.body["job_id"].as_str().unwrap().to_string();

    // Slices run in turn; every other delivery is killed part-way (dropped after 300 ms, wherever it
    // is) and left undeleted, so the queue hands the same message over again.
    let mut killed = 0;
    let mut deliveries = 0;
    while let Some((event, receipt)) = next_delivery(&app).await {
        deliveries += 1;
        assert!(deliveries < 500, "the job never finished");
        if deliveries % 2 == 1 {
            let run = app.worker.handle(event);
            if tokio::time::timeout(Duration::from_millis(300), run)
                .await
                .is_err()
            {
                killed += 1;
                app.platform
                    .train_queue
                    .change_visibility(&receipt, Duration::ZERO)
                    .await
                    .unwrap();
                continue;
            }
            app.platform.train_queue.delete(&receipt).await.unwrap();
        } else {
            let response = app.worker.handle(event).await;
            assert!(response.batch_item_failures.is_empty());
            app.platform.train_queue.delete(&receipt).await.unwrap();
        }
    }
    let job = app
        .get(&format!("/api/train/jobs/{job_id}"), &key)
        .await
        .body;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(
        killed > 0,
        "some slices were killed: {deliveries} deliveries"
    );
    assert!(job["slices"].as_u64().unwrap() >= 2, "{job}");
    assert_eq!(job["pages_crawled"], SMALL, "{job}");
    assert_eq!(job["pages_changed"], SMALL, "{job}");
    assert_eq!(job["pages_skipped"], 0, "{job}");
    // Pages are handled one at a time and each is saved as soon as it is embedded, so a kill can
    // lose at most the one page it interrupted (one chunk each here); everything saved before it is
    // recognised by the take-over and not embedded again.
    let chunks = job["chunks"].as_u64().unwrap();
    assert_eq!(chunks, SMALL as u64, "one chunk per page: {job}");
    let embedded = peer.embedded_inputs() as u64;
    assert!(
        embedded >= chunks && embedded <= chunks + killed,
        "{embedded} texts embedded for {chunks} chunks with {killed} kills: {job}"
    );
}
