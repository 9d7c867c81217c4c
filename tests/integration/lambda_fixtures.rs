//! Every event fixture in `events/` through its function's Lambda entry point: lambda_http's adapter (the
//! code `lambda_http::run` runs) for API Gateway events, its streaming adapter (what
//! `run_with_streaming_response` runs) for the function-URL event, and the worker's SQS handler for the
//! queued job. One store, one story: a tenant, its site trained on a loopback site, chat in every shape,
//! feedback, keys, prompts, phone numbers, the receptionist, calls, usage and credits. A test at the end checks
//! no fixture was left out.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use md5::{Digest, Md5};
use serde_json::Value;

use kotoba_tests::lambda::{
    FIXTURE_KEY, JOB, KEY_ID, MESSAGE, SESSION, SITE, TENANT, fixture, invoke, invoke_streaming,
    platform, sse_events, unused_fixtures,
};
use kotoba_tests::site::{Page, TestSite};
use shared::Platform;
use shared::config::{Config, Mode};
use shared::ids::TenantId;
use shared::tenants::api_keys::{self, ApiKey};

const STREAM_URL: &str = "https://d111111abcdef8.cloudfront.net";

async fn hotel_site() -> TestSite {
    let site = TestSite::start().await;
    site.set(
        "/",
        Page::html(
            r#"<html><head><title>Hotel Sample</title></head><body><main>
            <h1>Hotel Sample</h1><p>Check-in is from 15:00 and check-out is until 11:00.</p>
            <p>チェックインは15時から、チェックアウトは11時までです。</p>
            <h2>Opening hours</h2><p>Our opening hours: the front desk is open 24 hours a day.</p>
            <p>フロントの営業時間は24時間です。</p>
            <a href="/access">Access</a></main></body></html>"#,
        ),
    );
    site.set(
        "/access",
        Page::html(
            r#"<html><head><title>Access</title></head><body><main>
            <h1>Access</h1><p>The hotel is a five-minute walk from Sample Station, exit 2.</p>
            </main></body></html>"#,
        ),
    );
    site
}

#[tokio::test]
async fn every_fixture_runs_through_its_lambda_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(
        dir.path(),
        &[
            ("KOTOBA_FETCH_ALLOW_LOOPBACK", "true"),
            ("KOTOBA_CHAT_STREAM_URL", STREAM_URL),
        ],
    );
    let management = management::app(platform.clone());
    let train = train::app(platform.clone());
    let chat = chat::app(platform.clone()).unwrap();
    let usage = usage::app(platform.clone());
    let credits = credits::app(platform.clone());
    let embed = embed_script::app(platform.clone());
    let worker = train_worker::Worker::new(platform.clone()).unwrap();

    // Admin: a tenant; then the fixtures' fixed key for it (what `cargo run -p management --example
    // fixture-tenant` does for `cargo lambda invoke`).
    let created = invoke(&management, &fixture("management-create-tenant.json")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(
        created.json()["api_key"]
            .as_str()
            .unwrap()
            .starts_with("kt_")
    );
    assert_eq!(created.json()["tenant"]["name"], "株式会社サンプル");
    let tenant = created.json()["tenant_id"].as_str().unwrap().to_string();
    api_keys::register(
        platform.store.as_ref(),
        platform.ids.as_ref(),
        platform.clock.as_ref(),
        &TenantId::parse(&tenant).unwrap(),
        &ApiKey::parse(FIXTURE_KEY).unwrap(),
        api_keys::NewKey::default(),
    )
    .await
    .unwrap();
    let r = invoke(
        &management,
        &fixture("management-admin-subscription.json").replace(TENANT, &tenant),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["subscription_status"], "active", "{}", r.body);
    let r = invoke(&management, &fixture("management-no-key.json")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "unauthorized");

    // Keys.
    let r = invoke(&management, &fixture("management-keys-create.json")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let new_key_id = r.json()["key_id"].as_str().unwrap().to_string();
    let r = invoke(&management, &fixture("management-keys-list.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["keys"].as_array().unwrap().len(), 3, "{}", r.body);
    let r = invoke(
        &management,
        &fixture("management-key-delete.json").replace(KEY_ID, &new_key_id),
    )
    .await;
    assert!(
        r.status == 200 || r.status == 204,
        "{} {}",
        r.status,
        r.body
    );

    // Sites and prompts.
    let r = invoke(&management, &fixture("management-create-site.json")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json()["allowed_domains"],
        serde_json::json!(["shop.example.co.jp", "*.example.com"]),
        "domains are normalised"
    );
    let site_id = r.json()["site_id"].as_str().unwrap().to_string();
    let with_site = |name: &str| fixture(name).replace(SITE, &site_id);
    let r = invoke(&management, &with_site("management-patch-site.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let patched = r.json();
    assert_eq!(patched["prompt"]["version"], 2);
    assert_eq!(
        patched["prompt"]["system_prompt"],
        "丁寧な日本語で答えてください。"
    );
    assert_eq!(patched["widget"]["theme"], "dark");
    assert_eq!(
        patched["widget"]["position"], "bottom-right",
        "unpatched widget fields are kept"
    );
    assert_eq!(patched["is_embed_enabled"], true);
    let r = invoke(&management, &with_site("management-invalid-widget.json")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["field"], "widget.color_primary");
    assert_eq!(
        r.json()["error"]["request_id"],
        "evt-invalid-widget",
        "the API Gateway request id is used"
    );
    let r = invoke(&management, &with_site("management-get-site.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["site_id"], site_id.as_str());
    let r = invoke(&management, &with_site("management-prompt-versions.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["versions"].as_array().unwrap().len(),
        2,
        "{}",
        r.body
    );
    let r = invoke(&management, &with_site("management-prompt-rollback.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["prompt"]["version"],
        3,
        "a rollback is a new version"
    );
    let r = invoke(&management, &fixture("management-list-sites.json")).await;
    assert_eq!(r.json()["sites"].as_array().unwrap().len(), 1);

    // Phone numbers (the operator provisions a number to the pool, the tenant takes it), the
    // receptionist, calls.
    let r = invoke(
        &management,
        &fixture("management-admin-phone-numbers-create.json"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = invoke(
        &management,
        &fixture("management-phone-numbers-create.json"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["number"], "+81312345678");
    let r = invoke(&management, &fixture("management-phone-numbers-list.json")).await;
    assert_eq!(r.json()["phone_numbers"].as_array().unwrap().len(), 1);
    let r = invoke(&management, &fixture("management-phone-number-delete.json")).await;
    assert!(
        r.status == 200 || r.status == 204,
        "{} {}",
        r.status,
        r.body
    );
    let r = invoke(&management, &fixture("management-phone-numbers-list.json")).await;
    assert!(r.json()["phone_numbers"].as_array().unwrap().is_empty());
    let r = invoke(&management, &fixture("management-voice-get.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = invoke(&management, &fixture("management-voice-patch.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["voice"], "coral", "{}", r.body);
    let r = invoke(&management, &fixture("management-voice-versions.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = invoke(&management, &fixture("management-voice-rollback.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = invoke(&management, &fixture("management-calls-list.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["calls"].as_array().unwrap().is_empty());
    let r = invoke(&management, &fixture("management-call-get.json")).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "not_found");

    // Training: the request, the queued job through the worker's SQS entry point, the job's state.
    let hotel = hotel_site().await;
    let r = invoke(
        &train,
        &with_site("train-url.json").replace("https://www.example.co.jp/", &hotel.url("/")),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let job_id = r.json()["job_id"].as_str().unwrap().to_string();
    let queued = platform
        .train_queue
        .receive(
            1,
            std::time::Duration::from_secs(60),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    let mut event = SqsEvent::default();
    event.records.push(train_worker::sqs_record(
        &queued[0].message_id,
        &queued[0].receipt,
        &queued[0].body,
        queued[0].receive_count,
    ));
    assert!(worker.handle(event).await.batch_item_failures.is_empty());
    let r = invoke(&train, &fixture("train-job-get.json").replace(JOB, &job_id)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let job = r.json();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["pages_crawled"], 2, "{job}");

    // Chat: the tenant API buffered and as SSE.
    let r = invoke(&chat, &with_site("chat.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        !r.json()["sources"].as_array().unwrap().is_empty(),
        "{}",
        r.body
    );
    let r = invoke(&chat, &with_site("chat-sse.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").starts_with("text/event-stream"));
    let events = sse_events(&r.body);
    let (last, done) = events.last().expect("events");
    assert_eq!(last, "done", "{}", r.body);
    assert!(done["answer"].as_str().unwrap().contains("15"), "{done}");

    // The widget through the API: preflight, a buffered answer, SSE, feedback on that answer.
    let r = invoke(&chat, &with_site("embed-chat-preflight.json")).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://shop.example.co.jp"
    );
    assert!(
        r.header("access-control-allow-headers")
            .contains("x-amz-content-sha256")
    );
    let r = invoke(&chat, &with_site("embed-chat.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.json();
    let r = invoke(&chat, &with_site("embed-chat-sse.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sse_events(&r.body).last().unwrap().0, "done");
    let r = invoke(
        &chat,
        &with_site("embed-feedback.json")
            .replace(SESSION, answer["session_id"].as_str().unwrap())
            .replace(MESSAGE, answer["message_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "recorded");

    // The streaming function URL behind CloudFront, through the streaming entry point.
    let r = invoke_streaming(&chat, &with_site("chat-stream-function-url.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").starts_with("text/event-stream"));
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://shop.example.co.jp"
    );
    let events = sse_events(&r.body);
    assert_eq!(events.last().unwrap().0, "done", "{}", r.body);

    // The widget loader tells the widget where to stream.
    let r = invoke(&embed, &with_site("embed-script-get.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains(&format!("\"stream_url\":\"{STREAM_URL}\"")),
        "{}",
        &r.body[r.body.len().saturating_sub(400)..]
    );

    // The console: an app route gets the page, with its policy and validator.
    let console = console::app(&platform.config);
    let r = invoke(&console, &fixture("console-page.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
    assert!(
        r.header("content-security-policy")
            .starts_with("default-src 'self'")
    );
    assert!(r.header("etag").starts_with('"'));
    assert!(r.body.contains("/console/assets/app-"), "{}", r.body);
    // The page's bundle, gzipped through the Lambda response (binary, so base64 on the wire).
    let bundle = r
        .body
        .split("src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let mut event: serde_json::Value = serde_json::from_str(&fixture("console-page.json")).unwrap();
    event["rawPath"] = bundle.clone().into();
    event["requestContext"]["http"]["path"] = bundle.clone().into();
    event["pathParameters"]["proxy"] = bundle.trim_start_matches("/console/").into();
    event["headers"]["accept-encoding"] = "gzip, deflate, br".into();
    let r = invoke(&console, &event.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-encoding"), "gzip");
    assert_eq!(r.header("content-type"), "text/javascript; charset=utf-8");
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &r.body)
        .expect("a gzipped body travels base64-encoded");
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");

    // Usage: the tenant's month, and the operator's view.
    let r = invoke(&usage, &fixture("usage.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = invoke(&usage, &fixture("usage-admin.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Credits: the tenant's balance, the plan's free credits of the month (less what chat spent).
    let r = invoke(&credits, &fixture("credits-balance.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["monthly_free_credits"], 1_000, "{}", r.body);
    // The credit report of a period.
    let r = invoke(&credits, &fixture("credits-analytics.json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["days"], 21, "{}", r.body);

    // The SQS fixtures: well-formed deliveries whose checksums SQS would have computed.
    let train: SqsEvent = serde_json::from_str(&fixture("train-worker-sqs.json")).unwrap();
    let hooks: SqsEvent = serde_json::from_str(&fixture("webhook-worker-sqs.json")).unwrap();
    for record in train.records.iter().chain(&hooks.records) {
        let body = record.body.as_deref().unwrap();
        assert_eq!(
            record.md5_of_body.as_deref(),
            Some(hex::encode(Md5::digest(body.as_bytes())).as_str()),
            "md5OfBody of {body}"
        );
    }

    // Stripe's signed event into the webhook function, with the clock at the fixture's signing time
    // (a signature holds five minutes) and the tenant its metadata names (the first sequential id).
    let event = fixture("webhook-stripe.json");
    let signed_at = serde_json::from_str::<Value>(&event).unwrap()["requestContext"]["timeEpoch"]
        .as_i64()
        .unwrap()
        / 1000;
    let hook_dir = tempfile::tempdir().unwrap();
    let vars = [
        ("KOTOBA_DATA_DIR", hook_dir.path().to_str().unwrap()),
        (
            "STRIPE_WEBHOOK_SECRET",
            "whsec_EventFixtureSecretForLocalInvokesOnly",
        ),
        ("STRIPE_PRICE_PRO", "price_fixture_pro"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let clock = shared::clock::ManualClock::at(
        time::OffsetDateTime::from_unix_timestamp(signed_at + 5).unwrap(),
    );
    let billing_platform = Platform::embedded(
        Config::from_vars(&vars, Mode::Deployed).unwrap(),
        Arc::new(clock.clone()),
        Arc::new(shared::ids::SequentialIds::default()),
    )
    .unwrap();
    let owner = shared::tenants::create_tenant(
        billing_platform.store.as_ref(),
        billing_platform.ids.as_ref(),
        billing_platform.clock.as_ref(),
        shared::tenants::TenantName::parse("Fixture Hotel").unwrap(),
        shared::tenants::Plan::Starter,
    )
    .await
    .unwrap();
    assert_eq!(owner.tenant_id.as_str(), "ten_00000000000000000000000001");
    let hook = webhook::app(billing_platform.clone());
    let r = invoke(&hook, &event).await;
    assert_eq!(
        (r.status, r.json()["outcome"].clone()),
        (200, Value::from("applied")),
        "{}",
        r.body
    );
    let owner = shared::tenants::get_tenant(billing_platform.store.as_ref(), &owner.tenant_id)
        .await
        .unwrap();
    assert_eq!(owner.plan, shared::tenants::Plan::Pro);
    assert_eq!(
        owner.stripe_customer_id.as_deref(),
        Some("cus_QfixtureKotoba")
    );
    let r = invoke(&hook, &event).await;
    assert_eq!(r.json()["outcome"], "duplicate", "a replay does nothing");
    clock.advance(std::time::Duration::from_secs(600));
    assert_eq!(
        invoke(&hook, &event).await.status,
        400,
        "ten minutes later the signature is stale"
    );

    the_schedule_event_runs_the_deadline_job_for_its_day().await;

    // Every fixture in events/ was used above.
    let unused = unused_fixtures();
    assert!(unused.is_empty(), "fixtures no test feeds: {unused:?}");
}

/// The deadline job's scheduler event: its day is the scheduled time's (the binary itself runs it
/// through `lambda_runtime` in functions/deadline-cron/tests/lambda_events.rs).
async fn the_schedule_event_runs_the_deadline_job_for_its_day() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(dir.path(), &[]);
    let event: deadline_cron::ScheduleEvent =
        serde_json::from_str(&fixture("deadline-cron-schedule.json")).unwrap();
    let job = deadline_cron::job(platform);
    let report = deadline_cron::handle(&job, event.clone()).await.unwrap();
    assert_eq!(report.date, "2026-03-09");
    assert_eq!(report.days, ["2026-03-09"]);
    assert!(report.errors.is_empty());
    // A second run for the day does nothing.
    let again = deadline_cron::handle(&job, event).await.unwrap();
    assert_eq!(again.acted(), 0);
}
