//! Models: the price book (model policies with effective dates) and clients for OpenAI-compatible APIs.
//!
//! Every token Kotoba spends is priced from a policy in force at the moment of use, and the usage
//! record keeps a snapshot of that price, so a later price change never rewrites history.

pub mod chat;
pub mod embeddings;
pub mod rerank;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::money::MicroUsd;
use crate::tenants::Plan;

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Chat,
    Embedding,
    Realtime,
}

/// A model's prices from a date on, and who may use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPolicy {
    pub name: String,
    pub kind: ModelKind,
    /// Price per 1,000 input (prompt) tokens.
    pub input_per_1k: MicroUsd,
    /// Price per 1,000 output (completion) tokens; zero for embeddings.
    pub output_per_1k: MicroUsd,
    /// In force from this instant (inclusive) …
    #[serde(with = "time::serde::rfc3339")]
    pub effective_from: OffsetDateTime,
    /// … until this one (exclusive), if it has ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub effective_until: Option<OffsetDateTime>,
    /// The plan's model of this kind when the caller names none.
    pub default_for: Vec<Plan>,
    pub plans_allowed: Vec<Plan>,
    /// Embedding models: how queries are told from passages (prefixes or `input_type`).
    #[serde(default)]
    pub input: embeddings::InputStyle,
}

impl ModelPolicy {
    pub fn in_force(&self, at: OffsetDateTime) -> bool {
        self.effective_from <= at && self.effective_until.is_none_or(|until| at < until)
    }

    pub fn allows(&self, plan: Plan) -> bool {
        self.plans_allowed.contains(&plan)
    }

    /// The cost of a call: input and output tokens at this policy's prices.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> MicroUsd {
        MicroUsd::for_tokens(input_tokens, self.input_per_1k)
            .saturating_add(MicroUsd::for_tokens(output_tokens, self.output_per_1k))
    }
}

/// The model clients a deployment is configured with, and the price book that meters them (models
/// the book does not list, e.g. self-hosted ones, are added at zero price).
pub struct ConfiguredModels {
    pub prices: PriceBook,
    pub chat: Option<chat::ChatClient>,
    pub embeddings: Option<embeddings::EmbeddingClient>,
    /// Reorders retrieval's candidates when `KOTOBA_RERANK_MODEL` is set.
    pub rerank: Option<rerank::RerankClient>,
}

impl ConfiguredModels {
    pub fn new(
        settings: &crate::config::ModelSettings,
        http: reqwest::Client,
    ) -> Result<Self, url::ParseError> {
        let mut prices = PriceBook::builtin();
        let chat = match &settings.chat_model {
            Some(model) => {
                prices = prices.with_unpriced_model(model, ModelKind::Chat);
                Some(chat::ChatClient::new(
                    http.clone(),
                    &settings.base_url,
                    settings.api_key.clone(),
                )?)
            }
            None => None,
        };
        let rerank = match &settings.rerank_model {
            Some(model) => Some(rerank::RerankClient::new(
                http.clone(),
                settings
                    .rerank_base_url
                    .as_ref()
                    .unwrap_or(&settings.base_url),
                settings.api_key.clone(),
                model.clone(),
            )?),
            None => None,
        };
        let embeddings = match &settings.embedding_model {
            Some(model) => {
                prices = prices.with_unpriced_model(model, ModelKind::Embedding);
                if let Some(style) = &settings.embedding_input {
                    prices = prices.with_embedding_input(model, style.clone());
                }
                Some(
                    embeddings::EmbeddingClient::new(
                        http,
                        &settings.base_url,
                        settings.api_key.clone(),
                        model.clone(),
                    )?
                    .with_input(prices.embedding_input(model))
                    .with_batch(
                        settings
                            .embedding_batch
                            .unwrap_or(embeddings::DEFAULT_BATCH),
                    ),
                )
            }
            None => None,
        };
        Ok(Self {
            prices,
            chat,
            embeddings,
            rerank,
        })
    }
}

/// All policies, past and present.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceBook {
    policies: Vec<ModelPolicy>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("model {model:?} is not available on the {plan} plan")]
    NotAllowed { model: String, plan: &'static str },
    #[error("no {kind:?} model is priced for {model:?} at this time")]
    Unpriced { model: String, kind: ModelKind },
}

const ALL_PLANS: [Plan; 3] = [Plan::Starter, Plan::Pro, Plan::Enterprise];

/// Prices in micro-USD per 1,000 tokens (a list price of $0.02 per 1M tokens is 20).
fn policy(
    name: &str,
    kind: ModelKind,
    input: i64,
    output: i64,
    plans: &[Plan],
    default_for: &[Plan],
) -> ModelPolicy {
    ModelPolicy {
        name: name.into(),
        kind,
        input_per_1k: MicroUsd(input),
        output_per_1k: MicroUsd(output),
        effective_from: datetime!(2024-01-01 00:00 UTC),
        effective_until: None,
        default_for: default_for.to_vec(),
        plans_allowed: plans.to_vec(),
        input: embeddings::InputStyle::Plain,
    }
}

impl PriceBook {
    pub fn new(policies: Vec<ModelPolicy>) -> Self {
        Self { policies }
    }

    /// The seeded price book: OpenAI's list prices (standard tier, USD).
    pub fn builtin() -> Self {
        use ModelKind::*;
        use Plan::*;
        Self::new(vec![
            // Embeddings: $0.02 / $0.13 / $0.10 per 1M tokens.
            policy(
                "text-embedding-3-small",
                Embedding,
                20,
                0,
                &ALL_PLANS,
                &ALL_PLANS,
            ),
            policy("text-embedding-3-large", Embedding, 130, 0, &ALL_PLANS, &[]),
            policy("text-embedding-ada-002", Embedding, 100, 0, &ALL_PLANS, &[]),
            // Chat: gpt-4o-mini $0.15/$0.60, gpt-4.1-mini $0.40/$1.60, gpt-4.1 $2/$8, gpt-4o $2.50/$10 per 1M.
            policy(
                "gpt-4o-mini",
                Chat,
                150,
                600,
                &ALL_PLANS,
                &[Starter, Pro, Enterprise],
            ),
            policy("gpt-4.1-mini", Chat, 400, 1_600, &[Pro, Enterprise], &[]),
            policy("gpt-4.1", Chat, 2_000, 8_000, &[Enterprise], &[]),
            policy("gpt-4o", Chat, 2_500, 10_000, &[Enterprise], &[]),
            // Realtime (text-token prices; audio tokens are priced by the bridge's own table).
            policy(
                "gpt-realtime",
                Realtime,
                4_000,
                16_000,
                &ALL_PLANS,
                &ALL_PLANS,
            ),
        ])
    }

    /// The policy for a named model of a kind, in force at `at`, allowed on `plan`.
    pub fn resolve(
        &self,
        kind: ModelKind,
        model: &str,
        plan: Plan,
        at: OffsetDateTime,
    ) -> Result<&ModelPolicy, PolicyError> {
        let policy = self
            .policies
            .iter()
            .filter(|p| p.kind == kind && p.name == model && p.in_force(at))
            .max_by_key(|p| p.effective_from)
            .ok_or_else(|| PolicyError::Unpriced {
                model: model.into(),
                kind,
            })?;
        if !policy.allows(plan) {
            return Err(PolicyError::NotAllowed {
                model: model.into(),
                plan: plan.as_str(),
            });
        }
        Ok(policy)
    }

    /// The plan's default model of a kind in force at `at`, if any.
    pub fn default_for(
        &self,
        kind: ModelKind,
        plan: Plan,
        at: OffsetDateTime,
    ) -> Option<&ModelPolicy> {
        self.policies
            .iter()
            .filter(|p| p.kind == kind && p.in_force(at) && p.default_for.contains(&plan))
            .max_by_key(|p| p.effective_from)
    }

    /// Adds a zero-priced policy for a self-hosted model (Ollama, vLLM, TEI …) that the book does not
    /// know, so a deployment on its own models still meters tokens.
    pub fn with_unpriced_model(mut self, name: &str, kind: ModelKind) -> Self {
        if !self
            .policies
            .iter()
            .any(|p| p.name == name && p.kind == kind)
        {
            tracing::warn!(
                model = name,
                ?kind,
                "model has no list price; metering its tokens at $0"
            );
            let mut added = policy(name, kind, 0, 0, &ALL_PLANS, &[]);
            if kind == ModelKind::Embedding {
                added.input = embeddings::InputStyle::for_model(name);
            }
            self.policies.push(added);
        }
        self
    }

    /// Sets how an embedding model is told queries from passages (`KOTOBA_EMBEDDING_INPUT`), on every
    /// policy of that model.
    pub fn with_embedding_input(mut self, name: &str, input: embeddings::InputStyle) -> Self {
        for p in self
            .policies
            .iter_mut()
            .filter(|p| p.name == name && p.kind == ModelKind::Embedding)
        {
            p.input = input.clone();
        }
        self
    }

    /// How an embedding model is told queries from passages: its policies' setting (the same on every
    /// dated policy of a model), else what its name implies.
    pub fn embedding_input(&self, name: &str) -> embeddings::InputStyle {
        self.policies
            .iter()
            .filter(|p| p.name == name && p.kind == ModelKind::Embedding)
            .max_by_key(|p| p.effective_from)
            .map_or_else(
                || embeddings::InputStyle::for_model(name),
                |p| p.input.clone(),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_prices_cost_what_the_vendor_charges() {
        let book = PriceBook::builtin();
        let now = datetime!(2026-11-21 00:00 UTC);
        let small = book
            .resolve(
                ModelKind::Embedding,
                "text-embedding-3-small",
                Plan::Starter,
                now,
            )
            .unwrap();
        // 1M tokens of text-embedding-3-small cost $0.02.
        assert_eq!(small.cost(1_000_000, 0), MicroUsd(20_000));
        let mini = book
            .resolve(ModelKind::Chat, "gpt-4o-mini", Plan::Starter, now)
            .unwrap();
        // 1M in + 1M out of gpt-4o-mini cost $0.15 + $0.60.
        assert_eq!(mini.cost(1_000_000, 1_000_000), MicroUsd(750_000));
    }

    #[test]
    fn plans_gate_models() {
        let book = PriceBook::builtin();
        let now = datetime!(2026-11-21 00:00 UTC);
        assert!(matches!(
            book.resolve(ModelKind::Chat, "gpt-4o", Plan::Starter, now),
            Err(PolicyError::NotAllowed { .. })
        ));
        assert!(
            book.resolve(ModelKind::Chat, "gpt-4o", Plan::Enterprise, now)
                .is_ok()
        );
        assert!(matches!(
            book.resolve(ModelKind::Chat, "nope", Plan::Pro, now),
            Err(PolicyError::Unpriced { .. })
        ));
        assert_eq!(
            book.default_for(ModelKind::Chat, Plan::Pro, now)
                .unwrap()
                .name,
            "gpt-4o-mini"
        );
    }

    #[test]
    fn effective_dates_pick_the_price_in_force() {
        let mut old = policy("m", ModelKind::Chat, 100, 100, &ALL_PLANS, &[]);
        old.effective_until = Some(datetime!(2026-06-01 00:00 UTC));
        let mut new = policy("m", ModelKind::Chat, 50, 50, &ALL_PLANS, &[]);
        new.effective_from = datetime!(2026-06-01 00:00 UTC);
        let book = PriceBook::new(vec![old, new]);
        let before = book
            .resolve(
                ModelKind::Chat,
                "m",
                Plan::Pro,
                datetime!(2026-05-31 23:59 UTC),
            )
            .unwrap();
        let after = book
            .resolve(
                ModelKind::Chat,
                "m",
                Plan::Pro,
                datetime!(2026-06-01 00:00 UTC),
            )
            .unwrap();
        assert_eq!(
            (before.input_per_1k, after.input_per_1k),
            (MicroUsd(100), MicroUsd(50))
        );
    }

    #[test]
    fn embedding_input_styles_are_configured_per_model() {
        use embeddings::InputStyle;
        let book = PriceBook::builtin()
            .with_unpriced_model("intfloat/multilingual-e5-base", ModelKind::Embedding)
            .with_unpriced_model("bge-m3", ModelKind::Embedding);
        assert_eq!(
            book.embedding_input("text-embedding-3-small"),
            InputStyle::Plain
        );
        assert_eq!(
            book.embedding_input("intfloat/multilingual-e5-base"),
            InputStyle::e5()
        );
        assert_eq!(book.embedding_input("bge-m3"), InputStyle::Plain);
        let typed = InputStyle::parse("input_type").unwrap();
        let book = book.with_embedding_input("intfloat/multilingual-e5-base", typed.clone());
        assert_eq!(book.embedding_input("intfloat/multilingual-e5-base"), typed);
    }

    #[test]
    fn self_hosted_models_are_metered_at_zero() {
        let book =
            PriceBook::builtin().with_unpriced_model("nomic-embed-text", ModelKind::Embedding);
        let p = book
            .resolve(
                ModelKind::Embedding,
                "nomic-embed-text",
                Plan::Starter,
                datetime!(2026-01-01 00:00 UTC),
            )
            .unwrap();
        assert_eq!(p.cost(5000, 0), MicroUsd(0));
    }
}
