//! Endpoints: a tenant's registered webhook URLs, the events each wants, and its sealed secret(s).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::WebhookError;
use super::events::EventType;
use super::secret::{SealedSecret, SealingKey, SigningSecret};
use super::target::{TargetError, TargetGuard, parse_url};
use crate::clock::Clock;
use crate::ids::{IdGenerator, TenantId, WebhookId};
use crate::store::{Condition, Item, ItemStore, Query, keys};

/// How long a rotated-out secret keeps signing alongside the new one.
pub const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);
/// The longest description.
pub const MAX_DESCRIPTION: usize = 256;

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub webhook_id: WebhookId,
    pub tenant_id: TenantId,
    pub url: String,
    pub events: Vec<EventType>,
    #[serde(default)]
    pub description: Option<String>,
    pub enabled: bool,
    /// Why it was disabled, when the platform disabled it (failing for three days).
    #[serde(default)]
    pub disabled_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub secret: SealedSecret,
    #[serde(default)]
    pub previous_secret: Option<SealedSecret>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    /// Since when every attempt has failed; cleared by a success.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub failing_since: Option<OffsetDateTime>,
}

impl EndpointRecord {
    /// The secrets that sign a delivery at `now`: the current one, and the previous one during the
    /// rotation overlap.
    pub fn signing_secrets(
        &self,
        key: &SealingKey,
        now: OffsetDateTime,
    ) -> Result<Vec<SigningSecret>, WebhookError> {
        let mut secrets = vec![key.open(&self.tenant_id, &self.webhook_id, &self.secret)?];
        if let (Some(previous), Some(until)) =
            (&self.previous_secret, self.previous_secret_expires_at)
            && now < until
        {
            secrets.push(key.open(&self.tenant_id, &self.webhook_id, previous)?);
        }
        Ok(secrets)
    }

    pub fn wants(&self, event: EventType) -> bool {
        self.enabled && self.events.contains(&event)
    }

    pub fn view(&self) -> Endpoint {
        Endpoint {
            webhook_id: self.webhook_id.clone(),
            url: self.url.clone(),
            events: self.events.clone(),
            description: self.description.clone(),
            enabled: self.enabled,
            disabled_reason: self.disabled_reason.clone(),
            created_at: crate::clock::rfc3339(self.created_at),
            updated_at: crate::clock::rfc3339(self.updated_at),
            previous_secret_expires_at: self
                .previous_secret_expires_at
                .filter(|t| *t > self.updated_at)
                .map(crate::clock::rfc3339),
        }
    }
}

/// An endpoint as the API shows it: never a secret.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Endpoint {
    pub webhook_id: WebhookId,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Set when the platform disabled the endpoint after three days of failed deliveries.
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// While a rotated-out secret still signs: until when.
    pub previous_secret_expires_at: Option<String>,
}

/// `POST /api/webhooks`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// https (http only to loopback in local mode).
    pub url: String,
    /// Event types to receive (at least one).
    pub events: Vec<String>,
    pub description: Option<String>,
}

/// `PATCH /api/webhooks/{webhook_id}`: any subset.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// `true` re-enables an endpoint the platform disabled (and forgets its failures).
    pub enabled: Option<bool>,
}

fn parse_events(raw: &[String]) -> Result<Vec<EventType>, WebhookError> {
    if raw.is_empty() {
        return Err(WebhookError::invalid(
            "events",
            "name at least one event type",
        ));
    }
    let mut events = Vec::with_capacity(raw.len());
    for name in raw {
        let t = EventType::parse(name).map_err(|m| WebhookError::invalid("events", m))?;
        if !events.contains(&t) {
            events.push(t);
        }
    }
    events.sort();
    Ok(events)
}

fn parse_description(raw: Option<String>) -> Result<Option<String>, WebhookError> {
    let Some(d) = raw else { return Ok(None) };
    let d = d.trim().to_string();
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(WebhookError::invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if d.chars().any(char::is_control) {
        return Err(WebhookError::invalid(
            "description",
            "must not contain control characters",
        ));
    }
    Ok((!d.is_empty()).then_some(d))
}

/// Parses and guards a URL. A name that does not resolve yet is accepted (deliveries retry); a name
/// or address the guard refuses is not.
async fn parse_target(raw: &str, guard: &TargetGuard) -> Result<String, WebhookError> {
    let url = parse_url(raw).map_err(|e| WebhookError::invalid("url", e.to_string()))?;
    match guard.check(&url).await {
        Ok(_) | Err(TargetError::Lookup(_)) => Ok(url.to_string()),
        Err(e) => Err(WebhookError::invalid("url", e.to_string())),
    }
}

/// The services' view of what an endpoint operation needs.
pub struct Ports<'a> {
    pub store: &'a dyn ItemStore,
    pub ids: &'a dyn IdGenerator,
    pub clock: &'a dyn Clock,
    pub key: Option<&'a SealingKey>,
    pub guard: &'a TargetGuard,
}

impl Ports<'_> {
    fn key(&self) -> Result<&SealingKey, WebhookError> {
        self.key.ok_or(WebhookError::NotConfigured)
    }
}

fn item(record: &EndpointRecord) -> Result<Item, WebhookError> {
    Ok(Item::from_record(
        keys::webhook(&record.tenant_id, &record.webhook_id),
        record,
    )?)
}

/// Registers an endpoint; returns it with its secret (shown this once).
pub async fn create(
    p: &Ports<'_>,
    tenant: &TenantId,
    new: NewEndpoint,
) -> Result<(EndpointRecord, SigningSecret), WebhookError> {
    let key = p.key()?;
    let url = parse_target(&new.url, p.guard).await?;
    let events = parse_events(&new.events)?;
    let description = parse_description(new.description)?;
    if list(p.store, tenant).await?.len() >= super::MAX_ENDPOINTS_PER_TENANT {
        return Err(WebhookError::TooMany);
    }
    let webhook_id = WebhookId::generate(p.ids);
    let secret = SigningSecret::generate(p.ids);
    let now = p.clock.now();
    let record = EndpointRecord {
        secret: key.seal(p.ids, tenant, &webhook_id, &secret)?,
        webhook_id,
        tenant_id: tenant.clone(),
        url,
        events,
        description,
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
        previous_secret: None,
        previous_secret_expires_at: None,
        failing_since: None,
    };
    p.store.put(item(&record)?, Condition::IfAbsent).await?;
    Ok((record, secret))
}

/// The tenant's endpoints, oldest first.
pub async fn list(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<Vec<EndpointRecord>, WebhookError> {
    let page = store
        .query(
            Query::partition(keys::tenant_partition(tenant))
                .prefix(keys::prefix::WEBHOOK)
                .limit(super::MAX_ENDPOINTS_PER_TENANT * 2),
        )
        .await?;
    page.items
        .iter()
        .map(|i| i.to_record().map_err(WebhookError::from))
        .collect()
}

pub async fn get(
    store: &dyn ItemStore,
    tenant: &TenantId,
    webhook: &WebhookId,
) -> Result<EndpointRecord, WebhookError> {
    match store.get(&keys::webhook(tenant, webhook)).await? {
        Some(item) => Ok(item.to_record()?),
        None => Err(WebhookError::NotFound),
    }
}

/// Writes a changed record, if nobody changed it since it was read.
pub(crate) async fn save(
    store: &dyn ItemStore,
    before: &EndpointRecord,
    after: &EndpointRecord,
) -> Result<(), WebhookError> {
    store
        .put(
            item(after)?,
            Condition::AttributeEquals(
                "updated_at".into(),
                serde_json::to_value(crate::clock::rfc3339(before.updated_at))
                    .expect("strings serialise"),
            ),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::ConditionFailed => WebhookError::NotFound,
            other => other.into(),
        })
}

/// Applies a patch; returns the record before and after (the audit log shows what changed).
pub async fn patch(
    p: &Ports<'_>,
    tenant: &TenantId,
    webhook: &WebhookId,
    patch: EndpointPatch,
) -> Result<(EndpointRecord, EndpointRecord), WebhookError> {
    let before = get(p.store, tenant, webhook).await?;
    let mut after = before.clone();
    if let Some(url) = patch.url {
        after.url = parse_target(&url, p.guard).await?;
    }
    if let Some(events) = patch.events {
        after.events = parse_events(&events)?;
    }
    if patch.description.is_some() {
        after.description = parse_description(patch.description)?;
    }
    if let Some(enabled) = patch.enabled {
        after.enabled = enabled;
        if enabled {
            after.disabled_reason = None;
            after.failing_since = None;
        }
    }
    after.updated_at = p
        .clock
        .now()
        .max(before.updated_at + time::Duration::milliseconds(1));
    save(p.store, &before, &after).await?;
    Ok((before, after))
}

pub async fn delete(
    store: &dyn ItemStore,
    tenant: &TenantId,
    webhook: &WebhookId,
) -> Result<EndpointRecord, WebhookError> {
    let record = get(store, tenant, webhook).await?;
    store
        .delete(&keys::webhook(tenant, webhook), Condition::IfExists)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::ConditionFailed => WebhookError::NotFound,
            other => other.into(),
        })?;
    Ok(record)
}

/// A new secret; the old one keeps signing for [`ROTATION_OVERLAP`].
pub async fn rotate_secret(
    p: &Ports<'_>,
    tenant: &TenantId,
    webhook: &WebhookId,
) -> Result<(EndpointRecord, SigningSecret), WebhookError> {
    let key = p.key()?;
    let before = get(p.store, tenant, webhook).await?;
    let secret = SigningSecret::generate(p.ids);
    let now = p
        .clock
        .now()
        .max(before.updated_at + time::Duration::milliseconds(1));
    let mut after = before.clone();
    after.previous_secret = Some(before.secret.clone());
    after.previous_secret_expires_at = Some(now + ROTATION_OVERLAP);
    after.secret = key.seal(p.ids, tenant, webhook, &secret)?;
    after.updated_at = now;
    save(p.store, &before, &after).await?;
    Ok((after, secret))
}
