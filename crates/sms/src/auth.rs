//! The SMS authentication element (F3): proof that an SMS-DELIVER (or SMS-STATUS-REPORT) comes
//! from the subscriber's own SMS center and not from a pseudo base station. A 2G handset does
//! not authenticate the network, so anyone with a fake base station can hand it an SMS-DELIVER
//! from "MyBank". The SMS center and the SIM share a key per subscriber; the center puts a
//! counter and a MAC into the user data header of every SMS-DELIVER and status report it sends
//! over the air; the handset checks both.
//!
//! **The element** (user data header, IEI [`IEI_SMS_AUTH`], 13 octets of data):
//!
//! | octets | field |
//! |---|---|
//! | 1 | key version (1–255; which of the subscriber's keys made the MAC) |
//! | 4 | counter, big-endian: per subscriber, only grows, never reused |
//! | 8 | MAC: AES-256-CMAC truncated to its first 8 octets |
//!
//! The IEI is 0xD4, from the range TS 23.040 §9.2.3.24 leaves for SC-specific use (0xC0–0xDF):
//! a terminal that does not know it skips it, as the standard asks.
//!
//! **What the MAC covers** ([`mac_input`]), each field length-prefixed so no two messages share
//! an input: the key version and counter; the originator (TON, NPI, value); the destination
//! (the subscriber's MSISDN, which the SMS-DELIVER does not carry, so a tag for one subscriber
//! is worthless for another); the SC time stamp; TP-PID and TP-DCS (a forger could otherwise
//! turn a text into a class-0 flash message or a SIM data download); every other element of the
//! user data header in order, the concatenation element included (a part cannot be moved into
//! another message or place); and the payload (septet values or octets). Each part of a
//! concatenated message carries its own element.
//!
//! **Status reports** carry the element too, in the user data TP-PI announces (TS 23.040
//! §9.2.2.3), so that a pseudo base station cannot tell a handset its SMS was delivered. Their
//! MAC input differs in the fixed block only ([`MtMessage::fixed`]): TP-MTI, TP-MR, TP-SRQ,
//! the recipient's TON and NPI, both time stamps, TP-ST and the optional TP-PID and TP-DCS in
//! place of a deliver's originator, time stamp, PID and DCS; the address is the recipient's.
//! The blocks differ in length (16 and 28 octets), and every field is length-prefixed, so no
//! status report's input is ever an SMS-DELIVER's.
//!
//! **Why AES-256-CMAC truncated to 64 bits.** The target is a verification within 2 µs on one
//! core. The input is at most ~200 octets: 13 AES blocks, which AES-NI runs in well under a
//! microsecond, with the key schedule done once per key ([`SmsAuthKey`] keeps it). HMAC-SHA256
//! would cost two extra compressions per message for its inner and outer pads on top of the
//! data's; both fit the budget, but CMAC is the SIM's native primitive (TS 102 225 uses it for
//! the OTA checksum), so a real UICC applet computes it with the card's AES engine. 64 bits is
//! the longest cryptographic checksum TS 102 225 allows for the same reason: every octet of
//! the header is taken from the text. A forger over the air gets one guess per SMS the handset
//! receives; 2⁻⁶⁴ per guess is out of reach.
//!
//! **Replay.** A captured SMS is valid bytes forever, so the counter is what stops a replay:
//! [`ReplayWindow`] (a sliding bitmap, as IPsec's anti-replay window in RFC 4303 §3.4.3)
//! accepts each counter once, tolerating [`WINDOW`] counters of reordering (a window of
//! deliveries in flight, retries, the parts of a long message arriving in any order).
//!
//! Pure: no I/O, no clock (times are parameters). Malformed elements are typed errors
//! ([`AuthError`]) and make a [`Verdict::Forged`], never a panic.

use aes::Aes256;
use cmac::{Cmac, Mac};

use crate::tpdu::{Payload, SmsDeliver, SmsStatusReport, UserData};
use crate::udh::{InformationElement, UserDataHeader};

/// The element's IEI: SC-specific use (TS 23.040 §9.2.3.24: 0xC0–0xDF).
pub const IEI_SMS_AUTH: u8 = 0xD4;
/// Octets of the truncated MAC.
pub const MAC_LEN: usize = 8;
/// Octets of the element's data.
pub const ELEMENT_LEN: usize = 1 + 4 + MAC_LEN;
/// Octets the element takes in a user data header: IEI, length, data.
pub const ELEMENT_OCTETS: usize = 2 + ELEMENT_LEN;
/// Octets of a key.
pub const KEY_LEN: usize = 32;
/// Counters of reordering the replay window tolerates.
pub const WINDOW: u32 = 1024;

/// The authentication element of one SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthElement {
    pub key_version: u8,
    pub counter: u32,
    pub mac: [u8; MAC_LEN],
}

/// Why an element cannot be read, or a message not tagged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication element of {0} octets (expected {ELEMENT_LEN})")]
    Length(usize),
    #[error("authentication element with key version 0")]
    KeyVersionZero,
    #[error("more than one authentication element")]
    Duplicate,
    #[error("a key of {0} octets (expected {KEY_LEN})")]
    KeyLength(usize),
    #[error("key version 0 is not a version")]
    NoVersion,
}

impl AuthElement {
    pub fn encode(&self) -> [u8; ELEMENT_LEN] {
        let mut out = [0u8; ELEMENT_LEN];
        out[0] = self.key_version;
        out[1..5].copy_from_slice(&self.counter.to_be_bytes());
        out[5..].copy_from_slice(&self.mac);
        out
    }

    pub fn decode(data: &[u8]) -> Result<AuthElement, AuthError> {
        let data: &[u8; ELEMENT_LEN] = data.try_into().map_err(|_| AuthError::Length(data.len()))?;
        if data[0] == 0 {
            return Err(AuthError::KeyVersionZero);
        }
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&data[5..]);
        Ok(AuthElement { key_version: data[0], counter: u32::from_be_bytes([data[1], data[2], data[3], data[4]]), mac })
    }
}

/// One version of a subscriber's key, its AES key schedule expanded once.
#[derive(Clone)]
pub struct SmsAuthKey {
    version: u8,
    cmac: Cmac<Aes256>,
}

impl std::fmt::Debug for SmsAuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsAuthKey").field("version", &self.version).finish_non_exhaustive()
    }
}

impl SmsAuthKey {
    pub fn new(version: u8, key: &[u8]) -> Result<SmsAuthKey, AuthError> {
        if version == 0 {
            return Err(AuthError::NoVersion);
        }
        if key.len() != KEY_LEN {
            return Err(AuthError::KeyLength(key.len()));
        }
        let cmac = <Cmac<Aes256> as cmac::digest::KeyInit>::new_from_slice(key)
            .map_err(|_| AuthError::KeyLength(key.len()))?;
        Ok(SmsAuthKey { version, cmac })
    }

    pub fn version(&self) -> u8 {
        self.version
    }

    /// The truncated MAC of `message` to `destination` under `counter`.
    fn mac(&self, counter: u32, destination: &str, message: &impl MtMessage) -> [u8; MAC_LEN] {
        let mut mac = self.cmac.clone();
        mac_input(self.version, counter, destination, message, |bytes| mac.update(bytes));
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Tags `message`, an SMS-DELIVER or SMS-STATUS-REPORT to the subscriber `destination`,
    /// with `counter`: any element with the authentication IEI already in its header (a
    /// sender's own, which no one may pass off as the center's) is removed, and the center's
    /// goes last. The caller checks that the TPDU still fits ([`ELEMENT_OCTETS`] more header).
    pub fn tag(&self, message: &mut impl MtMessage, destination: &str, counter: u32) {
        strip(message);
        let element = AuthElement { key_version: self.version, counter, mac: self.mac(counter, destination, message) };
        message
            .user_data_mut()
            .header
            .get_or_insert_with(UserDataHeader::default)
            .elements
            .push(InformationElement::Auth(element));
    }

    /// Whether `element` is this key's MAC of `message` to `destination`, in constant time.
    fn verifies(&self, element: &AuthElement, destination: &str, message: &impl MtMessage) -> bool {
        use subtle::ConstantTimeEq;
        self.mac(element.counter, destination, message).ct_eq(&element.mac).into()
    }
}

/// A mobile-terminated TPDU the SMS center tags: an SMS-DELIVER or an SMS-STATUS-REPORT. What
/// the MAC covers differs only in the fixed block ([`mac_input`]).
pub trait MtMessage {
    /// The fixed block of the MAC's input after key version and counter, into `out`; its
    /// length.
    fn fixed(&self, out: &mut [u8; FIXED_MAX]) -> usize;
    /// The address the MAC covers: the originator of an SMS-DELIVER, the recipient (TP-RA) of
    /// a status report.
    fn address(&self) -> &crate::address::Address;
    fn user_data(&self) -> Option<&UserData>;
    /// The user data, made (empty) if the TPDU has none, so that an element can go in.
    fn user_data_mut(&mut self) -> &mut UserData;
}

/// Longest fixed block after key version and counter (a status report's).
pub const FIXED_MAX: usize = 23;

fn timestamp_octets(t: &crate::tpdu::Timestamp) -> [u8; 7] {
    [t.year, t.month, t.day, t.hour, t.minute, t.second, t.tz_quarters as u8]
}

impl MtMessage for SmsDeliver {
    /// TON and NPI of the originator, SC time stamp, TP-PID, TP-DCS: 11 octets.
    fn fixed(&self, out: &mut [u8; FIXED_MAX]) -> usize {
        out[0] = self.originator.ton;
        out[1] = self.originator.npi;
        out[2..9].copy_from_slice(&timestamp_octets(&self.scts));
        out[9] = self.pid;
        out[10] = self.dcs.0;
        11
    }

    fn address(&self) -> &crate::address::Address {
        &self.originator
    }

    fn user_data(&self) -> Option<&UserData> {
        Some(&self.user_data)
    }

    fn user_data_mut(&mut self) -> &mut UserData {
        &mut self.user_data
    }
}

/// TP-MTI of a status report, first in its fixed block.
const MTI_STATUS_REPORT: u8 = 0x02;

impl MtMessage for SmsStatusReport {
    /// TP-MTI (2), TP-MR, TP-SRQ (0 or 1), TON and NPI of the recipient, SC time stamp,
    /// discharge time, TP-ST, then which of TP-PID and TP-DCS are present (TP-PI bits 0 and
    /// 1) and their values (0 when absent): 23 octets.
    fn fixed(&self, out: &mut [u8; FIXED_MAX]) -> usize {
        out[0] = MTI_STATUS_REPORT;
        out[1] = self.message_reference;
        out[2] = u8::from(self.qualifier_command);
        out[3] = self.recipient.ton;
        out[4] = self.recipient.npi;
        out[5..12].copy_from_slice(&timestamp_octets(&self.scts));
        out[12..19].copy_from_slice(&timestamp_octets(&self.discharge));
        out[19] = self.status;
        out[20] = u8::from(self.pid.is_some()) | (u8::from(self.dcs.is_some()) << 1);
        out[21] = self.pid.unwrap_or(0);
        out[22] = self.dcs.map_or(0, |d| d.0);
        23
    }

    fn address(&self) -> &crate::address::Address {
        &self.recipient
    }

    fn user_data(&self) -> Option<&UserData> {
        self.user_data.as_ref()
    }

    fn user_data_mut(&mut self) -> &mut UserData {
        self.user_data.get_or_insert_with(|| UserData { header: None, payload: Payload::Septets(Vec::new()) })
    }
}

/// Removes every authentication element (well-formed or not) from `message`'s header, and the
/// header if nothing else was in it.
fn strip(message: &mut impl MtMessage) {
    if message.user_data().is_none() {
        return;
    }
    let ud = message.user_data_mut();
    if let Some(h) = &mut ud.header {
        h.elements.retain(|e| !is_auth(e));
        if h.elements.is_empty() {
            ud.header = None;
        }
    }
}

fn is_auth(e: &InformationElement) -> bool {
    matches!(e, InformationElement::Auth(_) | InformationElement::Other { iei: IEI_SMS_AUTH, .. })
}

/// Feeds the MAC's input for `message` to `destination` to `out`, field by field (see the
/// module's documentation). Authentication elements in the header are left out.
pub fn mac_input(version: u8, counter: u32, destination: &str, message: &impl MtMessage, mut out: impl FnMut(&[u8])) {
    let mut field = |bytes: &[u8]| {
        out(&(bytes.len() as u16).to_be_bytes());
        out(bytes);
    };
    let mut fixed = [0u8; 5 + FIXED_MAX];
    fixed[0] = version;
    fixed[1..5].copy_from_slice(&counter.to_be_bytes());
    let mut rest = [0u8; FIXED_MAX];
    let len = message.fixed(&mut rest);
    fixed[5..5 + len].copy_from_slice(&rest[..len]);
    field(&fixed[..5 + len]);
    field(message.address().value.as_bytes());
    field(destination.trim_start_matches('+').as_bytes());
    let ud = message.user_data();
    for e in ud.and_then(|u| u.header.as_ref()).iter().flat_map(|h| &h.elements).filter(|e| !is_auth(e)) {
        let mut one = UserDataHeader { elements: vec![e.clone()] }.encode();
        one.remove(0);
        field(&one);
    }
    match ud.map(|u| &u.payload) {
        Some(Payload::Septets(s)) => {
            field(&[0]);
            field(s);
        }
        Some(Payload::Octets(o)) => {
            field(&[1]);
            field(o);
        }
        None => {
            field(&[0]);
            field(&[]);
        }
    }
}

/// The authentication element of `message`: `Ok(None)` if it has none; an error if one is
/// malformed or there are several.
pub fn element(message: &impl MtMessage) -> Result<Option<AuthElement>, AuthError> {
    let mut found = None;
    for e in message.user_data().and_then(|u| u.header.as_ref()).iter().flat_map(|h| &h.elements) {
        let this = match e {
            InformationElement::Auth(a) => *a,
            InformationElement::Other { iei: IEI_SMS_AUTH, data } => AuthElement::decode(data)?,
            _ => continue,
        };
        if found.replace(this).is_some() {
            return Err(AuthError::Duplicate);
        }
    }
    Ok(found)
}

/// Why an SMS is taken as sent by a pseudo base station.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forgery {
    #[error("no authentication element")]
    NoElement,
    #[error("malformed authentication element: {0}")]
    Malformed(AuthError),
    #[error("key version {0} is unknown")]
    UnknownKeyVersion(u8),
    #[error("key version {0} is retired")]
    RetiredKey(u8),
    #[error("the MAC does not verify")]
    BadMac,
}

/// What the handset makes of an SMS-DELIVER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// From the subscriber's own SMS center, for the first time.
    Authentic { key_version: u8, counter: u32 },
    /// Sent by a pseudo base station.
    Forged(Forgery),
    /// A genuine SMS seen before (or older than the window): a recording played back.
    Replayed { counter: u32 },
}

impl Verdict {
    /// One word: `authentic`, `forged` or `replayed`.
    pub fn code(&self) -> &'static str {
        match self {
            Verdict::Authentic { .. } => "authentic",
            Verdict::Forged(_) => "forged",
            Verdict::Replayed { .. } => "replayed",
        }
    }

    pub fn is_authentic(&self) -> bool {
        matches!(self, Verdict::Authentic { .. })
    }

    /// The worse of two verdicts on the parts of one message: forged before replayed before
    /// authentic.
    pub fn worst(self, other: Verdict) -> Verdict {
        let rank = |v: &Verdict| match v {
            Verdict::Forged(_) => 2,
            Verdict::Replayed { .. } => 1,
            Verdict::Authentic { .. } => 0,
        };
        if rank(&other) > rank(&self) { other } else { self }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Authentic { key_version, counter } => {
                write!(f, "authentic (key {key_version}, counter {counter})")
            }
            Verdict::Forged(why) => write!(f, "forged: sent by a pseudo base station ({why})"),
            Verdict::Replayed { counter } => write!(f, "replayed: counter {counter} was already accepted"),
        }
    }
}

/// Counters accepted: the highest, and a bitmap of the [`WINDOW`] below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest counter accepted (0: none; the center's counters start at 1).
    top: u32,
    /// Bit `i` (word `i / 64`, bit `i % 64`): counter `top - i` accepted.
    bits: [u64; (WINDOW / 64) as usize],
}

impl Default for ReplayWindow {
    fn default() -> ReplayWindow {
        let mut bits = [0u64; (WINDOW / 64) as usize];
        bits[0] = 1;
        ReplayWindow { top: 0, bits }
    }
}

impl ReplayWindow {
    pub fn top(&self) -> u32 {
        self.top
    }

    /// Whether `counter` would be accepted now.
    pub fn fresh(&self, counter: u32) -> bool {
        match self.top.checked_sub(counter) {
            None => true,
            Some(behind) if behind >= WINDOW => false,
            Some(behind) => self.bits[(behind / 64) as usize] & (1 << (behind % 64)) == 0,
        }
    }

    /// Accepts `counter` if it is fresh; false if it was seen or is older than the window.
    pub fn accept(&mut self, counter: u32) -> bool {
        if !self.fresh(counter) {
            return false;
        }
        match counter.checked_sub(self.top) {
            Some(ahead) if ahead > 0 => {
                self.shift(ahead);
                self.top = counter;
                self.bits[0] |= 1;
            }
            _ => {
                let behind = self.top - counter;
                self.bits[(behind / 64) as usize] |= 1 << (behind % 64);
            }
        }
        true
    }

    /// Moves the window up by `n` counters.
    fn shift(&mut self, n: u32) {
        if n >= WINDOW {
            self.bits = [0; (WINDOW / 64) as usize];
            return;
        }
        let (words, bits) = ((n / 64) as usize, n % 64);
        let len = self.bits.len();
        for i in (0..len).rev() {
            let from = i.checked_sub(words);
            let hi = from.map_or(0, |j| self.bits[j] << bits);
            let lo = match (from.and_then(|j| j.checked_sub(1)), bits) {
                (Some(j), b) if b > 0 => self.bits[j] >> (64 - b),
                _ => 0,
            };
            self.bits[i] = hi | lo;
        }
    }

    /// The window as text, `top:hex-bitmap`, for a handset's state file.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}:", self.top);
        for w in &self.bits {
            s.push_str(&format!("{w:016x}"));
        }
        s
    }

    /// Reads [`ReplayWindow::to_text`]; `None` if it is not one.
    pub fn from_text(s: &str) -> Option<ReplayWindow> {
        let (top, hex) = s.trim().split_once(':')?;
        let top = top.parse().ok()?;
        let mut bits = [0u64; (WINDOW / 64) as usize];
        if hex.len() != bits.len() * 16 || !hex.is_ascii() {
            return None;
        }
        for (i, w) in bits.iter_mut().enumerate() {
            *w = u64::from_str_radix(&hex[i * 16..i * 16 + 16], 16).ok()?;
        }
        Some(ReplayWindow { top, bits })
    }
}

/// A key the handset holds: which version, and until when it is accepted (Unix ms; `None`:
/// the current key).
#[derive(Debug, Clone)]
pub struct HeldKey {
    pub key: SmsAuthKey,
    pub accepted_until: Option<i64>,
}

/// The handset's side: the SIM's keys and the counters already accepted.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    pub keys: Vec<HeldKey>,
    pub window: ReplayWindow,
}

impl Verifier {
    /// Checks `message` (received by the subscriber `destination` at `now_ms`) without
    /// changing anything: the element and its counter if the MAC verifies under a key held.
    pub fn check(&self, message: &impl MtMessage, destination: &str, now_ms: i64) -> Result<AuthElement, Forgery> {
        let element = element(message).map_err(Forgery::Malformed)?.ok_or(Forgery::NoElement)?;
        let held = self
            .keys
            .iter()
            .find(|k| k.key.version == element.key_version)
            .ok_or(Forgery::UnknownKeyVersion(element.key_version))?;
        if !held.key.verifies(&element, destination, message) {
            return Err(Forgery::BadMac);
        }
        if held.accepted_until.is_some_and(|until| now_ms > until) {
            return Err(Forgery::RetiredKey(element.key_version));
        }
        Ok(element)
    }

    /// The verdict on `message`; an authentic one's counter is taken into the window (only
    /// an SMS whose MAC verifies moves it, so a forger cannot push genuine counters out).
    pub fn verify(&mut self, message: &impl MtMessage, destination: &str, now_ms: i64) -> Verdict {
        match self.check(message, destination, now_ms) {
            Err(why) => Verdict::Forged(why),
            Ok(e) if self.window.accept(e.counter) => {
                Verdict::Authentic { key_version: e.key_version, counter: e.counter }
            }
            Ok(e) => Verdict::Replayed { counter: e.counter },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::concat::{Reference, segment};
    use crate::tpdu::{DataCoding, Timestamp, Tpdu};
    use proptest::prelude::*;

    const SUBSCRIBER: &str = "4790000001";
    const NOW: i64 = 1_796_000_000_000;

    fn key(version: u8, byte: u8) -> SmsAuthKey {
        SmsAuthKey::new(version, &[byte; KEY_LEN]).unwrap()
    }

    fn deliver(from: Address, user_data: UserData, dcs: DataCoding) -> SmsDeliver {
        SmsDeliver {
            more_messages: false,
            status_report_indication: false,
            reply_path: false,
            originator: from,
            pid: 0,
            dcs,
            scts: Timestamp { year: 26, month: 12, day: 7, hour: 13, minute: 30, second: 5, tz_quarters: 4 },
            user_data,
        }
    }

    fn bank(text: &str) -> SmsDeliver {
        deliver(Address::alphanumeric("MyBank"), UserData::gsm7(text).unwrap(), DataCoding::GSM7)
    }

    /// Tagged, encoded, decoded: what the handset holds.
    fn over_the_air(k: &SmsAuthKey, mut d: SmsDeliver, counter: u32) -> SmsDeliver {
        k.tag(&mut d, SUBSCRIBER, counter);
        let bytes = Tpdu::Deliver(d).encode().unwrap();
        match Tpdu::decode_mt(&bytes).unwrap() {
            Tpdu::Deliver(d) => d,
            other => panic!("{other:?}"),
        }
    }

    fn verifier(keys: &[SmsAuthKey]) -> Verifier {
        Verifier {
            keys: keys.iter().map(|k| HeldKey { key: k.clone(), accepted_until: None }).collect(),
            window: ReplayWindow::default(),
        }
    }

    #[test]
    fn the_element_round_trips_through_a_tpdu() {
        let k = key(3, 7);
        let d = over_the_air(&k, bank("Your code is 123456"), 41);
        let e = element(&d).unwrap().unwrap();
        assert_eq!((e.key_version, e.counter), (3, 41));
        assert_eq!(AuthElement::decode(&e.encode()), Ok(e));
        assert_eq!(d.user_data.text(d.dcs), "Your code is 123456");
        let header = d.user_data.header.unwrap().encode();
        assert_eq!(header.len(), 1 + ELEMENT_OCTETS);
        assert_eq!(&header[..3], &[ELEMENT_OCTETS as u8, IEI_SMS_AUTH, ELEMENT_LEN as u8]);
    }

    #[test]
    fn every_kind_of_forgery_is_told_apart() {
        let (k1, k2) = (key(1, 1), key(2, 2));
        let mut v = verifier(std::slice::from_ref(&k1));
        let genuine = over_the_air(&k1, bank("Transfer of 500 NOK confirmed"), 1);
        assert_eq!(v.verify(&genuine, SUBSCRIBER, NOW), Verdict::Authentic { key_version: 1, counter: 1 });
        assert_eq!(v.verify(&genuine, SUBSCRIBER, NOW), Verdict::Replayed { counter: 1 });

        let spoofed = bank("Your account is locked: https://mybank-secure.example/login");
        assert_eq!(v.verify(&spoofed, SUBSCRIBER, NOW), Verdict::Forged(Forgery::NoElement));

        // A made-up element: right shape, MAC guessed.
        let mut made_up = spoofed.clone();
        made_up.user_data.header = Some(UserDataHeader {
            elements: vec![InformationElement::Auth(AuthElement { key_version: 1, counter: 9, mac: [0xAB; MAC_LEN] })],
        });
        assert_eq!(v.verify(&made_up, SUBSCRIBER, NOW), Verdict::Forged(Forgery::BadMac));
        // Tagged under a key the SIM does not hold.
        let other_key = over_the_air(&k2, spoofed.clone(), 10);
        assert_eq!(v.verify(&other_key, SUBSCRIBER, NOW), Verdict::Forged(Forgery::UnknownKeyVersion(2)));
        let wrong_key_same_version = over_the_air(&key(1, 9), spoofed.clone(), 11);
        assert_eq!(v.verify(&wrong_key_same_version, SUBSCRIBER, NOW), Verdict::Forged(Forgery::BadMac));
        // A genuine tag on another text, another subscriber, or another sender.
        let mut edited = genuine.clone();
        edited.user_data.payload = UserData::gsm7("Transfer of 900 NOK confirmed").unwrap().payload;
        assert_eq!(v.verify(&edited, SUBSCRIBER, NOW), Verdict::Forged(Forgery::BadMac));
        let for_someone_else = over_the_air(&k1, bank("hi"), 12);
        assert_eq!(v.verify(&for_someone_else, "4790000002", NOW), Verdict::Forged(Forgery::BadMac));
        let mut resent = genuine.clone();
        resent.originator = Address::alphanumeric("MyBonk");
        assert_eq!(v.verify(&resent, SUBSCRIBER, NOW), Verdict::Forged(Forgery::BadMac));
        let mut flash = over_the_air(&k1, bank("hi"), 13);
        flash.dcs = DataCoding(0x10);
        assert_eq!(v.verify(&flash, SUBSCRIBER, NOW), Verdict::Forged(Forgery::BadMac));
        // Malformed: short, version 0, two elements.
        let mut short = spoofed.clone();
        short.user_data.header = Some(UserDataHeader {
            elements: vec![InformationElement::Other { iei: IEI_SMS_AUTH, data: vec![1, 0, 0] }],
        });
        assert_eq!(v.verify(&short, SUBSCRIBER, NOW), Verdict::Forged(Forgery::Malformed(AuthError::Length(3))));
        let mut twice = over_the_air(&k1, bank("hi"), 14);
        let again = twice.user_data.header.as_ref().unwrap().elements[0].clone();
        twice.user_data.header.as_mut().unwrap().elements.push(again);
        assert_eq!(v.verify(&twice, SUBSCRIBER, NOW), Verdict::Forged(Forgery::Malformed(AuthError::Duplicate)));
        assert_eq!(AuthElement::decode(&[0; ELEMENT_LEN]), Err(AuthError::KeyVersionZero), "version 0 is no key");
        // Nothing forged moved the window: counter 9, 10 and 11 are still fresh.
        assert!(v.window.fresh(9) && v.window.fresh(10) && v.window.fresh(11));
    }

    fn report(status: u8) -> SmsStatusReport {
        SmsStatusReport {
            more_messages: false,
            qualifier_command: false,
            message_reference: 42,
            recipient: Address::international("4791000005"),
            scts: Timestamp { year: 26, month: 12, day: 7, hour: 13, minute: 30, second: 5, tz_quarters: 4 },
            discharge: Timestamp { year: 26, month: 12, day: 7, hour: 13, minute: 30, second: 9, tz_quarters: 4 },
            status,
            pid: None,
            dcs: None,
            user_data: None,
        }
    }

    fn report_over_the_air(k: &SmsAuthKey, mut r: SmsStatusReport, counter: u32) -> SmsStatusReport {
        k.tag(&mut r, SUBSCRIBER, counter);
        match Tpdu::decode_mt(&Tpdu::StatusReport(r).encode().unwrap()).unwrap() {
            Tpdu::StatusReport(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn status_reports_are_tagged_and_told_apart() {
        let k = key(1, 1);
        let mut v = verifier(std::slice::from_ref(&k));
        let genuine = report_over_the_air(&k, report(0x00), 7);
        assert_eq!(element(&genuine).unwrap().map(|e| e.counter), Some(7));
        assert_eq!(v.verify(&genuine, SUBSCRIBER, NOW), Verdict::Authentic { key_version: 1, counter: 7 });
        assert_eq!(v.verify(&genuine, SUBSCRIBER, NOW), Verdict::Replayed { counter: 7 });
        // A pseudo base station's "delivered": no element, or a genuine element on another outcome.
        assert_eq!(v.verify(&report(0x00), SUBSCRIBER, NOW), Verdict::Forged(Forgery::NoElement));
        let mut failed = report_over_the_air(&k, report(0x46), 8);
        failed.status = 0x00;
        assert_eq!(v.verify(&failed, SUBSCRIBER, NOW), Verdict::Forged(Forgery::BadMac));
        let mut other_mr = report_over_the_air(&k, report(0x00), 9);
        other_mr.message_reference = 43;
        assert_eq!(v.verify(&other_mr, SUBSCRIBER, NOW), Verdict::Forged(Forgery::BadMac));
        // With TP-PID and TP-DCS present, they are covered too.
        let with_pi =
            report_over_the_air(&k, SmsStatusReport { pid: Some(0), dcs: Some(DataCoding::GSM7), ..report(0) }, 10);
        assert_eq!((with_pi.pid, with_pi.dcs), (Some(0), Some(DataCoding::GSM7)));
        let mut dropped = with_pi.clone();
        dropped.pid = None;
        assert!(v.check(&with_pi, SUBSCRIBER, NOW).is_ok());
        assert_eq!(v.check(&dropped, SUBSCRIBER, NOW), Err(Forgery::BadMac));
    }

    #[test]
    fn a_deliver_and_a_status_report_never_share_a_mac_input() {
        let (mut deliver, mut report_input) = (Vec::new(), Vec::new());
        mac_input(1, 1, SUBSCRIBER, &bank("hi"), |b| deliver.extend_from_slice(b));
        mac_input(1, 1, SUBSCRIBER, &report(0), |b| report_input.extend_from_slice(b));
        // The fixed blocks' length prefixes differ: 16 octets and 28.
        assert_eq!((&deliver[..2], &report_input[..2]), (&[0u8, 16][..], &[0u8, 28][..]));
    }

    #[test]
    fn a_sender_cannot_smuggle_in_its_own_element() {
        let k = key(1, 1);
        let mut d = bank("hi");
        d.user_data.header = Some(UserDataHeader {
            elements: vec![InformationElement::Other { iei: IEI_SMS_AUTH, data: vec![0xEE; 4] }],
        });
        let tagged = over_the_air(&k, d, 5);
        assert_eq!(tagged.user_data.header.as_ref().unwrap().elements.len(), 1);
        assert!(verifier(&[k]).verify(&tagged, SUBSCRIBER, NOW).is_authentic());
    }

    #[test]
    fn each_part_of_a_long_message_is_tagged_and_bound_to_its_place() {
        let k = key(1, 1);
        let s = segment(&"Kontoutskrift ".repeat(20), Reference::Sixteen(0x1234)).unwrap();
        let parts: Vec<SmsDeliver> = s
            .parts
            .into_iter()
            .enumerate()
            .map(|(i, ud)| {
                let mut ud = ud;
                // Room for the element: the codec refuses what does not fit.
                if let Payload::Septets(sp) = &mut ud.payload {
                    sp.truncate(130);
                }
                over_the_air(&k, deliver(Address::alphanumeric("MyBank"), ud, s.dcs), 100 + i as u32)
            })
            .collect();
        let mut v = verifier(&[k]);
        // Out of order.
        for p in parts.iter().rev() {
            assert!(v.verify(p, SUBSCRIBER, NOW).is_authentic());
        }
        // A part moved to another place in the message fails.
        let mut moved = parts[0].clone();
        for e in &mut moved.user_data.header.as_mut().unwrap().elements {
            if let InformationElement::Concat(c) = e {
                c.seq = 2;
            }
        }
        assert_eq!(v.verify(&moved, SUBSCRIBER, NOW), Verdict::Forged(Forgery::BadMac));
    }

    #[test]
    fn an_old_key_is_accepted_until_its_grace_ends() {
        let (k1, k2) = (key(1, 1), key(2, 2));
        let mut v = Verifier {
            keys: vec![
                HeldKey { key: k1.clone(), accepted_until: Some(NOW + 1000) },
                HeldKey { key: k2.clone(), accepted_until: None },
            ],
            window: ReplayWindow::default(),
        };
        assert!(v.verify(&over_the_air(&k1, bank("a"), 1), SUBSCRIBER, NOW).is_authentic());
        assert!(v.verify(&over_the_air(&k2, bank("b"), 2), SUBSCRIBER, NOW).is_authentic());
        assert_eq!(
            v.verify(&over_the_air(&k1, bank("c"), 3), SUBSCRIBER, NOW + 1001),
            Verdict::Forged(Forgery::RetiredKey(1))
        );
    }

    #[test]
    fn the_window_tolerates_reordering_and_refuses_repeats() {
        let mut w = ReplayWindow::default();
        assert!(!w.accept(0), "counters start at 1");
        for c in [5, 3, 4, 1, 2, 70, 64, 200] {
            assert!(w.accept(c), "{c}");
        }
        for c in [5, 3, 1, 70, 200] {
            assert!(!w.accept(c), "{c} again");
        }
        assert!(w.accept(6) && w.accept(199));
        assert!(w.accept(200 + WINDOW - 1));
        assert!(!w.accept(199), "seen");
        assert!(w.accept(201));
        assert!(w.accept(5000));
        assert!(!w.accept(5000 - WINDOW), "older than the window");
        assert!(w.accept(5000 - WINDOW + 1));
        assert_eq!(ReplayWindow::from_text(&w.to_text()), Some(w.clone()));
        assert_eq!(ReplayWindow::from_text("12:zz"), None);
    }

    proptest! {
        /// The window agrees with a set of every counter accepted, as long as it is never asked
        /// about counters older than it holds.
        #[test]
        fn the_window_is_a_set(counters in proptest::collection::vec(1u32..3000, 0..400)) {
            let mut w = ReplayWindow::default();
            let mut seen = std::collections::BTreeSet::new();
            for c in counters {
                let top = seen.iter().next_back().copied().unwrap_or(0);
                let expected = !seen.contains(&c) && top.saturating_sub(c) < WINDOW;
                prop_assert_eq!(w.accept(c), expected, "counter {}", c);
                if expected {
                    seen.insert(c);
                }
            }
        }

        /// Whatever a header holds, verifying never panics.
        #[test]
        fn verifying_any_header_never_panics(
            elements in proptest::collection::vec((0xC0u8..0xE0, proptest::collection::vec(any::<u8>(), 0..20)), 0..4),
            counter in any::<u32>(),
        ) {
            let k = key(1, 1);
            let mut d = bank("hi");
            d.user_data.header = Some(UserDataHeader {
                elements: elements.into_iter().map(|(iei, data)| InformationElement::Other { iei, data }).collect(),
            });
            let mut v = verifier(std::slice::from_ref(&k));
            let _ = v.verify(&d, SUBSCRIBER, NOW);
            if let Ok(bytes) = Tpdu::Deliver(d.clone()).encode()
                && let Ok(Tpdu::Deliver(back)) = Tpdu::decode_mt(&bytes)
            {
                let _ = v.verify(&back, SUBSCRIBER, NOW);
            }
            k.tag(&mut d, SUBSCRIBER, counter);
            prop_assert!(element(&d).unwrap().is_some());
        }

        /// Any bytes as an element's data: a typed result, never a panic.
        #[test]
        fn decoding_any_element_never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(e) = AuthElement::decode(&data) {
                prop_assert_eq!(e.encode().to_vec(), data);
            }
        }
    }
}
