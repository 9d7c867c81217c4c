//! Call minutes, counted in seconds on the tenant's monthly usage counter with the same atomic "add
//! unless over the limit" primitive that chat quotas use.
//!
//! When a media stream starts, the bridge reserves a first block of seconds against the plan's limit in
//! one conditional write: concurrent calls cannot all slip through on the last remaining minute. The
//! write returns the new total, so the call also learns how long it may last. When the call ends, the
//! reservation is settled to the call's actual (whole, rounded-up) seconds.

use time::OffsetDateTime;

use crate::ids::TenantId;
use crate::store::{Add, ItemStore, Key, StoreError};
use crate::tenants::Plan;
use crate::usage::{self, counters};

/// Seconds reserved when a call starts; a tenant with less than this left is out of minutes.
pub const ADMISSION_BLOCK_SECS: i64 = 60;

/// Monthly counters outlive their month (the same retention the usage module gives them).
const COUNTER_RETENTION_SECS: i64 = 400 * 24 * 3600;

/// The plan's monthly allowance in seconds.
pub fn limit_seconds(plan: Plan) -> i64 {
    i64::try_from(plan.limits().monthly_call_minutes)
        .unwrap_or(i64::MAX / 60)
        .saturating_mul(60)
}

/// The tenant's call-seconds counter for the month of `now`.
pub fn counter_key(tenant: &TenantId, now: OffsetDateTime) -> Key {
    usage::tenant_month(tenant, &usage::month_of(now))
}

/// Seconds used this month (a read; admission's first look, before any reservation).
pub async fn used_seconds(
    store: &dyn ItemStore,
    tenant: &TenantId,
    now: OffsetDateTime,
) -> Result<i64, StoreError> {
    Ok(store
        .get(&counter_key(tenant, now))
        .await?
        .map(|item| item.count(counters::CALL_SECONDS))
        .unwrap_or(0))
}

/// Whether a call may start: at least one block of seconds is left.
pub async fn has_minutes(
    store: &dyn ItemStore,
    tenant: &TenantId,
    plan: Plan,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    Ok(used_seconds(store, tenant, now).await? + ADMISSION_BLOCK_SECS <= limit_seconds(plan))
}

/// Seconds held for a call in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReservation {
    pub key: Key,
    pub reserved_secs: i64,
    /// How long the call may last: the block plus what was left of the month after it.
    pub allowed_secs: u64,
}

/// Reserves the first block of a call atomically. `Ok(None)`: the plan's minutes are exhausted.
pub async fn reserve(
    store: &dyn ItemStore,
    tenant: &TenantId,
    plan: Plan,
    now: OffsetDateTime,
) -> Result<Option<CallReservation>, StoreError> {
    let key = counter_key(tenant, now);
    let limit = limit_seconds(plan);
    // `usage::reserve` is this same Add; it is used directly because the new total sets the call's length.
    let add = Add::new(key.clone(), counters::CALL_SECONDS, ADMISSION_BLOCK_SECS)
        .up_to(limit)
        .expiring_at(now.unix_timestamp() + COUNTER_RETENTION_SECS);
    match store.add(add).await {
        Ok(total) => Ok(Some(CallReservation {
            key,
            reserved_secs: ADMISSION_BLOCK_SECS,
            allowed_secs: u64::try_from(ADMISSION_BLOCK_SECS + (limit - total).max(0)).unwrap_or(0),
        })),
        Err(StoreError::ConditionFailed) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Settles a reservation to the call's actual seconds (adds the rest, or gives back what was unused).
/// A call that ran past the plan is still counted: it happened.
pub async fn settle(
    store: &dyn ItemStore,
    reservation: &CallReservation,
    actual_secs: u64,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let actual = i64::try_from(actual_secs).unwrap_or(i64::MAX);
    let delta = actual - reservation.reserved_secs;
    if delta != 0 {
        usage::record(
            store,
            reservation.key.clone(),
            counters::CALL_SECONDS,
            delta,
            now,
        )
        .await?;
    }
    Ok(())
}

/// Whole seconds billed for a call of `millis`: rounded up, as carriers bill.
pub fn billable_seconds(millis: u64) -> u64 {
    millis.div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_allow_their_minutes_in_seconds() {
        assert_eq!(limit_seconds(Plan::Starter), 3_600);
        assert_eq!(billable_seconds(0), 0);
        assert_eq!(billable_seconds(1), 1);
        assert_eq!(billable_seconds(61_000), 61);
        assert_eq!(billable_seconds(61_001), 62);
    }
}
