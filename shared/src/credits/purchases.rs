//! Buying credits: one purchase record per attempt, one Stripe PaymentIntent per purchase (the
//! purchase id is its `Idempotency-Key` and sits in its metadata), and the grant, which only Stripe's
//! `payment_intent.succeeded` makes: once per payment intent, by a marker written in the grant's
//! ledger transaction.
//!
//! A purchase moves `pending → succeeded` (the webhook granted it) or `pending → failed` (Stripe
//! refused the card, or the payment failed later); each move is one conditional write, so its
//! consequences (an alert, an auto top-up's failure count) happen once.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::Platform;
use crate::billing::stripe::Form;
use crate::billing::{Billing, BillingError, StripeError};
use crate::ids::{PackageId, PurchaseId, TenantId};
use crate::store::{Condition, Item, StoreError, Update, Write, keys};
use crate::tenants;

use super::account::{self, Change};
use super::ledger::{LedgerEntry, TransactionType};
use super::packages::{self, Currency};
use super::{CreditError, Credits};

/// Where a purchase came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseSource {
    /// The tenant bought a package.
    Manual,
    /// The balance fell below the auto top-up threshold.
    AutoTopUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseStatus {
    /// Waiting for the payment (and for Stripe's webhook).
    Pending,
    /// Paid and credited.
    Succeeded,
    /// The payment failed; nothing was credited.
    Failed,
}

impl PurchaseStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// One purchase as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Purchase {
    pub purchase_id: PurchaseId,
    pub package_id: PackageId,
    pub display_name: String,
    /// The credits it grants (the package's at the time of purchase).
    pub credits: Credits,
    /// What is charged, in the currency's smallest unit.
    pub amount: i64,
    pub currency: Currency,
    pub status: PurchaseStatus,
    pub source: PurchaseSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent_id: Option<String>,
    /// Stripe's code for a failed payment (`card_declined`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    /// The ledger entry that credited it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// The payment a purchase started, as the client needs it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Payment {
    /// The PaymentIntent's status: `requires_payment_method` (confirm it with Stripe.js and the client
    /// secret), `requires_action` (3-D Secure), `processing`, `succeeded`, …
    pub status: String,
    pub payment_intent_id: String,
    /// Present while the client has something to do with Stripe.js.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// What `POST /api/credits/purchase` answers.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Started {
    pub purchase_id: PurchaseId,
    pub credits: Credits,
    pub amount: i64,
    pub currency: Currency,
    pub payment: Payment,
}

/// Why a purchase could not start.
#[derive(Debug, thiserror::Error)]
pub enum PurchaseError {
    #[error("no credit package {0}")]
    UnknownPackage(PackageId),
    #[error("the package {0} is not on sale now")]
    NotOnSale(PackageId),
    #[error("{0}")]
    Invalid(String),
    /// The payment was refused at once (a declined card): the purchase is recorded as failed.
    #[error("the payment was refused: {0}")]
    Refused(#[source] StripeError),
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tenants::TenantError> for PurchaseError {
    fn from(e: tenants::TenantError) -> Self {
        Self::Billing(e.into())
    }
}

/// Reads one purchase of a tenant.
pub async fn get(
    store: &dyn crate::store::ItemStore,
    tenant: &TenantId,
    purchase: &PurchaseId,
) -> Result<Option<Purchase>, StoreError> {
    store
        .get(&keys::credit_purchase(tenant, purchase))
        .await?
        .map(|item| item.to_record())
        .transpose()
}

/// Whether a PaymentIntent status leaves something for the client to do with Stripe.js.
fn needs_client(status: &str) -> bool {
    matches!(
        status,
        "requires_payment_method" | "requires_action" | "requires_confirmation"
    )
}

/// Starts a purchase of `package` for `tenant`: records it as pending, then creates its PaymentIntent.
///
/// Without a payment method the intent waits for the client (the Payment Element confirms it with the
/// client secret); with one (a card the client collected, or the saved card of an auto top-up,
/// `off_session`) it is confirmed at once. Either way the credits arrive with the webhook.
pub async fn start(
    billing: &Billing,
    tenant_id: &TenantId,
    package_id: &PackageId,
    payment_method: Option<&str>,
    source: PurchaseSource,
) -> Result<Started, PurchaseError> {
    let platform = billing.platform();
    let store = platform.store.as_ref();
    let now = platform.clock.now();
    if let Some(pm) = payment_method
        && (!pm.starts_with("pm_") || pm.len() > 255)
    {
        return Err(PurchaseError::Invalid(
            "payment_method must be a Stripe payment method id (pm_…)".into(),
        ));
    }
    let package = packages::get(store, package_id)
        .await?
        .ok_or_else(|| PurchaseError::UnknownPackage(package_id.clone()))?;
    if !package.on_sale(now) {
        return Err(PurchaseError::NotOnSale(package_id.clone()));
    }
    if !billing.stripe().is_configured() {
        return Err(BillingError::NotConfigured.into());
    }
    let tenant = tenants::get_tenant(store, tenant_id).await?;
    let customer = billing.customer(&tenant).await?;
    let purchase = Purchase {
        purchase_id: PurchaseId::generate(platform.ids.as_ref()),
        package_id: package.package_id.clone(),
        display_name: package.display_name.clone(),
        credits: package.credits,
        amount: package.amount,
        currency: package.currency,
        status: PurchaseStatus::Pending,
        source,
        payment_intent_id: None,
        failure_code: None,
        transaction_id: None,
        created_at: now,
    };
    let key = keys::credit_purchase(tenant_id, &purchase.purchase_id);
    store
        .put(
            Item::from_record(key.clone(), &purchase)?,
            Condition::IfAbsent,
        )
        .await?;

    let mut form = Form::new()
        .set("amount", package.amount.to_string())
        .set("currency", package.currency.stripe_code())
        .set("customer", customer)
        .set("payment_method_types[0]", "card")
        .set("metadata[tenant_id]", tenant_id.as_str())
        .set("metadata[purchase_id]", purchase.purchase_id.as_str())
        .set("metadata[package_id]", package.package_id.as_str())
        .set("metadata[credits]", package.credits.0.to_string());
    if let Some(pm) = payment_method {
        form = form.set("payment_method", pm).set("confirm", "true");
        if source == PurchaseSource::AutoTopUp {
            form = form.set("off_session", "true");
        }
    }
    let intent = match billing
        .stripe()
        .post("/v1/payment_intents", &form, purchase.purchase_id.as_str())
        .await
    {
        Ok(intent) => intent,
        Err(e) => {
            // Refused at once, or Stripe unreachable: the purchase failed. Should the intent exist
            // after all and later succeed, its webhook still grants it (the grant does not need the
            // purchase to be pending).
            let code = match &e {
                StripeError::Api { code, .. } => code.clone(),
                _ => "stripe_unavailable".into(),
            };
            fail(platform, tenant_id, &purchase.purchase_id, None, &code).await?;
            return Err(if e.is_client_error() {
                PurchaseError::Refused(e)
            } else {
                BillingError::Stripe(e).into()
            });
        }
    };
    let text = |field: &str| {
        intent
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (Some(intent_id), Some(status)) = (text("id"), text("status")) else {
        return Err(BillingError::Stripe(StripeError::Decode {
            what: "a payment intent",
            problem: "no id or status".into(),
        })
        .into());
    };
    store
        .update(
            Update::new(key)
                .set("payment_intent_id", intent_id.clone())
                .when(Condition::IfExists),
        )
        .await?;
    let client_secret = text("client_secret").filter(|_| needs_client(&status));
    tracing::info!(tenant = %tenant_id, purchase = %purchase.purchase_id, payment_intent = intent_id, status, ?source, "credit purchase started");
    Ok(Started {
        purchase_id: purchase.purchase_id,
        credits: package.credits,
        amount: package.amount,
        currency: package.currency,
        payment: Payment {
            status,
            payment_intent_id: intent_id,
            client_secret,
        },
    })
}

/// A PaymentIntent of a credit purchase, as Stripe's webhook describes it.
#[derive(Debug, Clone)]
pub struct IntentEvent<'a> {
    pub payment_intent_id: &'a str,
    pub purchase_id: PurchaseId,
    pub amount: Option<i64>,
    pub currency: Option<&'a str>,
    /// `last_payment_error.code` of a failed intent.
    pub failure_code: Option<&'a str>,
}

impl<'a> IntentEvent<'a> {
    /// The purchase a PaymentIntent object belongs to, if Kotoba made it for one.
    pub fn of(object: &'a Value) -> Option<Self> {
        let purchase = object
            .get("metadata")
            .and_then(|m| m.get("purchase_id"))
            .and_then(Value::as_str)?;
        Some(Self {
            payment_intent_id: object.get("id").and_then(Value::as_str)?,
            purchase_id: PurchaseId::parse(purchase).ok()?,
            amount: object.get("amount").and_then(Value::as_i64),
            currency: object.get("currency").and_then(Value::as_str),
            failure_code: object
                .get("last_payment_error")
                .and_then(|e| e.get("code").or_else(|| e.get("decline_code")))
                .and_then(Value::as_str),
        })
    }
}

/// What a payment webhook did to a purchase.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Credits granted: the ledger entry.
    Granted(LedgerEntry),
    /// Marked failed now.
    Failed,
    /// Already done (a redelivery, or another worker got there first).
    AlreadyDone,
    /// No such purchase of this tenant, or the intent does not match it: nothing granted.
    Mismatch(String),
}

/// `payment_intent.succeeded` for a purchase: grants its credits as paid credits, once per payment
/// intent (the marker is written in the ledger transaction), and marks the purchase succeeded.
pub async fn on_succeeded(
    platform: &Platform,
    tenant: &TenantId,
    intent: &IntentEvent<'_>,
) -> Result<Outcome, CreditError> {
    let store = platform.store.as_ref();
    let Some(purchase) = get(store, tenant, &intent.purchase_id).await? else {
        return Ok(Outcome::Mismatch(format!(
            "no purchase {} for tenant {tenant}",
            intent.purchase_id
        )));
    };
    let matches = intent.amount == Some(purchase.amount)
        && intent.currency == Some(purchase.currency.stripe_code())
        && purchase
            .payment_intent_id
            .as_deref()
            .is_none_or(|id| id == intent.payment_intent_id);
    if !matches {
        return Ok(Outcome::Mismatch(format!(
            "payment intent {} ({:?} {:?}) does not match purchase {} ({} {})",
            intent.payment_intent_id,
            intent.amount,
            intent.currency,
            purchase.purchase_id,
            purchase.amount,
            purchase.currency.stripe_code()
        )));
    }
    let marker = Item::new(keys::purchase_paid(tenant, intent.payment_intent_id))
        .with("purchase_id", purchase.purchase_id.as_str());
    let mark_purchase = Update::new(keys::credit_purchase(tenant, &purchase.purchase_id))
        .set("status", PurchaseStatus::Succeeded.as_str())
        .set("payment_intent_id", intent.payment_intent_id)
        .remove("failure_code")
        .when(Condition::IfExists);
    let credits = purchase.credits.0;
    let granted = account::apply(store, tenant, platform.clock.now(), |_| {
        Ok(Some(Change {
            kind: TransactionType::Purchase,
            granted: 0,
            paid: credits,
            available: credits,
            function: None,
            reference_id: Some(intent.payment_intent_id.to_string()),
            request_id: crate::http::current_request_id(),
            reason: Some(format!(
                "{} ({})",
                purchase.display_name, purchase.purchase_id
            )),
            also: vec![
                Write::Put(marker.clone(), Condition::IfAbsent),
                Write::Update(mark_purchase.clone()),
            ],
            monthly_free_credits: None,
            refused: |_, _| CreditError::Invalid("already granted".into()),
        }))
    })
    .await;
    let entry = match granted {
        Ok(Some(entry)) => entry,
        Ok(None) => return Ok(Outcome::AlreadyDone),
        // The marker exists: this payment intent was credited before.
        Err(CreditError::Invalid(_)) => return Ok(Outcome::AlreadyDone),
        Err(e) => return Err(e),
    };
    // Record the ledger entry on the purchase (a read convenience; the marker is the guarantee).
    if let Err(e) = store
        .update(
            Update::new(keys::credit_purchase(tenant, &purchase.purchase_id))
                .set("transaction_id", entry.transaction_id.clone())
                .when(Condition::IfExists),
        )
        .await
    {
        tracing::warn!(error = %e, "could not note the ledger entry on the purchase");
    }
    tracing::info!(%tenant, purchase = %purchase.purchase_id, credits, balance_after = entry.balance_after.0, "credit purchase granted");
    let audit = crate::audit::Entry::new(
        tenant,
        &crate::audit::Context::system("stripe"),
        "credits.purchased",
        &purchase.purchase_id,
    )
    .created(serde_json::json!({
        "package_id": purchase.package_id,
        "credits": credits,
        "amount": purchase.amount,
        "currency": purchase.currency,
        "payment_intent_id": intent.payment_intent_id,
        "source": purchase.source,
        "balance_after": entry.balance_after,
    }));
    crate::audit::record_or_log(store, platform.ids.as_ref(), platform.clock.as_ref(), audit).await;
    crate::webhooks::emit(
        platform,
        tenant,
        crate::webhooks::Event::credits_purchased(
            platform.clock.now(),
            purchase.purchase_id.as_str(),
            credits,
            entry.balance_after.0,
        ),
    )
    .await;
    if purchase.source == PurchaseSource::AutoTopUp {
        super::auto_top_up::on_paid(platform, tenant).await?;
    }
    Ok(Outcome::Granted(entry))
}

/// `payment_intent.payment_failed` for a purchase: marks it failed (once) and raises the alert.
pub async fn on_failed(
    platform: &Platform,
    tenant: &TenantId,
    intent: &IntentEvent<'_>,
) -> Result<Outcome, CreditError> {
    let store = platform.store.as_ref();
    if get(store, tenant, &intent.purchase_id).await?.is_none() {
        return Ok(Outcome::Mismatch(format!(
            "no purchase {} for tenant {tenant}",
            intent.purchase_id
        )));
    }
    let failed = fail(
        platform,
        tenant,
        &intent.purchase_id,
        Some(intent.payment_intent_id),
        intent.failure_code.unwrap_or("payment_failed"),
    )
    .await?;
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::AlreadyDone
    })
}

/// Moves a pending purchase to failed, and on that move alone: the alert (log, audit, mail) and, for an
/// auto top-up, its failure count. Returns whether this call made the move.
async fn fail(
    platform: &Platform,
    tenant: &TenantId,
    purchase_id: &PurchaseId,
    payment_intent: Option<&str>,
    code: &str,
) -> Result<bool, StoreError> {
    let store = platform.store.as_ref();
    let mut update = Update::new(keys::credit_purchase(tenant, purchase_id))
        .set("status", PurchaseStatus::Failed.as_str())
        .set("failure_code", code)
        .when(Condition::AttributeEquals(
            "status".into(),
            PurchaseStatus::Pending.as_str().into(),
        ));
    if let Some(intent) = payment_intent {
        update = update.set("payment_intent_id", intent);
    }
    let purchase: Purchase = match store.update(update).await {
        Ok(item) => item.to_record()?,
        Err(StoreError::ConditionFailed) => return Ok(false),
        Err(e) => return Err(e),
    };
    tracing::warn!(%tenant, purchase = %purchase_id, payment_intent, code, source = ?purchase.source, alert = true, "credit purchase failed");
    let audit = crate::audit::Entry::new(
        tenant,
        &crate::audit::Context::system("stripe"),
        "credits.purchase_failed",
        purchase_id,
    )
    .created(serde_json::json!({
        "package_id": purchase.package_id,
        "credits": purchase.credits,
        "amount": purchase.amount,
        "currency": purchase.currency,
        "payment_intent_id": payment_intent,
        "failure_code": code,
        "source": purchase.source,
    }));
    crate::audit::record_or_log(store, platform.ids.as_ref(), platform.clock.as_ref(), audit).await;
    if purchase.source == PurchaseSource::AutoTopUp {
        super::auto_top_up::on_failed(platform, tenant, &purchase, code).await?;
    }
    Ok(true)
}
