//! Prepaid AI credits: one wallet per tenant that every AI action draws from.
//!
//! - [`account`]: the balance, split into *granted* (the plan's monthly free credits and bonuses, which
//!   expire at the next grant) and *paid* (purchases, which never expire); usage draws granted first.
//! - [`ledger`]: every change is one immutable entry written in the same transaction as the balance, so
//!   the balance is always the sum of the ledger.
//! - [`metering`]: reserve the most an action can cost with one conditional write (never below zero),
//!   call the model, settle the actual cost and release the rest; a sweeper releases what never settles.
//! - [`pricing`]: micro-USD to credits, one rounding rule for every action.
//! - [`purchases`]: packages bought through Stripe PaymentIntents, credited only by the
//!   `payment_intent.succeeded` webhook, once per intent; [`auto_top_up`]: the low-balance threshold
//!   (`credits.low`, the daily digest) and at most one automatic top-up in flight.

pub mod account;
pub mod analytics;
pub mod anomaly;
pub mod auto_top_up;
pub mod cycle;
pub mod ledger;
pub mod metering;
pub mod packages;
pub mod pricing;
pub mod purchases;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

pub use account::{Balance, monthly_grant};
pub use ledger::{LedgerEntry, TransactionType};
pub use metering::{
    Along, Hold, Meter, MeteredFunction, Reservation, SETTLED_MESSAGE, account_key,
    sweep_expired_reservations,
};
pub use pricing::CreditSettings;

/// An amount of credits. Signed: ledger entries subtract as well as add.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Credits(pub i64);

impl Credits {
    pub const ZERO: Credits = Credits(0);
}

impl std::fmt::Display for Credits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} credits", self.0)
    }
}

/// What a credit operation can fail with; callers match on it, the HTTP edge maps it once.
#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    /// The reservation (or debit) does not fit in the credits available.
    #[error("credits exhausted: {needed} needed, {available} available")]
    Exhausted { available: Credits, needed: Credits },
    /// The tenant used a function more often this hour than its limit allows.
    #[error("too many {function} actions this hour; retry in {retry_after_secs}s")]
    RateLimited {
        function: MeteredFunction,
        retry_after_secs: u64,
    },
    /// AI actions are suspended for the tenant after anomalous usage.
    #[error("AI actions are suspended after unusual activity; retry in {retry_after_secs}s")]
    Suspended { retry_after_secs: u64 },
    /// A request the credit system refuses as malformed (zero or absurd amounts).
    #[error("{0}")]
    Invalid(String),
    /// The account kept changing under concurrent writers past every retry.
    #[error("the credit account of {0} is too busy; try again")]
    Contended(String),
    #[error("credit store: {0}")]
    Store(#[from] StoreError),
}
