//! `/api/webhooks*`: a tenant's outbound webhook endpoints, their delivery logs, replay and test pings.
//! Every change is written to the audit log.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use shared::audit::{self, Entry};
use shared::http::openapi::ErrorBody;
use shared::http::{ApiError, ApiJson, TenantAuth};
use shared::ids::{DeliveryId, TenantId, WebhookId};
use shared::webhooks::{self, Delivery, Endpoint, EndpointPatch, NewEndpoint, delivery, endpoints};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/webhooks", post(create_webhook).get(list_webhooks))
        .route(
            "/api/webhooks/{webhook_id}",
            axum::routing::patch(patch_webhook).delete(delete_webhook),
        )
        .route(
            "/api/webhooks/{webhook_id}/rotate-secret",
            post(rotate_secret),
        )
        .route("/api/webhooks/{webhook_id}/test", post(test_webhook))
        .route(
            "/api/webhooks/{webhook_id}/deliveries",
            get(list_deliveries),
        )
        .route(
            "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
            post(replay_delivery),
        )
}

fn webhook_id(raw: &str) -> Result<WebhookId, ApiError> {
    WebhookId::parse(raw).map_err(|_| ApiError::NotFound("webhook not found".into()))
}

fn ports<'a>(p: &'a AppState, guard: &'a webhooks::target::TargetGuard) -> endpoints::Ports<'a> {
    endpoints::Ports {
        store: p.store.as_ref(),
        ids: p.ids.as_ref(),
        clock: p.clock.as_ref(),
        key: p.webhook_key.as_ref(),
        guard,
    }
}

/// What the audit log keeps of an endpoint (never a secret).
fn audited(e: &Endpoint) -> serde_json::Value {
    json!({"url": e.url, "events": e.events, "description": e.description, "enabled": e.enabled})
}

async fn audit(p: &AppState, tenant: &TenantId, entry: Entry) {
    audit::record_or_log(p.store.as_ref(), p.ids.as_ref(), p.clock.as_ref(), entry).await;
    let _ = tenant;
}

/// A new endpoint with its signing secret (shown only now).
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedWebhook {
    webhook_id: WebhookId,
    /// `whsec_…`: configure it in your Standard Webhooks verifier. Shown once.
    secret: String,
    webhook: Endpoint,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookList {
    webhooks: Vec<Endpoint>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RotatedSecret {
    webhook_id: WebhookId,
    /// The new secret, shown once; the previous one keeps signing until `previous_secret_expires_at`.
    secret: String,
    previous_secret_expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct QueuedDelivery {
    delivery_id: DeliveryId,
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryList {
    deliveries: Vec<Delivery>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Page {
    cursor: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/webhooks",
    tag = "webhooks",
    security(("tenant_key" = [])),
    request_body = NewEndpoint,
    responses(
        (status = 201, description = "The endpoint and its secret (shown once)", body = CreatedWebhook),
        (status = 400, description = "Bad URL (not https, or refused by the SSRF guard) or event type", body = ErrorBody),
        (status = 409, description = "Too many endpoints", body = ErrorBody)
    )
)]
pub(crate) async fn create_webhook(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: audit::Context,
    ApiJson(body): ApiJson<NewEndpoint>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let guard = p.webhook_guard();
    let (record, secret) = endpoints::create(&ports(&p, &guard), &tenant, body).await?;
    let view = record.view();
    audit(
        &p,
        &tenant,
        Entry::new(&tenant, &ctx, "webhook.created", &view.webhook_id).created(audited(&view)),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook_id: view.webhook_id.clone(),
            secret: secret.expose(),
            webhook: view,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/webhooks",
    tag = "webhooks",
    security(("tenant_key" = [])),
    responses((status = 200, description = "The tenant's endpoints", body = WebhookList))
)]
pub(crate) async fn list_webhooks(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = endpoints::list(p.store.as_ref(), &tenant)
        .await?
        .iter()
        .map(endpoints::EndpointRecord::view)
        .collect();
    Ok(Json(WebhookList { webhooks }))
}

#[utoipa::path(
    patch,
    path = "/api/webhooks/{webhook_id}",
    tag = "webhooks",
    security(("tenant_key" = [])),
    params(("webhook_id" = String, Path, description = "The endpoint (`wh_…`)")),
    request_body = EndpointPatch,
    responses(
        (status = 200, description = "The changed endpoint", body = Endpoint),
        (status = 400, description = "Bad URL or event type", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody)
    )
)]
pub(crate) async fn patch_webhook(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: audit::Context,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<EndpointPatch>,
) -> Result<Json<Endpoint>, ApiError> {
    let id = webhook_id(&raw)?;
    let guard = p.webhook_guard();
    let (before, after) = endpoints::patch(&ports(&p, &guard), &tenant, &id, body).await?;
    let (before, after) = (before.view(), after.view());
    audit(
        &p,
        &tenant,
        Entry::new(&tenant, &ctx, "webhook.updated", &id).change(audited(&before), audited(&after)),
    )
    .await;
    Ok(Json(after))
}

#[utoipa::path(
    delete,
    path = "/api/webhooks/{webhook_id}",
    tag = "webhooks",
    security(("tenant_key" = [])),
    params(("webhook_id" = String, Path, description = "The endpoint (`wh_…`)")),
    responses(
        (status = 204, description = "Deleted; pending deliveries to it are dropped"),
        (status = 404, description = "No such endpoint", body = ErrorBody)
    )
)]
pub(crate) async fn delete_webhook(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: audit::Context,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = webhook_id(&raw)?;
    let record = endpoints::delete(p.store.as_ref(), &tenant, &id).await?;
    let mut entry = Entry::new(&tenant, &ctx, "webhook.deleted", &id);
    entry.before = Some(audited(&record.view()));
    audit(&p, &tenant, entry).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/webhooks/{webhook_id}/rotate-secret",
    tag = "webhooks",
    security(("tenant_key" = [])),
    params(("webhook_id" = String, Path, description = "The endpoint (`wh_…`)")),
    responses(
        (status = 200, description = "The new secret (shown once); the old one signs too for 24 hours", body = RotatedSecret),
        (status = 404, description = "No such endpoint", body = ErrorBody)
    )
)]
pub(crate) async fn rotate_secret(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: audit::Context,
    Path(raw): Path<String>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let id = webhook_id(&raw)?;
    let guard = p.webhook_guard();
    let (record, secret) = endpoints::rotate_secret(&ports(&p, &guard), &tenant, &id).await?;
    audit(
        &p,
        &tenant,
        Entry::new(&tenant, &ctx, "webhook.secret_rotated", &id),
    )
    .await;
    Ok(Json(RotatedSecret {
        webhook_id: id,
        secret: secret.expose(),
        previous_secret_expires_at: record.view().previous_secret_expires_at,
    }))
}

#[utoipa::path(
    post,
    path = "/api/webhooks/{webhook_id}/test",
    tag = "webhooks",
    security(("tenant_key" = [])),
    params(("webhook_id" = String, Path, description = "The endpoint (`wh_…`)")),
    responses(
        (status = 202, description = "A `ping` is queued; its attempts appear in the delivery log", body = QueuedDelivery),
        (status = 404, description = "No such endpoint", body = ErrorBody)
    )
)]
pub(crate) async fn test_webhook(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
) -> Result<(StatusCode, Json<QueuedDelivery>), ApiError> {
    let id = webhook_id(&raw)?;
    let delivery_id = delivery::ping(
        p.store.as_ref(),
        p.webhook_queue.as_ref(),
        p.ids.as_ref(),
        p.clock.as_ref(),
        &tenant,
        &id,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(QueuedDelivery {
            delivery_id,
            status: "queued",
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/webhooks/{webhook_id}/deliveries",
    tag = "webhooks",
    security(("tenant_key" = [])),
    params(
        ("webhook_id" = String, Path, description = "The endpoint (`wh_…`)"),
        ("cursor" = Option<String>, Query, description = "From the previous page's `next_cursor`")
    ),
    responses(
        (status = 200, description = "Deliveries with every attempt, newest first (kept 30 days)", body = DeliveryList),
        (status = 404, description = "No such endpoint", body = ErrorBody)
    )
)]
pub(crate) async fn list_deliveries(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<DeliveryList>, ApiError> {
    let id = webhook_id(&raw)?;
    let (deliveries, next_cursor) =
        delivery::list(p.store.as_ref(), &tenant, &id, page.cursor).await?;
    Ok(Json(DeliveryList {
        deliveries,
        next_cursor,
    }))
}

#[utoipa::path(
    post,
    path = "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
    tag = "webhooks",
    security(("tenant_key" = [])),
    params(
        ("webhook_id" = String, Path, description = "The endpoint (`wh_…`)"),
        ("delivery_id" = String, Path, description = "The delivery (`msg_…`)")
    ),
    responses(
        (status = 202, description = "The stored payload is queued again, with the same webhook-id", body = Delivery),
        (status = 404, description = "No such endpoint or delivery", body = ErrorBody)
    )
)]
pub(crate) async fn replay_delivery(
    State(p): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ctx: audit::Context,
    Path((raw, raw_delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    let id = webhook_id(&raw)?;
    let delivery_id = DeliveryId::parse(&raw_delivery)
        .map_err(|_| ApiError::NotFound("delivery not found".into()))?;
    let d = delivery::replay(
        p.store.as_ref(),
        p.webhook_queue.as_ref(),
        p.clock.as_ref(),
        &tenant,
        &id,
        &delivery_id,
    )
    .await?;
    audit(
        &p,
        &tenant,
        Entry::new(&tenant, &ctx, "webhook.delivery_replayed", &delivery_id),
    )
    .await;
    Ok((StatusCode::ACCEPTED, Json(d)))
}
