//! The paying account: `GET/PATCH /api/tenant` (profile: name, billing email, language, time zone) and
//! `/api/billing*` (state, Checkout, Billing Portal, direct subscription).
//!
//! A function of its own so that only it and the webhook hold the Stripe secret key.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use shared::Platform;
use shared::billing::{Billing, BillingView, Subscribed};
use shared::http::{ApiError, ApiJson, TenantAuth};
use shared::tenants::profile::{self, ProfilePatch};
use shared::tenants::{self, Plan, Tenant};

/// The secrets this function's code reads (see `shared::secrets`).
pub const SECRETS: &[&str] = &["STRIPE_SECRET_KEY"];

pub fn routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/tenant", get(read_profile).patch(patch_profile))
        .route("/api/billing", get(read_billing))
        .route("/api/billing/checkout", post(checkout))
        .route("/api/billing/portal", post(portal))
        .route("/api/billing/subscribe", post(subscribe))
        .with_state(Billing::new(platform))
}

pub fn app(platform: Arc<Platform>) -> Router {
    shared::http::finish(routes(platform))
}

fn profile_json(tenant: &Tenant) -> Value {
    json!({
        "tenant_id": tenant.tenant_id,
        "name": tenant.name,
        "plan": tenant.plan,
        "subscription_status": tenant.subscription_status,
        "billing_email": tenant.billing_email,
        "language": tenant.language,
        "timezone": tenant.timezone,
    })
}

async fn read_profile(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<Value>, ApiError> {
    let tenant = tenants::get_tenant(billing.platform().store.as_ref(), &tenant).await?;
    Ok(Json(profile_json(&tenant)))
}

async fn patch_profile(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(patch): ApiJson<ProfilePatch>,
) -> Result<Json<Value>, ApiError> {
    match profile::update_profile(billing.platform().store.as_ref(), &tenant, patch).await? {
        Ok(tenant) => {
            tracing::info!(tenant_id = %tenant.tenant_id, "tenant profile changed");
            Ok(Json(profile_json(&tenant)))
        }
        Err(bad) => Err(ApiError::invalid(bad.field, bad.message)),
    }
}

async fn read_billing(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<BillingView>, ApiError> {
    Ok(Json(billing.view(&tenant).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanChoice {
    #[serde(deserialize_with = "plan")]
    plan: Plan,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscription {
    #[serde(deserialize_with = "plan")]
    plan: Plan,
    payment_method: String,
}

fn plan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Plan, D::Error> {
    let raw = String::deserialize(d)?;
    Plan::parse(&raw).map_err(serde::de::Error::custom)
}

async fn checkout(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(body): ApiJson<PlanChoice>,
) -> Result<Json<Value>, ApiError> {
    let session = billing.checkout(&tenant, body.plan).await?;
    Ok(Json(
        json!({ "url": session.url, "session_id": session.id }),
    ))
}

async fn portal(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<Value>, ApiError> {
    let session = billing.portal(&tenant).await?;
    Ok(Json(json!({ "url": session.url })))
}

async fn subscribe(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(body): ApiJson<Subscription>,
) -> Result<Json<Subscribed>, ApiError> {
    Ok(Json(
        billing
            .subscribe(&tenant, body.plan, &body.payment_method)
            .await?,
    ))
}
