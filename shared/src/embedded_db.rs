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
#[derive(Clone)]
pub struct EmbeddedDb {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
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
            path: path.to_path_buf(),
        })
    }

    /// A private database in memory (unit tests).
    pub fn in_memory() -> anyhow::Result<Self> {
        let conn = Connection::open_in_memory().context("opening in-memory SQLite")?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
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
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
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
