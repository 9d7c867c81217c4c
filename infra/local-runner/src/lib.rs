//! The local runner: one process standing in for API Gateway, Lambda, SQS and EventBridge.
//!
//! It mounts every function's routes on one port under the same paths as API Gateway, runs the call
//! bridge on its own port (`KOTOBA_BRIDGE_LISTEN`), serves the blob directory's presigned URLs, and seeds
//! a demo tenant and site on first start, trained on the sample site it serves itself (`/demo/site/`).
//! Tests start it in-process (`start` on port 0), so they drive exactly what a developer runs.

mod background;
mod deadlines;
mod demo;
pub mod sample_site;
mod seed;
mod worker;

/// Aborts a background task when dropped (the queue loop lives exactly as long as the server).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

use background::Background;
use shared::Platform;
use shared::config::{Backend, Config};

pub use seed::{Demo, DemoTraining};

/// The deployed function each part of the runner stands in for: the logical ids of `template.yaml`, and
/// the call bridge's task role of `infra/fargate.yaml`.
pub mod functions {
    pub const MANAGEMENT: &str = "ManagementFunction";
    pub const USAGE: &str = "UsageFunction";
    pub const CREDITS: &str = "CreditsFunction";
    pub const TRAIN: &str = "TrainFunction";
    pub const CHAT: &str = "ChatFunction";
    pub const EMBED_SCRIPT: &str = "EmbedScriptFunction";
    pub const BILLING: &str = "BillingFunction";
    pub const WEBHOOK: &str = "WebhookFunction";
    pub const TRAIN_WORKER: &str = "TrainWorkerFunction";
    pub const WEBHOOK_WORKER: &str = "WebhookWorkerFunction";
    pub const DEADLINE_CRON: &str = "DeadlineCronFunction";
    pub const CALL_BRIDGE: &str = "CallBridgeTask";
    /// Every function that calls AWS (the console calls nothing).
    pub const ALL: [&str; 12] = [
        MANAGEMENT,
        USAGE,
        CREDITS,
        TRAIN,
        CHAT,
        EMBED_SCRIPT,
        BILLING,
        WEBHOOK,
        TRAIN_WORKER,
        WEBHOOK_WORKER,
        DEADLINE_CRON,
        CALL_BRIDGE,
    ];
}

/// The AWS SDK configuration a function's calls are made with, by its logical id
/// ([`functions`]): tests give each function credentials of its own, so an IAM-enforcing front before
/// the emulator can hold each to its role, as Lambda's execution roles do.
pub type SdkFor = Arc<dyn Fn(&str) -> aws_config::SdkConfig + Send + Sync>;

/// The platform each function runs on: one for all (embedded; AWS with one identity), or one per
/// function (AWS, with [`SdkFor`]).
#[derive(Clone)]
struct Platforms {
    shared: Arc<Platform>,
    own: std::collections::HashMap<&'static str, Arc<Platform>>,
}

impl Platforms {
    fn of(&self, function: &str) -> Arc<Platform> {
        self.own
            .get(function)
            .cloned()
            .unwrap_or_else(|| self.shared.clone())
    }

    fn per_function(&self) -> bool {
        !self.own.is_empty()
    }
}

/// A started runner: bound, seeded, not yet serving.
pub struct Runner {
    pub addr: SocketAddr,
    /// Where the call bridge listens.
    pub bridge_addr: SocketAddr,
    pub platform: Arc<Platform>,
    pub demo: Demo,
    /// The training worker, fed by the local queue loop (tests may also drive it directly).
    pub worker: Arc<train_worker::Worker>,
    /// The webhook delivery worker, fed by its own local queue loop.
    pub webhook_worker: Arc<webhook_worker::Worker>,
    platforms: Platforms,
    listener: TcpListener,
    app: Router,
    bridge: call_bridge::BridgeServer,
    stop: StopHandle,
    /// Where the queue loops and the timer run (their database calls yield to requests').
    background: Background,
}

/// Stops a spawned runner gracefully: the API stops accepting, the call bridge drains (its calls end by
/// the drain deadline and still write their logs).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<tokio::sync::watch::Sender<bool>>);

impl StopHandle {
    fn new() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(false)))
    }

    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once [`stop`](Self::stop) is called.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }
}

/// Binds, builds the platform and seeds the demo. In local mode an admin key is generated (and kept in
/// the data directory) when `KOTOBA_ADMIN_KEY` is not set, so the admin routes work out of the box.
pub async fn start(config: Config) -> anyhow::Result<Runner> {
    start_with(config, None).await
}

/// As [`start`], with a given AWS SDK configuration (tests point it at the emulator).
pub async fn start_with(
    config: Config,
    sdk: Option<aws_config::SdkConfig>,
) -> anyhow::Result<Runner> {
    start_as(config, sdk, None).await
}

/// As [`start_with`]; on AWS with `sdk_for`, every function gets a platform of its own whose calls are
/// made with `sdk_for(<its logical id>)` (the runner's own work, seeding the demo, uses `sdk`).
pub async fn start_as(
    mut config: Config,
    sdk: Option<aws_config::SdkConfig>,
    sdk_for: Option<SdkFor>,
) -> anyhow::Result<Runner> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    if config.listen.port() == 0 {
        // Tests bind port 0; presigned URLs must point at the port actually bound.
        config.public_url = format!("http://{addr}")
            .parse()
            .context("public URL of the bound address")?;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    if config.admin_key.is_none() {
        config.admin_key = Some(read_or_create_secret(&config.data_dir.join("admin.key"))?.into());
    }
    if config.webhook_key.is_none() {
        config.webhook_key =
            Some(read_or_create_webhook_key(&config.data_dir.join("webhook.key"))?.into());
    }
    let bridge_listener = TcpListener::bind(config.bridge_listen)
        .await
        .with_context(|| format!("binding the call bridge on {}", config.bridge_listen))?;
    let bridge_addr = bridge_listener
        .local_addr()
        .context("reading the bridge's bound address")?;
    if config.bridge.public_url.is_none() {
        // Locally the bridge is reached on its own port (a tunnel in front of it sets
        // KOTOBA_BRIDGE_PUBLIC_URL); Twilio signatures and the stream URL are over that address.
        config.bridge.public_url = Some(
            format!("http://{bridge_addr}")
                .parse()
                .context("public URL of the bridge's bound address")?,
        );
    }
    let mut own = std::collections::HashMap::new();
    if let (Backend::Aws(_), Some(sdk_for)) = (&config.backend, &sdk_for) {
        for function in functions::ALL {
            let platform = Platform::from_config_with(config.clone(), Some(sdk_for(function)))
                .await
                .with_context(|| format!("building the platform of {function}"))?;
            own.insert(function, platform);
        }
    }
    let platform = Platform::from_config_with(config, sdk)
        .await
        .context("building the platform")?;
    let platforms = Platforms {
        shared: platform.clone(),
        own,
    };
    let demo = seed::ensure_demo(&platform)
        .await
        .context("seeding the demo tenant")?;
    let app = app(&platforms, &demo)?;
    let worker = Arc::new(
        train_worker::Worker::new(platforms.of(functions::TRAIN_WORKER))
            .context("building the training worker")?,
    );
    let webhook_worker = Arc::new(
        webhook_worker::Worker::new(&platforms.of(functions::WEBHOOK_WORKER))
            .context("building the webhook worker")?,
    );
    let bridge = call_bridge::BridgeServer::from_listener(
        platforms.of(functions::CALL_BRIDGE),
        bridge_listener,
    )
    .context("preparing the call bridge")?;
    let background = Background::start(platform.config.background_yields)?;
    Ok(Runner {
        addr,
        bridge_addr,
        platform,
        platforms,
        demo,
        worker,
        webhook_worker,
        listener,
        app,
        bridge,
        stop: StopHandle::new(),
        background,
    })
}

/// Serves the API and the call bridge until `stop` is used; ends when both have stopped.
async fn serve(
    listener: TcpListener,
    app: Router,
    bridge: call_bridge::BridgeServer,
    stop: StopHandle,
) -> anyhow::Result<()> {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let api = axum::serve(shared::http::sockets::nodelay(listener), app)
        .with_graceful_shutdown(stop.stopped())
        .into_future();
    let bridge = bridge.serve(stop.stopped());
    let (api, bridge) = tokio::join!(api, bridge);
    api.context("serving the API")?;
    bridge
}

/// Every function's routes on one router, plus what API Gateway and S3 would otherwise provide, and
/// the demo page. With a platform per function, each function's routes record their errors in the
/// error log with that function's own platform (as each deployed function does).
fn app(platforms: &Platforms, demo: &Demo) -> anyhow::Result<Router> {
    use functions::*;
    let platform = &platforms.shared;
    let own = |routes: Router, function: &str| {
        if platforms.per_function() {
            routes
                .route_layer(axum::middleware::from_fn(shared::http::contract_rejections))
                .route_layer(axum::middleware::from_fn_with_state(
                    platforms.of(function),
                    shared::errorlog::layer,
                ))
        } else {
            routes
        }
    };
    let mut router = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .merge(own(
            management::routes(platforms.of(MANAGEMENT)),
            MANAGEMENT,
        ))
        .merge(own(usage::routes(platforms.of(USAGE)), USAGE))
        .merge(own(credits::routes(platforms.of(CREDITS)), CREDITS))
        .merge(own(train::routes(platforms.of(TRAIN)), TRAIN))
        .merge(own(
            chat::routes(platforms.of(CHAT)).context("building the chat function")?,
            CHAT,
        ))
        .merge(own(
            embed_script::routes(platforms.of(EMBED_SCRIPT)),
            EMBED_SCRIPT,
        ))
        .merge(own(billing::routes(platforms.of(BILLING)), BILLING))
        .merge(own(webhook::routes(platforms.of(WEBHOOK)), WEBHOOK))
        .merge(console::routes(&platform.config))
        .merge(demo::routes(&demo.site_id))
        .merge(sample_site::routes());
    if let Backend::Embedded = platform.config.backend
        && let Some(blobs) = platform.dir_blobs.clone()
    {
        router = router.merge(shared::blobs::dir::presigned_router(blobs));
    }
    if platforms.per_function() {
        Ok(shared::http::finish(router))
    } else {
        Ok(shared::http::finish_logged(router, platform.clone()))
    }
}

impl Runner {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the runner reaches itself on: its listen address, with an unspecified IP
    /// (`0.0.0.0`, `::`) replaced by loopback (the crawler's guard refuses unspecified addresses).
    pub fn loopback_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
    }

    /// The call bridge's base URL.
    pub fn bridge_url(&self) -> String {
        format!("http://{}", self.bridge_addr)
    }

    /// A handle that stops the runner once spawned.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// What `make dev` prints once the runner is up, with the demo site's training outcome.
    pub fn banner(&self) -> Banner {
        Banner {
            addr: self.addr,
            bridge: self.bridge_addr,
            webhook: self.bridge.bridge.settings.webhook_url.to_string(),
            admin: self
                .platform
                .config
                .admin_key
                .as_ref()
                .map_or_else(|| "(unset)".into(), |k| k.expose().to_string()),
            demo: self.demo.clone(),
            data_dir: self.platform.config.data_dir.display().to_string(),
        }
    }

    /// Serves the API, the call bridge and the training-queue loop in the background until the stop
    /// handle is used; the handle ends when the API and the bridge have stopped (the bridge's calls logged).
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        self.spawn_with_worker(true)
    }

    /// As [`spawn`](Self::spawn); without the queue loops when `worker` is false (tests that deliver
    /// training or webhook messages themselves, e.g. to interrupt a job or step a clock).
    ///
    /// The queue loops and the timer run on the [`Background`] runtime, whose database calls yield to
    /// requests'.
    pub fn spawn_with_worker(self, worker: bool) -> tokio::task::JoinHandle<()> {
        let Runner {
            platforms,
            worker: training,
            webhook_worker,
            listener,
            app,
            bridge,
            stop,
            background,
            ..
        } = self;
        let queue_loop = worker.then(|| {
            AbortOnDrop(background.spawn(worker::consume(
                platforms.of(functions::TRAIN_WORKER),
                training,
            )))
        });
        let timer =
            AbortOnDrop(background.spawn(deadlines::daily(platforms.of(functions::DEADLINE_CRON))));
        let webhook_loop = worker.then(|| {
            AbortOnDrop(background.spawn(worker::consume_webhooks(
                platforms.of(functions::WEBHOOK_WORKER),
                webhook_worker,
            )))
        });
        tokio::spawn(async move {
            // Dropped in reverse order when the server stops: the loops, then their runtime.
            let _background = background;
            let _stop_loop_with_server = queue_loop;
            let _stop_timer_with_server = timer;
            let _stop_webhooks_with_server = webhook_loop;
            if let Err(e) = serve(listener, app, bridge, stop).await {
                tracing::error!(error = format!("{e:#}"), "local runner stopped");
            }
        })
    }

    /// What `make dev` does once started: serves everything in the background, trains the demo site on
    /// the sample site through the API (skipped when an earlier start did), and returns the server's
    /// handle with the outcome.
    pub async fn spawn_dev(self) -> (tokio::task::JoinHandle<()>, DemoTraining) {
        let (platform, demo, url) = (
            self.platform.clone(),
            self.demo.clone(),
            self.loopback_url(),
        );
        let server = self.spawn();
        let training = seed::train_demo(&platform, &demo, &url).await;
        (server, training)
    }

    /// `make dev`: serves, trains the demo site, prints the banner, and runs until Ctrl-C or SIGTERM,
    /// then stops gracefully.
    pub async fn serve_until_ctrl_c(self) -> anyhow::Result<()> {
        let stop = self.stop.clone();
        tokio::spawn(async move {
            call_bridge::shutdown_signal().await;
            tracing::info!("shutting down");
            stop.stop();
        });
        let banner = self.banner();
        let (server, training) = self.spawn_dev().await;
        println!("{}", banner.render(&training));
        server.await.context("the runner's server task")
    }
}

/// The start-up banner's facts (taken before the runner is spawned).
#[derive(Debug, Clone)]
pub struct Banner {
    addr: SocketAddr,
    bridge: SocketAddr,
    webhook: String,
    admin: String,
    demo: Demo,
    data_dir: String,
}

impl Banner {
    pub fn render(&self, demo_training: &DemoTraining) -> String {
        format!(
            "
Kotoba is running at http://{addr}
  health:      curl http://{addr}/healthz
  demo page:   http://{addr}/demo   (the widget; ask it about the sample hotel)
  demo site:   {site}   (kept in {dir}/demo-site-id)
  demo index:  {demo_training}
  demo key:    {key}   (kept in {dir}/demo-api-key)
  demo tenant: {tenant}
  admin key:   {admin}   (kept in {dir}/admin.key unless KOTOBA_ADMIN_KEY is set)
  call bridge: http://{bridge} (Twilio webhook {webhook})
  data dir:    {dir}
",
            addr = self.addr,
            bridge = self.bridge,
            webhook = self.webhook,
            admin = self.admin,
            tenant = self.demo.tenant_id,
            site = self.demo.site_id,
            key = self.demo.api_key,
            dir = self.data_dir,
        )
    }
}

/// A secret kept in a file of the data directory (created once, readable only by its owner).
fn read_or_create_secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if existing.len() >= 16 {
            return Ok(existing.to_string());
        }
    }
    let secret = format!(
        "kta_{}",
        shared::ids::IdGenerator::secret_hex(&shared::ids::RandomIds, 24)
    );
    write_private(path, &secret)?;
    Ok(secret)
}

/// The key that seals webhook secrets, kept in the data directory (32 random bytes, base64).
fn read_or_create_webhook_key(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path)
        && shared::webhooks::secret::SealingKey::parse(existing.trim()).is_ok()
    {
        return Ok(existing.trim().to_string());
    }
    let key = shared::webhooks::secret::SealingKey::generate_encoded(&shared::ids::RandomIds);
    write_private(path, &key)?;
    Ok(key)
}

pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
