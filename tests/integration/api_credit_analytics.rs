//! Credit analytics, direct AI calls and anomaly detection through the local runner, on both adapter
//! families: `POST /api/ai/execute` metered through the model peer (reserve, settle, release on
//! failure), its refusals; `GET /api/credits/analytics` over days seeded in the past with an injected
//! clock (ledger entries, usage logs, a daily summary written by the deadline job); a burst of
//! executions over the trailing baseline alerting, then suspending AI actions with 403
//! `suspicious_activity`. After every scenario the books balance (`ledger::check_books`).

use std::sync::Arc;
use std::time::Duration;

use kotoba_tests::peer::{ChatMode, ModelPeer};
use kotoba_tests::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use shared::chat::logs::{self, AnswerOutcome, Channel, PriceSnapshot, UsageLog};
use shared::clock::ManualClock;
use shared::credits::ledger::check_books;
use shared::credits::{CreditSettings, Credits, Meter, MeteredFunction};
use shared::ids::{MessageId, RandomIds, SessionId, SiteId, TenantId};
use shared::money::MicroUsd;

const REPLY: &str = "Three points stand out.";

struct World {
    app: TestApp,
    peer: ModelPeer,
    tenant_id: TenantId,
    key: String,
}

async fn world(backend: Backend, plan: &str, extra: &[(&str, &str)]) -> World {
    let peer = ModelPeer::start(ChatMode::Reply {
        reply: REPLY.into(),
        delay: Duration::ZERO,
    })
    .await;
    let vars = peer.vars(Some("gpt-4o-mini"), None);
    let mut settings: Vec<(&str, &str)> =
        vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    settings.extend_from_slice(extra);
    let app = TestApp::spawn_with(backend, &settings).await;
    let (tenant_id, key) = app.create_tenant(plan).await;
    app.set_subscription(&tenant_id, "active").await;
    World {
        app,
        peer,
        tenant_id: TenantId::parse(&tenant_id).unwrap(),
        key,
    }
}

impl World {
    async fn books(&self) {
        check_books(self.app.platform.store.as_ref(), &self.tenant_id)
            .await
            .expect("the balance is the sum of the ledger");
    }

    async fn execute(&self, key: &str, body: Value) -> kotoba_tests::app::Reply {
        self.app.post("/api/ai/execute", key, body).await
    }

    async fn available(&self) -> i64 {
        let r = self.app.get("/api/credits/balance", &self.key).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body["available"].as_i64().unwrap()
    }

    async fn key_with_role(&self, role: &str) -> String {
        let r = self
            .app
            .post("/api/keys", &self.key, json!({"role": role}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["api_key"].as_str().unwrap().to_string()
    }

    /// A meter on the runner's store whose clock stands at `at`: actions charged in the past.
    fn meter_at(&self, at: OffsetDateTime) -> Meter {
        Meter::new(
            self.app.platform.store.clone(),
            Arc::new(ManualClock::at(at)),
            Arc::new(RandomIds),
            CreditSettings::default(),
        )
    }

    async fn charge(&self, at: OffsetDateTime, function: MeteredFunction, credits: i64) {
        let meter = self.meter_at(at);
        let hold = meter
            .reserve(&self.tenant_id, function, Credits(credits), None)
            .await
            .unwrap();
        meter.settle(hold, Credits(credits), None).await.unwrap();
    }

    /// The security events in the tenant's audit log, oldest first.
    async fn audit_actions(&self) -> Vec<String> {
        let (entries, _) =
            shared::audit::list(self.app.platform.store.as_ref(), &self.tenant_id, None)
                .await
                .unwrap();
        entries
            .into_iter()
            .rev()
            .map(|e| e.action)
            .filter(|a| a.starts_with("security."))
            .collect()
    }
}

async fn execute_is_metered_released_on_failure_and_refused_clearly(backend: Backend) {
    let w = world(backend, "starter", &[]).await;
    let before = w.available().await;
    let r = w
        .execute(
            &w.key,
            json!({"function_type": "summary", "input": "A long report about the hotel's spring season.", "max_tokens": 200}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["result"]["output"], REPLY);
    assert!(
        r.body["execution"]["execution_id"]
            .as_str()
            .unwrap()
            .starts_with("exec_")
    );
    assert!(r.body["execution"]["execution_ms"].as_u64().is_some());
    let used = r.body["credits"]["used"].as_i64().unwrap();
    assert!(used >= 1, "{:?}", r.body);
    assert_eq!(r.body["credits"]["remaining"].as_i64(), Some(before - used));
    assert_eq!(w.available().await, before - used, "the rest was released");
    // The summary's system prompt and the asked-for limit went to the model.
    let sent = w.peer.state.last_chat.lock().unwrap().clone().unwrap();
    assert!(
        sent["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("Summarise"),
        "{sent}"
    );
    assert_eq!(sent["max_tokens"], 200);
    assert_eq!(sent["model"], "gpt-4o-mini");
    // Its cost is in the month's usage report, as chat's is.
    let usage = w.app.get("/api/usage", &w.key).await;
    assert_eq!(usage.status, StatusCode::OK, "{:?}", usage.body);
    assert!(
        usage.body["totals"]["cost_usd"].as_f64().unwrap() > 0.0,
        "{:?}",
        usage.body
    );

    // A manager may execute, a viewer may not.
    let manager = w.key_with_role("manager").await;
    let r = w
        .execute(
            &manager,
            json!({"function_type": "chatbot", "input": "hello"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let viewer = w.key_with_role("viewer").await;
    let r = w
        .execute(
            &viewer,
            json!({"function_type": "chatbot", "input": "hello"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "forbidden_role");

    // Bad input: a 400 naming the field; a model outside the plan: 403.
    for (body, field) in [
        (
            json!({"function_type": "poem", "input": "x"}),
            "function_type",
        ),
        (json!({"function_type": "custom", "input": "  "}), "input"),
        (
            json!({"function_type": "custom", "input": "x".repeat(20_001)}),
            "input",
        ),
        (
            json!({"function_type": "custom", "input": "x", "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"function_type": "custom", "input": "x", "temperature": 2.5}),
            "temperature",
        ),
        (
            json!({"function_type": "custom", "input": "x", "model": "no-such-model"}),
            "model",
        ),
    ] {
        let r = w.execute(&w.key, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}: {:?}", r.body);
    }
    let r = w
        .execute(
            &w.key,
            json!({"function_type": "custom", "input": "x", "extra": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = w
        .execute(
            &w.key,
            json!({"function_type": "custom", "input": "x", "model": "gpt-4o"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(r.error_code(), "forbidden");

    // The model fails before any text: 503, nothing charged, the hold released.
    let available = w.available().await;
    w.peer.set_mode(ChatMode::Fail(500));
    let r = w
        .execute(
            &w.key,
            json!({"function_type": "analysis", "input": "figures"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(w.available().await, available);
    w.books().await;

    // Out of credits: 402 credits_exhausted with the balance.
    w.peer.set_mode(ChatMode::Reply {
        reply: REPLY.into(),
        delay: Duration::ZERO,
    });
    let r = w
        .app
        .post(
            &format!("/api/admin/tenants/{}/credits", w.tenant_id),
            &w.app.admin_key,
            json!({"credits": -available, "reason": "test: empty the wallet"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = w
        .execute(
            &w.key,
            json!({"function_type": "chatbot", "input": "hello"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{:?}", r.body);
    assert_eq!(r.error_code(), "credits_exhausted");
    assert_eq!(r.body["error"]["balance"], 0);
    w.books().await;
}

#[tokio::test]
async fn execute_is_metered_released_on_failure_and_refused_clearly_embedded() {
    execute_is_metered_released_on_failure_and_refused_clearly(Backend::Embedded).await;
}

#[tokio::test]
async fn execute_is_metered_released_on_failure_and_refused_clearly_aws() {
    execute_is_metered_released_on_failure_and_refused_clearly(Backend::Aws).await;
}

/// A deployment without a chat model refuses direct calls (403: a setting, not an outage) and
/// reserves nothing.
async fn execute_without_a_model_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant_id, key) = app.create_tenant("pro").await;
    app.set_subscription(&tenant_id, "active").await;
    let r = app
        .post(
            "/api/ai/execute",
            &key,
            json!({"function_type": "summary", "input": "text"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no chat model"),
        "{:?}",
        r.body
    );
    let tenant = TenantId::parse(&tenant_id).unwrap();
    check_books(app.platform.store.as_ref(), &tenant)
        .await
        .expect("the balance is the sum of the ledger");
}

#[tokio::test]
async fn execute_without_a_model_is_refused_embedded() {
    execute_without_a_model_is_refused(Backend::Embedded).await;
}

#[tokio::test]
async fn execute_without_a_model_is_refused_aws() {
    execute_without_a_model_is_refused(Backend::Aws).await;
}

fn usage_log(
    tenant: &TenantId,
    at: OffsetDateTime,
    outcome: AnswerOutcome,
    latency_ms: u64,
) -> UsageLog {
    UsageLog {
        message_id: MessageId::generate(&RandomIds),
        tenant_id: tenant.clone(),
        site_id: SiteId::parse("site_seeded").unwrap(),
        session_id: SessionId::generate(&RandomIds),
        channel: Channel::Api,
        model: "gpt-4o-mini".into(),
        embedding_model: None,
        outcome,
        chat_input_tokens: 100,
        chat_output_tokens: 20,
        embedding_tokens: 0,
        latency_ms,
        cost: MicroUsd(27),
        prices: PriceSnapshot::default(),
        ip_hash: None,
        user_agent: None,
        request_id: None,
        error: None,
        created_at: at,
        feedback: None,
    }
}

fn day(at: OffsetDateTime) -> String {
    shared::deadlines::day_text(at.date())
}

async fn analytics_reads_summaries_logs_and_the_ledger(backend: Backend) {
    let w = world(backend, "pro", &[]).await;
    let store = w.app.platform.store.as_ref();
    let now = OffsetDateTime::now_utc();
    let d1 = (now - time::Duration::days(3)).replace_time(time::macros::time!(10:00));
    let d2 = d1 + time::Duration::days(1);
    // Day 1: two chats charged 4 and 6 credits, one of them failed; summarised by the deadline job,
    // then its logs are gone, so only the summary can tell.
    w.charge(d1, MeteredFunction::Chat, 4).await;
    w.charge(d1, MeteredFunction::Chat, 6).await;
    let d1_logs = [
        usage_log(&w.tenant_id, d1, AnswerOutcome::Answered, 100),
        usage_log(&w.tenant_id, d1, AnswerOutcome::Failed, 300),
    ];
    for log in &d1_logs {
        logs::write(store, log, now.unix_timestamp()).await.unwrap();
    }
    // And one direct AI call that failed (nothing charged).
    let d1_execution = shared::execute::ExecutionLog {
        execution_id: "exec_seededd1".into(),
        tenant_id: w.tenant_id.clone(),
        function_type: shared::execute::FunctionType::Summary,
        model: "gpt-4o-mini".into(),
        outcome: shared::execute::ExecutionOutcome::Failed,
        input_tokens: 0,
        output_tokens: 0,
        latency_ms: 70,
        cost: MicroUsd(0),
        credits: Credits(0),
        input_per_1k: MicroUsd(150),
        output_per_1k: MicroUsd(600),
        request_id: None,
        error: Some("the chat provider is unavailable".into()),
        created_at: d1,
    };
    shared::execute::write_log(store, &d1_execution)
        .await
        .unwrap();
    let r = w
        .app
        .post(
            "/api/admin/cron/run",
            &w.app.admin_key,
            json!({"date": day(d2)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["actions"]["usage_summary"], 1, "{:?}", r.body);
    let d1_keys = d1_logs
        .iter()
        .map(|log| shared::store::keys::usage_log(&log.message_id))
        .chain([shared::store::keys::execution_log(
            &d1_execution.execution_id,
        )]);
    for key in d1_keys {
        store
            .delete(&key, shared::store::Condition::None)
            .await
            .unwrap();
    }
    // Day 2: one chat of 3 credits, not summarised: read from its log.
    w.charge(d2, MeteredFunction::Chat, 3).await;
    logs::write(
        store,
        &usage_log(&w.tenant_id, d2, AnswerOutcome::Answered, 50),
        now.unix_timestamp(),
    )
    .await
    .unwrap();
    // Today: one execution served, one failed before any text (not charged).
    let r = w
        .execute(&w.key, json!({"function_type": "custom", "input": "hi"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let executed = r.body["credits"]["used"].as_i64().unwrap();
    w.peer.set_mode(ChatMode::Fail(500));
    let r = w
        .execute(&w.key, json!({"function_type": "custom", "input": "hi"}))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);

    let r = w
        .app
        .get(
            &format!("/api/credits/analytics?from={}&to={}", day(d1), day(now)),
            &w.key,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let a = &r.body;
    assert_eq!(a["days"], 4);
    assert_eq!(a["daily"].as_array().unwrap().len(), 4);
    assert_eq!(a["totals"]["credits_used"].as_i64(), Some(13 + executed));
    assert_eq!(a["totals"]["actions"], 4);
    assert_eq!(
        a["average_daily"]["credits"].as_f64(),
        Some((13 + executed) as f64 / 4.0)
    );
    assert_eq!(a["peak_day"]["day"], day(d1));
    assert_eq!(a["peak_day"]["credits"], 10);
    let chat = &a["functions"][0];
    assert_eq!(chat["function"], "chat", "{a}");
    assert_eq!(
        (chat["count"].as_i64(), chat["credits"].as_i64()),
        (Some(3), Some(13))
    );
    assert_eq!(
        chat["requests"], 3,
        "the summary's two and the log's one: {a}"
    );
    assert_eq!(chat["success_rate"].as_f64(), Some(2.0 / 3.0));
    assert_eq!(chat["mean_latency_ms"].as_f64(), Some(150.0));
    let execute = &a["functions"][1];
    assert_eq!(execute["function"], "execute", "{a}");
    assert_eq!(
        (execute["count"].as_i64(), execute["requests"].as_i64()),
        (Some(1), Some(3)),
        "day 1's from its summary, today's two from their logs: {a}"
    );
    assert_eq!(execute["success_rate"].as_f64(), Some(1.0 / 3.0));
    assert!(execute["mean_latency_ms"].as_f64().is_some());
    // The month so far, extrapolated; pro's usage this small fits the starter plan's free credits.
    let p = &a["projected_month"];
    let (used, elapsed, days) = (
        p["used_so_far"].as_i64().unwrap(),
        p["days_elapsed"].as_i64().unwrap(),
        p["days_in_month"].as_i64().unwrap(),
    );
    assert!(used >= executed, "{p}");
    assert_eq!(
        p["projected_credits"].as_i64(),
        Some((used * days + elapsed - 1) / elapsed)
    );
    assert_eq!(a["plan"], "pro");
    assert_eq!(a["plan_suggestion"]["plan"], "starter", "{a}");

    // A viewer reads it too; by default it covers this month so far.
    let viewer = w.key_with_role("viewer").await;
    let r = w.app.get("/api/credits/analytics", &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["to"], day(now));
    assert!(r.body["from"].as_str().unwrap().ends_with("-01"));

    // Clear 400s.
    let tomorrow = day(now + time::Duration::days(1));
    let long_ago = day(now - time::Duration::days(366));
    for (query, field) in [
        (format!("from={}&to={}", day(d2), day(d1)), "from"),
        ("from=2026-13-01".to_string(), "from"),
        (format!("to={tomorrow}"), "to"),
        (format!("from={long_ago}&to={}", day(now)), "from"),
    ] {
        let r = w
            .app
            .get(&format!("/api/credits/analytics?{query}"), &w.key)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{query}");
    }
    w.books().await;
}

#[tokio::test]
async fn analytics_reads_summaries_logs_and_the_ledger_embedded() {
    analytics_reads_summaries_logs_and_the_ledger(Backend::Embedded).await;
}

#[tokio::test]
async fn analytics_reads_summaries_logs_and_the_ledger_aws() {
    analytics_reads_summaries_logs_and_the_ledger(Backend::Aws).await;
}

/// Waits (polling the clock) while fewer than `margin` seconds are left in the hour, so a burst is
/// counted in one hour.
async fn within_one_hour(margin: i64) -> OffsetDateTime {
    let deadline = std::time::Instant::now() + Duration::from_secs(margin as u64 + 5);
    loop {
        let now = OffsetDateTime::now_utc();
        if 3600 - now.unix_timestamp().rem_euclid(3600) >= margin {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hour never turned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await; // poll: inside a loop with a deadline
    }
}

async fn a_burst_over_the_baseline_alerts_then_suspends(backend: Backend) {
    // Baseline at least 1 action an hour; alert over 3×, suspend over 4×.
    let w = world(
        backend,
        "pro",
        &[
            ("KOTOBA_ANOMALY_MIN_BASELINE", "1"),
            ("KOTOBA_ANOMALY_CRITICAL_MULTIPLE", "4"),
        ],
    )
    .await;
    let now = within_one_hour(240).await;
    // Two chats in each of the last 24 hours: a baseline of 2 an hour (alert over 6, suspend over 8).
    for back in 1..=24 {
        let at = now - time::Duration::hours(back);
        w.charge(at, MeteredFunction::Chat, 1).await;
        w.charge(at, MeteredFunction::Chat, 1).await;
    }
    let run = |n: usize| {
        let w = &w;
        async move {
            let r = w
                .execute(
                    &w.key,
                    json!({"function_type": "chatbot", "input": format!("question {n}")}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "execution {n}: {:?}", r.body);
        }
    };
    for n in 1..=6 {
        run(n).await;
    }
    assert!(
        w.audit_actions().await.is_empty(),
        "6 is 3× the baseline, not over"
    );
    run(7).await;
    assert_eq!(w.audit_actions().await, ["security.unusual_usage"]);
    run(8).await;
    assert_eq!(
        w.audit_actions().await,
        ["security.unusual_usage"],
        "alerted once an hour; 8 is 4×, not over"
    );
    run(9).await;
    assert_eq!(
        w.audit_actions().await,
        ["security.unusual_usage", "security.ai_suspended"]
    );
    let r = w
        .execute(
            &w.key,
            json!({"function_type": "chatbot", "input": "one more"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(r.error_code(), "suspicious_activity");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3000..=3600).contains(&retry), "{retry}");
    // Every AI action is refused, chat included, in the reservation's own round trip.
    let refused = Meter::of(&w.app.platform)
        .reserve(&w.tenant_id, MeteredFunction::Chat, Credits(1), None)
        .await;
    assert!(
        matches!(refused, Err(shared::credits::CreditError::Suspended { .. })),
        "{refused:?}"
    );
    w.books().await;
}

#[tokio::test]
async fn a_burst_over_the_baseline_alerts_then_suspends_embedded() {
    a_burst_over_the_baseline_alerts_then_suspends(Backend::Embedded).await;
}

#[tokio::test]
async fn a_burst_over_the_baseline_alerts_then_suspends_aws() {
    a_burst_over_the_baseline_alerts_then_suspends(Backend::Aws).await;
}
