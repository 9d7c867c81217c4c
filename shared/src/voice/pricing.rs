//! What a call's model session cost: the token usage reported in every `response.done`, priced at the
//! realtime model's policy in force when the call started.
//!
//! The price book holds the realtime model's text-token prices; audio tokens cost more and are priced
//! here, per model, from the vendor's list prices. A model this table does not know is charged its
//! audio at the policy's text prices (zero for a self-hosted model registered as unpriced).

use serde::{Deserialize, Serialize};

use super::realtime::Usage;
use crate::models::ModelPolicy;
use crate::money::MicroUsd;

/// Token counts summed over a call's responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RealtimeUsage {
    pub input_text_tokens: u64,
    pub input_audio_tokens: u64,
    pub output_text_tokens: u64,
    pub output_audio_tokens: u64,
    /// `response.done` events counted.
    pub responses: u32,
}

impl RealtimeUsage {
    /// Adds one `response.done`'s usage. Without a text/audio split, tokens count as audio (the dearer).
    pub fn add(&mut self, usage: &Usage) {
        self.responses = self.responses.saturating_add(1);
        match &usage.input_token_details {
            Some(d) => {
                self.input_text_tokens += d.text_tokens;
                self.input_audio_tokens += d.audio_tokens;
            }
            None => self.input_audio_tokens += usage.input_tokens,
        }
        match &usage.output_token_details {
            Some(d) => {
                self.output_text_tokens += d.text_tokens;
                self.output_audio_tokens += d.audio_tokens;
            }
            None => self.output_audio_tokens += usage.output_tokens,
        }
    }

    pub fn input_tokens(&self) -> u64 {
        self.input_text_tokens + self.input_audio_tokens
    }

    pub fn output_tokens(&self) -> u64 {
        self.output_text_tokens + self.output_audio_tokens
    }

    /// The cost at a realtime policy's prices.
    pub fn cost(&self, policy: &ModelPolicy) -> MicroUsd {
        let (audio_in, audio_out) =
            audio_prices(&policy.name).unwrap_or((policy.input_per_1k, policy.output_per_1k));
        policy
            .cost(self.input_text_tokens, self.output_text_tokens)
            .saturating_add(MicroUsd::for_tokens(self.input_audio_tokens, audio_in))
            .saturating_add(MicroUsd::for_tokens(self.output_audio_tokens, audio_out))
    }
}

/// Audio-token list prices per 1,000 tokens (input, output).
fn audio_prices(model: &str) -> Option<(MicroUsd, MicroUsd)> {
    match model {
        // gpt-realtime: $32 / $64 per 1M audio tokens.
        "gpt-realtime" => Some((MicroUsd(32_000), MicroUsd(64_000))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ModelKind, PriceBook};
    use crate::tenants::Plan;

    #[test]
    fn audio_and_text_tokens_are_priced_separately() {
        let book = PriceBook::builtin();
        let policy = book
            .resolve(
                ModelKind::Realtime,
                "gpt-realtime",
                Plan::Starter,
                time::macros::datetime!(2026-01-01 00:00 UTC),
            )
            .unwrap();
        let usage: Usage = serde_json::from_str(
            r#"{"total_tokens": 3000, "input_tokens": 2000, "output_tokens": 1000,
                "input_token_details": {"text_tokens": 1000, "audio_tokens": 1000, "cached_tokens": 0},
                "output_token_details": {"text_tokens": 0, "audio_tokens": 1000}}"#,
        )
        .unwrap();
        let mut total = RealtimeUsage::default();
        total.add(&usage);
        // 1k text in at $4/1M + 1k audio in at $32/1M + 1k audio out at $64/1M.
        assert_eq!(total.cost(policy), MicroUsd(4_000 + 32_000 + 64_000));
        total.add(&usage);
        assert_eq!(total.responses, 2);
        assert_eq!(total.input_tokens(), 4_000);
    }
}
