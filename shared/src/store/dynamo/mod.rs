//! The item store on DynamoDB: one table keyed `pk`/`sk`, one GSI per [`Index`](super::Index), TTL on
//! `expires_at`.
//!
//! Item attributes are top-level DynamoDB attributes (see [`convert`]); the expressions each write sends
//! are built in [`expression`]; the table itself is defined by the deployment template. DynamoDB
//! deletes expired items only eventually (days later; the moto emulator never), so expiry is enforced
//! here: reads drop expired items and every condition treats an expired item as absent.

mod convert;
mod expression;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::anyhow;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, ReturnValue, TransactWriteItem,
    Update as DynamoUpdate,
};
use futures::future::BoxFuture;

use super::{
    Add, Condition, Cursor, Item, ItemStore, Key, MAX_READS, Page, Query, ReadWrite, StoreError,
    Update, Write, check_key, check_query, check_transaction, check_write, sk_prefix, values_equal,
};
use crate::clock::Clock;
use expression::{Expr, UpdateParts};

const PK: &str = "pk";
const SK: &str = "sk";
const EXPIRES_AT: &str = "expires_at";

/// How often an add or transaction is retried when an expired item changed under it (see [`plan_add`]).
const MAX_ATTEMPTS: usize = 5;
/// How often a transaction DynamoDB cancelled for a conflict (`TransactionConflict`: another
/// transaction held one of its items) runs again before the conflict is the caller's error.
pub const MAX_CONFLICT_RETRIES: u32 = 8;

/// The wait before the `n`th re-run of a conflicted transaction (n ≥ 1): "full jitter", a random time
/// up to 4 ms doubled per conflict and capped at 250 ms, so contenders spread out instead of
/// colliding again in step.
pub fn conflict_backoff(n: u32) -> std::time::Duration {
    let cap_ms = (4u64 << n.min(6)).min(250);
    std::time::Duration::from_micros(rand::random_range(0..=cap_ms * 1000))
}

type Attributes = HashMap<String, AttributeValue>;

/// The item store on one DynamoDB table.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// A store on `table`, as the deployment template defines it (`pk`/`sk`, a GSI per
    /// [`Index`](super::Index), TTL on `expires_at`).
    pub fn new(client: Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            table: table.into(),
            clock,
        }
    }

    /// One `UpdateItem` with its expressions (updates and counter adds both go through here).
    async fn send_update(
        &self,
        key: &Key,
        parts: UpdateParts,
        return_values: ReturnValue,
    ) -> Result<
        aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
        SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError>,
    > {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .update_expression(parts.update)
            .condition_expression(parts.condition)
            .set_expression_attribute_names(parts.expr.names())
            .set_expression_attribute_values(parts.expr.values())
            .return_values(return_values)
            .send()
            .await
    }

    /// The item under `key` as stored, expired or not (a strongly consistent read).
    async fn get_raw(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend(format!("reading item {}/{}", key.pk, key.sk), e))?;
        output.item().map(convert::item_from_dynamo).transpose()
    }

    async fn get_live(&self, key: Key) -> Result<Option<Item>, StoreError> {
        let now = self.clock.unix_seconds();
        Ok(self
            .get_raw(&key)
            .await?
            .filter(|item| !item.is_expired(now)))
    }

    async fn put_item(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        check_write(&Write::Put(item.clone(), condition.clone()))?;
        let mut expr = Expr::default();
        let condition = expr.condition(&condition, self.clock.unix_seconds());
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(convert::item_to_dynamo(&item)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::ConditionFailed)
            }
            Err(e) => Err(backend(
                format!("writing item {}/{}", item.key.pk, item.key.sk),
                e,
            )),
        }
    }

    async fn delete_item(&self, key: Key, condition: Condition) -> Result<(), StoreError> {
        check_write(&Write::Delete(key.clone(), condition.clone()))?;
        let mut expr = Expr::default();
        let condition = expr.condition(&condition, self.clock.unix_seconds());
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(&key)))
            .set_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::ConditionFailed)
            }
            Err(e) => Err(backend(format!("deleting item {}/{}", key.pk, key.sk), e)),
        }
    }

    async fn update_item(&self, update: Update) -> Result<Item, StoreError> {
        check_write(&Write::Update(update.clone()))?;
        let now = self.clock.unix_seconds();
        let Some(parts) = UpdateParts::of(&update, now) else {
            // Nothing to change: a consistent read decides the condition just as atomically, and
            // DynamoDB has no update that changes nothing.
            let current = self
                .get_raw(&update.key)
                .await?
                .filter(|item| !item.is_expired(now));
            return match current {
                Some(item) if holds(&update.condition, &item) => Ok(item),
                _ => Err(StoreError::ConditionFailed),
            };
        };
        let result = self
            .send_update(&update.key, parts, ReturnValue::AllNew)
            .await;
        match result {
            Ok(output) => output
                .attributes()
                .map(convert::item_from_dynamo)
                .transpose()?
                .ok_or_else(|| StoreError::Backend(anyhow!("UpdateItem returned no attributes"))),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::ConditionFailed)
            }
            Err(e) => Err(backend(
                format!("updating item {}/{}", update.key.pk, update.key.sk),
                e,
            )),
        }
    }

    async fn add_to(&self, add: Add) -> Result<i64, StoreError> {
        check_write(&Write::Add(add.clone()))?;
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.unix_seconds();
            // The common case in one call: ADD to a live (or missing) item.
            let parts = UpdateParts::of_add(&add, now)?;
            let result = self
                .send_update(&add.key, parts, ReturnValue::UpdatedNew)
                .await;
            match result {
                Ok(output) => {
                    let value = output.attributes().and_then(|a| a.get(&add.attribute));
                    return match value {
                        Some(AttributeValue::N(n)) => n.parse().map_err(|_| {
                            StoreError::Corrupt(format!(
                                "counter {:?} is not an integer: {n}",
                                add.attribute
                            ))
                        }),
                        other => Err(StoreError::Corrupt(format!(
                            "ADD returned {other:?} for {:?}",
                            add.attribute
                        ))),
                    };
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => {
                    return Err(backend(
                        format!("adding to {}/{}", add.key.pk, add.key.sk),
                        e,
                    ));
                }
            }

            // The condition failed: either the limit, or an expired item that ADD must not build on.
            match self.get_raw(&add.key).await? {
                Some(item) if item.is_expired(now) => {
                    if !add.fits(None) {
                        return Err(StoreError::ConditionFailed);
                    }
                    // Replace the expired item with a fresh counter, unless someone else already has.
                    let mut expr = Expr::default();
                    let still_expired = expr.expired(now);
                    let result = self
                        .client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(convert::item_to_dynamo(&fresh_counter(&add))))
                        .condition_expression(still_expired)
                        .set_expression_attribute_names(expr.names())
                        .set_expression_attribute_values(expr.values())
                        .send()
                        .await;
                    match result {
                        Ok(_) => return Ok(add.amount),
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                        Err(e) => {
                            return Err(backend(
                                format!("resetting counter {}/{}", add.key.pk, add.key.sk),
                                e,
                            ));
                        }
                    }
                }
                Some(item) => {
                    if !add.bounded() || !add.fits(Some(&item)) {
                        return Err(StoreError::ConditionFailed);
                    }
                    // It changed between the two calls (expired and re-created, or went down): retry.
                }
                None => {
                    // Missing now: either the limit refused a fresh counter, or it was deleted in between.
                    if !add.fits(None) {
                        return Err(StoreError::ConditionFailed);
                    }
                }
            }
        }
        Err(StoreError::Backend(anyhow!(
            "counter {}/{} kept changing under an add",
            add.key.pk,
            add.key.sk
        )))
    }

    async fn run_query(&self, query: Query) -> Result<Page, StoreError> {
        check_query(&query)?;
        let cursor = query
            .cursor
            .as_deref()
            .map(|text| Cursor::decode(&query, text))
            .transpose()?;
        let now = self.clock.unix_seconds();
        let (pk_attribute, sk_attribute) = match query.index {
            None => (PK, SK),
            Some(index) => (index.pk_attribute(), index.sk_attribute()),
        };
        let mut start = cursor.map(|cursor| {
            let mut key = key_attributes(&Key::new(cursor.pk, cursor.sk));
            if let (Some(index), Some(index_sk)) = (query.index, cursor.index_sk) {
                key.insert(
                    index.pk_attribute().into(),
                    AttributeValue::S(query.pk.clone()),
                );
                key.insert(index.sk_attribute().into(), AttributeValue::S(index_sk));
            }
            key
        });

        // Ask for one item more than the page, so `next` is set only when another item follows; the
        // cursor is built from the last item returned, never from an item the filter dropped.
        let mut items = Vec::new();
        loop {
            let mut expr = Expr::default();
            let mut key_condition = format!(
                "{} = {}",
                expr.name(pk_attribute),
                expr.value(string(&query.pk))
            );
            if let Some(prefix) = sk_prefix(&query) {
                let (name, value) = (expr.name(sk_attribute), expr.value(string(prefix)));
                key_condition.push_str(&format!(" AND begins_with({name}, {value})"));
            }
            let live = expr.live(now);
            let wanted = query.limit + 1 - items.len();
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(query.index.map(|index| index.name().to_owned()))
                .key_condition_expression(key_condition)
                // Filtered after `Limit` is applied, so a response may hold fewer items than asked.
                .filter_expression(live)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .scan_index_forward(!query.descending)
                .limit(i32::try_from(wanted).unwrap_or(i32::MAX))
                // GSIs are only eventually consistent.
                .consistent_read(query.index.is_none())
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend(format!("querying partition {}", query.pk), e))?;
            for raw in output.items() {
                let item = convert::item_from_dynamo(raw)?;
                if !item.is_expired(now) {
                    items.push(item);
                }
            }
            match output.last_evaluated_key() {
                Some(last) if items.len() <= query.limit => start = Some(last.clone()),
                _ => break,
            }
        }
        let next = if items.len() > query.limit {
            items.truncate(query.limit);
            items
                .last()
                .map(|last| Cursor::after(&query, last).and_then(|c| c.encode()))
                .transpose()?
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn run_transaction(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        check_transaction(&writes)?;
        for write in &writes {
            check_write(write)?;
        }
        let mut expired_before: Option<Vec<(Key, bool)>> = None;
        let (mut attempts, mut conflicts) = (0, 0);
        while attempts < MAX_ATTEMPTS {
            let now = self.clock.unix_seconds();
            // An add over an expired item must replace it, which needs to know the item is expired.
            // The first attempt assumes none is (an add's live condition refuses an expired item), so
            // the common case is one call; a refusal reads the adds' items to tell the two apart.
            let expired = |key: &Key| {
                expired_before
                    .as_ref()
                    .is_some_and(|known: &Vec<(Key, bool)>| {
                        known.iter().any(|(k, expired)| k == key && *expired)
                    })
            };
            let mut items = Vec::new();
            for write in &writes {
                if let Some(item) = self.transaction_item(write, now, expired(write.key()))? {
                    items.push(item);
                }
            }
            if items.is_empty() {
                return Ok(()); // only checks without conditions
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let reasons: Vec<&str> = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
                    .cancellation_reasons()
                    .iter()
                    .filter_map(|r| r.code())
                    .collect(),
                _ => Vec::new(),
            };
            let condition_failed = reasons.contains(&"ConditionalCheckFailed");
            // Another transaction or write held one of the items at that moment (DynamoDB cancels
            // rather than waits): nothing was written, so the same transaction may run again, after a
            // jittered wait so the contenders do not collide again in step.
            let conflicted = !condition_failed
                && reasons
                    .iter()
                    .any(|r| *r == "TransactionConflict" || *r == "ThrottlingError");
            if conflicted && conflicts < MAX_CONFLICT_RETRIES {
                conflicts += 1;
                tracing::debug!(conflicts, "transaction conflict; retrying");
                tokio::time::sleep(conflict_backoff(conflicts)).await;
                continue;
            }
            attempts += 1;
            if !condition_failed {
                return Err(backend("running a transaction".into(), error));
            }
            let mut now_expired = Vec::new();
            for write in &writes {
                if let Write::Add(add) = write {
                    let now = self.clock.unix_seconds();
                    let is_expired = self
                        .get_raw(&add.key)
                        .await?
                        .is_some_and(|item| item.is_expired(now));
                    now_expired.push((add.key.clone(), is_expired));
                }
            }
            let changed = match &expired_before {
                None => now_expired.iter().any(|(_, expired)| *expired),
                Some(before) => *before != now_expired,
            };
            if !changed {
                return Err(StoreError::ConditionFailed);
            }
            expired_before = Some(now_expired);
        }
        Err(StoreError::Backend(anyhow!(
            "items kept changing under a transaction"
        )))
    }

    /// Strongly consistent reads of up to [`MAX_READS`] items in one `BatchGetItem` (again for any
    /// keys DynamoDB left unprocessed), in the order asked; expired items read as absent. Not
    /// `TransactGetItems`: a transactional read is cancelled whenever a transaction writes one of its
    /// items at the same moment, and chat reads the credit account that every settle writes.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        if keys.len() > MAX_READS {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_READS} reads, not {}",
                keys.len()
            )));
        }
        keys.iter().try_for_each(check_key)?;
        let mut unique: Vec<&Key> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let mut found: HashMap<Key, Item> = HashMap::new();
        let mut pending: Vec<Attributes> = unique.iter().map(|key| key_attributes(key)).collect();
        let mut rounds = 0u32;
        while !pending.is_empty() {
            rounds += 1;
            if rounds > 1 {
                if rounds > 8 {
                    return Err(StoreError::Backend(anyhow!(
                        "BatchGetItem kept leaving keys unprocessed"
                    )));
                }
                tokio::time::sleep(conflict_backoff(rounds)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| {
                    StoreError::Backend(anyhow::Error::new(e).context("building a read"))
                })?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| backend(format!("reading {} items", unique.len()), e))?;
            if let Some(items) = output.responses().and_then(|r| r.get(&self.table)) {
                for raw in items {
                    let item = convert::item_from_dynamo(raw)?;
                    found.insert(item.key.clone(), item);
                }
            }
            if let Some(left) = output.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                pending = left.keys().to_vec();
            }
        }
        let now = self.clock.unix_seconds();
        Ok(keys
            .iter()
            .map(|key| found.get(key).filter(|item| !item.is_expired(now)).cloned())
            .collect())
    }

    /// One write as a transaction item; None for a check that checks nothing.
    fn transaction_item(
        &self,
        write: &Write,
        now: i64,
        item_expired: bool,
    ) -> Result<Option<TransactWriteItem>, StoreError> {
        let built = |what: &str, e| {
            StoreError::Backend(anyhow::Error::new(e).context(format!("building a {what}")))
        };
        let item = match write {
            Write::Put(item, condition) => {
                let mut expr = Expr::default();
                let condition = expr.condition(condition, now);
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(convert::item_to_dynamo(item)))
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(expr.names())
                    .set_expression_attribute_values(expr.values())
                    .build()
                    .map_err(|e| built("put", e))?;
                TransactWriteItem::builder().put(put).build()
            }
            Write::Delete(key, condition) => {
                let mut expr = Expr::default();
                let condition = expr.condition(condition, now);
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attributes(key)))
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(expr.names())
                    .set_expression_attribute_values(expr.values())
                    .build()
                    .map_err(|e| built("delete", e))?;
                TransactWriteItem::builder().delete(delete).build()
            }
            Write::Check(key, condition) => {
                let mut expr = Expr::default();
                let Some(condition) = expr.condition(condition, now) else {
                    return Ok(None);
                };
                TransactWriteItem::builder()
                    .condition_check(
                        self.check(key, condition, expr)
                            .map_err(|e| built("check", e))?,
                    )
                    .build()
            }
            Write::Update(update) => match UpdateParts::of(update, now) {
                Some(parts) => {
                    let update = DynamoUpdate::builder()
                        .table_name(&self.table)
                        .set_key(Some(key_attributes(&update.key)))
                        .update_expression(parts.update)
                        .condition_expression(parts.condition)
                        .set_expression_attribute_names(parts.expr.names())
                        .set_expression_attribute_values(parts.expr.values())
                        .build()
                        .map_err(|e| built("update", e))?;
                    TransactWriteItem::builder().update(update).build()
                }
                None => {
                    // An update that changes nothing still needs its item and condition.
                    let mut expr = Expr::default();
                    let condition = expr.update_condition(&update.condition, now);
                    let check = self
                        .check(&update.key, condition, expr)
                        .map_err(|e| built("check", e))?;
                    TransactWriteItem::builder().condition_check(check).build()
                }
            },
            Write::Add(add) if item_expired => {
                if !add.fits(None) {
                    return Err(StoreError::ConditionFailed);
                }
                let mut expr = Expr::default();
                let still_expired = expr.expired(now);
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(convert::item_to_dynamo(&fresh_counter(add))))
                    .condition_expression(still_expired)
                    .set_expression_attribute_names(expr.names())
                    .set_expression_attribute_values(expr.values())
                    .build()
                    .map_err(|e| built("put", e))?;
                TransactWriteItem::builder().put(put).build()
            }
            Write::Add(add) => {
                let parts = UpdateParts::of_add(add, now)?;
                let update = DynamoUpdate::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attributes(&add.key)))
                    .update_expression(parts.update)
                    .condition_expression(parts.condition)
                    .set_expression_attribute_names(parts.expr.names())
                    .set_expression_attribute_values(parts.expr.values())
                    .build()
                    .map_err(|e| built("update", e))?;
                TransactWriteItem::builder().update(update).build()
            }
        };
        Ok(Some(item))
    }

    fn check(
        &self,
        key: &Key,
        condition: String,
        expr: Expr,
    ) -> Result<ConditionCheck, aws_sdk_dynamodb::error::BuildError> {
        ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .build()
    }
}

impl ItemStore for DynamoStore {
    fn get(&self, key: &Key) -> BoxFuture<'_, Result<Option<Item>, StoreError>> {
        Box::pin(self.get_live(key.clone()))
    }

    fn put(&self, item: Item, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.put_item(item, condition))
    }

    fn delete(&self, key: &Key, condition: Condition) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.delete_item(key.clone(), condition))
    }

    fn update(&self, update: Update) -> BoxFuture<'_, Result<Item, StoreError>> {
        Box::pin(self.update_item(update))
    }

    fn add(&self, add: Add) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(self.add_to(add))
    }

    fn query(&self, query: Query) -> BoxFuture<'_, Result<Page, StoreError>> {
        Box::pin(self.run_query(query))
    }

    fn transact(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.run_transaction(writes))
    }

    fn transact_and_read(&self, writes: Vec<Write>, reads: Vec<Key>) -> BoxFuture<'_, ReadWrite> {
        Box::pin(async move {
            // DynamoDB cannot read and write in one call: both requests go out at once.
            let write = async {
                if writes.is_empty() {
                    Ok(())
                } else {
                    self.run_transaction(writes).await
                }
            };
            let read = async {
                if reads.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.get_many(&reads).await
                }
            };
            let (written, read) = futures::join!(write, read);
            ReadWrite { written, read }
        })
    }
}

fn string(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn key_attributes(key: &Key) -> Attributes {
    HashMap::from([
        (PK.to_owned(), string(&key.pk)),
        (SK.to_owned(), string(&key.sk)),
    ])
}

/// What an add writes when it starts a counter afresh.
fn fresh_counter(add: &Add) -> Item {
    let mut item = Item::new(add.key.clone());
    for (attribute, amount, ..) in add.counters() {
        item = item.with(attribute, amount);
    }
    Item {
        expires_at: add.expires_at,
        ..item
    }
}

/// Whether `condition` holds for the live item `item` (for decisions made on a read).
fn holds(condition: &Condition, item: &Item) -> bool {
    match condition {
        Condition::None | Condition::IfExists => true,
        Condition::IfAbsent => false,
        Condition::AttributeEquals(name, value) => item
            .attributes
            .get(name)
            .is_some_and(|v| values_equal(v, value)),
    }
}

fn backend<E, R>(what: String, error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Backend(anyhow!("{what}: {}", DisplayErrorContext(&error)))
}
