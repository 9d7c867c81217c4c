//! An item store that fails on cue: reads of chosen items answer a backend error, as a DynamoDB outage
//! would; everything else goes to the real store underneath.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use shared::store::{Add, Condition, Item, ItemStore, Key, Page, Query, StoreError, Update, Write};

/// Which reads fail: keys whose partition key starts with `pk_prefix` and whose sort key starts with
/// `sk_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub pk_prefix: &'static str,
    pub sk_prefix: &'static str,
}

pub struct FaultyStore {
    inner: Arc<dyn ItemStore>,
    fault: Mutex<Option<Fault>>,
    /// Writes of an item whose key contains this text panic (a bug on cue).
    panic_on_write: Mutex<Option<String>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ItemStore>) -> Arc<FaultyStore> {
        Arc::new(FaultyStore {
            inner,
            fault: Mutex::new(None),
            panic_on_write: Mutex::new(None),
        })
    }

    /// From now on, reads matching `fault` fail (`None`: none do).
    pub fn set(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap() = fault;
    }

    /// From now on, writing an item whose partition or sort key contains `text` panics.
    pub fn panic_on_write(&self, text: Option<&str>) {
        *self.panic_on_write.lock().unwrap() = text.map(str::to_string);
    }

    fn check_panic(&self, key: &Key) {
        let text = self.panic_on_write.lock().unwrap().clone();
        if let Some(text) = text
            && (key.pk.contains(&text) || key.sk.contains(&text))
        {
            panic!("injected panic writing {}/{}", key.pk, key.sk);
        }
    }

    fn fails(&self, key: &Key) -> bool {
        self.fault
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|f| key.pk.starts_with(f.pk_prefix) && key.sk.starts_with(f.sk_prefix))
    }
}

impl ItemStore for FaultyStore {
    fn get(&self, key: &Key) -> BoxFuture<'_, Result<Option<Item>, StoreError>> {
        if self.fails(key) {
            let what = format!("{}/{}", key.pk, key.sk);
            return Box::pin(async move {
                Err(StoreError::Backend(anyhow::anyhow!(
                    "injected outage reading {what}"
                )))
            });
        }
        self.inner.get(key)
    }

    fn put(&self, item: Item, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>> {
        self.check_panic(&item.key);
        self.inner.put(item, condition)
    }

    fn delete(&self, key: &Key, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.delete(key, condition)
    }

    fn update(&self, update: Update) -> BoxFuture<'_, Result<Item, StoreError>> {
        self.inner.update(update)
    }

    fn add(&self, add: Add) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.inner.add(add)
    }

    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, StoreError>> {
        self.inner.query(query)
    }

    fn transact(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.transact(writes)
    }
}
