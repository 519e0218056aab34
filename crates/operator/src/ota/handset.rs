//! A handset with a card, on the air interface: it attaches with the card's IMSI and K_sim,
//! shows nothing, acknowledges every SMS-DELIVER, hands SIM data download to the card
//! (`sim::sms_pp::DataDownload`) and sends the card's proof of receipt back as an SMS-SUBMIT.
//! What the OTA server's tests, its benchmark and the browser test put at the far end of the
//! SMS path; `numport terminal` is the handset a person runs.

use std::sync::{Arc, Mutex};

use sms::air::{CAUSE_OK, Frame};
use sms::tpdu::Tpdu;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::OperatorError;
use crate::air::{attach_terminal, read_frame};

/// What the handset saw of one proof of receipt it sent: the node's `SubmitAck` cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PorSent {
    pub cause: u8,
}

/// Attaches to the air interface at `air` with `card` and serves it until `stop` or until the
/// node closes the link. Each PoR's `SubmitAck` is reported on `pors`. `Ok(Err(cause))` when the
/// attach was refused (a card whose account is not opened yet).
pub async fn serve_card(
    air: std::net::SocketAddr,
    card: Arc<Mutex<sim::Card>>,
    pors: tokio::sync::mpsc::UnboundedSender<PorSent>,
    stop: CancellationToken,
) -> Result<Result<(), u8>, OperatorError> {
    let (imsi, k_sim) = {
        let c = card.lock().unwrap_or_else(|e| e.into_inner());
        (c.imsi().unwrap_or_default(), c.k_sim().to_vec())
    };
    let mut s = TcpStream::connect(air).await?;
    s.set_nodelay(true)?;
    if let Err(cause) = attach_terminal(&mut s, &imsi, &k_sim).await? {
        return Ok(Err(cause));
    }
    let mut download = sim::sms_pp::DataDownload::default();
    let mut reference: u32 = 0;
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return Ok(Ok(())),
            f = read_frame(&mut s) => f?,
        };
        match frame {
            None => return Ok(Ok(())),
            Some(Frame::Deliver { reference: r, tpdu }) => {
                s.write_all(&Frame::DeliverAck { reference: r, cause: CAUSE_OK }.encode()).await?;
                let Ok(Tpdu::Deliver(d)) = Tpdu::decode_mt(&tpdu) else { continue };
                reference = reference.wrapping_add(1);
                let reception = {
                    let mut c = card.lock().unwrap_or_else(|e| e.into_inner());
                    download.deliver(&mut c, &d, reference as u8)
                };
                if let Some(por) = reception.and_then(|r| r.por) {
                    let tpdu = Tpdu::Submit(por).encode().map_err(|e| OperatorError::Config(format!("PoR: {e}")))?;
                    s.write_all(&Frame::Submit { reference, tpdu }.encode()).await?;
                }
            }
            Some(Frame::SubmitAck { cause, .. }) => {
                let _ = pors.send(PorSent { cause });
            }
            Some(_) => {}
        }
    }
}
