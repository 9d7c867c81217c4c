//! The management API: tenants (admin), API keys, sites, widget config and prompt profiles, and the
//! phone receptionist's numbers, settings and call logs (`voice`).
//!
//! Handlers parse input into domain types, call `shared::{tenants, sites}` and map results to the
//! contract; every error goes through `ApiError`.

/// The secret variables this function's code reads (the admin routes (`/api/admin/tenants…`) check the operator key); shared::secrets fetches exactly
/// these at start-up, and tests/deploy_template.rs checks the templates grant exactly these.
pub const SECRETS: &[&str] = &["KOTOBA_ADMIN_KEY"];

mod voice;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use shared::Platform;
use shared::clock::rfc3339;
use shared::http::{AdminAuth, ApiError, ApiJson, TenantAuth};
use shared::ids::{KeyId, SiteId, TenantId};
use shared::sites::{self, NewSite, Site, SitePatch};
use shared::tenants::{self, Plan, SubscriptionStatus, TenantName, api_keys};

type AppState = Arc<Platform>;

/// The routes, without the shared edge layers (the local runner merges several functions' routes).
pub fn routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/admin/tenants", post(create_tenant))
        .route(
            "/api/admin/tenants/{tenant_id}/subscription",
            put(set_subscription),
        )
        .route("/api/keys", post(issue_key).get(list_keys))
        .route("/api/keys/{key_id}", delete(revoke_key))
        .route("/api/sites", post(create_site).get(list_sites))
        .route("/api/sites/{site_id}", get(read_site).patch(patch_site))
        .route("/api/sites/{site_id}/prompt/versions", get(prompt_versions))
        .route(
            "/api/sites/{site_id}/prompt/rollback",
            post(rollback_prompt),
        )
        .merge(voice::routes())
        .with_state(platform)
}

/// The function as deployed: the routes plus the shared edge (request ids, JSON 404s).
pub fn app(platform: Arc<Platform>) -> Router {
    shared::http::finish(routes(platform))
}

/// A path id that does not parse names nothing that exists.
fn site_id(raw: &str) -> Result<SiteId, ApiError> {
    SiteId::parse(raw).map_err(|_| ApiError::NotFound("site not found".into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: TenantName,
    #[serde(deserialize_with = "plan")]
    plan: Plan,
}

fn plan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Plan, D::Error> {
    let raw = String::deserialize(d)?;
    Plan::parse(&raw).map_err(serde::de::Error::custom)
}

async fn create_tenant(
    State(p): State<AppState>,
    _admin: AdminAuth,
    ApiJson(body): ApiJson<NewTenant>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = tenants::create_tenant(
        p.store.as_ref(),
        p.ids.as_ref(),
        p.clock.as_ref(),
        body.name,
        body.plan,
    )
    .await?;
    let issued = api_keys::issue(
        p.store.as_ref(),
        p.ids.as_ref(),
        p.clock.as_ref(),
        &tenant.tenant_id,
    )
    .await?;
    tracing::info!(tenant_id = %tenant.tenant_id, plan = tenant.plan.as_str(), "tenant created");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "tenant_id": tenant.tenant_id,
            "api_key": issued.key.expose(),
            "key_id": issued.record.key_id,
            "tenant": tenant,
            "limits": tenant.plan.limits(),
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionChange {
    #[serde(deserialize_with = "status")]
    status: SubscriptionStatus,
}

fn status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SubscriptionStatus, D::Error> {
    let raw = String::deserialize(d)?;
    SubscriptionStatus::parse(&raw).map_err(serde::de::Error::custom)
}

async fn set_subscription(
    State(p): State<AppState>,
    _admin: AdminAuth,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<SubscriptionChange>,
) -> Result<Json<tenants::Tenant>, ApiError> {
    let tenant =
        TenantId::parse(&tenant_id).map_err(|_| ApiError::NotFound("tenant not found".into()))?;
    Ok(Json(
        tenants::set_subscription_status(p.store.as_ref(), &tenant, body.status).await?,
    ))
}

async fn issue_key(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Result<impl IntoResponse, ApiError> {
    let issued =
        api_keys::issue(p.store.as_ref(), p.ids.as_ref(), p.clock.as_ref(), &tenant).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "key_id": issued.record.key_id,
            "api_key": issued.key.expose(),
            "hint": issued.record.hint,
            "created_at": rfc3339(issued.record.created_at),
        })),
    ))
}

async fn list_keys(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<Value>, ApiError> {
    let keys = api_keys::list(p.store.as_ref(), &tenant).await?;
    let keys: Vec<Value> = keys
        .into_iter()
        .map(|k| json!({ "key_id": k.key_id, "hint": k.hint, "created_at": rfc3339(k.created_at) }))
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

async fn revoke_key(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key_id =
        KeyId::parse(&key_id).map_err(|_| ApiError::NotFound("API key not found".into()))?;
    api_keys::revoke(p.store.as_ref(), &tenant, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_site(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(body): ApiJson<NewSite>,
) -> Result<(StatusCode, Json<Site>), ApiError> {
    let plan = tenants::get_tenant(p.store.as_ref(), &tenant).await?.plan;
    let max = plan.limits().sites;
    let site = sites::create_site_within(
        p.store.as_ref(),
        p.ids.as_ref(),
        p.clock.as_ref(),
        &tenant,
        body,
        Some(max),
    )
    .await
    .map_err(|e| match e {
        sites::SiteError::LimitReached(max) => ApiError::PaymentRequired {
            message: format!("the {} plan allows {max} sites", plan.as_str()),
            plan: plan.as_str().into(),
            upgrade_hint: match plan.upgrade() {
                Some(next) => format!(
                    "upgrade to the {} plan for up to {} sites",
                    next.as_str(),
                    next.limits().sites
                ),
                None => "contact us to raise your limits".into(),
            },
        },
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(site)))
}

#[derive(Deserialize)]
struct Page {
    cursor: Option<String>,
}

async fn list_sites(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let (sites, next) = sites::list_sites(p.store.as_ref(), &tenant, page.cursor).await?;
    Ok(Json(json!({ "sites": sites, "next_cursor": next })))
}

async fn read_site(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
) -> Result<Json<Site>, ApiError> {
    Ok(Json(
        sites::get_site(p.store.as_ref(), &tenant, &site_id(&raw)?).await?,
    ))
}

async fn patch_site(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
    ApiJson(patch): ApiJson<SitePatch>,
) -> Result<Json<Site>, ApiError> {
    let site = site_id(&raw)?;
    Ok(Json(
        sites::patch_site(p.store.as_ref(), p.clock.as_ref(), &tenant, &site, patch).await?,
    ))
}

async fn prompt_versions(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let site = site_id(&raw)?;
    let (versions, next) =
        sites::prompt_versions(p.store.as_ref(), &tenant, &site, page.cursor).await?;
    Ok(Json(json!({ "versions": versions, "next_cursor": next })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollback {
    version: u32,
}

async fn rollback_prompt(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<Rollback>,
) -> Result<Json<Site>, ApiError> {
    let site = site_id(&raw)?;
    Ok(Json(
        sites::rollback_prompt(
            p.store.as_ref(),
            p.clock.as_ref(),
            &tenant,
            &site,
            body.version,
        )
        .await?,
    ))
}
