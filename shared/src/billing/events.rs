//! Stripe events as Kotoba reads them: the envelope, and the few fields of each object it acts on.
//! Parsing is lenient (Stripe adds fields all the time) but the envelope must be whole.

use serde::Deserialize;
use serde_json::Value;

/// `{id, type, created, data: {object}}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct StripeEvent {
    #[schema(pattern = "^evt_[A-Za-z0-9_]+$", max_length = 255)]
    pub id: String,
    /// The event type. Kotoba acts on `checkout.session.completed`, `customer.subscription.*`,
    /// `invoice.paid`, `invoice.payment_succeeded`, `invoice.payment_failed` and
    /// `payment_intent.*`; others are acknowledged and ignored.
    #[serde(rename = "type")]
    #[schema(examples("customer.subscription.updated", "invoice.payment_failed"))]
    pub kind: String,
    /// Unix seconds: Stripe's clock when the event happened (events are not delivered in order).
    pub created: i64,
    pub data: EventData,
    #[serde(default)]
    pub livemode: bool,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct EventData {
    /// The object the event is about (a subscription, invoice, Checkout session, payment intent).
    #[schema(value_type = Object)]
    pub object: Value,
}

impl StripeEvent {
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let event: StripeEvent =
            serde_json::from_slice(body).map_err(|e| format!("not a Stripe event: {e}"))?;
        let id_ok = event.id.starts_with("evt_")
            && event.id.len() <= 255
            && event
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !id_ok {
            return Err("the event id is not a Stripe event id".into());
        }
        if !event.data.object.is_object() {
            return Err("the event's data.object is not an object".into());
        }
        Ok(event)
    }

    fn str_field(&self, name: &str) -> Option<&str> {
        self.data.object.get(name).and_then(Value::as_str)
    }

    /// The object's `customer` (an id, or an expanded object's id).
    pub fn customer(&self) -> Option<&str> {
        match self.data.object.get("customer")? {
            Value::String(id) => Some(id),
            Value::Object(o) => o.get("id").and_then(Value::as_str),
            _ => None,
        }
    }

    /// `metadata.tenant_id`, which every object Kotoba creates carries.
    pub fn metadata_tenant(&self) -> Option<&str> {
        self.data
            .object
            .get("metadata")
            .and_then(|m| m.get("tenant_id"))
            .and_then(Value::as_str)
    }

    pub fn client_reference_id(&self) -> Option<&str> {
        self.str_field("client_reference_id")
    }

    /// The subscription an invoice or checkout session belongs to.
    pub fn subscription(&self) -> Option<&str> {
        match self.data.object.get("subscription")? {
            Value::String(id) => Some(id),
            Value::Object(o) => o.get("id").and_then(Value::as_str),
            _ => None,
        }
    }

    pub fn object_id(&self) -> Option<&str> {
        self.str_field("id")
    }
}

/// The state of a subscription object that Kotoba keeps on the tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionSnapshot {
    pub id: String,
    pub customer: Option<String>,
    pub status: String,
    /// The first item's price id (or legacy plan id).
    pub price: Option<String>,
    pub current_period_end: Option<i64>,
    pub trial_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub metadata_tenant: Option<String>,
}

impl SubscriptionSnapshot {
    pub fn from_object(object: &Value) -> Result<Self, String> {
        let id = object
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| id.starts_with("sub_"))
            .ok_or("the subscription has no id")?
            .to_string();
        let status = object
            .get("status")
            .and_then(Value::as_str)
            .ok_or("the subscription has no status")?
            .to_string();
        let first_item = object
            .get("items")
            .and_then(|i| i.get("data"))
            .and_then(|d| d.get(0));
        let price = first_item.and_then(|item| {
            item.get("price")
                .and_then(|p| p.get("id"))
                .or_else(|| item.get("plan").and_then(|p| p.get("id")))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        // Newer API versions moved the period onto the items.
        let current_period_end = object
            .get("current_period_end")
            .and_then(Value::as_i64)
            .or_else(|| {
                first_item
                    .and_then(|i| i.get("current_period_end"))
                    .and_then(Value::as_i64)
            });
        let customer = match object.get("customer") {
            Some(Value::String(id)) => Some(id.clone()),
            Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        Ok(Self {
            id,
            customer,
            status,
            price,
            current_period_end,
            trial_end: object.get("trial_end").and_then(Value::as_i64),
            cancel_at_period_end: object
                .get("cancel_at_period_end")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            metadata_tenant: object
                .get("metadata")
                .and_then(|m| m.get("tenant_id"))
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn envelopes_must_be_whole() {
        assert!(StripeEvent::parse(b"{}").is_err());
        assert!(StripeEvent::parse(b"not json").is_err());
        let bad_id = json!({"id": "evt_../x", "type": "x", "created": 1, "data": {"object": {}}});
        assert!(StripeEvent::parse(bad_id.to_string().as_bytes()).is_err());
        let not_object = json!({"id": "evt_1", "type": "x", "created": 1, "data": {"object": 3}});
        assert!(StripeEvent::parse(not_object.to_string().as_bytes()).is_err());
        let ok = json!({"id": "evt_1", "type": "invoice.paid", "created": 5, "extra": true,
            "data": {"object": {"customer": {"id": "cus_1"}, "subscription": "sub_1"}}});
        let e = StripeEvent::parse(ok.to_string().as_bytes()).unwrap();
        assert_eq!(
            (e.customer(), e.subscription(), e.created),
            (Some("cus_1"), Some("sub_1"), 5)
        );
    }

    #[test]
    fn subscriptions_read_price_or_legacy_plan_and_either_period_place() {
        let modern = json!({"id": "sub_1", "status": "active", "customer": "cus_1",
            "items": {"data": [{"price": {"id": "price_pro"}, "current_period_end": 1800000000}]},
            "metadata": {"tenant_id": "ten_1"}});
        let s = SubscriptionSnapshot::from_object(&modern).unwrap();
        assert_eq!(s.price.as_deref(), Some("price_pro"));
        assert_eq!(s.current_period_end, Some(1_800_000_000));
        assert_eq!(s.metadata_tenant.as_deref(), Some("ten_1"));
        let legacy = json!({"id": "sub_2", "status": "trialing", "current_period_end": 5, "trial_end": 9,
            "cancel_at_period_end": true, "items": {"data": [{"plan": {"id": "starter"}}]}});
        let s = SubscriptionSnapshot::from_object(&legacy).unwrap();
        assert_eq!(
            (s.price.as_deref(), s.current_period_end, s.trial_end),
            (Some("starter"), Some(5), Some(9))
        );
        assert!(s.cancel_at_period_end);
        assert!(SubscriptionSnapshot::from_object(&json!({"status": "active"})).is_err());
    }
}
