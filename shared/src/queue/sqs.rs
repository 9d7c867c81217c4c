//! The job queue on SQS: a standard queue whose redrive policy moves a message to its dead-letter queue
//! after `max_receives` deliveries.

use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityError;
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use futures::future::BoxFuture;

use super::{
    DEAD_LETTER_VISIBILITY, JobQueue, MAX_VISIBILITY, QueueError, Received, check_body,
    check_receive, whole_seconds,
};

/// Marks receipts of dead-letter deliveries, so `delete` and `change_visibility` reach the right queue.
/// SQS receipt handles are base64-like and never contain `:`.
const DEAD_LETTER_RECEIPT: &str = "dlq:";

/// How long a dead-letter receive waits: a short poll on SQS samples only some servers and may answer
/// empty while messages exist, so inspection long-polls briefly.
const DEAD_LETTER_WAIT: Duration = Duration::from_secs(1);

/// Creates `<name>-dlq` and then `name` with a redrive policy to it (idempotent, as CreateQueue is for
/// unchanged attributes). Returns the queue URL and the dead-letter queue URL.
pub async fn create_queue_with_dlq(
    client: &Client,
    name: &str,
    max_receives: u32,
    visibility: Duration,
) -> anyhow::Result<(String, String)> {
    let dlq_name = format!("{name}-dlq");
    let dlq_url = client
        .create_queue()
        .queue_name(&dlq_name)
        .send()
        .await
        .with_context(|| format!("creating queue {dlq_name}"))?
        .queue_url
        .with_context(|| format!("CreateQueue {dlq_name} returned no URL"))?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("reading the ARN of {dlq_name}"))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .with_context(|| format!("GetQueueAttributes {dlq_name} returned no QueueArn"))?;
    let redrive =
        serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives })
            .to_string();
    let queue_url = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            whole_seconds(visibility).to_string(),
        )
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .with_context(|| format!("CreateQueue {name} returned no URL"))?;
    Ok((queue_url, dlq_url))
}

/// A [`JobQueue`] on an SQS queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dlq_url: String,
    max_receives: u32,
}

impl SqsQueue {
    /// `max_receives` must match the queue's redrive policy (see [`create_queue_with_dlq`]).
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        dlq_url: impl Into<String>,
        max_receives: u32,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dlq_url: dlq_url.into(),
            max_receives,
        }
    }

    /// The URL of the main queue.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The queue a receipt belongs to, and the SQS receipt handle itself.
    fn route<'a>(&'a self, receipt: &'a str) -> (&'a str, &'a str) {
        match receipt.strip_prefix(DEAD_LETTER_RECEIPT) {
            Some(handle) => (&self.dlq_url, handle),
            None => (&self.queue_url, receipt),
        }
    }

    async fn receive_from(
        &self,
        dead_letters: bool,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        check_receive(max, visibility, wait)?;
        let url = if dead_letters {
            &self.dlq_url
        } else {
            &self.queue_url
        };
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .visibility_timeout(whole_seconds(visibility))
            .wait_time_seconds(whole_seconds(wait))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .with_context(|| format!("receiving from {url}"))?;
        let mut received = Vec::new();
        for message in output.messages() {
            let message_id = message
                .message_id()
                .context("received a message without an id")?
                .to_string();
            let handle = message
                .receipt_handle()
                .context("received a message without a receipt handle")?;
            let receive_count = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .context("received a message without ApproximateReceiveCount")?
                .parse::<u32>()
                .context("parsing ApproximateReceiveCount")?;
            let receipt = if dead_letters {
                format!("{DEAD_LETTER_RECEIPT}{handle}")
            } else {
                handle.to_string()
            };
            received.push(Received {
                message_id,
                body: message.body().unwrap_or_default().to_string(),
                receipt,
                receive_count,
            });
        }
        Ok(received)
    }

    async fn delete_message(&self, receipt: &str) -> Result<(), QueueError> {
        let (url, handle) = self.route(receipt);
        match self
            .client
            .delete_message()
            .queue_url(url)
            .receipt_handle(handle)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // The port promises stale receipts are harmless. SQS itself accepts most stale handles; moto
            // (and SQS for long-gone messages) answers ReceiptHandleIsInvalid, which means the same thing.
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), DeleteMessageError::ReceiptHandleIsInvalid(_)) =>
            {
                tracing::debug!(
                    queue = url,
                    "deleting with a stale receipt: nothing to delete"
                );
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("deleting a message from {url}"))
                .into()),
        }
    }

    async fn change_message_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        if visibility > MAX_VISIBILITY {
            return Err(QueueError::Invalid(format!(
                "visibility timeout {visibility:?} exceeds 12 hours"
            )));
        }
        let (url, handle) = self.route(receipt);
        let request = self
            .client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(handle)
            .visibility_timeout(whole_seconds(visibility));
        match request.send().await {
            Ok(_) => Ok(()),
            // Stale receipt (redelivered or deleted meanwhile) or no longer in flight: nothing to change,
            // as in the local queue.
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err(),
                    ChangeMessageVisibilityError::ReceiptHandleIsInvalid(_)
                        | ChangeMessageVisibilityError::MessageNotInflight(_)
                ) =>
            {
                tracing::debug!(
                    queue = url,
                    "changing visibility with a stale receipt: nothing to change"
                );
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("changing a message's visibility in {url}"))
                .into()),
        }
    }
}

impl JobQueue for SqsQueue {
    fn send(&self, body: &str) -> BoxFuture<'_, Result<String, QueueError>> {
        let body = body.to_string();
        Box::pin(async move {
            check_body(&body)?;
            let output = self
                .client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(body)
                .send()
                .await
                .with_context(|| format!("sending to {}", self.queue_url))?;
            Ok(output
                .message_id
                .context("SendMessage returned no message id")?)
        })
    }

    fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<Received>, QueueError>> {
        Box::pin(self.receive_from(false, max, visibility, wait))
    }

    fn delete(&self, receipt: &str) -> BoxFuture<'_, Result<(), QueueError>> {
        let receipt = receipt.to_string();
        Box::pin(async move { self.delete_message(&receipt).await })
    }

    fn change_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        let receipt = receipt.to_string();
        Box::pin(async move { self.change_message_visibility(&receipt, visibility).await })
    }

    fn receive_dead_letters(&self, max: usize) -> BoxFuture<'_, Result<Vec<Received>, QueueError>> {
        Box::pin(self.receive_from(true, max, DEAD_LETTER_VISIBILITY, DEAD_LETTER_WAIT))
    }

    fn max_receives(&self) -> u32 {
        self.max_receives
    }
}
