//! Configuration, read once from the environment into one typed struct.
//!
//! Every variable is listed in README.md. A missing or malformed variable is a [`ConfigError`] naming
//! it, reported at start-up, never a panic later.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use url::Url;

/// A key or token from the environment. `Debug` never shows it (configurations, settings and clients
/// get logged whole); [`Secret::expose`] is the one way to read it, at the point of use.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

use crate::billing::{BillingSettings, PlanPrices};
use crate::tenants::Plan;

/// Where the platform's state lives: embedded defaults under a data directory, or AWS.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// SQLite store and queue, a blob directory and a mail outbox under `data_dir`.
    Embedded,
    /// DynamoDB, S3, SQS and SESv2 (or an emulator at `AWS_ENDPOINT_URL`).
    Aws(AwsSettings),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AwsSettings {
    pub table: String,
    pub bucket: String,
    /// The training queue; its dead-letter queue is `dead_letter_queue_url`.
    pub train_queue_url: String,
    pub dead_letter_queue_url: String,
    /// The SQS redrive policy's maxReceiveCount (it must match the template).
    pub max_receives: u32,
    pub mail_from: String,
    /// The outbound webhook queue (`KOTOBA_WEBHOOK_QUEUE_URL`) and its dead-letter queue
    /// (`KOTOBA_WEBHOOK_DLQ_URL`).
    pub webhook_queue_url: String,
    pub webhook_dead_letter_queue_url: String,
    /// Emulators want path-style S3 addressing and checksums only when required.
    pub s3_force_path_style: bool,
    /// `AWS_ENDPOINT_URL`, when set (emulators); the SDK reads it too.
    pub endpoint_url: Option<String>,
}

/// Settings of the OpenAI-compatible model provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    pub base_url: Url,
    pub api_key: Option<Secret>,
    /// With no chat model, chat answers extractively from retrieved passages.
    pub chat_model: Option<String>,
    /// With no embedding model, retrieval is lexical only.
    pub embedding_model: Option<String>,
    /// `KOTOBA_EMBEDDING_INPUT`: how the embedding model is told queries from passages, when its name
    /// does not say (see `models::embeddings::InputStyle::parse`).
    pub embedding_input: Option<crate::models::embeddings::InputStyle>,
    /// `KOTOBA_EMBEDDING_BATCH`: texts per embeddings request (default 64; smaller for a CPU-hosted
    /// model, whose one request must finish within the client's timeout).
    pub embedding_batch: Option<usize>,
    /// `KOTOBA_RERANK_MODEL`: reorders retrieved passages through `POST {KOTOBA_RERANK_BASE_URL or
    /// OPENAI_BASE_URL}/rerank` (Cohere, Jina, TEI …); unset: no reranking.
    pub rerank_model: Option<String>,
    pub rerank_base_url: Option<Url>,
    pub realtime_url: Url,
}

/// The call bridge's part of the configuration, as read from the environment; the bridge derives its
/// runtime settings (`call_bridge::BridgeSettings`: URLs, validators, durations) from it.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    /// The bridge's public base URL, for Twilio signatures and the stream URL (`KOTOBA_BRIDGE_PUBLIC_URL`,
    /// default `KOTOBA_PUBLIC_URL`: in a deployment the bridge has its own).
    pub public_url: Option<Url>,
    /// The longest a call may last, whatever minutes remain.
    pub max_call_seconds: u64,
    /// On SIGTERM, how long calls in progress may go on before they are ended (ECS's stop timeout must
    /// leave room for this plus writing their logs).
    pub drain_seconds: u64,
    /// Media sockets still waiting to show their stream token: at most this many in total
    /// (`KOTOBA_BRIDGE_MAX_PENDING`) and from one address (`KOTOBA_BRIDGE_MAX_PENDING_PER_IP`; Twilio
    /// opens streams from few addresses, so it must fit a burst of simultaneous call starts).
    pub max_pending_sockets: usize,
    pub max_pending_per_ip: usize,
    /// Behind a load balancer (`KOTOBA_BRIDGE_TRUST_FORWARDED_FOR`, the Fargate stack sets it): the
    /// caller's address is the last hop of `X-Forwarded-For` (the one the balancer appended), not the
    /// balancer's own. Off by default: without a balancer in front, the header is the client's to forge.
    pub trust_forwarded_for: bool,
    /// The ECS agent's endpoint (`ECS_AGENT_URI`, set by ECS in every task): the bridge protects its
    /// task from scale-in through it while calls are live.
    pub ecs_agent_uri: Option<Url>,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub bridge_listen: SocketAddr,
    /// Whether the local runner's background work (training and webhook workers, the daily timer)
    /// takes the embedded database only when no request is waiting for it, so a burst of it does not
    /// slow chat (`KOTOBA_BACKGROUND_YIELDS`, default true; false = equal terms with requests).
    pub background_yields: bool,
    pub data_dir: PathBuf,
    /// The operator's key for `/api/admin/*`. Without it, admin routes answer 401.
    pub admin_key: Option<Secret>,
    /// The base URL clients reach this deployment at (presigned blob URLs in local mode, the bridge's
    /// public URL for Twilio signatures and the stream URL).
    pub public_url: Url,
    pub models: ModelSettings,
    pub twilio_auth_token: Option<Secret>,
    /// The call bridge's own settings.
    pub bridge: BridgeConfig,
    /// Where the chat widget streams answers when it is not the API itself (`KOTOBA_CHAT_STREAM_URL`:
    /// deployed, the CloudFront distribution in front of the streaming function URL).
    pub chat_stream_url: Option<Url>,
    /// Where the console loads Stripe.js from (`KOTOBA_STRIPE_JS_URL`, default Stripe's own; tests
    /// point it at localstripe's fake at `<base>/js.stripe.com/v3/`); its origin is the only third party
    /// the console's Content-Security-Policy admits.
    pub stripe_js_url: Url,
    /// Stripe: API, secrets, plan prices, grace period.
    pub billing: crate::billing::BillingSettings,
    /// Prepaid credits: the micro-USD a credit is worth, hourly limits, reservation lifetime.
    pub credits: crate::credits::CreditSettings,
    /// The key that seals outbound webhook signing secrets (`KOTOBA_WEBHOOK_KEY`: 32 bytes, base64).
    /// Without it, webhooks cannot be created or signed; the local runner keeps one in the data dir.
    pub webhook_key: Option<Secret>,
    /// Lets the crawler fetch 127.0.0.0/8 and ::1 (never other private ranges), on any port: local mode only.
    pub fetch_allow_loopback: bool,
    /// Ports the crawler may use besides 80 and 443 (`KOTOBA_FETCH_ALLOWED_PORTS`, comma-separated).
    pub fetch_allowed_ports: Vec<u16>,
    /// JSON log lines (Lambda, Fargate) instead of readable ones.
    pub log_json: bool,
    /// The local runner's training queue visibility timeout: how long a failed attempt waits before
    /// it is redelivered (SQS's is set in the template).
    pub train_retry_after: std::time::Duration,
    /// Most time one slice of a training job crawls before it continues in a follow-up message
    /// (`KOTOBA_TRAIN_SLICE_SECS`; unset: until the invocation's deadline, or to the end locally).
    pub train_slice_budget: Option<std::time::Duration>,
    pub backend: Backend,
}

/// A variable that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("configuration variable {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

/// Defaults that differ between the local runner and deployed functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The local runner: loopback crawling allowed by default, readable logs.
    Local,
    /// Lambda or Fargate: loopback crawling off unless set, JSON logs.
    Deployed,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env(mode: Mode) -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect(), mode)
    }

    /// Reads a given set of variables (tests use this; nothing global is touched).
    pub fn from_vars(vars: &HashMap<String, String>, mode: Mode) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let listen = env.parse_or("KOTOBA_LISTEN", "127.0.0.1:3000".parse().expect("literal"))?;
        let bridge_listen = env.parse_or(
            "KOTOBA_BRIDGE_LISTEN",
            "127.0.0.1:3001".parse().expect("literal"),
        )?;
        let background_yields = env.parse_or("KOTOBA_BACKGROUND_YIELDS", true)?;
        let data_dir = PathBuf::from(env.get("KOTOBA_DATA_DIR").unwrap_or("./.kotoba"));
        let admin_key = env.get("KOTOBA_ADMIN_KEY").map(Secret::from);
        if let Some(key) = &admin_key
            && key.expose().len() < 16
        {
            return Err(ConfigError {
                variable: "KOTOBA_ADMIN_KEY",
                problem: "must be at least 16 characters".into(),
            });
        }
        let public_url = env.url_or("KOTOBA_PUBLIC_URL", &format!("http://{listen}"))?;
        let models = ModelSettings {
            base_url: env.url_or("OPENAI_BASE_URL", "https://api.openai.com/v1")?,
            api_key: env.get("OPENAI_API_KEY").map(Secret::from),
            chat_model: env.get("KOTOBA_CHAT_MODEL").map(str::to_string),
            embedding_model: env.get("KOTOBA_EMBEDDING_MODEL").map(str::to_string),
            embedding_input: match env.get("KOTOBA_EMBEDDING_INPUT") {
                Some(raw) => Some(crate::models::embeddings::InputStyle::parse(raw).map_err(
                    |problem| ConfigError {
                        variable: "KOTOBA_EMBEDDING_INPUT",
                        problem,
                    },
                )?),
                None => None,
            },
            embedding_batch: match env.get("KOTOBA_EMBEDDING_BATCH") {
                Some(_) => Some(env.parse_or("KOTOBA_EMBEDDING_BATCH", 64usize)?.max(1)),
                None => None,
            },
            rerank_model: env.get("KOTOBA_RERANK_MODEL").map(str::to_string),
            rerank_base_url: match env.get("KOTOBA_RERANK_BASE_URL") {
                Some(_) => Some(env.url_or("KOTOBA_RERANK_BASE_URL", "")?),
                None => None,
            },
            realtime_url: env.url_or(
                "OPENAI_REALTIME_URL",
                "wss://api.openai.com/v1/realtime?model=gpt-realtime",
            )?,
        };
        let fetch_allow_loopback =
            env.bool_or("KOTOBA_FETCH_ALLOW_LOOPBACK", mode == Mode::Local)?;
        let fetch_allowed_ports = env.ports("KOTOBA_FETCH_ALLOWED_PORTS")?;
        let log_json = env.bool_or("KOTOBA_LOG_JSON", mode == Mode::Deployed)?;
        let train_retry_after =
            std::time::Duration::from_secs(env.parse_or("KOTOBA_TRAIN_RETRY_SECS", 60u64)?);
        let train_slice_budget = match env.parse_or("KOTOBA_TRAIN_SLICE_SECS", 0u64)? {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs)),
        };

        // The table name is the switch: with it, every port uses its AWS adapter.
        let backend = match env.get("KOTOBA_TABLE") {
            None => Backend::Embedded,
            Some(table) => Backend::Aws(AwsSettings {
                table: table.to_string(),
                bucket: env.required("KOTOBA_BUCKET")?.to_string(),
                train_queue_url: env.required("KOTOBA_TRAIN_QUEUE_URL")?.to_string(),
                dead_letter_queue_url: env.required("KOTOBA_TRAIN_DLQ_URL")?.to_string(),
                max_receives: env.parse_or("KOTOBA_TRAIN_MAX_RECEIVES", 3)?,
                webhook_queue_url: env.required("KOTOBA_WEBHOOK_QUEUE_URL")?.to_string(),
                webhook_dead_letter_queue_url: env.required("KOTOBA_WEBHOOK_DLQ_URL")?.to_string(),
                mail_from: env
                    .get("KOTOBA_MAIL_FROM")
                    .unwrap_or("no-reply@kotoba.invalid")
                    .to_string(),
                s3_force_path_style: env.bool_or(
                    "KOTOBA_S3_FORCE_PATH_STYLE",
                    env.get("AWS_ENDPOINT_URL").is_some(),
                )?,
                endpoint_url: env.get("AWS_ENDPOINT_URL").map(str::to_string),
            }),
        };

        let billing = billing_settings(&env, &public_url)?;
        if mode == Mode::Deployed {
            check_public_urls(&env, Runtime::detect(vars))?;
        }
        Ok(Self {
            listen,
            bridge_listen,
            background_yields,
            data_dir,
            admin_key,
            public_url,
            models,
            twilio_auth_token: env.get("TWILIO_AUTH_TOKEN").map(Secret::from),
            bridge: BridgeConfig {
                public_url: match env.get("KOTOBA_BRIDGE_PUBLIC_URL") {
                    Some(_) => Some(env.url_or("KOTOBA_BRIDGE_PUBLIC_URL", "")?),
                    None => None,
                },
                max_call_seconds: env.parse_or("KOTOBA_CALL_MAX_SECONDS", 1800)?,
                drain_seconds: env.parse_or("KOTOBA_BRIDGE_DRAIN_SECONDS", 90)?,
                max_pending_sockets: env.parse_or("KOTOBA_BRIDGE_MAX_PENDING", 1024)?,
                max_pending_per_ip: env.parse_or("KOTOBA_BRIDGE_MAX_PENDING_PER_IP", 128)?,
                trust_forwarded_for: env.bool_or("KOTOBA_BRIDGE_TRUST_FORWARDED_FOR", false)?,
                ecs_agent_uri: match env.get("ECS_AGENT_URI") {
                    Some(_) => Some(env.url_or("ECS_AGENT_URI", "")?),
                    None => None,
                },
            },
            chat_stream_url: match env.get("KOTOBA_CHAT_STREAM_URL") {
                Some(_) => Some(env.url_or("KOTOBA_CHAT_STREAM_URL", "")?),
                None => None,
            },
            stripe_js_url: env.url_or("KOTOBA_STRIPE_JS_URL", "https://js.stripe.com/v3/")?,
            billing,
            credits: credit_settings(&env)?,
            webhook_key: env.get("KOTOBA_WEBHOOK_KEY").map(Secret::from),
            fetch_allow_loopback,
            fetch_allowed_ports,
            log_json,
            train_retry_after,
            train_slice_budget,
            backend,
        })
    }
}

/// Where a deployed process runs, as the variables its platform sets say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// AWS Lambda (`AWS_LAMBDA_FUNCTION_NAME`).
    Lambda,
    /// ECS on Fargate (`ECS_CONTAINER_METADATA_URI_V4`, `ECS_AGENT_URI`).
    Fargate,
    /// Anywhere else (a laptop, a test).
    Elsewhere,
}

impl Runtime {
    pub fn detect(vars: &HashMap<String, String>) -> Self {
        let set = |name: &str| vars.get(name).is_some_and(|v| !v.trim().is_empty());
        if set("AWS_LAMBDA_FUNCTION_NAME") {
            Runtime::Lambda
        } else if set("ECS_CONTAINER_METADATA_URI_V4") || set("ECS_AGENT_URI") {
            Runtime::Fargate
        } else {
            Runtime::Elsewhere
        }
    }
}

/// Whether a URL points back at the machine it is used on (loopback, unspecified, `localhost`).
fn is_local(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => true,
    }
}

/// On Lambda and Fargate, the addresses customers and Twilio are sent to must be the stack's public
/// ones: a loopback address (the local default) is a start-up error naming the variable and the stack
/// parameter that sets it, never a Checkout that returns customers to `http://127.0.0.1:3000`.
fn check_public_urls(env: &Env<'_>, runtime: Runtime) -> Result<(), ConfigError> {
    if runtime == Runtime::Elsewhere {
        return Ok(());
    }
    let on = match runtime {
        Runtime::Lambda => "Lambda",
        _ => "Fargate",
    };
    for (variable, parameter) in [
        ("KOTOBA_PUBLIC_URL", "PublicUrl"),
        ("KOTOBA_BRIDGE_PUBLIC_URL", "PublicUrl (infra/fargate.yaml)"),
        ("KOTOBA_BILLING_RETURN_URL", "PublicUrl"),
    ] {
        if env.get(variable).is_some() && is_local(&env.url_or(variable, "")?) {
            return Err(ConfigError {
                variable,
                problem: format!(
                    "{:?} points at this machine; on {on} set the stack parameter {parameter} to \
                     the https:// address clients reach the stack at",
                    env.get(variable).unwrap_or_default()
                ),
            });
        }
    }
    if env.get("KOTOBA_PUBLIC_URL").is_none() && env.get("STRIPE_SECRET_KEY").is_some() {
        return Err(ConfigError {
            variable: "KOTOBA_PUBLIC_URL",
            problem: "is required when Stripe is configured (Checkout and the Billing Portal \
                      send customers back to it): set the stack parameter PublicUrl"
                .into(),
        });
    }
    if runtime == Runtime::Fargate
        && env.get("KOTOBA_BRIDGE_PUBLIC_URL").is_none()
        && env.get("KOTOBA_PUBLIC_URL").is_none()
    {
        return Err(ConfigError {
            variable: "KOTOBA_BRIDGE_PUBLIC_URL",
            problem: "is required on Fargate (Twilio signs its webhooks over it): set the bridge \
                      stack's parameter PublicUrl"
                .into(),
        });
    }
    Ok(())
}

/// Credit settings: `KOTOBA_MICRO_USD_PER_CREDIT` (default ¥1 ≈ 6,700), `KOTOBA_CREDIT_HOURLY_LIMIT`.
fn credit_settings(env: &Env<'_>) -> Result<crate::credits::CreditSettings, ConfigError> {
    let defaults = crate::credits::CreditSettings::default();
    let rate: i64 = env.parse_or(
        "KOTOBA_MICRO_USD_PER_CREDIT",
        defaults.micro_usd_per_credit.get(),
    )?;
    let micro_usd_per_credit = std::num::NonZeroI64::new(rate)
        .filter(|r| r.get() > 0)
        .ok_or(ConfigError {
            variable: "KOTOBA_MICRO_USD_PER_CREDIT",
            problem: format!("{rate} is not a positive number of micro-USD"),
        })?;
    Ok(crate::credits::CreditSettings {
        micro_usd_per_credit,
        hourly_limit: env.parse_or("KOTOBA_CREDIT_HOURLY_LIMIT", defaults.hourly_limit)?,
        hold_secs: defaults.hold_secs,
        call_minute_credits: env
            .parse_or("KOTOBA_CALL_MINUTE_CREDITS", defaults.call_minute_credits)?
            .max(0),
        anomaly: crate::credits::anomaly::AnomalySettings {
            critical_multiple: env
                .parse_or(
                    "KOTOBA_ANOMALY_CRITICAL_MULTIPLE",
                    defaults.anomaly.critical_multiple,
                )?
                .max(defaults.anomaly.alert_multiple),
            min_baseline: env
                .parse_or("KOTOBA_ANOMALY_MIN_BASELINE", defaults.anomaly.min_baseline)?
                .max(1),
            ..defaults.anomaly
        },
    })
}

/// Stripe's settings: without `STRIPE_SECRET_KEY` billing is off; without `STRIPE_WEBHOOK_SECRET` the
/// webhook refuses every delivery.
fn billing_settings(env: &Env<'_>, public_url: &Url) -> Result<BillingSettings, ConfigError> {
    let secret = |name| env.get(name).map(|v| Secret::new(v.to_string()));
    let mut prices = Vec::new();
    for (plan, name) in [
        (Plan::Starter, "STRIPE_PRICE_STARTER"),
        (Plan::Pro, "STRIPE_PRICE_PRO"),
        (Plan::Enterprise, "STRIPE_PRICE_ENTERPRISE"),
    ] {
        if let Some(price) = env.get(name) {
            prices.push((plan, price.to_string()));
        }
    }
    let default_return = public_url
        .join("/console/billing")
        .map_err(|e| ConfigError {
            variable: "KOTOBA_PUBLIC_URL",
            problem: e.to_string(),
        })?;
    let grace_days: u64 = env.parse_or("KOTOBA_PAST_DUE_GRACE_DAYS", 7)?;
    Ok(BillingSettings {
        api_base: env.url_or("STRIPE_API_BASE", crate::billing::stripe::DEFAULT_API_BASE)?,
        secret_key: secret("STRIPE_SECRET_KEY"),
        webhook_secret: secret("STRIPE_WEBHOOK_SECRET"),
        publishable_key: match env.get("STRIPE_PUBLISHABLE_KEY") {
            Some(key) if !key.starts_with("pk_") => {
                return Err(ConfigError {
                    variable: "STRIPE_PUBLISHABLE_KEY",
                    problem: "a publishable key starts with pk_ (never put a secret key here)"
                        .into(),
                });
            }
            key => key.map(str::to_string),
        },
        prices: PlanPrices::new(prices),
        return_url: env.url_or("KOTOBA_BILLING_RETURN_URL", default_return.as_str())?,
        past_due_grace: std::time::Duration::from_secs(grace_days * 86_400),
    })
}

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    /// A set, non-blank value.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.get(name).ok_or(ConfigError {
            variable: name,
            problem: "is required when KOTOBA_TABLE is set".into(),
        })
    }

    fn parse_or<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|e| ConfigError {
                variable: name,
                problem: format!("{raw:?}: {e}"),
            }),
        }
    }

    /// A comma-separated list of ports (1 to 65535); unset is empty.
    fn ports(&self, name: &'static str) -> Result<Vec<u16>, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.parse::<u16>() {
                Ok(port) if port != 0 => Ok(port),
                _ => Err(ConfigError {
                    variable: name,
                    problem: format!("{p:?} is not a port (1 to 65535)"),
                }),
            })
            .collect()
    }

    fn bool_or(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError {
                variable: name,
                problem: format!("{other:?} is not true/false/1/0/yes/no/on/off"),
            }),
        }
    }

    fn url_or(&self, name: &'static str, default: &str) -> Result<Url, ConfigError> {
        let raw = self.get(name).unwrap_or(default);
        let url = Url::parse(raw).map_err(|e| ConfigError {
            variable: name,
            problem: format!("{raw:?}: {e}"),
        })?;
        if url.host_str().is_none() {
            return Err(ConfigError {
                variable: name,
                problem: format!("{raw:?} has no host"),
            });
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_local_and_embedded() {
        let c = Config::from_vars(&vars(&[]), Mode::Local).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.bridge_listen.to_string(), "127.0.0.1:3001");
        assert!(c.background_yields);
        assert_eq!(c.billing.publishable_key, None);
        let e = Config::from_vars(
            &vars(&[("STRIPE_PUBLISHABLE_KEY", "sk_live_x")]),
            Mode::Local,
        )
        .unwrap_err();
        assert_eq!(e.variable, "STRIPE_PUBLISHABLE_KEY");
        let e = Config::from_vars(
            &vars(&[("KOTOBA_BACKGROUND_YIELDS", "sometimes")]),
            Mode::Local,
        )
        .unwrap_err();
        assert_eq!(e.variable, "KOTOBA_BACKGROUND_YIELDS");
        assert_eq!(c.data_dir, PathBuf::from("./.kotoba"));
        assert!(c.fetch_allow_loopback);
        assert!(!c.log_json);
        assert_eq!(c.backend, Backend::Embedded);
        assert_eq!(c.models.chat_model, None);
        assert_eq!(c.bridge.public_url, None);
        assert_eq!(
            (c.bridge.max_call_seconds, c.bridge.drain_seconds),
            (1800, 90)
        );
    }

    #[test]
    fn stripe_settings_and_their_defaults() {
        let c = Config::from_vars(&vars(&[]), Mode::Local).unwrap();
        assert_eq!(c.billing.api_base.as_str(), "https://api.stripe.com/");
        assert!(c.billing.secret_key.is_none() && c.billing.webhook_secret.is_none());
        assert_eq!(c.billing.past_due_grace.as_secs(), 7 * 86_400);
        assert_eq!(
            c.billing.return_url.as_str(),
            "http://127.0.0.1:3000/console/billing"
        );
        let c = Config::from_vars(
            &vars(&[
                ("STRIPE_SECRET_KEY", "sk_test_x"),
                ("STRIPE_PRICE_PRO", "price_pro"),
                ("KOTOBA_PAST_DUE_GRACE_DAYS", "3"),
            ]),
            Mode::Local,
        )
        .unwrap();
        assert_eq!(c.billing.prices.plan_of("price_pro"), Some(Plan::Pro));
        assert_eq!(c.billing.past_due_grace.as_secs(), 3 * 86_400);
        assert!(
            !format!("{c:?}").contains("sk_test_x"),
            "secrets never print"
        );
        let e = Config::from_vars(
            &vars(&[("KOTOBA_PAST_DUE_GRACE_DAYS", "soon")]),
            Mode::Local,
        )
        .unwrap_err();
        assert_eq!(e.variable, "KOTOBA_PAST_DUE_GRACE_DAYS");
    }

    #[test]
    fn deployed_mode_never_allows_loopback_by_default() {
        let c = Config::from_vars(&vars(&[]), Mode::Deployed).unwrap();
        assert!(!c.fetch_allow_loopback);
        assert!(c.log_json);
    }

    #[test]
    fn on_lambda_or_fargate_a_loopback_public_url_names_the_stack_parameter() {
        let lambda = [("AWS_LAMBDA_FUNCTION_NAME", "kotoba-prod-BillingFunction-x")];
        let fargate = [(
            "ECS_CONTAINER_METADATA_URI_V4",
            "http://169.254.170.2/v4/abc",
        )];
        for (runtime, public) in [
            (&lambda, "http://127.0.0.1:3000"),
            (&fargate, "http://localhost:3001"),
            (&lambda, "https://[::1]/"),
        ] {
            let mut v = vars(runtime);
            v.insert("KOTOBA_PUBLIC_URL".into(), public.into());
            let e = Config::from_vars(&v, Mode::Deployed).unwrap_err();
            assert_eq!(e.variable, "KOTOBA_PUBLIC_URL", "{e}");
            assert!(e.to_string().contains("PublicUrl"), "{e}");
        }
        // Stripe sends customers back to the public URL: on Lambda there must be one.
        let mut v = vars(&lambda);
        v.insert("STRIPE_SECRET_KEY".into(), "sk_live_x".into());
        let e = Config::from_vars(&v, Mode::Deployed).unwrap_err();
        assert_eq!(e.variable, "KOTOBA_PUBLIC_URL");
        assert!(e.to_string().contains("PublicUrl"), "{e}");
        v.insert(
            "KOTOBA_PUBLIC_URL".into(),
            "https://api.example.co.jp".into(),
        );
        let c = Config::from_vars(&v, Mode::Deployed).unwrap();
        assert_eq!(
            c.billing.return_url.as_str(),
            "https://api.example.co.jp/console/billing"
        );
        // The bridge needs its own public address on Fargate.
        let e = Config::from_vars(&vars(&fargate), Mode::Deployed).unwrap_err();
        assert_eq!(e.variable, "KOTOBA_BRIDGE_PUBLIC_URL");
        let mut v = vars(&fargate);
        v.insert(
            "KOTOBA_BRIDGE_PUBLIC_URL".into(),
            "http://127.0.0.1:3001".into(),
        );
        v.insert(
            "KOTOBA_PUBLIC_URL".into(),
            "https://voice.example.co.jp".into(),
        );
        let e = Config::from_vars(&v, Mode::Deployed).unwrap_err();
        assert_eq!(e.variable, "KOTOBA_BRIDGE_PUBLIC_URL");
        // A function without Stripe needs none; off AWS (and locally) loopback is the default.
        assert!(Config::from_vars(&vars(&lambda), Mode::Deployed).is_ok());
        let local = Config::from_vars(&vars(&[]), Mode::Deployed).unwrap();
        assert_eq!(local.public_url.as_str(), "http://127.0.0.1:3000/");
        assert!(Config::from_vars(&vars(&lambda), Mode::Local).is_ok());
    }

    #[test]
    fn errors_name_the_variable() {
        let e = Config::from_vars(&vars(&[("KOTOBA_LISTEN", "nope")]), Mode::Local).unwrap_err();
        assert_eq!(e.variable, "KOTOBA_LISTEN");
        let e = Config::from_vars(
            &vars(&[("KOTOBA_FETCH_ALLOW_LOOPBACK", "maybe")]),
            Mode::Local,
        )
        .unwrap_err();
        assert_eq!(e.variable, "KOTOBA_FETCH_ALLOW_LOOPBACK");
        let e = Config::from_vars(&vars(&[("KOTOBA_TABLE", "t")]), Mode::Local).unwrap_err();
        assert_eq!(e.variable, "KOTOBA_BUCKET");
        assert!(e.to_string().contains("KOTOBA_BUCKET"));
        let e =
            Config::from_vars(&vars(&[("KOTOBA_ADMIN_KEY", "short")]), Mode::Local).unwrap_err();
        assert_eq!(e.variable, "KOTOBA_ADMIN_KEY");
        let e =
            Config::from_vars(&vars(&[("OPENAI_BASE_URL", "not a url")]), Mode::Local).unwrap_err();
        assert_eq!(e.variable, "OPENAI_BASE_URL");
        let e = Config::from_vars(
            &vars(&[("KOTOBA_FETCH_ALLOWED_PORTS", "8080,http")]),
            Mode::Local,
        )
        .unwrap_err();
        assert_eq!(e.variable, "KOTOBA_FETCH_ALLOWED_PORTS");
        let c = Config::from_vars(
            &vars(&[("KOTOBA_FETCH_ALLOWED_PORTS", " 8080, 8443 ")]),
            Mode::Local,
        )
        .unwrap();
        assert_eq!(c.fetch_allowed_ports, vec![8080, 8443]);
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let c = Config::from_vars(
            &vars(&[
                ("KOTOBA_ADMIN_KEY", "admin-secret-0123456789"),
                ("OPENAI_API_KEY", "sk-openai-secret-value"),
                ("TWILIO_AUTH_TOKEN", "twilio-secret-token"),
            ]),
            Mode::Local,
        )
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        for secret in [
            "admin-secret-0123456789",
            "sk-openai-secret-value",
            "twilio-secret-token",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn the_table_name_switches_to_aws() {
        let c = Config::from_vars(
            &vars(&[
                ("KOTOBA_TABLE", "kotoba"),
                ("KOTOBA_BUCKET", "kotoba-blobs"),
                ("KOTOBA_TRAIN_QUEUE_URL", "http://127.0.0.1:5000/123/train"),
                (
                    "KOTOBA_TRAIN_DLQ_URL",
                    "http://127.0.0.1:5000/123/train-dlq",
                ),
                (
                    "KOTOBA_WEBHOOK_QUEUE_URL",
                    "http://127.0.0.1:5000/123/hooks",
                ),
                (
                    "KOTOBA_WEBHOOK_DLQ_URL",
                    "http://127.0.0.1:5000/123/hooks-dlq",
                ),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ]),
            Mode::Local,
        )
        .unwrap();
        let Backend::Aws(aws) = c.backend else {
            panic!("expected AWS")
        };
        assert_eq!(aws.table, "kotoba");
        assert!(
            aws.s3_force_path_style,
            "an endpoint override implies an emulator"
        );
        assert_eq!(aws.max_receives, 3);
    }
}
