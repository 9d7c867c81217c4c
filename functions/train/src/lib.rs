//! Training requests: `POST /api/train/url` queues a job (202), `GET /api/train/jobs/{job_id}` reports it.
//!
//! Everything that can be refused is refused here, before queueing: a malformed URL, a URL the SSRF guard
//! refuses (400 with the reason), another tenant's site (404), a site already training (409 with the
//! running job's id). The job is written first, then the message sent; if the queue refuses the message
//! the job is ended and the site freed, so nothing waits forever.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use shared::Platform;
use shared::http::{ApiError, ApiJson, TenantAuth};
use shared::ids::{JobId, SiteId};
use shared::training::jobs::{self, JobError, JobMessage, JobRequest};
use shared::{sites, tenants};

/// Depth followed from the start URL when the request names none, and the most it may name.
pub const DEFAULT_MAX_DEPTH: u32 = 3;
pub const MAX_DEPTH: u32 = 10;

pub fn routes(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/api/train/url", post(train_url))
        .route("/api/train/jobs/{job_id}", get(read_job))
        .with_state(platform)
}

pub fn app(platform: Arc<Platform>) -> Router {
    shared::http::finish(routes(platform))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainBody {
    site_id: String,
    url: String,
    #[serde(default)]
    force_retrain: bool,
    max_pages: Option<u32>,
    max_depth: Option<u32>,
}

fn job_error(e: JobError) -> ApiError {
    match e {
        JobError::AlreadyTraining(job) => ApiError::Conflict {
            message: format!("the site is already training (job {job})"),
            details: Some(json!({ "job_id": job })),
        },
        JobError::NotFound => ApiError::NotFound("training job not found".into()),
        JobError::Store(e) => e.into(),
    }
}

async fn train_url(
    State(p): State<Arc<Platform>>,
    TenantAuth(tenant): TenantAuth,
    ApiJson(body): ApiJson<TrainBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let site_id =
        SiteId::parse(&body.site_id).map_err(|_| ApiError::NotFound("site not found".into()))?;
    let url = jobs::parse_start_url(&body.url).map_err(|e| ApiError::invalid("url", e))?;
    if body.max_pages == Some(0) {
        return Err(ApiError::invalid("max_pages", "must be at least 1"));
    }
    let max_depth = body.max_depth.unwrap_or(DEFAULT_MAX_DEPTH);
    if max_depth > MAX_DEPTH {
        return Err(ApiError::invalid(
            "max_depth",
            format!("must be at most {MAX_DEPTH}"),
        ));
    }
    let store = p.store.as_ref();
    let site = sites::get_site(store, &tenant, &site_id).await?;
    let owner = tenants::get_tenant(store, &tenant).await?;
    owner.standing(p.clock.now(), p.config.billing.past_due_grace)?;
    jobs::check_fetchable(&url, p.config.fetch_allow_loopback)
        .await
        .map_err(|refusal| {
            ApiError::invalid("url", format!("this URL cannot be fetched: {refusal}"))
        })?;
    let plan = owner.plan;
    let plan_pages = plan.limits().training_pages;
    let request = JobRequest {
        url: url.to_string(),
        force_retrain: body.force_retrain,
        // Capped by the plan: asking for more is not an error, it gets the plan's maximum.
        max_pages: body.max_pages.unwrap_or(plan_pages).min(plan_pages),
        max_depth,
    };
    let job = jobs::create_job(
        store,
        p.ids.as_ref(),
        p.clock.as_ref(),
        &tenant,
        &site.site_id,
        request,
    )
    .await
    .map_err(job_error)?;
    let message = JobMessage {
        job_id: job.job_id.clone(),
        site_id: site.site_id.clone(),
    };
    let body = serde_json::to_string(&message).map_err(|e| ApiError::Internal(e.into()))?;
    if let Err(e) = p.train_queue.send(&body).await {
        tracing::error!(job_id = %job.job_id, error = %e, "queueing the training job failed");
        if let Err(e) = jobs::abandon(
            store,
            p.clock.as_ref(),
            &job,
            "the training queue refused the job",
        )
        .await
        {
            tracing::error!(job_id = %job.job_id, error = %e, "ending the unqueued job failed");
        }
        return Err(ApiError::Unavailable(
            "the training queue is unavailable; try again".into(),
        ));
    }
    tracing::info!(job_id = %job.job_id, site_id = %site.site_id, max_pages = job.request.max_pages, "training queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({ "job_id": job.job_id, "status": job.status, "max_pages": job.request.max_pages }),
        ),
    ))
}

async fn read_job(
    State(p): State<Arc<Platform>>,
    TenantAuth(tenant): TenantAuth,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job =
        JobId::parse(&raw).map_err(|_| ApiError::NotFound("training job not found".into()))?;
    let job = jobs::get_job(p.store.as_ref(), &tenant, &job)
        .await
        .map_err(job_error)?;
    Ok(Json(job.to_api()))
}
