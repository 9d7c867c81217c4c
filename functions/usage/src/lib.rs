//! Usage: `GET /api/usage?month=YYYY-MM` for a tenant, `GET /api/admin/usage?month=YYYY-MM` for the
//! operator (every tenant's month). The month defaults to the current one (UTC).

/// The secret variables this function's code reads (`GET /api/admin/usage` checks the operator key); shared::secrets fetches exactly
/// these at start-up, and tests/deploy_template.rs checks the templates grant exactly these.
pub const SECRETS: &[&str] = &["KOTOBA_ADMIN_KEY"];

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use shared::Platform;
use shared::http::openapi::{ErrorBody, SecuritySchemes};
use shared::http::{AdminAuth, ApiError, TenantAuth};
use shared::tenants::{self, SubscriptionStatus, TenantName};
use shared::usage::{self, MonthlyReport};

pub fn routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/usage", get(tenant_usage))
        .route("/api/admin/usage", get(admin_usage))
        .with_state(platform)
}

/// This function's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(tenant_usage, admin_usage),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

pub fn app(platform: Arc<Platform>) -> Router {
    shared::http::finish_logged(routes(platform.clone()), platform)
}

#[derive(Deserialize)]
struct MonthQuery {
    month: Option<String>,
    cursor: Option<String>,
}

fn month(p: &Platform, q: &MonthQuery) -> Result<String, ApiError> {
    match &q.month {
        Some(m) => usage::parse_month(m).map_err(|e| ApiError::invalid("month", e)),
        None => Ok(usage::month_of(p.clock.now())),
    }
}

/// Every tenant's month (one page of tenants).
#[derive(Serialize, ToSchema)]
struct AdminUsage {
    month: String,
    tenants: Vec<TenantUsage>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct TenantUsage {
    name: TenantName,
    subscription_status: SubscriptionStatus,
    usage: MonthlyReport,
}

#[utoipa::path(
    get,
    path = "/api/usage",
    tag = "usage",
    security(("tenant_key" = [])),
    params(("month" = Option<String>, Query, description = "`YYYY-MM` (UTC); the current month when absent")),
    responses(
        (status = 200, description = "The tenant's month: totals, quota use, a row per active day", body = MonthlyReport),
        (status = 400, description = "A malformed month", body = ErrorBody)
    )
)]
async fn tenant_usage(
    State(p): State<Arc<Platform>>,
    TenantAuth(tenant): TenantAuth,
    Query(q): Query<MonthQuery>,
) -> Result<Json<MonthlyReport>, ApiError> {
    let month = month(&p, &q)?;
    let tenant = tenants::get_tenant(p.store.as_ref(), &tenant).await?;
    Ok(Json(
        usage::monthly_report(p.store.as_ref(), &tenant, &month).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/admin/usage",
    tag = "admin",
    security(("admin_key" = [])),
    params(
        ("month" = Option<String>, Query, description = "`YYYY-MM` (UTC); the current month when absent"),
        ("cursor" = Option<String>, Query, description = "From the previous page's `next_cursor`")
    ),
    responses(
        (status = 200, description = "A page of tenants with their month", body = AdminUsage),
        (status = 400, description = "A malformed month", body = ErrorBody)
    )
)]
async fn admin_usage(
    State(p): State<Arc<Platform>>,
    _admin: AdminAuth,
    Query(q): Query<MonthQuery>,
) -> Result<Json<AdminUsage>, ApiError> {
    let month = month(&p, &q)?;
    let (tenants, next) = tenants::list_tenants(p.store.as_ref(), q.cursor.clone()).await?;
    let mut reports = Vec::with_capacity(tenants.len());
    for tenant in &tenants {
        let report = usage::monthly_report(p.store.as_ref(), tenant, &month).await?;
        reports.push(TenantUsage {
            name: tenant.name.clone(),
            subscription_status: tenant.subscription_status,
            usage: report,
        });
    }
    Ok(Json(AdminUsage {
        month,
        tenants: reports,
        next_cursor: next,
    }))
}
