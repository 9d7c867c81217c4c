//! The deployed path: the signed Stripe event fixture in `events/` goes through lambda_http's adapter
//! (what `lambda_http::run` uses) into the webhook function, with the clock held at the fixture's time
//! (a signature is only valid for five minutes).

use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use serde_json::Value;

use shared::Platform;
use shared::clock::ManualClock;
use shared::config::{Config, Mode};
use shared::ids::SequentialIds;
use shared::tenants::{self, Plan, SubscriptionStatus, TenantName};

const FIXTURE_SECRET: &str = "whsec_EventFixtureSecretForLocalInvokesOnly";

fn fixture() -> String {
    let path = format!(
        "{}/../../events/webhook-stripe.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

async fn invoke(platform: &Arc<Platform>, event: &str) -> (u16, Value) {
    let request: LambdaRequest = serde_json::from_str(event).expect("an API Gateway event");
    let mut adapter = lambda_http::Adapter::from(webhook::app(platform.clone()));
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("handler ran");
    let response = serde_json::to_value(&response).unwrap();
    let body =
        serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
    (response["statusCode"].as_u64().unwrap() as u16, body)
}

#[tokio::test]
async fn the_signed_stripe_fixture_runs_through_the_lambda_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("KOTOBA_DATA_DIR", dir.path().to_str().unwrap()),
        ("STRIPE_WEBHOOK_SECRET", FIXTURE_SECRET),
        ("STRIPE_PRICE_PRO", "price_fixture_pro"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_vars(&vars, Mode::Deployed).unwrap();
    let event: Value = serde_json::from_str(&fixture()).unwrap();
    let created = event["requestContext"]["timeEpoch"].as_i64().unwrap() / 1000;
    let clock = ManualClock::at(time::OffsetDateTime::from_unix_timestamp(created + 5).unwrap());
    let platform = Platform::embedded(
        config,
        Arc::new(clock.clone()),
        Arc::new(SequentialIds::default()),
    )
    .unwrap();
    // The tenant the fixture's metadata names (the first sequential id).
    let tenant = tenants::create_tenant(
        platform.store.as_ref(),
        platform.ids.as_ref(),
        platform.clock.as_ref(),
        TenantName::parse("Fixture Hotel").unwrap(),
        Plan::Starter,
    )
    .await
    .unwrap();
    assert_eq!(tenant.tenant_id.as_str(), "ten_00000000000000000000000001");

    let (status, body) = invoke(&platform, &fixture()).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("applied")),
        "{body}"
    );
    let tenant = tenants::get_tenant(platform.store.as_ref(), &tenant.tenant_id)
        .await
        .unwrap();
    assert_eq!(
        (tenant.subscription_status, tenant.plan),
        (SubscriptionStatus::Active, Plan::Pro)
    );
    assert_eq!(
        tenant.stripe_customer_id.as_deref(),
        Some("cus_QfixtureKotoba")
    );

    let (status, body) = invoke(&platform, &fixture()).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("duplicate")),
        "a replay does nothing"
    );

    // Ten minutes later the same signature is stale: refused, nothing written.
    clock.advance(std::time::Duration::from_secs(600));
    let (status, body) = invoke(&platform, &fixture()).await;
    assert_eq!(status, 400, "{body}");
}
