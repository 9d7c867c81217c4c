//! Logging for the whole test binary, installed once: silent unless `TEST_LOG=1` (then readable lines,
//! filtered by `RUST_LOG`, default `info`), plus the call bridge's outbound trace, which the
//! barge-in tests read to prove the order of what the bridge sent.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use serde_json::Value;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;

/// (thread, sink, event type) of every message a bridge in this test binary sent on either socket, in
/// the order sent. A test on a single-threaded runtime (which runs its bridge too) reads its own
/// entries by its thread id.
pub type OutboundLog = Arc<Mutex<Vec<(ThreadId, String, String)>>>;

static OUTBOUND: OnceLock<OutboundLog> = OnceLock::new();

/// Installs the binary's one global subscriber (later calls do nothing; a binary that installed its
/// own keeps it) and returns the outbound log.
pub fn init() -> &'static OutboundLog {
    OUTBOUND.get_or_init(|| {
        let log = OutboundLog::default();
        let readable = std::env::var("TEST_LOG").is_ok_and(|v| v == "1").then(|| {
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_target(false)
                .with_filter(filter)
        });
        // Per-layer filters: each layer sees only what it asked for, and a callsite neither wants
        // (every other trace event, when TEST_LOG is off) is never dispatched at all.
        let outbound = Outbound(log.clone())
            .with_filter(filter_fn(|meta| meta.target() == call_bridge::OUTBOUND));
        let subscriber = tracing_subscriber::registry().with(outbound).with(readable);
        // A benchmark binary installs its own subscriber first (to read the chat timings): it keeps
        // it, and this binary's outbound log stays empty.
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            tracing::debug!("a global subscriber was already installed; keeping it");
        }
        log
    })
}

/// Records the bridge's outbound messages (its filter passes only target `call_bridge::OUTBOUND`).
struct Outbound(OutboundLog);

impl<S: tracing::Subscriber> Layer<S> for Outbound {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message: Value = serde_json::from_str(&fields.message).unwrap_or(Value::Null);
        let kind = message["type"]
            .as_str()
            .or(message["event"].as_str())
            .unwrap_or("?")
            .to_string();
        let thread = std::thread::current().id();
        self.0.lock().unwrap().push((thread, fields.sink, kind));
    }
}

#[derive(Default)]
struct Fields {
    sink: String,
    message: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "sink" => self.sink = format!("{value:?}"),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}
