//! Buying credits on localstripe: a purchase's PaymentIntent, credited only by Stripe's signed
//! `payment_intent.succeeded` and exactly once however often it comes; a declined card fails the
//! purchase with an alert and no credits; automatic top-up starts one payment when concurrent settles
//! cross the threshold, keeps to its monthly cap and switches itself off after three failures. After
//! every scenario the books balance (`check_books`).

use std::time::{Duration, Instant};

use kotoba_tests::peer::{ChatMode, ModelPeer};
use kotoba_tests::site::{TestSite, standard_site};
use kotoba_tests::stripe::{self, LocalStripe, TEST_SECRET_KEY};
use kotoba_tests::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

use shared::credits::ledger::check_books;
use shared::ids::TenantId;
use shared::store::keys;

struct Shop {
    app: TestApp,
    _peer: ModelPeer,
    _site: TestSite,
    secret: String,
    key: String,
    tenant_id: String,
    site_id: String,
    package_id: String,
}

const PUBLISHABLE_KEY: &str = "pk_test_kotoba_console";

/// A runner on localstripe (its signed webhooks registered to the runner), an embedding model (every
/// answer costs one credit), a starter tenant with a trained site, and a 100-credit package for ¥500.
async fn shop(backend: Backend) -> Shop {
    let ls = LocalStripe::new();
    let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let peer = ModelPeer::start(ChatMode::Echo).await;
    let mut vars = peer.vars(None, Some("text-embedding-3-small"));
    vars.extend([
        ("STRIPE_API_BASE".to_string(), ls.base.clone()),
        ("STRIPE_SECRET_KEY".to_string(), TEST_SECRET_KEY.to_string()),
        ("STRIPE_WEBHOOK_SECRET".to_string(), secret.clone()),
        (
            "STRIPE_PUBLISHABLE_KEY".to_string(),
            PUBLISHABLE_KEY.to_string(),
        ),
    ]);
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(backend, &extra).await;
    ls.register_webhook(&app.url("/api/webhooks/stripe"), &secret)
        .await;
    let site = TestSite::start().await;
    standard_site(&site);
    let (tenant_id, key) = app.create_tenant("starter").await;
    app.set_subscription(&tenant_id, "active").await;
    let site_id = app.create_site(&key, &["127.0.0.1"]).await["site_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = app.train(&key, &site_id, &site.url("/"), false).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let package = app
        .post(
            "/api/admin/credits/packages",
            &app.admin_key,
            json!({"display_name": "100 credits", "credits": 100, "price": 500, "currency": "JPY"}),
        )
        .await;
    assert_eq!(package.status, StatusCode::CREATED, "{:?}", package.body);
    Shop {
        package_id: package.body["package_id"].as_str().unwrap().to_string(),
        app,
        _peer: peer,
        _site: site,
        secret,
        key,
        tenant_id,
        site_id,
    }
}

impl Shop {
    fn tenant(&self) -> TenantId {
        TenantId::parse(&self.tenant_id).unwrap()
    }

    async fn books(&self) {
        check_books(self.app.platform.store.as_ref(), &self.tenant())
            .await
            .expect("the balance is the sum of the ledger");
    }

    async fn balance(&self) -> Value {
        let r = self.app.get("/api/credits/balance", &self.key).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body
    }

    /// Leaves exactly `credits` available (an operator adjustment).
    async fn leave(&self, credits: i64) {
        let available = self.balance().await["available"].as_i64().unwrap();
        if available != credits {
            let r = self
                .app
                .post(
                    &format!("/api/admin/tenants/{}/credits", self.tenant_id),
                    &self.app.admin_key,
                    json!({"credits": credits - available, "reason": "test: set the balance"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        }
    }

    /// Polls the balance until `done` holds (webhooks and top-ups arrive asynchronously), at most 120 s
    /// (a loaded machine runs the whole suite against one emulator).
    async fn wait_balance(&self, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let b = self.balance().await;
            if done(&b) {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "the balance never got there: {b}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await; // poll: inside a loop with a deadline
        }
    }

    /// The ledger's entries of one type, newest first.
    async fn ledger(&self, kind: &str) -> Vec<Value> {
        let r = self.app.get("/api/credits/transactions", &self.key).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == kind)
            .cloned()
            .collect()
    }

    async fn audit_actions(&self) -> Vec<String> {
        let r = self.app.get("/api/audit", &self.key).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Lets a failed top-up's hour of cool-down pass (removes the lock it leaves).
    async fn cool_down_passes(&self) {
        self.app
            .platform
            .store
            .delete(
                &keys::auto_top_up_lock(self.tenant()),
                shared::store::Condition::None,
            )
            .await
            .unwrap();
    }

    async fn put_auto_top_up(&self, body: Value) -> kotoba_tests::app::Reply {
        self.app
            .call(
                reqwest::Method::PUT,
                "/api/credits/auto-top-up",
                Some(&self.key),
                Some(body),
            )
            .await
    }

    /// The tenant's purchase records (as stored).
    async fn purchases(&self) -> Vec<Value> {
        let page = self
            .app
            .platform
            .store
            .query(
                shared::store::Query::partition(keys::credit_partition(self.tenant()))
                    .prefix("PURCHASE#")
                    .limit(100),
            )
            .await
            .unwrap();
        page.items.iter().map(|i| i.to_record().unwrap()).collect()
    }

    async fn purchase(&self, body: Value) -> kotoba_tests::app::Reply {
        self.app
            .post("/api/credits/purchase", &self.key, body)
            .await
    }

    /// Delivers a signed event as Stripe would.
    async fn deliver(&self, body: &str) -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let r = self
            .app
            .client
            .post(self.app.url("/api/webhooks/stripe"))
            .header("content-type", "application/json; charset=utf-8")
            .header("stripe-signature", stripe::sign(&self.secret, now, body))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn wait_purchase(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self
                .app
                .get(&format!("/api/credits/purchases/{id}"), &self.key)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            if r.body["status"] == status {
                return r.body;
            }
            assert!(
                Instant::now() < deadline,
                "purchase never {status}: {:?}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await; // poll: inside a loop with a deadline
        }
    }
}

async fn a_purchase_is_credited_once(backend: Backend) {
    let s = shop(backend).await;
    let ls = LocalStripe::new();
    s.leave(10).await;

    // Without a card: the intent waits for the Payment Element, with its client secret.
    let r = s.purchase(json!({"package_id": s.package_id})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["payment"]["status"], "requires_payment_method");
    assert!(
        r.body["payment"]["client_secret"]
            .as_str()
            .unwrap()
            .contains("_secret_")
    );
    let waiting = r.body["purchase_id"].as_str().unwrap().to_string();
    let intent = ls
        .get(&format!(
            "/v1/payment_intents/{}",
            r.body["payment"]["payment_intent_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(intent["amount"], 500);
    assert_eq!(intent["currency"], "jpy");
    assert_eq!(intent["metadata"]["purchase_id"], waiting.as_str());
    assert_eq!(intent["metadata"]["tenant_id"], s.tenant_id.as_str());

    // With a card that pays: charged at once; the credits come with the webhook, not before.
    let card = ls.card("4242424242424242").await;
    let r = s
        .purchase(json!({"package_id": s.package_id, "payment_method": card}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["payment"]["status"], "succeeded", "{:?}", r.body);
    assert!(r.body["payment"].get("client_secret").is_none());
    let purchase_id = r.body["purchase_id"].as_str().unwrap().to_string();
    let intent_id = r.body["payment"]["payment_intent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let paid = s.wait_balance(|b| b["paid"] == 100).await;
    assert_eq!(paid["balance"], 110, "{paid}");
    assert_eq!(paid["total_purchased"], 100, "{paid}");
    let purchase = s.wait_purchase(&purchase_id, "succeeded").await;
    assert_eq!(purchase["payment_intent_id"], intent_id.as_str());
    assert!(purchase["transaction_id"].is_string(), "{purchase}");

    // Stripe delivers the success again and again — as the same event and as new events for the same
    // intent: nothing more is credited.
    let object = ls.get(&format!("/v1/payment_intents/{intent_id}")).await;
    let same = stripe::event(
        &stripe::new_event_id(),
        "payment_intent.succeeded",
        time::OffsetDateTime::now_utc().unix_timestamp(),
        object.clone(),
    );
    for n in 0..20 {
        let body = if n % 2 == 0 {
            same.clone()
        } else {
            stripe::event(
                &stripe::new_event_id(),
                "payment_intent.succeeded",
                time::OffsetDateTime::now_utc().unix_timestamp(),
                object.clone(),
            )
        };
        let reply = s.deliver(&body).await;
        assert!(
            ["duplicate", "applied"].contains(&reply["outcome"].as_str().unwrap()),
            "{reply}"
        );
    }
    let after = s.balance().await;
    assert_eq!(
        (after["paid"].as_i64(), after["balance"].as_i64()),
        (Some(100), Some(110))
    );
    let purchases = s.ledger("purchase").await;
    assert_eq!(purchases.len(), 1, "{purchases:?}");
    assert_eq!(purchases[0]["credits"], 100);
    assert_eq!(purchases[0]["reference_id"], intent_id.as_str());
    assert!(
        s.audit_actions()
            .await
            .contains(&"credits.purchased".to_string())
    );

    // The purchase that waits for its card is still pending and credited nothing.
    let waiting = s
        .app
        .get(&format!("/api/credits/purchases/{waiting}"), &s.key)
        .await;
    assert_eq!(waiting.body["status"], "pending", "{:?}", waiting.body);
    s.books().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purchase_is_credited_once_by_its_webhook() {
    a_purchase_is_credited_once(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purchase_is_credited_once_by_its_webhook_on_aws_adapters() {
    a_purchase_is_credited_once(Backend::Aws).await;
}

/// A new card, as the console collects it: a SetupIntent on the tenant's customer, confirmed from the
/// browser exactly as Stripe.js does it (localstripe's Stripe.js: `confirmCardSetup` posts the card to
/// `/v1/setup_intents/{id}/confirm` with the publishable key and the client secret, never through
/// Kotoba), then a purchase paid with the payment method it yields.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_card_set_up_in_the_browser_pays_for_credits() {
    let s = shop(Backend::Embedded).await;
    let ls = LocalStripe::new();
    s.leave(10).await;
    let r = s
        .app
        .post("/api/billing/card-setup", &s.key, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["publishable_key"], PUBLISHABLE_KEY);
    let seti = r.body["setup_intent_id"].as_str().unwrap().to_string();
    let client_secret = r.body["client_secret"].as_str().unwrap().to_string();
    assert!(client_secret.starts_with(&format!("{seti}_secret_")));
    let intent = ls.get(&format!("/v1/setup_intents/{seti}")).await;
    assert_eq!(intent["usage"], "off_session");
    assert_eq!(intent["metadata"]["tenant_id"], s.tenant_id.as_str());
    let customer = intent["customer"].as_str().unwrap().to_string();

    // The browser's part: the card goes to Stripe with the publishable key only.
    let confirmed: Value = reqwest::Client::new()
        .post(format!("{}/v1/setup_intents/{seti}/confirm", ls.base))
        .body(
            json!({
                "key": PUBLISHABLE_KEY,
                "use_stripe_sdk": true,
                "client_secret": client_secret,
                "payment_method_data": {
                    "type": "card",
                    "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
                    "billing_details": {"address": {"postal_code": "150-0001"}}
                }
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
    let card = confirmed["payment_method"].as_str().unwrap().to_string();

    let r = s
        .purchase(json!({"package_id": s.package_id, "payment_method": card}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["payment"]["status"], "succeeded", "{:?}", r.body);
    let payment = ls
        .get(&format!(
            "/v1/payment_intents/{}",
            r.body["payment"]["payment_intent_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        payment["customer"],
        customer.as_str(),
        "the same customer pays"
    );
    let paid = s.wait_balance(|b| b["paid"] == 100).await;
    assert_eq!(paid["balance"], 110, "{paid}");

    // A second card set-up is a new SetupIntent on the same customer.
    let again = s
        .app
        .post("/api/billing/card-setup", &s.key, json!({}))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_ne!(again.body["setup_intent_id"], seti.as_str());
    let second = ls
        .get(&format!(
            "/v1/setup_intents/{}",
            again.body["setup_intent_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(second["customer"], customer.as_str());
    s.books().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_card_fails_the_purchase_with_an_alert_and_no_credits() {
    let s = shop(Backend::Embedded).await;
    let ls = LocalStripe::new();
    s.leave(10).await;
    // 4000000000000341 attaches, then every charge on it is declined.
    let card = ls.card("4000000000000341").await;
    let r = s
        .purchase(json!({"package_id": s.package_id, "payment_method": card}))
        .await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{:?}", r.body);
    assert_eq!(
        r.body["error"]["stripe_code"], "card_declined",
        "{:?}",
        r.body
    );
    // Stripe's payment_intent.payment_failed comes too; the purchase failed once, with one alert.
    let audit = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let actions = s.audit_actions().await;
            if actions.iter().any(|a| a == "credits.purchase_failed") {
                break actions;
            }
            assert!(Instant::now() < deadline, "no alert recorded: {actions:?}");
            tokio::time::sleep(Duration::from_millis(100)).await; // poll: inside a loop with a deadline
        }
    };
    assert_eq!(
        audit
            .iter()
            .filter(|a| *a == "credits.purchase_failed")
            .count(),
        1
    );
    let b = s.balance().await;
    assert_eq!(
        (b["paid"].as_i64(), b["balance"].as_i64()),
        (Some(0), Some(10))
    );
    assert!(s.ledger("purchase").await.is_empty());

    // Bad input: clear errors, nothing recorded.
    for (body, status) in [
        (json!({"package_id": "nope"}), StatusCode::BAD_REQUEST),
        (
            json!({"package_id": "pkg_00000000000000000000000000"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"package_id": s.package_id, "payment_method": "card_1"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"package": s.package_id}), StatusCode::BAD_REQUEST),
        // No card saved yet (no subscription, no top-up card), or both ways at once.
        (
            json!({"package_id": s.package_id, "saved_card": true}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"package_id": s.package_id, "saved_card": true, "payment_method": card}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = s.purchase(body.clone()).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        assert!(r.body["error"]["code"].is_string(), "{:?}", r.body);
    }
    // A viewer may read the balance but not buy.
    let viewer = s
        .app
        .post(
            "/api/keys",
            &s.key,
            json!({"role": "viewer", "name": "front desk"}),
        )
        .await;
    let viewer = viewer.body["api_key"].as_str().unwrap();
    let r = s
        .app
        .post(
            "/api/credits/purchase",
            viewer,
            json!({"package_id": s.package_id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    s.books().await;
}

/// A webhook receiver that keeps every event body it gets (answering 200).
struct Inbox {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Inbox {
    async fn start() -> Inbox {
        let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
        let seen = got.clone();
        let handler = move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                if let Ok(event) = serde_json::from_slice(&body) {
                    seen.lock().unwrap().push(event);
                }
                "thanks"
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hook", axum::routing::post(handler));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Inbox { url, got }
    }

    /// Polls until `n` events arrived (at most a minute); returns their types.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} events: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await; // poll: inside a loop with a deadline
        }
    }
}

/// Drains the balance with concurrent chats; returns how many were answered.
async fn chats(s: &Shop, n: usize) -> usize {
    s.app.chat_burst(&s.key, &s.site_id, n).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_top_up_starts_one_payment_keeps_its_cap_and_stops_after_three_failures() {
    auto_top_up_keeps_its_cap_and_stops_after_three_failures(Backend::Embedded).await;
}

/// On the AWS adapters every function is held to its role: the webhook and the workers release the
/// top-up lock (DeleteItem) and mail the tenant (ses:SendEmail) as their own roles allow.
#[tokio::test(flavor = "multi_thread")]
async fn auto_top_up_starts_one_payment_keeps_its_cap_and_stops_after_three_failures_on_aws_adapters()
 {
    auto_top_up_keeps_its_cap_and_stops_after_three_failures(Backend::Aws).await;
}

async fn auto_top_up_keeps_its_cap_and_stops_after_three_failures(backend: Backend) {
    let s = shop(backend).await;
    let ls = LocalStripe::new();
    let card = ls.card("4242424242424242").await;
    s.leave(60).await;
    let inbox = Inbox::start().await;
    let hook = s
        .app
        .post(
            "/api/webhooks",
            &s.key,
            json!({"url": inbox.url, "events": ["credits.low", "credits.purchased"]}),
        )
        .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{:?}", hook.body);

    // Bad settings are refused with the field named.
    for (body, field) in [
        (json!({"enabled": true, "threshold": 40}), "package_id"),
        (
            json!({"enabled": true, "threshold": 40, "package_id": s.package_id, "monthly_cap": 0}),
            "monthly_cap",
        ),
        (json!({"enabled": false, "threshold": -1}), "threshold"),
        (
            json!({"enabled": true, "threshold": 40, "package_id": s.package_id}),
            "payment_method",
        ),
    ] {
        let r = s.put_auto_top_up(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}: {:?}", r.body);
    }
    let r = s
        .put_auto_top_up(
            json!({"enabled": true, "threshold": 40, "package_id": s.package_id,
                                "monthly_cap": 2, "payment_method": card}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let shown = s.balance().await;
    assert_eq!(shown["auto_top_up"]["enabled"], true, "{shown}");
    assert_eq!(shown["low_balance_threshold"], 40, "{shown}");

    // 50 concurrent chats take 60 credits down through the threshold of 40: one payment starts.
    assert_eq!(chats(&s, 50).await, 50);
    let topped = s.wait_balance(|b| b["paid"] == 100).await;
    assert_eq!(topped["balance"], 110, "{topped}");
    // One purchase, so one PaymentIntent (each purchase creates exactly one), charged to the card.
    let purchases = s.purchases().await;
    assert_eq!(purchases.len(), 1, "exactly one top-up: {purchases:?}");
    assert_eq!(purchases[0]["source"], "auto_top_up");
    let intent = ls
        .get(&format!(
            "/v1/payment_intents/{}",
            purchases[0]["payment_intent_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(intent["payment_method"], card.as_str());
    assert_eq!(intent["status"], "succeeded");
    // The tenant's webhook heard of both: the balance crossing 40 (once, though 50 settles ended
    // below it), and the purchase.
    let events = inbox.wait_for(2).await;
    let low = events.iter().find(|e| e["type"] == "credits.low").unwrap();
    assert_eq!(low["data"]["threshold"], 40, "{low}");
    assert!(low["data"]["balance"].as_i64().unwrap() < 40, "{low}");
    let bought = events
        .iter()
        .find(|e| e["type"] == "credits.purchased")
        .unwrap();
    assert_eq!(
        bought["data"]["purchase_id"], purchases[0]["purchase_id"],
        "{bought}"
    );
    assert_eq!(bought["data"]["credits"], 100, "{bought}");
    assert_eq!(s.ledger("purchase").await.len(), 1);

    // Down through the threshold again (the operator takes the balance to just above it, a few chats
    // cross it): the second of the month's two.
    s.leave(42).await;
    assert_eq!(chats(&s, 5).await, 5);
    s.wait_balance(|b| b["total_purchased"] == 200).await;
    // And again: the cap of two holds, nothing more starts.
    s.leave(42).await;
    assert_eq!(chats(&s, 5).await, 5);
    // The month's count stopped at the cap and no claim was taken (the settle claims in its request).
    let store = s.app.platform.store.as_ref();
    let month = shared::credits::account::month_of(time::OffsetDateTime::now_utc());
    let count = store
        .get(&keys::auto_top_ups(s.tenant(), &month))
        .await
        .unwrap()
        .map_or(0, |item| item.count("count"));
    assert_eq!(count, 2, "the monthly cap");
    assert!(
        store
            .get(&keys::auto_top_up_lock(s.tenant()))
            .await
            .unwrap()
            .is_none(),
        "nothing in flight"
    );
    assert_eq!(s.purchases().await.len(), 2, "the monthly cap");
    assert_eq!(s.balance().await["total_purchased"], 200);
    s.books().await;

    // A card that is declined: each failure cools down for an hour (the test lets the hour pass by
    // removing the lock), and the third switches auto top-up off and tells the tenant.
    let declined = ls.card("4000000000000341").await;
    let r = s
        .put_auto_top_up(
            json!({"enabled": true, "threshold": 40, "package_id": s.package_id,
                                "monthly_cap": 10, "payment_method": declined}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for failure in 1..=3 {
        s.cool_down_passes().await;
        assert_eq!(chats(&s, 1).await, 1);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let b = s.balance().await;
            if b["auto_top_up"]["consecutive_failures"] == failure {
                assert_eq!(b["auto_top_up"]["enabled"], failure < 3, "{b}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "failure {failure} never counted: {b}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await; // poll: inside a loop with a deadline
        }
    }
    let b = s.balance().await;
    assert!(
        b["auto_top_up"]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("3 automatic top-ups failed"),
        "{b}"
    );
    assert!(
        s.audit_actions()
            .await
            .contains(&"credits.auto_top_up_disabled".to_string())
    );
    // A one-click purchase charges the saved card — the declined one now.
    let r = s
        .purchase(json!({"package_id": s.package_id, "saved_card": true}))
        .await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{:?}", r.body);
    assert_eq!(
        r.body["error"]["stripe_code"], "card_declined",
        "{:?}",
        r.body
    );
    // Switched off: draining further starts nothing.
    s.cool_down_passes().await;
    assert_eq!(chats(&s, 1).await, 1);
    assert_eq!(s.balance().await["auto_top_up"]["consecutive_failures"], 3);
    s.books().await;
    // Three crossings, two purchases: five events. A marker sent after all of them arrives sixth, so
    // no other event came.
    shared::webhooks::emit(
        &s.app.platform,
        &s.tenant(),
        shared::webhooks::Event::credits_low(time::OffsetDateTime::now_utc(), -1, -1),
    )
    .await;
    let events = inbox.wait_for(6).await;
    let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert_eq!(
        (count("credits.low"), count("credits.purchased")),
        (4, 2),
        "{events:?}"
    );
    assert_eq!(events.len(), 6, "{events:?}");
}
