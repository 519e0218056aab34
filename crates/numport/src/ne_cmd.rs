//! `numport ne <kind>`: a simulated network element (HLR/HSS, SMS center subscriber list,
//! charging account) as a server of its own, for an operator node whose `[provisioning]` names
//! its address. The protocol is `provisioning::core::wire`'s.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use provisioning::Element;
use provisioning::element::{ElementConfig, ElementServer};

#[derive(clap::Args)]
pub struct Args {
    /// `hlr`, `smsc` or `charging`.
    kind: Element,
    #[arg(long, default_value = "127.0.0.1:7801")]
    listen: SocketAddr,
    /// Commands executed per second.
    #[arg(long, default_value_t = 5_000)]
    capacity: u32,
    /// Time from execution to the answer, in milliseconds.
    #[arg(long, default_value_t = 1)]
    latency_ms: u64,
    /// Work held waiting before a command counts as beyond capacity, in milliseconds.
    #[arg(long, default_value_t = 100)]
    queue_ms: u32,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let config = ElementConfig {
        latency: Duration::from_millis(args.latency_ms),
        queue_ms: args.queue_ms,
        ..ElementConfig::new(args.kind, args.capacity)
    };
    let shutdown = crate::shutdown_on_signal();
    let server = ElementServer::spawn(config, listener, shutdown.clone())?;
    tracing::info!(element = %args.kind, addr = %server.addr(), capacity = args.capacity, "network element listening");
    crate::announce_listening("ne", Some(args.kind.as_str()), server.addr(), false, &[]);
    shutdown.cancelled().await;
    let (received, beyond) = server.counts();
    tracing::info!(element = %args.kind, received, beyond_capacity = beyond, "network element stopped");
    Ok(ExitCode::SUCCESS)
}
