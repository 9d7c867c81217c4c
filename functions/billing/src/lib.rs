//! The paying account: `GET/PATCH /api/tenant` (profile: name, billing email, language, time zone) and
//! `/api/billing*` (state, Checkout, Billing Portal, direct subscription).
//!
//! A function of its own so that only it and the webhook hold the Stripe secret key.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use shared::Platform;
use shared::billing::{Billing, BillingView, CardSetup, Subscribed};
use shared::http::openapi::{ErrorBody, SecuritySchemes};
use shared::http::{ApiError, ApiJson, TenantAuth};
use shared::ids::TenantId;
use shared::tenants::profile::{self, ProfilePatch};
use shared::tenants::{self, Language, Plan, SubscriptionStatus, Tenant, TenantName};

/// The secrets this function's code reads (see `shared::secrets`).
pub const SECRETS: &[&str] = &["STRIPE_SECRET_KEY"];

pub fn routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/tenant", get(read_profile).patch(patch_profile))
        .route("/api/billing", get(read_billing))
        .route("/api/plans", get(list_plans))
        .route("/api/billing/checkout", post(checkout))
        .route("/api/billing/portal", post(portal))
        .route("/api/billing/subscribe", post(subscribe))
        .route("/api/billing/card-setup", post(card_setup))
        .with_state(Billing::new(platform))
}

pub fn app(platform: Arc<Platform>) -> Router {
    shared::http::finish_logged(routes(platform.clone()), platform)
}

/// This function's part of the OpenAPI document (assembled and served by the embed-script function).
#[derive(OpenApi)]
#[openapi(
    paths(
        read_profile,
        patch_profile,
        read_billing,
        list_plans,
        checkout,
        portal,
        subscribe,
        card_setup
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// One plan: what it allows, the credits it grants each month, and whether it can be bought here
/// (its Stripe price is configured).
#[derive(Serialize, ToSchema)]
struct PlanOffer {
    plan: Plan,
    limits: shared::tenants::PlanLimits,
    monthly_free_credits: shared::credits::Credits,
    /// Checkout (`POST /api/billing/checkout`) sells it.
    purchasable: bool,
}

/// `GET /api/plans`.
#[derive(Serialize, ToSchema)]
struct PlanList {
    plans: Vec<PlanOffer>,
}

#[utoipa::path(
    get,
    path = "/api/plans",
    tag = "billing",
    security(("tenant_key" = [])),
    responses((status = 200, description = "Every plan, to compare them: limits, monthly free credits, and whether Checkout sells it here", body = PlanList))
)]
async fn list_plans(
    State(billing): State<Billing>,
    TenantAuth(_tenant): TenantAuth,
) -> Json<PlanList> {
    let prices = &billing.platform().config.billing.prices;
    let plans = [Plan::Starter, Plan::Pro, Plan::Enterprise]
        .into_iter()
        .map(|plan| PlanOffer {
            plan,
            limits: plan.limits(),
            monthly_free_credits: shared::credits::pricing::monthly_free_credits(plan),
            purchasable: prices.price_of(plan).is_some(),
        })
        .collect();
    Json(PlanList { plans })
}

/// The tenant's profile (`GET/PATCH /api/tenant`).
#[derive(Serialize, ToSchema)]
struct Profile {
    tenant_id: TenantId,
    name: TenantName,
    plan: Plan,
    subscription_status: SubscriptionStatus,
    /// Where Stripe sends receipts.
    billing_email: Option<String>,
    /// The language Kotoba mails the tenant in.
    language: Language,
    /// An IANA time zone name (`Asia/Tokyo`), for dates in mail.
    timezone: String,
}

impl Profile {
    fn of(tenant: Tenant) -> Self {
        Self {
            tenant_id: tenant.tenant_id,
            name: tenant.name,
            plan: tenant.plan,
            subscription_status: tenant.subscription_status,
            billing_email: tenant.billing_email,
            language: tenant.language,
            timezone: tenant.timezone,
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/tenant",
    tag = "billing",
    security(("tenant_key" = [])),
    responses((status = 200, description = "The tenant's profile", body = Profile))
)]
async fn read_profile(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<Profile>, ApiError> {
    let tenant = tenants::get_tenant(billing.platform().store.as_ref(), &tenant).await?;
    Ok(Json(Profile::of(tenant)))
}

#[utoipa::path(
    patch,
    path = "/api/tenant",
    tag = "billing",
    security(("tenant_key" = [])),
    request_body = ProfilePatch,
    responses(
        (status = 200, description = "The changed profile", body = Profile),
        (status = 400, description = "A field that is not valid (`field` names it)", body = ErrorBody)
    )
)]
async fn patch_profile(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
    ctx: shared::audit::Context,
    ApiJson(patch): ApiJson<ProfilePatch>,
) -> Result<Json<Profile>, ApiError> {
    let p = billing.platform();
    let before = shared::tenants::get_tenant(p.store.as_ref(), &tenant).await?;
    match profile::update_profile(p.store.as_ref(), &tenant, patch).await? {
        Ok(after) => {
            tracing::info!(tenant_id = %after.tenant_id, "tenant profile changed");
            let view = |t: &shared::tenants::Tenant| {
                serde_json::to_value(Profile::of(t.clone())).unwrap_or_default()
            };
            let entry = shared::audit::Entry::new(&tenant, &ctx, "tenant.profile_updated", &tenant)
                .change(view(&before), view(&after));
            shared::audit::record_or_log(p.store.as_ref(), p.ids.as_ref(), p.clock.as_ref(), entry)
                .await;
            Ok(Json(Profile::of(after)))
        }
        Err(bad) => Err(ApiError::invalid(bad.field, bad.message)),
    }
}

#[utoipa::path(
    get,
    path = "/api/billing",
    tag = "billing",
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "Plan, subscription status and period, grace period", body = BillingView)
    )
)]
async fn read_billing(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<BillingView>, ApiError> {
    Ok(Json(billing.view(&tenant).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PlanChoice {
    #[serde(deserialize_with = "plan")]
    plan: Plan,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Subscription {
    #[serde(deserialize_with = "plan")]
    plan: Plan,
    /// A Stripe payment method id (`pm_…`) collected with Stripe.js.
    #[schema(pattern = "^pm_", max_length = 255)]
    payment_method: String,
}

fn plan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Plan, D::Error> {
    let raw = String::deserialize(d)?;
    // Exactly as documented (the schema's enum): `Plan::parse` would also take " pro ".
    if raw.trim() != raw {
        return Err(serde::de::Error::custom(format!(
            "{raw:?} is not a plan (starter, pro, enterprise)"
        )));
    }
    Plan::parse(&raw).map_err(serde::de::Error::custom)
}

/// A Stripe-hosted page to send the browser to.
#[derive(Serialize, ToSchema)]
struct HostedPage {
    url: String,
    /// The Checkout session's id (Checkout only).
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/billing/checkout",
    tag = "billing",
    security(("tenant_key" = [])),
    request_body = PlanChoice,
    responses(
        (status = 200, description = "A Stripe Checkout session: send the browser to `url`", body = HostedPage),
        (status = 400, description = "A plan that is not sold here, or Stripe refused (`stripe_error`)", body = ErrorBody),
        (status = 502, description = "Stripe failed (`stripe_error`); retry", body = ErrorBody),
        (status = 503, description = "Billing is not configured in this deployment", body = ErrorBody)
    )
)]
async fn checkout(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(body): ApiJson<PlanChoice>,
) -> Result<Json<HostedPage>, ApiError> {
    let session = billing.checkout(&tenant, body.plan).await?;
    Ok(Json(HostedPage {
        url: session.url,
        session_id: Some(session.id),
    }))
}

#[utoipa::path(
    post,
    path = "/api/billing/portal",
    tag = "billing",
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "A Stripe Billing Portal session: send the browser to `url`", body = HostedPage),
        (status = 400, description = "Stripe refused (`stripe_error`)", body = ErrorBody),
        (status = 409, description = "No billing account yet: subscribe first", body = ErrorBody),
        (status = 502, description = "Stripe failed (`stripe_error`); retry", body = ErrorBody),
        (status = 503, description = "Billing is not configured in this deployment", body = ErrorBody)
    )
)]
async fn portal(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<HostedPage>, ApiError> {
    let session = billing.portal(&tenant).await?;
    Ok(Json(HostedPage {
        url: session.url,
        session_id: None,
    }))
}

#[utoipa::path(
    post,
    path = "/api/billing/subscribe",
    tag = "billing",
    security(("tenant_key" = [])),
    request_body = Subscription,
    responses(
        (status = 200, description = "The subscription; `client_secret` when the first payment needs 3-D Secure", body = Subscribed),
        (status = 400, description = "A plan that is not sold here, or Stripe refused the request (`stripe_error`)", body = ErrorBody),
        (status = 402, description = "The card was declined (`stripe_error`, `decline_code`)", body = ErrorBody),
        (status = 502, description = "Stripe failed (`stripe_error`); retry", body = ErrorBody),
        (status = 503, description = "Billing is not configured in this deployment", body = ErrorBody)
    )
)]
async fn subscribe(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
    ctx: shared::audit::Context,
    ApiJson(body): ApiJson<Subscription>,
) -> Result<Json<Subscribed>, ApiError> {
    let plan = body.plan;
    let subscribed = billing
        .subscribe(&tenant, plan, &body.payment_method)
        .await?;
    let p = billing.platform();
    let entry = shared::audit::Entry::new(
        &tenant,
        &ctx,
        "billing.subscribed",
        &subscribed.subscription_id,
    )
    .created(serde_json::json!({"plan": plan.as_str(), "status": subscribed.status}));
    shared::audit::record_or_log(p.store.as_ref(), p.ids.as_ref(), p.clock.as_ref(), entry).await;
    Ok(Json(subscribed))
}

#[utoipa::path(
    post,
    path = "/api/billing/card-setup",
    tag = "billing",
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "A SetupIntent for a new card: confirm its `client_secret` with Stripe.js (`confirmCardSetup`), then pay with the payment method it yields", body = CardSetup),
        (status = 400, description = "Stripe refused the request (`stripe_error`)", body = ErrorBody),
        (status = 502, description = "Stripe failed (`stripe_error`); retry", body = ErrorBody),
        (status = 503, description = "Billing, or collecting cards in the browser (no publishable key), is not configured here", body = ErrorBody)
    )
)]
async fn card_setup(
    State(billing): State<Billing>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<CardSetup>, ApiError> {
    Ok(Json(billing.card_setup(&tenant).await?))
}
