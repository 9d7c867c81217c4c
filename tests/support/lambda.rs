//! The deployed path without AWS: event fixtures from `events/` go through lambda_http's adapters (the
//! code `lambda_http::run` and `run_with_streaming_response` use) into a function's app, and the
//! response comes back as API Gateway or a function URL would receive it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use futures::StreamExt;
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service, StreamAdapter};
use serde_json::Value;

use shared::Platform;
use shared::clock::SystemClock;
use shared::config::{Config, Mode};
use shared::ids::RandomIds;

/// The key every API fixture carries (what `cargo run -p management --example fixture-tenant` installs).
pub const FIXTURE_KEY: &str = "kt_EventFixtureKeyForLocalInvokesOnly_00000000";
/// The operator key the admin fixtures carry.
pub const FIXTURE_ADMIN_KEY: &str = "events-fixture-admin-key-0001";
/// Placeholders in the fixtures, replaced by the ids a test created.
pub const SITE: &str = "site_00000000000000000000000000";
pub const TENANT: &str = "ten_00000000000000000000000000";
pub const JOB: &str = "job_00000000000000000000000001";
pub const KEY_ID: &str = "key_00000000000000000000000000";
pub const SESSION: &str = "sess_00000000000000000000000000";
pub const MESSAGE: &str = "msg_00000000000000000000000000";

/// Fixtures read so far in this test binary.
static USED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The text of `events/<name>`, noted as used.
pub fn fixture(name: &str) -> String {
    USED.lock().unwrap().insert(name.to_string());
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The fixtures in `events/` that no call to [`fixture`] has read yet.
pub fn unused_fixtures() -> Vec<String> {
    let used = USED.lock().unwrap().clone();
    std::fs::read_dir(format!("{}/../events", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !used.contains(n))
        .collect()
}

/// An embedded platform configured as deployed, with the fixtures' admin key and `extra` settings.
pub fn platform(dir: &std::path::Path, extra: &[(&str, &str)]) -> Arc<Platform> {
    let vars = [
        ("KOTOBA_DATA_DIR", dir.to_str().unwrap()),
        ("KOTOBA_ADMIN_KEY", FIXTURE_ADMIN_KEY),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_vars(&vars, Mode::Deployed).unwrap();
    Platform::embedded(config, Arc::new(SystemClock), Arc::new(RandomIds)).unwrap()
}

/// What a function answered through the Lambda adapter.
pub struct LambdaReply {
    pub status: u16,
    pub headers: Value,
    pub body: String,
}

impl LambdaReply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers[name].as_str().unwrap_or_default()
    }
}

/// Invokes an app with an event exactly as the Lambda runtime would (`lambda_http::run`).
pub async fn invoke(app: &Router, event: &str) -> LambdaReply {
    let request: LambdaRequest = serde_json::from_str(event).expect("an API Gateway v2 event");
    let mut adapter = lambda_http::Adapter::from(app.clone());
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("handler ran");
    let response = serde_json::to_value(&response).expect("response serialises");
    LambdaReply {
        status: response["statusCode"].as_u64().expect("statusCode") as u16,
        headers: response["headers"].clone(),
        body: response["body"].as_str().unwrap_or_default().to_string(),
    }
}

/// Invokes an app as `lambda_http::run_with_streaming_response` does (behind a RESPONSE_STREAM URL).
pub async fn invoke_streaming(app: &Router, event: &str) -> LambdaReply {
    let request: LambdaRequest = serde_json::from_str(event).expect("a function URL event");
    let mut adapter = StreamAdapter::from(app.clone());
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("handler ran");
    let prelude = serde_json::to_value(&response.metadata_prelude).unwrap();
    let mut body = Vec::new();
    let mut stream = response.stream;
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.expect("stream chunk"));
    }
    LambdaReply {
        status: prelude["statusCode"].as_u64().expect("statusCode") as u16,
        headers: prelude["headers"].clone(),
        body: String::from_utf8(body).unwrap(),
    }
}

/// The SSE events of a body: (event name, data as JSON).
pub fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data = serde_json::from_str(d.trim()).ok();
                }
            }
            Some((name?, data?))
        })
        .collect()
}
