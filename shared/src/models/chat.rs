//! A streaming client for OpenAI-compatible `POST /chat/completions`.
//!
//! Requests stream (`stream: true`) with usage reporting (`stream_options.include_usage`). Failures are
//! retried only before the first token: once text has reached the caller, a retry would say it twice.
//! Dropping a [`ChatStream`] closes the connection, which is how a disconnected client stops generation.

use crate::config::Secret;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use url::Url;

use super::embeddings::endpoint;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub temperature: f64,
    pub max_tokens: u32,
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    temperature: f64,
    max_tokens: u32,
    stream: bool,
    stream_options: StreamOptions,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// Token counts as the provider reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// What a stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// More answer text.
    Delta(String),
    /// The provider's token counts (usually in the last chunk).
    Usage(Usage),
}

/// How a call to the chat provider failed (`chat::ChatError` is the chat service's own).
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the chat provider refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("the chat provider is unavailable after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    /// The stream broke after text had been sent (not retried).
    #[error("the chat stream broke: {0}")]
    Interrupted(String),
    #[error("the chat provider sent something unexpected: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    endpoint: Url,
    api_key: Option<Secret>,
    max_attempts: u32,
    backoff: Duration,
    /// Longest wait for the first byte of an answer.
    first_byte_timeout: Duration,
    /// Longest silence between chunks once streaming.
    idle_timeout: Duration,
}

/// An answer arriving. Drop it to stop generation.
pub struct ChatStream {
    events: BoxStream<'static, Result<ChatEvent, ProviderError>>,
}

impl ChatStream {
    pub async fn next(&mut self) -> Option<Result<ChatEvent, ProviderError>> {
        self.events.next().await
    }
}

impl ChatClient {
    pub fn new(
        http: reqwest::Client,
        base_url: &Url,
        api_key: Option<Secret>,
    ) -> Result<Self, url::ParseError> {
        Ok(Self {
            http,
            endpoint: endpoint(base_url, "chat/completions")?,
            api_key,
            max_attempts: 3,
            backoff: Duration::from_millis(200),
            first_byte_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
        })
    }

    pub fn with_retries(mut self, max_attempts: u32, backoff: Duration) -> Self {
        self.max_attempts = max_attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// Starts a streamed completion; returns once the provider has accepted the request.
    pub async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = WireRequest {
            model: &request.model,
            messages: &request.messages,
            temperature: request.temperature,
            max_tokens: request.max_tokens,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
        };
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            let mut http = self.http.post(self.endpoint.clone()).json(&body);
            if let Some(key) = &self.api_key {
                http = http.bearer_auth(key.expose());
            }
            match tokio::time::timeout(self.first_byte_timeout, http.send()).await {
                Ok(Ok(response)) if response.status().is_success() => {
                    return Ok(ChatStream {
                        events: sse_events(response, self.idle_timeout),
                    });
                }
                Ok(Ok(response)) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let message = provider_message(&text);
                    if status.as_u16() != 429 && !status.is_server_error() {
                        return Err(ProviderError::Rejected {
                            status: status.as_u16(),
                            message,
                        });
                    }
                    last = format!("{status}: {message}");
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no answer within {:?}", self.first_byte_timeout),
            }
            if attempt < self.max_attempts {
                tracing::warn!(attempt, error = %last, "chat request failed before any token; retrying");
                tokio::time::sleep(self.backoff * 2u32.saturating_pow(attempt - 1)).await;
            }
        }
        Err(ProviderError::Unavailable {
            attempts: self.max_attempts,
            last,
        })
    }
}

fn provider_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
}

#[derive(Deserialize, Default)]
struct Delta {
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Turns an SSE body into events: `data:` lines (joined when an event spans several), `[DONE]` ends it.
fn sse_events(
    response: reqwest::Response,
    idle: Duration,
) -> BoxStream<'static, Result<ChatEvent, ProviderError>> {
    let bytes = response.bytes_stream();
    let state = (
        bytes,
        Vec::<u8>::new(),
        std::collections::VecDeque::<Result<ChatEvent, ProviderError>>::new(),
        false,
    );
    futures::stream::unfold(
        state,
        move |(mut bytes, mut buffer, mut pending, mut done)| async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    return Some((event, (bytes, buffer, pending, done)));
                }
                if done {
                    return None;
                }
                // Complete events end with a blank line; parse every complete one in the buffer.
                while let Some(end) = find_event_end(&buffer) {
                    let raw: Vec<u8> = buffer.drain(..end.0 + end.1).collect();
                    match parse_event(&raw[..end.0]) {
                        Parsed::Events(events) => pending.extend(events.into_iter().map(Ok)),
                        Parsed::Done => done = true,
                        Parsed::Error(e) => {
                            pending.push_back(Err(e));
                            done = true;
                        }
                    }
                    if done {
                        break;
                    }
                }
                if !pending.is_empty() || done {
                    continue;
                }
                match tokio::time::timeout(idle, bytes.next()).await {
                    Ok(Some(Ok(chunk))) => buffer.extend_from_slice(&chunk),
                    Ok(Some(Err(e))) => {
                        pending.push_back(Err(ProviderError::Interrupted(e.to_string())));
                        done = true;
                    }
                    // The body ended without [DONE]: treat what we have as the answer.
                    Ok(None) => done = true,
                    Err(_) => {
                        pending.push_back(Err(ProviderError::Interrupted(format!(
                            "no data for {idle:?}"
                        ))));
                        done = true;
                    }
                }
            }
        },
    )
    .boxed()
}

/// Where the first complete event ends: (length of the event, length of the separator).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    for i in 0..buffer.len() {
        if buffer[i..].starts_with(b"\n\n") {
            return Some((i, 2));
        }
        if buffer[i..].starts_with(b"\r\n\r\n") {
            return Some((i, 4));
        }
    }
    None
}

enum Parsed {
    Events(Vec<ChatEvent>),
    Done,
    Error(ProviderError),
}

fn parse_event(raw: &[u8]) -> Parsed {
    let text = String::from_utf8_lossy(raw);
    let data: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return Parsed::Events(Vec::new()); // comments and keep-alives
    }
    let data = data.join("\n");
    if data.trim() == "[DONE]" {
        return Parsed::Done;
    }
    let value: serde_json::Value = match serde_json::from_str(&data) {
        Ok(v) => v,
        Err(e) => {
            return Parsed::Error(ProviderError::Malformed(format!(
                "{e}: {}",
                data.chars().take(200).collect::<String>()
            )));
        }
    };
    if let Some(message) = value["error"]["message"].as_str() {
        return Parsed::Error(ProviderError::Interrupted(message.to_string()));
    }
    let chunk: Chunk = match serde_json::from_value(value) {
        Ok(c) => c,
        Err(e) => return Parsed::Error(ProviderError::Malformed(e.to_string())),
    };
    let mut events = Vec::new();
    for choice in chunk.choices {
        if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
            events.push(ChatEvent::Delta(text));
        }
    }
    if let Some(u) = chunk.usage {
        events.push(ChatEvent::Usage(Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }));
    }
    Parsed::Events(events)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::response::Response;
    use axum::routing::post;

    use super::*;

    #[test]
    fn debug_output_never_shows_the_api_key() {
        let base = Url::parse("http://127.0.0.1:9/v1/").unwrap();
        let client =
            ChatClient::new(reqwest::Client::new(), &base, Some("sk-chat-secret".into())).unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("sk-chat-secret"), "{shown}");
    }

    async fn peer(fail_first: usize, status: u16, body: &'static str) -> (Url, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            post(move || {
                let counter = counter.clone();
                async move {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    if n < fail_first {
                        return Response::builder()
                            .status(StatusCode::from_u16(status).unwrap())
                            .body(Body::from(r#"{"error":{"message":"try later"}}"#))
                            .unwrap();
                    }
                    // Split the body across writes in awkward places to exercise reassembly.
                    let parts: Vec<Result<Vec<u8>, std::io::Error>> =
                        body.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(Body::from_stream(futures::stream::iter(parts)))
                        .unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/v1").parse().unwrap(), calls)
    }

    const ANSWER: &str = concat!(
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"営業時間は\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"9時からです。\"}}]}\r\n\r\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":42,\"completion_tokens\":7}}\n\n",
        "data: [DONE]\n\n",
    );

    fn request() -> ChatRequest {
        ChatRequest {
            model: "gpt-4o-mini".into(),
            messages: vec![Message::user("hi")],
            temperature: 0.2,
            max_tokens: 100,
        }
    }

    async fn collect(client: &ChatClient) -> Result<(String, Option<Usage>), ProviderError> {
        let mut stream = client.stream(&request()).await?;
        let (mut text, mut usage) = (String::new(), None);
        while let Some(event) = stream.next().await {
            match event? {
                ChatEvent::Delta(d) => text.push_str(&d),
                ChatEvent::Usage(u) => usage = Some(u),
            }
        }
        Ok((text, usage))
    }

    #[tokio::test]
    async fn streams_text_and_usage() {
        let (base, _) = peer(0, 200, ANSWER).await;
        let client = ChatClient::new(reqwest::Client::new(), &base, None).unwrap();
        let (text, usage) = collect(&client).await.unwrap();
        assert_eq!(text, "営業時間は9時からです。");
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 42,
                completion_tokens: 7
            })
        );
    }

    #[tokio::test]
    async fn retries_before_the_first_token_only() {
        let (base, calls) = peer(2, 503, ANSWER).await;
        let client = ChatClient::new(reqwest::Client::new(), &base, None)
            .unwrap()
            .with_retries(3, Duration::from_millis(1));
        assert_eq!(collect(&client).await.unwrap().0, "営業時間は9時からです。");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let (base, calls) = peer(1, 401, ANSWER).await;
        let client = ChatClient::new(reqwest::Client::new(), &base, None)
            .unwrap()
            .with_retries(3, Duration::from_millis(1));
        assert!(matches!(
            collect(&client).await,
            Err(ProviderError::Rejected { status: 401, .. })
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_mid_stream_error_event_is_reported() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n";
        let (base, _) = peer(0, 200, body).await;
        let client = ChatClient::new(reqwest::Client::new(), &base, None).unwrap();
        let err = collect(&client).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::Interrupted(ref m) if m == "overloaded"),
            "{err}"
        );
    }
}
