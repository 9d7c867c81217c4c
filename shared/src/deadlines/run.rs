//! One run of the deadline job: every day from the catch-up cursor to the run's date, each action over
//! that day's due records, page by page, a bounded number of items at a time.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use time::Date;

use super::actions::{Ctx, Failure, Outcome, billing, content, credits, stuck, summary};
use super::{CreditCycle, day_text, due, parse_day};
use crate::Platform;
use crate::ids::{JobId, TenantId};
use crate::store::{Condition, Item, StoreError, keys};

/// Items worked on at once (store round trips and mail sends overlap; the store's and SES's rate
/// limits stay far away).
pub const DEFAULT_CONCURRENCY: usize = 16;
/// The furthest back a catch-up reaches (a job left off for longer starts over at its date).
pub const MAX_CATCH_UP_DAYS: i64 = 31;

/// Every count the report shows, zero or not, so its shape is stable.
pub const ACTIONS: &[&str] = &[
    billing::TRIAL_ENDING,
    billing::RENEWAL,
    billing::PAYMENT_FAILED,
    billing::SUSPENDED,
    credits::GRANT,
    credits::RESERVATIONS,
    content::ACTION,
    stuck::ACTION,
    summary::ACTION,
];

#[derive(Debug, thiserror::Error)]
pub enum DeadlineError {
    #[error("date: {0} is in the future (today is {1})")]
    FutureDate(String, String),
    #[error("date: {0}")]
    BadDate(String),
    #[error("the deadline job could not read its cursor: {0}")]
    Store(#[from] StoreError),
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunReport {
    /// The run's date (`YYYY-MM-DD`).
    pub date: String,
    /// The days worked through: missed days first, then the date.
    pub days: Vec<String>,
    /// Items acted on, by action.
    pub actions: BTreeMap<String, u64>,
    /// Items an earlier run had done already (a re-run does nothing more).
    pub already_done: u64,
    /// Items another run was working on at the same time.
    pub in_progress: u64,
    /// Items that failed; the next run tries them again.
    pub errors: Vec<Failure>,
}

impl RunReport {
    fn new(date: Date) -> Self {
        Self {
            date: day_text(date),
            actions: ACTIONS.iter().map(|a| (a.to_string(), 0)).collect(),
            ..Self::default()
        }
    }

    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Acted(action) => *self.actions.entry(action.to_string()).or_default() += 1,
            Outcome::AlreadyDone => self.already_done += 1,
            Outcome::Busy => self.in_progress += 1,
            Outcome::NotDue => {}
            Outcome::Failed(f) => self.errors.push(f),
        }
    }

    /// Items acted on in total.
    pub fn acted(&self) -> u64 {
        self.actions.values().sum()
    }
}

/// The deadline job on a platform, with the credit ledger's part (monthly grants, expired
/// reservations).
#[derive(Clone)]
pub struct DeadlineJob {
    platform: Arc<Platform>,
    credits: Option<Arc<dyn CreditCycle>>,
    concurrency: usize,
}

impl DeadlineJob {
    pub fn new(platform: Arc<Platform>) -> Self {
        let ledger = crate::credits::cycle::LedgerCycle::of(&platform);
        Self {
            platform,
            credits: Some(Arc::new(ledger)),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// Uses another credit ledger for the monthly grants and the release of expired reservations.
    pub fn with_credits(mut self, credits: Arc<dyn CreditCycle>) -> Self {
        self.credits = Some(credits);
        self
    }

    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The day it is now (UTC).
    pub fn today(&self) -> Date {
        self.platform.clock.now().date()
    }

    /// Parses a requested date (`None`: today) and refuses one in the future.
    pub fn date_of(&self, requested: Option<&str>) -> Result<Date, DeadlineError> {
        let today = self.today();
        let date = match requested {
            None => today,
            Some(raw) => parse_day(raw).map_err(DeadlineError::BadDate)?,
        };
        if date > today {
            return Err(DeadlineError::FutureDate(day_text(date), day_text(today)));
        }
        Ok(date)
    }

    /// Runs for `date` (not after today), catching up every day missed since the last clean run.
    pub async fn run(&self, date: Date) -> Result<RunReport, DeadlineError> {
        let today = self.today();
        if date > today {
            return Err(DeadlineError::FutureDate(day_text(date), day_text(today)));
        }
        let store = self.platform.store.as_ref();
        let cursor = match store.get(&keys::deadline_cursor()).await? {
            Some(item) => item
                .attributes
                .get("day")
                .and_then(|v| v.as_str())
                .and_then(|d| parse_day(d).ok()),
            None => None,
        };
        let earliest = date - time::Duration::days(MAX_CATCH_UP_DAYS);
        let start = match cursor {
            Some(c) if c < date => c.max(earliest),
            _ => date,
        };
        let mut report = RunReport::new(date);
        let token = uuid::Uuid::now_v7().simple().to_string();
        let mut first_unclean = None;
        let mut day = start;
        loop {
            let errors_before = report.errors.len();
            self.run_day(day, &token, &mut report).await;
            if report.errors.len() > errors_before && first_unclean.is_none() {
                first_unclean = Some(day);
            }
            report.days.push(day_text(day));
            match day.next_day() {
                Some(next) if next <= date => day = next,
                _ => break,
            }
        }
        // The cursor only moves forward: to the first day with failures, or past the date.
        let next_cursor = first_unclean.unwrap_or_else(|| date.next_day().unwrap_or(date));
        if cursor.is_none_or(|c| next_cursor > c) {
            let item = Item::new(keys::deadline_cursor())
                .with("day", day_text(next_cursor))
                .with(
                    "updated_at",
                    crate::clock::rfc3339(self.platform.clock.now()),
                );
            if let Err(e) = store.put(item, Condition::None).await {
                tracing::error!(error = %e, "moving the deadline cursor failed; the next run repeats days (harmlessly)");
            }
        }
        tracing::info!(
            date = report.date,
            days = report.days.len(),
            acted = report.acted(),
            already_done = report.already_done,
            errors = report.errors.len(),
            "deadline run finished"
        );
        Ok(report)
    }

    /// Every action for one day.
    async fn run_day(&self, day: Date, token: &str, report: &mut RunReport) {
        let ctx = Ctx {
            platform: &self.platform,
            day,
            day_text: day_text(day),
            token: token.to_string(),
        };
        self.stuck_jobs(&ctx, report).await;
        self.billing(&ctx, report).await;
        if let Some(credits) = &self.credits {
            self.grants(&ctx, credits.as_ref(), report).await;
            self.low_balances(&ctx, credits.as_ref(), report).await;
            for outcome in credits::release_reservations(&ctx, credits.as_ref()).await {
                report.add(outcome);
            }
        }
        self.stale_content(&ctx, report).await;
        self.summaries(&ctx, report).await;
        let record = Item::new(keys::deadline_run(&ctx.day_text))
            .with("day", ctx.day_text.as_str())
            .with("last_run_at", crate::clock::rfc3339(ctx.now()))
            .with("errors", report.errors.len())
            .with("actions", json!(report.actions));
        if let Err(e) = self.platform.store.put(record, Condition::None).await {
            tracing::warn!(error = %e, day = ctx.day_text, "recording the day's run failed");
        }
    }

    /// Pages through a day's due records of one kind, handling up to `concurrency` at a time.
    async fn each_due<'a, T, F, Fut>(
        &self,
        ctx: &'a Ctx<'a>,
        prefix: &str,
        action: &'static str,
        parse: impl Fn(&str) -> Option<T>,
        handle: F,
        report: &mut RunReport,
    ) where
        F: Fn(T) -> Fut,
        Fut: std::future::Future<Output = Vec<Outcome>>,
    {
        let store = self.platform.store.as_ref();
        let mut cursor = None;
        loop {
            let page = match due::page(store, ctx.day, prefix, cursor).await {
                Ok(page) => page,
                Err(e) => {
                    report.add(ctx.failure(action, "due records", e));
                    return;
                }
            };
            let subjects: Vec<T> = page
                .items
                .iter()
                .filter_map(|item| item.index_keys.get(&crate::store::Index::ByDue))
                .filter_map(|key| key.sk.strip_prefix(prefix))
                .filter_map(&parse)
                .collect();
            let mut outcomes = futures::stream::iter(subjects.into_iter().map(&handle))
                .buffer_unordered(self.concurrency);
            while let Some(batch) = outcomes.next().await {
                for outcome in batch {
                    report.add(outcome);
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return,
            }
        }
    }

    async fn billing(&self, ctx: &Ctx<'_>, report: &mut RunReport) {
        self.each_due(
            ctx,
            keys::prefix::BILLING_DUE,
            "billing",
            |id| TenantId::parse(id).ok(),
            |tenant| async move { billing::handle(ctx, &tenant).await },
            report,
        )
        .await;
    }

    async fn grants(&self, ctx: &Ctx<'_>, credits: &dyn CreditCycle, report: &mut RunReport) {
        self.each_due(
            ctx,
            keys::prefix::GRANT_DUE,
            credits::GRANT,
            |id| TenantId::parse(id).ok(),
            |tenant| async move { vec![credits::grant(ctx, credits, &tenant).await] },
            report,
        )
        .await;
    }

    async fn low_balances(&self, ctx: &Ctx<'_>, credits: &dyn CreditCycle, report: &mut RunReport) {
        self.each_due(
            ctx,
            keys::prefix::LOW_BALANCE_DUE,
            credits::LOW_BALANCE,
            |id| TenantId::parse(id).ok(),
            |tenant| async move { vec![credits::low_balance(ctx, credits, &tenant).await] },
            report,
        )
        .await;
    }

    async fn stuck_jobs(&self, ctx: &Ctx<'_>, report: &mut RunReport) {
        self.each_due(
            ctx,
            keys::prefix::JOB,
            stuck::ACTION,
            |id| JobId::parse(id).ok(),
            |job| async move { vec![stuck::handle(ctx, &job).await] },
            report,
        )
        .await;
    }

    async fn stale_content(&self, ctx: &Ctx<'_>, report: &mut RunReport) {
        let mut seen = HashSet::new();
        let mut cursor = None;
        loop {
            let (sites, next) = match content::pages(ctx, cursor, &mut seen).await {
                Ok(page) => page,
                Err(e) => {
                    report.add(ctx.failure(content::ACTION, "due records", e));
                    return;
                }
            };
            let mut outcomes = futures::stream::iter(
                sites
                    .into_iter()
                    .map(|site| async move { content::handle(ctx, &site).await }),
            )
            .buffer_unordered(self.concurrency);
            while let Some(outcome) = outcomes.next().await {
                report.add(outcome);
            }
            match next {
                Some(next) => cursor = Some(next),
                None => return,
            }
        }
    }

    async fn summaries(&self, ctx: &Ctx<'_>, report: &mut RunReport) {
        let store = self.platform.store.as_ref();
        let mut cursor = None;
        loop {
            let (tenants, next) = match summary::tenant_page(store, cursor).await {
                Ok(page) => page,
                Err(e) => {
                    report.add(ctx.failure(summary::ACTION, "tenants", e));
                    return;
                }
            };
            let mut outcomes = futures::stream::iter(
                tenants
                    .into_iter()
                    .map(|tenant| async move { summary::handle(ctx, &tenant).await }),
            )
            .buffer_unordered(self.concurrency);
            while let Some(outcome) = outcomes.next().await {
                report.add(outcome);
            }
            match next {
                Some(next) => cursor = Some(next),
                None => return,
            }
        }
    }
}
