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
//! frames the last checkpoint did not copy, and the WAL grows by hundreds of megabytes in a
//! porting benchmark). So once the WAL is [long](WalCheckpointer::wal_is_long), the writer
//! itself, between two transactions, runs [`PASSIVE_CHECKPOINT`] and copies the little the
//! background left: no commit can slip in between, so the next transaction writes the WAL from
//! its start again. Nothing here ever waits on a lock (a `RESTART` checkpoint would, with the
//! busy handler sleeping up to 100 ms).
//!
//! Everything waits on the writer while it does, so "the little" must stay little: its
//! checkpoint first makes the WAL durable (an fsync of all written since the last
//! checkpoint), then copies what is left. With a background pass every [`CHECKPOINT_EVERY`]
//! alone, that is tens of megabytes at the porting benchmark's half load, and each restart
//! would hold every transaction for tens of milliseconds: the p99 of a port (`numport bench
//! porting`). So once the WAL is past [`CATCH_UP_FRAMES`], the background checkpoints back to
//! back, each covering only what the writer wrote during the one before, and the restart finds
//! a few milliseconds' worth. Its fsync can still wait for the filesystem's journal now and
//! then; the p99 of `numport bench porting` includes it.
//!
//! Where the blocking calls run: the background checkpoints on their own thread; a writer's
//! [`reset_if_long`](WalCheckpointer::reset_if_long) on the writer's thread, which the engine
//! runs through [`crate::sql::blocking`] (or, for the operator node's SMS writer, on that
//! writer's own thread).

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::SQLITE_PRAGMAS;

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL frames (pages: 64 MiB of 4 KiB, the clearinghouse's 32 MiB of 2 KiB) past which the
/// writer brings the WAL back to its start.
const RESTART_FRAMES: i64 = 16_384;
/// WAL frames past which the background checkpoints without pausing, so that the writer's
/// restart finds little to make durable and copy.
const CATCH_UP_FRAMES: i64 = RESTART_FRAMES / 2;
/// The pause between two checkpoints while catching up: enough for the writer's next
/// transactions to get the WAL's lock between them.
const CATCH_UP_PAUSE: Duration = Duration::from_millis(1);

/// Copies into the database what no reader still needs from the WAL, without waiting for
/// anyone. Its second column is the WAL's length in frames, its third the frames copied.
pub const PASSIVE_CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// The background checkpoint thread of one SQLite file; [`stop`](WalCheckpointer::stop) or
/// dropping it ends the thread.
#[derive(Debug)]
pub struct WalCheckpointer {
    /// The WAL's length in frames, as the last commit of a [watched](WalCheckpointer::watch)
    /// writer or the last passive checkpoint found it.
    frames: Arc<AtomicI64>,
    /// Checkpoints the thread has run.
    passes: Arc<AtomicU64>,
    stop: Mutex<Option<mpsc::Sender<()>>>,
}

impl WalCheckpointer {
    /// Starts checkpointing `path` (an existing database in WAL mode) on a thread named `name`.
    pub fn start(path: &Path, name: &str) -> std::io::Result<WalCheckpointer> {
        let conn = rusqlite::Connection::open(path).map_err(std::io::Error::other)?;
        conn.execute_batch(SQLITE_PRAGMAS).map_err(std::io::Error::other)?;
        let frames = Arc::new(AtomicI64::new(0));
        let seen = frames.clone();
        let passes = Arc::new(AtomicU64::new(0));
        let counted = passes.clone();
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new().name(name.into()).spawn(move || {
            let mut pause = CHECKPOINT_EVERY;
            // The WAL's length and the frames copied, as the last checkpoint left them.
            let mut last = (0, 0);
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(pause) {
                pause = CHECKPOINT_EVERY;
                counted.fetch_add(1, Ordering::Relaxed);
                match conn.query_row(PASSIVE_CHECKPOINT, [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))) {
                    Ok(now) => {
                        seen.store(now.0, Ordering::Relaxed);
                        // Back to back only while the writer writes or the copy moves on: a
                        // long WAL on an idle database (its writer restarts it at its next
                        // transaction) or one a reader holds back is looked at as usual.
                        if now.0 >= CATCH_UP_FRAMES && now != last {
                            pause = CATCH_UP_PAUSE;
                        }
                        last = now;
                    }
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint"),
                }
            }
        })?;
        Ok(WalCheckpointer { frames, passes, stop: Mutex::new(Some(stop)) })
    }

    /// A writer's connection to this checkpointer's file: [`SQLITE_PRAGMAS`], no checkpoint
    /// inside its commits (this thread makes them), and its commits [watched](Self::watch).
    /// Call [`reset_if_long`](Self::reset_if_long) between its transactions.
    pub fn open_writer(&self, path: &Path) -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch(SQLITE_PRAGMAS)?;
        conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
        self.watch(&conn);
        Ok(conn)
    }

    /// Have every commit of `conn` (a writer of this file) report the WAL's length at once.
    ///
    /// Without it the length is known only from the background checkpoints, each reporting
    /// what it found when it ended: under a fast stream of commits that lags by a whole
    /// checkpoint, long enough for the WAL to grow by hundreds of megabytes before the writer
    /// learns it is long.
    /// This is SQLite's WAL hook, which rusqlite does not wrap; it replaces the automatic
    /// checkpoint, which [`open_writer`](Self::open_writer) turns off anyway.
    fn watch(&self, conn: &rusqlite::Connection) {
        unsafe extern "C" fn on_commit(
            frames: *mut std::ffi::c_void,
            _db: *mut rusqlite::ffi::sqlite3,
            _schema: *const std::ffi::c_char,
            pages: std::ffi::c_int,
        ) -> std::ffi::c_int {
            // SAFETY: `frames` is the counter leaked by `watch`, which is never freed.
            let frames = unsafe { &*(frames as *const AtomicI64) };
            frames.store(i64::from(pages), Ordering::Relaxed);
            rusqlite::ffi::SQLITE_OK
        }
        // One counter reference per watched connection, kept for the rest of the process: the
        // hook may run for as long as the connection lives, which nothing here bounds.
        let frames = Arc::into_raw(self.frames.clone()) as *mut std::ffi::c_void;
        // SAFETY: the handle is that of a live connection (borrowed here); the hook touches
        // nothing but the counter, which outlives it.
        unsafe {
            rusqlite::ffi::sqlite3_wal_hook(conn.handle(), Some(on_commit), frames);
        }
    }

    /// Checkpoints the background thread has run: a few a second, many while catching up.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// Whether the writer should run [`PASSIVE_CHECKPOINT`] before its next transaction.
    pub fn wal_is_long(&self) -> bool {
        self.frames.load(Ordering::Relaxed) >= RESTART_FRAMES
    }

    /// For a writer between two of its transactions: if the WAL is long, copy what the
    /// background left, so that the next transaction writes the WAL from its start. While a
    /// background checkpoint runs, SQLite answers "busy" and nothing is copied; the writer
    /// tries again after its next transaction.
    pub fn reset_if_long(&self, writer: &rusqlite::Connection) {
        if !self.wal_is_long() {
            return;
        }
        match writer.query_row(PASSIVE_CHECKPOINT, [], |r| r.get::<_, i64>(0)) {
            Ok(0) => self.frames.store(0, Ordering::Relaxed),
            Ok(_busy) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint"),
        }
    }

    /// Ends the thread, which closes its connection.
    pub fn stop(&self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL past [`CATCH_UP_FRAMES`] that nobody writes to (its writer restarts it only at its
    /// next transaction) is checkpointed at the usual pace once copied, not a thousand times a
    /// second.
    #[test]
    fn an_idle_long_wal_is_not_checkpointed_back_to_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(b BLOB);")
            .unwrap();
        let checkpoints = WalCheckpointer::start(&path, "wal-test").unwrap();
        let writer = checkpoints.open_writer(&path).unwrap();
        // A reader holds its snapshot while the writer writes, so no checkpoint can copy the
        // WAL and let it start over: it grows past the catch-up length.
        let reader = rusqlite::Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        let pages_a_commit = 100;
        for _ in 0..=CATCH_UP_FRAMES / pages_a_commit {
            writer.execute_batch("BEGIN").unwrap();
            let mut insert = writer.prepare_cached("INSERT INTO t VALUES (randomblob(4000))").unwrap();
            for _ in 0..pages_a_commit {
                insert.execute([]).unwrap();
            }
            drop(insert);
            writer.execute_batch("COMMIT").unwrap();
        }
        assert!(checkpoints.frames.load(Ordering::Relaxed) >= CATCH_UP_FRAMES);
        reader.execute_batch("COMMIT").unwrap();
        drop(reader);

        // Copied at the next passes; after that, nothing moves.
        std::thread::sleep(CHECKPOINT_EVERY * 3);
        let before = checkpoints.passes();
        std::thread::sleep(CHECKPOINT_EVERY * 4);
        let passes = checkpoints.passes() - before;
        assert!(passes <= 8, "{passes} checkpoints in {:?} of an idle WAL", CHECKPOINT_EVERY * 4);
        assert!(checkpoints.frames.load(Ordering::Relaxed) >= CATCH_UP_FRAMES, "the WAL is still long");
    }
}
