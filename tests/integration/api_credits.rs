//! Prepaid credits through the local runner: every chat reserves its most and settles its actual cost
//! in credits, concurrent chats never take the balance below zero, the operator's bonuses and
//! adjustments, the balance and the ledger as a tenant reads them. After every scenario the books
//! balance: the balance is the sum of the ledger (`shared::credits::ledger::check_books`).

use kotoba_tests::peer::{ChatMode, ModelPeer};
use kotoba_tests::site::{TestSite, standard_site};
use kotoba_tests::{Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

use shared::credits::ledger::check_books;
use shared::ids::TenantId;

struct Funded {
    app: TestApp,
    _peer: ModelPeer,
    site: TestSite,
    key: String,
    tenant_id: String,
    site_id: String,
}

/// A runner with an embedding model (so every answer costs: its query embedding), a starter tenant
/// and its trained site.
async fn funded(backend: Backend) -> Funded {
    let peer = ModelPeer::start(ChatMode::Echo).await;
    let vars = peer.vars(None, Some("text-embedding-3-small"));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(backend, &extra).await;
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
    Funded {
        app,
        _peer: peer,
        site,
        key,
        tenant_id,
        site_id,
    }
}

impl Funded {
    async fn books(&self) {
        let tenant = TenantId::parse(&self.tenant_id).unwrap();
        check_books(self.app.platform.store.as_ref(), &tenant)
            .await
            .expect("the balance is the sum of the ledger");
    }

    async fn adjust(&self, credits: i64, reason: &str) -> kotoba_tests::app::Reply {
        self.app
            .post(
                &format!("/api/admin/tenants/{}/credits", self.tenant_id),
                &self.app.admin_key,
                json!({"credits": credits, "reason": reason}),
            )
            .await
    }

    async fn balance(&self) -> serde_json::Value {
        let r = self.app.get("/api/credits/balance", &self.key).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body
    }
}

async fn two_hundred_chats_against_credits_for_fifty(backend: Backend) {
    let t = funded(backend).await;
    let balance = t.balance().await;
    assert_eq!(balance["monthly_free_credits"], 1_000, "{balance}");
    // Each answer here costs one credit (its query embedding, rounded up): leave exactly 50.
    let left = balance["available"].as_i64().unwrap();
    let r = t.adjust(50 - left, "test: leave 50").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["type"], "adjustment");
    assert_eq!(r.body["balance_after"], 50);

    let (ok, refused) = t.app.chat_burst(&t.key, &t.site_id, 200).await;
    assert_eq!((ok, refused.len()), (50, 150));
    let error = &refused[0].body["error"];
    assert_eq!(error["code"], "credits_exhausted", "{error}");
    assert!(error["balance"].as_i64().is_some(), "{error}");
    assert!(
        error["purchase_hint"]
            .as_str()
            .unwrap()
            .contains("/api/credits/packages"),
        "{error}"
    );

    let balance = t.balance().await;
    assert_eq!(
        (balance["balance"].as_i64(), balance["available"].as_i64()),
        (Some(0), Some(0))
    );
    // The reads: this month's use, today's burn, chat on top, and no days left at that burn.
    let used = balance["used_this_month"].as_i64().unwrap();
    assert!(used >= 50, "{balance}");
    assert_eq!(balance["estimated_days_left"], 0, "{balance}");
    let daily = balance["usage"]["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 14);
    assert_eq!(
        daily[13]["credits"].as_i64(),
        Some(used),
        "today is the last day: {balance}"
    );
    let top = &balance["usage"]["top_functions"][0];
    assert_eq!(
        (top["function"].as_str(), top["count"].as_i64()),
        (Some("chat"), Some(50)),
        "{balance}"
    );
    t.books().await;
    // The ledger: 50 chat entries of one credit each, newest first, each naming its answer.
    let mut usage = 0;
    let mut cursor: Option<String> = None;
    let mut last_seq = u64::MAX;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/credits/transactions?cursor={c}"),
            None => "/api/credits/transactions".to_string(),
        };
        let page = t.app.get(&path, &t.key).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        for entry in page.body["transactions"].as_array().unwrap() {
            let id = entry["transaction_id"].as_str().unwrap();
            let seq: u64 = id.trim_start_matches("ctx_").parse().unwrap();
            assert!(seq < last_seq, "newest first");
            last_seq = seq;
            // Training paid for its embeddings before the adjustment; after it, only chats.
            if entry["type"] == "usage" && entry["function"] == "chat" {
                usage += 1;
                assert_eq!(entry["credits"], -1, "{entry}");
                assert!(
                    entry["reference_id"].as_str().unwrap().starts_with("msg_"),
                    "{entry}"
                );
            }
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(usage, 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_chats_against_credits_for_fifty_on_embedded_adapters() {
    two_hundred_chats_against_credits_for_fifty(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_chats_against_credits_for_fifty_on_aws_adapters() {
    two_hundred_chats_against_credits_for_fifty(Backend::Aws).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_grants_and_adjusts_never_below_zero() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (tenant_id, key) = app.create_tenant("pro").await;
    let path = format!("/api/admin/tenants/{tenant_id}/credits");
    let balance = app.get("/api/credits/balance", &key).await.body;
    assert_eq!(balance["monthly_free_credits"], 10_000, "{balance}");
    assert_eq!(balance["granted"], 10_000, "this month's grant at creation");
    assert_eq!(balance["paid"], 0);

    let bonus = app
        .post(
            &path,
            &app.admin_key,
            json!({"credits": 250, "reason": "launch bonus"}),
        )
        .await;
    assert_eq!(bonus.status, StatusCode::CREATED, "{:?}", bonus.body);
    assert_eq!(bonus.body["type"], "bonus");
    assert_eq!(bonus.body["balance_after"], 10_250);
    assert_eq!(bonus.body["reason"], "launch bonus");

    // Never below zero: refused whole, with the balance, and nothing written.
    let over = app
        .post(
            &path,
            &app.admin_key,
            json!({"credits": -10_251, "reason": "too much"}),
        )
        .await;
    assert_eq!(over.status, StatusCode::PAYMENT_REQUIRED, "{:?}", over.body);
    assert_eq!(over.error_code(), "credits_exhausted");
    assert_eq!(over.body["error"]["balance"], 10_250);
    let all = app
        .post(
            &path,
            &app.admin_key,
            json!({"credits": -10_250, "reason": "closing"}),
        )
        .await;
    assert_eq!(all.status, StatusCode::CREATED, "{:?}", all.body);
    assert_eq!(all.body["balance_after"], 0);

    // Bad input: a clear 400 naming the field; unknown tenants 404; tenants cannot call it.
    for (body, field) in [
        (json!({"credits": 0, "reason": "nothing"}), "credits"),
        // Found by schemathesis: an amount near 2^51 once closed the connection.
        (
            json!({"credits": 2_251_799_813_684_932i64, "reason": "huge"}),
            "credits",
        ),
        (
            json!({"credits": -100_000_001, "reason": "huge"}),
            "credits",
        ),
        (json!({"credits": 5, "reason": "  "}), "reason"),
    ] {
        let r = app.post(&path, &app.admin_key, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{:?}", r.body);
    }
    let r = app
        .post(
            &path,
            &app.admin_key,
            json!({"credits": "many", "reason": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = app
        .post(
            "/api/admin/tenants/ten_nobody/credits",
            &app.admin_key,
            json!({"credits": 5, "reason": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    let r = app
        .post(&path, &key, json!({"credits": 5, "reason": "self-service"}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let r = app
        .call(Method::GET, "/api/credits/balance", None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let ledger = app.get("/api/credits/transactions", &key).await.body;
    let kinds: Vec<&str> = ledger["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["adjustment", "bonus", "monthly_grant"]);

    // Both operator changes are in the tenant's audit log, by the admin, with their reasons.
    let audit = app.get("/api/audit", &key).await.body;
    let adjusted: Vec<(&str, &str, i64)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "credits.adjusted")
        .map(|e| {
            (
                e["actor"]["type"].as_str().unwrap_or_default(),
                e["after"]["reason"].as_str().unwrap(),
                e["after"]["credits"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        adjusted,
        [
            ("admin", "closing", -10_250),
            ("admin", "launch bonus", 250)
        ],
        "{audit}"
    );
    let tenant = TenantId::parse(&tenant_id).unwrap();
    check_books(app.platform.store.as_ref(), &tenant)
        .await
        .expect("the books balance");
}

/// Training embeds against credits: a forced retrain with no credits left fails with a clear error,
/// and the index built before keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn training_that_exhausts_credits_fails_cleanly_and_the_old_index_serves() {
    let t = funded(Backend::Embedded).await;
    let spent = 1_000 - t.balance().await["balance"].as_i64().unwrap();
    assert!(spent > 0, "the first training paid for its embeddings");
    let left = t.balance().await["available"].as_i64().unwrap();
    let r = t.adjust(-left, "test: nothing left").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    let job = t
        .app
        .train(&t.key, &t.site_id, &t.site.url("/"), true)
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].to_string();
    assert!(error.contains("credits exhausted"), "{job}");
    t.books().await;

    // One credit back: the old index answers.
    let r = t.adjust(5, "test: one answer").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let answer = t
        .app
        .post(
            "/api/chat",
            &t.key,
            json!({"site_id": t.site_id, "message": "opening hours"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert!(
        !answer.body["sources"].as_array().unwrap().is_empty(),
        "{:?}",
        answer.body
    );
    t.books().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_sells_packages_and_tenants_see_those_on_sale() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (_, key) = app.create_tenant("starter").await;
    let admin = app.admin_key.clone();
    let create = |body: serde_json::Value| {
        let (app, admin) = (&app, admin.clone());
        async move { app.post("/api/admin/credits/packages", &admin, body).await }
    };
    let small = create(json!({
        "display_name": "1,000 credits", "credits": 1000, "price": 1000, "currency": "JPY",
        "discount_percent": 0
    }))
    .await;
    assert_eq!(small.status, StatusCode::CREATED, "{:?}", small.body);
    assert_eq!(small.body["amount"], 1000);
    let large = create(json!({
        "display_name": "Big pack", "credits": 12000, "price": 10000, "currency": "USD",
        "discount_percent": 15, "valid_until": "2999-01-01T00:00:00Z"
    }))
    .await;
    assert_eq!(large.status, StatusCode::CREATED, "{:?}", large.body);
    assert_eq!(large.body["amount"], 8500, "15% off $100.00, in cents");
    // Not on sale: inactive, expired, not yet.
    for body in [
        json!({"display_name": "Off", "credits": 5, "price": 500, "currency": "JPY", "active": false}),
        json!({"display_name": "Gone", "credits": 5, "price": 500, "currency": "JPY",
               "valid_until": "2000-01-01T00:00:00Z"}),
        json!({"display_name": "Soon", "credits": 5, "price": 500, "currency": "JPY",
               "valid_from": "2999-01-01T00:00:00Z"}),
    ] {
        let r = create(body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let listed = app.get("/api/credits/packages", &key).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    let names: Vec<&str> = listed.body["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["display_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["1,000 credits", "Big pack"]);
    // The operator sees the whole catalogue, newest first, on sale or not.
    let all = app.get("/api/admin/credits/packages", &admin).await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    let all: Vec<(&str, bool)> = all.body["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["display_name"].as_str().unwrap(),
                p["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        all,
        [
            ("Soon", true),
            ("Gone", true),
            ("Off", false),
            ("Big pack", true),
            ("1,000 credits", true)
        ]
    );
    let r = app.get("/api/admin/credits/packages", &key).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);

    // Bad input names its field; only the operator may create.
    for (body, field) in [
        (
            json!({"display_name": "", "credits": 5, "price": 500, "currency": "JPY"}),
            "display_name",
        ),
        (
            json!({"display_name": "x", "credits": 0, "price": 500, "currency": "JPY"}),
            "credits",
        ),
        (
            json!({"display_name": "x", "credits": 5, "price": 10, "currency": "JPY"}),
            "price",
        ),
        (
            json!({"display_name": "x", "credits": 5, "price": 500, "currency": "JPY",
                "valid_from": "2030-01-01T00:00:00Z", "valid_until": "2029-01-01T00:00:00Z"}),
            "valid_until",
        ),
    ] {
        let r = create(body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{:?}", r.body);
    }
    let r =
        create(json!({"display_name": "x", "credits": 5, "price": 500, "currency": "EUR"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = app
        .post(
            "/api/admin/credits/packages",
            &key,
            json!({"display_name": "x", "credits": 5, "price": 500, "currency": "JPY"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
}
