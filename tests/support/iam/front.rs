//! The enforcing front: an HTTP proxy before the emulator that knows each principal's policies. Every
//! request signed by a function's credentials is mapped to the IAM accesses it needs
//! ([`super::access`]) and decided against that function's role ([`super::policy`]); refused, it gets
//! the service's own AccessDenied answer (the SDK sees what it would see on AWS) and is recorded, so a
//! test fails even where the code only logs the error. Allowed requests go on to the emulator unchanged.
//! The harness's own credentials (creating tables, reading mail back) pass unchecked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::access::{self, Signer};
use super::policy::{Access, Decision, Policy};

/// One authorized (or refused) access.
#[derive(Debug, Clone)]
pub struct Call {
    pub principal: String,
    pub access: Access,
    pub decision: Decision,
}

#[derive(Debug, Default)]
struct Log {
    calls: Vec<Call>,
    /// Requests refused before any policy was consulted: unsigned, an unknown principal, an operation
    /// the harness cannot map.
    refused: Vec<String>,
}

struct Inner {
    upstream: String,
    /// Services answered by another peer than the emulator (e.g. `lambda`).
    routes: Mutex<BTreeMap<String, String>>,
    roles: BTreeMap<String, Policy>,
    unchecked: BTreeSet<String>,
    log: Mutex<Log>,
    client: reqwest::Client,
}

/// A running front; clones share it. The server stops with the test's runtime.
#[derive(Clone)]
pub struct IamFront {
    pub url: String,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IamFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamFront").field("url", &self.url).finish()
    }
}

impl IamFront {
    /// Starts a front before `upstream` holding each principal (an access key id) to its policy;
    /// `unchecked` access keys pass without a check.
    pub async fn start(
        upstream: &str,
        roles: BTreeMap<String, Policy>,
        unchecked: &[&str],
    ) -> IamFront {
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_string(),
            routes: Mutex::new(BTreeMap::new()),
            roles,
            unchecked: unchecked.iter().map(|s| s.to_string()).collect(),
            log: Mutex::new(Log::default()),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client"),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the IAM front");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        IamFront { url, inner }
    }

    /// Requests for `service` (the credential scope's name, e.g. `lambda`) go to `url` once authorized.
    pub fn route(&self, service: &str, url: &str) {
        self.inner
            .routes
            .lock()
            .unwrap()
            .insert(service.to_string(), url.trim_end_matches('/').to_string());
    }

    /// `base`, pointed at this front and signing as `principal`.
    pub fn sdk_config(
        &self,
        base: &aws_config::SdkConfig,
        principal: &str,
    ) -> aws_config::SdkConfig {
        let credentials = aws_sdk_dynamodb::config::Credentials::new(
            principal,
            "iam-front-secret",
            None,
            None,
            "iam-front",
        );
        base.to_builder()
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
                credentials,
            ))
            .build()
    }

    pub fn policy(&self, principal: &str) -> Option<&Policy> {
        self.inner.roles.get(principal)
    }

    pub fn principals(&self) -> Vec<String> {
        self.inner.roles.keys().cloned().collect()
    }

    /// Every access decided so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.log.lock().unwrap().calls.clone()
    }

    /// What was refused: accesses a role does not grant, and requests no role could be asked about.
    pub fn denials(&self) -> Vec<String> {
        let log = self.inner.log.lock().unwrap();
        log.calls
            .iter()
            .filter(|c| !matches!(c.decision, Decision::Allowed { .. }))
            .map(|c| format!("{} may not {}", c.principal, c.access))
            .chain(log.refused.iter().cloned())
            .collect()
    }

    /// Per principal, the grants (action, resource pattern; statement sid) no allowed access used.
    pub fn unused_grants(&self) -> BTreeMap<String, Vec<String>> {
        let calls = self.calls();
        let mut out = BTreeMap::new();
        for (principal, policy) in &self.inner.roles {
            let mine: Vec<&Call> = calls.iter().filter(|c| &c.principal == principal).collect();
            let mut unused = Vec::new();
            for statement in &policy.statements {
                for grant in statement.grants() {
                    let used = mine.iter().any(|c| {
                        matches!(c.decision, Decision::Allowed { .. })
                            && statement.grant_covers(&grant, &c.access)
                    });
                    if !used {
                        unused.push(format!(
                            "{} on {} ({})",
                            grant.0,
                            grant.1,
                            statement.sid.as_deref().unwrap_or("no sid")
                        ));
                    }
                }
            }
            out.insert(principal.clone(), unused);
        }
        out
    }
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 512 * 1024 * 1024).await else {
        return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let query = parts.uri.query().unwrap_or_default().to_string();
    let path = parts.uri.path().to_string();
    let Some(Signer {
        access_key,
        service,
    }) = access::signer(&parts.headers, &query, &body)
    else {
        let what = format!("an unsigned request {} {path}", parts.method);
        inner.log.lock().unwrap().refused.push(what.clone());
        return denied("", &what);
    };
    if !inner.unchecked.contains(&access_key) {
        let Some(policy) = inner.roles.get(&access_key) else {
            let what = format!("{access_key} is no principal of the stacks ({service} {path})");
            inner.log.lock().unwrap().refused.push(what.clone());
            return denied(&service, &what);
        };
        let needed = match access::accesses(
            &service,
            &parts.method,
            &path,
            &query,
            &parts.headers,
            &body,
        ) {
            Ok(needed) => needed,
            Err(what) => {
                let what = format!(
                    "{access_key}: the IAM harness cannot map {what} to IAM actions \
                     (add it to tests/support/iam/access.rs)"
                );
                inner.log.lock().unwrap().refused.push(what.clone());
                return denied(&service, &what);
            }
        };
        let mut refusal = None;
        {
            let mut log = inner.log.lock().unwrap();
            for access in needed {
                let decision = policy.decide(&access);
                if !matches!(decision, Decision::Allowed { .. }) && refusal.is_none() {
                    refusal = Some(format!(
                        "User: arn:aws:sts::123456789012:assumed-role/{access_key} is not authorized to perform: {} on resource: {}",
                        access.action, access.resource
                    ));
                }
                log.calls.push(Call {
                    principal: access_key.clone(),
                    access,
                    decision,
                });
            }
        }
        if let Some(message) = refusal {
            return denied(&service, &message);
        }
    }
    let upstream = inner
        .routes
        .lock()
        .unwrap()
        .get(&service)
        .cloned()
        .unwrap_or_else(|| inner.upstream.clone());
    let url = match parts.uri.query() {
        Some(q) => format!("{upstream}{path}?{q}"),
        None => format!("{upstream}{path}"),
    };
    let mut forward = inner.client.request(parts.method.clone(), url);
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding" | "expect"
        ) {
            forward = forward.header(name, value);
        }
    }
    match forward.body(body).send().await {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let bytes = answer.bytes().await.unwrap_or_default();
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            for (name, value) in &headers {
                if !matches!(
                    name.as_str(),
                    "content-length" | "connection" | "transfer-encoding"
                ) {
                    response.headers_mut().append(name, value.clone());
                }
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("the emulator: {e}")).into_response(),
    }
}

/// AccessDenied in the service's own error format.
fn denied(service: &str, message: &str) -> Response {
    match service {
        "s3" => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>{}</Message></Error>",
                message.replace('&', "&amp;").replace('<', "&lt;")
            );
            let mut r = (StatusCode::FORBIDDEN, body).into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/xml"));
            r
        }
        "ses" | "lambda" => {
            let mut r = (
                StatusCode::FORBIDDEN,
                serde_json::json!({"message": message}).to_string(),
            )
                .into_response();
            let h: &mut HeaderMap = r.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            h.insert(
                "x-amzn-errortype",
                HeaderValue::from_static("AccessDeniedException"),
            );
            r
        }
        _ => {
            let mut r = (
                StatusCode::BAD_REQUEST,
                serde_json::json!({
                    "__type": "com.amazon.coral.service#AccessDeniedException",
                    "message": message,
                })
                .to_string(),
            )
                .into_response();
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/x-amz-json-1.0"),
            );
            r
        }
    }
}

impl IamFront {
    /// A front for one test's resources: the templates' roles resolved against them, before the
    /// emulator (`crate::aws::endpoint`).
    pub async fn for_resources(resources: &crate::aws::Resources) -> IamFront {
        let emulated = super::Emulated {
            table: resources.table.clone(),
            bucket: resources.bucket.clone(),
            train_queue_url: resources.queue_url.clone(),
            train_dlq_url: resources.dlq_url.clone(),
            webhook_queue_url: resources.webhook_queue_url.clone(),
            webhook_dlq_url: resources.webhook_dlq_url.clone(),
            deadline_function: format!("{}-deadline", resources.table),
            secrets: super::SecretArns::default(),
        };
        Self::for_emulated(&emulated).await
    }

    pub async fn for_emulated(emulated: &super::Emulated) -> IamFront {
        let (app, bridge) = super::stacks(emulated);
        let roles = super::roles(&app, &bridge);
        IamFront::start(&crate::aws::endpoint(), roles, &[super::HARNESS]).await
    }
}
