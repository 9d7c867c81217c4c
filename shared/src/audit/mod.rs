//! The audit log: who did what to a tenant's account — keys issued and revoked, sites created and
//! changed (before/after of the changed fields), prompt and voice versions, webhooks changed, billing
//! and credit changes, admin actions, security events — with the actor, IP and request id.
//!
//! Append-only: entries are written once (`IfAbsent`) and nothing in the platform updates or deletes
//! them. Ids are time-ordered, so a partition lists newest first by key alone.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::{Clock, rfc3339};
use crate::ids::{AuditId, IdGenerator, KeyId, TenantId};
use crate::store::{Condition, Index, Item, ItemStore, Query, StoreError, keys};

/// Entries per page.
pub const PAGE_SIZE: usize = 50;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A tenant API key (its public id, never the secret).
    ApiKey { key_id: KeyId },
    /// The operator, with the admin key.
    Admin,
    /// The platform itself, on behalf of an outside system (`stripe`, `webhooks` …).
    System { name: String },
}

/// The request facts an entry carries. Extract it after `TenantAuth`/`AdminAuth` in a handler's
/// arguments: they leave the authenticated actor in the request for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub actor: Actor,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl Context {
    /// The platform acting on its own (a Stripe event, the webhook worker).
    pub fn system(name: &str) -> Self {
        Self {
            actor: Actor::System { name: name.into() },
            ip: None,
            request_id: crate::http::current_request_id(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Context {
    type Rejection = crate::http::ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let actor = parts.extensions.get::<Actor>().cloned().ok_or_else(|| {
            crate::http::ApiError::Internal(anyhow::anyhow!(
                "audit context extracted before authentication"
            ))
        })?;
        Ok(Self {
            actor,
            ip: crate::http::client_ip(parts),
            request_id: crate::http::current_request_id(),
        })
    }
}

/// One entry as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub audit_id: AuditId,
    pub tenant_id: TenantId,
    pub actor: Actor,
    /// What happened: `api_key.issued`, `site.updated`, `webhook.created`, `subscription.changed` …
    pub action: String,
    /// What it happened to (an id).
    pub target: String,
    /// The changed fields before the change (only those), when something changed.
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// RFC 3339.
    pub at: String,
}

/// An entry to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub tenant_id: TenantId,
    pub action: String,
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub context: Context,
}

impl Entry {
    pub fn new(
        tenant: &TenantId,
        context: &Context,
        action: impl Into<String>,
        target: impl std::fmt::Display,
    ) -> Self {
        Self {
            tenant_id: tenant.clone(),
            action: action.into(),
            target: target.to_string(),
            before: None,
            after: None,
            context: context.clone(),
        }
    }

    /// Before/after, reduced to the fields that differ (objects; other values are kept whole).
    pub fn change(mut self, before: Value, after: Value) -> Self {
        let (b, a) = changed_fields(before, after);
        self.before = Some(b);
        self.after = Some(a);
        self
    }

    /// Only the state after (a creation).
    pub fn created(mut self, after: Value) -> Self {
        self.after = Some(after);
        self
    }
}

/// The fields of two objects that differ, as two objects; non-objects come back as they are.
pub fn changed_fields(before: Value, after: Value) -> (Value, Value) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut before = Map::new();
            let mut after = Map::new();
            let names: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for name in names {
                let (old, new) = (b.get(name), a.get(name));
                if old != new {
                    before.insert(name.clone(), old.cloned().unwrap_or(Value::Null));
                    after.insert(name.clone(), new.cloned().unwrap_or(Value::Null));
                }
            }
            (Value::Object(before), Value::Object(after))
        }
        (b, a) => (b, a),
    }
}

/// Appends an entry.
pub async fn record(
    store: &dyn ItemStore,
    ids: &dyn IdGenerator,
    clock: &dyn Clock,
    entry: Entry,
) -> Result<AuditEntry, StoreError> {
    let stored = AuditEntry {
        audit_id: AuditId::generate(ids),
        tenant_id: entry.tenant_id,
        actor: entry.context.actor,
        action: entry.action,
        target: entry.target,
        before: entry.before,
        after: entry.after,
        ip: entry.context.ip,
        request_id: entry.context.request_id,
        at: rfc3339(clock.now()),
    };
    let (all_pk, all_sk) = keys::audit_listing(&stored.audit_id);
    let item = Item::from_record(
        keys::audit_entry(&stored.tenant_id, &stored.audit_id),
        &stored,
    )?
    .with_index(Index::ByTenant, all_pk, all_sk);
    store.put(item, Condition::IfAbsent).await?;
    Ok(stored)
}

/// [`record`] for callers whose action has already happened: a failure is logged loudly, not returned
/// (the client would otherwise retry an action that took effect).
pub async fn record_or_log(
    store: &dyn ItemStore,
    ids: &dyn IdGenerator,
    clock: &dyn Clock,
    entry: Entry,
) {
    let (tenant, action) = (entry.tenant_id.clone(), entry.action.clone());
    if let Err(e) = record(store, ids, clock, entry).await {
        tracing::error!(tenant_id = %tenant, action, error = %e, "writing an audit entry failed");
    }
}

fn page(items: &[Item]) -> Result<Vec<AuditEntry>, StoreError> {
    items.iter().map(Item::to_record).collect()
}

/// A tenant's entries, newest first.
pub async fn list(
    store: &dyn ItemStore,
    tenant: &TenantId,
    cursor: Option<String>,
) -> Result<(Vec<AuditEntry>, Option<String>), StoreError> {
    let p = store
        .query(
            Query::partition(keys::audit_partition(tenant))
                .prefix(keys::prefix::AUDIT)
                .descending()
                .limit(PAGE_SIZE)
                .after(cursor),
        )
        .await?;
    Ok((page(&p.items)?, p.next))
}

/// Every tenant's entries, newest first (the operator's view).
pub async fn list_all(
    store: &dyn ItemStore,
    cursor: Option<String>,
) -> Result<(Vec<AuditEntry>, Option<String>), StoreError> {
    let p = store
        .query(
            Query::on(Index::ByTenant, keys::ALL_AUDIT)
                .prefix(keys::prefix::AUDIT)
                .descending()
                .limit(PAGE_SIZE)
                .after(cursor),
        )
        .await?;
    Ok((page(&p.items)?, p.next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_only_changed_fields() {
        let (b, a) = changed_fields(
            json!({"name": "A", "domains": ["a.jp"], "same": 1}),
            json!({"name": "B", "domains": ["a.jp"], "same": 1, "new": true}),
        );
        assert_eq!(b, json!({"name": "A", "new": null}));
        assert_eq!(a, json!({"name": "B", "new": true}));
    }

    #[tokio::test]
    async fn entries_list_newest_first_per_tenant_and_for_the_operator() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::embedded_db::EmbeddedDb::open(&dir.path().join("db")).unwrap();
        let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(crate::clock::SystemClock);
        let store = crate::store::EmbeddedStore::new(db, clock.clone()).unwrap();
        let ids = crate::ids::SequentialIds::default();
        let (a, b) = (
            TenantId::parse("ten_a").unwrap(),
            TenantId::parse("ten_b").unwrap(),
        );
        let ctx = Context::system("test");
        for n in 0..3 {
            record(
                &store,
                &ids,
                clock.as_ref(),
                Entry::new(&a, &ctx, "site.created", n),
            )
            .await
            .unwrap();
        }
        record(
            &store,
            &ids,
            clock.as_ref(),
            Entry::new(&b, &ctx, "site.created", "b"),
        )
        .await
        .unwrap();
        let (mine, next) = list(&store, &a, None).await.unwrap();
        assert_eq!(next, None);
        assert_eq!(
            mine.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
            ["2", "1", "0"]
        );
        assert!(mine.iter().all(|e| e.tenant_id == a));
        let (all, _) = list_all(&store, None).await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].tenant_id, b);
    }
}
