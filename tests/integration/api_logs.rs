//! The error log and the audit log through the local runner, on both adapter families: entries appear
//! for the actions that make them, paginate, and never show another tenant's entries.

use kotoba_tests::{Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn errors_and_audit_entries_are_recorded_paginated_and_isolated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, key) = app.create_tenant("starter").await;
    let (other_tenant, other) = app.create_tenant("starter").await;

    // Audit: a key issued and revoked, a site created and changed, a webhook created.
    let issued = app.post("/api/keys", &key, json!({})).await;
    assert_eq!(issued.status, StatusCode::CREATED);
    let key_id = issued.body["key_id"].as_str().unwrap().to_string();
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/keys/{key_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let site = app.create_site(&key, &["shop.example.jp"]).await;
    let site_id = site["site_id"].as_str().unwrap().to_string();
    let r = app
        .patch(
            &format!("/api/sites/{site_id}"),
            &key,
            json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .patch(
            "/api/tenant",
            &key,
            json!({"billing_email": "ops@tenant.example"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .post(
            "/api/webhooks",
            &key,
            json!({"url": "http://127.0.0.1:9/hook", "events": ["chat.error"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let webhook_secret = r.body["secret"].as_str().unwrap().to_string();

    let audit = app.get("/api/audit", &key).await;
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    let entries = audit.body["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "webhook.created",
            "tenant.profile_updated",
            "site.updated",
            "site.created",
            "api_key.revoked",
            "api_key.issued",
            "tenant.created"
        ],
        "{entries:?}"
    );
    assert!(
        !audit.body.to_string().contains(&webhook_secret[6..]),
        "no webhook secret in the log"
    );
    assert_eq!(entries[1]["before"], json!({"billing_email": null}));
    assert_eq!(
        entries[1]["after"],
        json!({"billing_email": "ops@tenant.example"})
    );
    let updated = &entries[2];
    assert_eq!(updated["before"], json!({"name": "Test site"}));
    assert_eq!(updated["after"], json!({"name": "Renamed"}));
    assert_eq!(updated["actor"]["type"], "api_key");
    assert_eq!(updated["ip"], "127.0.0.1");
    assert!(
        updated["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(entries[6]["actor"]["type"], "admin");
    assert!(
        !audit.body.to_string().contains(&key),
        "no secrets in the log"
    );
    // The other tenant sees only its own creation.
    let theirs = app.get("/api/audit", &other).await;
    let theirs = theirs.body["entries"].as_array().unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["tenant_id"], other_tenant.as_str());
    // The operator sees both, and can filter.
    let admin = app
        .get(
            &format!("/api/admin/audit?tenant_id={tenant}"),
            &app.admin_key,
        )
        .await;
    assert_eq!(admin.status, StatusCode::OK, "{:?}", admin.body);
    assert_eq!(admin.body["entries"].as_array().unwrap().len(), 7);
    let r = app.get("/api/admin/audit", &key).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Errors: 55 failing requests on the tenant's routes, one of them about its site.
    for n in 0..54 {
        let r = app
            .get(&format!("/api/train/jobs/job_missing{n}"), &key)
            .await;
        assert!(r.status.is_client_error(), "{:?}", r.body);
    }
    let r = app
        .patch(&format!("/api/sites/{site_id}"), &key, json!({"name": ""}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let bad_request_id = r.body["error"]["request_id"].as_str().map(str::to_string);
    // Another tenant's failures, including about this tenant's site, are not this tenant's.
    let r = app.get(&format!("/api/sites/{site_id}"), &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Unauthenticated failures belong to nobody.
    let r = app
        .call(Method::GET, "/api/sites", Some("kt_wrong"), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let mut all: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/errors?cursor={c}"),
            None => "/api/errors".into(),
        };
        let page = app.get(&path, &key).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        all.extend(page.body["errors"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(all.len(), 55, "two pages of 50 and 5");
    let newest = &all[0];
    assert_eq!(newest["status"], 400);
    assert_eq!(newest["code"], "invalid_input");
    assert_eq!(newest["site_id"], site_id.as_str());
    assert_eq!(newest["path"], format!("/api/sites/{site_id}"));
    if let Some(id) = bad_request_id {
        assert_eq!(newest["request_id"], id.as_str());
    }
    assert!(
        all[1..]
            .iter()
            .all(|e| e["status"] == 404 && e["site_id"].is_null())
    );
    let by_site = app
        .get(&format!("/api/errors?site_id={site_id}"), &key)
        .await;
    assert_eq!(by_site.body["errors"].as_array().unwrap().len(), 1);
    // The other tenant: its own 404 only, without this tenant's site; and not this tenant's site filter.
    let theirs = app.get("/api/errors", &other).await;
    let theirs = theirs.body["errors"].as_array().unwrap().clone();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(theirs[0]["site_id"], Value::Null);
    let r = app
        .get(&format!("/api/errors?site_id={site_id}"), &other)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn errors_and_audit_entries_are_recorded_paginated_and_isolated_embedded() {
    errors_and_audit_entries_are_recorded_paginated_and_isolated(Backend::Embedded).await;
}

#[tokio::test]
async fn errors_and_audit_entries_are_recorded_paginated_and_isolated_on_aws() {
    errors_and_audit_entries_are_recorded_paginated_and_isolated(Backend::Aws).await;
}
