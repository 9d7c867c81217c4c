//! Credits: `GET /api/credits/balance`, `GET /api/credits/transactions`, `GET /api/credits/packages`,
//! `POST /api/credits/purchase` (a Stripe PaymentIntent; the credits arrive with its webhook),
//! `GET /api/credits/purchases/{purchase_id}` and `PUT /api/credits/auto-top-up` for a tenant;
//! `POST /api/admin/credits/packages` and
//! `POST /api/admin/tenants/{tenant_id}/credits` for the operator (a bonus or a negative adjustment,
//! never below zero, in the ledger like every other change).

/// The secret variables this function's code reads (the admin route checks the operator key);
/// shared::secrets fetches exactly these at start-up, and tests/deploy_template.rs checks the
/// templates grant exactly these.
pub const SECRETS: &[&str] = &["KOTOBA_ADMIN_KEY", "STRIPE_SECRET_KEY"];

pub mod analytics;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use shared::Platform;
use shared::billing::Billing;
use shared::credits::account::{self, Balance};
use shared::credits::auto_top_up::{self, AutoTopUp, AutoTopUpRequest};
use shared::credits::ledger::{self, DailyUsage, FunctionUsage, LedgerEntry, RecentUsage};
use shared::credits::packages::{self, Currency, NewPackage, Package};
use shared::credits::purchases::{
    self, Payment, Purchase, PurchaseSource, PurchaseStatus, Started,
};
use shared::credits::{Credits, MeteredFunction, TransactionType};
use shared::http::openapi::{ErrorBody, SecuritySchemes};
use shared::http::{AdminAuth, ApiError, ApiJson, TenantAuth, current_request_id};
use shared::ids::{PackageId, PurchaseId, TenantId};
use shared::tenants;

pub fn routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/credits/balance", get(balance))
        .route("/api/credits/transactions", get(transactions))
        .route("/api/credits/analytics", get(analytics::analytics))
        .route("/api/credits/packages", get(packages_on_sale))
        .route("/api/credits/purchase", post(purchase))
        .route("/api/credits/purchases/{purchase_id}", get(purchase_status))
        .route("/api/credits/auto-top-up", put(set_auto_top_up))
        .route(
            "/api/admin/credits/packages",
            get(all_packages).post(create_package),
        )
        .route("/api/admin/tenants/{tenant_id}/credits", post(adjust))
        .with_state(platform)
}

/// This function's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        balance,
        transactions,
        packages_on_sale,
        purchase,
        purchase_status,
        set_auto_top_up,
        create_package,
        adjust,
        all_packages,
        analytics::analytics
    ),
    components(schemas(
        Started,
        Payment,
        Purchase,
        PurchaseSource,
        PurchaseStatus,
        AutoTopUp,
        AutoTopUpRequest,
        ErrorBody,
        LedgerEntry,
        TransactionType,
        MeteredFunction,
        Credits,
        Package,
        NewPackage,
        Currency
    )),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

pub fn app(platform: Arc<Platform>) -> Router {
    shared::http::finish(routes(platform))
}

/// A tenant's credits.
#[derive(Serialize, ToSchema)]
struct BalanceView {
    /// Granted + paid.
    balance: Credits,
    /// The plan's monthly free credits and bonuses left; spent first, expire at the next grant.
    granted: Credits,
    /// Purchased credits left; never expire.
    paid: Credits,
    /// What a new action may reserve now (the balance minus what in-flight actions hold).
    available: Credits,
    monthly_free_credits: Credits,
    total_purchased: Credits,
    /// Usage entries since the first of the month (UTC).
    used_this_month: Credits,
    /// The balance over the average daily use of the last 14 days; absent without usage.
    estimated_days_left: Option<u64>,
    /// Below this balance `credits.low` fires and the daily digest mails; absent: no alerts.
    low_balance_threshold: Option<Credits>,
    /// Absent until the tenant saves settings.
    auto_top_up: Option<AutoTopUp>,
    usage: UsageView,
}

/// The last 14 days' usage.
#[derive(Serialize, ToSchema)]
struct UsageView {
    top_functions: Vec<FunctionUsage>,
    daily: Vec<DailyUsage>,
}

impl BalanceView {
    fn new(b: Balance, recent: RecentUsage, account: account::AccountRecord) -> Self {
        Self {
            balance: b.balance,
            granted: b.granted,
            paid: b.paid,
            available: b.available,
            monthly_free_credits: b.monthly_free_credits,
            total_purchased: b.total_purchased,
            used_this_month: recent.used_this_month,
            estimated_days_left: recent.estimated_days_left,
            low_balance_threshold: auto_top_up::threshold_of(&account),
            auto_top_up: account.auto_top_up,
            usage: UsageView {
                top_functions: recent.top_functions,
                daily: recent.daily,
            },
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/credits/balance",
    tag = "credits",
    security(("tenant_key" = [])),
    responses((status = 200, description = "The tenant's credits", body = BalanceView))
)]
async fn balance(
    State(p): State<Arc<Platform>>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<BalanceView>, ApiError> {
    let (balance, record) = account::balance_and_record(p.store.as_ref(), &tenant).await?;
    let recent =
        ledger::recent_usage(p.store.as_ref(), &tenant, balance.balance, p.clock.now()).await?;
    Ok(Json(BalanceView::new(balance, recent, record)))
}

#[derive(Deserialize)]
struct PageQuery {
    cursor: Option<String>,
}

/// A page of the ledger, newest first.
#[derive(Serialize, ToSchema)]
struct TransactionsPage {
    transactions: Vec<LedgerEntry>,
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/credits/transactions",
    tag = "credits",
    security(("tenant_key" = [])),
    params(("cursor" = Option<String>, Query, description = "From the previous page's `next_cursor`")),
    responses(
        (status = 200, description = "The ledger, newest first, 50 a page", body = TransactionsPage),
        (status = 400, description = "A cursor this listing did not hand out", body = ErrorBody)
    )
)]
async fn transactions(
    State(p): State<Arc<Platform>>,
    TenantAuth(tenant): TenantAuth,
    Query(q): Query<PageQuery>,
) -> Result<Json<TransactionsPage>, ApiError> {
    let (transactions, next_cursor) = ledger::page(p.store.as_ref(), &tenant, q.cursor, 50).await?;
    Ok(Json(TransactionsPage {
        transactions,
        next_cursor,
    }))
}

/// A bonus (positive) or an adjustment (negative) of a tenant's credits.
#[derive(Deserialize, ToSchema)]
struct AdjustRequest {
    /// Non-zero, at most 100,000,000 either way; negative draws granted credits first and never goes
    /// below zero.
    #[schema(minimum = -100_000_000, maximum = 100_000_000)]
    credits: i64,
    /// Why, kept in the ledger (1 to 500 characters).
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/admin/tenants/{tenant_id}/credits",
    tag = "admin",
    security(("admin_key" = [])),
    params(("tenant_id" = TenantId, Path, description = "The tenant")),
    request_body = AdjustRequest,
    responses(
        (status = 201, description = "The ledger entry written", body = LedgerEntry),
        (status = 400, description = "Zero credits, or no reason", body = ErrorBody),
        (status = 402, description = "A negative adjustment larger than the available credits", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody)
    )
)]
async fn adjust(
    State(p): State<Arc<Platform>>,
    _admin: AdminAuth,
    ctx: shared::audit::Context,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<AdjustRequest>,
) -> Result<(StatusCode, Json<LedgerEntry>), ApiError> {
    let tenant = TenantId::parse(&tenant_id).map_err(|e| ApiError::invalid("tenant_id", e))?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::invalid(
            "reason",
            "a reason of 1 to 500 characters is required",
        ));
    }
    if body.credits == 0 || body.credits.unsigned_abs() > account::MAX_ADJUSTMENT as u64 {
        return Err(ApiError::invalid(
            "credits",
            "credits must be non-zero and at most 100,000,000 either way",
        ));
    }
    tenants::get_tenant(p.store.as_ref(), &tenant).await?;
    let entry = account::adjust(
        p.store.as_ref(),
        &tenant,
        Credits(body.credits),
        reason,
        current_request_id(),
        p.clock.now(),
    )
    .await?;
    tracing::info!(tenant = %tenant, credits = body.credits, reason, transaction = %entry.transaction_id, "credits adjusted by the operator");
    let audit = shared::audit::Entry::new(&tenant, &ctx, "credits.adjusted", &entry.transaction_id)
        .created(serde_json::json!({
            "type": entry.kind,
            "credits": entry.credits,
            "balance_after": entry.balance_after,
            "reason": reason,
        }));
    shared::audit::record_or_log(p.store.as_ref(), p.ids.as_ref(), p.clock.as_ref(), audit).await;
    Ok((StatusCode::CREATED, Json(entry)))
}

/// The packages on sale now.
#[derive(Serialize, ToSchema)]
struct PackageList {
    packages: Vec<Package>,
}

#[utoipa::path(
    get,
    path = "/api/credits/packages",
    tag = "credits",
    security(("tenant_key" = [])),
    responses((status = 200, description = "The packages on sale now, smallest first", body = PackageList))
)]
async fn packages_on_sale(
    State(p): State<Arc<Platform>>,
    TenantAuth(_tenant): TenantAuth,
) -> Result<Json<PackageList>, ApiError> {
    let packages = packages::on_sale(p.store.as_ref(), p.clock.now()).await?;
    Ok(Json(PackageList { packages }))
}

#[utoipa::path(
    get,
    path = "/api/admin/credits/packages",
    tag = "admin",
    security(("admin_key" = [])),
    responses((status = 200, description = "Every package, on sale or not, newest first", body = PackageList))
)]
async fn all_packages(
    State(p): State<Arc<Platform>>,
    _admin: AdminAuth,
) -> Result<Json<PackageList>, ApiError> {
    let packages = packages::all(p.store.as_ref()).await?;
    Ok(Json(PackageList { packages }))
}

#[utoipa::path(
    post,
    path = "/api/admin/credits/packages",
    tag = "admin",
    security(("admin_key" = [])),
    request_body = NewPackage,
    responses(
        (status = 201, description = "The package, in the catalogue", body = Package),
        (status = 400, description = "A field out of range, named in `field`", body = ErrorBody)
    )
)]
async fn create_package(
    State(p): State<Arc<Platform>>,
    _admin: AdminAuth,
    ApiJson(body): ApiJson<NewPackage>,
) -> Result<(StatusCode, Json<Package>), ApiError> {
    let package = body
        .parse(p.ids.as_ref(), p.clock.now())
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    packages::create(p.store.as_ref(), &package).await?;
    tracing::info!(package = %package.package_id, credits = package.credits.0, amount = package.amount, "credit package created");
    Ok((StatusCode::CREATED, Json(package)))
}

/// `POST /api/credits/purchase`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PurchaseRequest {
    /// A package on sale (`GET /api/credits/packages`).
    package_id: String,
    /// A card collected by Stripe.js (`pm_…`) to charge at once; without it (and without
    /// `saved_card`) the client confirms the returned client secret with the Payment Element.
    #[serde(default)]
    payment_method: Option<String>,
    /// Charge the card saved with the subscription or for automatic top-up (one-click purchase).
    #[serde(default)]
    saved_card: bool,
}

#[utoipa::path(
    post,
    path = "/api/credits/purchase",
    tag = "credits",
    security(("tenant_key" = [])),
    request_body = PurchaseRequest,
    responses(
        (status = 201, description = "The purchase and its PaymentIntent; credits arrive with Stripe's `payment_intent.succeeded`", body = Started),
        (status = 400, description = "A malformed package id or payment method, or no saved card", body = ErrorBody),
        (status = 402, description = "The card was declined (Stripe's code in `stripe_code`); the purchase is recorded as failed", body = ErrorBody),
        (status = 404, description = "No such package", body = ErrorBody),
        (status = 409, description = "The package is not on sale now", body = ErrorBody),
        (status = 503, description = "Payments are not configured here, or Stripe is unreachable", body = ErrorBody)
    )
)]
async fn purchase(
    State(p): State<Arc<Platform>>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(body): ApiJson<PurchaseRequest>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let package =
        PackageId::parse(&body.package_id).map_err(|e| ApiError::invalid("package_id", e))?;
    let billing = Billing::new(p);
    let card = match (body.saved_card, body.payment_method) {
        (true, Some(_)) => {
            return Err(ApiError::invalid(
                "saved_card",
                "give either a payment_method or saved_card, not both",
            ));
        }
        (true, None) => Some(
            auto_top_up::saved_card(&billing, &tenant)
                .await?
                .ok_or_else(|| {
                    ApiError::invalid(
                        "saved_card",
                        "no card is saved: subscribe with a card or send a payment_method",
                    )
                })?,
        ),
        (false, card) => card,
    };
    let started = purchases::start(
        &billing,
        &tenant,
        &package,
        card.as_deref(),
        PurchaseSource::Manual,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(started)))
}

#[utoipa::path(
    get,
    path = "/api/credits/purchases/{purchase_id}",
    tag = "credits",
    security(("tenant_key" = [])),
    params(("purchase_id" = String, Path, description = "From `POST /api/credits/purchase`")),
    responses(
        (status = 200, description = "The purchase: pending until Stripe reports the payment", body = Purchase),
        (status = 400, description = "Not a purchase id", body = ErrorBody),
        (status = 404, description = "No such purchase of this tenant", body = ErrorBody)
    )
)]
async fn purchase_status(
    State(p): State<Arc<Platform>>,
    TenantAuth(tenant): TenantAuth,
    Path(purchase_id): Path<String>,
) -> Result<Json<Purchase>, ApiError> {
    let id = PurchaseId::parse(&purchase_id).map_err(|e| ApiError::invalid("purchase_id", e))?;
    purchases::get(p.store.as_ref(), &tenant, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("purchase not found".into()))
}

#[utoipa::path(
    put,
    path = "/api/credits/auto-top-up",
    tag = "credits",
    security(("tenant_key" = [])),
    request_body = AutoTopUpRequest,
    responses(
        (status = 200, description = "The settings saved (the failure count starts again)", body = AutoTopUp),
        (status = 400, description = "A field out of range, or no saved card for off-session payments", body = ErrorBody),
        (status = 404, description = "No such package", body = ErrorBody),
        (status = 409, description = "The package is not on sale now", body = ErrorBody),
        (status = 503, description = "Payments are not configured here", body = ErrorBody)
    )
)]
async fn set_auto_top_up(
    State(p): State<Arc<Platform>>,
    TenantAuth(tenant): TenantAuth,
    ctx: shared::audit::Context,
    ApiJson(body): ApiJson<AutoTopUpRequest>,
) -> Result<Json<AutoTopUp>, ApiError> {
    let billing = Billing::new(p);
    Ok(Json(
        auto_top_up::save(&billing, &tenant, body, &ctx).await?,
    ))
}
