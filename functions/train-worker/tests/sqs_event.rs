//! The deployed path: the SQS event fixture from `events/` goes through the worker's handler exactly as
//! the Lambda runtime delivers it. Each record is handled on its own: a message for an unknown job is
//! done with, a malformed one is reported as a batch item failure (so SQS retries, then dead-letters it)
//! without failing its neighbour.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use shared::Platform;
use shared::clock::SystemClock;
use shared::config::{Config, Mode};
use shared::ids::RandomIds;

#[tokio::test]
async fn each_record_succeeds_or_fails_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [(
        "KOTOBA_DATA_DIR".to_string(),
        dir.path().display().to_string(),
    )]
    .into_iter()
    .collect();
    let config = Config::from_vars(&vars, Mode::Deployed).unwrap();
    let platform = Platform::embedded(config, Arc::new(SystemClock), Arc::new(RandomIds)).unwrap();
    let worker = train_worker::Worker::new(platform).unwrap();

    let fixture = std::fs::read_to_string(format!(
        "{}/../../events/train-worker-sqs.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let event: SqsEvent = serde_json::from_str(&fixture).expect("the fixture is an SQS event");
    assert_eq!(event.records.len(), 2);
    let response = worker.handle(event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["2e1424d4-f796-459a-8184-9c92662be6da"],
        "only the malformed record fails"
    );
    // The response serialises as Lambda expects it.
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(
        json["batchItemFailures"][0]["itemIdentifier"],
        "2e1424d4-f796-459a-8184-9c92662be6da"
    );
}
