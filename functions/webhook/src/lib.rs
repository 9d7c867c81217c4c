//! `POST /api/webhooks/stripe`: Stripe's signed events. The body is read as raw bytes and verified
//! before anything parses it; each event is applied once (see `shared::billing::webhook`).
//!
//! Answers: 200 `{received, outcome}` for applied, duplicate, stale, ignored and unmatched events (Stripe
//! must stop retrying those); 400 for a bad signature, a stale timestamp or a malformed event, with
//! nothing written; 409 while another delivery of the same event is being processed; 5xx when applying
//! failed, so Stripe retries.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use shared::Platform;
use shared::billing::events::StripeEvent;
use shared::billing::{Billing, WebhookOutcome};
use shared::http::ApiError;
use shared::http::openapi::{ErrorBody, SecuritySchemes};

/// Stripe's event bodies are small; anything larger is not Stripe.
const MAX_BODY_BYTES: usize = 512 * 1024;

/// The secrets this function's code reads (see `shared::secrets`).
pub const SECRETS: &[&str] = &["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"];

pub fn routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/webhooks/stripe", post(stripe_event))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Billing::new(platform))
}

pub fn app(platform: Arc<Platform>) -> Router {
    shared::http::finish(routes(platform))
}

/// This function's part of the OpenAPI document (assembled and served by the embed-script function).
#[derive(OpenApi)]
#[openapi(
    paths(stripe_event),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// The acknowledgement Stripe gets for an event it need not send again.
#[derive(Serialize, ToSchema)]
struct Received {
    received: bool,
    outcome: WebhookOutcome,
}

#[utoipa::path(
    post,
    path = "/api/webhooks/stripe",
    tag = "billing",
    security(("stripe_signature" = [])),
    request_body(
        content = StripeEvent,
        content_type = "application/json",
        description = "A Stripe event, verified on its raw bytes before it is parsed"
    ),
    responses(
        (status = 200, description = "Applied, or a duplicate, stale, ignored or unmatched event: Stripe stops retrying", body = Received),
        (status = 400, description = "A missing or bad signature, a stale timestamp, or a malformed event: nothing written", body = ErrorBody),
        (status = 409, description = "Another delivery of the same event is being applied; Stripe retries", body = ErrorBody),
        (status = 503, description = "The event could not be applied now (or no signing secret is configured); Stripe retries", body = ErrorBody)
    )
)]
async fn stripe_event(
    State(billing): State<Billing>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Received>, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = billing.receive_webhook(signature, &body).await?;
    Ok(Json(Received {
        received: true,
        outcome,
    }))
}
