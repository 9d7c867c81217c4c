//! The low-balance threshold and automatic top-up.
//!
//! The settings live on the credit account, which every settle reads anyway, so watching the balance
//! costs no extra round trip. A settle that takes the balance below the threshold emits `credits.low`
//! (once per crossing); while the balance is below it and auto top-up is on, a settle starts one
//! off-session PaymentIntent with the customer's saved card — at most one in flight per tenant (a
//! put-if-absent lock) and never more than `monthly_cap` a month (a bounded counter, in the lock's
//! transaction). A failure leaves the lock as an hour's cool-down; three failures in a row switch
//! auto top-up off and the tenant is told.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Platform;
use crate::billing::{Billing, BillingError};
use crate::ids::{PackageId, TenantId};
use crate::store::{Add, Condition, Item, StoreError, Update, Write, keys};

use super::account::{self, AccountRecord};
use super::ledger::LedgerEntry;
use super::purchases::{self, Purchase, PurchaseError, PurchaseSource};
use super::{CreditError, Credits, packages};

/// Failures in a row after which auto top-up switches itself off.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;
/// How long the lock of a started top-up lasts if Stripe never reports back (the payment is then
/// presumed lost and another may start).
const IN_FLIGHT_SECS: i64 = 24 * 3600;
/// How long after a failure before the next attempt.
const COOL_DOWN_SECS: i64 = 3600;
/// The most top-ups a month a tenant may allow.
pub const MAX_MONTHLY_CAP: u32 = 31;
/// The threshold's upper bound (far above any real one; keeps arithmetic safe).
const MAX_THRESHOLD: i64 = 100_000_000;

/// The settings, as stored on the account and shown in the balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AutoTopUp {
    pub enabled: bool,
    /// Below this balance `credits.low` fires, the daily digest mails, and (when enabled) a top-up
    /// starts.
    pub threshold: Credits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_id: Option<PackageId>,
    /// Top-ups a calendar month (UTC), at most.
    pub monthly_cap: u32,
    /// Failed top-ups in a row (reset by a success or by saving the settings).
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Why auto top-up switched itself off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// `PUT /api/credits/auto-top-up`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoTopUpRequest {
    pub enabled: bool,
    /// Credits, 0 to 100,000,000.
    pub threshold: i64,
    /// Required when enabled: the package bought each time.
    #[serde(default)]
    pub package_id: Option<String>,
    /// 1 to 31; 3 when absent.
    #[serde(default)]
    pub monthly_cap: Option<u32>,
    /// A card (`pm_…`) to save as the default for off-session payments; without it, the card saved
    /// with the subscription is used.
    #[serde(default)]
    pub payment_method: Option<String>,
}

/// The threshold in force: the tenant's own, else a fifth of the plan's monthly free credits.
pub fn threshold_of(record: &AccountRecord) -> Option<Credits> {
    match &record.auto_top_up {
        Some(settings) => (settings.threshold.0 > 0).then_some(settings.threshold),
        None => (record.monthly_free_credits / 5 > 0)
            .then_some(Credits(record.monthly_free_credits / 5)),
    }
}

/// Checks and saves the settings (field errors name the field).
pub async fn save(
    billing: &Billing,
    tenant_id: &TenantId,
    request: AutoTopUpRequest,
    actor: &crate::audit::Context,
) -> Result<AutoTopUp, PurchaseError> {
    let platform = billing.platform();
    let store = platform.store.as_ref();
    let invalid = |m: &str| PurchaseError::Invalid(m.to_string());
    if !(0..=MAX_THRESHOLD).contains(&request.threshold) {
        return Err(invalid("threshold: credits from 0 to 100,000,000"));
    }
    let monthly_cap = request.monthly_cap.unwrap_or(3);
    if !(1..=MAX_MONTHLY_CAP).contains(&monthly_cap) {
        return Err(invalid("monthly_cap: 1 to 31 top-ups a month"));
    }
    let package_id = match &request.package_id {
        Some(id) => Some(
            PackageId::parse(id).map_err(|e| PurchaseError::Invalid(format!("package_id: {e}")))?,
        ),
        None => None,
    };
    if request.enabled {
        let Some(package_id) = &package_id else {
            return Err(invalid("package_id: auto top-up needs the package to buy"));
        };
        let package = packages::get(store, package_id)
            .await?
            .ok_or_else(|| PurchaseError::UnknownPackage(package_id.clone()))?;
        if !package.on_sale(platform.clock.now()) {
            return Err(PurchaseError::NotOnSale(package_id.clone()));
        }
        if request.threshold == 0 {
            return Err(invalid(
                "threshold: auto top-up needs a threshold above 0 credits",
            ));
        }
        if !billing.stripe().is_configured() {
            return Err(BillingError::NotConfigured.into());
        }
        let tenant = crate::tenants::get_tenant(store, tenant_id).await?;
        let customer = billing.customer(&tenant).await?;
        match &request.payment_method {
            Some(pm) => {
                if !pm.starts_with("pm_") || pm.len() > 255 {
                    return Err(invalid("payment_method: a Stripe payment method id (pm_…)"));
                }
                let key = format!("kotoba-topup-card-{tenant_id}-{pm}");
                billing
                    .stripe()
                    .set_default_payment_method(&customer, pm, &key)
                    .await
                    .map_err(BillingError::from)?;
            }
            None => {
                if default_payment_method(billing, &customer).await?.is_none() {
                    return Err(invalid(
                        "payment_method: no card is saved for off-session payments; send one",
                    ));
                }
            }
        }
    }
    let settings = AutoTopUp {
        enabled: request.enabled,
        threshold: Credits(request.threshold),
        package_id,
        monthly_cap,
        consecutive_failures: 0,
        disabled_reason: None,
    };
    write(platform, tenant_id, &settings).await?;
    let audit =
        crate::audit::Entry::new(tenant_id, actor, "credits.auto_top_up_changed", tenant_id)
            .created(serde_json::to_value(&settings).unwrap_or(Value::Null));
    crate::audit::record_or_log(store, platform.ids.as_ref(), platform.clock.as_ref(), audit).await;
    Ok(settings)
}

/// Writes the settings onto the account (creating it if the tenant never had one), touching no other
/// field of it.
async fn write(
    platform: &Platform,
    tenant: &TenantId,
    settings: &AutoTopUp,
) -> Result<(), StoreError> {
    let store = platform.store.as_ref();
    let key = keys::credit_account(tenant);
    let value = serde_json::to_value(settings).map_err(|e| StoreError::Invalid(e.to_string()))?;
    for _ in 0..8 {
        let update = Update::new(key.clone())
            .set("auto_top_up", value.clone())
            .when(Condition::IfExists);
        match store.update(update).await {
            Ok(_) => return Ok(()),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
        let record = AccountRecord {
            auto_top_up: Some(settings.clone()),
            ..AccountRecord::default()
        };
        match store
            .put(
                Item::from_record(key.clone(), &record)?,
                Condition::IfAbsent,
            )
            .await
        {
            Ok(()) => return Ok(()),
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Invalid(
        "the credit account kept changing while saving auto top-up".into(),
    ))
}

/// The tenant's saved card (its Stripe customer's default), for a one-click purchase.
pub async fn saved_card(
    billing: &Billing,
    tenant: &TenantId,
) -> Result<Option<String>, PurchaseError> {
    let tenant = crate::tenants::get_tenant(billing.platform().store.as_ref(), tenant).await?;
    match &tenant.stripe_customer_id {
        Some(customer) => Ok(default_payment_method(billing, customer).await?),
        None => Ok(None),
    }
}

/// The card Stripe charges off-session: the customer's default for invoices.
async fn default_payment_method(
    billing: &Billing,
    customer: &str,
) -> Result<Option<String>, BillingError> {
    let path = format!("/v1/customers/{}", urlencoding(customer));
    let object = billing.stripe().get(&path).await?;
    let pm = object
        .get("invoice_settings")
        .and_then(|s| s.get("default_payment_method"))
        .and_then(|pm| pm.as_str().or_else(|| pm.get("id").and_then(Value::as_str)))
        .map(str::to_string);
    Ok(pm)
}

/// Stripe ids are `[A-Za-z0-9_]`; anything else is refused rather than escaped.
fn urlencoding(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// After a usage entry: `credits.low` when this settle crossed the threshold, and a top-up while the
/// balance is below it. Never fails the settle: problems are logged.
pub async fn after_usage(
    platform: &Arc<Platform>,
    tenant: &TenantId,
    record: &AccountRecord,
    entry: &LedgerEntry,
) {
    let Some(threshold) = threshold_of(record) else {
        return;
    };
    let after = entry.balance_after.0;
    let before = after - entry.credits.0;
    if after >= threshold.0 {
        return;
    }
    if before >= threshold.0 {
        tracing::info!(%tenant, balance = after, threshold = threshold.0, "credit balance fell below the threshold");
        crate::webhooks::emit(
            platform,
            tenant,
            crate::webhooks::Event::credits_low(platform.clock.now(), after, threshold.0),
        )
        .await;
        if let Err(e) = crate::deadlines::due::schedule_low_balance(
            platform.store.as_ref(),
            tenant,
            platform.clock.now().date(),
        )
        .await
        {
            tracing::warn!(%tenant, error = %e, "could not schedule the low-balance digest");
        }
    }
    let Some(settings) = record.auto_top_up.as_ref().filter(|s| s.enabled) else {
        return;
    };
    if let Err(e) = start(platform, tenant, settings).await {
        tracing::warn!(%tenant, error = %e, "automatic top-up did not start");
    }
}

/// Claims the one in-flight slot and this month's count (one transaction), then queues the payment
/// for the worker that holds the Stripe key.
async fn start(
    platform: &Arc<Platform>,
    tenant: &TenantId,
    settings: &AutoTopUp,
) -> Result<(), CreditError> {
    let store = platform.store.as_ref();
    let now = platform.clock.now();
    let month = account::month_of(now);
    let claim = platform.ids.new_id();
    let writes = vec![
        Write::Put(
            Item::new(keys::auto_top_up_lock(tenant))
                .with("state", format!("claimed {claim}"))
                .with("since", now.unix_timestamp())
                .expiring_at(now.unix_timestamp() + IN_FLIGHT_SECS),
            Condition::IfAbsent,
        ),
        Write::Add(
            Add::new(keys::auto_top_ups(tenant, &month), "count", 1)
                .up_to(i64::from(settings.monthly_cap))
                .expiring_at(now.unix_timestamp() + 62 * 86_400),
        ),
    ];
    match store.transact(writes).await {
        Ok(()) => {}
        // One is in flight or cooling down, or the month's cap is reached.
        Err(StoreError::ConditionFailed) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let message = crate::webhooks::Message::AutoTopUp {
        tenant_id: tenant.clone(),
        claim,
    };
    if let Err(e) = platform.webhook_queue.send(&message.to_body()).await {
        // Not queued: free the slot so the next settle tries again.
        tracing::warn!(%tenant, error = %e, "queueing an automatic top-up failed");
        store
            .delete(&keys::auto_top_up_lock(tenant), Condition::None)
            .await?;
    }
    Ok(())
}

/// The worker's part: takes the claim (once, however often the message comes), then starts an
/// off-session payment of the package with the customer's saved card.
pub async fn pay(
    platform: &Arc<Platform>,
    tenant: &TenantId,
    claim: &str,
) -> Result<(), CreditError> {
    let store = platform.store.as_ref();
    let take = Update::new(keys::auto_top_up_lock(tenant))
        .set("state", format!("paying {claim}"))
        .when(Condition::AttributeEquals(
            "state".into(),
            format!("claimed {claim}").into(),
        ));
    match store.update(take).await {
        Ok(_) => {}
        Err(StoreError::ConditionFailed) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let record: AccountRecord = match store.get(&keys::credit_account(tenant)).await? {
        Some(item) => item.to_record()?,
        None => AccountRecord::default(),
    };
    let Some(settings) = record.auto_top_up.filter(|s| s.enabled) else {
        // Switched off meanwhile: nothing to pay.
        store
            .delete(&keys::auto_top_up_lock(tenant), Condition::None)
            .await?;
        return Ok(());
    };
    let billing = Billing::new(platform.clone());
    let Some(package_id) = settings.package_id.clone() else {
        return give_up(platform, tenant, "no_package").await;
    };
    let customer = crate::tenants::get_tenant(store, tenant)
        .await
        .map_err(|e| CreditError::Invalid(e.to_string()))?
        .stripe_customer_id;
    let card = match &customer {
        Some(customer) => default_payment_method(&billing, customer)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let Some(card) = card else {
        return give_up(platform, tenant, "no_saved_card").await;
    };
    tracing::info!(%tenant, package = %package_id, "starting an automatic top-up");
    match purchases::start(
        &billing,
        tenant,
        &package_id,
        Some(&card),
        PurchaseSource::AutoTopUp,
    )
    .await
    {
        Ok(started) => {
            tracing::info!(%tenant, purchase = %started.purchase_id, status = started.payment.status, "automatic top-up started");
            Ok(())
        }
        // The purchase was recorded and failed: its failure already counted (purchases::fail).
        Err(PurchaseError::Refused(_)) | Err(PurchaseError::Billing(BillingError::Stripe(_))) => {
            Ok(())
        }
        Err(PurchaseError::UnknownPackage(_)) | Err(PurchaseError::NotOnSale(_)) => {
            give_up(platform, tenant, "package_unavailable").await
        }
        Err(e) => {
            tracing::warn!(%tenant, error = %e, "automatic top-up could not start");
            give_up(platform, tenant, "could_not_start").await
        }
    }
}

/// A top-up that failed before any payment existed counts as a failure like a declined card.
async fn give_up(
    platform: &Arc<Platform>,
    tenant: &TenantId,
    code: &str,
) -> Result<(), CreditError> {
    count_failure(platform, tenant, None, code).await
}

/// A top-up's payment failed (called once per failed purchase).
pub(crate) async fn on_failed(
    platform: &Platform,
    tenant: &TenantId,
    purchase: &Purchase,
    code: &str,
) -> Result<(), StoreError> {
    count_failure(platform, tenant, Some(purchase), code)
        .await
        .map_err(|e| match e {
            CreditError::Store(e) => e,
            e => StoreError::Invalid(e.to_string()),
        })
}

async fn count_failure(
    platform: &Platform,
    tenant: &TenantId,
    purchase: Option<&Purchase>,
    code: &str,
) -> Result<(), CreditError> {
    let store = platform.store.as_ref();
    let now = platform.clock.unix_seconds();
    // The lock stays as a cool-down: the next attempt waits an hour.
    store
        .put(
            Item::new(keys::auto_top_up_lock(tenant))
                .with("state", "cooling_down")
                .with("failure_code", code)
                .expiring_at(now + COOL_DOWN_SECS),
            Condition::None,
        )
        .await?;
    let record: AccountRecord = match store.get(&keys::credit_account(tenant)).await? {
        Some(item) => item.to_record()?,
        None => return Ok(()),
    };
    let Some(mut settings) = record.auto_top_up else {
        return Ok(());
    };
    settings.consecutive_failures += 1;
    let disabled = settings.enabled && settings.consecutive_failures >= MAX_CONSECUTIVE_FAILURES;
    if disabled {
        settings.enabled = false;
        settings.disabled_reason = Some(format!(
            "{} automatic top-ups failed in a row (last: {code})",
            settings.consecutive_failures
        ));
    }
    write(platform, tenant, &settings).await?;
    tracing::warn!(%tenant, failures = settings.consecutive_failures, disabled, code, alert = true, "automatic top-up failed");
    if disabled {
        let audit = crate::audit::Entry::new(
            tenant,
            &crate::audit::Context::system("credits"),
            "credits.auto_top_up_disabled",
            tenant,
        )
        .created(serde_json::json!({
            "consecutive_failures": settings.consecutive_failures,
            "last_failure_code": code,
        }));
        crate::audit::record_or_log(store, platform.ids.as_ref(), platform.clock.as_ref(), audit)
            .await;
    }
    tell(platform, tenant, purchase, code, &settings, disabled).await;
    Ok(())
}

/// Mails the tenant's billing address about a failed top-up, in its language.
async fn tell(
    platform: &Platform,
    tenant_id: &TenantId,
    purchase: Option<&Purchase>,
    code: &str,
    settings: &AutoTopUp,
    disabled: bool,
) {
    let notice = crate::deadlines::notices::Notice::TopUpFailed {
        credits: purchase.map(|p| p.credits.0),
        code: code.to_string(),
        failures: settings.consecutive_failures,
        disabled,
    };
    crate::deadlines::notices::tell_tenant(
        platform.store.as_ref(),
        platform.mail.as_ref(),
        &platform.mail_from,
        tenant_id,
        notice,
    )
    .await;
}

/// A top-up was paid: the slot frees and the failure count resets.
pub(crate) async fn on_paid(platform: &Platform, tenant: &TenantId) -> Result<(), CreditError> {
    let store = platform.store.as_ref();
    store
        .delete(&keys::auto_top_up_lock(tenant), Condition::None)
        .await?;
    let record: AccountRecord = match store.get(&keys::credit_account(tenant)).await? {
        Some(item) => item.to_record()?,
        None => return Ok(()),
    };
    if let Some(mut settings) = record.auto_top_up
        && settings.consecutive_failures > 0
    {
        settings.consecutive_failures = 0;
        write(platform, tenant, &settings).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_the_tenants_else_a_fifth_of_the_free_credits() {
        let mut record = AccountRecord {
            monthly_free_credits: 1_000,
            ..AccountRecord::default()
        };
        assert_eq!(threshold_of(&record), Some(Credits(200)));
        record.auto_top_up = Some(AutoTopUp {
            enabled: false,
            threshold: Credits(50),
            package_id: None,
            monthly_cap: 3,
            consecutive_failures: 0,
            disabled_reason: None,
        });
        assert_eq!(threshold_of(&record), Some(Credits(50)));
        record.auto_top_up.as_mut().unwrap().threshold = Credits(0);
        assert_eq!(threshold_of(&record), None, "0 switches the alerts off");
        assert_eq!(threshold_of(&AccountRecord::default()), None);
    }
}
