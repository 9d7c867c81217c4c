//! Console sign-in: a key traded for an `HttpOnly; Secure; SameSite=Strict` session cookie; changes made
//! with the cookie need the session's CSRF token; sign-out and expiry end the session; the session
//! keeps its key's role.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use kotoba_tests::{Backend, TestApp};
use shared::store::keys;

/// A request as the console page makes it: the cookie, and the CSRF token when given.
async fn with_cookie(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("cookie", format!("theme=light; {cookie}"));
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Signs in with `key`; returns (the cookie pair to send back, the CSRF token, the session body).
async fn sign_in(app: &TestApp, key: &str) -> (String, String, Value) {
    let response = app
        .client
        .post(app.url("/api/console/session"))
        .json(&json!({"api_key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=28800",
    ] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains(key),
        "the key itself never goes to the browser"
    );
    let body: Value = response.json().await.unwrap();
    let pair = set_cookie.split(';').next().unwrap().to_string();
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    (pair, csrf, body)
}

async fn console_sessions(app: TestApp) {
    let (tenant, owner) = app.create_tenant("pro").await;
    let viewer = app
        .post("/api/keys", &owner, json!({"role": "viewer"}))
        .await
        .body["api_key"]
        .as_str()
        .unwrap()
        .to_string();

    // A wrong key signs nobody in.
    let r = app
        .call(
            Method::POST,
            "/api/console/session",
            None,
            Some(json!({"api_key": "kt_nope"})),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );

    let (cookie, csrf, session) = sign_in(&app, &owner).await;
    assert_eq!(session["tenant_id"], tenant.as_str());
    assert_eq!(session["role"], "owner");

    // Reads with the cookie alone; the page can read its CSRF token again after a reload.
    let (status, sites) = with_cookie(&app, Method::GET, "/api/sites", &cookie, None, None).await;
    assert_eq!(status, StatusCode::OK, "{sites}");
    let (_, again) = with_cookie(
        &app,
        Method::GET,
        "/api/console/session",
        &cookie,
        None,
        None,
    )
    .await;
    assert_eq!(again["csrf_token"], csrf.as_str());

    // A change without the CSRF token (what a cross-site form post would be) is refused and does
    // nothing; with a wrong one too; with the right one it is made.
    let site = json!({"name": "Shop", "allowed_domains": ["shop.example.jp"]});
    let (status, body) = with_cookie(
        &app,
        Method::POST,
        "/api/sites",
        &cookie,
        None,
        Some(site.clone()),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _) = with_cookie(
        &app,
        Method::POST,
        "/api/sites",
        &cookie,
        Some("guess"),
        Some(site.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let listed = app.get("/api/sites", &owner).await.body;
    assert_eq!(listed["sites"].as_array().unwrap().len(), 0, "{listed}");
    let (status, created) = with_cookie(
        &app,
        Method::POST,
        "/api/sites",
        &cookie,
        Some(&csrf),
        Some(site.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    // A viewer's session is a viewer: it reads, and changes are refused by role.
    let (viewer_cookie, viewer_csrf, viewer_session) = sign_in(&app, &viewer).await;
    assert_eq!(viewer_session["role"], "viewer");
    let (status, _) =
        with_cookie(&app, Method::GET, "/api/sites", &viewer_cookie, None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = with_cookie(
        &app,
        Method::POST,
        "/api/sites",
        &viewer_cookie,
        Some(&viewer_csrf),
        Some(site),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden_role"))
    );

    // Sign-out needs the token too; then the cookie is refused.
    let (status, _) = with_cookie(
        &app,
        Method::DELETE,
        "/api/console/session",
        &cookie,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = with_cookie(
        &app,
        Method::DELETE,
        "/api/console/session",
        &cookie,
        Some(&csrf),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = with_cookie(&app, Method::GET, "/api/sites", &cookie, None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );

    // Expiry: the viewer's session, its stored expiry moved into the past, is refused.
    let token = viewer_cookie.split_once('=').unwrap().1;
    let key = keys::console_session(hex::encode(Sha256::digest(token.as_bytes())));
    let mut item = app
        .platform
        .store
        .get(&key)
        .await
        .unwrap()
        .expect("the session is stored");
    item.attributes
        .insert("ends_at".into(), json!("2020-01-01T00:00:00Z"));
    app.platform
        .store
        .put(item, shared::store::Condition::None)
        .await
        .unwrap();
    let (status, _) =
        with_cookie(&app, Method::GET, "/api/sites", &viewer_cookie, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A bearer key still works beside all this, and wins over a cookie.
    let r = app.get("/api/sites", &owner).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn console_sessions_on_embedded_adapters() {
    console_sessions(TestApp::spawn(Backend::Embedded).await).await;
}

#[tokio::test]
async fn console_sessions_on_aws_adapters() {
    console_sessions(TestApp::spawn(Backend::Aws).await).await;
}
