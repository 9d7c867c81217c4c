//! `GET /api/errors`, `GET /api/audit` (a tenant's own) and `GET /api/admin/audit` (the operator's).

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use shared::audit::{self, AuditEntry};
use shared::errorlog::{self, ErrorEntry};
use shared::http::openapi::ErrorBody;
use shared::http::{AdminAuth, ApiError, TenantAuth};
use shared::ids::{SiteId, TenantId};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/errors", get(list_errors))
        .route("/api/audit", get(list_audit))
        .route("/api/admin/audit", get(admin_audit))
}

#[derive(Deserialize)]
pub(crate) struct ErrorQuery {
    site_id: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorList {
    errors: Vec<ErrorEntry>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    cursor: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct AdminAuditQuery {
    tenant_id: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditList {
    entries: Vec<AuditEntry>,
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/errors",
    tag = "logs",
    security(("tenant_key" = [])),
    params(
        ("site_id" = Option<String>, Query, description = "Only this site's errors"),
        ("cursor" = Option<String>, Query, description = "From the previous page's `next_cursor`")
    ),
    responses(
        (status = 200, description = "Errors the tenant's requests met in the last 30 days, newest first", body = ErrorList),
        (status = 404, description = "No such site", body = ErrorBody)
    )
)]
pub(crate) async fn list_errors(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Query(q): Query<ErrorQuery>,
) -> Result<Json<ErrorList>, ApiError> {
    let site = match q.site_id.as_deref() {
        Some(raw) => {
            let site =
                SiteId::parse(raw).map_err(|_| ApiError::NotFound("site not found".into()))?;
            // Only the caller's own sites.
            shared::sites::get_site(p.store.as_ref(), &tenant, &site).await?;
            Some(site)
        }
        None => None,
    };
    let (errors, next_cursor) =
        errorlog::list(p.store.as_ref(), &tenant, site.as_ref(), q.cursor).await?;
    Ok(Json(ErrorList {
        errors,
        next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/api/audit",
    tag = "logs",
    security(("tenant_key" = [])),
    params(("cursor" = Option<String>, Query, description = "From the previous page's `next_cursor`")),
    responses((status = 200, description = "The tenant's audit log, newest first", body = AuditList))
)]
pub(crate) async fn list_audit(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let (entries, next_cursor) = audit::list(p.store.as_ref(), &tenant, q.cursor).await?;
    Ok(Json(AuditList {
        entries,
        next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/api/admin/audit",
    tag = "admin",
    security(("admin_key" = [])),
    params(
        ("tenant_id" = Option<String>, Query, description = "Only this tenant's entries"),
        ("cursor" = Option<String>, Query, description = "From the previous page's `next_cursor`")
    ),
    responses((status = 200, description = "Audit entries, newest first", body = AuditList))
)]
pub(crate) async fn admin_audit(
    State(p): State<AppState>,
    _admin: AdminAuth,
    Query(q): Query<AdminAuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let (entries, next_cursor) = match q.tenant_id.as_deref() {
        Some(raw) => {
            let tenant = TenantId::parse(raw)
                .map_err(|_| ApiError::invalid("tenant_id", "not a tenant id (ten_…)"))?;
            audit::list(p.store.as_ref(), &tenant, q.cursor).await?
        }
        None => audit::list_all(p.store.as_ref(), q.cursor).await?,
    };
    Ok(Json(AuditList {
        entries,
        next_cursor,
    }))
}
