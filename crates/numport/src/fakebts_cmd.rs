//! `numport fakebts`: the simulated pseudo base station ([`numport::fakebts`]) as a command. It
//! listens where a handset looks for its network, takes the first handset that attaches, sends
//! its attacks, prints what it did as one JSON object and exits.
//!
//! With `--relay NODE` it sits between the handset and the real node, passing the attach
//! through and recording the first `--relay-deliveries` SMS-DELIVERs (to `--record FILE` too,
//! one TPDU in hex a line); `--replay FILE` sends a recording made earlier.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use numport::fakebts::{Attacks, Network, capture};
use tokio::net::TcpListener;

/// The phishing SMS a pseudo base station sends in the bank's name.
pub const PHISHING_TEXT: &str =
    "MyBank: your account is locked. Confirm your details at https://mybank-secure.example/login";

#[derive(clap::Args)]
pub struct Args {
    /// Where handsets attach (the address they take for their network's air interface).
    #[arg(long, default_value = "127.0.0.1:7701")]
    listen: SocketAddr,
    /// Relay the attach to this real node and record its SMS-DELIVERs.
    #[arg(long, value_name = "ADDR")]
    relay: Option<SocketAddr>,
    /// With --relay: the SMS-DELIVERs to let through (and record) before cutting the node off.
    #[arg(long, default_value_t = 1)]
    relay_deliveries: usize,
    /// Without --relay: the number to tell the handset it is attached as.
    #[arg(long, default_value = "4790000000")]
    msisdn: String,
    /// The sender id of the spoofed and made-up SMS.
    #[arg(long, default_value = "MyBank")]
    sender: String,
    /// The text of the spoofed SMS.
    #[arg(long, default_value = PHISHING_TEXT)]
    text: String,
    /// Send no spoofed SMS.
    #[arg(long)]
    no_spoof: bool,
    /// Send no SMS with a made-up authentication element.
    #[arg(long)]
    no_made_up: bool,
    /// Write the SMS-DELIVERs recorded while relaying here.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Send again the SMS-DELIVERs recorded in this file (and those recorded now).
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Print the listening address as `listening <addr>` before waiting (for scripts).
    #[arg(long)]
    announce: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let replay = match &args.replay {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| hex::decode(l.trim()).context("a recorded TPDU is not hex"))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let attacks = Attacks {
        spoof: (!args.no_spoof).then(|| (args.sender.clone(), args.text.clone())),
        made_up: (!args.no_made_up).then(|| (args.sender.clone(), args.text.clone())),
        replay_recorded: args.relay.is_some(),
        replay,
    };
    let network = match args.relay {
        Some(node) => Network::Relay { node, deliveries: args.relay_deliveries },
        None => Network::Alone { msisdn: args.msisdn.clone() },
    };
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    if args.announce {
        println!("listening {}", listener.local_addr()?);
    }
    let (handset, _) = listener.accept().await?;
    let outcome = capture(handset, &network, &attacks).await?;
    if let Some(path) = &args.record {
        let text: String = outcome.recorded.iter().map(|t| format!("{}\n", hex::encode(t))).collect();
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{}",
        serde_json::json!({
            "imsi": outcome.imsi,
            "msisdn": outcome.msisdn,
            "recorded": outcome.recorded.len(),
            "sent": outcome.sent.len(),
            "acknowledged": outcome.acknowledged,
        })
    );
    Ok(ExitCode::SUCCESS)
}
