//! Handler behaviour on the deployed path that the one-story fixture walk in `lambda_fixtures` does not
//! cover: the widget loader before and after its site is ready, and an SQS batch whose records
//! succeed or fail on their own.

use aws_lambda_events::event::sqs::SqsEvent;

use kotoba_tests::lambda::{SITE, fixture, invoke, platform};
use shared::sites::{self, NewSite, SiteName, SitePatch, SiteStatus};
use shared::tenants::{self, Plan, TenantName};

#[tokio::test]
async fn the_script_event_answers_a_comment_until_the_site_is_ready_then_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform(dir.path(), &[]);
    let (store, ids, clock) = (p.store.as_ref(), p.ids.as_ref(), p.clock.as_ref());
    let tenant = tenants::create_tenant(
        store,
        ids,
        clock,
        TenantName::parse("株式会社サンプル").unwrap(),
        Plan::Pro,
    )
    .await
    .unwrap()
    .tenant_id;
    let site = sites::create_site(
        store,
        ids,
        clock,
        &tenant,
        NewSite {
            name: SiteName::parse("ショップ").unwrap(),
            allowed_domains: vec!["shop.example.co.jp".into()],
        },
    )
    .await
    .unwrap();
    let app = embed_script::app(p.clone());
    let event = fixture("embed-script-get.json").replace(SITE, site.site_id.as_str());

    // Not yet embed-enabled nor trained: a comment, never a broken page.
    let r = invoke(&app, &event).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.starts_with("/* "));

    let enable = SitePatch {
        is_embed_enabled: Some(true),
        ..SitePatch::default()
    };
    sites::patch_site(store, clock, &tenant, &site.site_id, enable)
        .await
        .unwrap();
    sites::update_site_internal(
        store,
        clock,
        &site.site_id,
        |s| {
            s.status = SiteStatus::Ready;
            s.index_version = Some(3);
        },
        Vec::new(),
    )
    .await
    .unwrap();

    let r = invoke(&app, &event).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        "application/javascript; charset=utf-8"
    );
    assert!(r.header("etag").starts_with('"'));
    assert!(r.body.contains(site.site_id.as_str()));
    assert!(r.body.trim_end().ends_with(");"));
}

/// A message for an unknown job is done with; a malformed one is reported as a batch item failure (so
/// SQS retries, then dead-letters it) without failing its neighbour.
#[tokio::test]
async fn each_sqs_record_succeeds_or_fails_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let worker = train_worker::Worker::new(platform(dir.path(), &[])).unwrap();

    let event: SqsEvent =
        serde_json::from_str(&fixture("train-worker-sqs.json")).expect("an SQS event");
    assert_eq!(event.records.len(), 2);
    let response = worker.handle(event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["2e1424d4-f796-459a-8184-9c92662be6da"],
        "only the malformed record fails"
    );
    // The response serialises as Lambda expects it.
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(
        json["batchItemFailures"][0]["itemIdentifier"],
        "2e1424d4-f796-459a-8184-9c92662be6da"
    );
}
