//! Call logs: one per call, written once.
//!
//! A log lives at `CALL#<call_sid>`, so a retried write (or a second bridge task finishing the same call)
//! is a put-if-absent that cannot make a duplicate; it is listed to its tenant, newest first, through the
//! by-tenant index. Every read on behalf of a tenant checks ownership: another tenant's call is not found.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::VoiceError;
use super::phone::PhoneNumber;
use super::pricing::RealtimeUsage;
use super::transcript::TranscriptEntry;
use crate::clock::rfc3339;
use crate::ids::{TenantId, string_newtype};
use crate::money::MicroUsd;
use crate::store::{Condition, Index, Item, ItemStore, Key, Query, StoreError, keys};

/// How long call logs are kept.
const CALL_LOG_RETENTION_SECS: i64 = 400 * 24 * 3600;

string_newtype!(
    /// A Twilio call sid: `CA` and 32 hex digits.
    pub CallSid
);

impl CallSid {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = raw.len() == 34
            && raw.starts_with("CA")
            && raw[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(format!(
                "{:?} is not a call sid (CA and 32 hex digits)",
                raw.chars().take(64).collect::<String>()
            ))
        }
    }
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Twilio sent `stop` (the caller or the business hung up).
    Stopped,
    /// The media socket closed without `stop`.
    CallerDisconnected,
    /// The model's socket closed or failed.
    ModelDisconnected,
    /// The model could not be reached at all.
    ModelUnavailable,
    /// The call reached its maximum length (the plan's remaining minutes or the deployment's cap).
    MaxLength,
    /// The bridge was shutting down and the drain deadline passed.
    Shutdown,
    /// The bridge failed on this call (a bug, logged as an error): the call ended, the others went on.
    BridgeError,
}

/// What the bridge measured on one call (also logged as the call's metrics line).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallMetrics {
    /// From Twilio's `start` to the first greeting audio sent to the caller.
    pub first_audio_ms: Option<u64>,
    /// Time inside the bridge per caller frame (Twilio in → model out), microseconds.
    pub inbound_p50_us: Option<u64>,
    pub inbound_p99_us: Option<u64>,
    /// Time inside the bridge per model audio delta (model in → Twilio out), microseconds.
    pub outbound_p50_us: Option<u64>,
    pub outbound_p99_us: Option<u64>,
    pub frames_in: u64,
    pub frames_out: u64,
    pub barge_ins: u32,
    /// From `speech_started` to `clear` written, microseconds (worst barge-in).
    pub clear_latency_us_max: Option<u64>,
    /// The most audio a truncation can be off by: the unacknowledged chunk playing when the caller spoke.
    pub truncation_error_ms_max: Option<u64>,
}

/// One call, as stored and (through [`CallLog::api_view`]) shown to its tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallLog {
    pub call_sid: CallSid,
    pub tenant_id: TenantId,
    pub from: String,
    #[serde(deserialize_with = "crate::store::stored::lenient")]
    pub to: PhoneNumber,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ended_at: OffsetDateTime,
    pub duration_seconds: u64,
    pub end_reason: EndReason,
    pub transcript: Vec<TranscriptEntry>,
    pub summary: String,
    /// `model` when the chat model wrote the summary, `extractive` otherwise.
    pub summary_source: String,
    pub model: String,
    pub usage: RealtimeUsage,
    pub cost_micros: MicroUsd,
    pub metrics: CallMetrics,
}

/// The contract's call object: everything stored, with the cost in dollars.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CallLogView {
    #[serde(flatten)]
    pub log: CallLog,
    pub cost_usd: f64,
}

impl CallLog {
    /// The contract's view: everything stored, with the cost in dollars.
    pub fn api_view(&self) -> CallLogView {
        CallLogView {
            log: self.clone(),
            cost_usd: self.cost_micros.as_dollars(),
        }
    }
}

fn call_key(call: &CallSid) -> Key {
    keys::call(call)
}

/// Claims the one media stream a call may have (its token is single-use): `Ok(false)` when a stream
/// for this call was already started, so a replayed token cannot open a second model session.
pub async fn claim_stream(
    store: &dyn ItemStore,
    call: &CallSid,
    now_unix: i64,
) -> Result<bool, StoreError> {
    // The claim only needs to outlive the token (minutes); a day is generous.
    let item = Item::new(keys::call_stream(call))
        .with("claimed_at", now_unix)
        .expiring_at(now_unix + 24 * 3600);
    match store.put(item, Condition::IfAbsent).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A call's log as stored: by call, listed under its tenant by start time.
pub fn item(log: &CallLog, now_unix: i64) -> Result<Item, StoreError> {
    let (pk, sk) = keys::call_listing(&log.tenant_id, rfc3339(log.started_at), &log.call_sid);
    Ok(Item::from_record(call_key(&log.call_sid), log)?
        .with_index(Index::ByTenant, pk, sk)
        .expiring_at(now_unix + CALL_LOG_RETENTION_SECS))
}

/// Writes a call's log once. `Ok(false)` when it was already written (a retry): nothing changes.
pub async fn save(store: &dyn ItemStore, log: &CallLog, now_unix: i64) -> Result<bool, StoreError> {
    match store.put(item(log, now_unix)?, Condition::IfAbsent).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The tenant's call, or `CallNotFound` (also when it is another tenant's).
pub async fn get(
    store: &dyn ItemStore,
    tenant: &TenantId,
    call: &CallSid,
) -> Result<CallLog, VoiceError> {
    match store.get(&call_key(call)).await? {
        Some(item) => {
            let log: CallLog = item.to_record()?;
            if &log.tenant_id == tenant {
                Ok(log)
            } else {
                Err(VoiceError::CallNotFound)
            }
        }
        None => Err(VoiceError::CallNotFound),
    }
}

/// A page of the tenant's calls, newest first.
pub async fn list(
    store: &dyn ItemStore,
    tenant: &TenantId,
    cursor: Option<String>,
    limit: usize,
) -> Result<(Vec<CallLog>, Option<String>), StoreError> {
    let page = store
        .query(
            Query::on(Index::ByTenant, keys::tenant_partition(tenant))
                .prefix(keys::prefix::CALL)
                .descending()
                .limit(limit.clamp(1, 100))
                .after(cursor),
        )
        .await?;
    let calls = crate::store::stored::readable::<CallLog>(&page.items);
    Ok((calls, page.next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_call_log_reads_typed_and_writes_back_unchanged() {
        let row = json!({
            "call_sid": "CA0123456789abcdef0123456789abcdef", "tenant_id": "ten_1",
            "from": "+14155550100", "to": "+81312345678",
            "started_at": "2026-05-01T09:00:00.123456789Z", "ended_at": "2026-05-01T09:01:02Z",
            "duration_seconds": 62, "end_reason": "stopped",
            "transcript": [{"offset_ms": 0, "speaker": "assistant", "text": "お電話ありがとうございます"}],
            "summary": "s", "summary_source": "extractive", "model": "gpt-realtime",
            "usage": serde_json::to_value(RealtimeUsage::default()).unwrap(),
            "cost_micros": 1234,
            "metrics": serde_json::to_value(CallMetrics::default()).unwrap(),
        });
        let log: CallLog = serde_json::from_value(row.clone()).unwrap();
        assert_eq!(
            log.started_at,
            time::macros::datetime!(2026-05-01 09:00:00.123456789 UTC)
        );
        assert_eq!(
            log.ended_at,
            time::macros::datetime!(2026-05-01 09:01:02 UTC)
        );
        assert_eq!(serde_json::to_value(&log).unwrap(), row);
        assert_eq!(
            serde_json::to_value(log.api_view()).unwrap()["started_at"],
            "2026-05-01T09:00:00.123456789Z"
        );
    }

    #[test]
    fn call_sids_are_ca_and_32_hex_digits() {
        assert!(CallSid::parse("CA0123456789abcdef0123456789abcdef").is_ok());
        for bad in [
            "",
            "CA",
            "CA0123456789abcdef0123456789abcde",
            "CA0123456789abcdef0123456789abcdefa",
            "XX0123456789abcdef0123456789abcdef",
            "CA0123456789abcdef0123456789abcdeg",
            "CA0123456789abcdef0123456789abcdé",
        ] {
            assert!(CallSid::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
