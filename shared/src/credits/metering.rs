//! Metering, one service for every AI action: reserve the most an action can cost before the model is
//! called (one conditional write: the available credits never go below zero, whatever the
//! concurrency), settle the actual cost after it and release the rest. Chat replies, training
//! embeddings, call minutes and `POST /api/ai/execute` all go through [`Meter`].
//!
//! The reservation's one transaction also checks that AI actions are not suspended for the tenant and
//! counts the action against its hourly limit, so protection adds no round trip before the model call.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::ids::{IdGenerator, TenantId};
use crate::store::{Add, Condition, Index, Item, ItemStore, Query, StoreError, Write, keys};

use super::account::{self, AVAILABLE, Change, draw, exhausted};
use super::ledger::{LedgerEntry, TransactionType};
use super::{CreditError, CreditSettings, Credits};

/// What an AI action is, for prices, limits, the ledger and analytics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeteredFunction {
    /// A chat reply (widget or API).
    Chat,
    /// Embedding tokens spent training a site.
    Training,
    /// Phone-call minutes.
    Call,
    /// A direct `POST /api/ai/execute` call.
    Execute,
}

impl MeteredFunction {
    pub const ALL: [MeteredFunction; 4] = [
        MeteredFunction::Chat,
        MeteredFunction::Training,
        MeteredFunction::Call,
        MeteredFunction::Execute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MeteredFunction::Chat => "chat",
            MeteredFunction::Training => "training",
            MeteredFunction::Call => "call",
            MeteredFunction::Execute => "execute",
        }
    }
}

impl std::fmt::Display for MeteredFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stored reservation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HoldRecord {
    hold_id: String,
    tenant_id: TenantId,
    function: MeteredFunction,
    credits: i64,
    /// Unix seconds after which the sweeper releases it.
    due: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

/// The log line every charged settle writes, with its `credits` (the stack's CreditsSpent metric).
pub const SETTLED_MESSAGE: &str = "credits settled";

/// Credits reserved for one action, until it settles or is released.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a hold must be settled or released, or the sweeper gives it back later"]
pub struct Hold {
    pub hold_id: String,
    pub tenant: TenantId,
    pub function: MeteredFunction,
    /// What is reserved now (an extension raises it).
    pub credits: Credits,
    pub due: i64,
    pub request_id: Option<String>,
}

impl Hold {
    fn record(&self) -> HoldRecord {
        HoldRecord {
            hold_id: self.hold_id.clone(),
            tenant_id: self.tenant.clone(),
            function: self.function,
            credits: self.credits.0,
            due: self.due,
            request_id: self.request_id.clone(),
        }
    }

    fn item(&self) -> Result<Item, StoreError> {
        let (pk, sk) = keys::credit_hold_due(self.due, &self.hold_id);
        Ok(
            Item::from_record(keys::credit_hold(&self.hold_id), &self.record())?.with_index(
                Index::ByDue,
                pk,
                sk,
            ),
        )
    }
}

/// The metering service.
#[derive(Clone)]
pub struct Meter {
    store: Arc<dyn ItemStore>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    settings: CreditSettings,
    watch: super::anomaly::Watch,
    /// The platform, for what a settle may set off (`credits.low`, an automatic top-up); absent in
    /// unit tests of the meter alone.
    platform: Option<Arc<crate::platform::Platform>>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The hour (unix seconds / 3600) of an instant, and the seconds left in it.
fn hour_of(now_unix: i64) -> (i64, i64) {
    let hour = now_unix.div_euclid(3600);
    (hour, (hour + 1) * 3600 - now_unix)
}

impl Meter {
    pub fn new(
        store: Arc<dyn ItemStore>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        settings: CreditSettings,
    ) -> Self {
        let watch = super::anomaly::Watch::new(
            store.clone(),
            clock.clone(),
            ids.clone(),
            settings.anomaly.clone(),
        );
        Self {
            store,
            clock,
            ids,
            settings,
            watch,
            platform: None,
        }
    }

    /// The meter over a platform's store, clock, ids and credit settings.
    pub fn of(platform: &Arc<crate::platform::Platform>) -> Self {
        let meter = Self::new(
            platform.store.clone(),
            platform.clock.clone(),
            platform.ids.clone(),
            platform.config.credits.clone(),
        );
        let watch = meter
            .watch
            .clone()
            .with_events(platform.webhook_queue.clone());
        Self {
            watch,
            platform: Some(platform.clone()),
            ..meter
        }
    }

    pub fn settings(&self) -> &CreditSettings {
        &self.settings
    }

    /// Reserves `credits` for one action of `function`, in one store transaction: the available
    /// credits go down (never below zero), the hold is recorded for the sweeper, the hourly count goes
    /// up (never past the limit), and the tenant must not be suspended.
    #[tracing::instrument(skip(self), fields(tenant = %tenant, function = %function, credits = credits.0))]
    pub async fn reserve(
        &self,
        tenant: &TenantId,
        function: MeteredFunction,
        credits: Credits,
        request_id: Option<&str>,
    ) -> Result<Hold, CreditError> {
        let Reservation { hold, writes } =
            self.reservation(tenant, function, credits, request_id)?;
        match self.store.transact(writes).await {
            Ok(()) => Ok(hold),
            Err(StoreError::ConditionFailed) => {
                Err(self.why_refused(tenant, function, credits).await)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The writes of a reservation, for a caller that runs them in a transaction of its own along
    /// with other writes (chat reserves its quota, its credits and reads its session in one round
    /// trip). The hold exists once those writes are committed; if that transaction is refused,
    /// [`Meter::refusal`] tells whether the credits refused it.
    pub fn reservation(
        &self,
        tenant: &TenantId,
        function: MeteredFunction,
        credits: Credits,
        request_id: Option<&str>,
    ) -> Result<Reservation, CreditError> {
        if credits.0 < 0 {
            return Err(CreditError::Invalid(format!(
                "a reservation of {credits} is negative"
            )));
        }
        let now = self.clock.unix_seconds();
        let hold = Hold {
            hold_id: format!("hold_{}", self.ids.new_id()),
            tenant: tenant.clone(),
            function,
            credits,
            due: now + self.settings.hold_secs,
            request_id: request_id.map(str::to_string),
        };
        let (hour, _) = hour_of(now);
        let mut writes = vec![
            Write::Check(keys::ai_suspension(tenant), Condition::IfAbsent),
            Write::Add(
                Add::new(keys::credit_hour(tenant, hour), function.as_str(), 1)
                    .up_to(self.settings.hourly_limit)
                    .expiring_at((hour + 1) * 3600 + 40 * 86_400),
            ),
        ];
        if credits.0 > 0 {
            writes.push(Write::Add(
                Add::new(keys::credits_available(tenant), AVAILABLE, -credits.0).at_least(0),
            ));
            writes.push(Write::Put(hold.item()?, Condition::IfAbsent));
        }
        Ok(Reservation { hold, writes })
    }

    /// After a transaction holding a [`Meter::reservation`] was refused: the credit system's reason
    /// (suspended, the hourly limit, or exhausted), or `None` when none of its conditions explains
    /// it (another write of that transaction refused it). Reads; only on that rare path.
    pub async fn refusal(
        &self,
        tenant: &TenantId,
        function: MeteredFunction,
        credits: Credits,
    ) -> Option<CreditError> {
        match self.why_refused(tenant, function, credits).await {
            CreditError::Exhausted { available, needed } if available.0 >= needed.0 => None,
            other => Some(other),
        }
    }

    /// After a refused reservation: which condition refused it (read only on this rare path).
    async fn why_refused(
        &self,
        tenant: &TenantId,
        function: MeteredFunction,
        credits: Credits,
    ) -> CreditError {
        let now = self.clock.unix_seconds();
        let (hour, left) = hour_of(now);
        let (suspended, count, available) = tokio::join!(
            self.store.get(&keys::ai_suspension(tenant)),
            self.store.get(&keys::credit_hour(tenant, hour)),
            self.store.get(&keys::credits_available(tenant)),
        );
        if let Ok(Some(item)) = suspended {
            let until = item.expires_at.unwrap_or(now + 3600);
            return CreditError::Suspended {
                retry_after_secs: (until - now).max(1) as u64,
            };
        }
        if let Ok(Some(item)) = count
            && item.count(function.as_str()) >= self.settings.hourly_limit
        {
            return CreditError::RateLimited {
                function,
                retry_after_secs: left.max(1) as u64,
            };
        }
        match available {
            Ok(item) => CreditError::Exhausted {
                available: Credits(item.map_or(0, |i| i.count(AVAILABLE))),
                needed: credits,
            },
            Err(e) => e.into(),
        }
    }

    /// Reserves `more` credits on a running hold (a call's next minute), in one transaction; refused
    /// when the available credits do not cover it, in which case the hold is unchanged.
    pub async fn extend(&self, hold: &mut Hold, more: Credits) -> Result<(), CreditError> {
        if more.0 <= 0 {
            return Ok(());
        }
        let now = self.clock.unix_seconds();
        let mut extended = hold.clone();
        extended.credits = Credits(hold.credits.0 + more.0);
        extended.due = now + self.settings.hold_secs;
        let mut writes = vec![Write::Add(
            Add::new(keys::credits_available(&hold.tenant), AVAILABLE, -more.0).at_least(0),
        )];
        let condition = if hold.credits.0 > 0 {
            Condition::AttributeEquals("credits".into(), hold.credits.0.into())
        } else {
            Condition::IfAbsent
        };
        writes.push(Write::Put(extended.item()?, condition));
        match self.store.transact(writes).await {
            Ok(()) => {
                *hold = extended;
                Ok(())
            }
            Err(StoreError::ConditionFailed) => {
                let available = self
                    .store
                    .get(&keys::credits_available(&hold.tenant))
                    .await?
                    .map_or(0, |i| i.count(AVAILABLE));
                Err(CreditError::Exhausted {
                    available: Credits(available),
                    needed: more,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Settles a hold at what the action actually cost (at most what was reserved: a reservation is
    /// the most an action can cost) and releases the rest, writing one `usage` ledger entry.
    #[tracing::instrument(skip(self, hold), fields(tenant = %hold.tenant, hold = %hold.hold_id, actual = actual.0))]
    pub async fn settle(
        &self,
        hold: Hold,
        actual: Credits,
        reference_id: Option<&str>,
    ) -> Result<Option<LedgerEntry>, CreditError> {
        self.settle_with(hold, actual, reference_id, Along::default())
            .await
    }

    /// [`Meter::settle`] with the caller's own writes in the same transaction (an answer's usage log,
    /// counters and session: one round trip settles everything), starting from the account as the
    /// caller read it earlier when it did. The writes in `along` are written exactly once, whether the
    /// action is charged, costs nothing, or its hold was already swept.
    #[tracing::instrument(skip(self, hold, along), fields(tenant = %hold.tenant, hold = %hold.hold_id, actual = actual.0))]
    pub async fn settle_with(
        &self,
        hold: Hold,
        actual: Credits,
        reference_id: Option<&str>,
        along: Along,
    ) -> Result<Option<LedgerEntry>, CreditError> {
        let store = self.store.as_ref();
        let now = self.clock.now();
        if actual.0 > hold.credits.0 {
            tracing::warn!(
                reserved = hold.credits.0,
                actual = actual.0,
                "an action cost more than its reservation; charging the reservation"
            );
        }
        let actual = actual.0.clamp(0, hold.credits.0);
        let Along {
            writes: also,
            account,
        } = along;
        if actual == 0 {
            self.watch.observe(&hold).await;
            return self.release_with(hold, also).await.map(|()| None);
        }
        let hold_key = keys::credit_hold(&hold.hold_id);
        let held = hold.credits.0;
        let release = Write::Delete(
            hold_key.clone(),
            Condition::AttributeEquals("credits".into(), held.into()),
        );
        // The account as the settle found it: its low-balance threshold and auto top-up settings.
        let seen = std::sync::Mutex::new(None::<account::AccountRecord>);
        let usage = |available: i64, also: Vec<Write>| {
            let (function, request_id) = (hold.function, hold.request_id.clone());
            let reference_id = reference_id.map(str::to_string);
            let seen = &seen;
            move |record: &account::AccountRecord| {
                if let Ok(mut seen) = seen.lock() {
                    *seen = Some(record.clone());
                }
                let (granted, paid) = draw(record, actual);
                Ok(Some(Change {
                    kind: TransactionType::Usage,
                    granted,
                    paid,
                    available,
                    function: Some(function),
                    reference_id: reference_id.clone(),
                    request_id: request_id.clone(),
                    reason: None,
                    also: also.clone(),
                    monthly_free_credits: None,
                    refused: |_, _| CreditError::Invalid("the reservation is gone".into()),
                }))
            }
        };
        let mut with_release = vec![release];
        with_release.extend(also.iter().cloned());
        let settled = match account::apply_from(
            store,
            &hold.tenant,
            now,
            account,
            usage(held - actual, with_release),
        )
        .await
        {
            Ok(entry) => Ok(entry),
            // The sweeper released the hold first (the action outlived it): charge afresh, within
            // what is available.
            Err(CreditError::Invalid(_)) => {
                tracing::warn!(hold = %hold.hold_id, "settling a hold the sweeper released");
                let charged = account::apply(store, &hold.tenant, now, {
                    let plan = usage(-actual, also.clone());
                    move |record: &account::AccountRecord| {
                        plan(record).map(|change| {
                            change.map(|mut c| {
                                c.refused = exhausted;
                                c
                            })
                        })
                    }
                })
                .await;
                if charged.is_err() && !also.is_empty() {
                    // Not charged (the credits ran out meanwhile): the caller's records still land.
                    store.transact(also).await?;
                }
                charged
            }
            Err(e) => Err(e),
        }?;
        if settled.is_some() {
            // The dashboard's credits-spent metric (template.yaml's CreditsMetricFilter) reads this line.
            tracing::info!(credits = actual, function = ?hold.function, "{SETTLED_MESSAGE}");
        }
        // After the settle's one transaction: anomaly detection counts the action (one add, for the
        // watched functions; anomaly.rs), and a balance that fell below the threshold sets off
        // `credits.low` or a top-up (auto_top_up.rs; nothing when it did not).
        self.watch.observe(&hold).await;
        let record = seen.lock().ok().and_then(|mut seen| seen.take());
        if let (Some(platform), Some(entry), Some(record)) = (&self.platform, &settled, record) {
            super::auto_top_up::after_usage(platform, &hold.tenant, &record, entry).await;
        }
        Ok(settled)
    }

    /// Gives a hold back whole (the action failed before it cost anything).
    pub async fn release(&self, hold: Hold) -> Result<(), CreditError> {
        self.release_with(hold, Vec::new()).await
    }

    /// Gives a hold back whole with the caller's writes in the same transaction.
    async fn release_with(&self, hold: Hold, also: Vec<Write>) -> Result<(), CreditError> {
        let store = self.store.as_ref();
        if hold.credits.0 == 0 {
            if !also.is_empty() {
                store.transact(also).await?;
            }
            return Ok(());
        }
        let mut writes = release_writes(&hold.tenant, &hold.hold_id, hold.credits.0);
        writes.extend(also.iter().cloned());
        match store.transact(writes).await {
            Ok(()) => Ok(()),
            // Already settled, released or swept: nothing is held any more; the rest still lands.
            Err(StoreError::ConditionFailed) => {
                if !also.is_empty() {
                    store.transact(also).await?;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A reservation's writes and the hold they make (see [`Meter::reservation`]).
#[derive(Debug)]
pub struct Reservation {
    pub hold: Hold,
    pub writes: Vec<Write>,
}

/// What a caller settles along with a hold ([`Meter::settle_with`]).
#[derive(Debug, Default)]
pub struct Along {
    /// Writes that land with the settle, in its transaction (an answer's usage log, counters,
    /// session). They must not touch the credit items, and their own conditions must hold.
    pub writes: Vec<Write>,
    /// The account item as read before (`Some(None)`: it did not exist): the settle's first attempt
    /// works from it instead of reading it again; a stale one costs a retry, never a wrong charge (the
    /// write is conditional on the account's sequence number).
    pub account: Option<Option<Item>>,
}

/// The key a caller reads to hand the account to [`Meter::settle_with`] ([`Along::account`]).
pub fn account_key(tenant: &TenantId) -> crate::store::Key {
    keys::credit_account(tenant)
}

/// The writes that delete a hold (if it still holds `credits`) and return them to the available counter.
fn release_writes(tenant: &TenantId, hold_id: &str, credits: i64) -> Vec<Write> {
    vec![
        Write::Delete(
            keys::credit_hold(hold_id),
            Condition::AttributeEquals("credits".into(), credits.into()),
        ),
        Write::Add(Add::new(
            keys::credits_available(tenant),
            AVAILABLE,
            credits,
        )),
    ]
}

/// Deletes a hold (if it still holds `credits`) and returns its credits to the available counter.
async fn release_hold(
    store: &dyn ItemStore,
    tenant: &TenantId,
    hold_id: &str,
    credits: i64,
) -> Result<(), CreditError> {
    match store
        .transact(release_writes(tenant, hold_id, credits))
        .await
    {
        // Already settled, released or swept: nothing is held any more.
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What one sweep released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    pub holds: usize,
    pub credits: Credits,
}

/// The sweeper: releases every reservation due before `now` that was never settled (its process died,
/// or it lost track of it), giving its credits back. Safe to run concurrently and repeatedly: each
/// hold is released by one conditional delete.
pub async fn sweep_expired_reservations(
    store: &dyn ItemStore,
    now: OffsetDateTime,
) -> Result<Swept, CreditError> {
    let now_unix = now.unix_timestamp();
    let mut swept = Swept::default();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                Query::on(Index::ByDue, keys::CREDIT_HOLDS)
                    .prefix(keys::prefix::HOLD)
                    .limit(100)
                    .after(cursor),
            )
            .await?;
        for item in &page.items {
            let hold: HoldRecord = item.to_record()?;
            if hold.due >= now_unix {
                return Ok(swept);
            }
            let before = store.get(&item.key).await?;
            if before.is_none() {
                continue;
            }
            release_hold(store, &hold.tenant_id, &hold.hold_id, hold.credits).await?;
            tracing::warn!(hold = %hold.hold_id, tenant = %hold.tenant_id, credits = hold.credits, "released an unsettled reservation");
            swept.holds += 1;
            swept.credits.0 += hold.credits;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(swept),
        }
    }
}

/// The credits a tenant's reservations hold now (the books check; reads every hold).
pub async fn held(store: &dyn ItemStore, tenant: &TenantId) -> Result<Credits, StoreError> {
    let mut total = 0;
    let mut cursor = None;
    loop {
        let page = store
            .query(
                Query::on(Index::ByDue, keys::CREDIT_HOLDS)
                    .prefix(keys::prefix::HOLD)
                    .limit(1000)
                    .after(cursor),
            )
            .await?;
        for item in &page.items {
            let hold: HoldRecord = item.to_record()?;
            if &hold.tenant_id == tenant {
                total += hold.credits;
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(Credits(total)),
        }
    }
}
