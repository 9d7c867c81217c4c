//! The realtime call bridge: a long-running axum server (Fargate in production, the local runner's second
//! port locally) between Twilio and the OpenAI Realtime API.
//!
//! - `POST /incoming-call-realtime`: Twilio's voice webhook. Signature checked, admission decided (fail
//!   closed), TwiML answered: `<Connect><Stream>` with a signed per-call token, or `<Say>` + `<Hangup/>`.
//! - `GET /twilio-media`: the Media Streams WebSocket. The token is verified before anything else; only
//!   then is a model session opened, and audio relayed both ways untouched (μ-law), with barge-in.
//! - `GET /healthz`: for the load balancer (503 while draining).
//!
//! On SIGTERM the server stops accepting, lets calls run up to a drain deadline, then ends them; every
//! call still writes its log and settles its minutes.

/// The secret variables this function's code reads (the Realtime API and call summaries need the model key; Twilio signatures and stream tokens need the auth token); shared::secrets fetches exactly
/// these at start-up, and tests/deploy_template.rs checks the templates grant exactly these.
pub const SECRETS: &[&str] = &["OPENAI_API_KEY", "TWILIO_AUTH_TOKEN"];

mod admission;
pub mod metrics;
pub mod pending;
pub mod protection;
mod session;
pub mod tracker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use url::Url;

use shared::Platform;
use shared::config::{Config, Secret};
use shared::models::chat::ChatClient;
use shared::models::{ModelKind, PriceBook};
use shared::voice::media_streams::MAX_INBOUND_MESSAGE;
use shared::voice::realtime::DEFAULT_TRANSCRIPTION_MODEL;
use shared::voice::signature::TwilioValidator;
use shared::voice::summary::ChatSummarizer;
use shared::voice::token::StreamTokenKey;

pub use pending::PendingSockets;
pub use session::OUTBOUND;
pub use tracker::CallTracker;

/// The webhook's path (part of the signed URL).
pub const WEBHOOK_PATH: &str = "/incoming-call-realtime";
/// The media stream's path.
pub const MEDIA_PATH: &str = "/twilio-media";
/// How long a stream token is valid: Twilio connects the stream right after reading the TwiML.
pub const TOKEN_TTL_SECS: i64 = 120;
/// How long a media socket may take to send `start`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the model may take.
pub const MODEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After the drain deadline, how long ended calls get to write their logs.
pub const FINISH_GRACE: Duration = Duration::from_secs(20);
/// The webhook's form body is small; anything bigger is not Twilio.
const MAX_WEBHOOK_BODY: usize = 64 * 1024;

/// What the bridge runs with, derived once from the configuration (`shared::config::BridgeConfig`
/// holds only what the environment says).
#[derive(Debug, Clone)]
pub struct BridgeSettings {
    /// The exact URL Twilio is configured to call (signatures are over it).
    pub webhook_url: Url,
    /// `ws(s)://…/twilio-media`, put in the TwiML.
    pub stream_url: String,
    /// `None` without `TWILIO_AUTH_TOKEN`: every webhook is then refused (fail closed).
    pub validator: Option<TwilioValidator>,
    pub token_key: Option<StreamTokenKey>,
    pub realtime_url: Url,
    pub realtime_model: String,
    pub api_key: Option<Secret>,
    pub transcription_model: String,
    pub max_call: Duration,
    pub drain: Duration,
    /// Media sockets that have not shown a valid token yet: at most this many in total …
    pub max_pending_sockets: usize,
    /// … and at most this many from one address (an IPv6 /64).
    pub max_pending_per_ip: usize,
    /// Count the caller behind the load balancer (`X-Forwarded-For`'s last hop), not the balancer.
    pub trust_forwarded_for: bool,
    /// Task scale-in protection while calls are live (on ECS, where `ECS_AGENT_URI` is set).
    pub protection: Option<protection::ScaleInProtection>,
    pub summarizer: Option<ChatSummarizer>,
    pub prices: PriceBook,
}

impl BridgeSettings {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let base = config
            .bridge
            .public_url
            .clone()
            .unwrap_or_else(|| config.public_url.clone());
        let webhook_url = under(&base, WEBHOOK_PATH).context("the bridge's webhook URL")?;
        let mut stream = under(&base, MEDIA_PATH).context("the bridge's stream URL")?;
        let scheme = if base.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        stream
            .set_scheme(scheme)
            .map_err(|()| anyhow::anyhow!("cannot make a WebSocket URL of {base}"))?;
        // Twilio refuses query strings on stream URLs; everything travels as <Parameter>s.
        stream.set_query(None);
        let realtime_url = config.models.realtime_url.clone();
        let realtime_model = realtime_url
            .query_pairs()
            .find(|(k, _)| k == "model")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| "gpt-realtime".into());
        let summarizer = match &config.models.chat_model {
            Some(model) => {
                let http = shared::http::sockets::client_builder()
                    .build()
                    .context("building the HTTP client")?;
                let client =
                    ChatClient::new(http, &config.models.base_url, config.models.api_key.clone())
                        .context("the chat model's URL")?;
                Some(ChatSummarizer::new(client, model.clone()))
            }
            None => None,
        };
        Ok(Self {
            webhook_url,
            stream_url: stream.to_string(),
            validator: config
                .twilio_auth_token
                .as_ref()
                .map(|t| TwilioValidator::new(t.expose())),
            token_key: config
                .twilio_auth_token
                .as_ref()
                .map(|t| StreamTokenKey::derive(t.expose())),
            prices: PriceBook::builtin().with_unpriced_model(&realtime_model, ModelKind::Realtime),
            realtime_url,
            realtime_model,
            api_key: config.models.api_key.clone(),
            transcription_model: DEFAULT_TRANSCRIPTION_MODEL.into(),
            max_call: Duration::from_secs(config.bridge.max_call_seconds),
            drain: Duration::from_secs(config.bridge.drain_seconds),
            max_pending_sockets: config.bridge.max_pending_sockets,
            max_pending_per_ip: config.bridge.max_pending_per_ip,
            trust_forwarded_for: config.bridge.trust_forwarded_for,
            protection: config
                .bridge
                .ecs_agent_uri
                .as_ref()
                .map(|agent| {
                    protection::ScaleInProtection::new(
                        agent,
                        Duration::from_secs(config.bridge.max_call_seconds),
                    )
                })
                .transpose()
                .context("the ECS agent's task protection endpoint")?,
            summarizer,
        })
    }
}

/// `base` with `path` appended to its path (a base may carry a prefix such as `/voice`).
fn under(base: &Url, path: &str) -> anyhow::Result<Url> {
    let mut url = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url.set_fragment(None);
    Ok(url)
}

/// The bridge: the platform, its settings, and the calls in progress.
#[derive(Debug)]
pub struct Bridge {
    pub platform: Arc<Platform>,
    pub settings: BridgeSettings,
    pub calls: CallTracker,
    pub pending: Arc<PendingSockets>,
}

impl Bridge {
    pub fn new(platform: Arc<Platform>) -> anyhow::Result<Arc<Self>> {
        let settings = BridgeSettings::from_config(&platform.config)?;
        Ok(Self::with_settings(platform, settings))
    }

    pub fn with_settings(platform: Arc<Platform>, settings: BridgeSettings) -> Arc<Self> {
        if settings.validator.is_none() {
            tracing::warn!("TWILIO_AUTH_TOKEN is not set: every incoming call will be refused");
        }
        Arc::new(Self {
            platform,
            pending: PendingSockets::new(settings.max_pending_sockets, settings.max_pending_per_ip),
            settings,
            calls: CallTracker::new(),
        })
    }
}

/// The bridge's routes.
pub fn app(bridge: Arc<Bridge>) -> Router {
    let router = Router::new()
        .route(WEBHOOK_PATH, post(admission::incoming_call))
        .route(MEDIA_PATH, get(media_socket))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
        .with_state(bridge);
    shared::http::finish(router)
}

async fn healthz(State(bridge): State<Arc<Bridge>>) -> Response {
    let calls = bridge.calls.active();
    if bridge.calls.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "draining", "calls": calls })),
        )
            .into_response()
    } else {
        axum::Json(json!({ "status": "ok", "calls": calls })).into_response()
    }
}

/// The caller's address: behind a trusted load balancer the last hop of `X-Forwarded-For` (the address
/// that connected to the balancer, which it appended; anything before it is the client's to write),
/// otherwise the socket's peer.
pub fn caller_ip(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trust_forwarded_for: bool,
) -> std::net::IpAddr {
    if !trust_forwarded_for {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|hop| hop.trim().parse().ok())
        .unwrap_or(peer)
}

async fn media_socket(
    State(bridge): State<Arc<Bridge>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: axum::http::HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if bridge.calls.is_draining() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    // Until its token is checked a socket is anonymous: it holds a place under the pending caps.
    let Some(axum::Extension(ConnectInfo(peer))) = peer else {
        tracing::warn!("media socket without a peer address; refused");
        return StatusCode::FORBIDDEN.into_response();
    };
    let caller = caller_ip(peer.ip(), &headers, bridge.settings.trust_forwarded_for);
    let Some(permit) = bridge.pending.try_admit(caller) else {
        tracing::warn!(peer = %caller, pending = bridge.pending.pending(), "too many unauthenticated media sockets; refused");
        return StatusCode::TOO_MANY_REQUESTS.into_response();
    };
    // Counted from the upgrade on, so shutdown waits for calls still setting up.
    let guard = bridge.calls.enter();
    upgrade
        .max_message_size(MAX_INBOUND_MESSAGE)
        .max_frame_size(MAX_INBOUND_MESSAGE)
        .on_upgrade(move |socket| session::run(bridge, socket, guard, permit))
}

/// A bound bridge, ready to serve.
pub struct BridgeServer {
    pub addr: SocketAddr,
    pub bridge: Arc<Bridge>,
    listener: TcpListener,
}

impl BridgeServer {
    pub async fn bind(platform: Arc<Platform>, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the call bridge on {addr}"))?;
        Self::from_listener(platform, listener)
    }

    pub fn from_listener(platform: Arc<Platform>, listener: TcpListener) -> anyhow::Result<Self> {
        let addr = listener
            .local_addr()
            .context("reading the bridge's address")?;
        Ok(Self {
            addr,
            bridge: Bridge::new(platform)?,
            listener,
        })
    }

    /// Serves until `shutdown` resolves, then drains: no new calls, calls in progress get up to the
    /// drain deadline, then are ended; returns once every call has written its log (or the grace ran out).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let bridge = self.bridge.clone();
        tracing::info!(addr = %self.addr, webhook = %bridge.settings.webhook_url, "call bridge listening");
        let load = tokio::spawn(report_load(bridge.clone(), LOAD_REPORT_EVERY));
        let protection = bridge
            .settings
            .protection
            .clone()
            .map(|p| tokio::spawn(p.follow(bridge.calls.clone())));
        let draining = bridge.clone();
        // The peer address feeds the per-address cap on unauthenticated media sockets.
        let served = axum::serve(
            shared::http::sockets::nodelay(self.listener),
            app(bridge.clone()).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.calls.start_draining();
        })
        .await
        .context("serving the call bridge");
        bridge.calls.start_draining();
        drain(&bridge).await;
        load.abort();
        if let Some(protection) = protection {
            // Every call has ended: clear protection (the follower may still be between steps).
            protection.abort();
            if let Some(p) = &bridge.settings.protection
                && let Err(e) = p.set(false).await
            {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "clearing task scale-in protection failed"
                );
            }
        }
        served
    }
}

/// How often the bridge logs its load line.
pub const LOAD_REPORT_EVERY: Duration = Duration::from_secs(60);
/// The load line's message (infra/fargate.yaml's metric filter matches it).
pub const LOAD_MESSAGE: &str = "bridge load";

/// Logs `bridge load` with `active_calls` at every tick: infra/fargate.yaml turns these lines into the
/// ActiveCalls metric (one point per task per minute) that autoscaling tracks.
pub async fn report_load(bridge: Arc<Bridge>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        log_load(bridge.calls.active(), bridge.calls.is_draining());
    }
}

fn log_load(active_calls: usize, draining: bool) {
    tracing::info!(active_calls, draining, "{LOAD_MESSAGE}");
}

async fn drain(bridge: &Bridge) {
    let calls = &bridge.calls;
    tracing::info!(
        calls = calls.active(),
        deadline_s = bridge.settings.drain.as_secs(),
        "call bridge draining"
    );
    if calls.wait_idle(bridge.settings.drain).await {
        tracing::info!("every call ended; call bridge stopped");
        return;
    }
    tracing::warn!(
        calls = calls.active(),
        "drain deadline passed; ending the calls still in progress"
    );
    calls.end_all();
    if calls.wait_idle(FINISH_GRACE).await {
        tracing::info!("every call ended and logged; call bridge stopped");
    } else {
        tracing::error!(
            calls = calls.active(),
            "calls still finishing after the grace period"
        );
    }
}

/// Resolves on SIGTERM (ECS stopping the task) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> BridgeSettings {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config::from_vars(&vars, shared::config::Mode::Deployed).unwrap();
        BridgeSettings::from_config(&config).unwrap()
    }

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_load_line_is_what_the_autoscaling_metric_filter_reads() {
        // The deployed format (shared::telemetry): JSON, the event's fields beside `message`.
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || log_load(3, false));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        // infra/fargate.yaml: FilterPattern `{ $.message = "bridge load" }`, MetricValue `$.active_calls`.
        assert_eq!(line["message"], LOAD_MESSAGE, "{text}");
        assert_eq!(line["active_calls"], 3, "{text}");
    }

    #[test]
    fn debug_output_never_shows_keys_or_tokens() {
        let s = settings(&[
            ("OPENAI_API_KEY", "sk-bridge-secret"),
            ("TWILIO_AUTH_TOKEN", "twilio-bridge-secret"),
            ("KOTOBA_CHAT_MODEL", "gpt-4o-mini"),
        ]);
        let shown = format!("{s:?} {s:#?}");
        for secret in ["sk-bridge-secret", "twilio-bridge-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn the_caller_behind_the_balancer_is_the_last_forwarded_hop() {
        let balancer: std::net::IpAddr = "10.0.1.5".parse().unwrap();
        let mut headers = axum::http::HeaderMap::new();
        // A client's own header first, then the address the balancer saw appended to it.
        headers.append(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().unwrap(),
        );
        assert_eq!(
            caller_ip(balancer, &headers, true),
            "198.51.100.7".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(
            caller_ip(balancer, &headers, false),
            balancer,
            "not trusted"
        );
        headers.append("x-forwarded-for", "2001:db8::1".parse().unwrap());
        assert_eq!(
            caller_ip(balancer, &headers, true),
            "2001:db8::1".parse::<std::net::IpAddr>().unwrap()
        );
        let mut junk = axum::http::HeaderMap::new();
        junk.insert("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(caller_ip(balancer, &junk, true), balancer);
    }

    #[test]
    fn urls_come_from_the_configured_public_url() {
        let s = settings(&[
            ("KOTOBA_PUBLIC_URL", "https://api.example.com"),
            (
                "KOTOBA_BRIDGE_PUBLIC_URL",
                "https://voice.example.com/bridge/",
            ),
            (
                "OPENAI_REALTIME_URL",
                "ws://127.0.0.1:9/v1/realtime?model=gpt-realtime-x",
            ),
        ]);
        assert_eq!(
            s.webhook_url.as_str(),
            "https://voice.example.com/bridge/incoming-call-realtime"
        );
        assert_eq!(s.stream_url, "wss://voice.example.com/bridge/twilio-media");
        assert_eq!(s.realtime_model, "gpt-realtime-x");
        assert!(s.validator.is_none() && s.token_key.is_none());
        let s = settings(&[("KOTOBA_PUBLIC_URL", "http://127.0.0.1:3001")]);
        assert_eq!(s.stream_url, "ws://127.0.0.1:3001/twilio-media");
        assert_eq!(s.realtime_model, "gpt-realtime");
    }
}
