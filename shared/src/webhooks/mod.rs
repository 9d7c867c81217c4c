//! Outbound webhooks: tenants register https endpoints for domain events (limit reached, credits low,
//! feedback, call completed, training done …) and receive them signed the Standard Webhooks way.
//!
//! Nothing is sent on the request path. [`emit`] puts the event on the webhook queue; the delivery
//! worker fans it out to the tenant's subscribed endpoints (one [`Delivery`] each, keyed so a redelivered
//! event makes no second delivery), then attempts each one through the SSRF guard, retrying with backoff
//! under the same `webhook-id` for up to three days. Every attempt is logged on the delivery.
//!
//! - `endpoints`: create, list, change, delete, rotate the secret (records and rules);
//! - `events`: the event types and their payloads, and [`emit`];
//! - `secret` / `signing`: `whsec_` secrets sealed at rest, Standard Webhooks signatures;
//! - `target`: which URLs may receive webhooks (the crawler's SSRF guard);
//! - `backoff`: when a failed delivery is tried again;
//! - `delivery`: the worker's side: fan-out, attempts, the delivery log, replay, disabling.

pub mod backoff;
pub mod delivery;
pub mod endpoints;
pub mod events;
pub mod secret;
pub mod signing;
pub mod target;

pub use delivery::{Attempt, Deliverer, Delivery, DeliveryStatus, Disposition};
pub use endpoints::{Endpoint, EndpointPatch, NewEndpoint};
pub use events::{Event, EventType, Message, emit, emit_to};

use crate::store::StoreError;

/// How many deliveries a tenant may have in flight to one endpoint at once (the local worker's bound;
/// on Lambda each invocation handles one batch and the queue's concurrency caps the rest).
pub const MAX_IN_FLIGHT_PER_ENDPOINT: usize = 4;
/// The most endpoints one tenant may register.
pub const MAX_ENDPOINTS_PER_TENANT: usize = 20;

/// Why a webhook operation failed. Callers match on it; the HTTP edge maps it once.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook not found")]
    NotFound,
    #[error("delivery not found")]
    DeliveryNotFound,
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("at most {MAX_ENDPOINTS_PER_TENANT} webhooks per tenant")]
    TooMany,
    /// Webhooks need `KOTOBA_WEBHOOK_KEY` (deployed) to seal secrets.
    #[error("webhooks are not configured on this deployment")]
    NotConfigured,
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error("webhook queue: {0}")]
    Queue(#[from] crate::queue::QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WebhookError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}
