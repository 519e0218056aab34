//! The SIM side of F7 (remote SIM writing): how an operator writes a subscriber's card over
//! the air the way operators do, with secured packets of ETSI TS 102 225 carried by SMS-PP
//! data download (3GPP TS 31.115, "SCP80"), and the card that receives them.
//!
//! - [`packet`]: the command packet and the proof of receipt (PoR), with SPI, KIc, KID, TAR,
//!   counter, padding and the cryptographic checksum.
//! - [`crypto`]: the keys and algorithms: AES-CBC and AES-CMAC, triple DES for older cards.
//!   Single DES is refused everywhere.
//! - [`uicc`]: the virtual card: file system, APDU execution, remote file management behind
//!   its TARs, the replay counters, and the rule that a packet whose checksum failed gets a
//!   plain answer, never a signed or ciphered one.
//! - [`apdu`]: the APDUs an OTA server scripts (SELECT, READ/UPDATE BINARY and RECORD), the
//!   status words and the file identifiers.
//! - [`files`]: the contents of EF_IMSI, EF_MSISDN, EF_SPN and EF_SMSP.
//! - [`sms_pp`]: the SMS that carry packets and PoRs, built on the `sms` crate.
//!
//! Everything here is pure (no I/O, no clock, no randomness): the OTA server chooses counters
//! and references, the terminal persists the card. Parsers return typed errors and never
//! panic; property tests and a fuzz target hold them to that.

pub mod apdu;
pub mod crypto;
pub mod files;
pub mod packet;
pub mod sms_pp;
pub mod uicc;

pub use crypto::{Algorithm, Key, KeyError};
pub use packet::{
    CommandHeader, KeyIdentifier, OtaKeys, PacketError, PorStatus, ResponsePacket, Spi, Tar, decode_response_packet,
    encode_command_packet,
};
pub use uicc::{Card, Personalisation};
