//! From micro-USD to credits: `credits = ceil(cost / micro-USD per credit)`, for every AI action.

use std::num::NonZeroI64;

use crate::money::MicroUsd;
use crate::tenants::Plan;

use super::Credits;

/// One credit is worth ¥1. At about ¥150 to the dollar that is $0.0067, i.e. 6,700 micro-USD: a
/// round yen figure for Japanese tenants, and a rate at which a typical chat reply costs one credit.
pub const DEFAULT_MICRO_USD_PER_CREDIT: i64 = 6_700;

/// How long a reservation may stay unsettled before the sweeper gives it back (a chat answer, an
/// execute call or an embedding batch finishes well within it; calls extend theirs every minute).
pub const DEFAULT_HOLD_SECS: i64 = 15 * 60;

/// A call minute: ¥10, about what a minute of realtime audio in and out costs the platform.
pub const DEFAULT_CALL_MINUTE_CREDITS: i64 = 10;

/// The credit system's settings (`KOTOBA_MICRO_USD_PER_CREDIT`, `KOTOBA_CREDIT_HOURLY_LIMIT`,
/// `KOTOBA_CALL_MINUTE_CREDITS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditSettings {
    pub micro_usd_per_credit: NonZeroI64,
    /// Most metered actions per function per tenant per hour.
    pub hourly_limit: i64,
    /// How long a reservation lives unsettled before the sweeper releases it.
    pub hold_secs: i64,
    /// Credits per started minute of a phone call (reserved a minute ahead, in 60-second blocks).
    pub call_minute_credits: i64,
    /// Anomaly detection: when unusual usage alerts and when it suspends AI actions.
    pub anomaly: super::anomaly::AnomalySettings,
}

impl Default for CreditSettings {
    fn default() -> Self {
        Self {
            micro_usd_per_credit: NonZeroI64::new(DEFAULT_MICRO_USD_PER_CREDIT).expect("non-zero"),
            hourly_limit: 10_000,
            hold_secs: DEFAULT_HOLD_SECS,
            call_minute_credits: DEFAULT_CALL_MINUTE_CREDITS,
            anomaly: Default::default(),
        }
    }
}

impl CreditSettings {
    /// The credits a cost comes to, rounded up: usage is never under-charged by rounding, and any
    /// non-zero cost is at least one credit.
    pub fn credits_for(&self, cost: MicroUsd) -> Credits {
        if cost.0 <= 0 {
            return Credits::ZERO;
        }
        let rate = self.micro_usd_per_credit.get();
        Credits(cost.0 / rate + i64::from(cost.0 % rate != 0))
    }
}

impl CreditSettings {
    /// The credits a call of `millis` costs: every started minute.
    pub fn call_credits(&self, millis: u64) -> Credits {
        let minutes = i64::try_from(millis.div_ceil(60_000)).unwrap_or(i64::MAX);
        Credits(minutes.saturating_mul(self.call_minute_credits))
    }
}

/// The free credits a plan grants every month.
pub fn monthly_free_credits(plan: Plan) -> Credits {
    match plan {
        Plan::Starter => Credits(1_000),
        Plan::Pro => Credits(10_000),
        Plan::Enterprise => Credits(100_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_round_up_and_never_charge_nothing_for_something() {
        let s = CreditSettings::default();
        assert_eq!(s.credits_for(MicroUsd(0)), Credits(0));
        assert_eq!(s.credits_for(MicroUsd(-5)), Credits(0));
        assert_eq!(s.credits_for(MicroUsd(1)), Credits(1));
        assert_eq!(s.credits_for(MicroUsd(6_700)), Credits(1));
        assert_eq!(s.credits_for(MicroUsd(6_701)), Credits(2));
        assert_eq!(s.credits_for(MicroUsd(67_000)), Credits(10));
        assert_eq!(s.credits_for(MicroUsd(i64::MAX)).0, i64::MAX / 6_700 + 1);
    }
}
