//! `numport terminal`: a simulated handset. It attaches to its operator's air interface with
//! its IMSI and SIM key, then shows each short message it receives (sender, text, time) and
//! acknowledges it. The parts of a concatenated message are put back together
//! ([`sms::concat::Reassembler`]) and the message is shown once, whole.
//!
//! **Repeats.** Delivery is at-least-once: after a lost acknowledgement or a node crash the
//! node sends a message again under the same reference (its message id). The terminal
//! acknowledges a repeat but does not show it twice. The references it has taken live in
//! memory, and with `--state FILE` also in that file, so that a restarted terminal still knows
//! them. Each is appended and fsynced after the message is shown and before it is
//! acknowledged. A crash between showing and recording shows that one message again; nothing
//! acknowledged goes unshown. The file is one line per reference, `<reference>`, or
//! `<reference> <TPDU hex>` for a part of a concatenated message, so that parts received
//! before a restart still complete their message after it. On start (and once it has grown
//! to twice that) the file is rewritten with its last [`KEEP`] lines. Parts of messages
//! that completed lose their TPDU then.
//!
//! **Sending.** `--send <number> --text <text>` sends an SMS after the attach: the text is
//! split into SMS-SUBMIT TPDUs (GSM 7-bit where every character allows, else UCS-2;
//! concatenated when long), each with its own TP-MR and a status report requested. Each
//! `SubmitAck` is reported, and so is each SMS-STATUS-REPORT that comes back later
//! (`status report for MR n: delivered`). The terminal goes on receiving until `--count`
//! messages and status reports have been shown (and every part is acknowledged).
//!
//! **SIM.** With `--card FILE` the terminal has a SIM card ([`crate::terminal_sim`]): an
//! SMS-DELIVER of SIM data download (TP-PID 0x7F, class 2) goes to the card rather than to the
//! screen, the card file is rewritten, and the card's proof of receipt goes back to the
//! sender as an SMS-SUBMIT. `numport terminal sim new|show` makes and prints card files.
//!
//! **Authentication.** Every other SMS-DELIVER, and every SMS-STATUS-REPORT, is verified with
//! the SIM's SMS-authentication keys (the card's, and any `--sms-auth-key VERSION:HEX`) before
//! it is acknowledged, and shown with its verdict: authentic, forged (sent by a pseudo base
//! station) or replayed ([`crate::smsauth_terminal`], [`numport::handset_auth`]). The MAC
//! covers the subscriber's number, taken from the card's EF_MSISDN when it holds one, else the
//! number the node attached the SIM as. A key the card receives over the air is used from the
//! next SMS on, the older ones accepted for `--sms-auth-grace-s` more (the card holds no grace
//! of its own). With `--state FILE` the replay window lives in `FILE.smsauth` and the messages
//! with their verdicts in `FILE.smsauth.inbox`.
//!
//! **Porting.** `numport terminal port --to OPERATOR --recipient-url URL` ports the SIM's
//! number to another operator, as a subscriber does from the handset ([`port`]): it attaches,
//! sends the port-out authorisation by SMS to its home operator's service number
//! (`operator::portability::authorisation`), hands number, nonce, expiry and proof to the
//! recipient's self-service API, and follows the order to its end, printing each step with
//! its time. The port key is derived from the SIM key and the PIN, salted with the IMSI
//! (`numport::handset`), at the Argon2 cost the home operator provisioned it with.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clearinghouse_api::model::{Order, PortingRequest};
use numport_core::porting::{OrderState, Reason};
use numport_core::proof::{Nonce, PinStretch};
use numport_core::{Clock, Msisdn, OperatorName, SystemClock};
use operator::{PortInStatus, PortOutText};
use sms::address::Address;
use sms::air::{CAUSE_OK, Frame};
use sms::concat::{Reassembler, Reference};
use sms::tpdu::{SmsDeliver, SmsStatusReport, SmsSubmit, Timestamp, Tpdu};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<TerminalCommand>,
    #[command(flatten)]
    receive: Receive,
}

#[derive(clap::Subcommand)]
enum TerminalCommand {
    /// Port this SIM's number to another operator from the handset.
    Port(PortArgs),
    /// The SIM card file: personalise one, show its files.
    Sim {
        #[command(subcommand)]
        command: crate::terminal_sim::SimCommand,
    },
}

/// The SIM and the network it attaches to.
#[derive(clap::Args)]
struct Sim {
    /// The operator node's air interface.
    #[arg(long, default_value = "127.0.0.1:7700")]
    node: SocketAddr,
    /// The SIM's IMSI.
    // `Option`s, required by clap: so `numport terminal port` parses without the receiving
    // terminal's arguments.
    #[arg(long, required = true)]
    imsi: Option<String>,
    /// The SIM key (hex).
    #[arg(long, env = "NUMPORT_K_SIM", hide_env_values = true, required = true)]
    k_sim: Option<String>,
}

impl Sim {
    fn imsi(&self) -> &str {
        self.imsi.as_deref().unwrap_or_default()
    }

    fn key(&self) -> anyhow::Result<Vec<u8>> {
        hex::decode(self.k_sim.as_deref().unwrap_or_default().trim()).context("--k-sim must be hex")
    }

    /// Connects to the node and attaches; the stream and the number the node attached it as.
    async fn attach(&self, key: &[u8]) -> anyhow::Result<(TcpStream, String)> {
        let mut s = TcpStream::connect(self.node).await.with_context(|| format!("connecting to {}", self.node))?;
        match operator::air::attach_terminal(&mut s, self.imsi(), key).await? {
            Ok(msisdn) => Ok((s, msisdn)),
            Err(cause) => bail!("attach refused (cause {cause})"),
        }
    }
}

#[derive(clap::Args)]
struct Receive {
    #[command(flatten)]
    sim: Sim,
    /// Exit after this many messages and status reports shown (default: run until interrupted).
    #[arg(long)]
    count: Option<usize>,
    /// One JSON object per message instead of text lines.
    #[arg(long)]
    json: bool,
    /// Remember the references of messages taken in this file, so that a message the node
    /// sends again after a restart (of either side) is not shown twice.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Send an SMS to this number after attaching (with --text).
    #[arg(long, value_name = "MSISDN", requires = "text")]
    send: Option<String>,
    /// The text to send.
    #[arg(long, requires = "send")]
    text: Option<String>,
    /// The SIM card file (`numport terminal sim new`): SIM data download goes to this card,
    /// which is rewritten, and its proof of receipt is sent back.
    #[arg(long, value_name = "FILE")]
    card: Option<PathBuf>,
    /// An SMS-authentication key the SIM holds, `VERSION:HEX` (repeatable), besides the card's:
    /// each SMS-DELIVER is verified with them and shown with its verdict.
    #[arg(long, value_name = "VERSION:HEX", env = "NUMPORT_SMS_AUTH_KEY", hide_env_values = true)]
    sms_auth_key: Vec<numport::handset_auth::SimKey>,
    /// How long an older key stays accepted once the SIM holds a newer one, in seconds: the
    /// node's `[sms_auth] grace_s` (the card's EF holds the key and its version, not this).
    #[arg(long, default_value_t = 7 * 86_400)]
    sms_auth_grace_s: i64,
}

#[derive(clap::Args)]
pub struct PortArgs {
    #[command(flatten)]
    sim: Sim,
    /// The operator to port to.
    #[arg(long, value_name = "OPERATOR")]
    to: OperatorName,
    /// The recipient operator node's HTTP API.
    #[arg(long, value_name = "URL")]
    recipient_url: String,
    /// The CA an `https://` recipient URL is verified against (PEM).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The service PIN; read from stdin when not given.
    #[arg(long, env = "NUMPORT_PIN", hide_env_values = true)]
    pin: Option<String>,
    /// The home operator's service number, where the authorisation goes.
    #[arg(long, default_value = operator::config::DEFAULT_SERVICE_NUMBER)]
    service_number: String,
    /// Argon2 memory (KiB) the home operator stretched the PIN with.
    #[arg(long, default_value_t = PinStretch::default().memory_kib)]
    pin_memory_kib: u32,
    /// Argon2 passes the home operator stretched the PIN with.
    #[arg(long, default_value_t = PinStretch::default().passes)]
    pin_passes: u32,
    /// How long the proof stays valid, in seconds.
    #[arg(long, default_value_t = 600)]
    validity_s: u64,
    /// How long to follow the order before giving up, in seconds.
    #[arg(long, default_value_t = 60)]
    follow_s: u64,
}

/// References remembered: the state file keeps this many lines after compaction.
pub const KEEP: usize = 100_000;
/// Incomplete concatenated messages held at once.
const PENDING_MESSAGES: usize = 64;

async fn send(s: &mut TcpStream, f: Frame) -> anyhow::Result<()> {
    s.write_all(&f.encode()).await.context("sending to the node")
}

async fn recv(s: &mut TcpStream) -> anyhow::Result<Frame> {
    operator::air::read_frame(s).await?.context("the node closed the link")
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(TerminalCommand::Port(p)) => port(p).await,
        Some(TerminalCommand::Sim { command }) => crate::terminal_sim::run(command),
        None => receive(args.receive).await,
    }
}

/// Attaches, sends what `--send` asks for, and shows what arrives.
async fn receive(args: Receive) -> anyhow::Result<ExitCode> {
    let key = args.sim.key()?;
    let outgoing = match (&args.send, &args.text) {
        (Some(to), Some(text)) => submits(to, text, rand::random(), rand::random())?,
        _ => Vec::new(),
    };
    let mut memory = match &args.state {
        Some(path) => Memory::open(path)?,
        None => Memory::in_memory(),
    };
    let mut card = args.card.as_deref().map(crate::terminal_sim::CardFile::open).transpose()?;
    let grace_ms = args.sms_auth_grace_s.saturating_mul(1000);
    let mut auth = crate::smsauth_terminal::open(args.state.as_deref(), card.as_ref(), &args.sms_auth_key, grace_ms)?;
    let (mut s, msisdn) = args.sim.attach(&key).await?;
    if !args.json {
        println!("attached as {msisdn}");
    }
    // PoRs sent, by frame reference (counting down from the top, apart from the texts'), to
    // their destination.
    let (mut pors, mut next_por) = (HashMap::new(), u32::MAX);

    // Submits waiting for their SubmitAck, by frame reference: (part, parts, TP-MR).
    let mut unanswered = HashMap::new();
    let parts = outgoing.len();
    for (i, (mr, tpdu)) in outgoing.into_iter().enumerate() {
        let reference = i as u32 + 1;
        send(&mut s, Frame::Submit { reference, tpdu }).await?;
        unanswered.insert(reference, (i + 1, parts, mr));
    }
    let to = args.send.as_deref().unwrap_or_default().trim_start_matches('+');

    let mut shown = 0;
    while !unanswered.is_empty() || !pors.is_empty() || args.count.is_none_or(|n| shown < n) {
        let (reference, tpdu) = match recv(&mut s).await? {
            Frame::Deliver { reference, tpdu } => (reference, tpdu),
            Frame::SubmitAck { reference, cause } if pors.contains_key(&reference) => {
                let to: String = pors.remove(&reference).unwrap_or_default();
                if cause != CAUSE_OK {
                    eprintln!("the node refused the PoR to {to}: cause {cause}");
                }
                continue;
            }
            Frame::SubmitAck { reference, cause } => {
                let Some((part, parts, mr)) = unanswered.remove(&reference) else { continue };
                if cause != CAUSE_OK {
                    bail!("the node refused part {part}/{parts} (MR {mr}) to {to}: cause {cause}");
                }
                if args.json {
                    let ack = serde_json::json!({ "to": to, "part": part, "parts": parts, "mr": mr, "cause": cause });
                    println!("{}", serde_json::json!({ "submitted": ack }));
                } else {
                    println!("sent part {part}/{parts} to {to} (MR {mr}): accepted");
                }
                continue;
            }
            _ => continue,
        };
        if memory.knows(reference) {
            send(&mut s, Frame::DeliverAck { reference, cause: CAUSE_OK }).await?;
            continue;
        }
        if let Some(taken) = card.as_mut().map(|c| c.take(&tpdu)).transpose()?.flatten() {
            if let Some((json, line)) = taken.shown {
                println!("{}", if args.json { json.to_string() } else { line });
                shown += 1;
            }
            if let Some((tpdu, to)) = taken.por {
                send(&mut s, Frame::Submit { reference: next_por, tpdu }).await?;
                pors.insert(next_por, to);
                next_por -= 1;
            }
            memory.remember(reference);
            memory.record(reference, &tpdu)?;
            send(&mut s, Frame::DeliverAck { reference, cause: CAUSE_OK }).await?;
            // The download may have written a new SMS-authentication key into the card.
            crate::smsauth_terminal::take_card_key(&mut auth, card.as_ref(), grace_ms)?;
            continue;
        }
        let own = crate::smsauth_terminal::own_number(card.as_ref(), &msisdn);
        let judged = crate::smsauth_terminal::judge(&mut auth, &tpdu, &own)?;
        if let Some(show) = memory.take(reference, &tpdu) {
            let verdict = judged.map(|(j, d)| d.and_then(|d| auth.complete(&d)).unwrap_or(j));
            let line = crate::smsauth_terminal::show(&mut auth, &show, verdict.as_ref(), args.json)?;
            println!("{line}");
            shown += 1;
        }
        memory.record(reference, &tpdu)?;
        send(&mut s, Frame::DeliverAck { reference, cause: CAUSE_OK }).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The steps of a port from the handset, each printed with its time since the start.
struct Steps(std::time::Instant);

impl Steps {
    fn show(&self, what: impl std::fmt::Display) {
        println!("  +{:>5} ms  {what}", self.0.elapsed().as_millis());
    }
}

/// `numport terminal port`: ports the SIM's number to `--to`. Exits 0 once the order completed.
pub async fn port(args: PortArgs) -> anyhow::Result<ExitCode> {
    let k_sim = args.sim.key()?;
    let pin = match &args.pin {
        Some(p) => p.clone(),
        None => read_pin()?,
    };
    let steps = Steps(std::time::Instant::now());
    let cost = PinStretch { memory_kib: args.pin_memory_kib, passes: args.pin_passes };
    let key = numport::handset::port_key(&k_sim, pin.trim(), args.sim.imsi(), cost)
        .context("deriving the port key (salted with the IMSI)")?;
    steps.show("port key derived from the SIM key and the PIN");
    let (mut air, number) = args.sim.attach(&k_sim).await?;
    let msisdn: Msisdn = number.parse().with_context(|| format!("the node attached the SIM as {number:?}"))?;
    steps.show(format!("attached to {} as {msisdn}", args.sim.node));

    let nonce = Nonce(rand::random());
    let expiry = SystemClock.now_ms() + args.validity_s as i64 * 1000;
    let auth = PortOutText { recipient: args.to.clone(), nonce, expiry, msisdn: None };
    let cause = operator::air::send_authorisation(&mut air, &args.service_number, &auth, 1).await?;
    drop(air);
    let answer = operator::air::cause_text(cause);
    steps.show(format!("SMS \"{auth}\" to the service number {}: {answer}", args.service_number));
    if cause != CAUSE_OK {
        bail!("the home operator refused the port-out authorisation: {answer} (RP-cause {cause})");
    }

    let proof = key.prove(&nonce, &msisdn, &args.to, expiry);
    let req = PortingRequest { msisdn: msisdn.clone(), nonce: nonce.to_hex(), expiry, proof: proof.to_hex() };
    let base = args.recipient_url.trim_end_matches('/');
    let tls = args.ca.clone().map(|ca| numport_tls::ClientTls { ca, cert: None, key: None });
    let http = numport_tls::http::client(tls.as_ref(), |b| b.timeout(std::time::Duration::from_secs(10)))?;
    let r = http.post(format!("{base}/v1/self-service/port-in")).json(&req).send().await.context("the recipient")?;
    if !r.status().is_success() {
        bail!("the recipient refused the port-in: {} {}", r.status(), r.text().await.unwrap_or_default());
    }
    let order: Order = r.json().await.context("the recipient's answer")?;
    steps.show(format!("port-in request to {}: order {} opened, {}", args.to, order.id, order.state));

    let status =
        follow(&http, &format!("{base}/v1/self-service/port-in/{msisdn}/{}", nonce.to_hex()), &steps, args.follow_s)
            .await?;
    match (status.state, status.reason) {
        (OrderState::Completed, _) => {
            steps.show(format!("{msisdn} is served by {}", args.to));
            Ok(ExitCode::SUCCESS)
        }
        (_, Some(Reason::ProofMismatch)) => {
            steps.show("verification failed: the PIN is wrong");
            Ok(ExitCode::FAILURE)
        }
        (state, reason) => {
            let why = reason.map(|r| r.to_string()).unwrap_or_else(|| "still open".into());
            steps.show(format!("the port did not complete: {state} ({why})"));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Polls the recipient's status of the order at `url`, showing each state it passes, until it
/// ends or `within_s` pass; the last status.
async fn follow(http: &reqwest::Client, url: &str, steps: &Steps, within_s: u64) -> anyhow::Result<PortInStatus> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(within_s);
    let mut last = None;
    loop {
        let r = http.get(url).send().await.context("the recipient's order status")?;
        if !r.status().is_success() {
            bail!("the recipient's order status: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        let status: PortInStatus = r.json().await.context("the recipient's order status")?;
        if last != Some(status.state) {
            let why = status.reason.map(|r| format!(" ({r})")).unwrap_or_default();
            steps.show(format!("order {}: {}{why}", status.order_id, status.state));
            last = Some(status.state);
        }
        if status.state.is_terminal() || std::time::Instant::now() > deadline {
            return Ok(status);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The PIN, typed on stdin (one line); a prompt only for a person at a terminal.
fn read_pin() -> anyhow::Result<String> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("PIN: ");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the PIN from stdin")?;
    if line.trim().is_empty() {
        bail!("no PIN given (--pin, NUMPORT_PIN, or a line on stdin)");
    }
    Ok(line.trim().to_owned())
}

/// The SMS-SUBMIT TPDUs that carry `text` to `to`, each with its TP-MR: one, or the parts of
/// a concatenated message under concatenation reference `reference`, with TP-MRs counting up
/// from `first_mr`. Each asks for a status report.
pub fn submits(to: &str, text: &str, first_mr: u8, reference: u8) -> anyhow::Result<Vec<(u8, Vec<u8>)>> {
    let to = to.trim_start_matches('+');
    if to.is_empty() || to.len() > 15 || !to.bytes().all(|b| b.is_ascii_digit()) {
        bail!("--send {to:?} is no international number");
    }
    let segments = sms::concat::segment(text, Reference::Eight(reference))?;
    segments
        .parts
        .into_iter()
        .enumerate()
        .map(|(i, user_data)| {
            let mr = first_mr.wrapping_add(i as u8);
            let submit = SmsSubmit {
                reject_duplicates: false,
                status_report_request: true,
                reply_path: false,
                message_reference: mr,
                destination: Address::international(to),
                pid: 0,
                dcs: segments.dcs,
                validity: None,
                user_data,
            };
            Ok((mr, Tpdu::Submit(submit).encode()?))
        })
        .collect()
}

/// What the terminal shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// A whole message.
    Message {
        from: String,
        text: String,
        time: String,
    },
    StatusReport {
        mr: u8,
        recipient: String,
        status: u8,
        time: String,
    },
}

impl Shown {
    pub(crate) fn line(&self) -> String {
        match self {
            Shown::Message { from, text, time } => format!("{time}  from {from}: {text}"),
            Shown::StatusReport { mr, recipient, status, time } => {
                format!("{time}  status report for MR {mr}: {} (to {recipient})", status_text(*status))
            }
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        match self {
            Shown::Message { from, text, time } => serde_json::json!({ "from": from, "text": text, "time": time }),
            Shown::StatusReport { mr, recipient, status, time } => serde_json::json!({ "status_report": {
                "mr": mr, "recipient": recipient, "status": status_text(*status), "tp_status": status, "time": time,
            }}),
        }
    }
}

/// TP-ST in words (TS 23.040 §9.2.3.15).
fn status_text(status: u8) -> &'static str {
    match status {
        0x00..=0x1F => "delivered",
        0x20..=0x3F => "pending",
        0x46 => "expired",
        _ => "failed",
    }
}

fn time(t: &Timestamp) -> String {
    format!("20{:02}-{:02}-{:02} {:02}:{:02}:{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// One line of the state file: a reference taken, and the TPDU if it was a part of a
/// concatenated message (until that message is known to be complete).
type Line = (u32, Option<Vec<u8>>);

/// The concatenated message a part belongs to, as [`Reassembler`] tells messages apart.
type MessageKey = (String, bool, u16, u8);

/// The part's message, if `d` is a part of a concatenated message.
fn part_of(d: &SmsDeliver) -> Option<MessageKey> {
    let c = d.user_data.header.as_ref()?.concat()?;
    (c.total > 1 && c.seq >= 1 && c.seq <= c.total).then(|| (d.originator.value.clone(), c.wide, c.reference, c.total))
}

/// What the terminal has taken: the references (the last [`KEEP`]), and the parts of messages
/// not yet complete; with a state file, also on disk.
pub struct Memory {
    seen: HashSet<u32>,
    order: VecDeque<u32>,
    reassembler: Reassembler,
    file: Option<StateFile>,
}

struct StateFile {
    path: PathBuf,
    file: std::fs::File,
    lines: usize,
}

impl Memory {
    pub fn in_memory() -> Memory {
        Memory {
            seen: HashSet::new(),
            order: VecDeque::new(),
            reassembler: Reassembler::new(PENDING_MESSAGES),
            file: None,
        }
    }

    /// Loads the state file at `path` (none yet: empty), compacts it and opens it for
    /// appending.
    pub fn open(path: &Path) -> anyhow::Result<Memory> {
        let lines = match std::fs::read(path) {
            Ok(bytes) => parse(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut memory = Memory::in_memory();
        let lines = memory.replay(lines);
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
            let mut text = String::new();
            for (reference, tpdu) in &lines {
                text.push_str(&format_line(*reference, tpdu.as_deref()));
            }
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
        }
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        memory.file = Some(StateFile { path: path.to_owned(), file, lines: lines.len() });
        Ok(memory)
    }

    /// Takes in the last [`KEEP`] of `lines`: their references are known, and the parts among
    /// them wait in the reassembler for the rest of their message. The lines to keep, without
    /// the TPDUs of parts whose message is complete.
    fn replay(&mut self, mut all: Vec<Line>) -> Vec<Line> {
        let mut lines = all.split_off(all.len().saturating_sub(KEEP));
        let mut parts: HashMap<MessageKey, Vec<usize>> = HashMap::new();
        for i in 0..lines.len() {
            let (reference, tpdu) = &lines[i];
            self.remember(*reference);
            let Some(tpdu) = tpdu else { continue };
            let deliver = match Tpdu::decode_mt(tpdu) {
                Ok(Tpdu::Deliver(d)) => d,
                _ => {
                    lines[i].1 = None;
                    continue;
                }
            };
            let Some(key) = part_of(&deliver) else {
                lines[i].1 = None;
                continue;
            };
            parts.entry(key.clone()).or_default().push(i);
            if self.reassembler.receive_deliver(&deliver).is_some() {
                for j in parts.remove(&key).unwrap_or_default() {
                    lines[j].1 = None;
                }
            }
        }
        lines
    }

    fn remember(&mut self, reference: u32) {
        if self.seen.insert(reference) {
            self.order.push_back(reference);
            if self.order.len() > KEEP
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }

    /// Whether `reference` was taken already.
    pub fn knows(&self, reference: u32) -> bool {
        self.seen.contains(&reference)
    }

    /// Takes a TPDU received under a new `reference`: what to show, if anything (a part that
    /// leaves its message incomplete shows nothing yet).
    pub fn take(&mut self, reference: u32, tpdu: &[u8]) -> Option<Shown> {
        self.remember(reference);
        match Tpdu::decode_mt(tpdu) {
            Ok(Tpdu::Deliver(d)) => {
                let text = self.reassembler.receive_deliver(&d)?;
                Some(Shown::Message { from: d.originator.value, text, time: time(&d.scts) })
            }
            Ok(Tpdu::StatusReport(SmsStatusReport { message_reference, recipient, status, discharge, .. })) => {
                Some(Shown::StatusReport {
                    mr: message_reference,
                    recipient: recipient.value,
                    status,
                    time: time(&discharge),
                })
            }
            Ok(Tpdu::Submit(_)) => None,
            Err(e) => {
                eprintln!("undecodable TPDU ({e}): {}", hex::encode(tpdu));
                None
            }
        }
    }

    /// Records `reference` (taken with [`Memory::take`]) in the state file, and syncs it;
    /// the TPDU goes with it if it is part of a concatenated message.
    pub fn record(&mut self, reference: u32, tpdu: &[u8]) -> anyhow::Result<()> {
        let Some(state) = &mut self.file else { return Ok(()) };
        let is_part = matches!(Tpdu::decode_mt(tpdu), Ok(Tpdu::Deliver(d)) if part_of(&d).is_some());
        let line = format_line(reference, is_part.then_some(tpdu));
        state.file.write_all(line.as_bytes()).context("writing the state file")?;
        state.file.sync_data().context("syncing the state file")?;
        state.lines += 1;
        if state.lines >= 2 * KEEP {
            let path = state.path.clone();
            *self = Memory::open(&path)?;
        }
        Ok(())
    }
}

fn format_line(reference: u32, tpdu: Option<&[u8]>) -> String {
    match tpdu {
        Some(t) => format!("{reference} {}\n", hex::encode(t)),
        None => format!("{reference}\n"),
    }
}

/// The lines of a state file. A last line without its newline was cut by a crash and is
/// dropped; so is any line that does not read.
fn parse(bytes: &[u8]) -> Vec<Line> {
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..=end],
        None => return Vec::new(),
    };
    complete
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let reference = fields.next()?.parse().ok()?;
            let tpdu = match fields.next() {
                Some(h) => Some(hex::decode(h).ok()?),
                None => None,
            };
            fields.next().is_none().then_some((reference, tpdu))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sms::tpdu::{DataCoding, UserData};

    fn scts() -> Timestamp {
        Timestamp { year: 26, month: 11, day: 23, hour: 17, minute: 5, second: 0, tz_quarters: 0 }
    }

    fn deliver(from: &str, user_data: UserData, dcs: DataCoding) -> Vec<u8> {
        let d = SmsDeliver {
            more_messages: false,
            status_report_indication: false,
            reply_path: false,
            originator: if from.bytes().all(|b| b.is_ascii_digit()) {
                Address::international(from)
            } else {
                Address::alphanumeric(from)
            },
            pid: 0,
            dcs,
            scts: scts(),
            user_data,
        };
        Tpdu::Deliver(d).encode().unwrap()
    }

    /// The SMS-DELIVERs of `text` from `from`, as the node sends a long message's parts.
    fn delivers(from: &str, text: &str, reference: u8) -> Vec<Vec<u8>> {
        let s = sms::concat::segment(text, Reference::Eight(reference)).unwrap();
        s.parts.into_iter().map(|ud| deliver(from, ud, s.dcs)).collect()
    }

    fn texts(shown: impl IntoIterator<Item = Option<Shown>>) -> Vec<String> {
        shown
            .into_iter()
            .flatten()
            .map(|s| match s {
                Shown::Message { text, .. } => text,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Runs the terminal's receive step over `frames` as `run` does: a known reference is
    /// acknowledged silently, a new one taken, shown if whole, and recorded.
    fn receive(memory: &mut Memory, frames: &[(u32, Vec<u8>)]) -> Vec<Option<Shown>> {
        let mut shown = Vec::new();
        for (reference, tpdu) in frames {
            if memory.knows(*reference) {
                continue;
            }
            shown.push(memory.take(*reference, tpdu));
            memory.record(*reference, tpdu).unwrap();
        }
        shown
    }

    #[test]
    fn a_long_message_is_shown_once_whole() {
        let text = "x".repeat(300);
        let parts = delivers("4791000001", &text, 9);
        assert_eq!(parts.len(), 2);
        let mut m = Memory::in_memory();
        // Second part first, then a repeat of it, then the first.
        let frames = [(11, parts[1].clone()), (11, parts[1].clone()), (10, parts[0].clone())];
        let shown = receive(&mut m, &frames);
        assert_eq!(shown.len(), 2, "the repeat is not taken again");
        assert_eq!(texts(shown), [text]);
    }

    #[test]
    fn status_reports_are_shown() {
        let report = SmsStatusReport {
            more_messages: false,
            qualifier_command: false,
            message_reference: 7,
            recipient: Address::international("4790000001"),
            scts: scts(),
            discharge: scts(),
            status: 0,
            pid: None,
            dcs: None,
            user_data: None,
        };
        let mut m = Memory::in_memory();
        let shown = m.take(0x8000_0005, &Tpdu::StatusReport(report).encode().unwrap()).unwrap();
        assert_eq!(shown.line(), "2026-11-23 17:05:00  status report for MR 7: delivered (to 4790000001)");
        assert_eq!(shown.json()["status_report"]["status"], "delivered");
        assert_eq!(shown.json()["status_report"]["mr"], 7);
    }

    #[test]
    fn the_state_file_keeps_repeats_from_showing_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("terminal.state");
        let one = deliver("MyBank", UserData::gsm7("Your code is 123456").unwrap(), DataCoding::GSM7);
        let long = delivers("4791000001", &"Blåbærsyltetøy på brødskiva! ".repeat(8), 3);
        assert_eq!(long.len(), 2);

        let mut m = Memory::open(&path).unwrap();
        let shown = receive(&mut m, &[(1, one.clone()), (2, long[0].clone())]);
        assert_eq!(texts(shown), ["Your code is 123456"]);
        drop(m);

        // Restarted: the node sends 1 and 2 again (their acknowledgements were lost), then the
        // rest of the long message. 1 is not shown again; the part taken before the restart
        // still completes its message.
        let mut m = Memory::open(&path).unwrap();
        assert!(m.knows(1) && m.knows(2) && !m.knows(3));
        let shown = receive(&mut m, &[(1, one.clone()), (2, long[0].clone()), (3, long[1].clone())]);
        assert_eq!(texts(shown), ["Blåbærsyltetøy på brødskiva! ".repeat(8)]);
        drop(m);

        // Compacted on the next start: the parts of the complete message lose their TPDUs.
        let m = Memory::open(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n2\n3\n");
        assert_eq!(m.reassembler.pending(), 0);

        // Without the file, a restarted terminal would show 1 again.
        let mut fresh = Memory::in_memory();
        assert_eq!(texts(receive(&mut fresh, &[(1, one)])), ["Your code is 123456"]);
    }

    #[test]
    fn a_line_cut_by_a_crash_is_dropped_and_the_file_stays_bounded() {
        assert_eq!(parse(b"1\n2\n12"), vec![(1, None), (2, None)]);
        assert_eq!(parse(b"1\nzz\n3 0g\n4 00\n"), vec![(1, None), (4, Some(vec![0]))]);
        assert_eq!(parse(b""), vec![]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("terminal.state");
        let text: String = (0..KEEP as u32 + 10).map(|r| format!("{r}\n")).collect();
        std::fs::write(&path, text + "99999999").unwrap();
        let m = Memory::open(&path).unwrap();
        assert!(!m.knows(9) && m.knows(10) && m.knows(KEEP as u32 + 9) && !m.knows(99_999_999));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), KEEP);
    }

    #[test]
    fn submits_carry_the_text_in_parts_with_their_own_mrs() {
        let parts = submits("+4790000001", &"a".repeat(300), 255, 4).unwrap();
        assert_eq!(parts.iter().map(|(mr, _)| *mr).collect::<Vec<_>>(), [255, 0]);
        for (mr, tpdu) in &parts {
            let Ok(Tpdu::Submit(s)) = Tpdu::decode_mo(tpdu) else { panic!() };
            assert_eq!((s.message_reference, s.status_report_request), (*mr, true));
            assert_eq!(s.destination.value, "4790000001");
            assert!(s.user_data.header.is_some());
        }
        let ucs2 = submits("4790000001", "Hei 👋", 1, 1).unwrap();
        let Ok(Tpdu::Submit(s)) = Tpdu::decode_mo(&ucs2[0].1) else { panic!() };
        assert_eq!((s.dcs, s.user_data.text(s.dcs)), (DataCoding::UCS2, "Hei 👋".to_owned()));
        assert!(submits("MyBank", "hi", 1, 1).is_err());
    }
}
