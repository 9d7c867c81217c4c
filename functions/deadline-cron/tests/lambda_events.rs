//! The scheduler event fixture through the real Lambda path: the `deadline-cron` binary is started
//! against a minimal Lambda Runtime API (served here on loopback), so `lambda_runtime::run` fetches the
//! event, the handler runs the job for the scheduled day on the embedded store, and the answer is posted
//! back as the runtime would see it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::Value;

use shared::Platform;
use shared::clock::SystemClock;
use shared::config::{Config, Mode};
use shared::ids::RandomIds;
use shared::store::{Index, Item, keys};

const FIXTURE: &str = "deadline-cron-schedule.json";

fn fixture() -> String {
    let path = format!("{}/../../events/{FIXTURE}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[derive(Clone, Default)]
struct Runtime {
    event: Arc<String>,
    delivered: Arc<Mutex<bool>>,
    answer: Arc<Mutex<Option<(String, String)>>>,
}

async fn next(State(rt): State<Runtime>) -> (HeaderMap, String) {
    // One invocation; later polls wait (the test stops the process once it has answered).
    let first = !std::mem::replace(&mut *rt.delivered.lock().unwrap(), true);
    if !first {
        std::future::pending::<()>().await;
    }
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", "req-1".parse().unwrap());
    let deadline = (std::time::SystemTime::now() + Duration::from_secs(900))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:ap-northeast-1:123456789012:function:deadline-cron"
            .parse()
            .unwrap(),
    );
    (headers, rt.event.as_str().to_string())
}

async fn answered(State(rt): State<Runtime>, body: String) -> &'static str {
    *rt.answer.lock().unwrap() = Some(("response".into(), body));
    "{}"
}

async fn failed(State(rt): State<Runtime>, body: String) -> &'static str {
    *rt.answer.lock().unwrap() = Some(("error".into(), body));
    "{}"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_fixture_runs_the_job_for_its_day_through_lambda_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("KOTOBA_DATA_DIR", dir.path().to_str().unwrap())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_vars(&vars, Mode::Deployed).unwrap();
    let platform = Platform::embedded(config, Arc::new(SystemClock), Arc::new(RandomIds)).unwrap();
    // A trialing tenant whose trial ends three days after the fixture's day, with its due record.
    let store = platform.store.as_ref();
    let tenant = shared::tenants::create_tenant(
        store,
        platform.ids.as_ref(),
        platform.clock.as_ref(),
        shared::tenants::TenantName::parse("ホテル海風").unwrap(),
        shared::tenants::Plan::Starter,
    )
    .await
    .unwrap();
    store
        .update(
            shared::store::Update::new(keys::tenant(&tenant.tenant_id))
                .set("subscription_status", "trialing")
                .set("trial_ends_at", "2026-03-12T09:00:00Z")
                .set("billing_email", "keiri@umikaze.example.jp")
                .set("language", "ja"),
        )
        .await
        .unwrap();
    let (pk, sk) = keys::billing_due_listing(&tenant.tenant_id, "2026-03-09");
    store
        .put(
            Item::new(keys::billing_due(&tenant.tenant_id, "2026-03-09"))
                .with("tenant_id", tenant.tenant_id.to_string())
                .with("day", "2026-03-09")
                .with_index(Index::ByDue, pk, sk),
            shared::store::Condition::None,
        )
        .await
        .unwrap();
    drop(platform);

    let runtime = Runtime {
        event: Arc::new(fixture()),
        ..Runtime::default()
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(answered),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(failed))
        .route("/2018-06-01/runtime/init/error", post(failed))
        .with_state(runtime.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_deadline-cron"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "deadline-cron")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
        .env("KOTOBA_DATA_DIR", dir.path())
        .kill_on_drop(true)
        .spawn()
        .expect("the deadline-cron binary starts");
    // Poll for the answer with a deadline (the process answers once and then waits for more work).
    let give_up = tokio::time::Instant::now() + Duration::from_secs(120);
    let answer = loop {
        if let Some(answer) = runtime.answer.lock().unwrap().clone() {
            break answer;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("deadline-cron exited without answering: {status}");
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "no answer from deadline-cron"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().await.unwrap();
    let (kind, body) = answer;
    assert_eq!(kind, "response", "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["date"], "2026-03-09", "{report}");
    assert_eq!(report["actions"]["trial_ending"], 1, "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");

    // The reminder is in the outbox, in Japanese.
    let outbox: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    let raw = std::fs::read(&outbox[0]).unwrap();
    let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        message.subject(),
        Some("【Kotoba】無料トライアル終了まであと3日です")
    );
}
