//! A local OpenAI Realtime peer speaking the GA events, for driving the call bridge without OpenAI.
//!
//! It counts every TCP connection (so a test can prove a refused call never reached it), records what
//! each session sent, and plays a script: `session.created`; `session.updated` after `session.update`; a
//! greeting response (audio deltas, transcript, `response.done` with usage) after `response.create`;
//! `speech_started` when a caller frame is the speech-start cue; on the speech-end cue, the caller's
//! transcription and (optionally) a response that echoes the caller's audio back byte for byte.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

/// A caller frame of all 0x00: "the caller starts speaking" (the peer answers `speech_started`).
pub const SPEECH_START: [u8; 160] = [0x00; 160];
/// A caller frame of all 0x01: "the caller stopped" (transcription, then the echo response).
pub const SPEECH_END: [u8; 160] = [0x01; 160];

/// What the peer says and does.
#[derive(Debug, Clone)]
pub struct PeerScript {
    pub greeting_audio: Vec<u8>,
    pub greeting_text: String,
    /// Bytes of μ-law per `response.output_audio.delta`.
    pub delta_bytes: usize,
    /// The transcription of each caller utterance.
    pub caller_text: String,
    /// Answer each utterance with the caller's own audio.
    pub echo: bool,
    /// Keep each response in progress (no `response.done`) until the client cancels it.
    pub hold_responses: bool,
    /// The `usage` of every `response.done`.
    pub usage: Value,
    /// Hold every session's `session.created` until this many sessions are open at once: proves calls
    /// overlap (a bridge that served calls one at a time would never get past the first greeting).
    pub gather: Option<usize>,
}

impl Default for PeerScript {
    fn default() -> Self {
        Self {
            greeting_audio: pattern(4_000, 7),
            greeting_text: "Hello, this is AiLuna. How can I help?".into(),
            delta_bytes: 160,
            caller_text: "I'd like to book a table for two tonight.".into(),
            echo: true,
            hold_responses: false,
            usage: json!({
                "total_tokens": 1000, "input_tokens": 600, "output_tokens": 400,
                "input_token_details": {"text_tokens": 100, "audio_tokens": 500, "cached_tokens": 0},
                "output_token_details": {"text_tokens": 100, "audio_tokens": 300}
            }),
            gather: None,
        }
    }
}

/// Deterministic μ-law-looking bytes that never form a cue frame.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            2 + ((x >> 33) % 250) as u8
        })
        .collect()
}

/// What one session sent and how it ended.
#[derive(Debug, Clone, Default)]
pub struct PeerSession {
    /// Every client event except `input_audio_buffer.append`, in order.
    pub events: Vec<Value>,
    /// Every appended audio byte, in order.
    pub caller_audio: Vec<u8>,
    /// The close code the bridge sent, if it closed.
    pub close_code: Option<u16>,
    pub ended: bool,
}

impl PeerSession {
    pub fn events_of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }
}

/// Sessions open now, and the most ever open at once.
#[derive(Debug, Default)]
struct OpenSessions {
    now: AtomicUsize,
    peak: AtomicUsize,
    changed: tokio::sync::Notify,
}

impl OpenSessions {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Returns once `n` sessions have been open at the same time.
    async fn gathered(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.peak.load(Ordering::SeqCst) >= n {
                return;
            }
            changed.await;
        }
    }
}

/// The running peer.
pub struct RealtimePeer {
    pub url: String,
    connections: Arc<AtomicUsize>,
    open: Arc<OpenSessions>,
    sessions: Arc<Mutex<Vec<Arc<Mutex<PeerSession>>>>>,
    events: broadcast::Sender<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RealtimePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RealtimePeer {
    pub async fn start(script: PeerScript) -> RealtimePeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("peer binds");
        let addr = listener.local_addr().expect("peer address");
        let connections = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(OpenSessions::default());
        let sessions: Arc<Mutex<Vec<Arc<Mutex<PeerSession>>>>> = Arc::default();
        let (events, _) = broadcast::channel(4096);
        let script = Arc::new(script);
        let task = {
            let (connections, sessions, events, open) = (
                connections.clone(),
                sessions.clone(),
                events.clone(),
                open.clone(),
            );
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    shared::http::sockets::set_nodelay(&mut stream);
                    connections.fetch_add(1, Ordering::SeqCst);
                    let session = Arc::new(Mutex::new(PeerSession::default()));
                    sessions.lock().unwrap().push(session.clone());
                    let (script, events, open) = (script.clone(), events.clone(), open.clone());
                    tokio::spawn(async move {
                        open.enter();
                        serve(stream, &script, &session, &events, &open).await;
                        session.lock().unwrap().ended = true;
                        open.leave();
                    });
                }
            })
        };
        RealtimePeer {
            url: format!("ws://{addr}/v1/realtime?model=gpt-realtime"),
            connections,
            open,
            sessions,
            events,
            task,
        }
    }

    /// TCP connections ever accepted (a refused call must leave this at zero).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The most sessions that were ever open at the same moment.
    pub fn peak_sessions(&self) -> usize {
        self.open.peak.load(Ordering::SeqCst)
    }

    pub fn sessions(&self) -> Vec<PeerSession> {
        self.sessions
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.lock().unwrap().clone())
            .collect()
    }

    /// Every client event (appends aside) as it arrives, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.events.subscribe()
    }
}

struct Conversation {
    next_id: usize,
    capturing: Option<(String, Vec<u8>)>,
    held_response: bool,
}

async fn serve(
    stream: TcpStream,
    script: &PeerScript,
    session: &Mutex<PeerSession>,
    events: &broadcast::Sender<Value>,
    open: &OpenSessions,
) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    if let Some(n) = script.gather {
        open.gathered(n).await;
    }
    let mut conv = Conversation {
        next_id: 0,
        capturing: None,
        held_response: false,
    };
    let mut out = vec![json!({"type": "session.created", "session": {"type": "realtime"}})];
    loop {
        for event in out.drain(..) {
            if ws
                .send(Message::Text(event.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
        let Some(Ok(message)) = ws.next().await else {
            return;
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                session.lock().unwrap().close_code = frame.map(|f| u16::from(f.code));
                return;
            }
            _ => continue,
        };
        let Ok(event) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let kind = event["type"].as_str().unwrap_or_default().to_string();
        if kind == "input_audio_buffer.append" {
            let audio = STANDARD
                .decode(event["audio"].as_str().unwrap_or_default())
                .unwrap_or_default();
            session
                .lock()
                .unwrap()
                .caller_audio
                .extend_from_slice(&audio);
            on_caller_audio(&audio, script, &mut conv, &mut out);
            continue;
        }
        session.lock().unwrap().events.push(event.clone());
        let _ = events.send(event.clone());
        match kind.as_str() {
            "session.update" => {
                out.push(json!({"type": "session.updated", "session": event["session"]}))
            }
            "response.create" => {
                let audio = script.greeting_audio.clone();
                respond(script, &mut conv, &audio, &script.greeting_text, &mut out);
            }
            "response.cancel" if conv.held_response => {
                conv.held_response = false;
                out.push(json!({"type": "response.done", "response": {"status": "cancelled", "usage": script.usage}}));
            }
            _ => {}
        }
    }
}

fn on_caller_audio(
    audio: &[u8],
    script: &PeerScript,
    conv: &mut Conversation,
    out: &mut Vec<Value>,
) {
    if audio == SPEECH_START {
        conv.next_id += 1;
        let item = format!("item_caller_{}", conv.next_id);
        out.push(json!({"type": "input_audio_buffer.speech_started", "item_id": item, "audio_start_ms": 0}));
        conv.capturing = Some((item, Vec::new()));
    } else if audio == SPEECH_END {
        if let Some((item, captured)) = conv.capturing.take() {
            out.push(json!({"type": "input_audio_buffer.speech_stopped", "item_id": item}));
            out.push(json!({
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item, "content_index": 0, "transcript": script.caller_text,
            }));
            if script.echo {
                respond(script, conv, &captured, "(echo)", out);
            }
        }
    } else if let Some((_, captured)) = &mut conv.capturing {
        captured.extend_from_slice(audio);
    }
}

/// A response: created, audio deltas, transcript, done (unless held).
fn respond(
    script: &PeerScript,
    conv: &mut Conversation,
    audio: &[u8],
    text: &str,
    out: &mut Vec<Value>,
) {
    conv.next_id += 1;
    let item = format!("item_assistant_{}", conv.next_id);
    let response = format!("resp_{}", conv.next_id);
    out.push(
        json!({"type": "response.created", "response": {"id": response, "status": "in_progress"}}),
    );
    for chunk in audio.chunks(script.delta_bytes.max(1)) {
        out.push(json!({
            "type": "response.output_audio.delta", "response_id": response, "item_id": item,
            "output_index": 0, "content_index": 0, "delta": STANDARD.encode(chunk),
        }));
    }
    out.push(json!({"type": "response.output_audio_transcript.done", "item_id": item, "transcript": text}));
    if script.hold_responses {
        conv.held_response = true;
    } else {
        out.push(json!({"type": "response.done", "response": {"id": response, "status": "completed", "usage": script.usage}}));
    }
}
