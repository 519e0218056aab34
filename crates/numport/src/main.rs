//! `numport`: one binary for every role of the portability system.
//!
//! - `numport clearinghouse` runs the neutral portability center; its subcommands administer
//!   its database (operators, credentials, number ranges, settlement funding).
//! - `numport operator` runs one mobile operator's node.
//! - `numport npdb` runs a standalone portability replica (F2).
//! - `numport ne` runs a simulated network element an operator node provisions (F6).
//! - `numport ocs` runs the online charging system alone, serving Diameter Gy (F4).
//! - `numport network` runs a simulated switching centre and packet gateway against an OCS.
//! - `numport pki` makes the certificates every role's TLS uses.
//! - `numport demo` plays the whole story on loopback with real processes.
//! - `numport bench …` measures what `docs/BENCHMARKS.md` quotes.
//!
//! Every long-running role prints one machine-readable line when it listens
//! (`{"event":"listening","role":…,"http":"127.0.0.1:…"}`) so that the demo, the benchmarks and
//! the tests can start it with port 0 and find it.

mod bench;
mod clearinghouse_cmd;
mod config;
mod demo;
mod fakebts_cmd;
mod ne_cmd;
mod network_cmd;
mod npdb_cmd;
mod ocs_cmd;
mod operator_cmd;
mod ota_cmd;
mod pki_cmd;
mod provisioning_cmd;
mod smsauth_terminal;
mod terminal_cmd;
mod terminal_sim;

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the servers allocate small, short-lived buffers per
/// request (DNS messages, JSON bodies), and with glibc's allocator malloc and free are a large
/// share of the replica's CPU under `numport bench enum` (`perf record -g` on the replica).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "numport", version, about = "Mobile number portability clearinghouse and operator platform")]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `clearinghouse=debug`.
    #[arg(long, global = true, env = "NUMPORT_LOG", default_value = numport::DEFAULT_LOG)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the clearinghouse, or administer its database with a subcommand.
    Clearinghouse(clearinghouse_cmd::Args),
    /// Run an operator node, or administer its database with a subcommand.
    Operator(operator_cmd::Args),
    /// Run a standalone portability replica (HTTP and ENUM lookups), or build its snapshot
    /// from CSV with `numport npdb import`.
    Npdb(npdb_cmd::Args),
    /// A simulated network element (`hlr`, `smsc`, `charging`) for an operator's provisioning.
    Ne(ne_cmd::Args),
    /// Run the online charging system (Diameter Gy), or administer its database with a subcommand.
    Ocs(ocs_cmd::Args),
    /// A simulated switching centre and packet gateway: calls and data sessions charged by an
    /// OCS over Diameter Gy, partial CDRs, data usage records, and the offline CDR files.
    Network(network_cmd::Args),
    /// A simulated handset: attach to an operator's air interface and show the SMS it receives.
    Terminal(terminal_cmd::Args),
    /// A simulated pseudo base station: takes a handset's link, relaying or alone, and sends it
    /// spoofed SMS, SMS with a made-up authentication element, and replays of recorded ones.
    Fakebts(fakebts_cmd::Args),
    /// Make a CA and one certificate per role (clearinghouse, operators, replicas) for TLS.
    Pki(pki_cmd::Args),
    /// Port a number from operator A to B with a clearinghouse and three operator processes.
    Demo(demo::Args),
    /// Measure the system: see docs/BENCHMARKS.md.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| numport::DEFAULT_LOG.into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a role started by `launch` logs to a file,
        // which should read (and grep) as plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("numport: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Clearinghouse(args) => clearinghouse_cmd::run(args).await,
            Command::Operator(args) => operator_cmd::run(args).await,
            Command::Npdb(args) => npdb_cmd::run(args).await,
            Command::Terminal(args) => terminal_cmd::run(args).await,
            Command::Fakebts(args) => fakebts_cmd::run(args).await,
            Command::Ne(args) => ne_cmd::run(args).await,
            Command::Ocs(args) => ocs_cmd::run(args).await,
            Command::Network(args) => network_cmd::run(args).await,
            Command::Pki(args) => pki_cmd::run(args),
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("numport: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Print the line that tells a parent process where a role listens (see `numport::launch`), and
/// whether its HTTP is over TLS. `services` are the role's other listeners by name (`dns`: ENUM
/// over UDP and TCP, `smpp`, `air`), where it runs them.
pub(crate) fn announce_listening(
    role: &str,
    name: Option<&str>,
    addr: std::net::SocketAddr,
    tls: bool,
    services: &[(&str, Option<std::net::SocketAddr>)],
) {
    use std::io::Write;
    let mut line =
        serde_json::json!({ "event": "listening", "role": role, "name": name, "http": addr.to_string(), "tls": tls });
    for (service, addr) in services {
        line[*service] = addr.map(|a| a.to_string()).into();
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub(crate) fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}
