//! `TestApp`: the local runner started in-process on a random port, driven over HTTP like a client.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use shared::config::{Config, Mode};

/// Which adapter family the runner uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    /// DynamoDB, S3, SQS and SESv2 on the emulator, with resources of this test's own.
    Aws,
}

/// The Twilio auth token the test runner's bridge validates webhooks with (tests sign with it).
pub const TEST_TWILIO_AUTH_TOKEN: &str = "test-twilio-auth-token-0123456789";

pub struct TestApp {
    pub base_url: String,
    /// The call bridge's base URL (its own port, as in `make dev`).
    pub bridge_url: String,
    /// Stops the runner gracefully (the bridge drains and logs its calls); see [`TestApp::stop`].
    pub stop_handle: local_runner::StopHandle,
    pub admin_key: String,
    pub demo: local_runner::Demo,
    pub platform: std::sync::Arc<shared::Platform>,
    pub worker: std::sync::Arc<train_worker::Worker>,
    pub client: reqwest::Client,
    /// On the AWS adapters: the IAM-enforcing front every function's calls go through (each signed as
    /// its function, held to its role in the templates). A refused call fails the test when the app
    /// is dropped, even if the code only logged the error.
    pub iam: Option<crate::iam::IamFront>,
    _data_dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

/// A `TestApp` before its server task exists.
struct Prepared {
    base_url: String,
    bridge_url: String,
    stop_handle: local_runner::StopHandle,
    admin_key: String,
    demo: local_runner::Demo,
    platform: std::sync::Arc<shared::Platform>,
    worker: std::sync::Arc<train_worker::Worker>,
    iam: Option<crate::iam::IamFront>,
    dir: tempfile::TempDir,
}

impl Prepared {
    fn serving(self, server: tokio::task::JoinHandle<()>) -> TestApp {
        TestApp {
            base_url: self.base_url,
            bridge_url: self.bridge_url,
            stop_handle: self.stop_handle,
            admin_key: self.admin_key,
            demo: self.demo,
            platform: self.platform,
            worker: self.worker,
            client: shared::http::sockets::client_builder()
                .build()
                .expect("client"),
            iam: self.iam,
            _data_dir: self.dir,
            server,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(iam) = &self.iam
            && !std::thread::panicking()
        {
            let denied = iam.denials();
            assert!(
                denied.is_empty(),
                "AWS calls the templates' roles do not allow:\n  {}",
                denied.join("\n  ")
            );
        }
    }
}

/// A JSON response: status and body (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The contract's error code, when this is an error.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, &[]).await
    }

    /// Starts the runner with extra environment-style settings.
    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
        Self::start(backend, extra, true).await
    }

    /// Starts the runner without its training-queue loop: the test delivers messages to `worker`.
    pub async fn spawn_paused(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
        Self::start(backend, extra, false).await
    }

    /// Starts the runner as `make dev` does: serving, then the demo site trained on the sample site
    /// through the API. Returns the training's outcome too.
    pub async fn spawn_dev(extra: &[(&str, &str)]) -> (TestApp, local_runner::DemoTraining) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (app, runner) = Self::prepare(Backend::Embedded, extra, dir).await;
        let (server, training) = runner.spawn_dev().await;
        (app.serving(server), training)
    }

    async fn start(backend: Backend, extra: &[(&str, &str)], worker: bool) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let (app, runner) = Self::prepare(backend, extra, dir).await;
        let server = runner.spawn_with_worker(worker);
        app.serving(server)
    }

    /// A started (not yet serving) runner and the app that will drive it.
    async fn prepare(
        backend: Backend,
        extra: &[(&str, &str)],
        dir: tempfile::TempDir,
    ) -> (Prepared, local_runner::Runner) {
        crate::telemetry::init();
        let admin_key = format!("test-admin-{}", uuid::Uuid::new_v4().simple());
        let mut vars: HashMap<String, String> = [
            ("KOTOBA_LISTEN", "127.0.0.1:0".to_string()),
            ("KOTOBA_DATA_DIR", dir.path().display().to_string()),
            ("KOTOBA_ADMIN_KEY", admin_key.clone()),
            ("KOTOBA_BRIDGE_LISTEN", "127.0.0.1:0".to_string()),
            ("TWILIO_AUTH_TOKEN", TEST_TWILIO_AUTH_TOKEN.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut sdk = None;
        let mut iam = None;
        let mut sdk_for: Option<local_runner::SdkFor> = None;
        if backend == Backend::Aws {
            let resources = crate::aws::Resources::create().await;
            vars.extend(resources.vars());
            let base = crate::aws::sdk_config().await;
            let front = crate::iam::IamFront::for_resources(&resources).await;
            sdk_for = Some({
                let (front, base) = (front.clone(), base.clone());
                std::sync::Arc::new(move |function: &str| front.sdk_config(&base, function))
            });
            iam = Some(front);
            sdk = Some(base);
        }
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_vars(&vars, Mode::Local).expect("test configuration");
        let runner = local_runner::start_as(config, sdk, sdk_for)
            .await
            .expect("local runner starts");
        let base_url = runner.base_url();
        let bridge_url = runner.bridge_url();
        let stop_handle = runner.stop_handle();
        let demo = runner.demo.clone();
        let platform = runner.platform.clone();
        let worker = runner.worker.clone();
        let prepared = Prepared {
            base_url,
            bridge_url,
            stop_handle,
            admin_key,
            demo,
            platform,
            worker,
            iam,
            dir,
        };
        (prepared, runner)
    }

    /// Stops the runner as SIGTERM would, and waits until it has stopped (calls drained and logged).
    pub async fn stop(&mut self) {
        self.stop_handle.stop();
        let _ = (&mut self.server).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request with an optional bearer key and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(key), Some(body)).await
    }

    /// Sends `n` chat questions to a site at once. Returns how many were answered and the refusals
    /// (402); any other status fails the test.
    pub async fn chat_burst(&self, key: &str, site_id: &str, n: usize) -> (usize, Vec<Reply>) {
        use futures::StreamExt;
        let requests = (0..n).map(|i| {
            let body = json!({"site_id": site_id, "message": format!("opening hours {i}")});
            async move { self.post("/api/chat", key, body).await }
        });
        let replies: Vec<Reply> = futures::stream::iter(requests)
            .buffer_unordered(n)
            .collect()
            .await;
        let (served, refused): (Vec<Reply>, Vec<Reply>) = replies
            .into_iter()
            .partition(|r| r.status == StatusCode::OK);
        if let Some(other) = refused
            .iter()
            .find(|r| r.status != StatusCode::PAYMENT_REQUIRED)
        {
            panic!("neither answered nor refused with 402: {other:?}");
        }
        (served.len(), refused)
    }

    /// Creates a tenant through the admin route; returns (tenant_id, api_key).
    pub async fn create_tenant(&self, plan: &str) -> (String, String) {
        let reply = self
            .post(
                "/api/admin/tenants",
                &self.admin_key,
                json!({"name": "Test Co", "plan": plan}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        (
            reply.body["tenant_id"]
                .as_str()
                .expect("tenant_id")
                .to_string(),
            reply.body["api_key"].as_str().expect("api_key").to_string(),
        )
    }

    /// Sets a tenant's subscription status through the operator's route.
    pub async fn set_subscription(&self, tenant: &str, status: &str) {
        let r = self
            .call(
                Method::PUT,
                &format!("/api/admin/tenants/{tenant}/subscription"),
                Some(&self.admin_key),
                Some(json!({"status": status})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }

    /// The operator provisions `number` straight to a tenant (numbers are never self-declared).
    pub async fn assign_number(&self, number: &str, tenant: &str) {
        let r = self
            .post(
                "/api/admin/phone-numbers",
                &self.admin_key,
                json!({"number": number, "tenant_id": tenant}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }

    /// Queues training and waits for the job to finish; returns the finished job.
    pub async fn train(&self, key: &str, site_id: &str, url: &str, force: bool) -> Value {
        let reply = self
            .post(
                "/api/train/url",
                key,
                json!({"site_id": site_id, "url": url, "force_retrain": force}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
        let job = reply.body["job_id"].as_str().expect("job_id").to_string();
        self.wait_for_job(key, &job).await
    }

    /// Polls a job until it succeeds or fails (at most two minutes).
    pub async fn wait_for_job(&self, key: &str, job: &str) -> Value {
        self.wait_for_job_within(key, job, std::time::Duration::from_secs(120))
            .await
    }

    /// Polls a job every 100 ms until it succeeds or fails, for at most `limit` (benchmarks train
    /// large sites).
    pub async fn wait_for_job_within(
        &self,
        key: &str,
        job: &str,
        limit: std::time::Duration,
    ) -> Value {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let reply = self.get(&format!("/api/train/jobs/{job}"), key).await;
            assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
            if matches!(reply.body["status"].as_str(), Some("succeeded" | "failed")) {
                return reply.body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {job} did not finish: {:?}",
                reply.body
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await; // poll:
        }
    }

    /// Creates a site for a tenant; returns its JSON.
    pub async fn create_site(&self, key: &str, domains: &[&str]) -> Value {
        let reply = self
            .post(
                "/api/sites",
                key,
                json!({"name": "Test site", "allowed_domains": domains}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body
    }
}
