//! The end of a call, whatever ended it: the minutes settled against the reservation, a summary (the
//! chat model's, or the extractive one), the cost on the tenant's usage counter, and the call log,
//! written once. Store writes are retried: this runs after both sockets closed, with nobody to answer.

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
use crate::store::ItemStore;
use crate::store::retry::with_retries;
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

    if let Err(e) = with_retries("settling call minutes", || {
        metering::settle(store, &call.reservation, seconds, ended_at)
    })
    .await
    {
        tracing::error!(error = %e, seconds, "call minutes not settled");
    }

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
    // The month's cost (its minutes were settled above), and the realtime model's share of the month.
    let cost = call.usage.cost(&call.policy);
    let breakdown = usage::Breakdown::new().model(usage::ModelSpend {
        model: &call.policy.name,
        input_tokens: call.usage.input_tokens(),
        output_tokens: call.usage.output_tokens(),
        seconds: seconds as u64,
        cost,
    });
    let key = usage::tenant_month(tenant, &usage::month_of(call.started_at));
    let counters = std::iter::once((usage::counters::COST_MICROS, cost.0))
        .chain(breakdown.counters())
        .collect();
    if let Err(e) = usage::record_all(store, key, counters, ended_at).await {
        tracing::error!(error = %e, "call cost not recorded on the usage counter");
    }

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
    match with_retries("writing the call log", || {
        calls::save(store, &log, ended_at.unix_timestamp())
    })
    .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!("the call log was already written"),
        Err(e) => tracing::error!(error = %e, "the call log could not be written"),
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
        // Settled again (a retried end): the stored log stays the first one.
        clock.advance(std::time::Duration::from_secs(5));
        let again = settle(&store, &clock, None, call).await;
        assert_ne!(again.ended_at, log.ended_at);
        assert_eq!(
            calls::get(&store, &tenant.tenant_id, &sid).await.unwrap(),
            log
        );
    }
}
