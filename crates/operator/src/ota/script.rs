//! What the OTA server writes to a card and how it is packed: the remote file management
//! script (TS 102 226 compact APDUs), the secured command packet around it (TS 102 225 /
//! TS 31.115), its SMS-PP user data, and the proof of receipt read back. Pure: the codec, the
//! files' coding and the APDU builders are the `sim` crate's; this module decides the content.

use sim::apdu::{self, fid};
use sim::packet::{CommandHeader, KeyIdentifier, ResponsePacket, Spi, Tar};
use sms::tpdu::{Payload, SmsSubmit};

use super::OpenedCard;

/// The security every command packet asks for ([`Spi::SECURE`]): cryptographic checksum,
/// ciphering, a counter higher than the card's; a PoR always, checksummed and ciphered, by
/// SMS-SUBMIT.
pub const SPI: Spi = Spi::SECURE;

/// Commands in the script [`CardWrites::script`] makes; a PoR that counts fewer executed
/// stopped early.
pub const COMMANDS: usize = 14;

/// What a job writes to a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardWrites {
    /// E.164 with a leading `+`.
    pub msisdn: String,
    pub spn: String,
    /// E.164 with a leading `+`, or digits.
    pub sms_center: String,
    pub k_sim: Vec<u8>,
    /// The SIM's SMS-authentication key, as the SMS center issued it, and its version.
    pub sms_auth_version: u8,
    pub sms_auth_key: zeroize::Zeroizing<[u8; sms::auth::KEY_LEN]>,
}

/// SPN display condition: show the name (bit 1 clear would show the registered PLMN's).
const SPN_DISPLAY: u8 = 0x01;

impl CardWrites {
    /// The script, [`COMMANDS`] APDUs: EF_MSISDN, EF_SPN and EF_SMSP under DF GSM, then K_sim
    /// and the SMS-authentication key (version octet, key) in the product's DF. Each file is
    /// selected from the MF, so the script does not depend on where the card stood.
    pub fn script(&self) -> Result<Vec<u8>, sim::files::FileError> {
        let sms_center =
            if self.sms_center.starts_with('+') { self.sms_center.clone() } else { format!("+{}", self.sms_center) };
        let msisdn = sim::files::encode_msisdn_record(&self.msisdn)?;
        let spn = sim::files::encode_spn(&self.spn, SPN_DISPLAY)?;
        let smsp = sim::files::encode_smsp_record(&sms_center)?;
        let sms_auth: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(
            std::iter::once(self.sms_auth_version).chain(self.sms_auth_key.iter().copied()).collect(),
        );
        let commands = [
            apdu::select(fid::MF),
            apdu::select(fid::DF_GSM),
            apdu::select(fid::EF_MSISDN),
            apdu::update_record(1, &msisdn),
            apdu::select(fid::EF_SPN),
            apdu::update_binary(0, &spn),
            apdu::select(fid::EF_SMSP),
            apdu::update_record(1, &smsp),
            apdu::select(fid::MF),
            apdu::select(fid::DF_NUMPORT),
            apdu::select(fid::EF_KSIM),
            apdu::update_binary(0, &self.k_sim),
            apdu::select(fid::EF_SMS_AUTH),
            apdu::update_binary(0, &sms_auth),
        ];
        Ok(commands.concat())
    }
}

/// The secured command packet carrying `script` to the application `tar` of the card, under
/// counter `counter`.
pub fn command_packet(
    card: &OpenedCard,
    tar: Tar,
    counter: u64,
    script: &[u8],
) -> Result<Vec<u8>, sim::packet::PacketError> {
    let header = CommandHeader {
        spi: SPI,
        kic: KeyIdentifier::new(card.kic_index, card.keys.kic.algorithm()),
        kid: KeyIdentifier::new(card.kid_index, card.keys.kid.algorithm()),
        tar,
        counter,
    };
    sim::packet::encode_command_packet(&card.keys, &header, script)
}

/// The user data of each SMS carrying `packet` (header and octets, as the SMS center stores a
/// message with esm_class UDHI): the command packet identifier in the first part, concatenated
/// under `reference` when longer than one SMS (`sim::sms_pp`).
pub fn command_sms(packet: &[u8], reference: u16) -> Result<Vec<Vec<u8>>, sim::sms_pp::SmsPpError> {
    let parts = sim::sms_pp::command_user_data(packet, sms::Reference::Sixteen(reference))?;
    Ok(parts
        .into_iter()
        .map(|ud| {
            let mut out = ud.header.as_ref().map(sms::udh::UserDataHeader::encode).unwrap_or_default();
            match ud.payload {
                Payload::Octets(o) | Payload::Septets(o) => out.extend(o),
            }
            out
        })
        .collect())
}

/// The response packet a card's SMS-SUBMIT carries (TP-PID 0x7F, 8-bit data, the response
/// packet identifier in the header, one SMS).
pub fn response_packet_bytes(submit: &SmsSubmit) -> Result<Vec<u8>, String> {
    sim::sms_pp::por_from_submit(submit).ok_or_else(|| "no proof of receipt (TP-PID 0x7F, IEI 0x71, 8-bit data)".into())
}

/// The PoR in `packet`, checked with the card's keys. An error status the card did not
/// checksum (it never signs an answer to a packet whose own checksum failed) is read but marked
/// unauthenticated.
pub fn read_por(card: &OpenedCard, packet: &[u8]) -> Result<ResponsePacket, sim::packet::PacketError> {
    sim::packet::decode_response_packet(&card.keys, &SPI, packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes() -> CardWrites {
        CardWrites {
            msisdn: "+4790500000".into(),
            spn: "Operator A".into(),
            sms_center: "4790000000".into(),
            k_sim: vec![7; 32],
            sms_auth_version: 1,
            sms_auth_key: zeroize::Zeroizing::new([8; 32]),
        }
    }

    #[test]
    fn the_script_holds_every_write_and_runs_on_a_card() {
        let script = writes().script().unwrap();
        assert_eq!(sim::apdu::parse_script(&script).unwrap().len(), COMMANDS);
        let keys = sim::OtaKeys::aes(&[1; 16], &[2; 16]).unwrap();
        let mut card = sim::Card::personalise(&sim::Personalisation {
            imsi: "242010000000001".into(),
            k_sim: vec![7; 32],
            ota_keys: vec![(1, keys.clone())],
            msisdn: None,
            spn: None,
            smsc: None,
            sms_auth: None,
        })
        .unwrap();
        let result = card.run_script(&script);
        assert_eq!((usize::from(result.executed), result.last_sw), (COMMANDS, sim::apdu::sw::OK));
        assert_eq!(card.msisdn().as_deref(), Some("+4790500000"));
        assert_eq!(card.spn().as_deref(), Some("Operator A"));
        assert_eq!(card.smsc().as_deref(), Some("+4790000000"));
        assert_eq!(card.sms_auth_key(), Some((1, &[8u8; 32][..])));
    }

    #[test]
    fn a_long_packet_goes_in_concatenated_sms_with_the_identifier_first() {
        let packet = vec![0xA5; 300];
        let parts = command_sms(&packet, 7).unwrap();
        assert_eq!(parts.len(), 3);
        let mut body = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= 140, "part {i} fits an SMS");
            let (header, len) = sms::udh::UserDataHeader::decode(p).unwrap();
            assert_eq!(header.has(sms::udh::IEI_COMMAND_PACKET), i == 0);
            assert_eq!(header.concat().map(|c| (c.reference, c.seq)), Some((7, i as u8 + 1)));
            body.extend_from_slice(&p[len..]);
        }
        assert_eq!(body, packet);
        assert!(command_sms(&[1; 20], 1).unwrap().len() == 1);
    }
}
