//! PostgreSQL: a small pool of sessions, each with its prepared statements, that
//! **pipelines** what the caller does not wait for.
//!
//! Why not sqlx: with it each statement is a round trip, and at the porting benchmark's
//! saturation (`numport bench porting --db postgres`) the round trips are the cost: a port
//! makes dozens of statements, each of which would wake the server's backend and then the
//! clearinghouse again, with most of both sides' CPU in the sends, the wake-ups and the
//! scheduler between them. A statement whose answer nobody branches on
//! goes out with the next one whose answer is wanted: `BEGIN` travels with a transaction's
//! first statement, and the writes that follow a decision (the audit row, the outgoing
//! messages, the idempotency answer) with the `COMMIT`, and the server answers them all with
//! one `Sync` ([`wire`], which says why not `tokio-postgres`).
//!
//! Besides the pool: [`PgListener`], a session of its own for `LISTEN`.

mod listen;
mod tls;
mod wire;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres_types::{IsNull, ToSql, Type, to_sql_checked};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::sql::{Kind, Value};
use crate::{Result, StoreError};
pub use listen::PgListener;
use tls::Tls;
pub use tls::{SslMode, TlsError};
pub use wire::{DbError, Notification};
use wire::{Prepared, Reply, TxStatus, Wire};

/// Prepared statements a session keeps: more than the store has distinct statements.
const STATEMENTS_KEPT: usize = 256;

/// How long [`PgPool::acquire`] waits for a session before it gives up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and as whom to connect: a `postgres://user:password@host:port/database?…` URL. The
/// host is a name, an IPv4 address, or an IPv6 address in brackets (`[::1]:5432`); a host
/// that is a directory (`%2Fvar%2Frun%2Fpostgresql`, or `?host=/var/run/postgresql`) names the
/// server's Unix socket. TLS as `?sslmode=…&sslrootcert=PATH` say ([`tls`]; libpq's names and
/// default, `prefer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgConfig {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    database: String,
    ssl_mode: SslMode,
    ssl_root_cert: Option<PathBuf>,
}

impl std::str::FromStr for PgConfig {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<PgConfig> {
        let bad = |why: &str| StoreError::PgConnection(format!("PostgreSQL URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| bad("not postgres://"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (percent_decode(u), Some(percent_decode(p))),
            None => (percent_decode(userinfo), None),
        };
        let (host, port) = split_host_port(hostport).map_err(bad)?;
        let mut config = PgConfig {
            host: percent_decode(host),
            port: port.unwrap_or(5432),
            user: if user.is_empty() { "postgres".to_owned() } else { user },
            password,
            database: percent_decode(database),
            ssl_mode: SslMode::default(),
            ssl_root_cert: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match key {
                "host" => config.host = value,
                "sslmode" => config.ssl_mode = value.parse()?,
                "sslrootcert" => config.ssl_root_cert = Some(value.into()),
                // Asked for and not done would be a silent downgrade.
                _ if key.starts_with("ssl") => return Err(TlsError::Parameter(key.to_owned()).into()),
                _ => {}
            }
        }
        if config.host.is_empty() {
            config.host = "localhost".into();
        }
        if config.database.is_empty() {
            config.database = config.user.clone();
        }
        Ok(config)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, as written in a URL.
fn split_host_port(s: &str) -> std::result::Result<(&str, Option<u16>), &'static str> {
    let parse_port = |p: &str| p.parse().map_err(|_| "bad port");
    if let Some(bracketed) = s.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or("an IPv6 address without its closing ]")?;
        return match after {
            "" => Ok((host, None)),
            _ => Ok((host, Some(parse_port(after.strip_prefix(':').ok_or("junk after the IPv6 address")?)?))),
        };
    }
    match s.split_once(':') {
        Some((_, p)) if p.contains(':') => Err("an IPv6 address goes in brackets: [::1]:5432"),
        Some((h, p)) => Ok((h, Some(parse_port(p)?))),
        None => Ok((s, None)),
    }
}

/// A URL read, with its TLS set up: how each session of a pool or listener connects.
#[derive(Clone)]
pub(crate) struct Connector {
    config: PgConfig,
    tls: Tls,
}

impl Connector {
    fn new(url: &str) -> Result<Connector> {
        let config: PgConfig = url.parse()?;
        let tls = Tls::new(config.ssl_mode, config.ssl_root_cert.as_deref())?;
        Ok(Connector { config, tls })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sessions to one database, at most `max` lent out at once; cheap to clone.
#[derive(Clone)]
pub struct PgPool {
    shared: Arc<Shared>,
}

struct Shared {
    connector: Connector,
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
        let pool = PgPool {
            shared: Arc::new(Shared {
                connector: Connector::new(url)?,
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
        let reused = shared.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let session = match reused {
            Some(s) => s,
            None => Session::open(&shared.connector).await?,
        };
        Ok(PgConn { session: Some(Box::new(session)), shared: self.shared.clone(), _permit: permit })
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Refuse new sessions and close the idle ones; those lent out close when given back.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.permits.close();
        let idle = std::mem::take(&mut *self.shared.idle.lock().unwrap_or_else(|p| p.into_inner()));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for mut s in idle {
                    s.wire.terminate().await;
                }
            });
        }
    }
}

/// One connection to the server, with the statements it has prepared.
struct Session {
    wire: Wire,
    /// Prepared statements by SQL text, then by the types of the values bound.
    statements: HashMap<Box<str>, Vec<(Vec<Type>, Prepared)>>,
    /// How many `statements` holds.
    prepared: usize,
    /// A `BEGIN` was queued and no `COMMIT` or `ROLLBACK` since.
    in_transaction: bool,
}

impl Session {
    async fn open(connector: &Connector) -> Result<Session> {
        Ok(Session {
            wire: Wire::connect(connector).await?,
            statements: HashMap::new(),
            prepared: 0,
            in_transaction: false,
        })
    }

    /// Fit to lend again: nothing owed, no transaction open.
    fn is_clean(&self) -> bool {
        !self.wire.is_broken() && !self.wire.owes() && !self.in_transaction && self.wire.status() == TxStatus::Idle
    }
}

/// A session lent by [`PgPool::acquire`]; back to the pool when dropped, unless broken or left
/// inside a transaction (the caller rolls that back first: see `sql::Connection`'s drop).
pub struct PgConn {
    session: Option<Box<Session>>,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(s) = self.session.take() else { return };
        if !s.is_clean() || self.shared.closed.load(Ordering::SeqCst) {
            return;
        }
        self.shared.idle.lock().unwrap_or_else(|p| p.into_inner()).push(*s);
    }
}

/// The server's type for a value as bound.
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

/// What a statement returned: its rows with their column names, and the rows it changed.
pub(crate) struct Answer {
    pub names: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub rows_affected: u64,
}

impl PgConn {
    fn session(&mut self) -> &mut Session {
        self.session.as_mut().unwrap_or_else(|| unreachable!("a lent session is present until dropped"))
    }

    /// Send everything queued (with one `Sync`) and read the answers; the first error, if
    /// any. Also how a caller waiting on [`PgConn::run_deferred`]'s answer has it read now.
    pub(crate) async fn drain(&mut self) -> Result<()> {
        self.session().wire.finish().await.map(drop)
    }

    /// The statement prepared for `sql` with these parameter types; prepared now if new (after
    /// the answers owed are read: a failed `Parse` would otherwise skip them).
    async fn statement(&mut self, sql: &str, types: &[Type]) -> Result<Prepared> {
        let cached = self.session().statements.get(sql).and_then(|v| v.iter().find(|(t, _)| t == types));
        if let Some((_, s)) = cached {
            return Ok(s.clone());
        }
        self.drain().await?;
        let s = self.session();
        // Past the bound a statement is prepared unnamed, for this use only: a connection
        // never holds plans without limit.
        let keep = s.prepared < STATEMENTS_KEPT;
        let stmt = s.wire.prepare(sql, types, keep).await?;
        if keep {
            s.prepared += 1;
            s.statements.entry(sql.into()).or_default().push((types.to_vec(), stmt.clone()));
        }
        Ok(stmt)
    }

    /// Queue one statement with what to do with its answer.
    async fn queue(&mut self, sql: &str, args: &[Value], want_rows: bool, reply: Reply) -> Result<()> {
        let types: Vec<Type> = args.iter().map(type_of).collect();
        let stmt = self.statement(sql, &types).await?;
        self.session().wire.queue(&stmt, args, want_rows, reply)
    }

    /// Run one statement and wait for its answer (and for those queued before it).
    pub(crate) async fn run(&mut self, sql: &str, args: Vec<Value>, want_rows: bool) -> Result<Answer> {
        self.queue(sql, &args, want_rows, Reply::Keep).await?;
        self.session()
            .wire
            .finish()
            .await?
            .ok_or_else(|| StoreError::PgConnection("a statement's answer went missing".into()))
    }

    /// Queue a statement and go on: inside a transaction its answer is read with the next
    /// statement's, and its error fails that statement or the `COMMIT`. Outside one it runs
    /// now, so that no error can go unseen.
    pub(crate) async fn run_pipelined(&mut self, sql: &str, args: Vec<Value>) -> Result<()> {
        if !self.session().in_transaction {
            return self.run(sql, args, false).await.map(drop);
        }
        self.queue(sql, &args, false, Reply::Discard).await
    }

    /// Queue a statement and go on, its rows to be read later through the receiver: inside a
    /// transaction they arrive with the next statement's answer (an error also fails that
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
        self.queue(sql, &args, true, Reply::Deliver(tx)).await?;
        Ok(rx)
    }

    /// Transaction control, or a script of statements without parameters. `BEGIN` is only
    /// queued: it goes with the transaction's first statement. `COMMIT` and `ROLLBACK` go with
    /// what is queued before them, in one `Sync`.
    pub(crate) async fn batch(&mut self, sql: &str) -> Result<()> {
        let verb = sql.trim().trim_end_matches(';').trim().to_ascii_uppercase();
        match verb.as_str() {
            "BEGIN" => {
                self.queue("BEGIN", &[], false, Reply::Discard).await?;
                self.session().in_transaction = true;
                Ok(())
            }
            "COMMIT" | "ROLLBACK" => {
                self.session().in_transaction = false;
                let queued = self.queue(&verb, &[], false, Reply::Discard).await;
                let outcome = match queued {
                    Ok(()) => self.drain().await,
                    Err(e) => Err(e),
                };
                // A statement before the `COMMIT` failed and the server skipped the rest up to
                // the `Sync`: the transaction is still open (and aborted). That error is the
                // outcome; the transaction ends here.
                if self.session().wire.status() != TxStatus::Idle && !self.session().wire.is_broken() {
                    self.queue("ROLLBACK", &[], false, Reply::Discard).await?;
                    self.drain().await?;
                }
                outcome
            }
            _ => {
                self.drain().await?;
                self.session().wire.simple(sql).await
            }
        }
    }

    /// Whether answers are still owed or a transaction is open: [`PgConn::reset`] first, or
    /// the session is closed instead of going back to the pool.
    pub(crate) fn needs_reset(&self) -> bool {
        self.session.as_ref().is_some_and(|s| !s.is_clean())
    }

    /// Read the answers still owed and end any open transaction, so the session can be lent again.
    pub(crate) async fn reset(&mut self) -> Result<()> {
        let _ = self.drain().await;
        let s = self.session();
        if s.in_transaction || s.wire.status() != TxStatus::Idle {
            self.batch("ROLLBACK").await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Connector, PgConfig, SslMode, TlsError};
    use crate::StoreError;

    #[test]
    fn urls_name_host_port_user_and_database() {
        let c: PgConfig = "postgres://postgres@127.0.0.1:5432/test".parse().unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str(), c.database.as_str()),
            ("127.0.0.1", 5432, "postgres", "test")
        );
        assert_eq!(c.password, None);
        let c: PgConfig = "postgresql://np:s%40cret@db.example:6543/numport".parse().unwrap();
        assert_eq!((c.host.as_str(), c.port, c.password.as_deref()), ("db.example", 6543, Some("s@cret")));
        let c: PgConfig = "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/test".parse().unwrap();
        assert_eq!((c.host.as_str(), c.port), ("/var/run/postgresql", 5432));
        let c: PgConfig = "postgres:///test?host=/tmp".parse().unwrap();
        assert_eq!((c.host.as_str(), c.user.as_str(), c.database.as_str()), ("/tmp", "postgres", "test"));
        assert!("mysql://x/y".parse::<PgConfig>().is_err());
        assert!("postgres://h:notaport/y".parse::<PgConfig>().is_err());
    }

    #[test]
    fn ipv6_hosts_are_written_in_brackets() {
        let c: PgConfig = "postgres://postgres@[::1]:5432/test".parse().unwrap();
        assert_eq!((c.host.as_str(), c.port, c.database.as_str()), ("::1", 5432, "test"));
        let c: PgConfig = "postgres://[2001:db8::7]/numport".parse().unwrap();
        assert_eq!((c.host.as_str(), c.port), ("2001:db8::7", 5432));
        for url in ["postgres://::1/test", "postgres://[::1/test", "postgres://[::1]5432/test", "postgres://[::1]:x/t"]
        {
            assert!(url.parse::<PgConfig>().is_err(), "{url}");
        }
    }

    #[test]
    fn sslmode_and_root_certificate_are_read_with_libpq_names_and_default() {
        let c: PgConfig = "postgres://h/db".parse().unwrap();
        assert_eq!((c.ssl_mode, c.ssl_root_cert), (SslMode::Prefer, None));
        let c: PgConfig = "postgres://h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem".parse().unwrap();
        assert_eq!(c.ssl_mode, SslMode::VerifyFull);
        assert_eq!(c.ssl_root_cert.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        for (mode, parsed) in [
            ("disable", SslMode::Disable),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("prefer", SslMode::Prefer),
        ] {
            let c: PgConfig = format!("postgres://h/db?sslmode={mode}").parse().unwrap();
            assert_eq!((c.ssl_mode, c.ssl_mode.to_string()), (parsed, mode.to_owned()));
        }
        let refused = |url: &str| match url.parse::<PgConfig>() {
            Err(StoreError::PgTls(e)) => e,
            other => panic!("{url}: {other:?}"),
        };
        assert!(matches!(refused("postgres://h/db?sslmode=allow"), TlsError::Mode(m) if m == "allow"));
        assert!(matches!(refused("postgres://h/db?sslmode=verify_full"), TlsError::Mode(_)));
        assert!(matches!(refused("postgres://h/db?sslcert=/c.pem"), TlsError::Parameter(p) if p == "sslcert"));
    }

    #[test]
    fn verifying_modes_need_a_root_certificate_that_reads() {
        for url in ["postgres://h/db?sslmode=verify-ca", "postgres://h/db?sslmode=verify-full"] {
            assert!(matches!(Connector::new(url), Err(StoreError::PgTls(TlsError::NoRootCertificate(_)))), "{url}");
        }
        let missing = Connector::new("postgres://h/db?sslmode=require&sslrootcert=/no/such/ca.pem");
        assert!(matches!(missing, Err(StoreError::PgTls(TlsError::RootCertificate(_)))));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let url = format!("postgres://h/db?sslmode=verify-ca&sslrootcert={}", empty.display());
        match Connector::new(&url) {
            Err(StoreError::PgTls(e @ TlsError::RootCertificate(_))) => {
                assert!(e.to_string().contains("no certificate"))
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("an empty root file was taken"),
        }
        assert!(Connector::new("postgres://h/db?sslmode=disable").is_ok());
        assert!(Connector::new("postgres://h/db").is_ok());
    }
}
