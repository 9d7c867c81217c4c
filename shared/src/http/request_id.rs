//! A request id on every request, every log line and every error body.
//!
//! Taken from `x-request-id` when a well-formed one arrives, else from API Gateway's request context,
//! else generated. Held in a task-local so error bodies can carry it without threading it through.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Whether this process has served a request yet: the first one is a Lambda cold start.
static WARM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The X-Ray trace id of the Lambda invocation serving `request` (Lambda hands it to the runtime with
/// each event; `Tracing: Active` in the template).
fn xray_trace_id(request: &Request) -> Option<String> {
    use lambda_http::RequestExt;
    request
        .lambda_context_ref()
        .and_then(|c| c.xray_trace_id.clone())
        .filter(|id| !id.is_empty())
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `work` as part of request `id` (work that outlives the handler, such as the tail of a streamed
/// response, so its logs and error bodies still carry the id).
pub async fn in_request<F: std::future::Future>(id: Option<String>, work: F) -> F::Output {
    match id {
        Some(id) => REQUEST_ID.scope(id, work).await,
        None => work.await,
    }
}

/// `work`, bound to the current request's context: its tracing span and its request id. For work that
/// runs after the handler has returned (the tail of a streamed response), so its log lines and error
/// bodies still name the request.
pub fn within_request<F: std::future::Future>(
    work: F,
) -> impl std::future::Future<Output = F::Output> {
    let id = current_request_id();
    in_request(id, work).instrument(tracing::Span::current())
}

/// Spawns `work` on its own task within the current request's context (span and request id): a plain
/// `tokio::spawn` starts the task with neither, so its logs and errors would lose the request.
pub fn spawn_in_request<F>(work: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(within_request(work))
}

fn well_formed(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn request_id_of(request: &Request) -> String {
    if let Some(id) = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        && well_formed(id)
    {
        return id.to_string();
    }
    use lambda_http::RequestExt;
    if let Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) =
        request.request_context_ref()
        && let Some(id) = ctx.request_id.as_deref().filter(|id| well_formed(id))
    {
        return id.to_string();
    }
    uuid::Uuid::now_v7().to_string()
}

/// Middleware: assigns the id, opens the request's tracing span, echoes the id in the response.
pub async fn request_context(request: Request, next: Next) -> Response {
    let id = request_id_of(&request);
    let cold_start = !WARM.swap(true, std::sync::atomic::Ordering::Relaxed);
    // Every line of the request carries its id, whether it started the process, and its trace.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        tenant_id = tracing::field::Empty,
        cold_start,
        xray_trace_id = tracing::field::Empty,
    );
    if let Some(trace) = xray_trace_id(&request) {
        span.record("xray_trace_id", tracing::field::display(trace));
    }
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), async move {
            let response = next.run(request).await;
            tracing::info!(
                status = response.status().as_u16(),
                latency_ms = started.elapsed().as_millis() as u64,
                "request served"
            );
            response
        })
        .instrument(span)
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawned_work_keeps_the_request_id_and_span() {
        // A registry assigns span ids, so "the same span" can be checked; the test runtime runs the
        // spawned task on this thread, where the subscriber is the default.
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry());
        let span = tracing::info_span!("request", request_id = "req-7");
        let seen = REQUEST_ID
            .scope("req-7".to_string(), async {
                let inside = spawn_in_request(async {
                    (current_request_id(), tracing::Span::current().id())
                });
                let outside =
                    tokio::spawn(async { (current_request_id(), tracing::Span::current().id()) });
                (inside.await.unwrap(), outside.await.unwrap())
            })
            .instrument(span.clone())
            .await;
        assert_eq!(seen.0, (Some("req-7".to_string()), span.id()));
        // What a plain spawn loses, and the helper keeps.
        assert_eq!(seen.1, (None, None));
    }
}
