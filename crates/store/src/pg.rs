//! PostgreSQL through `tokio-postgres`: a small pool of sessions, each with its prepared
//! statements, that **pipelines** what the caller does not wait for.
//!
//! Why not sqlx (which ran these statements until session 10): each statement was a round trip,
//! and at the porting benchmark's saturation the round trips were the cost. A port made ~55 of
//! them; every one woke the server's backend and then the clearinghouse again, and half of
//! PostgreSQL's CPU and most of the clearinghouse's went to the sends, the wake-ups and the
//! scheduler between them (docs/BENCHMARKS.md). `tokio-postgres` sends a request when its
//! future is first polled and hands the answers back in order, so a statement whose answer
//! nobody branches on can go out at once and have its answer read with the next one's:
//! `BEGIN` travels with a transaction's first statement, and the writes that follow a
//! decision (the audit row, the outgoing messages, the idempotency answer) with the `COMMIT`.
//! sqlx cannot do that. Its migrator and its `LISTEN` connection are still used; they are not
//! on the hot path.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

use crate::sql::{Kind, Value};
use crate::{Result, StoreError};

/// Prepared statements a session keeps: more than the store has distinct statements.
const STATEMENTS_KEPT: usize = 256;

/// How long [`PgPool::acquire`] waits for a session before it gives up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// One statement's request: its rows (when asked for) and the count of rows it changed.
type Request =
    Pin<Box<dyn Future<Output = std::result::Result<(Vec<tokio_postgres::Row>, u64), tokio_postgres::Error>> + Send>>;

/// A request sent and not yet answered: its outcome is read in order, before anything after it.
type Pending = Pin<Box<dyn Future<Output = std::result::Result<(), tokio_postgres::Error>> + Send>>;

/// Sessions to one database, at most `max` lent out at once; cheap to clone.
#[derive(Clone)]
pub struct PgPool {
    shared: Arc<Shared>,
}

struct Shared {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<Session>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool").field("available", &self.shared.permits.available_permits()).finish_non_exhaustive()
    }
}

impl PgPool {
    /// A pool for `url` (`postgres://user@host:port/db`); one session is opened to check it.
    pub async fn connect(url: &str, max: usize) -> Result<PgPool> {
        let config: tokio_postgres::Config = url.parse()?;
        let pool = PgPool {
            shared: Arc::new(Shared {
                config,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max.max(1))),
                closed: AtomicBool::new(false),
            }),
        };
        drop(pool.acquire().await?);
        Ok(pool)
    }

    /// A session of its own until dropped: an idle one, or a new one.
    pub async fn acquire(&self) -> Result<PgConn> {
        let shared = &self.shared;
        if self.is_closed() {
            return Err(StoreError::Closed);
        }
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, shared.permits.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::PoolTimedOut)?
            .map_err(|_| StoreError::Closed)?;
        let reused = {
            let mut idle = shared.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|s| !s.client.is_closed());
            idle.pop()
        };
        let session = match reused {
            Some(s) => s,
            None => Session::open(&shared.config).await?,
        };
        Ok(PgConn { session: Some(session), shared: self.shared.clone(), _permit: permit })
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Refuse new sessions and close the idle ones; those lent out close when given back.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.permits.close();
        self.shared.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// One connection to the server, with the statements it has prepared.
struct Session {
    client: Arc<Client>,
    /// Prepared statements by SQL text, then by the types of the values bound.
    statements: HashMap<Box<str>, Vec<(Vec<Type>, Statement)>>,
    /// How many `statements` holds.
    prepared: usize,
    /// Sent in order, answers not yet read.
    pending: Vec<Pending>,
    /// A `BEGIN` was sent and no `COMMIT` or `ROLLBACK` since.
    in_transaction: bool,
}

impl Session {
    async fn open(config: &tokio_postgres::Config) -> Result<Session> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(Session {
            client: Arc::new(client),
            statements: HashMap::new(),
            prepared: 0,
            pending: Vec::new(),
            in_transaction: false,
        })
    }
}

/// A session lent by [`PgPool::acquire`]; back to the pool when dropped, unless broken or left
/// inside a transaction (the caller rolls that back first: see `sql::Connection`'s drop).
pub struct PgConn {
    session: Option<Session>,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(s) = self.session.take() else { return };
        if s.client.is_closed()
            || !s.pending.is_empty()
            || s.in_transaction
            || self.shared.closed.load(Ordering::SeqCst)
        {
            return;
        }
        self.shared.idle.lock().unwrap_or_else(|p| p.into_inner()).push(s);
    }
}

/// The server's type for a value as bound: what sqlx declared for the same Rust values.
fn type_of(v: &Value) -> Type {
    match v {
        Value::Int(_) | Value::Null(Kind::Int) => Type::INT8,
        Value::Text(_) | Value::Null(Kind::Text) => Type::TEXT,
        Value::Real(_) => Type::FLOAT8,
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null(_) => Ok(IsNull::Yes),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Real(r) => r.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
        }
    }

    /// Each statement is prepared with the types of the values bound (`type_of`), so the
    /// value and the type always agree; `to_sql` of the inner value checks it again.
    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::TEXT | Type::FLOAT8)
    }

    to_sql_checked!();
}

/// A row's columns as the store's values, by the server's column types.
fn decode_row(row: &tokio_postgres::Row) -> Result<Vec<Value>> {
    let mut values = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let bad = |e: tokio_postgres::Error| StoreError::Decode(format!("column {}: {e}", col.name()));
        let v = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(bad)?.map(Value::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(bad)?.map(|v| Value::Int(v.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(bad)?.map(|v| Value::Int(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(bad)?.map(|v| Value::Int(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(bad)?.map(Value::Real),
            Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map_err(bad)?.map(|v| Value::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i).map_err(bad)?.map(Value::Text)
            }
            ref other => {
                return Err(StoreError::Decode(format!(
                    "column {}: type {other} is not read by the store",
                    col.name()
                )));
            }
        };
        values.push(v.unwrap_or(Value::Null(Kind::Int)));
    }
    Ok(values)
}

/// Poll `fut` once, so that its request is sent (`tokio-postgres` sends on the first poll);
/// `Some` if it finished at once (an error before sending, such as a closed connection).
async fn send<F: Future + ?Sized>(fut: &mut Pin<Box<F>>) -> Option<F::Output> {
    poll_fn(|cx| {
        Poll::Ready(match fut.as_mut().poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

/// What a statement returned: its rows with their column names, and the rows it changed.
pub(crate) struct Answer {
    pub names: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub rows_affected: u64,
}

/// The store's view of a statement's rows.
fn answer(rows: &[tokio_postgres::Row], rows_affected: u64) -> Result<Answer> {
    let names = rows.first().map(|r| r.columns().iter().map(|c| c.name().to_owned()).collect()).unwrap_or_default();
    let rows = rows.iter().map(decode_row).collect::<Result<_>>()?;
    Ok(Answer { names, rows, rows_affected })
}

impl PgConn {
    fn session(&mut self) -> &mut Session {
        self.session.as_mut().unwrap_or_else(|| unreachable!("a lent session is present until dropped"))
    }

    /// The answers of everything sent before, in order; the first error, if any. Also how a
    /// caller waiting on [`PgConn::run_deferred`]'s answer has it read now.
    pub(crate) async fn drain(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.session().pending);
        let mut first_error = None;
        for p in pending {
            if let Err(e) = p.await
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), |e| Err(e.into()))
    }

    /// The statement prepared for `sql` with these parameter types; prepared now if new (after
    /// the pending answers are read: the server answers in order).
    async fn statement(&mut self, sql: &str, types: &[Type]) -> Result<Statement> {
        let cached = self.session().statements.get(sql).and_then(|v| v.iter().find(|(t, _)| t == types));
        if let Some((_, s)) = cached {
            return Ok(s.clone());
        }
        self.drain().await?;
        let s = self.session();
        let stmt = s.client.prepare_typed(sql, types).await?;
        // Past the bound a statement is prepared for this use only (and closed on the server
        // when dropped): a connection never holds plans without limit.
        if s.prepared < STATEMENTS_KEPT {
            s.prepared += 1;
            s.statements.entry(sql.into()).or_default().push((types.to_vec(), stmt.clone()));
        }
        Ok(stmt)
    }

    /// The request for one statement, prepared (or found prepared); nothing is sent until it
    /// is first polled.
    async fn request(&mut self, sql: &str, args: Vec<Value>, want_rows: bool) -> Result<Request> {
        let types: Vec<Type> = args.iter().map(type_of).collect();
        let stmt = self.statement(sql, &types).await?;
        let client = self.session().client.clone();
        Ok(Box::pin(async move {
            let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            if want_rows {
                client.query(&stmt, &params).await.map(|rows| (rows, 0))
            } else {
                client.execute(&stmt, &params).await.map(|n| (Vec::new(), n))
            }
        }))
    }

    /// Send `fut` and keep it, for its answer to be read with the next statement's.
    async fn send_and_keep(&mut self, mut fut: Pending) -> Result<()> {
        match send(&mut fut).await {
            Some(done) => done.map_err(Into::into),
            None => {
                self.session().pending.push(fut);
                Ok(())
            }
        }
    }

    /// Run one statement and wait for its answer (and for those sent before it).
    pub(crate) async fn run(&mut self, sql: &str, args: Vec<Value>, want_rows: bool) -> Result<Answer> {
        let mut fut = self.request(sql, args, want_rows).await?;
        let early = send(&mut fut).await;
        self.drain().await?;
        let (rows, rows_affected) = match early {
            Some(done) => done?,
            None => fut.await?,
        };
        answer(&rows, rows_affected)
    }

    /// Send a statement and go on: inside a transaction its answer is read with the next
    /// statement's, and its error fails that statement or the `COMMIT`. Outside one it runs
    /// now, so that no error can go unseen.
    pub(crate) async fn run_pipelined(&mut self, sql: &str, args: Vec<Value>) -> Result<()> {
        if !self.session().in_transaction {
            return self.run(sql, args, false).await.map(drop);
        }
        let request = self.request(sql, args, false).await?;
        self.send_and_keep(Box::pin(async move { request.await.map(drop) })).await
    }

    /// Send a statement and go on, its rows to be read later through the receiver: inside a
    /// transaction it arrives with the next statement's answer (an error also fails that
    /// statement or the `COMMIT`, as with [`PgConn::run_pipelined`]). Outside one it runs now.
    pub(crate) async fn run_deferred(
        &mut self,
        sql: &str,
        args: Vec<Value>,
    ) -> Result<oneshot::Receiver<Result<Answer>>> {
        let (tx, rx) = oneshot::channel();
        if !self.session().in_transaction {
            let _ = tx.send(self.run(sql, args, true).await);
            return Ok(rx);
        }
        let request = self.request(sql, args, true).await?;
        self.send_and_keep(Box::pin(async move {
            let (rows, rows_affected) = request.await?;
            let _ = tx.send(answer(&rows, rows_affected));
            Ok(())
        }))
        .await?;
        Ok(rx)
    }

    /// Statements without parameters, in the simple protocol (transaction control). `BEGIN`
    /// is only sent: the transaction's first statement reads its answer.
    pub(crate) async fn batch(&mut self, sql: &str) -> Result<()> {
        let client = self.session().client.clone();
        let owned = sql.to_owned();
        let mut fut: Pending = Box::pin(async move { client.batch_execute(&owned).await });
        let verb = sql.trim().to_ascii_uppercase();
        if verb == "BEGIN" {
            self.session().in_transaction = true;
            return self.send_and_keep(fut).await;
        }
        if verb == "COMMIT" || verb == "ROLLBACK" {
            self.session().in_transaction = false;
        }
        let early = send(&mut fut).await;
        // A pipelined write that failed aborted the transaction, and the server then answers
        // `COMMIT` with a rollback, not an error: the write's error is the outcome.
        let before = self.drain().await;
        let this = match early {
            Some(r) => r,
            None => fut.await,
        };
        before?;
        this.map_err(Into::into)
    }

    /// Whether answers are still owed or a transaction is open: [`PgConn::reset`] first, or
    /// the session is closed instead of going back to the pool.
    pub(crate) fn needs_reset(&self) -> bool {
        self.session.as_ref().is_some_and(|s| !s.pending.is_empty() || s.in_transaction)
    }

    /// Read the answers still owed and end any open transaction, so the session can be lent again.
    pub(crate) async fn reset(&mut self) -> Result<()> {
        let _ = self.drain().await;
        if self.session().in_transaction {
            self.batch("ROLLBACK").await?;
        }
        Ok(())
    }
}
