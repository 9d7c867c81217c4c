//! The management API through the local runner, exactly as a client drives it: tenants, keys, sites,
//! widget config, prompt versions and rollback, and the contract's errors. Runs on both adapter families.

use kotoba_tests::{Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn management_api(app: TestApp) {
    // Health.
    let health = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");

    // Admin: only the admin key creates tenants; input is validated field by field.
    let new_tenant = json!({"name": "株式会社テスト", "plan": "starter"});
    let r = app
        .call(
            Method::POST,
            "/api/admin/tenants",
            None,
            Some(new_tenant.clone()),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let r = app
        .post(
            "/api/admin/tenants",
            "not-the-admin-key-at-all",
            new_tenant.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .post("/api/admin/tenants", &app.demo.api_key, new_tenant.clone())
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a tenant key is not an admin key"
    );
    let r = app
        .post(
            "/api/admin/tenants",
            &app.admin_key,
            json!({"name": "X", "plan": "gold"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("plan"))
    );
    let r = app
        .post("/api/admin/tenants", &app.admin_key, json!({"plan": "pro"}))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );
    let r = app
        .post("/api/admin/tenants", &app.admin_key, new_tenant)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["tenant"]["name"], "株式会社テスト");
    assert_eq!(r.body["tenant"]["subscription_status"], "trialing");
    let key_a = r.body["api_key"].as_str().unwrap().to_string();
    let tenant_a = r.body["tenant_id"].as_str().unwrap().to_string();
    let (_tenant_b, key_b) = app.create_tenant("pro").await;

    // Subscription status (admin, until Stripe sets it).
    let path = format!("/api/admin/tenants/{tenant_a}/subscription");
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin_key),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["subscription_status"].as_str()),
        (StatusCode::OK, Some("active"))
    );
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin_key),
            Some(json!({"status": "paused"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("status"))
    );
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&key_a),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Sites: keys required, domains validated and normalised.
    let r = app
        .call(Method::POST, "/api/sites", None, Some(json!({"name": "x"})))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let bogus = format!("kt_{}", "A".repeat(43));
    let r = app.post("/api/sites", &bogus, json!({"name": "x"})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .post(
            "/api/sites",
            &key_a,
            json!({"name": "x", "allowed_domains": ["ok.com", "not a host"]}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("allowed_domains"))
    );
    let r = app
        .post(
            "/api/sites",
            &key_a,
            json!({"name": "", "allowed_domains": []}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );
    let site = app
        .create_site(
            &key_a,
            &[
                "WWW.Example.co.jp.",
                "*.Example.com",
                "https://shop.example.net/",
            ],
        )
        .await;
    assert_eq!(
        site["allowed_domains"],
        json!(["www.example.co.jp", "*.example.com", "shop.example.net"])
    );
    assert_eq!(site["status"], "pending");
    assert_eq!(site["is_embed_enabled"], false);
    assert_eq!(site["prompt"]["version"], 1);
    assert_eq!(site["tenant_id"], tenant_a.as_str());
    assert!(
        site["embed_script_id"]
            .as_str()
            .unwrap()
            .starts_with("emb_")
    );
    for field in ["index_version", "last_trained_at"] {
        assert!(
            site.get(field).is_some(),
            "the contract's {field} is present"
        );
    }
    let site_id = site["site_id"].as_str().unwrap().to_string();
    let site_path = format!("/api/sites/{site_id}");

    // Isolation: another tenant's site does not exist for them, on every route.
    assert_eq!(
        app.get(&site_path, &key_b).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch(&site_path, &key_b, json!({"name": "mine now"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("{site_path}/prompt/versions"), &key_b)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .post(
            &format!("{site_path}/prompt/rollback"),
            &key_b,
            json!({"version": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/sites", &key_b).await.body["sites"], json!([]));
    assert_eq!(
        app.get("/api/sites/site_doesnotexist", &key_a).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/sites/../../etc", &key_a).await.status,
        StatusCode::NOT_FOUND
    );

    // Widget: merged field by field; every value validated and named when wrong.
    let r = app
        .patch(
            &site_path,
            &key_a,
            json!({"widget": {"theme": "dark", "color_primary": "#11AA33"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["widget"]["theme"], "dark");
    assert_eq!(r.body["widget"]["color_primary"], "#11aa33");
    assert_eq!(r.body["widget"]["position"], "bottom-right");
    let r = app
        .patch(
            &site_path,
            &key_a,
            json!({"widget": {"position": "bottom-left", "radius": 4}}),
        )
        .await;
    assert_eq!(
        (
            r.body["widget"]["theme"].as_str(),
            r.body["widget"]["radius"].as_i64()
        ),
        (Some("dark"), Some(4))
    );
    for (body, field) in [
        (
            json!({"widget": {"color_primary": "red"}}),
            "widget.color_primary",
        ),
        (json!({"widget": {"theme": "neon"}}), "widget.theme"),
        (json!({"widget": {"radius": 99}}), "widget.radius"),
        (
            json!({"widget": {"bubble_icon_url": "http://x.com/i.png"}}),
            "widget.bubble_icon_url",
        ),
        (
            json!({"widget": {"font": "x;}body{display:none"}}),
            "widget.font",
        ),
        (
            json!({"prompt": {"temperature": 3.0}}),
            "prompt.temperature",
        ),
        (json!({"prompt": {"max_tokens": 0}}), "prompt.max_tokens"),
        (json!({"is_embed_enabled": "yes"}), "is_embed_enabled"),
    ] {
        let r = app.patch(&site_path, &key_a, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.body["error"]["field"], field, "{body} → {:?}", r.body);
    }
    let r = app
        .patch(&site_path, &key_a, json!({"colour": "#fff"}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused"
    );
    let r = app
        .patch(&site_path, &key_a, json!({"status": "ready"}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "status is not the tenant's to set"
    );

    // Prompt versions and rollback.
    let r = app
        .patch(
            &site_path,
            &key_a,
            json!({"prompt": {"system_prompt": "v2 prompt", "temperature": 0.5}}),
        )
        .await;
    assert_eq!(r.body["prompt"]["version"], 2);
    let r = app
        .patch(&site_path, &key_a, json!({"prompt": {"max_tokens": 1000}}))
        .await;
    assert_eq!(
        (
            r.body["prompt"]["version"].as_i64(),
            r.body["prompt"]["system_prompt"].as_str()
        ),
        (Some(3), Some("v2 prompt"))
    );
    let versions = app
        .get(&format!("{site_path}/prompt/versions"), &key_a)
        .await;
    let numbers: Vec<i64> = versions.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![3, 2, 1]);
    let r = app
        .post(
            &format!("{site_path}/prompt/rollback"),
            &key_a,
            json!({"version": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["prompt"]["version"], 4);
    let v1 = &versions.body["versions"][2];
    assert_eq!(r.body["prompt"]["system_prompt"], v1["system_prompt"]);
    assert_eq!(r.body["prompt"]["max_tokens"], v1["max_tokens"]);
    let r = app
        .post(
            &format!("{site_path}/prompt/rollback"),
            &key_a,
            json!({"version": 99}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .post(
            &format!("{site_path}/prompt/rollback"),
            &key_a,
            json!({"version": "one"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("version"))
    );
    let versions = app
        .get(&format!("{site_path}/prompt/versions"), &key_a)
        .await;
    assert_eq!(versions.body["versions"][0]["rolled_back_from"], 1);

    // The site reads back with everything applied.
    let r = app.patch(&site_path, &key_a, json!({"is_embed_enabled": true, "name": "ショップ", "allowed_domains": ["example.jp"]})).await;
    assert_eq!(r.status, StatusCode::OK);
    let back = app.get(&site_path, &key_a).await.body;
    assert_eq!(back["name"], "ショップ");
    assert_eq!(back["is_embed_enabled"], true);
    assert_eq!(back["allowed_domains"], json!(["example.jp"]));
    assert_eq!(back["widget"]["position"], "bottom-left");
    assert_eq!(back["prompt"]["version"], 4);
    assert_eq!(
        app.get("/api/sites", &key_a).await.body["sites"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Concurrent PATCHes of different fields all land (optimistic concurrency, no lost update).
    let patches = [
        json!({"widget": {"welcome_message": "ようこそ"}}),
        json!({"widget": {"font": "Noto Sans JP, sans-serif"}}),
        json!({"widget": {"radius": 20}}),
        json!({"name": "並行"}),
    ];
    let results = futures::future::join_all(
        patches
            .iter()
            .map(|p| app.patch(&site_path, &key_a, p.clone())),
    )
    .await;
    assert!(
        results.iter().all(|r| r.status == StatusCode::OK),
        "{results:?}"
    );
    let back = app.get(&site_path, &key_a).await.body;
    assert_eq!(back["widget"]["welcome_message"], "ようこそ");
    assert_eq!(back["widget"]["font"], "Noto Sans JP, sans-serif");
    assert_eq!(back["widget"]["radius"], 20);
    assert_eq!(back["name"], "並行");

    // API keys: issue, use, revoke; another tenant's key id is not found.
    let r = app
        .call(Method::POST, "/api/keys", Some(&key_a), None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (key_id, second_key) = (
        r.body["key_id"].as_str().unwrap().to_string(),
        r.body["api_key"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        app.get(&site_path, &second_key).await.status,
        StatusCode::OK
    );
    let listed = app.get("/api/keys", &key_a).await.body;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    assert!(
        !listed.to_string().contains(&second_key[10..]),
        "listing never shows a secret"
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/keys/{key_id}"),
            Some(&key_b),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/keys/{key_id}"),
            Some(&key_a),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&site_path, &second_key).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get(&site_path, &key_a).await.status, StatusCode::OK);

    // Transport-level errors in the contract's format.
    let big = json!({"name": "x".repeat(70_000)});
    let r = app.post("/api/sites", &key_a, big).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    let r = app
        .client
        .post(app.url("/api/sites"))
        .bearer_auth(&key_a)
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .client
        .post(app.url("/api/sites"))
        .bearer_auth(&key_a)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_input");
    let r = app.get("/api/nothing-here", &key_a).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
}

#[tokio::test(flavor = "multi_thread")]
async fn management_api_on_embedded_adapters() {
    management_api(TestApp::spawn(Backend::Embedded).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn management_api_on_aws_adapters() {
    management_api(TestApp::spawn(Backend::Aws).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_tenant_is_seeded_once_and_works() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let sites = app.get("/api/sites", &app.demo.api_key).await;
    assert_eq!(sites.status, StatusCode::OK);
    let list = sites.body["sites"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["site_id"], app.demo.site_id.as_str());
    assert_eq!(list[0]["is_embed_enabled"], true);
}

/// A stored row that today's rules would refuse (written before a rule was tightened) still reads and
/// lists; a row that does not read at all is left out of the listing, not a 500 for every site.
#[tokio::test(flavor = "multi_thread")]
async fn rows_written_under_older_rules_still_list() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (_, key) = app.create_tenant("pro").await;
    let old = app.create_site(&key, &["hotel.test"]).await;
    let broken = app.create_site(&key, &["hotel.test"]).await;
    let site_key = |site: &Value| {
        shared::sites::site_key(
            &shared::ids::SiteId::parse(site["site_id"].as_str().unwrap()).unwrap(),
        )
    };
    let store = app.platform.store.as_ref();
    let long_name = "長".repeat(150);
    store
        .update(
            shared::store::Update::new(site_key(&old))
                .set("name", long_name.clone())
                .set("allowed_domains", json!(["hotel.test/old-rule"])),
        )
        .await
        .unwrap();
    store
        .update(shared::store::Update::new(site_key(&broken)).set("name", json!({"not": "a name"})))
        .await
        .unwrap();
    let sites = app.get("/api/sites", &key).await;
    assert_eq!(sites.status, StatusCode::OK, "{:?}", sites.body);
    let list = sites.body["sites"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["site_id"], old["site_id"]);
    assert_eq!(list[0]["name"], long_name.as_str());
    assert_eq!(list[0]["allowed_domains"], json!(["hotel.test/old-rule"]));
    let one = app
        .get(
            &format!("/api/sites/{}", old["site_id"].as_str().unwrap()),
            &key,
        )
        .await;
    assert_eq!(one.status, StatusCode::OK, "{:?}", one.body);
    assert_eq!(one.body["name"], long_name.as_str());
}
