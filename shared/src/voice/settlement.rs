//! The end of a call, whatever ended it: a summary (the chat model's, or the extractive one), then in
//! one transaction the call log (written once), the minutes settled against the reservation and the
//! cost on the tenant's usage counter. Store writes are retried: this runs after both sockets closed,
//! with nobody to answer.

use time::OffsetDateTime;

use super::calls::{self, CallMetrics};
use super::metering::{self, CallReservation};
use super::pricing::RealtimeUsage;
use super::summary::ChatSummarizer;
use super::token::StreamClaims;
use super::transcript::{self, TranscriptEntry};
use super::{CallLog, EndReason};
use crate::clock::Clock;
use crate::models::ModelPolicy;
use crate::store::retry::with_retries;
use crate::store::{Condition, ItemStore, StoreError, Write};
use crate::usage;

/// What the relay knows when a call ends.
#[derive(Debug, Clone)]
pub struct EndedCall {
    pub claims: StreamClaims,
    pub reservation: CallReservation,
    pub policy: ModelPolicy,
    pub started_at: OffsetDateTime,
    /// Measured by the bridge on its monotonic clock.
    pub duration_ms: u64,
    pub reason: EndReason,
    pub transcript: Vec<TranscriptEntry>,
    pub usage: RealtimeUsage,
    pub metrics: CallMetrics,
}

/// Settles an ended call and returns its log. Failures are logged, never returned: a call log is never
/// lost for want of a summary, nor minutes for want of a log.
pub async fn settle(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    summarizer: Option<&ChatSummarizer>,
    call: EndedCall,
) -> CallLog {
    let ended_at = clock.now();
    let seconds = metering::billable_seconds(call.duration_ms);
    let tenant = &call.claims.tenant_id;

    let lines = call.transcript;
    let (summary, summary_source) = match summarizer {
        Some(summarizer) if !lines.is_empty() => match summarizer.summarize(&lines).await {
            Ok(text) => (text, "model"),
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "chat summary failed; using the extractive one"
                );
                (transcript::extractive_summary(&lines), "extractive")
            }
        },
        _ => (transcript::extractive_summary(&lines), "extractive"),
    };
    let cost = call.usage.cost(&call.policy);
    let log = CallLog {
        call_sid: call.claims.call_sid.clone(),
        tenant_id: tenant.clone(),
        from: call.claims.from.clone(),
        to: call.claims.to.clone(),
        started_at: call.started_at,
        ended_at,
        duration_seconds: seconds,
        end_reason: call.reason,
        transcript: lines,
        summary,
        summary_source: summary_source.into(),
        model: call.policy.name.clone(),
        usage: call.usage,
        cost_micros: cost,
        metrics: call.metrics,
    };

    // One transaction: the log (written once), the minutes settled against the reservation, the cost
    // and the realtime model's share of the month, all on the month the call was admitted in. A retried
    // end finds the log written and changes nothing, so no minute or cost is counted twice.
    let breakdown = usage::Breakdown::new().model(usage::ModelSpend {
        model: &call.policy.name,
        input_tokens: log.usage.input_tokens(),
        output_tokens: log.usage.output_tokens(),
        seconds,
        cost,
    });
    let reserved = call.reservation.reserved_secs;
    let month = &call.reservation.key;
    let counters = [
        (usage::counters::CALL_SECONDS, seconds as i64 - reserved),
        (usage::counters::COST_MICROS, cost.0),
    ];
    let spent = usage::spend(
        month,
        counters.into_iter().chain(breakdown.counters()),
        ended_at,
    );
    let settle = |item: crate::store::Item| {
        std::iter::once(Write::Put(item, Condition::IfAbsent))
            .chain(spent.clone().map(Write::Add))
            .collect::<Vec<_>>()
    };
    let written = match calls::item(&log, ended_at.unix_timestamp()) {
        Ok(item) => {
            with_retries("settling the call", || store.transact(settle(item.clone()))).await
        }
        Err(e) => Err(e),
    };
    match written {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => {
            tracing::warn!("the call was already settled and logged; nothing counted again")
        }
        Err(e) => tracing::error!(
            error = %e,
            seconds,
            "the call could not be settled and logged"
        ),
    }
    log
}

/// `call.completed` for the tenant's webhooks: duration, summary and cost of a logged call.
pub fn completed_event(log: &CallLog) -> crate::webhooks::Event {
    crate::webhooks::Event::call_completed(
        log.ended_at,
        log.call_sid.as_str(),
        &log.from,
        log.to.as_str(),
        log.duration_seconds,
        Some(&log.summary),
        &crate::webhooks::events::usd(log.cost_micros.0),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;
    use crate::embedded_db::EmbeddedDb;
    use crate::ids::SequentialIds;
    use crate::store::EmbeddedStore;
    use crate::tenants::{self, Plan, TenantName};
    use crate::voice::calls::CallSid;

    #[tokio::test]
    async fn an_ended_call_settles_its_minutes_and_cost_and_is_logged_once() {
        let start = time::macros::datetime!(2026-05-01 09:00 UTC);
        let clock = ManualClock::at(start);
        let store =
            EmbeddedStore::new(EmbeddedDb::in_memory().unwrap(), Arc::new(clock.clone())).unwrap();
        let tenant = tenants::create_tenant(
            &store,
            &SequentialIds::default(),
            &clock,
            TenantName::parse("Hotel").unwrap(),
            Plan::Pro,
        )
        .await
        .unwrap();
        let reservation = metering::reserve(&store, &tenant.tenant_id, Plan::Pro, start)
            .await
            .unwrap()
            .expect("minutes left");
        clock.advance(std::time::Duration::from_secs(62));
        let call_sid = "CA0123456789abcdef0123456789abcdef";
        let claims: StreamClaims = serde_json::from_value(json!({
            "call_sid": call_sid, "tenant_id": tenant.tenant_id, "from": "+81312345678",
            "to": "+81398765432", "expires_at": 0
        }))
        .unwrap();
        let policy: ModelPolicy = serde_json::from_value(json!({
            "name": "a-realtime-model", "kind": "realtime", "input_per_1k": 1_000, "output_per_1k": 2_000,
            "effective_from": "2026-01-01T00:00:00Z", "effective_until": null, "default_for": [],
            "plans_allowed": ["pro"]
        }))
        .unwrap();
        let call = EndedCall {
            claims,
            reservation,
            policy,
            started_at: start,
            duration_ms: 61_200,
            reason: EndReason::Stopped,
            transcript: Vec::new(),
            usage: RealtimeUsage {
                input_text_tokens: 1_000,
                output_text_tokens: 1_000,
                responses: 1,
                ..Default::default()
            },
            metrics: CallMetrics::default(),
        };
        let log = settle(&store, &clock, None, call.clone()).await;
        assert_eq!(log.duration_seconds, 62, "billed by the started second");
        assert_eq!(
            log.ended_at,
            time::macros::datetime!(2026-05-01 09:01:02 UTC)
        );
        assert_eq!(log.summary_source, "extractive");
        assert_eq!(log.cost_micros.0, 3_000);
        let month = usage::tenant_month(&tenant.tenant_id, "2026-05");
        let counters = crate::store::ItemStore::get(&store, &month)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(counters.count(usage::counters::CALL_SECONDS), 62);
        assert_eq!(counters.count(usage::counters::COST_MICROS), 3_000);
        let (_, models) = usage::breakdown::read(Some(&counters));
        assert_eq!(models.len(), 1);
        assert_eq!(
            (
                models[0].requests,
                models[0].seconds,
                models[0].input_tokens
            ),
            (1, 62, 1_000)
        );
        assert_eq!(models[0].cost_usd, 0.003);
        let sid = CallSid::parse(call_sid).unwrap();
        assert_eq!(
            calls::get(&store, &tenant.tenant_id, &sid).await.unwrap(),
            log
        );
        // Settled again (a retried end): the stored log stays the first one, and no minute or cost
        // is counted twice.
        clock.advance(std::time::Duration::from_secs(5));
        let again = settle(&store, &clock, None, call).await;
        assert_ne!(again.ended_at, log.ended_at);
        assert_eq!(
            calls::get(&store, &tenant.tenant_id, &sid).await.unwrap(),
            log
        );
        let after = crate::store::ItemStore::get(&store, &month)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after, counters);
    }
}
