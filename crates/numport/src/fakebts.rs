//! A simulated pseudo base station ("fake BTS", IMSI catcher), the attacker F3's SMS
//! authentication is built against. It speaks the node's air interface (`sms::air` frames over
//! TCP), so a handset attaches to it as to its network: 2G authenticates the SIM to the
//! network, never the network to the SIM, so the connection alone tells the handset nothing.
//!
//! It takes a handset's link in one of two ways ([`Network`]): alone, answering the attach
//! itself (it ignores the SIM's answer to its challenge and "attaches" whatever number it
//! likes), or as a relay between the handset and the real node, passing the attach through
//! (the real node authenticates the real SIM) and recording every SMS-DELIVER the real network
//! sends, as a real IMSI catcher in the middle can. Then it sends its own ([`Attacks`]):
//! spoofed SMS (a bank's alphanumeric sender and a phishing link, no element), SMS with a
//! made-up authentication element (the right IEI and layout, a guessed MAC), and replays of
//! the SMS it recorded, byte for byte, under fresh frame references.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use numport_core::{Clock, SystemClock};
use sms::address::Address;
use sms::air::Frame;
use sms::auth::{AuthElement, MAC_LEN};
use sms::tpdu::{DataCoding, SmsDeliver, Tpdu, UserData};
use sms::udh::{InformationElement, UserDataHeader};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long the fake waits for each step of the handset and the network.
const STEP: Duration = Duration::from_secs(10);
/// The frame references of what the fake sends itself are drawn from here on, afresh each
/// time: a handset drops a reference it has seen as a repeat, and a real fake numbers its own.
const REFERENCES: u32 = 0x4000_0000;

/// How the fake takes the handset's link.
#[derive(Debug, Clone)]
pub enum Network {
    /// Answers the attach itself and tells the handset it is `msisdn`.
    Alone { msisdn: String },
    /// Relays the attach to the real `node` and records the first `deliveries` SMS-DELIVERs the
    /// node sends (relaying the handset's acknowledgements), then cuts the node off.
    Relay { node: SocketAddr, deliveries: usize },
}

/// What the fake sends once it holds the link.
#[derive(Debug, Clone, Default)]
pub struct Attacks {
    /// (sender, text): an SMS without an authentication element.
    pub spoof: Option<(String, String)>,
    /// (sender, text): an SMS with a made-up authentication element.
    pub made_up: Option<(String, String)>,
    /// Send again every SMS-DELIVER recorded from the real network.
    pub replay_recorded: bool,
    /// SMS-DELIVER TPDUs recorded before (another session), to send again.
    pub replay: Vec<Vec<u8>>,
}

/// What happened on one handset's link.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub imsi: String,
    /// The number the handset was attached as.
    pub msisdn: String,
    /// The SMS-DELIVER TPDUs recorded from the real network.
    pub recorded: Vec<Vec<u8>>,
    /// The TPDUs the fake sent itself, in order.
    pub sent: Vec<Vec<u8>>,
    /// How many of them the handset acknowledged.
    pub acknowledged: usize,
}

async fn read(s: &mut TcpStream, what: &str) -> anyhow::Result<Frame> {
    tokio::time::timeout(STEP, operator::air::read_frame(s))
        .await
        .with_context(|| format!("waiting for {what}"))??
        .with_context(|| format!("the link closed before {what}"))
}

async fn write(s: &mut TcpStream, f: &Frame) -> anyhow::Result<()> {
    s.write_all(&f.encode()).await.context("writing a frame")
}

/// Takes the link of the handset connected on `handset`, then sends `attacks` and waits for
/// the handset to acknowledge them.
pub async fn capture(mut handset: TcpStream, network: &Network, attacks: &Attacks) -> anyhow::Result<Outcome> {
    let Frame::Attach { imsi } = read(&mut handset, "the handset's attach").await? else {
        bail!("the handset did not attach");
    };
    let mut outcome = Outcome { imsi: imsi.clone(), ..Outcome::default() };
    match network {
        Network::Alone { msisdn } => {
            write(&mut handset, &Frame::Challenge { nonce: rand::random() }).await?;
            // Whatever the SIM answers: the fake cannot check it and does not need to.
            read(&mut handset, "the SIM's answer").await?;
            write(&mut handset, &Frame::Attached { msisdn: msisdn.clone() }).await?;
            outcome.msisdn = msisdn.clone();
        }
        Network::Relay { node, deliveries } => {
            let mut real = TcpStream::connect(node).await.with_context(|| format!("connecting to {node}"))?;
            outcome.msisdn = relay_attach(&mut handset, &mut real, &imsi).await?;
            outcome.recorded = relay(&mut handset, &mut real, *deliveries).await?;
        }
    }
    let mut tpdus = Vec::new();
    if let Some((from, text)) = &attacks.spoof {
        tpdus.push(Tpdu::Deliver(deliver(from, text)?).encode()?);
    }
    if let Some((from, text)) = &attacks.made_up {
        tpdus.push(Tpdu::Deliver(made_up(deliver(from, text)?, &outcome.recorded)).encode()?);
    }
    if attacks.replay_recorded {
        tpdus.extend(outcome.recorded.iter().cloned());
    }
    tpdus.extend(attacks.replay.iter().cloned());
    outcome.acknowledged = inject(&mut handset, &tpdus).await?;
    outcome.sent = tpdus;
    Ok(outcome)
}

/// Passes the attach between handset and node; the number the node attached the SIM as.
async fn relay_attach(handset: &mut TcpStream, real: &mut TcpStream, imsi: &str) -> anyhow::Result<String> {
    write(real, &Frame::Attach { imsi: imsi.to_owned() }).await?;
    let challenge = read(real, "the network's challenge").await?;
    write(handset, &challenge).await?;
    let answer = read(handset, "the SIM's answer").await?;
    write(real, &answer).await?;
    let attached = read(real, "the network's answer").await?;
    write(handset, &attached).await?;
    match attached {
        Frame::Attached { msisdn } => Ok(msisdn),
        other => bail!("the network refused the SIM: {other:?}"),
    }
}

/// Relays frames both ways until `deliveries` SMS-DELIVERs from the node were acknowledged by
/// the handset; the SMS-DELIVERs seen.
async fn relay(handset: &mut TcpStream, real: &mut TcpStream, deliveries: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut recorded = Vec::new();
    let mut pending = std::collections::HashSet::new();
    let mut acknowledged = 0;
    while acknowledged < deliveries {
        tokio::select! {
            f = tokio::time::timeout(STEP, operator::air::read_frame(real)) => {
                let f = f.context("waiting for the network")??.context("the network closed the link")?;
                if let Frame::Deliver { reference, tpdu } = &f
                    && matches!(Tpdu::decode_mt(tpdu), Ok(Tpdu::Deliver(_)))
                {
                    recorded.push(tpdu.clone());
                    pending.insert(*reference);
                }
                write(handset, &f).await?;
            }
            f = tokio::time::timeout(STEP, operator::air::read_frame(handset)) => {
                let f = f.context("waiting for the handset")??.context("the handset closed the link")?;
                if let Frame::DeliverAck { reference, .. } = &f
                    && pending.remove(reference)
                {
                    acknowledged += 1;
                }
                write(real, &f).await?;
            }
        }
    }
    Ok(recorded)
}

/// Sends `tpdus` under fresh references; how many the handset acknowledged.
async fn inject(handset: &mut TcpStream, tpdus: &[Vec<u8>]) -> anyhow::Result<usize> {
    let first = REFERENCES + rand::random::<u32>() % (REFERENCES - 0x1_0000);
    let references = first..first + tpdus.len() as u32;
    for (reference, tpdu) in references.clone().zip(tpdus) {
        write(handset, &Frame::Deliver { reference, tpdu: tpdu.clone() }).await?;
    }
    let mut acknowledged = 0;
    while acknowledged < tpdus.len() {
        match read(handset, "the handset's acknowledgements").await? {
            Frame::DeliverAck { reference, .. } if references.contains(&reference) => acknowledged += 1,
            _ => {}
        }
    }
    Ok(acknowledged)
}

/// An SMS-DELIVER from `from` (digits: an international number; else an alphanumeric sender
/// id) with `text`, time-stamped now.
pub fn deliver(from: &str, text: &str) -> anyhow::Result<SmsDeliver> {
    let originator = if !from.is_empty() && from.bytes().all(|b| b.is_ascii_digit()) {
        Address::international(from)
    } else {
        Address::alphanumeric(from)
    };
    let (dcs, user_data) = match UserData::gsm7(text) {
        Ok(ud) => (DataCoding::GSM7, ud),
        Err(_) => (DataCoding::UCS2, UserData::ucs2(text)),
    };
    Ok(SmsDeliver {
        more_messages: false,
        status_report_indication: false,
        reply_path: false,
        originator,
        pid: 0,
        dcs,
        scts: operator::air::timestamp(SystemClock.now_ms()),
        user_data,
    })
}

/// `d` with an authentication element of the right shape: key version 1, the counter after
/// the highest recorded one, a random MAC.
fn made_up(mut d: SmsDeliver, recorded: &[Vec<u8>]) -> SmsDeliver {
    let highest = recorded
        .iter()
        .filter_map(|t| match Tpdu::decode_mt(t) {
            Ok(Tpdu::Deliver(d)) => sms::auth::element(&d).ok().flatten(),
            _ => None,
        })
        .map(|e| e.counter)
        .max()
        .unwrap_or(1);
    let mac: [u8; MAC_LEN] = rand::random();
    let element = AuthElement { key_version: 1, counter: highest.saturating_add(1), mac };
    d.user_data.header.get_or_insert_with(UserDataHeader::default).elements.push(InformationElement::Auth(element));
    d
}
