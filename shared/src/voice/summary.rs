//! A call summary from the chat model, through any OpenAI-compatible `POST /chat/completions`.
//! Kept small and local to voice: one request, a short timeout, and the caller falls back to the
//! extractive summary on any failure (a call log is never lost for want of a summary).

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::transcript::{self, TranscriptEntry};
use crate::models::embeddings::endpoint;

/// How long a summary may take before the extractive one is used instead.
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct ChatSummarizer {
    http: reqwest::Client,
    endpoint: Url,
    api_key: Option<String>,
    pub model: String,
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

impl ChatSummarizer {
    pub fn new(
        http: reqwest::Client,
        base_url: &Url,
        api_key: Option<String>,
        model: String,
    ) -> Result<Self, url::ParseError> {
        Ok(Self {
            http,
            endpoint: endpoint(base_url, "chat/completions")?,
            api_key,
            model,
        })
    }

    /// Two or three sentences on who called, what they wanted and what was agreed.
    pub async fn summarize(&self, entries: &[TranscriptEntry]) -> anyhow::Result<String> {
        let body = json!({
            "model": self.model,
            "temperature": 0.2,
            "max_tokens": 200,
            "messages": [
                {"role": "system", "content": "You summarise phone calls to a business's AI receptionist for the business owner. In two or three sentences, in the language of the call, say who called, what they wanted, and any follow-up the business must do. Do not invent details."},
                {"role": "user", "content": transcript::as_text(entries)},
            ],
        });
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .json(&body)
            .timeout(SUMMARY_TIMEOUT);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await?.error_for_status()?;
        let completion: Completion = response.json().await?;
        let text = completion
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        anyhow::ensure!(!text.is_empty(), "the chat model returned an empty summary");
        Ok(text)
    }
}
