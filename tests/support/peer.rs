//! A local OpenAI-compatible peer: `/v1/chat/completions` (streamed SSE with a final usage chunk) and
//! `/v1/embeddings`, with failures on cue and counters the tests assert on.
//!
//! Embeddings are hashed bags of words over [`DIMS`] dimensions, so texts sharing words are close: enough
//! for retrieval to behave like retrieval.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const DIMS: usize = 64;

/// What the chat endpoint does with the next requests.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMode {
    /// Streams `reply` word by word, `delay` apart, then usage.
    Reply { reply: String, delay: Duration },
    /// Echoes the user's question back (to test that answers are rendered as text, never HTML).
    Echo,
    /// Answers every request with this HTTP status.
    Fail(u16),
}

#[derive(Debug)]
pub struct PeerState {
    pub chat_mode: std::sync::Mutex<ChatMode>,
    pub chat_requests: AtomicUsize,
    /// Chat streams that ended because the client went away before the last chunk.
    pub chat_disconnects: AtomicUsize,
    pub chunks_sent: AtomicU64,
    /// The text of every content chunk the chat endpoint produced, in order (what the platform may bill).
    pub sent_text: std::sync::Mutex<String>,
    pub embedding_requests: AtomicUsize,
    pub embedded_inputs: AtomicUsize,
    pub fail_embeddings: AtomicBool,
    /// While set, embedding requests wait (counted in `embeddings_waiting`) until it is cleared.
    pub hold_embeddings: AtomicBool,
    pub embeddings_waiting: AtomicUsize,
    /// Embedding requests whose client went away before they were answered, and their inputs.
    pub embeddings_abandoned: AtomicUsize,
    pub abandoned_inputs: std::sync::Mutex<Vec<String>>,
    released: tokio::sync::Notify,
    /// The last chat request body (to inspect prompts).
    pub last_chat: std::sync::Mutex<Option<Value>>,
    /// Nanoseconds spent inside the chat and embeddings handlers (request body parsed → last chunk
    /// produced), for benchmarks that subtract the model's time from a request's.
    pub busy_ns: AtomicU64,
    /// `/v1/rerank` (Cohere shape): documents containing this text score 1, the others keep their order
    /// below it; `None` keeps the order given.
    pub rerank_prefer: std::sync::Mutex<Option<String>>,
    pub rerank_requests: AtomicUsize,
    /// Called as each chat request arrives, before it is answered (tests that check what the
    /// platform did before it called the model).
    pub on_chat: std::sync::Mutex<Option<ChatHook>>,
}

/// A test's hook on chat requests (see [`PeerState::on_chat`]).
pub struct ChatHook(pub Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for ChatHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatHook")
    }
}

pub struct ModelPeer {
    pub base_url: String,
    pub state: Arc<PeerState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ModelPeer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Prompt tokens the peer reports: one per whitespace-separated word of every message (deterministic,
/// so tests can compute the expected cost).
pub fn prompt_tokens(body: &Value) -> u64 {
    body["messages"].as_array().map_or(0, |m| {
        m.iter()
            .map(|msg| {
                msg["content"]
                    .as_str()
                    .unwrap_or("")
                    .split_whitespace()
                    .count() as u64
            })
            .sum()
    })
}

impl ModelPeer {
    pub async fn start(mode: ChatMode) -> ModelPeer {
        let state = Arc::new(PeerState {
            chat_mode: std::sync::Mutex::new(mode),
            chat_requests: AtomicUsize::new(0),
            chat_disconnects: AtomicUsize::new(0),
            chunks_sent: AtomicU64::new(0),
            sent_text: std::sync::Mutex::new(String::new()),
            embedding_requests: AtomicUsize::new(0),
            embedded_inputs: AtomicUsize::new(0),
            fail_embeddings: AtomicBool::new(false),
            hold_embeddings: AtomicBool::new(false),
            embeddings_waiting: AtomicUsize::new(0),
            embeddings_abandoned: AtomicUsize::new(0),
            abandoned_inputs: std::sync::Mutex::new(Vec::new()),
            released: tokio::sync::Notify::new(),
            last_chat: std::sync::Mutex::new(None),
            busy_ns: AtomicU64::new(0),
            rerank_prefer: std::sync::Mutex::new(None),
            rerank_requests: AtomicUsize::new(0),
            on_chat: std::sync::Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/rerank", post(rerank))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind peer");
        let addr = listener.local_addr().expect("peer address");
        let server = tokio::spawn(async move {
            // The benchmark measures Kotoba, not Nagle on the peer (shared::http::sockets).
            let _ = axum::serve(shared::http::sockets::nodelay(listener), app).await;
        });
        ModelPeer {
            base_url: format!("http://{addr}/v1"),
            state,
            server,
        }
    }

    pub fn set_mode(&self, mode: ChatMode) {
        *self.state.chat_mode.lock().unwrap() = mode;
    }

    /// Holds embedding requests (`true`) or lets them all go (`false`).
    pub fn hold_embeddings(&self, hold: bool) {
        self.state.hold_embeddings.store(hold, Ordering::SeqCst);
        if !hold {
            self.state.released.notify_waiters();
        }
    }

    pub fn embedding_requests(&self) -> usize {
        self.state.embedding_requests.load(Ordering::SeqCst)
    }

    pub fn embedded_inputs(&self) -> usize {
        self.state.embedded_inputs.load(Ordering::SeqCst)
    }

    /// Settings that point the platform at this peer.
    pub fn vars(
        &self,
        chat_model: Option<&str>,
        embedding_model: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut vars = vec![
            ("OPENAI_BASE_URL".to_string(), self.base_url.clone()),
            ("OPENAI_API_KEY".to_string(), "sk-test-peer".to_string()),
        ];
        if let Some(m) = chat_model {
            vars.push(("KOTOBA_CHAT_MODEL".into(), m.into()));
        }
        if let Some(m) = embedding_model {
            vars.push(("KOTOBA_EMBEDDING_MODEL".into(), m.into()));
        }
        vars
    }
}

/// A hashed bag of words (lowercase alphanumeric runs; CJK characters one by one).
pub fn embed_text(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; DIMS];
    let mut word = String::new();
    let add = |w: &str, v: &mut Vec<f32>| {
        let h = w.bytes().fold(1469598103934665603u64, |h, b| {
            (h ^ b as u64).wrapping_mul(1099511628211)
        });
        v[(h % DIMS as u64) as usize] += 1.0;
    };
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            if !word.is_empty() {
                add(&word, &mut v);
                word.clear();
            }
            if c.is_alphanumeric() {
                add(&c.to_string(), &mut v);
            }
        }
    }
    if !word.is_empty() {
        add(&word, &mut v);
    }
    if v.iter().all(|x| *x == 0.0) {
        v[0] = 1.0;
    }
    v
}

/// Counts an embedding request as waiting while held, and as abandoned if dropped before its answer.
struct HeldEmbedding<'a> {
    state: &'a PeerState,
    inputs: Vec<String>,
    answered: bool,
}

impl Drop for HeldEmbedding<'_> {
    fn drop(&mut self) {
        self.state.embeddings_waiting.fetch_sub(1, Ordering::SeqCst);
        if !self.answered {
            self.state
                .abandoned_inputs
                .lock()
                .unwrap()
                .append(&mut self.inputs);
            self.state
                .embeddings_abandoned
                .fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Cohere's `/v1/rerank`: `{model, query, documents, top_n}` → `{results: [{index, relevance_score}]}`.
async fn rerank(State(state): State<Arc<PeerState>>, Json(body): Json<Value>) -> Response {
    state.rerank_requests.fetch_add(1, Ordering::SeqCst);
    let (Some(docs), Some(_), Some(_)) = (
        body["documents"].as_array(),
        body["query"].as_str(),
        body["model"].as_str(),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "model, query and documents are required"})),
        )
            .into_response();
    };
    let prefer = state.rerank_prefer.lock().unwrap().clone();
    let results: Vec<Value> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let text = d.as_str().unwrap_or_default();
            let score = match &prefer {
                Some(p) if text.contains(p.as_str()) => 1.0,
                _ => 0.5 / (i as f64 + 1.0),
            };
            json!({"index": i, "relevance_score": score})
        })
        .collect();
    Json(json!({"id": "rerank-peer", "results": results, "meta": {"billed_units": {"search_units": 1}}}))
        .into_response()
}

async fn embeddings(State(state): State<Arc<PeerState>>, Json(body): Json<Value>) -> Response {
    state.embeddings_waiting.fetch_add(1, Ordering::SeqCst);
    let inputs = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect(),
        _ => Vec::new(),
    };
    let mut held = HeldEmbedding {
        state: &state,
        inputs,
        answered: false,
    };
    loop {
        let released = state.released.notified();
        if !state.hold_embeddings.load(Ordering::SeqCst) {
            break;
        }
        released.await;
    }
    held.answered = true;
    drop(held);
    let started = std::time::Instant::now();
    let response = embed(&state, body);
    state
        .busy_ns
        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::SeqCst);
    response
}

fn embed(state: &PeerState, body: Value) -> Response {
    state.embedding_requests.fetch_add(1, Ordering::SeqCst);
    if state.fail_embeddings.load(Ordering::SeqCst) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "embedding model refused on cue"}})),
        )
            .into_response();
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect(),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": "input required"}})),
            )
                .into_response();
        }
    };
    state
        .embedded_inputs
        .fetch_add(inputs.len(), Ordering::SeqCst);
    let tokens: usize = inputs
        .iter()
        .map(|s| s.split_whitespace().count().max(1))
        .sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": embed_text(s)}))
        .collect();
    Json(json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
        .into_response()
}

/// Counts a disconnect when the response body is dropped before its last chunk was sent.
struct DisconnectGuard {
    state: Arc<PeerState>,
    finished: bool,
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.chat_disconnects.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn chat(State(state): State<Arc<PeerState>>, Json(body): Json<Value>) -> Response {
    let started = std::time::Instant::now();
    state.chat_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(hook) = state.on_chat.lock().unwrap().as_ref() {
        (hook.0)();
    }
    *state.last_chat.lock().unwrap() = Some(body.clone());
    let mode = state.chat_mode.lock().unwrap().clone();
    let (reply, delay) = match mode {
        ChatMode::Fail(status) => {
            return (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Json(json!({"error": {"message": "failing on cue", "type": "server_error"}})),
            )
                .into_response();
        }
        ChatMode::Reply { reply, delay } => (reply, delay),
        ChatMode::Echo => {
            let question = body["messages"]
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_str())
                .and_then(|c| c.rsplit("Question: ").next())
                .unwrap_or("")
                .to_string();
            (question, Duration::from_millis(5))
        }
    };
    let prompt = prompt_tokens(&body);
    let words: Vec<String> = reply.split_inclusive(' ').map(str::to_string).collect();
    let completion = words.len() as u64;
    let model = body["model"].as_str().unwrap_or("model").to_string();
    let guard_state = state.clone();
    let stream = async_stream(
        words,
        delay,
        model,
        prompt,
        completion,
        guard_state,
        started,
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("response")
}

fn async_stream(
    words: Vec<String>,
    delay: Duration,
    model: String,
    prompt: u64,
    completion: u64,
    state: Arc<PeerState>,
    started: std::time::Instant,
) -> impl futures::Stream<Item = Result<String, std::convert::Infallible>> {
    let guard = DisconnectGuard {
        state: state.clone(),
        finished: false,
    };
    futures::stream::unfold((0usize, words, guard), move |(i, words, mut guard)| {
        let model = model.clone();
        let state = state.clone();
        async move {
            if i > words.len() + 1 {
                return None;
            }
            if i < words.len() {
                tokio::time::sleep(delay).await; // sleep-ok: a model that generates slowly
                state.chunks_sent.fetch_add(1, Ordering::SeqCst);
                state.sent_text.lock().unwrap().push_str(&words[i]);
                let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "model": model,
                    "choices": [{"index": 0, "delta": {"content": words[i]}, "finish_reason": null}]});
                Some((Ok(format!("data: {chunk}\n\n")), (i + 1, words, guard)))
            } else if i == words.len() {
                let usage = json!({"id": "c1", "object": "chat.completion.chunk", "model": model, "choices": [],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}});
                Some((Ok(format!("data: {usage}\n\n")), (i + 1, words, guard)))
            } else {
                guard.finished = true;
                state
                    .busy_ns
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::SeqCst);
                Some((Ok("data: [DONE]\n\n".to_string()), (i + 1, words, guard)))
            }
        }
    })
}
