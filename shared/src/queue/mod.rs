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

/// The largest message body, in bytes (SQS's long-standing limit, kept locally so nothing works on the
/// local runner that SQS would refuse).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The longest visibility timeout SQS accepts.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// The longest long-poll wait SQS accepts.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// The visibility of messages received from the dead-letter queue (SQS's default visibility timeout).
pub const DEAD_LETTER_VISIBILITY: Duration = Duration::from_secs(30);

/// Refuses a body SQS would refuse: empty, too long, or with characters outside its allowed set.
pub(crate) fn check_body(body: &str) -> Result<(), QueueError> {
    if body.is_empty() {
        return Err(QueueError::Invalid("empty message body".into()));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(QueueError::Invalid(format!(
            "message body of {} bytes exceeds {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    // SQS allows #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    if let Some(c) = body.chars().find(|&c| !allowed(c)) {
        return Err(QueueError::Invalid(format!(
            "message body contains the disallowed character {c:?}"
        )));
    }
    Ok(())
}

/// Refuses receive parameters SQS would refuse.
pub(crate) fn check_receive(
    max: usize,
    visibility: Duration,
    wait: Duration,
) -> Result<(), QueueError> {
    if !(1..=10).contains(&max) {
        return Err(QueueError::Invalid(format!(
            "can receive 1 to 10 messages at a time, not {max}"
        )));
    }
    if visibility > MAX_VISIBILITY {
        return Err(QueueError::Invalid(format!(
            "visibility timeout {visibility:?} exceeds 12 hours"
        )));
    }
    if wait > MAX_WAIT {
        return Err(QueueError::Invalid(format!(
            "wait {wait:?} exceeds 20 seconds"
        )));
    }
    Ok(())
}

/// Whole seconds for SQS, rounded up so a message is never visible (or a wait over) sooner than asked.
pub(crate) fn whole_seconds(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

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
