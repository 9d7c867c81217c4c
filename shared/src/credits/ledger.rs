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
