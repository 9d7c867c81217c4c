//! Logging, set up once per process: JSON lines in Lambda and Fargate (CloudWatch parses them), readable
//! lines locally. The request span's fields (`request_id`, `tenant_id` …) are on every line inside it.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global subscriber. `RUST_LOG` filters (default `info`). Safe to call more than once:
/// later calls do nothing (tests call it from many places).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let result = if json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .with_target(false)
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_span_events(FmtSpan::NONE)
            .with_target(false)
            .try_init()
    };
    // An already-installed subscriber is fine; anything else cannot happen with try_init.
    let _ = result;
}
