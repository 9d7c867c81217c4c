//! Stuck training jobs: a job still queued or running past its deadline (its worker crashed or its
//! messages were lost) is marked failed with a reason, its site unlocked (the site keeps serving its
//! previous index) and the tenant told.

use serde_json::{Value, json};

use super::super::marker::{Claim, Done, Marker};
use super::super::notices::Notice;
use super::{Ctx, Outcome};
use crate::clock::rfc3339;
use crate::ids::JobId;
use crate::sites::{self, SiteError, SiteStatus};
use crate::store::{Condition, StoreError, Write};
use crate::tenants;
use crate::training::jobs::{self, JobStatus, TrainingJob};

pub const ACTION: &str = "stuck_job_failed";

/// The reason a stuck job fails with (also how a re-run recognises a job it failed itself).
pub const REASON: &str = "the training did not finish before its deadline and was stopped";

/// Fails the job and frees its site; `Ok(false)` when the job finished on its own meanwhile.
async fn fail(ctx: &Ctx<'_>, job: &TrainingJob) -> Result<bool, SiteError> {
    let store = ctx.platform.store.as_ref();
    let mut fields = serde_json::Map::new();
    fields.insert("status".into(), json!(JobStatus::Failed));
    fields.insert("error".into(), json!(REASON));
    fields.insert("finished_at".into(), json!(rfc3339(ctx.now())));
    let mut update = jobs::job_update(&job.job_id, fields);
    // Only the state we judged: a worker finishing at this moment wins.
    update.condition = Condition::AttributeEquals("status".into(), json!(job.status));
    let changed = sites::update_site_internal(
        store,
        ctx.platform.clock.as_ref(),
        &job.site_id,
        |s| {
            if s.status == SiteStatus::Training {
                s.status = if s.index_version.is_some() {
                    SiteStatus::Ready
                } else {
                    SiteStatus::Failed
                };
            }
            s.last_training_error = Some(REASON.into());
        },
        vec![Write::Update(update.clone())],
    )
    .await;
    match changed {
        Ok(_) => {}
        Err(SiteError::NotFound) => match store.update(update).await {
            Ok(_) => {}
            Err(StoreError::ConditionFailed) => return Ok(false),
            Err(e) => return Err(e.into()),
        },
        Err(SiteError::Store(StoreError::ConditionFailed)) => return Ok(false),
        Err(e) => return Err(e),
    }
    // The lock may have expired already (then there is nothing to delete).
    match store
        .delete(
            &jobs::lock_key(&job.site_id),
            Condition::AttributeEquals("job_id".into(), Value::from(job.job_id.to_string())),
        )
        .await
    {
        Ok(()) | Err(StoreError::ConditionFailed) => {}
        Err(e) => return Err(e.into()),
    }
    jobs::release_slot(store, job).await;
    Ok(true)
}

/// Acts on one job due record for the context's day.
pub async fn handle(ctx: &Ctx<'_>, job_id: &JobId) -> Outcome {
    let store = ctx.platform.store.as_ref();
    let job = match jobs::load_job(store, job_id).await {
        Ok(Some(job)) => job,
        Ok(None) => return Outcome::NotDue,
        Err(e) => return ctx.failure(ACTION, job_id, e),
    };
    let failed_by_us = job.status == JobStatus::Failed && job.error.as_deref() == Some(REASON);
    let stuck = !job.status.is_finished() && ctx.now() > job.deadline();
    if !stuck && !failed_by_us {
        return Outcome::NotDue;
    }
    let marker = Marker::new(&ctx.day_text, ACTION, job_id);
    match marker.claim(store, ctx.now(), &ctx.token).await {
        Ok(Claim::Mine(_)) => {}
        Ok(Claim::Done) => return Outcome::AlreadyDone,
        Ok(Claim::Busy) => return Outcome::Busy,
        Err(e) => return ctx.failure(ACTION, job_id, e),
    }
    let release = || async {
        let _ = marker.release(store, &ctx.token).await;
    };
    if stuck {
        match fail(ctx, &job).await {
            Ok(true) => {
                tracing::warn!(job_id = %job_id, site_id = %job.site_id, "stuck training job failed")
            }
            Ok(false) => {
                let _ = marker
                    .complete(
                        store,
                        ctx.now(),
                        &ctx.token,
                        Done::default().with("outcome", "finished_meanwhile"),
                    )
                    .await;
                return Outcome::NotDue;
            }
            Err(e) => {
                release().await;
                return ctx.failure(ACTION, job_id, e);
            }
        }
    }
    // Tell the tenant (a failed send leaves the job failed and the marker free: the next run, seeing
    // a job it failed itself, sends the mail).
    let tenant = match tenants::get_tenant(store, &job.tenant_id).await {
        Ok(t) => t,
        Err(e) => {
            release().await;
            return ctx.failure(ACTION, job_id, e);
        }
    };
    let site_name = match sites::find_site(store, &job.site_id).await {
        Ok(Some(site)) => site.name.to_string(),
        Ok(None) => job.site_id.to_string(),
        Err(e) => {
            release().await;
            return ctx.failure(ACTION, job_id, e);
        }
    };
    let mut done = Done::default().with("job_id", job_id.to_string());
    if let Some(to) = tenant
        .billing_email
        .as_deref()
        .and_then(|raw| crate::mail::EmailAddress::parse(raw).ok())
    {
        let notice = Notice::TrainingStuck {
            site_name,
            job_id: job_id.to_string(),
        };
        let mail =
            super::super::notices::render(&notice, &tenant, &ctx.platform.mail_from, to.clone());
        let subject = mail.subject.clone();
        match ctx.platform.mail.send(mail).await {
            Ok(message_id) => {
                done = Done::mail(&tenant.tenant_id, to.as_str(), &message_id, &subject)
                    .with("job_id", job_id.to_string());
            }
            Err(e) => {
                release().await;
                return ctx.failure(ACTION, job_id, e);
            }
        }
    }
    match marker.complete(store, ctx.now(), &ctx.token, done).await {
        Ok(()) => Outcome::Acted(ACTION),
        Err(e) => ctx.failure(ACTION, job_id, e),
    }
}
