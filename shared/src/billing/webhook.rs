//! Stripe → Kotoba: signed events, each applied once however often Stripe delivers it.
//!
//! An event is claimed with a put-if-absent record (kept 35 days: Stripe retries for 3). A claim holds a
//! lease; a delivery that finds a live lease answers 409 so Stripe tries again later, one that finds an
//! expired lease (the worker died between claim and completion) takes the event over. The effects are
//! themselves conditional writes (the subscription watermark, put-if-absent payments), so running an
//! event twice after a takeover cannot apply it twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::accounts::{self, Applied, StateChange};
use super::events::{StripeEvent, SubscriptionSnapshot};
use super::signature::{self, SignatureError};
use super::{Billing, BillingError};
use crate::ids::TenantId;
use crate::store::{Condition, Item, Key, StoreError, Update, keys};
use crate::tenants::{self, TenantError};

/// How long a claim is exclusive; Stripe's first retries come minutes later.
pub const LEASE_SECONDS: i64 = 60;
/// How long a processed event is remembered (Stripe retries for three days).
pub const RETENTION_SECONDS: i64 = 35 * 86_400;

/// Why a delivery was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// `STRIPE_WEBHOOK_SECRET` is unset: every delivery is refused (503, so Stripe keeps it).
    #[error("the Stripe webhook secret is not configured")]
    NotConfigured,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    Malformed(String),
    /// Another worker holds the event's lease; Stripe should retry later.
    #[error("event {0} is being processed")]
    InProgress(String),
    #[error("applying the event failed")]
    Apply(#[source] BillingError),
}

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOutcome {
    Applied,
    /// Seen before and finished: nothing done.
    Duplicate,
    /// Older than the state already applied.
    Stale,
    /// A type Kotoba does not act on, or nothing to change.
    Ignored,
    /// No tenant matches the customer or metadata; recorded so an operator can look.
    NoTenant,
}

#[derive(Debug, Serialize, Deserialize)]
struct EventRecord {
    event_type: String,
    created: i64,
    state: String,
    lease_until: i64,
    attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    customer: Option<String>,
}

fn event_key(id: &str) -> Key {
    keys::stripe_event(id)
}

/// A payment intent Kotoba has seen (credit purchases are granted from these by the credits service).
pub fn payment_key(payment_intent: &str) -> Key {
    keys::stripe_payment(payment_intent)
}

enum Claim {
    Mine,
    Done,
    Busy,
}

impl Billing {
    /// Verifies, claims, applies and records one delivery.
    pub async fn receive_webhook(
        &self,
        signature_header: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookOutcome, WebhookError> {
        let secret = self
            .settings()
            .webhook_secret
            .as_ref()
            .ok_or(WebhookError::NotConfigured)?;
        let now = self.platform.clock.unix_seconds();
        signature::verify(signature_header, body, secret.expose(), now)?;
        let event = StripeEvent::parse(body).map_err(WebhookError::Malformed)?;
        let store = self.platform.store.as_ref();
        match self
            .claim(&event, now)
            .await
            .map_err(|e| WebhookError::Apply(e.into()))?
        {
            Claim::Done => {
                tracing::info!(event_id = event.id, "duplicate Stripe event ignored");
                return Ok(WebhookOutcome::Duplicate);
            }
            Claim::Busy => return Err(WebhookError::InProgress(event.id)),
            Claim::Mine => {}
        }
        let (outcome, tenant) = match self.apply(&event).await {
            Ok(applied) => applied,
            Err(e) => {
                // Give the lease back so Stripe's next retry runs at once rather than after the lease.
                let release = Update::new(event_key(&event.id))
                    .set("lease_until", 0)
                    .when(Condition::IfExists);
                if let Err(release_error) = store.update(release).await {
                    tracing::warn!(event_id = event.id, error = %release_error, "could not release the event's lease");
                }
                return Err(match e {
                    // The object is not what Stripe sends for its type: retrying cannot help, so it is
                    // refused like a malformed envelope (400), not a failure to apply (5xx).
                    BillingError::Invalid(why) => WebhookError::Malformed(why),
                    e => WebhookError::Apply(e),
                });
            }
        };
        let mut done = Update::new(event_key(&event.id))
            .set("state", "done")
            .set("outcome", outcome_name(&outcome))
            .when(Condition::IfExists);
        if let Some(tenant) = &tenant {
            done = done.set("tenant_id", tenant.to_string());
        }
        store
            .update(done)
            .await
            .map_err(|e| WebhookError::Apply(e.into()))?;
        tracing::info!(event_id = event.id, event_type = event.kind, outcome = outcome_name(&outcome), tenant_id = ?tenant, "Stripe event processed");
        Ok(outcome)
    }

    async fn claim(&self, event: &StripeEvent, now: i64) -> Result<Claim, StoreError> {
        let store = self.platform.store.as_ref();
        let key = event_key(&event.id);
        for _ in 0..4 {
            let record = EventRecord {
                event_type: event.kind.clone(),
                created: event.created,
                state: "processing".into(),
                lease_until: now + LEASE_SECONDS,
                attempts: 1,
                outcome: None,
                tenant_id: None,
                customer: event.customer().map(str::to_string),
            };
            let item =
                Item::from_record(key.clone(), &record)?.expiring_at(now + RETENTION_SECONDS);
            match store.put(item, Condition::IfAbsent).await {
                Ok(()) => return Ok(Claim::Mine),
                Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e),
            }
            let Some(existing) = store.get(&key).await? else {
                continue; // expired between our put and get: claim again
            };
            let existing: EventRecord = existing.to_record()?;
            if existing.state == "done" {
                return Ok(Claim::Done);
            }
            if existing.lease_until > now {
                return Ok(Claim::Busy);
            }
            // The previous worker's lease ran out: take the event over (one taker wins the race).
            let takeover = Update::new(key.clone())
                .set("lease_until", now + LEASE_SECONDS)
                .set("attempts", existing.attempts + 1)
                .when(Condition::AttributeEquals(
                    "lease_until".into(),
                    existing.lease_until.into(),
                ));
            return match store.update(takeover).await {
                Ok(_) => {
                    tracing::warn!(
                        event_id = event.id,
                        attempts = existing.attempts + 1,
                        "taking over a Stripe event whose worker did not finish"
                    );
                    Ok(Claim::Mine)
                }
                Err(StoreError::ConditionFailed) => Ok(Claim::Busy),
                Err(e) => Err(e),
            };
        }
        Ok(Claim::Busy)
    }

    async fn apply(
        &self,
        event: &StripeEvent,
    ) -> Result<(WebhookOutcome, Option<TenantId>), BillingError> {
        let handled = matches!(
            event.kind.as_str(),
            "checkout.session.completed"
                | "customer.subscription.created"
                | "customer.subscription.updated"
                | "customer.subscription.deleted"
                | "invoice.paid"
                | "invoice.payment_succeeded"
                | "invoice.payment_failed"
                | "payment_intent.succeeded"
                | "payment_intent.payment_failed"
        );
        if !handled {
            return Ok((WebhookOutcome::Ignored, None));
        }
        let Some(tenant) = self.resolve_tenant(event).await? else {
            tracing::warn!(event_id = event.id, event_type = event.kind, customer = ?event.customer(), "Stripe event for no known tenant; recorded");
            return Ok((WebhookOutcome::NoTenant, None));
        };
        let store = self.platform.store.as_ref();
        let outcome = match event.kind.as_str() {
            "checkout.session.completed" => {
                let subscription_mode =
                    event.data.object.get("mode").and_then(Value::as_str) == Some("subscription");
                match event.subscription() {
                    Some(sub) if subscription_mode => {
                        let object = self.stripe.retrieve_subscription(sub).await?;
                        let snapshot = snapshot(&object)?;
                        self.apply_snapshot(&tenant, snapshot, event.created, true)
                            .await?
                    }
                    _ => WebhookOutcome::Ignored,
                }
            }
            "customer.subscription.created"
            | "customer.subscription.updated"
            | "customer.subscription.deleted" => {
                let mut snapshot = snapshot(&event.data.object)?;
                if event.kind == "customer.subscription.deleted" {
                    snapshot.status = "canceled".into();
                }
                self.apply_snapshot(&tenant, snapshot, event.created, false)
                    .await?
            }
            "invoice.paid" | "invoice.payment_succeeded" | "invoice.payment_failed" => match event
                .subscription()
            {
                None => WebhookOutcome::Ignored, // a one-off invoice
                Some(sub) => {
                    let paid = event.kind != "invoice.payment_failed";
                    match accounts::apply_invoice(store, &tenant, sub, paid, event.created).await? {
                        Applied::Tie => {
                            let object = self.stripe.retrieve_subscription(sub).await?;
                            self.apply_snapshot(&tenant, snapshot(&object)?, event.created, true)
                                .await?
                        }
                        applied => outcome_of(applied),
                    }
                }
            },
            "payment_intent.succeeded" | "payment_intent.payment_failed" => {
                self.record_payment(&tenant, event).await?
            }
            _ => WebhookOutcome::Ignored,
        };
        if event.kind.starts_with("customer.subscription.")
            || event.kind.starts_with("invoice.")
            || event.kind == "checkout.session.completed"
        {
            // Whatever the event changed (or a redelivery that changes nothing), the tenant's billing
            // due records follow its state now: writing them again is harmless.
            let account = crate::tenants::get_tenant(store, &tenant).await?;
            crate::deadlines::due::schedule_billing(
                store,
                &account,
                self.platform.config.billing.past_due_grace,
                self.platform.clock.now().date(),
            )
            .await?;
        }
        Ok((outcome, Some(tenant)))
    }

    /// Applies a subscription state; on a tie with the stored state, re-reads the subscription from
    /// Stripe (whose answer is the truth now) and applies that.
    async fn apply_snapshot(
        &self,
        tenant: &TenantId,
        first: SubscriptionSnapshot,
        created: i64,
        fresh: bool,
    ) -> Result<WebhookOutcome, BillingError> {
        let store = self.platform.store.as_ref();
        let before = tenants::get_tenant(store, tenant).await?;
        let outcome = self
            .apply_snapshot_inner(tenant, first, created, fresh)
            .await?;
        let after = tenants::get_tenant(store, tenant).await?;
        let view = |t: &tenants::Tenant| {
            serde_json::json!({
                "plan": t.plan.as_str(),
                "subscription_status": t.subscription_status.as_str(),
                "current_period_end": t.current_period_end,
                "cancel_at_period_end": t.cancel_at_period_end,
            })
        };
        let (b, a) = (view(&before), view(&after));
        if b != a {
            let p = &self.platform;
            let entry = crate::audit::Entry::new(
                tenant,
                &crate::audit::Context::system("stripe"),
                "subscription.changed",
                tenant,
            )
            .change(b, a);
            crate::audit::record_or_log(p.store.as_ref(), p.ids.as_ref(), p.clock.as_ref(), entry)
                .await;
            let event = crate::webhooks::Event::subscription_updated(
                p.clock.now(),
                after.plan.as_str(),
                after.subscription_status.as_str(),
                Some(before.subscription_status.as_str()),
            );
            crate::webhooks::emit(p, tenant, event).await;
        }
        Ok(outcome)
    }

    async fn apply_snapshot_inner(
        &self,
        tenant: &TenantId,
        first: SubscriptionSnapshot,
        created: i64,
        fresh: bool,
    ) -> Result<WebhookOutcome, BillingError> {
        let store = self.platform.store.as_ref();
        let prices = &self.settings().prices;
        let mut change = StateChange {
            snapshot: first,
            event_created: created,
            fresh,
        };
        match accounts::apply_subscription(store, prices, tenant, &change).await? {
            Applied::Tie => {
                let object = self
                    .stripe
                    .retrieve_subscription(&change.snapshot.id)
                    .await?;
                change.snapshot = snapshot(&object)?;
                change.fresh = true;
                Ok(outcome_of(
                    accounts::apply_subscription(store, prices, tenant, &change).await?,
                ))
            }
            applied => Ok(outcome_of(applied)),
        }
    }

    /// The tenant an event is about: by Stripe customer (an index lookup), else by the tenant id Kotoba
    /// put in the object's metadata or as Checkout's `client_reference_id` (then the customer is linked).
    async fn resolve_tenant(&self, event: &StripeEvent) -> Result<Option<TenantId>, BillingError> {
        let store = self.platform.store.as_ref();
        if let Some(customer) = event.customer()
            && let Some(tenant) = accounts::tenant_of_customer(store, customer).await?
        {
            return Ok(Some(tenant));
        }
        for candidate in [event.metadata_tenant(), event.client_reference_id()]
            .into_iter()
            .flatten()
        {
            let Ok(tenant) = TenantId::parse(candidate) else {
                continue;
            };
            match tenants::get_tenant(store, &tenant).await {
                Ok(_) => {}
                Err(TenantError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            if let Some(customer) = event.customer()
                && !accounts::link_customer(store, &tenant, customer).await?
            {
                // The customer is another tenant's: never act on metadata against the link.
                return Ok(None);
            }
            return Ok(Some(tenant));
        }
        Ok(None)
    }

    /// Records a payment intent's outcome once per intent and status; a credit purchase's intent grants
    /// its credits (or fails the purchase) through `credits::purchases` first.
    async fn record_payment(
        &self,
        tenant: &TenantId,
        event: &StripeEvent,
    ) -> Result<WebhookOutcome, BillingError> {
        let store = self.platform.store.as_ref();
        let Some(intent) = event.object_id() else {
            return Err(BillingError::Invalid("the payment intent has no id".into()));
        };
        let status = if event.kind == "payment_intent.succeeded" {
            "succeeded"
        } else {
            "failed"
        };
        let object = &event.data.object;
        // A credit purchase: granted (or failed) first, each once however often Stripe delivers the
        // event, so a crash between the grant and the payment record below loses nothing on retry.
        if let Some(purchase) = crate::credits::purchases::IntentEvent::of(object) {
            let platform = self.platform.as_ref();
            let outcome = if status == "succeeded" {
                crate::credits::purchases::on_succeeded(platform, tenant, &purchase).await
            } else {
                crate::credits::purchases::on_failed(platform, tenant, &purchase).await
            }
            .map_err(BillingError::Credits)?;
            if let crate::credits::purchases::Outcome::Mismatch(why) = &outcome {
                tracing::error!(%tenant, payment_intent = intent, why, alert = true, "a purchase's payment does not match it; nothing credited");
            }
        }
        let item = Item::new(payment_key(intent))
            .with("tenant_id", tenant.to_string())
            .with("status", status)
            .with(
                "amount",
                object.get("amount").cloned().unwrap_or(Value::Null),
            )
            .with(
                "currency",
                object.get("currency").cloned().unwrap_or(Value::Null),
            )
            .with(
                "metadata",
                object.get("metadata").cloned().unwrap_or(Value::Null),
            )
            .with("event_id", event.id.clone())
            .with("event_created", event.created);
        match store.put(item.clone(), Condition::IfAbsent).await {
            Ok(()) => {}
            // Seen before: a later success replaces a failure, never the other way round.
            Err(StoreError::ConditionFailed) if status == "succeeded" => {
                let update = Update::new(payment_key(intent))
                    .set("status", "succeeded")
                    .set("event_id", event.id.clone())
                    .when(Condition::AttributeEquals("status".into(), "failed".into()));
                match store.update(update).await {
                    Ok(_) | Err(StoreError::ConditionFailed) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(StoreError::ConditionFailed) => return Ok(WebhookOutcome::Duplicate),
            Err(e) => return Err(e.into()),
        }
        if status == "failed" {
            let reason = object
                .get("last_payment_error")
                .and_then(|e| e.get("code").or_else(|| e.get("message")))
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            tracing::warn!(%tenant, payment_intent = intent, reason, alert = true, "payment failed");
        }
        Ok(WebhookOutcome::Applied)
    }
}

fn snapshot(object: &Value) -> Result<SubscriptionSnapshot, BillingError> {
    SubscriptionSnapshot::from_object(object).map_err(BillingError::Invalid)
}

fn outcome_of(applied: Applied) -> WebhookOutcome {
    match applied {
        Applied::Changed => WebhookOutcome::Applied,
        Applied::Stale => WebhookOutcome::Stale,
        Applied::Tie | Applied::Ignored => WebhookOutcome::Ignored,
    }
}

fn outcome_name(outcome: &WebhookOutcome) -> &'static str {
    match outcome {
        WebhookOutcome::Applied => "applied",
        WebhookOutcome::Duplicate => "duplicate",
        WebhookOutcome::Stale => "stale",
        WebhookOutcome::Ignored => "ignored",
        WebhookOutcome::NoTenant => "no_tenant",
    }
}
