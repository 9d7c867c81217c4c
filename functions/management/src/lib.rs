//! The management API: tenants (admin), API keys, sites, widget config and prompt profiles, and the
//! phone receptionist's numbers, settings and call logs (`voice`).
//!
//! Handlers parse input into domain types, call `shared::{tenants, sites}` and map results to the
//! contract; every error goes through `ApiError`.

/// The secret variables this function's code reads (the admin routes (`/api/admin/tenants…`) check the operator key); shared::secrets fetches exactly
/// these at start-up, and tests/deploy_template.rs checks the templates grant exactly these.
pub const SECRETS: &[&str] = &["KOTOBA_ADMIN_KEY", "KOTOBA_WEBHOOK_KEY"];

mod console;
mod cron;
mod logs;
mod voice;
mod webhooks;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use shared::Platform;
use shared::audit::{self, Entry};
use shared::clock::rfc3339;
use shared::http::openapi::{ErrorBody, SecuritySchemes};
use shared::http::{AdminAuth, ApiError, ApiJson, TenantAuth};
use shared::ids::{KeyId, SiteId, TenantId};
use shared::sites::prompt::PromptVersion;
use shared::sites::{self, NewSite, Site, SitePatch};
use shared::tenants::roles::Role;
use shared::tenants::{self, Plan, PlanLimits, SubscriptionStatus, Tenant, TenantName, api_keys};

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
        .merge(console::routes())
        .merge(cron::routes())
        .merge(webhooks::routes())
        .merge(logs::routes())
        .with_state(platform)
}

/// The function as deployed: the routes plus the shared edge (request ids, JSON 404s).
pub fn app(platform: Arc<Platform>) -> Router {
    shared::http::finish_logged(routes(platform.clone()), platform)
}

/// This function's part of the OpenAPI document (assembled and served by the embed-script function).
#[derive(OpenApi)]
#[openapi(
    paths(
        create_tenant,
        set_subscription,
        issue_key,
        list_keys,
        revoke_key,
        create_site,
        list_sites,
        read_site,
        patch_site,
        prompt_versions,
        rollback_prompt,
        voice::provision_number,
        voice::all_numbers,
        voice::withdraw_number,
        voice::available_numbers,
        voice::claim_number,
        voice::list_numbers,
        voice::release_number,
        voice::read_settings,
        voice::patch_settings,
        voice::settings_versions,
        voice::rollback_settings,
        voice::list_calls,
        voice::read_call,
        console::sign_in,
        console::read_session,
        console::sign_out,
        cron::run_deadlines,
        webhooks::create_webhook,
        webhooks::list_webhooks,
        webhooks::patch_webhook,
        webhooks::delete_webhook,
        webhooks::rotate_secret,
        webhooks::test_webhook,
        webhooks::list_deliveries,
        webhooks::replay_delivery,
        logs::list_errors,
        logs::list_audit,
        logs::admin_audit,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// A path id that does not parse names nothing that exists.
fn site_id(raw: &str) -> Result<SiteId, ApiError> {
    SiteId::parse(raw).map_err(|_| ApiError::NotFound("site not found".into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: TenantName,
    #[serde(deserialize_with = "plan")]
    plan: Plan,
}

/// A new tenant with its first API key (shown once).
#[derive(Serialize, ToSchema)]
struct TenantCreated {
    tenant_id: TenantId,
    api_key: String,
    key_id: KeyId,
    tenant: Tenant,
    limits: PlanLimits,
}

fn plan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Plan, D::Error> {
    let raw = String::deserialize(d)?;
    Plan::parse(&raw).map_err(serde::de::Error::custom)
}

#[utoipa::path(
    post,
    path = "/api/admin/tenants",
    tag = "admin",
    security(("admin_key" = [])),
    request_body = NewTenant,
    responses((status = 201, description = "The tenant and its first API key", body = TenantCreated, links(
        ("subscription" = (operation_id = "set_subscription", parameters(("tenant_id" = "$response.body#/tenant_id"))))
    )))
)]
async fn create_tenant(
    State(p): State<AppState>,
    _admin: AdminAuth,
    ctx: audit::Context,
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
        api_keys::NewKey {
            role: Role::Owner,
            name: Some("first key".into()),
        },
    )
    .await?;
    tracing::info!(tenant_id = %tenant.tenant_id, plan = tenant.plan.as_str(), "tenant created");
    record(
        &p,
        Entry::new(&tenant.tenant_id, &ctx, "tenant.created", &tenant.tenant_id).created(
            serde_json::json!({"name": tenant.name, "plan": tenant.plan.as_str(), "first_key_id": issued.record.key_id}),
        ),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            tenant_id: tenant.tenant_id.clone(),
            api_key: issued.key.expose().to_string(),
            key_id: issued.record.key_id,
            limits: tenant.plan.limits(),
            tenant,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SubscriptionChange {
    #[serde(deserialize_with = "status")]
    status: SubscriptionStatus,
}

fn status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SubscriptionStatus, D::Error> {
    let raw = String::deserialize(d)?;
    SubscriptionStatus::parse(&raw).map_err(serde::de::Error::custom)
}

#[utoipa::path(
    put,
    path = "/api/admin/tenants/{tenant_id}/subscription",
    tag = "admin",
    security(("admin_key" = [])),
    params(("tenant_id" = String, Path, description = "The tenant (`ten_…`)")),
    request_body = SubscriptionChange,
    responses(
        (status = 200, description = "The tenant with its new status", body = Tenant),
        (status = 404, description = "No such tenant", body = ErrorBody)
    )
)]
async fn set_subscription(
    State(p): State<AppState>,
    _admin: AdminAuth,
    ctx: audit::Context,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<SubscriptionChange>,
) -> Result<Json<tenants::Tenant>, ApiError> {
    let tenant =
        TenantId::parse(&tenant_id).map_err(|_| ApiError::NotFound("tenant not found".into()))?;
    let before = tenants::get_tenant(p.store.as_ref(), &tenant).await?;
    let after = tenants::set_subscription_status(p.store.as_ref(), &tenant, body.status).await?;
    record(
        &p,
        Entry::new(&tenant, &ctx, "subscription.changed", &tenant).change(
            serde_json::json!({"subscription_status": before.subscription_status.as_str()}),
            serde_json::json!({"subscription_status": after.subscription_status.as_str()}),
        ),
    )
    .await;
    if before.subscription_status != after.subscription_status {
        shared::webhooks::emit(
            &p,
            &tenant,
            shared::webhooks::Event::subscription_updated(
                p.clock.now(),
                after.plan.as_str(),
                after.subscription_status.as_str(),
                Some(before.subscription_status.as_str()),
            ),
        )
        .await;
    }
    Ok(Json(after))
}

/// Appends to the audit log; the action has already happened, so a failure is logged, not returned.
async fn record(p: &AppState, entry: Entry) {
    audit::record_or_log(p.store.as_ref(), p.ids.as_ref(), p.clock.as_ref(), entry).await;
}

/// `POST /api/keys`: what the new key may do (default `owner`) and an optional name.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    #[serde(default)]
    role: Role,
    #[serde(default)]
    name: Option<String>,
}

/// The longest key name, in characters.
const MAX_KEY_NAME: usize = 80;

impl KeyRequest {
    fn parse(body: &[u8]) -> Result<api_keys::NewKey, ApiError> {
        let request: KeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
            KeyRequest::default()
        } else {
            shared::http::parse_json(body)?
        };
        let name = match request.name.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name)
                if name.chars().count() > MAX_KEY_NAME || name.chars().any(char::is_control) =>
            {
                return Err(ApiError::invalid(
                    "name",
                    format!(
                        "a key name is at most {MAX_KEY_NAME} characters, without control characters"
                    ),
                ));
            }
            Some(name) => Some(name.to_string()),
        };
        Ok(api_keys::NewKey {
            role: request.role,
            name,
        })
    }
}

/// A key just issued: the secret appears here once and never again.
#[derive(Serialize, ToSchema)]
struct IssuedKey {
    key_id: KeyId,
    api_key: String,
    hint: String,
    role: Role,
    name: Option<String>,
    created_at: String,
}

/// A key as listed: its id and a hint of the secret, never the secret.
#[derive(Serialize, ToSchema)]
struct KeySummary {
    key_id: KeyId,
    hint: String,
    role: Role,
    name: Option<String>,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
struct KeyList {
    keys: Vec<KeySummary>,
}

#[utoipa::path(
    post,
    path = "/api/keys",
    tag = "keys",
    security(("tenant_key" = [])),
    request_body(content = Option<KeyRequest>, description = "Optional: the key's role (default `owner`) and name"),
    responses((status = 201, description = "The new key (the secret is shown only now)", body = IssuedKey, links(
        ("revoke" = (operation_id = "revoke_key", parameters(("key_id" = "$response.body#/key_id"))))
    )))
)]
async fn issue_key(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: audit::Context,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let new = KeyRequest::parse(&body)?;
    let issued = api_keys::issue(
        p.store.as_ref(),
        p.ids.as_ref(),
        p.clock.as_ref(),
        &tenant,
        new,
    )
    .await?;
    record(
        &p,
        Entry::new(&tenant, &ctx, "api_key.issued", &issued.record.key_id).created(
            serde_json::json!({"hint": issued.record.hint, "role": issued.record.role.as_str(), "name": issued.record.name}),
        ),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(IssuedKey {
            key_id: issued.record.key_id,
            api_key: issued.key.expose().to_string(),
            hint: issued.record.hint,
            role: issued.record.role,
            name: issued.record.name,
            created_at: rfc3339(issued.record.created_at),
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/keys",
    tag = "keys",
    security(("tenant_key" = [])),
    responses((status = 200, description = "The tenant's keys", body = KeyList))
)]
async fn list_keys(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<KeyList>, ApiError> {
    let keys = api_keys::list(p.store.as_ref(), &tenant).await?;
    let keys = keys
        .into_iter()
        .map(|k| KeySummary {
            key_id: k.key_id,
            hint: k.hint,
            role: k.role,
            name: k.name,
            created_at: rfc3339(k.created_at),
        })
        .collect();
    Ok(Json(KeyList { keys }))
}

#[utoipa::path(
    delete,
    path = "/api/keys/{key_id}",
    tag = "keys",
    security(("tenant_key" = [])),
    params(("key_id" = String, Path, description = "The key's id (`key_…`)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key", body = ErrorBody)
    )
)]
async fn revoke_key(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: audit::Context,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key_id =
        KeyId::parse(&key_id).map_err(|_| ApiError::NotFound("API key not found".into()))?;
    api_keys::revoke(p.store.as_ref(), &tenant, &key_id).await?;
    record(&p, Entry::new(&tenant, &ctx, "api_key.revoked", &key_id)).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/sites",
    tag = "sites",
    security(("tenant_key" = [])),
    request_body = NewSite,
    responses((status = 201, description = "The new site", body = Site, links(
        ("read" = (operation_id = "read_site", parameters(("site_id" = "$response.body#/site_id")))),
        ("change" = (operation_id = "patch_site", parameters(("site_id" = "$response.body#/site_id")))),
        ("prompt_history" = (operation_id = "prompt_versions", parameters(("site_id" = "$response.body#/site_id"))))
    )))
)]
async fn create_site(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: audit::Context,
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
    record(
        &p,
        Entry::new(&tenant, &ctx, "site.created", &site.site_id).created(serde_json::json!({
            "name": site.name, "allowed_domains": site.allowed_domains
        })),
    )
    .await;
    Ok((StatusCode::CREATED, Json(site)))
}

#[derive(Deserialize)]
struct Page {
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct SiteList {
    sites: Vec<Site>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct PromptVersionList {
    versions: Vec<PromptVersion>,
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/sites",
    tag = "sites",
    security(("tenant_key" = [])),
    params(("cursor" = Option<String>, Query, description = "From the previous page's `next_cursor`")),
    responses((status = 200, description = "A page of the tenant's sites", body = SiteList))
)]
async fn list_sites(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Query(page): Query<Page>,
) -> Result<Json<SiteList>, ApiError> {
    let (sites, next_cursor) = sites::list_sites(p.store.as_ref(), &tenant, page.cursor).await?;
    Ok(Json(SiteList { sites, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/api/sites/{site_id}",
    tag = "sites",
    security(("tenant_key" = [])),
    params(("site_id" = String, Path, description = "The site (`site_…`)")),
    responses(
        (status = 200, description = "The site", body = Site),
        (status = 404, description = "No such site (or not the caller's)", body = ErrorBody)
    )
)]
async fn read_site(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
) -> Result<Json<Site>, ApiError> {
    Ok(Json(
        sites::get_site(p.store.as_ref(), &tenant, &site_id(&raw)?).await?,
    ))
}

#[utoipa::path(
    patch,
    path = "/api/sites/{site_id}",
    tag = "sites",
    security(("tenant_key" = [])),
    params(("site_id" = String, Path, description = "The site (`site_…`)")),
    request_body = SitePatch,
    responses(
        (status = 200, description = "The changed site", body = Site),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 409, description = "Concurrent changes kept winning; retry", body = ErrorBody)
    )
)]
async fn patch_site(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: audit::Context,
    Path(raw): Path<String>,
    ApiJson(patch): ApiJson<SitePatch>,
) -> Result<Json<Site>, ApiError> {
    let site = site_id(&raw)?;
    let before = sites::get_site(p.store.as_ref(), &tenant, &site).await?;
    let after =
        sites::patch_site(p.store.as_ref(), p.clock.as_ref(), &tenant, &site, patch).await?;
    record(
        &p,
        site_change(&tenant, &ctx, "site.updated", &before, &after),
    )
    .await;
    Ok(Json(after))
}

/// A site change for the audit log: the changed fields only (a new prompt shows as its version).
fn site_change(
    tenant: &TenantId,
    ctx: &audit::Context,
    action: &str,
    before: &Site,
    after: &Site,
) -> Entry {
    let view = |s: &Site| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            // Bookkeeping that changes on its own is not the caller's change.
            for field in ["updated_at", "status", "index_version", "last_trained_at"] {
                o.remove(field);
            }
        }
        v
    };
    Entry::new(tenant, ctx, action, &after.site_id).change(view(before), view(after))
}

#[utoipa::path(
    get,
    path = "/api/sites/{site_id}/prompt/versions",
    tag = "sites",
    security(("tenant_key" = [])),
    params(
        ("site_id" = String, Path, description = "The site (`site_…`)"),
        ("cursor" = Option<String>, Query, description = "From the previous page's `next_cursor`")
    ),
    responses(
        (status = 200, description = "The prompt's history, newest first", body = PromptVersionList),
        (status = 404, description = "No such site", body = ErrorBody)
    )
)]
async fn prompt_versions(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<PromptVersionList>, ApiError> {
    let site = site_id(&raw)?;
    let (versions, next_cursor) =
        sites::prompt_versions(p.store.as_ref(), &tenant, &site, page.cursor).await?;
    Ok(Json(PromptVersionList {
        versions,
        next_cursor,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Rollback {
    /// The version to make current again (as a new version).
    version: u32,
}

#[utoipa::path(
    post,
    path = "/api/sites/{site_id}/prompt/rollback",
    tag = "sites",
    security(("tenant_key" = [])),
    params(("site_id" = String, Path, description = "The site (`site_…`)")),
    request_body = Rollback,
    responses(
        (status = 200, description = "The site with the restored prompt", body = Site),
        (status = 404, description = "No such site or version", body = ErrorBody)
    )
)]
async fn rollback_prompt(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: audit::Context,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<Rollback>,
) -> Result<Json<Site>, ApiError> {
    let site = site_id(&raw)?;
    let before = sites::get_site(p.store.as_ref(), &tenant, &site).await?;
    let after = sites::rollback_prompt(
        p.store.as_ref(),
        p.clock.as_ref(),
        &tenant,
        &site,
        body.version,
    )
    .await?;
    record(
        &p,
        site_change(&tenant, &ctx, "site.prompt_rolled_back", &before, &after),
    )
    .await;
    Ok(Json(after))
}
