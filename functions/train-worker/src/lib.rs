//! The training worker: an SQS handler. Each record is parsed and run on its own; the ones that failed
//! are reported back (`ReportBatchItemFailures`) so SQS redelivers only them, and after the queue's
//! maximum receives moves them to the dead-letter queue. The local runner feeds the local queue through
//! the very same [`Worker::handle`].

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

use shared::Platform;
use shared::training::pipeline::{Delivery, Outcome, Trainer};

pub struct Worker {
    trainer: Trainer,
}

impl Worker {
    pub fn new(platform: Arc<Platform>) -> anyhow::Result<Self> {
        Ok(Self {
            trainer: Trainer::new(platform, reqwest::Client::builder().build()?)?,
        })
    }

    pub fn trainer(&self) -> &Trainer {
        &self.trainer
    }

    /// Runs every record; returns the ids of those to redeliver.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            if !self.handle_one(record).await {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// True when the message is done with (succeeded, or nothing more to do); false to redeliver.
    async fn handle_one(&self, record: SqsMessage) -> bool {
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse::<u32>().ok())
            .unwrap_or(1);
        let delivery = Delivery {
            body: record.body.unwrap_or_default(),
            receive_count,
        };
        match self.trainer.run(delivery).await {
            Outcome::Done => true,
            Outcome::Retry(reason) => {
                tracing::warn!(message_id = record.message_id.as_deref().unwrap_or(""), %reason, "training attempt failed; will be redelivered");
                false
            }
        }
    }
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
