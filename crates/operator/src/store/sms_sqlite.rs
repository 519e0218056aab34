//! The SMS center's group commit on SQLite: one thread owns a second writer connection on the
//! node's file (opened by the engine: `Db::sqlite_writer`) and runs each batch as one
//! transaction of statements prepared once.
//!
//! Why a connection and a thread of their own: the SMS center commits thousands of changes a
//! second, and here a batch costs one hop to this thread and each change one `sqlite3_step`,
//! with no parameter bound by name and no SQL text built per batch shape (the cost per change
//! is `operator_sms_commit_seconds` / `operator_sms_changes_total` in `numport bench sms`).
//! The SQL and its effects are the same as the statements [`super::sms`] runs on PostgreSQL,
//! and the store tests run both.
//!
//! The connection shares the node's database file with the engine's writer (WAL: each waits
//! for the other's write lock on `busy_timeout`). Checkpoints run off the commit path
//! ([`numport_db::wal`]): this connection never checkpoints inside a commit, and between two
//! batches it brings a long WAL back to its start.

use std::sync::{Arc, Mutex, mpsc};

use numport_core::Millis;
use numport_db::wal::WalCheckpointer;
use numport_db::{SqliteWriter, StoreError};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::sms::{CANCEL_SQL, REPLACE_SQL, SmsApplied, SmsBatch, SmsState};
use crate::OperatorError;

type Outcome = Result<SmsApplied, rusqlite::Error>;

struct Job {
    batch: SmsBatch,
    now: Millis,
    done: oneshot::Sender<Outcome>,
}

/// The writer thread's mailbox; cheap to clone. Closing it ends the writer and checkpointer
/// threads, which close their connections.
#[derive(Clone)]
pub(crate) struct SqliteSmsWriter {
    jobs: Arc<Mutex<Option<Threads>>>,
}

/// The writer's mailbox and the checkpointer; dropping them ends both threads.
struct Threads {
    jobs: mpsc::Sender<Job>,
    _checkpoints: Arc<WalCheckpointer>,
}

impl SqliteSmsWriter {
    /// Starts the writer thread on `writer` (the engine's second writer on the node's file,
    /// which shares the file's checkpoints with the engine's writer).
    pub fn start(writer: SqliteWriter) -> Result<SqliteSmsWriter, OperatorError> {
        let SqliteWriter { conn: mut writer, checkpoints } = writer;
        let (jobs, rx) = mpsc::channel::<Job>();
        let wal = checkpoints.clone();
        std::thread::Builder::new().name("sms-writer".into()).spawn(move || {
            for job in rx {
                let outcome = apply(&mut writer, &job.batch, job.now);
                let _ = job.done.send(outcome);
                wal.reset_if_long(&writer);
            }
        })?;
        Ok(SqliteSmsWriter { jobs: Arc::new(Mutex::new(Some(Threads { jobs, _checkpoints: checkpoints }))) })
    }

    pub async fn apply(&self, batch: SmsBatch, now: Millis) -> Result<SmsApplied, OperatorError> {
        let (done, outcome) = oneshot::channel();
        let sent = match &*self.jobs.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(threads) => threads.jobs.send(Job { batch, now, done }).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Closed.into());
        }
        match outcome.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(StoreError::Closed.into()),
        }
    }

    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn apply(conn: &mut Connection, batch: &SmsBatch, now: Millis) -> Outcome {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (mut repeats, mut stale_finals) = (Vec::new(), Vec::new());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO sms_messages (id, system_id, source_addr, source_ton, destination, serving_operator, \
             route, esm_class, data_coding, registered_delivery, payload, state, submitted_at, expires_at, \
             next_attempt_at, origin_ref, scheduled_at, protocol_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
             ?10, ?11, 'queued', ?12, ?13, ?14, ?15, ?16, ?17) ON CONFLICT DO NOTHING",
        )?;
        let mut first_copy =
            tx.prepare_cached("SELECT id FROM sms_messages WHERE system_id = ?1 AND origin_ref = ?2")?;
        for m in &batch.inserts {
            let inserted = insert.execute(params![
                m.id,
                m.system_id,
                m.source_addr,
                m.source_ton,
                m.destination,
                m.serving_operator,
                m.route,
                m.esm_class,
                m.data_coding,
                m.registered_delivery,
                hex::encode(&m.payload),
                m.submitted_at,
                m.expires_at,
                m.next_attempt_at,
                m.origin_ref,
                m.scheduled_at,
                m.protocol_id,
            ])?;
            // Kept out by the unique (system_id, origin_ref): a repeat of a forwarded message.
            if inserted == 0
                && let Some(origin_ref) = &m.origin_ref
                && let Some(existing) =
                    first_copy.query_row(params![m.system_id, origin_ref], |r| r.get::<_, i64>(0)).optional()?
                && existing != m.id
            {
                repeats.push((m.id, existing));
            }
        }
    }
    {
        // registered_delivery bits 0-1: 1 asks for a receipt on any outcome, 2 on failure only.
        let mut delivered = tx.prepare_cached(
            "UPDATE sms_messages SET state = 'delivered', done_at = ?2, \
             receipt = CASE WHEN (registered_delivery % 4) = 1 THEN 'owed' ELSE 'none' END \
             WHERE id = ?1 AND state IN ('queued', 'forwarded')",
        )?;
        let mut failed = tx.prepare_cached(
            "UPDATE sms_messages SET state = ?3, done_at = ?2, \
             receipt = CASE WHEN (registered_delivery % 4) IN (1, 2) THEN 'owed' ELSE 'none' END \
             WHERE id = ?1 AND state IN ('queued', 'forwarded')",
        )?;
        for (id, state) in &batch.finals {
            let changed = match state {
                SmsState::Delivered => delivered.execute(params![id, now])?,
                other => failed.execute(params![id, now, other.as_str()])?,
            };
            if changed == 0 {
                stale_finals.push(*id);
            }
        }
    }
    {
        let mut forwarded = tx.prepare_cached(
            "UPDATE sms_messages SET state = 'forwarded', remote_id = ?2 WHERE id = ?1 AND state = 'queued'",
        )?;
        for (id, remote_id) in &batch.forwarded {
            forwarded.execute(params![id, remote_id])?;
        }
        let mut receipt_sent = tx.prepare_cached("UPDATE sms_messages SET receipt = 'sent' WHERE id = ?1")?;
        for id in &batch.receipts_sent {
            receipt_sent.execute(params![id])?;
        }
        let mut retry = tx.prepare_cached(
            "UPDATE sms_messages SET attempts = attempts + 1, next_attempt_at = ?2 WHERE id = ?1 AND state = 'queued'",
        )?;
        for (id, next) in &batch.retries {
            retry.execute(params![id, next])?;
        }
    }
    let amended = amend(&tx, batch, now)?;
    tx.commit()?;
    Ok(SmsApplied { repeats, stale_finals, amended })
}

/// The batch's cancels and replacements (the same statements as on PostgreSQL); the ids of
/// those that found their message queued.
fn amend(tx: &rusqlite::Transaction<'_>, batch: &SmsBatch, now: Millis) -> rusqlite::Result<Vec<i64>> {
    let mut amended = Vec::new();
    if !batch.cancels.is_empty() {
        let mut cancel = tx.prepare_cached(CANCEL_SQL)?;
        for (id, system_id) in &batch.cancels {
            if cancel.execute(params![now, id, system_id])? == 1 {
                amended.push(*id);
            }
        }
    }
    if !batch.replacements.is_empty() {
        let mut replace = tx.prepare_cached(REPLACE_SQL)?;
        for r in &batch.replacements {
            let p = params![
                r.data_coding,
                hex::encode(&r.payload),
                r.registered_delivery,
                r.expires_at,
                r.scheduled_at,
                r.id,
                r.system_id
            ];
            if replace.execute(p)? == 1 {
                amended.push(r.id);
            }
        }
    }
    Ok(amended)
}
