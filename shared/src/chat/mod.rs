//! Chat: answering a visitor's or a tenant's question from a site's index.
//!
//! The order matters. Everything that can refuse a request (site, origin, plan, model, rate limits,
//! quotas) happens before the model is called, and quota is *reserved* atomically up front, so N
//! concurrent requests against a remaining quota of Q serve exactly Q. A model failure gives the
//! reservation back; the actual cost is settled after the answer, at the prices in force when it began.

pub mod cache;
pub mod extractive;
pub mod limits;
pub mod logs;
pub mod prompt;
pub mod sessions;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::Platform;
use crate::clock::rfc3339;
use crate::ids::{SiteId, TenantId};
use crate::index::search::{LoadedIndex, SearchOptions};
use crate::index::{self, SiteIndex};
use crate::models::chat::{ChatClient, ChatEvent, ChatRequest as ModelRequest, Message};
use crate::models::embeddings::EmbeddingClient;
use crate::models::{ModelKind, ModelPolicy, PolicyError, PriceBook};
use crate::money::MicroUsd;
use crate::sites::{Site, SiteStatus};
use crate::store::{Add, Key, StoreError, Write};
use crate::tenants::{Inactive, Plan, SubscriptionStatus, Tenant};
use crate::usage::{self, counters};
use cache::{IndexCache, TtlCache};
use logs::{MessageId, Outcome, PriceSnapshot, UsageLog};
use sessions::SessionId;

/// Longest question accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2_000;
/// The model name reported when answering without a model.
pub const EXTRACTIVE: &str = "extractive";

/// Who is asking.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// A tenant with its API key (`POST /api/chat`).
    Tenant(TenantId),
    /// A visitor through the widget (`POST /api/embed/chat`): the page's Origin and the visitor's IP.
    Visitor {
        origin: Option<String>,
        ip: Option<String>,
    },
}

/// A question.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub site_id: SiteId,
    pub message: String,
    pub session_id: Option<SessionId>,
    pub model: Option<String>,
}

/// Request facts that go into the usage log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    pub url: String,
    pub title: String,
    pub snippet: String,
    pub score: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokensConsumed {
    pub embedding: u64,
    pub chat: u64,
}

/// The contract's answer object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub answer: String,
    pub sources: Vec<Source>,
    pub model_used: String,
    pub tokens_consumed: TokensConsumed,
    #[serde(serialize_with = "dollars")]
    pub cost_usd: MicroUsd,
    pub session_id: SessionId,
    pub message_id: MessageId,
}

fn dollars<S: serde::Serializer>(m: &MicroUsd, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(m.as_dollars())
}

/// Why a question was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    InvalidMessage(String),
    #[error("the message is longer than {MAX_MESSAGE_CHARS} characters")]
    MessageTooLong,
    #[error("site not found")]
    SiteNotFound,
    /// Not embed-enabled, or not trained yet.
    #[error("{0}")]
    NotAvailable(String),
    #[error("this origin is not allowed to use the site's assistant")]
    OriginNotAllowed,
    #[error("the site has not been trained yet")]
    NotTrained,
    #[error("{0}")]
    ModelNotAllowed(String),
    #[error("{0}")]
    UnknownModel(String),
    #[error("the subscription is {0:?}; chat is paused until it is active again")]
    Subscription(SubscriptionStatus),
    #[error("{what} exhausted on the {} plan", plan.as_str())]
    QuotaExhausted { plan: Plan, what: String },
    #[error("rate limited; retry in {0}s")]
    RateLimited(u64),
    #[error("the chat model failed: {0}")]
    ModelFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the site's index could not be loaded: {0}")]
    Index(String),
}

/// The chat service: built once per process, shared by every request.
pub struct ChatService {
    platform: Arc<Platform>,
    prices: PriceBook,
    chat: Option<ChatClient>,
    embeddings: Option<EmbeddingClient>,
    indexes: IndexCache<LoadedIndex>,
    sites: TtlCache<SiteId, Site>,
    tenants: TtlCache<TenantId, Tenant>,
}

/// Counts tokens with the o200k_base tokenizer (for prompts when a provider reports no usage, e.g. on a
/// disconnect, and for quota estimates of query embeddings).
fn count_tokens(text: &str) -> u64 {
    crate::chunk::Tokenizer::o200k().count(text) as u64
}

impl ChatService {
    /// Builds the model clients the configuration names (none: extractive answers, lexical retrieval).
    pub fn new(platform: Arc<Platform>, http: reqwest::Client) -> anyhow::Result<Self> {
        let crate::models::ConfiguredModels {
            prices,
            chat,
            embeddings,
        } = crate::models::ConfiguredModels::new(&platform.config.models, http)?;
        Ok(Self {
            platform,
            prices,
            chat,
            embeddings,
            indexes: IndexCache::new(32),
            sites: TtlCache::new(std::time::Duration::from_secs(5), 4096),
            tenants: TtlCache::new(std::time::Duration::from_secs(10), 4096),
        })
    }

    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    async fn site_and_tenant(&self, site_id: &SiteId) -> Result<(Site, Tenant), ChatError> {
        let store = self.platform.store.as_ref();
        let site = match self.sites.get(site_id) {
            Some(site) => site,
            None => {
                let site = crate::sites::find_site(store, site_id)
                    .await?
                    .ok_or(ChatError::SiteNotFound)?;
                // Only servable sites are cached: one the tenant is still setting up shows its changes at once.
                if site.index_version.is_some() && site.is_embed_enabled {
                    self.sites.insert(site_id.clone(), site.clone());
                }
                site
            }
        };
        let tenant = match self.tenants.get(&site.tenant_id) {
            Some(tenant) => tenant,
            None => {
                let tenant = crate::tenants::get_tenant(store, &site.tenant_id)
                    .await
                    .map_err(|e| match e {
                        crate::tenants::TenantError::NotFound(_) => ChatError::SiteNotFound,
                        crate::tenants::TenantError::Store(e) => ChatError::Store(e),
                    })?;
                self.tenants.insert(site.tenant_id.clone(), tenant.clone());
                tenant
            }
        };
        Ok((site, tenant))
    }

    /// Checks that the caller may use the site.
    async fn admit(
        &self,
        caller: &Caller,
        question: &Question,
        site: &Site,
        now: i64,
    ) -> Result<(), ChatError> {
        match caller {
            Caller::Tenant(tenant) if tenant != &site.tenant_id => Err(ChatError::SiteNotFound),
            Caller::Tenant(_) => Ok(()),
            Caller::Visitor { origin, ip } => {
                if !site.is_embed_enabled {
                    return Err(ChatError::NotAvailable(
                        "the assistant is not enabled for this site".into(),
                    ));
                }
                if site.status != SiteStatus::Ready && site.index_version.is_none() {
                    return Err(ChatError::NotAvailable(
                        "the assistant is not ready yet".into(),
                    ));
                }
                if !origin_allowed(site, origin.as_deref()) {
                    return Err(ChatError::OriginNotAllowed);
                }
                let store = self.platform.store.as_ref();
                let ip_scope = format!("ip:{}", logs::hash_ip(ip.as_deref().unwrap_or("unknown")));
                let by_ip = limits::hit(store, &ip_scope, limits::PER_IP, now);
                let by_session = async {
                    match &question.session_id {
                        Some(s) => {
                            limits::hit(store, &format!("session:{s}"), limits::PER_SESSION, now)
                                .await
                        }
                        None => Ok(()),
                    }
                };
                let (a, b) = tokio::join!(by_ip, by_session);
                for result in [a, b] {
                    match result {
                        Ok(()) => {}
                        Err(limits::LimitError::Limited { retry_after_secs }) => {
                            return Err(ChatError::RateLimited(retry_after_secs));
                        }
                        Err(limits::LimitError::Store(e)) => return Err(e.into()),
                    }
                }
                Ok(())
            }
        }
    }

    /// The chat model policy for this request, or `None` to answer extractively.
    fn chat_policy(
        &self,
        requested: Option<&str>,
        plan: Plan,
        at: OffsetDateTime,
    ) -> Result<Option<ModelPolicy>, ChatError> {
        let Some(_) = &self.chat else {
            return match requested {
                Some(m) if m != EXTRACTIVE => Err(ChatError::UnknownModel(format!(
                    "model {m:?} is not available: no chat model is configured on this deployment"
                ))),
                _ => Ok(None),
            };
        };
        let configured = self.platform.config.models.chat_model.as_deref();
        let name = match requested {
            Some(m) => m.to_string(),
            None => match configured {
                Some(c) if self.prices.resolve(ModelKind::Chat, c, plan, at).is_ok() => {
                    c.to_string()
                }
                _ => match self.prices.default_for(ModelKind::Chat, plan, at) {
                    Some(p) => p.name.clone(),
                    None => return Ok(None),
                },
            },
        };
        match self.prices.resolve(ModelKind::Chat, &name, plan, at) {
            Ok(p) => Ok(Some(p.clone())),
            Err(e @ PolicyError::NotAllowed { .. }) => {
                Err(ChatError::ModelNotAllowed(e.to_string()))
            }
            Err(e @ PolicyError::Unpriced { .. }) => Err(ChatError::UnknownModel(e.to_string())),
        }
    }

    async fn load_index(&self, site: &Site) -> Result<Arc<LoadedIndex>, ChatError> {
        let version = site.index_version.ok_or(ChatError::NotTrained)?;
        if let Some(index) = self.indexes.get(site.site_id.as_str(), version) {
            return Ok(index);
        }
        let key = index::blob_key(&site.site_id, version);
        let blob = self
            .platform
            .blobs
            .get(&key)
            .await
            .map_err(|e| ChatError::Index(e.to_string()))?
            .ok_or_else(|| ChatError::Index(format!("{key} is missing")))?;
        // Decoding a large index is CPU work: keep it off the async workers.
        let loaded = tokio::task::spawn_blocking(move || {
            SiteIndex::decode(&blob.bytes).map(LoadedIndex::new)
        })
        .await
        .map_err(|e| ChatError::Index(e.to_string()))?
        .map_err(|e| ChatError::Index(e.to_string()))?;
        let loaded = Arc::new(loaded);
        self.indexes
            .insert(site.site_id.as_str(), version, loaded.clone());
        Ok(loaded)
    }

    /// Answers a question. Text is sent to `deltas` as it is generated (SSE); if that receiver goes away,
    /// generation stops and only what was generated is charged.
    pub async fn answer(
        &self,
        caller: Caller,
        question: Question,
        meta: RequestMeta,
        deltas: Option<mpsc::Sender<String>>,
    ) -> Result<Answer, ChatError> {
        let started = Instant::now();
        let message = question.message.trim().to_string();
        if message.is_empty() {
            return Err(ChatError::InvalidMessage(
                "message must not be empty".into(),
            ));
        }
        if message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(ChatError::MessageTooLong);
        }
        let platform = &self.platform;
        let store = platform.store.as_ref();
        let now = platform.clock.now();
        let now_unix = now.unix_timestamp();

        let (site, tenant) = self.site_and_tenant(&question.site_id).await?;
        self.admit(&caller, &question, &site, now_unix).await?;
        if let Err(Inactive(status)) = tenant.standing(now, platform.config.billing.past_due_grace)
        {
            return Err(ChatError::Subscription(status));
        }
        let requested_model = match caller {
            Caller::Tenant(_) => question.model.as_deref(),
            Caller::Visitor { .. } => None,
        };
        let policy = self.chat_policy(requested_model, tenant.plan, now)?;
        let index = self.load_index(&site).await?;

        let embed_query = self.embeddings.as_ref().filter(|e| {
            index.has_vectors() && index.index.embedding_model.as_deref() == Some(e.model.as_str())
        });
        let embedding_policy = match embed_query {
            Some(e) => self
                .prices
                .resolve(ModelKind::Embedding, &e.model, tenant.plan, now)
                .ok()
                .cloned(),
            None => None,
        };
        let estimated_query_tokens = if embed_query.is_some() {
            count_tokens(&message) as i64
        } else {
            0
        };

        // Reserve (one transaction) while reading the session history.
        let limits = tenant.plan.limits();
        let month = usage::month_of(now);
        let day = usage::day_of(now);
        let monthly = usage::tenant_month(&tenant.tenant_id, &month);
        let daily = usage::site_day(&site.site_id, &day);
        // Chats: both counters in one transaction (all or nothing). Embedding tokens live on the same
        // monthly item as chats, so they are reserved by a second atomic add alongside.
        let reservation = vec![
            Add::new(monthly.clone(), counters::CHATS, 1)
                .up_to(limits.monthly_chats as i64)
                .expiring_at(now_unix + 400 * 86_400),
            Add::new(daily.clone(), counters::CHATS, 1)
                .up_to(limits.daily_site_chats as i64)
                .expiring_at(now_unix + 40 * 86_400),
        ];
        let session_id = question
            .session_id
            .clone()
            .unwrap_or_else(|| SessionId::generate(platform.ids.as_ref()));
        let reserve_chats = reserve_all(store, &reservation);
        let reserve_tokens = async {
            if estimated_query_tokens == 0 {
                return Ok(());
            }
            let add = Add::new(
                monthly.clone(),
                counters::EMBEDDING_TOKENS,
                estimated_query_tokens,
            )
            .up_to(limits.monthly_embedding_tokens as i64);
            store.add(add).await.map(|_| ())
        };
        let history = sessions::load(store, &site.site_id, &session_id);
        let (chats, tokens, history) = tokio::join!(reserve_chats, reserve_tokens, history);
        if chats.is_err() || tokens.is_err() {
            // Give back whichever half did succeed, then say which limit stopped us.
            if chats.is_ok() {
                let back = reservation
                    .iter()
                    .map(|a| Write::Add(Add::new(a.key.clone(), a.attribute.clone(), -a.amount)));
                let _ = store.transact(back.collect()).await;
            }
            if tokens.is_ok() && estimated_query_tokens > 0 {
                let _ = store
                    .add(Add::new(
                        monthly.clone(),
                        counters::EMBEDDING_TOKENS,
                        -estimated_query_tokens,
                    ))
                    .await;
            }
            let error = chats
                .err()
                .or(tokens.err())
                .unwrap_or(StoreError::ConditionFailed);
            return Err(match error {
                StoreError::ConditionFailed => {
                    self.which_quota(&tenant, &monthly, &daily, estimated_query_tokens)
                        .await
                }
                other => other.into(),
            });
        }
        let history = history.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "session history unavailable; answering without it");
            Vec::new()
        });
        let message_id = MessageId::generate(platform.ids.as_ref());

        // Query embedding: a failure degrades to lexical retrieval rather than failing the answer.
        let mut embedding_tokens = 0u64;
        let query_vector = match embed_query {
            Some(client) => match client.embed(std::slice::from_ref(&message)).await {
                Ok(out) => {
                    embedding_tokens = if out.tokens > 0 {
                        out.tokens
                    } else {
                        estimated_query_tokens as u64
                    };
                    out.vectors.into_iter().next()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "query embedding failed; lexical retrieval only");
                    None
                }
            },
            None => None,
        };
        let hits = index.search(&message, query_vector.as_deref(), SearchOptions::default());
        let chunks: Vec<&index::IndexedChunk> =
            hits.iter().map(|h| &index.index.chunks[h.chunk]).collect();
        let sources: Vec<Source> = hits
            .iter()
            .zip(&chunks)
            .map(|(hit, c)| Source {
                url: c.url.clone(),
                title: c.title.clone(),
                snippet: snippet(&c.text, 200),
                score: (hit.score as f64 * 10_000.0).round() / 10_000.0,
            })
            .collect();

        // Generate.
        let generation = match (&self.chat, &policy) {
            (Some(client), Some(policy)) => {
                let passages: Vec<prompt::Passage> = chunks
                    .iter()
                    .map(|c| prompt::Passage {
                        title: &c.title,
                        url: &c.url,
                        heading_path: &c.heading_path,
                        text: &c.text,
                    })
                    .collect();
                let messages = prompt::build_messages(
                    site.prompt.system_prompt.as_str(),
                    &passages,
                    &history,
                    &message,
                );
                let request = ModelRequest {
                    model: policy.name.clone(),
                    messages,
                    temperature: f64::from(site.prompt.temperature),
                    max_tokens: site.prompt.max_tokens.get(),
                };
                generate(client, &request, deltas.as_ref()).await
            }
            _ => {
                let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
                let text = if texts.is_empty() {
                    extractive::not_found(extractive::detect_lang(&message)).to_string()
                } else {
                    extractive::answer(&message, &texts)
                };
                let cancelled = match &deltas {
                    Some(tx) => tx.send(text.clone()).await.is_err(),
                    None => false,
                };
                Generation {
                    text,
                    input_tokens: 0,
                    output_tokens: 0,
                    cancelled,
                    error: None,
                }
            }
        };

        let model_used = policy
            .as_ref()
            .map_or(EXTRACTIVE.to_string(), |p| p.name.clone());
        let prices = PriceSnapshot {
            chat_input_per_1k: policy.as_ref().map_or(MicroUsd::ZERO, |p| p.input_per_1k),
            chat_output_per_1k: policy.as_ref().map_or(MicroUsd::ZERO, |p| p.output_per_1k),
            embedding_per_1k: embedding_policy
                .as_ref()
                .map_or(MicroUsd::ZERO, |p| p.input_per_1k),
        };
        let cost = MicroUsd::for_tokens(generation.input_tokens, prices.chat_input_per_1k)
            .saturating_add(MicroUsd::for_tokens(
                generation.output_tokens,
                prices.chat_output_per_1k,
            ))
            .saturating_add(MicroUsd::for_tokens(
                embedding_tokens,
                prices.embedding_per_1k,
            ));
        let failed = generation.error.is_some() && generation.text.is_empty();
        let log = UsageLog {
            message_id: message_id.clone(),
            tenant_id: tenant.tenant_id.clone(),
            site_id: site.site_id.clone(),
            session_id: session_id.to_string(),
            channel: match caller {
                Caller::Tenant(_) => "api".into(),
                Caller::Visitor { .. } => "embed".into(),
            },
            model: model_used.clone(),
            outcome: if failed {
                Outcome::Failed
            } else if generation.cancelled {
                Outcome::Cancelled
            } else {
                Outcome::Answered
            },
            chat_input_tokens: generation.input_tokens,
            chat_output_tokens: generation.output_tokens,
            embedding_tokens,
            latency_ms: started.elapsed().as_millis() as u64,
            cost,
            prices,
            ip_hash: match &caller {
                Caller::Visitor { ip: Some(ip), .. } => Some(logs::hash_ip(ip)),
                _ => None,
            },
            user_agent: meta.user_agent.clone(),
            request_id: meta.request_id.clone(),
            error: generation.error.clone(),
            created_at: rfc3339(now),
            feedback: None,
        };

        // Settle: the usage log, the actual spend, the session; a failed answer gives its quota back.
        let settle_log = logs::write(store, &log, now_unix);
        let settle_usage = self.settle(
            &tenant.tenant_id,
            &monthly,
            &day,
            &log,
            estimated_query_tokens,
            failed,
            &reservation,
        );
        let settle_session = async {
            if failed || generation.cancelled {
                return Ok(());
            }
            sessions::append(
                store,
                &site.site_id,
                &session_id,
                history.clone(),
                &message,
                &generation.text,
                now_unix,
            )
            .await
        };
        let (a, b, c) = tokio::join!(settle_log, settle_usage, settle_session);
        for (what, result) in [("usage log", a), ("usage counters", b), ("session", c)] {
            if let Err(e) = result {
                tracing::error!(error = %e, message_id = %message_id, "settling the {what} failed");
            }
        }
        if failed {
            return Err(ChatError::ModelFailed(generation.error.unwrap_or_default()));
        }
        tracing::info!(
            message_id = %message_id,
            site_id = %site.site_id,
            model = %model_used,
            cost_micros = cost.0,
            cancelled = generation.cancelled,
            "answered"
        );
        Ok(Answer {
            answer: generation.text,
            sources,
            model_used,
            tokens_consumed: TokensConsumed {
                embedding: embedding_tokens,
                chat: generation.input_tokens + generation.output_tokens,
            },
            cost_usd: cost,
            session_id,
            message_id,
        })
    }

    /// Records actual spend; on failure, gives back the reserved chat (and unused embedding) quota.
    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        tenant: &TenantId,
        monthly: &Key,
        day: &str,
        log: &UsageLog,
        reserved_query_tokens: i64,
        failed: bool,
        reservation: &[Add],
    ) -> Result<(), StoreError> {
        let store = self.platform.store.as_ref();
        let now = self.platform.clock.now();
        if failed {
            // Only the chat counts come back: embedding tokens already spent on the query stay spent.
            let give_back: Vec<Write> = reservation
                .iter()
                .filter(|a| a.attribute == counters::CHATS)
                .map(|a| Write::Add(Add::new(a.key.clone(), a.attribute.clone(), -a.amount)))
                .collect();
            store.transact(give_back).await?;
        }
        if reserved_query_tokens > 0 && log.embedding_tokens as i64 != reserved_query_tokens {
            // The estimate was reserved; correct it to what the provider counted.
            let correction = log.embedding_tokens as i64 - reserved_query_tokens;
            usage::record(
                store,
                monthly.clone(),
                counters::EMBEDDING_TOKENS,
                correction,
                now,
            )
            .await?;
        }
        let tenant_day = Key::new(format!("TENANT#{tenant}"), format!("USAGE#{day}"));
        let spend = [
            (monthly.clone(), counters::COST_MICROS, log.cost.0),
            (
                monthly.clone(),
                counters::CHAT_INPUT_TOKENS,
                log.chat_input_tokens as i64,
            ),
            (
                monthly.clone(),
                counters::CHAT_OUTPUT_TOKENS,
                log.chat_output_tokens as i64,
            ),
            (tenant_day.clone(), counters::COST_MICROS, log.cost.0),
            (
                tenant_day.clone(),
                counters::CHATS,
                if failed { 0 } else { 1 },
            ),
            (
                tenant_day,
                counters::EMBEDDING_TOKENS,
                log.embedding_tokens as i64,
            ),
        ];
        for (key, attribute, amount) in spend {
            if amount != 0 {
                usage::record(store, key, attribute, amount, now).await?;
            }
        }
        Ok(())
    }

    /// After a refused reservation: which limit was reached (read only on this rare path).
    async fn which_quota(
        &self,
        tenant: &Tenant,
        monthly: &Key,
        daily: &Key,
        query_tokens: i64,
    ) -> ChatError {
        let limits = tenant.plan.limits();
        let store = self.platform.store.as_ref();
        let (m, d) = tokio::join!(store.get(monthly), store.get(daily));
        let month = m.ok().flatten();
        let count = |item: &Option<crate::store::Item>, attr: &str| {
            item.as_ref().map_or(0, |i| i.count(attr))
        };
        let what = if count(&month, counters::CHATS) >= limits.monthly_chats as i64 {
            format!("the monthly chat quota ({})", limits.monthly_chats)
        } else if count(&d.ok().flatten(), counters::CHATS) >= limits.daily_site_chats as i64 {
            format!("the site's daily chat quota ({})", limits.daily_site_chats)
        } else if query_tokens > 0 {
            format!(
                "the monthly embedding-token quota ({})",
                limits.monthly_embedding_tokens
            )
        } else {
            "the chat quota".to_string()
        };
        ChatError::QuotaExhausted {
            plan: tenant.plan,
            what,
        }
    }
}

/// All-or-nothing reservation of several counters.
async fn reserve_all(store: &dyn crate::store::ItemStore, adds: &[Add]) -> Result<(), StoreError> {
    store
        .transact(adds.iter().cloned().map(Write::Add).collect())
        .await
}

struct Generation {
    text: String,
    input_tokens: u64,
    output_tokens: u64,
    cancelled: bool,
    error: Option<String>,
}

/// Streams a completion, forwarding text; stops (dropping the connection) when the receiver is gone.
async fn generate(
    client: &ChatClient,
    request: &ModelRequest,
    deltas: Option<&mpsc::Sender<String>>,
) -> Generation {
    let prompt_text: String = request
        .messages
        .iter()
        .map(|m: &Message| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Generation {
        text: String::new(),
        input_tokens: 0,
        output_tokens: 0,
        cancelled: false,
        error: None,
    };
    let mut usage = None;
    match client.stream(request).await {
        Err(e) => out.error = Some(e.to_string()),
        Ok(mut stream) => {
            while let Some(event) = stream.next().await {
                match event {
                    Ok(ChatEvent::Delta(text)) => {
                        out.text.push_str(&text);
                        if let Some(tx) = deltas
                            && tx.send(text).await.is_err()
                        {
                            out.cancelled = true;
                            break; // dropping the stream closes the connection: generation stops
                        }
                    }
                    Ok(ChatEvent::Usage(u)) => usage = Some(u),
                    Err(e) => {
                        out.error = Some(e.to_string());
                        break;
                    }
                }
            }
        }
    }
    match usage {
        Some(u) if !out.cancelled => {
            out.input_tokens = u.prompt_tokens;
            out.output_tokens = u.completion_tokens;
        }
        // No usage report (cancelled or cut off): count what was sent and what came back ourselves.
        _ => {
            if out.error.is_none() || !out.text.is_empty() {
                out.input_tokens = count_tokens(&prompt_text);
                out.output_tokens = count_tokens(&out.text);
            }
        }
    }
    out
}

/// Whether the page's Origin may use the site: its host must match an allowed domain.
pub fn origin_allowed(site: &Site, origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return false };
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    site.allowed_domains.iter().any(|d| d.matches_host(host))
}

/// The first `max` characters of a passage, cut at a character boundary, with an ellipsis when cut.
pub fn snippet(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_cut_on_characters() {
        assert_eq!(snippet("営業時間は9時からです", 4), "営業時間…");
        assert_eq!(snippet(" short ", 10), "short");
    }
}
