//! Twilio's side of a call, simulated: the signed voice webhook, and a Media Streams client that behaves
//! like Twilio (`connected`, `start`, a media frame every 20 ms, marks echoed once the audio before them
//! has played, `clear` dropping queued audio, `dtmf`, `stop`) and records everything that comes back.
//!
//! Signatures are computed by the official `twilio` Python package (`RequestValidator.compute_signature`),
//! run through `infra/dev/tool python`, never by our own code.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

/// One μ-law frame: 20 ms at 8 kHz.
pub const FRAME_BYTES: usize = 160;

static PYTHON: OnceLock<String> = OnceLock::new();

/// The project venv's python, with the `twilio` package (installed by `infra/dev/tool` on first use).
pub fn python() -> &'static str {
    PYTHON.get_or_init(|| {
        let tool = format!("{}/../infra/dev/tool", env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new(tool)
            .arg("python")
            .output()
            .expect("infra/dev/tool python runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8 path")
            .trim()
            .to_string()
    })
}

const SIGNER: &str = r#"
import json, sys
from twilio.request_validator import RequestValidator
class Multi(dict):
    def getall(self, name):
        return self[name]
out = []
for job in json.load(sys.stdin):
    params = Multi()
    for k, v in job["params"]:
        params.setdefault(k, []).append(v)
    out.append(RequestValidator(job["token"]).compute_signature(job["url"], params))
json.dump(out, sys.stdout)
"#;

/// Form parameters in the order received (names may repeat).
pub type Params = Vec<(String, String)>;

/// Signatures from the official library, one per (token, url, params).
pub async fn sign_all(jobs: &[(&str, &str, Params)]) -> Vec<String> {
    let input: Vec<Value> = jobs
        .iter()
        .map(|(token, url, params)| json!({"token": token, "url": url, "params": params}))
        .collect();
    let mut child = tokio::process::Command::new(python())
        .arg("-c")
        .arg(SIGNER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.expect("python finishes");
    assert!(out.status.success(), "the signer failed");
    serde_json::from_slice(&out.stdout).expect("signatures")
}

pub async fn sign(token: &str, url: &str, params: &[(String, String)]) -> String {
    sign_all(&[(token, url, params.to_vec())]).await.remove(0)
}

/// A fresh call sid.
pub fn call_sid() -> String {
    format!("CA{}", uuid::Uuid::new_v4().simple())
}

/// The form Twilio posts for an inbound call.
pub fn webhook_params(call_sid: &str, from: &str, to: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("Called", to),
        ("Caller", from),
        ("Direction", "inbound"),
        ("From", from),
        ("FromCountry", "JP"),
        ("To", to),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Posts the webhook with a signature header (when given); returns status and body.
pub async fn post_webhook(
    client: &reqwest::Client,
    bridge_url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> (reqwest::StatusCode, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut request = client
        .post(format!("{bridge_url}/incoming-call-realtime"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("X-Twilio-Signature", signature);
    }
    let response = request.send().await.expect("webhook sent");
    (response.status(), response.text().await.unwrap_or_default())
}

/// The `<Stream url>` and `<Parameter>`s of a `<Connect><Stream>` answer, unescaped.
pub fn stream_of(twiml: &str) -> Option<(String, HashMap<String, String>)> {
    fn attr(tag: &str, name: &str) -> Option<String> {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = start + tag[start..].find('"')?;
        Some(
            tag[start..end]
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    }
    let stream_tag = twiml.split("<Stream ").nth(1)?;
    let url = attr(stream_tag, "url")?;
    let params = twiml
        .split("<Parameter ")
        .skip(1)
        .filter_map(|tag| Some((attr(tag, "name")?, attr(tag, "value")?)))
        .collect();
    Some((url, params))
}

/// One step of what the caller does, one step per 20 ms tick.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send one media frame (160 bytes).
    Audio(Vec<u8>),
    /// Press a key.
    Dtmf(String),
    /// Hold (sending silence) until this many bytes of assistant audio have played.
    WaitHeard(u64),
    /// From this tick on, playback stops advancing until a `clear` arrives (the caller talking over the
    /// assistant, frozen at that instant so what was heard is exact).
    PauseUntilClear,
    /// Hold until every queued byte of assistant audio has played.
    WaitPlayed,
    /// Hold until this many bytes of assistant audio have been received in all.
    WaitReceived(u64),
    /// Send `stop` and wait for the bridge to close.
    Stop,
}

/// What came back, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Media(usize),
    Mark(String),
    /// A `clear`, with the assistant audio heard (played) at that moment.
    Clear {
        heard_bytes: u64,
    },
    /// A client event the Realtime peer reported (for ordering against Twilio-side events).
    PeerEvent(Value),
}

/// The simulator's record of a call.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub events: Vec<Received>,
    /// Every assistant audio byte received, in order.
    pub audio: Vec<u8>,
    /// Every caller audio byte sent, in order.
    pub sent_audio: Vec<u8>,
    pub heard_bytes: u64,
    pub close_code: Option<u16>,
    /// Bridge frames that were not JSON of Twilio's outbound shape.
    pub malformed: usize,
}

impl Record {
    pub fn clears(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Received::Clear { heard_bytes } => Some(*heard_bytes),
                _ => None,
            })
            .collect()
    }
}

enum Queued {
    Audio(Vec<u8>),
    Mark(String),
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A simulated Twilio media stream.
pub struct MediaStream {
    ws: Socket,
    stream_sid: String,
    queue: VecDeque<Queued>,
    paused: bool,
    pub record: Record,
}

/// 160 bytes of μ-law silence.
pub fn silence() -> Vec<u8> {
    vec![0xFF; FRAME_BYTES]
}

impl MediaStream {
    /// Opens the socket and sends `connected` and `start` with these custom parameters.
    pub async fn connect(
        bridge_url: &str,
        call_sid: &str,
        parameters: &HashMap<String, String>,
    ) -> MediaStream {
        let url = format!(
            "{}/twilio-media",
            bridge_url.replacen("http://", "ws://", 1)
        );
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .expect("media socket connects");
        let stream_sid = format!("MZ{}", uuid::Uuid::new_v4().simple());
        let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        let start = json!({
            "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
            "start": {
                "accountSid": "AC00000000000000000000000000000000", "streamSid": stream_sid,
                "callSid": call_sid, "tracks": ["inbound"],
                "customParameters": parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            }
        });
        for m in [connected, start] {
            ws.send(Message::Text(m.to_string().into()))
                .await
                .expect("sent");
        }
        MediaStream {
            ws,
            stream_sid,
            queue: VecDeque::new(),
            paused: false,
            record: Record::default(),
        }
    }

    async fn send(&mut self, event: Value) -> bool {
        self.ws
            .send(Message::Text(event.to_string().into()))
            .await
            .is_ok()
    }

    /// Plays 20 ms of queued assistant audio; echoes each mark once the audio before it has played.
    async fn play_tick(&mut self) -> bool {
        let mut budget = if self.paused { 0 } else { FRAME_BYTES };
        loop {
            match self.queue.front_mut() {
                Some(Queued::Mark(name)) => {
                    let name = std::mem::take(name);
                    self.queue.pop_front();
                    let echo = json!({"event": "mark", "sequenceNumber": "0", "streamSid": self.stream_sid, "mark": {"name": name}});
                    if !self.send(echo).await {
                        return false;
                    }
                }
                Some(Queued::Audio(audio)) if budget > 0 => {
                    let n = budget.min(audio.len());
                    audio.drain(..n);
                    budget -= n;
                    self.record.heard_bytes += n as u64;
                    if audio.is_empty() {
                        self.queue.pop_front();
                    }
                }
                _ => return true,
            }
        }
    }

    fn queued_audio(&self) -> bool {
        self.queue.iter().any(|q| matches!(q, Queued::Audio(_)))
    }

    /// Handles one message from the bridge; false once the socket is closed.
    async fn on_message(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> bool {
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                self.record.close_code = Some(frame.map_or(1005, |f| u16::from(f.code)));
                return false;
            }
            Some(Ok(_)) => return true,
            Some(Err(_)) | None => return false,
        };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            self.record.malformed += 1;
            return true;
        };
        if v["streamSid"] != self.stream_sid.as_str() {
            self.record.malformed += 1;
            return true;
        }
        match v["event"].as_str() {
            Some("media") => {
                let audio = STANDARD
                    .decode(v["media"]["payload"].as_str().unwrap_or_default())
                    .unwrap_or_default();
                self.record.events.push(Received::Media(audio.len()));
                self.record.audio.extend_from_slice(&audio);
                self.queue.push_back(Queued::Audio(audio));
            }
            Some("mark") => match v["mark"]["name"].as_str() {
                Some(name) => {
                    self.record.events.push(Received::Mark(name.to_string()));
                    self.queue.push_back(Queued::Mark(name.to_string()));
                }
                None => self.record.malformed += 1,
            },
            Some("clear") => {
                self.record.events.push(Received::Clear {
                    heard_bytes: self.record.heard_bytes,
                });
                // Twilio drops the queued audio and echoes the marks that were waiting behind it.
                let marks: Vec<String> = self
                    .queue
                    .drain(..)
                    .filter_map(|q| match q {
                        Queued::Mark(name) => Some(name),
                        Queued::Audio(_) => None,
                    })
                    .collect();
                for name in marks {
                    let echo = json!({"event": "mark", "sequenceNumber": "0", "streamSid": self.stream_sid, "mark": {"name": name}});
                    if !self.send(echo).await {
                        return false;
                    }
                }
                self.paused = false;
            }
            _ => self.record.malformed += 1,
        }
        true
    }

    /// Runs the steps, one per 20 ms tick, then (after `Stop`, or when the steps run out) reads until the
    /// bridge closes the socket. Peer events, when given, are recorded in order with what Twilio receives;
    /// the socket is always read first, so an event the bridge sent Twilio earlier is recorded earlier.
    pub async fn run(
        mut self,
        steps: Vec<Step>,
        mut peer: Option<broadcast::Receiver<Value>>,
    ) -> Record {
        let mut steps: VecDeque<Step> = steps.into();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sequence = 2u64;
        let mut stopping = false;
        let mut timestamp = 0u64;
        loop {
            tokio::select! {
                biased;
                message = self.ws.next() => {
                    if !self.on_message(message).await {
                        break;
                    }
                }
                event = async {
                    match peer.as_mut() {
                        Some(rx) => rx.recv().await.ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(event) = event {
                        self.record.events.push(Received::PeerEvent(event));
                    }
                }
                _ = tick.tick(), if !stopping => {
                    if !self.play_tick().await {
                        break;
                    }
                    timestamp += 20;
                    let frame = match steps.front() {
                        Some(Step::Audio(_)) => match steps.pop_front() {
                            Some(Step::Audio(audio)) => Some(audio),
                            _ => None,
                        },
                        Some(Step::Dtmf(digit)) => {
                            let digit = digit.clone();
                            steps.pop_front();
                            let dtmf = json!({"event": "dtmf", "sequenceNumber": sequence.to_string(), "streamSid": self.stream_sid, "dtmf": {"track": "inbound_track", "digit": digit}});
                            sequence += 1;
                            if !self.send(dtmf).await {
                                break;
                            }
                            Some(silence())
                        }
                        Some(Step::WaitHeard(n)) => {
                            if self.record.heard_bytes >= *n {
                                steps.pop_front();
                            }
                            Some(silence())
                        }
                        Some(Step::WaitReceived(n)) => {
                            if self.record.audio.len() as u64 >= *n {
                                steps.pop_front();
                            }
                            Some(silence())
                        }
                        Some(Step::WaitPlayed) => {
                            if !self.queued_audio() {
                                steps.pop_front();
                            }
                            Some(silence())
                        }
                        Some(Step::PauseUntilClear) => {
                            steps.pop_front();
                            self.paused = true;
                            None
                        }
                        Some(Step::Stop) => {
                            steps.pop_front();
                            let stop = json!({"event": "stop", "sequenceNumber": sequence.to_string(), "streamSid": self.stream_sid, "stop": {"accountSid": "AC0", "callSid": "CA0"}});
                            if !self.send(stop).await {
                                break;
                            }
                            stopping = true;
                            None
                        }
                        // Out of steps: the caller stays on the line (silence) until the bridge ends it.
                        None => Some(silence()),
                    };
                    if let Some(audio) = frame {
                        self.record.sent_audio.extend_from_slice(&audio);
                        let media = json!({
                            "event": "media", "sequenceNumber": sequence.to_string(), "streamSid": self.stream_sid,
                            "media": {"track": "inbound", "chunk": sequence.to_string(), "timestamp": timestamp.to_string(), "payload": STANDARD.encode(&audio)}
                        });
                        sequence += 1;
                        if !self.send(media).await {
                            break;
                        }
                    }
                }
            }
        }
        self.record
    }
}
