//! The embedded SQLite database under the data directory, shared by the embedded item store and the
//! local job queue, so both are durable and atomic without any server.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rusqlite::Connection;

/// A handle to one SQLite database file. Clones share the connection.
///
/// One connection behind a mutex: SQLite serialises writers anyway, and holding the lock for a whole
/// closure makes every read-modify-write (conditional puts, atomic adds, queue receives) atomic.
/// Turns at the connection go to requests first: a call from a thread marked as background work
/// ([`mark_this_thread_background`]) waits while a request's call is waiting.
#[derive(Clone)]
pub struct EmbeddedDb {
    conn: Arc<Mutex<Connection>>,
    turns: Arc<Turns>,
    path: PathBuf,
}

std::thread_local! {
    static BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread's database calls as background work (the local runner's workers): they
/// take the connection only when no request's call is waiting for it. Deployed, the workers are
/// Lambdas with their own database; locally they share this one with chat, and a burst of webhook
/// deliveries must not make a chat wait.
pub fn mark_this_thread_background() {
    BACKGROUND.with(|b| b.set(true));
}

/// Whether the calling thread was marked with [`mark_this_thread_background`].
pub fn is_background_thread() -> bool {
    BACKGROUND.with(std::cell::Cell::get)
}

/// Whose turn it is at the connection: a request's waiting call goes before any background call.
#[derive(Default)]
struct Turns {
    state: Mutex<TurnState>,
    foreground: std::sync::Condvar,
    background: std::sync::Condvar,
}

#[derive(Default)]
struct TurnState {
    busy: bool,
    foreground_waiting: usize,
    background_waiting: usize,
}

/// A turn at the connection, given back when dropped.
struct Turn<'a>(&'a Turns);

impl Turns {
    fn state(&self) -> std::sync::MutexGuard<'_, TurnState> {
        // The state is two counters and a flag, updated whole: a panic elsewhere cannot leave it half-done.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self, background: bool) -> Turn<'_> {
        let mut state = self.state();
        let wait = |cv: &std::sync::Condvar, state| {
            cv.wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        if background {
            state.background_waiting += 1;
            while state.busy || state.foreground_waiting > 0 {
                state = wait(&self.background, state);
            }
            state.background_waiting -= 1;
        } else {
            state.foreground_waiting += 1;
            while state.busy {
                state = wait(&self.foreground, state);
            }
            state.foreground_waiting -= 1;
        }
        state.busy = true;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.busy = false;
        if state.foreground_waiting > 0 {
            self.0.foreground.notify_one();
        } else {
            self.0.background.notify_one();
        }
    }
}

impl std::fmt::Debug for EmbeddedDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedDb")
            .field("path", &self.path)
            .finish()
    }
}

/// How often the checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Checkpoints the database on its own connection every [`CHECKPOINT_EVERY`] until the database's
/// last handle is dropped. A passive checkpoint neither waits for nor blocks the writers.
fn spawn_checkpointer(
    path: &Path,
    alive: std::sync::Weak<Mutex<Connection>>,
) -> anyhow::Result<()> {
    let checkpointer = Connection::open(path)
        .with_context(|| format!("opening SQLite database {} to checkpoint", path.display()))?;
    checkpointer
        .busy_timeout(std::time::Duration::from_secs(5))
        .context("setting busy timeout")?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            loop {
                std::thread::sleep(CHECKPOINT_EVERY);
                if alive.strong_count() == 0 {
                    return;
                }
                let done = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if let Err(e) = done {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; the next one retries");
                }
            }
        })
        .context("starting the SQLite checkpoint thread")?;
    Ok(())
}

impl EmbeddedDb {
    /// Opens (creating if needed) the database file, in WAL mode with a busy timeout.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("opening SQLite database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .context("enabling WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .context("setting synchronous")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .context("setting busy timeout")?;
        // Checkpoints (copying the WAL into the database, with its fsyncs) run on a thread of their
        // own instead of inside whichever write crossed the WAL's size: that write was a request's,
        // and the checkpoint's fsyncs were the p99 of the chat's settle.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .context("turning off automatic checkpoints")?;
        let conn = Arc::new(Mutex::new(conn));
        spawn_checkpointer(path, Arc::downgrade(&conn))?;
        Ok(Self {
            conn,
            turns: Arc::default(),
            path: path.to_path_buf(),
        })
    }

    /// A private database in memory (unit tests).
    pub fn in_memory() -> anyhow::Result<Self> {
        let conn = Connection::open_in_memory().context("opening in-memory SQLite")?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            turns: Arc::default(),
            path: PathBuf::from(":memory:"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with exclusive use of the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let (conn, turns) = (Arc::clone(&self.conn), Arc::clone(&self.turns));
        tokio::task::spawn_blocking(move || {
            let _turn = turns.take(is_background_thread());
            // A panic inside a closure poisons the mutex; the connection itself is still consistent
            // (SQLite rolls back the open transaction), so carry on with it.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .context("embedded database task failed")?
    }

    /// Like [`call`](Self::call) but on the current thread: for schema set-up at start.
    pub fn call_blocking<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins until `ready` holds of the turn state (the other threads have queued up).
    fn until(turns: &Turns, ready: impl Fn(&TurnState) -> bool) {
        while !ready(&turns.state()) {
            std::thread::yield_now(); // poll: another thread is about to wait
        }
    }

    #[test]
    fn a_waiting_request_goes_before_waiting_background_work() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = turns.take(true);
        let queue = |background: bool, name: &'static str| {
            let (turns, order) = (Arc::clone(&turns), Arc::clone(&order));
            std::thread::spawn(move || {
                let _turn = turns.take(background);
                order.lock().unwrap().push(name);
            })
        };
        let worker = queue(true, "background");
        until(&turns, |s| s.background_waiting == 1);
        let request = queue(false, "request");
        until(&turns, |s| s.foreground_waiting == 1);
        drop(held);
        request.join().unwrap();
        worker.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["request", "background"]);
        let state = turns.state();
        assert!(!state.busy && state.foreground_waiting == 0 && state.background_waiting == 0);
    }
}
