//! A tenant's credit account: granted and paid credits, changed only together with a ledger entry.
//!
//! Two items per tenant: the account (granted, paid, the ledger's sequence number), changed by
//! optimistic concurrency on that number, and the *available* counter (balance minus what
//! reservations hold), which reservations debit with one conditional add that never goes below zero.
//! Every change to the balance writes the account, the available counter and the ledger entry in one
//! transaction, so the balance is always the sum of the ledger.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::TenantId;
use crate::store::{Add, Condition, Item, ItemStore, StoreError, Update, Write, keys};
use crate::tenants::Plan;

use super::ledger::{LedgerEntry, TransactionType, transaction_id};
use super::{CreditError, Credits, MeteredFunction, pricing};

/// The most credits one operator adjustment may add or take (far beyond any real one; keeps every
/// balance far from overflowing and exact in a DynamoDB number or a JSON client's double).
pub const MAX_ADJUSTMENT: i64 = 100_000_000;

/// How often a change retries when another writer moved the account first.
const MAX_ATTEMPTS: u32 = 400;

/// The account item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AccountRecord {
    /// Credits from the plan's monthly grant and bonuses: expire at the next grant, spent first.
    pub granted: i64,
    /// Purchased credits: never expire.
    pub paid: i64,
    /// The sequence number of the newest ledger entry (0: none yet).
    pub seq: u64,
    /// The plan's free credits per month, set at tenant creation and on plan change.
    #[serde(default)]
    pub monthly_free_credits: i64,
    /// Credits bought, ever.
    #[serde(default)]
    pub total_purchased: i64,
    /// The low-balance threshold and automatic top-up (read by every settle at no extra cost, since
    /// the settle reads this item anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_top_up: Option<super::auto_top_up::AutoTopUp>,
}

impl AccountRecord {
    pub fn balance(&self) -> i64 {
        self.granted + self.paid
    }
}

/// What a reader sees of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Granted + paid.
    pub balance: Credits,
    pub granted: Credits,
    pub paid: Credits,
    /// The balance minus what in-flight reservations hold: what a new action may reserve.
    pub available: Credits,
    pub monthly_free_credits: Credits,
    pub total_purchased: Credits,
}

/// Reads a tenant's balance (an account never written reads as zero).
pub async fn balance(store: &dyn ItemStore, tenant: &TenantId) -> Result<Balance, StoreError> {
    Ok(balance_and_record(store, tenant).await?.0)
}

/// The balance and the account item it was read from (its settings).
pub async fn balance_and_record(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<(Balance, AccountRecord), StoreError> {
    let (account, available) = tokio::join!(
        store.get(&keys::credit_account(tenant)),
        store.get(&keys::credits_available(tenant))
    );
    let record: AccountRecord = match account? {
        Some(item) => item.to_record()?,
        None => AccountRecord::default(),
    };
    let available = available?.map_or(0, |item| item.count(AVAILABLE));
    let balance = Balance {
        balance: Credits(record.balance()),
        granted: Credits(record.granted),
        paid: Credits(record.paid),
        available: Credits(available),
        monthly_free_credits: Credits(record.monthly_free_credits),
        total_purchased: Credits(record.total_purchased),
    };
    Ok((balance, record))
}

/// The available counter's attribute.
pub(crate) const AVAILABLE: &str = "credits";

/// One change to an account, worked out from its current state.
pub(crate) struct Change {
    pub kind: TransactionType,
    /// Added to granted and to paid (negative to spend).
    pub granted: i64,
    pub paid: i64,
    /// Added to the available counter; a negative amount is refused below zero.
    pub available: i64,
    pub function: Option<MeteredFunction>,
    pub reference_id: Option<String>,
    pub request_id: Option<String>,
    pub reason: Option<String>,
    /// Other writes that stand or fall with the change (a grant marker, a reservation's release).
    pub also: Vec<Write>,
    /// Settings of the account that change along (the plan's monthly free credits).
    pub monthly_free_credits: Option<i64>,
    /// What a refusal of `also` or of the available counter means to the caller.
    pub refused: fn(&AccountRecord, i64) -> CreditError,
}

/// Spends `credits` from an account: granted first, then paid.
pub(crate) fn draw(record: &AccountRecord, credits: i64) -> (i64, i64) {
    let from_granted = credits.min(record.granted.max(0));
    (-from_granted, -(credits - from_granted))
}

pub(crate) fn exhausted(record: &AccountRecord, needed: i64) -> CreditError {
    CreditError::Exhausted {
        available: Credits(record.balance()),
        needed: Credits(needed),
    }
}

/// Applies one change: reads the account, lets `plan` work out the change (or decline with `Ok(None)`),
/// and writes account, available counter and ledger entry in one transaction, retrying while other
/// writers move the account first. Returns the entry written.
pub(crate) async fn apply<F>(
    store: &dyn ItemStore,
    tenant: &TenantId,
    now: OffsetDateTime,
    plan: F,
) -> Result<Option<LedgerEntry>, CreditError>
where
    F: FnMut(&AccountRecord) -> Result<Option<Change>, CreditError>,
{
    apply_from(store, tenant, now, None, plan).await
}

/// [`apply`], whose first attempt starts from `known` (the account item as read before, `Some(None)`
/// when it did not exist) instead of reading it: one round trip fewer when nobody moved it since.
pub(crate) async fn apply_from<F>(
    store: &dyn ItemStore,
    tenant: &TenantId,
    now: OffsetDateTime,
    mut known: Option<Option<Item>>,
    mut plan: F,
) -> Result<Option<LedgerEntry>, CreditError>
where
    F: FnMut(&AccountRecord) -> Result<Option<Change>, CreditError>,
{
    let account_key = keys::credit_account(tenant);
    for attempt in 0..MAX_ATTEMPTS {
        let current = match known.take() {
            Some(item) => item,
            None => store.get(&account_key).await?,
        };
        let (record, exists) = match current {
            Some(item) => (item.to_record::<AccountRecord>()?, true),
            None => (AccountRecord::default(), false),
        };
        let Some(change) = plan(&record)? else {
            return Ok(None);
        };
        let credits = change.granted + change.paid;
        let mut next = record.clone();
        next.granted += change.granted;
        next.paid += change.paid;
        next.seq += 1;
        if let Some(free) = change.monthly_free_credits {
            next.monthly_free_credits = free;
        }
        if change.kind == TransactionType::Purchase {
            next.total_purchased += change.paid;
        }
        if next.granted < 0 || next.paid < 0 {
            return Err((change.refused)(&record, -credits));
        }
        let entry = LedgerEntry {
            transaction_id: transaction_id(next.seq),
            kind: change.kind,
            credits: Credits(credits),
            granted_credits: Credits(change.granted),
            balance_after: Credits(next.balance()),
            function: change.function,
            reference_id: change.reference_id.clone(),
            request_id: change.request_id.clone(),
            reason: change.reason.clone(),
            created_at: now,
        };
        // An existing account is updated field by field (under its sequence number), so settings
        // written beside the balance (the auto top-up) are never overwritten by a stale copy.
        let account_write = if exists {
            let mut update = Update::new(account_key.clone())
                .set("granted", next.granted)
                .set("paid", next.paid)
                .set("seq", next.seq)
                .when(Condition::AttributeEquals("seq".into(), record.seq.into()));
            if next.total_purchased != record.total_purchased {
                update = update.set("total_purchased", next.total_purchased);
            }
            if next.monthly_free_credits != record.monthly_free_credits {
                update = update.set("monthly_free_credits", next.monthly_free_credits);
            }
            Write::Update(update)
        } else {
            Write::Put(
                Item::from_record(account_key.clone(), &next)?,
                Condition::IfAbsent,
            )
        };
        let mut writes = vec![
            account_write,
            Write::Put(
                Item::from_record(keys::credit_ledger_entry(tenant, next.seq), &entry)?,
                Condition::IfAbsent,
            ),
        ];
        if change.available != 0 {
            let mut add = Add::new(keys::credits_available(tenant), AVAILABLE, change.available);
            if change.available < 0 {
                add = add.at_least(0);
            }
            writes.push(Write::Add(add));
        }
        writes.extend(change.also.iter().cloned());
        match store.transact(writes).await {
            Ok(()) => return Ok(Some(entry)),
            Err(StoreError::ConditionFailed) => {
                // Another writer moved the account: plan again. Otherwise the change itself was refused.
                let moved = match store.get(&account_key).await? {
                    Some(item) => item.to_record::<AccountRecord>()?.seq != record.seq || !exists,
                    None => exists,
                };
                if !moved {
                    return Err((change.refused)(&record, -credits));
                }
                // Spread the retries of many writers over time instead of colliding again at once.
                let spread =
                    1 + (attempt.min(8) as u64) + (now.nanosecond() as u64 + attempt as u64) % 5;
                tokio::time::sleep(Duration::from_millis(spread)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CreditError::Contended(tenant.to_string()))
}

fn refused_as_exhausted(record: &AccountRecord, needed: i64) -> CreditError {
    exhausted(record, needed.max(0))
}

/// Adds (or, negative, takes away) credits as an operator: positive is a `bonus` of granted credits,
/// negative an `adjustment` that draws granted first and never takes the balance below zero (nor
/// below what reservations hold).
pub async fn adjust(
    store: &dyn ItemStore,
    tenant: &TenantId,
    credits: Credits,
    reason: &str,
    request_id: Option<String>,
    now: OffsetDateTime,
) -> Result<LedgerEntry, CreditError> {
    if credits.0 == 0 {
        return Err(CreditError::Invalid(
            "an adjustment of 0 credits changes nothing".into(),
        ));
    }
    if credits.0.unsigned_abs() > MAX_ADJUSTMENT as u64 {
        return Err(CreditError::Invalid(format!(
            "an adjustment is at most {MAX_ADJUSTMENT} credits either way"
        )));
    }
    let entry = apply(store, tenant, now, |record| {
        let (granted, paid, kind) = if credits.0 > 0 {
            (credits.0, 0, TransactionType::Bonus)
        } else {
            if record.balance() < -credits.0 {
                return Err(exhausted(record, -credits.0));
            }
            let (g, p) = draw(record, -credits.0);
            (g, p, TransactionType::Adjustment)
        };
        Ok(Some(Change {
            kind,
            granted,
            paid,
            available: credits.0,
            function: None,
            reference_id: None,
            request_id: request_id.clone(),
            reason: Some(reason.to_string()),
            also: Vec::new(),
            monthly_free_credits: None,
            refused: refused_as_exhausted,
        }))
    })
    .await?;
    entry.ok_or_else(|| CreditError::Invalid("the adjustment was not applied".into()))
}

/// Records the plan's monthly free credits on the account (tenant creation and plan change): they
/// apply from the next monthly grant.
pub async fn set_plan(
    store: &dyn ItemStore,
    tenant: &TenantId,
    plan: Plan,
) -> Result<(), CreditError> {
    let free = pricing::monthly_free_credits(plan).0;
    let key = keys::credit_account(tenant);
    for _ in 0..MAX_ATTEMPTS {
        let written = match store.get(&key).await? {
            Some(item) => {
                let record: AccountRecord = item.to_record()?;
                if record.monthly_free_credits == free {
                    return Ok(());
                }
                // Only this field: the balance and the other settings stay as other writers left them.
                store
                    .update(
                        Update::new(key.clone())
                            .set("monthly_free_credits", free)
                            .when(Condition::IfExists),
                    )
                    .await
                    .map(drop)
            }
            None => {
                let record = AccountRecord {
                    monthly_free_credits: free,
                    ..AccountRecord::default()
                };
                store
                    .put(
                        Item::from_record(key.clone(), &record)?,
                        Condition::IfAbsent,
                    )
                    .await
            }
        };
        match written {
            Ok(()) => return Ok(()),
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CreditError::Contended(tenant.to_string()))
}

/// Opens a new tenant's account: the plan's monthly free credits, and this month's grant.
pub async fn open(
    store: &dyn ItemStore,
    tenant: &TenantId,
    plan: Plan,
    now: OffsetDateTime,
) -> Result<(), CreditError> {
    set_plan(store, tenant, plan).await?;
    monthly_grant(store, tenant, &month_of(now), now).await?;
    super::cycle::schedule_next_grant(store, tenant, now).await?;
    Ok(())
}

/// The month (`YYYY-MM`) of an instant.
pub fn month_of(at: OffsetDateTime) -> String {
    format!("{:04}-{:02}", at.year(), u8::from(at.month()))
}

/// What one monthly grant did.
#[derive(Debug, Clone, PartialEq)]
pub struct MonthlyGrant {
    /// Granted credits of the previous month that expired (0 when none were left).
    pub expired: Credits,
    /// Credits granted for `month`; `None` when this month's grant had already landed.
    pub granted: Option<Credits>,
}

/// The monthly grant of one account for one month (`YYYY-MM`): expires what is left of the granted
/// credits, then grants the plan's monthly free credits, exactly once per account and month (a marker
/// written in the grant's transaction refuses a second grant, whoever runs it and however often).
///
/// Granted credits that an in-flight reservation holds at that moment are being spent and do not
/// expire; only the available part of the granted balance does.
pub async fn monthly_grant(
    store: &dyn ItemStore,
    tenant: &TenantId,
    month: &str,
    now: OffsetDateTime,
) -> Result<MonthlyGrant, CreditError> {
    let valid_month = month.len() == 7
        && month.as_bytes()[4] == b'-'
        && month[..4].bytes().all(|b| b.is_ascii_digit())
        && month[5..]
            .parse::<u8>()
            .is_ok_and(|m| (1..=12).contains(&m));
    if !valid_month {
        return Err(CreditError::Invalid(format!(
            "{month:?} is not a month (YYYY-MM)"
        )));
    }
    let marker = keys::monthly_grant(tenant, month);
    let already = MonthlyGrant {
        expired: Credits::ZERO,
        granted: None,
    };
    if store.get(&marker).await?.is_some() {
        return Ok(already);
    }
    // Expire first, in its own entry, and only while this month's grant has not landed (a run racing
    // this one must not expire the grant it just made). Granted credits a reservation holds are being
    // spent: only the available part expires.
    let available_key = keys::credits_available(tenant);
    let not_granted = Write::Check(marker.clone(), Condition::IfAbsent);
    let mut expired = Credits::ZERO;
    for _ in 0..MAX_ATTEMPTS {
        let available = store
            .get(&available_key)
            .await?
            .map_or(0, |item| item.count(AVAILABLE));
        let expiry = apply(store, tenant, now, |record| {
            let expire = record.granted.min(available);
            if expire <= 0 {
                return Ok(None);
            }
            Ok(Some(Change {
                kind: TransactionType::Expiry,
                granted: -expire,
                paid: 0,
                available: -expire,
                function: None,
                reference_id: Some(format!("grant:{month}")),
                request_id: None,
                reason: None,
                also: vec![not_granted.clone()],
                monthly_free_credits: None,
                refused: |_, _| CreditError::Invalid("refused".into()),
            }))
        })
        .await;
        match expiry {
            Ok(entry) => {
                expired = entry.map_or(Credits::ZERO, |e| Credits(-e.credits.0));
                break;
            }
            // Either the grant landed meanwhile, or a reservation took some of the available credits.
            Err(CreditError::Invalid(_)) => {
                if store.get(&marker).await?.is_some() {
                    return Ok(already);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let marker_write = Write::Put(
        Item::new(marker).with("granted_at", now.unix_timestamp()),
        Condition::IfAbsent,
    );
    let granted = apply(store, tenant, now, |record| {
        if record.monthly_free_credits <= 0 {
            return Ok(None);
        }
        Ok(Some(Change {
            kind: TransactionType::MonthlyGrant,
            granted: record.monthly_free_credits,
            paid: 0,
            available: record.monthly_free_credits,
            function: None,
            reference_id: Some(format!("grant:{month}")),
            request_id: None,
            reason: None,
            also: vec![marker_write.clone()],
            monthly_free_credits: None,
            refused: |_, _| CreditError::Invalid("already granted".into()),
        }))
    })
    .await;
    match granted {
        Ok(entry) => Ok(MonthlyGrant {
            expired,
            granted: entry.map(|e| e.credits),
        }),
        // Another run granted this month between our read of the marker and our write.
        Err(CreditError::Invalid(_)) => Ok(MonthlyGrant {
            expired,
            granted: None,
        }),
        Err(e) => Err(e),
    }
}
