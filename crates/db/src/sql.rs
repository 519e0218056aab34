//! Running statements: one API over SQLite (rusqlite, on the calling thread, through
//! [`blocking`]) and PostgreSQL (its wire protocol, pipelined: see [`crate::pg`]), so every
//! role's tables have one body of SQL and code for both engines.
//!
//! Why not sqlx for SQLite: its SQLite driver runs each statement on a worker thread of the
//! connection's own and hands the rows back over a channel, so every statement costs two
//! thread switches and a wake-up of the caller's runtime; at the porting benchmark's saturation
//! (`numport bench porting`) that cost more CPU than SQLite's own work. SQLite is a library:
//! called on the thread that holds the connection, a statement costs only its own work, which
//! for indexed statements is a few microseconds. PostgreSQL is a server a round trip away:
//! there the cost is the round trips, and [`Query::execute_pipelined`] saves them where the
//! caller need not wait.
//!
//! The API is the part of sqlx's the roles use (`query`, `query_scalar`, `query_as`, `bind`,
//! `execute`, `fetch_one`/`fetch_optional`/`fetch_all`, [`Row::try_get`]), with `$n`
//! placeholders on both engines. Values are what the schema holds: 64-bit integers and text
//! (a `NULL` bound keeps its type, which PostgreSQL needs to plan the statement).

use std::sync::Arc;

use crate::pg::PgConn;
use crate::{Result, StoreError};

/// Prepared statements each SQLite connection keeps: more than any role has distinct
/// statements, so none is parsed twice.
const STATEMENT_CACHE: usize = 256;

/// Run a SQLite call that may block for long (the WAL restart's fsync, opening or closing a
/// file) from async code.
///
/// On a worker thread of a multi-threaded tokio runtime it runs inside
/// `tokio::task::block_in_place`, so the runtime hands that worker's other tasks to another
/// thread meanwhile instead of stalling them. Anywhere else it runs directly: on the engine's
/// own threads (the `db-tx` driver of [`crate::Db::run`], a current-thread runtime on a thread
/// that does nothing else), on a current-thread runtime (tests; `block_in_place` panics there,
/// and there are no other workers to hand tasks to), or outside a runtime.
///
/// Statements and transaction control do not come here: they run on the calling thread
/// (`statement`).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Run a SQLite statement or transaction control (`BEGIN`, `SAVEPOINT`, `COMMIT`) on the calling
/// thread, a runtime worker included, without announcing it to the runtime.
///
/// The roles' statements use their indexes and take microseconds, and in WAL mode with
/// `synchronous=NORMAL` a `COMMIT` appends to the WAL without an fsync; the long waits, the WAL
/// restart's fsync and the checkpoints, go through [`blocking`] or run on the checkpointer's
/// thread. Handing each statement to `block_in_place` costs a hand-off of the worker's core to
/// another thread and back: with every statement (and every give-back of the writer) handed to
/// it, `numport bench porting` (SQLite) completed 630–660 ports/s against 1,180–1,460 without,
/// in alternate runs on the same machine. A statement that waits
/// for another connection's write lock (`busy_timeout`) stalls its worker for that wait; only
/// the operator node has two writers on one file.
fn statement<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// A database connection of either engine.
pub struct Connection {
    inner: Inner,
    /// A [`Transaction`] on this PostgreSQL connection was abandoned and is still open.
    rollback_pending: bool,
}

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
    /// Taken by [`Connection::close`].
    Closed,
}

impl Drop for Connection {
    /// A pooled PostgreSQL connection with an abandoned transaction (or answers still owed)
    /// goes back to its pool only once a task has read those and rolled back.
    fn drop(&mut self) {
        if let Inner::Postgres(c) = &self.inner
            && (self.rollback_pending || c.needs_reset())
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let Inner::Postgres(mut c) = std::mem::replace(&mut self.inner, Inner::Closed) else { return };
            rt.spawn(async move {
                let _ = c.reset().await;
            });
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            Inner::Sqlite(_) => "Connection(SQLite)",
            Inner::Postgres(_) => "Connection(PostgreSQL)",
            Inner::Closed => "Connection(closed)",
        })
    }
}

impl Connection {
    /// A SQLite connection, with room in its statement cache for all of the store's statements.
    pub fn sqlite(conn: rusqlite::Connection) -> Connection {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Connection { inner: Inner::Sqlite(conn), rollback_pending: false }
    }

    pub fn postgres(conn: PgConn) -> Connection {
        Connection { inner: Inner::Postgres(conn), rollback_pending: false }
    }

    /// Run statements separated by `;` that take no parameters (transaction control, pragmas).
    pub async fn execute_batch(&mut self, sql: &str) -> Result<()> {
        self.finish_abandoned().await?;
        match &mut self.inner {
            Inner::Sqlite(c) => statement(|| c.execute_batch(sql)).map_err(StoreError::Sqlite),
            Inner::Postgres(c) => c.batch(sql).await,
            Inner::Closed => Err(StoreError::Closed),
        }
    }

    /// Close the connection (PostgreSQL says goodbye to the server; SQLite finalizes its
    /// statements and closes the file).
    pub async fn close(mut self) {
        let _ = self.finish_abandoned().await;
        match std::mem::replace(&mut self.inner, Inner::Closed) {
            Inner::Sqlite(c) => {
                blocking(move || {
                    let _ = c.close();
                });
            }
            Inner::Postgres(mut c) => {
                let _ = c.reset().await;
            }
            Inner::Closed => {}
        }
    }

    /// Roll back a transaction abandoned on this PostgreSQL connection, before anything else.
    async fn finish_abandoned(&mut self) -> Result<()> {
        if std::mem::take(&mut self.rollback_pending)
            && let Inner::Postgres(c) = &mut self.inner
        {
            c.reset().await?;
        }
        Ok(())
    }

    /// Whether this is a PostgreSQL connection, for the few statements written per engine
    /// (those inside a hot row's lock, where each round trip counts; see `clearinghouse::store::ledger::post`).
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner, Inner::Postgres(_))
    }

    /// The rusqlite connection, for what only SQLite has (WAL checkpoints).
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            _ => None,
        }
    }

    /// A transaction on this connection: rolled back unless [`Transaction::commit`]ted.
    pub async fn begin(&mut self) -> Result<Transaction<'_>> {
        self.execute_batch("BEGIN").await?;
        Ok(Transaction { conn: self, open: true })
    }
}

/// A transaction from [`Connection::begin`]; derefs to its connection.
pub struct Transaction<'c> {
    conn: &'c mut Connection,
    open: bool,
}

impl Transaction<'_> {
    pub async fn commit(mut self) -> Result<()> {
        self.open = false;
        let committed = self.conn.execute_batch("COMMIT").await;
        // SQLite keeps a transaction whose COMMIT failed (busy) open. On PostgreSQL a failed
        // COMMIT ends it (`pg` rolls back one whose COMMIT was skipped after an error).
        if committed.is_err() && !self.conn.is_postgres() {
            let _ = self.conn.execute_batch("ROLLBACK").await;
        }
        committed
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl std::ops::DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    /// Abandoned (an error returned early): SQLite rolls back here and now; a PostgreSQL
    /// connection rolls back before its next statement (or before it goes back to its pool).
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        match &mut self.conn.inner {
            Inner::Sqlite(c) => {
                let _ = statement(|| c.execute_batch("ROLLBACK"));
            }
            Inner::Postgres(_) => self.conn.rollback_pending = true,
            Inner::Closed => {}
        }
    }
}

/// A batch of rows bound as one parameter (`$param`, a JSON array of objects) and read back as a
/// table `r`: the named columns of the given kinds, and `n`, each row's place in the array from
/// 0. Statements that write a batch (a settlement's journals, change log entries, messages)
/// thus keep one text whatever the batch's size, which a connection prepares once.
pub fn json_rows(postgres: bool, param: usize, columns: &[(&str, Kind)]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|(name, kind)| match (postgres, kind) {
            (true, Kind::Int) => format!("(e.v ->> '{name}')::BIGINT AS {name}"),
            (true, Kind::Text) => format!("(e.v ->> '{name}') AS {name}"),
            (false, _) => format!("json_extract(value, '$.{name}') AS {name}"),
        })
        .collect();
    let cols = cols.join(", ");
    if postgres {
        format!(
            "(SELECT e.n - 1 AS n, {cols} FROM json_array_elements(${param}::text::json) WITH ORDINALITY AS e(v, n)) AS r"
        )
    } else {
        format!("(SELECT CAST(key AS INTEGER) AS n, {cols} FROM json_each(${param})) AS r")
    }
}

/// Rows for the parameter [`json_rows`] reads.
pub fn rows_param(rows: impl IntoIterator<Item = serde_json::Value>) -> Result<String> {
    serde_json::to_string(&rows.into_iter().collect::<Vec<_>>()).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A statement whose text differs by engine (one that reads [`json_rows`], say), built once
/// for each from `build(postgres)`.
pub struct PerEngine {
    build: fn(bool) -> String,
    texts: std::sync::OnceLock<[String; 2]>,
}

impl PerEngine {
    pub const fn new(build: fn(bool) -> String) -> PerEngine {
        PerEngine { build, texts: std::sync::OnceLock::new() }
    }

    /// The text for `conn`'s engine.
    pub fn text(&self, conn: &Connection) -> &str {
        let [pg, sqlite] = self.texts.get_or_init(|| [(self.build)(true), (self.build)(false)]);
        if conn.is_postgres() { pg } else { sqlite }
    }
}

/// What type a `NULL` stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
}

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null(Kind),
    Int(i64),
    Real(f64),
    Text(String),
}

impl Value {
    fn kind_name(&self) -> &'static str {
        match self {
            Value::Null(_) => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
        }
    }
}

/// A Rust value that can be bound to a statement.
pub trait Encode {
    fn encode(self) -> Value;
}

macro_rules! encode_int {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(self) -> Value {
                Value::Int(i64::from(self))
            }
        }
        impl Encode for Option<$t> {
            fn encode(self) -> Value {
                self.map_or(Value::Null(Kind::Int), |v| Value::Int(i64::from(v)))
            }
        }
    )*};
}
encode_int!(i64, i32, u32, bool);

impl Encode for &str {
    fn encode(self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl Encode for String {
    fn encode(self) -> Value {
        Value::Text(self)
    }
}
impl<T: Encode + Clone> Encode for &T {
    fn encode(self) -> Value {
        self.clone().encode()
    }
}
impl Encode for Option<&str> {
    fn encode(self) -> Value {
        self.map_or(Value::Null(Kind::Text), |s| Value::Text(s.to_owned()))
    }
}
impl Encode for Option<String> {
    fn encode(self) -> Value {
        self.map_or(Value::Null(Kind::Text), Value::Text)
    }
}
impl Encode for Option<&String> {
    fn encode(self) -> Value {
        self.map_or(Value::Null(Kind::Text), |s| Value::Text(s.clone()))
    }
}

/// A Rust value a column can be read as; the error says what the column held instead.
pub trait Decode<'r>: Sized {
    fn decode(v: &'r Value) -> std::result::Result<Self, String>;
}

impl Decode<'_> for i64 {
    fn decode(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Int(i) => Ok(*i),
            other => Err(format!("expected an integer, found {}", other.kind_name())),
        }
    }
}
impl Decode<'_> for i32 {
    fn decode(v: &Value) -> std::result::Result<Self, String> {
        let i = i64::decode(v)?;
        i32::try_from(i).map_err(|_| format!("{i} does not fit in 32 bits"))
    }
}
impl Decode<'_> for bool {
    fn decode(v: &Value) -> std::result::Result<Self, String> {
        i64::decode(v).map(|i| i != 0)
    }
}
impl<'r> Decode<'r> for &'r str {
    fn decode(v: &'r Value) -> std::result::Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(format!("expected text, found {}", other.kind_name())),
        }
    }
}
impl Decode<'_> for String {
    fn decode(v: &Value) -> std::result::Result<Self, String> {
        <&str>::decode(v).map(str::to_owned)
    }
}
impl<'r, T: Decode<'r>> Decode<'r> for Option<T> {
    fn decode(v: &'r Value) -> std::result::Result<Self, String> {
        match v {
            Value::Null(_) => Ok(None),
            v => T::decode(v).map(Some),
        }
    }
}

/// A column by position or by name.
pub trait ColumnIndex: std::fmt::Display + Copy {
    fn position(self, names: &[String]) -> Option<usize>;
}
impl ColumnIndex for usize {
    fn position(self, names: &[String]) -> Option<usize> {
        (self < names.len()).then_some(self)
    }
}
impl ColumnIndex for &str {
    fn position(self, names: &[String]) -> Option<usize> {
        names.iter().position(|n| n == self)
    }
}

/// One row of a result, with the result's column names.
#[derive(Debug, Clone)]
pub struct Row {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The column `index` as a `T`, or [`StoreError::Decode`] saying which column and why.
    pub fn try_get<'r, T: Decode<'r>, I: ColumnIndex>(&'r self, index: I) -> Result<T> {
        let at = index.position(&self.names).ok_or_else(|| StoreError::Decode(format!("no column {index}")))?;
        T::decode(&self.values[at]).map_err(|why| StoreError::Decode(format!("column {index}: {why}")))
    }
}

/// A row read as a whole into a Rust value (tuples of columns, for [`query_as`]).
pub trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self>;
}

macro_rules! tuple_from_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t: for<'r> Decode<'r>),+> FromRow for ($($t,)+) {
            fn from_row(row: &Row) -> Result<Self> {
                Ok(($(row.try_get::<$t, usize>($i)?,)+))
            }
        }
    };
}
tuple_from_row!(A 0);
tuple_from_row!(A 0, B 1);
tuple_from_row!(A 0, B 1, C 2);
tuple_from_row!(A 0, B 1, C 2, D 3);

/// What a statement that returns no rows did.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    rows_affected: u64,
}

impl Done {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A statement and its arguments, `$1` being the first one bound.
#[must_use = "a query does nothing until it is executed or fetched"]
pub struct Query<'q> {
    sql: &'q str,
    args: Vec<Value>,
}

pub fn query(sql: &str) -> Query<'_> {
    Query { sql, args: Vec::new() }
}

/// A query whose first column is the answer.
pub fn query_scalar<T>(sql: &str) -> QueryScalar<'_, T> {
    QueryScalar { query: query(sql), out: std::marker::PhantomData }
}

/// A query whose rows are read into `T`.
pub fn query_as<T: FromRow>(sql: &str) -> QueryAs<'_, T> {
    QueryAs { query: query(sql), out: std::marker::PhantomData }
}

/// How many rows a fetch wants: SQLite then steps no further than it must.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    None,
    First,
    All,
}

impl<'q> Query<'q> {
    pub fn bind(mut self, value: impl Encode) -> Self {
        self.args.push(value.encode());
        self
    }

    pub async fn execute(self, conn: &mut Connection) -> Result<Done> {
        let (_, rows_affected) = self.run(conn, Want::None).await?;
        Ok(Done { rows_affected })
    }

    pub async fn fetch_all(self, conn: &mut Connection) -> Result<Vec<Row>> {
        Ok(self.run(conn, Want::All).await?.0)
    }

    pub async fn fetch_optional(self, conn: &mut Connection) -> Result<Option<Row>> {
        Ok(self.run(conn, Want::First).await?.0.into_iter().next())
    }

    pub async fn fetch_one(self, conn: &mut Connection) -> Result<Row> {
        self.fetch_optional(conn).await?.ok_or(StoreError::NoRow)
    }

    /// Send the statement and go on without its answer, for a write the caller does not branch
    /// on. On PostgreSQL inside a transaction the answer is read with the next statement's, in
    /// one round trip, and an error fails that statement or the `COMMIT`; elsewhere it runs now.
    pub async fn execute_pipelined(self, conn: &mut Connection) -> Result<()> {
        if let Inner::Sqlite(c) = &conn.inner {
            return sqlite_run(c, self.sql, &self.args, Want::None).map(drop);
        }
        conn.finish_abandoned().await?;
        match &mut conn.inner {
            Inner::Postgres(c) => c.run_pipelined(self.sql, self.args).await,
            _ => Err(StoreError::Closed),
        }
    }

    /// Send the statement and go on, reading its rows later with [`Deferred::rows`]: for a
    /// statement whose answer the caller needs only before it commits. On PostgreSQL inside a
    /// transaction the answer comes with the next statement's, saving a round trip; elsewhere
    /// it runs now.
    pub async fn fetch_deferred(self, conn: &mut Connection) -> Result<Deferred> {
        if let Inner::Sqlite(c) = &conn.inner {
            return Ok(Deferred(Pending::Ready(sqlite_run(c, self.sql, &self.args, Want::All).map(|(rows, _)| rows))));
        }
        conn.finish_abandoned().await?;
        match &mut conn.inner {
            Inner::Postgres(c) => Ok(Deferred(Pending::Sent(c.run_deferred(self.sql, self.args).await?))),
            _ => Err(StoreError::Closed),
        }
    }

    async fn run(self, conn: &mut Connection, want: Want) -> Result<(Vec<Row>, u64)> {
        if let Inner::Sqlite(c) = &conn.inner {
            return sqlite_run(c, self.sql, &self.args, want);
        }
        conn.finish_abandoned().await?;
        let Inner::Postgres(c) = &mut conn.inner else { return Err(StoreError::Closed) };
        let answer = c.run(self.sql, self.args, want != Want::None).await?;
        let rows_affected = answer.rows_affected;
        let mut rows = rows_of(answer);
        if want == Want::First {
            rows.truncate(1);
        }
        Ok((rows, rows_affected))
    }
}

/// A PostgreSQL answer's rows, each with the column names.
fn rows_of(answer: crate::pg::Answer) -> Vec<Row> {
    let names: Arc<[String]> = answer.names.into();
    answer.rows.into_iter().map(|values| Row { names: names.clone(), values }).collect()
}

/// The rows of a statement sent with [`Query::fetch_deferred`].
pub struct Deferred(Pending);

enum Pending {
    Ready(Result<Vec<Row>>),
    Sent(tokio::sync::oneshot::Receiver<Result<crate::pg::Answer>>),
}

impl Deferred {
    /// The statement's rows, reading the answers still owed on `conn` if they have not come.
    pub async fn rows(self, conn: &mut Connection) -> Result<Vec<Row>> {
        let rx = match self.0 {
            Pending::Ready(rows) => return rows,
            Pending::Sent(rx) => rx,
        };
        if rx.is_empty()
            && let Inner::Postgres(c) = &mut conn.inner
        {
            c.drain().await?;
        }
        // Gone without an answer: the connection broke while the answers were read, and that
        // error went to whoever read them (the statement after it, or the `COMMIT`).
        let answer =
            rx.await.map_err(|_| StoreError::CommitFailed("the connection failed before this answer".into()))??;
        Ok(rows_of(answer))
    }

    /// Whether the statement returned a row (an `INSERT … ON CONFLICT DO NOTHING RETURNING`
    /// that wrote).
    pub async fn returned_a_row(self, conn: &mut Connection) -> Result<bool> {
        Ok(!self.rows(conn).await?.is_empty())
    }
}

pub struct QueryScalar<'q, T> {
    query: Query<'q>,
    out: std::marker::PhantomData<fn() -> T>,
}

impl<'q, T: for<'r> Decode<'r>> QueryScalar<'q, T> {
    pub fn bind(mut self, value: impl Encode) -> Self {
        self.query = self.query.bind(value);
        self
    }

    pub async fn fetch_one(self, conn: &mut Connection) -> Result<T> {
        self.query.fetch_one(conn).await?.try_get(0)
    }

    pub async fn fetch_optional(self, conn: &mut Connection) -> Result<Option<T>> {
        self.query.fetch_optional(conn).await?.map(|r| r.try_get(0)).transpose()
    }

    pub async fn fetch_all(self, conn: &mut Connection) -> Result<Vec<T>> {
        self.query.fetch_all(conn).await?.iter().map(|r| r.try_get(0)).collect()
    }
}

pub struct QueryAs<'q, T> {
    query: Query<'q>,
    out: std::marker::PhantomData<fn() -> T>,
}

impl<'q, T: FromRow> QueryAs<'q, T> {
    pub fn bind(mut self, value: impl Encode) -> Self {
        self.query = self.query.bind(value);
        self
    }

    pub async fn fetch_one(self, conn: &mut Connection) -> Result<T> {
        T::from_row(&self.query.fetch_one(conn).await?)
    }

    pub async fn fetch_optional(self, conn: &mut Connection) -> Result<Option<T>> {
        self.query.fetch_optional(conn).await?.as_ref().map(T::from_row).transpose()
    }

    pub async fn fetch_all(self, conn: &mut Connection) -> Result<Vec<T>> {
        self.query.fetch_all(conn).await?.iter().map(T::from_row).collect()
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null(_) => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(r) => ValueRef::Real(*r),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

/// One statement on a SQLite connection, on this thread ([`statement`]).
fn sqlite_run(c: &rusqlite::Connection, sql: &str, args: &[Value], want: Want) -> Result<(Vec<Row>, u64)> {
    statement(|| sqlite_step(c, sql, args, want))
}

/// One statement on a SQLite connection: prepared once per connection, its `$n` parameters
/// bound by number (as sqlx does), stepped as far as `want` needs.
fn sqlite_step(c: &rusqlite::Connection, sql: &str, args: &[Value], want: Want) -> Result<(Vec<Row>, u64)> {
    // SQLite would prepare the first statement and silently ignore the rest.
    if sql.trim_end().trim_end_matches(';').contains(';') {
        return Err(StoreError::Decode("a query is one statement; this has several".into()));
    }
    let mut stmt = c.prepare_cached(sql)?;
    for i in 1..=stmt.parameter_count() {
        let n = match stmt.parameter_name(i) {
            None => i,
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StoreError::Decode(format!("parameter {name} is not $n")))?,
        };
        let value = args
            .get(n.wrapping_sub(1))
            .ok_or_else(|| StoreError::Decode(format!("parameter ${n} was not bound ({} bound)", args.len())))?;
        stmt.raw_bind_parameter(i, value)?;
    }
    let width = stmt.column_count();
    let names: Arc<[String]> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(r) = rows.next()? {
        if want == Want::None {
            continue;
        }
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            use rusqlite::types::ValueRef;
            values.push(match r.get_ref(i)? {
                ValueRef::Null => Value::Null(Kind::Int),
                ValueRef::Integer(i) => Value::Int(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Text(t) => Value::Text(
                    String::from_utf8(t.to_vec()).map_err(|_| StoreError::Decode(format!("column {i}: not UTF-8")))?,
                ),
                ValueRef::Blob(_) => return Err(StoreError::Decode(format!("column {i}: a blob"))),
            });
        }
        out.push(Row { names: names.clone(), values });
        if want == Want::First {
            break;
        }
    }
    drop(rows);
    Ok((out, c.changes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        Connection::sqlite(rusqlite::Connection::open_in_memory().unwrap())
    }

    #[tokio::test]
    async fn parameters_bind_by_number_and_rows_decode_by_name_or_position() {
        let mut c = memory();
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n BIGINT)").await.unwrap();
        // `$2` before `$1`: bound by number, not by the order they appear in.
        let done = query("INSERT INTO t (n, name) VALUES ($2, $1), ($2, $3)")
            .bind("a")
            .bind(7i64)
            .bind(None::<&str>)
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 2);
        let rows = query("SELECT id, name, n FROM t ORDER BY id").fetch_all(&mut c).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].try_get::<&str, _>("name").unwrap(), "a");
        assert_eq!(rows[1].try_get::<Option<String>, _>("name").unwrap(), None);
        assert_eq!(rows[1].try_get::<i64, _>(2).unwrap(), 7);
        let id: i64 = query_scalar("SELECT MAX(id) FROM t").fetch_one(&mut c).await.unwrap();
        assert_eq!(id, 2);
        let pairs: Vec<(i64, Option<String>)> =
            query_as("SELECT id, name FROM t ORDER BY id").fetch_all(&mut c).await.unwrap();
        assert_eq!(pairs, [(1, Some("a".into())), (2, None)]);
        let returned: i64 = query_scalar("INSERT INTO t (name, n) VALUES ($1, 0) RETURNING id")
            .bind("b")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(returned, 3);
        assert!(query("SELECT id FROM t WHERE id = $1").bind(99i64).fetch_optional(&mut c).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_transaction_is_undone_unless_committed() {
        let mut c = memory();
        c.execute_batch("CREATE TABLE t (n BIGINT)").await.unwrap();
        let mut tx = c.begin().await.unwrap();
        query("INSERT INTO t (n) VALUES (1)").execute(&mut tx).await.unwrap();
        drop(tx);
        let mut tx = c.begin().await.unwrap();
        query("INSERT INTO t (n) VALUES (2)").execute(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let all: Vec<i64> = query_scalar("SELECT n FROM t").fetch_all(&mut c).await.unwrap();
        assert_eq!(all, [2]);
    }

    #[tokio::test]
    async fn mistakes_are_errors_not_panics() {
        let mut c = memory();
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)").await.unwrap();
        let row = query("SELECT 1 AS one, 'x' AS s").fetch_one(&mut c).await.unwrap();
        assert!(matches!(row.try_get::<&str, _>("one"), Err(StoreError::Decode(_))));
        assert!(matches!(row.try_get::<i64, _>("s"), Err(StoreError::Decode(_))));
        assert!(matches!(row.try_get::<i64, _>("missing"), Err(StoreError::Decode(_))));
        assert!(matches!(row.try_get::<i64, _>(5), Err(StoreError::Decode(_))));
        assert!(matches!(query("SELECT $2").bind(1i64).fetch_one(&mut c).await, Err(StoreError::Decode(_))));
        assert!(matches!(query("SELECT nonsense FROM").execute(&mut c).await, Err(StoreError::Sqlite(_))));
        // A second statement would be ignored by SQLite; it is refused instead.
        assert!(matches!(query("SELECT 1; DELETE FROM t").execute(&mut c).await, Err(StoreError::Decode(_))));
        assert!(matches!(query("SELECT 1 WHERE 0").fetch_one(&mut c).await, Err(StoreError::NoRow)));
        query("INSERT INTO t (name) VALUES ('a')").execute(&mut c).await.unwrap();
        let dup = query("INSERT INTO t (name) VALUES ('a')").execute(&mut c).await.unwrap_err();
        assert!(StoreError::from_insert(dup).is_duplicate());
    }
}
