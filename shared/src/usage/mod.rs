//! Usage counters: what each tenant and site has consumed this month and today, reserved atomically
//! against the plan's limits with the store's "add unless over the limit" primitive.
//!
//! Counters are plain attributes on one item per (tenant, month) and per (site, day), so a reservation
//! is a single conditional write: N concurrent requests against a remaining quota of Q serve exactly Q.

pub mod breakdown;

use serde::Serialize;
use time::OffsetDateTime;

pub use breakdown::{Breakdown, ModelSpend, ModelUsage, SiteUsage};

use crate::ids::{SiteId, TenantId};
use crate::store::{Add, ItemStore, Key, StoreError, keys};

/// Monthly counters outlive their month by a year (billing disputes, the usage API).
const MONTHLY_RETENTION_SECS: i64 = 400 * 24 * 3600;
/// Daily counters only need to outlive their day.
const DAILY_RETENTION_SECS: i64 = 40 * 24 * 3600;

/// Counter attribute names.
pub mod counters {
    pub const CHATS: &str = "chats";
    pub const EMBEDDING_TOKENS: &str = "embedding_tokens";
    pub const CHAT_INPUT_TOKENS: &str = "chat_input_tokens";
    pub const CHAT_OUTPUT_TOKENS: &str = "chat_output_tokens";
    pub const COST_MICROS: &str = "cost_micros";
    pub const CALL_SECONDS: &str = "call_seconds";
}

/// `YYYY-MM` of an instant (UTC).
pub fn month_of(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}", t.year(), u8::from(t.month()))
}

/// `YYYY-MM-DD` of an instant (UTC).
pub fn day_of(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The tenant's counters for a month.
pub fn tenant_month(tenant: &TenantId, month: &str) -> Key {
    keys::tenant_month(tenant, month)
}

/// A site's counters for a day.
pub fn site_day(site: &SiteId, day: &str) -> Key {
    keys::site_day(site, day)
}

/// A reservation that can be given back (a failed model call must not use up quota).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reservation {
    #[serde(skip)]
    pub key: Key,
    pub attribute: String,
    pub amount: i64,
}

/// The limit was reached: nothing was reserved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{attribute} limit of {limit} reached")]
pub struct LimitReached {
    pub attribute: String,
    pub limit: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    LimitReached(#[from] LimitReached),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// When a counter item expires: daily counters after the daily retention, monthly ones after the monthly.
pub(crate) fn expiry(key: &Key, now: OffsetDateTime) -> i64 {
    let keep = if key.sk.len() > keys::prefix::USAGE.len() + "YYYY-MM".len() {
        DAILY_RETENTION_SECS
    } else {
        MONTHLY_RETENTION_SECS
    };
    now.unix_timestamp() + keep
}

/// Reserves `amount` of `attribute` on the counter at `key` unless the total would pass `limit`.
pub async fn reserve(
    store: &dyn ItemStore,
    key: Key,
    attribute: &str,
    amount: i64,
    limit: i64,
    now: OffsetDateTime,
) -> Result<Reservation, UsageError> {
    let add = Add::new(key.clone(), attribute, amount)
        .up_to(limit)
        .expiring_at(expiry(&key, now));
    match store.add(add).await {
        Ok(_) => Ok(Reservation {
            key,
            attribute: attribute.to_string(),
            amount,
        }),
        Err(StoreError::ConditionFailed) => Err(LimitReached {
            attribute: attribute.into(),
            limit,
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Gives a reservation back.
pub async fn release(store: &dyn ItemStore, reservation: &Reservation) -> Result<(), StoreError> {
    store
        .add(Add::new(
            reservation.key.clone(),
            reservation.attribute.clone(),
            -reservation.amount,
        ))
        .await
        .map(|_| ())
}

/// Adds to a counter with no limit (actual costs, settled after the fact).
pub async fn record(
    store: &dyn ItemStore,
    key: Key,
    attribute: &str,
    amount: i64,
    now: OffsetDateTime,
) -> Result<i64, StoreError> {
    let exp = expiry(&key, now);
    store
        .add(Add::new(key, attribute, amount).expiring_at(exp))
        .await
}

/// One add of several counters of the item at `key`, with no limit (what an action spent, with its
/// [`Breakdown`]), expiring as that counter item does. Counters that do not move are left out (an add
/// of 0 would still create the attribute); `None` when none moves.
pub fn spend<'a>(
    key: &Key,
    counters: impl IntoIterator<Item = (&'a str, i64)>,
    now: OffsetDateTime,
) -> Option<Add> {
    let mut moving = counters.into_iter().filter(|(_, amount)| *amount != 0);
    let (attribute, amount) = moving.next()?;
    let add = moving.fold(Add::new(key.clone(), attribute, amount), |add, (a, n)| {
        add.and(a, n, None)
    });
    Some(add.expiring_at(expiry(key, now)))
}

/// Writes a [`spend`] on its own (outside a transaction).
pub async fn record_all(
    store: &dyn ItemStore,
    key: Key,
    counters: Vec<(&str, i64)>,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    match spend(&key, counters, now) {
        Some(add) => store.add(add).await.map(|_| ()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn months_parse() {
        assert!(parse_month("2026-11").is_ok());
        for bad in ["2026-13", "2026-00", "26-11", "2026/11", "2026-1", ""] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn periods_are_utc_calendar_units() {
        let t = datetime!(2026-03-09 23:59:59 UTC);
        assert_eq!(month_of(t), "2026-03");
        assert_eq!(day_of(t), "2026-03-09");
        let site = SiteId::parse("site_abc").unwrap();
        assert_eq!(site_day(&site, "2026-03-09").sk, "USAGE#2026-03-09");
    }
}

/// A calendar month as the usage API takes it: `YYYY-MM`.
pub fn parse_month(raw: &str) -> Result<String, String> {
    let ok = raw.len() == 7
        && raw.as_bytes()[4] == b'-'
        && raw[..4].bytes().all(|b| b.is_ascii_digit())
        && raw[5..].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
    if ok {
        Ok(raw.to_string())
    } else {
        Err(format!("{raw:?} is not a month of the form YYYY-MM"))
    }
}

/// One tenant's month: totals, quota use and a row per day with activity.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonthlyReport {
    pub tenant_id: TenantId,
    pub month: String,
    pub plan: crate::tenants::Plan,
    pub totals: Totals,
    pub quotas: Vec<QuotaUse>,
    pub days: Vec<DayRow>,
    /// The month by site, highest cost first.
    pub sites: Vec<SiteUsage>,
    /// The month by model (chat, embedding, realtime), highest cost first.
    pub models: Vec<ModelUsage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default, utoipa::ToSchema)]
pub struct Totals {
    pub chats: i64,
    pub chat_input_tokens: i64,
    pub chat_output_tokens: i64,
    pub embedding_tokens: i64,
    pub call_seconds: i64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QuotaUse {
    pub name: &'static str,
    pub used: i64,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DayRow {
    pub date: String,
    pub chats: i64,
    pub embedding_tokens: i64,
    pub cost_usd: f64,
}

fn totals_of(item: Option<&crate::store::Item>) -> Totals {
    let count = |a: &str| item.map_or(0, |i| i.count(a));
    Totals {
        chats: count(counters::CHATS),
        chat_input_tokens: count(counters::CHAT_INPUT_TOKENS),
        chat_output_tokens: count(counters::CHAT_OUTPUT_TOKENS),
        embedding_tokens: count(counters::EMBEDDING_TOKENS),
        call_seconds: count(counters::CALL_SECONDS),
        cost_usd: crate::money::MicroUsd(count(counters::COST_MICROS)).as_dollars(),
    }
}

/// Reads a tenant's month: one get for the totals, one query for the days.
pub async fn monthly_report(
    store: &dyn ItemStore,
    tenant: &crate::tenants::Tenant,
    month: &str,
) -> Result<MonthlyReport, StoreError> {
    let monthly = store.get(&tenant_month(&tenant.tenant_id, month));
    let days = store.query(
        crate::store::Query::partition(keys::tenant_partition(&tenant.tenant_id))
            .prefix(keys::days_of_month(month))
            .limit(31),
    );
    let (monthly, days) = tokio::join!(monthly, days);
    let monthly = monthly?;
    let totals = totals_of(monthly.as_ref());
    let (sites, models) = breakdown::read(monthly.as_ref());
    let limits = tenant.plan.limits();
    let quotas = vec![
        QuotaUse {
            name: "monthly_chats",
            used: totals.chats,
            limit: limits.monthly_chats as i64,
        },
        QuotaUse {
            name: "monthly_embedding_tokens",
            used: totals.embedding_tokens,
            limit: limits.monthly_embedding_tokens as i64,
        },
        QuotaUse {
            name: "monthly_call_minutes",
            used: (totals.call_seconds + 59) / 60,
            limit: limits.monthly_call_minutes as i64,
        },
    ];
    let days = days?
        .items
        .iter()
        .map(|item| {
            let t = totals_of(Some(item));
            DayRow {
                date: item
                    .key
                    .sk
                    .trim_start_matches(keys::prefix::USAGE)
                    .to_string(),
                chats: t.chats,
                embedding_tokens: t.embedding_tokens,
                cost_usd: t.cost_usd,
            }
        })
        .collect();
    Ok(MonthlyReport {
        tenant_id: tenant.tenant_id.clone(),
        month: month.to_string(),
        plan: tenant.plan,
        totals,
        quotas,
        days,
        sites,
        models,
    })
}
