//! Daily usage summaries: the run for day D sums up D−1 (complete by then) per tenant and per site —
//! requests, answers, errors, tokens, cost, p95 latency, and on the tenant's row its direct AI calls
//! — into one row each, so monthly reports, the admin report and the credit analytics read a row a
//! day instead of every log entry.
//!
//! Tenants are walked through the all-tenants listing (an index partition, paged), and each tenant's
//! log entries of the day through its by-tenant listing (`LOG#<day>…`): no table scan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::Date;

use super::super::day_text;
use super::super::marker::{Claim, Done, Marker};
use super::{Ctx, Outcome};
use crate::chat::logs::{AnswerOutcome, UsageLog};
use crate::execute::{ExecutionLog, ExecutionOutcome};
use crate::ids::{SiteId, TenantId};
use crate::store::{Condition, Index, Item, ItemStore, Page, Query, StoreError, keys};

pub const ACTION: &str = "usage_summary";
/// Summaries are kept about as long as a plan's history matters.
const SUMMARY_DAYS: i64 = 800;

/// One day's usage of a tenant or of one of its sites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DailySummary {
    /// The day summed up (`YYYY-MM-DD`, UTC).
    pub day: String,
    pub tenant_id: TenantId,
    /// Set on a site's row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<SiteId>,
    /// Chat requests (answered, cancelled or failed).
    pub calls: u64,
    pub answered: u64,
    pub errors: u64,
    pub chat_input_tokens: u64,
    pub chat_output_tokens: u64,
    pub embedding_tokens: u64,
    pub cost_micros: i64,
    /// 95th percentile of latency (nearest rank), milliseconds.
    pub p95_latency_ms: u64,
    /// Every request's latency added up (mean latency = this / calls); absent on rows written
    /// before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms_total: Option<u64>,
    /// Direct AI calls (`POST /api/ai/execute`) of the day, on the tenant's row when there were any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executions: Option<ExecutionSummary>,
}

/// A day's direct AI calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionSummary {
    pub calls: u64,
    pub errors: u64,
    /// Every call's latency added up, milliseconds.
    pub latency_ms_total: u64,
}

impl ExecutionSummary {
    fn of(logs: &[ExecutionLog]) -> Option<Self> {
        (!logs.is_empty()).then(|| Self {
            calls: logs.len() as u64,
            errors: logs
                .iter()
                .filter(|l| l.outcome == ExecutionOutcome::Failed)
                .count() as u64,
            latency_ms_total: logs.iter().map(|l| l.latency_ms).sum(),
        })
    }
}

#[derive(Default)]
struct Tally {
    calls: u64,
    answered: u64,
    errors: u64,
    chat_input_tokens: u64,
    chat_output_tokens: u64,
    embedding_tokens: u64,
    cost_micros: i64,
    latencies: Vec<u64>,
}

impl Tally {
    fn add(&mut self, log: &UsageLog) {
        self.calls += 1;
        match log.outcome {
            AnswerOutcome::Answered => self.answered += 1,
            AnswerOutcome::Failed => self.errors += 1,
            AnswerOutcome::Cancelled => {}
        }
        self.chat_input_tokens += log.chat_input_tokens;
        self.chat_output_tokens += log.chat_output_tokens;
        self.embedding_tokens += log.embedding_tokens;
        self.cost_micros = self.cost_micros.saturating_add(log.cost.0);
        self.latencies.push(log.latency_ms);
    }

    fn summary(mut self, day: &str, tenant: &TenantId, site: Option<SiteId>) -> DailySummary {
        self.latencies.sort_unstable();
        let p95 = match self.latencies.len() {
            0 => 0,
            n => self.latencies[(n * 95).div_ceil(100).max(1) - 1],
        };
        DailySummary {
            day: day.to_string(),
            tenant_id: tenant.clone(),
            site_id: site,
            calls: self.calls,
            answered: self.answered,
            errors: self.errors,
            chat_input_tokens: self.chat_input_tokens,
            chat_output_tokens: self.chat_output_tokens,
            embedding_tokens: self.embedding_tokens,
            cost_micros: self.cost_micros,
            p95_latency_ms: p95,
            latency_ms_total: Some(self.latencies.iter().sum()),
            executions: None,
        }
    }
}

/// One page of tenant ids from the all-tenants listing.
pub async fn tenant_page(
    store: &dyn ItemStore,
    cursor: Option<String>,
) -> Result<(Vec<TenantId>, Option<String>), StoreError> {
    let page: Page = store
        .query(
            Query::on(Index::ByTenant, keys::ALL_TENANTS)
                .prefix(keys::prefix::TENANT)
                .limit(500)
                .after(cursor),
        )
        .await?;
    let ids = page
        .items
        .iter()
        .filter_map(|item| item.index_keys.get(&Index::ByTenant))
        .filter_map(|key| key.sk.strip_prefix(keys::prefix::TENANT))
        .filter_map(|id| TenantId::parse(id).ok())
        .collect();
    Ok((ids, page.next))
}

/// Every log entry of the tenant under `prefix` (`LOG#<day>`: chat, `EXEC#<day>`: executions).
async fn logs_of<T: serde::de::DeserializeOwned>(
    store: &dyn ItemStore,
    tenant: &TenantId,
    prefix: String,
) -> Result<Vec<T>, StoreError> {
    let mut logs = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                Query::on(Index::ByTenant, keys::tenant_partition(tenant))
                    .prefix(prefix.clone())
                    .limit(1000)
                    .after(cursor),
            )
            .await?;
        logs.extend(crate::store::stored::readable::<T>(&page.items));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(logs),
        }
    }
}

/// The summaries of `day` for a tenant: the tenant's row and one per site used.
pub async fn summarize(
    store: &dyn ItemStore,
    tenant: &TenantId,
    day: Date,
) -> Result<Option<(DailySummary, Vec<DailySummary>)>, StoreError> {
    let text = day_text(day);
    let (logs, executions) = tokio::join!(
        logs_of::<UsageLog>(store, tenant, format!("LOG#{text}")),
        logs_of::<ExecutionLog>(store, tenant, format!("{}{text}", keys::prefix::EXECUTION)),
    );
    let (logs, executions) = (logs?, executions?);
    if logs.is_empty() && executions.is_empty() {
        return Ok(None);
    }
    let mut all = Tally::default();
    let mut by_site: BTreeMap<SiteId, Tally> = BTreeMap::new();
    for log in &logs {
        all.add(log);
        by_site.entry(log.site_id.clone()).or_default().add(log);
    }
    let sites = by_site
        .into_iter()
        .map(|(site, tally)| tally.summary(&text, tenant, Some(site)))
        .collect();
    let mut row = all.summary(&text, tenant, None);
    row.executions = ExecutionSummary::of(&executions);
    Ok(Some((row, sites)))
}

/// A stored summary row.
pub async fn read(
    store: &dyn ItemStore,
    tenant: &TenantId,
    day: &str,
) -> Result<Option<DailySummary>, StoreError> {
    match store.get(&keys::tenant_summary(tenant, day)).await? {
        Some(item) => Ok(Some(item.to_record()?)),
        None => Ok(None),
    }
}

/// Writes the previous day's summary of one tenant (once per run day).
pub async fn handle(ctx: &Ctx<'_>, tenant: &TenantId) -> Outcome {
    let store = ctx.platform.store.as_ref();
    let Some(day) = ctx.day.previous_day() else {
        return Outcome::NotDue;
    };
    let summaries = match summarize(store, tenant, day).await {
        Ok(Some(s)) => s,
        Ok(None) => return Outcome::NotDue,
        Err(e) => return ctx.failure(ACTION, tenant, e),
    };
    let marker = Marker::new(&ctx.day_text, ACTION, tenant);
    match marker.claim(store, ctx.now(), &ctx.token).await {
        Ok(Claim::Mine(_)) => {}
        Ok(Claim::Done) => return Outcome::AlreadyDone,
        Ok(Claim::Busy) => return Outcome::Busy,
        Err(e) => return ctx.failure(ACTION, tenant, e),
    }
    let (all, sites) = summaries;
    let expires = ctx.now().unix_timestamp() + SUMMARY_DAYS * 86_400;
    let mut written: Result<(), StoreError> = Ok(());
    let rows = std::iter::once((keys::tenant_summary(tenant, &all.day), &all)).chain(
        sites.iter().filter_map(|s| {
            s.site_id
                .as_ref()
                .map(|site| (keys::site_summary(site, &s.day), s))
        }),
    );
    for (key, row) in rows {
        let item = match Item::from_record(key, row) {
            Ok(item) => item.expiring_at(expires),
            Err(e) => {
                written = Err(e);
                break;
            }
        };
        // Overwriting is harmless: the same logs give the same row.
        if let Err(e) = store.put(item, Condition::None).await {
            written = Err(e);
            break;
        }
    }
    if let Err(e) = written {
        let _ = marker.release(store, &ctx.token).await;
        return ctx.failure(ACTION, tenant, e);
    }
    let done = Done::default()
        .with("calls", all.calls)
        .with("sites", sites.len());
    match marker.complete(store, ctx.now(), &ctx.token, done).await {
        Ok(()) => Outcome::Acted(ACTION),
        Err(e) => ctx.failure(ACTION, tenant, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_the_nearest_rank() {
        let tenant = TenantId::parse("ten_1").unwrap();
        let tally = Tally {
            latencies: (1..=20).collect(),
            ..Tally::default()
        };
        assert_eq!(tally.summary("d", &tenant, None).p95_latency_ms, 19);
        let one = Tally {
            latencies: vec![7],
            ..Tally::default()
        };
        assert_eq!(one.summary("d", &tenant, None).p95_latency_ms, 7);
    }
}
