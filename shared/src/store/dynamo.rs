//! The item store on DynamoDB: one table keyed `pk`/`sk`, one GSI per [`Index`], TTL on `expires_at`.
//!
//! Item attributes are top-level DynamoDB attributes (see [`convert`]). DynamoDB deletes expired items
//! only eventually (days later; the moto emulator never), so expiry is enforced here: reads drop expired
//! items and every condition treats an expired item as absent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ReturnValue, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem,
    Update as DynamoUpdate,
};
use futures::future::BoxFuture;

use super::{
    Add, Condition, Cursor, Index, Item, ItemStore, Key, Page, Query, StoreError, Update, Write,
    check_query, check_transaction, check_write, sk_prefix, values_equal,
};
use crate::clock::Clock;

const PK: &str = "pk";
const SK: &str = "sk";
const EXPIRES_AT: &str = "expires_at";

/// How often an add or transaction is retried when an expired item changed under it (see [`plan_add`]).
const MAX_ATTEMPTS: usize = 5;

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

/// Creates the store's table (on-demand billing, a GSI per [`Index`], TTL on `expires_at`) and waits
/// until it is active. Does nothing to a table that already exists but finish enabling TTL on it.
pub async fn create_table(client: &Client, table: &str) -> anyhow::Result<()> {
    let string_attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .context("building an attribute definition")
    };
    let key_element = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .context("building a key schema")
    };
    let mut attributes = vec![string_attribute(PK)?, string_attribute(SK)?];
    let mut indexes = Vec::new();
    for index in Index::ALL {
        attributes.push(string_attribute(index.pk_attribute())?);
        attributes.push(string_attribute(index.sk_attribute())?);
        indexes.push(
            GlobalSecondaryIndex::builder()
                .index_name(index.name())
                .key_schema(key_element(index.pk_attribute(), KeyType::Hash)?)
                .key_schema(key_element(index.sk_attribute(), KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .context("building a GSI definition")?,
        );
    }
    let created = client
        .create_table()
        .table_name(table)
        .set_attribute_definitions(Some(attributes))
        .key_schema(key_element(PK, KeyType::Hash)?)
        .key_schema(key_element(SK, KeyType::Range)?)
        .set_global_secondary_indexes(Some(indexes))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(e) => {
            return Err(anyhow!(
                "creating table {table}: {}",
                DisplayErrorContext(&e)
            ));
        }
    }

    let mut active = false;
    for _ in 0..300 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| anyhow!("describing table {table}: {}", DisplayErrorContext(&e)))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            active = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::ensure!(active, "table {table} did not become active");

    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "reading the TTL setting of {table}: {}",
                DisplayErrorContext(&e)
            )
        })?;
    let status = ttl
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status());
    // DynamoDB refuses to enable TTL twice, so only ask when it is off.
    if !matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(EXPIRES_AT)
                    .enabled(true)
                    .build()
                    .context("building the TTL specification")?,
            )
            .send()
            .await
            .map_err(|e| anyhow!("enabling TTL on {table}: {}", DisplayErrorContext(&e)))?;
    }
    Ok(())
}

impl DynamoStore {
    /// A store on `table`, which [`create_table`] (or the deployment template) has made.
    pub fn new(client: Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            table: table.into(),
            clock,
        }
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
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(&update.key)))
            .update_expression(parts.update)
            .condition_expression(parts.condition)
            .set_expression_attribute_names(parts.expr.names())
            .set_expression_attribute_values(parts.expr.values())
            .return_values(ReturnValue::AllNew)
            .send()
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
            let parts = AddParts::of(&add, now)?;
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key_attributes(&add.key)))
                .update_expression(parts.update)
                .condition_expression(parts.condition)
                .set_expression_attribute_names(parts.expr.names())
                .set_expression_attribute_values(parts.expr.values())
                .return_values(ReturnValue::UpdatedNew)
                .send()
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
                    if add.limit.is_some_and(|limit| add.amount > limit) {
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
                    let total = item.count(&add.attribute).saturating_add(add.amount);
                    if add.limit.is_none_or(|limit| total > limit) {
                        return Err(StoreError::ConditionFailed);
                    }
                    // It changed between the two calls (expired and re-created, or went down): retry.
                }
                None => {
                    // Missing now: either the limit refused a fresh counter, or it was deleted in between.
                    if add.limit.is_some_and(|limit| add.amount > limit) {
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
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.unix_seconds();
            // An add over an expired item must replace it, which needs to know the item is expired:
            // read those first, and retry if one changed expiry state before the transaction ran.
            let mut expired_before = Vec::new();
            for write in &writes {
                if let Write::Add(add) = write {
                    let expired = self
                        .get_raw(&add.key)
                        .await?
                        .is_some_and(|item| item.is_expired(now));
                    expired_before.push((add.key.clone(), expired));
                }
            }
            let expired = |key: &Key| {
                expired_before
                    .iter()
                    .any(|(k, expired)| k == key && *expired)
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
            let condition_failed = matches!(
                error.as_service_error(),
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
                    if cancelled.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
            );
            if !condition_failed {
                return Err(backend("running a transaction".into(), error));
            }
            let mut changed = false;
            for (key, was_expired) in &expired_before {
                let now = self.clock.unix_seconds();
                let is_expired = self
                    .get_raw(key)
                    .await?
                    .is_some_and(|item| item.is_expired(now));
                changed |= is_expired != *was_expired;
            }
            if !changed {
                return Err(StoreError::ConditionFailed);
            }
        }
        Err(StoreError::Backend(anyhow!(
            "items kept changing under a transaction"
        )))
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
                if add.limit.is_some_and(|limit| add.amount > limit) {
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
                let parts = AddParts::of(add, now)?;
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
    Item {
        expires_at: add.expires_at,
        ..Item::new(add.key.clone()).with(add.attribute.clone(), add.amount)
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

/// Placeholders for one request's expressions. DynamoDB rejects placeholders an expression does not
/// use, so names and values are only registered as the expressions are written.
#[derive(Default)]
struct Expr {
    names: BTreeMap<String, String>,
    values: HashMap<String, AttributeValue>,
    now: Option<String>,
}

impl Expr {
    /// The placeholder for an attribute name (so no name ever collides with a reserved word).
    fn name(&mut self, attribute: &str) -> String {
        let count = self.names.len();
        self.names
            .entry(attribute.to_owned())
            .or_insert_with(|| format!("#n{count}"))
            .clone()
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn now(&mut self, now: i64) -> String {
        if let Some(placeholder) = &self.now {
            return placeholder.clone();
        }
        let placeholder = self.value(AttributeValue::N(now.to_string()));
        self.now = Some(placeholder.clone());
        placeholder
    }

    /// True for a missing item and for a live one (a missing `expires_at` never expires).
    fn live(&mut self, now: i64) -> String {
        let (expires, now) = (self.name(EXPIRES_AT), self.now(now));
        format!("(attribute_not_exists({expires}) OR {expires} > {now})")
    }

    /// True for an item that exists but has expired.
    fn expired(&mut self, now: i64) -> String {
        let (expires, now) = (self.name(EXPIRES_AT), self.now(now));
        format!("{expires} <= {now}")
    }

    /// True for a live item. Left unparenthesised: DynamoDB rejects `((…))` as redundant parentheses,
    /// and `AND` needs none (every `OR` here carries its own).
    fn exists_live(&mut self, now: i64) -> String {
        let pk = self.name(PK);
        let live = self.live(now);
        format!("attribute_exists({pk}) AND {live}")
    }

    /// A [`Condition`] as a condition expression, treating expired items as absent.
    fn condition(&mut self, condition: &Condition, now: i64) -> Option<String> {
        match condition {
            Condition::None => None,
            Condition::IfAbsent => {
                let pk = self.name(PK);
                let expired = self.expired(now);
                Some(format!("(attribute_not_exists({pk}) OR {expired})"))
            }
            Condition::IfExists => Some(self.exists_live(now)),
            Condition::AttributeEquals(name, value) => {
                let exists = self.exists_live(now);
                let (name, value) = (self.name(name), self.value(convert::to_attribute(value)));
                Some(format!("{exists} AND {name} = {value}"))
            }
        }
    }

    /// An update's condition: the item exists and is live, and the caller's condition holds.
    fn update_condition(&mut self, condition: &Condition, now: i64) -> String {
        match condition {
            Condition::None | Condition::IfExists => self.exists_live(now),
            // Already requires a live item.
            Condition::AttributeEquals(..) => self.condition(condition, now).unwrap_or_default(),
            // Can never hold for an update, but say so in DynamoDB's terms rather than special-casing it.
            Condition::IfAbsent => {
                let exists = self.exists_live(now);
                let absent = self.condition(condition, now).unwrap_or_default();
                format!("{exists} AND {absent}")
            }
        }
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| {
            self.names
                .iter()
                .map(|(a, p)| (p.clone(), a.clone()))
                .collect()
        })
    }

    fn values(&self) -> Option<Attributes> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

struct UpdateParts {
    update: String,
    condition: String,
    expr: Expr,
}

impl UpdateParts {
    /// The update and condition expressions of `update`; None when it changes nothing.
    fn of(update: &Update, now: i64) -> Option<Self> {
        if update.set.is_empty() && update.remove.is_empty() {
            return None;
        }
        let mut expr = Expr::default();
        let condition = expr.update_condition(&update.condition, now);
        let mut clauses = Vec::new();
        if !update.set.is_empty() {
            let sets: Vec<String> = update
                .set
                .iter()
                .map(|(name, value)| {
                    format!(
                        "{} = {}",
                        expr.name(name),
                        expr.value(convert::to_attribute(value))
                    )
                })
                .collect();
            clauses.push(format!("SET {}", sets.join(", ")));
        }
        if !update.remove.is_empty() {
            let removes: Vec<String> = update.remove.iter().map(|name| expr.name(name)).collect();
            clauses.push(format!("REMOVE {}", removes.join(", ")));
        }
        Some(Self {
            update: clauses.join(" "),
            condition,
            expr,
        })
    }
}

struct AddParts {
    update: String,
    condition: String,
    expr: Expr,
}

impl AddParts {
    /// `ADD` to a live or missing item, within the limit: `current + amount <= limit`, i.e.
    /// `current <= limit - amount`, where a missing attribute counts as 0.
    fn of(add: &Add, now: i64) -> Result<Self, StoreError> {
        let mut expr = Expr::default();
        let mut condition = expr.live(now);
        if let Some(limit) = add.limit {
            let attribute = expr.name(&add.attribute);
            match limit.checked_sub(add.amount) {
                Some(max) => {
                    let zero_fits = 0 <= max;
                    let max = expr.value(AttributeValue::N(max.to_string()));
                    // A missing attribute is 0, which is within the limit exactly when 0 <= max.
                    let within = if zero_fits {
                        format!("(attribute_not_exists({attribute}) OR {attribute} <= {max})")
                    } else {
                        format!("(attribute_exists({attribute}) AND {attribute} <= {max})")
                    };
                    condition = format!("{condition} AND {within}");
                }
                // limit - amount below i64::MIN: nothing an i64 counter holds is low enough.
                None if add.amount > 0 => return Err(StoreError::ConditionFailed),
                // limit - amount above i64::MAX: every counter is within it.
                None => {}
            }
        }
        let (attribute, amount) = (
            expr.name(&add.attribute),
            expr.value(AttributeValue::N(add.amount.to_string())),
        );
        let mut update = format!("ADD {attribute} {amount}");
        if let Some(expires_at) = add.expires_at {
            let expires = expr.name(EXPIRES_AT);
            let value = expr.value(AttributeValue::N(expires_at.to_string()));
            update.push_str(&format!(
                " SET {expires} = if_not_exists({expires}, {value})"
            ));
        }
        Ok(Self {
            update,
            condition,
            expr,
        })
    }
}

/// JSON values ⇄ DynamoDB attribute values.
///
/// Strings → S, numbers → N, booleans → BOOL, null → NULL, arrays → L, objects → M. N holds decimal
/// text, so integers come back as integers; a float with an integral value (`2.0`) comes back as the
/// integer `2`, since DynamoDB keeps no difference between the two.
mod convert {
    use std::collections::BTreeMap;

    use aws_sdk_dynamodb::types::AttributeValue;
    use serde_json::{Map, Number, Value};

    use super::{Attributes, EXPIRES_AT, PK, SK};
    use crate::store::{Index, Item, Key, RESERVED_ATTRIBUTES, StoreError};

    pub(super) fn to_attribute(value: &Value) -> AttributeValue {
        match value {
            Value::Null => AttributeValue::Null(true),
            Value::Bool(b) => AttributeValue::Bool(*b),
            Value::Number(n) => AttributeValue::N(n.to_string()),
            Value::String(s) => AttributeValue::S(s.clone()),
            Value::Array(values) => AttributeValue::L(values.iter().map(to_attribute).collect()),
            Value::Object(map) => AttributeValue::M(
                map.iter()
                    .map(|(k, v)| (k.clone(), to_attribute(v)))
                    .collect(),
            ),
        }
    }

    pub(super) fn from_attribute(value: &AttributeValue) -> Result<Value, String> {
        Ok(match value {
            AttributeValue::Null(_) => Value::Null,
            AttributeValue::Bool(b) => Value::Bool(*b),
            AttributeValue::N(n) => Value::Number(number(n)?),
            AttributeValue::S(s) => Value::String(s.clone()),
            AttributeValue::L(values) => Value::Array(
                values
                    .iter()
                    .map(from_attribute)
                    .collect::<Result<_, _>>()?,
            ),
            AttributeValue::M(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), from_attribute(v)?)))
                    .collect::<Result<Map<_, _>, String>>()?,
            ),
            other => return Err(format!("unsupported attribute type {other:?}")),
        })
    }

    fn number(text: &str) -> Result<Number, String> {
        if let Ok(i) = text.parse::<i64>() {
            return Ok(i.into());
        }
        if let Ok(u) = text.parse::<u64>() {
            return Ok(u.into());
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .ok_or_else(|| format!("unreadable number {text:?}"))
    }

    pub(super) fn item_to_dynamo(item: &Item) -> Attributes {
        let mut attributes: Attributes = item
            .attributes
            .iter()
            .map(|(name, value)| (name.clone(), to_attribute(value)))
            .collect();
        attributes.insert(PK.into(), AttributeValue::S(item.key.pk.clone()));
        attributes.insert(SK.into(), AttributeValue::S(item.key.sk.clone()));
        if let Some(expires_at) = item.expires_at {
            attributes.insert(EXPIRES_AT.into(), AttributeValue::N(expires_at.to_string()));
        }
        for (index, key) in &item.index_keys {
            attributes.insert(
                index.pk_attribute().into(),
                AttributeValue::S(key.pk.clone()),
            );
            attributes.insert(
                index.sk_attribute().into(),
                AttributeValue::S(key.sk.clone()),
            );
        }
        attributes
    }

    pub(super) fn item_from_dynamo(stored: &Attributes) -> Result<Item, StoreError> {
        let text = |name: &str| match stored.get(name) {
            Some(AttributeValue::S(s)) => Some(s.clone()),
            _ => None,
        };
        let (Some(pk), Some(sk)) = (text(PK), text(SK)) else {
            return Err(StoreError::Corrupt(format!(
                "a stored item has no string key: {:?}",
                stored.get(PK)
            )));
        };
        let key = Key::new(pk, sk);
        let corrupt =
            |what: String| StoreError::Corrupt(format!("item {}/{}: {what}", key.pk, key.sk));
        let expires_at = match stored.get(EXPIRES_AT) {
            None => None,
            Some(AttributeValue::N(n)) => Some(
                n.parse::<i64>()
                    .map_err(|_| corrupt(format!("expires_at {n:?}")))?,
            ),
            Some(other) => return Err(corrupt(format!("expires_at is {other:?}"))),
        };
        let mut index_keys = BTreeMap::new();
        for index in Index::ALL {
            if let (Some(pk), Some(sk)) = (text(index.pk_attribute()), text(index.sk_attribute())) {
                index_keys.insert(index, Key::new(pk, sk));
            }
        }
        let mut attributes = Map::new();
        for (name, value) in stored {
            if RESERVED_ATTRIBUTES.contains(&name.as_str()) {
                continue;
            }
            attributes.insert(
                name.clone(),
                from_attribute(value).map_err(|e| corrupt(format!("{name}: {e}")))?,
            );
        }
        Ok(Item {
            key,
            attributes,
            index_keys,
            expires_at,
        })
    }

    #[cfg(test)]
    mod tests {
        use serde_json::json;

        use super::*;

        #[test]
        fn json_round_trips_through_attribute_values() {
            let value = json!({
                "text": "日本語と한국어", "empty": "", "int": 42, "negative": -7, "max": i64::MAX, "min": i64::MIN,
                "huge": u64::MAX, "float": 3.25, "tiny": -0.001, "yes": true, "no": false, "null": null,
                "list": [1, "two", [3.5], {"four": null}], "map": {"nested": {"deeper": []}}, "empty_map": {}
            });
            let back = from_attribute(&to_attribute(&value)).unwrap();
            assert_eq!(back, value);
            assert!(back["int"].is_i64() && back["huge"].is_u64() && back["float"].is_f64());
        }

        #[test]
        fn numbers_read_as_dynamodb_writes_them() {
            assert_eq!(
                from_attribute(&AttributeValue::N("2".into())).unwrap(),
                json!(2)
            );
            assert_eq!(
                from_attribute(&AttributeValue::N("1E+2".into())).unwrap(),
                json!(100.0)
            );
            assert!(from_attribute(&AttributeValue::N("abc".into())).is_err());
            assert!(from_attribute(&AttributeValue::Ss(vec!["a".into()])).is_err());
        }

        #[test]
        fn items_round_trip_and_keep_store_attributes_apart() {
            let item = Item::new(Key::new("tenant#1", "site#2"))
                .with("name", "札幌")
                .with_index(Index::BySite, "site#2", "meta")
                .expiring_at(1_767_225_600);
            let stored = item_to_dynamo(&item);
            assert_eq!(stored["by_site_pk"], AttributeValue::S("site#2".into()));
            assert_eq!(stored["expires_at"], AttributeValue::N("1767225600".into()));
            assert_eq!(item_from_dynamo(&stored).unwrap(), item);
            assert!(matches!(
                item_from_dynamo(&Attributes::new()),
                Err(StoreError::Corrupt(_))
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_conditions_count_a_missing_attribute_as_zero() {
        let add = Add::new(Key::new("p", "s"), "n", 3).up_to(2);
        let parts = AddParts::of(&add, 100).unwrap();
        assert!(
            parts
                .condition
                .contains("attribute_exists(#n1) AND #n1 <= :v1"),
            "{}",
            parts.condition
        );
        let add = Add::new(Key::new("p", "s"), "n", 1)
            .up_to(2)
            .expiring_at(200);
        let parts = AddParts::of(&add, 100).unwrap();
        assert!(
            parts
                .condition
                .contains("attribute_not_exists(#n1) OR #n1 <= :v1"),
            "{}",
            parts.condition
        );
        assert_eq!(
            parts.update,
            "ADD #n1 :v2 SET #n0 = if_not_exists(#n0, :v3)"
        );
        assert_eq!(
            parts.expr.values().unwrap()[":v1"],
            AttributeValue::N("1".into())
        );
        assert!(matches!(
            AddParts::of(&Add::new(Key::new("p", "s"), "n", 5).up_to(i64::MIN), 0),
            Err(StoreError::ConditionFailed)
        ));
    }

    #[test]
    fn unused_placeholders_are_never_sent() {
        let mut expr = Expr::default();
        assert_eq!(expr.condition(&Condition::None, 1), None);
        assert!(expr.names().is_none() && expr.values().is_none());
        let condition = expr.condition(&Condition::IfAbsent, 1).unwrap();
        assert_eq!(condition, "(attribute_not_exists(#n0) OR #n1 <= :v0)");
        assert_eq!(expr.names().unwrap().len(), 2);
    }
}
