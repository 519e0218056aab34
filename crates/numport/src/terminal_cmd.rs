//! `numport terminal`: a simulated handset. It attaches to its operator's air interface with
//! its IMSI and SIM key, then shows each short message it receives (sender, text, time) and
//! acknowledges it. Repeats of a message it has already shown (same reference, after a lost
//! acknowledgement) are acknowledged again but not shown twice.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use sms::air::{CAUSE_OK, Frame, attach_proof};
use sms::tpdu::Tpdu;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[derive(clap::Args)]
pub struct Args {
    /// The operator node's air interface.
    #[arg(long, default_value = "127.0.0.1:7700")]
    node: SocketAddr,
    #[arg(long)]
    imsi: String,
    /// The SIM key (hex).
    #[arg(long, env = "NUMPORT_K_SIM", hide_env_values = true)]
    k_sim: String,
    /// Exit after this many messages (default: run until interrupted).
    #[arg(long)]
    count: Option<usize>,
    /// One JSON object per message instead of text lines.
    #[arg(long)]
    json: bool,
}

async fn send(s: &mut TcpStream, f: Frame) -> anyhow::Result<()> {
    s.write_all(&f.encode()).await.context("sending to the node")
}

async fn recv(s: &mut TcpStream) -> anyhow::Result<Frame> {
    operator::air::read_frame(s).await?.context("the node closed the link")
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key = hex::decode(args.k_sim.trim()).context("--k-sim must be hex")?;
    let mut s = TcpStream::connect(args.node).await.with_context(|| format!("connecting to {}", args.node))?;
    send(&mut s, Frame::Attach { imsi: args.imsi.clone() }).await?;
    let Frame::Challenge { nonce } = recv(&mut s).await? else { bail!("the node sent no challenge") };
    send(&mut s, Frame::Response { mac: attach_proof(&key, &nonce, &args.imsi) }).await?;
    let msisdn = match recv(&mut s).await? {
        Frame::Attached { msisdn } => msisdn,
        Frame::Rejected { cause } => bail!("attach refused (cause {cause})"),
        other => bail!("unexpected answer to attach: {other:?}"),
    };
    if !args.json {
        println!("attached as {msisdn}");
    }
    let mut seen = HashSet::new();
    let mut shown = 0;
    while args.count.is_none_or(|n| shown < n) {
        let (reference, tpdu) = match recv(&mut s).await? {
            Frame::Deliver { reference, tpdu } => (reference, tpdu),
            _ => continue,
        };
        let fresh = seen.insert(reference);
        match Tpdu::decode_mt(&tpdu) {
            Ok(Tpdu::Deliver(d)) if fresh => {
                let t = d.scts;
                let time = format!(
                    "20{:02}-{:02}-{:02} {:02}:{:02}:{:02}",
                    t.year, t.month, t.day, t.hour, t.minute, t.second
                );
                let text = d.user_data.text(d.dcs);
                if args.json {
                    println!("{}", serde_json::json!({ "from": d.originator.value, "text": text, "time": time }));
                } else {
                    println!("{time}  from {}: {text}", d.originator.value);
                }
                shown += 1;
            }
            Ok(_) => {}
            Err(e) => eprintln!("undecodable TPDU ({e}): {}", hex::encode(&tpdu)),
        }
        send(&mut s, Frame::DeliverAck { reference, cause: CAUSE_OK }).await?;
    }
    Ok(ExitCode::SUCCESS)
}
