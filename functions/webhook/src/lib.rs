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
use serde_json::{Value, json};

use shared::Platform;
use shared::billing::Billing;
use shared::http::ApiError;

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

async fn stripe_event(
    State(billing): State<Billing>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = billing.receive_webhook(signature, &body).await?;
    Ok(Json(json!({ "received": true, "outcome": outcome })))
}
