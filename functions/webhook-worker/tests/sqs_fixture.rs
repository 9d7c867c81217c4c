//! The worker's entry point on the SQS fixture (`events/webhook-worker-sqs.json`, also what
//! `cargo lambda invoke --data-file` sends): an event for a tenant without endpoints fans out to
//! nothing, an unreadable body is dropped rather than retried, and neither is reported as failed.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use shared::config::{Config, Mode};

#[tokio::test]
async fn the_fixture_batch_is_handled_without_failures() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("KOTOBA_DATA_DIR", dir.path().to_str().unwrap())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let platform = shared::Platform::embedded(
        Config::from_vars(&vars, Mode::Deployed).unwrap(),
        Arc::new(shared::clock::SystemClock),
        Arc::new(shared::ids::SequentialIds::default()),
    )
    .unwrap();
    let worker = webhook_worker::Worker::new(&platform).unwrap();
    let event: SqsEvent =
        serde_json::from_str(include_str!("../../../events/webhook-worker-sqs.json")).unwrap();
    assert_eq!(event.records.len(), 2);
    let response = worker.handle(event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response
            .batch_item_failures
            .iter()
            .map(|f| &f.item_identifier)
            .collect::<Vec<_>>()
    );
    // Nothing was queued: the tenant has no endpoints.
    let queued = platform
        .webhook_queue
        .receive(
            10,
            std::time::Duration::from_secs(30),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(queued.is_empty());
}
