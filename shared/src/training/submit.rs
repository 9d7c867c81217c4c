//! Submitting a training job: everything that can be refused is refused before queueing (another
//! tenant's site, a lapsed subscription, a URL the SSRF guard refuses, a site already training, the
//! plan's concurrent-job limit). The job is written first, then the message sent; if the queue refuses
//! the message the job is ended and the site freed, so nothing waits forever.

use url::Url;

use super::jobs::{self, JobError, JobMessage, JobRequest, TrainingJob};
use crate::Platform;
use crate::crawl::ScopeMode;
use crate::ids::{SiteId, TenantId};
use crate::queue::QueueError;
use crate::sites::{self, SiteError};
use crate::tenants::{self, Inactive, TenantError};

/// A training request as the API takes it, parsed.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub site_id: SiteId,
    pub url: Url,
    pub force_retrain: bool,
    /// Capped by the plan; `None` is the plan's maximum.
    pub max_pages: Option<u32>,
    /// `None` is the job's `max_pages` (a chain of N pages needs depth N-1).
    pub max_depth: Option<u32>,
    pub scope: ScopeMode,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Site(#[from] SiteError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error("the subscription does not allow training ({:?})", .0 .0)]
    Inactive(Inactive),
    /// The SSRF guard refused the URL. The reason (which addresses a name resolves to) is for the log
    /// only: answered, it would make the route a way to map our network's DNS.
    #[error("the URL cannot be fetched: {0}")]
    Unfetchable(String),
    #[error(transparent)]
    Job(#[from] JobError),
    /// The job was recorded, then ended: the queue would not take its message.
    #[error("the training queue refused the job")]
    Queue(#[source] QueueError),
    #[error("the job message does not encode")]
    Encode(#[source] serde_json::Error),
}

impl From<Inactive> for SubmitError {
    fn from(e: Inactive) -> Self {
        Self::Inactive(e)
    }
}

/// Checks, records and queues a training job for the tenant's site.
pub async fn submit(
    p: &Platform,
    tenant: &TenantId,
    request: TrainRequest,
) -> Result<TrainingJob, SubmitError> {
    let store = p.store.as_ref();
    let site = sites::get_site(store, tenant, &request.site_id).await?;
    let account = tenants::get_tenant(store, tenant).await?;
    // Training spends crawling and embedding on the tenant's behalf: only for a paying tenant.
    account.standing(p.clock.now(), p.config.billing.past_due_grace)?;
    let fetchable = jobs::check_fetchable(
        &request.url,
        p.config.fetch_allow_loopback,
        &p.config.fetch_allowed_ports,
    )
    .await;
    if let Err(refusal) = fetchable {
        tracing::info!(url = %request.url, refusal = %refusal, "training URL refused");
        return Err(SubmitError::Unfetchable(refusal));
    }
    let plan = account.plan;
    let plan_pages = plan.limits().training_pages;
    // Asking for more than the plan allows is not an error: it gets the plan's maximum.
    let max_pages = request.max_pages.unwrap_or(plan_pages).min(plan_pages);
    let job_request = JobRequest {
        url: request.url.to_string(),
        force_retrain: request.force_retrain,
        max_pages,
        max_depth: request.max_depth.unwrap_or(max_pages),
        scope: request.scope,
    };
    let job = jobs::create_job(
        store,
        p.ids.as_ref(),
        p.clock.as_ref(),
        tenant,
        &site.site_id,
        job_request,
        plan,
    )
    .await?;
    queue(p, &job).await?;
    tracing::info!(job_id = %job.job_id, site_id = %site.site_id, max_pages = job.request.max_pages, "training queued");
    Ok(job)
}

/// Sends the job's first message; when that fails, ends the job so its site and slot are free again.
async fn queue(p: &Platform, job: &TrainingJob) -> Result<(), SubmitError> {
    let message = JobMessage {
        job_id: job.job_id.clone(),
        site_id: job.site_id.clone(),
        slice: 0,
    };
    let sent = match serde_json::to_string(&message) {
        Ok(body) => p.train_queue.send(&body).await.map_err(SubmitError::Queue),
        Err(e) => Err(SubmitError::Encode(e)),
    };
    if let Err(e) = &sent {
        tracing::error!(job_id = %job.job_id, error = %e, "queueing the training job failed");
        if let Err(e) = jobs::abandon(
            p.store.as_ref(),
            p.clock.as_ref(),
            job,
            "the training queue refused the job",
        )
        .await
        {
            tracing::error!(job_id = %job.job_id, error = %e, "ending the unqueued job failed");
        }
    }
    sent.map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::future::BoxFuture;

    use super::*;
    use crate::queue::{JobQueue, Received};
    use crate::store::{Index, Query, keys};
    use crate::tenants::Plan;
    use crate::training::jobs::JobStatus;

    /// A queue that is down.
    struct Refusing;

    impl JobQueue for Refusing {
        fn send(&self, _: &str) -> BoxFuture<'_, Result<String, QueueError>> {
            Box::pin(async { Err(QueueError::Backend(anyhow::anyhow!("queue down"))) })
        }
        fn receive(
            &self,
            _: usize,
            _: Duration,
            _: Duration,
        ) -> BoxFuture<'_, Result<Vec<Received>, QueueError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn delete(&self, _: &str) -> BoxFuture<'_, Result<(), QueueError>> {
            Box::pin(async { Ok(()) })
        }
        fn change_visibility(&self, _: &str, _: Duration) -> BoxFuture<'_, Result<(), QueueError>> {
            Box::pin(async { Ok(()) })
        }
        fn receive_dead_letters(
            &self,
            _: usize,
        ) -> BoxFuture<'_, Result<Vec<Received>, QueueError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn max_receives(&self) -> u32 {
            3
        }
    }

    async fn platform(dir: &tempfile::TempDir) -> (Arc<Platform>, TenantId, SiteId) {
        let p = crate::fixtures::embedded_platform(dir);
        let (tenant, site) = crate::fixtures::tenant_with_site(
            p.store.as_ref(),
            p.ids.as_ref(),
            p.clock.as_ref(),
            Plan::Starter,
            &[],
        )
        .await;
        (p, tenant.tenant_id, site.site_id)
    }

    fn request(site: &SiteId, max_pages: Option<u32>) -> TrainRequest {
        TrainRequest {
            site_id: site.clone(),
            url: Url::parse("http://127.0.0.1/").unwrap(),
            force_retrain: false,
            max_pages,
            max_depth: None,
            scope: ScopeMode::Prefix,
        }
    }

    #[tokio::test]
    async fn a_job_is_recorded_queued_and_capped_by_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let (p, tenant, site) = platform(&dir).await;
        let plan_pages = Plan::Starter.limits().training_pages;
        let job = submit(&p, &tenant, request(&site, Some(plan_pages + 1)))
            .await
            .unwrap();
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(
            (job.request.max_pages, job.request.max_depth),
            (plan_pages, plan_pages)
        );
        let received = p
            .train_queue
            .receive(1, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        let message: JobMessage = serde_json::from_str(&received[0].body).unwrap();
        assert_eq!((message.job_id, message.slice), (job.job_id.clone(), 0));
        // The site trains one job at a time.
        let again = submit(&p, &tenant, request(&site, None)).await.unwrap_err();
        assert!(
            matches!(&again, SubmitError::Job(JobError::AlreadyTraining(id)) if *id == job.job_id),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn a_job_the_queue_refuses_is_ended_and_frees_its_site() {
        let dir = tempfile::tempdir().unwrap();
        let (p, tenant, site) = platform(&dir).await;
        let p = Platform {
            train_queue: Arc::new(Refusing),
            ..Arc::into_inner(p).unwrap()
        };
        let err = submit(&p, &tenant, request(&site, None)).await.unwrap_err();
        assert!(matches!(err, SubmitError::Queue(_)), "{err:?}");
        // Ended, not left queued: a second try is refused by the queue again, not by a stuck lock.
        let err = submit(&p, &tenant, request(&site, None)).await.unwrap_err();
        assert!(matches!(err, SubmitError::Queue(_)), "{err:?}");
        let listed = p
            .store
            .query(
                Query::on(Index::BySite, keys::site_partition(&site))
                    .prefix(keys::job_listing(&site, "").1),
            )
            .await
            .unwrap();
        assert_eq!(listed.items.len(), 2);
        for item in &listed.items {
            let job: TrainingJob = item.to_record().unwrap();
            assert_eq!(job.status, JobStatus::Failed);
            assert_eq!(
                job.error.as_deref(),
                Some("the training queue refused the job")
            );
        }
    }

    #[tokio::test]
    async fn another_tenants_site_and_unfetchable_urls_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (p, tenant, site) = platform(&dir).await;
        let stranger = TenantId::generate(p.ids.as_ref());
        let err = submit(&p, &stranger, request(&site, None))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SubmitError::Site(SiteError::NotFound)),
            "{err:?}"
        );
        let mut metadata = request(&site, None);
        metadata.url = Url::parse("http://169.254.169.254/latest/").unwrap();
        let err = submit(&p, &tenant, metadata).await.unwrap_err();
        assert!(matches!(err, SubmitError::Unfetchable(_)), "{err:?}");
        // Nothing was queued and the site is free.
        submit(&p, &tenant, request(&site, None)).await.unwrap();
    }
}
