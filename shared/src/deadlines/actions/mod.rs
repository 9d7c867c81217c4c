//! The deadline job's actions, one module each: what falls due, how it is found, what is done.
//!
//! Every action works through one day's due records (or, for summaries, the previous day's activity)
//! and answers one [`Outcome`] per item; the run adds them up. Each item is guarded by its own
//! [`Marker`](super::marker::Marker), so actions never depend on each other.

pub mod billing;
pub mod content;
pub mod credits;
pub mod stuck;
pub mod summary;

use time::{Date, OffsetDateTime};

use super::marker::{Claim, Done, Marker};
use super::notices::{self, Notice};
use crate::Platform;
use crate::mail::EmailAddress;
use crate::tenants::Tenant;

/// What one run knows while it works on one day.
pub struct Ctx<'a> {
    pub platform: &'a Platform,
    pub day: Date,
    pub day_text: String,
    /// This run's claim token.
    pub token: String,
}

impl Ctx<'_> {
    pub fn now(&self) -> OffsetDateTime {
        self.platform.clock.now()
    }
}

/// An item's failure, reported and retried by the next run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Failure {
    pub date: String,
    pub action: String,
    pub subject: String,
    pub message: String,
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Acted on it, counted under this action name.
    Acted(&'static str),
    /// An earlier run did it already.
    AlreadyDone,
    /// Another run is on it right now.
    Busy,
    /// Nothing (no longer) due, or nothing to do (reason, for the log).
    NotDue,
    Failed(Failure),
}

impl Ctx<'_> {
    pub fn failure(
        &self,
        action: &str,
        subject: impl std::fmt::Display,
        error: impl std::fmt::Display,
    ) -> Outcome {
        let failure = Failure {
            date: self.day_text.clone(),
            action: action.to_string(),
            subject: subject.to_string(),
            message: format!("{error:#}"),
        };
        tracing::warn!(
            date = failure.date,
            action,
            subject = failure.subject,
            error = failure.message,
            "deadline action failed; the next run retries it"
        );
        Outcome::Failed(failure)
    }

    /// Claims the marker, mails the notice to the tenant's billing email, and completes the marker with
    /// the send's record; a failed send releases it so the next run tries again.
    pub async fn mail_once(
        &self,
        action: &'static str,
        tenant: &Tenant,
        notice: Notice,
    ) -> Outcome {
        let Some(to) = tenant
            .billing_email
            .as_deref()
            .and_then(|raw| EmailAddress::parse(raw).ok())
        else {
            tracing::info!(tenant = %tenant.tenant_id, action, "no billing email; nothing sent");
            return Outcome::NotDue;
        };
        let store = self.platform.store.as_ref();
        let marker = Marker::new(&self.day_text, action, &tenant.tenant_id);
        match marker.claim(store, self.now(), &self.token).await {
            Ok(Claim::Mine(_)) => {}
            Ok(Claim::Done) => return Outcome::AlreadyDone,
            Ok(Claim::Busy) => return Outcome::Busy,
            Err(e) => return self.failure(action, &tenant.tenant_id, e),
        }
        let mail = notices::render(&notice, tenant, &self.platform.mail_from, to.clone());
        let subject = mail.subject.clone();
        match self.platform.mail.send(mail).await {
            Ok(message_id) => {
                let done = Done::mail(&tenant.tenant_id, to.as_str(), &message_id, &subject);
                match marker.complete(store, self.now(), &self.token, done).await {
                    Ok(()) => {
                        tracing::info!(tenant = %tenant.tenant_id, action, to = to.as_str(), message_id, "deadline mail sent");
                        Outcome::Acted(action_group(action))
                    }
                    // Sent, but not recorded: the claim stays and lapses; reported so an operator sees it.
                    Err(e) => self.failure(action, &tenant.tenant_id, e),
                }
            }
            Err(e) => {
                if let Err(release) = marker.release(store, &self.token).await {
                    tracing::error!(error = %release, "releasing a failed mail's marker failed; it lapses");
                }
                self.failure(action, &tenant.tenant_id, e)
            }
        }
    }
}

/// The report's count a marker's action name falls under (`trial_ending_3` → `trial_ending`).
pub fn action_group(action: &'static str) -> &'static str {
    for group in [
        billing::TRIAL_ENDING,
        billing::RENEWAL,
        billing::PAYMENT_FAILED,
    ] {
        if action.starts_with(group) {
            return group;
        }
    }
    action
}
