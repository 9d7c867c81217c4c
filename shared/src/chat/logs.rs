//! Usage log entries: one per chat request (answered or failed), with the price it was charged at, so
//! billing can be audited; visitor feedback is stored on the entry it rates.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::clock::rfc3339;
use crate::ids::{SessionId, SiteId, TenantId};
use crate::money::MicroUsd;
use crate::store::{Condition, Index, Item, ItemStore, Key, StoreError, Update, keys};

/// Log entries are kept for 90 days.
pub const LOG_TTL_SECS: i64 = 90 * 24 * 3600;

pub use crate::ids::MessageId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerOutcome {
    Answered,
    /// The client went away mid-answer; charged for what was generated.
    Cancelled,
    Failed,
}

/// Where a question came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The tenant's own API calls (an API key).
    Api,
    /// The public widget.
    Embed,
}

/// The prices a request was charged at (per 1,000 tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PriceSnapshot {
    pub chat_input_per_1k: MicroUsd,
    pub chat_output_per_1k: MicroUsd,
    pub embedding_per_1k: MicroUsd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    Up,
    Down,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub rating: Rating,
    pub comment: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageLog {
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    pub site_id: SiteId,
    /// Read back leniently (`store::stored`): a row keeps the session it was answered in.
    #[serde(deserialize_with = "crate::store::stored::lenient")]
    pub session_id: SessionId,
    pub channel: Channel,
    pub model: String,
    /// The model that embedded the question, when the site's index has vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_model: Option<String>,
    pub outcome: AnswerOutcome,
    pub chat_input_tokens: u64,
    pub chat_output_tokens: u64,
    pub embedding_tokens: u64,
    pub latency_ms: u64,
    pub cost: MicroUsd,
    pub prices: PriceSnapshot,
    /// SHA-256 of the visitor's IP (first 16 hex digits): enough to spot abuse, not to identify.
    pub ip_hash: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub error: Option<String>,
    /// Stored and shown as RFC 3339, exactly as `clock::rfc3339` writes it.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default)]
    pub feedback: Option<Feedback>,
}

pub fn hash_ip(ip: &str) -> String {
    hex::encode(&Sha256::digest(format!("kotoba-visitor:{ip}").as_bytes())[..8])
}

fn key(message: &MessageId) -> Key {
    keys::usage_log(message)
}

/// Writes an entry (once: a retried write of the same message cannot duplicate it).
pub async fn write(store: &dyn ItemStore, log: &UsageLog, now_unix: i64) -> Result<(), StoreError> {
    match store.put(item(log, now_unix)?, Condition::IfAbsent).await {
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The stored item of an entry (listed by tenant, kept [`LOG_TTL_SECS`]).
pub fn item(log: &UsageLog, now_unix: i64) -> Result<Item, StoreError> {
    let (pk, sk) =
        keys::usage_log_listing(&log.tenant_id, rfc3339(log.created_at), &log.message_id);
    Ok(Item::from_record(key(&log.message_id), log)?
        .with_index(Index::ByTenant, pk, sk)
        .expiring_at(now_unix + LOG_TTL_SECS))
}

pub async fn read(
    store: &dyn ItemStore,
    message: &MessageId,
) -> Result<Option<UsageLog>, StoreError> {
    match store.get(&key(message)).await? {
        Some(item) => Ok(Some(item.to_record()?)),
        None => Ok(None),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// No such message in this site and session.
    #[error("message not found")]
    NotFound,
    #[error("site not found")]
    SiteNotFound,
    /// The site is not embedded, or not on the page's origin.
    #[error("this origin is not allowed to use the site's assistant")]
    OriginNotAllowed,
    #[error("{0}")]
    InvalidMessageId(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores feedback on a message, only from the site and session it was answered in.
pub async fn record_feedback(
    store: &dyn ItemStore,
    site: &SiteId,
    session: &SessionId,
    message: &MessageId,
    feedback: Feedback,
) -> Result<(), FeedbackError> {
    let log = read(store, message).await?.ok_or(FeedbackError::NotFound)?;
    if &log.site_id != site || &log.session_id != session {
        return Err(FeedbackError::NotFound);
    }
    let value = serde_json::to_value(&feedback).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let update = Update::new(key(message))
        .set("feedback", value)
        .when(Condition::AttributeEquals(
            "session_id".into(),
            serde_json::Value::String(session.to_string()),
        ));
    match store.update(update).await {
        Ok(_) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(FeedbackError::NotFound),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    /// A usage log row as stored before timestamps and sessions were typed: nanosecond and millisecond
    /// precision, as `clock::rfc3339` writes the system clock's time.
    fn stored_row(session: &str) -> serde_json::Value {
        json!({
            "message_id": "msg_0123456789abcdefghjkmnpqrs", "tenant_id": "ten_1", "site_id": "site_1",
            "session_id": session, "channel": "embed", "model": "gpt-4o-mini", "outcome": "answered",
            "chat_input_tokens": 2000, "chat_output_tokens": 1000, "embedding_tokens": 500,
            "latency_ms": 42, "cost": 910,
            "prices": {"chat_input_per_1k": 150, "chat_output_per_1k": 600, "embedding_per_1k": 20},
            "ip_hash": "0011223344556677", "user_agent": "Mozilla/5.0", "request_id": "req-1",
            "error": null, "created_at": "2026-05-01T09:00:00.123456789Z",
            "feedback": {"rating": "down", "comment": "遅い", "at": "2026-05-01T09:05:30.5Z"}
        })
    }

    #[test]
    fn a_stored_row_reads_typed_and_writes_back_unchanged() {
        let row = stored_row("sess_0123456789abcdefghjkmnpqrs");
        let log: UsageLog = serde_json::from_value(row.clone()).unwrap();
        assert_eq!(log.session_id.as_str(), "sess_0123456789abcdefghjkmnpqrs");
        assert_eq!(log.created_at, datetime!(2026-05-01 09:00:00.123456789 UTC));
        assert_eq!(
            log.feedback.as_ref().unwrap().at,
            datetime!(2026-05-01 09:05:30.5 UTC)
        );
        assert_eq!(serde_json::to_value(&log).unwrap(), row);
        // The listing's sort key is the same text as before.
        assert_eq!(
            keys::usage_log_listing(&log.tenant_id, rfc3339(log.created_at), &log.message_id).1,
            "LOG#2026-05-01T09:00:00.123456789Z#msg_0123456789abcdefghjkmnpqrs"
        );
    }

    #[test]
    fn a_row_whose_session_no_longer_parses_still_reads() {
        let row = stored_row("sess_Written-Under-An-Older-Rule");
        let log: UsageLog = serde_json::from_value(row.clone()).unwrap();
        assert!(SessionId::parse(log.session_id.as_str()).is_err());
        assert_eq!(serde_json::to_value(&log).unwrap(), row);
    }

    #[test]
    fn a_row_with_a_timestamp_that_is_not_rfc3339_is_refused() {
        let mut row = stored_row("sess_1");
        row["created_at"] = json!("yesterday");
        assert!(serde_json::from_value::<UsageLog>(row).is_err());
    }
}
