//! The receptionist's management routes: phone numbers (E.164, provisioned by the operator; a tenant
//! picks from the pool and gives back), the receptionist's versioned settings, and call logs. Another
//! tenant's number or call answers 404.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use shared::Platform;
use shared::http::{AdminAuth, ApiError, ApiJson, TenantAuth};
use shared::ids::TenantId;
use shared::voice::receptionist::{self, ReceptionistPatch, ReceptionistSettings};
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNumber {
    number: PhoneNumber,
}

async fn claim_number(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(body): ApiJson<NewNumber>,
) -> Result<impl IntoResponse, ApiError> {
    let assignment = phone::claim(p.store.as_ref(), p.clock.as_ref(), &tenant, body.number).await?;
    tracing::info!(number = %assignment.number, "phone number taken from the pool");
    Ok((StatusCode::CREATED, Json(assignment)))
}

async fn available_numbers(
    State(p): State<AppState>,
    TenantAuth(_tenant): TenantAuth,
) -> Result<Json<Value>, ApiError> {
    let numbers = phone::available(p.store.as_ref()).await?;
    Ok(Json(json!({ "phone_numbers": numbers })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisionedNumber {
    number: PhoneNumber,
    /// Assign straight to this tenant; without it the number goes to the pool.
    tenant_id: Option<String>,
}

async fn provision_number(
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

async fn all_numbers(
    State(p): State<AppState>,
    _admin: AdminAuth,
) -> Result<Json<Value>, ApiError> {
    let numbers = phone::list_all(p.store.as_ref()).await?;
    Ok(Json(json!({ "phone_numbers": numbers })))
}

async fn withdraw_number(
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

async fn list_numbers(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<Value>, ApiError> {
    let numbers = phone::list(p.store.as_ref(), &tenant).await?;
    Ok(Json(json!({ "phone_numbers": numbers })))
}

async fn release_number(
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

async fn read_settings(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<ReceptionistSettings>, ApiError> {
    Ok(Json(receptionist::get(p.store.as_ref(), &tenant).await?))
}

async fn patch_settings(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(patch): ApiJson<ReceptionistPatch>,
) -> Result<Json<ReceptionistSettings>, ApiError> {
    if patch.is_empty() {
        return Err(ApiError::InvalidInput {
            field: None,
            message: "nothing to change: give system_prompt, greeting, voice or language".into(),
        });
    }
    Ok(Json(
        receptionist::patch(p.store.as_ref(), p.clock.as_ref(), &tenant, &patch).await?,
    ))
}

#[derive(Deserialize)]
struct Page {
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn settings_versions(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let (versions, next) = receptionist::versions(p.store.as_ref(), &tenant, page.cursor).await?;
    Ok(Json(json!({ "versions": versions, "next_cursor": next })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollback {
    version: u32,
}

async fn rollback_settings(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(body): ApiJson<Rollback>,
) -> Result<Json<ReceptionistSettings>, ApiError> {
    Ok(Json(
        receptionist::rollback(p.store.as_ref(), p.clock.as_ref(), &tenant, body.version).await?,
    ))
}

async fn list_calls(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let (calls, next) = calls::list(
        p.store.as_ref(),
        &tenant,
        page.cursor,
        page.limit.unwrap_or(25),
    )
    .await?;
    let calls: Vec<Value> = calls.iter().map(|c| c.api_view()).collect();
    Ok(Json(json!({ "calls": calls, "next_cursor": next })))
}

async fn read_call(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let call = CallSid::parse(&raw).map_err(|_| ApiError::NotFound("call not found".into()))?;
    let log = calls::get(p.store.as_ref(), &tenant, &call).await?;
    Ok(Json(log.api_view()))
}
