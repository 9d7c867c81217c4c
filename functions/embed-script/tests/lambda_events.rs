//! The deployed path: the API Gateway v2 fixture `events/embed-script-get.json` goes through
//! lambda_http's adapter (the code `lambda_http::run` uses) into the function, as in production.

use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use serde_json::Value;

use shared::Platform;
use shared::clock::SystemClock;
use shared::config::{Config, Mode};
use shared::ids::RandomIds;
use shared::sites::{self, NewSite, SiteName, SitePatch, SiteStatus};
use shared::tenants::{self, Plan, TenantName};

const SITE_PLACEHOLDER: &str = "site_00000000000000000000000000";

fn fixture(name: &str) -> String {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

async fn invoke(platform: &Arc<Platform>, event: &str) -> Value {
    let request: LambdaRequest =
        serde_json::from_str(event).expect("fixture is an API Gateway event");
    let mut adapter = lambda_http::Adapter::from(embed_script::app(platform.clone()));
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("handler ran");
    serde_json::to_value(&response).expect("response serialises")
}

#[tokio::test]
async fn the_script_event_runs_through_the_lambda_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("KOTOBA_DATA_DIR", dir.path().to_str().unwrap())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_vars(&vars, Mode::Deployed).unwrap();
    let p = Platform::embedded(config, Arc::new(SystemClock), Arc::new(RandomIds)).unwrap();
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
    let event = fixture("embed-script-get.json").replace(SITE_PLACEHOLDER, site.site_id.as_str());

    // Not yet embed-enabled nor trained: a comment, never a broken page.
    let response = invoke(&p, &event).await;
    assert_eq!(response["statusCode"], 403, "{response}");
    assert!(response["body"].as_str().unwrap().starts_with("/* "));

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

    let response = invoke(&p, &event).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let headers = &response["headers"];
    assert_eq!(
        headers["content-type"],
        "application/javascript; charset=utf-8"
    );
    assert!(headers["etag"].as_str().is_some_and(|t| t.starts_with('"')));
    let body = response["body"].as_str().expect("a text body");
    assert!(body.contains(site.site_id.as_str()));
    assert!(body.trim_end().ends_with(");"));
}
