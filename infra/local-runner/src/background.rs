//! The local runner's background work (the training and webhook workers, the daily timer) on a tokio
//! runtime of its own whose threads run at a low CPU priority (`KOTOBA_BACKGROUND_NICE`, default 19,
//! the lowest).
//!
//! Deployed, those workers are Lambdas of their own and never take CPU from a chat. On one laptop they
//! share the cores and the one SQLite connection with the API. The workers' threads (their blocking
//! pool too, where their SQLite and queue calls run) are niced, so the kernel's scheduler gives a chat
//! request the CPU first, and marked as background work, so a request's database call goes before
//! theirs ([`shared::embedded_db::mark_this_thread_background`]): a burst of webhook deliveries or a
//! big training job does not make chat wait.

use std::future::Future;

use anyhow::Context;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

/// A runtime for background work; shut down (without waiting for its tasks) when dropped.
pub struct Background {
    runtime: Option<Runtime>,
}

impl Background {
    /// A runtime whose threads run at `nice`.
    pub fn start(nice: i32) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kotoba-background")
            .on_thread_start(move || {
                lower_this_threads_priority(nice);
                // Its SQLite calls (run on this runtime's blocking threads) wait for requests' calls,
                // unless background work was asked to run on equal terms (nice 0).
                if nice > 0 {
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

    pub fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("running until dropped")
            .handle()
    }

    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle().spawn(work)
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

/// Nices the calling thread. Linux schedules threads one by one, so this lowers only the background
/// runtime's threads, not the process. Elsewhere, or when refused, the work still runs, at the
/// process's priority.
fn lower_this_threads_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers; no memory is shared.
        let refused = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0
        };
        if refused {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "background thread keeps normal priority"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    fn this_threads_nice() -> libc::c_int {
        // SAFETY: as above.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn background_work_runs_niced_and_the_callers_thread_is_left_alone() {
        let before = this_threads_nice();
        let background = Background::start(19).unwrap();
        let (task, blocking) = background
            .spawn(async {
                let blocking = tokio::task::spawn_blocking(this_threads_nice)
                    .await
                    .unwrap();
                (this_threads_nice(), blocking)
            })
            .await
            .unwrap();
        assert_eq!(task, 19, "the runtime's worker thread");
        assert_eq!(blocking, 19, "its blocking pool, where SQLite calls run");
        assert_eq!(this_threads_nice(), before);
        drop(background);
    }
}
