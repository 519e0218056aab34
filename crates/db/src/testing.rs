//! Throw-away PostgreSQL databases, for tests and benchmarks (cargo feature `testing`), and
//! throw-away servers ([`TempServer`]) for what the shared server cannot be made to do.
//!
//! ```no_run
//! # async fn test() {
//! let Some(db) = numport_db::testing::TempDatabase::create().await else { return };
//! let schema = numport_db::Schema {
//!     role: "example",
//!     migrations: numport_db::Migrations { sqlite: &[], postgres: &[] },
//!     sqlite: numport_db::SqliteLayout { page_size: None, readers: 0 },
//! };
//! let store = numport_db::Db::open(&numport_db::DbConfig::new(db.url()), &schema).await.unwrap();
//! # }
//! ```

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::Result;
use crate::pg::PgPool;
use crate::sql::Connection;

/// A database of its own, created on a server and dropped (`WITH (FORCE)`, so sessions still
/// open do not keep it) when this is dropped or [`TempDatabase::remove`]d.
#[derive(Debug)]
pub struct TempDatabase {
    admin_url: String,
    name: String,
    url: String,
    removed: bool,
}

impl TempDatabase {
    /// A new database on the server that `NUMPORT_TEST_POSTGRES_URL` names; when the variable
    /// is unset, [`testkit::postgres_url`] fails the test under `CI=true` and otherwise prints
    /// one skip line, and this returns `None`. Panics if the server refuses.
    pub async fn create() -> Option<TempDatabase> {
        let admin_url = testkit::postgres_url()?;
        match TempDatabase::create_on(&admin_url, "np_test").await {
            Ok(db) => Some(db),
            Err(e) => panic!("creating a test database on NUMPORT_TEST_POSTGRES_URL ({admin_url}): {e}"),
        }
    }

    /// A new database named `{prefix}_{pid}_{n}_{nanos}` on the server of `admin_url` (whose
    /// user may create databases).
    pub async fn create_on(admin_url: &str, prefix: &str) -> Result<TempDatabase> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        let name = format!("{prefix}_{}_{}_{nanos}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        admin(admin_url, &format!("CREATE DATABASE {name}")).await?;
        let url = with_database(admin_url, &name);
        Ok(TempDatabase { admin_url: admin_url.to_owned(), name, url, removed: false })
    }

    /// `postgres://…/{name}`, with the server, user and parameters of the admin URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drop the database now.
    pub async fn remove(mut self) -> Result<()> {
        self.removed = true;
        admin(&self.admin_url, &drop_statement(&self.name)).await
    }
}

impl Drop for TempDatabase {
    /// Drops the database on a thread of its own (`Drop` cannot await); best effort.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let (admin_url, statement) = (self.admin_url.clone(), drop_statement(&self.name));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(admin(&admin_url, &statement)).ok()
        })
        .join();
    }
}

fn drop_statement(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
}

/// Run one statement that may not run inside a transaction, on a session of its own.
async fn admin(admin_url: &str, statement: &str) -> Result<()> {
    let pool = PgPool::connect(admin_url, 1).await?;
    let mut conn = Connection::postgres(pool.acquire().await?);
    let outcome = conn.execute_batch(statement).await;
    conn.close().await;
    pool.close();
    outcome
}

/// `url` with its database replaced by `name`, its query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (head, query) = url.split_once('?').map_or((url, None), |(h, q)| (h, Some(q)));
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let root = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// A PostgreSQL server of its own: `initdb` in a temporary directory and `postgres` on a free
/// loopback port (127.0.0.1, and ::1 where the machine has it), with trust authentication for
/// user `postgres`; stopped and removed on drop. With a certificate it accepts TLS sessions only
/// (`hostssl` in `pg_hba.conf`); without, it has TLS off.
pub struct TempServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    ipv6: bool,
}

/// The server's certificate (PEM, with any intermediates) and its private key (PEM).
#[derive(Debug, Clone, Copy)]
pub struct ServerIdentity<'a> {
    pub cert: &'a str,
    pub key: &'a str,
}

impl TempServer {
    /// Starts a server; `None` after [`testkit::skip`] when `initdb` or `postgres` is not
    /// installed (or, as root, there is no `postgres` user to run them as). Panics if the
    /// server does not start.
    pub fn start(tls: Option<ServerIdentity<'_>>) -> Option<TempServer> {
        let enable = "apt-get install postgresql (its programs are found on PATH or in /usr/lib/postgresql/*/bin)";
        let initdb = postgres_program("initdb", enable)?;
        let postgres = postgres_program("postgres", enable)?;
        let owner = ServerUser::find()?;
        let dir = tempfile::tempdir().expect("temporary directory");
        owner.own(dir.path(), 0o700);
        let data = dir.path().join("data");
        let mut init = owner.command(&initdb);
        init.arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "--no-sync", "--no-locale", "-E", "UTF8"]);
        let out = init.output().unwrap_or_else(|e| panic!("{}: {e}", initdb.display()));
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
        let listen = if ipv6 { "127.0.0.1,::1" } else { "127.0.0.1" };
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut settings = vec![format!("listen_addresses={listen}"), "fsync=off".into()];
        let mut hba = String::from("local all all trust\n");
        let host = if tls.is_some() { "hostssl" } else { "host" };
        for net in ["127.0.0.1/32", "::1/128"] {
            hba.push_str(&format!("{host} all all {net} trust\n"));
        }
        match tls {
            Some(identity) => {
                let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
                std::fs::write(&cert, identity.cert).expect("writing the certificate");
                std::fs::write(&key, identity.key).expect("writing the key");
                owner.own(&cert, 0o600);
                owner.own(&key, 0o600);
                settings.extend(["ssl=on".into(), format!("ssl_cert_file={}", cert.display())]);
                settings.push(format!("ssl_key_file={}", key.display()));
            }
            None => settings.push("ssl=off".into()),
        }
        std::fs::write(data.join("pg_hba.conf"), hba).expect("writing pg_hba.conf");
        let log_path = dir.path().join("postgres.log");
        let log = std::fs::File::create(&log_path).expect("creating the server's log");
        owner.own(&log_path, 0o600);
        let mut server = owner.command(&postgres);
        server.arg("-D").arg(&data).arg("-p").arg(port.to_string()).arg("-k").arg(dir.path());
        for setting in &settings {
            server.arg("-c").arg(setting);
        }
        let stderr = log.try_clone().expect("the log's handle");
        server.stdin(Stdio::null()).stdout(log).stderr(stderr);
        let child = server.spawn().unwrap_or_else(|e| panic!("{}: {e}", postgres.display()));
        let mut started = TempServer { child, dir, port, ipv6 };
        started.wait_ready(&log_path);
        Some(started)
    }

    /// Waits until the server says it accepts connections; panics with its log if it stops or
    /// takes longer than 30 s.
    fn wait_ready(&mut self, log_path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut log = String::new();
            let _ = std::fs::File::open(log_path).and_then(|mut f| f.read_to_string(&mut log));
            if log.contains("ready to accept connections") {
                return;
            }
            let exited = self.child.try_wait().ok().flatten();
            assert!(exited.is_none() && Instant::now() < deadline, "PostgreSQL did not start ({exited:?}):\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server also listens on ::1.
    pub fn has_ipv6(&self) -> bool {
        self.ipv6
    }

    /// `postgres://postgres@{host}:{port}/postgres{query}`; an IPv6 `host` in brackets.
    pub fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres{query}", self.port)
    }

    /// The directory holding the data, the certificate and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TempServer {
    /// A fast shutdown (SIGINT), then SIGKILL if it takes more than 10 s.
    fn drop(&mut self) {
        let _ = Command::new("sh").args(["-c", &format!("kill -INT {}", self.child.id())]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `program` on `PATH`, or in Debian's `/usr/lib/postgresql/VERSION/bin` (the newest), or
/// [`testkit::skip`].
fn postgres_program(program: &str, enable: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).map(|d| d.join(program));
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path().join("bin").join(program)).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| std::cmp::Reverse(version_of(p)));
    let found = on_path.chain(versions).find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0));
    if found.is_none() {
        testkit::skip(&format!("PostgreSQL's program `{program}`"), enable);
    }
    found
}

/// The major version in `/usr/lib/postgresql/VERSION/bin/…`.
fn version_of(path: &Path) -> u32 {
    path.iter().nth(4).and_then(|v| v.to_str()?.parse().ok()).unwrap_or(0)
}

/// Whom the server runs as: this process's user, or `postgres` when that is root (PostgreSQL
/// refuses to run as root).
struct ServerUser {
    /// `None`: this process's own user.
    ids: Option<(u32, u32)>,
}

impl ServerUser {
    fn find() -> Option<ServerUser> {
        // The owner of /proc/self is this process's effective user.
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if !root {
            return Some(ServerUser { ids: None });
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let ids = passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))?
        });
        if ids.is_none() {
            testkit::skip(
                "a `postgres` user to run a PostgreSQL server as (it refuses root)",
                "apt-get install postgresql, which creates it",
            );
            return None;
        }
        Some(ServerUser { ids })
    }

    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Gives `path` to the server's user, with `mode`.
    fn own(&self, path: &Path, mode: u32) {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to the postgres user");
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_of_a_url_is_replaced() {
        use super::with_database;
        assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(with_database("postgresql://h/db?host=/run/pg", "x"), "postgresql://h/x?host=/run/pg");
    }
}
