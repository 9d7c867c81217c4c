//! Training requests: `POST /api/train/url` queues a job (202), `GET /api/train/jobs/{job_id}` reports it.
//!
//! Everything that can be refused is refused before queueing (`shared::training::submit`): a malformed URL, a URL the SSRF guard
//! refuses (400 saying only that it cannot be fetched: the reason is logged, never answered), another
//! tenant's site (404), a lapsed subscription (402), a site already training (409 with the running job's
//! id), a tenant at its plan's concurrent-job limit (409). The job is written first, then the message
//! sent; if the queue refuses the message the job is ended and the site freed, so nothing waits forever.

/// The secret variables this function's code reads (it validates, records and queues jobs: no secret); shared::secrets fetches exactly
/// these at start-up, and tests/deploy_template.rs checks the templates grant exactly these.
pub const SECRETS: &[&str] = &[];

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use shared::Platform;
use shared::crawl::ScopeMode;
use shared::http::openapi::{ErrorBody, SecuritySchemes};
use shared::http::{ApiError, ApiJson, TenantAuth};
use shared::ids::{JobId, SiteId};
use shared::training::jobs::{self, JobStatus, TrainingJobView};
use shared::training::submit::{self, TrainRequest};

/// The most `max_depth` a request may name. Without one, the depth is the job's `max_pages`: a chain
/// of N pages (prev/next links on a site whose menu is built by JavaScript) needs depth N-1, so with
/// that default every page within the budget is reachable and `max_pages` is the real limit. The
/// crawl is breadth-first, so a deep default costs nothing on ordinary sites.
pub const MAX_DEPTH: u32 = 10_000;

pub fn routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/train/url", post(train_url))
        .route("/api/train/jobs/{job_id}", get(read_job))
        .with_state(platform)
}

/// This function's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(train_url, read_job),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

pub fn app(platform: Arc<Platform>) -> Router {
    shared::http::finish_logged(routes(platform.clone()), platform)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TrainBody {
    /// The site to train (`site_…`).
    site_id: String,
    /// Where the crawl starts (http or https).
    url: String,
    /// Re-embed every page, changed or not.
    #[serde(default)]
    force_retrain: bool,
    /// Pages to crawl at most (capped by the plan).
    max_pages: Option<u32>,
    /// Links to follow from the start URL (default: `max_pages`, so the page budget is the limit; at
    /// most 10,000).
    max_depth: Option<u32>,
    /// `prefix` (default): the start URL's section; `host`: the whole host and allowed domains.
    scope: Option<String>,
}

/// A queued job.
#[derive(Serialize, ToSchema)]
struct JobQueued {
    job_id: JobId,
    status: JobStatus,
    /// The pages the job may crawl, after the plan's cap.
    max_pages: u32,
    /// The depth the crawl follows links to.
    max_depth: u32,
    scope: ScopeMode,
}

#[utoipa::path(
    post,
    path = "/api/train/url",
    tag = "training",
    security(("tenant_key" = [])),
    request_body = TrainBody,
    responses(
        (status = 202, description = "Queued; poll the job", body = JobQueued, links(
            ("job" = (operation_id = "read_job", parameters(("job_id" = "$response.body#/job_id"))))
        )),
        (status = 400, description = "A malformed URL, or one that cannot be fetched", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 409, description = "The site is already training (`details.job_id`)", body = ErrorBody),
        (status = 503, description = "The training queue is unavailable; retry", body = ErrorBody)
    )
)]
async fn train_url(
    State(p): State<Arc<Platform>>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(body): ApiJson<TrainBody>,
) -> Result<(StatusCode, Json<JobQueued>), ApiError> {
    let site_id =
        SiteId::parse(&body.site_id).map_err(|_| ApiError::NotFound("site not found".into()))?;
    let url = jobs::parse_start_url(&body.url).map_err(|e| ApiError::invalid("url", e))?;
    if body.max_pages == Some(0) {
        return Err(ApiError::invalid("max_pages", "must be at least 1"));
    }
    if body.max_depth.is_some_and(|d| d > MAX_DEPTH) {
        return Err(ApiError::invalid(
            "max_depth",
            format!("must be at most {MAX_DEPTH}"),
        ));
    }
    let scope = match body.scope.as_deref() {
        None | Some("prefix") => ScopeMode::Prefix,
        Some("host") => ScopeMode::Host,
        Some(other) => {
            return Err(ApiError::invalid(
                "scope",
                format!("{other:?} is not a scope; use \"prefix\" or \"host\""),
            ));
        }
    };
    let request = TrainRequest {
        site_id,
        url,
        force_retrain: body.force_retrain,
        max_pages: body.max_pages,
        max_depth: body.max_depth,
        scope,
    };
    let job = submit::submit(&p, &tenant, request).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(JobQueued {
            job_id: job.job_id,
            status: job.status,
            max_pages: job.request.max_pages,
            max_depth: job.request.max_depth,
            scope: job.request.scope,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/train/jobs/{job_id}",
    tag = "training",
    security(("tenant_key" = [])),
    params(("job_id" = String, Path, description = "The job (`job_…`)")),
    responses(
        (status = 200, description = "The job, its counters live while it runs", body = TrainingJobView),
        (status = 404, description = "No such job", body = ErrorBody)
    )
)]
async fn read_job(
    State(p): State<Arc<Platform>>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
) -> Result<Json<TrainingJobView>, ApiError> {
    let job =
        JobId::parse(&raw).map_err(|_| ApiError::NotFound("training job not found".into()))?;
    let job = jobs::get_job(p.store.as_ref(), &tenant, &job).await?;
    Ok(Json(job.to_api()))
}
