//! A durable job queue in the embedded SQLite database, with SQS's semantics (visibility timeout,
//! receipts, redrive to a dead-letter queue), for the local runner.
//!
//! All queues share the table `queue_messages`; a queue's dead letters are the rows of the queue named
//! `<queue>-dlq`. A receive is one transaction, so two receivers never get the same message.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use rusqlite::{Connection, params};

use super::{
    DEAD_LETTER_VISIBILITY, JobQueue, MAX_VISIBILITY, QueueError, Received, check_body,
    check_receive,
};
use crate::clock::Clock;
use crate::embedded_db::EmbeddedDb;

/// How often a long-polling receive looks again while its queue is empty.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    -- The receipt of the latest delivery; replaced on every delivery, so older receipts stop matching.
    receipt TEXT,
    PRIMARY KEY (queue, message_id)
);
CREATE INDEX IF NOT EXISTS queue_messages_ready ON queue_messages (queue, visible_at_ms);
CREATE UNIQUE INDEX IF NOT EXISTS queue_messages_receipt ON queue_messages (receipt) WHERE receipt IS NOT NULL;
";

/// A [`JobQueue`] in an [`EmbeddedDb`].
#[derive(Clone)]
pub struct LocalQueue {
    db: EmbeddedDb,
    queue: String,
    dead_letter_queue: String,
    max_receives: u32,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for LocalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueue")
            .field("db", &self.db)
            .field("queue", &self.queue)
            .field("max_receives", &self.max_receives)
            .finish()
    }
}

impl LocalQueue {
    /// The queue `queue_name` (and its dead-letter queue `<queue_name>-dlq`) in `db`, creating the
    /// table on first use. A message is dead-lettered after `max_receives` deliveries; `clock` decides
    /// when invisible messages reappear.
    pub fn new(
        db: EmbeddedDb,
        queue_name: &str,
        max_receives: u32,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        // SQS's rules, less the four characters of the `-dlq` suffix.
        anyhow::ensure!(
            !queue_name.is_empty()
                && queue_name.len() <= 76
                && queue_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "queue name {queue_name:?} must be 1 to 76 letters, digits, '-' or '_'"
        );
        anyhow::ensure!(
            (1..=1000).contains(&max_receives),
            "max_receives must be 1 to 1000, not {max_receives}"
        );
        db.call_blocking(|conn| {
            conn.execute_batch(SCHEMA)
                .context("creating the queue_messages table")
        })?;
        Ok(Self {
            db,
            queue: queue_name.to_string(),
            dead_letter_queue: format!("{queue_name}-dlq"),
            max_receives,
            clock,
        })
    }

    /// The name of the main queue.
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The name of the dead-letter queue (`<queue>-dlq`).
    pub fn dead_letter_queue_name(&self) -> &str {
        &self.dead_letter_queue
    }

    /// One attempt at receiving from `queue`; `redrive` is `Some((max_receives, dlq))` for the main queue.
    async fn receive_once(
        &self,
        queue: String,
        redrive: Option<(u32, String)>,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        let now = self.clock.unix_millis();
        let visible_at =
            now.saturating_add(i64::try_from(visibility.as_millis()).unwrap_or(i64::MAX));
        let received = self
            .db
            .call(move |conn| receive_in(conn, &queue, redrive.as_ref(), max, now, visible_at))
            .await
            .context("receiving from the local queue")?;
        Ok(received)
    }

    async fn receive_waiting(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        check_receive(max, visibility, wait)?;
        // The wait is real time even under a manual clock: it bounds how long the caller blocks.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let redrive = Some((self.max_receives, self.dead_letter_queue.clone()));
            let received = self
                .receive_once(self.queue.clone(), redrive, max, visibility)
                .await?;
            let now = tokio::time::Instant::now();
            if !received.is_empty() || now >= deadline {
                return Ok(received);
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }
}

/// Visible messages in the order they became visible: a walk of the `queue_messages_ready` index that
/// stops after the first few. (Ordered by send time, SQLite sorted the whole backlog on every receive,
/// milliseconds for 10,000 messages, with the database held; the test below keeps it a walk.)
const VISIBLE_MESSAGES: &str = "SELECT rowid, message_id, body, receive_count FROM queue_messages
     WHERE queue = ?1 AND visible_at_ms <= ?2 ORDER BY visible_at_ms, rowid";

/// The receive transaction: walks visible messages (see [`VISIBLE_MESSAGES`]), dead-letters those already received
/// `max_receives` times, and delivers up to `max` of the rest with fresh receipts.
fn receive_in(
    conn: &mut Connection,
    queue: &str,
    redrive: Option<&(u32, String)>,
    max: usize,
    now: i64,
    visible_at: i64,
) -> anyhow::Result<Vec<Received>> {
    let tx = conn
        .transaction()
        .context("starting the receive transaction")?;
    let mut deliver = Vec::new();
    let mut dead = Vec::new();
    {
        let mut select = tx
            .prepare_cached(VISIBLE_MESSAGES)
            .context("preparing the receive query")?;
        let mut rows = select
            .query(params![queue, now])
            .context("querying visible messages")?;
        // Lazily, so a long backlog is read only as far as needed.
        while deliver.len() < max {
            let Some(row) = rows.next().context("reading visible messages")? else {
                break;
            };
            let rowid: i64 = row.get(0)?;
            let receive_count: u32 = row.get(3)?;
            match redrive {
                Some((max_receives, _)) if receive_count >= *max_receives => dead.push(rowid),
                _ => deliver.push((
                    rowid,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    receive_count + 1,
                )),
            }
        }
    }
    if let Some((_, dlq)) = redrive {
        for rowid in dead {
            // Keeps its id, body, send time and receive count, like SQS's redrive.
            tx.execute(
                "UPDATE queue_messages SET queue = ?1, receipt = NULL, visible_at_ms = ?2 WHERE rowid = ?3",
                params![dlq, now, rowid],
            )
            .context("moving a message to the dead-letter queue")?;
        }
    }
    let mut received = Vec::with_capacity(deliver.len());
    for (rowid, message_id, body, receive_count) in deliver {
        let receipt = uuid::Uuid::new_v4().simple().to_string();
        tx.execute(
            "UPDATE queue_messages SET receive_count = ?1, visible_at_ms = ?2, receipt = ?3 WHERE rowid = ?4",
            params![receive_count, visible_at, receipt, rowid],
        )
        .context("marking a message received")?;
        received.push(Received {
            message_id,
            body,
            receipt,
            receive_count,
        });
    }
    tx.commit().context("committing the receive")?;
    Ok(received)
}

impl JobQueue for LocalQueue {
    fn send(&self, body: &str) -> BoxFuture<'_, Result<String, QueueError>> {
        let body = body.to_string();
        Box::pin(async move {
            check_body(&body)?;
            let message_id = uuid::Uuid::new_v4().to_string();
            let (queue, id, now) = (
                self.queue.clone(),
                message_id.clone(),
                self.clock.unix_millis(),
            );
            self.db
                .call(move |conn| {
                    conn.execute(
                        "INSERT INTO queue_messages (queue, message_id, body, sent_at_ms, visible_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                        params![queue, id, body, now],
                    )
                    .context("inserting the message")
                })
                .await
                .context("sending to the local queue")?;
            Ok(message_id)
        })
    }

    fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<Received>, QueueError>> {
        Box::pin(self.receive_waiting(max, visibility, wait))
    }

    fn delete(&self, receipt: &str) -> BoxFuture<'_, Result<(), QueueError>> {
        let receipt = receipt.to_string();
        let (queue, dlq) = (self.queue.clone(), self.dead_letter_queue.clone());
        Box::pin(async move {
            // Receipts from either queue, so dead letters can be deleted after a redrive; a stale receipt
            // matches no row and deletes nothing.
            self.db
                .call(move |conn| {
                    conn.execute(
                        "DELETE FROM queue_messages WHERE receipt = ?1 AND queue IN (?2, ?3)",
                        params![receipt, queue, dlq],
                    )
                    .context("deleting the message")
                })
                .await
                .context("deleting from the local queue")?;
            Ok(())
        })
    }

    fn change_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> BoxFuture<'_, Result<(), QueueError>> {
        let receipt = receipt.to_string();
        let (queue, dlq) = (self.queue.clone(), self.dead_letter_queue.clone());
        Box::pin(async move {
            if visibility > MAX_VISIBILITY {
                return Err(QueueError::Invalid(format!(
                    "visibility timeout {visibility:?} exceeds 12 hours"
                )));
            }
            let visible_at = self
                .clock
                .unix_millis()
                .saturating_add(i64::try_from(visibility.as_millis()).unwrap_or(i64::MAX));
            // A stale receipt matches nothing: the message was redelivered or deleted, nothing to change.
            self.db
                .call(move |conn| {
                    conn.execute(
                        "UPDATE queue_messages SET visible_at_ms = ?1 WHERE receipt = ?2 AND queue IN (?3, ?4)",
                        params![visible_at, receipt, queue, dlq],
                    )
                    .context("updating the visibility")
                })
                .await
                .context("changing visibility in the local queue")?;
            Ok(())
        })
    }

    fn receive_dead_letters(&self, max: usize) -> BoxFuture<'_, Result<Vec<Received>, QueueError>> {
        Box::pin(async move {
            check_receive(max, DEAD_LETTER_VISIBILITY, Duration::ZERO)?;
            self.receive_once(
                self.dead_letter_queue.clone(),
                None,
                max,
                DEAD_LETTER_VISIBILITY,
            )
            .await
        })
    }

    fn max_receives(&self) -> u32 {
        self.max_receives
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    crate::queue_conformance_tests!(local_suite, crate::queue::conformance::local_harness(2));

    fn clock() -> ManualClock {
        ManualClock::at(time::macros::datetime!(2026-01-01 00:00 UTC))
    }

    #[test]
    fn receiving_walks_the_index_without_sorting_the_backlog() {
        let db = EmbeddedDb::in_memory().unwrap();
        LocalQueue::new(db.clone(), "jobs", 3, Arc::new(clock())).unwrap();
        let plan = db
            .call_blocking(|conn| {
                let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {VISIBLE_MESSAGES}"))?;
                let details = plan
                    .query_map(params!["jobs", 0], |row| row.get::<_, String>(3))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(details.join("; "))
            })
            .unwrap();
        assert!(plan.contains("queue_messages_ready"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[tokio::test]
    async fn delivers_in_the_order_messages_become_visible() {
        let clock = clock();
        let queue = LocalQueue::new(
            EmbeddedDb::in_memory().unwrap(),
            "jobs",
            3,
            Arc::new(clock.clone()),
        )
        .unwrap();
        for body in ["one", "two", "three"] {
            queue.send(body).await.unwrap();
        }
        let first = queue
            .receive(2, Duration::from_secs(10), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            first.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        // "one" and "two" come back after their timeout and queue behind "three", visible since it
        // was sent; a message that keeps failing does not jump the queue.
        clock.advance(Duration::from_secs(11));
        let again = queue
            .receive(3, Duration::from_secs(10), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            again.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["three", "one", "two"]
        );
    }

    #[tokio::test]
    async fn queues_in_one_database_are_separate_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kotoba.db");
        let clock: Arc<dyn Clock> = Arc::new(clock());
        let db = EmbeddedDb::open(&path).unwrap();
        let a = LocalQueue::new(db.clone(), "a", 3, Arc::clone(&clock)).unwrap();
        let b = LocalQueue::new(db, "b", 3, Arc::clone(&clock)).unwrap();
        a.send("for a").await.unwrap();
        b.send("for b").await.unwrap();
        let got_a = a.receive(10, Duration::ZERO, Duration::ZERO).await.unwrap();
        assert_eq!(got_a.len(), 1);
        assert_eq!(got_a[0].body, "for a");
        // A receipt of queue a does nothing to queue b.
        b.delete(&got_a[0].receipt).await.unwrap();
        drop((a, b));

        let reopened = LocalQueue::new(EmbeddedDb::open(&path).unwrap(), "a", 3, clock).unwrap();
        let again = reopened
            .receive(10, Duration::from_secs(5), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].receive_count, 2);
    }

    #[test]
    fn bad_names_and_limits_are_refused() {
        let db = EmbeddedDb::in_memory().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(clock());
        assert!(LocalQueue::new(db.clone(), "", 3, Arc::clone(&clock)).is_err());
        assert!(LocalQueue::new(db.clone(), "has space", 3, Arc::clone(&clock)).is_err());
        assert!(LocalQueue::new(db, "jobs", 0, clock).is_err());
    }
}
