//! The call bridge's benchmark: added latency per audio frame in each direction and CPU per concurrent
//! call, with the Twilio simulator and the Realtime peer in the same run.
//!
//!   cargo run --profile perf -p kotoba-tests --example call_bridge_bench [-- CALLS SECONDS]
//!
//! Two phases, same process, same simulators and peer, one after the other:
//! 1. baseline: each simulated call goes through a raw loopback WebSocket relay (two sockets per call,
//!    frames forwarded untouched, nothing parsed) to the peer;
//! 2. bridge: each call goes through the real bridge (signed webhook, token, admission, relay, marks,
//!    call log) to the same peer.
//!
//! Each frame carries its send time (nanoseconds since the run started) in its first 8 bytes, so the
//! receiving side measures its one-way latency. "Added" latency is bridge minus baseline at the same
//! percentile; CPU is this process's user+system time per phase (from /proc/self/stat), divided by calls
//! and seconds. Only loopback addresses are used.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use kotoba_tests::twilio::{stream_of, webhook_params};
use kotoba_tests::{Backend, TEST_TWILIO_AUTH_TOKEN, TestApp};
use shared::voice::signature::TwilioValidator;

static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Samples before this (per phase) are warm-up and not recorded.
static RECORDING: AtomicBool = AtomicBool::new(false);
static INBOUND: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static OUTBOUND: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A 20 ms μ-law frame stamped with its send time.
fn stamped_frame() -> String {
    let mut frame = vec![0x55u8; 160];
    frame[..8].copy_from_slice(&now_ns().to_le_bytes());
    STANDARD.encode(frame)
}

fn record(samples: &Mutex<Vec<u64>>, base64: &str) {
    if !RECORDING.load(Ordering::Relaxed) {
        return;
    }
    if let Ok(bytes) = STANDARD.decode(base64)
        && let Some(stamp) = bytes.first_chunk::<8>()
    {
        let sent = u64::from_le_bytes(*stamp);
        samples.lock().unwrap().push(now_ns().saturating_sub(sent));
    }
}

/// The Realtime side: answers the session, then streams one stamped delta every 20 ms; records the
/// latency of every caller frame it receives (as a Realtime append, or as raw Twilio media via the relay).
async fn start_peer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            // The peers and the relay set TCP_NODELAY too, so the run measures the bridge, not Nagle.
            shared::http::sockets::set_nodelay(&mut stream);
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut tx, mut rx) = ws.split();
                let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
                let writer = tokio::spawn(async move {
                    while let Some(text) = out_rx.recv().await {
                        if tx.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                });
                let mut streaming: Option<tokio::task::JoinHandle<()>> = None;
                while let Some(Ok(Message::Text(text))) = rx.next().await {
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    let start_streaming = match (v["type"].as_str(), v["event"].as_str()) {
                        (Some("input_audio_buffer.append"), _) => {
                            record(&INBOUND, v["audio"].as_str().unwrap_or_default());
                            false
                        }
                        (_, Some("media")) => {
                            record(&INBOUND, v["media"]["payload"].as_str().unwrap_or_default());
                            false
                        }
                        (Some("session.update"), _) => {
                            let _ = out_tx.send(json!({"type": "session.updated"}).to_string());
                            false
                        }
                        (Some("response.create"), _) | (_, Some("start")) => true,
                        _ => false,
                    };
                    if start_streaming && streaming.is_none() {
                        let out = out_tx.clone();
                        streaming = Some(tokio::spawn(async move {
                            let mut tick = tokio::time::interval(Duration::from_millis(20));
                            loop {
                                tick.tick().await;
                                let delta = json!({"type": "response.output_audio.delta", "item_id": "item_1", "delta": stamped_frame()});
                                if out.send(delta.to_string()).is_err() {
                                    break;
                                }
                            }
                        }));
                    }
                }
                if let Some(s) = streaming {
                    s.abort();
                }
                drop(out_tx);
                let _ = writer.await;
            });
        }
    });
    format!("ws://{addr}/v1/realtime?model=gpt-realtime")
}

/// The baseline: a raw WebSocket relay, one upstream socket per downstream socket, frames untouched.
async fn start_relay(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            // The peers and the relay set TCP_NODELAY too, so the run measures the bridge, not Nagle.
            shared::http::sockets::set_nodelay(&mut stream);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut down) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let Ok((mut up, _)) =
                    tokio_tungstenite::connect_async_with_config(upstream, None, true).await
                else {
                    return;
                };
                loop {
                    let (message, upward) = tokio::select! {
                        m = down.next() => (m, true),
                        m = up.next() => (m, false),
                    };
                    let text = match message {
                        Some(Ok(m @ Message::Text(_))) => m,
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                        Some(Ok(_)) => continue,
                    };
                    let sent = if upward {
                        up.send(text).await
                    } else {
                        down.send(text).await
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                let _ = up.close(None).await;
                let _ = down.close(None).await;
            });
        }
    });
    format!("ws://{addr}")
}

/// One simulated Twilio stream: a stamped frame every 20 ms, marks echoed, for `seconds`, then `stop`.
async fn simulate(url: String, call_sid: String, parameters: Value, seconds: u64) {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .expect("connects");
    let (mut tx, mut rx) = ws.split();
    let stream_sid = format!("MZ{}", uuid::Uuid::new_v4().simple());
    let start = json!({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": {
        "accountSid": "AC0", "streamSid": stream_sid, "callSid": call_sid, "tracks": ["inbound"],
        "customParameters": parameters,
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}});
    for m in [
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
        start,
    ] {
        tx.send(Message::Text(m.to_string().into())).await.unwrap();
    }
    let (marks_tx, mut marks_rx) = mpsc::unbounded_channel::<String>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(Message::Text(text))) = rx.next().await {
            let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            match (v["event"].as_str(), v["type"].as_str()) {
                (Some("media"), _) => record(
                    &OUTBOUND,
                    v["media"]["payload"].as_str().unwrap_or_default(),
                ),
                (Some("mark"), _) => {
                    let _ =
                        marks_tx.send(v["mark"]["name"].as_str().unwrap_or_default().to_string());
                }
                (_, Some("response.output_audio.delta")) => {
                    record(&OUTBOUND, v["delta"].as_str().unwrap_or_default())
                }
                _ => {}
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut seq = 2u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if tokio::time::Instant::now() >= end { break; }
                let media = json!({"event": "media", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
                    "media": {"track": "inbound", "chunk": seq.to_string(), "timestamp": (seq * 20).to_string(), "payload": stamped_frame()}});
                seq += 1;
                if tx.send(Message::Text(media.to_string().into())).await.is_err() { break; }
            }
            Some(name) = marks_rx.recv() => {
                let echo = json!({"event": "mark", "sequenceNumber": "0", "streamSid": stream_sid, "mark": {"name": name}});
                if tx.send(Message::Text(echo.to_string().into())).await.is_err() { break; }
            }
        }
    }
    let stop = json!({"event": "stop", "sequenceNumber": seq.to_string(), "streamSid": stream_sid, "stop": {}});
    let _ = tx.send(Message::Text(stop.to_string().into())).await;
    let _ = tx.close().await;
    let _ = reader.await;
}

/// This process's CPU time (user + system) in seconds, from /proc/self/stat (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn quantile(samples: &mut [u64], q: f64) -> f64 {
    samples.sort_unstable();
    if samples.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    // Nanoseconds to milliseconds.
    samples[rank - 1] as f64 / 1e6
}

struct Phase {
    inbound: (f64, f64),
    outbound: (f64, f64),
    samples: (usize, usize),
    cpu_per_call: f64,
}

async fn phase(calls: Vec<(String, String, Value)>, seconds: u64) -> Phase {
    INBOUND.lock().unwrap().clear();
    OUTBOUND.lock().unwrap().clear();
    let n = calls.len();
    let warm = tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        RECORDING.store(true, Ordering::SeqCst);
        let cpu = cpu_seconds();
        let t = Instant::now();
        (cpu, t)
    });
    let runs: Vec<_> = calls
        .into_iter()
        .map(|(url, sid, params)| tokio::spawn(simulate(url, sid, params, seconds + 1)))
        .collect();
    let (cpu0, t0) = warm.await.unwrap();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    RECORDING.store(false, Ordering::SeqCst);
    let cpu = cpu_seconds() - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    for r in runs {
        let _ = r.await;
    }
    let mut inbound = std::mem::take(&mut *INBOUND.lock().unwrap());
    let mut outbound = std::mem::take(&mut *OUTBOUND.lock().unwrap());
    Phase {
        inbound: (quantile(&mut inbound, 0.5), quantile(&mut inbound, 0.99)),
        outbound: (quantile(&mut outbound, 0.5), quantile(&mut outbound, 0.99)),
        samples: (inbound.len(), outbound.len()),
        cpu_per_call: cpu / wall / n as f64,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let calls = args.first().copied().unwrap_or(100) as usize;
    let seconds = args.get(1).copied().unwrap_or(10);
    EPOCH.get_or_init(Instant::now);
    let peer = start_peer().await;

    // Baseline: the same streams through a raw relay.
    let relay = start_relay(peer.clone()).await;
    let base_calls = (0..calls)
        .map(|_| {
            (
                relay.clone(),
                format!("CA{}", uuid::Uuid::new_v4().simple()),
                json!({}),
            )
        })
        .collect();
    let base = phase(base_calls, seconds).await;

    // The bridge: a tenant with enough minutes, every call admitted through the signed webhook.
    let app = TestApp::spawn_with(
        Backend::Embedded,
        &[("OPENAI_REALTIME_URL", peer.as_str()), ("RUST_LOG", "warn")],
    )
    .await;
    let (tenant, key) = app.create_tenant("enterprise").await;
    app.call(
        reqwest::Method::PUT,
        &format!("/api/admin/tenants/{tenant}/subscription"),
        Some(&app.admin_key),
        Some(json!({"status": "active"})),
    )
    .await;
    let number = "+15005550006";
    app.post(
        "/api/admin/phone-numbers",
        &app.admin_key,
        json!({"number": number, "tenant_id": tenant}),
    )
    .await;
    let validator = TwilioValidator::new(TEST_TWILIO_AUTH_TOKEN);
    let webhook = format!("{}/incoming-call-realtime", app.bridge_url);
    let media_url = format!(
        "{}/twilio-media",
        app.bridge_url.replace("http://", "ws://")
    );
    let mut bridge_calls = Vec::new();
    for _ in 0..calls {
        let sid = format!("CA{}", uuid::Uuid::new_v4().simple());
        let params = webhook_params(&sid, "+819012345678", number);
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let twiml = app
            .client
            .post(&webhook)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", validator.compute(&webhook, &params))
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (_, parameters) = stream_of(&twiml).expect("admitted");
        bridge_calls.push((media_url.clone(), sid, json!(parameters)));
    }
    let bridged = phase(bridge_calls, seconds).await;

    // The bridge's own per-frame measurements, from the call logs.
    let mut own_in = Vec::new();
    let mut own_out = Vec::new();
    for _ in 0..200 {
        let r = app.get("/api/calls?limit=100", &key).await;
        let logs = r.body["calls"].as_array().cloned().unwrap_or_default();
        if logs.len() >= calls.min(100) {
            for l in logs {
                own_in.push(l["metrics"]["inbound_p99_us"].as_u64().unwrap_or(0));
                own_out.push(l["metrics"]["outbound_p99_us"].as_u64().unwrap_or(0));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let ms = |v: f64| format!("{v:.3}");
    println!(
        "calls: {calls}, measured seconds: {seconds}, cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "samples baseline in/out: {:?}, bridge in/out: {:?}",
        base.samples, bridged.samples
    );
    println!(
        "| direction | baseline p50 | baseline p99 | bridge p50 | bridge p99 | added p50 | added p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, b, r) in [
        ("caller → model", base.inbound, bridged.inbound),
        ("model → caller", base.outbound, bridged.outbound),
    ] {
        println!(
            "| {name} (ms) | {} | {} | {} | {} | {} | {} |",
            ms(b.0),
            ms(b.1),
            ms(r.0),
            ms(r.1),
            ms(r.0 - b.0),
            ms(r.1 - b.1)
        );
    }
    println!(
        "| CPU per concurrent call (% of one core) | baseline {:.2} | bridge {:.2} | added {:.2} |",
        base.cpu_per_call * 100.0,
        bridged.cpu_per_call * 100.0,
        (bridged.cpu_per_call - base.cpu_per_call) * 100.0
    );
    own_in.sort_unstable();
    own_out.sort_unstable();
    println!(
        "bridge's own measure (time inside the bridge per frame, per-call p99, median over calls / worst): in {} / {} µs, out {} / {} µs",
        own_in.get(own_in.len() / 2).copied().unwrap_or(0),
        own_in.last().copied().unwrap_or(0),
        own_out.get(own_out.len() / 2).copied().unwrap_or(0),
        own_out.last().copied().unwrap_or(0)
    );
}
