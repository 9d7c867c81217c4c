//! The item store port: one key-value table with a partition key, a sort key, secondary indexes and TTL.
//!
//! Production runs it on DynamoDB (single table, GSIs); the local runner and unit tests on an embedded
//! SQLite database under the data directory. Both adapters pass the same conformance suite
//! (`store::conformance`), so services can rely on the semantics documented here and nothing else.

pub mod dynamo;
pub mod embedded;
pub mod keys;
pub mod retry;
pub mod stored;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

pub use dynamo::DynamoStore;
pub use embedded::EmbeddedStore;

/// Attribute names the store owns; records may not use them.
pub const RESERVED_ATTRIBUTES: &[&str] = &[
    "pk",
    "sk",
    "expires_at",
    "by_tenant_pk",
    "by_tenant_sk",
    "by_site_pk",
    "by_site_sk",
    "by_due_pk",
    "by_due_sk",
];

/// The primary key of an item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// A secondary index. Each maps to one GSI in DynamoDB (`<name>_pk` / `<name>_sk` attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Index {
    /// Everything a tenant owns (sites, keys, numbers …), for listings.
    ByTenant,
    /// Everything that hangs off a site (documents, jobs …).
    BySite,
    /// Things that fall due on a date, for the deadline job: never a table scan.
    ByDue,
}

impl Index {
    pub const ALL: [Index; 3] = [Index::ByTenant, Index::BySite, Index::ByDue];

    /// The index name (also the DynamoDB GSI name).
    pub fn name(self) -> &'static str {
        match self {
            Index::ByTenant => "by_tenant",
            Index::BySite => "by_site",
            Index::ByDue => "by_due",
        }
    }

    pub fn pk_attribute(self) -> &'static str {
        match self {
            Index::ByTenant => "by_tenant_pk",
            Index::BySite => "by_site_pk",
            Index::ByDue => "by_due_pk",
        }
    }

    pub fn sk_attribute(self) -> &'static str {
        match self {
            Index::ByTenant => "by_tenant_sk",
            Index::BySite => "by_site_sk",
            Index::ByDue => "by_due_sk",
        }
    }
}

/// One stored item: its key, its attributes (a JSON object), its index keys and an optional expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: Key,
    pub attributes: Map<String, Value>,
    pub index_keys: BTreeMap<Index, Key>,
    /// Unix seconds after which the item no longer exists for readers.
    pub expires_at: Option<i64>,
}

impl Item {
    pub fn new(key: Key) -> Self {
        Self {
            key,
            attributes: Map::new(),
            index_keys: BTreeMap::new(),
            expires_at: None,
        }
    }

    /// An item whose attributes are the fields of a serialisable record (which must be a struct or map).
    pub fn from_record<T: Serialize>(key: Key, record: &T) -> Result<Self, StoreError> {
        match serde_json::to_value(record) {
            Ok(Value::Object(attributes)) => Ok(Self {
                attributes,
                ..Self::new(key)
            }),
            Ok(other) => Err(StoreError::Invalid(format!(
                "a record must serialise to an object, not {other}"
            ))),
            Err(e) => Err(StoreError::Invalid(format!(
                "record does not serialise: {e}"
            ))),
        }
    }

    /// The attributes read back as a record.
    pub fn to_record<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_value(Value::Object(self.attributes.clone())).map_err(|e| {
            StoreError::Corrupt(format!(
                "item {}/{} does not read as a record: {e}",
                self.key.pk, self.key.sk
            ))
        })
    }

    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    pub fn with_index(
        mut self,
        index: Index,
        pk: impl Into<String>,
        sk: impl Into<String>,
    ) -> Self {
        self.index_keys.insert(index, Key::new(pk, sk));
        self
    }

    pub fn expiring_at(mut self, unix_seconds: i64) -> Self {
        self.expires_at = Some(unix_seconds);
        self
    }

    /// An integer attribute, 0 when absent (counters start at zero).
    pub fn count(&self, name: &str) -> i64 {
        self.attributes
            .get(name)
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    pub fn is_expired(&self, now_unix: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now_unix)
    }

    /// Rejects attribute names the store owns, so a record can never overwrite a key or index attribute.
    pub fn check_attributes(&self) -> Result<(), StoreError> {
        check_names(self.attributes.keys().map(String::as_str))
    }
}

pub(crate) fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), StoreError> {
    for name in names {
        if RESERVED_ATTRIBUTES.contains(&name) {
            return Err(StoreError::Invalid(format!(
                "attribute name {name:?} is reserved by the store"
            )));
        }
        if name.is_empty() {
            return Err(StoreError::Invalid("empty attribute name".into()));
        }
    }
    Ok(())
}

/// A precondition on a write. Expired items count as absent.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Condition {
    #[default]
    None,
    /// The item must not exist (or must have expired).
    IfAbsent,
    /// The item must exist (and not have expired).
    IfExists,
    /// The item must exist with this attribute equal to this value (optimistic concurrency, state machines).
    AttributeEquals(String, Value),
}

/// "Add `amount` to `attribute` unless the total would leave `floor..=limit`": the quota primitive, and
/// (with a floor) the balance primitive that never goes below zero.
///
/// A missing item or attribute counts as 0 and is created. With `limit`, the add fails with
/// [`StoreError::ConditionFailed`] and changes nothing when `current + amount > limit`; with `floor`,
/// likewise when `current + amount < floor`. Bounds hold inside [`ItemStore::transact`] too.
#[derive(Debug, Clone, PartialEq)]
pub struct Add {
    pub key: Key,
    pub attribute: String,
    pub amount: i64,
    pub limit: Option<i64>,
    pub floor: Option<i64>,
    /// Set when the add creates the item (counters for a day expire on their own); kept on later adds.
    /// (Precisely: set when the item has no expiry yet, which is how DynamoDB's `if_not_exists` does it.)
    pub expires_at: Option<i64>,
    /// More counters of the same item added in the same write, each within its own limit: a transaction
    /// writes an item once, so a month's chats and tokens, reserved or settled together, are one add.
    pub more: Vec<Counter>,
}

/// One more counter of an [`Add`]: `amount` added to `attribute`, refused past `limit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Counter {
    pub attribute: String,
    pub amount: i64,
    pub limit: Option<i64>,
}

impl Add {
    pub fn new(key: Key, attribute: impl Into<String>, amount: i64) -> Self {
        Self {
            key,
            attribute: attribute.into(),
            amount,
            limit: None,
            floor: None,
            expires_at: None,
            more: Vec::new(),
        }
    }

    /// Also adds `amount` to `attribute` of the same item (refused past `limit`, when given).
    pub fn and(mut self, attribute: impl Into<String>, amount: i64, limit: Option<i64>) -> Self {
        self.more.push(Counter {
            attribute: attribute.into(),
            amount,
            limit,
        });
        self
    }

    /// Every counter of the add as `(attribute, amount, limit, floor)`, the first one first.
    pub fn counters(&self) -> impl Iterator<Item = (&str, i64, Option<i64>, Option<i64>)> {
        std::iter::once((self.attribute.as_str(), self.amount, self.limit, self.floor)).chain(
            self.more
                .iter()
                .map(|c| (c.attribute.as_str(), c.amount, c.limit, None)),
        )
    }

    /// Whether every counter fits when the item stands at `current` (a missing attribute is 0).
    pub fn fits(&self, current: Option<&Item>) -> bool {
        self.counters().all(|(attribute, amount, limit, floor)| {
            let total = current
                .map_or(0, |item| item.count(attribute))
                .saturating_add(amount);
            limit.is_none_or(|l| total <= l) && floor.is_none_or(|f| total >= f)
        })
    }

    /// Whether any counter has a bound (a refusal can only come from a bound or an expired item).
    pub fn bounded(&self) -> bool {
        self.counters()
            .any(|(_, _, limit, floor)| limit.is_some() || floor.is_some())
    }

    pub fn up_to(mut self, limit: i64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Refuses the add when the total would fall below `floor` (a balance that never goes negative).
    pub fn at_least(mut self, floor: i64) -> Self {
        self.floor = Some(floor);
        self
    }

    /// Whether a counter standing at `total` after this add is within its bounds.
    pub fn allows(&self, total: i64) -> bool {
        self.limit.is_none_or(|limit| total <= limit)
            && self.floor.is_none_or(|floor| total >= floor)
    }

    pub fn expiring_at(mut self, unix_seconds: i64) -> Self {
        self.expires_at = Some(unix_seconds);
        self
    }
}

/// Set some attributes of an existing item (and only those), under a condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub key: Key,
    pub set: Map<String, Value>,
    /// Attributes to remove.
    pub remove: Vec<String>,
    /// `Condition::None` still requires the item to exist: an update never creates an item.
    pub condition: Condition,
}

impl Update {
    pub fn new(key: Key) -> Self {
        Self {
            key,
            set: Map::new(),
            remove: Vec::new(),
            condition: Condition::None,
        }
    }

    pub fn set(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set.insert(name.into(), value.into());
        self
    }

    pub fn remove(mut self, name: impl Into<String>) -> Self {
        self.remove.push(name.into());
        self
    }

    pub fn when(mut self, condition: Condition) -> Self {
        self.condition = condition;
        self
    }
}

/// One write inside a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Put(Item, Condition),
    Delete(Key, Condition),
    Update(Update),
    Add(Add),
    /// Writes nothing; the transaction fails unless the condition holds.
    Check(Key, Condition),
}

/// A query over one partition of the table or of an index.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub index: Option<Index>,
    pub pk: String,
    pub sk_prefix: Option<String>,
    pub descending: bool,
    /// At most this many items in a page (1..=1000).
    pub limit: usize,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

impl Query {
    pub fn partition(pk: impl Into<String>) -> Self {
        Self {
            index: None,
            pk: pk.into(),
            sk_prefix: None,
            descending: false,
            limit: 100,
            cursor: None,
        }
    }

    pub fn on(index: Index, pk: impl Into<String>) -> Self {
        Self {
            index: Some(index),
            ..Self::partition(pk)
        }
    }

    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.sk_prefix = Some(prefix.into());
        self
    }

    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn after(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// A page of query results, ordered by sort key; `next` is an opaque cursor when more may follow.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub items: Vec<Item>,
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write's condition did not hold (for a transaction: one of its conditions); nothing was written.
    #[error("condition not met")]
    ConditionFailed,
    /// The request itself is malformed (reserved attribute, bad cursor, too many writes …).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// A caller's page cursor that this query did not hand out (garbled, or another query's): the
    /// client's mistake, not the store's.
    #[error("bad page cursor: {0}")]
    BadCursor(&'static str),
    /// Stored data does not read back as expected.
    #[error("corrupt item: {0}")]
    Corrupt(String),
    /// The backend failed (I/O, network, throttling); the write may be retried.
    #[error("store backend failed: {0:#}")]
    Backend(#[from] anyhow::Error),
}

/// The item store. Every read hides expired items; every write is atomic.
///
/// Methods return boxed futures so the port stays object-safe (`Arc<dyn ItemStore>`).
pub trait ItemStore: Send + Sync + 'static {
    fn get(&self, key: &Key) -> BoxFuture<'_, Result<Option<Item>, StoreError>>;
    fn put(&self, item: Item, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>>;
    fn delete(&self, key: &Key, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Returns the item as it is after the update.
    fn update(&self, update: Update) -> BoxFuture<'_, Result<Item, StoreError>>;
    /// Returns the new total.
    fn add(&self, add: Add) -> BoxFuture<'_, Result<i64, StoreError>>;
    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, StoreError>>;
    /// All or nothing: at most 25 writes, each to a different item.
    fn transact(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// A transaction of `writes` (none: only read) and reads of `reads`, as one round trip: what the
    /// chat path does before the model is called (its reservation and its session read).
    ///
    /// The embedded store reads inside the transaction, before its writes. DynamoDB has no call that
    /// reads and writes, so its adapter sends the transaction and a strongly consistent
    /// `BatchGetItem` side by side: one round trip of latency, two requests, and the reads are not
    /// isolated from the writes (they may see the state before or after them). Callers must not read
    /// an item they write here. Reads come back in the order of `reads`, `None` for absent or expired
    /// items, also when the transaction was refused. This default runs the two side by side through
    /// the other methods (wrappers that only forward need nothing more).
    fn transact_and_read(&self, writes: Vec<Write>, reads: Vec<Key>) -> BoxFuture<'_, ReadWrite> {
        Box::pin(async move {
            let write = async {
                if writes.is_empty() {
                    Ok(())
                } else {
                    self.transact(writes).await
                }
            };
            let read = futures::future::try_join_all(reads.iter().map(|key| self.get(key)));
            let (written, read) = futures::join!(write, read);
            ReadWrite { written, read }
        })
    }
}

/// What [`ItemStore::transact_and_read`] did.
#[derive(Debug)]
pub struct ReadWrite {
    /// The transaction's outcome (`Ok` when there was nothing to write).
    pub written: Result<(), StoreError>,
    /// The items read, in the order asked.
    pub read: Result<Vec<Option<Item>>, StoreError>,
}

/// Most writes a transaction may hold (DynamoDB allows 100; we keep well inside it).
pub const MAX_TRANSACTION_WRITES: usize = 25;

/// Most items one [`ItemStore::transact_and_read`] may read (DynamoDB's `BatchGetItem` allows 100).
pub const MAX_READS: usize = 100;

pub(crate) fn check_transaction(writes: &[Write]) -> Result<(), StoreError> {
    if writes.is_empty() || writes.len() > MAX_TRANSACTION_WRITES {
        return Err(StoreError::Invalid(format!(
            "a transaction holds 1 to {MAX_TRANSACTION_WRITES} writes, not {}",
            writes.len()
        )));
    }
    let mut keys: Vec<&Key> = writes.iter().map(Write::key).collect();
    keys.sort();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(StoreError::Invalid(
            "a transaction writes each item at most once".into(),
        ));
    }
    Ok(())
}

impl Write {
    pub fn key(&self) -> &Key {
        match self {
            Write::Put(item, _) => &item.key,
            Write::Delete(key, _) | Write::Check(key, _) => key,
            Write::Update(update) => &update.key,
            Write::Add(add) => &add.key,
        }
    }
}

pub(crate) fn check_query(query: &Query) -> Result<(), StoreError> {
    if query.limit == 0 || query.limit > 1000 {
        return Err(StoreError::Invalid(format!(
            "query limit must be 1..=1000, not {}",
            query.limit
        )));
    }
    Ok(())
}

/// Rejects a key DynamoDB could not store (empty strings), so both adapters accept the same keys.
pub(crate) fn check_key(key: &Key) -> Result<(), StoreError> {
    if key.pk.is_empty() || key.sk.is_empty() {
        return Err(StoreError::Invalid(format!(
            "empty key part in {:?}/{:?}",
            key.pk, key.sk
        )));
    }
    Ok(())
}

fn check_condition(condition: &Condition) -> Result<(), StoreError> {
    match condition {
        Condition::AttributeEquals(name, _) => check_names([name.as_str()]),
        Condition::None | Condition::IfAbsent | Condition::IfExists => Ok(()),
    }
}

/// Everything about one write that can be checked without looking at the store.
pub(crate) fn check_write(write: &Write) -> Result<(), StoreError> {
    check_key(write.key())?;
    match write {
        Write::Put(item, condition) => {
            item.check_attributes()?;
            for key in item.index_keys.values() {
                check_key(key)?;
            }
            check_condition(condition)
        }
        Write::Delete(_, condition) | Write::Check(_, condition) => check_condition(condition),
        Write::Update(update) => {
            check_names(
                update
                    .set
                    .keys()
                    .map(String::as_str)
                    .chain(update.remove.iter().map(String::as_str)),
            )?;
            if let Some(both) = update
                .remove
                .iter()
                .find(|name| update.set.contains_key(*name))
            {
                return Err(StoreError::Invalid(format!(
                    "attribute {both:?} is both set and removed"
                )));
            }
            check_condition(&update.condition)
        }
        Write::Add(add) => {
            check_names(add.counters().map(|(name, ..)| name))?;
            let mut names: Vec<&str> = add.counters().map(|(name, ..)| name).collect();
            names.sort_unstable();
            if names.windows(2).any(|w| w[0] == w[1]) {
                return Err(StoreError::Invalid(
                    "an add names each attribute once".into(),
                ));
            }
            Ok(())
        }
    }
}

/// The opaque query cursor both adapters hand out: where the last returned item sits, as base64 JSON.
///
/// Built from the last item returned (not from a backend's own continuation token), so a page never
/// ends on an item it filtered out. For an index query the table key breaks ties between equal index
/// sort keys (and is what DynamoDB needs to resume a GSI query).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Cursor {
    /// The index queried (None for the table) and the partition: a cursor only fits its own query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    pub partition: String,
    /// The table key of the last item returned.
    pub pk: String,
    pub sk: String,
    /// Its index sort key, for an index query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_sk: Option<String>,
}

impl Cursor {
    /// The cursor after `item` in `query`.
    pub fn after(query: &Query, item: &Item) -> Result<Self, StoreError> {
        let index_sk = match query.index {
            None => None,
            Some(index) => Some(
                item.index_keys
                    .get(&index)
                    .map(|key| key.sk.clone())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "item returned by {} lacks its key",
                            index.name()
                        ))
                    })?,
            ),
        };
        Ok(Self {
            index: query.index.map(|index| index.name().to_owned()),
            partition: query.pk.clone(),
            pk: item.key.pk.clone(),
            sk: item.key.sk.clone(),
            index_sk,
        })
    }

    pub fn encode(&self) -> Result<String, StoreError> {
        use base64::Engine as _;
        let json = serde_json::to_vec(self)
            .map_err(|e| StoreError::Backend(anyhow::anyhow!("encoding cursor: {e}")))?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    }

    /// Reads a cursor back, checking it belongs to this query's partition and kind.
    pub fn decode(query: &Query, text: &str) -> Result<Self, StoreError> {
        use base64::Engine as _;
        let bad = || StoreError::BadCursor("malformed");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let fits = cursor.index.as_deref() == query.index.map(Index::name)
            && cursor.partition == query.pk
            && cursor.index_sk.is_some() == query.index.is_some();
        if !fits {
            return Err(StoreError::BadCursor("it belongs to another listing"));
        }
        Ok(cursor)
    }
}

/// A non-empty sort key prefix (an empty one matches everything, so it is no prefix at all).
pub(crate) fn sk_prefix(query: &Query) -> Option<&str> {
    query.sk_prefix.as_deref().filter(|p| !p.is_empty())
}

/// Equality of attribute values as the store sees it: numbers compare by value (DynamoDB keeps no
/// difference between `1` and `1.0`), everything else structurally.
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}
