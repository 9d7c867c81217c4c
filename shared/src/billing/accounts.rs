//! The link between a tenant and its Stripe customer, and the tenant's subscription state as Stripe
//! reports it.
//!
//! Stripe does not order events, so every change carries the `created` time of the event it came from,
//! and a per-tenant watermark (`TENANT#…/BILLING_STATE`) admits only changes newer than the last one
//! applied. The watermark and the tenant are written in one transaction conditioned on the watermark's
//! version, so two deliveries racing each other cannot both win, and a replay changes nothing.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::events::SubscriptionSnapshot;
use super::settings::PlanPrices;
use crate::clock::rfc3339;
use crate::ids::TenantId;
use crate::store::{Condition, Item, ItemStore, Key, StoreError, Update, Write, keys};
use crate::tenants::{self, SubscriptionStatus, Tenant, TenantError, tenant_key};

/// Where a Stripe customer id leads (an item per customer: found without a scan).
pub fn customer_key(customer: &str) -> Key {
    keys::stripe_customer(customer)
}

fn watermark_key(tenant: &TenantId) -> Key {
    keys::billing_state(tenant)
}

#[derive(Debug, Serialize, Deserialize)]
struct CustomerLink {
    tenant_id: TenantId,
    customer: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Watermark {
    version: i64,
    /// The `created` of the newest event applied (unix seconds).
    state_at: i64,
}

/// The tenant a Stripe customer belongs to.
pub async fn tenant_of_customer(
    store: &dyn ItemStore,
    customer: &str,
) -> Result<Option<TenantId>, StoreError> {
    Ok(match store.get(&customer_key(customer)).await? {
        Some(item) => Some(item.to_record::<CustomerLink>()?.tenant_id),
        None => None,
    })
}

/// Links a customer to a tenant: the first link wins, a customer never moves to another tenant.
/// Returns whether the customer is (now) the tenant's.
pub async fn link_customer(
    store: &dyn ItemStore,
    tenant: &TenantId,
    customer: &str,
) -> Result<bool, TenantError> {
    let link = Item::from_record(
        customer_key(customer),
        &CustomerLink {
            tenant_id: tenant.clone(),
            customer: customer.to_string(),
        },
    )?;
    match store.put(link, Condition::IfAbsent).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => {
            if tenant_of_customer(store, customer).await?.as_ref() != Some(tenant) {
                tracing::error!(%tenant, customer, "Stripe customer already belongs to another tenant; not linked");
                return Ok(false);
            }
        }
        Err(e) => return Err(e.into()),
    }
    let current = tenants::get_tenant(store, tenant).await?;
    if current.stripe_customer_id.is_none() {
        store
            .update(
                Update::new(tenant_key(tenant))
                    .set("stripe_customer_id", customer)
                    .when(Condition::IfExists),
            )
            .await?;
    }
    Ok(true)
}

/// What became of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// An event older than what is stored: ignored.
    Stale,
    /// An event as old as what is stored: the caller re-reads the object from Stripe.
    Tie,
    Ignored,
}

/// A new subscription state for a tenant, from an event created at `event_created`.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub snapshot: SubscriptionSnapshot,
    pub event_created: i64,
    /// With a tie on `event_created`, apply anyway (the snapshot was just re-read from Stripe).
    pub fresh: bool,
}

/// Applies a subscription snapshot to the tenant if it is newer than what is stored.
pub async fn apply_subscription(
    store: &dyn ItemStore,
    prices: &PlanPrices,
    tenant: &TenantId,
    change: &StateChange,
) -> Result<Applied, TenantError> {
    let Some(status) = SubscriptionStatus::from_stripe(&change.snapshot.status) else {
        tracing::warn!(%tenant, status = change.snapshot.status, "unknown subscription status; ignored");
        return Ok(Applied::Ignored);
    };
    // A few attempts: each lost race means another delivery changed the state; re-decide on it.
    for _ in 0..8 {
        let mark = read_watermark(store, tenant).await?;
        if let Some(mark) = &mark {
            if change.event_created < mark.state_at {
                return Ok(Applied::Stale);
            }
            if change.event_created == mark.state_at && !change.fresh {
                return Ok(Applied::Tie);
            }
        }
        let current = tenants::get_tenant(store, tenant).await?;
        let snapshot = &change.snapshot;
        let plan = match snapshot.price.as_deref() {
            Some(price) => prices.plan_of(price).or_else(|| {
                tracing::warn!(%tenant, price, "price is not one of the configured plans; plan kept");
                None
            }),
            None => None,
        };
        let past_due_since = (status == SubscriptionStatus::PastDue)
            .then(
                || match (current.subscription_status, current.past_due_since) {
                    (SubscriptionStatus::PastDue, Some(since)) => Some(since),
                    _ => unix_time(change.event_created),
                },
            )
            .flatten();
        let mut update = Update::new(tenant_key(tenant))
            .set("subscription_status", status.as_str())
            .set("stripe_subscription_id", snapshot.id.as_str())
            .set("cancel_at_period_end", snapshot.cancel_at_period_end)
            .when(Condition::IfExists);
        if let Some(plan) = plan {
            update = update.set("plan", plan.as_str());
        }
        update = set_or_remove(update, "past_due_since", past_due_since);
        update = set_or_remove(
            update,
            "current_period_end",
            snapshot.current_period_end.and_then(unix_time),
        );
        update = set_or_remove(
            update,
            "trial_ends_at",
            snapshot.trial_end.and_then(unix_time),
        );
        let writes = vec![
            watermark_write(tenant, mark, change.event_created)?,
            Write::Update(update),
        ];
        match store.transact(writes).await {
            Ok(()) => {
                if let Some(plan) = plan.filter(|p| *p != current.plan) {
                    // The new plan's free credits apply from the next monthly grant.
                    crate::credits::account::set_plan(store, tenant, plan)
                        .await
                        .map_err(|e| {
                            StoreError::Backend(
                                anyhow::Error::new(e).context("setting the plan's free credits"),
                            )
                        })?;
                }
                tracing::info!(%tenant, status = status.as_str(), plan = ?plan, event_created = change.event_created, "subscription state applied");
                return Ok(Applied::Changed);
            }
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TenantError::Store(StoreError::Backend(anyhow::anyhow!(
        "subscription state for {tenant} kept changing under us"
    ))))
}

/// An invoice outcome: `paid` brings a failing subscription back to active, a failed payment puts a
/// running one past due. Invoices of another (older) subscription, and subscriptions that have ended,
/// are left alone.
pub async fn apply_invoice(
    store: &dyn ItemStore,
    tenant: &TenantId,
    subscription: &str,
    paid: bool,
    event_created: i64,
) -> Result<Applied, TenantError> {
    for _ in 0..8 {
        let mark = read_watermark(store, tenant).await?;
        if let Some(mark) = &mark {
            if event_created < mark.state_at {
                return Ok(Applied::Stale);
            }
            if event_created == mark.state_at {
                return Ok(Applied::Tie);
            }
        }
        let current = tenants::get_tenant(store, tenant).await?;
        if current
            .stripe_subscription_id
            .as_deref()
            .is_some_and(|s| s != subscription)
            || current.subscription_status.is_terminal()
        {
            return Ok(Applied::Ignored);
        }
        use SubscriptionStatus::*;
        let status = match (paid, current.subscription_status) {
            (true, PastDue | Unpaid | Incomplete) => Active,
            (false, Active | PastDue) => PastDue,
            // A trial's or an already active subscription's paid invoice changes nothing; a first
            // payment that fails keeps the subscription `incomplete`.
            _ => return Ok(Applied::Ignored),
        };
        let past_due_since = match (status, current.past_due_since) {
            (PastDue, Some(since)) if current.subscription_status == PastDue => Some(since),
            (PastDue, _) => unix_time(event_created),
            _ => None,
        };
        let update = Update::new(tenant_key(tenant))
            .set("subscription_status", status.as_str())
            .set("stripe_subscription_id", subscription)
            .when(Condition::IfExists);
        let update = set_or_remove(update, "past_due_since", past_due_since);
        let writes = vec![
            watermark_write(tenant, mark, event_created)?,
            Write::Update(update),
        ];
        match store.transact(writes).await {
            Ok(()) => return Ok(Applied::Changed),
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TenantError::Store(StoreError::Backend(anyhow::anyhow!(
        "subscription state for {tenant} kept changing under us"
    ))))
}

async fn read_watermark(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<Option<Watermark>, StoreError> {
    match store.get(&watermark_key(tenant)).await? {
        Some(item) => Ok(Some(item.to_record()?)),
        None => Ok(None),
    }
}

fn watermark_write(
    tenant: &TenantId,
    read: Option<Watermark>,
    state_at: i64,
) -> Result<Write, StoreError> {
    Ok(match read {
        None => Write::Put(
            Item::from_record(
                watermark_key(tenant),
                &Watermark {
                    version: 1,
                    state_at,
                },
            )?,
            Condition::IfAbsent,
        ),
        Some(mark) => Write::Update(
            Update::new(watermark_key(tenant))
                .set("version", mark.version + 1)
                .set("state_at", state_at)
                .when(Condition::AttributeEquals(
                    "version".into(),
                    mark.version.into(),
                )),
        ),
    })
}

/// Sets a time attribute (stored as RFC 3339), or removes it.
fn set_or_remove(update: Update, name: &str, value: Option<OffsetDateTime>) -> Update {
    match value {
        Some(v) => update.set(name, rfc3339(v)),
        None => update.remove(name),
    }
}

/// Unix seconds from Stripe as a time; a value outside the calendar (which a signed event can carry,
/// though Stripe never sends one) is no date at all.
pub fn unix_time(unix: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix).ok()
}

/// What `GET /api/billing` shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BillingView {
    pub plan: tenants::Plan,
    pub subscription_status: SubscriptionStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub current_period_end: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub trial_ends_at: Option<OffsetDateTime>,
    pub cancel_at_period_end: bool,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    /// Until when a `past_due` subscription keeps service.
    #[serde(with = "time::serde::rfc3339::option")]
    pub grace_period_ends_at: Option<OffsetDateTime>,
}

impl BillingView {
    pub fn of(tenant: &Tenant, grace: std::time::Duration) -> Self {
        let grace_period_ends_at = tenant
            .past_due_since
            .filter(|_| tenant.subscription_status == SubscriptionStatus::PastDue)
            // A grace period ending past the calendar shows no end rather than overflowing.
            .and_then(|since| since.checked_add(time::Duration::try_from(grace).ok()?));
        Self {
            plan: tenant.plan,
            subscription_status: tenant.subscription_status,
            current_period_end: tenant.current_period_end,
            trial_ends_at: tenant.trial_ends_at,
            cancel_at_period_end: tenant.cancel_at_period_end,
            stripe_customer_id: tenant.stripe_customer_id.clone(),
            stripe_subscription_id: tenant.stripe_subscription_id.clone(),
            grace_period_ends_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::ids::SequentialIds;
    use crate::store::EmbeddedStore;
    use crate::tenants::{Plan, TenantName};

    async fn setup() -> (Arc<EmbeddedStore>, Tenant, PlanPrices) {
        let clock = ManualClock::at(time::macros::datetime!(2026-12-01 00:00 UTC));
        let store = Arc::new(
            EmbeddedStore::new(EmbeddedDb::in_memory().unwrap(), Arc::new(clock.clone())).unwrap(),
        );
        let tenant = tenants::create_tenant(
            store.as_ref(),
            &SequentialIds::default(),
            &clock as &dyn Clock,
            TenantName::parse("Hotel").unwrap(),
            Plan::Starter,
        )
        .await
        .unwrap();
        let prices = PlanPrices::new([
            (Plan::Starter, "price_s".to_string()),
            (Plan::Pro, "price_p".to_string()),
        ]);
        (store, tenant, prices)
    }

    fn change(status: &str, price: &str, created: i64) -> StateChange {
        StateChange {
            snapshot: SubscriptionSnapshot::from_object(&json!({
                "id": "sub_1", "status": status, "customer": "cus_1",
                "items": {"data": [{"price": {"id": price}}]}, "current_period_end": created + 100,
            }))
            .unwrap(),
            event_created: created,
            fresh: false,
        }
    }

    #[tokio::test]
    async fn only_newer_states_apply_and_ties_ask_for_a_reread() {
        let (store, tenant, prices) = setup().await;
        let id = &tenant.tenant_id;
        let apply = |c: StateChange| {
            let store = store.clone();
            let prices = prices.clone();
            let id = id.clone();
            async move {
                apply_subscription(store.as_ref(), &prices, &id, &c)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            apply(change("active", "price_p", 100)).await,
            Applied::Changed
        );
        assert_eq!(
            apply(change("canceled", "price_s", 99)).await,
            Applied::Stale
        );
        assert_eq!(
            apply(change("past_due", "price_p", 100)).await,
            Applied::Tie
        );
        let mut fresh = change("past_due", "price_p", 100);
        fresh.fresh = true;
        assert_eq!(apply(fresh).await, Applied::Changed);
        let t = tenants::get_tenant(store.as_ref(), id).await.unwrap();
        assert_eq!(
            (t.subscription_status, t.plan),
            (SubscriptionStatus::PastDue, Plan::Pro)
        );
        assert_eq!(
            t.past_due_since,
            Some(time::macros::datetime!(1970-01-01 00:01:40 UTC))
        );
        // Still past due later: the grace period keeps counting from the first report.
        assert_eq!(
            apply(change("past_due", "price_p", 200)).await,
            Applied::Changed
        );
        let t = tenants::get_tenant(store.as_ref(), id).await.unwrap();
        assert_eq!(
            t.past_due_since,
            Some(time::macros::datetime!(1970-01-01 00:01:40 UTC))
        );
        // An unknown price keeps the plan; an unknown status is ignored.
        assert_eq!(
            apply(change("active", "price_unknown", 300)).await,
            Applied::Changed
        );
        let t = tenants::get_tenant(store.as_ref(), id).await.unwrap();
        assert_eq!(
            (t.subscription_status, t.plan, t.past_due_since),
            (SubscriptionStatus::Active, Plan::Pro, None)
        );
        assert_eq!(
            apply(change("exploded", "price_s", 400)).await,
            Applied::Ignored
        );
    }

    #[tokio::test]
    async fn racing_deliveries_end_at_the_newest_state() {
        let (store, tenant, prices) = setup().await;
        let statuses = ["active", "past_due", "unpaid", "canceled", "trialing"];
        let tasks: Vec<_> = (0..40i64)
            .map(|i| {
                let (store, prices, id) = (store.clone(), prices.clone(), tenant.tenant_id.clone());
                let c = change(
                    statuses[(i % 5) as usize],
                    if i % 2 == 0 { "price_s" } else { "price_p" },
                    1_000 + i,
                );
                tokio::spawn(async move {
                    // A delivery that loses too many races fails, and Stripe delivers it again
                    // (answered 500); model that redelivery rather than bound the races.
                    let mut redeliveries = 0;
                    loop {
                        match apply_subscription(store.as_ref(), &prices, &id, &c).await {
                            Ok(applied) => break applied,
                            Err(e) if redeliveries < 100 => {
                                redeliveries += 1;
                                tracing::debug!(error = %e, "redelivered");
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let t = tenants::get_tenant(store.as_ref(), &tenant.tenant_id)
            .await
            .unwrap();
        // Event 39 is the newest: statuses[39 % 5] = trialing, odd → pro.
        assert_eq!(
            (t.subscription_status, t.plan),
            (SubscriptionStatus::Trialing, Plan::Pro)
        );
    }

    #[tokio::test]
    async fn invoices_move_running_subscriptions_only() {
        let (store, tenant, prices) = setup().await;
        let id = &tenant.tenant_id;
        apply_subscription(
            store.as_ref(),
            &prices,
            id,
            &change("trialing", "price_s", 10),
        )
        .await
        .unwrap();
        // A trial's paid invoice changes nothing; another subscription's invoice is not ours.
        assert_eq!(
            apply_invoice(store.as_ref(), id, "sub_1", true, 11)
                .await
                .unwrap(),
            Applied::Ignored
        );
        assert_eq!(
            apply_invoice(store.as_ref(), id, "sub_old", false, 12)
                .await
                .unwrap(),
            Applied::Ignored
        );
        apply_subscription(
            store.as_ref(),
            &prices,
            id,
            &change("active", "price_s", 20),
        )
        .await
        .unwrap();
        assert_eq!(
            apply_invoice(store.as_ref(), id, "sub_1", false, 21)
                .await
                .unwrap(),
            Applied::Changed
        );
        assert_eq!(
            tenants::get_tenant(store.as_ref(), id)
                .await
                .unwrap()
                .subscription_status,
            SubscriptionStatus::PastDue
        );
        assert_eq!(
            apply_invoice(store.as_ref(), id, "sub_1", true, 21)
                .await
                .unwrap(),
            Applied::Tie
        );
        assert_eq!(
            apply_invoice(store.as_ref(), id, "sub_1", true, 22)
                .await
                .unwrap(),
            Applied::Changed
        );
        let t = tenants::get_tenant(store.as_ref(), id).await.unwrap();
        assert_eq!(
            (t.subscription_status, t.past_due_since),
            (SubscriptionStatus::Active, None)
        );
        apply_subscription(
            store.as_ref(),
            &prices,
            id,
            &change("canceled", "price_s", 30),
        )
        .await
        .unwrap();
        assert_eq!(
            apply_invoice(store.as_ref(), id, "sub_1", true, 31)
                .await
                .unwrap(),
            Applied::Ignored,
            "no resurrection"
        );
    }

    #[tokio::test]
    async fn a_customer_belongs_to_the_first_tenant_that_claims_it() {
        let (store, tenant, _) = setup().await;
        assert!(
            link_customer(store.as_ref(), &tenant.tenant_id, "cus_1")
                .await
                .unwrap()
        );
        assert!(
            link_customer(store.as_ref(), &tenant.tenant_id, "cus_1")
                .await
                .unwrap()
        );
        let other = TenantId::parse("ten_00000000000000000000000099").unwrap();
        assert!(
            !link_customer(store.as_ref(), &other, "cus_1")
                .await
                .unwrap()
        );
        assert_eq!(
            tenant_of_customer(store.as_ref(), "cus_1").await.unwrap(),
            Some(tenant.tenant_id.clone())
        );
        assert_eq!(
            tenants::get_tenant(store.as_ref(), &tenant.tenant_id)
                .await
                .unwrap()
                .stripe_customer_id
                .as_deref(),
            Some("cus_1")
        );
    }
}
