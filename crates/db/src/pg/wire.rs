//! PostgreSQL's frontend/backend protocol on one connection, with a `Sync` only where the
//! client waits for an answer.
//!
//! Why not `tokio-postgres`: it ends every statement with a `Sync`, and the server answers each
//! `Sync` on its own: a `ReadyForQuery`, a flush, a send, a wake-up of the client. Pipelined
//! statements would still cost one packet each way per statement, and a `Sync` per statement
//! costs the server's CPU and the client's on top of the statement itself, which at the porting
//! benchmark's saturation (`numport bench porting --db postgres`) is CPU the ports need.
//! Here a statement the caller does not wait for is only appended to the write buffer; the
//! next statement whose answer is wanted carries a single `Sync` for all of them, and the
//! server answers the lot at once. The messages are `postgres-protocol`'s, the crate
//! `tokio-postgres` itself is built on.
//!
//! Errors follow the protocol: after an `ErrorResponse` the server skips everything up to the
//! next `Sync`, so statements queued behind a failed one are answered here with SQLSTATE
//! `25P02` ("not run"), and the first error is the outcome of the whole batch.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::{backend, frontend};
use postgres_types::{FromSql, ToSql, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{Answer, Connector};
use crate::sql::{Kind, Value};
use crate::{Result, StoreError};

/// An error the server reported, with its SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{severity} {code}: {message}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct DbError {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    /// The constraint a violation names (`n`), which tells one unique key from another.
    pub constraint: Option<String>,
}

impl DbError {
    fn parse(body: &backend::ErrorResponseBody) -> DbError {
        let mut e = DbError {
            severity: "ERROR".into(),
            code: String::new(),
            message: String::new(),
            detail: None,
            constraint: None,
        };
        let mut fields = body.fields();
        while let Ok(Some(f)) = fields.next() {
            let value = String::from_utf8_lossy(f.value_bytes()).into_owned();
            match f.type_() {
                b'V' => e.severity = value,
                b'C' => e.code = value,
                b'M' => e.message = value,
                b'D' => e.detail = Some(value),
                b'n' => e.constraint = Some(value),
                _ => {}
            }
        }
        e
    }

    /// What a statement queued behind a failed one is answered with: it never ran.
    fn not_run() -> DbError {
        DbError {
            severity: "ERROR".into(),
            code: "25P02".into(),
            message: "not run: an earlier statement sent with it failed".into(),
            detail: None,
            constraint: None,
        }
    }
}

/// A statement prepared on this connection: its server-side name and its result columns.
#[derive(Clone)]
pub(super) struct Prepared {
    name: Arc<str>,
    columns: Arc<[Column]>,
}

struct Column {
    name: String,
    ty: Type,
}

/// What to do with a statement's answer when it comes.
pub(super) enum Reply {
    /// Nothing but its error, which is the batch's.
    Discard,
    /// Hand it back from [`Wire::finish`] (the statement the caller waits on).
    Keep,
    /// Send it here (a deferred read).
    Deliver(oneshot::Sender<Result<Answer>>),
}

impl Reply {
    fn answer(self, answer: Answer, kept: &mut Option<Answer>) {
        match self {
            Reply::Discard => {}
            Reply::Keep => *kept = Some(answer),
            Reply::Deliver(tx) => {
                let _ = tx.send(Ok(answer));
            }
        }
    }

    fn fail(self, e: &DbError) {
        if let Reply::Deliver(tx) = self {
            let _ = tx.send(Err(StoreError::Postgres(e.clone())));
        }
    }
}

/// An answer the server owes, in the order it will come.
enum Owed {
    Statement { columns: Arc<[Column]>, want_rows: bool, reply: Reply },
    Sync,
}

/// The server's transaction status, from its last `ReadyForQuery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

/// The session's stream: TCP, TLS over TCP, or a Unix socket. Boxed, so the statement path
/// is one piece of code whatever the stream.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection to the server.
pub(super) struct Wire {
    io: Box<dyn Io>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    owed: VecDeque<Owed>,
    status: TxStatus,
    /// A read or write was interrupted (its future dropped) or failed: the stream's position
    /// in the protocol is unknown, and the connection must not be used again.
    broken: bool,
    next_name: u64,
    /// Notifications that arrived while an answer was read, for [`Wire::notification`]. Only a
    /// session that ran `LISTEN` gets any.
    notifications: VecDeque<Notification>,
}

/// What `NOTIFY` (or `pg_notify`) sent on a channel this session listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The server process of the session that notified.
    pub process_id: i32,
    pub channel: String,
    pub payload: String,
}

impl Notification {
    fn parse(body: &backend::NotificationResponseBody) -> Result<Notification> {
        Ok(Notification {
            process_id: body.process_id(),
            channel: body.channel().map_err(protocol)?.to_owned(),
            payload: body.message().map_err(protocol)?.to_owned(),
        })
    }
}

fn protocol(what: impl std::fmt::Display) -> StoreError {
    StoreError::PgConnection(what.to_string())
}

impl Wire {
    /// Connect (over TLS as the URL's `sslmode` says) and authenticate (trust, password, MD5
    /// or SCRAM-SHA-256).
    pub(super) async fn connect(connector: &Connector) -> Result<Wire> {
        let config = &connector.config;
        let io: Box<dyn Io> = if config.host.starts_with('/') {
            let path = format!("{}/.s.PGSQL.{}", config.host, config.port);
            Box::new(tokio::net::UnixStream::connect(&path).await.map_err(|e| protocol(format!("{path}: {e}")))?)
        } else {
            let tcp = tokio::net::TcpStream::connect((config.host.as_str(), config.port))
                .await
                .map_err(|e| protocol(format!("{}:{}: {e}", config.host, config.port)))?;
            tcp.set_nodelay(true).map_err(protocol)?;
            connector.tls.negotiate(tcp, &config.host, config.port).await?
        };
        let mut wire = Wire {
            io,
            rbuf: BytesMut::with_capacity(8192),
            wbuf: BytesMut::with_capacity(8192),
            owed: VecDeque::new(),
            status: TxStatus::Idle,
            broken: true,
            next_name: 0,
            notifications: VecDeque::new(),
        };
        let params = [
            ("user", config.user.as_str()),
            ("database", config.database.as_str()),
            ("client_encoding", "UTF8"),
            ("application_name", "numport"),
        ];
        frontend::startup_message(params.iter().copied(), &mut wire.wbuf).map_err(protocol)?;
        wire.flush().await?;
        let password = config.password.as_deref().unwrap_or_default().as_bytes();
        let mut scram = None;
        loop {
            match wire.read().await? {
                backend::Message::AuthenticationOk => {}
                backend::Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password, &mut wire.wbuf).map_err(protocol)?;
                    wire.flush().await?;
                }
                backend::Message::AuthenticationMd5Password(body) => {
                    let hash =
                        postgres_protocol::authentication::md5_hash(config.user.as_bytes(), password, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut wire.wbuf).map_err(protocol)?;
                    wire.flush().await?;
                }
                backend::Message::AuthenticationSasl(body) => {
                    let mut mechanisms = body.mechanisms();
                    let mut offered = false;
                    while let Some(m) = mechanisms.next().map_err(protocol)? {
                        offered |= m == postgres_protocol::authentication::sasl::SCRAM_SHA_256;
                    }
                    if !offered {
                        return Err(protocol("the server offers no SASL mechanism numport speaks (SCRAM-SHA-256)"));
                    }
                    let s = postgres_protocol::authentication::sasl::ScramSha256::new(
                        password,
                        postgres_protocol::authentication::sasl::ChannelBinding::unsupported(),
                    );
                    frontend::sasl_initial_response(
                        postgres_protocol::authentication::sasl::SCRAM_SHA_256,
                        s.message(),
                        &mut wire.wbuf,
                    )
                    .map_err(protocol)?;
                    scram = Some(s);
                    wire.flush().await?;
                }
                backend::Message::AuthenticationSaslContinue(body) => {
                    let s = scram.as_mut().ok_or_else(|| protocol("SASL continue before SASL start"))?;
                    s.update(body.data()).map_err(protocol)?;
                    frontend::sasl_response(s.message(), &mut wire.wbuf).map_err(protocol)?;
                    wire.flush().await?;
                }
                backend::Message::AuthenticationSaslFinal(body) => {
                    let s = scram.as_mut().ok_or_else(|| protocol("SASL final before SASL start"))?;
                    s.finish(body.data()).map_err(protocol)?;
                }
                backend::Message::ErrorResponse(body) => return Err(StoreError::Postgres(DbError::parse(&body))),
                backend::Message::ReadyForQuery(_) => break,
                backend::Message::ParameterStatus(_)
                | backend::Message::BackendKeyData(_)
                | backend::Message::NoticeResponse(_) => {}
                _ => return Err(protocol("unexpected message while authenticating")),
            }
        }
        wire.broken = false;
        Ok(wire)
    }

    pub(super) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Answers are owed: statements were queued that no `Sync` has closed yet, or were sent
    /// and not read.
    pub(super) fn owes(&self) -> bool {
        !self.owed.is_empty()
    }

    pub(super) fn status(&self) -> TxStatus {
        self.status
    }

    /// Prepare `sql` with these parameter types. Call with nothing owed.
    pub(super) async fn prepare(&mut self, sql: &str, types: &[Type], keep: bool) -> Result<Prepared> {
        debug_assert!(self.owed.is_empty());
        let name: Arc<str> = if keep {
            self.next_name += 1;
            format!("np{}", self.next_name).into()
        } else {
            "".into()
        };
        frontend::parse(&name, sql, types.iter().map(Type::oid), &mut self.wbuf).map_err(protocol)?;
        frontend::describe(b'S', &name, &mut self.wbuf).map_err(protocol)?;
        frontend::sync(&mut self.wbuf);
        self.flush().await?;
        let mut columns = Vec::new();
        let mut error = None;
        loop {
            match self.read().await? {
                backend::Message::ParseComplete
                | backend::Message::ParameterDescription(_)
                | backend::Message::NoData => {}
                backend::Message::RowDescription(body) => {
                    let mut fields = body.fields();
                    while let Some(f) = fields.next().map_err(protocol)? {
                        let ty = Type::from_oid(f.type_oid()).unwrap_or(Type::UNKNOWN);
                        columns.push(Column { name: f.name().to_owned(), ty });
                    }
                }
                backend::Message::ErrorResponse(body) => error = Some(DbError::parse(&body)),
                backend::Message::ReadyForQuery(body) => {
                    self.status = tx_status(body.status());
                    break;
                }
                _ => return Err(self.unexpected("preparing a statement")),
            }
        }
        match error {
            Some(e) => Err(StoreError::Postgres(e)),
            None => Ok(Prepared { name, columns: columns.into() }),
        }
    }

    /// Queue one execution of `stmt`; nothing is sent until [`Wire::finish`].
    pub(super) fn queue(&mut self, stmt: &Prepared, args: &[Value], want_rows: bool, reply: Reply) -> Result<()> {
        // Binary parameters and results: the types are fixed by `prepare`.
        let bound = frontend::bind(
            "",
            &stmt.name,
            [1i16],
            args,
            |v, buf| {
                let ty = super::type_of(v);
                match v.to_sql(&ty, buf)? {
                    postgres_types::IsNull::Yes => Ok(postgres_protocol::IsNull::Yes),
                    postgres_types::IsNull::No => Ok(postgres_protocol::IsNull::No),
                }
            },
            [1i16],
            &mut self.wbuf,
        );
        if let Err(e) = bound {
            // The half-written message cannot be taken back out of the buffer.
            self.broken = true;
            return Err(match e {
                frontend::BindError::Conversion(e) => StoreError::Decode(format!("binding a value: {e}")),
                frontend::BindError::Serialization(e) => protocol(e),
            });
        }
        frontend::execute("", 0, &mut self.wbuf).map_err(protocol)?;
        self.owed.push_back(Owed::Statement { columns: stmt.columns.clone(), want_rows, reply });
        Ok(())
    }

    /// Send what is queued with one `Sync` and read every answer owed. Returns the answer of
    /// the statement queued with [`Reply::Keep`], or the first error.
    pub(super) async fn finish(&mut self) -> Result<Option<Answer>> {
        if self.broken {
            return Err(protocol("the connection was interrupted mid-answer and is closed"));
        }
        if self.owed.is_empty() {
            return Ok(None);
        }
        frontend::sync(&mut self.wbuf);
        self.owed.push_back(Owed::Sync);
        self.flush().await?;
        let mut kept = None;
        let mut first_error: Option<DbError> = None;
        // Between an error and the next `Sync` the server skips every message.
        let mut skipping = false;
        while let Some(owed) = self.owed.pop_front() {
            match owed {
                Owed::Statement { reply, .. } if skipping => reply.fail(&DbError::not_run()),
                Owed::Statement { columns, want_rows, reply } => {
                    match self.read_statement(&columns, want_rows).await? {
                        Ok(answer) => reply.answer(answer, &mut kept),
                        Err(e) => {
                            reply.fail(&e);
                            first_error.get_or_insert(e);
                            skipping = true;
                        }
                    }
                }
                Owed::Sync => {
                    // An implicit transaction commits at `Sync`, and can fail there.
                    if let Some(e) = self.read_ready().await? {
                        first_error.get_or_insert(e);
                    }
                    skipping = false;
                }
            }
        }
        match first_error {
            Some(e) => Err(StoreError::Postgres(e)),
            None => Ok(kept),
        }
    }

    /// Run statements without parameters in the simple protocol (for scripts of several).
    /// Call with nothing owed.
    pub(super) async fn simple(&mut self, sql: &str) -> Result<()> {
        debug_assert!(self.owed.is_empty());
        frontend::query(sql, &mut self.wbuf).map_err(protocol)?;
        self.flush().await?;
        let mut error = None;
        loop {
            match self.read().await? {
                backend::Message::RowDescription(_)
                | backend::Message::DataRow(_)
                | backend::Message::CommandComplete(_)
                | backend::Message::EmptyQueryResponse => {}
                backend::Message::ErrorResponse(body) => {
                    error.get_or_insert(DbError::parse(&body));
                }
                backend::Message::ReadyForQuery(body) => {
                    self.status = tx_status(body.status());
                    break;
                }
                _ => return Err(self.unexpected("running a script")),
            }
        }
        error.map_or(Ok(()), |e| Err(StoreError::Postgres(e)))
    }

    /// One statement's answer: rows (decoded when wanted) and the count from its tag, or the
    /// error the server raised for it. The outer error is the connection's.
    async fn read_statement(&mut self, columns: &[Column], want_rows: bool) -> Result<Result<Answer, DbError>> {
        let mut rows = Vec::new();
        loop {
            match self.read().await? {
                backend::Message::BindComplete => {}
                backend::Message::DataRow(body) if want_rows => rows.push(decode_row(&body, columns)?),
                backend::Message::DataRow(_) => {}
                backend::Message::CommandComplete(body) => {
                    let tag = body.tag().map_err(protocol)?;
                    let rows_affected = tag.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
                    let names = columns.iter().map(|c| c.name.clone()).collect();
                    return Ok(Ok(Answer { names, rows, rows_affected }));
                }
                backend::Message::EmptyQueryResponse => {
                    return Ok(Ok(Answer { names: Vec::new(), rows, rows_affected: 0 }));
                }
                backend::Message::ErrorResponse(body) => return Ok(Err(DbError::parse(&body))),
                _ => return Err(self.unexpected("reading a statement's answer")),
            }
        }
    }

    /// Up to the `ReadyForQuery` that answers a `Sync`, and any error raised at it.
    async fn read_ready(&mut self) -> Result<Option<DbError>> {
        let mut error = None;
        loop {
            match self.read().await? {
                backend::Message::ReadyForQuery(body) => {
                    self.status = tx_status(body.status());
                    return Ok(error);
                }
                backend::Message::ErrorResponse(body) => {
                    error.get_or_insert(DbError::parse(&body));
                }
                _ => return Err(self.unexpected("waiting for the end of a batch")),
            }
        }
    }

    fn unexpected(&mut self, doing: &str) -> StoreError {
        self.broken = true;
        protocol(format!("unexpected message from the server while {doing}"))
    }

    /// The next message that is not a notice, a parameter report or a notification (those are
    /// kept for [`Wire::notification`]).
    async fn read(&mut self) -> Result<backend::Message> {
        // Should this future be dropped half-way, the connection stays marked broken.
        let was = std::mem::replace(&mut self.broken, true);
        loop {
            match backend::Message::parse(&mut self.rbuf).map_err(protocol)? {
                Some(backend::Message::NoticeResponse(_) | backend::Message::ParameterStatus(_)) => continue,
                Some(backend::Message::NotificationResponse(body)) => {
                    self.notifications.push_back(Notification::parse(&body)?);
                    continue;
                }
                Some(m) => {
                    self.broken = was;
                    return Ok(m);
                }
                None => {}
            }
            let n = self.io.read_buf(&mut self.rbuf).await.map_err(protocol)?;
            if n == 0 {
                return Err(protocol("the server closed the connection"));
            }
        }
    }

    /// The next notification, waiting for one if none has come. Call with nothing owed: between
    /// statements the server sends nothing else but notices. Safe to drop while waiting (in a
    /// `select!`): a message is taken from the buffer only whole.
    pub(super) async fn notification(&mut self) -> Result<Notification> {
        if self.broken {
            return Err(protocol("the connection was interrupted mid-answer and is closed"));
        }
        loop {
            if let Some(n) = self.notifications.pop_front() {
                return Ok(n);
            }
            match backend::Message::parse(&mut self.rbuf).map_err(protocol)? {
                Some(backend::Message::NotificationResponse(body)) => {
                    self.notifications.push_back(Notification::parse(&body)?);
                    continue;
                }
                Some(backend::Message::NoticeResponse(_) | backend::Message::ParameterStatus(_)) => continue,
                Some(backend::Message::ErrorResponse(body)) => {
                    // The server ends the session this way (`pg_terminate_backend`, shutdown).
                    self.broken = true;
                    return Err(StoreError::Postgres(DbError::parse(&body)));
                }
                Some(_) => return Err(self.unexpected("waiting for notifications")),
                None => {}
            }
            let n = self.io.read_buf(&mut self.rbuf).await;
            if !matches!(n, Ok(1..)) {
                self.broken = true;
                return Err(protocol(match n {
                    Err(e) => e.to_string(),
                    Ok(_) => "the server closed the connection".into(),
                }));
            }
        }
    }

    async fn flush(&mut self) -> Result<()> {
        let was = std::mem::replace(&mut self.broken, true);
        self.io.write_all(&self.wbuf).await.map_err(protocol)?;
        // TLS may hold the end of what was written: out with it (nothing to do on TCP).
        self.io.flush().await.map_err(protocol)?;
        self.wbuf.clear();
        self.broken = was;
        Ok(())
    }

    /// Say goodbye to the server.
    pub(super) async fn terminate(&mut self) {
        frontend::terminate(&mut self.wbuf);
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }
}

fn tx_status(b: u8) -> TxStatus {
    match b {
        b'T' => TxStatus::InTransaction,
        b'E' => TxStatus::Failed,
        _ => TxStatus::Idle,
    }
}

/// A row's columns as the store's values, by the server's column types (binary format).
fn decode_row(body: &backend::DataRowBody, columns: &[Column]) -> Result<Vec<Value>> {
    let buf = body.buffer();
    let mut ranges = body.ranges();
    let mut values = Vec::with_capacity(columns.len());
    let mut i = 0;
    while let Some(range) = ranges.next().map_err(protocol)? {
        let col = columns.get(i).ok_or_else(|| protocol("a row with more columns than described"))?;
        i += 1;
        let Some(range) = range else {
            values.push(Value::Null(Kind::Int));
            continue;
        };
        let raw = &buf[range];
        let bad = |e: Box<dyn std::error::Error + Sync + Send>| StoreError::Decode(format!("column {}: {e}", col.name));
        let v = match col.ty {
            Type::INT8 => Value::Int(i64::from_sql(&col.ty, raw).map_err(bad)?),
            Type::INT4 => Value::Int(i32::from_sql(&col.ty, raw).map_err(bad)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(&col.ty, raw).map_err(bad)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(&col.ty, raw).map_err(bad)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(&col.ty, raw).map_err(bad)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(&col.ty, raw).map_err(bad)?.into()),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                Value::Text(<&str>::from_sql(&col.ty, raw).map_err(bad)?.to_owned())
            }
            ref other => {
                return Err(StoreError::Decode(format!("column {}: type {other} is not read by the store", col.name)));
            }
        };
        values.push(v);
    }
    Ok(values)
}
