//! The credit ledger: every change to a balance is one immutable entry, written in the same
//! transaction as the balance it changes, numbered by the account's sequence.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::TenantId;
use crate::store::{ItemStore, Query, StoreError, keys};

use super::{Credits, MeteredFunction};

/// What kind of change an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransactionType {
    Usage,
    Purchase,
    MonthlyGrant,
    Bonus,
    Refund,
    Adjustment,
    Expiry,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    /// `ctx_<seq>`: the entry's place in the tenant's ledger.
    pub transaction_id: String,
    #[serde(rename = "type")]
    pub kind: TransactionType,
    /// Signed: usage and expiry subtract.
    pub credits: Credits,
    /// Of which granted credits (the rest is paid credits).
    pub granted_credits: Credits,
    /// The balance (granted + paid) once this entry applied.
    pub balance_after: Credits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<MeteredFunction>,
    /// What it is about: a usage log id, a payment intent, a call sid, a reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Why, for bonuses and adjustments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// The transaction id of the entry at `seq`.
pub fn transaction_id(seq: u64) -> String {
    format!("ctx_{seq:012}")
}

/// One page of a tenant's ledger, newest first; `next` continues it.
pub async fn page(
    store: &dyn ItemStore,
    tenant: &TenantId,
    cursor: Option<String>,
    limit: usize,
) -> Result<(Vec<LedgerEntry>, Option<String>), StoreError> {
    let page = store
        .query(
            Query::partition(keys::credit_partition(tenant))
                .prefix(keys::prefix::LEDGER)
                .descending()
                .limit(limit)
                .after(cursor),
        )
        .await?;
    let entries = page
        .items
        .iter()
        .map(|item| item.to_record())
        .collect::<Result<Vec<LedgerEntry>, _>>()?;
    Ok((entries, page.next))
}

/// Every entry of a tenant's ledger, oldest first (reports and the ledger check).
pub async fn all(store: &dyn ItemStore, tenant: &TenantId) -> Result<Vec<LedgerEntry>, StoreError> {
    let mut entries = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                Query::partition(keys::credit_partition(tenant))
                    .prefix(keys::prefix::LEDGER)
                    .limit(1000)
                    .after(cursor),
            )
            .await?;
        for item in &page.items {
            entries.push(item.to_record()?);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(entries),
        }
    }
}

/// Why a tenant's books do not balance.
#[derive(Debug, thiserror::Error)]
pub enum Imbalance {
    #[error("the balance {balance} is not the ledger's sum {sum}")]
    Balance { balance: i64, sum: i64 },
    #[error("granted credits {granted} are not the ledger's granted sum {sum}")]
    Granted { granted: i64, sum: i64 },
    #[error("entry {0} says balance_after {1}, the running sum is {2}")]
    Running(String, i64, i64),
    #[error("available {available} is not balance {balance} minus held {held}")]
    Available {
        available: i64,
        balance: i64,
        held: i64,
    },
    #[error("a balance went negative: {0}")]
    Negative(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a tenant's books: the balance is the ledger's sum (and each `balance_after` its running
/// sum), granted and paid never negative, and available = balance − what reservations hold.
pub async fn check_books(store: &dyn ItemStore, tenant: &TenantId) -> Result<(), Imbalance> {
    let balance = super::account::balance(store, tenant).await?;
    let entries = all(store, tenant).await?;
    let (mut sum, mut granted_sum) = (0i64, 0i64);
    for entry in &entries {
        sum += entry.credits.0;
        granted_sum += entry.granted_credits.0;
        if entry.balance_after.0 != sum {
            return Err(Imbalance::Running(
                entry.transaction_id.clone(),
                entry.balance_after.0,
                sum,
            ));
        }
        if sum < 0 || granted_sum < 0 {
            return Err(Imbalance::Negative(entry.transaction_id.clone()));
        }
    }
    if balance.balance.0 != sum {
        return Err(Imbalance::Balance {
            balance: balance.balance.0,
            sum,
        });
    }
    if balance.granted.0 != granted_sum {
        return Err(Imbalance::Granted {
            granted: balance.granted.0,
            sum: granted_sum,
        });
    }
    let held = super::metering::held(store, tenant).await?;
    if balance.available.0 != balance.balance.0 - held.0 || balance.available.0 < 0 {
        return Err(Imbalance::Available {
            available: balance.available.0,
            balance: balance.balance.0,
            held: held.0,
        });
    }
    Ok(())
}

/// Credits spent on one function over a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FunctionUsage {
    pub function: MeteredFunction,
    pub credits: Credits,
    pub count: u64,
}

/// Credits spent on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DailyUsage {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub credits: Credits,
}

/// Recent usage: this month's and the last 14 days' (the burn rate that estimates days left).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecentUsage {
    pub used_this_month: Credits,
    /// Most credits first.
    pub top_functions: Vec<FunctionUsage>,
    /// The last 14 days, oldest first, days without usage included.
    pub daily: Vec<DailyUsage>,
    /// The balance divided by the average daily use of the last 14 days; `None` without usage.
    pub estimated_days_left: Option<u64>,
}

/// The window the burn rate is measured over.
pub const BURN_WINDOW_DAYS: i64 = 14;

fn day_of(at: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

/// Reads the ledger back, newest first, as far as the start of the month or the burn window,
/// whichever is earlier, and sums the usage.
pub async fn recent_usage(
    store: &dyn ItemStore,
    tenant: &TenantId,
    balance: Credits,
    now: OffsetDateTime,
) -> Result<RecentUsage, StoreError> {
    let today = now.date().midnight().assume_utc();
    let window_start = today - time::Duration::days(BURN_WINDOW_DAYS - 1);
    let month_start = today.replace_day(1).unwrap_or(today);
    let horizon = window_start.min(month_start);
    let mut daily: Vec<DailyUsage> = (0..BURN_WINDOW_DAYS)
        .map(|n| DailyUsage {
            day: day_of(window_start + time::Duration::days(n)),
            credits: Credits::ZERO,
        })
        .collect();
    let mut by_function: std::collections::BTreeMap<&'static str, FunctionUsage> =
        std::collections::BTreeMap::new();
    let (mut used_this_month, mut burned) = (0i64, 0i64);
    let mut cursor = None;
    'pages: loop {
        let (entries, next) = page(store, tenant, cursor, 200).await?;
        for entry in entries {
            if entry.created_at < horizon {
                break 'pages;
            }
            if entry.kind != TransactionType::Usage {
                continue;
            }
            let spent = -entry.credits.0;
            if entry.created_at >= month_start {
                used_this_month += spent;
            }
            if entry.created_at >= window_start {
                burned += spent;
                let day = day_of(entry.created_at);
                if let Some(d) = daily.iter_mut().find(|d| d.day == day) {
                    d.credits.0 += spent;
                }
                if let Some(function) = entry.function {
                    let f = by_function
                        .entry(function.as_str())
                        .or_insert(FunctionUsage {
                            function,
                            credits: Credits::ZERO,
                            count: 0,
                        });
                    f.credits.0 += spent;
                    f.count += 1;
                }
            }
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut top_functions: Vec<FunctionUsage> = by_function.into_values().collect();
    top_functions.sort_by(|a, b| b.credits.cmp(&a.credits).then(b.count.cmp(&a.count)));
    // Whole days left at the average daily burn, rounded down (never promise a day too many).
    let estimated_days_left = (burned > 0)
        .then(|| u64::try_from(balance.0.max(0) * BURN_WINDOW_DAYS / burned).unwrap_or(0));
    Ok(RecentUsage {
        used_this_month: Credits(used_this_month),
        top_functions,
        daily,
        estimated_days_left,
    })
}
