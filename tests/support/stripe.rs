//! Stripe's side of billing: localstripe (the stateful fake Stripe that `make test` starts through
//! `infra/dev/with-localstripe`), events signed the way Stripe signs them, and a small peer for the two
//! hosted-page endpoints localstripe lacks (Checkout and Billing Portal sessions).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

/// Any `sk_test_…` key works against localstripe.
pub const TEST_SECRET_KEY: &str = "sk_test_kotoba_0123456789";

/// localstripe's base URL. `make test` (through `infra/dev/with-localstripe`) sets it.
pub fn base() -> String {
    std::env::var("KOTOBA_TEST_STRIPE_BASE").unwrap_or_else(|_| {
        panic!(
            "KOTOBA_TEST_STRIPE_BASE is not set: run the billing tests through `make test` or \
             `infra/dev/with-localstripe cargo test …`, which start localstripe"
        )
    })
}

/// A client of localstripe's API, as a test (not Kotoba) uses it to set the scene.
pub struct LocalStripe {
    pub base: String,
    client: reqwest::Client,
}

impl Default for LocalStripe {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalStripe {
    pub fn new() -> Self {
        Self {
            base: base(),
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Value {
        let response = request
            .bearer_auth(TEST_SECRET_KEY)
            .send()
            .await
            .expect("localstripe answers");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "localstripe said {status}: {body}");
        body
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        self.send(form_post(
            &self.client,
            &format!("{}{path}", self.base),
            form,
        ))
        .await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn delete(&self, path: &str) -> Value {
        self.send(self.client.delete(format!("{}{path}", self.base)))
            .await
    }

    /// A monthly plan (localstripe's stand-in for a price) with a unique id; returns the id.
    pub async fn plan(&self, name: &str, amount_yen: u32) -> String {
        let id = crate::unique_name(&format!("kotoba-{name}"));
        self.post(
            "/v1/plans",
            &[
                ("id", id.as_str()),
                ("amount", &amount_yen.to_string()),
                ("currency", "jpy"),
                ("interval", "month"),
                ("product[name]", name),
            ],
        )
        .await;
        id
    }

    /// A card payment method (4242… succeeds; 4000000000000002 is declined when attached).
    pub async fn card(&self, number: &str) -> String {
        let pm = self
            .post(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2034"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        pm["id"].as_str().expect("payment method id").to_string()
    }

    /// Sends every event localstripe makes from now on to `url`, signed with `secret`.
    pub async fn register_webhook(&self, url: &str, secret: &str) {
        let name = crate::unique_name("hook");
        let response = form_post(
            &self.client,
            &format!("{}/_config/webhooks/{name}", self.base),
            &[("url", url), ("secret", secret)],
        )
        .send()
        .await
        .expect("localstripe answers");
        assert!(response.status().is_success(), "{}", response.status());
    }
}

fn form_post(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
}

/// `Stripe-Signature` for `body` at `timestamp`, computed here independently of Kotoba (HMAC-SHA256 over
/// "{t}.{body}", keyed by the secret's UTF-8 bytes); `stripe_library_accepts` checks it against Stripe's
/// own Python library.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Whether the official `stripe` Python library's `WebhookSignature.verify_header` accepts the header.
pub async fn stripe_library_accepts(secret: &str, body: &str, header: &str) -> bool {
    let script = r#"
import sys, stripe
body, header, secret = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    stripe.WebhookSignature.verify_header(body, header, secret, tolerance=300)
    print("ok")
except stripe.SignatureVerificationError as e:
    print("refused:", e)
"#;
    let out = tokio::process::Command::new(crate::twilio::python())
        .args(["-c", script, body, header, secret])
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim() == "ok"
}

/// An event as Stripe sends it.
pub fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    json!({
        "id": id,
        "object": "event",
        "type": kind,
        "created": created,
        "livemode": false,
        "api_version": "2024-06-20",
        "data": { "object": object },
    })
    .to_string()
}

/// A subscription object with the fields Kotoba reads.
pub fn subscription(
    id: &str,
    customer: &str,
    tenant: &str,
    status: &str,
    price: &str,
    period_end: i64,
) -> Value {
    json!({
        "id": id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": false,
        "current_period_end": period_end,
        "trial_end": null,
        "metadata": { "tenant_id": tenant },
        "items": { "object": "list", "data": [ { "price": { "id": price } } ] },
    })
}

pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

/// What the hosted-pages peer saw: (path, idempotency key, form).
pub type Seen = Arc<Mutex<Vec<(String, String, Vec<(String, String)>)>>>;

/// A peer for `POST /v1/customers`, `/v1/checkout/sessions` and `/v1/billing_portal/sessions`, which
/// localstripe does not implement; answers as Stripe does and records every request.
pub async fn hosted_pages_peer() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = |seen: Seen, path: &'static str, answer: fn(&[(String, String)]) -> Value| {
        move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let reply = answer(&form);
                seen.lock().unwrap().push((path.to_string(), key, form));
                axum::Json(reply)
            }
        }
    };
    let app = Router::new()
        .route(
            "/v1/customers",
            post(record(
                seen.clone(),
                "/v1/customers",
                |_| json!({"id": "cus_hosted_1", "object": "customer"}),
            )),
        )
        .route(
            "/v1/checkout/sessions",
            post(record(seen.clone(), "/v1/checkout/sessions", |_| {
                json!({"id": "cs_test_1", "object": "checkout.session",
                       "url": "https://checkout.stripe.com/c/pay/cs_test_1"})
            })),
        )
        .route(
            "/v1/billing_portal/sessions",
            post(record(seen.clone(), "/v1/billing_portal/sessions", |_| {
                json!({"id": "bps_1", "object": "billing_portal.session",
                       "url": "https://billing.stripe.com/p/session/bps_1"})
            })),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}
