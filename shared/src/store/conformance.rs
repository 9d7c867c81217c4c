//! The item store conformance suite: the one set of cases every adapter must pass.
//!
//! Each case is a public async fn taking the store under test and the [`ManualClock`] the store was
//! built with, so cases can move time forward to test expiry. [`store_conformance_tests!`] turns the
//! whole list into one `#[tokio::test]` per case for an adapter:
//!
//! ```ignore
//! shared::store_conformance_tests!(embedded, |clock| async move {
//!     let store = EmbeddedStore::new(EmbeddedDb::in_memory().unwrap(), Arc::new(clock)).unwrap();
//!     Subject::new(store)
//! });
//! ```
//!
//! Cases panic on failure (they are test code); every case uses fixed keys, so each needs a fresh store.

use std::any::Any;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{Add, Condition, Index, Item, ItemStore, Key, Query, StoreError, Update, Write};
use crate::clock::{Clock, ManualClock};

/// A store under test, with whatever must live as long as it (a temporary directory, say).
pub struct Subject {
    pub store: Box<dyn ItemStore>,
    guards: Vec<Box<dyn Any + Send + Sync>>,
}

impl Subject {
    pub fn new(store: impl ItemStore) -> Self {
        Self {
            store: Box::new(store),
            guards: Vec::new(),
        }
    }

    /// Keeps `guard` alive until the case ends.
    pub fn keeping(mut self, guard: impl Any + Send + Sync) -> Self {
        self.guards.push(Box::new(guard));
        self
    }
}

/// The clock each case starts with: the real time, to the second (DynamoDB's TTL sweeper compares
/// `expires_at` with real time, so items the suite treats as live must not be long past on a real table).
pub fn start_clock() -> ManualClock {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    ManualClock::at(OffsetDateTime::from_unix_timestamp(now).expect("the current time is in range"))
}

/// Builds a subject with `make` (gives a closure passed to the macro its argument type).
pub async fn build<F, Fut>(clock: ManualClock, make: F) -> Subject
where
    F: FnOnce(ManualClock) -> Fut,
    Fut: Future<Output = Subject>,
{
    make(clock).await
}

/// Generates one `#[tokio::test]` per conformance case in a module named `$module`.
///
/// `$make` is a closure `|clock: ManualClock| async move { … Subject }` building a fresh store that
/// decides expiry by that clock. The generated module does `use super::*`, so `$make` may use the
/// names in scope where the macro is invoked.
#[macro_export]
macro_rules! store_conformance_tests {
    ($module:ident, $make:expr $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            $crate::store_conformance_tests!(@cases $make;
                get_missing_is_none,
                put_then_get_round_trips,
                records_round_trip,
                put_replaces_the_whole_item,
                put_if_absent_fails_over_an_existing_item,
                put_if_absent_succeeds_over_an_expired_item,
                put_if_exists,
                put_if_attribute_equals,
                delete_without_condition,
                delete_with_condition,
                update_sets_and_removes_only_named_attributes,
                update_never_creates_an_item,
                update_honours_attribute_equals,
                concurrent_adds_respect_the_limit,
                add_with_negative_amount_gives_back,
                add_over_the_limit_changes_nothing,
                add_keeps_other_attributes,
                add_of_several_counters_is_all_or_nothing,
                transact_and_read_reads_and_writes_in_one_call,
                add_with_expiry_creates_an_expiring_counter,
                concurrent_debits_never_go_below_the_floor,
                add_under_the_floor_changes_nothing,
                transaction_under_the_floor_writes_nothing,
                failing_transaction_writes_nothing,
                transaction_over_the_limit_writes_nothing,
                successful_transaction_writes_all,
                transaction_add_over_an_expired_counter_starts_afresh,
                transaction_shape_is_checked,
                query_orders_by_sort_key,
                query_by_sort_key_prefix,
                query_paginates_exactly_once,
                query_on_each_index,
                expired_items_are_hidden,
                expired_items_do_not_break_pagination,
                reserved_attribute_names_are_rejected,
                malformed_requests_are_invalid,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let clock = $crate::store::conformance::start_clock();
                let subject = $crate::store::conformance::build(clock.clone(), $make).await;
                $crate::store::conformance::$case(&*subject.store, &clock).await;
            }
        )*
    };
}

fn assert_condition_failed<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::ConditionFailed)),
        "{what}: expected ConditionFailed, got {result:?}"
    );
}

/// A cursor the query did not hand out is the caller's mistake (a 400 at the edge), not a store fault.
fn assert_bad_cursor<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::BadCursor(_))),
        "{what}: expected BadCursor, got {result:?}"
    );
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Invalid(_))),
        "{what}: expected Invalid, got {result:?}"
    );
}

async fn get(store: &dyn ItemStore, key: &Key) -> Option<Item> {
    store.get(key).await.expect("get")
}

async fn put(store: &dyn ItemStore, item: Item) {
    store.put(item, Condition::None).await.expect("put");
}

/// Every page of `query`, checking that no page passes the limit and every page but the last is full.
async fn all_pages(store: &dyn ItemStore, query: Query) -> Vec<Item> {
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = store
            .query(query.clone().after(cursor))
            .await
            .expect("query");
        assert!(
            page.items.len() <= query.limit,
            "a page holds at most the limit"
        );
        if page.next.is_some() {
            assert_eq!(
                page.items.len(),
                query.limit,
                "a page followed by another is full"
            );
        }
        items.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return items,
        }
    }
    panic!("pagination did not end");
}

fn sks(items: &[Item]) -> Vec<&str> {
    items.iter().map(|item| item.key.sk.as_str()).collect()
}

pub async fn get_missing_is_none(store: &dyn ItemStore, _clock: &ManualClock) {
    assert!(
        get(store, &Key::new("tenant#none", "profile"))
            .await
            .is_none()
    );
}

pub async fn put_then_get_round_trips(store: &dyn ItemStore, clock: &ManualClock) {
    let key = Key::new("tenant#t1", "profile");
    let item = Item::new(key.clone())
        .with("name", "株式会社コトバ")
        .with("greeting", "안녕하세요 — こんにちは、世界")
        .with("empty_text", "")
        .with("count", 42)
        .with("negative", -7)
        .with("largest", i64::MAX)
        .with("smallest", i64::MIN)
        .with("ratio", 3.25)
        .with("tiny", -0.001)
        .with("on", true)
        .with("off", false)
        .with("nothing", Value::Null)
        .with("tags", json!(["a", 1, 2.5, true, null, {"k": "値"}, [], ["nested"]]))
        .with("empty_list", json!([]))
        .with("plan", json!({"name": "スタンダード", "seats": 3, "limits": [10, 20], "extra": {}, "none": null}))
        .with_index(Index::ByTenant, "tenant#t1", "profile")
        .with_index(Index::BySite, "site#s1", "2026-01-01T00:00:00Z")
        .expiring_at(clock.unix_seconds() + 3600);
    put(store, item.clone()).await;

    let got = get(store, &key).await.expect("the item just put");
    assert_eq!(got, item);
    for name in ["count", "negative", "largest", "smallest"] {
        assert!(
            got.attributes[name].is_i64(),
            "{name} reads back as an integer: {:?}",
            got.attributes[name]
        );
    }
    assert_eq!(got.count("largest"), i64::MAX);
    assert_eq!(got.attributes["plan"]["seats"].as_i64(), Some(3));

    // An item with no attributes, index keys or expiry round-trips too.
    let bare = Item::new(Key::new("tenant#t1", "bare"));
    put(store, bare.clone()).await;
    assert_eq!(get(store, &bare.key).await, Some(bare));
}

pub async fn records_round_trip(store: &dyn ItemStore, _clock: &ManualClock) {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Site {
        name: String,
        pages: u32,
        languages: Vec<String>,
        owner: Option<String>,
    }
    let site = Site {
        name: "駅前歯科".into(),
        pages: 12,
        languages: vec!["ja".into(), "ko".into()],
        owner: None,
    };
    let key = Key::new("site#s1", "meta");
    put(
        store,
        Item::from_record(key.clone(), &site).expect("a struct is a record"),
    )
    .await;
    let back: Site = get(store, &key)
        .await
        .expect("the record")
        .to_record()
        .expect("reads as a Site");
    assert_eq!(back, site);
}

pub async fn put_replaces_the_whole_item(store: &dyn ItemStore, _clock: &ManualClock) {
    let key = Key::new("tenant#t1", "profile");
    put(
        store,
        Item::new(key.clone()).with("a", 1).with("b", 2).with_index(
            Index::ByTenant,
            "tenant#t1",
            "p",
        ),
    )
    .await;
    let replacement = Item::new(key.clone()).with("a", 3);
    put(store, replacement.clone()).await;
    assert_eq!(get(store, &key).await, Some(replacement));
    let page = store
        .query(Query::on(Index::ByTenant, "tenant#t1"))
        .await
        .expect("query");
    assert!(
        page.items.is_empty(),
        "the replaced item left the index: {:?}",
        page.items
    );
}

pub async fn put_if_absent_fails_over_an_existing_item(
    store: &dyn ItemStore,
    _clock: &ManualClock,
) {
    let key = Key::new("tenant#t1", "profile");
    let original = Item::new(key.clone()).with("name", "first");
    store
        .put(original.clone(), Condition::IfAbsent)
        .await
        .expect("put on an empty key");
    let result = store
        .put(
            Item::new(key.clone()).with("name", "second"),
            Condition::IfAbsent,
        )
        .await;
    assert_condition_failed(result, "put IfAbsent over an existing item");
    assert_eq!(get(store, &key).await, Some(original));
}

pub async fn put_if_absent_succeeds_over_an_expired_item(
    store: &dyn ItemStore,
    clock: &ManualClock,
) {
    let key = Key::new("session#1", "token");
    let expires = clock.unix_seconds() + 10;
    put(
        store,
        Item::new(key.clone())
            .with("user", "old")
            .expiring_at(expires),
    )
    .await;
    assert_condition_failed(
        store
            .put(
                Item::new(key.clone()).with("user", "new"),
                Condition::IfAbsent,
            )
            .await,
        "put IfAbsent over a live item",
    );
    // At `expires_at` exactly the item has expired.
    clock.advance(Duration::from_secs(10));
    let fresh = Item::new(key.clone()).with("user", "new");
    store
        .put(fresh.clone(), Condition::IfAbsent)
        .await
        .expect("put IfAbsent over an expired item");
    assert_eq!(get(store, &key).await, Some(fresh));
}

pub async fn put_if_exists(store: &dyn ItemStore, clock: &ManualClock) {
    let key = Key::new("tenant#t1", "profile");
    assert_condition_failed(
        store
            .put(Item::new(key.clone()).with("v", 1), Condition::IfExists)
            .await,
        "put IfExists on a missing item",
    );
    assert!(
        get(store, &key).await.is_none(),
        "a failed put created nothing"
    );

    put(
        store,
        Item::new(key.clone())
            .with("v", 1)
            .expiring_at(clock.unix_seconds() + 5),
    )
    .await;
    let second = Item::new(key.clone())
        .with("v", 2)
        .expiring_at(clock.unix_seconds() + 5);
    store
        .put(second.clone(), Condition::IfExists)
        .await
        .expect("put IfExists on a live item");
    assert_eq!(get(store, &key).await, Some(second));

    clock.advance(Duration::from_secs(5));
    assert_condition_failed(
        store
            .put(Item::new(key.clone()).with("v", 3), Condition::IfExists)
            .await,
        "put IfExists on an expired item",
    );
    assert!(get(store, &key).await.is_none());
}

pub async fn put_if_attribute_equals(store: &dyn ItemStore, _clock: &ManualClock) {
    let key = Key::new("job#1", "state");
    let draft = Item::new(key.clone())
        .with("state", "draft")
        .with("version", 1)
        .with("tags", json!(["a", {"b": 2}]));
    let equals = |name: &str, value: Value| Condition::AttributeEquals(name.into(), value);

    assert_condition_failed(
        store
            .put(draft.clone(), equals("state", json!("draft")))
            .await,
        "AttributeEquals on a missing item",
    );
    put(store, draft.clone()).await;

    let sent = Item::new(key.clone())
        .with("state", "sent")
        .with("version", 2);
    for (name, value) in [
        ("state", json!("sent")),
        ("version", json!(2)),
        ("missing", json!("draft")),
    ] {
        assert_condition_failed(
            store.put(sent.clone(), equals(name, value)).await,
            "AttributeEquals mismatch",
        );
    }
    assert_condition_failed(
        store.put(sent.clone(), equals("state", json!(null))).await,
        "null is not a string",
    );
    assert_eq!(
        get(store, &key).await,
        Some(draft.clone()),
        "failed puts changed nothing"
    );

    store
        .put(sent.clone(), equals("version", json!(1)))
        .await
        .expect("AttributeEquals on a number");
    assert_eq!(get(store, &key).await, Some(sent.clone()));
    let back = draft.clone();
    store
        .put(back.clone(), equals("state", json!("sent")))
        .await
        .expect("AttributeEquals on a string");
    let again = Item::new(key.clone()).with("state", "final");
    store
        .put(again.clone(), equals("tags", json!(["a", {"b": 2}])))
        .await
        .expect("AttributeEquals on a list");
    assert_eq!(get(store, &key).await, Some(again));
}

pub async fn delete_without_condition(store: &dyn ItemStore, _clock: &ManualClock) {
    let key = Key::new("tenant#t1", "profile");
    let other = Item::new(Key::new("tenant#t1", "profile2")).with("v", 1);
    put(store, Item::new(key.clone()).with("v", 1)).await;
    put(store, other.clone()).await;
    store
        .delete(&key, Condition::None)
        .await
        .expect("delete an existing item");
    assert!(get(store, &key).await.is_none());
    assert_eq!(
        get(store, &other.key).await,
        Some(other),
        "a delete touches only its item"
    );
    store
        .delete(&key, Condition::None)
        .await
        .expect("deleting a missing item is no error");
}

pub async fn delete_with_condition(store: &dyn ItemStore, clock: &ManualClock) {
    let key = Key::new("job#1", "state");
    assert_condition_failed(
        store.delete(&key, Condition::IfExists).await,
        "delete IfExists on a missing item",
    );
    let item = Item::new(key.clone()).with("state", "done");
    put(store, item.clone()).await;
    assert_condition_failed(
        store.delete(&key, Condition::IfAbsent).await,
        "delete IfAbsent on an existing item",
    );
    assert_condition_failed(
        store
            .delete(
                &key,
                Condition::AttributeEquals("state".into(), json!("running")),
            )
            .await,
        "delete with a mismatched attribute",
    );
    assert_eq!(get(store, &key).await, Some(item));
    store
        .delete(
            &key,
            Condition::AttributeEquals("state".into(), json!("done")),
        )
        .await
        .expect("matching delete");
    assert!(get(store, &key).await.is_none());

    put(
        store,
        Item::new(key.clone())
            .with("state", "done")
            .expiring_at(clock.unix_seconds() + 1),
    )
    .await;
    store
        .delete(&key, Condition::IfExists)
        .await
        .expect("delete IfExists on a live item");
    put(
        store,
        Item::new(key.clone())
            .with("state", "done")
            .expiring_at(clock.unix_seconds() + 1),
    )
    .await;
    clock.advance(Duration::from_secs(1));
    assert_condition_failed(
        store.delete(&key, Condition::IfExists).await,
        "delete IfExists on an expired item",
    );
}

pub async fn update_sets_and_removes_only_named_attributes(
    store: &dyn ItemStore,
    clock: &ManualClock,
) {
    let key = Key::new("site#s1", "meta");
    let expires = clock.unix_seconds() + 3600;
    let original = Item::new(key.clone())
        .with("name", "駅前歯科")
        .with("pages", 3)
        .with("draft", true)
        .with("settings", json!({"voice": "female", "lang": "ja"}))
        .with_index(Index::ByTenant, "tenant#t1", "site#s1")
        .expiring_at(expires);
    put(store, original.clone()).await;

    let updated = store
        .update(
            Update::new(key.clone())
                .set("pages", 4)
                .set("title", "ようこそ")
                .set("settings", json!({"voice": "male"}))
                .remove("draft")
                .remove("never_there"),
        )
        .await
        .expect("update an existing item");
    let expected = Item::new(key.clone())
        .with("name", "駅前歯科")
        .with("pages", 4)
        .with("title", "ようこそ")
        .with("settings", json!({"voice": "male"}))
        .with_index(Index::ByTenant, "tenant#t1", "site#s1")
        .expiring_at(expires);
    assert_eq!(updated, expected, "update returns the item as it is now");
    assert_eq!(get(store, &key).await, Some(expected));
}

pub async fn update_never_creates_an_item(store: &dyn ItemStore, clock: &ManualClock) {
    let key = Key::new("site#s1", "meta");
    for condition in [Condition::None, Condition::IfAbsent, Condition::IfExists] {
        assert_condition_failed(
            store
                .update(Update::new(key.clone()).set("name", "x").when(condition))
                .await,
            "update of a missing item",
        );
    }
    assert_condition_failed(
        store.update(Update::new(key.clone())).await,
        "empty update of a missing item",
    );
    assert!(
        get(store, &key).await.is_none(),
        "a failed update created nothing"
    );

    put(
        store,
        Item::new(key.clone())
            .with("name", "old")
            .expiring_at(clock.unix_seconds() + 1),
    )
    .await;
    let untouched = store
        .update(Update::new(key.clone()))
        .await
        .expect("empty update of a live item");
    assert_eq!(untouched.attributes["name"], "old");
    clock.advance(Duration::from_secs(1));
    assert_condition_failed(
        store
            .update(Update::new(key.clone()).set("name", "new"))
            .await,
        "update of an expired item",
    );
    assert!(get(store, &key).await.is_none());
}

pub async fn update_honours_attribute_equals(store: &dyn ItemStore, _clock: &ManualClock) {
    let key = Key::new("job#1", "state");
    let queued = Item::new(key.clone())
        .with("state", "queued")
        .with("attempts", 0);
    put(store, queued.clone()).await;
    let when_state = |state: &str| Condition::AttributeEquals("state".into(), json!(state));

    assert_condition_failed(
        store
            .update(
                Update::new(key.clone())
                    .set("state", "done")
                    .when(when_state("running")),
            )
            .await,
        "update with a mismatched attribute",
    );
    assert_eq!(get(store, &key).await, Some(queued));

    let start = Update::new(key.clone())
        .set("state", "running")
        .set("attempts", 1)
        .when(when_state("queued"));
    let running = store
        .update(start.clone())
        .await
        .expect("update from the expected state");
    assert_eq!(running.attributes["state"], "running");
    assert_eq!(running.count("attempts"), 1);
    assert_condition_failed(store.update(start).await, "the same transition twice");
    assert_eq!(get(store, &key).await, Some(running));
}

pub async fn concurrent_adds_respect_the_limit(store: &dyn ItemStore, _clock: &ManualClock) {
    let key = Key::new("tenant#t1", "usage#2026-01-01");
    let results =
        join_all((0..50).map(|_| store.add(Add::new(key.clone(), "calls", 1).up_to(20)))).await;
    let mut totals = BTreeSet::new();
    let mut failed = 0;
    for result in results {
        match result {
            Ok(total) => {
                assert!(totals.insert(total), "total {total} handed out twice");
            }
            Err(StoreError::ConditionFailed) => failed += 1,
            Err(other) => panic!("unexpected add error: {other:?}"),
        }
    }
    assert_eq!(
        totals,
        (1..=20).collect::<BTreeSet<_>>(),
        "exactly 20 adds succeed, each seeing its own total"
    );
    assert_eq!(failed, 30);
    assert_eq!(
        get(store, &key).await.expect("the counter").count("calls"),
        20
    );
}

/// The balance primitive: 50 concurrent debits of 3 against a balance of 100 → exactly 33 succeed and
/// the balance ends at 1, never below the floor.
pub async fn concurrent_debits_never_go_below_the_floor(
    store: &dyn ItemStore,
    _clock: &ManualClock,
) {
    let key = Key::new("credits#t1", "available");
    store
        .add(Add::new(key.clone(), "credits", 100))
        .await
        .expect("the opening balance");
    let results =
        join_all((0..50).map(|_| store.add(Add::new(key.clone(), "credits", -3).at_least(0))))
            .await;
    let mut totals = BTreeSet::new();
    let mut failed = 0;
    for result in results {
        match result {
            Ok(total) => assert!(totals.insert(total), "total {total} handed out twice"),
            Err(StoreError::ConditionFailed) => failed += 1,
            Err(other) => panic!("unexpected add error: {other:?}"),
        }
    }
    assert_eq!(totals.len(), 33, "exactly 33 debits of 3 fit in 100");
    assert_eq!(failed, 17);
    assert_eq!(totals.first(), Some(&1));
    assert_eq!(
        get(store, &key)
            .await
            .expect("the balance")
            .count("credits"),
        1
    );
}

pub async fn add_under_the_floor_changes_nothing(store: &dyn ItemStore, _clock: &ManualClock) {
    let key = Key::new("credits#t2", "available");
    // A missing counter is 0: a debit under a floor of 0 is refused and creates nothing.
    assert_condition_failed(
        store
            .add(Add::new(key.clone(), "credits", -1).at_least(0))
            .await,
        "a debit from a missing balance",
    );
    assert!(get(store, &key).await.is_none());
    assert_eq!(
        store
            .add(Add::new(key.clone(), "credits", 5).at_least(0))
            .await
            .expect("a credit above the floor"),
        5
    );
    assert_condition_failed(
        store
            .add(Add::new(key.clone(), "credits", -6).at_least(0))
            .await,
        "a debit past the floor",
    );
    assert_eq!(
        store
            .add(Add::new(key.clone(), "credits", -5).at_least(0).up_to(5))
            .await
            .expect("a debit to exactly the floor"),
        0
    );
    assert_condition_failed(
        store
            .add(Add::new(key.clone(), "credits", 3).at_least(4))
            .await,
        "a total still under a raised floor",
    );
    assert_eq!(
        get(store, &key)
            .await
            .expect("the balance")
            .count("credits"),
        0
    );
}

/// A debit and its ledger entry in one transaction: the floor refuses both or neither.
pub async fn transaction_under_the_floor_writes_nothing(
    store: &dyn ItemStore,
    _clock: &ManualClock,
) {
    let balance = Key::new("credits#t3", "available");
    store
        .add(Add::new(balance.clone(), "credits", 10))
        .await
        .expect("the opening balance");
    let entry =
        |n: &str| Item::new(Key::new("credits#t3", format!("ledger#{n}"))).with("credits", -7);
    store
        .transact(vec![
            Write::Add(Add::new(balance.clone(), "credits", -7).at_least(0)),
            Write::Put(entry("1"), Condition::IfAbsent),
        ])
        .await
        .expect("a debit within the balance");
    assert_condition_failed(
        store
            .transact(vec![
                Write::Add(Add::new(balance.clone(), "credits", -7).at_least(0)),
                Write::Put(entry("2"), Condition::IfAbsent),
            ])
            .await,
        "a debit past the floor",
    );
    assert!(
        get(store, &entry("2").key).await.is_none(),
        "no ledger entry for a refused debit"
    );
    assert_eq!(
        get(store, &balance)
            .await
            .expect("the balance")
            .count("credits"),
        3
    );
}

pub async fn add_with_negative_amount_gives_back(store: &dyn ItemStore, _clock: &ManualClock) {
    let key = Key::new("tenant#t1", "usage");
    assert_eq!(
        store
            .add(Add::new(key.clone(), "minutes", 5).up_to(10))
            .await
            .expect("first add"),
        5
    );
    assert_eq!(
        store
            .add(Add::new(key.clone(), "minutes", -3).up_to(10))
            .await
            .expect("give back"),
        2
    );
    assert_eq!(
        store
            .add(Add::new(key.clone(), "minutes", 8).up_to(10))
            .await
            .expect("up to the limit"),
        10
    );
    assert_condition_failed(
        store
            .add(Add::new(key.clone(), "minutes", 1).up_to(10))
            .await,
        "past the limit",
    );
    assert_eq!(
        store
            .add(Add::new(key.clone(), "minutes", -10))
            .await
            .expect("give all back"),
        0
    );
    assert_eq!(
        store
            .add(Add::new(key.clone(), "minutes", -2))
            .await
            .expect("below zero without a limit"),
        -2
    );
    assert_eq!(
        get(store, &key)
            .await
            .expect("the counter")
            .count("minutes"),
        -2
    );
}

pub async fn add_over_the_limit_changes_nothing(store: &dyn ItemStore, _clock: &ManualClock) {
    let key = Key::new("tenant#t1", "usage");
    assert_condition_failed(
        store.add(Add::new(key.clone(), "calls", 3).up_to(2)).await,
        "a first add past the limit",
    );
    assert!(
        get(store, &key).await.is_none(),
        "a failed add creates nothing"
    );
    assert_eq!(
        store
            .add(Add::new(key.clone(), "calls", 2).up_to(2))
            .await
            .expect("exactly the limit"),
        2
    );
    assert_condition_failed(
        store.add(Add::new(key.clone(), "calls", 1).up_to(2)).await,
        "one past the limit",
    );
    assert_eq!(
        get(store, &key).await.expect("the counter").count("calls"),
        2
    );
    // Without a limit there is no ceiling.
    assert_eq!(
        store
            .add(Add::new(key.clone(), "calls", 1_000_000))
            .await
            .expect("unlimited add"),
        1_000_002
    );
}

/// One add of several counters of an item: each within its own limit, all or none, also inside a
/// transaction and over an expired item.
pub async fn add_of_several_counters_is_all_or_nothing(store: &dyn ItemStore, clock: &ManualClock) {
    let key = Key::new("tenant#t1", "month");
    let both = |chats: i64, tokens: i64| {
        Add::new(key.clone(), "chats", chats)
            .up_to(3)
            .and("tokens", tokens, Some(100))
            .and("cost", 7, None)
    };
    assert_eq!(store.add(both(1, 40)).await.expect("a first add"), 1);
    let item = get(store, &key).await.expect("the counters");
    assert_eq!(
        (
            item.count("chats"),
            item.count("tokens"),
            item.count("cost")
        ),
        (1, 40, 7)
    );
    // The second counter's limit refuses the whole add.
    assert_condition_failed(store.add(both(1, 61)).await, "tokens past their limit");
    // So does the first's, inside a transaction too.
    store
        .transact(vec![Write::Add(both(2, 60))])
        .await
        .expect("exactly both limits");
    assert_condition_failed(
        store.transact(vec![Write::Add(both(1, 0))]).await,
        "chats past their limit in a transaction",
    );
    let item = get(store, &key).await.expect("the counters");
    assert_eq!(
        (
            item.count("chats"),
            item.count("tokens"),
            item.count("cost")
        ),
        (3, 100, 14),
        "refused adds changed nothing"
    );
    // Over an expired item, every counter starts afresh.
    let day = Key::new("tenant#t1", "day");
    let expiring = |n: i64| {
        Add::new(day.clone(), "chats", n)
            .and("tokens", 2 * n, Some(10))
            .expiring_at(clock.unix_seconds() + 60)
    };
    store.add(expiring(3)).await.expect("a day's counters");
    clock.advance(Duration::from_secs(120));
    store
        .transact(vec![Write::Add(expiring(1))])
        .await
        .expect("a fresh day");
    let item = get(store, &day).await.expect("the fresh counters");
    assert_eq!((item.count("chats"), item.count("tokens")), (1, 2));
    // An attribute named twice is a malformed add.
    assert_invalid(
        store
            .add(Add::new(key.clone(), "chats", 1).and("chats", 1, None))
            .await,
        "an attribute twice",
    );
}

/// Writes and reads in one call: the reads come back in order (absent and expired items as `None`),
/// also when the transaction is refused, which then writes nothing.
pub async fn transact_and_read_reads_and_writes_in_one_call(
    store: &dyn ItemStore,
    clock: &ManualClock,
) {
    let (a, b, gone, missing) = (
        Key::new("session#1", "s"),
        Key::new("account#1", "a"),
        Key::new("session#2", "s"),
        Key::new("session#3", "s"),
    );
    put(store, Item::new(a.clone()).with("turns", 2)).await;
    put(store, Item::new(b.clone()).with("seq", 5)).await;
    put(
        store,
        Item::new(gone.clone())
            .with("turns", 1)
            .expiring_at(clock.unix_seconds() + 10),
    )
    .await;
    clock.advance(Duration::from_secs(20));
    let counter = Key::new("tenant#1", "month");
    let reserve = |n: i64| vec![Write::Add(Add::new(counter.clone(), "chats", n).up_to(2))];
    let reads = vec![b.clone(), missing.clone(), a.clone(), gone.clone()];

    let done = store.transact_and_read(reserve(2), reads.clone()).await;
    done.written.expect("the reservation");
    let read = done.read.expect("the reads");
    assert_eq!(read.len(), 4);
    assert_eq!(read[0].as_ref().map(|i| i.count("seq")), Some(5));
    assert!(read[1].is_none(), "a missing item reads as None");
    assert_eq!(read[2].as_ref().map(|i| i.count("turns")), Some(2));
    assert!(read[3].is_none(), "an expired item reads as None");
    assert_eq!(get(store, &counter).await.unwrap().count("chats"), 2);

    let refused = store.transact_and_read(reserve(1), vec![a.clone()]).await;
    assert_condition_failed(refused.written, "past the limit");
    let read = refused
        .read
        .expect("reads stand when the writes are refused");
    assert_eq!(read[0].as_ref().map(|i| i.count("turns")), Some(2));
    assert_eq!(get(store, &counter).await.unwrap().count("chats"), 2);

    // Reads alone, and writes alone.
    let only_reads = store.transact_and_read(Vec::new(), vec![b.clone()]).await;
    only_reads.written.expect("nothing to write");
    assert!(only_reads.read.unwrap()[0].is_some());
    let only_writes = store
        .transact_and_read(
            vec![Write::Put(
                Item::new(missing.clone()).with("turns", 0),
                Condition::IfAbsent,
            )],
            Vec::new(),
        )
        .await;
    only_writes.written.expect("the put");
    assert!(only_writes.read.unwrap().is_empty());
    assert!(get(store, &missing).await.is_some());
}

pub async fn add_keeps_other_attributes(store: &dyn ItemStore, _clock: &ManualClock) {
    let key = Key::new("tenant#t1", "plan");
    let plan = Item::new(key.clone())
        .with("name", "スタンダード")
        .with("calls", 4)
        .with_index(Index::ByTenant, "tenant#t1", "plan");
    put(store, plan.clone()).await;
    assert_eq!(
        store
            .add(Add::new(key.clone(), "calls", 2))
            .await
            .expect("add to an existing attribute"),
        6
    );
    assert_eq!(
        store
            .add(Add::new(key.clone(), "sms", 1))
            .await
            .expect("add to a new attribute"),
        1
    );
    let expected = plan.with("calls", 6).with("sms", 1);
    assert_eq!(get(store, &key).await, Some(expected));
}

pub async fn add_with_expiry_creates_an_expiring_counter(
    store: &dyn ItemStore,
    clock: &ManualClock,
) {
    let key = Key::new("tenant#t1", "usage#day");
    let first_expiry = clock.unix_seconds() + 60;
    assert_eq!(
        store
            .add(
                Add::new(key.clone(), "calls", 1)
                    .up_to(5)
                    .expiring_at(first_expiry)
            )
            .await
            .expect("add"),
        1
    );
    let counter = get(store, &key).await.expect("the counter");
    assert_eq!(counter.expires_at, Some(first_expiry));
    assert_eq!(
        store
            .add(
                Add::new(key.clone(), "calls", 1)
                    .up_to(5)
                    .expiring_at(first_expiry + 60)
            )
            .await
            .expect("add"),
        2
    );
    assert_eq!(
        get(store, &key).await.expect("the counter").expires_at,
        Some(first_expiry),
        "expiry is kept"
    );

    clock.advance(Duration::from_secs(60));
    assert!(get(store, &key).await.is_none(), "the counter expired");
    // An add over an expired counter starts from zero, with the new expiry.
    let second_expiry = clock.unix_seconds() + 60;
    assert_eq!(
        store
            .add(
                Add::new(key.clone(), "calls", 4)
                    .up_to(5)
                    .expiring_at(second_expiry)
            )
            .await
            .expect("add"),
        4
    );
    let counter = get(store, &key).await.expect("the new counter");
    assert_eq!(counter.count("calls"), 4);
    assert_eq!(counter.expires_at, Some(second_expiry));
    assert_condition_failed(
        store
            .add(
                Add::new(key.clone(), "calls", 2)
                    .up_to(5)
                    .expiring_at(second_expiry),
            )
            .await,
        "the new counter has its own limit",
    );
}

/// Items a transaction test starts from; every one must be unchanged after a failed transaction.
async fn seed_for_transactions(store: &dyn ItemStore) -> Vec<Item> {
    let items = vec![
        Item::new(Key::new("order#1", "state"))
            .with("state", "draft")
            .with("total", 1200),
        Item::new(Key::new("order#1", "line#1"))
            .with("sku", "ramen")
            .with_index(Index::BySite, "site#1", "line#1"),
        Item::new(Key::new("tenant#t1", "usage")).with("orders", 5),
        Item::new(Key::new("tenant#t1", "profile")).with("name", "店"),
    ];
    for item in &items {
        put(store, item.clone()).await;
    }
    items
}

async fn assert_unchanged(store: &dyn ItemStore, items: &[Item], absent: &[Key]) {
    for item in items {
        assert_eq!(
            get(store, &item.key).await.as_ref(),
            Some(item),
            "{:?} is unchanged",
            item.key
        );
    }
    for key in absent {
        assert!(get(store, key).await.is_none(), "{key:?} was not created");
    }
}

pub async fn failing_transaction_writes_nothing(store: &dyn ItemStore, _clock: &ManualClock) {
    let items = seed_for_transactions(store).await;
    let new_key = Key::new("order#2", "state");
    let result = store
        .transact(vec![
            Write::Put(
                Item::new(new_key.clone()).with("state", "draft"),
                Condition::IfAbsent,
            ),
            Write::Update(
                Update::new(items[0].key.clone())
                    .set("state", "placed")
                    .when(Condition::AttributeEquals("state".into(), json!("draft"))),
            ),
            Write::Delete(items[1].key.clone(), Condition::IfExists),
            Write::Add(Add::new(items[2].key.clone(), "orders", 1).up_to(100)),
            Write::Put(
                Item::new(items[3].key.clone()).with("name", "changed"),
                Condition::None,
            ),
            // The one condition that fails.
            Write::Check(Key::new("tenant#t1", "suspended"), Condition::IfExists),
        ])
        .await;
    assert_condition_failed(result, "a transaction with a failing check");
    assert_unchanged(store, &items, &[new_key]).await;

    // The same with the failing condition first and on a put.
    let result = store
        .transact(vec![
            Write::Put(
                Item::new(items[3].key.clone()).with("name", "changed"),
                Condition::IfAbsent,
            ),
            Write::Add(Add::new(items[2].key.clone(), "orders", 1)),
            Write::Delete(items[1].key.clone(), Condition::None),
        ])
        .await;
    assert_condition_failed(result, "a transaction with a failing put");
    assert_unchanged(store, &items, &[]).await;
}

pub async fn transaction_over_the_limit_writes_nothing(
    store: &dyn ItemStore,
    _clock: &ManualClock,
) {
    let items = seed_for_transactions(store).await;
    let result = store
        .transact(vec![
            Write::Update(Update::new(items[0].key.clone()).set("state", "placed")),
            Write::Add(Add::new(items[2].key.clone(), "orders", 1).up_to(5)),
        ])
        .await;
    assert_condition_failed(result, "a transaction whose add passes its limit");
    let result = store
        .transact(vec![
            Write::Update(Update::new(Key::new("order#9", "state")).set("state", "placed")),
            Write::Add(Add::new(items[2].key.clone(), "orders", 1).up_to(6)),
        ])
        .await;
    assert_condition_failed(result, "a transaction updating a missing item");
    assert_unchanged(store, &items, &[Key::new("order#9", "state")]).await;
}

pub async fn successful_transaction_writes_all(store: &dyn ItemStore, clock: &ManualClock) {
    let items = seed_for_transactions(store).await;
    let new_item = Item::new(Key::new("order#2", "state"))
        .with("state", "draft")
        .with_index(Index::ByTenant, "tenant#t1", "order#2")
        .expiring_at(clock.unix_seconds() + 600);
    let counter_key = Key::new("tenant#t1", "usage#day");
    store
        .transact(vec![
            Write::Put(new_item.clone(), Condition::IfAbsent),
            Write::Update(
                Update::new(items[0].key.clone())
                    .set("state", "placed")
                    .remove("total")
                    .when(Condition::AttributeEquals("state".into(), json!("draft"))),
            ),
            Write::Delete(items[1].key.clone(), Condition::IfExists),
            Write::Add(Add::new(items[2].key.clone(), "orders", 1).up_to(6)),
            Write::Add(
                Add::new(counter_key.clone(), "orders", 1)
                    .up_to(6)
                    .expiring_at(clock.unix_seconds() + 60),
            ),
            Write::Check(
                items[3].key.clone(),
                Condition::AttributeEquals("name".into(), json!("店")),
            ),
        ])
        .await
        .expect("a transaction whose conditions all hold");

    assert_eq!(get(store, &new_item.key).await, Some(new_item));
    assert_eq!(
        get(store, &items[0].key).await,
        Some(Item::new(items[0].key.clone()).with("state", "placed"))
    );
    assert!(get(store, &items[1].key).await.is_none());
    assert_eq!(
        get(store, &items[2].key)
            .await
            .expect("usage")
            .count("orders"),
        6
    );
    let counter = get(store, &counter_key).await.expect("the new counter");
    assert_eq!(counter.count("orders"), 1);
    assert_eq!(counter.expires_at, Some(clock.unix_seconds() + 60));
    assert_eq!(get(store, &items[3].key).await.as_ref(), Some(&items[3]));
}

pub async fn transaction_add_over_an_expired_counter_starts_afresh(
    store: &dyn ItemStore,
    clock: &ManualClock,
) {
    let counter = Key::new("tenant#t1", "usage#day");
    let expiry = clock.unix_seconds() + 60;
    let add = |amount: i64, expires_at: i64| {
        Write::Add(
            Add::new(counter.clone(), "calls", amount)
                .up_to(5)
                .expiring_at(expires_at),
        )
    };
    let mark = |value: &str| {
        Write::Put(
            Item::new(Key::new("tenant#t1", "last")).with("value", value),
            Condition::None,
        )
    };
    store
        .transact(vec![add(5, expiry), mark("first")])
        .await
        .expect("a transaction creating a counter");
    assert_condition_failed(
        store.transact(vec![add(1, expiry), mark("refused")]).await,
        "a transaction past the counter's limit",
    );
    clock.advance(Duration::from_secs(60));
    let next_expiry = clock.unix_seconds() + 60;
    store
        .transact(vec![add(2, next_expiry), mark("second")])
        .await
        .expect("a transaction adding to an expired counter");
    let fresh = get(store, &counter).await.expect("the fresh counter");
    assert_eq!(
        fresh.count("calls"),
        2,
        "an expired counter starts from zero"
    );
    assert_eq!(fresh.expires_at, Some(next_expiry));
    let last = get(store, &Key::new("tenant#t1", "last"))
        .await
        .expect("the mark");
    assert_eq!(last.attributes["value"], "second");

    clock.advance(Duration::from_secs(60));
    assert_condition_failed(
        store
            .transact(vec![add(6, next_expiry + 60), mark("too much")])
            .await,
        "a fresh counter past its limit",
    );
    assert!(
        get(store, &counter).await.is_none(),
        "the expired counter stays expired"
    );
}

pub async fn transaction_shape_is_checked(store: &dyn ItemStore, _clock: &ManualClock) {
    let items = seed_for_transactions(store).await;
    assert_invalid(store.transact(Vec::new()).await, "an empty transaction");
    let many = (0..26)
        .map(|i| {
            Write::Put(
                Item::new(Key::new("bulk", format!("{i:02}"))),
                Condition::None,
            )
        })
        .collect::<Vec<_>>();
    assert_invalid(store.transact(many).await, "26 writes");
    let twice = vec![
        Write::Update(Update::new(items[0].key.clone()).set("state", "placed")),
        Write::Put(Item::new(items[1].key.clone()), Condition::None),
        Write::Add(Add::new(items[0].key.clone(), "total", 1)),
    ];
    assert_invalid(store.transact(twice).await, "the same item twice");
    assert_unchanged(store, &items, &[Key::new("bulk", "00")]).await;

    let most = (0..25)
        .map(|i| {
            Write::Put(
                Item::new(Key::new("bulk", format!("{i:02}"))).with("i", i),
                Condition::IfAbsent,
            )
        })
        .collect::<Vec<_>>();
    store.transact(most).await.expect("25 writes are allowed");
    let all = all_pages(store, Query::partition("bulk").limit(10)).await;
    assert_eq!(all.len(), 25);
}

pub async fn query_orders_by_sort_key(store: &dyn ItemStore, _clock: &ManualClock) {
    let sort_keys = ["b", "a", "c", "ab", "日本", "한국", "Z", "a#2", "a#10", "~"];
    for sk in sort_keys {
        put(
            store,
            Item::new(Key::new("tenant#t1", sk)).with("sk_copy", sk),
        )
        .await;
    }
    put(store, Item::new(Key::new("tenant#t2", "a"))).await;
    put(store, Item::new(Key::new("tenant#t", "a"))).await;

    // Byte order of the UTF-8 text, which is Rust's `str` order.
    let mut expected: Vec<&str> = sort_keys.to_vec();
    expected.sort();
    let page = store
        .query(Query::partition("tenant#t1"))
        .await
        .expect("ascending query");
    assert_eq!(sks(&page.items), expected);
    assert!(page.next.is_none());
    assert!(
        page.items
            .iter()
            .all(|item| item.attributes["sk_copy"] == item.key.sk.as_str())
    );

    expected.reverse();
    let page = store
        .query(Query::partition("tenant#t1").descending())
        .await
        .expect("descending query");
    assert_eq!(sks(&page.items), expected);

    let page = store
        .query(Query::partition("tenant#nobody"))
        .await
        .expect("query of an empty partition");
    assert!(page.items.is_empty() && page.next.is_none());
}

pub async fn query_by_sort_key_prefix(store: &dyn ItemStore, _clock: &ManualClock) {
    let sort_keys = [
        "order#001",
        "order#002",
        "order%x",
        "order_x",
        "orderAx",
        "order",
        "orders",
        "ordeq",
        "user#1",
        "100%",
        "1000",
        "100%off",
        "a_b",
        "axb",
        "a%b",
        "日本#1",
        "日本語",
        "日札",
        "~~",
        "~~~",
    ];
    for sk in sort_keys {
        put(store, Item::new(Key::new("tenant#t1", sk))).await;
    }
    put(store, Item::new(Key::new("tenant#t2", "order#003"))).await;

    let cases: &[(&str, &[&str])] = &[
        ("order#", &["order#001", "order#002"]),
        ("order%", &["order%x"]),
        ("order_", &["order_x"]),
        (
            "order",
            &[
                "order",
                "order#001",
                "order#002",
                "order%x",
                "orderAx",
                "order_x",
                "orders",
            ],
        ),
        ("a_", &["a_b"]),
        ("a%", &["a%b"]),
        ("100%", &["100%", "100%off"]),
        ("日本", &["日本#1", "日本語"]),
        ("~~", &["~~", "~~~"]),
        ("zzz", &[]),
    ];
    for (prefix, expected) in cases {
        let page = store
            .query(Query::partition("tenant#t1").prefix(*prefix))
            .await
            .expect("prefix query");
        assert_eq!(sks(&page.items), *expected, "prefix {prefix:?}");
        let page = store
            .query(Query::partition("tenant#t1").prefix(*prefix).descending())
            .await
            .expect("prefix query");
        let mut reversed = expected.to_vec();
        reversed.reverse();
        assert_eq!(sks(&page.items), reversed, "prefix {prefix:?} descending");
    }
    let page = store
        .query(Query::partition("tenant#t1").prefix(""))
        .await
        .expect("empty prefix");
    assert_eq!(
        page.items.len(),
        sort_keys.len(),
        "an empty prefix matches everything"
    );
}

pub async fn query_paginates_exactly_once(store: &dyn ItemStore, _clock: &ManualClock) {
    let mut expected: Vec<String> = (0..23).map(|i| format!("doc#{i:03}")).collect();
    for sk in &expected {
        put(
            store,
            Item::new(Key::new("site#s1", sk.as_str())).with("title", "ページ"),
        )
        .await;
    }
    put(store, Item::new(Key::new("site#s1", "meta"))).await;
    for limit in [1, 5, 7, 22, 23, 24, 1000] {
        let query = Query::partition("site#s1").prefix("doc#").limit(limit);
        let ascending = all_pages(store, query.clone()).await;
        assert_eq!(sks(&ascending), expected, "ascending, limit {limit}");
        let mut descending_expected = expected.clone();
        descending_expected.reverse();
        let descending = all_pages(store, query.descending()).await;
        assert_eq!(
            sks(&descending),
            descending_expected,
            "descending, limit {limit}"
        );
    }
    // A first page: full, with a cursor.
    let page = store
        .query(Query::partition("site#s1").limit(10))
        .await
        .expect("first page");
    assert_eq!(page.items.len(), 10);
    assert!(page.next.is_some());
    expected.push("meta".into());
    let all = all_pages(store, Query::partition("site#s1").limit(10)).await;
    assert_eq!(sks(&all), expected);
}

pub async fn query_on_each_index(store: &dyn ItemStore, _clock: &ManualClock) {
    for index in Index::ALL {
        let name = index.name();
        // Items from several table partitions, some sharing an index sort key, some in another index
        // partition, some without this index's key at all.
        let mut expected = Vec::new();
        for (i, (index_sk, table_pk)) in [
            ("2026-01-03", "a"),
            ("2026-01-01", "b"),
            ("2026-01-02", "a"),
            ("2026-01-02", "c"),
            ("2026-01-02", "b"),
        ]
        .into_iter()
        .enumerate()
        {
            let item = Item::new(Key::new(format!("{name}#{table_pk}"), format!("item#{i}")))
                .with("n", i as i64)
                .with_index(index, format!("{name}-part"), index_sk);
            put(store, item.clone()).await;
            expected.push(item);
        }
        put(
            store,
            Item::new(Key::new(format!("{name}#a"), "other")).with_index(
                index,
                format!("{name}-other"),
                "x",
            ),
        )
        .await;
        put(store, Item::new(Key::new(format!("{name}#a"), "plain"))).await;

        let all = all_pages(store, Query::on(index, format!("{name}-part"))).await;
        assert_eq!(all.len(), expected.len(), "{name}: every item once");
        let index_sks: Vec<&str> = all
            .iter()
            .map(|item| item.index_keys[&index].sk.as_str())
            .collect();
        assert_eq!(
            index_sks,
            [
                "2026-01-01",
                "2026-01-02",
                "2026-01-02",
                "2026-01-02",
                "2026-01-03"
            ],
            "{name}"
        );
        for item in &expected {
            assert!(
                all.contains(item),
                "{name}: {:?} comes back whole",
                item.key
            );
        }

        for limit in [1, 2, 3] {
            let query = Query::on(index, format!("{name}-part")).limit(limit);
            let ascending = all_pages(store, query.clone()).await;
            let keys: BTreeSet<&Key> = ascending.iter().map(|item| &item.key).collect();
            assert_eq!(
                (ascending.len(), keys.len()),
                (5, 5),
                "{name}: limit {limit} yields each item once"
            );
            let descending = all_pages(store, query.descending()).await;
            let sks: Vec<&str> = descending
                .iter()
                .map(|item| item.index_keys[&index].sk.as_str())
                .collect();
            assert_eq!(
                sks,
                [
                    "2026-01-03",
                    "2026-01-02",
                    "2026-01-02",
                    "2026-01-02",
                    "2026-01-01"
                ],
                "{name}"
            );
            let keys: BTreeSet<&Key> = descending.iter().map(|item| &item.key).collect();
            assert_eq!(
                keys.len(),
                5,
                "{name}: descending, limit {limit} yields each item once"
            );
        }

        let page = store
            .query(Query::on(index, format!("{name}-part")).prefix("2026-01-02"))
            .await
            .expect("query");
        assert_eq!(page.items.len(), 3, "{name}: prefix on the index sort key");
        let page = store
            .query(Query::on(index, format!("{name}-nobody")))
            .await
            .expect("query");
        assert!(page.items.is_empty());
    }
}

pub async fn expired_items_are_hidden(store: &dyn ItemStore, clock: &ManualClock) {
    let now = clock.unix_seconds();
    let live = Item::new(Key::new("tenant#t1", "a-live")).with_index(Index::ByDue, "due", "1");
    let soon = Item::new(Key::new("tenant#t1", "b-soon"))
        .with_index(Index::ByDue, "due", "2")
        .expiring_at(now + 10);
    let gone = Item::new(Key::new("tenant#t1", "c-gone"))
        .with_index(Index::ByDue, "due", "3")
        .expiring_at(now - 1);
    for item in [&live, &soon, &gone] {
        put(store, item.clone()).await;
    }
    assert!(
        get(store, &gone.key).await.is_none(),
        "an item put already expired is not there"
    );
    assert_eq!(get(store, &soon.key).await.as_ref(), Some(&soon));
    let page = store
        .query(Query::partition("tenant#t1"))
        .await
        .expect("query");
    assert_eq!(sks(&page.items), ["a-live", "b-soon"]);
    let page = store
        .query(Query::on(Index::ByDue, "due"))
        .await
        .expect("index query");
    assert_eq!(sks(&page.items), ["a-live", "b-soon"]);

    clock.advance(Duration::from_secs(10));
    assert!(
        get(store, &soon.key).await.is_none(),
        "expired at expires_at"
    );
    let page = store
        .query(Query::partition("tenant#t1"))
        .await
        .expect("query");
    assert_eq!(sks(&page.items), ["a-live"]);
    let page = store
        .query(Query::on(Index::ByDue, "due").descending())
        .await
        .expect("index query");
    assert_eq!(sks(&page.items), ["a-live"]);
}

pub async fn expired_items_do_not_break_pagination(store: &dyn ItemStore, clock: &ManualClock) {
    let now = clock.unix_seconds();
    let mut live = Vec::new();
    for i in 0..30 {
        let sk = format!("doc#{i:02}");
        // Runs of expired items of different lengths between the live ones.
        let expired = i % 3 != 0 || (10..20).contains(&i);
        let mut item = Item::new(Key::new("site#s1", sk.as_str())).with_index(
            Index::BySite,
            "site#s1",
            sk.as_str(),
        );
        if expired {
            item = item.expiring_at(now - 5);
        } else {
            live.push(sk);
        }
        put(store, item).await;
    }
    for limit in [1, 2, 3, 100] {
        let items = all_pages(store, Query::partition("site#s1").limit(limit)).await;
        assert_eq!(sks(&items), live, "limit {limit}");
        let items = all_pages(store, Query::on(Index::BySite, "site#s1").limit(limit)).await;
        assert_eq!(sks(&items), live, "index, limit {limit}");
    }
}

pub async fn reserved_attribute_names_are_rejected(store: &dyn ItemStore, _clock: &ManualClock) {
    let key = Key::new("tenant#t1", "profile");
    for name in super::RESERVED_ATTRIBUTES.iter().copied().chain([""]) {
        assert_invalid(
            store
                .put(Item::new(key.clone()).with(name, "x"), Condition::None)
                .await,
            name,
        );
        assert_invalid(store.add(Add::new(key.clone(), name, 1)).await, name);
    }
    assert!(get(store, &key).await.is_none(), "nothing was written");

    let item = Item::new(key.clone()).with("name", "店");
    put(store, item.clone()).await;
    assert_invalid(
        store
            .update(Update::new(key.clone()).set("sk", "other"))
            .await,
        "update set sk",
    );
    assert_invalid(
        store
            .update(Update::new(key.clone()).remove("expires_at"))
            .await,
        "update remove expires_at",
    );
    assert_invalid(
        store
            .put(
                item.clone(),
                Condition::AttributeEquals("pk".into(), json!("tenant#t1")),
            )
            .await,
        "condition on pk",
    );
    assert_invalid(
        store
            .transact(vec![
                Write::Put(
                    Item::new(Key::new("tenant#t1", "other")).with("ok", 1),
                    Condition::None,
                ),
                Write::Put(
                    Item::new(key.clone()).with("by_site_pk", "site#1"),
                    Condition::None,
                ),
            ])
            .await,
        "a transaction with a reserved name",
    );
    assert!(get(store, &Key::new("tenant#t1", "other")).await.is_none());
    assert_eq!(get(store, &key).await, Some(item));
}

pub async fn malformed_requests_are_invalid(store: &dyn ItemStore, _clock: &ManualClock) {
    assert_invalid(store.query(Query::partition("p").limit(0)).await, "limit 0");
    assert_invalid(
        store.query(Query::partition("p").limit(1001)).await,
        "limit 1001",
    );
    assert_bad_cursor(
        store
            .query(Query::partition("p").after(Some("not a cursor!".into())))
            .await,
        "garbage cursor",
    );

    for sk in ["a", "b", "c"] {
        put(
            store,
            Item::new(Key::new("p", sk)).with_index(Index::ByTenant, "t", sk),
        )
        .await;
    }
    let page = store
        .query(Query::partition("p").limit(1))
        .await
        .expect("query");
    let cursor = page.next.expect("a cursor");
    assert_bad_cursor(
        store
            .query(Query::partition("q").after(Some(cursor.clone())))
            .await,
        "another partition's cursor",
    );
    assert_bad_cursor(
        store
            .query(Query::on(Index::ByTenant, "t").after(Some(cursor)))
            .await,
        "a table cursor on an index",
    );
    let page = store
        .query(Query::on(Index::ByTenant, "t").limit(1))
        .await
        .expect("index query");
    let cursor = page.next.expect("an index cursor");
    for wrong in [
        Query::on(Index::BySite, "t"),
        Query::on(Index::ByTenant, "u"),
        Query::partition("p"),
    ] {
        assert_bad_cursor(
            store.query(wrong.after(Some(cursor.clone()))).await,
            "an index cursor on another query",
        );
    }
    let rest = store
        .query(Query::on(Index::ByTenant, "t").after(Some(cursor)))
        .await
        .expect("the index cursor on its own query");
    assert_eq!(sks(&rest.items), ["b", "c"]);

    assert_invalid(
        store
            .put(Item::new(Key::new("", "sk")), Condition::None)
            .await,
        "empty pk",
    );
    assert_invalid(
        store
            .put(Item::new(Key::new("pk", "")), Condition::None)
            .await,
        "empty sk",
    );
    assert_invalid(
        store
            .put(
                Item::new(Key::new("pk", "sk")).with_index(Index::ByDue, "", "x"),
                Condition::None,
            )
            .await,
        "empty index pk",
    );
    assert_invalid(
        store
            .update(Update::new(Key::new("p", "a")).set("x", 1).remove("x"))
            .await,
        "setting and removing one attribute",
    );
    assert!(get(store, &Key::new("pk", "sk")).await.is_none());
}
