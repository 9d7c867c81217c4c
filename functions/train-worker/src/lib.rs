//! The training worker: an SQS handler. Each record is parsed and run on its own; the ones that failed
//! are reported back (`ReportBatchItemFailures`) so SQS redelivers only them, and after the queue's
//! maximum receives moves them to the dead-letter queue. The local runner feeds the local queue through
//! the very same [`Worker::handle`].

/// The secret variables this function's code reads (training embeds chunks through the model API); shared::secrets fetches exactly
/// these at start-up, and tests/deploy_template.rs checks the templates grant exactly these.
pub const SECRETS: &[&str] = &["OPENAI_API_KEY"];

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

use shared::Platform;
use shared::training::pipeline::{Delivery, MessageDisposition, Trainer};

pub struct Worker {
    trainer: Trainer,
}

impl Worker {
    pub fn new(platform: Arc<Platform>) -> anyhow::Result<Self> {
        Ok(Self {
            trainer: Trainer::new(platform, shared::http::sockets::client_builder().build()?)?,
        })
    }

    pub fn trainer(&self) -> &Trainer {
        &self.trainer
    }

    /// Runs every record; returns the ids of those to redeliver.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_until(event, None).await
    }

    /// As [`handle`](Self::handle), in an invocation that ends at `deadline` (Lambda's): a job that
    /// cannot finish by then continues in a follow-up message.
    pub async fn handle_until(
        &self,
        event: SqsEvent,
        deadline: Option<tokio::time::Instant>,
    ) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            if !self.handle_one(record, deadline).await {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// True when the message is done with (succeeded, or nothing more to do); false to redeliver.
    async fn handle_one(&self, record: SqsMessage, deadline: Option<tokio::time::Instant>) -> bool {
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse::<u32>().ok())
            .unwrap_or(1);
        let delivery = Delivery {
            body: record.body.unwrap_or_default(),
            receive_count,
            deadline,
        };
        match self.trainer.run(delivery).await {
            MessageDisposition::Done => true,
            MessageDisposition::Retry(reason) => {
                tracing::warn!(message_id = record.message_id.as_deref().unwrap_or(""), %reason, "training attempt failed; will be redelivered");
                false
            }
        }
    }
}

/// The invocation's deadline (Lambda gives it in milliseconds since the epoch) as a monotonic instant.
pub fn lambda_deadline(deadline_ms: u64) -> tokio::time::Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    tokio::time::Instant::now()
        + std::time::Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// Builds the SQS record the Lambda service would deliver for a message of the local queue.
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
