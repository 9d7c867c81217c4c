//! The credit system's part of the deadline job: the monthly grant on each account's cycle date, and
//! the release of expired reservations. The credit ledger implements [`CreditCycle`]; the job finds
//! the grants through grant due records ([`schedule_monthly_grant`](super::super::due::schedule_monthly_grant))
//! and guards each with its marker, so a grant happens once per account per cycle date even when the
//! ledger's own write is retried (the ledger keeps its `monthly_credit_resets` record unique as well).

use futures::future::BoxFuture;
use time::Date;

use super::super::due;
use super::super::marker::{Claim, Done, Marker};
use super::{Ctx, Outcome};
use crate::ids::TenantId;

pub const GRANT: &str = "monthly_credit_grant";
pub const RESERVATIONS: &str = "expired_reservations_released";
pub const LOW_BALANCE: &str = "low_balance";

/// A balance below its threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowBalance {
    pub balance: i64,
    pub threshold: i64,
    /// At the last 14 days' burn.
    pub days_left: Option<u64>,
}

/// What a grant did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// Credits of last month's grant that expired.
    pub expired: i64,
    /// Credits granted now.
    pub granted: i64,
    /// The account's next cycle date (its grant due record is written for it).
    pub next_cycle: Date,
}

/// The credit ledger, as the deadline job calls it.
pub trait CreditCycle: Send + Sync + 'static {
    /// Expires last cycle's granted credits and grants the plan's free credits for the cycle starting
    /// on `cycle_day`; `Ok(None)` when the tenant has no credit account (any more).
    fn monthly_grant(
        &self,
        tenant: &TenantId,
        cycle_day: Date,
    ) -> BoxFuture<'_, anyhow::Result<Option<Granted>>>;

    /// Releases every reservation that expired by the end of `day`; returns how many.
    fn release_expired_reservations(&self, day: Date) -> BoxFuture<'_, anyhow::Result<u64>>;

    /// The tenant's balance if it is below the tenant's threshold now; `None` otherwise.
    fn low_balance(&self, tenant: &TenantId) -> BoxFuture<'_, anyhow::Result<Option<LowBalance>>>;
}

/// Grants one account's month (once per cycle date) and schedules its next cycle date.
pub async fn grant(ctx: &Ctx<'_>, credits: &dyn CreditCycle, tenant: &TenantId) -> Outcome {
    let store = ctx.platform.store.as_ref();
    let marker = Marker::new(&ctx.day_text, GRANT, tenant);
    match marker.claim(store, ctx.now(), &ctx.token).await {
        Ok(Claim::Mine(_)) => {}
        Ok(Claim::Done) => return Outcome::AlreadyDone,
        Ok(Claim::Busy) => return Outcome::Busy,
        Err(e) => return ctx.failure(GRANT, tenant, e),
    }
    let granted = match credits.monthly_grant(tenant, ctx.day).await {
        Ok(granted) => granted,
        Err(e) => {
            let _ = marker.release(store, &ctx.token).await;
            return ctx.failure(GRANT, tenant, e);
        }
    };
    let (outcome, done) = match &granted {
        Some(g) => {
            if let Err(e) = due::schedule_monthly_grant(store, tenant, g.next_cycle).await {
                // Granted, but the next date is not booked: keep the marker (no second grant) and
                // report it, so an operator books it.
                let _ = marker
                    .complete(
                        store,
                        ctx.now(),
                        &ctx.token,
                        Done::default().with("granted", g.granted),
                    )
                    .await;
                return ctx.failure(GRANT, tenant, e);
            }
            (
                Outcome::Acted(GRANT),
                Done::default()
                    .with("granted", g.granted)
                    .with("expired", g.expired)
                    .with("next_cycle", super::super::day_text(g.next_cycle)),
            )
        }
        None => (
            Outcome::NotDue,
            Done::default().with("outcome", "no_account"),
        ),
    };
    match marker.complete(store, ctx.now(), &ctx.token, done).await {
        Ok(()) => outcome,
        Err(e) => ctx.failure(GRANT, tenant, e),
    }
}

/// Releases the day's expired reservations (one sweep per day).
pub async fn release_reservations(ctx: &Ctx<'_>, credits: &dyn CreditCycle) -> Vec<Outcome> {
    let store = ctx.platform.store.as_ref();
    let marker = Marker::new(&ctx.day_text, RESERVATIONS, "all");
    match marker.claim(store, ctx.now(), &ctx.token).await {
        Ok(Claim::Mine(_)) => {}
        Ok(Claim::Done) => return vec![Outcome::AlreadyDone],
        Ok(Claim::Busy) => return vec![Outcome::Busy],
        Err(e) => return vec![ctx.failure(RESERVATIONS, "all", e)],
    }
    match credits.release_expired_reservations(ctx.day).await {
        Ok(n) => {
            let done = Done::default().with("released", n);
            if let Err(e) = marker.complete(store, ctx.now(), &ctx.token, done).await {
                return vec![ctx.failure(RESERVATIONS, "all", e)];
            }
            (0..n).map(|_| Outcome::Acted(RESERVATIONS)).collect()
        }
        Err(e) => {
            let _ = marker.release(store, &ctx.token).await;
            vec![ctx.failure(RESERVATIONS, "all", e)]
        }
    }
}

/// The daily low-balance digest: mailed once a day while the balance stays below the threshold, and
/// booked again for the next day; a balance back above it ends the series.
pub async fn low_balance(
    ctx: &Ctx<'_>,
    credits: &dyn CreditCycle,
    tenant_id: &TenantId,
) -> Outcome {
    let store = ctx.platform.store.as_ref();
    let low = match credits.low_balance(tenant_id).await {
        Ok(Some(low)) => low,
        Ok(None) => return Outcome::NotDue,
        Err(e) => return ctx.failure(LOW_BALANCE, tenant_id, e),
    };
    let tenant = match crate::tenants::get_tenant(store, tenant_id).await {
        Ok(t) => t,
        Err(crate::tenants::TenantError::NotFound(_)) => return Outcome::NotDue,
        Err(e) => return ctx.failure(LOW_BALANCE, tenant_id, e),
    };
    let notice = super::super::notices::Notice::LowBalance {
        balance: low.balance,
        threshold: low.threshold,
        days_left: low.days_left,
    };
    let outcome = ctx.mail_once(LOW_BALANCE, &tenant, notice).await;
    if !matches!(outcome, Outcome::Failed(_) | Outcome::Busy)
        && let Err(e) = due::schedule_low_balance(store, tenant_id, ctx.day).await
    {
        return ctx.failure(LOW_BALANCE, tenant_id, e);
    }
    outcome
}
