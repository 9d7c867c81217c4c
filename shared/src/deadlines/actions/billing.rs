//! Subscription deadlines: trial ending (7, 3, 1 days), renewal in 7 days, payment failed (day 1 and
//! 5, with the grace period's end), and the suspension notice when the grace period is over.
//!
//! Found through the tenant's billing due records (written by the Stripe webhook when the state
//! changes); what is due is decided from the tenant's state now, so a trial that converted or a
//! payment that went through in between sends nothing.

use time::Date;

use super::super::due::{self, PAYMENT_FAILED_DAYS, TRIAL_REMINDER_DAYS};
use super::super::notices::Notice;
use super::{Ctx, Outcome};
use crate::ids::TenantId;
use crate::tenants::{self, SubscriptionStatus, Tenant, TenantError};

pub const TRIAL_ENDING: &str = "trial_ending";
pub const RENEWAL: &str = "renewal_reminder";
pub const PAYMENT_FAILED: &str = "payment_failed";
pub const SUSPENDED: &str = "subscription_suspended";

/// The marker names (one per reminder day, so each reminder is its own item).
fn trial_action(days: i64) -> Option<&'static str> {
    match days {
        7 => Some("trial_ending_7"),
        3 => Some("trial_ending_3"),
        1 => Some("trial_ending_1"),
        _ => None,
    }
}

fn payment_action(day: i64) -> Option<&'static str> {
    match day {
        1 => Some("payment_failed_1"),
        5 => Some("payment_failed_5"),
        _ => None,
    }
}

/// What the tenant's state makes due on `day` (marker name and notice).
pub fn due_notices(
    tenant: &Tenant,
    day: Date,
    grace: std::time::Duration,
) -> Vec<(&'static str, Notice)> {
    let mut due = Vec::new();
    let days_between = |a: Date, b: Date| (b - a).whole_days();
    match tenant.subscription_status {
        SubscriptionStatus::Trialing => {
            if let Some(end) = tenant.trial_ends_at {
                let left = days_between(day, end.date());
                if TRIAL_REMINDER_DAYS.contains(&left)
                    && let Some(action) = trial_action(left)
                {
                    due.push((
                        action,
                        Notice::TrialEnding {
                            days_left: left,
                            ends_at: end,
                        },
                    ));
                }
            }
        }
        SubscriptionStatus::Active if !tenant.cancel_at_period_end => {
            if let Some(end) = tenant.current_period_end
                && days_between(day, end.date()) == due::RENEWAL_REMINDER_DAYS
            {
                due.push((RENEWAL, Notice::RenewalSoon { renews_at: end }));
            }
        }
        SubscriptionStatus::PastDue => {
            let since = tenant.past_due_since;
            if let (Some(since), Some(grace_end)) = (since, due::grace_end(tenant, grace)) {
                let n = days_between(since.date(), day);
                let suspend_on = due::suspension_day(tenant, grace);
                if PAYMENT_FAILED_DAYS.contains(&n)
                    && suspend_on.is_none_or(|s| day < s)
                    && let Some(action) = payment_action(n)
                {
                    due.push((
                        action,
                        Notice::PaymentFailed {
                            day: n,
                            grace_ends_at: grace_end,
                        },
                    ));
                }
                if suspend_on == Some(day) {
                    due.push((
                        SUSPENDED,
                        Notice::Suspended {
                            grace_ended_at: grace_end,
                        },
                    ));
                }
            }
        }
        _ => {}
    }
    due
}

/// Acts on one tenant's billing due record for the context's day.
pub async fn handle(ctx: &Ctx<'_>, tenant_id: &TenantId) -> Vec<Outcome> {
    let store = ctx.platform.store.as_ref();
    let tenant = match tenants::get_tenant(store, tenant_id).await {
        Ok(t) => t,
        Err(TenantError::NotFound(_)) => return vec![Outcome::NotDue],
        Err(e) => return vec![ctx.failure("billing", tenant_id, e)],
    };
    let grace = ctx.platform.config.billing.past_due_grace;
    let due = due_notices(&tenant, ctx.day, grace);
    if due.is_empty() {
        return vec![Outcome::NotDue];
    }
    let mut outcomes = Vec::new();
    for (action, notice) in due {
        outcomes.push(ctx.mail_once(action, &tenant, notice).await);
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn tenant(status: &str) -> Tenant {
        serde_json::from_value(serde_json::json!({
            "tenant_id": "ten_1", "name": "海風", "plan": "starter",
            "subscription_status": status, "created_at": "2026-01-01T00:00:00Z",
            "trial_ends_at": "2026-03-20T15:00:00Z",
            "current_period_end": "2026-04-01T00:00:00Z",
            "past_due_since": "2026-03-02T10:00:00Z",
        }))
        .unwrap()
    }

    fn actions(t: &Tenant, day: Date) -> Vec<&'static str> {
        due_notices(t, day, std::time::Duration::from_secs(7 * 86_400))
            .into_iter()
            .map(|(a, _)| a)
            .collect::<Vec<_>>()
    }

    #[test]
    fn reminders_fall_on_their_days_only() {
        let trial = tenant("trialing");
        assert_eq!(actions(&trial, date!(2026 - 03 - 13)), ["trial_ending_7"]);
        assert_eq!(actions(&trial, date!(2026 - 03 - 17)), ["trial_ending_3"]);
        assert_eq!(actions(&trial, date!(2026 - 03 - 19)), ["trial_ending_1"]);
        assert!(actions(&trial, date!(2026 - 03 - 18)).is_empty());
        assert_eq!(actions(&tenant("active"), date!(2026 - 03 - 25)), [RENEWAL]);
        let late = tenant("past_due");
        assert_eq!(actions(&late, date!(2026 - 03 - 03)), ["payment_failed_1"]);
        assert_eq!(actions(&late, date!(2026 - 03 - 07)), ["payment_failed_5"]);
        assert_eq!(actions(&late, date!(2026 - 03 - 10)), [SUSPENDED]);
        assert!(actions(&late, date!(2026 - 03 - 09)).is_empty());
        // Paid in between: the day-5 record finds an active tenant and sends nothing.
        assert!(actions(&tenant("active"), date!(2026 - 03 - 07)).is_empty());
    }
}
