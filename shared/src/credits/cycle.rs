//! The credit ledger's part of the daily deadline job: each account's monthly grant on its cycle date
//! (the first of the month: grants are per calendar month) and the release of reservations nobody
//! settled. The job finds the grants through their due records and guards each with a marker; the
//! ledger keeps its own once-per-month marker as well, so a grant lands once however often either
//! side retries.

use std::sync::Arc;

use futures::future::BoxFuture;
use time::{Date, Month, OffsetDateTime};

use super::account::{self, month_of};
use super::metering::sweep_expired_reservations;
use crate::clock::Clock;
use crate::deadlines::CreditCycle;
use crate::deadlines::actions::credits::{Granted, LowBalance};
use crate::ids::TenantId;
use crate::platform::Platform;
use crate::store::{ItemStore, StoreError, keys};

/// The credit ledger as the deadline job calls it.
pub struct LedgerCycle {
    store: Arc<dyn ItemStore>,
    clock: Arc<dyn Clock>,
}

impl LedgerCycle {
    pub fn of(platform: &Platform) -> Self {
        Self {
            store: platform.store.clone(),
            clock: platform.clock.clone(),
        }
    }
}

/// The first day of the month after `day`'s: an account's next cycle date.
pub fn next_cycle(day: Date) -> Date {
    let (year, month) = match day.month() {
        Month::December => (day.year() + 1, Month::January),
        m => (day.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).unwrap_or(day)
}

/// Writes the due record of an account's next grant (called when an account opens).
pub async fn schedule_next_grant(
    store: &dyn ItemStore,
    tenant: &TenantId,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    crate::deadlines::due::schedule_monthly_grant(store, tenant, next_cycle(now.date())).await
}

impl CreditCycle for LedgerCycle {
    fn monthly_grant(
        &self,
        tenant: &TenantId,
        cycle_day: Date,
    ) -> BoxFuture<'_, anyhow::Result<Option<Granted>>> {
        let tenant = tenant.clone();
        Box::pin(async move {
            let store = self.store.as_ref();
            if store.get(&keys::credit_account(&tenant)).await?.is_none() {
                return Ok(None);
            }
            let month = month_of(cycle_day.midnight().assume_utc());
            let grant = account::monthly_grant(store, &tenant, &month, self.clock.now()).await?;
            Ok(Some(Granted {
                expired: grant.expired.0,
                granted: grant.granted.map_or(0, |c| c.0),
                next_cycle: next_cycle(cycle_day),
            }))
        })
    }

    fn release_expired_reservations(&self, day: Date) -> BoxFuture<'_, anyhow::Result<u64>> {
        Box::pin(async move {
            // Everything due by the end of `day`, but never a hold that is still live now (a run for
            // today happens at midnight, long before today's holds expire).
            let end_of_day = day
                .next_day()
                .map_or(OffsetDateTime::now_utc(), |d| d.midnight().assume_utc());
            let until = end_of_day.min(self.clock.now());
            let swept = sweep_expired_reservations(self.store.as_ref(), until).await?;
            Ok(swept.holds as u64)
        })
    }

    fn low_balance(&self, tenant: &TenantId) -> BoxFuture<'_, anyhow::Result<Option<LowBalance>>> {
        let tenant = tenant.clone();
        Box::pin(async move {
            let store = self.store.as_ref();
            let Some(item) = store.get(&keys::credit_account(&tenant)).await? else {
                return Ok(None);
            };
            let record: account::AccountRecord = item.to_record()?;
            let Some(threshold) = super::auto_top_up::threshold_of(&record) else {
                return Ok(None);
            };
            let balance = record.balance();
            if balance >= threshold.0 {
                return Ok(None);
            }
            let recent = super::ledger::recent_usage(
                store,
                &tenant,
                super::Credits(balance),
                self.clock.now(),
            )
            .await?;
            Ok(Some(LowBalance {
                balance,
                threshold: threshold.0,
                days_left: recent.estimated_days_left,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_cycle_is_the_first_of_the_next_month() {
        use time::macros::date;
        assert_eq!(next_cycle(date!(2026 - 12 - 01)), date!(2027 - 01 - 01));
        assert_eq!(next_cycle(date!(2026 - 01 - 31)), date!(2026 - 02 - 01));
        assert_eq!(next_cycle(date!(2028 - 02 - 29)), date!(2028 - 03 - 01));
    }
}
