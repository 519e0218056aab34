//! Opening a role's database ([`Db::open`]: SQLite (WAL) by path or PostgreSQL by URL, then the
//! role's migrations), and the ways in: transactions (group-committed on SQLite), reads, and the
//! writer itself.
//!
//! Where SQLite's blocking calls run: a transaction driven by [`Db::run`], statements, commit and
//! checkpoint included, runs on the `db-tx` thread, which does nothing else; the background
//! checkpoints on a thread of their own ([`crate::wal`]); everything else (reads, [`Db::acquire`]'s
//! writer, a transaction begun outside [`Db::run`]) runs its statements on the caller's thread,
//! a runtime worker included (they take microseconds; see `sql::statement` for the measured
//! reason), and the WAL restart's fsync through [`crate::sql::blocking`], which is
//! `tokio::task::block_in_place` on a multi-threaded runtime's worker. Opening the files runs in
//! `spawn_blocking`.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, OwnedMutexGuard, watch};

use crate::migrate::Migration;
use crate::pg::{PgListener, PgPool};
use crate::sql::{Connection, blocking};
use crate::wal::WalCheckpointer;
use crate::{Result, StoreError};

/// Which engine holds the database; only migrations and how connections are kept depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `postgres://…` and `postgresql://…` are PostgreSQL; anything else is a SQLite file.
    pub fn of(url: &str) -> Backend {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") { Backend::Postgres } else { Backend::Sqlite }
    }
}

/// PostgreSQL sessions a database keeps unless its configuration says otherwise. Sessions beyond
/// what the database host's cores can run only queue on its locks and its scheduler, so a
/// larger host wants more; `numport bench porting --db postgres` measures the default on the
/// benchmark machine.
pub const DEFAULT_SESSIONS: usize = 8;

/// Where a role's database is and how many sessions it keeps: the `database_url` and
/// `database_sessions` keys of every role's configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    /// `sqlite://path/to/file.db` (created with its directory on first start) or
    /// `postgres://user@host/database`.
    pub url: String,
    /// PostgreSQL sessions kept open. SQLite has one writer and the readers of the role's
    /// [`SqliteLayout`] whatever this says.
    pub sessions: usize,
}

impl DbConfig {
    /// `url` with [`DEFAULT_SESSIONS`].
    pub fn new(url: impl Into<String>) -> DbConfig {
        DbConfig { url: url.into(), sessions: DEFAULT_SESSIONS }
    }
}

impl Default for DbConfig {
    fn default() -> DbConfig {
        DbConfig::new("")
    }
}

/// A role's migrations, one folder per engine (`migrations/sqlite`, `migrations/postgres` in
/// the role's crate).
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub sqlite: &'static [Migration],
    pub postgres: &'static [Migration],
}

/// How a role's SQLite file is laid out and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteLayout {
    /// The page size a new file is created with (an existing file keeps its own); `None` for
    /// SQLite's default of 4 KiB.
    pub page_size: Option<u32>,
    /// Read-only connections beside the writer for [`Db::read`]; with none, reads take the writer.
    pub readers: usize,
}

/// What a role brings to the engine: its name (for errors and thread names), its migrations,
/// and its SQLite layout. A role defines one as a constant and opens its database with
/// [`Db::open`]; the database must be the role's own, as its migration history is.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    pub role: &'static str,
    pub migrations: Migrations,
    pub sqlite: SqliteLayout,
}

/// How every numport SQLite database runs. WAL with `synchronous=NORMAL`: a commit survives a
/// crash of the process (`kill -9`) without an fsync per transaction; only a power cut can lose
/// the last commits. A 64 MiB page cache per connection keeps hot tables out of `pread` (the
/// SMS center's tables are read and written thousands of times a second). No `mmap_size`: in
/// WAL mode a connection that finds the WAL changed since its last read unmaps the whole file
/// (`pagerBeginReadTransaction`), so each reader beside a busy writer would pay a `munmap`, a
/// TLB shootdown across the cores and the page faults to map it again, every transaction
/// (`numport bench porting` shows it in the p50 of a port). `temp_store=MEMORY` keeps statement and
/// savepoint journals in memory: each transaction of a group commit is a savepoint, whose
/// journal otherwise spills to a temporary file (an open, writes and an unlink per batch).
pub const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON; \
     PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;";

/// The file a SQLite URL names, or `None` for an in-memory database.
pub fn sqlite_file(url: &str) -> Option<&std::path::Path> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::Path::new(path))
}

/// A SQLite URL ready to open: its directory created (SQLite creates the file, not the folder)
/// and `mode=rwc` added so a first start creates the database.
pub fn prepare_sqlite_url(url: &str) -> std::io::Result<String> {
    if let Some(file) = sqlite_file(url)
        && let Some(dir) = file.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    if url.contains("mode=") {
        return Ok(url.to_owned());
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}mode=rwc"))
}

/// Most transactions one SQLite commit makes durable together.
const MAX_BATCH: usize = 128;
/// How long a batch stays open for more transactions while others queue for the writer:
/// the bound on what group commit adds to a transaction's latency under load.
const BATCH_AGE: Duration = Duration::from_millis(5);

/// A handle on a role's database; cheap to clone.
///
/// Three ways in, by what the caller does:
/// - [`Db::begin`]: a transaction. On SQLite, transactions run one at a time on the single
///   writer connection and are **committed in groups**: each is a savepoint in an open batch,
///   and [`DbTx::commit`] returns once the batch's one `COMMIT` has made it durable. A commit
///   writes the WAL, a large share of what SQLite spends per port, so under load several
///   requests share one (what `numport bench porting` measures in ports/s).
/// - [`Db::read`]: reads. On SQLite, read-only connections of their own, which WAL lets run
///   beside the writer and which see only committed (durable) data, never a batch in flight.
/// - [`Db::acquire`]: the writer in autocommit mode, for administration, and for a role whose
///   statements all run on its one writer (the operator node); on SQLite it commits a batch in
///   flight first, and when given back with a long WAL it brings the WAL back to its start.
///
/// PostgreSQL has a pool and real transactions for all three.
#[derive(Debug, Clone)]
pub struct Db {
    handle: Handle,
    pub backend: Backend,
}

#[derive(Debug, Clone)]
enum Handle {
    /// PostgreSQL, and its URL (for [`Db::listen`]).
    Pool(PgPool, Arc<str>),
    Sqlite(Arc<Sqlite>),
}

/// SQLite has one writer, so one connection behind a fair mutex serves it best: no
/// `SQLITE_BUSY` from our own process, and no pool bookkeeping. Its connections are rusqlite's,
/// run on the thread that holds them (see [`crate::sql`] for why).
struct Sqlite {
    /// The database file.
    file: PathBuf,
    /// `None` once closed.
    writer: Arc<Mutex<Option<Writer>>>,
    /// Tasks queued for the writer: a transaction that ends while none is commits its batch
    /// at once, so an idle system never waits for a group.
    waiting: AtomicUsize,
    /// Told when a batch is left open for the next holder; the lingerer then queues for the
    /// writer and commits the batch once those ahead of it have joined.
    linger: Arc<Notify>,
    readers: Vec<Arc<Mutex<Option<Connection>>>>,
    next_reader: AtomicUsize,
    checkpoints: Arc<WalCheckpointer>,
    /// Where [`Db::run`] drives transactions; see there.
    driver: TxDriver,
}

/// A single-threaded runtime on a thread of its own; stops when dropped.
struct TxDriver {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TxDriver {
    fn start() -> std::io::Result<TxDriver> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("db-tx".into()).spawn(move || {
            let _ = rt.block_on(stopped);
        })?;
        Ok(TxDriver { handle, _stop: stop })
    }
}

impl fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sqlite").field("readers", &self.readers.len()).finish_non_exhaustive()
    }
}

struct Writer {
    conn: Connection,
    /// The outer transaction the savepoints are released into, while one is open.
    batch: Option<Batch>,
}

/// An open outer transaction: how many transactions ended in it, and their commit's outcome.
struct Batch {
    members: usize,
    opened: std::time::Instant,
    outcome: watch::Sender<Option<BatchOutcome>>,
}

type BatchOutcome = std::result::Result<(), Arc<str>>;

type WriterGuard = OwnedMutexGuard<Option<Writer>>;

/// The writer behind a guard that [`Sqlite::writer`] handed out: never `None`.
fn writer(guard: &mut WriterGuard) -> &mut Writer {
    guard.as_mut().unwrap_or_else(|| unreachable!("closed writer lent out"))
}

impl Sqlite {
    /// Wait for the writer, counted in [`Sqlite::waiting`] meanwhile.
    async fn writer(&self) -> Result<WriterGuard> {
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _queued = Queued(&self.waiting);
        let guard = self.writer.clone().lock_owned().await;
        if guard.is_none() {
            return Err(StoreError::Closed);
        }
        Ok(guard)
    }

    /// Hand the writer on after a transaction: commit the batch now if nobody is waiting for
    /// the writer, or the batch is full or old; otherwise leave it open for the next holder to
    /// join, and the lingerer commits it should none come.
    async fn release(&self, mut guard: WriterGuard) {
        let w = writer(&mut guard);
        if let Some(batch) = &w.batch {
            if self.waiting.load(Ordering::SeqCst) == 0
                || batch.members >= MAX_BATCH
                || batch.opened.elapsed() >= BATCH_AGE
            {
                let _ = self.commit_batch(w).await;
            } else {
                self.linger.notify_one();
            }
        }
    }

    /// Commit the open batch and tell its members; then, between two transactions, bring a
    /// long WAL back to its start (see [`crate::wal`]).
    async fn commit_batch(&self, w: &mut Writer) -> BatchOutcome {
        let Some(batch) = w.batch.take() else { return Ok(()) };
        let outcome = match w.conn.execute_batch("COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = w.conn.execute_batch("ROLLBACK").await;
                Err(Arc::from(e.to_string()))
            }
        };
        batch.outcome.send_replace(Some(outcome.clone()));
        // Checked first: `blocking` hands the worker's core away, worth it only for the fsync.
        if let Some(conn) = w.conn.as_sqlite()
            && self.checkpoints.wal_is_long()
        {
            blocking(|| self.checkpoints.reset_if_long(conn));
        }
        outcome
    }

    /// The outer transaction failed: roll it back, and every member's commit fails with `why`.
    async fn abort_batch(&self, w: &mut Writer, why: &str) {
        if let Some(batch) = w.batch.take() {
            let _ = w.conn.execute_batch("ROLLBACK").await;
            batch.outcome.send_replace(Some(Err(Arc::from(why))));
        }
    }

    /// Commits a batch left open once the transactions queued behind it have joined: it
    /// queues for the writer like them (and is counted, so they leave the batch open for
    /// it). Runs on the driver's thread, so it queues at once. Ends with the database.
    fn spawn_lingerer(self: &Arc<Self>) {
        let (db, linger) = (Arc::downgrade(self), self.linger.clone());
        self.driver.handle.spawn(async move {
            loop {
                linger.notified().await;
                let Some(db) = db.upgrade() else { break };
                let Ok(mut guard) = db.writer().await else { break };
                let _ = db.commit_batch(writer(&mut guard)).await;
            }
        });
    }

    /// A read-only connection to `file` with [`SQLITE_PRAGMAS`].
    fn open_reader(file: &Path) -> Result<Connection> {
        let conn = rusqlite::Connection::open(file)?;
        conn.execute_batch(SQLITE_PRAGMAS)?;
        conn.execute_batch("PRAGMA query_only=ON;")?;
        Ok(Connection::sqlite(conn))
    }

    /// Open `file` (migrated) with its writer, `readers` readers, the checkpointer and the
    /// transaction driver. Runs on a thread of the blocking pool: it opens files.
    fn open(file: PathBuf, readers: usize) -> Result<Sqlite> {
        let checkpoints = WalCheckpointer::start(&file, "db-checkpoint")?;
        let conn = Connection::sqlite(checkpoints.open_writer(&file)?);
        let readers =
            (0..readers).map(|_| Ok(Arc::new(Mutex::new(Some(Sqlite::open_reader(&file)?))))).collect::<Result<_>>()?;
        Ok(Sqlite {
            file,
            writer: Arc::new(Mutex::new(Some(Writer { conn, batch: None }))),
            waiting: AtomicUsize::new(0),
            linger: Arc::new(Notify::new()),
            readers,
            next_reader: AtomicUsize::new(0),
            checkpoints: Arc::new(checkpoints),
            driver: TxDriver::start()?,
        })
    }
}

/// A connection lent out by [`Db::acquire`] or [`Db::read`]; derefs to the connection.
pub struct DbConn(Lent);

enum Lent {
    Pooled(Connection),
    Writer(WriterGuard, Arc<WalCheckpointer>),
    Reader(OwnedMutexGuard<Option<Connection>>),
}

impl Drop for DbConn {
    /// The writer given back with a long WAL: copy what the background checkpoints left, while
    /// no other statement can slip in, so that the next transaction writes the WAL from its
    /// start again (see [`crate::wal`]; a role whose statements all run here, the operator
    /// node, has no batch commits that would do it). The checkpoint's fsync runs through
    /// [`blocking`].
    fn drop(&mut self) {
        if let Lent::Writer(guard, checkpoints) = &self.0
            && let Some(w) = guard.as_ref()
            && let Some(conn) = w.conn.as_sqlite()
            && checkpoints.wal_is_long()
        {
            blocking(|| checkpoints.reset_if_long(conn));
        }
    }
}

impl Deref for DbConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match &self.0 {
            Lent::Pooled(c) => c,
            Lent::Writer(g, _) => &g.as_ref().unwrap_or_else(|| unreachable!("closed writer lent out")).conn,
            Lent::Reader(g) => g.as_ref().unwrap_or_else(|| unreachable!("closed reader lent out")),
        }
    }
}

impl DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut Connection {
        match &mut self.0 {
            Lent::Pooled(c) => c,
            Lent::Writer(g, _) => &mut writer(g).conn,
            Lent::Reader(g) => g.as_mut().unwrap_or_else(|| unreachable!("closed reader lent out")),
        }
    }
}

/// A transaction from [`Db::begin`]; derefs to its connection. Dropped without `commit`, it
/// is rolled back before the connection serves anyone else.
pub struct DbTx {
    inner: Option<Tx>,
}

enum Tx {
    /// PostgreSQL: a transaction of its own on a pooled connection.
    Pooled(Connection),
    /// SQLite: the savepoint `tx` in the writer's open batch.
    Savepoint(WriterGuard, Arc<Sqlite>),
}

impl DbTx {
    /// Make the transaction's changes durable; on SQLite, returns once its batch is committed.
    pub async fn commit(mut self) -> Result<()> {
        match self.inner.take() {
            None => Ok(()),
            // A failed `COMMIT` leaves no transaction open: the server ended it, or `pg` rolled
            // back one whose `COMMIT` was skipped after an error (a `ROLLBACK` sent after either
            // only drew a warning in the server's log).
            Some(Tx::Pooled(mut conn)) => conn.execute_batch("COMMIT").await,
            Some(Tx::Savepoint(mut guard, db)) => {
                let w = writer(&mut guard);
                if let Err(e) = w.conn.execute_batch("RELEASE tx").await {
                    db.abort_batch(w, &e.to_string()).await;
                    return Err(e);
                }
                let Some(batch) = w.batch.as_mut() else {
                    return Err(StoreError::CommitFailed("the transaction's batch is gone".into()));
                };
                batch.members += 1;
                let mut outcome = batch.outcome.subscribe();
                db.release(guard).await;
                let outcome = match outcome.wait_for(Option::is_some).await {
                    Ok(o) => o.clone().unwrap_or(Ok(())),
                    Err(_) => Err(Arc::from("the database closed")),
                };
                outcome.map_err(|why| StoreError::CommitFailed(why.to_string()))
            }
        }
    }

    pub async fn rollback(mut self) -> Result<()> {
        match self.inner.take() {
            None => Ok(()),
            Some(Tx::Pooled(mut conn)) => conn.execute_batch("ROLLBACK").await,
            Some(Tx::Savepoint(mut guard, db)) => {
                let w = writer(&mut guard);
                let undone = w.conn.execute_batch("ROLLBACK TO tx; RELEASE tx").await;
                if let Err(e) = &undone {
                    db.abort_batch(w, &e.to_string()).await;
                }
                db.release(guard).await;
                undone
            }
        }
    }
}

impl Deref for DbTx {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match &self.inner {
            Some(Tx::Pooled(c)) => c,
            Some(Tx::Savepoint(g, _)) => &g.as_ref().unwrap_or_else(|| unreachable!("closed writer lent out")).conn,
            None => unreachable!("transaction used after its end"),
        }
    }
}

impl DerefMut for DbTx {
    fn deref_mut(&mut self) -> &mut Connection {
        match &mut self.inner {
            Some(Tx::Pooled(c)) => c,
            Some(Tx::Savepoint(g, _)) => &mut writer(g).conn,
            None => unreachable!("transaction used after its end"),
        }
    }
}

impl Drop for DbTx {
    fn drop(&mut self) {
        // Abandoned (an error, or the request's future was dropped): the connection goes with
        // a task that rolls back first, so the next user never inherits the open transaction.
        if let Some(inner) = self.inner.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = DbTx { inner: Some(inner) }.rollback().await;
            });
        }
    }
}

/// A second writer on a SQLite file, from [`Db::sqlite_writer`]; its owner runs it on a thread
/// of its own.
#[derive(Debug)]
pub struct SqliteWriter {
    pub conn: rusqlite::Connection,
    /// The file's checkpointer: call [`WalCheckpointer::reset_if_long`] between transactions.
    pub checkpoints: Arc<WalCheckpointer>,
}

impl Db {
    /// Open the database `config` names for `schema`'s role and bring its schema up to date.
    ///
    /// SQLite (`sqlite://path`) runs with [`SQLITE_PRAGMAS`]: one writer, the layout's readers,
    /// and WAL checkpoints on a thread of their own. It must be a file: the migrations run on a
    /// connection of their own, which an in-memory database would not share with the others.
    /// PostgreSQL (`postgres://…`) keeps up to `config.sessions` sessions.
    pub async fn open(config: &DbConfig, schema: &Schema) -> Result<Db> {
        let backend = Backend::of(&config.url);
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(&config.url)?,
            Backend::Postgres => config.url.clone(),
        };
        let handle = match backend {
            Backend::Sqlite => {
                let Some(file) = sqlite_file(&url).map(Path::to_path_buf) else {
                    return Err(StoreError::Config(format!(
                        "{url}: the {}'s SQLite database must be a file",
                        schema.role
                    )));
                };
                // The page size first: it only takes effect before the file has its first table.
                let page_size = schema.sqlite.page_size;
                let migrator_file = file.clone();
                let migrator = tokio::task::spawn_blocking(move || -> Result<rusqlite::Connection> {
                    let migrator = rusqlite::Connection::open(migrator_file)?;
                    if let Some(size) = page_size {
                        migrator.execute_batch(&format!("PRAGMA page_size={size};"))?;
                    }
                    migrator.execute_batch(SQLITE_PRAGMAS)?;
                    Ok(migrator)
                })
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
                let mut migrator = Connection::sqlite(migrator);
                crate::migrate::run(&mut migrator, schema.migrations.sqlite).await?;
                migrator.close().await;
                let readers = schema.sqlite.readers;
                let db = tokio::task::spawn_blocking(move || Sqlite::open(file, readers))
                    .await
                    .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
                let db = Arc::new(db);
                db.spawn_lingerer();
                Handle::Sqlite(db)
            }
            Backend::Postgres => {
                let pool = PgPool::connect(&url, config.sessions).await?;
                crate::migrate::run(&mut Connection::postgres(pool.acquire().await?), schema.migrations.postgres)
                    .await?;
                Handle::Pool(pool, Arc::from(url.as_str()))
            }
        };
        Ok(Db { handle, backend })
    }

    /// On SQLite, a second writer on the file, for a stream of writes a role commits on a thread
    /// of its own (the operator node's SMS center): [`SQLITE_PRAGMAS`], no checkpoint inside its
    /// commits, and the file's checkpointer, whose
    /// [`reset_if_long`](WalCheckpointer::reset_if_long) its thread calls between two of its
    /// transactions. Its writes and the writer's wait for each other on `busy_timeout`. `None`
    /// on PostgreSQL.
    pub fn sqlite_writer(&self) -> Result<Option<SqliteWriter>> {
        let Handle::Sqlite(db) = &self.handle else { return Ok(None) };
        let conn = blocking(|| db.checkpoints.open_writer(&db.file))?;
        Ok(Some(SqliteWriter { conn, checkpoints: db.checkpoints.clone() }))
    }

    /// On PostgreSQL, a session of its own that receives what is notified on `channel` as
    /// transactions commit; `None` on SQLite, which has no notifications (and no writer but
    /// this process).
    pub async fn listen(&self, channel: &str) -> Result<Option<PgListener>> {
        let Handle::Pool(_, url) = &self.handle else { return Ok(None) };
        let mut listener = PgListener::connect(url).await?;
        listener.listen(channel).await?;
        Ok(Some(listener))
    }

    /// The writer in autocommit mode (PostgreSQL: a pooled connection).
    pub async fn acquire(&self) -> Result<DbConn> {
        match &self.handle {
            Handle::Pool(pool, _) => Ok(DbConn(Lent::Pooled(Connection::postgres(pool.acquire().await?)))),
            Handle::Sqlite(db) => {
                let mut guard = db.writer().await?;
                let _ = db.commit_batch(writer(&mut guard)).await;
                Ok(DbConn(Lent::Writer(guard, db.checkpoints.clone())))
            }
        }
    }

    /// A connection for reads, which sees only committed data.
    pub async fn read(&self) -> Result<DbConn> {
        let Handle::Sqlite(db) = &self.handle else { return self.acquire().await };
        if db.readers.is_empty() {
            return self.acquire().await;
        }
        let free = db.readers.iter().find_map(|r| r.clone().try_lock_owned().ok());
        let guard = match free {
            Some(g) => g,
            None => {
                let turn = db.next_reader.fetch_add(1, Ordering::Relaxed) % db.readers.len();
                db.readers[turn].clone().lock_owned().await
            }
        };
        if guard.is_none() {
            return Err(StoreError::Closed);
        }
        Ok(DbConn(Lent::Reader(guard)))
    }

    /// A transaction whose commit does not wait for the disk: a crash just after it may undo
    /// it. Only for bookkeeping that is safe to do again, such as the dispatcher's leases and
    /// delivery marks (a message whose mark is lost is sent again, and receivers drop
    /// duplicates by id). On PostgreSQL `synchronous_commit` is off for it, which spares the
    /// WAL flush that every durable commit, a settlement's among them, otherwise queues
    /// behind; a durable commit after it still makes it durable. On SQLite it is [`Db::begin`]
    /// (the group commit it joins is durable anyway).
    pub async fn begin_redoable(&self) -> Result<DbTx> {
        let mut tx = self.begin().await?;
        if let Some(Tx::Pooled(conn)) = &mut tx.inner {
            crate::sql::query("SET LOCAL synchronous_commit TO off").execute_pipelined(conn).await?;
        }
        Ok(tx)
    }

    pub async fn begin(&self) -> Result<DbTx> {
        match &self.handle {
            Handle::Pool(pool, _) => {
                let mut conn = Connection::postgres(pool.acquire().await?);
                conn.execute_batch("BEGIN").await?;
                Ok(DbTx { inner: Some(Tx::Pooled(conn)) })
            }
            Handle::Sqlite(db) => {
                let mut guard = db.writer().await?;
                let w = writer(&mut guard);
                if w.batch.is_none() {
                    w.conn.execute_batch("BEGIN IMMEDIATE").await?;
                    w.batch =
                        Some(Batch { members: 0, opened: std::time::Instant::now(), outcome: watch::channel(None).0 });
                }
                if let Err(e) = w.conn.execute_batch("SAVEPOINT tx").await {
                    db.abort_batch(w, &e.to_string()).await;
                    return Err(e);
                }
                Ok(DbTx { inner: Some(Tx::Savepoint(guard, db.clone())) })
            }
        }
    }

    /// Drive `work` (a transaction, start to commit) where it waits least.
    ///
    /// A transaction holds SQLite's one writer from `begin` to `commit`, and on a busy runtime
    /// every await inside it (its turn after the writer's mutex, the batch's commit) would wait
    /// in the run queue behind HTTP tasks while the writer sits idle. On SQLite, `work`
    /// therefore runs on the `db-tx` thread, which does nothing else, and so do its blocking
    /// calls (statements, commit, the WAL restart's fsync, which [`crate::sql::blocking`] runs
    /// directly there); on PostgreSQL, where transactions run side by side, it runs here.
    pub async fn run<F>(&self, work: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.handle {
            Handle::Sqlite(db) => match db.driver.handle.spawn(work).await {
                Ok(out) => out,
                Err(e) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    // The driver's runtime lives as long as `db`, which we hold.
                    Err(_) => unreachable!("the transaction driver stopped while in use"),
                },
            },
            Handle::Pool(..) => work.await,
        }
    }

    pub fn is_closed(&self) -> bool {
        match &self.handle {
            Handle::Pool(pool, _) => pool.is_closed(),
            Handle::Sqlite(db) => db.writer.try_lock().is_ok_and(|g| g.is_none()),
        }
    }

    /// Close the database, committing a batch in flight; later calls fail.
    pub async fn close(&self) {
        match &self.handle {
            Handle::Pool(pool, _) => pool.close(),
            Handle::Sqlite(db) => {
                if let Some(mut w) = db.writer.lock().await.take() {
                    let _ = db.commit_batch(&mut w).await;
                    w.conn.close().await;
                }
                for reader in &db.readers {
                    if let Some(conn) = reader.lock().await.take() {
                        conn.close().await;
                    }
                }
                db.checkpoints.stop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let url = prepare_sqlite_url(&format!("sqlite://{}/a/b/x.db", dir.path().display())).unwrap();
        assert!(dir.path().join("a/b").is_dir());
        assert!(url.ends_with("x.db?mode=rwc"));
        assert_eq!(prepare_sqlite_url("sqlite::memory:").unwrap(), "sqlite::memory:?mode=rwc");
        assert_eq!(prepare_sqlite_url("sqlite://x.db?mode=ro").unwrap(), "sqlite://x.db?mode=ro");
        assert_eq!(sqlite_file("sqlite://data/opa.db?mode=rwc"), Some(std::path::Path::new("data/opa.db")));
        assert_eq!(sqlite_file("sqlite:/tmp/x.db"), Some(std::path::Path::new("/tmp/x.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://:memory:?mode=rwc"), None);
        assert_eq!(Backend::of("postgresql://h/db"), Backend::Postgres);
        assert_eq!(Backend::of("sqlite://x.db"), Backend::Sqlite);
    }
}

#[cfg(test)]
mod group_commit {
    use super::*;
    use crate::sql;

    /// A role with no migrations (the tests make their table) and the clearinghouse's layout.
    const TEST: Schema = Schema {
        role: "test",
        migrations: Migrations { sqlite: &[], postgres: &[] },
        sqlite: SqliteLayout { page_size: Some(2048), readers: 2 },
    };

    /// The database at `url`, with its table of notes.
    async fn open(url: &str) -> Db {
        let db = Db::open(&DbConfig::new(url), &TEST).await.unwrap();
        db.acquire()
            .await
            .unwrap()
            .execute_batch("CREATE TABLE IF NOT EXISTS notes (action TEXT NOT NULL)")
            .await
            .unwrap();
        db
    }

    async fn actions(conn: &mut Connection) -> Vec<String> {
        sql::query_scalar("SELECT action FROM notes ORDER BY action").fetch_all(conn).await.unwrap()
    }

    async fn note(conn: &mut Connection, action: &str) {
        sql::query("INSERT INTO notes (action) VALUES ($1)").bind(action).execute(conn).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_transactions_commit_in_groups_and_a_rollback_undoes_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/ch.db", dir.path().display());
        let db = open(&url).await;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let mut tx = db.begin().await.unwrap();
                    note(&mut tx, &format!("t{i:03}")).await;
                    tokio::task::yield_now().await;
                    if i % 3 == 0 { tx.rollback().await.unwrap() } else { tx.commit().await.unwrap() }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // An abandoned transaction is rolled back before the writer serves anyone else.
        let mut tx = db.begin().await.unwrap();
        note(&mut tx, "abandoned").await;
        drop(tx);
        db.close().await;

        // What each commit acknowledged is in the file; nothing rolled back is.
        let db = open(&url).await;
        let expected: Vec<String> = (0..200).filter(|i| i % 3 != 0).map(|i| format!("t{i:03}")).collect();
        assert_eq!(actions(&mut db.read().await.unwrap()).await, expected);
    }

    /// Transactions driven by [`Db::run`] on a multi-threaded runtime: their statements run on
    /// the driver's thread, reads beside them on the runtime's workers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transactions_run_on_the_driver_and_reads_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&format!("sqlite://{}/ch.db", dir.path().display())).await;
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let work = db.clone();
                    db.run(async move {
                        let mut tx = work.begin().await.unwrap();
                        note(&mut tx, &format!("t{i:02}")).await;
                        tx.commit().await.unwrap();
                    })
                    .await;
                    actions(&mut db.read().await.unwrap()).await.len()
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap() >= 1);
        }
        assert_eq!(actions(&mut db.read().await.unwrap()).await.len(), 50);
    }

    #[tokio::test]
    async fn readers_see_a_transaction_only_once_it_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&format!("sqlite://{}/ch.db", dir.path().display())).await;
        let mut tx = db.begin().await.unwrap();
        note(&mut tx, "pending").await;
        assert!(actions(&mut db.read().await.unwrap()).await.is_empty());
        tx.commit().await.unwrap();
        assert_eq!(actions(&mut db.read().await.unwrap()).await, ["pending"]);
        // The writer in autocommit mode commits a batch left open before it is lent out.
        let mut tx = db.begin().await.unwrap();
        note(&mut tx, "second").await;
        let committing = tokio::spawn(tx.commit());
        let mut conn = db.acquire().await.unwrap();
        assert_eq!(actions(&mut conn).await, ["pending", "second"]);
        drop(conn);
        committing.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_new_database_has_the_layouts_page_size_and_an_existing_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |db: Db| async move {
            let size: i64 =
                sql::query_scalar("PRAGMA page_size").fetch_one(&mut db.read().await.unwrap()).await.unwrap();
            db.close().await;
            size
        };
        let url = format!("sqlite://{}/ch.db", dir.path().display());
        assert_eq!(page_size(open(&url).await).await, 2048);

        // A database created with SQLite's default pages opens as it is.
        let old = dir.path().join("old.db");
        rusqlite::Connection::open(&old).unwrap().execute_batch("PRAGMA journal_mode=WAL;").unwrap();
        assert_eq!(page_size(open(&format!("sqlite://{}", old.display())).await).await, 4096);
    }

    #[tokio::test]
    async fn a_sqlite_database_must_be_a_file_and_a_closed_one_says_so() {
        let e = Db::open(&DbConfig::new("sqlite::memory:"), &TEST).await.unwrap_err();
        assert!(matches!(e, StoreError::Config(_)), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let db = open(&format!("sqlite://{}/ch.db", dir.path().display())).await;
        db.close().await;
        assert!(matches!(db.acquire().await, Err(StoreError::Closed)));
        assert!(matches!(db.read().await, Err(StoreError::Closed)));
    }
}
