//! Tenants (the businesses on the platform), their plans and subscription status.

pub mod api_keys;
pub mod profile;
pub mod roles;
pub mod sessions;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::ids::{IdGenerator, TenantId, string_newtype};
use crate::store::{Condition, Index, ItemStore, Key, Query, StoreError, Update, keys};

/// A plan and what it allows each month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Starter,
    Pro,
    Enterprise,
}

/// The limits that come with a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlanLimits {
    /// Chat answers per calendar month, across the tenant's sites.
    pub monthly_chats: u64,
    /// Embedding tokens per calendar month (training and queries).
    pub monthly_embedding_tokens: u64,
    /// Chat answers per site per UTC day (a runaway widget cannot spend the month in a day).
    pub daily_site_chats: u64,
    /// Most pages one training run may crawl.
    pub training_pages: u32,
    /// Phone receptionist minutes per calendar month.
    pub monthly_call_minutes: u64,
    /// Sites the tenant may create.
    pub sites: u32,
    /// Training jobs queued or running at once, across the tenant's sites.
    pub concurrent_training_jobs: u32,
}

impl Plan {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "starter" => Ok(Plan::Starter),
            "pro" => Ok(Plan::Pro),
            "enterprise" => Ok(Plan::Enterprise),
            other => Err(format!(
                "{other:?} is not a plan (starter, pro, enterprise)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Starter => "starter",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        }
    }

    pub fn limits(self) -> PlanLimits {
        match self {
            Plan::Starter => PlanLimits {
                monthly_chats: 1_000,
                monthly_embedding_tokens: 2_000_000,
                daily_site_chats: 200,
                training_pages: 100,
                monthly_call_minutes: 60,
                sites: 3,
                concurrent_training_jobs: 1,
            },
            Plan::Pro => PlanLimits {
                monthly_chats: 10_000,
                monthly_embedding_tokens: 20_000_000,
                daily_site_chats: 2_000,
                training_pages: 1_000,
                monthly_call_minutes: 600,
                sites: 20,
                concurrent_training_jobs: 3,
            },
            Plan::Enterprise => PlanLimits {
                monthly_chats: 100_000,
                monthly_embedding_tokens: 200_000_000,
                daily_site_chats: 20_000,
                training_pages: 10_000,
                monthly_call_minutes: 6_000,
                sites: 200,
                concurrent_training_jobs: 10,
            },
        }
    }

    /// The plan to suggest when this one runs out.
    pub fn upgrade(self) -> Option<Plan> {
        match self {
            Plan::Starter => Some(Plan::Pro),
            Plan::Pro => Some(Plan::Enterprise),
            Plan::Enterprise => None,
        }
    }
}

/// Where the tenant's subscription stands: Stripe's subscription statuses. The operator may set the
/// first four by hand (`PUT /api/admin/tenants/{id}/subscription`); Stripe's webhook sets any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Trialing,
    PastDue,
    Canceled,
    Unpaid,
    /// The first payment has not completed yet (Stripe gives it 23 hours).
    Incomplete,
    /// The first payment never completed.
    IncompleteExpired,
    Paused,
}

impl SubscriptionStatus {
    /// The statuses an operator may set by hand (the admin route's contract).
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "active" => Ok(Self::Active),
            "trialing" => Ok(Self::Trialing),
            "past_due" => Ok(Self::PastDue),
            "canceled" => Ok(Self::Canceled),
            other => Err(format!(
                "{other:?} is not a subscription status (active, trialing, past_due, canceled)"
            )),
        }
    }

    /// A Stripe subscription's `status`.
    pub fn from_stripe(raw: &str) -> Option<Self> {
        Some(match raw {
            "active" => Self::Active,
            "trialing" => Self::Trialing,
            "past_due" => Self::PastDue,
            "canceled" => Self::Canceled,
            "unpaid" => Self::Unpaid,
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            "paused" => Self::Paused,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Trialing => "trialing",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
            Self::Unpaid => "unpaid",
            Self::Incomplete => "incomplete",
            Self::IncompleteExpired => "incomplete_expired",
            Self::Paused => "paused",
        }
    }

    /// Whether the tenant may use paid features (chat, calls, training) now, grace periods aside.
    pub fn in_good_standing(self) -> bool {
        matches!(self, Self::Active | Self::Trialing)
    }

    /// A subscription that has ended for good: only a new subscription brings the tenant back.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Canceled | Self::IncompleteExpired)
    }
}

/// The languages Kotoba mails and speaks to a tenant in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = TenantLanguage)]
pub enum Language {
    Ja,
    #[default]
    En,
    Ko,
}

impl Language {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "ja" => Ok(Self::Ja),
            "en" => Ok(Self::En),
            "ko" => Ok(Self::Ko),
            other => Err(format!("{other:?} is not a language (ja, en, ko)")),
        }
    }
}

string_newtype!(
    /// A business's display name: 1 to 200 characters, no control characters.
    pub TenantName
);

impl TenantName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let n = s.chars().count();
        if n == 0 || n > 200 {
            return Err("must be 1 to 200 characters".into());
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(s.to_string()))
    }
}

/// A tenant as stored and shown.
///
/// Fields added after the first release carry `serde(default)` so older rows still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    pub tenant_id: TenantId,
    /// Read back leniently (`store::stored`): validated when written.
    #[serde(deserialize_with = "crate::store::stored::lenient")]
    pub name: TenantName,
    pub plan: Plan,
    pub subscription_status: SubscriptionStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// Set once the tenant has a Stripe customer; from then on Stripe's webhook owns the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_subscription_id: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "time::serde::rfc3339::option::serialize",
        deserialize_with = "crate::store::stored::lenient_time_option"
    )]
    pub current_period_end: Option<time::OffsetDateTime>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "time::serde::rfc3339::option::serialize",
        deserialize_with = "crate::store::stored::lenient_time_option"
    )]
    pub trial_ends_at: Option<time::OffsetDateTime>,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    /// When the subscription went `past_due`: the grace period counts from here.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "time::serde::rfc3339::option::serialize",
        deserialize_with = "crate::store::stored::lenient_time_option"
    )]
    pub past_due_since: Option<time::OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_email: Option<String>,
    #[serde(default)]
    pub language: Language,
    /// An IANA time zone name (`Asia/Tokyo`), for dates in mail.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_timezone() -> String {
    "UTC".into()
}

/// Why a tenant may not spend money now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inactive(pub SubscriptionStatus);

impl Tenant {
    /// Whether the subscription lets the tenant use what costs money (chat, training, calls) at `now`.
    ///
    /// Trialing and active pass; so does `incomplete` (the first payment is being confirmed; Stripe
    /// expires it within a day). `past_due` passes for `grace` after Stripe reported it (a tenant whose
    /// status an operator set by hand has no such date and keeps today's rule: refused). `unpaid`,
    /// `canceled`, `incomplete_expired` and `paused` are refused.
    pub fn standing(
        &self,
        now: time::OffsetDateTime,
        grace: std::time::Duration,
    ) -> Result<(), Inactive> {
        use SubscriptionStatus::*;
        match self.subscription_status {
            Active | Trialing | Incomplete => Ok(()),
            PastDue => {
                let since = self.past_due_since;
                // A grace period that would end past the calendar has not ended.
                let in_grace = |since: time::OffsetDateTime| {
                    time::Duration::try_from(grace)
                        .ok()
                        .and_then(|grace| since.checked_add(grace))
                        .is_none_or(|end| now < end)
                };
                match since {
                    Some(since) if in_grace(since) => Ok(()),
                    _ => Err(Inactive(PastDue)),
                }
            }
            status @ (Canceled | Unpaid | IncompleteExpired | Paused) => Err(Inactive(status)),
        }
    }
}

pub fn tenant_key(tenant: &TenantId) -> Key {
    keys::tenant(tenant)
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant {0} not found")]
    NotFound(TenantId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a tenant (new tenants start `trialing`).
pub async fn create_tenant(
    store: &dyn ItemStore,
    ids: &dyn IdGenerator,
    clock: &dyn Clock,
    name: TenantName,
    plan: Plan,
) -> Result<Tenant, TenantError> {
    let tenant = Tenant {
        tenant_id: TenantId::generate(ids),
        name,
        plan,
        subscription_status: SubscriptionStatus::Trialing,
        created_at: clock.now(),
        stripe_customer_id: None,
        stripe_subscription_id: None,
        current_period_end: None,
        trial_ends_at: None,
        cancel_at_period_end: false,
        past_due_since: None,
        billing_email: None,
        language: Language::default(),
        timezone: default_timezone(),
    };
    let (pk, sk) = keys::tenant_listing(&tenant.tenant_id);
    let item = crate::store::Item::from_record(tenant_key(&tenant.tenant_id), &tenant)?.with_index(
        Index::ByTenant,
        pk,
        sk,
    );
    store.put(item, Condition::IfAbsent).await?;
    // The plan's free credits for this month, so a new tenant can use AI actions at once.
    crate::credits::account::open(store, &tenant.tenant_id, plan, tenant.created_at)
        .await
        .map_err(|e| {
            StoreError::Backend(anyhow::Error::new(e).context("opening the credit account"))
        })?;
    Ok(tenant)
}

/// A page of all tenants, oldest first (operator views).
pub async fn list_tenants(
    store: &dyn ItemStore,
    cursor: Option<String>,
) -> Result<(Vec<Tenant>, Option<String>), StoreError> {
    let page = store
        .query(
            Query::on(Index::ByTenant, keys::ALL_TENANTS)
                .prefix(keys::prefix::TENANT)
                .limit(100)
                .after(cursor),
        )
        .await?;
    let tenants = crate::store::stored::readable::<Tenant>(&page.items);
    Ok((tenants, page.next))
}

pub async fn get_tenant(store: &dyn ItemStore, tenant: &TenantId) -> Result<Tenant, TenantError> {
    match store.get(&tenant_key(tenant)).await? {
        Some(item) => Ok(item.to_record()?),
        None => Err(TenantError::NotFound(tenant.clone())),
    }
}

pub async fn set_subscription_status(
    store: &dyn ItemStore,
    tenant: &TenantId,
    status: SubscriptionStatus,
) -> Result<Tenant, TenantError> {
    let status_value =
        serde_json::to_value(status).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let update = Update::new(tenant_key(tenant))
        .set("subscription_status", status_value)
        .when(Condition::IfExists);
    match store.update(update).await {
        Ok(item) => Ok(item.to_record()?),
        Err(StoreError::ConditionFailed) => Err(TenantError::NotFound(tenant.clone())),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_grow() {
        assert_eq!(Plan::parse("pro").unwrap(), Plan::Pro);
        assert!(Plan::parse("gold").is_err());
        let (s, p, e) = (
            Plan::Starter.limits(),
            Plan::Pro.limits(),
            Plan::Enterprise.limits(),
        );
        assert!(s.monthly_chats < p.monthly_chats && p.monthly_chats < e.monthly_chats);
        assert!(s.training_pages < p.training_pages && p.training_pages < e.training_pages);
        assert_eq!(Plan::Starter.upgrade(), Some(Plan::Pro));
        assert_eq!(Plan::Enterprise.upgrade(), None);
    }

    #[test]
    fn statuses_in_good_standing() {
        assert!(
            SubscriptionStatus::parse("trialing")
                .unwrap()
                .in_good_standing()
        );
        assert!(
            !SubscriptionStatus::parse("past_due")
                .unwrap()
                .in_good_standing()
        );
        assert!(SubscriptionStatus::parse("paused").is_err());
    }

    #[test]
    fn tenant_names_are_checked() {
        assert_eq!(
            String::from(TenantName::parse("  株式会社ことば  ").unwrap()),
            "株式会社ことば"
        );
        assert!(TenantName::parse(" ").is_err());
        assert!(TenantName::parse("a\u{0007}b").is_err());
        assert!(TenantName::parse(&"x".repeat(201)).is_err());
    }
}

#[cfg(test)]
mod standing_tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;

    fn tenant(status: SubscriptionStatus, past_due_since: Option<&str>) -> Tenant {
        Tenant {
            tenant_id: TenantId::parse("ten_00000000000000000000000001").unwrap(),
            name: TenantName::parse("x").unwrap(),
            plan: Plan::Starter,
            subscription_status: status,
            created_at: time::macros::datetime!(2026-01-01 00:00 UTC),
            stripe_customer_id: None,
            stripe_subscription_id: None,
            current_period_end: None,
            trial_ends_at: None,
            cancel_at_period_end: false,
            past_due_since: past_due_since.map(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .unwrap()
            }),
            billing_email: None,
            language: Language::Ja,
            timezone: "Asia/Tokyo".into(),
        }
    }

    #[test]
    fn who_may_spend() {
        let now = datetime!(2026-12-10 00:00 UTC);
        let week = Duration::from_secs(7 * 86_400);
        use SubscriptionStatus::*;
        for ok in [Active, Trialing, Incomplete] {
            assert!(tenant(ok, None).standing(now, week).is_ok(), "{ok:?}");
        }
        for refused in [Canceled, Unpaid, IncompleteExpired, Paused] {
            assert_eq!(
                tenant(refused, None).standing(now, week),
                Err(Inactive(refused))
            );
        }
        assert!(
            tenant(PastDue, Some("2026-12-04T00:00:00Z"))
                .standing(now, week)
                .is_ok(),
            "in grace"
        );
        assert!(
            tenant(PastDue, Some("2026-12-03T00:00:00Z"))
                .standing(now, week)
                .is_err(),
            "grace over"
        );
        assert!(
            tenant(PastDue, None).standing(now, week).is_err(),
            "set by hand: no grace"
        );
    }

    /// Found while writing the Stripe event fuzz target: past due since the calendar's last second, the grace
    /// period's end overflowed (a panic on every paid request). It has simply not ended.
    #[test]
    fn a_grace_period_past_the_calendar_has_not_ended() {
        let now = datetime!(2026-12-10 00:00 UTC);
        let week = Duration::from_secs(7 * 86_400);
        let t = tenant(SubscriptionStatus::PastDue, Some("9999-12-31T23:59:59Z"));
        assert!(t.standing(now, week).is_ok());
        assert!(t.standing(now, Duration::MAX).is_ok());
        let view = crate::billing::BillingView::of(&t, week);
        assert_eq!(view.grace_period_ends_at, None);
    }

    #[test]
    fn older_rows_read_with_defaults() {
        let old = serde_json::json!({"tenant_id": "ten_00000000000000000000000001", "name": "x",
            "plan": "pro", "subscription_status": "active", "created_at": "2026-01-01T00:00:00Z"});
        let t: Tenant = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(
            (t.language, t.timezone.as_str(), t.cancel_at_period_end),
            (Language::En, "UTC", false)
        );
        // The creation time reads typed and writes back as the same text.
        assert_eq!(t.created_at, time::macros::datetime!(2026-01-01 00:00 UTC));
        assert_eq!(
            serde_json::to_value(&t).unwrap()["created_at"],
            old["created_at"]
        );
        assert_eq!(
            SubscriptionStatus::from_stripe("incomplete_expired"),
            Some(SubscriptionStatus::IncompleteExpired)
        );
        assert_eq!(SubscriptionStatus::from_stripe("nope"), None);
    }
}
