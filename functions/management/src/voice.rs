//! The receptionist's management routes: phone numbers (E.164, provisioned by the operator; a tenant
//! picks from the pool and gives back), the receptionist's versioned settings, and call logs. Another
//! tenant's number or call answers 404.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use shared::Platform;
use shared::http::openapi::ErrorBody;
use shared::http::{AdminAuth, ApiError, ApiJson, TenantAuth};
use shared::ids::TenantId;
use shared::voice::calls::CallLogView;
use shared::voice::phone::PhoneAssignment;
use shared::voice::receptionist::{
    self, ReceptionistPatch, ReceptionistSettings, ReceptionistVersion,
};
use shared::voice::{CallSid, PhoneNumber, calls, phone};

type AppState = Arc<Platform>;

/// The voice routes (merged into the management API's router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/phone-numbers", post(claim_number).get(list_numbers))
        .route("/api/phone-numbers/available", get(available_numbers))
        .route("/api/phone-numbers/{number}", delete(release_number))
        .route(
            "/api/admin/phone-numbers",
            post(provision_number).get(all_numbers),
        )
        .route("/api/admin/phone-numbers/{number}", delete(withdraw_number))
        .route("/api/voice", get(read_settings).patch(patch_settings))
        .route("/api/voice/versions", get(settings_versions))
        .route("/api/voice/rollback", post(rollback_settings))
        .route("/api/calls", get(list_calls))
        .route("/api/calls/{call_sid}", get(read_call))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewNumber {
    number: PhoneNumber,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct NumberList {
    phone_numbers: Vec<PhoneAssignment>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct VersionList {
    versions: Vec<ReceptionistVersion>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CallList {
    calls: Vec<CallLogView>,
    next_cursor: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/phone-numbers",
    tag = "voice",
    security(("tenant_key" = [])),
    request_body = NewNumber,
    responses(
        (status = 201, description = "The number, taken from the pool and now routed to this tenant", body = PhoneAssignment, links(
            ("release" = (operation_id = "release_number", parameters(("number" = "$response.body#/number"))))
        )),
        (status = 404, description = "The operator never provisioned this number", body = ErrorBody),
        (status = 409, description = "Another tenant holds the number", body = ErrorBody)
    )
)]
pub(crate) async fn claim_number(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(body): ApiJson<NewNumber>,
) -> Result<impl IntoResponse, ApiError> {
    let assignment = phone::claim(p.store.as_ref(), p.clock.as_ref(), &tenant, body.number).await?;
    tracing::info!(number = %assignment.number, "phone number taken from the pool");
    Ok((StatusCode::CREATED, Json(assignment)))
}

#[utoipa::path(
    get,
    path = "/api/phone-numbers/available",
    tag = "voice",
    security(("tenant_key" = [])),
    responses((status = 200, description = "The operator's pool: numbers any tenant may take", body = NumberList))
)]
pub(crate) async fn available_numbers(
    State(p): State<AppState>,
    TenantAuth(_tenant): TenantAuth,
) -> Result<Json<NumberList>, ApiError> {
    let phone_numbers = phone::available(p.store.as_ref()).await?;
    Ok(Json(NumberList { phone_numbers }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProvisionedNumber {
    number: PhoneNumber,
    /// Assign straight to this tenant (`tn_…`); without it the number goes to the pool.
    tenant_id: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/admin/phone-numbers",
    tag = "admin",
    security(("admin_key" = [])),
    request_body = ProvisionedNumber,
    responses(
        (status = 201, description = "The number, in the pool or assigned to the tenant", body = PhoneAssignment, links(
            ("withdraw" = (operation_id = "withdraw_number", parameters(("number" = "$response.body#/number"))))
        )),
        (status = 400, description = "A malformed number, or no such tenant (`field: tenant_id`)", body = ErrorBody),
        (status = 409, description = "The number is provisioned already", body = ErrorBody)
    )
)]
pub(crate) async fn provision_number(
    State(p): State<AppState>,
    _admin: AdminAuth,
    ApiJson(body): ApiJson<ProvisionedNumber>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = match body.tenant_id.as_deref() {
        Some(raw) => {
            let unknown = || ApiError::invalid("tenant_id", format!("no tenant {raw:?}"));
            let id = TenantId::parse(raw).map_err(|_| unknown())?;
            shared::tenants::get_tenant(p.store.as_ref(), &id)
                .await
                .map_err(|e| match e {
                    shared::tenants::TenantError::NotFound(_) => unknown(),
                    other => other.into(),
                })?;
            Some(id)
        }
        None => None,
    };
    let record = phone::provision(
        p.store.as_ref(),
        p.clock.as_ref(),
        body.number,
        tenant.as_ref(),
    )
    .await?;
    tracing::info!(number = %record.number, tenant_id = ?record.tenant_id, "phone number provisioned");
    Ok((StatusCode::CREATED, Json(record)))
}

#[utoipa::path(
    get,
    path = "/api/admin/phone-numbers",
    tag = "admin",
    security(("admin_key" = [])),
    responses((status = 200, description = "Every provisioned number, available or assigned", body = NumberList))
)]
pub(crate) async fn all_numbers(
    State(p): State<AppState>,
    _admin: AdminAuth,
) -> Result<Json<NumberList>, ApiError> {
    let phone_numbers = phone::list_all(p.store.as_ref()).await?;
    Ok(Json(NumberList { phone_numbers }))
}

#[utoipa::path(
    delete,
    path = "/api/admin/phone-numbers/{number}",
    tag = "admin",
    security(("admin_key" = [])),
    params(("number" = String, Path, description = "The number in E.164 (`+…`)")),
    responses(
        (status = 204, description = "Withdrawn: no longer routed to anyone"),
        (status = 404, description = "No such provisioned number", body = ErrorBody)
    )
)]
pub(crate) async fn withdraw_number(
    State(p): State<AppState>,
    _admin: AdminAuth,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let number = PhoneNumber::parse(&raw)
        .map_err(|_| ApiError::NotFound("phone number not found".into()))?;
    phone::withdraw(p.store.as_ref(), &number).await?;
    tracing::info!(number = %number, "phone number withdrawn");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/phone-numbers",
    tag = "voice",
    security(("tenant_key" = [])),
    responses((status = 200, description = "The tenant's numbers", body = NumberList))
)]
pub(crate) async fn list_numbers(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<NumberList>, ApiError> {
    let phone_numbers = phone::list(p.store.as_ref(), &tenant).await?;
    Ok(Json(NumberList { phone_numbers }))
}

#[utoipa::path(
    delete,
    path = "/api/phone-numbers/{number}",
    tag = "voice",
    security(("tenant_key" = [])),
    params(("number" = String, Path, description = "The number in E.164 (`+…`)")),
    responses(
        (status = 204, description = "Given back to the pool"),
        (status = 404, description = "Not one of the tenant's numbers", body = ErrorBody)
    )
)]
pub(crate) async fn release_number(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    // A number that does not parse names nothing the tenant has.
    let number = PhoneNumber::parse(&raw)
        .map_err(|_| ApiError::NotFound("phone number not found".into()))?;
    phone::release(p.store.as_ref(), &tenant, &number).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/voice",
    tag = "voice",
    security(("tenant_key" = [])),
    responses((status = 200, description = "The receptionist's settings in force", body = ReceptionistSettings))
)]
pub(crate) async fn read_settings(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<ReceptionistSettings>, ApiError> {
    Ok(Json(receptionist::get(p.store.as_ref(), &tenant).await?))
}

#[utoipa::path(
    patch,
    path = "/api/voice",
    tag = "voice",
    security(("tenant_key" = [])),
    request_body = ReceptionistPatch,
    responses(
        (status = 200, description = "The new settings (a new version)", body = ReceptionistSettings),
        (status = 409, description = "Concurrent changes kept winning; retry", body = ErrorBody)
    )
)]
pub(crate) async fn patch_settings(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: shared::audit::Context,
    ApiJson(patch): ApiJson<ReceptionistPatch>,
) -> Result<Json<ReceptionistSettings>, ApiError> {
    if patch.is_empty() {
        return Err(ApiError::InvalidInput {
            field: None,
            message: "nothing to change: give system_prompt, greeting, voice or language".into(),
        });
    }
    let after = receptionist::patch(p.store.as_ref(), p.clock.as_ref(), &tenant, &patch).await?;
    audit_version(&p, &tenant, &ctx, "voice.updated", &after).await;
    Ok(Json(after))
}

/// A new receptionist version, in the audit log.
async fn audit_version(
    p: &AppState,
    tenant: &TenantId,
    ctx: &shared::audit::Context,
    action: &str,
    after: &ReceptionistSettings,
) {
    let entry = shared::audit::Entry::new(tenant, ctx, action, tenant)
        .created(serde_json::to_value(after).unwrap_or_default());
    shared::audit::record_or_log(p.store.as_ref(), p.ids.as_ref(), p.clock.as_ref(), entry).await;
}

#[derive(Deserialize)]
pub(crate) struct Page {
    cursor: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/voice/versions",
    tag = "voice",
    security(("tenant_key" = [])),
    params(("cursor" = Option<String>, Query, description = "From the previous page's `next_cursor`")),
    responses((status = 200, description = "The settings' history, newest first", body = VersionList))
)]
pub(crate) async fn settings_versions(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Query(page): Query<Page>,
) -> Result<Json<VersionList>, ApiError> {
    let (versions, next_cursor) =
        receptionist::versions(p.store.as_ref(), &tenant, page.cursor).await?;
    Ok(Json(VersionList {
        versions,
        next_cursor,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rollback {
    version: u32,
}

#[utoipa::path(
    post,
    path = "/api/voice/rollback",
    tag = "voice",
    security(("tenant_key" = [])),
    request_body = Rollback,
    responses(
        (status = 200, description = "The restored settings (a new version)", body = ReceptionistSettings),
        (status = 404, description = "No such version", body = ErrorBody)
    )
)]
pub(crate) async fn rollback_settings(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: shared::audit::Context,
    ApiJson(body): ApiJson<Rollback>,
) -> Result<Json<ReceptionistSettings>, ApiError> {
    let after =
        receptionist::rollback(p.store.as_ref(), p.clock.as_ref(), &tenant, body.version).await?;
    audit_version(&p, &tenant, &ctx, "voice.rolled_back", &after).await;
    Ok(Json(after))
}

#[utoipa::path(
    get,
    path = "/api/calls",
    tag = "voice",
    security(("tenant_key" = [])),
    params(
        ("cursor" = Option<String>, Query, description = "From the previous page's `next_cursor`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Calls per page (default 25)")
    ),
    responses((status = 200, description = "A page of call logs, newest first", body = CallList))
)]
pub(crate) async fn list_calls(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Query(page): Query<Page>,
) -> Result<Json<CallList>, ApiError> {
    // Found by schemathesis: `?limit=2147483648` was accepted (and quietly clamped) although the
    // document promises 1 to 100.
    if page.limit.is_some_and(|limit| !(1..=100).contains(&limit)) {
        return Err(ApiError::invalid("limit", "must be 1 to 100"));
    }
    let (calls, next) = calls::list(
        p.store.as_ref(),
        &tenant,
        page.cursor,
        page.limit.unwrap_or(25),
    )
    .await?;
    let calls = calls.iter().map(|c| c.api_view()).collect();
    Ok(Json(CallList {
        calls,
        next_cursor: next,
    }))
}

#[utoipa::path(
    get,
    path = "/api/calls/{call_sid}",
    tag = "voice",
    security(("tenant_key" = [])),
    params(("call_sid" = String, Path, description = "Twilio's call sid (`CA` and 32 hex digits)")),
    responses(
        (status = 200, description = "The call: transcript, summary, usage, cost", body = CallLogView),
        (status = 404, description = "No such call", body = ErrorBody)
    )
)]
pub(crate) async fn read_call(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
) -> Result<Json<CallLogView>, ApiError> {
    let call = CallSid::parse(&raw).map_err(|_| ApiError::NotFound("call not found".into()))?;
    let log = calls::get(p.store.as_ref(), &tenant, &call).await?;
    Ok(Json(log.api_view()))
}
