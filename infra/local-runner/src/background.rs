//! The local runner's background work (the training and webhook workers, the daily timer) on a tokio
//! runtime of its own whose threads are marked as background work.
//!
//! Deployed, those workers are Lambdas of their own and never make a chat wait. On one laptop they share
//! the one SQLite connection with the API: marked, their database calls (run on this runtime's blocking
//! threads) take the connection only when no request's call is waiting for it
//! ([`shared::embedded_db::mark_this_thread_background`]), so a burst of webhook deliveries or a big
//! training job does not slow chat down (`KOTOBA_BACKGROUND_YIELDS`, default on).
//!
//! The threads keep normal CPU priority on purpose: a niced thread that holds the connection while
//! the machine is busy would keep every request waiting for it (priority inversion), and nicing alone
//! measured no gain (BENCHMARKS.md, "Webhook burst").

use std::future::Future;

use anyhow::Context;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// A runtime for background work; shut down (without waiting for its tasks) when dropped.
pub struct Background {
    runtime: Option<Runtime>,
}

impl Background {
    /// A runtime whose threads' database calls yield to requests' calls when `yields`.
    pub fn start(yields: bool) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            // One thread for the workers' async work: the other cores stay the API's.
            .worker_threads(1)
            .thread_name("kotoba-background")
            .on_thread_start(move || {
                if yields {
                    shared::embedded_db::mark_this_thread_background();
                }
            })
            .enable_all()
            .build()
            .context("starting the background runtime")?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("running until dropped")
            .spawn(work)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Dropped from inside the API's runtime: a blocking shutdown would panic there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::embedded_db::is_background_thread;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn background_threads_are_marked_and_the_callers_are_not() {
        for yields in [true, false] {
            let background = Background::start(yields).unwrap();
            let (task, blocking) = background
                .spawn(async {
                    let blocking = tokio::task::spawn_blocking(is_background_thread)
                        .await
                        .unwrap();
                    (is_background_thread(), blocking)
                })
                .await
                .unwrap();
            assert_eq!(task, yields, "the runtime's worker thread");
            assert_eq!(
                blocking, yields,
                "its blocking pool, where the SQLite calls run"
            );
            assert!(!is_background_thread(), "the caller's thread");
        }
    }
}
