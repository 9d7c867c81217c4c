//! A month's spend by site and by model, kept as more counters on the tenant's monthly counter item
//! (`site.{site}.{counter}`, `model.{model}.{counter}`): each action adds them in the write that
//! already adds its totals, so the breakdown costs no extra write and the usage API still reads one
//! item for the month.
//!
//! Site ids have no dots and counter names none either, so a name splits at its first and last dot
//! even when the model's name has dots of its own (`gpt-4.1-mini`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ids::SiteId;
use crate::money::MicroUsd;
use crate::store::Item;

const SITE: &str = "site.";
const MODEL: &str = "model.";

/// Counter names inside a site's or a model's breakdown.
mod counter {
    pub const CHATS: &str = "chats";
    pub const EMBEDDING_TOKENS: &str = "embedding_tokens";
    pub const COST_MICROS: &str = "cost_micros";
    pub const REQUESTS: &str = "requests";
    pub const INPUT_TOKENS: &str = "input_tokens";
    pub const OUTPUT_TOKENS: &str = "output_tokens";
    pub const SECONDS: &str = "seconds";
}

/// What one action spent, by site and by model, as counters to add to the month.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Breakdown {
    counters: Vec<(String, i64)>,
}

/// One model's share of an action.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModelSpend<'a> {
    pub model: &'a str,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Seconds of audio (realtime models).
    pub seconds: u64,
    pub cost: MicroUsd,
}

impl Breakdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A site's chats, embedding tokens (queries and training) and cost.
    pub fn site(
        mut self,
        site: &SiteId,
        chats: i64,
        embedding_tokens: i64,
        cost: MicroUsd,
    ) -> Self {
        for (name, amount) in [
            (counter::CHATS, chats),
            (counter::EMBEDDING_TOKENS, embedding_tokens),
            (counter::COST_MICROS, cost.0),
        ] {
            self.counters.push((format!("{SITE}{site}.{name}"), amount));
        }
        self
    }

    /// One request to a model: its tokens, seconds and cost.
    pub fn model(mut self, spend: ModelSpend<'_>) -> Self {
        let model = spend.model;
        for (name, amount) in [
            (counter::REQUESTS, 1),
            (counter::INPUT_TOKENS, spend.input_tokens as i64),
            (counter::OUTPUT_TOKENS, spend.output_tokens as i64),
            (counter::SECONDS, spend.seconds as i64),
            (counter::COST_MICROS, spend.cost.0),
        ] {
            self.counters
                .push((format!("{MODEL}{model}.{name}"), amount));
        }
        self
    }

    /// The counters that move (an add of 0 would still create the attribute).
    pub fn counters(&self) -> impl Iterator<Item = (&str, i64)> {
        self.counters
            .iter()
            .filter(|(_, amount)| *amount != 0)
            .map(|(name, amount)| (name.as_str(), *amount))
    }
}

/// A site's month.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SiteUsage {
    pub site_id: String,
    pub chats: i64,
    pub embedding_tokens: i64,
    pub cost_usd: f64,
}

/// A model's month.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelUsage {
    pub model: String,
    /// Answers, query embeddings, training batches, calls and direct AI calls that used the model.
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Seconds of audio (realtime models).
    pub seconds: i64,
    pub cost_usd: f64,
}

/// The breakdown read back from the month's counter item: sites and models by cost, highest first.
pub fn read(month: Option<&Item>) -> (Vec<SiteUsage>, Vec<ModelUsage>) {
    let mut sites: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    let mut models: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    for (name, value) in month.into_iter().flat_map(|item| item.attributes.iter()) {
        let Some(amount) = value.as_i64() else {
            continue;
        };
        let (owners, rest) = if let Some(rest) = name.strip_prefix(SITE) {
            (&mut sites, rest)
        } else if let Some(rest) = name.strip_prefix(MODEL) {
            (&mut models, rest)
        } else {
            continue;
        };
        if let Some((owner, counter)) = rest.rsplit_once('.') {
            owners.entry(owner).or_default().insert(counter, amount);
        }
    }
    let count = |c: &BTreeMap<&str, i64>, name: &str| c.get(name).copied().unwrap_or(0);
    let dollars = |c: &BTreeMap<&str, i64>| MicroUsd(count(c, counter::COST_MICROS)).as_dollars();
    let mut sites: Vec<SiteUsage> = sites
        .iter()
        .map(|(site, c)| SiteUsage {
            site_id: site.to_string(),
            chats: count(c, counter::CHATS),
            embedding_tokens: count(c, counter::EMBEDDING_TOKENS),
            cost_usd: dollars(c),
        })
        .collect();
    let mut models: Vec<ModelUsage> = models
        .iter()
        .map(|(model, c)| ModelUsage {
            model: model.to_string(),
            requests: count(c, counter::REQUESTS),
            input_tokens: count(c, counter::INPUT_TOKENS),
            output_tokens: count(c, counter::OUTPUT_TOKENS),
            seconds: count(c, counter::SECONDS),
            cost_usd: dollars(c),
        })
        .collect();
    // Highest cost first; ties (free models, local mode) by use, then by name for a stable order.
    sites.sort_by(|a, b| {
        b.cost_usd
            .total_cmp(&a.cost_usd)
            .then(b.chats.cmp(&a.chats))
            .then(a.site_id.cmp(&b.site_id))
    });
    models.sort_by(|a, b| {
        b.cost_usd
            .total_cmp(&a.cost_usd)
            .then(b.requests.cmp(&a.requests))
            .then(a.model.cmp(&b.model))
    });
    (sites, models)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Key;

    fn month_of(breakdowns: &[Breakdown]) -> Item {
        let mut item = Item::new(Key::new("TENANT#t", "USAGE#2026-12")).with("chats", 3);
        for b in breakdowns {
            for (name, amount) in b.counters() {
                let total = item.count(name) + amount;
                item = item.with(name, total);
            }
        }
        item
    }

    #[test]
    fn sums_by_site_and_by_model_and_orders_by_cost() {
        let lobby = SiteId::parse("site_lobby").unwrap();
        let spa = SiteId::parse("site_spa").unwrap();
        let chat = |site: &SiteId, input, output, cost| {
            Breakdown::new()
                .site(site, 1, 8, MicroUsd(cost + 2))
                .model(ModelSpend {
                    model: "gpt-4.1-mini",
                    input_tokens: input,
                    output_tokens: output,
                    cost: MicroUsd(cost),
                    ..Default::default()
                })
                .model(ModelSpend {
                    model: "text-embedding-3-small",
                    input_tokens: 8,
                    cost: MicroUsd(2),
                    ..Default::default()
                })
        };
        let call = Breakdown::new().model(ModelSpend {
            model: "gpt-realtime",
            seconds: 95,
            cost: MicroUsd(50_000),
            ..Default::default()
        });
        let item = month_of(&[
            chat(&lobby, 100, 20, 300),
            chat(&spa, 200, 40, 600),
            chat(&spa, 10, 0, 30),
            call,
        ]);
        let (sites, models) = read(Some(&item));
        assert_eq!(
            sites,
            vec![
                SiteUsage {
                    site_id: "site_spa".into(),
                    chats: 2,
                    embedding_tokens: 16,
                    cost_usd: 0.000634
                },
                SiteUsage {
                    site_id: "site_lobby".into(),
                    chats: 1,
                    embedding_tokens: 8,
                    cost_usd: 0.000302
                },
            ]
        );
        let names: Vec<_> = models.iter().map(|m| m.model.as_str()).collect();
        assert_eq!(
            names,
            ["gpt-realtime", "gpt-4.1-mini", "text-embedding-3-small"]
        );
        assert_eq!(models[0].seconds, 95);
        assert_eq!(models[0].requests, 1);
        assert_eq!(
            (
                models[1].requests,
                models[1].input_tokens,
                models[1].output_tokens
            ),
            (3, 310, 60)
        );
        assert_eq!((models[2].requests, models[2].input_tokens), (3, 24));
    }

    #[test]
    fn a_free_model_still_shows_its_requests() {
        let b = Breakdown::new().model(ModelSpend {
            model: "extractive",
            ..Default::default()
        });
        let (_, models) = read(Some(&month_of(&[b])));
        assert_eq!(models.len(), 1);
        assert_eq!((models[0].requests, models[0].cost_usd), (1, 0.0));
    }

    #[test]
    fn no_month_no_breakdown_and_totals_are_not_mistaken_for_one() {
        assert_eq!(read(None), (vec![], vec![]));
        let item = month_of(&[]).with("cost_micros", 5).with("site.", 1);
        assert_eq!(read(Some(&item)), (vec![], vec![]));
    }
}
