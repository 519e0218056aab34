//! SMS-PP data download (3GPP TS 31.115, TS 23.040), both ends.
//!
//! - The server's side: a command packet in SMS-DELIVERs with TP-PID 0x7F (SIM data download)
//!   and TP-DCS 0xF6 (8-bit, class 2), the command packet identifier (IEI 0x70) in the user
//!   data header, concatenated when it does not fit one SMS (the identifier in the first
//!   part only); and the PoR read back out of the card's SMS-SUBMIT.
//! - The card's side: the parts put back together ([`DataDownload`]), the packet handed to
//!   the [`Card`], and its PoR in an SMS-SUBMIT (TP-PID 0x7F, TP-DCS 0xF6, IEI 0x71) to the
//!   originator of the command.

use sms::tpdu::{Alphabet, DataCoding, Payload, SmsDeliver, SmsSubmit, Timestamp, Tpdu, UserData};
use sms::udh::{IEI_COMMAND_PACKET, IEI_RESPONSE_PACKET, InformationElement, UserDataHeader};
use sms::{Address, Reassembler, Reference};

use crate::uicc::{Card, Outcome};

/// TP-PID of SIM data download.
pub const PID_SIM_DATA_DOWNLOAD: u8 = 0x7F;
/// Incomplete concatenated command packets the card holds at once.
const PENDING_PACKETS: usize = 4;

/// Why the SMS of a packet cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsPpError {
    #[error(transparent)]
    Segment(#[from] sms::SegmentError),
    #[error(transparent)]
    Encode(#[from] sms::EncodeError),
    #[error("a PoR of {0} octets does not fit one SMS")]
    PorTooLong(usize),
}

/// Whether an SMS-DELIVER is SIM data download, for the card rather than the person: TP-PID
/// 0x7F and a class-2 8-bit coding.
pub fn is_data_download(d: &SmsDeliver) -> bool {
    d.pid == PID_SIM_DATA_DOWNLOAD && d.dcs.class() == Some(2) && d.dcs.alphabet() == Alphabet::EightBit
}

/// The user data of the SMS that carry `packet`: the command packet identifier first, parts
/// under `reference` when more than one is needed.
pub fn command_user_data(packet: &[u8], reference: Reference) -> Result<Vec<UserData>, SmsPpError> {
    Ok(sms::split_octets(packet, reference, &[InformationElement::command_packet()])?)
}

/// The SMS-DELIVERs that carry `packet` from `originator` (the OTA server's address).
pub fn command_delivers(
    originator: &Address,
    packet: &[u8],
    reference: Reference,
    scts: Timestamp,
) -> Result<Vec<SmsDeliver>, SmsPpError> {
    Ok(command_user_data(packet, reference)?
        .into_iter()
        .map(|user_data| SmsDeliver {
            more_messages: false,
            status_report_indication: false,
            reply_path: false,
            originator: originator.clone(),
            pid: PID_SIM_DATA_DOWNLOAD,
            dcs: DataCoding::SIM_DATA_DOWNLOAD,
            scts,
            user_data,
        })
        .collect())
}

/// [`command_delivers`] as TPDU octets.
pub fn command_tpdus(
    originator: &Address,
    packet: &[u8],
    reference: Reference,
    scts: Timestamp,
) -> Result<Vec<Vec<u8>>, SmsPpError> {
    command_delivers(originator, packet, reference, scts)?.into_iter().map(|d| Ok(Tpdu::Deliver(d).encode()?)).collect()
}

/// The SMS-SUBMIT that carries a PoR to `destination`: one SMS (the card keeps its PoRs that
/// short).
pub fn por_submit(
    destination: &Address,
    response_packet: &[u8],
    message_reference: u8,
) -> Result<SmsSubmit, SmsPpError> {
    if response_packet.len() + 3 > 140 {
        return Err(SmsPpError::PorTooLong(response_packet.len()));
    }
    Ok(SmsSubmit {
        reject_duplicates: false,
        status_report_request: false,
        reply_path: false,
        message_reference,
        destination: destination.clone(),
        pid: PID_SIM_DATA_DOWNLOAD,
        dcs: DataCoding::SIM_DATA_DOWNLOAD,
        validity: None,
        user_data: UserData {
            header: Some(UserDataHeader { elements: vec![InformationElement::response_packet()] }),
            payload: Payload::Octets(response_packet.to_vec()),
        },
    })
}

/// The response packet of an SMS-SUBMIT that carries a PoR (the server's side): TP-PID 0x7F,
/// 8-bit data, the response packet identifier in the header. `None` for any other SMS.
pub fn por_from_submit(submit: &SmsSubmit) -> Option<Vec<u8>> {
    let header = submit.user_data.header.as_ref()?;
    if submit.pid != PID_SIM_DATA_DOWNLOAD || !header.has(IEI_RESPONSE_PACKET) || header.concat().is_some() {
        return None;
    }
    match &submit.user_data.payload {
        Payload::Octets(o) if submit.dcs.alphabet() == Alphabet::EightBit => Some(o.clone()),
        _ => None,
    }
}

/// The card's reception of SMS-PP data download: the parts of a concatenated command packet
/// put back together. Parts are held in memory only; a packet whose parts straddle a restart
/// is lost, and the server sends it again when no PoR comes.
pub struct DataDownload {
    parts: Reassembler,
}

impl Default for DataDownload {
    fn default() -> DataDownload {
        DataDownload { parts: Reassembler::new(PENDING_PACKETS) }
    }
}

/// What one received SMS came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reception {
    /// What the card did, once the command packet was whole.
    pub outcome: Outcome,
    /// The PoR to send, when the card answers.
    pub por: Option<SmsSubmit>,
}

impl DataDownload {
    /// The whole command packet once every part of `d` is in. A first part (or single SMS)
    /// without the command packet identifier is not a secured packet, and is dropped.
    pub fn receive(&mut self, d: &SmsDeliver) -> Option<Vec<u8>> {
        if !is_data_download(d) {
            return None;
        }
        let header = d.user_data.header.as_ref()?;
        let first = header.concat().is_none_or(|c| c.seq == 1);
        if first && !header.has(IEI_COMMAND_PACKET) {
            return None;
        }
        self.parts.receive_octets(&d.originator.value, &d.user_data, d.dcs)
    }

    /// Takes one SMS-DELIVER of data download into `card`: once the packet is whole, the card
    /// processes it and its PoR goes to the originator, under TP-MR `message_reference`.
    pub fn deliver(&mut self, card: &mut Card, d: &SmsDeliver, message_reference: u8) -> Option<Reception> {
        let packet = self.receive(d)?;
        let outcome = card.receive_command_packet(&packet);
        let por = outcome.por.as_deref().and_then(|p| por_submit(&d.originator, p, message_reference).ok());
        Some(Reception { outcome, por })
    }
}
