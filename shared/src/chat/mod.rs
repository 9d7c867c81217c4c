//! Chat: answering a visitor's or a tenant's question from a site's index.
//!
//! The order matters. Everything that can refuse a request (site, origin, plan, model, rate limits,
//! quotas) happens before the model is called, and quota is *reserved* atomically up front, so N
//! concurrent requests against a remaining quota of Q serve exactly Q. A model failure gives the
//! reservation back; the actual cost is settled after the answer, at the prices in force when it began.

pub mod cache;
pub mod extractive;
pub mod feedback;
pub mod limits;
pub mod logs;
pub mod message;
pub mod prompt;
pub mod sessions;
pub mod timings;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::Platform;
use crate::credits::{Meter, MeteredFunction};
use crate::ids::{SiteId, TenantId};
use crate::index::search::{LoadedIndex, SearchOptions};
use crate::index::{self, SiteIndex};
use crate::models::chat::{ChatClient, ChatEvent, ChatRequest as ModelRequest, Message};
use crate::models::embeddings::{EmbeddingClient, InputRole};
use crate::models::rerank::RerankClient;

/// Fused candidates handed to the reranker (when one is configured) to pick the answer's passages from.
const RERANK_CANDIDATES: usize = 20;
use crate::models::{ModelKind, ModelPolicy, PolicyError, PriceBook};
use crate::money::MicroUsd;
use crate::sites::{Site, SiteStatus};
use crate::store::{Add, Key, StoreError, Write, keys};
use crate::tenants::{Inactive, Plan, SubscriptionStatus, Tenant};
use crate::usage::{self, counters};
use cache::{IndexCache, TtlCache, Weighed};
use logs::{AnswerOutcome, Channel, MessageId, PriceSnapshot, UsageLog};
pub use message::ChatMessage;
use sessions::SessionId;
use timings::{Stage, StageClock};

/// Longest question accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2_000;
/// The model name reported when answering without a model.
pub const EXTRACTIVE: &str = "extractive";
/// Memory the loaded-index cache may hold (a chat Lambda has 1 GB; requests need the rest).
pub const INDEX_CACHE_BYTES: usize = 256 * 1024 * 1024;
/// A decoded index holds about this many times its blob's size (strings, postings and the term map
/// unpacked); the cache budgets with this estimate.
const DECODED_BYTES_PER_BLOB_BYTE: usize = 3;

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
    pub message: ChatMessage,
    pub session_id: Option<SessionId>,
    pub model: Option<String>,
}

/// Request facts that go into the usage log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub user_agent: Option<String>,
    /// The request's stage timings (BENCHMARKS.md, `timings`).
    pub timings: timings::StageClock,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Source {
    pub url: String,
    pub title: String,
    pub snippet: String,
    pub score: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokensConsumed {
    pub embedding: u64,
    pub chat: u64,
}

/// Something the tenant should know about how an answer was made, which would otherwise be silent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Warning {
    /// `model_fallback`: the configured chat model is not allowed on the tenant's plan, so the plan's
    /// default answered (`model_used` names it). `retrain_needed`: an embedding model is configured but
    /// the site's index was built without it, so retrieval stays lexical until the site is re-trained.
    #[schema(value_type = String, examples("model_fallback", "retrain_needed"))]
    pub code: &'static str,
    pub message: String,
}

/// The contract's answer object.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Answer {
    pub answer: String,
    pub sources: Vec<Source>,
    pub model_used: String,
    /// For the tenant's own API calls only (visitors of the widget never see configuration).
    pub warnings: Vec<Warning>,
    pub tokens_consumed: TokensConsumed,
    #[serde(serialize_with = "dollars")]
    #[schema(value_type = f64)]
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
    #[error("the chat model failed")]
    ModelFailed(#[source] crate::models::chat::ProviderError),
    /// Credits exhausted, rate-limited or suspended: the metering refused the answer's reservation.
    #[error(transparent)]
    Credits(#[from] crate::credits::CreditError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the site's index could not be loaded")]
    Index(#[source] anyhow::Error),
}

/// The chat service: built once per process, shared by every request.
pub struct ChatService {
    platform: Arc<Platform>,
    prices: PriceBook,
    chat: Option<ChatClient>,
    embeddings: Option<EmbeddingClient>,
    rerank: Option<RerankClient>,
    indexes: IndexCache<Weighed<LoadedIndex>>,
    sites: TtlCache<SiteId, Site>,
    tenants: TtlCache<TenantId, Tenant>,
    meter: Meter,
}

/// The prompt tokens an answer's credit reservation allows for (system prompt, passages, history and
/// question): the reservation is the most an answer can cost, so it must cover the largest prompt.
const RESERVED_PROMPT_TOKENS: u64 = 8_000;

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
            rerank,
        } = crate::models::ConfiguredModels::new(&platform.config.models, http)?;
        Ok(Self {
            meter: Meter::of(&platform),
            platform,
            prices,
            chat,
            embeddings,
            rerank,
            indexes: IndexCache::new(INDEX_CACHE_BYTES),
            sites: TtlCache::new(std::time::Duration::from_secs(5), 4096),
            tenants: TtlCache::new(std::time::Duration::from_secs(10), 4096),
        })
    }

    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// Retrieval for one question: the query's vector when the index carries the configured model's
    /// (a failure degrades to lexical retrieval rather than failing the answer), then the passages.
    /// Returns the hits and the embedding tokens the query cost (the estimate when none were reported).
    async fn retrieve_passages(
        &self,
        index: &LoadedIndex,
        message: &str,
        embed_query: Option<&EmbeddingClient>,
        estimated_query_tokens: i64,
    ) -> (Vec<crate::index::search::Hit>, u64) {
        let mut embedding_tokens = 0u64;
        let query_vector = match embed_query {
            Some(client) => match client.embed(&[message.to_string()], InputRole::Query).await {
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
        let hits = self.retrieve(index, message, query_vector.as_deref()).await;
        (hits, embedding_tokens)
    }

    /// The passages for a question: fused lexical and dense retrieval, reordered by the reranker
    /// when one is configured (its failure only costs the reordering).
    async fn retrieve(
        &self,
        index: &LoadedIndex,
        message: &str,
        query_vector: Option<&[f32]>,
    ) -> Vec<crate::index::search::Hit> {
        let options = SearchOptions::default();
        let Some(reranker) = &self.rerank else {
            return index.search(message, query_vector, options);
        };
        let candidates = index.search(
            message,
            query_vector,
            SearchOptions {
                top_k: RERANK_CANDIDATES,
                per_page: RERANK_CANDIDATES,
            },
        );
        let documents: Vec<String> = candidates
            .iter()
            .map(|h| {
                let c = &index.index.chunks[h.chunk];
                format!("{}\n{}\n{}", c.title, c.heading_path.join(" > "), c.text)
            })
            .collect();
        let refs: Vec<&str> = documents.iter().map(String::as_str).collect();
        match reranker.rerank(message, &refs).await {
            Ok(order) => {
                let reordered = order.into_iter().map(|i| candidates[i].clone()).collect();
                index.diversify(reordered, options)
            }
            Err(e) => {
                tracing::warn!(error = %e, "reranking failed; using the fused ranking");
                index.diversify(candidates, options)
            }
        }
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
    fn admit(
        &self,
        caller: &Caller,
        question: &Question,
        site: &Site,
        now: i64,
    ) -> Result<Vec<limits::Window>, ChatError> {
        match caller {
            Caller::Tenant(tenant) if tenant != &site.tenant_id => Err(ChatError::SiteNotFound),
            Caller::Tenant(_) => Ok(Vec::new()),
            Caller::Visitor { origin, ip } => {
                if !site.is_embed_enabled {
                    return Err(ChatError::NotAvailable(
                        "the assistant is not enabled for this site".into(),
                    ));
                }
                if site.status != SiteStatus::Ready && site.index_version.is_none() {
                    return Err(ChatError::NotTrained);
                }
                if !origin_allowed(site, origin.as_deref()) {
                    return Err(ChatError::OriginNotAllowed);
                }
                let Some(ip_scope) = ip.as_deref().and_then(limits::ip_scope) else {
                    tracing::warn!("embed chat without a client address; refused");
                    return Err(ChatError::NotAvailable(
                        "the client's address is unknown".into(),
                    ));
                };
                // The hits are counted in the reservation's transaction (no round trip of their own).
                let mut windows = vec![limits::Window::of(&ip_scope, limits::PER_IP, now)];
                // Scoped by site: another site's visitor presenting this id counts against a scope of
                // their own site, never against this session's.
                if let Some(s) = &question.session_id {
                    let scope = format!("session:{}:{s}", site.site_id);
                    windows.push(limits::Window::of(&scope, limits::PER_SESSION, now));
                }
                Ok(windows)
            }
        }
    }

    /// The chat model policy for this request (`None` to answer extractively), and a warning when the
    /// configured model is not the one answering.
    fn chat_policy(
        &self,
        requested: Option<&str>,
        plan: Plan,
        at: OffsetDateTime,
    ) -> Result<(Option<ModelPolicy>, Option<Warning>), ChatError> {
        let Some(_) = &self.chat else {
            return match requested {
                Some(m) if m != EXTRACTIVE => Err(ChatError::UnknownModel(format!(
                    "model {m:?} is not available: no chat model is configured on this deployment"
                ))),
                _ => Ok((None, None)),
            };
        };
        let configured = self.platform.config.models.chat_model.as_deref();
        let mut warning = None;
        let name = match requested {
            Some(m) => m.to_string(),
            None => match configured {
                Some(c) if self.prices.resolve(ModelKind::Chat, c, plan, at).is_ok() => {
                    c.to_string()
                }
                _ => {
                    let fallback = self.prices.default_for(ModelKind::Chat, plan, at);
                    let instead = fallback.map_or(EXTRACTIVE, |p| p.name.as_str());
                    let configured = configured.unwrap_or_default();
                    tracing::warn!(
                        configured,
                        plan = plan.as_str(),
                        model_used = instead,
                        "KOTOBA_CHAT_MODEL is not allowed on this plan; answering with the plan's default"
                    );
                    warning = Some(Warning {
                        code: "model_fallback",
                        message: format!(
                            "the configured chat model {configured:?} is not allowed on the {} plan; \
                             answered with {instead:?} instead",
                            plan.as_str()
                        ),
                    });
                    match fallback {
                        Some(p) => p.name.clone(),
                        None => return Ok((None, warning)),
                    }
                }
            },
        };
        match self.prices.resolve(ModelKind::Chat, &name, plan, at) {
            Ok(p) => Ok((Some(p.clone()), warning)),
            Err(e @ PolicyError::NotAllowed { .. }) => {
                Err(ChatError::ModelNotAllowed(e.to_string()))
            }
            Err(e @ PolicyError::Unpriced { .. }) => Err(ChatError::UnknownModel(e.to_string())),
        }
    }

    async fn load_index(&self, site: &Site) -> Result<Arc<Weighed<LoadedIndex>>, ChatError> {
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
            .map_err(|e| ChatError::Index(anyhow::Error::new(e).context(format!("reading {key}"))))?
            .ok_or_else(|| ChatError::Index(anyhow::anyhow!("{key} is missing")))?;
        // Decoding a large index is CPU work: keep it off the async workers.
        let loaded = tokio::task::spawn_blocking(move || {
            SiteIndex::decode(&blob.bytes).map(|index| Weighed {
                value: LoadedIndex::new(index),
                bytes: blob.bytes.len().saturating_mul(DECODED_BYTES_PER_BLOB_BYTE),
            })
        })
        .await
        .map_err(|e| ChatError::Index(anyhow::Error::new(e).context("the decoding task failed")))?
        .map_err(|e| ChatError::Index(anyhow::Error::new(e).context("decoding the index")))?;
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
        let (result, settlement) = self.answer_deferred(caller, question, meta, deltas).await;
        if let Some(settlement) = settlement {
            settlement.run().await;
        }
        result
    }

    /// Answers a question, leaving its settlement (usage log, counters, session and credits, one
    /// store transaction) to the caller, to run once the answer has been delivered: the response
    /// does not wait for it. A settlement that is dropped unrun is lost (its hold is then released
    /// by the reservation sweeper, and the answer is never charged): run it, or use
    /// [`ChatService::answer`], which settles before it returns. A failed answer has one too (it
    /// gives the quota back and logs the failure).
    pub async fn answer_deferred(
        &self,
        caller: Caller,
        question: Question,
        meta: RequestMeta,
        deltas: Option<mpsc::Sender<String>>,
    ) -> (Result<Answer, ChatError>, Option<Settlement>) {
        let site_id = question.site_id.clone();
        let (result, settlement) = match self.answer_inner(caller, question, meta, deltas).await {
            Ok((answer, settlement)) => (Ok(answer), Some(settlement)),
            Err((e, settlement)) => (Err(e), settlement),
        };
        if let Err(e) = &result {
            self.tell_webhooks(&site_id, e).await;
        }
        (result, settlement)
    }

    /// Queues `limit.reached` (once per tenant, limit and day) or `chat.error` (failures on our or
    /// the model's side) for the tenant's webhooks. Refusals of the caller's input are not events.
    async fn tell_webhooks(&self, site_id: &SiteId, e: &ChatError) {
        let event_needed = match e {
            ChatError::QuotaExhausted { .. } | ChatError::ModelFailed(_) | ChatError::Index(_) => {
                true
            }
            ChatError::Store(inner) => !matches!(inner, StoreError::ConditionFailed),
            _ => false,
        };
        if !event_needed {
            return;
        }
        let Ok((site, tenant)) = self.site_and_tenant(site_id).await else {
            return;
        };
        let platform = &self.platform;
        let now = platform.clock.now();
        let event = match e {
            ChatError::QuotaExhausted { plan, what } => {
                let limit = if what.contains("daily") {
                    "daily_site_chats"
                } else if what.contains("embedding") {
                    "monthly_embedding_tokens"
                } else {
                    "monthly_chats"
                };
                let day = crate::clock::rfc3339(now)[..10].to_string();
                let notice = crate::store::Item::new(crate::store::keys::limit_notice(
                    &tenant.tenant_id,
                    limit,
                    &day,
                ))
                .expiring_at(now.unix_timestamp() + 2 * 86_400);
                match platform
                    .store
                    .put(notice, crate::store::Condition::IfAbsent)
                    .await
                {
                    Ok(()) => {}
                    // Told already today (or the store is down: better no event than many).
                    Err(_) => return,
                }
                crate::webhooks::Event::limit_reached(
                    now,
                    limit,
                    plan.as_str(),
                    Some(site.site_id.as_str()),
                )
            }
            other => crate::webhooks::Event::chat_error(
                now,
                Some(site.site_id.as_str()),
                match other {
                    ChatError::ModelFailed(_) => "model_failed",
                    ChatError::Index(_) => "index_unavailable",
                    _ => "storage_unavailable",
                },
                &other.to_string(),
                crate::http::current_request_id().as_deref(),
            ),
        };
        crate::webhooks::emit(platform, &tenant.tenant_id, event).await;
    }

    async fn answer_inner(
        &self,
        caller: Caller,
        question: Question,
        meta: RequestMeta,
        deltas: Option<mpsc::Sender<String>>,
    ) -> Result<(Answer, Settlement), (ChatError, Option<Settlement>)> {
        // Everything up to the reservation refuses without anything to settle.
        let refused = |e: ChatError| (e, None);
        let started = Instant::now();
        let clock = meta.timings.clone();
        let message = question.message.as_str().to_string();
        let platform = &self.platform;
        let store = platform.store.as_ref();
        let now = platform.clock.now();
        let now_unix = now.unix_timestamp();

        let (site, tenant) = self
            .site_and_tenant(&question.site_id)
            .await
            .map_err(refused)?;
        let windows = self
            .admit(&caller, &question, &site, now_unix)
            .map_err(refused)?;
        if let Err(Inactive(status)) = tenant.standing(now, platform.config.billing.past_due_grace)
        {
            return Err(refused(ChatError::Subscription(status)));
        }
        let requested_model = match caller {
            Caller::Tenant(_) => question.model.as_deref(),
            Caller::Visitor { .. } => None,
        };
        let (policy, fallback) = self
            .chat_policy(requested_model, tenant.plan, now)
            .map_err(refused)?;
        let index = self.load_index(&site).await.map_err(refused)?;
        let mut warnings: Vec<Warning> = fallback.into_iter().collect();
        if let Some(e) = &self.embeddings
            && index.index.embedding_model.as_deref() != Some(e.model.as_str())
        {
            let built = match &index.index.embedding_model {
                Some(other) => format!("with {other:?}"),
                None => "without embeddings".into(),
            };
            tracing::warn!(
                site_id = %site.site_id,
                configured = %e.model,
                "the site's index was built {built}; retrieval is lexical until it is re-trained"
            );
            warnings.push(Warning {
                code: "retrain_needed",
                message: format!(
                    "KOTOBA_EMBEDDING_MODEL is {:?} but this site's index was built {built}: \
                     retrieval stays lexical until the site is trained again (POST /api/train/url)",
                    e.model
                ),
            });
        }
        if matches!(caller, Caller::Visitor { .. }) {
            warnings.clear();
        }

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
        clock.mark(Stage::Admit);

        // One store round trip before the model: the visitor's rate-limit windows, the quota (the
        // month's chats and query tokens, the site's day), the credit hold, all in one transaction,
        // and the session history and the credit account (for the settle) read alongside.
        // The most this answer can cost, in credits: the largest prompt and the site's max tokens at
        // the model's price, and the query's embedding.
        let max_cost = policy
            .as_ref()
            .map_or(MicroUsd::ZERO, |p| {
                p.cost(
                    RESERVED_PROMPT_TOKENS + count_tokens(&message),
                    u64::from(site.prompt.max_tokens.get()),
                )
            })
            .saturating_add(embedding_policy.as_ref().map_or(MicroUsd::ZERO, |p| {
                MicroUsd::for_tokens(estimated_query_tokens as u64, p.input_per_1k)
            }));
        let max_credits = self.meter.settings().credits_for(max_cost);
        let reservation = quota(&tenant, &site, now, estimated_query_tokens);
        let credits = self
            .meter
            .reservation(
                &tenant.tenant_id,
                MeteredFunction::Chat,
                max_credits,
                meta.request_id.as_deref(),
            )
            .map_err(|e| refused(e.into()))?;
        let mut writes: Vec<Write> = windows.iter().map(|w| Write::Add(w.add.clone())).collect();
        writes.extend(reservation.writes());
        writes.extend(credits.writes);
        let mut reads = vec![crate::credits::account_key(&tenant.tenant_id)];
        if let Some(s) = &question.session_id {
            reads.push(sessions::key(&site.site_id, s));
        }
        let done = store.transact_and_read(writes, reads).await;
        match done.written {
            Ok(()) => {}
            Err(StoreError::ConditionFailed) => {
                return Err(refused(
                    self.why_refused(&windows, &tenant, &reservation, max_credits)
                        .await,
                ));
            }
            Err(e) => return Err(refused(e.into())),
        }
        let hold = credits.hold;
        clock.mark(Stage::Reserve);
        // A session id the site does not know (another site's, expired, made up) is not adopted: the
        // conversation continues under a new id, so no one can choose or hijack a session id.
        let (account, history) = match done.read {
            Ok(mut items) => {
                let session = match &question.session_id {
                    Some(_) => items.pop().flatten(),
                    None => None,
                };
                let account = items.pop();
                (
                    account,
                    session.map(|item| sessions::turns(&site.site_id, &item)),
                )
            }
            Err(e) => (None, Some(Err(e))),
        };
        let (session_id, history) = match (question.session_id.clone(), history) {
            (Some(id), Some(Ok(Some(turns)))) => (id, turns),
            (Some(id), Some(Err(e))) => {
                tracing::warn!(error = %e, "session history unavailable; answering without it");
                (id, Vec::new())
            }
            _ => (SessionId::generate(platform.ids.as_ref()), Vec::new()),
        };
        let message_id = MessageId::generate(platform.ids.as_ref());

        let (hits, embedding_tokens) = self
            .retrieve_passages(&index, &message, embed_query, estimated_query_tokens)
            .await;
        let chunks: Vec<&index::IndexedChunk> =
            hits.iter().map(|h| &index.index.chunks[h.chunk]).collect();
        let sources = sources_of(&hits, &chunks);
        clock.mark(Stage::Retrieve);

        // Generate.
        let generation = match (&self.chat, &policy) {
            (Some(client), Some(policy)) => {
                let request = model_request(&site, policy, &chunks, &history, &message);
                clock.mark(Stage::Prompt);
                generate(client, &request, deltas.as_ref(), &clock).await
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
        clock.mark(Stage::Stream);

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
        let log = UsageLogBuilder {
            caller: &caller,
            meta: &meta,
            tenant: &tenant.tenant_id,
            site: &site.site_id,
            session: &session_id,
            message: &message_id,
            model: &model_used,
            embedding_model: embedding_policy.as_ref().map(|p| p.name.as_str()),
            prices,
        }
        .build(
            &generation,
            embedding_tokens,
            started.elapsed().as_millis() as u64,
            now,
        );
        let (failed, cost) = (log.outcome == AnswerOutcome::Failed, log.cost);

        // The settlement: the usage log, the actual spend on the counters (a failed answer gives its
        // chats back), the session, the credits, in one transaction, run by the caller.
        let session = (!failed && !generation.cancelled).then(|| {
            sessions::item(
                &site.site_id,
                &session_id,
                history.clone(),
                &message,
                &generation.text,
                now_unix,
            )
        });
        let settlement =
            settle_writes(&tenant.tenant_id, &reservation, &log, session, now).map(|writes| {
                Settlement {
                    meter: self.meter.clone(),
                    hold: hold.clone(),
                    credits: self.meter.settings().credits_for(cost),
                    message_id: message_id.clone(),
                    writes,
                    account: account.clone(),
                    clock: clock.clone(),
                }
            });
        let settlement = match settlement {
            Ok(settlement) => settlement,
            // Records that do not serialise (never expected): still settle the credits.
            Err(e) => {
                tracing::error!(error = %e, message_id = %message_id, "building the usage records failed");
                Settlement {
                    meter: self.meter.clone(),
                    hold,
                    credits: self.meter.settings().credits_for(cost),
                    message_id: message_id.clone(),
                    writes: Vec::new(),
                    account,
                    clock: clock.clone(),
                }
            }
        };
        if let (true, Some(error)) = (failed, generation.error) {
            return Err((ChatError::ModelFailed(error), Some(settlement)));
        }
        tracing::info!(
            message_id = %message_id,
            site_id = %site.site_id,
            model = %model_used,
            cost_micros = cost.0,
            cancelled = generation.cancelled,
            "answered"
        );
        let answer = Answer {
            answer: generation.text,
            sources,
            model_used,
            warnings,
            tokens_consumed: TokensConsumed {
                embedding: embedding_tokens,
                chat: generation.input_tokens + generation.output_tokens,
            },
            cost_usd: cost,
            session_id,
            message_id,
        };
        Ok((answer, settlement))
    }

    /// A visitor's request refused for quota or credits still counts against its rate limits (their
    /// hits were rolled back with the refused transaction), so refusals cannot be hammered for free.
    async fn count_refused_hits(&self, windows: &[limits::Window]) {
        let store = self.platform.store.as_ref();
        for window in windows {
            if let Err(e) = store.add(window.add.clone()).await
                && !matches!(e, StoreError::ConditionFailed)
            {
                tracing::warn!(error = %e, "counting a refused request's rate-limit hit failed");
            }
        }
    }

    /// After the reservation's transaction was refused: which of its conditions refused it, in the
    /// order a caller should hear them (rate limit, then quota, then credits). Reads, on this rare
    /// path only.
    async fn why_refused(
        &self,
        windows: &[limits::Window],
        tenant: &Tenant,
        reservation: &Reservation,
        credits: crate::credits::Credits,
    ) -> ChatError {
        let store = self.platform.store.as_ref();
        let limits = tenant.plan.limits();
        let mut keys: Vec<Key> = windows.iter().map(|w| w.add.key.clone()).collect();
        keys.push(reservation.monthly.clone());
        keys.push(reservation.daily.clone());
        if let Ok(items) = store.transact_and_read(Vec::new(), keys).await.read {
            for (window, item) in windows.iter().zip(&items) {
                if window.refuses(item.as_ref()) {
                    return ChatError::RateLimited(window.retry_after_secs);
                }
            }
            let count = |i: usize, attribute: &str| {
                items[i].as_ref().map_or(0, |item| item.count(attribute))
            };
            let (month, day) = (windows.len(), windows.len() + 1);
            let what = if count(month, counters::CHATS) >= limits.monthly_chats as i64 {
                Some(format!("the monthly chat quota ({})", limits.monthly_chats))
            } else if count(day, counters::CHATS) >= limits.daily_site_chats as i64 {
                Some(format!(
                    "the site's daily chat quota ({})",
                    limits.daily_site_chats
                ))
            } else if reservation.query_tokens > 0
                && count(month, counters::EMBEDDING_TOKENS) + reservation.query_tokens
                    > limits.monthly_embedding_tokens as i64
            {
                Some(format!(
                    "the monthly embedding-token quota ({})",
                    limits.monthly_embedding_tokens
                ))
            } else {
                None
            };
            if let Some(what) = what {
                self.count_refused_hits(windows).await;
                return ChatError::QuotaExhausted {
                    plan: tenant.plan,
                    what,
                };
            }
        }
        self.count_refused_hits(windows).await;
        match self
            .meter
            .refusal(&tenant.tenant_id, MeteredFunction::Chat, credits)
            .await
        {
            Some(e) => e.into(),
            // Nothing explains it any more (the counters moved since): the quota, as before.
            None => ChatError::QuotaExhausted {
                plan: tenant.plan,
                what: "the chat quota".to_string(),
            },
        }
    }
}

/// The quota one answer reserves: one chat on the tenant's month (and the query's estimated
/// embedding tokens, on the same item) and one on the site's day, each within the plan's limit.
fn quota(tenant: &Tenant, site: &Site, now: OffsetDateTime, query_tokens: i64) -> Reservation {
    let now_unix = now.unix_timestamp();
    let limits = tenant.plan.limits();
    let day = usage::day_of(now);
    let monthly = usage::tenant_month(&tenant.tenant_id, &usage::month_of(now));
    let daily = usage::site_day(&site.site_id, &day);
    Reservation {
        monthly,
        daily,
        day,
        query_tokens,
        monthly_chats: limits.monthly_chats as i64,
        daily_chats: limits.daily_site_chats as i64,
        monthly_tokens: limits.monthly_embedding_tokens as i64,
        now_unix,
    }
}

/// The quota one answer holds from its reservation to its settlement.
#[derive(Debug, Clone, PartialEq)]
struct Reservation {
    /// The tenant's counters for the month.
    monthly: Key,
    /// The site's counters for the day.
    daily: Key,
    /// The day (`YYYY-MM-DD`) of the site's and the tenant's daily counters.
    day: String,
    /// The query's embedding tokens as estimated, corrected on settling.
    query_tokens: i64,
    monthly_chats: i64,
    daily_chats: i64,
    monthly_tokens: i64,
    now_unix: i64,
}

impl Reservation {
    /// The reservation's writes: one add per item, within the plan's limits.
    fn writes(&self) -> Vec<Write> {
        let mut monthly = Add::new(self.monthly.clone(), counters::CHATS, 1)
            .up_to(self.monthly_chats)
            .expiring_at(self.now_unix + 400 * 86_400);
        if self.query_tokens > 0 {
            monthly = monthly.and(
                counters::EMBEDDING_TOKENS,
                self.query_tokens,
                Some(self.monthly_tokens),
            );
        }
        vec![
            Write::Add(monthly),
            Write::Add(
                Add::new(self.daily.clone(), counters::CHATS, 1)
                    .up_to(self.daily_chats)
                    .expiring_at(self.now_unix + 40 * 86_400),
            ),
        ]
    }
}

/// The writes that settle a reservation against what the answer actually spent (its usage log): the
/// log itself, the spend on the month and the tenant's day (the embedding estimate corrected to what
/// was counted), a failed answer's chats given back, and the session's new turns.
fn settle_writes(
    tenant: &TenantId,
    reservation: &Reservation,
    log: &UsageLog,
    session: Option<Result<crate::store::Item, StoreError>>,
    now: OffsetDateTime,
) -> Result<Vec<Write>, StoreError> {
    let failed = log.outcome == AnswerOutcome::Failed;
    // Written unconditionally: the settle is one transaction, run once (a retry after an unknown
    // outcome is refused by the credit account's sequence number, not by the log).
    let mut writes = vec![Write::Put(
        logs::item(log, now.unix_timestamp())?,
        crate::store::Condition::None,
    )];
    // The month by site and by model: the chat model's share, and the query's embedding model's.
    let embedding_cost = MicroUsd::for_tokens(log.embedding_tokens, log.prices.embedding_per_1k);
    let mut breakdown = usage::Breakdown::new()
        .site(
            &log.site_id,
            if failed { 0 } else { 1 },
            log.embedding_tokens as i64,
            log.cost,
        )
        .model(usage::ModelSpend {
            model: &log.model,
            input_tokens: log.chat_input_tokens,
            output_tokens: log.chat_output_tokens,
            cost: MicroUsd(log.cost.0 - embedding_cost.0),
            ..Default::default()
        });
    if let Some(model) = log.embedding_model.as_deref() {
        breakdown = breakdown.model(usage::ModelSpend {
            model,
            input_tokens: log.embedding_tokens,
            cost: embedding_cost,
            ..Default::default()
        });
    }
    let correction = if reservation.query_tokens > 0 {
        log.embedding_tokens as i64 - reservation.query_tokens
    } else {
        0
    };
    let tenant_day = keys::tenant_day(tenant, &reservation.day);
    let month = [
        (counters::COST_MICROS, log.cost.0),
        (counters::CHAT_INPUT_TOKENS, log.chat_input_tokens as i64),
        (counters::CHAT_OUTPUT_TOKENS, log.chat_output_tokens as i64),
        // Only the chat comes back: embedding tokens spent on the query stay spent.
        (counters::CHATS, if failed { -1 } else { 0 }),
        (counters::EMBEDDING_TOKENS, correction),
    ];
    let day = [
        (counters::COST_MICROS, log.cost.0),
        (counters::CHATS, if failed { 0 } else { 1 }),
        (counters::EMBEDDING_TOKENS, log.embedding_tokens as i64),
    ];
    let site_day = [(counters::CHATS, if failed { -1 } else { 0 })];
    writes.extend(
        [
            usage::spend(
                &reservation.monthly,
                month.into_iter().chain(breakdown.counters()),
                now,
            ),
            usage::spend(&tenant_day, day, now),
            usage::spend(&reservation.daily, site_day, now),
        ]
        .into_iter()
        .flatten()
        .map(Write::Add),
    );
    if let Some(session) = session {
        writes.push(Write::Put(session?, crate::store::Condition::None));
    }
    Ok(writes)
}

/// What an answer still has to write once it has been delivered (see
/// [`ChatService::answer_deferred`]): one store transaction with the credit settle.
#[must_use = "an unrun settlement is never charged (the sweeper releases its hold)"]
pub struct Settlement {
    meter: Meter,
    hold: crate::credits::Hold,
    credits: crate::credits::Credits,
    message_id: MessageId,
    writes: Vec<Write>,
    account: Option<Option<crate::store::Item>>,
    clock: StageClock,
}

impl std::fmt::Debug for Settlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settlement")
            .field("hold", &self.hold.hold_id)
            .field("credits", &self.credits)
            .field("message_id", &self.message_id)
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl Settlement {
    /// Writes it; a failure is logged (the answer was delivered: there is no one to tell).
    pub async fn run(self) {
        let started = Instant::now();
        let result = self
            .meter
            .settle_with(
                self.hold,
                self.credits,
                Some(self.message_id.as_str()),
                crate::credits::Along {
                    writes: self.writes,
                    account: self.account,
                },
            )
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, message_id = %self.message_id, "settling the answer failed");
        }
        self.clock.settled(started.elapsed());
    }
}

/// The answer's sources: the passages' pages, a snippet each, scores rounded for display.
fn sources_of(hits: &[crate::index::search::Hit], chunks: &[&index::IndexedChunk]) -> Vec<Source> {
    hits.iter()
        .zip(chunks)
        .map(|(hit, c)| Source {
            url: c.url.clone(),
            title: c.title.clone(),
            snippet: snippet(&c.text, 200),
            score: (hit.score as f64 * 10_000.0).round() / 10_000.0,
        })
        .collect()
}

/// The model request: the site's prompt profile, the passages, the session's history, the question.
fn model_request(
    site: &Site,
    policy: &ModelPolicy,
    chunks: &[&index::IndexedChunk],
    history: &[Message],
    message: &str,
) -> ModelRequest {
    let passages: Vec<prompt::Passage> = chunks
        .iter()
        .map(|c| prompt::Passage {
            title: &c.title,
            url: &c.url,
            heading_path: &c.heading_path,
            text: &c.text,
        })
        .collect();
    ModelRequest {
        model: policy.name.clone(),
        messages: prompt::build_messages(
            site.prompt.system_prompt.as_str(),
            &passages,
            history,
            message,
        ),
        temperature: f64::from(site.prompt.temperature),
        max_tokens: site.prompt.max_tokens.get(),
    }
}

/// What one answer's usage log says about who asked, fixed before the answer is generated.
struct UsageLogBuilder<'a> {
    caller: &'a Caller,
    meta: &'a RequestMeta,
    tenant: &'a TenantId,
    site: &'a SiteId,
    session: &'a SessionId,
    message: &'a MessageId,
    model: &'a str,
    embedding_model: Option<&'a str>,
    prices: PriceSnapshot,
}

impl UsageLogBuilder<'_> {
    /// The log entry for what was generated: outcome, tokens, cost at the snapshot's prices.
    fn build(
        self,
        generation: &Generation,
        embedding_tokens: u64,
        latency_ms: u64,
        now: OffsetDateTime,
    ) -> UsageLog {
        let prices = self.prices;
        let cost = MicroUsd::for_tokens(generation.input_tokens, prices.chat_input_per_1k)
            .saturating_add(MicroUsd::for_tokens(
                generation.output_tokens,
                prices.chat_output_per_1k,
            ))
            .saturating_add(MicroUsd::for_tokens(
                embedding_tokens,
                prices.embedding_per_1k,
            ));
        // Failed means nothing was said: text that got out before an error is a (cut) answer.
        let failed = generation.error.is_some() && generation.text.is_empty();
        UsageLog {
            message_id: self.message.clone(),
            tenant_id: self.tenant.clone(),
            site_id: self.site.clone(),
            session_id: self.session.clone(),
            channel: match self.caller {
                Caller::Tenant(_) => Channel::Api,
                Caller::Visitor { .. } => Channel::Embed,
            },
            model: self.model.to_string(),
            embedding_model: self.embedding_model.map(str::to_string),
            outcome: if failed {
                AnswerOutcome::Failed
            } else if generation.cancelled {
                AnswerOutcome::Cancelled
            } else {
                AnswerOutcome::Answered
            },
            chat_input_tokens: generation.input_tokens,
            chat_output_tokens: generation.output_tokens,
            embedding_tokens,
            latency_ms,
            cost,
            prices,
            ip_hash: match self.caller {
                Caller::Visitor { ip: Some(ip), .. } => Some(logs::hash_ip(ip)),
                _ => None,
            },
            user_agent: self.meta.user_agent.clone(),
            request_id: self.meta.request_id.clone(),
            error: generation.error.as_ref().map(ToString::to_string),
            created_at: now,
            feedback: None,
        }
    }
}

struct Generation {
    text: String,
    input_tokens: u64,
    output_tokens: u64,
    cancelled: bool,
    error: Option<crate::models::chat::ProviderError>,
}

/// Streams a completion, forwarding text; stops (dropping the connection) when the receiver is gone.
async fn generate(
    client: &ChatClient,
    request: &ModelRequest,
    deltas: Option<&mpsc::Sender<String>>,
    clock: &StageClock,
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
        Err(e) => out.error = Some(e),
        Ok(mut stream) => {
            while let Some(event) = stream.next().await {
                match event {
                    Ok(ChatEvent::Delta(text)) => {
                        if out.text.is_empty() {
                            clock.mark(Stage::FirstByte);
                        }
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
                        out.error = Some(e);
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

/// Whether the page's Origin may use the site. The origin must be https (plain http only for a loopback
/// page in local development), its host must match an allowed domain, and a non-default port must be
/// the one listed with that domain (`shop.example.com:8443`): `example.com` does not admit
/// `http://example.com:8080`, which may be a different program on the same host. Loopback pages may use
/// any port, since they can only come from the visitor's own machine.
pub fn origin_allowed(site: &Site, origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return false };
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let Some(host) = url.host() else {
        return false;
    };
    let loopback = match &host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return false,
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    // `port()` is `None` for the scheme's default port.
    let port = url.port();
    site.allowed_domains
        .iter()
        .any(|d| d.matches_host(host) && (loopback || d.port() == port))
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
    use crate::sites::SiteName;
    use crate::sites::domains::parse_domains;
    use crate::sites::prompt::PromptProfile;

    fn site_allowing(domains: &[&str]) -> Site {
        let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
        Site {
            site_id: SiteId::parse("site_1").unwrap(),
            tenant_id: TenantId::parse("ten_1").unwrap(),
            name: SiteName::parse("Shop").unwrap(),
            allowed_domains: parse_domains(&domains).unwrap(),
            is_embed_enabled: true,
            embed_script_id: "emb_1".into(),
            status: SiteStatus::Ready,
            index_version: Some(1),
            last_trained_at: None,
            last_training_error: None,
            retrain_interval_days: crate::sites::DEFAULT_RETRAIN_INTERVAL_DAYS,
            widget: Default::default(),
            prompt: PromptProfile::initial(),
            created_at: crate::fixtures::START,
            updated_at: crate::fixtures::START,
        }
    }

    #[test]
    fn origins_need_https_and_the_listed_port() {
        let site = site_allowing(&[
            "example.com",
            "shop.example.com:8443",
            "127.0.0.1",
            "localhost",
        ]);
        let allowed = |o: &str| origin_allowed(&site, Some(o));
        assert!(allowed("https://example.com"));
        assert!(
            allowed("https://example.com:443"),
            "the default port is the same origin"
        );
        assert!(
            !allowed("http://example.com"),
            "plain http on a public host"
        );
        assert!(
            !allowed("https://example.com:8080"),
            "a port the site did not list"
        );
        assert!(!allowed("http://example.com:8080"));
        assert!(allowed("https://shop.example.com:8443"), "a listed port");
        assert!(!allowed("https://shop.example.com"), "only the listed port");
        // Local development: loopback pages over http, on any port.
        assert!(allowed("http://127.0.0.1:5173"));
        assert!(allowed("http://localhost:3000"));
        assert!(!allowed("null"));
    }

    #[tokio::test]
    async fn visitors_without_an_ip_are_refused_not_pooled() {
        use crate::sites::NewSite;
        use crate::tenants::TenantName;
        let dir = tempfile::tempdir().unwrap();
        let vars = [(
            "KOTOBA_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        )]
        .into_iter()
        .collect();
        let config = crate::config::Config::from_vars(&vars, crate::config::Mode::Local).unwrap();
        let platform = Platform::embedded(
            config,
            Arc::new(crate::clock::SystemClock),
            Arc::new(crate::ids::RandomIds),
        )
        .unwrap();
        let (store, ids, clock) = (
            platform.store.as_ref(),
            platform.ids.as_ref(),
            platform.clock.as_ref(),
        );
        let tenant = crate::tenants::create_tenant(
            store,
            ids,
            clock,
            TenantName::parse("Shop").unwrap(),
            Plan::Pro,
        )
        .await
        .unwrap();
        let site = crate::sites::create_site(
            store,
            ids,
            clock,
            &tenant.tenant_id,
            NewSite {
                name: SiteName::parse("Shop").unwrap(),
                allowed_domains: vec!["shop.test".into()],
            },
        )
        .await
        .unwrap();
        crate::sites::update_site_internal(
            store,
            clock,
            &site.site_id,
            |s| {
                s.is_embed_enabled = true;
                s.status = SiteStatus::Ready;
                s.index_version = Some(1);
            },
            vec![],
        )
        .await
        .unwrap();
        let service = ChatService::new(platform.clone(), reqwest::Client::new()).unwrap();
        let err = service
            .answer(
                Caller::Visitor {
                    origin: Some("https://shop.test".into()),
                    ip: None,
                },
                Question {
                    site_id: site.site_id.clone(),
                    message: ChatMessage::parse("When do you open?").unwrap(),
                    session_id: None,
                    model: None,
                },
                RequestMeta::default(),
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, ChatError::NotAvailable(_)),
            "a visitor without an address got past admission: {err:?}"
        );
    }

    fn policy(name: &str, input: i64, output: i64) -> ModelPolicy {
        serde_json::from_value(serde_json::json!({
            "name": name, "kind": "chat", "input_per_1k": input, "output_per_1k": output,
            "effective_from": "2026-01-01T00:00:00Z", "effective_until": null, "default_for": [],
            "plans_allowed": ["starter"]
        }))
        .unwrap()
    }

    #[test]
    fn the_model_request_carries_the_sites_prompt_passages_history_and_question() {
        let mut site = site_allowing(&["example.com"]);
        site.prompt = site.prompt.next(
            serde_json::from_str(r#"{"system_prompt": "You serve Hotel Kotoba.", "temperature": 0.3, "max_tokens": 321}"#)
                .unwrap(),
        );
        let chunk = index::IndexedChunk {
            url: "https://example.com/access".into(),
            title: "Access".into(),
            heading_path: vec!["Access".into(), "By train".into()],
            text: "Five minutes from the station.".into(),
            content_hash: "h".into(),
            token_count: 6,
        };
        let history = vec![Message::user("Hello"), Message::assistant("Welcome!")];
        let request = model_request(
            &site,
            &policy("gpt-4o-mini", 150, 600),
            &[&chunk],
            &history,
            "How do I get there?",
        );
        assert_eq!(request.model, "gpt-4o-mini");
        assert_eq!((request.temperature, request.max_tokens), (0.3, 321));
        let system = &request.messages[0].content;
        assert!(system.starts_with("You serve Hotel Kotoba."), "{system}");
        let all: Vec<&str> = request
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        let text = all.join("\n");
        assert!(text.contains("Five minutes from the station."), "{text}");
        assert!(
            text.contains("Welcome!") && text.ends_with("How do I get there?"),
            "{text}"
        );
    }

    #[test]
    fn the_usage_log_says_who_asked_what_it_cost_and_how_it_ended() {
        let (tenant, site) = (
            TenantId::parse("ten_1").unwrap(),
            SiteId::parse("site_1").unwrap(),
        );
        let session = SessionId::parse("sess_1").unwrap();
        let message = MessageId::parse("msg_1").unwrap();
        let meta = RequestMeta {
            request_id: Some("req-1".into()),
            user_agent: Some("test".into()),
            ..RequestMeta::default()
        };
        let visitor = Caller::Visitor {
            origin: Some("https://example.com".into()),
            ip: Some("203.0.113.9".into()),
        };
        let builder = |caller| UsageLogBuilder {
            caller,
            meta: &meta,
            tenant: &tenant,
            site: &site,
            session: &session,
            message: &message,
            model: "gpt-4o-mini",
            embedding_model: Some("text-embedding-3-small"),
            prices: PriceSnapshot {
                chat_input_per_1k: MicroUsd(150),
                chat_output_per_1k: MicroUsd(600),
                embedding_per_1k: MicroUsd(20),
            },
        };
        let now = time::macros::datetime!(2026-05-01 09:00 UTC);
        let answered = Generation {
            text: "Five minutes.".into(),
            input_tokens: 2_000,
            output_tokens: 1_000,
            cancelled: false,
            error: None,
        };
        let log = builder(&visitor).build(&answered, 500, 42, now);
        assert_eq!(
            (log.channel, log.outcome),
            (Channel::Embed, AnswerOutcome::Answered)
        );
        // 2k in at 150, 1k out at 600, 500 embedding tokens at 20 per 1k.
        assert_eq!(log.cost, MicroUsd(300 + 600 + 10));
        assert_eq!(log.ip_hash, Some(logs::hash_ip("203.0.113.9")));
        assert_eq!(
            (
                log.request_id.as_deref(),
                log.latency_ms,
                crate::clock::rfc3339(log.created_at).as_str()
            ),
            (Some("req-1"), 42, "2026-05-01T09:00:00Z")
        );
        let tenant_caller = Caller::Tenant(tenant.clone());
        let cancelled = Generation {
            cancelled: true,
            ..answered
        };
        let log = builder(&tenant_caller).build(&cancelled, 0, 1, now);
        assert_eq!(
            (log.channel, log.outcome, log.ip_hash),
            (Channel::Api, AnswerOutcome::Cancelled, None)
        );
        let failed = Generation {
            text: String::new(),
            input_tokens: 0,
            output_tokens: 0,
            cancelled: false,
            error: Some(crate::models::chat::ProviderError::Malformed(
                "no choices".into(),
            )),
        };
        let log = builder(&tenant_caller).build(&failed, 0, 1, now);
        assert_eq!(log.outcome, AnswerOutcome::Failed);
        assert!(log.error.unwrap().contains("no choices"));
    }

    async fn reserving_service() -> (tempfile::TempDir, ChatService, Tenant, Site) {
        let dir = tempfile::tempdir().unwrap();
        let platform = crate::fixtures::embedded_platform(&dir);
        let (tenant, site) = crate::fixtures::tenant_with_site(
            platform.store.as_ref(),
            platform.ids.as_ref(),
            platform.clock.as_ref(),
            Plan::Starter,
            &[],
        )
        .await;
        let service = ChatService::new(platform, reqwest::Client::new()).unwrap();
        (dir, service, tenant, site)
    }

    #[tokio::test]
    async fn retrieval_finds_the_passage_and_lists_its_page_as_a_source() {
        let (_dir, service, _, site) = reserving_service().await;
        let mut builder = crate::index::IndexBuilder::new(None);
        for (page, text) in [
            (
                "access",
                "The hotel is five minutes on foot from Kyoto station.",
            ),
            (
                "onsen",
                "The hot spring bath is open from 6 am to midnight.",
            ),
            (
                "rooms",
                "Every room has a view of the garden and free wifi.",
            ),
        ] {
            let chunk = index::IndexedChunk {
                url: format!("https://hotel.test/{page}"),
                title: page.into(),
                heading_path: vec![page.into()],
                text: text.into(),
                content_hash: page.into(),
                token_count: 12,
            };
            builder.add(chunk, None).unwrap();
        }
        let index =
            LoadedIndex::new(builder.finish(&site.site_id, 1, "2026-05-01T09:00:00Z".into()));
        let (hits, embedding_tokens) = service
            .retrieve_passages(&index, "When is the hot spring bath open?", None, 0)
            .await;
        assert_eq!(embedding_tokens, 0, "lexical retrieval spends no tokens");
        let chunks: Vec<&index::IndexedChunk> =
            hits.iter().map(|h| &index.index.chunks[h.chunk]).collect();
        let sources = sources_of(&hits, &chunks);
        assert_eq!(sources[0].url, "https://hotel.test/onsen", "{sources:?}");
        assert!(sources[0].snippet.starts_with("The hot spring bath"));
    }

    #[tokio::test]
    async fn reserving_counts_a_chat_and_refusing_names_the_limit_and_keeps_nothing() {
        let (_dir, service, tenant, site) = reserving_service().await;
        let store = service.platform.store.as_ref();
        let now = service.platform.clock.now();
        let reservation = quota(&tenant, &site, now, 40);
        assert_eq!(reservation.day, "2026-05-01");
        store.transact(reservation.writes()).await.unwrap();
        let month = store.get(&reservation.monthly).await.unwrap().unwrap();
        assert_eq!(
            (
                month.count(counters::CHATS),
                month.count(counters::EMBEDDING_TOKENS)
            ),
            (1, 40)
        );
        // The site's day is full: nothing more is reserved, on either counter.
        let daily = usage::site_day(&site.site_id, &reservation.day);
        let limit = tenant.plan.limits().daily_site_chats as i64;
        store
            .add(Add::new(daily.clone(), counters::CHATS, limit - 1))
            .await
            .unwrap();
        let refused = store.transact(reservation.writes()).await;
        assert!(
            matches!(refused, Err(StoreError::ConditionFailed)),
            "{refused:?}"
        );
        let err = service
            .why_refused(&[], &tenant, &reservation, crate::credits::Credits(0))
            .await;
        assert!(
            matches!(&err, ChatError::QuotaExhausted { what, .. } if what.contains("daily")),
            "{err:?}"
        );
        let month = store.get(&reservation.monthly).await.unwrap().unwrap();
        assert_eq!(
            (
                month.count(counters::CHATS),
                month.count(counters::EMBEDDING_TOKENS)
            ),
            (1, 40)
        );
    }

    #[tokio::test]
    async fn settling_records_the_spend_and_a_failure_gives_the_chat_back() {
        let (_dir, service, tenant, site) = reserving_service().await;
        let store = service.platform.store.as_ref();
        let now = service.platform.clock.now();
        let log = |outcome, embedding_tokens, cost| -> UsageLog {
            serde_json::from_value(serde_json::json!({
                "message_id": "msg_1", "tenant_id": tenant.tenant_id, "site_id": site.site_id,
                "session_id": "sess_1", "channel": "api", "model": "m", "outcome": outcome,
                "chat_input_tokens": 100, "chat_output_tokens": 50, "embedding_tokens": embedding_tokens,
                "latency_ms": 1, "cost": cost,
                "prices": {"chat_input_per_1k": 0, "chat_output_per_1k": 0, "embedding_per_1k": 0},
                "ip_hash": null, "user_agent": null, "request_id": null, "error": null,
                "created_at": "2026-05-01T09:00:00Z"
            }))
            .unwrap()
        };
        let settle = |reservation: &Reservation, log: &UsageLog| {
            settle_writes(&tenant.tenant_id, reservation, log, None, now).unwrap()
        };
        let reservation = quota(&tenant, &site, now, 40);
        store.transact(reservation.writes()).await.unwrap();
        store
            .transact(settle(&reservation, &log("answered", 30, 7)))
            .await
            .unwrap();
        let month = store.get(&reservation.monthly).await.unwrap().unwrap();
        // The estimate (40) is corrected to what was counted (30); the spend lands on the month.
        assert_eq!(month.count(counters::CHATS), 1);
        assert_eq!(month.count(counters::EMBEDDING_TOKENS), 30);
        assert_eq!(month.count(counters::COST_MICROS), 7);
        assert_eq!(month.count(counters::CHAT_INPUT_TOKENS), 100);
        let tenant_day = keys::tenant_day(&tenant.tenant_id, &reservation.day);
        let day = store.get(&tenant_day).await.unwrap().unwrap();
        assert_eq!(
            (day.count(counters::CHATS), day.count(counters::COST_MICROS)),
            (1, 7)
        );

        let failed = quota(&tenant, &site, now, 0);
        store.transact(failed.writes()).await.unwrap();
        store
            .transact(settle(&failed, &log("failed", 0, 0)))
            .await
            .unwrap();
        let month = store.get(&reservation.monthly).await.unwrap().unwrap();
        let site_day = store
            .get(&usage::site_day(&site.site_id, &reservation.day))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            month.count(counters::CHATS),
            1,
            "the failed answer's chat came back"
        );
        assert_eq!(site_day.count(counters::CHATS), 1);
        // The month by site and by model: the failed answer is a request of its model, not a chat.
        let (sites, models) = usage::breakdown::read(Some(&month));
        assert_eq!(sites.len(), 1);
        assert_eq!(
            (
                sites[0].site_id.as_str(),
                sites[0].chats,
                sites[0].embedding_tokens
            ),
            (site.site_id.as_str(), 1, 30)
        );
        assert_eq!(models.len(), 1, "no embedding model: no query was embedded");
        assert_eq!((models[0].model.as_str(), models[0].requests), ("m", 2));
        assert_eq!(models[0].input_tokens, 200);
        assert_eq!(models[0].cost_usd, 0.000007);
    }

    #[test]
    fn snippets_cut_on_characters() {
        assert_eq!(snippet("営業時間は9時からです", 4), "営業時間…");
        assert_eq!(snippet(" short ", 10), "short");
    }
}
