//! The air interface (simulated radio link, `sms::air` frames over TCP): terminals attach with
//! their IMSI by answering a challenge over their SIM key, then receive the short messages
//! queued for their number as SMS-DELIVER TPDUs, each acknowledged before it counts as
//! delivered. A message whose delivery is not acknowledged stays queued and is sent again at
//! the next attach (at-least-once; the terminal drops repeats by reference).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use numport_core::Millis;
use sms::address::{Address, TON_ALPHANUMERIC};
use sms::air::{CAUSE_AUTH_FAILED, CAUSE_OK, Frame, MAX_BODY, verify_attach_proof};
use sms::tpdu::{DataCoding, SmsDeliver, Timestamp, Tpdu, UserData};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sms_center::Change;
use crate::store::sms::{SmsState, StoredSms};
use crate::{Node, OperatorError};

/// How long a terminal has for each step of the attach, and to acknowledge a delivery.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an attached terminal's session checks for silence and for messages its live
/// queue could not carry.
const POLL: Duration = Duration::from_millis(500);
/// Deliveries outstanding to one terminal at once.
const WINDOW: usize = 16;
/// Messages a session holds in memory, at most.
const BACKLOG: usize = 1024;

/// Serves terminals on `listener` until `stop` is cancelled.
pub async fn serve(node: Node, listener: TcpListener, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "air interface accept");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (node, stop) = (node.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = session(&node, stream, stop).await {
                tracing::debug!(%peer, error = %e, "terminal session ended");
            }
        });
    }
}

/// Reads one air frame; `None` when the peer closed the link. Frames longer than
/// [`MAX_BODY`] are refused before their body is read. Shared by the node and `numport
/// terminal`.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, OperatorError> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u16::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_BODY + 1 {
        return Err(OperatorError::Config(format!("air frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Frame::decode(&body).map(Some).map_err(|e| OperatorError::Config(format!("air frame: {e}")))
}

async fn session(node: &Node, stream: TcpStream, stop: CancellationToken) -> Result<(), OperatorError> {
    let (mut read, mut write) = stream.into_split();
    let Ok(Ok(Some(Frame::Attach { imsi }))) = tokio::time::timeout(STEP_TIMEOUT, read_frame(&mut read)).await else {
        return Ok(());
    };
    let sim = node.store().sim(&imsi).await?;
    let nonce: [u8; 16] = rand::random();
    write.write_all(&Frame::Challenge { nonce }.encode()).await?;
    let answer = tokio::time::timeout(STEP_TIMEOUT, read_frame(&mut read)).await;
    let msisdn = match (sim, answer) {
        (Some((msisdn, key)), Ok(Ok(Some(Frame::Response { mac }))))
            if verify_attach_proof(&key, &nonce, &imsi, &mac) =>
        {
            msisdn
        }
        _ => {
            tracing::info!(imsi, "attach refused");
            write.write_all(&Frame::Rejected { cause: CAUSE_AUTH_FAILED }.encode()).await?;
            return Ok(());
        }
    };
    write.write_all(&Frame::Attached { msisdn: msisdn.clone() }.encode()).await?;
    tracing::info!(imsi, msisdn, "terminal attached");

    deliver(node, &msisdn, write, read, stop).await
}

/// Delivers the terminal's messages, up to [`WINDOW`] unacknowledged at once: first those
/// waiting in the database, then each one as it is committed. A message counts as delivered
/// when the terminal acknowledges it; one the terminal refuses (memory full) waits for the
/// scheduler's next attempt.
async fn deliver(
    node: &Node,
    msisdn: &str,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut read: tokio::net::tcp::OwnedReadHalf,
    stop: CancellationToken,
) -> Result<(), OperatorError> {
    let center = node.sms();
    let (_attachment, mut live) = center.attach(msisdn);
    // Frames from the terminal arrive on their own task, so waiting for them never cuts a
    // frame in half.
    let (tx, mut frames) = mpsc::channel(WINDOW * 2);
    let reader = tokio::spawn(async move {
        while let Ok(Some(f)) = read_frame(&mut read).await {
            if tx.send(f).await.is_err() {
                break;
            }
        }
    });
    let mut backlog: VecDeque<StoredSms> = node.store().queued_for(msisdn, BACKLOG as i64).await?.into();
    // Sent and not yet acknowledged, by reference, with when they were sent.
    let mut unacked: HashMap<u32, (StoredSms, Instant)> = HashMap::new();
    // Ids handed over in this session, so a message dispatched twice is sent once.
    let mut seen = RecentIds::default();
    let mut out = Vec::new();
    let mut rescan = tokio::time::interval(POLL);
    let result = async {
        loop {
            while unacked.len() < WINDOW
                && let Some(m) = backlog.pop_front()
            {
                if !seen.insert(m.id) {
                    continue;
                }
                let Some(tpdu) = deliver_tpdu(&m) else {
                    center.commit_soon(Change::Final(m, SmsState::Undeliverable)).await;
                    continue;
                };
                let reference = m.id as u32;
                out.extend(Frame::Deliver { reference, tpdu }.encode());
                unacked.insert(reference, (m, Instant::now()));
            }
            if !out.is_empty() {
                write.write_all(&out).await?;
                out.clear();
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                f = frames.recv() => match f {
                    None => return Ok(()),
                    Some(Frame::DeliverAck { reference, cause }) => {
                        let Some((m, _)) = unacked.remove(&reference) else { continue };
                        if cause == CAUSE_OK {
                            center.commit_soon(Change::Final(m, SmsState::Delivered)).await;
                        } else {
                            tracing::info!(id = m.id, cause, "terminal refused a message; later");
                            let next = node.now() + node.config().smpp.retry_after(m.attempts) as i64;
                            center.commit_soon(Change::Retry(m.id, next)).await;
                        }
                    }
                    Some(other) => tracing::debug!(?other, "unexpected frame from an attached terminal"),
                },
                Some(m) = live.recv(), if backlog.len() < BACKLOG => backlog.push_back(m),
                _ = rescan.tick() => {
                    if unacked.values().any(|(_, sent)| sent.elapsed() > STEP_TIMEOUT) {
                        tracing::info!(msisdn, "terminal does not acknowledge; detaching");
                        return Ok(());
                    }
                    // Messages the live queue could not carry wait in the database.
                    if backlog.is_empty() && unacked.is_empty() {
                        backlog.extend(node.store().queued_for(msisdn, BACKLOG as i64).await?);
                    }
                }
            }
        }
    }
    .await;
    reader.abort();
    result
}

/// The ids of the last messages a session handed over, bounded.
#[derive(Default)]
struct RecentIds {
    set: HashSet<i64>,
    order: VecDeque<i64>,
}

impl RecentIds {
    const CAPACITY: usize = 65_536;

    /// False if `id` was handed over already.
    fn insert(&mut self, id: i64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// The SMS-DELIVER for a stored message: the SMPP data coding mapped to the air's, text in
/// the GSM 7-bit alphabet where it fits, else UCS-2. `None` if it cannot be carried in one
/// TPDU (a long message comes from the ESME already split, each part with its header).
pub(crate) fn deliver_tpdu(m: &StoredSms) -> Option<Vec<u8>> {
    let originator = if m.source_ton == TON_ALPHANUMERIC || !m.source_addr.bytes().all(|b| b.is_ascii_digit()) {
        Address::alphanumeric(&m.source_addr)
    } else {
        Address::international(&m.source_addr)
    };
    // With esm_class UDHI the short message starts with a user data header (concatenation,
    // ports), which travels on as the TPDU's.
    let (header, body) = if m.esm_class & 0x40 != 0 {
        let (h, len) = sms::udh::UserDataHeader::decode(&m.payload).ok()?;
        (Some(h), &m.payload[len..])
    } else {
        (None, &m.payload[..])
    };
    let (dcs, mut user_data) = match m.data_coding {
        // SMSC default alphabet, IA5 or Latin-1: text.
        0 | 1 | 3 => {
            let text: String = body.iter().map(|&b| b as char).collect();
            match UserData::gsm7(&text) {
                Ok(ud) => (DataCoding::GSM7, ud),
                Err(_) => (DataCoding::UCS2, UserData::ucs2(&text)),
            }
        }
        8 => (DataCoding::UCS2, UserData { header: None, payload: sms::tpdu::Payload::Octets(body.to_vec()) }),
        _ => (DataCoding::EIGHT_BIT, UserData { header: None, payload: sms::tpdu::Payload::Octets(body.to_vec()) }),
    };
    user_data.header = header;
    let deliver = SmsDeliver {
        more_messages: false,
        status_report_indication: false,
        reply_path: false,
        originator,
        pid: 0,
        dcs,
        scts: timestamp(m.submitted_at),
        user_data,
    };
    Tpdu::Deliver(deliver).encode().ok()
}

fn timestamp(ms: Millis) -> Timestamp {
    let t = smsc::receipt::ReceiptTime::from_unix_ms(ms);
    Timestamp {
        year: t.year,
        month: t.month,
        day: t.day,
        hour: t.hour,
        minute: t.minute,
        second: (ms.div_euclid(1000) % 60) as u8,
        tz_quarters: 0,
    }
}
