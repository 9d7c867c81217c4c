//! Prompt profiles: what the assistant is told, versioned so every change can be rolled back.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::string_newtype;

string_newtype!(
    /// The system prompt: up to 8,000 characters.
    pub SystemPrompt
);

impl SystemPrompt {
    pub const MAX_CHARS: usize = 8_000;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if s.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            return Err("must not contain control characters".into());
        }
        Ok(Self(s.to_string()))
    }
}

/// Sampling temperature, 0 to 2.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "f64", into = "f64")]
pub struct Temperature(f64);

impl TryFrom<f64> for Temperature {
    type Error = String;
    fn try_from(t: f64) -> Result<Self, String> {
        if (0.0..=2.0).contains(&t) {
            Ok(Self(t))
        } else {
            Err(format!("{t} is not a temperature from 0 to 2"))
        }
    }
}

impl From<Temperature> for f64 {
    fn from(t: Temperature) -> f64 {
        t.0
    }
}

/// Most tokens an answer may have, 1 to 4,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "i64", into = "i64")]
pub struct MaxTokens(u32);

impl MaxTokens {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for MaxTokens {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        if (1..=4000).contains(&n) {
            Ok(Self(n as u32))
        } else {
            Err(format!("{n} is not a token limit from 1 to 4000"))
        }
    }
}

impl From<MaxTokens> for i64 {
    fn from(m: MaxTokens) -> i64 {
        m.0 as i64
    }
}

/// The prompt profile in force (`prompt` in the site contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PromptProfile {
    #[serde(deserialize_with = "crate::store::stored::lenient")]
    pub system_prompt: SystemPrompt,
    pub temperature: Temperature,
    pub max_tokens: MaxTokens,
    pub version: u32,
}

impl PromptProfile {
    pub fn initial() -> Self {
        Self {
            system_prompt: SystemPrompt(
                "You are the website assistant for this business. Answer from the reference passages; \
                 if they do not contain the answer, say so and suggest contacting the business."
                    .into(),
            ),
            temperature: Temperature(0.3),
            max_tokens: MaxTokens(800),
            version: 1,
        }
    }

    /// The next version: this profile with a patch applied.
    pub fn next(&self, patch: PromptPatch) -> PromptProfile {
        PromptProfile {
            system_prompt: patch
                .system_prompt
                .unwrap_or_else(|| self.system_prompt.clone()),
            temperature: patch.temperature.unwrap_or(self.temperature),
            max_tokens: patch.max_tokens.unwrap_or(self.max_tokens),
            version: self.version + 1,
        }
    }
}

/// A partial change to the prompt; any change makes a new version.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptPatch {
    pub system_prompt: Option<SystemPrompt>,
    pub temperature: Option<Temperature>,
    pub max_tokens: Option<MaxTokens>,
}

/// One entry of a site's prompt history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PromptVersion {
    #[serde(flatten)]
    pub profile: PromptProfile,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Set when this version was made by rolling back to an earlier one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_enforced() {
        assert!(Temperature::try_from(2.0).is_ok() && Temperature::try_from(2.01).is_err());
        assert!(Temperature::try_from(-0.1).is_err() && Temperature::try_from(f64::NAN).is_err());
        assert!(
            MaxTokens::try_from(0).is_err()
                && MaxTokens::try_from(4000).is_ok()
                && MaxTokens::try_from(4001).is_err()
        );
        assert!(SystemPrompt::parse(&"あ".repeat(8000)).is_ok());
        assert!(SystemPrompt::parse(&"あ".repeat(8001)).is_err());
    }

    #[test]
    fn a_patch_makes_the_next_version() {
        let v1 = PromptProfile::initial();
        let v2 = v1.next(serde_json::from_str(r#"{"temperature": 0.9}"#).unwrap());
        assert_eq!(v2.version, 2);
        assert_eq!(f64::from(v2.temperature), 0.9);
        assert_eq!(v2.system_prompt, v1.system_prompt);
    }
}
