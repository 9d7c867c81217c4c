//! `POST /api/admin/cron/run {date?}`: the operator runs the deadline job now — today's run early, or
//! a missed day (with every day missed before it). The job is the same code the `deadline-cron`
//! function runs on its schedule; each item is acted on once per day, so a second run for the same
//! date does nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::ToSchema;

use shared::deadlines::{DeadlineJob, RunReport};
use shared::http::{AdminAuth, ApiError};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/admin/cron/run", post(run_deadlines))
}

/// Which day to run for; the body may be empty (today).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CronRun {
    /// `YYYY-MM-DD`, not after today (UTC); default today.
    #[serde(default)]
    date: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/admin/cron/run",
    tag = "admin",
    security(("admin_key" = [])),
    request_body(content = Option<CronRun>, description = "`{}` or no body: today"),
    responses(
        (status = 200, description = "What the run did: counts per action, and the items that failed (retried by the next run)", body = RunReport),
        (status = 400, description = "A malformed date, or one in the future", body = shared::http::openapi::ErrorBody)
    )
)]
pub(crate) async fn run_deadlines(
    State(p): State<AppState>,
    _admin: AdminAuth,
    body: Bytes,
) -> Result<Json<RunReport>, ApiError> {
    let request: CronRun = if body.iter().all(u8::is_ascii_whitespace) {
        CronRun::default()
    } else {
        shared::http::parse_json(&body)?
    };
    let job = DeadlineJob::new(p.clone());
    let date = job.date_of(request.date.as_deref())?;
    tracing::info!(date = %date, "deadline job run on demand");
    Ok(Json(job.run(date).await?))
}
