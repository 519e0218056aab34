//! Starting roles as child processes of this same binary, the way the demo, the benchmarks and
//! the end-to-end tests do: port 0, then read the address from the role's "listening" line.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running role. Killed (SIGKILL) when dropped, so a failed demo leaves nothing behind.
pub struct Launched {
    pub child: Child,
    pub http: SocketAddr,
    /// The ENUM server (UDP and TCP), for roles that run one.
    pub dns: Option<SocketAddr>,
    /// The SMS center's SMPP server, for roles that run one.
    pub smpp: Option<SocketAddr>,
    /// The SMS center's SMPP over TLS, for roles that offer it.
    pub smpp_tls: Option<SocketAddr>,
    /// The air interface terminals attach to, for roles that run one.
    pub air: Option<SocketAddr>,
    /// Diameter Gy, for the OCS.
    pub diameter: Option<SocketAddr>,
    /// Whether `http` serves TLS.
    pub tls: bool,
}

impl Launched {
    /// The HTTP API's base URL: `https://` when the role serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.http)
    }

    /// `kill -9`: no shutdown, no flush; what was committed must survive.
    pub async fn kill_hard(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// SIGTERM, then wait for a graceful exit.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: sending a signal to our own child by pid has no memory effects.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.start_kill();
        }
    }
}

/// The `numport` binary to start: this process's own executable, unless `NUMPORT_BIN` names
/// another (tests run from a test binary, and point it at the real one).
pub fn numport_exe() -> anyhow::Result<std::path::PathBuf> {
    match std::env::var_os("NUMPORT_BIN") {
        Some(p) => Ok(p.into()),
        None => std::env::current_exe().context("locating the numport binary"),
    }
}

/// Run `numport <args>` with logs appended to `log`, and wait until it listens.
pub async fn launch(args: &[String], log: &Path) -> anyhow::Result<Launched> {
    let exe = numport_exe()?;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("NUMPORT_LOG", std::env::var("NUMPORT_LOG").unwrap_or_else(|_| crate::DEFAULT_LOG.into()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true);
    // If this process dies without dropping the child (SIGKILL, or a signal that skips
    // destructors), the kernel stops the child too: no orphaned roles after a killed demo.
    #[cfg(target_os = "linux")]
    // SAFETY: between fork and exec only the async-signal-safe prctl runs.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd.spawn().with_context(|| format!("starting numport {}", args.join(" ")))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["event"] == "listening"
                && let Some(http) = v["http"].as_str().and_then(|a| a.parse::<SocketAddr>().ok())
            {
                return Ok::<_, std::io::Error>(Some((http, v)));
            }
        }
        Ok(None)
    })
    .await;
    let Ok(Ok(Some((http, announced)))) = found else {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("numport {} did not start listening; {} ends:\n{}", args.join(" "), log.display(), tail.join("\n"))
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let service = |name: &str| announced[name].as_str().and_then(|a| a.parse().ok());
    Ok(Launched {
        child,
        http,
        dns: service("dns"),
        smpp: service("smpp"),
        smpp_tls: service("smpp_tls"),
        air: service("air"),
        diameter: service("diameter"),
        tls: announced["tls"].as_bool().unwrap_or(false),
    })
}
