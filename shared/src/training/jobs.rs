//! Training jobs: created by `POST /api/train/url`, run by the worker, read by `GET /api/train/jobs/{id}`.
//!
//! One job at a time per site: a lock item (`SITE#<id>` / `TRAINING`) is written in the same transaction
//! as the job, so a second request finds it and answers 409 with the running job's id. The lock expires
//! on its own after [`LOCK_TTL_SECS`], so a job lost to a crash can never block a site forever.

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::clock::{Clock, rfc3339};
use crate::crawl::ScopeMode;
use crate::ids::{IdGenerator, JobId, SiteId, TenantId};
use crate::money::MicroUsd;
use crate::store::{Condition, Index, Item, ItemStore, Key, StoreError, Update, Write, keys};
use crate::tenants::Plan;

/// A training lock outlives any sane job (the worker's timeout × its receives) and then frees itself.
pub const LOCK_TTL_SECS: i64 = 6 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// What the tenant asked for, after validation and plan caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    pub url: String,
    pub force_retrain: bool,
    pub max_pages: u32,
    pub max_depth: u32,
    /// The start URL's section (default) or its whole host. Jobs stored before scopes existed crawled
    /// the whole host, but a re-read job only reports it, so the default is the new behaviour.
    #[serde(default)]
    pub scope: ScopeMode,
}

/// A training job as stored. Counters are live during a run and exact once it finishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingJob {
    pub job_id: JobId,
    pub site_id: SiteId,
    pub tenant_id: TenantId,
    #[serde(flatten)]
    pub request: JobRequest,
    pub status: JobStatus,
    /// Deliveries of the job's message so far.
    pub attempt: u32,
    pub pages_crawled: u64,
    pub pages_changed: u64,
    pub pages_removed: u64,
    /// Pages skipped: not HTML or text, refused by robots.txt, noindex, fetch errors.
    pub pages_skipped: u64,
    /// Distinct URLs the crawl found in links and sitemaps outside its scope (not fetched).
    #[serde(default)]
    pub urls_out_of_scope: u64,
    pub chunks: u64,
    pub embedding_tokens: u64,
    pub estimated_cost_micros: MicroUsd,
    pub embedding_model: Option<String>,
    /// The index version this job produced.
    pub index_version: Option<u64>,
    /// The tenant's training slot the job holds while it is queued or running.
    #[serde(default)]
    pub slot: Option<u32>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Set by a store update as `clock::rfc3339` text, which these read.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The slice of the job that may run now (0 first). A job that outlives one invocation continues
    /// in a follow-up message carrying the next slice; a message for an earlier slice is stale.
    #[serde(default)]
    pub slice: u32,
    /// The job moved to `slice` but its follow-up message may not have been sent yet (a redelivery of
    /// the previous slice's message sends it).
    #[serde(default)]
    pub handoff_pending: bool,
}

/// The contract's job object (`GET /api/train/jobs/{job_id}`): the job with its cost in dollars.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TrainingJobView {
    pub job_id: JobId,
    pub site_id: SiteId,
    pub status: JobStatus,
    pub url: String,
    pub force_retrain: bool,
    pub max_pages: u32,
    pub max_depth: u32,
    pub scope: ScopeMode,
    pub attempt: u32,
    pub pages_crawled: u64,
    pub pages_changed: u64,
    pub pages_removed: u64,
    pub pages_skipped: u64,
    /// Distinct URLs found (links, sitemaps) outside the job's scope and not fetched.
    pub urls_out_of_scope: u64,
    pub chunks: u64,
    pub embedding_tokens: u64,
    pub embedding_model: Option<String>,
    pub estimated_cost_usd: f64,
    pub index_version: Option<u64>,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Invocations the job has run in so far (a long crawl continues in follow-up slices).
    pub slices: u32,
}

impl TrainingJob {
    /// The contract's view: `estimated_cost_usd` in dollars.
    pub fn to_api(&self) -> TrainingJobView {
        TrainingJobView {
            job_id: self.job_id.clone(),
            site_id: self.site_id.clone(),
            status: self.status,
            url: self.request.url.clone(),
            force_retrain: self.request.force_retrain,
            max_pages: self.request.max_pages,
            max_depth: self.request.max_depth,
            scope: self.request.scope,
            attempt: self.attempt,
            pages_crawled: self.pages_crawled,
            pages_changed: self.pages_changed,
            pages_removed: self.pages_removed,
            pages_skipped: self.pages_skipped,
            urls_out_of_scope: self.urls_out_of_scope,
            chunks: self.chunks,
            embedding_tokens: self.embedding_tokens,
            embedding_model: self.embedding_model.clone(),
            estimated_cost_usd: self.estimated_cost_micros.as_dollars(),
            index_version: self.index_version,
            error: self.error.clone(),
            created_at: rfc3339(self.created_at),
            started_at: self.started_at.map(rfc3339),
            finished_at: self.finished_at.map(rfc3339),
            slices: self.slice + 1,
        }
    }
}

/// The queue message: just enough to find the job (everything else is read fresh from the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: JobId,
    pub site_id: SiteId,
    /// Which slice of the job this message runs (see [`TrainingJob::slice`]).
    #[serde(default)]
    pub slice: u32,
}

pub fn job_key(job: &JobId) -> Key {
    keys::job(job)
}

pub fn lock_key(site: &SiteId) -> Key {
    keys::training_lock(site)
}

/// One of the tenant's training slots: a plan allowing N concurrent jobs has slots 0..N, each held by
/// at most one job (and expiring like the site lock, so a lost job frees its slot eventually).
pub fn slot_key(tenant: &TenantId, slot: u32) -> Key {
    keys::training_slot(tenant, slot)
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The site already has a job queued or running.
    #[error("site is already training (job {0})")]
    AlreadyTraining(JobId),
    #[error("training job not found")]
    NotFound,
    /// Every one of the tenant's training slots is taken.
    #[error("{max} training job(s) already running, the {} plan's maximum", plan.as_str())]
    TooManyJobs { max: u32, plan: Plan },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn job_item(job: &TrainingJob) -> Result<Item, StoreError> {
    let (pk, sk) = keys::job_listing(&job.site_id, &job.job_id);
    // The deadline job looks at the job on the first day after its deadline (a stuck job is failed).
    let due = (job.deadline().date() + time::Duration::days(1)).to_string();
    let (due_pk, due_sk) = keys::job_due_listing(&due, &job.job_id);
    Ok(Item::from_record(job_key(&job.job_id), job)?
        .with_index(Index::BySite, pk, sk)
        .with_index(Index::ByDue, due_pk, due_sk))
}

impl TrainingJob {
    /// When the job must have finished: the site's training lock expires then, so a job still queued or
    /// running later is stuck (its worker crashed or its messages were lost).
    pub fn deadline(&self) -> OffsetDateTime {
        self.created_at + time::Duration::seconds(LOCK_TTL_SECS)
    }
}

/// Records a queued job and takes the site's training lock and one of the training slots the tenant's
/// plan allows, atomically. A site already training is [`JobError::AlreadyTraining`]; no free slot is
/// [`JobError::TooManyJobs`].
pub async fn create_job(
    store: &dyn ItemStore,
    ids: &dyn IdGenerator,
    clock: &dyn Clock,
    tenant: &TenantId,
    site: &SiteId,
    request: JobRequest,
    plan: Plan,
) -> Result<TrainingJob, JobError> {
    let max_jobs = plan.limits().concurrent_training_jobs;
    let now = clock.now();
    let mut job = TrainingJob {
        job_id: JobId::generate(ids),
        site_id: site.clone(),
        tenant_id: tenant.clone(),
        request,
        status: JobStatus::Queued,
        attempt: 0,
        pages_crawled: 0,
        pages_changed: 0,
        pages_removed: 0,
        pages_skipped: 0,
        urls_out_of_scope: 0,
        chunks: 0,
        embedding_tokens: 0,
        estimated_cost_micros: MicroUsd::ZERO,
        embedding_model: None,
        index_version: None,
        slot: None,
        error: None,
        created_at: now,
        started_at: None,
        finished_at: None,
        slice: 0,
        handoff_pending: false,
    };
    let expires = now.unix_timestamp() + LOCK_TTL_SECS;
    let held_by = |key: Key, job: &TrainingJob| {
        Item::new(key)
            .with("job_id", job.job_id.to_string())
            .expiring_at(expires)
    };
    for slot in 0..max_jobs {
        job.slot = Some(slot);
        let writes = vec![
            Write::Put(held_by(lock_key(site), &job), Condition::IfAbsent),
            Write::Put(held_by(slot_key(tenant, slot), &job), Condition::IfAbsent),
            Write::Put(job_item(&job)?, Condition::IfAbsent),
        ];
        match store.transact(writes).await {
            Ok(()) => return Ok(job),
            // The site's lock or this slot is taken: which one decides between 409 and the next slot.
            Err(StoreError::ConditionFailed) => {
                if let Some(running) = running_job(store, site).await? {
                    return Err(JobError::AlreadyTraining(running));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(JobError::TooManyJobs {
        max: max_jobs,
        plan,
    })
}

/// Frees the tenant's training slot a finished job held (if it still holds it). Best effort: a slot
/// that cannot be freed now expires on its own.
pub async fn release_slot(store: &dyn ItemStore, job: &TrainingJob) {
    let Some(slot) = job.slot else { return };
    let mine = Condition::AttributeEquals("job_id".into(), json!(job.job_id));
    match store.delete(&slot_key(&job.tenant_id, slot), mine).await {
        Ok(()) | Err(StoreError::ConditionFailed) => {}
        Err(e) => {
            tracing::warn!(job_id = %job.job_id, error = %e, "freeing the training slot failed; it will expire")
        }
    }
}

/// The job holding the site's training lock, if any.
pub async fn running_job(
    store: &dyn ItemStore,
    site: &SiteId,
) -> Result<Option<JobId>, StoreError> {
    let Some(item) = store.get(&lock_key(site)).await? else {
        return Ok(None);
    };
    let id = item
        .attributes
        .get("job_id")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    Ok(JobId::parse(id).ok())
}

/// A job by id, for its tenant only.
pub async fn get_job(
    store: &dyn ItemStore,
    tenant: &TenantId,
    job: &JobId,
) -> Result<TrainingJob, JobError> {
    match load_job(store, job).await? {
        Some(j) if &j.tenant_id == tenant => Ok(j),
        _ => Err(JobError::NotFound),
    }
}

pub async fn load_job(
    store: &dyn ItemStore,
    job: &JobId,
) -> Result<Option<TrainingJob>, StoreError> {
    match store.get(&job_key(job)).await? {
        Some(item) => Ok(Some(item.to_record()?)),
        None => Ok(None),
    }
}

/// Sets fields of a job (the worker's progress and outcome).
pub fn job_update(job: &JobId, fields: serde_json::Map<String, serde_json::Value>) -> Update {
    let mut update = Update::new(job_key(job)).when(Condition::IfExists);
    update.set = fields;
    update
}

/// Ends a job that could not be queued (the queue refused the message) and frees the site.
pub async fn abandon(
    store: &dyn ItemStore,
    clock: &dyn Clock,
    job: &TrainingJob,
    reason: &str,
) -> Result<(), StoreError> {
    let mut fields = serde_json::Map::new();
    fields.insert("status".into(), json!(JobStatus::Failed));
    fields.insert("error".into(), json!(reason));
    fields.insert("finished_at".into(), json!(rfc3339(clock.now())));
    let writes = vec![
        Write::Update(job_update(&job.job_id, fields)),
        Write::Delete(
            lock_key(&job.site_id),
            Condition::AttributeEquals("job_id".into(), json!(job.job_id)),
        ),
    ];
    store.transact(writes).await?;
    release_slot(store, job).await;
    Ok(())
}

/// A start URL as a tenant gives it: http or https, a host, no credentials, at most 2,048 characters.
/// (Whether the host may be fetched at all is the crawler's SSRF guard's call.)
pub fn parse_start_url(raw: &str) -> Result<url::Url, String> {
    let raw = raw.trim();
    if raw.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let mut url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?}: only http and https URLs can be trained"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".into());
    }
    url.set_fragment(None);
    Ok(url)
}

/// Whether the crawler may fetch this URL at all: its literal address, or every address its name
/// resolves to, must pass the SSRF guard. Checked before a job is queued so the tenant hears why at once.
/// The error is for the log: it names addresses and their classes, which tenants must not learn.
pub async fn check_fetchable(
    url: &url::Url,
    allow_loopback: bool,
    allowed_ports: &[u16],
) -> Result<(), String> {
    use crate::crawl::guard::{self, GuardedResolver, SystemResolver};
    guard::check_url(url, allow_loopback).map_err(|r| r.to_string())?;
    let addrs = match (guard::literal_ip(url), url.host_str()) {
        (Some(ip), _) => vec![ip],
        (None, Some(host)) => {
            let resolver =
                GuardedResolver::new(std::sync::Arc::new(SystemResolver), allow_loopback);
            resolver
                .resolve_checked(host)
                .await
                .map_err(|e| e.to_string())?
        }
        (None, None) => return Err("the URL has no host".into()),
    };
    guard::check_port(url, allowed_ports, allow_loopback, &addrs).map_err(|r| r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_job_reads_typed_and_shows_and_writes_back_the_same_times() {
        let row = json!({
            "job_id": "job_1", "site_id": "site_1", "tenant_id": "ten_1",
            "url": "https://example.co.jp/", "force_retrain": false, "max_pages": 50, "max_depth": 3,
            "scope": "prefix", "status": "succeeded", "attempt": 1,
            "pages_crawled": 3, "pages_changed": 3, "pages_removed": 0, "pages_skipped": 0,
            "urls_out_of_scope": 0, "chunks": 12, "embedding_tokens": 900,
            "estimated_cost_micros": 18, "embedding_model": null, "index_version": 1, "slot": null,
            "error": null, "created_at": "2026-05-01T09:00:00.123456789Z",
            "started_at": "2026-05-01T09:00:01.5Z", "finished_at": "2026-05-01T09:02:00Z",
            "slice": 0, "handoff_pending": false
        });
        let job: TrainingJob = serde_json::from_value(row.clone()).unwrap();
        assert_eq!(
            job.finished_at,
            Some(time::macros::datetime!(2026-05-01 09:02 UTC))
        );
        assert_eq!(serde_json::to_value(&job).unwrap(), row);
        let api = serde_json::to_value(job.to_api()).unwrap();
        for field in ["created_at", "started_at", "finished_at"] {
            assert_eq!(api[field], row[field], "{field}");
        }

        // A queued job, as first written: no start or finish yet.
        let mut queued = row.clone();
        queued["started_at"] = serde_json::Value::Null;
        queued["finished_at"] = serde_json::Value::Null;
        let job: TrainingJob = serde_json::from_value(queued.clone()).unwrap();
        assert_eq!(serde_json::to_value(&job).unwrap(), queued);
        assert_eq!(
            serde_json::to_value(job.to_api()).unwrap()["started_at"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn start_urls_are_checked() {
        assert_eq!(
            parse_start_url(" https://example.co.jp/#top ")
                .unwrap()
                .as_str(),
            "https://example.co.jp/"
        );
        for bad in [
            "ftp://x.com/",
            "https://user:pw@x.com/",
            "javascript:alert(1)",
            "not a url",
            "file:///etc/passwd",
            "http://",
        ] {
            assert!(parse_start_url(bad).is_err(), "{bad}");
        }
    }
}
