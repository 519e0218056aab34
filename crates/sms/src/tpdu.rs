//! The TPDUs (TS 23.040 §9.2.2): SMS-DELIVER and SMS-STATUS-REPORT from the SMS center to the
//! terminal, SMS-SUBMIT from the terminal. The message type indicator alone does not say which
//! TPDU it is (0 is SMS-DELIVER one way and SMS-DELIVER-REPORT the other), so decoding is per
//! direction: [`Tpdu::decode_mt`] and [`Tpdu::decode_mo`].

use crate::address::Address;
use crate::udh::UserDataHeader;
use crate::{DecodeError, EncodeError, Reader, gsm7};

/// TP-DCS, with the alphabet and message class read out (TS 23.038 §4). The raw octet is kept,
/// so that coding groups this codec does not interpret still round-trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataCoding(pub u8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    Gsm7,
    EightBit,
    Ucs2,
}

impl DataCoding {
    pub const GSM7: DataCoding = DataCoding(0x00);
    pub const EIGHT_BIT: DataCoding = DataCoding(0x04);
    pub const UCS2: DataCoding = DataCoding(0x08);
    /// 8-bit data, class 2 (SIM-specific): SIM data download with TP-PID 0x7F.
    pub const SIM_DATA_DOWNLOAD: DataCoding = DataCoding(0xF6);

    pub fn alphabet(self) -> Alphabet {
        let d = self.0;
        match d >> 4 {
            // General data coding (compressed or not; we do not decompress) and
            // automatic-deletion groups: bits 3..2.
            0x0..=0x7 => match (d >> 2) & 0x03 {
                1 => Alphabet::EightBit,
                2 => Alphabet::Ucs2,
                _ => Alphabet::Gsm7,
            },
            // Message waiting indication, UCS-2 group.
            0xE => Alphabet::Ucs2,
            // Data coding / message class group: bit 2.
            0xF if d & 0x04 != 0 => Alphabet::EightBit,
            _ => Alphabet::Gsm7,
        }
    }

    /// Message class 0–3, where the coding gives one.
    pub fn class(self) -> Option<u8> {
        let d = self.0;
        match d >> 4 {
            0x0..=0x7 if d & 0x10 != 0 => Some(d & 0x03),
            0xF => Some(d & 0x03),
            _ => None,
        }
    }
}

/// TP-SCTS / TP-DT: local time and the offset from UTC in quarters of an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Two digits (0–99).
    pub year: u8,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// −79‥79 quarter hours.
    pub tz_quarters: i8,
}

fn bcd_swapped(v: u8) -> u8 {
    ((v % 10) << 4) | ((v / 10) % 10)
}

fn from_bcd_swapped(b: u8, what: &'static str) -> Result<u8, DecodeError> {
    let (lo, hi) = (b & 0x0F, b >> 4);
    if lo > 9 || hi > 9 {
        return Err(DecodeError::Timestamp(what));
    }
    Ok(lo * 10 + hi)
}

impl Timestamp {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend([self.year, self.month, self.day, self.hour, self.minute, self.second].map(bcd_swapped));
        let q = self.tz_quarters.unsigned_abs();
        out.push(bcd_swapped(q) | if self.tz_quarters < 0 { 0x08 } else { 0 });
    }

    fn decode(r: &mut Reader<'_>) -> Result<Timestamp, DecodeError> {
        let b = r.take(7, "time stamp")?;
        let field = |i: usize, what, max: u8| {
            let v = from_bcd_swapped(b[i], what)?;
            if v > max { Err(DecodeError::Timestamp(what)) } else { Ok(v) }
        };
        let tz = from_bcd_swapped(b[6] & !0x08, "time zone")?;
        if tz > 79 {
            return Err(DecodeError::Timestamp("time zone"));
        }
        Ok(Timestamp {
            year: field(0, "year", 99)?,
            month: field(1, "month", 12)?,
            day: field(2, "day", 31)?,
            hour: field(3, "hour", 23)?,
            minute: field(4, "minute", 59)?,
            second: field(5, "second", 59)?,
            tz_quarters: if b[6] & 0x08 != 0 { -(tz as i8) } else { tz as i8 },
        })
    }
}

/// TP-VP of an SMS-SUBMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidityPeriod {
    /// TP-VPF 10: one octet (0–143: 5-minute steps up to 12 h; 144–167: 30 minutes; 168–196:
    /// days; 197–255: weeks).
    Relative(u8),
    /// TP-VPF 11.
    Absolute(Timestamp),
    /// TP-VPF 01, kept as its seven octets.
    Enhanced([u8; 7]),
}

impl ValidityPeriod {
    fn vpf(vp: Option<&ValidityPeriod>) -> u8 {
        match vp {
            None => 0,
            Some(ValidityPeriod::Enhanced(_)) => 1,
            Some(ValidityPeriod::Relative(_)) => 2,
            Some(ValidityPeriod::Absolute(_)) => 3,
        }
    }

    /// The relative period in seconds.
    pub fn relative_seconds(v: u8) -> u64 {
        let v = v as u64;
        match v {
            0..=143 => (v + 1) * 5 * 60,
            144..=167 => 12 * 3600 + (v - 143) * 30 * 60,
            168..=196 => (v - 166) * 86_400,
            _ => (v - 192) * 7 * 86_400,
        }
    }
}

/// TP-UD: an optional header, then the payload: septets for the 7-bit alphabet, octets for
/// 8-bit data and UCS-2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData {
    pub header: Option<UserDataHeader>,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Unpacked septet values (0–127).
    Septets(Vec<u8>),
    Octets(Vec<u8>),
}

impl UserData {
    /// Text in the 7-bit alphabet (with `DataCoding::GSM7`).
    pub fn gsm7(text: &str) -> Result<UserData, EncodeError> {
        Ok(UserData { header: None, payload: Payload::Septets(gsm7::encode(text).map_err(EncodeError::Unencodable)?) })
    }

    /// Text in UCS-2 (UTF-16 big-endian, with `DataCoding::UCS2`).
    pub fn ucs2(text: &str) -> UserData {
        UserData { header: None, payload: Payload::Octets(text.encode_utf16().flat_map(u16::to_be_bytes).collect()) }
    }

    pub fn with_header(mut self, header: UserDataHeader) -> UserData {
        self.header = Some(header);
        self
    }

    /// The payload as text under `dcs` (8-bit data reads as Latin-1, for display).
    pub fn text(&self, dcs: DataCoding) -> String {
        match (&self.payload, dcs.alphabet()) {
            (Payload::Septets(s), _) => gsm7::decode(s),
            (Payload::Octets(o), Alphabet::Ucs2) => {
                let units: Vec<u16> =
                    o.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect();
                String::from_utf16_lossy(&units)
            }
            (Payload::Octets(o), _) => o.iter().map(|&b| b as char).collect(),
        }
    }

    /// TP-UDL and TP-UD.
    fn encode(&self, dcs: DataCoding, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let header = self.header.as_ref().map(UserDataHeader::encode).unwrap_or_default();
        if header.len() > 140 {
            return Err(EncodeError::HeaderTooLong(header.len()));
        }
        match (&self.payload, dcs.alphabet()) {
            (Payload::Septets(septets), Alphabet::Gsm7) => {
                let header_bits = header.len() * 8;
                let fill = (7 - header_bits % 7) % 7;
                let udl = (header_bits + fill) / 7 + septets.len();
                let mut ud = header;
                let packed = gsm7::pack(septets, fill);
                // The header ends on an octet boundary; the fill bits open the first octet
                // after it, so the packed text (fill first) follows directly.
                ud.extend_from_slice(&packed);
                if ud.len() > 140 || udl > 160 {
                    return Err(EncodeError::TooLong(ud.len()));
                }
                out.push(udl as u8);
                out.extend_from_slice(&ud);
            }
            (Payload::Octets(octets), Alphabet::EightBit | Alphabet::Ucs2) => {
                let len = header.len() + octets.len();
                if len > 140 {
                    return Err(EncodeError::TooLong(len));
                }
                out.push(len as u8);
                out.extend_from_slice(&header);
                out.extend_from_slice(octets);
            }
            // A payload that does not match the coding: refuse rather than send garbage.
            _ => return Err(EncodeError::CodingMismatch(dcs.0)),
        }
        Ok(())
    }

    fn decode(r: &mut Reader<'_>, dcs: DataCoding, udhi: bool) -> Result<UserData, DecodeError> {
        let udl = r.u8("user data length")? as usize;
        match dcs.alphabet() {
            Alphabet::Gsm7 => {
                let octets = (udl * 7).div_ceil(8);
                if octets > 140 {
                    return Err(DecodeError::UserDataLength(octets));
                }
                let ud = r.take(octets, "user data")?;
                let (header, header_len) = if udhi {
                    let (h, n) = UserDataHeader::decode(ud)?;
                    (Some(h), n)
                } else {
                    (None, 0)
                };
                let header_bits = header_len * 8;
                let fill = (7 - header_bits % 7) % 7;
                let header_septets = (header_bits + fill) / 7;
                let count = udl.checked_sub(header_septets).ok_or(DecodeError::UserDataHeader("longer than UDL"))?;
                let septets = gsm7::unpack(&ud[header_len..], count, fill).ok_or(DecodeError::Truncated("septets"))?;
                Ok(UserData { header, payload: Payload::Septets(septets) })
            }
            Alphabet::EightBit | Alphabet::Ucs2 => {
                if udl > 140 {
                    return Err(DecodeError::UserDataLength(udl));
                }
                let ud = r.take(udl, "user data")?;
                let (header, header_len) = if udhi {
                    let (h, n) = UserDataHeader::decode(ud)?;
                    (Some(h), n)
                } else {
                    (None, 0)
                };
                Ok(UserData { header, payload: Payload::Octets(ud[header_len..].to_vec()) })
            }
        }
    }
}

/// SMS-DELIVER: the SMS center hands a message to the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsDeliver {
    /// TP-MMS inverted: the center has more messages waiting.
    pub more_messages: bool,
    pub status_report_indication: bool,
    pub reply_path: bool,
    pub originator: Address,
    pub pid: u8,
    pub dcs: DataCoding,
    pub scts: Timestamp,
    pub user_data: UserData,
}

/// SMS-SUBMIT: the terminal hands a message to its SMS center.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsSubmit {
    pub reject_duplicates: bool,
    pub status_report_request: bool,
    pub reply_path: bool,
    /// TP-MR: the terminal's reference, echoed in the status report.
    pub message_reference: u8,
    pub destination: Address,
    pub pid: u8,
    pub dcs: DataCoding,
    pub validity: Option<ValidityPeriod>,
    pub user_data: UserData,
}

/// SMS-STATUS-REPORT: what became of a submitted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsStatusReport {
    pub more_messages: bool,
    /// TP-SRQ: this reports on an SMS-COMMAND rather than an SMS-SUBMIT.
    pub qualifier_command: bool,
    pub message_reference: u8,
    pub recipient: Address,
    pub scts: Timestamp,
    pub discharge: Timestamp,
    /// TP-ST: 0x00 delivered; 0x2x temporary error, still trying; 0x4x/0x6x permanent failure
    /// (0x46: validity period expired).
    pub status: u8,
    /// The optional fields TP-PI announces (TS 23.040 §9.2.2.3): TP-PID, TP-DCS (absent: the
    /// GSM 7-bit alphabet) and TP-UD, whose header carries the SMS authentication element.
    pub pid: Option<u8>,
    pub dcs: Option<DataCoding>,
    pub user_data: Option<UserData>,
}

/// TP-PI bits (TS 23.040 §9.2.3.27): TP-PID, TP-DCS and TP-UDL present; more TP-PI octets.
const PI_PID: u8 = 0x01;
const PI_DCS: u8 = 0x02;
const PI_UDL: u8 = 0x04;
const PI_EXTENSION: u8 = 0x80;

impl SmsStatusReport {
    /// The data coding of its user data: TP-DCS, or the GSM 7-bit alphabet without one.
    pub fn data_coding(&self) -> DataCoding {
        self.dcs.unwrap_or(DataCoding::GSM7)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tpdu {
    Deliver(SmsDeliver),
    Submit(SmsSubmit),
    StatusReport(SmsStatusReport),
}

const MTI_DELIVER: u8 = 0;
const MTI_SUBMIT: u8 = 1;
const MTI_STATUS_REPORT: u8 = 2;

impl Tpdu {
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(176);
        match self {
            Tpdu::Deliver(d) => {
                let udhi = d.user_data.header.is_some();
                out.push(
                    MTI_DELIVER
                        | (!d.more_messages as u8) << 2
                        | (d.status_report_indication as u8) << 5
                        | (udhi as u8) << 6
                        | (d.reply_path as u8) << 7,
                );
                d.originator.encode(&mut out)?;
                out.extend([d.pid, d.dcs.0]);
                d.scts.encode(&mut out);
                d.user_data.encode(d.dcs, &mut out)?;
            }
            Tpdu::Submit(s) => {
                let udhi = s.user_data.header.is_some();
                out.push(
                    MTI_SUBMIT
                        | (s.reject_duplicates as u8) << 2
                        | ValidityPeriod::vpf(s.validity.as_ref()) << 3
                        | (s.status_report_request as u8) << 5
                        | (udhi as u8) << 6
                        | (s.reply_path as u8) << 7,
                );
                out.push(s.message_reference);
                s.destination.encode(&mut out)?;
                out.extend([s.pid, s.dcs.0]);
                match &s.validity {
                    None => {}
                    Some(ValidityPeriod::Relative(v)) => out.push(*v),
                    Some(ValidityPeriod::Absolute(t)) => t.encode(&mut out),
                    Some(ValidityPeriod::Enhanced(e)) => out.extend_from_slice(e),
                }
                s.user_data.encode(s.dcs, &mut out)?;
            }
            Tpdu::StatusReport(s) => {
                let udhi = s.user_data.as_ref().is_some_and(|u| u.header.is_some());
                out.push(
                    MTI_STATUS_REPORT
                        | (!s.more_messages as u8) << 2
                        | (s.qualifier_command as u8) << 5
                        | (udhi as u8) << 6,
                );
                out.push(s.message_reference);
                s.recipient.encode(&mut out)?;
                s.scts.encode(&mut out);
                s.discharge.encode(&mut out);
                out.push(s.status);
                let present = [(s.pid.is_some(), PI_PID), (s.dcs.is_some(), PI_DCS), (s.user_data.is_some(), PI_UDL)];
                let pi = present.iter().filter(|(is, _)| *is).fold(0, |pi, (_, bit)| pi | bit);
                if pi != 0 {
                    out.push(pi);
                    out.extend(s.pid);
                    out.extend(s.dcs.map(|d| d.0));
                    if let Some(ud) = &s.user_data {
                        ud.encode(s.data_coding(), &mut out)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// A TPDU the SMS center sent to the terminal (mobile terminated).
    pub fn decode_mt(bytes: &[u8]) -> Result<Tpdu, DecodeError> {
        let mut r = Reader::new(bytes);
        let first = r.u8("first octet")?;
        let tpdu = match first & 0x03 {
            MTI_DELIVER => {
                let originator = Address::decode(&mut r)?;
                let pid = r.u8("protocol identifier")?;
                let dcs = DataCoding(r.u8("data coding scheme")?);
                let scts = Timestamp::decode(&mut r)?;
                let user_data = UserData::decode(&mut r, dcs, first & 0x40 != 0)?;
                Tpdu::Deliver(SmsDeliver {
                    more_messages: first & 0x04 == 0,
                    status_report_indication: first & 0x20 != 0,
                    reply_path: first & 0x80 != 0,
                    originator,
                    pid,
                    dcs,
                    scts,
                    user_data,
                })
            }
            MTI_STATUS_REPORT => {
                let message_reference = r.u8("message reference")?;
                let recipient = Address::decode(&mut r)?;
                let scts = Timestamp::decode(&mut r)?;
                let discharge = Timestamp::decode(&mut r)?;
                let status = r.u8("status")?;
                let mut report = SmsStatusReport {
                    more_messages: first & 0x04 == 0,
                    qualifier_command: first & 0x20 != 0,
                    message_reference,
                    recipient,
                    scts,
                    discharge,
                    status,
                    pid: None,
                    dcs: None,
                    user_data: None,
                };
                if r.remaining() > 0 {
                    let pi = r.u8("parameter indicator")?;
                    // Further TP-PI octets announce nothing defined (§9.2.3.27): skipped.
                    let mut more = pi & PI_EXTENSION != 0;
                    while more {
                        more = r.u8("parameter indicator")? & PI_EXTENSION != 0;
                    }
                    if pi & PI_PID != 0 {
                        report.pid = Some(r.u8("protocol identifier")?);
                    }
                    if pi & PI_DCS != 0 {
                        report.dcs = Some(DataCoding(r.u8("data coding scheme")?));
                    }
                    if pi & PI_UDL != 0 {
                        report.user_data = Some(UserData::decode(&mut r, report.data_coding(), first & 0x40 != 0)?);
                    }
                }
                Tpdu::StatusReport(report)
            }
            mti => return Err(DecodeError::UnsupportedType { mti }),
        };
        r.finish()?;
        Ok(tpdu)
    }

    /// A TPDU the terminal sent to the SMS center (mobile originated).
    pub fn decode_mo(bytes: &[u8]) -> Result<Tpdu, DecodeError> {
        let mut r = Reader::new(bytes);
        let first = r.u8("first octet")?;
        if first & 0x03 != MTI_SUBMIT {
            return Err(DecodeError::UnsupportedType { mti: first & 0x03 });
        }
        let message_reference = r.u8("message reference")?;
        let destination = Address::decode(&mut r)?;
        let pid = r.u8("protocol identifier")?;
        let dcs = DataCoding(r.u8("data coding scheme")?);
        let validity = match (first >> 3) & 0x03 {
            0 => None,
            1 => {
                let e = r.take(7, "enhanced validity period")?;
                Some(ValidityPeriod::Enhanced(e.try_into().map_err(|_| DecodeError::Truncated("validity"))?))
            }
            2 => Some(ValidityPeriod::Relative(r.u8("validity period")?)),
            _ => Some(ValidityPeriod::Absolute(Timestamp::decode(&mut r)?)),
        };
        let user_data = UserData::decode(&mut r, dcs, first & 0x40 != 0)?;
        r.finish()?;
        Ok(Tpdu::Submit(SmsSubmit {
            reject_duplicates: first & 0x04 != 0,
            status_report_request: first & 0x20 != 0,
            reply_path: first & 0x80 != 0,
            message_reference,
            destination,
            pid,
            dcs,
            validity,
            user_data,
        }))
    }
}

/// Splits the SMSC address that a modem puts before a TPDU (`AT+CMGR` style: length in
/// octets, type, semi-octets) from the TPDU.
pub fn split_smsc(bytes: &[u8]) -> Result<(Option<Address>, &[u8]), DecodeError> {
    let len = *bytes.first().ok_or(DecodeError::Truncated("SMSC length"))? as usize;
    if len == 0 {
        return Ok((None, &bytes[1..]));
    }
    let info = bytes.get(1..1 + len).ok_or(DecodeError::Truncated("SMSC address"))?;
    // The filler nibble can only be in a digit octet, not in the type octet alone.
    let filler = len > 1 && info.last().is_some_and(|b| b >> 4 == 0x0F);
    let digits = (len - 1) * 2 - usize::from(filler);
    if digits > 20 {
        return Err(DecodeError::AddressLength(digits));
    }
    let mut as_tp = vec![digits as u8];
    as_tp.extend_from_slice(info);
    let addr = Address::decode(&mut Reader::new(&as_tp))?;
    Ok((Some(addr), &bytes[1 + len..]))
}
