//! Billing configuration: the Stripe API, its secrets, which Stripe price is which plan, and the
//! grace period a failed payment gets.

use std::collections::HashMap;
use std::time::Duration;

use url::Url;

use crate::tenants::Plan;

pub use crate::config::Secret;

/// The Stripe price (or legacy plan) id of each plan, both ways.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanPrices {
    by_plan: HashMap<Plan, String>,
}

impl PlanPrices {
    pub fn new(pairs: impl IntoIterator<Item = (Plan, String)>) -> Self {
        Self {
            by_plan: pairs.into_iter().collect(),
        }
    }

    pub fn price_of(&self, plan: Plan) -> Option<&str> {
        self.by_plan.get(&plan).map(String::as_str)
    }

    /// The plan a Stripe price (id or lookup key) stands for.
    pub fn plan_of(&self, price: &str) -> Option<Plan> {
        self.by_plan
            .iter()
            .find(|(_, id)| id.as_str() == price)
            .map(|(plan, _)| *plan)
    }
}

/// Everything billing needs from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingSettings {
    /// `STRIPE_API_BASE`, default Stripe's own API.
    pub api_base: Url,
    /// `STRIPE_SECRET_KEY`: without it, billing routes answer 503 `billing_unavailable`.
    pub secret_key: Option<Secret>,
    /// `STRIPE_WEBHOOK_SECRET`: without it, the webhook refuses every delivery.
    pub webhook_secret: Option<Secret>,
    /// `STRIPE_PUBLISHABLE_KEY` (`pk_…`, public by design): Stripe.js in the console collects a new
    /// card with it. Without it, the console pays with the card saved with the subscription only.
    pub publishable_key: Option<String>,
    /// `STRIPE_PRICE_STARTER`, `STRIPE_PRICE_PRO`, `STRIPE_PRICE_ENTERPRISE`.
    pub prices: PlanPrices,
    /// Where Checkout and the Billing Portal send the browser back to (`KOTOBA_BILLING_RETURN_URL`,
    /// default `{KOTOBA_PUBLIC_URL}/console/billing`).
    pub return_url: Url,
    /// How long a `past_due` tenant keeps service while Stripe retries the card
    /// (`KOTOBA_PAST_DUE_GRACE_DAYS`, default 7).
    pub past_due_grace: Duration,
}

impl BillingSettings {
    /// Settings with no Stripe at all (unit tests, tools).
    pub fn disabled(public_url: &Url) -> Self {
        Self {
            api_base: super::stripe::DEFAULT_API_BASE
                .parse()
                .expect("literal URL"),
            secret_key: None,
            webhook_secret: None,
            publishable_key: None,
            prices: PlanPrices::default(),
            return_url: public_url
                .join("/console/billing")
                .unwrap_or_else(|_| public_url.clone()),
            past_due_grace: Duration::from_secs(7 * 86_400),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_map_both_ways_and_secrets_never_print() {
        let prices = PlanPrices::new([
            (Plan::Starter, "price_starter".to_string()),
            (Plan::Pro, "price_pro".to_string()),
        ]);
        assert_eq!(prices.price_of(Plan::Pro), Some("price_pro"));
        assert_eq!(prices.plan_of("price_starter"), Some(Plan::Starter));
        assert_eq!(prices.plan_of("price_gold"), None);
        assert_eq!(prices.price_of(Plan::Enterprise), None);
        let key = Secret::new("whsec_abc");
        assert!(!format!("{key:?}").contains("abc"));
    }
}
