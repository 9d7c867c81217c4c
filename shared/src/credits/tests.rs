//! The credit system against the embedded store: money exact under concurrency, books balanced after
//! every scenario (`ledger::check_books`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::{BoxFuture, join_all};
use time::macros::datetime;

use super::account::{self, adjust, monthly_grant, set_plan};
use super::ledger::{self, TransactionType, check_books};
use super::*;
use crate::clock::{Clock, ManualClock};
use crate::embedded_db::EmbeddedDb;
use crate::ids::{RandomIds, TenantId};
use crate::store::{
    Add, Condition, EmbeddedStore, Item, ItemStore, Key, Page, Query, StoreError, Update, Write,
};
use crate::tenants::Plan;

/// Counts the calls that reach the store: the proof of round trips, without timing anything.
struct Counting {
    inner: Arc<dyn ItemStore>,
    calls: AtomicUsize,
}

impl Counting {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

impl ItemStore for Counting {
    fn get(&self, key: &Key) -> BoxFuture<'_, Result<Option<Item>, StoreError>> {
        self.count();
        self.inner.get(key)
    }
    fn put(&self, item: Item, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>> {
        self.count();
        self.inner.put(item, condition)
    }
    fn delete(&self, key: &Key, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>> {
        self.count();
        self.inner.delete(key, condition)
    }
    fn update(&self, update: Update) -> BoxFuture<'_, Result<Item, StoreError>> {
        self.count();
        self.inner.update(update)
    }
    fn add(&self, add: Add) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.count();
        self.inner.add(add)
    }
    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, StoreError>> {
        self.count();
        self.inner.query(query)
    }
    fn transact(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.count();
        self.inner.transact(writes)
    }
}

struct World {
    store: Arc<Counting>,
    clock: ManualClock,
    meter: Meter,
    tenant: TenantId,
}

fn world() -> World {
    let clock = ManualClock::at(datetime!(2026-05-10 09:00 UTC));
    let inner: Arc<dyn ItemStore> = Arc::new(
        EmbeddedStore::new(EmbeddedDb::in_memory().unwrap(), Arc::new(clock.clone())).unwrap(),
    );
    let store = Arc::new(Counting {
        inner,
        calls: AtomicUsize::new(0),
    });
    let meter = Meter::new(
        store.clone(),
        Arc::new(clock.clone()),
        Arc::new(RandomIds),
        CreditSettings::default(),
    );
    World {
        store,
        clock,
        meter,
        tenant: TenantId::parse("ten_credits1").unwrap(),
    }
}

impl World {
    fn store(&self) -> &dyn ItemStore {
        self.store.as_ref()
    }
    async fn fund(&self, credits: i64) {
        adjust(
            self.store(),
            &self.tenant,
            Credits(credits),
            "opening balance",
            None,
            self.clock.now(),
        )
        .await
        .unwrap();
    }
    async fn balance(&self) -> account::Balance {
        account::balance(self.store(), &self.tenant).await.unwrap()
    }
    async fn books(&self) {
        check_books(self.store(), &self.tenant)
            .await
            .expect("the books balance");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_actions_against_fifty_serve_exactly_fifty() {
    let w = world();
    w.fund(100).await;
    let outcomes = join_all((0..200).map(|_| async {
        let hold = w
            .meter
            .reserve(&w.tenant, MeteredFunction::Chat, Credits(2), None)
            .await?;
        w.meter.settle(hold, Credits(2), Some("msg")).await?;
        Ok::<_, CreditError>(())
    }))
    .await;
    let served = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(CreditError::Exhausted { .. })))
        .count();
    assert_eq!(
        (served, refused),
        (50, 150),
        "{:?}",
        outcomes.iter().find(|o| o.is_err())
    );
    let balance = w.balance().await;
    assert_eq!(
        (balance.balance, balance.available),
        (Credits(0), Credits(0))
    );
    w.books().await;
    let usage = ledger::all(w.store(), &w.tenant).await.unwrap();
    assert_eq!(
        usage
            .iter()
            .filter(|e| e.kind == TransactionType::Usage)
            .count(),
        50
    );
}

#[tokio::test]
async fn a_reservation_is_one_store_round_trip() {
    let w = world();
    w.fund(10).await;
    let before = w.store.calls();
    let hold = w
        .meter
        .reserve(
            &w.tenant,
            MeteredFunction::Execute,
            Credits(3),
            Some("req-1"),
        )
        .await
        .unwrap();
    assert_eq!(w.store.calls() - before, 1, "reserving is one transaction");
    w.meter.settle(hold, Credits(1), None).await.unwrap();
    w.books().await;
}

#[tokio::test]
async fn settling_charges_the_actual_cost_and_releases_the_rest() {
    let w = world();
    w.fund(10).await;
    let hold = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(6), None)
        .await
        .unwrap();
    assert_eq!(w.balance().await.available, Credits(4));
    w.books().await;
    // A model that failed mid-stream: only what was generated is charged.
    let entry = w
        .meter
        .settle(hold, Credits(2), Some("msg_1"))
        .await
        .unwrap()
        .expect("a usage entry");
    assert_eq!(
        (entry.credits, entry.balance_after),
        (Credits(-2), Credits(8))
    );
    assert_eq!(entry.function, Some(MeteredFunction::Chat));
    let b = w.balance().await;
    assert_eq!((b.balance, b.available), (Credits(8), Credits(8)));
    // A failure before any cost: the whole hold comes back, no ledger entry.
    let hold = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(8), None)
        .await
        .unwrap();
    assert!(
        w.meter
            .settle(hold, Credits(0), None)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(w.balance().await.available, Credits(8));
    w.books().await;
}

#[tokio::test]
async fn usage_draws_granted_credits_first() {
    let w = world();
    set_plan(w.store(), &w.tenant, Plan::Starter).await.unwrap();
    monthly_grant(w.store(), &w.tenant, "2026-05", w.clock.now())
        .await
        .unwrap();
    let b = w.balance().await;
    assert_eq!((b.granted, b.paid), (Credits(1_000), Credits(0)));
    let hold = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(5), None)
        .await
        .unwrap();
    w.meter.settle(hold, Credits(5), None).await.unwrap();
    assert_eq!(w.balance().await.granted, Credits(995));
    w.books().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_calls_with_three_minutes_of_credit_meter_at_most_three() {
    let w = world();
    w.fund(3).await; // one credit a minute
    let minutes = join_all((0..10).map(|_| async {
        let Ok(mut hold) = w
            .meter
            .reserve(&w.tenant, MeteredFunction::Call, Credits(1), None)
            .await
        else {
            return 0; // refused at the start: the caller hears the polite goodbye
        };
        let mut minutes = 1;
        // Every minute the bridge extends; a refusal ends the call politely.
        while minutes < 10 && w.meter.extend(&mut hold, Credits(1)).await.is_ok() {
            minutes += 1;
        }
        w.meter
            .settle(hold, Credits(minutes), Some("CA1"))
            .await
            .unwrap();
        minutes
    }))
    .await;
    assert_eq!(minutes.iter().sum::<i64>(), 3, "{minutes:?}");
    assert_eq!(w.balance().await.balance, Credits(0));
    w.books().await;
}

#[tokio::test]
async fn the_sweeper_releases_only_lapsed_reservations() {
    let w = world();
    w.fund(10).await;
    let lost = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(4), None)
        .await
        .unwrap();
    w.clock.advance(std::time::Duration::from_secs(600));
    let live = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(3), None)
        .await
        .unwrap();
    let swept = sweep_expired_reservations(w.store(), w.clock.now())
        .await
        .unwrap();
    assert_eq!(swept.holds, 0, "nothing has lapsed yet");
    w.clock.advance(std::time::Duration::from_secs(400));
    let swept = sweep_expired_reservations(w.store(), w.clock.now())
        .await
        .unwrap();
    assert_eq!((swept.holds, swept.credits), (1, Credits(4)));
    assert_eq!(w.balance().await.available, Credits(7));
    w.books().await;
    // Running it again releases nothing twice.
    let again = sweep_expired_reservations(w.store(), w.clock.now())
        .await
        .unwrap();
    assert_eq!(again.holds, 0);
    // The lost action settling late is charged afresh, within what is available.
    w.meter.settle(lost, Credits(2), None).await.unwrap();
    w.meter.settle(live, Credits(3), None).await.unwrap();
    let b = w.balance().await;
    assert_eq!((b.balance, b.available), (Credits(5), Credits(5)));
    w.books().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_monthly_grant_expires_last_months_credits_and_lands_once() {
    let w = world();
    set_plan(w.store(), &w.tenant, Plan::Starter).await.unwrap();
    let april = monthly_grant(w.store(), &w.tenant, "2026-04", w.clock.now())
        .await
        .unwrap();
    assert_eq!(april.granted, Some(Credits(1_000)));
    // One reservation in flight at the grant.
    let hold = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(100), None)
        .await
        .unwrap();
    let runs =
        join_all((0..10).map(|_| monthly_grant(w.store(), &w.tenant, "2026-05", w.clock.now())))
            .await;
    let granted: Vec<_> = runs
        .iter()
        .filter_map(|r| r.as_ref().unwrap().granted)
        .collect();
    assert_eq!(granted, [Credits(1_000)], "granted exactly once");
    let expired: i64 = runs.iter().map(|r| r.as_ref().unwrap().expired.0).sum();
    assert_eq!(
        expired, 900,
        "the held 100 are being spent, the other 900 expire"
    );
    w.meter.settle(hold, Credits(100), None).await.unwrap();
    let b = w.balance().await;
    assert_eq!((b.granted, b.balance), (Credits(1_000), Credits(1_000)));
    w.books().await;
    assert!(matches!(
        monthly_grant(w.store(), &w.tenant, "2026-13", w.clock.now()).await,
        Err(CreditError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_negative_adjustment_never_takes_the_balance_below_zero() {
    let w = world();
    w.fund(5).await;
    let now = w.clock.now();
    let refused = adjust(w.store(), &w.tenant, Credits(-6), "too much", None, now).await;
    assert!(
        matches!(refused, Err(CreditError::Exhausted { .. })),
        "{refused:?}"
    );
    // Nor below what a reservation holds.
    let hold = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(3), None)
        .await
        .unwrap();
    let refused = adjust(w.store(), &w.tenant, Credits(-3), "held", None, now).await;
    assert!(
        matches!(refused, Err(CreditError::Exhausted { .. })),
        "{refused:?}"
    );
    let entry = adjust(
        w.store(),
        &w.tenant,
        Credits(-2),
        "goodwill reversal",
        None,
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        (entry.kind, entry.balance_after),
        (TransactionType::Adjustment, Credits(3))
    );
    w.meter.release(hold).await.unwrap();
    assert_eq!(w.balance().await.available, Credits(3));
    w.books().await;
}

#[tokio::test]
async fn suspension_and_hourly_limits_refuse_in_the_same_round_trip() {
    let mut w = world();
    w.meter = Meter::new(
        w.store.clone(),
        Arc::new(w.clock.clone()),
        Arc::new(RandomIds),
        CreditSettings {
            hourly_limit: 2,
            ..CreditSettings::default()
        },
    );
    w.fund(10).await;
    for _ in 0..2 {
        let hold = w
            .meter
            .reserve(&w.tenant, MeteredFunction::Execute, Credits(1), None)
            .await
            .unwrap();
        w.meter.settle(hold, Credits(1), None).await.unwrap();
    }
    let limited = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Execute, Credits(1), None)
        .await;
    assert!(
        matches!(limited, Err(CreditError::RateLimited { function: MeteredFunction::Execute, retry_after_secs }) if retry_after_secs == 3600),
        "{limited:?}"
    );
    // Another function has its own budget.
    let chat = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(1), None)
        .await
        .unwrap();
    w.meter.release(chat).await.unwrap();
    let now = w.clock.unix_seconds();
    w.store()
        .put(
            Item::new(crate::store::keys::ai_suspension(&w.tenant)).expiring_at(now + 1800),
            Condition::None,
        )
        .await
        .unwrap();
    let suspended = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(1), None)
        .await;
    assert!(
        matches!(
            suspended,
            Err(CreditError::Suspended {
                retry_after_secs: 1800
            })
        ),
        "{suspended:?}"
    );
    assert_eq!(w.balance().await.available, Credits(8));
    w.books().await;
}

#[tokio::test]
async fn anomaly_detection_adds_nothing_before_the_model_call_and_one_add_after_it() {
    let w = world();
    w.fund(10).await;
    let round_trips = |function| {
        let w = &w;
        async move {
            let before = w.store.calls();
            let hold = w
                .meter
                .reserve(&w.tenant, function, Credits(1), None)
                .await
                .unwrap();
            let reserved = w.store.calls() - before;
            let before = w.store.calls();
            w.meter.settle(hold, Credits(1), None).await.unwrap();
            (reserved, w.store.calls() - before)
        }
    };
    // Training is not watched; chat is, below its first checkpoint.
    let (reserve_unwatched, settle_unwatched) = round_trips(MeteredFunction::Training).await;
    let (reserve_watched, settle_watched) = round_trips(MeteredFunction::Chat).await;
    assert_eq!((reserve_unwatched, reserve_watched), (1, 1));
    assert_eq!(settle_watched, settle_unwatched + 1);
}

/// A record of the caller's that lands with the settle (an answer's usage log, say).
fn along_record(n: i64) -> Write {
    Write::Put(
        Item::new(Key::new("log#t", format!("msg_{n}"))).with("n", n),
        Condition::None,
    )
}

#[tokio::test]
async fn a_settle_with_the_account_read_before_is_one_round_trip_and_carries_the_callers_writes() {
    // Training, which anomaly detection does not watch (a watched settle adds its one count after).
    let w = world();
    w.fund(10).await;
    let hold = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Training, Credits(4), None)
        .await
        .unwrap();
    let account = w.store().get(&account_key(&w.tenant)).await.unwrap();
    let before = w.store.calls();
    w.meter
        .settle_with(
            hold,
            Credits(3),
            Some("msg_1"),
            Along {
                writes: vec![along_record(1)],
                account: Some(account),
            },
        )
        .await
        .unwrap()
        .expect("a usage entry");
    assert_eq!(
        w.store.calls() - before,
        1,
        "one transaction settles it all"
    );
    assert_eq!(w.balance().await.balance, Credits(7));
    assert!(
        w.store()
            .get(&Key::new("log#t", "msg_1"))
            .await
            .unwrap()
            .is_some()
    );
    w.books().await;
}

#[tokio::test]
async fn a_stale_account_costs_a_retry_never_a_wrong_charge() {
    let w = world();
    w.fund(10).await;
    let first = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(4), None)
        .await
        .unwrap();
    let second = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(4), None)
        .await
        .unwrap();
    // Both read the account at reservation; the first settles, which moves it.
    let stale = w.store().get(&account_key(&w.tenant)).await.unwrap();
    w.meter
        .settle_with(
            first,
            Credits(2),
            None,
            Along {
                writes: vec![along_record(1)],
                account: Some(stale.clone()),
            },
        )
        .await
        .unwrap();
    let before = w.store.calls();
    w.meter
        .settle_with(
            second,
            Credits(3),
            None,
            Along {
                writes: vec![along_record(2)],
                account: Some(stale),
            },
        )
        .await
        .unwrap();
    // Refused on the sequence number, re-read (and the refusal checked), written.
    assert!(w.store.calls() - before > 1);
    let balance = w.balance().await;
    assert_eq!(
        (balance.balance, balance.available),
        (Credits(5), Credits(5))
    );
    for n in [1, 2] {
        assert!(
            w.store()
                .get(&Key::new("log#t", format!("msg_{n}")))
                .await
                .unwrap()
                .is_some()
        );
    }
    w.books().await;
}

#[tokio::test]
async fn the_callers_writes_land_when_nothing_is_charged_or_the_hold_was_swept() {
    let w = world();
    w.fund(3).await;
    // Nothing to charge: the hold goes back whole, with the caller's writes.
    let free = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(2), None)
        .await
        .unwrap();
    let entry = w
        .meter
        .settle_with(
            free,
            Credits(0),
            None,
            Along {
                writes: vec![along_record(1)],
                account: None,
            },
        )
        .await
        .unwrap();
    assert!(entry.is_none());
    assert_eq!(w.balance().await.available, Credits(3));
    // Swept before it settled, then the credits were spent elsewhere: not charged, records kept.
    let late = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(2), None)
        .await
        .unwrap();
    w.clock.advance(std::time::Duration::from_secs(
        (w.meter.settings().hold_secs + 1) as u64,
    ));
    let swept = sweep_expired_reservations(w.store(), w.clock.now())
        .await
        .unwrap();
    assert_eq!(swept.holds, 1);
    let other = w
        .meter
        .reserve(&w.tenant, MeteredFunction::Chat, Credits(3), None)
        .await
        .unwrap();
    w.meter.settle(other, Credits(3), None).await.unwrap();
    let result = w
        .meter
        .settle_with(
            late,
            Credits(2),
            None,
            Along {
                writes: vec![along_record(2)],
                account: None,
            },
        )
        .await;
    assert!(
        matches!(result, Err(CreditError::Exhausted { .. })),
        "{result:?}"
    );
    for n in [1, 2] {
        assert!(
            w.store()
                .get(&Key::new("log#t", format!("msg_{n}")))
                .await
                .unwrap()
                .is_some(),
            "record {n} landed"
        );
    }
    assert_eq!(w.balance().await.balance, Credits(0));
    w.books().await;
}
