//! `POST /api/ai/execute`: one metered model call (`shared::execute`), for managers and owners (the
//! role rule: a change outside billing and credits needs a manager).

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use shared::Platform;
use shared::credits::Credits;
use shared::execute::{ExecuteBody, ExecuteService, Execution};
use shared::http::openapi::ErrorBody;
use shared::http::{ApiError, ApiJson, TenantAuth, current_request_id};

#[derive(Clone)]
pub struct ExecuteState {
    service: Arc<ExecuteService>,
    platform: Arc<Platform>,
}

impl FromRef<ExecuteState> for Arc<Platform> {
    fn from_ref(state: &ExecuteState) -> Self {
        state.platform.clone()
    }
}

/// The route, with its own service (the model client it calls through, the meter).
pub fn routes(platform: Arc<Platform>, http: reqwest::Client) -> anyhow::Result<Router> {
    let service = Arc::new(ExecuteService::new(platform.clone(), http)?);
    Ok(Router::new()
        .route("/api/ai/execute", post(execute))
        .with_state(ExecuteState { service, platform }))
}

/// The call: its id and how long it took.
#[derive(Serialize, ToSchema)]
pub struct ExecutionView {
    execution_id: String,
    /// From the request's arrival to the settled result, in milliseconds.
    execution_ms: u64,
    /// The model that answered.
    model: String,
}

/// What the model produced.
#[derive(Serialize, ToSchema)]
pub struct ResultView {
    output: String,
    input_tokens: u64,
    output_tokens: u64,
}

/// What the call cost.
#[derive(Serialize, ToSchema)]
pub struct CreditsView {
    /// Credits charged for this call.
    used: Credits,
    /// The balance (granted + paid) once it was charged.
    remaining: Credits,
}

#[derive(Serialize, ToSchema)]
pub struct ExecuteResponse {
    execution: ExecutionView,
    result: ResultView,
    credits: CreditsView,
}

#[utoipa::path(
    post,
    path = "/api/ai/execute",
    tag = "ai",
    security(("tenant_key" = [])),
    request_body = ExecuteBody,
    responses(
        (status = 200, description = "The model's output and what it cost", body = ExecuteResponse),
        (status = 400, description = "A field out of range (named in `field`), or a model the price book does not know", body = ErrorBody),
        (status = 402, description = "Credits exhausted (`credits_exhausted`) or the subscription lapsed", body = ErrorBody),
        (status = 403, description = "The model is not allowed on the plan, no chat model is configured on the deployment, the key's role is a viewer, or AI actions are suspended (`suspicious_activity`)", body = ErrorBody),
        (status = 429, description = "Too many executions this hour (`Retry-After`)", body = ErrorBody),
        (status = 503, description = "The model failed (nothing charged for what it did not produce)", body = ErrorBody)
    )
)]
pub async fn execute(
    State(state): State<ExecuteState>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(body): ApiJson<ExecuteBody>,
) -> Result<Json<ExecuteResponse>, ApiError> {
    let execution = Execution::parse(body)?;
    let done = state
        .service
        .execute(&tenant, execution, current_request_id())
        .await?;
    Ok(Json(ExecuteResponse {
        execution: ExecutionView {
            execution_id: done.execution_id,
            execution_ms: done.execution_ms,
            model: done.model,
        },
        result: ResultView {
            output: done.output,
            input_tokens: done.input_tokens,
            output_tokens: done.output_tokens,
        },
        credits: CreditsView {
            used: done.credits_used,
            remaining: done.credits_remaining,
        },
    }))
}
