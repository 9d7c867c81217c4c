//! One training run: crawl → extract → chunk → embed (only what changed) → a new versioned index,
//! switched in atomically.
//!
//! Idempotent per job. Every page's result is saved as it is produced (its chunks as a blob keyed by
//! content hash, its document record stamped with the job), so a redelivered job skips what its
//! previous attempt finished and spends nothing twice; the final counts are read back from the
//! document records, so they are exact however many attempts it took.
//!
//! Time-boxed: a run stops crawling at its deadline (the invocation's, less a margin, or the
//! configured slice budget), saves a [`Checkpoint`] and continues in a follow-up message for the next
//! slice of the same job. The job's `slice` says which message may run; stale ones are ignored.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use time::Duration as TimeDuration;
use time::OffsetDateTime;
use tokio::sync::mpsc;

mod finish;

use super::checkpoint::{self, Checkpoint, Progress};
use super::documents::{self, DocumentRecord, DocumentStatus, StoredChunks};
use super::jobs::{self, JobMessage, JobStatus, TrainingJob};
use crate::Platform;
use crate::chunk::{self, ChunkOptions};
use crate::clock::rfc3339;
use crate::crawl::{
    CrawlEvent, CrawlRequest, CrawlState, CrawledPage, Crawler, FetchPolicy, Fetcher, KnownPage,
    PageKind, Validators,
};
use crate::extract;
use crate::ids::JobId;
use crate::index::{self, IndexBuilder, IndexedChunk, SiteIndex};
use crate::models::embeddings::{EmbedError, EmbeddingClient, InputRole};
use crate::models::{ModelKind, ModelPolicy, PriceBook};
use crate::money::MicroUsd;
use crate::sites::{self, Site, SiteStatus};
use crate::store::{Condition, StoreError, Write};
use crate::tenants::{self, Tenant};
use crate::usage::{self, counters};

/// A message as delivered (by SQS through Lambda, or by the local runner's queue loop).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub body: String,
    /// Deliveries so far, this one included.
    pub receive_count: u32,
    /// When the invocation running it ends (Lambda's deadline), if it does.
    pub deadline: Option<tokio::time::Instant>,
}

/// What to do with the message.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageDisposition {
    /// Delete it: the job is finished (or there is nothing to do).
    Done,
    /// Leave it: the queue redelivers it, and dead-letters it after its maximum receives.
    Retry(String),
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
enum TrainError {
    /// Another attempt could succeed (network, throttling, storage).
    #[error("{0}")]
    Retryable(String),
    /// No attempt can succeed (quota exhausted, model refused the request, site deleted).
    #[error("{0}")]
    Fatal(String),
}

impl From<StoreError> for TrainError {
    fn from(e: StoreError) -> Self {
        TrainError::Retryable(format!("storage: {e}"))
    }
}

impl From<crate::blobs::BlobError> for TrainError {
    fn from(e: crate::blobs::BlobError) -> Self {
        TrainError::Retryable(format!("blob storage: {e}"))
    }
}

impl From<sites::SiteError> for TrainError {
    fn from(e: sites::SiteError) -> Self {
        match e {
            sites::SiteError::NotFound => TrainError::Fatal("the site no longer exists".into()),
            other => TrainError::Retryable(other.to_string()),
        }
    }
}

/// The links to remember for a page (see [`DocumentRecord::links`]).
fn page_links(page: &CrawledPage) -> Vec<String> {
    page.links
        .iter()
        .take(documents::MAX_LINKS)
        .map(|l| l.to_string())
        .collect()
}

/// Index versions kept besides the current one (a chat instance may still be loading the previous).
const KEEP_OLD_VERSIONS: usize = 1;

/// Runs training jobs. Built once per process.
pub struct Trainer {
    platform: Arc<Platform>,
    prices: PriceBook,
    embeddings: Option<EmbeddingClient>,
    fetch_policy: FetchPolicy,
    chunk_options: ChunkOptions,
    /// Most time one slice of a job may crawl (`KOTOBA_TRAIN_SLICE_SECS`); the invocation's deadline
    /// applies as well.
    slice_budget: Option<std::time::Duration>,
}

/// How long before an invocation's deadline the crawl stops: fetches in flight finish, their pages are
/// embedded and saved, the checkpoint is written and the follow-up sent, all within it.
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(120);

/// How one slice of a job ended.
enum Slice {
    /// The index is built and the job finished.
    Finished,
    /// Out of time with pages left: continue from here.
    Suspended(Box<CrawlState>, Progress),
}

/// Everything one run needs about its job.
struct Run<'a> {
    job: &'a TrainingJob,
    site: Site,
    tenant: Tenant,
    /// The embedding model and its policy, when the site embeds.
    embedding: Option<(&'a EmbeddingClient, ModelPolicy)>,
    /// Vectors of the previous index by chunk content hash (reused for unchanged chunks).
    reusable: HashMap<String, Vec<f32>>,
    docs: HashMap<String, DocumentRecord>,
    /// Requested URL → canonical URL, to place 304 and 404 answers.
    by_url: HashMap<String, String>,
    progress: Progress,
}

impl Trainer {
    pub fn new(platform: Arc<Platform>, http: reqwest::Client) -> anyhow::Result<Self> {
        let crate::models::ConfiguredModels {
            prices, embeddings, ..
        } = crate::models::ConfiguredModels::new(&platform.config.models, http)?;
        let fetch_policy = FetchPolicy {
            allow_loopback: platform.config.fetch_allow_loopback,
            allowed_ports: platform.config.fetch_allowed_ports.clone(),
            ..FetchPolicy::default()
        };
        Ok(Self {
            prices,
            embeddings,
            fetch_policy,
            chunk_options: ChunkOptions::default(),
            slice_budget: platform.config.train_slice_budget,
            platform,
        })
    }

    /// A different fetch policy (tests shorten timeouts).
    pub fn with_fetch_policy(mut self, policy: FetchPolicy) -> Self {
        self.fetch_policy = policy;
        self
    }

    /// Handles one delivery of a job message.
    pub async fn run(&self, delivery: Delivery) -> MessageDisposition {
        let message: JobMessage = match serde_json::from_str(&delivery.body) {
            Ok(m) => m,
            Err(e) => {
                // It can never succeed; leaving it lets the queue dead-letter it for inspection.
                tracing::error!(error = %e, "malformed training message");
                return MessageDisposition::Retry(format!("malformed message: {e}"));
            }
        };
        let span = tracing::info_span!("train", job_id = %message.job_id, site_id = %message.site_id, attempt = delivery.receive_count);
        let _guard = span.enter();
        let store = self.platform.store.as_ref();
        let job = match jobs::load_job(store, &message.job_id).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                tracing::warn!("training job not found; nothing to do");
                return MessageDisposition::Done;
            }
            Err(e) => return MessageDisposition::Retry(format!("reading the job: {e}")),
        };
        if job.status.is_finished() {
            tracing::info!(status = ?job.status, "job already finished; redelivery ignored");
            return MessageDisposition::Done;
        }
        if message.slice != job.slice {
            if message.slice + 1 == job.slice && job.handoff_pending {
                // The previous delivery moved the job on but may not have sent the follow-up.
                return self.hand_off(&job).await;
            }
            tracing::info!(
                message_slice = message.slice,
                job_slice = job.slice,
                "stale message for another slice of the job; ignored"
            );
            return MessageDisposition::Done;
        }
        if let Err(e) = self.mark_running(&job, delivery.receive_count).await {
            return MessageDisposition::Retry(format!("starting the job: {e}"));
        }
        let max = self.platform.train_queue.max_receives();
        match self.train(&job, self.stop_at(delivery.deadline)).await {
            Ok(Slice::Finished) => MessageDisposition::Done,
            Ok(Slice::Suspended(state, progress)) => self.suspend(&job, *state, progress).await,
            Err(TrainError::Fatal(reason)) => {
                tracing::error!(%reason, "training failed for good");
                match self.fail(&job, &reason).await {
                    Ok(()) => MessageDisposition::Done,
                    Err(e) => MessageDisposition::Retry(format!("recording the failure: {e}")),
                }
            }
            Err(TrainError::Retryable(reason)) if delivery.receive_count >= max => {
                tracing::error!(%reason, attempts = delivery.receive_count, "training failed on its last attempt");
                if let Err(e) = self
                    .fail(
                        &job,
                        &format!("failed after {} attempts: {reason}", delivery.receive_count),
                    )
                    .await
                {
                    tracing::error!(error = %e, "recording the failure failed");
                }
                // Not deleted: the queue moves it to the dead-letter queue.
                MessageDisposition::Retry(reason)
            }
            Err(TrainError::Retryable(reason)) => {
                tracing::warn!(%reason, "training attempt failed; it will be retried");
                let mut fields = Map::new();
                fields.insert("status".into(), json!(JobStatus::Queued));
                fields.insert(
                    "error".into(),
                    json!(format!(
                        "attempt {} failed: {reason}",
                        delivery.receive_count
                    )),
                );
                if let Err(e) = store.update(jobs::job_update(&job.job_id, fields)).await {
                    tracing::error!(error = %e, "recording the retry failed");
                }
                MessageDisposition::Retry(reason)
            }
        }
    }

    /// When this slice stops crawling: the invocation's deadline less the margin, or the slice budget.
    fn stop_at(&self, deadline: Option<tokio::time::Instant>) -> Option<tokio::time::Instant> {
        let by_deadline = deadline.map(|d| d.checked_sub(DEADLINE_MARGIN).unwrap_or(d));
        let by_budget = self.slice_budget.map(|b| tokio::time::Instant::now() + b);
        match (by_deadline, by_budget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Saves where the job stopped, moves it to its next slice, and sends the follow-up message.
    async fn suspend(
        &self,
        job: &TrainingJob,
        state: CrawlState,
        progress: Progress,
    ) -> MessageDisposition {
        let next = job.slice + 1;
        let saved = Checkpoint {
            slice: next,
            crawl: state,
            progress,
        };
        let queued = saved.crawl.frontier.len();
        if let Err(e) = checkpoint::save(
            self.platform.blobs.as_ref(),
            &job.site_id,
            &job.job_id,
            &saved,
        )
        .await
        {
            return MessageDisposition::Retry(format!("saving the checkpoint: {e}"));
        }
        let mut update = jobs::job_update(&job.job_id, Map::new())
            .when(Condition::AttributeEquals("slice".into(), json!(job.slice)));
        update.set.insert("slice".into(), json!(next));
        update.set.insert("handoff_pending".into(), json!(true));
        match self.platform.store.update(update).await {
            Ok(updated) => {
                tracing::info!(
                    slice = job.slice,
                    queued,
                    "time budget spent; the job continues in a follow-up message"
                );
                match updated.to_record::<TrainingJob>() {
                    Ok(moved) => self.hand_off(&moved).await,
                    Err(e) => MessageDisposition::Retry(format!("reading the moved job: {e}")),
                }
            }
            // Someone else moved the job on (a duplicate delivery of this slice): theirs wins.
            Err(StoreError::ConditionFailed) => MessageDisposition::Done,
            Err(e) => MessageDisposition::Retry(format!("moving the job to its next slice: {e}")),
        }
    }

    /// Sends the message for the job's current slice and records that it went.
    async fn hand_off(&self, job: &TrainingJob) -> MessageDisposition {
        let message = JobMessage {
            job_id: job.job_id.clone(),
            site_id: job.site_id.clone(),
            slice: job.slice,
        };
        let body = match serde_json::to_string(&message) {
            Ok(body) => body,
            Err(e) => return MessageDisposition::Retry(format!("encoding the follow-up: {e}")),
        };
        if let Err(e) = self.platform.train_queue.send(&body).await {
            // This message comes back, and its redelivery sends the follow-up.
            return MessageDisposition::Retry(format!("sending the follow-up message: {e}"));
        }
        let mut done = Map::new();
        done.insert("handoff_pending".into(), json!(false));
        let update = jobs::job_update(&job.job_id, done)
            .when(Condition::AttributeEquals("slice".into(), json!(job.slice)));
        if let Err(e) = self.platform.store.update(update).await {
            // Harmless: at worst a redelivery sends the same slice again, which runs once.
            tracing::warn!(error = %e, "recording the hand-off failed");
        }
        MessageDisposition::Done
    }

    async fn mark_running(&self, job: &TrainingJob, attempt: u32) -> Result<(), StoreError> {
        let mut fields = Map::new();
        fields.insert("status".into(), json!(JobStatus::Running));
        fields.insert("attempt".into(), json!(attempt));
        if job.slice > 0 {
            // A continuation: the totals so far stand.
            return self
                .platform
                .store
                .update(jobs::job_update(&job.job_id, fields))
                .await
                .map(|_| ());
        }
        fields.insert(
            "started_at".into(),
            json!(rfc3339(self.platform.clock.now())),
        );
        for counter in [
            "pages_crawled",
            "pages_changed",
            "pages_removed",
            "pages_skipped",
            "urls_out_of_scope",
            "chunks",
            "embedding_tokens",
        ] {
            fields.insert(counter.into(), json!(0));
        }
        self.platform
            .store
            .update(jobs::job_update(&job.job_id, fields))
            .await
            .map(|_| ())
    }

    async fn train(
        &self,
        job: &TrainingJob,
        stop_at: Option<tokio::time::Instant>,
    ) -> Result<Slice, TrainError> {
        let platform = &self.platform;
        let store = platform.store.as_ref();
        let now = platform.clock.now();
        let site = sites::find_site(store, &job.site_id)
            .await?
            .ok_or_else(|| TrainError::Fatal("the site no longer exists".into()))?;
        let tenant = tenants::get_tenant(store, &site.tenant_id)
            .await
            .map_err(|e| TrainError::Retryable(format!("reading the tenant: {e}")))?;
        let embedding = match &self.embeddings {
            Some(client) => {
                match self
                    .prices
                    .resolve(ModelKind::Embedding, &client.model, tenant.plan, now)
                {
                    Ok(policy) => Some((client, policy.clone())),
                    Err(e) => return Err(TrainError::Fatal(e.to_string())),
                }
            }
            None => None,
        };
        let model = embedding.as_ref().map(|(c, _)| c.model.clone());

        // A first training shows as `training`; a re-train keeps the site `ready` on its current index.
        if site.index_version.is_none() && site.status != SiteStatus::Training {
            sites::update_site_internal(
                store,
                platform.clock.as_ref(),
                &site.site_id,
                |s| s.status = SiteStatus::Training,
                Vec::new(),
            )
            .await?;
        }

        let docs: HashMap<String, DocumentRecord> = documents::load_all(store, &site.site_id)
            .await?
            .into_iter()
            .map(|d| (d.canonical_url.clone(), d))
            .collect();
        let by_url = docs
            .values()
            .map(|d| (d.url.clone(), d.canonical_url.clone()))
            .collect();
        let reusable = if job.request.force_retrain {
            HashMap::new()
        } else {
            self.previous_vectors(&site, model.as_deref()).await
        };
        // A continuation, or a take-over of a slice that was killed: from the latest checkpoint.
        let resumed = checkpoint::load(platform.blobs.as_ref(), &job.site_id, &job.job_id)
            .await
            .map_err(|e| TrainError::Retryable(e.to_string()))?;
        if let Some(c) = &resumed {
            tracing::info!(
                checkpoint_slice = c.slice,
                queued = c.crawl.frontier.len(),
                "resuming the crawl"
            );
        }
        let mut run = Run {
            job,
            site,
            tenant,
            embedding,
            reusable,
            docs,
            by_url,
            progress: resumed.as_ref().map(|c| c.progress).unwrap_or_default(),
        };

        let start = url::Url::parse(&job.request.url)
            .map_err(|e| TrainError::Fatal(format!("bad start URL: {e}")))?;
        let mut request = CrawlRequest::new(start, run.site.allowed_domains.clone());
        request.max_pages = job.request.max_pages as usize;
        request.max_depth = job.request.max_depth;
        request.scope = job.request.scope;
        request.resume = resumed.map(|c| c.crawl);
        request.stop_at = stop_at;
        if !job.request.force_retrain {
            request.known_pages = run
                .docs
                .values()
                .filter(|d| d.status == DocumentStatus::Active)
                .filter_map(|d| {
                    let url = url::Url::parse(&d.url).ok()?;
                    let validators = Validators {
                        etag: d.etag.clone(),
                        last_modified: d.last_modified.clone(),
                    };
                    let links = d
                        .links
                        .iter()
                        .filter_map(|l| url::Url::parse(l).ok())
                        .collect();
                    Some(KnownPage {
                        url,
                        depth: d.depth,
                        validators,
                        links,
                    })
                })
                .collect();
        }

        let fetcher = Fetcher::system(self.fetch_policy.clone())
            .map_err(|e| TrainError::Retryable(e.to_string()))?;
        let crawler = Crawler::new(fetcher);
        let (tx, mut rx) = mpsc::channel(32);
        let crawl = tokio::spawn(async move { crawler.crawl(request, tx).await });
        let mut failure = None;
        while let Some(event) = rx.recv().await {
            if let Err(e) = self.handle_event(&mut run, event).await {
                failure = Some(e);
                break; // dropping the receiver stops the crawl
            }
        }
        drop(rx);
        let report = crawl
            .await
            .map_err(|e| TrainError::Retryable(format!("crawl task: {e}")))?;
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(state) = report.suspended {
            return Ok(Slice::Suspended(Box::new(state), run.progress));
        }
        let c = &report.counters;
        run.progress.out_of_scope = c.out_of_scope as u64;
        if c.produced + c.not_modified == 0 {
            let why = if report.notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", report.notes.join("; "))
            };
            return Err(TrainError::Retryable(format!(
                "the crawl found no pages to index: {} fetched, {} failed, {} refused by robots.txt, {} refused as unsafe{why}",
                c.fetched, c.errors, c.refused_by_robots, c.refused_by_guard
            )));
        }
        // Pages the crawl no longer reaches are gone, unless the page budget stopped it early.
        if !report.page_limit_reached {
            self.remove_unseen(&mut run).await?;
        }
        self.finish(&mut run).await?;
        if let Err(e) = checkpoint::delete(platform.blobs.as_ref(), &job.site_id, &job.job_id).await
        {
            tracing::warn!(error = %e, "could not delete the finished job's checkpoint");
        }
        Ok(Slice::Finished)
    }

    /// The previous index's vectors by chunk hash, when it was built with the same model.
    async fn previous_vectors(
        &self,
        site: &Site,
        model: Option<&str>,
    ) -> HashMap<String, Vec<f32>> {
        let (Some(version), Some(model)) = (site.index_version, model) else {
            return HashMap::new();
        };
        let blob = match self
            .platform
            .blobs
            .get(&index::blob_key(&site.site_id, version))
            .await
        {
            Ok(Some(blob)) => blob,
            _ => return HashMap::new(),
        };
        let Ok(previous) =
            tokio::task::spawn_blocking(move || SiteIndex::decode(&blob.bytes)).await
        else {
            return HashMap::new();
        };
        match previous {
            Ok(index) if index.embedding_model.as_deref() == Some(model) => match &index.vectors {
                Some(vectors) => index
                    .chunks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.content_hash.clone(), vectors.dequantize(i)))
                    .collect(),
                None => HashMap::new(),
            },
            _ => HashMap::new(),
        }
    }

    async fn handle_event(&self, run: &mut Run<'_>, event: CrawlEvent) -> Result<(), TrainError> {
        match event {
            CrawlEvent::Page(page) => {
                run.progress.crawled += 1;
                self.index_page(run, &page).await?;
            }
            CrawlEvent::NotModified {
                requested_url,
                depth,
                etag,
                last_modified,
                ..
            } => {
                run.progress.crawled += 1;
                if let Some(canonical) = run.by_url.get(requested_url.as_str()).cloned()
                    && let Some(mut doc) = run.docs.get(&canonical).cloned()
                {
                    doc.etag = etag.or(doc.etag);
                    doc.last_modified = last_modified.or(doc.last_modified);
                    doc.depth = depth;
                    self.save_seen(run, doc).await?;
                }
            }
            CrawlEvent::Gone {
                requested_url,
                final_url,
                ..
            } => {
                run.progress.crawled += 1;
                let canonical = run
                    .by_url
                    .get(requested_url.as_str())
                    .or_else(|| run.by_url.get(final_url.as_str()))
                    .cloned()
                    .or_else(|| {
                        run.docs
                            .contains_key(final_url.as_str())
                            .then(|| final_url.to_string())
                    });
                if let Some(canonical) = canonical
                    && let Some(doc) = run.docs.get(&canonical).cloned()
                {
                    self.remove(run, doc).await?;
                }
            }
            CrawlEvent::Skipped { url, reason, .. } => {
                run.progress.skipped += 1;
                tracing::debug!(%url, ?reason, "page skipped");
            }
            CrawlEvent::Failed { url, error, .. } => {
                run.progress.skipped += 1;
                tracing::info!(%url, %error, "page failed");
            }
        }
        self.report_progress(run).await
    }

    async fn report_progress(&self, run: &Run<'_>) -> Result<(), TrainError> {
        let p = run.progress;
        let mut fields = Map::new();
        for (name, value) in [
            ("pages_crawled", p.crawled),
            ("pages_changed", p.changed),
            ("pages_removed", p.removed),
            ("pages_skipped", p.skipped),
            ("urls_out_of_scope", p.out_of_scope),
            ("chunks", p.chunks),
            ("embedding_tokens", p.embedding_tokens),
        ] {
            fields.insert(name.into(), json!(value));
        }
        self.platform
            .store
            .update(jobs::job_update(&run.job.job_id, fields))
            .await?;
        Ok(())
    }

    /// Valid for the site's re-train interval: the document's due record falls on the day it goes stale.
    fn valid_until(&self, site: &Site) -> OffsetDateTime {
        self.platform.clock.now()
            + TimeDuration::days(documents::validity_days(site.retrain_interval_days))
    }

    /// Records that this job saw a document unchanged.
    async fn save_seen(&self, run: &mut Run<'_>, doc: DocumentRecord) -> Result<(), TrainError> {
        let doc = doc.seen_by(
            &run.job.job_id,
            self.platform.clock.now(),
            documents::validity_days(run.site.retrain_interval_days),
        );
        documents::save(self.platform.store.as_ref(), &run.site.site_id, &doc).await?;
        run.docs.insert(doc.canonical_url.clone(), doc);
        Ok(())
    }

    async fn remove(&self, run: &mut Run<'_>, doc: DocumentRecord) -> Result<(), TrainError> {
        let Some(doc) = doc.removed_by(&run.job.job_id, self.platform.clock.now()) else {
            return Ok(());
        };
        documents::save(self.platform.store.as_ref(), &run.site.site_id, &doc).await?;
        run.progress.removed += 1;
        run.docs.insert(doc.canonical_url.clone(), doc);
        Ok(())
    }

    async fn remove_unseen(&self, run: &mut Run<'_>) -> Result<(), TrainError> {
        let job = run.job.job_id.clone();
        let unseen: Vec<DocumentRecord> = run
            .docs
            .values()
            .filter(|d| d.status == DocumentStatus::Active && d.seen_job.as_ref() != Some(&job))
            .cloned()
            .collect();
        for doc in unseen {
            self.remove(run, doc).await?;
        }
        Ok(())
    }

    /// Extracts, chunks and (for what changed) embeds one page, and saves its chunks and record.
    async fn index_page(&self, run: &mut Run<'_>, page: &CrawledPage) -> Result<(), TrainError> {
        let canonical = page.canonical_url.to_string();
        run.by_url
            .insert(page.requested_url.to_string(), canonical.clone());
        let text = page.text.clone();
        let kind = page.kind;
        let options = self.chunk_options;
        // Parsing and tokenising are CPU work: keep them off the async workers.
        let (extracted, chunks) = tokio::task::spawn_blocking(move || {
            let extracted = match kind {
                PageKind::Html => extract::extract_html(&text),
                PageKind::Text => extract::extract_text(&text),
            };
            let chunks = chunk::chunk_page(&extracted, options);
            (extracted, chunks)
        })
        .await
        .map_err(|e| TrainError::Retryable(format!("extraction task: {e}")))?;
        let content_hash = chunk::content_hash(
            &chunks
                .iter()
                .map(|c| c.text.as_str())
                .collect::<Vec<_>>()
                .join("\n\n"),
        );
        let model = run.embedding.as_ref().map(|(c, _)| c.model.clone());
        let job_id = run.job.job_id.clone();
        let previous = run.docs.get(&canonical).cloned();

        if let Some(doc) = &previous {
            let same_content = doc.status == DocumentStatus::Active
                && doc.content_hash == content_hash
                && doc.embedding_model == model;
            let done_by_this_job = doc.changed_job.as_ref() == Some(&job_id);
            // Unchanged (and not forced), or already rebuilt by an earlier attempt of this job.
            if same_content && (!run.job.request.force_retrain || done_by_this_job) {
                let mut doc = doc.clone();
                doc.url = page.requested_url.to_string();
                doc.etag = page.etag.clone();
                doc.last_modified = page.last_modified.clone();
                doc.depth = page.depth;
                doc.title = extracted.title.clone();
                doc.links = page_links(page);
                return self.save_seen(run, doc).await;
            }
        }

        let title = if extracted.title.trim().is_empty() {
            canonical.clone()
        } else {
            extracted.title.clone()
        };
        let indexed: Vec<IndexedChunk> = chunks
            .iter()
            .map(|c| IndexedChunk {
                url: canonical.clone(),
                title: title.clone(),
                heading_path: c.heading_path.clone(),
                text: c.text.clone(),
                content_hash: chunk::content_hash(&index::passage_text(
                    &title,
                    &c.heading_path,
                    &c.text,
                )),
                token_count: c.token_count as u32,
            })
            .collect();
        let (vectors, tokens) = match &run.embedding {
            Some((client, _)) => {
                let (vectors, tokens) = self.embed(run, client, &indexed).await?;
                (Some(vectors), tokens)
            }
            None => (None, 0),
        };
        let stored = StoredChunks {
            chunks: indexed,
            vectors,
        };
        let blob_key = documents::chunks_blob_key(
            &run.site.site_id,
            &canonical,
            &content_hash,
            model.as_deref(),
        );
        let bytes = stored
            .encode()
            .map_err(|e| TrainError::Retryable(format!("encoding chunks: {e}")))?;
        self.platform
            .blobs
            .put(&blob_key, bytes, "application/octet-stream")
            .await?;

        let now = self.platform.clock.now();
        let doc = DocumentRecord {
            url: page.requested_url.to_string(),
            canonical_url: canonical.clone(),
            title,
            content_hash: content_hash.clone(),
            etag: page.etag.clone(),
            last_modified: page.last_modified.clone(),
            version: previous.as_ref().map_or(1, |d| d.version + 1),
            valid_until: self.valid_until(&run.site),
            chunk_count: stored.chunks.len() as u32,
            depth: page.depth,
            links: page_links(page),
            embedding_tokens: tokens,
            embedding_model: model.clone(),
            status: DocumentStatus::Active,
            seen_job: Some(job_id.clone()),
            changed_job: Some(job_id),
            removed_job: None,
            updated_at: now,
        };
        documents::save(self.platform.store.as_ref(), &run.site.site_id, &doc).await?;
        run.progress.changed += 1;
        run.progress.chunks += stored.chunks.len() as u64;
        run.progress.embedding_tokens += tokens;
        // The previous version's chunks are no longer needed (the serving index carries its own copy).
        if let Some(old) =
            previous.filter(|d| d.content_hash != content_hash || d.embedding_model != model)
        {
            let old_key = documents::chunks_blob_key(
                &run.site.site_id,
                &canonical,
                &old.content_hash,
                old.embedding_model.as_deref(),
            );
            if let Err(e) = self.platform.blobs.delete(&old_key).await {
                tracing::warn!(error = %e, key = old_key, "could not delete superseded chunks");
            }
        }
        run.docs.insert(canonical, doc);
        Ok(())
    }

    /// Vectors for the chunks: reused by content hash where possible, embedded (against the monthly
    /// embedding-token quota) where not. Returns the vectors and the tokens spent.
    async fn embed(
        &self,
        run: &mut Run<'_>,
        client: &EmbeddingClient,
        chunks: &[IndexedChunk],
    ) -> Result<(Vec<Vec<f32>>, u64), TrainError> {
        let mut vectors: Vec<Option<Vec<f32>>> = chunks
            .iter()
            .map(|c| run.reusable.get(&c.content_hash).cloned())
            .collect();
        let missing: Vec<usize> = (0..chunks.len())
            .filter(|&i| vectors[i].is_none())
            .collect();
        if missing.is_empty() {
            return Ok((vectors.into_iter().flatten().collect(), 0));
        }
        let store = self.platform.store.as_ref();
        let now = self.platform.clock.now();
        // What is sent is the passage with its title and headings: reserve for exactly that.
        let texts: Vec<String> = missing
            .iter()
            .map(|&i| {
                index::passage_text(&chunks[i].title, &chunks[i].heading_path, &chunks[i].text)
            })
            .collect();
        let tokenizer = crate::chunk::Tokenizer::o200k();
        let estimate: i64 = texts
            .iter()
            .map(|t| tokenizer.count(t) as i64)
            .sum::<i64>()
            .max(1);
        let limits = run.tenant.plan.limits();
        let month = usage::tenant_month(&run.tenant.tenant_id, &usage::month_of(now));
        match usage::reserve(
            store,
            month.clone(),
            counters::EMBEDDING_TOKENS,
            estimate,
            limits.monthly_embedding_tokens as i64,
            now,
        )
        .await
        {
            Ok(_) => {}
            Err(usage::UsageError::LimitReached(_)) => {
                return Err(TrainError::Fatal(format!(
                    "the monthly embedding-token quota of {} on the {} plan is exhausted",
                    limits.monthly_embedding_tokens,
                    run.tenant.plan.as_str()
                )));
            }
            Err(usage::UsageError::Store(e)) => return Err(e.into()),
        }
        // Credits: the most this batch can cost (the estimate and a quarter more, for a provider that
        // counts differently), reserved before it is sent. Refused: the job fails cleanly and the
        // site's current index keeps serving.
        let meter = crate::credits::Meter::of(&self.platform);
        let max_cost = run.embedding.as_ref().map_or(MicroUsd::ZERO, |(_, p)| {
            p.cost((estimate + estimate / 4) as u64, 0)
        });
        let hold = match meter
            .reserve(
                &run.tenant.tenant_id,
                crate::credits::MeteredFunction::Training,
                meter.settings().credits_for(max_cost),
                Some(run.job.job_id.as_str()),
            )
            .await
        {
            Ok(hold) => hold,
            Err(e) => {
                let _ =
                    usage::record(store, month, counters::EMBEDDING_TOKENS, -estimate, now).await;
                return Err(match e {
                    crate::credits::CreditError::Store(e) => e.into(),
                    crate::credits::CreditError::Contended(m) => TrainError::Retryable(m),
                    other => TrainError::Fatal(format!(
                        "{other}: train again once the account has credits (GET \
                         /api/credits/balance); the site's current index keeps serving"
                    )),
                });
            }
        };
        let embedded = match client.embed(&texts, InputRole::Passage).await {
            Ok(out) => out,
            Err(e) => {
                // Nothing was spent: give the reservations back.
                if let Err(e) = meter.release(hold).await {
                    tracing::warn!(error = %e, "releasing a credit hold failed; the sweeper will");
                }
                let _ =
                    usage::record(store, month, counters::EMBEDDING_TOKENS, -estimate, now).await;
                return Err(match e {
                    EmbedError::Rejected { .. } | EmbedError::Malformed(_) => {
                        TrainError::Fatal(e.to_string())
                    }
                    EmbedError::Unavailable { .. } => TrainError::Retryable(e.to_string()),
                });
            }
        };
        let tokens = if embedded.tokens > 0 {
            embedded.tokens
        } else {
            estimate as u64
        };
        // Settle the reservation to what the provider counted, and record what it cost.
        let cost = run
            .embedding
            .as_ref()
            .map_or(MicroUsd::ZERO, |(_, p)| p.cost(tokens, 0));
        if let Err(e) = meter
            .settle(
                hold,
                meter.settings().credits_for(cost),
                Some(run.job.job_id.as_str()),
            )
            .await
        {
            // The vectors are paid for by the provider already: keep them, and say so loudly.
            tracing::error!(error = %e, job_id = %run.job.job_id, "settling embedding credits failed");
        }
        // The month's tokens (the estimate corrected), its cost, and the same by site and by model.
        let breakdown = usage::Breakdown::new()
            .site(&run.site.site_id, 0, tokens as i64, cost)
            .model(usage::ModelSpend {
                model: &client.model,
                input_tokens: tokens,
                cost,
                ..Default::default()
            });
        usage::record_all(
            store,
            month,
            [
                (counters::EMBEDDING_TOKENS, tokens as i64 - estimate),
                (counters::COST_MICROS, cost.0),
            ]
            .into_iter()
            .chain(breakdown.counters())
            .collect(),
            now,
        )
        .await?;
        for (slot, vector) in missing.into_iter().zip(embedded.vectors) {
            vectors[slot] = Some(vector);
        }
        Ok((vectors.into_iter().flatten().collect(), tokens))
    }
}
