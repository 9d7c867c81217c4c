//! The webhook delivery worker: an SQS handler. Event messages fan out to the tenant's endpoints;
//! attempt messages deliver one event to one endpoint (signed, through the SSRF guard, 10 s limit).
//! The records of a batch run concurrently, so one endpoint that hangs holds up only its own records,
//! for at most the attempt timeout. A delivery waiting out its backoff has its message hidden until due
//! and is reported as a batch item failure, so SQS keeps it; the local runner feeds its local queue
//! through the same [`Worker::handle`].

/// The secret variables this function's code reads (the key that opens signing secrets, and Stripe's
/// for the automatic credit top-ups that ride the same queue);
/// shared::secrets fetches exactly these at start-up.
pub const SECRETS: &[&str] = &["KOTOBA_WEBHOOK_KEY", "STRIPE_SECRET_KEY"];

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

use shared::Platform;
use shared::clock::Clock;
use shared::crawl::guard::{Resolver, SystemResolver};
use shared::webhooks::{Deliverer, Disposition};

pub struct Worker {
    deliverer: Deliverer,
    platform: Arc<Platform>,
}

impl Worker {
    /// The worker on the platform's ports, resolving names with the system resolver.
    pub fn new(platform: &Arc<Platform>) -> anyhow::Result<Self> {
        Self::with(platform, platform.clock.clone(), Arc::new(SystemResolver))
    }

    /// With a given clock (tests step through the backoff schedule) and resolver (tests map names to
    /// private addresses without DNS).
    pub fn with(
        platform: &Arc<Platform>,
        clock: Arc<dyn Clock>,
        resolver: Arc<dyn Resolver>,
    ) -> anyhow::Result<Self> {
        let guard = shared::webhooks::target::TargetGuard::new(
            shared::webhooks::target::TargetPolicy {
                allow_loopback: platform.config.fetch_allow_loopback,
                allowed_ports: platform.config.fetch_allowed_ports.clone(),
            },
            resolver,
        );
        let client = guard.client()?;
        Ok(Self {
            deliverer: Deliverer {
                store: platform.store.clone(),
                queue: platform.webhook_queue.clone(),
                mail: platform.mail.clone(),
                mail_from: platform.mail_from.clone(),
                clock,
                ids: platform.ids.clone(),
                key: platform.webhook_key.clone(),
                guard,
                client,
                jitter: shared::webhooks::backoff::jitter,
            },
            platform: platform.clone(),
        })
    }

    /// Fixes the backoff jitter (tests).
    pub fn with_jitter(mut self, jitter: fn() -> f64) -> Self {
        self.deliverer.jitter = jitter;
        self
    }

    pub fn deliverer(&self) -> &Deliverer {
        &self.deliverer
    }

    /// Runs every record concurrently; returns the ids of those SQS should keep.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes =
            futures::future::join_all(event.records.into_iter().map(|record| async move {
                let id = record.message_id.clone().unwrap_or_default();
                (id, self.handle_one(record).await)
            }))
            .await;
        let mut response = SqsBatchResponse::default();
        for (id, done) in outcomes {
            if !done {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// True when the message is finished with.
    pub async fn handle_one(&self, record: SqsMessage) -> bool {
        let body = record.body.unwrap_or_default();
        let receipt = record.receipt_handle.unwrap_or_default();
        if let Ok(shared::webhooks::Message::AutoTopUp { tenant_id, claim }) =
            serde_json::from_str(&body)
        {
            return match shared::credits::auto_top_up::pay(&self.platform, &tenant_id, &claim).await
            {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(tenant = %tenant_id, error = %e, "automatic top-up failed; it will be redelivered");
                    false
                }
            };
        }
        match self.deliverer.process(&body, &receipt).await {
            Disposition::Done => true,
            Disposition::Later => false,
            Disposition::Retry(reason) => {
                tracing::warn!(message_id = record.message_id.as_deref().unwrap_or(""), %reason, "webhook message will be redelivered");
                false
            }
        }
    }
}

/// The SQS record the Lambda service would deliver for a message of the local queue.
pub fn sqs_record(message_id: &str, receipt: &str, body: &str, receive_count: u32) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(message_id.to_string());
    record.receipt_handle = Some(receipt.to_string());
    record.body = Some(body.to_string());
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    record.event_source = Some("aws:sqs".into());
    record
}
