//! The item store on the embedded SQLite database: one `items` table with a column pair per index.
//!
//! Every operation is one SQLite transaction inside one [`EmbeddedDb::call`], which also holds the
//! connection's mutex, so conditions and read-modify-writes are atomic. Expired rows stay on disk until
//! overwritten, like DynamoDB's TTL, but no read or condition ever sees them.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use futures::future::BoxFuture;
use rusqlite::types::Value as SqlValue;
use rusqlite::{
    OptionalExtension, Row, Transaction, TransactionBehavior, params, params_from_iter,
};
use serde_json::{Map, Value};

use super::{
    Add, Condition, Cursor, Index, Item, ItemStore, Key, MAX_READS, Page, Query, ReadWrite,
    StoreError, Update, Write, check_key, check_query, check_transaction, check_write, sk_prefix,
    values_equal,
};
use crate::clock::Clock;
use crate::embedded_db::EmbeddedDb;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    attributes TEXT NOT NULL,
    expires_at INTEGER NULL,
    by_tenant_pk TEXT NULL,
    by_tenant_sk TEXT NULL,
    by_site_pk TEXT NULL,
    by_site_sk TEXT NULL,
    by_due_pk TEXT NULL,
    by_due_sk TEXT NULL,
    PRIMARY KEY (pk, sk)
);
CREATE INDEX IF NOT EXISTS items_by_tenant ON items (by_tenant_pk, by_tenant_sk);
CREATE INDEX IF NOT EXISTS items_by_site ON items (by_site_pk, by_site_sk);
CREATE INDEX IF NOT EXISTS items_by_due ON items (by_due_pk, by_due_sk);
";

/// Every column of a row, in the order [`read_row`] expects.
const COLUMNS: &str = "pk, sk, attributes, expires_at, by_tenant_pk, by_tenant_sk, by_site_pk, by_site_sk, by_due_pk, by_due_sk";

/// The item store on SQLite, for the local runner and unit tests.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: EmbeddedDb,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the store on `db`, creating its table and indexes if they are not there yet.
    pub fn new(db: EmbeddedDb, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        db.call_blocking(|conn| {
            conn.execute_batch(SCHEMA)
                .context("creating the items table")
        })?;
        Ok(Self { db, clock })
    }

    /// Runs `f` in one SQLite transaction, committed only when `f` succeeds; `f` gets the current time.
    async fn run<T, F>(&self, behavior: TransactionBehavior, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, i64) -> Result<T, StoreError> + Send + 'static,
    {
        let now = self.clock.unix_seconds();
        self.db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(behavior)
                    .context("beginning a store transaction")?;
                match f(&tx, now) {
                    Ok(value) => {
                        tx.commit().context("committing a store transaction")?;
                        Ok(Ok(value))
                    }
                    // Dropping the transaction rolls it back.
                    Err(e) => Ok(Err(e)),
                }
            })
            .await?
    }
}

impl ItemStore for EmbeddedStore {
    fn get(&self, key: &Key) -> BoxFuture<'_, Result<Option<Item>, StoreError>> {
        let key = key.clone();
        Box::pin(self.run(TransactionBehavior::Deferred, move |tx, now| {
            load(tx, &key, now)
        }))
    }

    fn put(&self, item: Item, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let write = Write::Put(item, condition);
            check_write(&write)?;
            self.run(TransactionBehavior::Immediate, move |tx, now| {
                let effect = plan(tx, write, now)?;
                effect.apply(tx)
            })
            .await
        })
    }

    fn delete(&self, key: &Key, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>> {
        let write = Write::Delete(key.clone(), condition);
        Box::pin(async move {
            check_write(&write)?;
            self.run(TransactionBehavior::Immediate, move |tx, now| {
                let effect = plan(tx, write, now)?;
                effect.apply(tx)
            })
            .await
        })
    }

    fn update(&self, update: Update) -> BoxFuture<'_, Result<Item, StoreError>> {
        Box::pin(async move {
            let write = Write::Update(update);
            check_write(&write)?;
            self.run(TransactionBehavior::Immediate, move |tx, now| {
                let effect = plan(tx, write, now)?;
                let Effect::Save(item) = &effect else {
                    return Err(StoreError::Backend(anyhow::anyhow!(
                        "an update planned something other than a save"
                    )));
                };
                let item = item.clone();
                effect.apply(tx)?;
                Ok(item)
            })
            .await
        })
    }

    fn add(&self, add: Add) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(async move {
            let attribute = add.attribute.clone();
            let write = Write::Add(add);
            check_write(&write)?;
            self.run(TransactionBehavior::Immediate, move |tx, now| {
                let effect = plan(tx, write, now)?;
                let Effect::Save(item) = &effect else {
                    return Err(StoreError::Backend(anyhow::anyhow!(
                        "an add planned something other than a save"
                    )));
                };
                let total = item.count(&attribute);
                effect.apply(tx)?;
                Ok(total)
            })
            .await
        })
    }

    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, StoreError>> {
        Box::pin(async move {
            check_query(&query)?;
            let cursor = query
                .cursor
                .as_deref()
                .map(|text| Cursor::decode(&query, text))
                .transpose()?;
            self.run(TransactionBehavior::Deferred, move |tx, now| {
                run_query(tx, &query, cursor.as_ref(), now)
            })
            .await
        })
    }

    fn transact(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            check_transaction(&writes)?;
            for write in &writes {
                check_write(write)?;
            }
            self.run(TransactionBehavior::Immediate, move |tx, now| {
                // Every condition against the state before the transaction, then every write. Each write
                // touches a different item, so planning them all first is the same as writing in order.
                let effects = writes
                    .into_iter()
                    .map(|write| plan(tx, write, now))
                    .collect::<Result<Vec<_>, _>>()?;
                for effect in effects {
                    effect.apply(tx)?;
                }
                Ok(())
            })
            .await
        })
    }

    fn transact_and_read(&self, writes: Vec<Write>, reads: Vec<Key>) -> BoxFuture<'_, ReadWrite> {
        Box::pin(async move {
            let checked = (|| {
                if !writes.is_empty() {
                    check_transaction(&writes)?;
                }
                for write in &writes {
                    check_write(write)?;
                }
                if reads.len() > MAX_READS {
                    return Err(StoreError::Invalid(format!(
                        "at most {MAX_READS} reads, not {}",
                        reads.len()
                    )));
                }
                reads.iter().try_for_each(check_key)
            })();
            if let Err(e) = checked {
                let read = Err(StoreError::Invalid(e.to_string()));
                return ReadWrite {
                    written: Err(e),
                    read,
                };
            }
            // One SQLite transaction: the reads first, then every condition, then every write.
            let outcome = self
                .run(TransactionBehavior::Immediate, move |tx, now| {
                    let read = reads
                        .iter()
                        .map(|key| load(tx, key, now))
                        .collect::<Result<Vec<_>, _>>()?;
                    let planned = writes
                        .into_iter()
                        .map(|write| plan(tx, write, now))
                        .collect::<Result<Vec<_>, _>>();
                    let written = match planned {
                        Ok(effects) => {
                            for effect in effects {
                                effect.apply(tx)?;
                            }
                            Ok(())
                        }
                        // Refused before anything was written: the reads still stand.
                        Err(e) => Err(e),
                    };
                    Ok((written, read))
                })
                .await;
            match outcome {
                Ok((written, read)) => ReadWrite {
                    written,
                    read: Ok(read),
                },
                Err(e) => ReadWrite {
                    read: Err(StoreError::Backend(anyhow::anyhow!("{e}"))),
                    written: Err(e),
                },
            }
        })
    }
}

/// What a write does once its condition has held.
enum Effect {
    Save(Item),
    Remove(Key),
    Nothing,
}

impl Effect {
    fn apply(self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        match self {
            Effect::Save(item) => save(tx, &item),
            Effect::Remove(key) => {
                tx.execute(
                    "DELETE FROM items WHERE pk = ?1 AND sk = ?2",
                    params![key.pk, key.sk],
                )
                .with_context(|| format!("deleting item {}/{}", key.pk, key.sk))?;
                Ok(())
            }
            Effect::Nothing => Ok(()),
        }
    }
}

/// Checks a write's condition against the live item and works out its effect, writing nothing.
fn plan(tx: &Transaction<'_>, write: Write, now: i64) -> Result<Effect, StoreError> {
    let current = load(tx, write.key(), now)?;
    let require = |condition: &Condition| {
        if holds(condition, current.as_ref()) {
            Ok(())
        } else {
            Err(StoreError::ConditionFailed)
        }
    };
    match write {
        Write::Put(item, condition) => {
            require(&condition)?;
            Ok(Effect::Save(item))
        }
        Write::Delete(key, condition) => {
            require(&condition)?;
            Ok(Effect::Remove(key))
        }
        Write::Check(_, condition) => {
            require(&condition)?;
            Ok(Effect::Nothing)
        }
        Write::Update(update) => {
            require(&update.condition)?;
            // An update never creates an item, whatever its condition.
            let Some(mut item) = current else {
                return Err(StoreError::ConditionFailed);
            };
            item.attributes.extend(update.set);
            for name in &update.remove {
                item.attributes.remove(name);
            }
            Ok(Effect::Save(item))
        }
        Write::Add(add) => {
            // A missing (or expired) item starts afresh: no attributes, no index keys.
            let mut item = current.unwrap_or_else(|| Item::new(add.key.clone()));
            let mut totals = Vec::new();
            for (attribute, amount, limit, floor) in add.counters() {
                let before = match item.attributes.get(attribute) {
                    None => 0,
                    Some(value) => value.as_i64().ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "attribute {attribute:?} is not an integer counter"
                        ))
                    })?,
                };
                let total = before.checked_add(amount).ok_or_else(|| {
                    StoreError::Invalid(format!("counter {attribute:?} would overflow"))
                })?;
                if limit.is_some_and(|l| total > l) || floor.is_some_and(|f| total < f) {
                    return Err(StoreError::ConditionFailed);
                }
                totals.push((attribute.to_string(), total));
            }
            for (attribute, total) in totals {
                item.attributes.insert(attribute, Value::from(total));
            }
            item.expires_at = item.expires_at.or(add.expires_at);
            Ok(Effect::Save(item))
        }
    }
}

/// Whether `condition` holds for the live item `current` (None when absent or expired).
fn holds(condition: &Condition, current: Option<&Item>) -> bool {
    match condition {
        Condition::None => true,
        Condition::IfAbsent => current.is_none(),
        Condition::IfExists => current.is_some(),
        Condition::AttributeEquals(name, expected) => current
            .and_then(|item| item.attributes.get(name))
            .is_some_and(|actual| values_equal(actual, expected)),
    }
}

/// The live item under `key`, if any.
fn load(tx: &Transaction<'_>, key: &Key, now: i64) -> Result<Option<Item>, StoreError> {
    let item = tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM items WHERE pk = ?1 AND sk = ?2"),
            params![key.pk, key.sk],
            read_row,
        )
        .optional()
        .with_context(|| format!("reading item {}/{}", key.pk, key.sk))?;
    item.transpose()
        .map(|item| item.filter(|item| !item.is_expired(now)))
}

fn save(tx: &Transaction<'_>, item: &Item) -> Result<(), StoreError> {
    let attributes = serde_json::to_string(&item.attributes)
        .with_context(|| format!("encoding item {}/{}", item.key.pk, item.key.sk))?;
    let index_key = |index: Index| item.index_keys.get(&index);
    let (tenant, site, due) = (
        index_key(Index::ByTenant),
        index_key(Index::BySite),
        index_key(Index::ByDue),
    );
    tx.execute(
        &format!("INSERT OR REPLACE INTO items ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            item.key.pk,
            item.key.sk,
            attributes,
            item.expires_at,
            tenant.map(|k| &k.pk),
            tenant.map(|k| &k.sk),
            site.map(|k| &k.pk),
            site.map(|k| &k.sk),
            due.map(|k| &k.pk),
            due.map(|k| &k.sk),
        ],
    )
    .with_context(|| format!("writing item {}/{}", item.key.pk, item.key.sk))?;
    Ok(())
}

/// Reads a row selected with [`COLUMNS`]. Undecodable attributes come back as an inner error, so they
/// surface as [`StoreError::Corrupt`] rather than as a failed database call.
fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<Item, StoreError>> {
    let key = Key::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?);
    let attributes: String = row.get(2)?;
    let expires_at: Option<i64> = row.get(3)?;
    let mut index_keys = BTreeMap::new();
    for (i, index) in [Index::ByTenant, Index::BySite, Index::ByDue]
        .into_iter()
        .enumerate()
    {
        let pk: Option<String> = row.get(4 + 2 * i)?;
        let sk: Option<String> = row.get(5 + 2 * i)?;
        if let (Some(pk), Some(sk)) = (pk, sk) {
            index_keys.insert(index, Key::new(pk, sk));
        }
    }
    Ok(
        match serde_json::from_str::<Map<String, Value>>(&attributes) {
            Ok(attributes) => Ok(Item {
                key,
                attributes,
                index_keys,
                expires_at,
            }),
            Err(e) => Err(StoreError::Corrupt(format!(
                "item {}/{} has unreadable attributes: {e}",
                key.pk, key.sk
            ))),
        },
    )
}

fn run_query(
    tx: &Transaction<'_>,
    query: &Query,
    cursor: Option<&Cursor>,
    now: i64,
) -> Result<Page, StoreError> {
    // Column names come from `Index`, never from the caller, so formatting them into the SQL is safe.
    let (pk_column, sk_column) = match query.index {
        None => ("pk", "sk"),
        Some(index) => (index.pk_attribute(), index.sk_attribute()),
    };
    let mut sql = format!(
        "SELECT {COLUMNS} FROM items WHERE {pk_column} = ?1 AND (expires_at IS NULL OR expires_at > ?2)"
    );
    let mut args = vec![SqlValue::Text(query.pk.clone()), SqlValue::Integer(now)];
    let mut arg = |sql: &mut String, clause: &str, value: String| {
        args.push(SqlValue::Text(value));
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(prefix) = sk_prefix(query) {
        // A range, not LIKE: `%` and `_` in keys are ordinary characters, and the range uses the index.
        arg(
            &mut sql,
            &format!(" AND {sk_column} >= ?"),
            prefix.to_owned(),
        );
        if let Some(upper) = prefix_upper_bound(prefix) {
            arg(&mut sql, &format!(" AND {sk_column} < ?"), upper);
        }
    }
    let op = if query.descending { "<" } else { ">" };
    let direction = if query.descending { "DESC" } else { "ASC" };
    match (query.index, cursor) {
        (_, None) => {}
        (None, Some(cursor)) => arg(&mut sql, &format!(" AND sk {op} ?"), cursor.sk.clone()),
        (Some(_), Some(cursor)) => {
            let index_sk = cursor.index_sk.clone().unwrap_or_default();
            arg(
                &mut sql,
                &format!(" AND ({sk_column}, pk, sk) {op} (?"),
                index_sk,
            );
            arg(&mut sql, ", ?", cursor.pk.clone());
            arg(&mut sql, ", ?)", cursor.sk.clone());
        }
    }
    match query.index {
        None => sql.push_str(&format!(" ORDER BY sk {direction}")),
        Some(_) => sql.push_str(&format!(
            " ORDER BY {sk_column} {direction}, pk {direction}, sk {direction}"
        )),
    }
    // One row more than the page tells whether another page follows.
    sql.push_str(&format!(" LIMIT {}", query.limit + 1));

    let mut statement = tx.prepare(&sql).context("preparing a store query")?;
    let rows = statement
        .query_map(params_from_iter(args.iter()), read_row)
        .context("running a store query")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .context("reading store query results")?;
    let mut items = rows.into_iter().collect::<Result<Vec<_>, _>>()?;
    let next = if items.len() > query.limit {
        items.truncate(query.limit);
        match items.last() {
            Some(last) => Some(Cursor::after(query, last)?.encode()?),
            None => None,
        }
    } else {
        None
    };
    Ok(Page { items, next })
}

/// The least string greater than every string starting with `prefix` (None when there is none).
///
/// UTF-8 byte order, which SQLite's BINARY collation uses, is code point order, so bumping the last
/// character that can be bumped gives the exclusive upper end of the prefix's range.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'), // skip the surrogate gap
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::conformance;

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper_bound("ab"), Some("ac".to_owned()));
        assert_eq!(prefix_upper_bound("a%"), Some("a&".to_owned()));
        assert_eq!(prefix_upper_bound("日本"), Some("日札".to_owned()));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}"),
            Some("a\u{E000}".to_owned())
        );
        assert_eq!(prefix_upper_bound("a\u{10FFFF}"), Some("b".to_owned()));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound(""), None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn schema_creation_is_idempotent_and_data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let clock = ManualClock::at(time::macros::datetime!(2026-01-01 00:00 UTC));
        let key = Key::new("tenant#1", "profile");
        {
            let store =
                EmbeddedStore::new(EmbeddedDb::open(&path).unwrap(), Arc::new(clock.clone()))
                    .unwrap();
            store
                .put(Item::new(key.clone()).with("name", "札幌"), Condition::None)
                .await
                .unwrap();
        }
        let store = EmbeddedStore::new(EmbeddedDb::open(&path).unwrap(), Arc::new(clock)).unwrap();
        let item = store.get(&key).await.unwrap().unwrap();
        assert_eq!(item.attributes["name"], "札幌");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn corrupt_attributes_surface_as_corrupt() {
        let db = EmbeddedDb::in_memory().unwrap();
        let clock = ManualClock::at(time::macros::datetime!(2026-01-01 00:00 UTC));
        let store = EmbeddedStore::new(db.clone(), Arc::new(clock)).unwrap();
        db.call_blocking(|conn| {
            conn.execute(
                "INSERT INTO items (pk, sk, attributes) VALUES ('p', 's', 'not json')",
                [],
            )?;
            Ok(())
        })
        .unwrap();
        let err = store.get(&Key::new("p", "s")).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn adding_to_a_non_integer_attribute_is_invalid() {
        let clock = ManualClock::at(time::macros::datetime!(2026-01-01 00:00 UTC));
        let store = EmbeddedStore::new(EmbeddedDb::in_memory().unwrap(), Arc::new(clock)).unwrap();
        let key = Key::new("p", "s");
        store
            .put(Item::new(key.clone()).with("n", "three"), Condition::None)
            .await
            .unwrap();
        let err = store.add(Add::new(key, "n", 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    }

    crate::store_conformance_tests!(in_memory, |clock| async move {
        let store = EmbeddedStore::new(EmbeddedDb::in_memory().unwrap(), Arc::new(clock)).unwrap();
        conformance::Subject::new(store)
    });

    crate::store_conformance_tests!(on_disk, |clock| async move {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(&dir.path().join("store.db")).unwrap();
        let store = EmbeddedStore::new(db, Arc::new(clock)).unwrap();
        conformance::Subject::new(store).keeping(dir)
    });
}
