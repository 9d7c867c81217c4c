//! A small client for the parts of the Stripe API Kotoba uses: customers, payment methods,
//! subscriptions, Checkout and Billing Portal sessions.
//!
//! Stripe takes form-encoded bodies with bracketed keys (`items[0][plan]=…`) and a secret key as a bearer
//! token. Every POST carries an `Idempotency-Key`, and a retry (on 429, 5xx or a broken connection)
//! sends the same key, so Stripe performs the operation at most once.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::settings::Secret;

/// Stripe's own API; tests point `STRIPE_API_BASE` at a local peer.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// How a call to Stripe failed.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// No `STRIPE_SECRET_KEY`: billing is switched off in this deployment.
    #[error("Stripe is not configured (STRIPE_SECRET_KEY is unset)")]
    NotConfigured,
    /// Stripe answered with an error object (a declined card, an unknown id, a bad parameter …).
    #[error("Stripe refused the request ({status}): {code}: {message}")]
    Api {
        status: u16,
        /// Stripe's `error.code` (or `error.type` when there is no code), e.g. `card_declined`.
        code: String,
        message: String,
        /// Stripe's `error.decline_code`, for card errors.
        decline_code: Option<String>,
    },
    /// The request did not get an answer (after the retries).
    #[error("Stripe could not be reached: {0}")]
    Transport(#[source] reqwest::Error),
    /// Stripe answered 2xx with something that is not the object we asked for.
    #[error("Stripe's answer to {what} did not parse: {problem}")]
    Decode { what: &'static str, problem: String },
}

impl StripeError {
    /// Whether the caller's input (a card, a plan, an id) is what Stripe refused, as opposed to Stripe or
    /// the network failing.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::Api { status, .. } if (400..500).contains(status) && *status != 429)
    }
}

/// Form parameters in Stripe's bracket notation, in order.
#[derive(Debug, Default, Clone)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.push((name.into(), value.into()));
        self
    }

    pub fn set_opt(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.set(name, v),
            None => self,
        }
    }

    fn encode(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            s.append_pair(k, v);
        }
        s.finish()
    }
}

/// The client. Cheap to clone; built once per process.
#[derive(Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base: Url,
    key: Option<Secret>,
    /// Attempts per request (the first plus retries).
    attempts: u32,
    backoff: Duration,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("base", &self.base.as_str())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The fields of a Stripe customer Kotoba reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Customer {
    pub id: String,
}

/// A Checkout or Billing Portal session: where to send the browser.
#[derive(Debug, Clone, Deserialize)]
pub struct HostedSession {
    pub id: String,
    pub url: String,
}

/// What to do when a subscription's first payment cannot be completed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentBehavior {
    /// Stripe's recommended flow for the Payment Element: the subscription starts `incomplete` and the
    /// client confirms the first invoice's PaymentIntent with its client secret.
    DefaultIncomplete,
    /// The subscription is created even if the first payment fails (`incomplete`). Supported by the
    /// local Stripe peer, which lacks `default_incomplete`.
    AllowIncomplete,
}

impl PaymentBehavior {
    fn as_str(self) -> &'static str {
        match self {
            Self::DefaultIncomplete => "default_incomplete",
            Self::AllowIncomplete => "allow_incomplete",
        }
    }
}

impl StripeClient {
    pub fn new(base: Url, key: Option<Secret>) -> Self {
        let http = crate::http::sockets::client_builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a reqwest client with rustls builds");
        Self {
            http,
            base,
            key,
            attempts: 3,
            backoff: Duration::from_millis(250),
        }
    }

    /// Shorter waits between retries (tests).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Whether this client talks to Stripe itself (some parameters only Stripe's own API accepts).
    pub fn is_stripe_itself(&self) -> bool {
        self.base.host_str() == Some("api.stripe.com")
    }

    pub fn is_configured(&self) -> bool {
        self.key.is_some()
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}{path}"));
        url
    }

    /// POSTs a form; retries reuse `idempotency_key`.
    pub async fn post(
        &self,
        path: &str,
        form: &Form,
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        let body = form.encode();
        self.send(|| {
            self.http
                .post(self.url(path))
                .header("Idempotency-Key", idempotency_key)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.clone())
        })
        .await
    }

    pub async fn get(&self, path: &str) -> Result<Value, StripeError> {
        self.send(|| self.http.get(self.url(path))).await
    }

    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, StripeError> {
        let key = self.key.as_ref().ok_or(StripeError::NotConfigured)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.attempts;
            let outcome = build().bearer_auth(key.expose()).send().await;
            let response = match outcome {
                Ok(response) => response,
                Err(e) if !last && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                    tracing::warn!(attempt, error = %e, "Stripe unreachable; retrying");
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                    continue;
                }
                Err(e) => return Err(StripeError::Transport(e)),
            };
            let status = response.status();
            // Stripe says explicitly when a retry is (not) safe; otherwise 429 and 5xx are retried.
            let should_retry = match response
                .headers()
                .get("Stripe-Should-Retry")
                .and_then(|v| v.to_str().ok())
            {
                Some("true") => true,
                Some("false") => false,
                _ => status.as_u16() == 429 || status.is_server_error(),
            };
            let text = response.text().await.map_err(StripeError::Transport)?;
            if status.is_success() {
                return serde_json::from_str(&text).map_err(|e| StripeError::Decode {
                    what: "a request",
                    problem: e.to_string(),
                });
            }
            if should_retry && !last {
                tracing::warn!(attempt, status = status.as_u16(), "Stripe failed; retrying");
                tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                continue;
            }
            return Err(api_error(status.as_u16(), &text));
        }
    }

    /// A customer for a tenant, with the tenant id in its metadata (so events can always be matched).
    /// The idempotency key is per tenant: two concurrent first subscriptions make one customer.
    pub async fn create_customer(
        &self,
        tenant_id: &str,
        name: &str,
        email: Option<&str>,
    ) -> Result<Customer, StripeError> {
        let form = Form::new()
            .set("name", name)
            .set_opt("email", email)
            .set("metadata[tenant_id]", tenant_id);
        let value = self
            .post(
                "/v1/customers",
                &form,
                &format!("kotoba-customer-{tenant_id}"),
            )
            .await?;
        decode("a customer", value)
    }

    /// Attaches a payment method to a customer and makes it the default for invoices.
    pub async fn set_default_payment_method(
        &self,
        customer: &str,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<(), StripeError> {
        self.post(
            &format!(
                "/v1/payment_methods/{}/attach",
                path_segment(payment_method)?
            ),
            &Form::new().set("customer", customer),
            &format!("{idempotency_key}-attach"),
        )
        .await?;
        self.post(
            &format!("/v1/customers/{}", path_segment(customer)?),
            &Form::new().set("invoice_settings[default_payment_method]", payment_method),
            &format!("{idempotency_key}-default"),
        )
        .await?;
        Ok(())
    }

    /// A subscription to one price (sent as `items[0][plan]`, which both Stripe and its test peer
    /// accept for a price id), with the tenant id in its metadata. Returns the subscription object with
    /// its latest invoice's PaymentIntent expanded.
    pub async fn create_subscription(
        &self,
        customer: &str,
        price: &str,
        tenant_id: &str,
        behavior: PaymentBehavior,
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        let form = Form::new()
            .set("customer", customer)
            .set("items[0][plan]", price)
            .set("metadata[tenant_id]", tenant_id)
            .set("payment_behavior", behavior.as_str())
            .set("expand[0]", "latest_invoice.payment_intent");
        self.post("/v1/subscriptions", &form, idempotency_key).await
    }

    /// The subscription as Stripe has it now (events are not ordered; ties are settled by re-reading).
    pub async fn retrieve_subscription(&self, id: &str) -> Result<Value, StripeError> {
        self.get(&format!("/v1/subscriptions/{}", path_segment(id)?))
            .await
    }

    /// A hosted Checkout page for a subscription; the tenant id comes back as `client_reference_id`.
    pub async fn create_checkout_session(
        &self,
        customer: &str,
        price: &str,
        tenant_id: &str,
        success_url: &str,
        cancel_url: &str,
        idempotency_key: &str,
    ) -> Result<HostedSession, StripeError> {
        let form = Form::new()
            .set("mode", "subscription")
            .set("customer", customer)
            .set("client_reference_id", tenant_id)
            .set("line_items[0][price]", price)
            .set("line_items[0][quantity]", "1")
            .set("subscription_data[metadata][tenant_id]", tenant_id)
            .set("success_url", success_url)
            .set("cancel_url", cancel_url);
        let value = self
            .post("/v1/checkout/sessions", &form, idempotency_key)
            .await?;
        decode("a Checkout session", value)
    }

    /// A Billing Portal session for a customer.
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
        idempotency_key: &str,
    ) -> Result<HostedSession, StripeError> {
        let form = Form::new()
            .set("customer", customer)
            .set("return_url", return_url);
        let value = self
            .post("/v1/billing_portal/sessions", &form, idempotency_key)
            .await?;
        decode("a Billing Portal session", value)
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    value: Value,
) -> Result<T, StripeError> {
    serde_json::from_value(value).map_err(|e| StripeError::Decode {
        what,
        problem: e.to_string(),
    })
}

/// An id placed in a URL path must be one segment of safe characters (Stripe ids are `[A-Za-z0-9_]`).
fn path_segment(id: &str) -> Result<&str, StripeError> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(id)
    } else {
        Err(StripeError::Api {
            status: 400,
            code: "invalid_id".into(),
            message: "not a Stripe id".into(),
            decline_code: None,
        })
    }
}

fn api_error(status: u16, body: &str) -> StripeError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        code: Option<String>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        decline_code: Option<String>,
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(Envelope { error }) => StripeError::Api {
            status,
            code: error
                .code
                .or(error.kind)
                .unwrap_or_else(|| "stripe_error".into()),
            message: error.message.unwrap_or_default(),
            decline_code: error.decline_code,
        },
        // Never pass an unknown body on: it could be anything (an HTML error page, a proxy's text).
        Err(_) => StripeError::Api {
            status,
            code: "stripe_error".into(),
            message: format!("Stripe answered HTTP {status}"),
            decline_code: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;

    /// A peer that fails the first `failures` requests with 500, then answers a customer; it records
    /// each request's idempotency key, authorization and body.
    async fn flaky_peer(failures: usize) -> (Url, Arc<Mutex<Vec<(String, String, String)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = Router::new().route(
            "/v1/customers",
            post(move |headers: HeaderMap, body: String| {
                let log = log.clone();
                async move {
                    let mut log = log.lock().unwrap();
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    log.push((header("idempotency-key"), header("authorization"), body));
                    if log.len() <= failures {
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            r#"{"error":{"type":"api_error","message":"boom"}}"#.to_string(),
                        )
                    } else {
                        (
                            StatusCode::OK,
                            r#"{"id":"cus_123","object":"customer"}"#.to_string(),
                        )
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}").parse().unwrap(), seen)
    }

    fn client(base: Url) -> StripeClient {
        StripeClient::new(base, Some(Secret::new("sk_test_123")))
            .with_backoff(Duration::from_millis(1))
    }

    #[tokio::test]
    async fn retries_server_errors_with_the_same_idempotency_key() {
        let (base, seen) = flaky_peer(2).await;
        let customer = client(base)
            .create_customer("ten_1", "Hotel 東京", Some("billing@example.jp"))
            .await
            .unwrap();
        assert_eq!(customer.id, "cus_123");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(
            seen.iter().all(
                |(key, auth, _)| key == "kotoba-customer-ten_1" && auth == "Bearer sk_test_123"
            )
        );
        let form: Vec<(String, String)> = url::form_urlencoded::parse(seen[2].2.as_bytes())
            .into_owned()
            .collect();
        assert!(form.contains(&("metadata[tenant_id]".into(), "ten_1".into())));
        assert!(form.contains(&("name".into(), "Hotel 東京".into())));
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt_with_stripes_error() {
        let (base, seen) = flaky_peer(10).await;
        let err = client(base)
            .create_customer("ten_1", "x", None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StripeError::Api { status: 500, code, .. } if code == "api_error"),
            "{err:?}"
        );
        assert!(!err.is_client_error());
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn errors_keep_stripes_code_and_never_an_unknown_body() {
        let e = api_error(
            402,
            r#"{"error":{"code":"card_declined","decline_code":"insufficient_funds","message":"Your card was declined.","type":"card_error"}}"#,
        );
        assert!(
            matches!(&e, StripeError::Api { code, decline_code: Some(d), .. } if code == "card_declined" && d == "insufficient_funds")
        );
        assert!(e.is_client_error());
        let e = api_error(502, "<html>bad gateway secret=sk_live</html>");
        assert!(!e.to_string().contains("sk_live"));
    }

    #[test]
    fn keys_never_print_and_ids_are_single_segments() {
        let c = StripeClient::new(
            DEFAULT_API_BASE.parse().unwrap(),
            Some(Secret::new("sk_live_very_secret")),
        );
        assert!(!format!("{c:?}").contains("very_secret"));
        assert!(c.is_stripe_itself());
        assert!(path_segment("sub_1AbC").is_ok());
        for bad in ["", "../customers", "a/b", "x?y=1", "é"] {
            assert!(path_segment(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn unconfigured_clients_say_so() {
        let c = StripeClient::new(DEFAULT_API_BASE.parse().unwrap(), None);
        assert!(matches!(
            c.get("/v1/subscriptions/sub_1").await,
            Err(StripeError::NotConfigured)
        ));
    }
}
