//! Direct AI calls (`POST /api/ai/execute`): one model call with a system prompt per function type,
//! metered like every AI action — reserve the most it can cost (the prompt and `max_tokens` at the
//! model's price), call the model, settle what it actually cost and release the rest (all of it when
//! the model failed before producing anything) — and logged like a chat answer (an execution log
//! entry with the tokens, the price it was charged at, the latency and the outcome).
//!
//! The model is chosen by the same rule as chat: the one asked for must be allowed on the tenant's
//! plan (403 otherwise); without one, the configured chat model when the plan allows it, else the
//! plan's default.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Platform;
use crate::chat::cache::TtlCache;
use crate::chat::logs::LOG_TTL_SECS;
use crate::chunk::Tokenizer;
use crate::clock::rfc3339;
use crate::credits::{Credits, Meter, MeteredFunction, account};
use crate::ids::TenantId;
use crate::models::chat::{ChatClient, ChatEvent, ChatRequest, Message, ProviderError};
use crate::models::{ModelKind, ModelPolicy, PolicyError, PriceBook};
use crate::money::MicroUsd;
use crate::store::{Condition, Index, Item, ItemStore, StoreError, keys};
use crate::tenants::{Inactive, SubscriptionStatus, Tenant};
use crate::usage;

/// Longest input, in characters (about as many tokens for Japanese text, a quarter for English).
pub const MAX_INPUT_CHARS: usize = 20_000;
/// Most tokens a call may generate.
pub const MAX_OUTPUT_TOKENS: u32 = 4_096;
/// Tokens generated when the request does not say.
pub const DEFAULT_MAX_TOKENS: u32 = 1_024;
/// The longest model name accepted.
const MAX_MODEL_CHARS: usize = 100;

/// What kind of call: each has its own system prompt and default temperature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FunctionType {
    /// A conversational reply.
    Chatbot,
    /// A summary of the input.
    Summary,
    /// An analysis of the input: findings, then a conclusion.
    Analysis,
    /// The input as it is, with no instructions of ours beyond plain helpfulness.
    Custom,
}

impl FunctionType {
    pub const ALL: [FunctionType; 4] = [
        FunctionType::Chatbot,
        FunctionType::Summary,
        FunctionType::Analysis,
        FunctionType::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FunctionType::Chatbot => "chatbot",
            FunctionType::Summary => "summary",
            FunctionType::Analysis => "analysis",
            FunctionType::Custom => "custom",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == raw)
            .ok_or_else(|| {
                format!(
                    "{raw:?} is not a function type; expected one of {}",
                    Self::ALL.map(FunctionType::as_str).join(", ")
                )
            })
    }

    /// The system prompt the input is sent under.
    pub fn system_prompt(self) -> &'static str {
        match self {
            FunctionType::Chatbot => {
                "You are a friendly, concise assistant for a business's customers. Answer in the \
                 language of the message. If you do not know, say so rather than guess."
            }
            FunctionType::Summary => {
                "Summarise the text the user gives you. Keep the facts, names, numbers and dates; \
                 leave out repetition. Write the summary in the language of the text, as short \
                 paragraphs or bullet points, and add nothing that is not in the text."
            }
            FunctionType::Analysis => {
                "Analyse the text the user gives you: list the key points and findings, note risks \
                 or open questions, then give a short conclusion. Write in the language of the text \
                 and base every statement on the text."
            }
            FunctionType::Custom => "You are a helpful assistant.",
        }
    }

    /// The temperature used when the request does not say.
    pub fn default_temperature(self) -> f64 {
        match self {
            FunctionType::Chatbot | FunctionType::Custom => 0.7,
            FunctionType::Summary => 0.3,
            FunctionType::Analysis => 0.2,
        }
    }
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub function_type: FunctionType,
    pub input: String,
    pub model: Option<String>,
    pub temperature: f64,
    pub max_tokens: u32,
}

/// A request as it comes (every field checked by [`Execution::parse`]).
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    /// `chatbot`, `summary`, `analysis` or `custom`.
    pub function_type: String,
    /// The text to work on (1 to 20,000 characters).
    pub input: String,
    /// A chat model the plan allows; the plan's default when absent.
    pub model: Option<String>,
    /// 0 to 2; by default 0.7 for chatbot and custom, 0.3 for summary, 0.2 for analysis.
    pub temperature: Option<f64>,
    /// 1 to 4,096 (default 1,024): the most tokens generated, and what the reservation covers.
    pub max_tokens: Option<u32>,
}

impl Execution {
    /// Checks every field, naming the first one out of range.
    pub fn parse(body: ExecuteBody) -> Result<Self, ExecuteError> {
        let invalid =
            |field: &'static str, message: String| ExecuteError::Invalid { field, message };
        let function_type = FunctionType::parse(body.function_type.trim())
            .map_err(|m| invalid("function_type", m))?;
        if body.input.trim().is_empty() {
            return Err(invalid("input", "input must not be empty".into()));
        }
        let chars = body.input.chars().count();
        if chars > MAX_INPUT_CHARS {
            return Err(invalid(
                "input",
                format!("input is {chars} characters; at most {MAX_INPUT_CHARS} are accepted"),
            ));
        }
        if body.input.contains('\0') {
            return Err(invalid(
                "input",
                "input must not contain NUL characters".into(),
            ));
        }
        let model = match body.model.as_deref().map(str::trim) {
            None => None,
            Some("") => {
                return Err(invalid(
                    "model",
                    "model must not be empty when given".into(),
                ));
            }
            Some(m) if m.chars().count() > MAX_MODEL_CHARS || m.chars().any(char::is_control) => {
                return Err(invalid("model", "model is not a model name".into()));
            }
            Some(m) => Some(m.to_string()),
        };
        let temperature = match body.temperature {
            None => function_type.default_temperature(),
            Some(t) if t.is_finite() && (0.0..=2.0).contains(&t) => t,
            Some(t) => {
                return Err(invalid(
                    "temperature",
                    format!("temperature {t} is out of range: 0 to 2"),
                ));
            }
        };
        let max_tokens = match body.max_tokens {
            None => DEFAULT_MAX_TOKENS,
            Some(n @ 1..=MAX_OUTPUT_TOKENS) => n,
            Some(n) => {
                return Err(invalid(
                    "max_tokens",
                    format!("max_tokens {n} is out of range: 1 to {MAX_OUTPUT_TOKENS}"),
                ));
            }
        };
        Ok(Self {
            function_type,
            input: body.input,
            model,
            temperature,
            max_tokens,
        })
    }
}

/// Why a call was not made, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// No chat model is configured on this deployment.
    #[error("no chat model is configured on this deployment")]
    NoModel,
    #[error("{0}")]
    ModelNotAllowed(String),
    #[error("{0}")]
    UnknownModel(String),
    #[error("the subscription is {0:?}; AI actions are paused until it is active again")]
    Subscription(SubscriptionStatus),
    #[error("the model failed")]
    ModelFailed(#[source] ProviderError),
    /// Credits exhausted, rate-limited or suspended.
    #[error(transparent)]
    Credits(#[from] crate::credits::CreditError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionOutcome {
    Succeeded,
    Failed,
}

/// The execution log entry: one per call that reached the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionLog {
    pub execution_id: String,
    pub tenant_id: TenantId,
    pub function_type: FunctionType,
    pub model: String,
    pub outcome: ExecutionOutcome,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// From the start of the request to the settled result.
    pub latency_ms: u64,
    pub cost: MicroUsd,
    pub credits: Credits,
    /// The prices charged at, per 1,000 tokens.
    pub input_per_1k: MicroUsd,
    pub output_per_1k: MicroUsd,
    pub request_id: Option<String>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Writes a log entry (once).
pub async fn write_log(store: &dyn ItemStore, log: &ExecutionLog) -> Result<(), StoreError> {
    let (pk, sk) =
        keys::execution_log_listing(&log.tenant_id, rfc3339(log.created_at), &log.execution_id);
    let item = Item::from_record(keys::execution_log(&log.execution_id), log)?
        .with_index(Index::ByTenant, pk, sk)
        .expiring_at(log.created_at.unix_timestamp() + LOG_TTL_SECS);
    match store.put(item, Condition::IfAbsent).await {
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A finished call.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    pub execution_id: String,
    pub execution_ms: u64,
    pub model: String,
    pub output: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub credits_used: Credits,
    /// The balance once this call was charged.
    pub credits_remaining: Credits,
}

/// The service: built once per process.
pub struct ExecuteService {
    platform: Arc<Platform>,
    prices: PriceBook,
    chat: Option<ChatClient>,
    meter: Meter,
    tenants: TtlCache<TenantId, Tenant>,
}

/// The tokens a message's framing adds on the provider's side, and a tenth more for tokenizers that
/// count differently from o200k: the reservation must cover the prompt.
fn reserved_prompt_tokens(system: &str, input: &str) -> u64 {
    let tok = Tokenizer::o200k();
    let counted = (tok.count(system) + tok.count(input)) as u64;
    counted + counted / 10 + 64
}

impl ExecuteService {
    pub fn new(platform: Arc<Platform>, http: reqwest::Client) -> anyhow::Result<Self> {
        let settings = &platform.config.models;
        let mut prices = PriceBook::builtin();
        let chat = match &settings.chat_model {
            Some(model) => {
                prices = prices.with_unpriced_model(model, ModelKind::Chat);
                Some(ChatClient::new(
                    http,
                    &settings.base_url,
                    settings.api_key.clone(),
                )?)
            }
            None => None,
        };
        Ok(Self {
            meter: Meter::of(&platform),
            platform,
            prices,
            chat,
            tenants: TtlCache::new(Duration::from_secs(10), 4096),
        })
    }

    async fn tenant(&self, id: &TenantId) -> Result<Tenant, ExecuteError> {
        if let Some(t) = self.tenants.get(id) {
            return Ok(t);
        }
        let tenant = crate::tenants::get_tenant(self.platform.store.as_ref(), id)
            .await
            .map_err(|e| match e {
                crate::tenants::TenantError::Store(e) => ExecuteError::Store(e),
                other => ExecuteError::Store(StoreError::Corrupt(other.to_string())),
            })?;
        self.tenants.insert(id.clone(), tenant.clone());
        Ok(tenant)
    }

    /// The chat rule: the model asked for must be allowed on the plan; else the configured model when
    /// allowed, else the plan's default.
    fn policy(
        &self,
        requested: Option<&str>,
        tenant: &Tenant,
        at: OffsetDateTime,
    ) -> Result<ModelPolicy, ExecuteError> {
        let name = match requested {
            Some(m) => m.to_string(),
            None => {
                let configured = self.platform.config.models.chat_model.as_deref();
                match configured {
                    Some(c)
                        if self
                            .prices
                            .resolve(ModelKind::Chat, c, tenant.plan, at)
                            .is_ok() =>
                    {
                        c.to_string()
                    }
                    _ => match self.prices.default_for(ModelKind::Chat, tenant.plan, at) {
                        Some(p) => p.name.clone(),
                        None => return Err(ExecuteError::NoModel),
                    },
                }
            }
        };
        match self.prices.resolve(ModelKind::Chat, &name, tenant.plan, at) {
            Ok(p) => Ok(p.clone()),
            Err(e @ PolicyError::NotAllowed { .. }) => {
                Err(ExecuteError::ModelNotAllowed(e.to_string()))
            }
            Err(e @ PolicyError::Unpriced { .. }) => Err(ExecuteError::UnknownModel(e.to_string())),
        }
    }

    /// Runs one metered call.
    #[tracing::instrument(skip(self, execution), fields(tenant = %tenant_id, function_type = execution.function_type.as_str()))]
    pub async fn execute(
        &self,
        tenant_id: &TenantId,
        execution: Execution,
        request_id: Option<String>,
    ) -> Result<Executed, ExecuteError> {
        let started = Instant::now();
        let platform = &self.platform;
        let now = platform.clock.now();
        let client = self.chat.as_ref().ok_or(ExecuteError::NoModel)?;
        let tenant = self.tenant(tenant_id).await?;
        if let Err(Inactive(status)) = tenant.standing(now, platform.config.billing.past_due_grace)
        {
            return Err(ExecuteError::Subscription(status));
        }
        let policy = self.policy(execution.model.as_deref(), &tenant, now)?;
        let system = execution.function_type.system_prompt();
        let most = policy.cost(
            reserved_prompt_tokens(system, &execution.input),
            u64::from(execution.max_tokens),
        );
        let settings = self.meter.settings().clone();
        let hold = self
            .meter
            .reserve(
                tenant_id,
                MeteredFunction::Execute,
                settings.credits_for(most),
                request_id.as_deref(),
            )
            .await?;
        let execution_id = format!("exec_{}", platform.ids.new_id());
        let request = ChatRequest {
            model: policy.name.clone(),
            messages: vec![
                Message::system(system),
                Message::user(execution.input.clone()),
            ],
            temperature: execution.temperature,
            max_tokens: execution.max_tokens,
        };
        let generation = generate(client, &request).await;
        let cost = policy.cost(generation.input_tokens, generation.output_tokens);
        let credits = settings.credits_for(cost);
        let log = ExecutionLog {
            execution_id: execution_id.clone(),
            tenant_id: tenant_id.clone(),
            function_type: execution.function_type,
            model: policy.name.clone(),
            outcome: if generation.error.is_some() {
                ExecutionOutcome::Failed
            } else {
                ExecutionOutcome::Succeeded
            },
            input_tokens: generation.input_tokens,
            output_tokens: generation.output_tokens,
            latency_ms: started.elapsed().as_millis() as u64,
            cost,
            credits,
            input_per_1k: policy.input_per_1k,
            output_per_1k: policy.output_per_1k,
            request_id,
            error: generation.error.as_ref().map(|e| e.to_string()),
            created_at: now,
        };
        // A failure before any text costs nothing (the settle of 0 releases the hold); after some
        // text, only what was generated is charged.
        let store = platform.store.as_ref();
        // The month's and the day's spend, as chat records its own (the usage report's cost), and
        // the model's share of the month.
        let spend = async {
            let breakdown = usage::Breakdown::new().model(usage::ModelSpend {
                model: &policy.name,
                input_tokens: log.input_tokens,
                output_tokens: log.output_tokens,
                cost,
                ..Default::default()
            });
            let month = usage::tenant_month(tenant_id, &usage::month_of(now));
            let day = keys::tenant_day(tenant_id, &usage::day_of(now));
            let (m, d) = tokio::join!(
                usage::record_all(
                    store,
                    month,
                    std::iter::once((usage::counters::COST_MICROS, cost.0))
                        .chain(breakdown.counters())
                        .collect(),
                    now
                ),
                usage::record_all(
                    store,
                    day,
                    vec![(usage::counters::COST_MICROS, cost.0)],
                    now
                )
            );
            m.and(d)
        };
        let (settled, logged, spent) = tokio::join!(
            self.meter.settle(hold, credits, Some(&execution_id)),
            write_log(store, &log),
            spend
        );
        for (what, result) in [("execution log", logged), ("usage counters", spent)] {
            if let Err(e) = result {
                tracing::error!(error = %e, execution_id, "writing the {what} failed");
            }
        }
        let entry = settled?;
        if let Some(error) = generation.error {
            return Err(ExecuteError::ModelFailed(error));
        }
        let remaining = match &entry {
            Some(entry) => entry.balance_after,
            None => account::balance(store, tenant_id).await?.balance,
        };
        let execution_ms = started.elapsed().as_millis() as u64;
        tracing::info!(execution_id, model = %policy.name, credits = credits.0, execution_ms, "executed");
        Ok(Executed {
            execution_id,
            execution_ms,
            model: policy.name,
            output: generation.text,
            input_tokens: generation.input_tokens,
            output_tokens: generation.output_tokens,
            credits_used: entry.map_or(Credits::ZERO, |e| Credits(-e.credits.0)),
            credits_remaining: remaining,
        })
    }
}

/// A model call's result: its text, its tokens, and the error it ended with, if any.
struct Generation {
    text: String,
    input_tokens: u64,
    output_tokens: u64,
    error: Option<ProviderError>,
}

async fn generate(client: &ChatClient, request: &ChatRequest) -> Generation {
    let mut out = Generation {
        text: String::new(),
        input_tokens: 0,
        output_tokens: 0,
        error: None,
    };
    let mut usage = None;
    match client.stream(request).await {
        Err(e) => out.error = Some(e),
        Ok(mut stream) => {
            while let Some(event) = stream.next().await {
                match event {
                    Ok(ChatEvent::Delta(text)) => out.text.push_str(&text),
                    Ok(ChatEvent::Usage(u)) => usage = Some(u),
                    Err(e) => {
                        out.error = Some(e);
                        break;
                    }
                }
            }
        }
    }
    match usage {
        Some(u) => {
            out.input_tokens = u.prompt_tokens;
            out.output_tokens = u.completion_tokens;
        }
        // No usage report (cut off mid-stream): count what was sent and what came back ourselves;
        // a call that failed before any text cost nothing.
        None if out.error.is_none() || !out.text.is_empty() => {
            let tok = Tokenizer::o200k();
            out.input_tokens = request
                .messages
                .iter()
                .map(|m| tok.count(&m.content) as u64)
                .sum();
            out.output_tokens = tok.count(&out.text) as u64;
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(function_type: &str, input: &str) -> ExecuteBody {
        ExecuteBody {
            function_type: function_type.into(),
            input: input.into(),
            model: None,
            temperature: None,
            max_tokens: None,
        }
    }

    fn field(e: ExecuteError) -> &'static str {
        match e {
            ExecuteError::Invalid { field, .. } => field,
            other => panic!("not an input error: {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_function_type() {
        let e = Execution::parse(body("summary", "long text")).unwrap();
        assert_eq!(
            (e.function_type, e.temperature, e.max_tokens),
            (FunctionType::Summary, 0.3, DEFAULT_MAX_TOKENS)
        );
        for f in FunctionType::ALL {
            assert_eq!(FunctionType::parse(f.as_str()), Ok(f));
            assert!(!f.system_prompt().is_empty());
        }
    }

    #[test]
    fn every_field_out_of_range_is_named() {
        let e = |b: ExecuteBody| field(Execution::parse(b).unwrap_err());
        assert_eq!(e(body("poem", "x")), "function_type");
        assert_eq!(e(body("chatbot", "  \n")), "input");
        assert_eq!(
            e(body("chatbot", &"あ".repeat(MAX_INPUT_CHARS + 1))),
            "input"
        );
        assert!(Execution::parse(body("chatbot", &"あ".repeat(MAX_INPUT_CHARS))).is_ok());
        for t in [-0.1, 2.01, f64::NAN] {
            assert_eq!(
                e(ExecuteBody {
                    temperature: Some(t),
                    ..body("custom", "x")
                }),
                "temperature"
            );
        }
        for n in [0, MAX_OUTPUT_TOKENS + 1] {
            assert_eq!(
                e(ExecuteBody {
                    max_tokens: Some(n),
                    ..body("custom", "x")
                }),
                "max_tokens"
            );
        }
        assert_eq!(
            e(ExecuteBody {
                model: Some(" ".into()),
                ..body("custom", "x")
            }),
            "model"
        );
    }

    #[test]
    fn the_reservation_covers_the_prompt_with_a_margin() {
        let tok = Tokenizer::o200k();
        let (system, input) = (
            FunctionType::Summary.system_prompt(),
            "日本語の長い文章です。".repeat(50),
        );
        let counted = (tok.count(system) + tok.count(&input)) as u64;
        assert!(reserved_prompt_tokens(system, &input) > counted + 64);
    }
}
