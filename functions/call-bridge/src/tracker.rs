//! Calls in progress, for graceful shutdown: how many there are, a signal that tells them all to end,
//! and a way to wait until they have finished (logs written).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

#[derive(Debug)]
struct Inner {
    active: AtomicUsize,
    idle: Notify,
    /// Notified whenever a call starts or ends.
    changed: Notify,
    draining: AtomicBool,
    end: watch::Sender<bool>,
}

/// Shared by the server and every call.
#[derive(Debug, Clone)]
pub struct CallTracker {
    inner: Arc<Inner>,
}

/// Held by a call from the moment its socket is accepted until its log is written.
#[derive(Debug)]
pub struct CallGuard {
    inner: Arc<Inner>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.inner.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
        self.inner.changed.notify_waiters();
    }
}

impl Default for CallTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl CallTracker {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                active: AtomicUsize::new(0),
                idle: Notify::new(),
                changed: Notify::new(),
                draining: AtomicBool::new(false),
                end: watch::Sender::new(false),
            }),
        }
    }

    pub fn enter(&self) -> CallGuard {
        self.inner.active.fetch_add(1, Ordering::SeqCst);
        self.inner.changed.notify_waiters();
        CallGuard {
            inner: self.inner.clone(),
        }
    }

    /// Resolves at the next start or end of a call (enable it before reading [`active`](Self::active)
    /// so a change in between is not missed).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.changed.notified()
    }

    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::SeqCst)
    }

    /// From now on, new calls are refused and health checks fail (the load balancer stops routing here).
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Tells every call to end now (they still write their logs).
    pub fn end_all(&self) {
        self.inner.end.send_replace(true);
    }

    /// Resolves once [`end_all`](Self::end_all) has been called.
    pub async fn ended(&self) {
        let mut rx = self.inner.end.subscribe();
        // The sender lives as long as `self`, so this only returns once the flag is set.
        let _ = rx.wait_for(|ended| *ended).await;
    }

    /// Waits until no call is in progress, for at most `limit`. Returns whether that happened.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a call ending in between is not missed.
            notified.as_mut().enable();
            if self.active() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active() == 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_when_the_last_call_leaves() {
        let tracker = CallTracker::new();
        assert!(tracker.wait_idle(Duration::ZERO).await);
        let guard = tracker.enter();
        assert!(!tracker.wait_idle(Duration::from_millis(1)).await);
        let waiter = {
            let tracker = tracker.clone();
            tokio::spawn(async move { tracker.wait_idle(Duration::from_secs(60)).await })
        };
        drop(guard);
        assert!(waiter.await.unwrap());
        let ended = {
            let tracker = tracker.clone();
            tokio::spawn(async move { tracker.ended().await })
        };
        tracker.end_all();
        ended.await.unwrap();
    }
}
