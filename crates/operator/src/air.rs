//! The air interface (simulated radio link, `sms::air` frames over TCP): terminals attach with
//! their IMSI by answering a challenge over their SIM key, then receive the short messages
//! queued for their number as SMS-DELIVER TPDUs, each acknowledged before it counts as
//! delivered. A message whose delivery is not acknowledged stays queued and is sent again at
//! the next attach (at-least-once; the terminal drops repeats by reference).

use std::time::Duration;

use numport_core::Millis;
use sms::address::{Address, TON_ALPHANUMERIC};
use sms::air::{CAUSE_AUTH_FAILED, CAUSE_OK, Frame, MAX_BODY, verify_attach_proof};
use sms::tpdu::{DataCoding, SmsDeliver, Timestamp, Tpdu, UserData};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::sms::StoredSms;
use crate::{Node, OperatorError};

/// How long a terminal has for each step of the attach, and to acknowledge a delivery.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an attached terminal's queue is looked at when nothing signals new messages.
const POLL: Duration = Duration::from_millis(250);

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

    // Frames from the terminal arrive on their own task, so waiting for new messages never
    // cuts a frame in half.
    let (tx, mut frames) = mpsc::channel(16);
    let reader = tokio::spawn(async move {
        while let Ok(Some(f)) = read_frame(&mut read).await {
            if tx.send(f).await.is_err() {
                break;
            }
        }
    });
    let result = async {
        loop {
            let queued = node.store().queued_for(&msisdn, 16).await?;
            for m in &queued {
                let Some(tpdu) = deliver_tpdu(m) else {
                    node.store().finish_sms(m.id, "undeliverable").await?;
                    continue;
                };
                let reference = m.id as u32;
                write.write_all(&Frame::Deliver { reference, tpdu }.encode()).await?;
                let acked = loop {
                    match tokio::time::timeout(STEP_TIMEOUT, frames.recv()).await {
                        Ok(Some(Frame::DeliverAck { reference: r, cause })) if r == reference => {
                            break cause == CAUSE_OK;
                        }
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => return Ok::<_, OperatorError>(()),
                    }
                };
                if !acked {
                    break; // the terminal cannot take more now; try at the next attach
                }
                node.store().finish_sms(m.id, "delivered").await?;
            }
            if queued.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = node.inner.sms_queued.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    f = frames.recv() => if f.is_none() { return Ok(()) },
                }
            }
        }
    }
    .await;
    reader.abort();
    result
}

/// The SMS-DELIVER for a stored message: the SMPP data coding mapped to the air's, text in
/// the GSM 7-bit alphabet where it fits, else UCS-2. `None` if it cannot be carried in one
/// TPDU (concatenation is still to come).
pub(crate) fn deliver_tpdu(m: &StoredSms) -> Option<Vec<u8>> {
    let originator = if m.source_ton == TON_ALPHANUMERIC || !m.source_addr.bytes().all(|b| b.is_ascii_digit()) {
        Address::alphanumeric(&m.source_addr)
    } else {
        Address::international(&m.source_addr)
    };
    let (dcs, user_data) = match m.data_coding {
        // SMSC default alphabet, IA5 or Latin-1: text.
        0 | 1 | 3 => {
            let text: String = m.payload.iter().map(|&b| b as char).collect();
            match UserData::gsm7(&text) {
                Ok(ud) => (DataCoding::GSM7, ud),
                Err(_) => (DataCoding::UCS2, UserData::ucs2(&text)),
            }
        }
        8 => (DataCoding::UCS2, UserData { header: None, payload: sms::tpdu::Payload::Octets(m.payload.clone()) }),
        _ => (DataCoding::EIGHT_BIT, UserData { header: None, payload: sms::tpdu::Payload::Octets(m.payload.clone()) }),
    };
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
