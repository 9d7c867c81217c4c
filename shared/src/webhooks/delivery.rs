//! The worker's side: fan an event out to the endpoints that want it, attempt each delivery when it is
//! due, log every attempt, retry with backoff under the same `webhook-id`, give up (and disable the
//! endpoint, and tell the tenant) after three days of failures. Also `replay`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::WebhookError;
use super::backoff;
use super::endpoints::{self, EndpointRecord};
use super::events::{Event, EventType, Message};
use super::secret::SealingKey;
use super::signing;
use super::target::{TargetGuard, parse_url};
use crate::clock::{Clock, rfc3339};
use crate::ids::{DeliveryId, EventId, IdGenerator, TenantId, WebhookId};
use crate::mail::{EmailAddress, Mailer};
use crate::queue::{JobQueue, MAX_VISIBILITY};
use crate::store::{Condition, Item, ItemStore, Query, StoreError, keys};

/// How much of a response body the log keeps.
pub const RESPONSE_EXCERPT_BYTES: usize = 1024;
/// How many attempts a delivery's log keeps (the count goes on).
pub const MAX_LOGGED_ATTEMPTS: usize = 30;
/// How long deliveries (and their logs) are kept.
pub const RETENTION: time::Duration = time::Duration::days(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; `next_attempt_at` says when it is tried.
    Pending,
    Delivered,
    /// Given up (three days of failures, or the endpoint is gone or disabled).
    Failed,
}

/// One attempt, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// RFC 3339.
    pub at: String,
    /// The receiver's status, when it answered.
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// The first 1 KB of the answer.
    pub response_body: String,
    /// Why there is no (good) answer: refused by the SSRF guard, timed out, connection failed …
    pub error: Option<String>,
    /// When the next attempt is due (RFC 3339), if there is one.
    pub next_retry_at: Option<String>,
    /// `replay` when a replay asked for it.
    #[serde(default)]
    pub trigger: Option<String>,
}

/// One event on its way to one endpoint, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Also the `webhook-id` header: the same on every attempt.
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    /// RFC 3339.
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub attempt_count: u32,
    pub attempts: Vec<Attempt>,
    /// The exact body sent (and signed).
    pub payload: String,
}

/// What the worker needs besides the log (not shown by the API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct DeliveryState {
    tenant_id: Option<TenantId>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    first_attempt_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    due_at: Option<OffsetDateTime>,
    /// A replay asked for the next attempt (the log marks it).
    #[serde(default)]
    replay: bool,
}

/// The stored shape: the view plus the worker's state, flat.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    view: Delivery,
    #[serde(flatten)]
    state: DeliveryState,
}

impl Stored {
    fn from_item(item: &Item) -> Result<Self, StoreError> {
        item.to_record()
    }

    fn to_item(&self) -> Result<Item, StoreError> {
        Ok(Item::from_record(
            keys::delivery(&self.view.webhook_id, &self.view.delivery_id),
            self,
        )?
        .expiring_at((self.created() + RETENTION).unix_timestamp()))
    }

    fn created(&self) -> OffsetDateTime {
        OffsetDateTime::parse(
            &self.view.created_at,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// The delivery id of an event at an endpoint: derived, so a redelivered event makes no second
/// delivery, and time-ordered by the event.
pub fn delivery_id(event: &EventId, webhook: &WebhookId) -> DeliveryId {
    let e = event.as_str().trim_start_matches(EventId::PREFIX);
    let w = webhook.as_str().trim_start_matches(WebhookId::PREFIX);
    DeliveryId::parse(&format!("{}{e}{w}", DeliveryId::PREFIX)).expect("id characters")
}

/// Everything the worker needs; built once per process.
pub struct Deliverer {
    pub store: Arc<dyn ItemStore>,
    pub queue: Arc<dyn JobQueue>,
    pub mail: Arc<dyn Mailer>,
    pub mail_from: EmailAddress,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
    pub key: Option<SealingKey>,
    pub guard: TargetGuard,
    pub client: reqwest::Client,
    /// Draws the backoff jitter (tests fix it).
    pub jitter: fn() -> f64,
}

/// What became of a queue message.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Finished with: delete it.
    Done,
    /// Leave it; it comes back when due (its visibility was set to that).
    Later,
    /// Something failed on our side; redeliver after the queue's visibility timeout.
    Retry(String),
}

impl Deliverer {
    /// Handles one queue message (`receipt` lets a not-yet-due message be hidden until it is due).
    pub async fn process(&self, body: &str, receipt: &str) -> Disposition {
        let message: Message = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => {
                // A body no version of us wrote: retrying cannot help.
                tracing::error!(error = %e, "unreadable webhook message dropped");
                return Disposition::Done;
            }
        };
        let result = match message {
            Message::Event {
                tenant_id,
                event_id,
                event,
                only,
            } => {
                self.fan_out(&tenant_id, &event_id, &event, only.as_ref())
                    .await
            }
            Message::Attempt {
                tenant_id,
                webhook_id,
                delivery_id,
            } => {
                self.attempt(&tenant_id, &webhook_id, &delivery_id, receipt)
                    .await
            }
            // The worker pays top-ups itself before the deliverer sees a message; a deliverer alone
            // (no Stripe key) leaves it for the queue to hand to a worker.
            Message::AutoTopUp { tenant_id, .. } => Ok(Disposition::Retry(format!(
                "the automatic top-up of {tenant_id} needs the worker"
            ))),
        };
        result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "webhook message failed; it will be redelivered");
            Disposition::Retry(e.to_string())
        })
    }

    /// One delivery per endpoint that wants the event, each queued for its first attempt.
    async fn fan_out(
        &self,
        tenant: &TenantId,
        event_id: &EventId,
        event: &Event,
        only: Option<&WebhookId>,
    ) -> Result<Disposition, WebhookError> {
        let endpoints = endpoints::list(self.store.as_ref(), tenant).await?;
        let now = self.clock.now();
        let body = serde_json::to_string(event).expect("events serialise");
        for endpoint in endpoints {
            let wanted = match only {
                Some(id) => &endpoint.webhook_id == id,
                None => endpoint.wants(event.event_type),
            };
            if !wanted {
                continue;
            }
            let delivery = Stored {
                view: Delivery {
                    delivery_id: delivery_id(event_id, &endpoint.webhook_id),
                    webhook_id: endpoint.webhook_id.clone(),
                    event_type: event.event_type,
                    status: DeliveryStatus::Pending,
                    created_at: rfc3339(now),
                    next_attempt_at: Some(rfc3339(now)),
                    attempt_count: 0,
                    attempts: Vec::new(),
                    payload: body.clone(),
                },
                state: DeliveryState {
                    tenant_id: Some(tenant.clone()),
                    first_attempt_at: None,
                    due_at: Some(now),
                    replay: false,
                },
            };
            match self
                .store
                .put(delivery.to_item()?, Condition::IfAbsent)
                .await
            {
                // Already made by an earlier run of this message: queue it again, attempts are
                // idempotent on the delivery's state.
                Ok(()) | Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
            self.queue_attempt(tenant, &delivery.view).await?;
        }
        Ok(Disposition::Done)
    }

    async fn queue_attempt(&self, tenant: &TenantId, d: &Delivery) -> Result<(), WebhookError> {
        let message = Message::Attempt {
            tenant_id: tenant.clone(),
            webhook_id: d.webhook_id.clone(),
            delivery_id: d.delivery_id.clone(),
        };
        self.queue.send(&message.to_body()).await?;
        Ok(())
    }

    async fn attempt(
        &self,
        tenant: &TenantId,
        webhook: &WebhookId,
        delivery_id: &DeliveryId,
        receipt: &str,
    ) -> Result<Disposition, WebhookError> {
        let Some(item) = self
            .store
            .get(&keys::delivery(webhook, delivery_id))
            .await?
        else {
            return Ok(Disposition::Done);
        };
        let mut delivery = Stored::from_item(&item)?;
        if delivery.state.tenant_id.as_ref() != Some(tenant)
            || delivery.view.status != DeliveryStatus::Pending
        {
            return Ok(Disposition::Done);
        }
        let now = self.clock.now();
        if let Some(due) = delivery.state.due_at
            && due > now
        {
            // SQS delays end at 15 minutes and visibility at 12 hours: hide it until due, or as long
            // as the queue allows and look again then.
            let wait = Duration::try_from(due - now)
                .unwrap_or_default()
                .min(MAX_VISIBILITY);
            self.queue.change_visibility(receipt, wait).await?;
            return Ok(Disposition::Later);
        }
        let endpoint = match endpoints::get(self.store.as_ref(), tenant, webhook).await {
            Ok(e) => Some(e),
            Err(WebhookError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let Some(endpoint) =
            endpoint.filter(|e| e.enabled || delivery.view.event_type == EventType::Ping)
        else {
            delivery.view.status = DeliveryStatus::Failed;
            delivery.view.next_attempt_at = None;
            delivery.state.due_at = None;
            self.save(&item, &delivery).await?;
            return Ok(Disposition::Done);
        };
        let trigger = std::mem::take(&mut delivery.state.replay).then(|| "replay".to_string());
        let (status_code, response_body, error, latency_ms) =
            self.send(&endpoint, &delivery, now).await;
        let delivered = error.is_none() && status_code.is_some_and(|s| (200..300).contains(&s));
        let first = *delivery.state.first_attempt_at.get_or_insert(now);
        delivery.view.attempt_count += 1;
        let next = if delivered {
            None
        } else {
            backoff::next_attempt(first, now, delivery.view.attempt_count, (self.jitter)())
        };
        delivery.view.status = match (delivered, next) {
            (true, _) => DeliveryStatus::Delivered,
            (false, Some(_)) => DeliveryStatus::Pending,
            (false, None) => DeliveryStatus::Failed,
        };
        delivery.state.due_at = next;
        delivery.view.next_attempt_at = next.map(rfc3339);
        delivery.view.attempts.push(Attempt {
            attempt: delivery.view.attempt_count,
            at: rfc3339(now),
            status_code,
            latency_ms,
            response_body,
            error,
            next_retry_at: next.map(rfc3339),
            trigger,
        });
        if delivery.view.attempts.len() > MAX_LOGGED_ATTEMPTS {
            let extra = delivery.view.attempts.len() - MAX_LOGGED_ATTEMPTS;
            delivery.view.attempts.drain(..extra);
        }
        match self.save(&item, &delivery).await {
            Ok(()) => {}
            // Another worker recorded this attempt first (a duplicate message): its outcome stands.
            Err(WebhookError::Store(StoreError::ConditionFailed)) => return Ok(Disposition::Done),
            Err(e) => return Err(e),
        }
        self.track_endpoint(endpoint, delivered, now).await?;
        match next {
            Some(due) => {
                let wait = Duration::try_from(due - now)
                    .unwrap_or_default()
                    .min(MAX_VISIBILITY);
                self.queue.change_visibility(receipt, wait).await?;
                Ok(Disposition::Later)
            }
            None => Ok(Disposition::Done),
        }
    }

    /// Writes the delivery if nobody recorded an attempt since it was read.
    async fn save(&self, read: &Item, delivery: &Stored) -> Result<(), WebhookError> {
        let count = read
            .attributes
            .get("attempt_count")
            .cloned()
            .unwrap_or_default();
        let mut item = delivery.to_item()?;
        item.expires_at = read.expires_at.or(item.expires_at);
        self.store
            .put(
                item,
                Condition::AttributeEquals("attempt_count".into(), count),
            )
            .await
            .map_err(WebhookError::from)
    }

    /// Signs and posts one attempt. Returns (status, first 1 KB of the answer, error, latency).
    async fn send(
        &self,
        endpoint: &EndpointRecord,
        delivery: &Stored,
        now: OffsetDateTime,
    ) -> (Option<u16>, String, Option<String>, u64) {
        let started = Instant::now();
        let elapsed = |s: Instant| s.elapsed().as_millis() as u64;
        let url = match parse_url(&endpoint.url) {
            Ok(u) => u,
            Err(e) => return (None, String::new(), Some(e.to_string()), 0),
        };
        // Checked again at every attempt: DNS may have changed since the endpoint was created.
        if let Err(e) = self.guard.check(&url).await {
            return (None, String::new(), Some(e.to_string()), elapsed(started));
        }
        let Some(key) = &self.key else {
            return (
                None,
                String::new(),
                Some("webhooks are not configured".into()),
                0,
            );
        };
        let secrets = match endpoint.signing_secrets(key, now) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(webhook_id = %endpoint.webhook_id, error = %e, "signing secret unreadable");
                return (None, String::new(), Some("signing failed".into()), 0);
            }
        };
        let timestamp = now.unix_timestamp();
        let id = delivery.view.delivery_id.as_str();
        let signature = signing::signature_header(&secrets, id, timestamp, &delivery.view.payload);
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signing::ID_HEADER, id)
            .header(signing::TIMESTAMP_HEADER, timestamp.to_string())
            .header(signing::SIGNATURE_HEADER, signature)
            .body(delivery.view.payload.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return (None, String::new(), Some(describe(e)), elapsed(started)),
        };
        let status = response.status().as_u16();
        let mut excerpt = Vec::new();
        let mut error = None;
        while excerpt.len() < RESPONSE_EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    error = Some(describe(e));
                    break;
                }
            }
        }
        excerpt.truncate(RESPONSE_EXCERPT_BYTES);
        let text = String::from_utf8_lossy(&excerpt).into_owned();
        (Some(status), text, error, elapsed(started))
    }

    /// Keeps the endpoint's failure streak; after three days of nothing but failures it is disabled
    /// and the tenant told.
    async fn track_endpoint(
        &self,
        endpoint: EndpointRecord,
        delivered: bool,
        now: OffsetDateTime,
    ) -> Result<(), WebhookError> {
        let mut after = endpoint.clone();
        if delivered {
            if endpoint.failing_since.is_none() {
                return Ok(());
            }
            after.failing_since = None;
        } else {
            let since = *after.failing_since.get_or_insert(now);
            let give_up = time::Duration::try_from(backoff::GIVE_UP_AFTER).expect("fits");
            if now - since >= give_up && after.enabled {
                after.enabled = false;
                after.disabled_reason = Some(format!(
                    "every delivery failed from {} to {}",
                    rfc3339(since),
                    rfc3339(now)
                ));
            } else if endpoint.failing_since.is_some() {
                return Ok(());
            }
        }
        after.updated_at = now.max(endpoint.updated_at + time::Duration::milliseconds(1));
        match endpoints::save(self.store.as_ref(), &endpoint, &after).await {
            Ok(()) => {}
            // Changed by the tenant meanwhile (or deleted): their change wins; the next failure counts.
            Err(WebhookError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        }
        if endpoint.enabled && !after.enabled {
            self.tell_disabled(&after).await;
        }
        Ok(())
    }

    async fn tell_disabled(&self, endpoint: &EndpointRecord) {
        tracing::warn!(tenant_id = %endpoint.tenant_id, webhook_id = %endpoint.webhook_id, "webhook endpoint disabled after three days of failures");
        let tenant = match crate::tenants::get_tenant(self.store.as_ref(), &endpoint.tenant_id)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "reading the tenant to tell about a disabled webhook");
                return;
            }
        };
        let Some(to) = tenant
            .billing_email
            .as_deref()
            .and_then(|e| EmailAddress::parse(e).ok())
        else {
            tracing::warn!(tenant_id = %tenant.tenant_id, "no billing email to tell about a disabled webhook");
            return;
        };
        // In the tenant's language, like every mail Kotoba sends a tenant.
        let notice = crate::deadlines::notices::Notice::WebhookDisabled {
            url: endpoint.url.clone(),
            webhook_id: endpoint.webhook_id.to_string(),
            reason: endpoint
                .disabled_reason
                .clone()
                .unwrap_or_else(|| "failures".into()),
        };
        let mail = crate::deadlines::notices::render(&notice, &tenant, &self.mail_from, to);
        if let Err(e) = self.mail.send(mail).await {
            tracing::error!(error = %e, "mailing about a disabled webhook failed");
        }
    }
}

/// The error chain of a failed request, without the URL (the log shows the endpoint already).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out after 10 s".into();
    }
    let mut source: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<crate::crawl::guard::Refusal>() {
            return r.to_string();
        }
        source = s.source();
    }
    let chain: Vec<String> = {
        let mut out = Vec::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            out.push(s.to_string());
            source = s.source();
        }
        out
    };
    let mut text = e.without_url().to_string();
    for s in chain {
        text.push_str(": ");
        text.push_str(&s);
    }
    text
}

/// A page of an endpoint's deliveries, newest first.
pub async fn list(
    store: &dyn ItemStore,
    tenant: &TenantId,
    webhook: &WebhookId,
    cursor: Option<String>,
) -> Result<(Vec<Delivery>, Option<String>), WebhookError> {
    endpoints::get(store, tenant, webhook).await?;
    let page = store
        .query(
            Query::partition(keys::webhook_partition(webhook))
                .prefix(keys::prefix::DELIVERY)
                .descending()
                .limit(25)
                .after(cursor),
        )
        .await?;
    let deliveries = page
        .items
        .iter()
        .map(Stored::from_item)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        deliveries
            .into_iter()
            .filter(|d| d.state.tenant_id.as_ref() == Some(tenant))
            .map(|d| d.view)
            .collect(),
        page.next,
    ))
}

/// Sends a delivery again now, with its stored payload and id; a failure retries on the usual schedule.
pub async fn replay(
    store: &dyn ItemStore,
    queue: &dyn JobQueue,
    clock: &dyn Clock,
    tenant: &TenantId,
    webhook: &WebhookId,
    delivery_id: &DeliveryId,
) -> Result<Delivery, WebhookError> {
    endpoints::get(store, tenant, webhook).await?;
    let Some(item) = store.get(&keys::delivery(webhook, delivery_id)).await? else {
        return Err(WebhookError::DeliveryNotFound);
    };
    let mut delivery = Stored::from_item(&item)?;
    if delivery.state.tenant_id.as_ref() != Some(tenant) {
        return Err(WebhookError::DeliveryNotFound);
    }
    let now = clock.now();
    delivery.view.status = DeliveryStatus::Pending;
    delivery.state.due_at = Some(now);
    delivery.state.first_attempt_at = Some(now);
    delivery.state.replay = true;
    delivery.view.next_attempt_at = Some(rfc3339(now));
    let mut new_item = delivery.to_item()?;
    new_item.expires_at = item.expires_at;
    store.put(new_item, Condition::IfExists).await?;
    let message = Message::Attempt {
        tenant_id: tenant.clone(),
        webhook_id: webhook.clone(),
        delivery_id: delivery_id.clone(),
    };
    queue.send(&message.to_body()).await?;
    Ok(delivery.view)
}

/// Queues a `ping` to one endpoint (`POST /api/webhooks/{id}/test`); returns the delivery id.
pub async fn ping(
    store: &dyn ItemStore,
    queue: &dyn JobQueue,
    ids: &dyn IdGenerator,
    clock: &dyn Clock,
    tenant: &TenantId,
    webhook: &WebhookId,
) -> Result<DeliveryId, WebhookError> {
    endpoints::get(store, tenant, webhook).await?;
    let event_id = EventId::generate(ids);
    let message = Message::Event {
        tenant_id: tenant.clone(),
        event_id: event_id.clone(),
        event: Event::ping(clock.now(), webhook.as_str()),
        only: Some(webhook.clone()),
    };
    queue.send(&message.to_body()).await?;
    Ok(delivery_id(&event_id, webhook))
}
