//! The contents of the subscriber's EFs, coded as TS 51.011 / TS 31.102 say, so that what the
//! OTA server writes is what a real handset reads: EF_IMSI, EF_SPN, a record of EF_MSISDN and
//! of EF_SMSP. Encoders for the server, decoders for `numport terminal sim show`.

/// Size of EF_IMSI.
pub const IMSI_LEN: usize = 9;
/// Size of EF_SPN: the display condition and 16 octets of name.
pub const SPN_LEN: usize = 17;
/// Octets of alpha identifier in an EF_MSISDN record of this card.
pub const MSISDN_ALPHA_LEN: usize = 14;
/// EF_MSISDN record: alpha identifier and 14 octets of number.
pub const MSISDN_RECORD_LEN: usize = MSISDN_ALPHA_LEN + 14;
/// Octets of alpha identifier in an EF_SMSP record of this card.
pub const SMSP_ALPHA_LEN: usize = 12;
/// EF_SMSP record: alpha identifier and 28 octets of parameters.
pub const SMSP_RECORD_LEN: usize = SMSP_ALPHA_LEN + 28;

/// Why a value does not fit its EF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("{what} {value:?} is not {expected}")]
    Value { what: &'static str, value: String, expected: &'static str },
}

fn digits(what: &'static str, value: &str, min: usize, max: usize) -> Result<Vec<u8>, FileError> {
    let v = value.trim_start_matches('+');
    if !(min..=max).contains(&v.len()) || !v.bytes().all(|b| b.is_ascii_digit()) {
        let expected = "digits of the right length";
        return Err(FileError::Value { what, value: value.to_owned(), expected });
    }
    Ok(v.bytes().map(|b| b - b'0').collect())
}

/// Digits as swapped semi-octets padded with F.
fn bcd(digits: &[u8]) -> Vec<u8> {
    digits.chunks(2).map(|p| p[0] | p.get(1).copied().unwrap_or(0x0F) << 4).collect()
}

/// Swapped semi-octets up to the first F.
fn from_bcd(octets: &[u8]) -> String {
    octets
        .iter()
        .flat_map(|b| [b & 0x0F, b >> 4])
        .take_while(|&n| n != 0x0F)
        .map(|n| char::from_digit(n.into(), 16).unwrap_or('?'))
        .collect()
}

/// EF_IMSI (TS 31.102 §4.2.2): a length octet, then the digits with the parity nibble first.
pub fn encode_imsi(imsi: &str) -> Result<[u8; IMSI_LEN], FileError> {
    let d = digits("IMSI", imsi, 6, 15)?;
    let parity = if d.len() % 2 == 1 { 0x09 } else { 0x01 };
    let nibbles: Vec<u8> = std::iter::once(parity).chain(d.iter().copied()).collect();
    let packed = bcd(&nibbles);
    let mut out = [0xFF; IMSI_LEN];
    out[0] = packed.len() as u8;
    out[1..1 + packed.len()].copy_from_slice(&packed);
    Ok(out)
}

pub fn decode_imsi(ef: &[u8]) -> Option<String> {
    let len = usize::from(*ef.first()?);
    let body = ef.get(1..1 + len)?;
    let all = from_bcd(body);
    // The first nibble is the parity indicator.
    all.get(1..).map(str::to_owned).filter(|s| !s.is_empty())
}

/// EF_SPN (TS 31.102 §4.2.12): display condition, then the name in the GSM 7-bit alphabet
/// one character an octet, padded with FF.
pub fn encode_spn(name: &str, display_condition: u8) -> Result<[u8; SPN_LEN], FileError> {
    let septets = sms::gsm7::encode(name).map_err(|_| FileError::Value {
        what: "service provider name",
        value: name.to_owned(),
        expected: "in the GSM 7-bit alphabet",
    })?;
    if septets.len() > SPN_LEN - 1 {
        let expected = "at most 16 characters";
        return Err(FileError::Value { what: "service provider name", value: name.to_owned(), expected });
    }
    let mut out = [0xFF; SPN_LEN];
    out[0] = display_condition;
    out[1..1 + septets.len()].copy_from_slice(&septets);
    Ok(out)
}

pub fn decode_spn(ef: &[u8]) -> Option<String> {
    let name: Vec<u8> = ef.get(1..)?.iter().copied().take_while(|&b| b != 0xFF).collect();
    name.iter().all(|&b| b < 0x80).then(|| sms::gsm7::decode(&name))
}

/// A dialling number (TS 31.102 §4.4.2.3 / TS 24.008 called party BCD): length octet (TON/NPI
/// and digits), TON/NPI, 10 octets of digits.
fn encode_number(number: &str, what: &'static str) -> Result<[u8; 12], FileError> {
    let international = number.starts_with('+');
    let d = digits(what, number, 1, 20)?;
    let packed = bcd(&d);
    let mut out = [0xFF; 12];
    out[0] = 1 + packed.len() as u8;
    out[1] = if international { 0x91 } else { 0x81 };
    out[2..2 + packed.len()].copy_from_slice(&packed);
    Ok(out)
}

fn decode_number(field: &[u8]) -> Option<String> {
    let len = usize::from(*field.first()?);
    if len < 2 {
        return None;
    }
    let toa = *field.get(1)?;
    let digits = from_bcd(field.get(2..1 + len)?);
    Some(if toa & 0x70 == 0x10 { format!("+{digits}") } else { digits })
}

/// An EF_MSISDN record (TS 31.102 §4.2.26): the alpha identifier (FF), then the number.
pub fn encode_msisdn_record(msisdn: &str) -> Result<[u8; MSISDN_RECORD_LEN], FileError> {
    let mut out = [0xFF; MSISDN_RECORD_LEN];
    out[MSISDN_ALPHA_LEN..MSISDN_ALPHA_LEN + 12].copy_from_slice(&encode_number(msisdn, "MSISDN")?);
    Ok(out)
}

pub fn decode_msisdn_record(record: &[u8]) -> Option<String> {
    decode_number(record.get(record.len().checked_sub(14)?..)?)
}

/// An EF_SMSP record (TS 31.102 §4.2.27) holding the service centre address only: the alpha
/// identifier (FF), the parameter indicators (0xFD: only TS-Service Centre Address present),
/// TP-DA (FF), the SC address, TP-PID, TP-DCS, TP-VP (FF).
pub fn encode_smsp_record(smsc: &str) -> Result<[u8; SMSP_RECORD_LEN], FileError> {
    let mut out = [0xFF; SMSP_RECORD_LEN];
    out[SMSP_ALPHA_LEN] = 0xFD;
    let at = SMSP_ALPHA_LEN + 13;
    out[at..at + 12].copy_from_slice(&encode_number(smsc, "SMS center address")?);
    Ok(out)
}

/// The service centre address of an EF_SMSP record, if its indicator says it is there.
pub fn decode_smsp_record(record: &[u8]) -> Option<String> {
    let params = record.get(record.len().checked_sub(28)?..)?;
    (params[0] & 0x02 == 0).then(|| decode_number(&params[13..25])).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imsi_as_ts_31_102_codes_it() {
        let ef = encode_imsi("242019000000001").unwrap();
        assert_eq!(hex::encode(ef), "082924100900000010");
        assert_eq!(decode_imsi(&ef).as_deref(), Some("242019000000001"));
        assert!(encode_imsi("24201x").is_err());
    }

    #[test]
    fn spn_msisdn_and_smsc_round_trip() {
        let spn = encode_spn("Operator B", 0x01).unwrap();
        assert_eq!(decode_spn(&spn).as_deref(), Some("Operator B"));
        assert!(encode_spn("a name of seventeen", 0).is_err());
        let r = encode_msisdn_record("+4790000001").unwrap();
        assert_eq!(hex::encode(&r[14..]), "06917409000010ffffffffffffff");
        assert_eq!(decode_msisdn_record(&r).as_deref(), Some("+4790000001"));
        let r = encode_smsp_record("+4790000000").unwrap();
        assert_eq!(decode_smsp_record(&r).as_deref(), Some("+4790000000"));
        assert_eq!(decode_smsp_record(&[0xFF; SMSP_RECORD_LEN]), None);
    }
}
