//! Console sign-in: an API key traded for a session cookie (`HttpOnly; Secure; SameSite=Strict`), so
//! the web console keeps no key in the browser; the session's CSRF token goes to the page, which sends
//! it with every change. Sign-out ends the session at once. See `shared::tenants::sessions`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use shared::Platform;
use shared::http::openapi::ErrorBody;
use shared::http::{ApiError, ApiJson, TenantAuth};
use shared::ids::TenantId;
use shared::tenants::api_keys::ApiKey;
use shared::tenants::roles::Role;
use shared::tenants::sessions::{self, Session};

type AppState = Arc<Platform>;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/console/session",
        post(sign_in).get(read_session).delete(sign_out),
    )
}

/// `POST /api/console/session`: the key to sign in with.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// A tenant API key (`kt_…`); its role becomes the session's.
    api_key: String,
}

/// A console session: who it is for, what it may do, and the CSRF token changes must carry.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    tenant_id: TenantId,
    role: Role,
    /// Send it as `X-CSRF-Token` with every request that changes something.
    csrf_token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: time::OffsetDateTime,
}

#[utoipa::path(
    post,
    path = "/api/console/session",
    tag = "console",
    request_body = SignIn,
    responses(
        (status = 201, description = "Signed in: the session cookie is set (`Set-Cookie: kotoba_session=…; HttpOnly; Secure; SameSite=Strict`)", body = SessionView),
        (status = 401, description = "Not a valid key", body = ErrorBody)
    )
)]
pub async fn sign_in(
    State(p): State<AppState>,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<impl IntoResponse, ApiError> {
    let key = ApiKey::parse(body.api_key.trim())
        .map_err(|_| ApiError::Unauthorized("invalid API key".into()))?;
    let opened = sessions::open(p.store.as_ref(), p.ids.as_ref(), p.clock.as_ref(), &key)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?;
    tracing::info!(tenant_id = %opened.caller.tenant_id, role = opened.caller.role.as_str(), "console session opened");
    let view = SessionView {
        tenant_id: opened.caller.tenant_id.clone(),
        role: opened.caller.role,
        csrf_token: opened.csrf_token.clone(),
        expires_at: opened.expires_at,
    };
    Ok((
        StatusCode::CREATED,
        [
            (header::SET_COOKIE, sessions::set_cookie(Some(&opened))),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Json(view),
    ))
}

#[utoipa::path(
    get,
    path = "/api/console/session",
    tag = "console",
    security(("console_session" = []), ("tenant_key" = [])),
    responses(
        (status = 200, description = "The session, with its CSRF token (a page reads it again after a reload)", body = SessionView),
        (status = 404, description = "Asked with an API key, not a session", body = ErrorBody)
    )
)]
pub async fn read_session(
    TenantAuth(tenant): TenantAuth,
    session: Option<Extension<Session>>,
    caller: Extension<shared::tenants::api_keys::Caller>,
) -> Result<Json<SessionView>, ApiError> {
    let Some(Extension(session)) = session else {
        return Err(ApiError::NotFound(
            "no console session: this request was made with an API key".into(),
        ));
    };
    Ok(Json(SessionView {
        tenant_id: tenant,
        role: caller.role,
        csrf_token: session.csrf_token,
        expires_at: session.expires_at,
    }))
}

#[utoipa::path(
    delete,
    path = "/api/console/session",
    tag = "console",
    security(("console_session" = [])),
    responses((status = 204, description = "Signed out: the session no longer works, and the cookie is cleared"))
)]
pub async fn sign_out(
    State(p): State<AppState>,
    TenantAuth(_tenant): TenantAuth,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(sessions::token_in_cookies);
    if let Some(token) = token {
        sessions::close(p.store.as_ref(), &token).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, sessions::set_cookie(None))],
    ))
}
