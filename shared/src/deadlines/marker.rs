//! Put-if-absent markers: what the deadline job did about one item on one day.
//!
//! A marker is claimed before acting (`state: claimed`, with a token and a lease), completed after the
//! action succeeded (`state: done`, with what was done: for mail, to whom and the message id), and
//! released when the action failed, so the next run tries again. A claim whose lease ran out belongs to
//! a run that crashed mid-action; a later run takes it over (for mail this is the one case a message can
//! go out twice: the crash fell between the provider accepting it and the marker being written).

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::clock::rfc3339;
use crate::ids::TenantId;
use crate::store::{Condition, Index, Item, ItemStore, Key, StoreError, Update, keys};

/// How long a claim holds: longer than any run (a Lambda runs 15 minutes at most).
pub const LEASE_SECS: i64 = 20 * 60;
/// Markers are kept this long (a re-run for an old day still finds them), then expire.
const MARKER_DAYS: i64 = 400;

/// The marker of `action` on `subject` for `day`.
#[derive(Debug, Clone)]
pub struct Marker {
    pub key: Key,
    pub day: String,
    pub action: &'static str,
    pub subject: String,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This run holds the item now (the token proves it on completion).
    Mine(String),
    /// It was done already.
    Done,
    /// Another run holds it and its lease is running.
    Busy,
}

/// A completed action's record.
#[derive(Debug, Clone, Default)]
pub struct Done {
    /// For mail: the tenant (listed under it), the recipient and the provider's message id.
    pub tenant: Option<TenantId>,
    pub fields: Map<String, Value>,
}

impl Done {
    pub fn mail(tenant: &TenantId, to: &str, message_id: &str, subject: &str) -> Self {
        let mut fields = Map::new();
        fields.insert("to".into(), json!(to));
        fields.insert("message_id".into(), json!(message_id));
        fields.insert("subject".into(), json!(subject));
        Self {
            tenant: Some(tenant.clone()),
            fields,
        }
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }
}

impl Marker {
    pub fn new(day: &str, action: &'static str, subject: impl std::fmt::Display) -> Self {
        let subject = subject.to_string();
        Self {
            key: keys::deadline_marker(day, action, &subject),
            day: day.to_string(),
            action,
            subject,
        }
    }

    fn expiry(now: OffsetDateTime) -> i64 {
        now.unix_timestamp() + MARKER_DAYS * 86_400
    }

    /// Claims the item for this run.
    pub async fn claim(
        &self,
        store: &dyn ItemStore,
        now: OffsetDateTime,
        token: &str,
    ) -> Result<Claim, StoreError> {
        let lease_until = now.unix_timestamp() + LEASE_SECS;
        let item = Item::new(self.key.clone())
            .with("state", "claimed")
            .with("token", token)
            .with("lease_until", lease_until)
            .with("action", self.action)
            .with("subject", self.subject.as_str())
            .with("day", self.day.as_str())
            .expiring_at(Self::expiry(now));
        match store.put(item, Condition::IfAbsent).await {
            Ok(()) => return Ok(Claim::Mine(token.to_string())),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
        let Some(current) = store.get(&self.key).await? else {
            // Gone between the two reads (released): the next run will take it.
            return Ok(Claim::Busy);
        };
        let state = current.attributes.get("state").and_then(Value::as_str);
        if state == Some("done") {
            return Ok(Claim::Done);
        }
        if current.count("lease_until") > now.unix_timestamp() {
            return Ok(Claim::Busy);
        }
        // A lapsed claim: take it over, unless another run just did.
        let held_by = current
            .attributes
            .get("token")
            .cloned()
            .unwrap_or(Value::Null);
        let takeover = Update::new(self.key.clone())
            .set("token", token)
            .set("lease_until", lease_until)
            .set("taken_over", true)
            .when(Condition::AttributeEquals("token".into(), held_by));
        match store.update(takeover).await {
            Ok(_) => Ok(Claim::Mine(token.to_string())),
            Err(StoreError::ConditionFailed) => Ok(Claim::Busy),
            Err(e) => Err(e),
        }
    }

    /// Marks the item done (only if this run still holds it).
    pub async fn complete(
        &self,
        store: &dyn ItemStore,
        now: OffsetDateTime,
        token: &str,
        done: Done,
    ) -> Result<(), StoreError> {
        let mut item = Item::new(self.key.clone())
            .with("state", "done")
            .with("token", token)
            .with("action", self.action)
            .with("subject", self.subject.as_str())
            .with("day", self.day.as_str())
            .with("done_at", rfc3339(now))
            .expiring_at(Self::expiry(now));
        for (name, value) in done.fields {
            item = item.with(name, value);
        }
        if let Some(tenant) = &done.tenant {
            item = item.with("tenant_id", tenant.to_string());
            let (pk, sk) = keys::deadline_mail_listing(tenant, &self.day, self.action);
            item = item.with_index(Index::ByTenant, pk, sk);
        }
        store
            .put(
                item,
                Condition::AttributeEquals("token".into(), Value::from(token)),
            )
            .await
    }

    /// Gives the item back after a failed action, so the next run tries again.
    pub async fn release(&self, store: &dyn ItemStore, token: &str) -> Result<(), StoreError> {
        match store
            .delete(
                &self.key,
                Condition::AttributeEquals("token".into(), Value::from(token)),
            )
            .await
        {
            Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::store::EmbeddedStore;

    #[tokio::test]
    async fn claims_are_exclusive_done_is_final_and_lapsed_claims_are_taken_over() {
        let clock = ManualClock::at(time::macros::datetime!(2026-03-09 00:00 UTC));
        let store =
            EmbeddedStore::new(EmbeddedDb::in_memory().unwrap(), Arc::new(clock.clone())).unwrap();
        let marker = Marker::new("2026-03-09", "trial_ending_3", "ten_1");
        let now = clock.now();
        assert_eq!(
            marker.claim(&store, now, "a").await.unwrap(),
            Claim::Mine("a".into())
        );
        assert_eq!(marker.claim(&store, now, "b").await.unwrap(), Claim::Busy);
        // Released after a failure: claimable again.
        marker.release(&store, "a").await.unwrap();
        assert_eq!(
            marker.claim(&store, now, "b").await.unwrap(),
            Claim::Mine("b".into())
        );
        // The crashed run's lease runs out: a third run takes over, and the second cannot complete.
        clock.advance(std::time::Duration::from_secs(LEASE_SECS as u64 + 1));
        let later = clock.now();
        assert_eq!(
            marker.claim(&store, later, "c").await.unwrap(),
            Claim::Mine("c".into())
        );
        assert!(matches!(
            marker.complete(&store, later, "b", Done::default()).await,
            Err(StoreError::ConditionFailed)
        ));
        let tenant = TenantId::parse("ten_1").unwrap();
        marker
            .complete(
                &store,
                later,
                "c",
                Done::mail(&tenant, "a@example.jp", "m1", "件名"),
            )
            .await
            .unwrap();
        assert_eq!(marker.claim(&store, later, "d").await.unwrap(), Claim::Done);
        let record = store.get(&marker.key).await.unwrap().unwrap();
        assert_eq!(record.attributes["message_id"], "m1");
        assert!(record.index_keys.contains_key(&Index::ByTenant));
    }
}
