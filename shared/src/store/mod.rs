//! The item store port: one key-value table with a partition key, a sort key, secondary indexes and TTL.
//!
//! Production runs it on DynamoDB (single table, GSIs); the local runner and unit tests on an embedded
//! SQLite database under the data directory. Both adapters pass the same conformance suite
//! (`store::conformance`), so services can rely on the semantics documented here and nothing else.

pub mod dynamo;
pub mod embedded;

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

/// "Add `amount` to `attribute` unless the total would pass `limit`": the quota primitive.
///
/// A missing item or attribute counts as 0 and is created. With `limit`, the add fails with
/// [`StoreError::ConditionFailed`] and changes nothing when `current + amount > limit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Add {
    pub key: Key,
    pub attribute: String,
    pub amount: i64,
    pub limit: Option<i64>,
    /// Set when the add creates the item (counters for a day expire on their own); kept on later adds.
    pub expires_at: Option<i64>,
}

impl Add {
    pub fn new(key: Key, attribute: impl Into<String>, amount: i64) -> Self {
        Self {
            key,
            attribute: attribute.into(),
            amount,
            limit: None,
            expires_at: None,
        }
    }

    pub fn up_to(mut self, limit: i64) -> Self {
        self.limit = Some(limit);
        self
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
}

/// Most writes a transaction may hold (DynamoDB allows 100; we keep well inside it).
pub const MAX_TRANSACTION_WRITES: usize = 25;

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
