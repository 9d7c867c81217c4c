//! The events tenants can subscribe to, their payloads, and [`emit`]: one queue message, never a
//! delivery on the caller's path.
//!
//! A payload is `{type, timestamp, data}`; `data` carries ids the tenant can look up through the API
//! (site, job, call, message ids) and never secrets or another tenant's data.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::WebhookError;
use crate::clock::rfc3339;
use crate::ids::{EventId, IdGenerator, TenantId};
use crate::platform::Platform;
use crate::queue::JobQueue;

/// An event type. `ping` is only ever sent by `POST /api/webhooks/{id}/test`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum EventType {
    #[serde(rename = "limit.reached")]
    LimitReached,
    #[serde(rename = "credits.low")]
    CreditsLow,
    #[serde(rename = "credits.purchased")]
    CreditsPurchased,
    #[serde(rename = "feedback.created")]
    FeedbackCreated,
    #[serde(rename = "chat.error")]
    ChatError,
    #[serde(rename = "call.completed")]
    CallCompleted,
    #[serde(rename = "training.succeeded")]
    TrainingSucceeded,
    #[serde(rename = "training.failed")]
    TrainingFailed,
    #[serde(rename = "subscription.updated")]
    SubscriptionUpdated,
    #[serde(rename = "ping")]
    Ping,
}

impl EventType {
    /// The types an endpoint can subscribe to.
    pub const SUBSCRIBABLE: [EventType; 9] = [
        EventType::LimitReached,
        EventType::CreditsLow,
        EventType::CreditsPurchased,
        EventType::FeedbackCreated,
        EventType::ChatError,
        EventType::CallCompleted,
        EventType::TrainingSucceeded,
        EventType::TrainingFailed,
        EventType::SubscriptionUpdated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::LimitReached => "limit.reached",
            EventType::CreditsLow => "credits.low",
            EventType::CreditsPurchased => "credits.purchased",
            EventType::FeedbackCreated => "feedback.created",
            EventType::ChatError => "chat.error",
            EventType::CallCompleted => "call.completed",
            EventType::TrainingSucceeded => "training.succeeded",
            EventType::TrainingFailed => "training.failed",
            EventType::SubscriptionUpdated => "subscription.updated",
            EventType::Ping => "ping",
        }
    }

    /// A subscribable type by name.
    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::SUBSCRIBABLE
            .into_iter()
            .find(|t| t.as_str() == raw)
            .ok_or_else(|| {
                format!(
                    "unknown event type {raw:?}; expected one of {}",
                    Self::SUBSCRIBABLE.map(EventType::as_str).join(", ")
                )
            })
    }
}

/// One domain event of one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// RFC 3339.
    pub timestamp: String,
    pub data: Value,
}

impl Event {
    pub fn new(event_type: EventType, at: OffsetDateTime, data: Value) -> Self {
        Self {
            event_type,
            timestamp: rfc3339(at),
            data,
        }
    }

    /// A plan limit was hit (`limit`: `chat_messages`, `sites`, `call_minutes` …).
    pub fn limit_reached(
        at: OffsetDateTime,
        limit: &str,
        plan: &str,
        site_id: Option<&str>,
    ) -> Self {
        Self::new(
            EventType::LimitReached,
            at,
            json!({"limit": limit, "plan": plan, "site_id": site_id}),
        )
    }

    /// The credit balance fell below the tenant's threshold (from the credits ledger).
    pub fn credits_low(at: OffsetDateTime, balance: i64, threshold: i64) -> Self {
        Self::new(
            EventType::CreditsLow,
            at,
            json!({"balance": balance, "threshold": threshold}),
        )
    }

    /// A purchase was credited (by Stripe's `payment_intent.succeeded`).
    pub fn credits_purchased(
        at: OffsetDateTime,
        purchase_id: &str,
        credits: i64,
        balance_after: i64,
    ) -> Self {
        Self::new(
            EventType::CreditsPurchased,
            at,
            json!({"purchase_id": purchase_id, "credits": credits, "balance_after": balance_after}),
        )
    }

    pub fn feedback_created(
        at: OffsetDateTime,
        site_id: &str,
        session_id: &str,
        message_id: &str,
        rating: &str,
        comment: Option<&str>,
    ) -> Self {
        Self::new(
            EventType::FeedbackCreated,
            at,
            json!({"site_id": site_id, "session_id": session_id, "message_id": message_id,
                   "rating": rating, "comment": comment}),
        )
    }

    /// A chat request failed on our side or the model's (the client got a 5xx or a refusal).
    pub fn chat_error(
        at: OffsetDateTime,
        site_id: Option<&str>,
        code: &str,
        message: &str,
        request_id: Option<&str>,
    ) -> Self {
        Self::new(
            EventType::ChatError,
            at,
            json!({"site_id": site_id, "code": code, "message": message, "request_id": request_id}),
        )
    }

    pub fn call_completed(
        at: OffsetDateTime,
        call_sid: &str,
        from: &str,
        to: &str,
        duration_seconds: u64,
        summary: Option<&str>,
        cost_usd: &str,
    ) -> Self {
        Self::new(
            EventType::CallCompleted,
            at,
            json!({"call_sid": call_sid, "from": from, "to": to, "duration_seconds": duration_seconds,
                   "summary": summary, "cost_usd": cost_usd}),
        )
    }

    pub fn training_succeeded(
        at: OffsetDateTime,
        job_id: &str,
        site_id: &str,
        data: Value,
    ) -> Self {
        let mut body = json!({"job_id": job_id, "site_id": site_id});
        merge(&mut body, data);
        Self::new(EventType::TrainingSucceeded, at, body)
    }

    pub fn training_failed(at: OffsetDateTime, job_id: &str, site_id: &str, error: &str) -> Self {
        Self::new(
            EventType::TrainingFailed,
            at,
            json!({"job_id": job_id, "site_id": site_id, "error": error}),
        )
    }

    pub fn subscription_updated(
        at: OffsetDateTime,
        plan: &str,
        status: &str,
        previous_status: Option<&str>,
    ) -> Self {
        Self::new(
            EventType::SubscriptionUpdated,
            at,
            json!({"plan": plan, "status": status, "previous_status": previous_status}),
        )
    }

    pub fn ping(at: OffsetDateTime, webhook_id: &str) -> Self {
        Self::new(EventType::Ping, at, json!({"webhook_id": webhook_id}))
    }
}

/// Micro-USD as a plain decimal string of dollars (`"0.310000"`), exact.
pub fn usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        for (k, v) in extra {
            into.entry(k).or_insert(v);
        }
    }
}

/// What travels on the webhook queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// An event to fan out to the tenant's subscribed endpoints (or, with `only`, to one endpoint:
    /// the test ping).
    Event {
        tenant_id: TenantId,
        event_id: EventId,
        event: Event,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        only: Option<crate::ids::WebhookId>,
    },
    /// One delivery to attempt when it is due.
    Attempt {
        tenant_id: TenantId,
        webhook_id: crate::ids::WebhookId,
        delivery_id: crate::ids::DeliveryId,
    },
    /// An automatic credit top-up to pay (`credits::auto_top_up`): it rides this queue because its
    /// worker is the one function besides billing that holds the Stripe key, so the functions that
    /// settle usage (chat, training, calls) never do.
    AutoTopUp {
        tenant_id: TenantId,
        /// The claim this message may act on (a redelivered message finds it taken and does nothing).
        claim: String,
    },
}

impl Message {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("messages serialise")
    }
}

/// Queues an event for the tenant's webhooks. The only cost on the caller's path is one queue send.
pub async fn emit_to(
    queue: &dyn JobQueue,
    ids: &dyn IdGenerator,
    tenant: &TenantId,
    event: Event,
) -> Result<EventId, WebhookError> {
    let event_id = EventId::generate(ids);
    let message = Message::Event {
        tenant_id: tenant.clone(),
        event_id: event_id.clone(),
        event,
        only: None,
    };
    queue.send(&message.to_body()).await?;
    Ok(event_id)
}

/// [`emit_to`] on the platform's webhook queue, for callers whose own work must not fail because an
/// event could not be queued: a failure is logged, not returned.
pub async fn emit(platform: &Platform, tenant: &TenantId, event: Event) {
    let event_type = event.event_type.as_str();
    if let Err(e) = emit_to(
        platform.webhook_queue.as_ref(),
        platform.ids.as_ref(),
        tenant,
        event,
    )
    .await
    {
        tracing::warn!(tenant_id = %tenant, event_type, error = %e, "queueing a webhook event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_read_and_write_their_dotted_names() {
        for t in EventType::SUBSCRIBABLE {
            assert_eq!(EventType::parse(t.as_str()), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert!(EventType::parse("ping").is_err());
        assert_eq!(usd(310_000), "0.310000");
        assert_eq!(usd(-1_500_000), "-1.500000");
        assert!(
            EventType::parse("chat.errors")
                .unwrap_err()
                .contains("chat.error")
        );
    }

    #[test]
    fn payloads_have_type_timestamp_and_data() {
        let e = Event::call_completed(
            OffsetDateTime::UNIX_EPOCH,
            "CA1",
            "+8190",
            "+8150",
            42,
            Some("booked a room"),
            "0.120000",
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "call.completed");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(v["data"]["duration_seconds"], 42);
        assert_eq!(v["data"]["summary"], "booked a room");
        let m = Message::Event {
            tenant_id: TenantId::parse("ten_a").unwrap(),
            event_id: EventId::parse("evt_1").unwrap(),
            event: e,
            only: None,
        };
        assert_eq!(serde_json::from_str::<Message>(&m.to_body()).unwrap(), m);
    }
}
