//! Where a chat request's time goes: consecutive stages from the request's arrival to its last byte
//! handed to the server, so a regression shows which step it is in.
//!
//! The chat routes get [`layer`]: it starts a [`StageClock`] when the request arrives, hands it to the
//! handler (request extension → [`super::RequestMeta`]), and when the response body has been written
//! out (or dropped by a client that went away) closes the last stage and records them all: one tracing
//! event ([`TIMINGS_TARGET`], fields `<stage>_ms`), and in Lambda one CloudWatch embedded-metric-format
//! line on stdout, which CloudWatch Logs turns into metrics without an API call on the request path.
//!
//! Each mark closes the stage that ran since the previous mark, so the stages add up to the total and
//! one missing mark folds its time into the next stage rather than losing it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// The tracing target of the per-request timings event.
pub const TIMINGS_TARGET: &str = "kotoba::chat::timings";
/// The CloudWatch namespace of the embedded metrics.
pub const METRICS_NAMESPACE: &str = "Kotoba";

/// One step of answering, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Arrival → handler: body read and parsed, API key (or site and Origin) checked.
    Auth,
    /// Site and tenant read, rate limit, plan and model policy, the index looked up (or loaded).
    Admit,
    /// The quota / credit reservation (with the session history read alongside).
    Reserve,
    /// Query embedding, hybrid search, reranking.
    Retrieve,
    /// The model request built from the prompt profile, passages and history.
    Prompt,
    /// Request sent → first text from the model.
    FirstByte,
    /// First text → the model's last event (or the extractive answer composed).
    Stream,
    /// Usage log, counters, session.
    Settle,
    /// Answer ready → the response's last byte handed to the server.
    Flushed,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Auth,
        Stage::Admit,
        Stage::Reserve,
        Stage::Retrieve,
        Stage::Prompt,
        Stage::FirstByte,
        Stage::Stream,
        Stage::Settle,
        Stage::Flushed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Auth => "auth",
            Stage::Admit => "admit",
            Stage::Reserve => "reserve",
            Stage::Retrieve => "retrieve",
            Stage::Prompt => "prompt",
            Stage::FirstByte => "first_byte",
            Stage::Stream => "stream",
            Stage::Settle => "settle",
            Stage::Flushed => "flushed",
        }
    }

    /// The CloudWatch metric name.
    pub fn metric(self) -> &'static str {
        match self {
            Stage::Auth => "ChatAuthMs",
            Stage::Admit => "ChatAdmitMs",
            Stage::Reserve => "ChatReserveMs",
            Stage::Retrieve => "ChatRetrieveMs",
            Stage::Prompt => "ChatPromptMs",
            Stage::FirstByte => "ChatFirstByteMs",
            Stage::Stream => "ChatStreamMs",
            Stage::Settle => "ChatSettleMs",
            Stage::Flushed => "ChatFlushedMs",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The stages of one request, as measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StageTimings {
    stages: [Option<Duration>; Stage::ALL.len()],
    /// Arrival → last mark.
    pub total: Duration,
}

impl StageTimings {
    pub fn get(&self, stage: Stage) -> Option<Duration> {
        self.stages[stage.index()]
    }

    /// One CloudWatch embedded-metric-format line (`_aws` metadata, then the values at the top level):
    /// a metric per measured stage and the total, in milliseconds, by function name.
    pub fn emf_line(&self, function: &str, timestamp_ms: i64, request_id: Option<&str>) -> String {
        let mut metrics = Vec::new();
        let mut body = serde_json::Map::new();
        for stage in Stage::ALL {
            if let Some(d) = self.get(stage) {
                metrics.push(serde_json::json!({"Name": stage.metric(), "Unit": "Milliseconds"}));
                body.insert(stage.metric().into(), millis(d).into());
            }
        }
        metrics.push(serde_json::json!({"Name": "ChatTotalMs", "Unit": "Milliseconds"}));
        body.insert("ChatTotalMs".into(), millis(self.total).into());
        body.insert("FunctionName".into(), function.into());
        if let Some(id) = request_id {
            // A property, not a dimension: it makes the line findable without multiplying metrics.
            body.insert("request_id".into(), id.into());
        }
        body.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": metrics,
                }],
            }),
        );
        serde_json::Value::Object(body).to_string()
    }
}

fn millis(d: Duration) -> f64 {
    // Microsecond resolution is plenty and keeps the lines short.
    (d.as_micros() as f64) / 1000.0
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    last: Instant,
    timings: StageTimings,
    recorded: bool,
}

/// A request's stopwatch, shared by the edge and the service (cheap to clone; one per request).
#[derive(Debug, Clone)]
pub struct StageClock(Arc<Mutex<Inner>>);

impl Default for StageClock {
    fn default() -> Self {
        Self::start()
    }
}

impl PartialEq for StageClock {
    /// The same request's clock.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl StageClock {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self::start_at(Instant::now())
    }

    pub fn start_at(started: Instant) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            started,
            last: started,
            timings: StageTimings::default(),
            recorded: false,
        })))
    }

    /// Closes `stage`: the time since the previous mark is added to it.
    pub fn mark(&self, stage: Stage) {
        self.mark_at(stage, Instant::now());
    }

    pub fn mark_at(&self, stage: Stage, at: Instant) {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = at.saturating_duration_since(inner.last);
        let slot = &mut inner.timings.stages[stage.index()];
        *slot = Some(slot.unwrap_or_default() + elapsed);
        inner.last = inner.last.max(at);
        inner.timings.total = inner.last.saturating_duration_since(inner.started);
    }

    pub fn timings(&self) -> StageTimings {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).timings
    }

    /// A settlement that took `took` finished: while the request is still being measured (the
    /// settle ran before the response ended), it closes the `settle` stage; after it was recorded
    /// (the settle ran after the response was delivered), it is recorded on its own, as a
    /// `chat settled` event (and in Lambda an EMF line) with `settle_ms` and `deferred = true`.
    pub fn settled(&self, took: Duration) {
        let recorded = self.0.lock().unwrap_or_else(|p| p.into_inner()).recorded;
        if !recorded {
            self.mark(Stage::Settle);
            return;
        }
        tracing::info!(
            target: TIMINGS_TARGET,
            settle_ms = millis(took),
            deferred = true,
            "chat settled"
        );
        if let Some(function) = lambda_function() {
            let mut t = StageTimings::default();
            t.stages[Stage::Settle.index()] = Some(took);
            t.total = took;
            let now = time::OffsetDateTime::now_utc();
            let line = t.emf_line(
                function,
                (now.unix_timestamp_nanos() / 1_000_000) as i64,
                crate::http::current_request_id().as_deref(),
            );
            use std::io::Write;
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }

    /// Closes the last stage and records the request once (later calls do nothing).
    fn finish(&self) {
        self.mark(Stage::Flushed);
        let timings = {
            let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if std::mem::replace(&mut inner.recorded, true) {
                return;
            }
            inner.timings
        };
        record(&timings);
    }
}

/// The function name in Lambda (`AWS_LAMBDA_FUNCTION_NAME`), where metrics go out as EMF lines.
fn lambda_function() -> Option<&'static str> {
    static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok())
        .as_deref()
}

/// Records one request's stages: a tracing event, and in Lambda an EMF line.
pub fn record(t: &StageTimings) {
    let ms = |stage| t.get(stage).map(millis);
    tracing::info!(
        target: TIMINGS_TARGET,
        auth_ms = ms(Stage::Auth),
        admit_ms = ms(Stage::Admit),
        reserve_ms = ms(Stage::Reserve),
        retrieve_ms = ms(Stage::Retrieve),
        prompt_ms = ms(Stage::Prompt),
        first_byte_ms = ms(Stage::FirstByte),
        stream_ms = ms(Stage::Stream),
        settle_ms = ms(Stage::Settle),
        flushed_ms = ms(Stage::Flushed),
        total_ms = millis(t.total),
        "chat timings"
    );
    if let Some(function) = lambda_function() {
        let now = time::OffsetDateTime::now_utc();
        let line = t.emf_line(
            function,
            (now.unix_timestamp_nanos() / 1_000_000) as i64,
            crate::http::current_request_id().as_deref(),
        );
        // Straight to stdout, not through the log formatter: EMF needs `_aws` at the top level.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// Middleware for the chat routes: starts the request's [`StageClock`] (a request extension the
/// handler passes on) and records the stages once the response body has been written out.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let clock = StageClock::start();
    request.extensions_mut().insert(clock.clone());
    let response = next.run(request).await;
    response.map(|body| {
        Body::new(TimedBody {
            inner: body,
            clock: Some(clock),
        })
    })
}

/// A response body that finishes its request's clock when it ends or is dropped.
struct TimedBody {
    inner: Body,
    clock: Option<StageClock>,
}

impl TimedBody {
    fn finish(&mut self) {
        if let Some(clock) = self.clock.take() {
            clock.finish();
        }
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        // A client that went away mid-stream still leaves its timings.
        self.finish();
    }
}

impl http_body::Body for TimedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_consecutive_and_add_up_to_the_total() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let clock = StageClock::start_at(t0);
        clock.mark_at(Stage::Auth, at(2));
        clock.mark_at(Stage::Reserve, at(5)); // Admit not marked: its time is in Reserve
        clock.mark_at(Stage::Retrieve, at(9));
        clock.mark_at(Stage::Stream, at(20));
        clock.mark_at(Stage::Stream, at(21)); // a second mark adds to the stage
        let t = clock.timings();
        assert_eq!(t.get(Stage::Auth), Some(Duration::from_millis(2)));
        assert_eq!(t.get(Stage::Admit), None);
        assert_eq!(t.get(Stage::Reserve), Some(Duration::from_millis(3)));
        assert_eq!(t.get(Stage::Retrieve), Some(Duration::from_millis(4)));
        assert_eq!(t.get(Stage::Stream), Some(Duration::from_millis(12)));
        let sum: Duration = Stage::ALL.iter().filter_map(|s| t.get(*s)).sum();
        assert_eq!(sum, t.total);
        assert_eq!(t.total, Duration::from_millis(21));
        // A mark from the past (another task's, late) never makes time run backwards.
        clock.mark_at(Stage::Settle, at(1));
        assert_eq!(clock.timings().get(Stage::Settle), Some(Duration::ZERO));
        assert_eq!(clock.timings().total, Duration::from_millis(21));
    }

    #[test]
    fn the_emf_line_declares_every_metric_it_carries() {
        let t0 = Instant::now();
        let clock = StageClock::start_at(t0);
        clock.mark_at(Stage::Auth, t0 + Duration::from_micros(1500));
        clock.mark_at(Stage::Retrieve, t0 + Duration::from_micros(4250));
        let line = clock
            .timings()
            .emf_line("kotoba-chat", 1_764_547_200_000, Some("req-1"));
        assert!(!line.contains('\n'), "one line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let aws = &v["_aws"];
        assert_eq!(aws["Timestamp"], 1_764_547_200_000i64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], METRICS_NAMESPACE);
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["FunctionName"]])
        );
        assert_eq!(v["FunctionName"], "kotoba-chat");
        assert_eq!(v["request_id"], "req-1");
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["Unit"], "Milliseconds");
                m["Name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(names, ["ChatAuthMs", "ChatRetrieveMs", "ChatTotalMs"]);
        for name in names {
            assert!(v[name].is_number(), "{name} has a value");
        }
        assert_eq!(v["ChatAuthMs"], 1.5);
        assert_eq!(v["ChatRetrieveMs"], 2.75);
        assert_eq!(v["ChatTotalMs"], 4.25);
    }

    #[tokio::test]
    async fn the_layer_hands_the_clock_to_the_handler_and_finishes_when_the_body_ends() {
        use tower::ServiceExt;
        let seen: Arc<Mutex<Option<StageClock>>> = Arc::default();
        let keep = seen.clone();
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::post(
                    move |axum::Extension(clock): axum::Extension<StageClock>| async move {
                        clock.mark(Stage::Auth);
                        *keep.lock().unwrap() = Some(clock);
                        "answer"
                    },
                ),
            )
            .layer(axum::middleware::from_fn(layer));
        let response = app
            .oneshot(Request::post("/").body(Body::from("question")).unwrap())
            .await
            .unwrap();
        // The size is still known, so the server still sends Content-Length, not chunks.
        assert_eq!(http_body::Body::size_hint(response.body()).exact(), Some(6));
        let clock = seen.lock().unwrap().clone().unwrap();
        assert!(clock.timings().get(Stage::Auth).is_some());
        assert_eq!(clock.timings().get(Stage::Flushed), None, "not written yet");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"answer");
        let t = clock.timings();
        assert!(t.get(Stage::Flushed).is_some(), "finished with the body");
        let sum: Duration = Stage::ALL.iter().filter_map(|s| t.get(*s)).sum();
        assert_eq!(sum, t.total);
    }
}
