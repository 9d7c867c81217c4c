//! The chat function: `POST /api/chat` (tenant key), `POST /api/embed/chat` and `POST /api/embed/feedback`
//! (the public widget, checked against the site's allowed origins), JSON or Server-Sent Events.
//!
//! SSE: `event: delta` with `{"text": …}` as the answer is generated, then one `event: done` carrying the
//! full answer object (or `event: error` with the contract's error object). Errors found before the
//! first token (auth, origin, quota, rate limit) are plain HTTP errors, so clients can act on the status.

/// The secret variables this function's code reads (answers and query embeddings call the model API); shared::secrets fetches exactly
/// these at start-up, and tests/deploy_template.rs checks the templates grant exactly these.
pub const SECRETS: &[&str] = &["OPENAI_API_KEY"];

pub mod execute;

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRef, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use utoipa::{OpenApi, ToSchema};

use shared::Platform;
use shared::chat::feedback::{self, VisitorFeedback};
use shared::chat::logs::Rating;
use shared::chat::sessions::SessionId;
use shared::chat::timings::{self, Stage, StageClock};
use shared::chat::{
    Answer, Caller, ChatError, ChatMessage, ChatService, Question, RequestMeta, origin_allowed,
};
use shared::http::openapi::{ErrorBody, SecuritySchemes};
use shared::http::{ApiError, ApiJson, TenantAuth, current_request_id, parse_json};
use shared::ids::{MessageId, SiteId};

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<ChatService>,
    pub platform: Arc<Platform>,
}

impl FromRef<AppState> for Arc<Platform> {
    fn from_ref(state: &AppState) -> Self {
        state.platform.clone()
    }
}

/// The routes, without the shared edge layers.
pub fn routes(platform: Arc<Platform>) -> anyhow::Result<Router> {
    let http = shared::http::sockets::client_builder().build()?;
    let service = Arc::new(ChatService::new(platform.clone(), http.clone())?);
    let execute = execute::routes(platform.clone(), http)?;
    Ok(Router::new()
        // Answers carry their stage timings (shared::chat::timings).
        .route(
            "/api/chat",
            post(tenant_chat).layer(axum::middleware::from_fn(timings::layer)),
        )
        .route(
            "/api/embed/chat",
            post(embed_chat)
                .layer(axum::middleware::from_fn(timings::layer))
                .options(embed_chat_preflight),
        )
        .route(
            "/api/embed/feedback",
            post(embed_feedback).options(embed_feedback_preflight),
        )
        .with_state(AppState { service, platform })
        .merge(execute))
}

/// This function's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(tenant_chat, embed_chat, embed_chat_preflight, embed_feedback, embed_feedback_preflight, execute::execute),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// The function as deployed.
pub fn app(platform: Arc<Platform>) -> anyhow::Result<Router> {
    Ok(shared::http::finish_logged(
        routes(platform.clone())?,
        platform,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChatBody {
    /// The site whose index answers (`site_…`).
    site_id: String,
    message: String,
    /// Continues a conversation (`sess_…`, from an earlier answer).
    session_id: Option<String>,
    /// A model the plan allows; the plan's default when absent.
    model: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EmbedChatBody {
    site_id: String,
    message: String,
    session_id: Option<String>,
}

/// Feedback recorded.
#[derive(Serialize, ToSchema)]
struct FeedbackRecorded {
    status: FeedbackStatus,
    message_id: MessageId,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum FeedbackStatus {
    Recorded,
}

fn parse_site(raw: &str) -> Result<SiteId, ApiError> {
    let site = SiteId::parse(raw).map_err(|_| ApiError::NotFound("site not found".into()))?;
    // The body names the site: the error log files this request's failure under it (and its tenant).
    shared::errorlog::attribute_site(&site);
    Ok(site)
}

fn parse_session(raw: Option<&str>) -> Result<Option<SessionId>, ApiError> {
    raw.map(|s| SessionId::parse(s).map_err(|e| ApiError::invalid("session_id", e)))
        .transpose()
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .any(|t| t.trim().starts_with("text/event-stream"))
        })
}

fn meta(headers: &HeaderMap, clock: Option<&StageClock>) -> RequestMeta {
    // The clock the timings layer started; `auth` ends here (body parsed, caller checked).
    let timings = clock.cloned().unwrap_or_default();
    timings.mark(Stage::Auth);
    RequestMeta {
        timings,
        request_id: current_request_id(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(300).collect()),
    }
}

#[utoipa::path(
    post,
    path = "/api/chat",
    tag = "chat",
    security(("tenant_key" = [])),
    request_body = ChatBody,
    responses(
        (status = 200, description = "The answer as JSON, or with `Accept: text/event-stream` as Server-Sent Events: `delta` events `{\"text\"}`, then one `done` (the answer object) or `error` (the error object)", content(
            (Answer = "application/json"),
            (String = "text/event-stream")
        )),
        (status = 402, description = "Quota exhausted or subscription lapsed", body = ErrorBody),
        (status = 403, description = "The model is not allowed on the plan, or the site cannot chat", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 409, description = "The site has not been trained", body = ErrorBody),
        (status = 413, description = "The message is too long", body = ErrorBody),
        (status = 429, description = "Rate limited (`Retry-After`)", body = ErrorBody),
        (status = 503, description = "The chat model failed; retry", body = ErrorBody)
    )
)]
async fn tenant_chat(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    headers: HeaderMap,
    clock: Option<Extension<StageClock>>,
    ApiJson(body): ApiJson<ChatBody>,
) -> Result<Response, ApiError> {
    let site_id = parse_site(&body.site_id)?;
    let session_id = parse_session(body.session_id.as_deref())?;
    let question = Question {
        site_id,
        message: ChatMessage::parse(&body.message)?,
        session_id,
        model: body.model,
    };
    respond(
        state.service,
        Caller::Tenant(tenant),
        question,
        meta(&headers, clock.as_ref().map(|c| &c.0)),
        wants_stream(&headers),
    )
    .await
}

/// The widget's request: the body may come as `text/plain` (a CORS "simple request", no preflight).
struct EmbedRequest {
    parts: Parts,
    body: axum::body::Bytes,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for EmbedRequest {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 16 * 1024)
            .await
            .map_err(|_| ApiError::TooLarge("the body is larger than 16384 bytes".into()))?;
        Ok(Self { parts, body })
    }
}

#[utoipa::path(
    post,
    path = "/api/embed/chat",
    tag = "widget",
    request_body(content = EmbedChatBody, description = "JSON; also accepted as `text/plain` (a CORS simple request)"),
    responses(
        (status = 200, description = "As `POST /api/chat`: JSON, or Server-Sent Events with `Accept: text/event-stream`", content(
            (Answer = "application/json"),
            (String = "text/event-stream")
        )),
        (status = 402, description = "The tenant's quota is exhausted", body = ErrorBody),
        (status = 403, description = "This origin may not use the site's assistant", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 409, description = "The site has not been trained", body = ErrorBody),
        (status = 413, description = "The message is too long", body = ErrorBody),
        (status = 429, description = "Rate limited (`Retry-After`)", body = ErrorBody),
        (status = 503, description = "The chat model failed; retry", body = ErrorBody)
    )
)]
async fn embed_chat(
    State(state): State<AppState>,
    request: EmbedRequest,
) -> Result<Response, ApiError> {
    let body: EmbedChatBody = parse_json(&request.body)?;
    let site_id = parse_site(&body.site_id)?;
    let origin = shared::http::origin(&request.parts);
    let caller = Caller::Visitor {
        origin: origin.clone(),
        ip: shared::http::client_ip(&request.parts),
    };
    let session_id = parse_session(body.session_id.as_deref())?;
    let headers = &request.parts.headers;
    // A refused message is answered like every other refusal of the widget: readable by the page.
    let response = match ChatMessage::parse(&body.message) {
        Ok(message) => {
            let question = Question {
                site_id,
                message,
                session_id,
                model: None,
            };
            respond(
                state.service,
                caller,
                question,
                meta(headers, request.parts.extensions.get::<StageClock>()),
                wants_stream(headers),
            )
            .await
        }
        Err(e) => Err(e.into()),
    };
    Ok(with_cors(response.into_response(), origin.as_deref()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    site_id: String,
    session_id: String,
    message_id: String,
    rating: Rating,
    comment: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/embed/feedback",
    tag = "widget",
    request_body(content = FeedbackBody, description = "JSON; also accepted as `text/plain` (a CORS simple request)"),
    responses(
        (status = 200, description = "Recorded", body = FeedbackRecorded),
        (status = 403, description = "This origin may not use the site's assistant", body = ErrorBody),
        (status = 404, description = "No such site, or no such message in the session", body = ErrorBody)
    )
)]
async fn embed_feedback(State(state): State<AppState>, request: EmbedRequest) -> Response {
    let origin = shared::http::origin(&request.parts);
    let result = async {
        let body: FeedbackBody = parse_json(&request.body)?;
        let feedback = VisitorFeedback {
            site_id: parse_site(&body.site_id)?,
            session_id: body.session_id,
            message_id: body.message_id,
            rating: body.rating,
            comment: body.comment,
        };
        let platform = &state.platform;
        let message = feedback::record_and_tell(platform, origin.as_deref(), feedback).await?;
        Ok::<_, ApiError>(Json(FeedbackRecorded {
            status: FeedbackStatus::Recorded,
            message_id: message,
        }))
    }
    .await;
    with_cors(result.into_response(), origin.as_deref())
}

#[utoipa::path(
    options,
    path = "/api/embed/chat",
    tag = "widget",
    params(("site_id" = Option<String>, Query, description = "The site (a preflight has no body)")),
    responses(
        (status = 204, description = "The origin is allowed: CORS headers for POST"),
        (status = 403, description = "The origin is not allowed", body = ErrorBody)
    )
)]
async fn embed_chat_preflight(
    state: State<AppState>,
    query: Query<PreflightQuery>,
    parts: Parts,
) -> Response {
    preflight(state, query, parts).await
}

#[utoipa::path(
    options,
    path = "/api/embed/feedback",
    tag = "widget",
    params(("site_id" = Option<String>, Query, description = "The site (a preflight has no body)")),
    responses(
        (status = 204, description = "The origin is allowed: CORS headers for POST"),
        (status = 403, description = "The origin is not allowed", body = ErrorBody)
    )
)]
async fn embed_feedback_preflight(
    state: State<AppState>,
    query: Query<PreflightQuery>,
    parts: Parts,
) -> Response {
    preflight(state, query, parts).await
}

#[derive(Deserialize)]
struct PreflightQuery {
    site_id: Option<String>,
}

/// CORS preflight: answered only for an origin the site allows (the site comes from `?site_id=`, since a
/// preflight carries no body).
async fn preflight(
    State(state): State<AppState>,
    Query(q): Query<PreflightQuery>,
    parts: Parts,
) -> Response {
    let origin = shared::http::origin(&parts);
    let allowed = match q.site_id.as_deref().map(SiteId::parse) {
        Some(Ok(site_id)) => {
            match shared::sites::find_site(state.platform.store.as_ref(), &site_id).await {
                Ok(Some(site)) => site.is_embed_enabled && origin_allowed(&site, origin.as_deref()),
                _ => false,
            }
        }
        _ => false,
    };
    match (allowed, origin) {
        (true, Some(origin)) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let h = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&origin) {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            }
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                // The widget signs its streamed requests' bodies for CloudFront (x-amz-content-sha256).
                HeaderValue::from_static("content-type, accept, x-amz-content-sha256"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
            response
        }
        _ => ApiError::Forbidden("this origin is not allowed".into()).into_response(),
    }
}

/// Lets the page read the response, refusals included: the widget must be able to tell "not allowed
/// here" (403) from a network failure. Nothing is served to a refused origin but the error itself; the
/// origin check happens on the server, not in the browser. Preflights stay strict (see `preflight`).
fn with_cors(mut response: Response, origin: Option<&str>) -> Response {
    let h = response.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(v) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after, x-request-id"),
        );
    }
    response
}

/// Answers as JSON, or streams it as SSE once the first text arrives. The settle (usage log, counters,
/// session, credits: one store transaction) runs before a JSON response, so what a client reads next
/// (its session, usage, balance, the message it rates) already includes the answer; a stream settles
/// after its final event has been handed to the server, and ends once the settle is written.
async fn respond(
    service: Arc<ChatService>,
    caller: Caller,
    question: Question,
    meta: RequestMeta,
    stream: bool,
) -> Result<Response, ApiError> {
    if !stream {
        let answer = service.answer(caller, question, meta, None).await?;
        return Ok(Json(answer).into_response());
    }
    let clock = meta.timings.clone();
    let (tx, mut rx) = mpsc::channel::<String>(64);
    let (done_tx, done_rx) = oneshot::channel();
    // The answer runs on its own task: if the client disconnects, the stream (and `rx`) is dropped, the
    // task sees its sends fail, stops the model and still settles what was generated. Otherwise it
    // settles once the stream has handed the final event to the server (`delivered`).
    let task = shared::http::spawn_in_request(async move {
        let (result, settlement) = service
            .answer_deferred(caller, question, meta, Some(tx))
            .await;
        let (delivered_tx, delivered_rx) = oneshot::channel::<()>();
        let (settled_tx, settled_rx) = oneshot::channel::<()>();
        let _ = done_tx.send(Finished {
            result,
            delivered: delivered_tx,
            settled: settled_rx,
        });
        // Delivered, or the stream is gone (client away): settle either way.
        let _ = delivered_rx.await;
        if let Some(settlement) = settlement {
            settlement.run().await;
        }
        let _ = settled_tx.send(());
    });
    let first = rx.recv().await;
    let Some(first) = first else {
        // No text at all: either an error before generation (a plain HTTP error) or an empty answer.
        let finished = done_rx.await;
        return match finished {
            Ok(Finished {
                result: Ok(answer),
                delivered,
                settled,
            }) => Ok(sse(futures::stream::once(
                async move { done_event(&answer) },
            )
            .chain(settle_after(clock, delivered, settled))
            .boxed())),
            Ok(Finished {
                result: Err(e),
                delivered,
                settled,
            }) => {
                let _ = delivered.send(());
                let _ = settled.await;
                Err(e.into())
            }
            Err(_) => Err(ApiError::Internal(anyhow::anyhow!(
                "chat task failed: {:?}",
                task.await.err()
            ))),
        };
    };
    let deltas = futures::stream::once(async move { first })
        .chain(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|d| (d, rx))
        }))
        .map(|text| {
            Ok::<_, Infallible>(
                Event::default()
                    .event("delta")
                    .data(json!({ "text": text }).to_string()),
            )
        });
    // The stream outlives the handler: the request goes with it into the error event and the logs.
    let tail = futures::stream::once(shared::http::within_request(last_event(done_rx, task)))
        .flat_map(move |(event, finished)| {
            let settle = match finished {
                Some((delivered, settled)) => {
                    settle_after(clock.clone(), delivered, settled).boxed()
                }
                None => futures::stream::empty().boxed(),
            };
            futures::stream::once(async move { event }).chain(settle)
        });
    Ok(sse(deltas.chain(tail).boxed()))
}

/// What the answering task hands the stream: the answer, and the signals around its settlement.
struct Finished {
    result: Result<Answer, ChatError>,
    /// Sent (or dropped) once the final event has been handed to the server.
    delivered: oneshot::Sender<()>,
    /// Resolves once the settlement has been written.
    settled: oneshot::Receiver<()>,
}

/// After the final event: marks it handed over, lets the task settle, and ends the stream only once
/// the settlement is written (in Lambda response streaming the invocation lasts as long as the
/// stream, so the settle is never cut off by a frozen sandbox; the client already has its answer).
fn settle_after(
    clock: StageClock,
    delivered: oneshot::Sender<()>,
    settled: oneshot::Receiver<()>,
) -> impl futures::Stream<Item = Result<Event, Infallible>> + Send + 'static {
    futures::stream::once(async move {
        clock.mark(Stage::Flushed);
        let _ = delivered.send(());
        let _ = settled.await;
    })
    .filter_map(|()| async { None })
}

/// The stream's last event (the whole answer, or the error in the contract's shape) and, when the
/// task finished, its settlement signals.
async fn last_event(
    done: oneshot::Receiver<Finished>,
    task: JoinHandle<()>,
) -> (
    Result<Event, Infallible>,
    Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>,
) {
    match done.await {
        Ok(Finished {
            result,
            delivered,
            settled,
        }) => {
            let event = match result {
                Ok(answer) => done_event(&answer),
                Err(e) => error_event(e.into()),
            };
            (event, Some((delivered, settled)))
        }
        Err(_) => {
            let why = match task.await {
                Err(e) => anyhow::Error::new(e).context("the chat task failed"),
                Ok(()) => anyhow::anyhow!("the chat task ended without an answer"),
            };
            (error_event(ApiError::Internal(why)), None)
        }
    }
}

fn done_event(answer: &Answer) -> Result<Event, Infallible> {
    Ok(Event::default()
        .event("done")
        .data(serde_json::to_string(answer).unwrap_or_else(|_| "{}".into())))
}

fn error_event(e: ApiError) -> Result<Event, Infallible> {
    Ok(Event::default().event("error").data(e.body().to_string()))
}

fn sse(stream: futures::stream::BoxStream<'static, Result<Event, Infallible>>) -> Response {
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    // Proxies must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream's tail runs after the handler returned, outside the request's scope: the error event
    /// must still carry the request id (the widget shows it, support looks it up).
    #[tokio::test]
    async fn a_streamed_error_event_carries_the_request_id() {
        let response = shared::http::in_request(Some("req-stream-1".into()), async {
            let (done_tx, done_rx) = oneshot::channel();
            let task = shared::http::spawn_in_request(async move {
                // The answer's own log lines and errors run inside the request too.
                assert_eq!(current_request_id().as_deref(), Some("req-stream-1"));
                let (delivered, _) = oneshot::channel();
                let (_, settled) = oneshot::channel();
                let _ = done_tx.send(Finished {
                    result: Err(ChatError::NotTrained),
                    delivered,
                    settled,
                });
            });
            let deltas = futures::stream::once(async {
                Ok::<_, Infallible>(Event::default().event("delta").data("{}"))
            });
            let last =
                futures::stream::once(shared::http::within_request(last_event(done_rx, task)))
                    .map(|(event, _)| event);
            sse(deltas.chain(last).boxed())
        })
        .await;
        // Polled here, outside the scope, as the server polls a streamed body.
        assert_eq!(current_request_id(), None);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let error = text
            .split("\n\n")
            .find(|event| event.contains("event: error"))
            .and_then(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
            .unwrap_or_else(|| panic!("no error event in {text:?}"));
        let error: serde_json::Value = serde_json::from_str(error).unwrap();
        assert_eq!(error["error"]["code"], "not_ready");
        assert_eq!(error["error"]["request_id"], "req-stream-1");
    }
}
