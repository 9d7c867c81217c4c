//! Roles: every tenant route of the published document, called with an owner's, a manager's and a
//! viewer's key. A role the route does not allow gets 403 `forbidden_role` before anything runs; a
//! role it allows never does.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use kotoba_tests::{Backend, TestApp};
use shared::tenants::roles::{self, Role};

/// Every (method, route template) of the document that a tenant key calls.
fn tenant_routes() -> Vec<(Method, String)> {
    let doc: Value = serde_json::from_str(&embed_script::openapi_json()).expect("document is JSON");
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let tenant = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("tenant_key").is_some()));
            if tenant {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                routes.push((method, path.clone()));
            }
        }
    }
    routes
}

/// The route with its parameters filled: the real site, and well-formed ids of nothing elsewhere.
fn concrete(route: &str, site_id: &str) -> String {
    let mut out = String::new();
    for segment in route.split('/').skip(1) {
        out.push('/');
        out.push_str(match segment {
            "{site_id}" => site_id,
            "{key_id}" => "key_00000000000000000000000000",
            "{job_id}" => "job_00000000000000000000000000",
            s if s.starts_with('{') => "missing",
            s => s,
        });
    }
    out
}

async fn issue(app: &TestApp, owner: &str, role: &str) -> String {
    let r = app
        .post(
            "/api/keys",
            owner,
            json!({"role": role, "name": format!("{role} key")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["role"], role);
    r.body["api_key"].as_str().unwrap().to_string()
}

async fn every_route_for_every_role(app: TestApp) {
    let (_, owner) = app.create_tenant("pro").await;
    let site = app.create_site(&owner, &["shop.example.jp"]).await;
    let site_id = site["site_id"].as_str().unwrap();
    let manager = issue(&app, &owner, "manager").await;
    let viewer = issue(&app, &owner, "viewer").await;

    let routes = tenant_routes();
    assert!(
        routes.len() > 20,
        "the document lists the tenant routes: {routes:?}"
    );
    let mut refused = 0;
    for (method, route) in &routes {
        let required = roles::required(method, route);
        let path = concrete(route, site_id);
        // The weaker roles first, so that nothing an owner's call changes hides a refusal.
        for (role, key) in [
            (Role::Viewer, &viewer),
            (Role::Manager, &manager),
            (Role::Owner, &owner),
        ] {
            let body = (*method != Method::GET && *method != Method::DELETE).then(|| json!({}));
            let r = app.call(method.clone(), &path, Some(key), body).await;
            if role.allows(required) {
                assert_ne!(
                    r.error_code(),
                    "forbidden_role",
                    "{} {method} {route}: {:?}",
                    role.as_str(),
                    r.body
                );
            } else {
                refused += 1;
                assert_eq!(
                    (r.status, r.error_code()),
                    (StatusCode::FORBIDDEN, "forbidden_role"),
                    "{} {method} {route}: {:?}",
                    role.as_str(),
                    r.body
                );
                assert_eq!(r.body["error"]["role"], role.as_str());
                assert_eq!(r.body["error"]["required_role"], required.as_str());
            }
        }
    }
    assert!(refused > 20, "{refused} refusals");

    // A refusal changes nothing: the viewer's site and key requests left no site and no key behind.
    let sites = app.get("/api/sites", &viewer).await;
    assert_eq!(
        sites.body["sites"].as_array().unwrap().len(),
        1,
        "{:?}",
        sites.body
    );
    let keys = app.get("/api/keys", &owner).await;
    let listed: Vec<(&str, &str)> = keys.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["role"].as_str().unwrap(),
                k["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(listed.contains(&("manager", "manager key")), "{listed:?}");
    assert!(listed.contains(&("viewer", "viewer key")), "{listed:?}");

    // A role that does not exist, a name too long: 400, no key.
    let before = keys.body["keys"].as_array().unwrap().len();
    let r = app
        .post("/api/keys", &owner, json!({"role": "admin"}))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    let r = app
        .post("/api/keys", &owner, json!({"name": "x".repeat(81)}))
        .await;
    assert_eq!(r.body["error"]["field"], "name", "{:?}", r.body);
    let after = app.get("/api/keys", &owner).await.body["keys"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before);

    // A manager works on sites, a viewer reads them.
    let r = app
        .patch(
            &format!("/api/sites/{site_id}"),
            &manager,
            json!({"is_embed_enabled": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app.get(&format!("/api/sites/{site_id}"), &viewer).await;
    assert_eq!(r.body["is_embed_enabled"], true, "{:?}", r.body);
}

#[tokio::test]
async fn roles_on_embedded_adapters() {
    every_route_for_every_role(TestApp::spawn(Backend::Embedded).await).await;
}

#[tokio::test]
async fn roles_on_aws_adapters() {
    every_route_for_every_role(TestApp::spawn(Backend::Aws).await).await;
}
