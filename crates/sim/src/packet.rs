//! Secured packets of ETSI TS 102 225 in the SMS form of 3GPP TS 31.115: the command packet
//! an OTA server sends to a card, and the response packet (proof of receipt, PoR) the card
//! answers with. The SMS user data header (IEI 0x70 / 0x71) is not part of these bytes; the
//! [`crate::sms_pp`] module adds it.
//!
//! Command packet (TS 31.115 §4.2):
//!
//! ```text
//! CPL(2) CHL(1) SPI(2) KIc(1) KID(1) TAR(3) | CNTR(5) PCNTR(1) CC(0|8) secured data, padding
//!                                           '---- ciphered with KIc when SPI asks ----'
//! ```
//!
//! CPL counts the octets after it, CHL those from SPI to the end of the CC, PCNTR the padding
//! octets (zeros) that make the ciphered part whole blocks. The CC is computed with KID over
//! CPL, CHL, SPI, KIc, KID, TAR, CNTR, PCNTR and the secured data with its padding.
//!
//! Response packet (TS 31.115 §4.4):
//!
//! ```text
//! RPL(2) RHL(1) TAR(3) | CNTR(5) PCNTR(1) status(1) CC(0|8) additional data, padding
//!                      '------------- ciphered when SPI2 asks -------------'
//! ```
//!
//! The PoR's CC also covers the user data header that carries it (`02 71 00`), as in TS 31.115.
//! These layouts, the checksum coverage and the padding are the ones the pySim KATs in
//! `tests/packet.rs` pin down.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::crypto::{Algorithm, CC_LEN, Key, KeyError};

/// The largest counter: CNTR is 5 octets.
pub const COUNTER_MAX: u64 = (1 << 40) - 1;
/// The user data header of a single-SMS PoR, which the PoR's checksum covers.
pub const RESPONSE_UDH: [u8; 3] = [0x02, sms::udh::IEI_RESPONSE_PACKET, 0x00];

/// SPI octet 1, bits 2..1 (and octet 2, bits 4..3, for the PoR): what protects the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Integrity {
    None,
    /// Redundancy check (CRC): detects accidents, not forgers.
    RedundancyCheck,
    CryptographicChecksum,
    DigitalSignature,
}

impl Integrity {
    fn from_bits(b: u8) -> Integrity {
        match b & 0x03 {
            0 => Integrity::None,
            1 => Integrity::RedundancyCheck,
            2 => Integrity::CryptographicChecksum,
            _ => Integrity::DigitalSignature,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Integrity::None => 0,
            Integrity::RedundancyCheck => 1,
            Integrity::CryptographicChecksum => 2,
            Integrity::DigitalSignature => 3,
        }
    }
}

/// SPI octet 1, bits 5..4: how the card checks the counter (TS 102 225 §5.1.1). Ordered from
/// weakest to strictest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterMode {
    /// No counter.
    None,
    /// A counter is there, but neither replay nor sequence is checked.
    Available,
    /// Processed only if the counter is higher than the card's.
    Higher,
    /// Processed only if the counter is exactly one higher than the card's.
    OneHigher,
}

impl CounterMode {
    fn from_bits(b: u8) -> CounterMode {
        match b & 0x03 {
            0 => CounterMode::None,
            1 => CounterMode::Available,
            2 => CounterMode::Higher,
            _ => CounterMode::OneHigher,
        }
    }

    fn bits(self) -> u8 {
        match self {
            CounterMode::None => 0,
            CounterMode::Available => 1,
            CounterMode::Higher => 2,
            CounterMode::OneHigher => 3,
        }
    }
}

/// SPI octet 2, bits 2..1: whether the card answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PorRequest {
    None,
    Always,
    OnError,
    /// The reserved value 11; the card answers as for [`PorRequest::Always`].
    Reserved,
}

/// The security parameter indicator (TS 102 225 §5.1.1, TS 31.115 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spi {
    pub integrity: Integrity,
    pub ciphering: bool,
    pub counter: CounterMode,
    pub por: PorRequest,
    pub por_integrity: Integrity,
    pub por_ciphering: bool,
    /// Octet 2 bit 6: the PoR goes in an SMS-SUBMIT rather than the SMS-DELIVER-REPORT.
    pub por_via_submit: bool,
}

impl Spi {
    /// What an operator sends: checksum, ciphering, counter higher than the card's; a PoR
    /// always, checksummed and ciphered, by SMS-SUBMIT.
    pub const SECURE: Spi = Spi {
        integrity: Integrity::CryptographicChecksum,
        ciphering: true,
        counter: CounterMode::Higher,
        por: PorRequest::Always,
        por_integrity: Integrity::CryptographicChecksum,
        por_ciphering: true,
        por_via_submit: true,
    };

    pub fn from_bytes(b: [u8; 2]) -> Spi {
        Spi {
            integrity: Integrity::from_bits(b[0]),
            ciphering: b[0] & 0x04 != 0,
            counter: CounterMode::from_bits(b[0] >> 3),
            por: match b[1] & 0x03 {
                0 => PorRequest::None,
                1 => PorRequest::Always,
                2 => PorRequest::OnError,
                _ => PorRequest::Reserved,
            },
            por_integrity: Integrity::from_bits(b[1] >> 2),
            por_ciphering: b[1] & 0x10 != 0,
            por_via_submit: b[1] & 0x20 != 0,
        }
    }

    pub fn to_bytes(self) -> [u8; 2] {
        let por = match self.por {
            PorRequest::None => 0,
            PorRequest::Always => 1,
            PorRequest::OnError => 2,
            PorRequest::Reserved => 3,
        };
        [
            self.integrity.bits() | u8::from(self.ciphering) << 2 | self.counter.bits() << 3,
            por | self.por_integrity.bits() << 2
                | u8::from(self.por_ciphering) << 4
                | u8::from(self.por_via_submit) << 5,
        ]
    }
}

/// A KIc or KID octet: the key version (bits 8..5) and the algorithm (bits 4..1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyIdentifier(pub u8);

/// What bits 4..1 of a KIc or KID say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// 0000: the algorithm the two ends agreed on (the key set's).
    Implicit,
    Known(Algorithm),
    /// Single DES (CBC, or ECB in a KIc): refused.
    SingleDes,
    /// Reserved or proprietary.
    Unsupported,
}

impl KeyIdentifier {
    /// `version` 1..=15 (bits 8..5).
    pub fn new(version: u8, algorithm: Algorithm) -> KeyIdentifier {
        KeyIdentifier((version & 0x0F) << 4 | algorithm.coding())
    }

    pub fn version(self) -> u8 {
        self.0 >> 4
    }

    pub fn coding(self) -> Coding {
        match self.0 & 0x0F {
            0b0000 => Coding::Implicit,
            0b0001 | 0b1101 => Coding::SingleDes,
            0b0101 => Coding::Known(Algorithm::TripleDes2Key),
            0b1001 => Coding::Known(Algorithm::TripleDes3Key),
            0b0010 => Coding::Known(Algorithm::Aes),
            _ => Coding::Unsupported,
        }
    }

    /// Whether this identifier names `key`'s algorithm.
    fn names(self, key: &Key) -> Result<(), PacketError> {
        match self.coding() {
            Coding::Implicit => Ok(()),
            Coding::Known(a) if a == key.algorithm() => Ok(()),
            Coding::SingleDes => Err(PacketError::SingleDes),
            _ => Err(PacketError::AlgorithmMismatch(self.0)),
        }
    }
}

/// The toolkit application reference: which application on the card the packet is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tar(pub [u8; 3]);

impl Tar {
    /// Remote file management of the SIM (TS 101 220 Annex D: B0 00 10).
    pub const RFM_SIM: Tar = Tar([0xB0, 0x00, 0x10]);
    /// Remote file management of the USIM (B0 00 11).
    pub const RFM_USIM: Tar = Tar([0xB0, 0x00, 0x11]);

    pub fn as_u32(self) -> u32 {
        u32::from_be_bytes([0, self.0[0], self.0[1], self.0[2]])
    }
}

impl std::fmt::Display for Tar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode_upper(self.0))
    }
}

impl std::str::FromStr for Tar {
    type Err = PacketError;

    fn from_str(s: &str) -> Result<Tar, PacketError> {
        let mut tar = [0; 3];
        hex::decode_to_slice(s, &mut tar).map_err(|_| PacketError::Field("TAR (6 hex digits)"))?;
        Ok(Tar(tar))
    }
}

/// The KIc and KID keys a packet is secured with (one key version of a card).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaKeys {
    pub kic: Key,
    pub kid: Key,
}

impl OtaKeys {
    /// AES keys for ciphering (KIc) and checksum (KID).
    pub fn aes(kic: &[u8], kid: &[u8]) -> Result<OtaKeys, KeyError> {
        Ok(OtaKeys { kic: Key::aes(kic)?, kid: Key::aes(kid)? })
    }

    /// Triple-DES keys (16 octets: two keys; 24: three).
    pub fn triple_des(kic: &[u8], kid: &[u8]) -> Result<OtaKeys, KeyError> {
        Ok(OtaKeys { kic: Key::triple_des(kic)?, kid: Key::triple_des(kid)? })
    }
}

/// What the server chooses for one command packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandHeader {
    pub spi: Spi,
    pub kic: KeyIdentifier,
    pub kid: KeyIdentifier,
    pub tar: Tar,
    /// CNTR, at most [`COUNTER_MAX`].
    pub counter: u64,
}

/// The part of a command packet that travels in clear: enough for the card to find the
/// application and the keys before it deciphers anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainHeader {
    pub spi: Spi,
    pub kic: KeyIdentifier,
    pub kid: KeyIdentifier,
    pub tar: Tar,
    pub chl: u8,
}

/// A command packet opened by the card: checksum verified, deciphered, padding removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPacket {
    pub header: CommandHeader,
    pub secured_data: Vec<u8>,
}

/// PoR status (TS 102 225 §5.1.5 table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PorStatus {
    Ok,
    /// RC/CC/DS failed.
    ChecksumFailed,
    CounterLow,
    CounterHigh,
    CounterBlocked,
    CipheringError,
    /// Unidentified security error: the card could not tell what was wrong, or says no more.
    SecurityError,
    InsufficientMemory,
    MoreTime,
    TarUnknown,
    InsufficientSecurityLevel,
    /// The actual response travels in an SMS-SUBMIT.
    ResponseInSubmit,
    /// The actual response travels in a USSD string.
    ResponseInUssd,
    Other(u8),
}

impl PorStatus {
    pub fn code(self) -> u8 {
        match self {
            PorStatus::Ok => 0x00,
            PorStatus::ChecksumFailed => 0x01,
            PorStatus::CounterLow => 0x02,
            PorStatus::CounterHigh => 0x03,
            PorStatus::CounterBlocked => 0x04,
            PorStatus::CipheringError => 0x05,
            PorStatus::SecurityError => 0x06,
            PorStatus::InsufficientMemory => 0x07,
            PorStatus::MoreTime => 0x08,
            PorStatus::TarUnknown => 0x09,
            PorStatus::InsufficientSecurityLevel => 0x0A,
            PorStatus::ResponseInSubmit => 0x0B,
            PorStatus::ResponseInUssd => 0x0C,
            PorStatus::Other(c) => c,
        }
    }

    pub fn from_code(c: u8) -> PorStatus {
        match c {
            0x00 => PorStatus::Ok,
            0x01 => PorStatus::ChecksumFailed,
            0x02 => PorStatus::CounterLow,
            0x03 => PorStatus::CounterHigh,
            0x04 => PorStatus::CounterBlocked,
            0x05 => PorStatus::CipheringError,
            0x06 => PorStatus::SecurityError,
            0x07 => PorStatus::InsufficientMemory,
            0x08 => PorStatus::MoreTime,
            0x09 => PorStatus::TarUnknown,
            0x0A => PorStatus::InsufficientSecurityLevel,
            0x0B => PorStatus::ResponseInSubmit,
            0x0C => PorStatus::ResponseInUssd,
            c => PorStatus::Other(c),
        }
    }
}

impl std::fmt::Display for PorStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            PorStatus::Ok => "PoR OK",
            PorStatus::ChecksumFailed => "RC/CC/DS failed",
            PorStatus::CounterLow => "CNTR low",
            PorStatus::CounterHigh => "CNTR high",
            PorStatus::CounterBlocked => "CNTR blocked",
            PorStatus::CipheringError => "ciphering error",
            PorStatus::SecurityError => "unidentified security error",
            PorStatus::InsufficientMemory => "insufficient memory",
            PorStatus::MoreTime => "more time needed",
            PorStatus::TarUnknown => "TAR unknown",
            PorStatus::InsufficientSecurityLevel => "insufficient security level",
            PorStatus::ResponseInSubmit => "response in SMS-SUBMIT",
            PorStatus::ResponseInUssd => "response in USSD",
            PorStatus::Other(_) => "reserved status",
        };
        write!(f, "{text} (0x{:02X})", self.code())
    }
}

/// A proof of receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePacket {
    pub tar: Tar,
    /// The counter of the command packet answered (zeros when the card could not read it).
    pub counter: u64,
    pub status: PorStatus,
    /// For remote file management (TS 102 226 §5.1.2): the number of commands executed, the
    /// last status word and the last response data.
    pub additional_data: Vec<u8>,
    /// Whether the PoR carried a cryptographic checksum that verified. A PoR without one
    /// proves nothing; [`decode_response_packet`] refuses it when it claims success.
    pub authenticated: bool,
}

/// How the card secures one PoR: both only when the command packet's checksum verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PorSecurity {
    pub checksum: bool,
    pub ciphering: bool,
}

impl PorSecurity {
    pub const PLAIN: PorSecurity = PorSecurity { checksum: false, ciphering: false };
}

/// Why bytes are not a packet, or a packet cannot be built or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet ends early: {0} missing")]
    Truncated(&'static str),
    #[error("{field} says {says} octets follow, {actual} do")]
    Length { field: &'static str, says: usize, actual: usize },
    #[error("header length {0} does not match the SPI")]
    HeaderLength(u8),
    #[error("malformed {0}")]
    Field(&'static str),
    #[error("counter {0} exceeds 40 bits")]
    CounterRange(u64),
    #[error("packet of {0} octets is too long")]
    TooLong(usize),
    #[error("ciphered part of {0} octets is not whole blocks")]
    CipherLength(usize),
    #[error("padding counter {0} exceeds the data")]
    Padding(u8),
    #[error("the cryptographic checksum does not verify")]
    Checksum,
    #[error("single DES is refused")]
    SingleDes,
    #[error("KIc/KID 0x{0:02x} does not name the key's algorithm")]
    AlgorithmMismatch(u8),
    #[error("{0:?} is not supported (cryptographic checksum or none)")]
    UnsupportedIntegrity(Integrity),
    #[error("a PoR without a checksum claims success where the command asked for one")]
    UnsignedSuccess,
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl PacketError {
    /// The PoR status a card answers this error with.
    pub fn por_status(&self) -> PorStatus {
        match self {
            PacketError::Checksum => PorStatus::ChecksumFailed,
            PacketError::CipherLength(_) | PacketError::Padding(_) => PorStatus::CipheringError,
            PacketError::SingleDes | PacketError::UnsupportedIntegrity(_) => PorStatus::InsufficientSecurityLevel,
            _ => PorStatus::SecurityError,
        }
    }
}

/// Octets of SPI, KIc, KID, TAR, CNTR and PCNTR: CHL without the checksum.
const CHL_BASE: usize = 13;
/// Offset of CNTR in a command packet: CPL(2) CHL SPI(2) KIc KID TAR(3).
const COMMAND_CNTR_AT: usize = 10;
/// Octets of TAR, CNTR, PCNTR and status: RHL without the checksum.
const RHL_BASE: usize = 10;
/// Offset of CNTR in a response packet: RPL(2) RHL TAR(3).
const RESPONSE_CNTR_AT: usize = 6;

fn checksum_len(integrity: Integrity) -> Result<usize, PacketError> {
    match integrity {
        Integrity::None => Ok(0),
        Integrity::CryptographicChecksum => Ok(CC_LEN),
        other => Err(PacketError::UnsupportedIntegrity(other)),
    }
}

/// Zero octets that make `len` whole blocks of `key`, when ciphering.
fn padding(len: usize, key: Option<&Key>) -> usize {
    key.map_or(0, |k| {
        let b = k.algorithm().block_len();
        (b - len % b) % b
    })
}

/// Builds a command packet (the server's side): `secured_data` is the script of APDUs for
/// the application `header.tar`.
pub fn encode_command_packet(
    keys: &OtaKeys,
    header: &CommandHeader,
    secured_data: &[u8],
) -> Result<Vec<u8>, PacketError> {
    let spi = header.spi;
    if header.counter > COUNTER_MAX {
        return Err(PacketError::CounterRange(header.counter));
    }
    let cc_len = checksum_len(spi.integrity)?;
    let cipher = spi.ciphering.then_some(&keys.kic);
    if let Some(k) = cipher {
        header.kic.names(k)?;
    }
    if cc_len > 0 {
        header.kid.names(&keys.kid)?;
    }
    let plain_len = 6 + cc_len + secured_data.len();
    let pad = padding(plain_len, cipher);
    let cpl = 8 + plain_len + pad;
    let cpl16 = u16::try_from(cpl).map_err(|_| PacketError::TooLong(cpl))?;
    let mut out = Vec::with_capacity(2 + cpl);
    out.extend(cpl16.to_be_bytes());
    out.push((CHL_BASE + cc_len) as u8);
    out.extend(spi.to_bytes());
    out.extend([header.kic.0, header.kid.0]);
    out.extend(header.tar.0);
    out.extend(&header.counter.to_be_bytes()[3..]);
    out.push(pad as u8);
    let cc_at = out.len();
    out.resize(cc_at + cc_len, 0);
    out.extend_from_slice(secured_data);
    out.resize(out.len() + pad, 0);
    if cc_len > 0 {
        let cc = keys.kid.checksum(&[&out[..cc_at], &out[cc_at + cc_len..]]);
        out[cc_at..cc_at + cc_len].copy_from_slice(&cc);
    }
    if let Some(k) = cipher {
        k.encrypt_cbc(&mut out[COMMAND_CNTR_AT..]);
    }
    Ok(out)
}

/// Reads the clear part of a command packet and checks its lengths.
pub fn parse_command_header(bytes: &[u8]) -> Result<PlainHeader, PacketError> {
    let head: &[u8; COMMAND_CNTR_AT] =
        bytes.first_chunk().ok_or(PacketError::Truncated("command header (CPL to TAR)"))?;
    let cpl = usize::from(u16::from_be_bytes([head[0], head[1]]));
    if cpl != bytes.len() - 2 {
        return Err(PacketError::Length { field: "CPL", says: cpl, actual: bytes.len() - 2 });
    }
    let spi = Spi::from_bytes([head[3], head[4]]);
    let header = PlainHeader {
        spi,
        kic: KeyIdentifier(head[5]),
        kid: KeyIdentifier(head[6]),
        tar: Tar([head[7], head[8], head[9]]),
        chl: head[2],
    };
    // CHL must fit the SPI's checksum; an RC or DS header still parses so that the card can
    // answer it with a status.
    let expected = match spi.integrity {
        Integrity::None => Some(CHL_BASE),
        Integrity::CryptographicChecksum => Some(CHL_BASE + CC_LEN),
        _ => None,
    };
    if expected.is_some_and(|e| e != usize::from(header.chl)) || usize::from(header.chl) < CHL_BASE {
        return Err(PacketError::HeaderLength(header.chl));
    }
    if usize::from(header.chl) + 1 > cpl {
        return Err(PacketError::Truncated("counter and checksum"));
    }
    Ok(header)
}

/// Opens a command packet (the card's side) with the keys its header names: deciphers it,
/// verifies the checksum in constant time, removes the padding.
pub fn open_command_packet(keys: &OtaKeys, bytes: &[u8]) -> Result<CommandPacket, PacketError> {
    let plain = parse_command_header(bytes)?;
    let spi = plain.spi;
    let cc_len = checksum_len(spi.integrity)?;
    let mut body = bytes[COMMAND_CNTR_AT..].to_vec();
    if spi.ciphering {
        plain.kic.names(&keys.kic)?;
        if !body.len().is_multiple_of(keys.kic.algorithm().block_len()) {
            return Err(PacketError::CipherLength(body.len()));
        }
        keys.kic.decrypt_cbc(&mut body);
    }
    if cc_len > 0 {
        plain.kid.names(&keys.kid)?;
        let cc = keys.kid.checksum(&[&bytes[..COMMAND_CNTR_AT], &body[..6], &body[6 + cc_len..]]);
        if !bool::from(cc.ct_eq(&body[6..6 + cc_len])) {
            return Err(PacketError::Checksum);
        }
    }
    let pad = body[5];
    let data_len = (body.len() - 6 - cc_len).checked_sub(usize::from(pad)).ok_or(PacketError::Padding(pad))?;
    let mut counter = [0u8; 8];
    counter[3..].copy_from_slice(&body[..5]);
    let header =
        CommandHeader { spi, kic: plain.kic, kid: plain.kid, tar: plain.tar, counter: u64::from_be_bytes(counter) };
    body.drain(..6 + cc_len);
    body.truncate(data_len);
    Ok(CommandPacket { header, secured_data: body })
}

/// Builds a PoR (the card's side) secured as `security` says with `keys`.
pub fn encode_response_packet(
    keys: Option<&OtaKeys>,
    security: PorSecurity,
    por: &ResponsePacket,
) -> Result<Vec<u8>, PacketError> {
    let cc_len = if security.checksum { CC_LEN } else { 0 };
    let key = |f: fn(&OtaKeys) -> &Key| keys.map(f).ok_or(PacketError::Field("PoR keys"));
    let cipher = if security.ciphering { Some(key(|k| &k.kic)?) } else { None };
    let plain_len = 7 + cc_len + por.additional_data.len();
    let pad = padding(plain_len, cipher);
    let rpl = 4 + plain_len + pad;
    let rpl16 = u16::try_from(rpl).map_err(|_| PacketError::TooLong(rpl))?;
    let mut out = Vec::with_capacity(2 + rpl);
    out.extend(rpl16.to_be_bytes());
    out.push((RHL_BASE + cc_len) as u8);
    out.extend(por.tar.0);
    out.extend(&por.counter.min(COUNTER_MAX).to_be_bytes()[3..]);
    out.push(pad as u8);
    out.push(por.status.code());
    let cc_at = out.len();
    out.resize(cc_at + cc_len, 0);
    out.extend_from_slice(&por.additional_data);
    out.resize(out.len() + pad, 0);
    if cc_len > 0 {
        let cc = key(|k| &k.kid)?.checksum(&[&RESPONSE_UDH, &out[..cc_at], &out[cc_at + cc_len..]]);
        out[cc_at..cc_at + cc_len].copy_from_slice(&cc);
    }
    if let Some(k) = cipher {
        k.encrypt_cbc(&mut out[RESPONSE_CNTR_AT..]);
    }
    Ok(out)
}

/// Reads a PoR (the server's side) answering a command packet sent with `spi`. A PoR with a
/// checksum must verify with `keys`. One without is the card's plain answer to a packet it
/// could not authenticate: it is returned unauthenticated when it reports an error, and
/// refused ([`PacketError::UnsignedSuccess`]) when it claims success although `spi` asked for
/// a checksum, since anyone can forge it.
pub fn decode_response_packet(keys: &OtaKeys, spi: &Spi, bytes: &[u8]) -> Result<ResponsePacket, PacketError> {
    let head: &[u8; RESPONSE_CNTR_AT] = bytes.first_chunk().ok_or(PacketError::Truncated("RPL, RHL and TAR"))?;
    let rpl = usize::from(u16::from_be_bytes([head[0], head[1]]));
    if rpl != bytes.len() - 2 {
        return Err(PacketError::Length { field: "RPL", says: rpl, actual: bytes.len() - 2 });
    }
    let cc_len = match usize::from(head[2]) {
        RHL_BASE => 0,
        l if l == RHL_BASE + CC_LEN => CC_LEN,
        _ => return Err(PacketError::HeaderLength(head[2])),
    };
    let tar = Tar([head[3], head[4], head[5]]);
    let mut body = bytes[RESPONSE_CNTR_AT..].to_vec();
    let signed = cc_len > 0;
    // A PoR without a checksum to a command that asked for one is the card's plain answer.
    let ciphered = spi.por_ciphering && (signed || spi.por_integrity != Integrity::CryptographicChecksum);
    if ciphered {
        if !body.len().is_multiple_of(keys.kic.algorithm().block_len()) {
            return Err(PacketError::CipherLength(body.len()));
        }
        keys.kic.decrypt_cbc(&mut body);
    }
    if body.len() < 7 + cc_len {
        return Err(PacketError::Truncated("CNTR, PCNTR, status and checksum"));
    }
    if signed {
        let cc = keys.kid.checksum(&[&RESPONSE_UDH, &bytes[..RESPONSE_CNTR_AT], &body[..7], &body[7 + cc_len..]]);
        if !bool::from(cc.ct_eq(&body[7..7 + cc_len])) {
            return Err(PacketError::Checksum);
        }
    }
    let status = PorStatus::from_code(body[6]);
    if !signed && spi.por_integrity == Integrity::CryptographicChecksum && status == PorStatus::Ok {
        return Err(PacketError::UnsignedSuccess);
    }
    let pad = body[5];
    let data_len = (body.len() - 7 - cc_len).checked_sub(usize::from(pad)).ok_or(PacketError::Padding(pad))?;
    let mut counter = [0u8; 8];
    counter[3..].copy_from_slice(&body[..5]);
    body.drain(..7 + cc_len);
    body.truncate(data_len);
    Ok(ResponsePacket {
        tar,
        counter: u64::from_be_bytes(counter),
        status,
        additional_data: body,
        authenticated: signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spi_octets_round_trip() {
        for a in 0..=0x1Fu8 {
            for b in 0..=0x3Fu8 {
                assert_eq!(Spi::from_bytes([a, b]).to_bytes(), [a, b]);
            }
        }
        assert_eq!(Spi::SECURE.to_bytes(), [0x16, 0x39]);
    }

    #[test]
    fn key_identifiers() {
        assert_eq!(KeyIdentifier::new(2, Algorithm::Aes).0, 0x22);
        assert_eq!(KeyIdentifier::new(3, Algorithm::TripleDes2Key).0, 0x35);
        assert_eq!(KeyIdentifier(0x31).coding(), Coding::SingleDes);
        assert_eq!(KeyIdentifier(0x3D).coding(), Coding::SingleDes, "DES-ECB");
        assert_eq!(KeyIdentifier(0x10).coding(), Coding::Implicit);
        assert_eq!(KeyIdentifier(0x13).coding(), Coding::Unsupported);
    }
}
