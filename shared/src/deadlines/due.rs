//! Due records: "look at this on that day", in the by-due index partition of the day.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use super::{day_text, first_run_day_after};
use crate::ids::TenantId;
use crate::store::{Condition, Index, Item, ItemStore, Page, Query, StoreError, keys};
use crate::tenants::{SubscriptionStatus, Tenant};

/// Days before a trial ends that the tenant is reminded.
pub const TRIAL_REMINDER_DAYS: [i64; 3] = [7, 3, 1];
/// Days before a renewal that the tenant is reminded.
pub const RENEWAL_REMINDER_DAYS: i64 = 7;
/// Days after a payment failed that the tenant is told (day 1 = the day after Stripe reported it).
pub const PAYMENT_FAILED_DAYS: [i64; 2] = [1, 5];
/// Due records outlive their day by this much (a long catch-up still finds them), then expire.
const DUE_RECORD_DAYS: i64 = 60;
/// Page size when reading a day's due records.
pub const PAGE: usize = 500;

/// What a billing due record holds: the tenant to re-read (the state decides what, if anything, is due).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BillingDue {
    pub tenant_id: TenantId,
    pub day: String,
}

/// What a grant due record holds: the credit account (its tenant) whose cycle date the day is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantDue {
    pub tenant_id: TenantId,
    pub day: String,
}

/// The end of a past-due tenant's grace period.
pub fn grace_end(tenant: &Tenant, grace: Duration) -> Option<OffsetDateTime> {
    let since = tenant.past_due_since?;
    since.checked_add(time::Duration::try_from(grace).ok()?)
}

/// The day a daily run suspends a past-due tenant: the first run after the grace period ended.
pub fn suspension_day(tenant: &Tenant, grace: Duration) -> Option<Date> {
    grace_end(tenant, grace).map(first_run_day_after)
}

/// The days the tenant's subscription state asks the deadline job to look at it.
pub fn billing_days(tenant: &Tenant, grace: Duration) -> Vec<Date> {
    let mut days = Vec::new();
    let offset = |day: Date, by: i64| day.checked_add(time::Duration::days(by));
    match tenant.subscription_status {
        SubscriptionStatus::Trialing => {
            if let Some(end) = tenant.trial_ends_at {
                days.extend(
                    TRIAL_REMINDER_DAYS
                        .iter()
                        .filter_map(|d| offset(end.date(), -d)),
                );
            }
        }
        SubscriptionStatus::Active if !tenant.cancel_at_period_end => {
            if let Some(end) = tenant.current_period_end {
                days.extend(offset(end.date(), -RENEWAL_REMINDER_DAYS));
            }
        }
        SubscriptionStatus::PastDue => {
            if let Some(since) = tenant.past_due_since {
                days.extend(
                    PAYMENT_FAILED_DAYS
                        .iter()
                        .filter_map(|d| offset(since.date(), *d)),
                );
            }
            days.extend(suspension_day(tenant, grace));
        }
        _ => {}
    }
    days.sort();
    days.dedup();
    days
}

/// Writes the tenant's billing due records for its current subscription state (called whenever the
/// state changes; writing them again is harmless). Days already past are left out: the job's
/// catch-up covers days it missed, not days before the fact was known.
pub async fn schedule_billing(
    store: &dyn ItemStore,
    tenant: &Tenant,
    grace: Duration,
    today: Date,
) -> Result<Vec<Date>, StoreError> {
    let days: Vec<Date> = billing_days(tenant, grace)
        .into_iter()
        .filter(|d| *d >= today)
        .collect();
    for day in &days {
        let text = day_text(*day);
        let (pk, sk) = keys::billing_due_listing(&tenant.tenant_id, &text);
        let item = Item::from_record(
            keys::billing_due(&tenant.tenant_id, &text),
            &BillingDue {
                tenant_id: tenant.tenant_id.clone(),
                day: text.clone(),
            },
        )?
        .with_index(Index::ByDue, pk, sk)
        .expiring_at(expiry(*day));
        store.put(item, Condition::None).await?;
    }
    Ok(days)
}

/// Writes a credit account's monthly-grant due record for its next cycle date. The credit system
/// calls this when an account is opened (first cycle date) and the grant action after each grant.
pub async fn schedule_monthly_grant(
    store: &dyn ItemStore,
    tenant: &TenantId,
    day: Date,
) -> Result<(), StoreError> {
    let text = day_text(day);
    let (pk, sk) = keys::grant_due_listing(tenant, &text);
    let item = Item::from_record(
        keys::grant_due(tenant, &text),
        &GrantDue {
            tenant_id: tenant.clone(),
            day: text.clone(),
        },
    )?
    .with_index(Index::ByDue, pk, sk)
    .expiring_at(expiry(day));
    store.put(item, Condition::None).await
}

/// What a low-balance due record holds: the tenant whose balance fell below its threshold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LowBalanceDue {
    pub tenant_id: TenantId,
    pub day: String,
}

/// Books the low-balance digest for the day after `today` (a settle that took the balance below the
/// threshold calls this; the digest books the next day itself while the balance stays low).
pub async fn schedule_low_balance(
    store: &dyn ItemStore,
    tenant: &TenantId,
    today: Date,
) -> Result<(), StoreError> {
    let day = today.next_day().unwrap_or(today);
    let text = day_text(day);
    let (pk, sk) = keys::low_balance_due_listing(tenant, &text);
    let item = Item::from_record(
        keys::low_balance_due(tenant, &text),
        &LowBalanceDue {
            tenant_id: tenant.clone(),
            day: text.clone(),
        },
    )?
    .with_index(Index::ByDue, pk, sk)
    .expiring_at(expiry(day));
    store.put(item, Condition::None).await
}

/// The cycle date one month after `day`, keeping the account's cycle day of month where the month
/// has it (the 31st becomes the month's last day, and comes back in months that have it).
pub fn next_cycle_day(day: Date, cycle_day: u8) -> Date {
    let (year, month) = match day.month() {
        time::Month::December => (day.year() + 1, time::Month::January),
        m => (day.year(), m.next()),
    };
    let last = time::util::days_in_month(month, year);
    Date::from_calendar_date(year, month, cycle_day.clamp(1, last)).unwrap_or(day)
}

fn expiry(day: Date) -> i64 {
    (day + time::Duration::days(DUE_RECORD_DAYS))
        .midnight()
        .assume_utc()
        .unix_timestamp()
}

/// One page of a day's due records of one kind (`prefix`: `BILLING#`, `GRANT#`, `LOWBAL#`, `DOC#`,
/// `JOB#`).
pub async fn page(
    store: &dyn ItemStore,
    day: Date,
    prefix: &str,
    cursor: Option<String>,
) -> Result<Page, StoreError> {
    store
        .query(
            Query::on(Index::ByDue, keys::due_partition(&day_text(day)))
                .prefix(prefix)
                .limit(PAGE)
                .after(cursor),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn tenant(status: SubscriptionStatus) -> Tenant {
        serde_json::from_value(serde_json::json!({
            "tenant_id": "ten_1", "name": "海風", "plan": "starter",
            "subscription_status": status.as_str(),
            "created_at": "2026-01-01T00:00:00Z",
            "trial_ends_at": "2026-03-20T15:00:00Z",
            "current_period_end": "2026-04-01T00:00:00Z",
            "past_due_since": "2026-03-02T10:00:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn each_state_has_its_days() {
        let grace = Duration::from_secs(7 * 86_400);
        assert_eq!(
            billing_days(&tenant(SubscriptionStatus::Trialing), grace),
            [
                date!(2026 - 03 - 13),
                date!(2026 - 03 - 17),
                date!(2026 - 03 - 19)
            ]
        );
        assert_eq!(
            billing_days(&tenant(SubscriptionStatus::Active), grace),
            [date!(2026 - 03 - 25)]
        );
        // Day 1, day 5, and the first run after the grace period (ends 2026-03-09 10:00).
        assert_eq!(
            billing_days(&tenant(SubscriptionStatus::PastDue), grace),
            [
                date!(2026 - 03 - 03),
                date!(2026 - 03 - 07),
                date!(2026 - 03 - 10)
            ]
        );
        let mut cancelling = tenant(SubscriptionStatus::Active);
        cancelling.cancel_at_period_end = true;
        assert!(billing_days(&cancelling, grace).is_empty());
        assert!(billing_days(&tenant(SubscriptionStatus::Canceled), grace).is_empty());
    }

    #[test]
    fn cycle_dates_keep_their_day_of_month() {
        assert_eq!(
            next_cycle_day(date!(2026 - 01 - 31), 31),
            date!(2026 - 02 - 28)
        );
        assert_eq!(
            next_cycle_day(date!(2026 - 02 - 28), 31),
            date!(2026 - 03 - 31)
        );
        assert_eq!(
            next_cycle_day(date!(2026 - 12 - 15), 15),
            date!(2027 - 01 - 15)
        );
        assert_eq!(
            next_cycle_day(date!(2028 - 01 - 29), 29),
            date!(2028 - 02 - 29)
        );
    }
}
