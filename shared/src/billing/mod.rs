//! Billing on Stripe: subscriptions (Checkout, the Billing Portal, or a direct subscription for the
//! Payment Element), the signed webhook that keeps each tenant's subscription state, and the rule that
//! decides who may spend money ([`crate::tenants::Tenant::standing`]).
//!
//! A tenant created by the operator has no Stripe customer and keeps the status the operator sets;
//! once it has a customer, Stripe's events own its status and plan.

pub mod accounts;
pub mod events;
pub mod settings;
pub mod signature;
pub mod stripe;
pub mod webhook;

use std::sync::Arc;

use crate::Platform;
use crate::ids::TenantId;
use crate::store::StoreError;
use crate::tenants::{self, Plan, Tenant, TenantError};

pub use accounts::BillingView;
pub use settings::{BillingSettings, PlanPrices, Secret};
pub use stripe::{StripeClient, StripeError};
pub use webhook::{WebhookError, WebhookOutcome};

/// How a billing request failed.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// No `STRIPE_SECRET_KEY` in this deployment.
    #[error("billing is not available in this deployment")]
    NotConfigured,
    /// No `STRIPE_PUBLISHABLE_KEY`: Stripe.js cannot collect a new card here.
    #[error(
        "collecting a new card is not configured in this deployment (STRIPE_PUBLISHABLE_KEY); pay with the card saved with the subscription"
    )]
    NoPublishableKey,
    /// No Stripe price is configured for the plan.
    #[error("the {0} plan cannot be bought here (no Stripe price is configured for it)")]
    PlanNotSold(&'static str),
    /// The Billing Portal needs a Stripe customer, which the first subscription creates.
    #[error("there is no billing account yet: subscribe to a plan first")]
    NoCustomer,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// Crediting a purchase failed (Stripe retries the event).
    #[error("crediting a purchase: {0}")]
    Credits(#[source] crate::credits::CreditError),
}

impl From<StoreError> for BillingError {
    fn from(e: StoreError) -> Self {
        Self::Tenant(TenantError::Store(e))
    }
}

/// Handlers whose state is the billing service still authenticate through the platform.
impl axum::extract::FromRef<Billing> for Arc<Platform> {
    fn from_ref(billing: &Billing) -> Self {
        billing.platform.clone()
    }
}

/// The result of `POST /api/billing/subscribe`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Subscribed {
    pub subscription_id: String,
    pub status: String,
    /// Present when the first payment needs the customer (3-D Secure): confirm it with Stripe.js.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// The result of `POST /api/billing/card-setup`: what Stripe.js needs to collect a new card.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CardSetup {
    pub setup_intent_id: String,
    /// Confirmed in the browser with the card (`stripe.confirmCardSetup`); never stored by Kotoba.
    pub client_secret: String,
    /// The key Stripe.js is started with (`Stripe(publishable_key)`).
    pub publishable_key: String,
}

/// The billing service, built once per process.
#[derive(Debug, Clone)]
pub struct Billing {
    platform: Arc<Platform>,
    stripe: StripeClient,
}

impl Billing {
    pub fn new(platform: Arc<Platform>) -> Self {
        let settings = &platform.config.billing;
        let stripe = StripeClient::new(settings.api_base.clone(), settings.secret_key.clone());
        Self { platform, stripe }
    }

    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// The Stripe client (credit purchases create their PaymentIntents through it).
    pub fn stripe(&self) -> &StripeClient {
        &self.stripe
    }

    pub fn settings(&self) -> &BillingSettings {
        &self.platform.config.billing
    }

    pub async fn view(&self, tenant: &TenantId) -> Result<BillingView, BillingError> {
        let tenant = tenants::get_tenant(self.platform.store.as_ref(), tenant).await?;
        Ok(BillingView::of(&tenant, self.settings().past_due_grace))
    }

    fn price(&self, plan: Plan) -> Result<&str, BillingError> {
        if !self.stripe.is_configured() {
            return Err(BillingError::NotConfigured);
        }
        self.settings()
            .prices
            .price_of(plan)
            .ok_or(BillingError::PlanNotSold(plan.as_str()))
    }

    /// The tenant's Stripe customer, created (once, whatever the concurrency) on first use.
    pub(crate) async fn customer(&self, tenant: &Tenant) -> Result<String, BillingError> {
        if let Some(customer) = &tenant.stripe_customer_id {
            return Ok(customer.clone());
        }
        let name = String::from(tenant.name.clone());
        let customer = self
            .stripe
            .create_customer(
                tenant.tenant_id.as_str(),
                &name,
                tenant.billing_email.as_deref(),
            )
            .await?;
        if !accounts::link_customer(
            self.platform.store.as_ref(),
            &tenant.tenant_id,
            &customer.id,
        )
        .await?
        {
            return Err(BillingError::Invalid(
                "the Stripe customer belongs to another tenant".into(),
            ));
        }
        Ok(customer.id)
    }

    /// A hosted Checkout page that subscribes the tenant to `plan`.
    pub async fn checkout(
        &self,
        tenant: &TenantId,
        plan: Plan,
    ) -> Result<stripe::HostedSession, BillingError> {
        let price = self.price(plan)?.to_string();
        let tenant = tenants::get_tenant(self.platform.store.as_ref(), tenant).await?;
        let customer = self.customer(&tenant).await?;
        let return_url = self.settings().return_url.as_str();
        let success = format!("{return_url}?checkout=success&session_id={{CHECKOUT_SESSION_ID}}");
        let cancel = format!("{return_url}?checkout=canceled");
        let key = format!("kotoba-checkout-{}", self.platform.ids.secret_hex(12));
        Ok(self
            .stripe
            .create_checkout_session(
                &customer,
                &price,
                tenant.tenant_id.as_str(),
                &success,
                &cancel,
                &key,
            )
            .await?)
    }

    /// A Billing Portal session where the tenant manages cards, invoices and cancellation.
    pub async fn portal(&self, tenant: &TenantId) -> Result<stripe::HostedSession, BillingError> {
        if !self.stripe.is_configured() {
            return Err(BillingError::NotConfigured);
        }
        let tenant = tenants::get_tenant(self.platform.store.as_ref(), tenant).await?;
        let customer = tenant.stripe_customer_id.ok_or(BillingError::NoCustomer)?;
        let key = format!("kotoba-portal-{}", self.platform.ids.secret_hex(12));
        Ok(self
            .stripe
            .create_portal_session(&customer, self.settings().return_url.as_str(), &key)
            .await?)
    }

    /// A SetupIntent for a new card on the tenant's customer (created if it has none yet), for
    /// off-session use: the browser confirms it with the card, which Stripe then keeps on the customer,
    /// and pays with the payment method it yields (`POST /api/credits/purchase {payment_method}`).
    /// The card number only ever goes from the browser to Stripe.
    pub async fn card_setup(&self, tenant: &TenantId) -> Result<CardSetup, BillingError> {
        if !self.stripe.is_configured() {
            return Err(BillingError::NotConfigured);
        }
        let publishable_key = self
            .settings()
            .publishable_key
            .clone()
            .ok_or(BillingError::NoPublishableKey)?;
        let tenant = tenants::get_tenant(self.platform.store.as_ref(), tenant).await?;
        let customer = self.customer(&tenant).await?;
        let form = stripe::Form::new()
            .set("customer", customer)
            .set("usage", "off_session")
            .set("payment_method_types[0]", "card")
            .set("metadata[tenant_id]", tenant.tenant_id.as_str());
        // Every press of "add a card" is a new setup: the key only guards this request's retries.
        let key = format!("kotoba-card-setup-{}", self.platform.ids.secret_hex(12));
        let intent = self.stripe.post("/v1/setup_intents", &form, &key).await?;
        let field = |name: &str| {
            intent[name].as_str().map(str::to_string).ok_or_else(|| {
                BillingError::Stripe(StripeError::Decode {
                    what: "a setup intent",
                    problem: format!("no {name}"),
                })
            })
        };
        Ok(CardSetup {
            setup_intent_id: field("id")?,
            client_secret: field("client_secret")?,
            publishable_key,
        })
    }

    /// Subscribes directly with a payment method collected by the Payment Element. The subscription's
    /// state reaches the tenant through the webhook like every other change.
    pub async fn subscribe(
        &self,
        tenant: &TenantId,
        plan: Plan,
        payment_method: &str,
    ) -> Result<Subscribed, BillingError> {
        let price = self.price(plan)?.to_string();
        if !payment_method.starts_with("pm_") || payment_method.len() > 255 {
            return Err(BillingError::Invalid(
                "payment_method must be a Stripe payment method id (pm_…)".into(),
            ));
        }
        let tenant = tenants::get_tenant(self.platform.store.as_ref(), tenant).await?;
        let customer = self.customer(&tenant).await?;
        // The same tenant, plan and card within Stripe's idempotency window is one subscription.
        let key = format!(
            "kotoba-subscribe-{}-{}-{payment_method}",
            tenant.tenant_id,
            plan.as_str()
        );
        self.stripe
            .set_default_payment_method(&customer, payment_method, &key)
            .await?;
        let behavior = if self.stripe.is_stripe_itself() {
            stripe::PaymentBehavior::DefaultIncomplete
        } else {
            stripe::PaymentBehavior::AllowIncomplete
        };
        let subscription = self
            .stripe
            .create_subscription(&customer, &price, tenant.tenant_id.as_str(), behavior, &key)
            .await?;
        let snapshot = events::SubscriptionSnapshot::from_object(&subscription).map_err(|e| {
            BillingError::Stripe(StripeError::Decode {
                what: "a subscription",
                problem: e,
            })
        })?;
        let intent = subscription
            .get("latest_invoice")
            .and_then(|i| i.get("payment_intent"))
            .filter(|pi| pi.is_object());
        let needs_customer = intent
            .and_then(|pi| pi.get("status"))
            .and_then(serde_json::Value::as_str)
            .is_some_and(|s| {
                matches!(
                    s,
                    "requires_action" | "requires_confirmation" | "requires_payment_method"
                )
            });
        let client_secret = intent
            .filter(|_| needs_customer || snapshot.status == "incomplete")
            .and_then(|pi| pi.get("client_secret"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        Ok(Subscribed {
            subscription_id: snapshot.id,
            status: snapshot.status,
            client_secret,
        })
    }
}
