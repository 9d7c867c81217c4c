//! The job queue port: at-least-once delivery with a visibility timeout and a dead-letter queue.
//!
//! Production runs on SQS with a redrive policy; the local runner on a durable queue in the embedded
//! SQLite database, with the same semantics. Both pass `queue::conformance`.

pub mod local;
pub mod sqs;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::time::Duration;

use futures::future::BoxFuture;

pub use local::LocalQueue;
pub use sqs::SqsQueue;

/// A delivered message. `receipt` deletes it (or changes its visibility) until it is delivered again.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub message_id: String,
    pub body: String,
    pub receipt: String,
    /// How many times this message has been delivered, this delivery included (SQS's ApproximateReceiveCount).
    pub receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("invalid queue request: {0}")]
    Invalid(String),
    #[error("queue backend failed: {0:#}")]
    Backend(#[from] anyhow::Error),
}

/// One queue with its dead-letter queue. A message received `max_receives` times without being deleted
/// moves to the dead-letter queue instead of being delivered again.
pub trait JobQueue: Send + Sync + 'static {
    /// Returns the message id.
    fn send(&self, body: &str) -> BoxFuture<'_, Result<String, QueueError>>;
    /// Up to `max` (1..=10) visible messages, hidden from other receivers for `visibility`;
    /// waits up to `wait` for the first one.
    fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<Received>, QueueError>>;
    /// Deleting with a stale receipt is not an error (the message may already be gone).
    fn delete(&self, receipt: &str) -> BoxFuture<'_, Result<(), QueueError>>;
    /// Makes a received message visible again after `visibility` (zero: at once), e.g. to retry sooner.
    fn change_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> BoxFuture<'_, Result<(), QueueError>>;
    /// Receives from the dead-letter queue, for inspection and redrive.
    fn receive_dead_letters(&self, max: usize) -> BoxFuture<'_, Result<Vec<Received>, QueueError>>;
    /// The receive count after which a message is dead-lettered.
    fn max_receives(&self) -> u32;
}
