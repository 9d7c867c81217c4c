//! The job-queue conformance suite on the local queue (manual clock) and on SQS (against the emulator,
//! in real time: SQS's visibility timeouts are whole seconds).

use std::sync::Arc;

use kotoba_tests::{aws, unique_name};
use shared::queue::SqsQueue;
use shared::queue::conformance::{QueueHarness, VISIBILITY, local_harness};
use shared::queue::sqs::create_queue_with_dlq;

const MAX_RECEIVES: u32 = 2;

/// A fresh queue and dead-letter queue of their own; time passes by sleeping.
async fn sqs_harness() -> QueueHarness {
    let sdk = aws::sdk_config().await;
    let client = aws_sdk_sqs::Client::new(&sdk);
    let name = unique_name("jobs");
    let (queue_url, dlq_url) = create_queue_with_dlq(&client, &name, MAX_RECEIVES, VISIBILITY)
        .await
        .unwrap();
    // Idempotent: the local runner creates its queues at every start.
    let again = create_queue_with_dlq(&client, &name, MAX_RECEIVES, VISIBILITY)
        .await
        .unwrap();
    assert_eq!(again, (queue_url.clone(), dlq_url.clone()));
    QueueHarness {
        queue: Arc::new(SqsQueue::new(client, queue_url, dlq_url, MAX_RECEIVES)),
        // SQS visibility timeouts run on the server's clock: letting real time pass is the case itself.
        advance: Box::new(|d| Box::pin(tokio::time::sleep(d))), // sleep-ok: SQS's clock
        keep: Box::new(()),
    }
}

shared::queue_conformance_tests!(local, local_harness(MAX_RECEIVES));
shared::queue_conformance_tests!(sqs, sqs_harness());
