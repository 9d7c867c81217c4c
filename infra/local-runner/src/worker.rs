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

/// How many webhook messages the local worker handles at once (all endpoints together).
const WEBHOOK_CONCURRENCY: usize = 16;

/// The local stand-in for the webhook queue's event source. Each message runs on its own task, so an
/// endpoint that hangs holds one slot for at most the attempt timeout while the others go on; at most
/// [`shared::webhooks::MAX_IN_FLIGHT_PER_ENDPOINT`] attempts per endpoint run at once (more wait their
/// turn back in the queue), so one endpoint cannot take every slot.
pub async fn consume_webhooks(platform: Arc<Platform>, worker: Arc<webhook_worker::Worker>) {
    use std::collections::HashMap;
    use std::sync::Mutex;

    let queue = platform.webhook_queue.clone();
    let slots = Arc::new(tokio::sync::Semaphore::new(WEBHOOK_CONCURRENCY));
    let in_flight: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    // Long enough for an attempt (10 s) and its bookkeeping; a crashed attempt is retried after it.
    let visibility = Duration::from_secs(60);
    loop {
        let Ok(permit) = slots.clone().acquire_many_owned(1).await else {
            return;
        };
        drop(permit);
        let free = slots.available_permits().clamp(1, 10);
        let messages = match queue
            .receive(free, visibility, Duration::from_secs(1))
            .await
        {
            Ok(messages) => messages,
            Err(e) => {
                tracing::error!(error = %e, "reading the webhook queue failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for message in messages {
            let endpoint = endpoint_of(&message.body);
            let busy = endpoint.as_ref().is_some_and(|endpoint| {
                let mut map = in_flight.lock().expect("in-flight map");
                let n = map.entry(endpoint.clone()).or_default();
                if *n >= shared::webhooks::MAX_IN_FLIGHT_PER_ENDPOINT {
                    return true;
                }
                *n += 1;
                false
            });
            if busy {
                // Busy endpoint: back in the queue shortly, without holding a slot.
                let _ = queue
                    .change_visibility(&message.receipt, Duration::from_secs(1))
                    .await;
                continue;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (queue, worker, in_flight) = (queue.clone(), worker.clone(), in_flight.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let record = webhook_worker::sqs_record(
                    &message.message_id,
                    &message.receipt,
                    &message.body,
                    message.receive_count,
                );
                if worker.handle_one(record).await
                    && let Err(e) = queue.delete(&message.receipt).await
                {
                    tracing::error!(error = %e, "deleting a finished webhook message failed");
                }
                if let Some(endpoint) = endpoint {
                    let mut map = in_flight.lock().expect("in-flight map");
                    if let Some(n) = map.get_mut(&endpoint) {
                        *n -= 1;
                        if *n == 0 {
                            map.remove(&endpoint);
                        }
                    }
                }
            });
        }
    }
}

/// The endpoint an attempt message is for (fan-out and top-up messages have none).
fn endpoint_of(body: &str) -> Option<String> {
    match serde_json::from_str::<shared::webhooks::events::Message>(body).ok()? {
        shared::webhooks::events::Message::Attempt { webhook_id, .. } => {
            Some(webhook_id.to_string())
        }
        shared::webhooks::events::Message::Event { .. }
        | shared::webhooks::events::Message::AutoTopUp { .. } => None,
    }
}
