//! A call summary from the chat model (the shared OpenAI-compatible chat client). The caller falls back
//! to the extractive summary on any failure: a call log is never lost for want of a summary.

use std::time::Duration;

use crate::models::chat::{ChatClient, ChatEvent, ChatRequest, Message};

use super::transcript::{self, TranscriptEntry};

/// How long a summary may take before the extractive one is used instead.
pub const SUMMARY_TIMEOUT: Duration = Duration::from_secs(20);

const INSTRUCTIONS: &str = "You summarise phone calls to a business's AI receptionist for the business \
owner. In two or three sentences, in the language of the call, say who called, what they wanted, and any \
follow-up the business must do. Do not invent details.";

/// Summarises calls with a chat model.
#[derive(Debug, Clone)]
pub struct ChatSummarizer {
    client: ChatClient,
    pub model: String,
}

impl ChatSummarizer {
    pub fn new(client: ChatClient, model: String) -> Self {
        Self { client, model }
    }

    /// Two or three sentences on who called, what they wanted and what follows.
    pub async fn summarize(&self, entries: &[TranscriptEntry]) -> anyhow::Result<String> {
        let request = ChatRequest {
            model: self.model.clone(),
            messages: vec![
                Message::system(INSTRUCTIONS),
                Message::user(transcript::as_text(entries)),
            ],
            temperature: 0.2,
            max_tokens: 200,
        };
        let collect = async {
            let mut stream = self.client.stream(&request).await?;
            let mut text = String::new();
            while let Some(event) = stream.next().await {
                if let ChatEvent::Delta(delta) = event? {
                    text.push_str(&delta);
                }
            }
            anyhow::Ok(text)
        };
        let text = tokio::time::timeout(SUMMARY_TIMEOUT, collect)
            .await
            .map_err(|_| anyhow::anyhow!("no summary within {SUMMARY_TIMEOUT:?}"))??;
        let text = text.trim().to_string();
        anyhow::ensure!(!text.is_empty(), "the chat model returned an empty summary");
        Ok(text)
    }
}
