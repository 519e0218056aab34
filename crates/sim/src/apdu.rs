//! Command APDUs of remote file management (ETSI TS 102 226 §5.1, compact format): the
//! builders an OTA server scripts a write with, the script parser the card runs, the status
//! words, and the file identifiers of the card's file system.
//!
//! A compact script is APDUs one after the other, each `CLA INS P1 P2 P3` and its data, in the
//! T=0 form: P3 is Lc for the commands that carry data and Le for the ones that read, so the
//! instruction tells how long each APDU is.

/// File identifiers (TS 51.011, TS 31.102).
pub mod fid {
    /// The master file.
    pub const MF: u16 = 0x3F00;
    /// DF GSM, which holds the subscriber's EFs on a SIM.
    pub const DF_GSM: u16 = 0x7F20;
    pub const EF_IMSI: u16 = 0x6F07;
    pub const EF_MSISDN: u16 = 0x6F40;
    pub const EF_SMSP: u16 = 0x6F42;
    pub const EF_SPN: u16 = 0x6F46;
    /// The product's own DF (a proprietary identifier) with the keys it uses.
    pub const DF_NUMPORT: u16 = 0x7F90;
    /// K_sim: the key of the air-interface attach and of the porting proof.
    pub const EF_KSIM: u16 = 0x6F01;
    /// The SMS-authentication key: a version octet, then the key.
    pub const EF_SMS_AUTH: u16 = 0x6F02;
}

/// Status words (ISO/IEC 7816-4, TS 102 221 §10.2).
pub mod sw {
    pub const OK: u16 = 0x9000;
    pub const WRONG_LENGTH: u16 = 0x6700;
    pub const INCOMPATIBLE_FILE_STRUCTURE: u16 = 0x6981;
    pub const SECURITY_STATUS_NOT_SATISFIED: u16 = 0x6982;
    pub const NO_EF_SELECTED: u16 = 0x6986;
    pub const WRONG_DATA: u16 = 0x6A80;
    pub const FILE_NOT_FOUND: u16 = 0x6A82;
    pub const RECORD_NOT_FOUND: u16 = 0x6A83;
    pub const INCORRECT_P1_P2: u16 = 0x6A86;
    pub const WRONG_PARAMETERS: u16 = 0x6B00;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;

    /// Whether a script goes on after this status word: success (90 00, 91 xx) or a
    /// warning (62 xx, 63 xx), TS 102 226 §5.1.
    pub fn continues(sw: u16) -> bool {
        matches!(sw >> 8, 0x90 | 0x91 | 0x62 | 0x63)
    }
}

pub const INS_SELECT: u8 = 0xA4;
pub const INS_READ_BINARY: u8 = 0xB0;
pub const INS_READ_RECORD: u8 = 0xB2;
pub const INS_UPDATE_BINARY: u8 = 0xD6;
pub const INS_UPDATE_RECORD: u8 = 0xDC;

/// CLA of the UICC (TS 102 221); the GSM SIM's A0 is taken too.
pub const CLA: u8 = 0x00;
/// P2 of READ/UPDATE RECORD: the record number is in P1 (absolute mode).
const RECORD_ABSOLUTE: u8 = 0x04;

/// One command APDU of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'a> {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    /// P3: Lc of a command with data, Le of a read (0 means 256).
    pub p3: u8,
    pub data: &'a [u8],
}

/// Why a script does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApduError {
    #[error("APDU {index} ends early")]
    Truncated { index: usize },
}

/// Whether P3 of `ins` is Le (a read) rather than Lc.
fn reads(ins: u8) -> bool {
    matches!(ins, INS_READ_BINARY | INS_READ_RECORD | 0xC0 | 0xF2 | 0xCA)
}

/// The APDUs of a compact script, in order.
pub fn parse_script(mut script: &[u8]) -> Result<Vec<Command<'_>>, ApduError> {
    let mut out = Vec::new();
    while !script.is_empty() {
        let index = out.len();
        let Some((&[cla, ins, p1, p2, p3], rest)) = script.split_first_chunk::<5>() else {
            return Err(ApduError::Truncated { index });
        };
        let lc = if reads(ins) { 0 } else { usize::from(p3) };
        let data = rest.get(..lc).ok_or(ApduError::Truncated { index })?;
        out.push(Command { cla, ins, p1, p2, p3, data });
        script = &rest[lc..];
    }
    Ok(out)
}

fn apdu(ins: u8, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + data.len());
    out.extend([CLA, ins, p1, p2, data.len() as u8]);
    out.extend_from_slice(data);
    out
}

/// SELECT by file identifier, no response data (P2 0x0C).
pub fn select(fid: u16) -> Vec<u8> {
    apdu(INS_SELECT, 0x00, 0x0C, &fid.to_be_bytes())
}

/// SELECT by path from the MF (P1 0x08; the path leaves out 3F00).
pub fn select_path(path: &[u16]) -> Vec<u8> {
    let data: Vec<u8> = path.iter().flat_map(|f| f.to_be_bytes()).collect();
    apdu(INS_SELECT, 0x08, 0x0C, &data)
}

/// UPDATE BINARY of the selected EF at `offset` (at most 0x7FFF; at most 255 octets).
pub fn update_binary(offset: u16, data: &[u8]) -> Vec<u8> {
    let [p1, p2] = (offset & 0x7FFF).to_be_bytes();
    apdu(INS_UPDATE_BINARY, p1, p2, data)
}

/// UPDATE RECORD `record` (1-based) of the selected linear fixed EF; `data` is the whole record.
pub fn update_record(record: u8, data: &[u8]) -> Vec<u8> {
    apdu(INS_UPDATE_RECORD, record, RECORD_ABSOLUTE, data)
}

/// READ BINARY of `len` octets at `offset` (0: to the end, at most 256).
pub fn read_binary(offset: u16, len: u8) -> Vec<u8> {
    let [p1, p2] = (offset & 0x7FFF).to_be_bytes();
    vec![CLA, INS_READ_BINARY, p1, p2, len]
}

/// READ RECORD `record` (1-based) of `len` octets (the record length, or 0).
pub fn read_record(record: u8, len: u8) -> Vec<u8> {
    vec![CLA, INS_READ_RECORD, record, RECORD_ABSOLUTE, len]
}

/// The TS 102 226 §5.1.2 compact response: number of commands executed, the last status
/// word, the last response data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptResult {
    pub executed: u8,
    pub last_sw: u16,
    pub last_data: Vec<u8>,
}

impl ScriptResult {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.last_data.len());
        out.push(self.executed);
        out.extend(self.last_sw.to_be_bytes());
        out.extend_from_slice(&self.last_data);
        out
    }

    /// The PoR's additional data as a script result (`None`: fewer than 3 octets).
    pub fn decode(bytes: &[u8]) -> Option<ScriptResult> {
        let (&[executed, sw1, sw2], last) = bytes.split_first_chunk::<3>()?;
        Some(ScriptResult { executed, last_sw: u16::from_be_bytes([sw1, sw2]), last_data: last.to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse_by_instruction() {
        let script =
            [select(fid::DF_GSM), select(fid::EF_MSISDN), read_record(1, 28), update_binary(2, &[1, 2, 3])].concat();
        let cmds = parse_script(&script).unwrap();
        assert_eq!(cmds.len(), 4);
        assert_eq!((cmds[2].ins, cmds[2].p3, cmds[2].data), (INS_READ_RECORD, 28, &[][..]));
        assert_eq!((cmds[3].p1, cmds[3].p2, cmds[3].data), (0, 2, &[1, 2, 3][..]));
        assert_eq!(parse_script(&script[..script.len() - 1]), Err(ApduError::Truncated { index: 3 }));
        assert_eq!(parse_script(&[0, 0xA4]), Err(ApduError::Truncated { index: 0 }));
        assert_eq!(hex::encode(select(0x3F00)), "00a4000c023f00");
    }
}
