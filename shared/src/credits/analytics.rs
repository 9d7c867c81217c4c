//! Credit analytics (`GET /api/credits/analytics?from&to`): what a tenant's AI actions cost over a
//! period — totals, the average and the peak day, per function (count, credits, success rate, mean
//! latency) — this month's projection and a cheaper plan when one would cover it.
//!
//! Where the numbers come from:
//! - credits and counts: the ledger's `usage` entries (every charged action), read newest first back
//!   to the period's (or this month's) start;
//! - chat and execute success and latency: the deadline job's daily summaries where a day has one (one
//!   query for the period), and only for days without one (today, a day the job has not reached) that
//!   day's usage and execution logs (kept 90 days).
//!
//! Calls and training have no per-action success or latency record: their rate and latency are null.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use time::{Date, Duration, OffsetDateTime};

use super::ledger::{self, TransactionType};
use super::{Credits, MeteredFunction, pricing};
use crate::deadlines::actions::summary::{self, DailySummary};
use crate::deadlines::day_text;
use crate::ids::TenantId;
use crate::store::{ItemStore, Query, StoreError, keys};
use crate::tenants::Plan;

/// The longest period a report covers, in days (a leap year).
pub const MAX_DAYS: i64 = 366;
/// How long request logs are kept (`chat::logs::LOG_TTL_SECS`): older days are known only from their
/// summaries.
const LOG_DAYS: i64 = 90;

/// A period of whole UTC days, `from` to `to` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    pub to: Date,
}

/// Why a period was refused: the parameter and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PeriodError {
    pub field: &'static str,
    pub message: String,
}

fn parse_day(field: &'static str, raw: &str) -> Result<Date, PeriodError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(raw.trim(), &format).map_err(|_| PeriodError {
        field,
        message: format!("{raw:?} is not a date of the form YYYY-MM-DD"),
    })
}

impl Period {
    /// The period asked for; by default this month so far (the 1st to today, UTC). A missing `from`
    /// is the first of `to`'s month; a missing `to` is today.
    pub fn parse(from: Option<&str>, to: Option<&str>, today: Date) -> Result<Period, PeriodError> {
        let to = match to {
            Some(raw) => parse_day("to", raw)?,
            None => today,
        };
        let from = match from {
            Some(raw) => parse_day("from", raw)?,
            None => to.replace_day(1).unwrap_or(to),
        };
        if to > today {
            return Err(PeriodError {
                field: "to",
                message: format!("{} is after today ({})", day_text(to), day_text(today)),
            });
        }
        if from > to {
            return Err(PeriodError {
                field: "from",
                message: format!("{} is after to ({})", day_text(from), day_text(to)),
            });
        }
        let days = (to - from).whole_days() + 1;
        if days > MAX_DAYS {
            return Err(PeriodError {
                field: "from",
                message: format!("the period is {days} days; at most {MAX_DAYS} are covered"),
            });
        }
        Ok(Period { from, to })
    }

    pub fn days(&self) -> i64 {
        (self.to - self.from).whole_days() + 1
    }

    fn contains(&self, day: Date) -> bool {
        self.from <= day && day <= self.to
    }

    fn each_day(&self) -> impl Iterator<Item = Date> + '_ {
        (0..self.days()).map(|n| self.from + Duration::days(n))
    }
}

/// One day's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DayUsage {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub credits: Credits,
    /// Charged actions.
    pub actions: u64,
}

/// The period's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CreditTotals {
    pub credits_used: Credits,
    /// Charged actions (ledger `usage` entries).
    pub actions: u64,
}

/// The average day of the period.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AverageDaily {
    pub credits: f64,
    pub actions: f64,
}

/// One function over the period.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FunctionStats {
    pub function: MeteredFunction,
    /// Charged actions.
    pub count: u64,
    pub credits: Credits,
    /// Requests logged (failed ones included; they may cost nothing); null without request logs.
    pub requests: Option<u64>,
    /// Requests that did not fail, over requests; null without request logs.
    pub success_rate: Option<f64>,
    /// Mean request latency in milliseconds; null without request logs.
    pub mean_latency_ms: Option<f64>,
}

/// This month's usage extrapolated to the whole month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Projection {
    /// `YYYY-MM`.
    pub month: String,
    pub used_so_far: Credits,
    /// Days of the month so far, today included.
    pub days_elapsed: u8,
    pub days_in_month: u8,
    /// `used_so_far / days_elapsed × days_in_month`, rounded up.
    pub projected_credits: Credits,
}

/// A cheaper plan whose monthly free credits would cover the projected month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlanSuggestion {
    pub plan: Plan,
    pub monthly_free_credits: Credits,
    pub reason: String,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Analytics {
    /// `YYYY-MM-DD`.
    pub from: String,
    pub to: String,
    pub days: i64,
    pub totals: CreditTotals,
    pub average_daily: AverageDaily,
    /// The day with the most credits used (the earliest on a tie); null without usage.
    pub peak_day: Option<DayUsage>,
    /// Every day of the period, oldest first.
    pub daily: Vec<DayUsage>,
    /// Most credits first; functions without usage or requests are left out.
    pub functions: Vec<FunctionStats>,
    pub projected_month: Projection,
    pub plan: Plan,
    pub monthly_free_credits: Credits,
    /// Null when no cheaper plan would cover the projected month.
    pub plan_suggestion: Option<PlanSuggestion>,
}

/// Requests of one function: how many, how many failed, their latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestTally {
    pub requests: u64,
    pub failures: u64,
    /// Latency added up over `timed` requests (days summarised before latency totals were kept have
    /// requests but no timing).
    pub latency_ms_total: u64,
    pub timed: u64,
}

impl RequestTally {
    fn add(&mut self, other: RequestTally) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.latency_ms_total += other.latency_ms_total;
        self.timed += other.timed;
    }

    /// A day's chat requests and direct AI calls, from its summary row.
    fn of_summary(s: &DailySummary) -> (Self, Self) {
        let chat = Self {
            requests: s.calls,
            failures: s.errors,
            latency_ms_total: s.latency_ms_total.unwrap_or(0),
            timed: if s.latency_ms_total.is_some() {
                s.calls
            } else {
                0
            },
        };
        let execute = s.executions.map_or_else(Self::default, |e| Self {
            requests: e.calls,
            failures: e.errors,
            latency_ms_total: e.latency_ms_total,
            timed: e.calls,
        });
        (chat, execute)
    }
}

/// A usage entry as the report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spend {
    pub at: OffsetDateTime,
    pub function: Option<MeteredFunction>,
    pub credits: i64,
}

/// Everything the report is computed from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Usage entries from the earlier of the period's start and this month's.
    pub spends: Vec<Spend>,
    /// Logged requests per function over the period.
    pub requests: HashMap<MeteredFunction, RequestTally>,
}

fn month_text(day: Date) -> String {
    format!("{:04}-{:02}", day.year(), u8::from(day.month()))
}

/// The cheapest plan below `current` whose monthly free credits cover `projected`.
pub fn cheaper_plan(current: Plan, projected: Credits) -> Option<PlanSuggestion> {
    let current_free = pricing::monthly_free_credits(current);
    [Plan::Starter, Plan::Pro, Plan::Enterprise]
        .into_iter()
        .filter(|p| pricing::monthly_free_credits(*p) < current_free)
        .find(|p| projected <= pricing::monthly_free_credits(*p))
        .map(|plan| {
            let free = pricing::monthly_free_credits(plan);
            PlanSuggestion {
                plan,
                monthly_free_credits: free,
                reason: format!(
                    "this month is projected at {} credits; the {} plan's {} free credits a month \
                     cover it (the {} plan grants {})",
                    projected.0,
                    plan.as_str(),
                    free.0,
                    current.as_str(),
                    current_free.0
                ),
            }
        })
}

/// Computes the report (pure: the loader below reads the inputs).
pub fn compute(period: Period, now: OffsetDateTime, plan: Plan, inputs: &Inputs) -> Analytics {
    let today = now.date();
    let mut daily: BTreeMap<Date, DayUsage> = period
        .each_day()
        .map(|d| {
            (
                d,
                DayUsage {
                    day: day_text(d),
                    credits: Credits::ZERO,
                    actions: 0,
                },
            )
        })
        .collect();
    let mut by_function: HashMap<MeteredFunction, (u64, i64)> = HashMap::new();
    let month_start = today.replace_day(1).unwrap_or(today);
    let mut month_used = 0i64;
    for spend in &inputs.spends {
        let day = spend.at.date();
        if day >= month_start && day <= today {
            month_used += spend.credits;
        }
        if !period.contains(day) {
            continue;
        }
        if let Some(d) = daily.get_mut(&day) {
            d.credits.0 += spend.credits;
            d.actions += 1;
        }
        if let Some(f) = spend.function {
            let e = by_function.entry(f).or_default();
            e.0 += 1;
            e.1 += spend.credits;
        }
    }
    let daily: Vec<DayUsage> = daily.into_values().collect();
    let totals = CreditTotals {
        credits_used: Credits(daily.iter().map(|d| d.credits.0).sum()),
        actions: daily.iter().map(|d| d.actions).sum(),
    };
    let days = period.days();
    let peak_day = daily
        .iter()
        .filter(|d| d.credits.0 > 0)
        .fold(None::<&DayUsage>, |best, d| match best {
            Some(b) if b.credits >= d.credits => Some(b),
            _ => Some(d),
        })
        .cloned();
    let mut functions: Vec<FunctionStats> = MeteredFunction::ALL
        .into_iter()
        .filter_map(|function| {
            let (count, credits) = by_function.get(&function).copied().unwrap_or_default();
            let requests = inputs.requests.get(&function).copied();
            if count == 0 && requests.is_none_or(|r| r.requests == 0) {
                return None;
            }
            let (requests, success_rate, mean_latency_ms) = match requests {
                Some(r) if r.requests > 0 => (
                    Some(r.requests),
                    Some((r.requests - r.failures.min(r.requests)) as f64 / r.requests as f64),
                    (r.timed > 0).then(|| r.latency_ms_total as f64 / r.timed as f64),
                ),
                _ => (None, None, None),
            };
            Some(FunctionStats {
                function,
                count,
                credits: Credits(credits),
                requests,
                success_rate,
                mean_latency_ms,
            })
        })
        .collect();
    functions.sort_by(|a, b| b.credits.cmp(&a.credits).then(b.count.cmp(&a.count)));
    let days_in_month = today.month().length(today.year());
    let days_elapsed = today.day();
    let projected = month_used * i64::from(days_in_month);
    let projected_month = Projection {
        month: month_text(today),
        used_so_far: Credits(month_used),
        days_elapsed,
        days_in_month,
        projected_credits: Credits(
            projected / i64::from(days_elapsed)
                + i64::from(projected % i64::from(days_elapsed) != 0),
        ),
    };
    Analytics {
        from: day_text(period.from),
        to: day_text(period.to),
        days,
        average_daily: AverageDaily {
            credits: totals.credits_used.0 as f64 / days as f64,
            actions: totals.actions as f64 / days as f64,
        },
        totals,
        peak_day,
        daily,
        functions,
        plan_suggestion: cheaper_plan(plan, projected_month.projected_credits),
        projected_month,
        plan,
        monthly_free_credits: pricing::monthly_free_credits(plan),
    }
}

/// Usage entries back to `since`, newest first (the ledger has no time index: it is read back from
/// its newest entry).
async fn spends_since(
    store: &dyn ItemStore,
    tenant: &TenantId,
    since: OffsetDateTime,
) -> Result<Vec<Spend>, StoreError> {
    let mut spends = Vec::new();
    let mut cursor = None;
    loop {
        let (entries, next) = ledger::page(store, tenant, cursor, 1000).await?;
        for entry in entries {
            if entry.created_at < since {
                return Ok(spends);
            }
            if entry.kind == TransactionType::Usage {
                spends.push(Spend {
                    at: entry.created_at,
                    function: entry.function,
                    credits: -entry.credits.0,
                });
            }
        }
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(spends),
        }
    }
}

/// The longest common prefix of two texts (a query prefix covering both).
fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    &a[..n]
}

/// Chat requests and direct AI calls over the period: summaries where they exist, the day's logs
/// where they do not.
async fn logged_requests(
    store: &dyn ItemStore,
    tenant: &TenantId,
    period: Period,
    today: Date,
) -> Result<(RequestTally, RequestTally), StoreError> {
    let (from, to) = (day_text(period.from), day_text(period.to));
    let mut summarised: BTreeMap<String, DailySummary> = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                Query::partition(keys::tenant_partition(tenant))
                    .prefix(format!("SUMMARY#{}", common_prefix(&from, &to)))
                    .limit(1000)
                    .after(cursor),
            )
            .await?;
        for row in crate::store::stored::readable::<DailySummary>(&page.items) {
            if row.day >= from && row.day <= to && row.site_id.is_none() {
                summarised.insert(row.day.clone(), row);
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let (mut chat, mut execute) = (RequestTally::default(), RequestTally::default());
    let oldest_logged = today - Duration::days(LOG_DAYS);
    for day in period.each_day() {
        let row = match summarised.remove(&day_text(day)) {
            Some(row) => Some(row),
            None if day >= oldest_logged => summary::summarize(store, tenant, day)
                .await?
                .map(|(row, _)| row),
            None => None,
        };
        if let Some(row) = row {
            let (c, e) = RequestTally::of_summary(&row);
            chat.add(c);
            execute.add(e);
        }
    }
    Ok((chat, execute))
}

/// Reads what the report needs and computes it.
pub async fn report(
    store: &dyn ItemStore,
    tenant: &TenantId,
    plan: Plan,
    period: Period,
    now: OffsetDateTime,
) -> Result<Analytics, StoreError> {
    let today = now.date();
    let since = period.from.min(today.replace_day(1).unwrap_or(today));
    let (spends, logged) = tokio::join!(
        spends_since(store, tenant, since.midnight().assume_utc()),
        logged_requests(store, tenant, period, today),
    );
    let (chat, execute) = logged?;
    let mut requests = HashMap::new();
    for (function, tally) in [
        (MeteredFunction::Chat, chat),
        (MeteredFunction::Execute, execute),
    ] {
        if tally.requests > 0 {
            requests.insert(function, tally);
        }
    }
    let inputs = Inputs {
        spends: spends?,
        requests,
    };
    Ok(compute(period, now, plan, &inputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    const TODAY: Date = date!(2026 - 03 - 20);

    #[test]
    fn periods_default_to_this_month_and_refuse_clearly() {
        let p = Period::parse(None, None, TODAY).unwrap();
        assert_eq!((p.from, p.to, p.days()), (date!(2026 - 03 - 01), TODAY, 20));
        let p = Period::parse(None, Some("2026-02-14"), TODAY).unwrap();
        assert_eq!(p.from, date!(2026 - 02 - 01));
        let p = Period::parse(Some("2025-03-20"), Some("2026-03-20"), TODAY).unwrap();
        assert_eq!(p.days(), 366);
        let field = |from, to| Period::parse(from, to, TODAY).unwrap_err().field;
        assert_eq!(field(Some("2025-03-19"), Some("2026-03-20")), "from");
        assert_eq!(field(Some("2026-03-10"), Some("2026-03-09")), "from");
        assert_eq!(field(Some("2026-3-1"), None), "from");
        assert_eq!(field(None, Some("2026-02-30")), "to");
        assert_eq!(field(None, Some("2026-03-21")), "to");
        assert!(
            Period::parse(Some("yesterday"), None, TODAY)
                .unwrap_err()
                .message
                .contains("YYYY-MM-DD")
        );
    }

    fn spend(at: OffsetDateTime, function: MeteredFunction, credits: i64) -> Spend {
        Spend {
            at,
            function: Some(function),
            credits,
        }
    }

    #[test]
    fn the_report_sums_days_functions_and_projects_the_month() {
        let now = datetime!(2026-03-20 12:00 UTC);
        let period = Period::parse(Some("2026-03-18"), Some("2026-03-20"), TODAY).unwrap();
        let mut requests = HashMap::new();
        requests.insert(
            MeteredFunction::Chat,
            RequestTally {
                requests: 4,
                failures: 1,
                latency_ms_total: 900,
                timed: 3,
            },
        );
        let inputs = Inputs {
            spends: vec![
                // Outside the period but this month: counts for the projection only.
                spend(datetime!(2026-03-02 10:00 UTC), MeteredFunction::Chat, 100),
                spend(datetime!(2026-03-18 10:00 UTC), MeteredFunction::Chat, 3),
                spend(datetime!(2026-03-18 11:00 UTC), MeteredFunction::Chat, 2),
                spend(datetime!(2026-03-19 09:00 UTC), MeteredFunction::Call, 20),
                spend(datetime!(2026-03-20 09:00 UTC), MeteredFunction::Chat, 5),
            ],
            requests,
        };
        let r = compute(period, now, Plan::Pro, &inputs);
        assert_eq!((r.totals.credits_used, r.totals.actions), (Credits(30), 4));
        assert_eq!(r.days, 3);
        assert_eq!(r.average_daily.credits, 10.0);
        let peak = r.peak_day.unwrap();
        assert_eq!(
            (peak.day.as_str(), peak.credits),
            ("2026-03-19", Credits(20))
        );
        assert_eq!(
            r.daily.iter().map(|d| d.credits.0).collect::<Vec<_>>(),
            [5, 20, 5]
        );
        assert_eq!(r.functions[0].function, MeteredFunction::Call);
        assert_eq!(r.functions[0].success_rate, None);
        let chat = &r.functions[1];
        assert_eq!((chat.count, chat.credits), (3, Credits(10)));
        assert_eq!(chat.requests, Some(4));
        assert_eq!(chat.success_rate, Some(0.75));
        assert_eq!(chat.mean_latency_ms, Some(300.0));
        // 130 credits in 20 days of a 31-day month: 201.5, rounded up.
        assert_eq!(r.projected_month.used_so_far, Credits(130));
        assert_eq!(r.projected_month.projected_credits, Credits(202));
        // Pro grants 10,000; starter's 1,000 cover 202.
        let s = r.plan_suggestion.unwrap();
        assert_eq!(
            (s.plan, s.monthly_free_credits),
            (Plan::Starter, Credits(1_000))
        );
    }

    #[test]
    fn a_cheaper_plan_is_suggested_only_when_its_free_credits_cover_the_month() {
        assert_eq!(cheaper_plan(Plan::Starter, Credits(0)), None);
        assert_eq!(cheaper_plan(Plan::Pro, Credits(1_001)), None);
        assert_eq!(
            cheaper_plan(Plan::Enterprise, Credits(5_000)).map(|s| s.plan),
            Some(Plan::Pro)
        );
        assert_eq!(
            cheaper_plan(Plan::Enterprise, Credits(1_000)).map(|s| s.plan),
            Some(Plan::Starter)
        );
    }

    #[test]
    fn an_empty_period_has_no_peak_and_no_functions() {
        let now = datetime!(2026-03-20 12:00 UTC);
        let period = Period::parse(None, None, TODAY).unwrap();
        let r = compute(period, now, Plan::Starter, &Inputs::default());
        assert_eq!(r.peak_day, None);
        assert!(r.functions.is_empty());
        assert_eq!(r.daily.len(), 20);
        assert_eq!(r.projected_month.projected_credits, Credits(0));
        assert_eq!(r.plan_suggestion, None);
    }

    #[test]
    fn common_prefixes_narrow_the_queries() {
        assert_eq!(common_prefix("2026-03-01", "2026-03-20"), "2026-03-");
        assert_eq!(common_prefix("2025-03-01", "2026-03-20"), "202");
    }
}
