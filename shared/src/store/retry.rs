//! Retrying a store write whose backend failed, for work that has no caller to answer a 503 to (the
//! end of a call runs after both sockets closed: its minutes and log must not be lost to one blip).

use std::future::Future;
use std::time::Duration;

use super::StoreError;

/// How many times an operation runs at most.
pub const ATTEMPTS: u32 = 4;
/// The wait before the second attempt; each later wait is three times the one before.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);

/// Runs `op` until it succeeds or fails for a reason other than the backend, at most [`ATTEMPTS`]
/// times. Conditions are answers, not failures: they return at once.
pub async fn with_retries<T, F, Fut>(what: &str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut delay = FIRST_DELAY;
    let mut attempt = 1;
    loop {
        match op().await {
            Err(StoreError::Backend(e)) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 3;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn failing_until(
        ok_from: u32,
        calls: &AtomicU32,
    ) -> impl Future<Output = Result<u32, StoreError>> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n < ok_from {
                Err(StoreError::Backend(anyhow::anyhow!("throttled")))
            } else {
                Ok(n)
            }
        }
    }

    // Paused time: the backoff's sleeps pass at once, in order, without waiting in real time.
    #[tokio::test(start_paused = true)]
    async fn backend_failures_are_retried_with_growing_waits() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = with_retries("writing", || failing_until(3, &calls)).await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(started.elapsed(), FIRST_DELAY + FIRST_DELAY * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn it_gives_up_after_the_last_attempt() {
        let calls = AtomicU32::new(0);
        let result = with_retries("writing", || failing_until(u32::MAX, &calls)).await;
        assert!(matches!(result, Err(StoreError::Backend(_))));
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn conditions_return_at_once() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retries("writing", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(StoreError::ConditionFailed) }
        })
        .await;
        assert!(matches!(result, Err(StoreError::ConditionFailed)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
