//! Usage log entries: one per chat request (answered or failed), with the price it was charged at, so
//! billing can be audited; visitor feedback is stored on the entry it rates.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{SiteId, TenantId};
use crate::money::MicroUsd;
use crate::store::{Condition, Index, Item, ItemStore, Key, StoreError, Update, keys};

/// Log entries are kept for 90 days.
pub const LOG_TTL_SECS: i64 = 90 * 24 * 3600;

pub use crate::ids::MessageId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
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
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageLog {
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    pub site_id: SiteId,
    pub session_id: String,
    pub channel: Channel,
    pub model: String,
    pub outcome: Outcome,
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
    pub created_at: String,
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
    let (pk, sk) = keys::usage_log_listing(&log.tenant_id, &log.created_at, &log.message_id);
    let item = Item::from_record(key(&log.message_id), log)?
        .with_index(Index::ByTenant, pk, sk)
        .expiring_at(now_unix + LOG_TTL_SECS);
    match store.put(item, Condition::IfAbsent).await {
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e),
    }
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
    session: &str,
    message: &MessageId,
    feedback: Feedback,
) -> Result<(), FeedbackError> {
    let log = read(store, message).await?.ok_or(FeedbackError::NotFound)?;
    if &log.site_id != site || log.session_id != session {
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
