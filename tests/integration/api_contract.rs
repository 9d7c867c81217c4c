//! The published contract: the OpenAPI document (`GET /api/openapi.json`), the functions' routers and
//! `template.yaml` name the same routes. A route in one and not the others fails here:
//! - every template event is in the document and every documented operation is in the template;
//! - every `.route("…")` in the functions' sources is documented and every documented path is routed;
//! - every template path, sent through its owning function's `app()`, reaches a handler (not the JSON
//!   404 of an unknown route, not a 405), and every method the document does not list answers 405.
//! - every documented operation reaches a handler of the local runner (which schemathesis drives).
//!
//! The call bridge (its own Fargate service, Twilio's webhook and media socket) is not behind the HTTP
//! API and is not part of this document. Nor is the console (`/console`, `/console/{proxy+}`): it serves
//! the web app's HTML and files, not the API; its own test below checks its template routes reach it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use kotoba_tests::{Backend, TestApp};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// One HttpApi event of template.yaml.
#[derive(Debug, Clone)]
struct TemplateRoute {
    function: String,
    method: String,
    path: String,
}

/// The value after `name` in a one-line flow mapping (`{ ApiId: !Ref HttpApi, Method: GET, Path: /x }`).
fn flow_field(line: &str, name: &str) -> Option<String> {
    let start = line.find(name)? + name.len();
    let rest = line[start..].trim_start();
    if let Some(quoted) = rest.strip_prefix('"') {
        return Some(quoted[..quoted.find('"')?].to_string());
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

fn template_routes() -> Vec<TemplateRoute> {
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).expect("template.yaml");
    let mut routes = Vec::new();
    let mut resource = String::new();
    for line in text.lines() {
        // Resources are the two-space-indented keys (`  ManagementFunction:`).
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
            && !name.contains(' ')
        {
            resource = name.to_string();
        }
        if line.contains("Properties:") && line.contains("ApiId: !Ref HttpApi") {
            let method = flow_field(line, "Method:").expect("an HttpApi event names its Method");
            let path = flow_field(line, "Path:").expect("an HttpApi event names its Path");
            routes.push(TemplateRoute {
                function: resource.clone(),
                method: method.to_uppercase(),
                path,
            });
        }
    }
    assert!(
        routes.len() >= 20,
        "template.yaml's HttpApi events were not found (format changed?): {routes:?}"
    );
    routes
}

/// path → methods (upper case), from the served document.
fn documented(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let methods = item
            .as_object()
            .expect("path item")
            .keys()
            .filter(|k| {
                ["get", "put", "post", "delete", "options", "head", "patch"].contains(&k.as_str())
            })
            .map(|k| k.to_uppercase())
            .collect();
        out.insert(path.clone(), methods);
    }
    out
}

/// Every path given to `.route(…)` in the functions' sources: a string literal, or a `const` of the
/// same file. The call bridge is skipped (see the module comment).
fn routed_in_sources() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for function in std::fs::read_dir(repo_root().join("functions")).expect("functions/") {
        let dir = function.expect("entry").path();
        if dir
            .file_name()
            .is_some_and(|n| n == "call-bridge" || n == "console")
        {
            continue;
        }
        if dir.join("src").is_dir() {
            walk(&dir.join("src"), &mut files);
        }
    }
    let mut paths = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        for (at, _) in text.match_indices(".route(") {
            let arg = text[at + ".route(".len()..].trim_start();
            let path = if let Some(literal) = arg.strip_prefix('"') {
                literal[..literal.find('"').expect("closing quote")].to_string()
            } else {
                let ident: String = arg
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let decl = format!("const {ident}: &str = \"");
                let start = text.find(&decl).unwrap_or_else(|| {
                    panic!(
                        "{}: route path {ident} is not a const of the file",
                        file.display()
                    )
                }) + decl.len();
                text[start..start + text[start..].find('"').expect("closing quote")].to_string()
            };
            paths.insert(path, file.clone());
        }
    }
    paths
}

/// A concrete URL for a templated path (ids that parse, so requests reach the handlers' own checks).
fn concrete(path: &str) -> String {
    path.replace("{tenant_id}", "ten_probe")
        .replace("{site_id}", "site_probe")
        .replace("{key_id}", "key_probe")
        .replace("{job_id}", "job_probe")
        .replace("{number}", "%2B15005550006")
        .replace("{call_sid}", "CA00000000000000000000000000000000")
}

/// The owning function's router as deployed (`app()`), by template resource name.
fn function_app(function: &str, platform: &Arc<shared::Platform>) -> Router {
    match function {
        "ManagementFunction" => management::app(platform.clone()),
        "TrainFunction" => train::app(platform.clone()),
        "ChatFunction" => chat::app(platform.clone()).expect("chat app"),
        "UsageFunction" => usage::app(platform.clone()),
        "CreditsFunction" => credits::app(platform.clone()),
        "EmbedScriptFunction" => embed_script::app(platform.clone()),
        "BillingFunction" => billing::app(platform.clone()),
        "WebhookFunction" => webhook::app(platform.clone()),
        other => panic!("template.yaml routes to {other}: add its app() to this test"),
    }
}

async fn send(app: &Router, method: &Method, uri: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The template resource of the console (the web app: not part of the API document).
const CONSOLE: &str = "ConsoleFunction";

#[tokio::test]
async fn the_console_is_routed_at_console_and_below_and_nowhere_else() {
    let console: BTreeSet<(String, String)> = template_routes()
        .into_iter()
        .filter(|r| r.function == CONSOLE || r.path.starts_with("/console"))
        .map(|r| {
            assert_eq!(r.function, CONSOLE, "{} routes {}", r.function, r.path);
            (r.method, r.path)
        })
        .collect();
    assert_eq!(
        console,
        BTreeSet::from([
            ("GET".to_string(), "/console".to_string()),
            ("GET".to_string(), "/console/{proxy+}".to_string()),
        ])
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let vars = std::collections::HashMap::from([(
        "KOTOBA_DATA_DIR".to_string(),
        dir.path().display().to_string(),
    )]);
    let config =
        shared::config::Config::from_vars(&vars, shared::config::Mode::Deployed).expect("config");
    let app = console::app(&config);
    for uri in [
        "/console",
        "/console/",
        "/console/sites/site_probe",
        "/console/usage",
    ] {
        let request = Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=utf-8",
            "{uri}"
        );
    }
    let (status, body) = send(&app, &Method::GET, "/console/assets/missing-0000.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].is_string(), "{body}");
    let (status, _) = send(&app, &Method::POST, "/console").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn routers_document_and_template_agree() {
    let doc: Value = serde_json::from_str(&embed_script::openapi_json()).expect("document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let documented = documented(&doc);
    let template: Vec<TemplateRoute> = template_routes()
        .into_iter()
        .filter(|r| r.function != CONSOLE)
        .collect();
    let mut problems = Vec::new();

    // Template ↔ document.
    for route in &template {
        match documented.get(&route.path) {
            None => problems.push(format!(
                "template.yaml routes {} {} ({}) but the OpenAPI document does not have the path",
                route.method, route.path, route.function
            )),
            Some(methods) if route.method != "ANY" && !methods.contains(&route.method) => problems
                .push(format!(
                    "template.yaml routes {} {} but the document has only {methods:?}",
                    route.method, route.path
                )),
            Some(_) => {}
        }
    }
    for (path, methods) in &documented {
        for method in methods {
            let in_template = template
                .iter()
                .any(|r| &r.path == path && (&r.method == method || r.method == "ANY"));
            if !in_template {
                problems.push(format!(
                    "the document has {method} {path} but template.yaml does not route it"
                ));
            }
        }
    }

    // Sources ↔ document.
    let sources = routed_in_sources();
    for (path, file) in &sources {
        if !documented.contains_key(path) {
            problems.push(format!(
                "{} routes {path} but the OpenAPI document does not have it (annotate the handler \
                 with #[utoipa::path] and list it in the function's ApiDoc)",
                file.display()
            ));
        }
    }
    for path in documented.keys() {
        if !sources.contains_key(path) {
            problems.push(format!(
                "the document has {path} but no function's router has a .route() for it"
            ));
        }
    }

    // Template paths through their owning function's app(): each reaches a handler.
    let app = TestApp::spawn(Backend::Embedded).await;
    for function in template
        .iter()
        .map(|r| r.function.clone())
        .collect::<BTreeSet<_>>()
    {
        let router = function_app(&function, &app.platform);
        let unrouted = send(&router, &Method::GET, "/api/__no_such_route__").await;
        assert_eq!(unrouted.0, StatusCode::NOT_FOUND, "{function}'s fallback");
        assert!(
            unrouted.1["error"]["message"].is_string(),
            "{function}'s fallback answers the error shape: {}",
            unrouted.1
        );
        for route in template.iter().filter(|r| r.function == function) {
            let uri = concrete(&route.path);
            let Some(methods) = documented.get(&route.path) else {
                continue;
            };
            let wanted: Vec<&String> = if route.method == "ANY" {
                methods.iter().collect()
            } else {
                vec![&route.method]
            };
            for method in wanted {
                let method = Method::from_bytes(method.as_bytes()).expect("method");
                let (status, body) = send(&router, &method, &uri).await;
                if status == StatusCode::METHOD_NOT_ALLOWED
                    || (status == unrouted.0
                        && body["error"]["message"] == unrouted.1["error"]["message"])
                {
                    problems.push(format!(
                        "{function}'s app() does not route {method} {} ({status})",
                        route.path
                    ));
                }
            }
            // A method the document does not list must not be served.
            for method in ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"] {
                if methods.contains(method) {
                    continue;
                }
                let method = Method::from_bytes(method.as_bytes()).expect("method");
                let (status, _) = send(&router, &method, &uri).await;
                if status != StatusCode::METHOD_NOT_ALLOWED {
                    problems.push(format!(
                        "{function}'s app() answers {method} {} with {status}, but the document \
                         does not list that operation",
                        route.path
                    ));
                }
            }
        }
    }

    // The local runner (what `make dev` serves and schemathesis drives) mounts every documented
    // operation: none of them is its unknown-route 404 or a 405.
    let unrouted = app
        .call(
            reqwest::Method::GET,
            "/api/__no_such_route__",
            Some(&app.admin_key),
            None,
        )
        .await;
    assert!(
        unrouted.body["error"]["message"].is_string(),
        "{:?}",
        unrouted.body
    );
    for (path, methods) in &documented {
        for method in methods {
            let reply = app
                .call(
                    reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                    &concrete(path),
                    Some(&app.admin_key),
                    Some(serde_json::json!({})),
                )
                .await;
            if reply.status == StatusCode::METHOD_NOT_ALLOWED
                || (reply.status == unrouted.status
                    && reply.body["error"]["message"] == unrouted.body["error"]["message"])
            {
                problems.push(format!(
                    "the local runner does not route {method} {path} ({})",
                    reply.status
                ));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "the contract disagrees:\n  {}",
        problems.join("\n  ")
    );
}

/// The document is self-contained: every `$ref` names a schema it defines, every operation has an id
/// and at least one success response, and secured operations name a declared scheme.
#[test]
fn document_is_complete() {
    let doc: Value = serde_json::from_str(&embed_script::openapi_json()).expect("document is JSON");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    for scheme in ["tenant_key", "admin_key", "stripe_signature"] {
        assert!(schemes.contains_key(scheme), "no security scheme {scheme}");
    }
    assert_eq!(
        doc["paths"]["/api/webhooks/stripe"]["post"]["security"],
        serde_json::json!([{ "stripe_signature": [] }]),
        "Stripe's webhook is authenticated by its signature"
    );
    assert_eq!(
        schemes["stripe_signature"]["in"], "header",
        "{:?}",
        schemes["stripe_signature"]
    );
    assert_eq!(schemes["stripe_signature"]["name"], "Stripe-Signature");
    // Every error code ApiError writes is in the documented enum.
    let codes: Vec<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for code in [
        "subscription_inactive",
        "stripe_error",
        "not_ready",
        "quota_exceeded",
        "credits_exhausted",
        "suspicious_activity",
        "forbidden_role",
        "rate_limited",
    ] {
        assert!(codes.contains(&code), "ErrorCode lacks {code}: {codes:?}");
    }
    let text = doc.to_string();
    for (at, _) in text.match_indices("\"$ref\":\"#/components/schemas/") {
        let rest = &text[at + "\"$ref\":\"#/components/schemas/".len()..];
        let name = &rest[..rest.find('"').expect("closing quote")];
        assert!(
            schemas.contains_key(name),
            "$ref to undefined schema {name}"
        );
    }
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{method} {path} documents no success"
            );
            assert!(
                responses.contains_key("default"),
                "{method} {path} documents no error shape"
            );
            for requirement in op["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().expect("requirement").keys() {
                    assert!(
                        schemes.contains_key(scheme),
                        "{method} {path}: unknown scheme {scheme}"
                    );
                }
            }
        }
    }
    // Admin operations are behind the admin key; everything else under /api/admin too.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if path.starts_with("/api/admin/") {
            for (method, op) in item.as_object().expect("path item") {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{ "admin_key": [] }]),
                    "{method} {path} must require the admin key"
                );
            }
        }
    }
}

/// Found by schemathesis: a `cursor` the listing never handed out (garbled, empty, valid base64 of the
/// wrong JSON) was a 500 from every paginated route; it is the caller's mistake, a 400 naming the field.
#[tokio::test]
async fn foreign_or_garbled_cursors_are_a_400() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let key = app.demo.api_key.clone();
    let site = app.demo.site_id.to_string();
    let routes = [
        "/api/sites".to_string(),
        format!("/api/sites/{site}/prompt/versions"),
        "/api/voice/versions".to_string(),
        "/api/calls".to_string(),
    ];
    for route in &routes {
        for cursor in ["", "not-a-cursor", "%C3%878%3EH%7B", "eyJ4IjoxfQ"] {
            let reply = app.get(&format!("{route}?cursor={cursor}"), &key).await;
            assert_eq!(
                reply.status, 400,
                "{route}?cursor={cursor}: {:?}",
                reply.body
            );
            assert_eq!(reply.error_code(), "invalid_input");
            assert_eq!(reply.body["error"]["field"], "cursor");
        }
    }
    let reply = app
        .get("/api/admin/usage?cursor=garbage", &app.admin_key)
        .await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert_eq!(reply.body["error"]["field"], "cursor");
    // Limits outside the documented range are refused, not clamped.
    for limit in ["0", "101", "2147483648"] {
        let reply = app.get(&format!("/api/calls?limit={limit}"), &key).await;
        assert_eq!(reply.status, 400, "limit={limit}: {:?}", reply.body);
        assert_eq!(reply.body["error"]["field"], "limit");
    }
    // A query string an extractor cannot read answers in the contract's error shape, not plain text.
    let reply = app.get("/api/calls?limit=many", &key).await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert_eq!(reply.error_code(), "invalid_input");
}
