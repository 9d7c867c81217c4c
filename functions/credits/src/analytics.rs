//! `GET /api/credits/analytics?from=YYYY-MM-DD&to=YYYY-MM-DD`: the tenant's credit report
//! (`shared::credits::analytics`). Any role may read it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use shared::Platform;
use shared::credits::analytics::{self, Analytics, Period};
use shared::http::openapi::ErrorBody;
use shared::http::{ApiError, TenantAuth};
use shared::tenants;

#[derive(Deserialize)]
pub struct PeriodQuery {
    from: Option<String>,
    to: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/credits/analytics",
    tag = "credits",
    security(("tenant_key" = [])),
    params(
        ("from" = Option<String>, Query, description = "First day (`YYYY-MM-DD`, UTC); default: the first of `to`'s month"),
        ("to" = Option<String>, Query, description = "Last day, not after today (`YYYY-MM-DD`, UTC); default: today. At most 366 days from `from`")
    ),
    responses(
        (status = 200, description = "Totals, average and peak day, per function (count, credits, success rate, mean latency), this month's projection and a cheaper plan when one fits", body = Analytics),
        (status = 400, description = "A date that is not `YYYY-MM-DD`, `from` after `to`, `to` after today, or more than 366 days (named in `field`)", body = ErrorBody)
    )
)]
pub async fn analytics(
    State(p): State<Arc<Platform>>,
    TenantAuth(tenant): TenantAuth,
    Query(q): Query<PeriodQuery>,
) -> Result<Json<Analytics>, ApiError> {
    let now = p.clock.now();
    let period = Period::parse(q.from.as_deref(), q.to.as_deref(), now.date())
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let plan = tenants::get_tenant(p.store.as_ref(), &tenant).await?.plan;
    let report = analytics::report(p.store.as_ref(), &tenant, plan, period, now).await?;
    Ok(Json(report))
}
