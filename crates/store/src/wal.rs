//! WAL checkpoints off the commit path, for SQLite files written at high rates.
//!
//! SQLite checkpoints the WAL into the database file from inside the commit that crosses
//! `wal_autocheckpoint` pages, with an fsync: every thousand pages one commit takes tens of
//! milliseconds longer, and everything queued behind the writer with it. A writer that turns
//! that off (`PRAGMA wal_autocheckpoint=0`) starts a [`WalCheckpointer`]: a thread with a
//! connection of its own runs `PASSIVE` checkpoints, which copy what no reader still needs
//! without taking the write lock.
//!
//! Under a steady stream of commits that alone never lets the WAL start over (each commit adds
//! frames the last checkpoint did not copy; one benchmark grew it by 300 MB). So once the WAL
//! is [long](WalCheckpointer::wal_is_long), the writer itself, between two transactions, runs
//! [`PASSIVE_CHECKPOINT`] and copies the little the background left: no commit can slip in
//! between, so the next transaction writes the WAL from its start again. Nothing here ever
//! waits on a lock (a `RESTART` checkpoint would, with the busy handler sleeping up to 100 ms).

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::SQLITE_PRAGMAS;

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL frames (pages, ~64 MiB) past which the writer brings the WAL back to its start.
const RESTART_FRAMES: i64 = 16_384;

/// Copies into the database what no reader still needs from the WAL, without waiting for
/// anyone. Its second column is the WAL's length in frames.
pub const PASSIVE_CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// The background checkpoint thread of one SQLite file; [`stop`](WalCheckpointer::stop) or
/// dropping it ends the thread.
#[derive(Debug)]
pub struct WalCheckpointer {
    /// The WAL's length in frames, as the last passive checkpoint found it.
    frames: Arc<AtomicI64>,
    stop: Mutex<Option<mpsc::Sender<()>>>,
}

impl WalCheckpointer {
    /// Starts checkpointing `path` (an existing database in WAL mode) on a thread named `name`.
    pub fn start(path: &Path, name: &str) -> std::io::Result<WalCheckpointer> {
        let conn = rusqlite::Connection::open(path).map_err(std::io::Error::other)?;
        conn.execute_batch(SQLITE_PRAGMAS).map_err(std::io::Error::other)?;
        let frames = Arc::new(AtomicI64::new(0));
        let seen = frames.clone();
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new().name(name.into()).spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                match conn.query_row(PASSIVE_CHECKPOINT, [], |r| r.get(1)) {
                    Ok(n) => seen.store(n, Ordering::Relaxed),
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint"),
                }
            }
        })?;
        Ok(WalCheckpointer { frames, stop: Mutex::new(Some(stop)) })
    }

    /// Whether the writer should run [`PASSIVE_CHECKPOINT`] before its next transaction.
    pub fn wal_is_long(&self) -> bool {
        self.frames.load(Ordering::Relaxed) >= RESTART_FRAMES
    }

    /// The writer's own checkpoint ran: the WAL starts over with its next transaction.
    pub fn restarted(&self) {
        self.frames.store(0, Ordering::Relaxed);
    }

    /// Ends the thread, which closes its connection.
    pub fn stop(&self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
