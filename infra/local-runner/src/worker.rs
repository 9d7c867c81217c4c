//! The local stand-in for Lambda's SQS event source: receive from the local queue, hand each message to
//! the worker as an `SqsEvent`, delete what it did not report as failed. Failed messages reappear after
//! the visibility timeout and are dead-lettered after the queue's maximum receives, as on AWS.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;

use shared::Platform;

pub async fn consume(platform: Arc<Platform>, worker: Arc<train_worker::Worker>) {
    let queue = platform.train_queue.clone();
    let visibility = platform.config.train_retry_after;
    loop {
        let messages = match queue.receive(1, visibility, Duration::from_secs(1)).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::error!(error = %e, "reading the training queue failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for message in messages {
            let mut event = SqsEvent::default();
            event.records.push(train_worker::sqs_record(
                &message.message_id,
                &message.receipt,
                &message.body,
                message.receive_count,
            ));
            let response = worker.handle(event).await;
            if response.batch_item_failures.is_empty()
                && let Err(e) = queue.delete(&message.receipt).await
            {
                tracing::error!(error = %e, "deleting a finished training message failed");
            }
        }
    }
}
