//! The job-queue conformance suite: the same cases against every [`JobQueue`] adapter.
//!
//! An adapter's test file calls [`queue_conformance_tests!`](crate::queue_conformance_tests) with a
//! module name and an async expression building a [`QueueHarness`]. The harness says how time passes
//! for the adapter (a real sleep on SQS, whose timeouts are whole seconds; a step of a manual clock
//! locally), so one set of assertions runs on both.
//!
//! Receives that expect a message long-poll briefly (a short poll on SQS may miss messages); receives
//! that expect nothing do not wait.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{JobQueue, QueueError, Received};

/// The visibility timeout the cases give received messages.
pub const VISIBILITY: Duration = Duration::from_secs(1);
/// How far the cases move time to let a [`VISIBILITY`] pass, with a margin for SQS's clock.
pub const PAST_VISIBILITY: Duration = Duration::from_millis(1500);
/// How long a receive that expects a message may wait for it.
const WAIT: Duration = Duration::from_secs(2);

/// One adapter under test, fresh for each case.
pub struct QueueHarness {
    /// An empty queue with an empty dead-letter queue.
    pub queue: Arc<dyn JobQueue>,
    /// Lets `d` pass as far as the queue's visibility timeouts are concerned.
    pub advance: Box<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>,
    /// Whatever the setup started that must live as long as the case (temporary files, clients).
    pub keep: Box<dyn Any + Send>,
}

impl QueueHarness {
    async fn advance(&self, d: Duration) {
        (self.advance)(d).await;
    }

    /// Receives, expecting exactly one message.
    async fn receive_one(&self, visibility: Duration) -> Received {
        let mut got = self.queue.receive(1, visibility, WAIT).await.unwrap();
        assert_eq!(got.len(), 1, "expected one message, got {got:?}");
        got.remove(0)
    }

    /// Receives without waiting, expecting nothing.
    async fn receive_none(&self) {
        let got = self
            .queue
            .receive(10, VISIBILITY, Duration::ZERO)
            .await
            .unwrap();
        assert!(got.is_empty(), "expected no visible message, got {got:?}");
    }
}

/// A local queue on an in-memory database with a manual clock: `advance` steps the clock.
pub async fn local_harness(max_receives: u32) -> QueueHarness {
    let clock = crate::clock::ManualClock::at(time::macros::datetime!(2026-01-01 00:00 UTC));
    let db = crate::embedded_db::EmbeddedDb::in_memory().unwrap();
    let queue = super::LocalQueue::new(db, "jobs", max_receives, Arc::new(clock.clone())).unwrap();
    QueueHarness {
        queue: Arc::new(queue),
        advance: Box::new(move |d| {
            clock.advance(d);
            Box::pin(async {})
        }),
        keep: Box::new(()),
    }
}

/// A message is delivered once with its id, body and a receive count of 1, and gone once deleted.
pub async fn send_receive_delete(h: QueueHarness) {
    let id = h.queue.send("hello").await.unwrap();
    let got = h.receive_one(VISIBILITY).await;
    assert_eq!(got.message_id, id);
    assert_eq!(got.body, "hello");
    assert_eq!(got.receive_count, 1);
    h.queue.delete(&got.receipt).await.unwrap();
    h.advance(PAST_VISIBILITY).await;
    h.receive_none().await;
}

/// A received message stays hidden for its visibility timeout, then comes back with a new receipt.
pub async fn invisible_until_timeout_then_redelivered(h: QueueHarness) {
    let id = h.queue.send("retry me").await.unwrap();
    let first = h.receive_one(VISIBILITY).await;
    h.receive_none().await;
    h.advance(PAST_VISIBILITY).await;
    let second = h.receive_one(VISIBILITY).await;
    assert_eq!(second.message_id, id);
    assert_eq!(second.body, "retry me");
    assert_eq!(second.receive_count, 2);
    assert_ne!(
        second.receipt, first.receipt,
        "a redelivery carries a fresh receipt"
    );
}

/// After a redelivery the old receipt is harmless and the new one deletes.
pub async fn stale_receipt_after_redelivery(h: QueueHarness) {
    h.queue.send("once").await.unwrap();
    let first = h.receive_one(VISIBILITY).await;
    h.advance(PAST_VISIBILITY).await;
    let second = h.receive_one(VISIBILITY).await;
    h.queue.delete(&first.receipt).await.unwrap();
    h.queue.delete(&second.receipt).await.unwrap();
    // Deleting twice is harmless too.
    h.queue.delete(&second.receipt).await.unwrap();
    h.advance(PAST_VISIBILITY).await;
    h.receive_none().await;
    assert!(
        h.queue.receive_dead_letters(10).await.unwrap().is_empty(),
        "a deleted message is not dead-lettered"
    );
}

/// `change_visibility` to zero redelivers at once; a longer one keeps the message hidden.
pub async fn change_visibility(h: QueueHarness) {
    let id = h.queue.send("sooner").await.unwrap();
    let first = h.receive_one(Duration::from_secs(60)).await;
    h.queue
        .change_visibility(&first.receipt, Duration::ZERO)
        .await
        .unwrap();
    let second = h.receive_one(VISIBILITY).await;
    assert_eq!(
        (second.message_id.as_str(), second.receive_count),
        (id.as_str(), 2)
    );
    h.queue
        .change_visibility(&second.receipt, Duration::from_secs(60))
        .await
        .unwrap();
    h.advance(PAST_VISIBILITY).await;
    h.receive_none().await;
    // A stale receipt is no error. What it does is the backend's business (moto honours old receipts,
    // the local queue ignores them), so nothing else is checked after it.
    h.queue
        .change_visibility(&first.receipt, Duration::ZERO)
        .await
        .unwrap();
}

/// After `max_receives` deliveries without a delete, the message moves to the dead-letter queue, whose
/// receipts work with `delete` and `change_visibility` too (for inspection and redrive).
pub async fn dead_letters_after_max_receives(h: QueueHarness) {
    let max = h.queue.max_receives();
    assert!(max >= 1);
    let id = h.queue.send("poison").await.unwrap();
    for n in 1..=max {
        let got = h.receive_one(VISIBILITY).await;
        assert_eq!(
            (got.message_id.as_str(), got.receive_count),
            (id.as_str(), n)
        );
        h.advance(PAST_VISIBILITY).await;
    }
    h.receive_none().await;
    h.receive_none().await;

    let dead = h.queue.receive_dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0].message_id.as_str(), dead[0].body.as_str()),
        (id.as_str(), "poison")
    );
    h.queue
        .change_visibility(&dead[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let again = h.queue.receive_dead_letters(10).await.unwrap();
    assert_eq!(
        again.len(),
        1,
        "change_visibility reaches the dead-letter queue: {again:?}"
    );
    h.queue.delete(&again[0].receipt).await.unwrap();
    // Had the delete missed, this would make the message visible again.
    h.queue
        .change_visibility(&again[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        h.queue.receive_dead_letters(10).await.unwrap().is_empty(),
        "delete reaches the dead-letter queue"
    );
    h.receive_none().await;
}

/// One receive returns several messages, up to ten.
pub async fn receive_several(h: QueueHarness) {
    let sent: BTreeSet<String> = (1..=5).map(|n| format!("job {n}")).collect();
    for body in &sent {
        h.queue.send(body).await.unwrap();
    }
    let mut got = BTreeSet::new();
    let mut batches = Vec::new();
    // SQS may spread messages over receives; every message must arrive within a few.
    for _ in 0..5 {
        if got.len() == sent.len() {
            break;
        }
        let batch = h
            .queue
            .receive(10, Duration::from_secs(30), WAIT)
            .await
            .unwrap();
        batches.push(batch.len());
        for m in batch {
            assert!(got.insert(m.body.clone()), "{} delivered twice", m.body);
        }
    }
    assert_eq!(got, sent);
    assert!(
        batches[0] > 1,
        "the first receive returned only {} message(s)",
        batches[0]
    );
}

/// Bodies are text as sent: Japanese, emoji, markup, JSON, newlines.
pub async fn japanese_bodies_round_trip(h: QueueHarness) {
    let bodies = [
        "本文：明日の10時です。",
        r#"{"kind":"reminder","subject":"ご予約の確認","note":"\"引用\" <b>&amp;</b>"}"#,
        "行1\n行2\r\n\tタブ 🎌",
    ];
    for body in bodies {
        h.queue.send(body).await.unwrap();
        let got = h.receive_one(VISIBILITY).await;
        assert_eq!(got.body, body);
        h.queue.delete(&got.receipt).await.unwrap();
    }
}

/// A long-polling receive returns a message sent while it waits, before its wait is over.
///
/// The receive may wait 20 s (SQS's longest long poll); the case gives it 10 s, a deadline and not a
/// measurement: an adapter that slept out its whole wait before looking fails it, however fast the
/// machine.
pub async fn long_poll_returns_message_sent_during_wait(h: QueueHarness) {
    let queue = Arc::clone(&h.queue);
    let sender = tokio::spawn(async move {
        // Makes the message arrive during the wait (sent earlier, the case would still hold).
        tokio::time::sleep(Duration::from_millis(300)).await; // sleep-ok: arrives mid-wait
        queue.send("late").await.unwrap()
    });
    let got = tokio::time::timeout(
        Duration::from_secs(10),
        h.queue.receive(1, VISIBILITY, super::MAX_WAIT),
    )
    .await
    .expect("the long poll returned when the message arrived, not at the end of its wait")
    .unwrap();
    let id = sender.await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].message_id.as_str(), got[0].body.as_str()),
        (id.as_str(), "late")
    );
}

/// Requests SQS would refuse are refused as invalid, before reaching the backend.
pub async fn invalid_requests_are_refused(h: QueueHarness) {
    let invalid = |r: Result<_, QueueError>| matches!(r, Err(QueueError::Invalid(_)));
    assert!(invalid(h.queue.send("").await.map(drop)));
    assert!(invalid(h.queue.send("nul \u{0} char").await.map(drop)));
    assert!(invalid(
        h.queue
            .send(&"x".repeat(super::MAX_BODY_BYTES + 1))
            .await
            .map(drop)
    ));
    assert!(invalid(
        h.queue
            .receive(0, VISIBILITY, Duration::ZERO)
            .await
            .map(drop)
    ));
    assert!(invalid(
        h.queue
            .receive(11, VISIBILITY, Duration::ZERO)
            .await
            .map(drop)
    ));
    assert!(invalid(
        h.queue
            .receive(1, Duration::from_secs(12 * 3600 + 1), Duration::ZERO)
            .await
            .map(drop)
    ));
    assert!(invalid(
        h.queue
            .receive(1, VISIBILITY, Duration::from_secs(21))
            .await
            .map(drop)
    ));
    assert!(invalid(h.queue.receive_dead_letters(0).await.map(drop)));
    assert!(
        h.queue
            .send(&"x".repeat(super::MAX_BODY_BYTES))
            .await
            .is_ok()
    );
}

/// Generates one `#[tokio::test]` per case in a module `$module`, each building its own harness with
/// the async expression `$setup` (evaluated inside the module, which sees its parent's items).
#[macro_export]
macro_rules! queue_conformance_tests {
    ($module:ident, $setup:expr) => {
        $crate::queue_conformance_tests!(@cases $module, $setup, [
            send_receive_delete,
            invisible_until_timeout_then_redelivered,
            stale_receipt_after_redelivery,
            change_visibility,
            dead_letters_after_max_receives,
            receive_several,
            japanese_bodies_round_trip,
            long_poll_returns_message_sent_during_wait,
            invalid_requests_are_refused,
        ]);
    };
    (@cases $module:ident, $setup:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let harness = $setup.await;
                    $crate::queue::conformance::$case(harness).await;
                }
            )*
        }
    };
}
