//! The deployed path: API Gateway v2 event fixtures from `events/` go through lambda_http's adapter
//! (the code `lambda_http::run` uses) into the function's app, and the Lambda response comes back as
//! API Gateway would receive it.

use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use serde_json::Value;

use shared::Platform;
use shared::clock::SystemClock;
use shared::config::{Config, Mode};
use shared::ids::{RandomIds, TenantId};
use shared::tenants::api_keys::{self, ApiKey};

const FIXTURE_KEY: &str = "kt_EventFixtureKeyForLocalInvokesOnly_00000000";
const FIXTURE_ADMIN_KEY: &str = "events-fixture-admin-key-0001";
const SITE_PLACEHOLDER: &str = "site_00000000000000000000000000";

fn fixture(name: &str) -> String {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn platform(dir: &std::path::Path) -> Arc<Platform> {
    let vars = [
        ("KOTOBA_DATA_DIR", dir.to_str().unwrap()),
        ("KOTOBA_ADMIN_KEY", FIXTURE_ADMIN_KEY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_vars(&vars, Mode::Deployed).unwrap();
    Platform::embedded(config, Arc::new(SystemClock), Arc::new(RandomIds)).unwrap()
}

/// Invokes the function with an event exactly as the Lambda runtime would; returns status and JSON body.
async fn invoke(platform: &Arc<Platform>, event: &str) -> (u16, Value) {
    let request: LambdaRequest =
        serde_json::from_str(event).expect("fixture is an API Gateway event");
    let mut adapter = lambda_http::Adapter::from(management::app(platform.clone()));
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("handler ran");
    let response = serde_json::to_value(&response).expect("response serialises");
    let status = response["statusCode"].as_u64().expect("statusCode") as u16;
    let body = match response["body"].as_str() {
        Some(text) if !text.is_empty() => serde_json::from_str(text).expect("JSON body"),
        _ => Value::Null,
    };
    (status, body)
}

#[tokio::test]
async fn sites_events_run_through_the_lambda_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(dir.path());

    let (status, created) = invoke(&platform, &fixture("management-create-tenant.json")).await;
    assert_eq!(status, 201, "{created}");
    assert!(created["api_key"].as_str().unwrap().starts_with("kt_"));
    assert_eq!(created["tenant"]["name"], "株式会社サンプル");
    let tenant = TenantId::parse(created["tenant_id"].as_str().unwrap()).unwrap();

    // The fixtures carry a fixed key; install it for this tenant as an issued key would be.
    let key = ApiKey::parse(FIXTURE_KEY).unwrap();
    api_keys::register(
        platform.store.as_ref(),
        platform.ids.as_ref(),
        platform.clock.as_ref(),
        &tenant,
        &key,
    )
    .await
    .unwrap();

    let (status, site) = invoke(&platform, &fixture("management-create-site.json")).await;
    assert_eq!(status, 201, "{site}");
    assert_eq!(
        site["allowed_domains"],
        serde_json::json!(["shop.example.co.jp", "*.example.com"])
    );
    let site_id = site["site_id"].as_str().unwrap();

    let patch = fixture("management-patch-site.json").replace(SITE_PLACEHOLDER, site_id);
    let (status, patched) = invoke(&platform, &patch).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["widget"]["theme"], "dark");
    assert_eq!(
        patched["widget"]["position"], "bottom-right",
        "unpatched widget fields are kept"
    );
    assert_eq!(patched["prompt"]["version"], 2);
    assert_eq!(
        patched["prompt"]["system_prompt"],
        "丁寧な日本語で答えてください。"
    );
    assert_eq!(patched["is_embed_enabled"], true);

    let invalid = fixture("management-invalid-widget.json").replace(SITE_PLACEHOLDER, site_id);
    let (status, error) = invoke(&platform, &invalid).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["field"], "widget.color_primary");
    assert_eq!(
        error["error"]["request_id"], "evt-invalid-widget",
        "the API Gateway request id is used"
    );

    let (status, listed) = invoke(&platform, &fixture("management-list-sites.json")).await;
    assert_eq!(status, 200);
    assert_eq!(listed["sites"].as_array().unwrap().len(), 1);

    let (status, error) = invoke(&platform, &fixture("management-no-key.json")).await;
    assert_eq!(status, 401);
    assert_eq!(error["error"]["code"], "unauthorized");
}
