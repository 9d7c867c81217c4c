//! Stale content: a site whose documents passed `valid_until` (set from the site's re-train interval)
//! gets one differential re-train queued: the same start URL and limits as its last successful
//! training, without `force_retrain`, so unchanged pages cost a conditional GET and no embedding.

use std::collections::HashSet;

use super::super::due;
use super::super::marker::{Claim, Done, Marker};
use super::{Ctx, Outcome};
use crate::ids::SiteId;
use crate::store::{Index, ItemStore, Query, StoreError, keys};
use crate::training::jobs::{JobError, JobStatus, TrainingJob};
use crate::training::submit::{self, SubmitError, TrainRequest};
use crate::{sites, tenants};

pub const ACTION: &str = "stale_content_retrain";

/// The site ids of one page of document due records (`DOC#<site>#<doc>`), each once.
pub fn sites_of(items: &[crate::store::Item], seen: &mut HashSet<String>) -> Vec<SiteId> {
    let mut out = Vec::new();
    for item in items {
        let Some(key) = item.index_keys.get(&Index::ByDue) else {
            continue;
        };
        let Some(site) = key
            .sk
            .strip_prefix(keys::prefix::DOC)
            .and_then(|rest| rest.split('#').next())
        else {
            continue;
        };
        if seen.insert(site.to_string())
            && let Ok(id) = SiteId::parse(site)
        {
            out.push(id);
        }
    }
    out
}

/// The site's last successful training (its newest jobs first), whose request the re-train repeats.
async fn last_trained(
    store: &dyn ItemStore,
    site: &SiteId,
) -> Result<Option<TrainingJob>, StoreError> {
    let page = store
        .query(
            Query::on(Index::BySite, keys::site_partition(site))
                .prefix(keys::prefix::JOB)
                .descending()
                .limit(50),
        )
        .await?;
    for item in &page.items {
        let job: TrainingJob = item.to_record()?;
        if job.status == JobStatus::Succeeded {
            return Ok(Some(job));
        }
    }
    Ok(None)
}

/// Queues the site's re-train for the context's day (once).
pub async fn handle(ctx: &Ctx<'_>, site_id: &SiteId) -> Outcome {
    let store = ctx.platform.store.as_ref();
    let site = match sites::find_site(store, site_id).await {
        Ok(Some(site)) => site,
        Ok(None) => return Outcome::NotDue,
        Err(e) => return ctx.failure(ACTION, site_id, e),
    };
    if site.retrain_interval_days == 0 {
        return Outcome::NotDue;
    }
    let marker = Marker::new(&ctx.day_text, ACTION, site_id);
    match marker.claim(store, ctx.now(), &ctx.token).await {
        Ok(Claim::Mine(_)) => {}
        Ok(Claim::Done) => return Outcome::AlreadyDone,
        Ok(Claim::Busy) => return Outcome::Busy,
        Err(e) => return ctx.failure(ACTION, site_id, e),
    }
    let previous = match last_trained(store, site_id).await {
        Ok(Some(job)) => job,
        // Never trained successfully: nothing to refresh.
        Ok(None) => {
            let done = Done::default().with("outcome", "never_trained");
            return match marker.complete(store, ctx.now(), &ctx.token, done).await {
                Ok(()) => Outcome::NotDue,
                Err(e) => ctx.failure(ACTION, site_id, e),
            };
        }
        Err(e) => {
            let _ = marker.release(store, &ctx.token).await;
            return ctx.failure(ACTION, site_id, e);
        }
    };
    let url = match url::Url::parse(&previous.request.url) {
        Ok(url) => url,
        Err(e) => {
            let _ = marker.release(store, &ctx.token).await;
            return ctx.failure(ACTION, site_id, e);
        }
    };
    let request = TrainRequest {
        site_id: site_id.clone(),
        url,
        force_retrain: false,
        max_pages: Some(previous.request.max_pages),
        max_depth: Some(previous.request.max_depth),
        scope: previous.request.scope,
    };
    let (outcome, done) = match submit::submit(ctx.platform, &site.tenant_id, request).await {
        Ok(job) => {
            tracing::info!(site_id = %site_id, job_id = %job.job_id, "stale content: re-train queued");
            (
                Outcome::Acted(ACTION),
                Done::default().with("job_id", job.job_id.to_string()),
            )
        }
        // Training already (a tenant's own run refreshes the pages too), or a tenant that may not
        // train now: nothing to do today; the documents stay due and the next interval tries again.
        Err(SubmitError::Job(JobError::AlreadyTraining(job))) => (
            Outcome::NotDue,
            Done::default()
                .with("outcome", "already_training")
                .with("job_id", job.to_string()),
        ),
        Err(SubmitError::Inactive(inactive)) => (
            Outcome::NotDue,
            Done::default().with("outcome", format!("inactive: {:?}", inactive.0)),
        ),
        Err(SubmitError::Tenant(tenants::TenantError::NotFound(_))) => (
            Outcome::NotDue,
            Done::default().with("outcome", "no_tenant"),
        ),
        Err(e) => {
            let _ = marker.release(store, &ctx.token).await;
            return ctx.failure(ACTION, site_id, e);
        }
    };
    match marker.complete(store, ctx.now(), &ctx.token, done).await {
        Ok(()) => outcome,
        Err(e) => ctx.failure(ACTION, site_id, e),
    }
}

/// Every stale site of the day, paged, each handled once.
pub async fn pages(
    ctx: &Ctx<'_>,
    cursor: Option<String>,
    seen: &mut HashSet<String>,
) -> Result<(Vec<SiteId>, Option<String>), StoreError> {
    let page = due::page(
        ctx.platform.store.as_ref(),
        ctx.day,
        keys::prefix::DOC,
        cursor,
    )
    .await?;
    Ok((sites_of(&page.items, seen), page.next))
}
