//! The virtual card: a UICC with a file system, the product's keys, remote file management
//! behind the TARs of TS 101 220, and the OTA security of TS 102 225 in front of it.
//!
//! ```text
//! MF 3F00
//! ├── DF GSM 7F20
//! │   ├── EF_IMSI   6F07  transparent, 9     read: always  update: OTA
//! │   ├── EF_MSISDN 6F40  linear fixed, 28   read: always  update: OTA
//! │   ├── EF_SMSP   6F42  linear fixed, 40   read: always  update: OTA
//! │   └── EF_SPN    6F46  transparent, 17    read: always  update: OTA
//! └── DF NUMPORT 7F90 (proprietary)
//!     ├── EF_KSIM     6F01  transparent, 16..32   read: never  update: OTA
//!     └── EF_SMS_AUTH 6F02  transparent, 33        read: never  update: OTA
//! ```
//!
//! "OTA" is the access of remote file management: a command packet that passed the card's
//! security (checksum, ciphering, counter) runs its APDUs with it. Keys are never readable:
//! READ on a key EF answers 6982. The OTA key sets (KIc/KID per key version) and the counter
//! per TAR sit outside the file system, where no APDU reaches them.
//!
//! The card is a value: [`Card::to_bytes`] and [`Card::from_bytes`] carry all of it,
//! counters included, so a terminal that persists it after each packet refuses a replay
//! after a restart as well.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::apdu::{self, Command, ScriptResult, fid, sw};
use crate::crypto::hex_bytes;
use crate::files;
use crate::packet::{
    COUNTER_MAX, CommandHeader, CounterMode, Integrity, OtaKeys, PacketError, PlainHeader, PorRequest, PorSecurity,
    PorStatus, ResponsePacket, Tar, encode_response_packet, open_command_packet, parse_command_header,
};

/// The card file's format version.
const FORMAT: u32 = 1;
/// Largest PoR user data: one SMS of 140 octets less the 3-octet header.
const POR_MAX: usize = 137;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Structure {
    Transparent,
    LinearFixed { record_len: u8 },
}

/// An access condition, for reading or updating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Always,
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ef {
    pub fid: u16,
    pub structure: Structure,
    pub read: Access,
    pub update: Access,
    #[serde(with = "hex_bytes")]
    data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Df {
    pub fid: u16,
    pub dfs: Vec<Df>,
    pub efs: Vec<Ef>,
}

/// The least a command packet must bring for the card to look inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityLevel {
    pub checksum: bool,
    pub ciphering: bool,
    pub counter: CounterMode,
}

impl Default for SecurityLevel {
    /// Checksum, ciphering and a counter higher than the card's.
    fn default() -> SecurityLevel {
        SecurityLevel { checksum: true, ciphering: true, counter: CounterMode::Higher }
    }
}

/// What a SIM vendor puts on a new card (and tells the operator).
#[derive(Debug, Clone)]
pub struct Personalisation {
    pub imsi: String,
    pub k_sim: Vec<u8>,
    /// OTA key sets by key version (1..=15).
    pub ota_keys: Vec<(u8, OtaKeys)>,
    pub msisdn: Option<String>,
    pub spn: Option<String>,
    pub smsc: Option<String>,
    /// The SMS-authentication key and its version.
    pub sms_auth: Option<(u8, Vec<u8>)>,
}

/// Why a card cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error(transparent)]
    File(#[from] files::FileError),
    #[error("K_sim of {0} octets (16 to 32)")]
    KSimLength(usize),
    #[error("OTA key version {0} (1 to 15)")]
    KeyVersion(u8),
    #[error("SMS-authentication key of {0} octets (at most 32)")]
    SmsAuthLength(usize),
    #[error("card file: {0}")]
    Format(String),
}

/// An APDU's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: u16,
}

impl Response {
    fn sw(sw: u16) -> Response {
        Response { data: Vec::new(), sw }
    }
}

/// What the card did with a command packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `None` when even the clear header did not parse.
    pub tar: Option<Tar>,
    pub status: PorStatus,
    /// The script's result, when it ran.
    pub script: Option<ScriptResult>,
    /// The response packet to send back, if the SPI asks for one.
    pub por: Option<Vec<u8>>,
    /// Whether the PoR should go in an SMS-SUBMIT (SPI2 bit 6).
    pub por_via_submit: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Selection {
    /// DFs below the MF.
    df: Vec<u16>,
    ef: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Ota {
    /// By key version.
    keysets: BTreeMap<u8, OtaKeys>,
    /// The highest counter accepted, by TAR.
    counters: BTreeMap<u32, u64>,
    minimum: SecurityLevel,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Card {
    format: u32,
    mf: Df,
    ota: Ota,
    #[serde(skip)]
    selection: Selection,
}

/// Two cards are equal when they hold the same: the current selection does not count.
impl PartialEq for Card {
    fn eq(&self, other: &Card) -> bool {
        (self.format, &self.mf, &self.ota) == (other.format, &other.mf, &other.ota)
    }
}

impl Eq for Card {}

fn ef(fid: u16, structure: Structure, secret: bool, data: Vec<u8>) -> Ef {
    let read = if secret { Access::Never } else { Access::Always };
    Ef { fid, structure, read, update: Access::Always, data }
}

fn records(record_len: usize, count: usize, first: &[u8]) -> Vec<u8> {
    let mut data = vec![0xFF; record_len * count];
    data[..first.len()].copy_from_slice(first);
    data
}

impl Card {
    /// A new card with the vendor's values.
    pub fn personalise(p: &Personalisation) -> Result<Card, CardError> {
        if !(16..=32).contains(&p.k_sim.len()) {
            return Err(CardError::KSimLength(p.k_sim.len()));
        }
        let mut sms_auth = vec![0xFF; 33];
        if let Some((version, key)) = &p.sms_auth {
            if key.len() > 32 {
                return Err(CardError::SmsAuthLength(key.len()));
            }
            sms_auth[0] = *version;
            sms_auth[1..1 + key.len()].copy_from_slice(key);
            sms_auth.truncate(1 + key.len());
        }
        let msisdn = match &p.msisdn {
            Some(m) => files::encode_msisdn_record(m)?.to_vec(),
            None => Vec::new(),
        };
        let smsp = match &p.smsc {
            Some(s) => files::encode_smsp_record(s)?.to_vec(),
            None => Vec::new(),
        };
        let spn = match &p.spn {
            Some(s) => files::encode_spn(s, 0x01)?,
            None => [0xFF; files::SPN_LEN],
        };
        let gsm = Df {
            fid: fid::DF_GSM,
            dfs: Vec::new(),
            efs: vec![
                ef(fid::EF_IMSI, Structure::Transparent, false, files::encode_imsi(&p.imsi)?.to_vec()),
                ef(
                    fid::EF_MSISDN,
                    Structure::LinearFixed { record_len: files::MSISDN_RECORD_LEN as u8 },
                    false,
                    records(files::MSISDN_RECORD_LEN, 2, &msisdn),
                ),
                ef(
                    fid::EF_SMSP,
                    Structure::LinearFixed { record_len: files::SMSP_RECORD_LEN as u8 },
                    false,
                    records(files::SMSP_RECORD_LEN, 2, &smsp),
                ),
                ef(fid::EF_SPN, Structure::Transparent, false, spn.to_vec()),
            ],
        };
        let numport = Df {
            fid: fid::DF_NUMPORT,
            dfs: Vec::new(),
            efs: vec![
                ef(fid::EF_KSIM, Structure::Transparent, true, p.k_sim.clone()),
                ef(fid::EF_SMS_AUTH, Structure::Transparent, true, sms_auth),
            ],
        };
        let mut keysets = BTreeMap::new();
        for (version, keys) in &p.ota_keys {
            if !(1..=15).contains(version) {
                return Err(CardError::KeyVersion(*version));
            }
            keysets.insert(*version, keys.clone());
        }
        Ok(Card {
            format: FORMAT,
            mf: Df { fid: fid::MF, dfs: vec![gsm, numport], efs: Vec::new() },
            ota: Ota { keysets, counters: BTreeMap::new(), minimum: SecurityLevel::default() },
            selection: Selection::default(),
        })
    }

    /// The card as bytes (JSON), for the terminal's card file.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_else(|e| unreachable!("a card always serialises: {e}"))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Card, CardError> {
        let card: Card = serde_json::from_slice(bytes).map_err(|e| CardError::Format(e.to_string()))?;
        if card.format != FORMAT {
            return Err(CardError::Format(format!("format {} (this card reads {FORMAT})", card.format)));
        }
        Ok(card)
    }

    /// Sets the least a command packet must bring (a test card may take less).
    pub fn set_minimum_security(&mut self, level: SecurityLevel) {
        self.ota.minimum = level;
    }

    /// An EF's contents as the card holds them, secret or not: the terminal's own access.
    pub fn file(&self, path: &[u16]) -> Option<&[u8]> {
        let (last, dfs) = path.split_last()?;
        let df = dfs.iter().try_fold(&self.mf, |df, f| df.dfs.iter().find(|d| d.fid == *f))?;
        df.efs.iter().find(|e| e.fid == *last).map(|e| e.data.as_slice())
    }

    fn record(&self, path: &[u16], len: usize) -> Option<&[u8]> {
        self.file(path)?.get(..len)
    }

    pub fn imsi(&self) -> Option<String> {
        files::decode_imsi(self.file(&[fid::DF_GSM, fid::EF_IMSI])?)
    }

    pub fn msisdn(&self) -> Option<String> {
        files::decode_msisdn_record(self.record(&[fid::DF_GSM, fid::EF_MSISDN], files::MSISDN_RECORD_LEN)?)
    }

    pub fn spn(&self) -> Option<String> {
        files::decode_spn(self.file(&[fid::DF_GSM, fid::EF_SPN])?)
    }

    /// The SMS center address of the first EF_SMSP record.
    pub fn smsc(&self) -> Option<String> {
        files::decode_smsp_record(self.record(&[fid::DF_GSM, fid::EF_SMSP], files::SMSP_RECORD_LEN)?)
    }

    /// K_sim, for the attach and the porting proof.
    pub fn k_sim(&self) -> &[u8] {
        self.file(&[fid::DF_NUMPORT, fid::EF_KSIM]).unwrap_or_default()
    }

    /// The SMS-authentication key and its version, once one is written.
    pub fn sms_auth_key(&self) -> Option<(u8, &[u8])> {
        let ef = self.file(&[fid::DF_NUMPORT, fid::EF_SMS_AUTH])?;
        let (&version, key) = ef.split_first()?;
        (version != 0xFF && !key.is_empty()).then_some((version, key))
    }

    /// The OTA key sets by version.
    pub fn ota_keys(&self) -> impl Iterator<Item = (u8, &OtaKeys)> {
        self.ota.keysets.iter().map(|(v, k)| (*v, k))
    }

    /// The highest counter accepted for `tar`.
    pub fn counter(&self, tar: Tar) -> u64 {
        self.ota.counters.get(&tar.as_u32()).copied().unwrap_or(0)
    }

    /// The applications behind TARs: remote file management of the SIM and of the USIM,
    /// on the one file system.
    fn knows(tar: Tar) -> bool {
        tar == Tar::RFM_SIM || tar == Tar::RFM_USIM
    }

    fn current_df(&self) -> &Df {
        self.df_at(&self.selection.df).unwrap_or(&self.mf)
    }

    fn df_at(&self, path: &[u16]) -> Option<&Df> {
        path.iter().try_fold(&self.mf, |df, f| df.dfs.iter().find(|d| d.fid == *f))
    }

    fn current_ef_mut(&mut self) -> Result<&mut Ef, u16> {
        let ef = self.selection.ef.ok_or(sw::NO_EF_SELECTED)?;
        let mut df = &mut self.mf;
        for f in &self.selection.df {
            df = df.dfs.iter_mut().find(|d| d.fid == *f).ok_or(sw::NO_EF_SELECTED)?;
        }
        df.efs.iter_mut().find(|e| e.fid == ef).ok_or(sw::NO_EF_SELECTED)
    }

    /// Runs one APDU with the access of remote file management.
    pub fn execute(&mut self, c: &Command<'_>) -> Response {
        if c.cla != apdu::CLA && c.cla != 0xA0 {
            return Response::sw(sw::CLA_NOT_SUPPORTED);
        }
        let result = match c.ins {
            apdu::INS_SELECT => self.select(c).map(|()| Vec::new()),
            apdu::INS_READ_BINARY => self.read_binary(c),
            apdu::INS_UPDATE_BINARY => self.update_binary(c).map(|()| Vec::new()),
            apdu::INS_READ_RECORD => self.read_record(c),
            apdu::INS_UPDATE_RECORD => self.update_record(c).map(|()| Vec::new()),
            _ => Err(sw::INS_NOT_SUPPORTED),
        };
        match result {
            Ok(data) => Response { data, sw: sw::OK },
            Err(status) => Response::sw(status),
        }
    }

    fn select(&mut self, c: &Command<'_>) -> Result<(), u16> {
        if !c.data.len().is_multiple_of(2) || c.data.is_empty() {
            return Err(sw::WRONG_LENGTH);
        }
        let fids: Vec<u16> = c.data.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
        let selection = match c.p1 {
            0x00 if fids.len() == 1 => self.select_fid(fids[0]),
            0x00 => return Err(sw::WRONG_LENGTH),
            0x08 => self.select_path(Vec::new(), &fids),
            0x09 => self.select_path(self.selection.df.clone(), &fids),
            _ => return Err(sw::INCORRECT_P1_P2),
        }
        .ok_or(sw::FILE_NOT_FOUND)?;
        self.selection = selection;
        Ok(())
    }

    /// TS 102 221 §8.4.1, simplified: the MF, a child of the current DF, the current DF, its
    /// parent, or a DF beside it.
    fn select_fid(&self, f: u16) -> Option<Selection> {
        let here = &self.selection.df;
        if f == fid::MF {
            return Some(Selection::default());
        }
        let current = self.current_df();
        if current.efs.iter().any(|e| e.fid == f) {
            return Some(Selection { df: here.clone(), ef: Some(f) });
        }
        if current.dfs.iter().any(|d| d.fid == f) {
            return Some(Selection { df: [&here[..], &[f]].concat(), ef: None });
        }
        if here.last() == Some(&f) {
            return Some(Selection { df: here.clone(), ef: None });
        }
        let parent = &here[..here.len().saturating_sub(1)];
        if parent.last() == Some(&f) {
            return Some(Selection { df: parent.to_vec(), ef: None });
        }
        let siblings = self.df_at(parent)?;
        siblings.dfs.iter().any(|d| d.fid == f).then(|| Selection { df: [parent, &[f]].concat(), ef: None })
    }

    fn select_path(&self, mut df: Vec<u16>, path: &[u16]) -> Option<Selection> {
        let (last, dfs) = path.split_last()?;
        for f in dfs {
            let here = self.df_at(&df)?;
            here.dfs.iter().any(|d| d.fid == *f).then_some(())?;
            df.push(*f);
        }
        let here = self.df_at(&df)?;
        if here.efs.iter().any(|e| e.fid == *last) {
            return Some(Selection { df, ef: Some(*last) });
        }
        here.dfs.iter().any(|d| d.fid == *last).then(|| {
            df.push(*last);
            Selection { df, ef: None }
        })
    }

    fn read_binary(&mut self, c: &Command<'_>) -> Result<Vec<u8>, u16> {
        let ef = self.current_ef_mut()?;
        if ef.structure != Structure::Transparent {
            return Err(sw::INCOMPATIBLE_FILE_STRUCTURE);
        }
        if ef.read != Access::Always {
            return Err(sw::SECURITY_STATUS_NOT_SATISFIED);
        }
        let offset = binary_offset(c)?;
        let end = match c.p3 {
            0 => ef.data.len().min(offset + 256),
            n => offset + usize::from(n),
        };
        ef.data.get(offset..end).map(<[u8]>::to_vec).ok_or(sw::WRONG_PARAMETERS)
    }

    fn update_binary(&mut self, c: &Command<'_>) -> Result<(), u16> {
        let ef = self.current_ef_mut()?;
        if ef.structure != Structure::Transparent {
            return Err(sw::INCOMPATIBLE_FILE_STRUCTURE);
        }
        if ef.update != Access::Always {
            return Err(sw::SECURITY_STATUS_NOT_SATISFIED);
        }
        let offset = binary_offset(c)?;
        let target = ef.data.get_mut(offset..offset + c.data.len()).ok_or(sw::WRONG_PARAMETERS)?;
        target.copy_from_slice(c.data);
        Ok(())
    }

    fn record_at(&mut self, c: &Command<'_>, update: bool) -> Result<&mut [u8], u16> {
        let ef = self.current_ef_mut()?;
        let Structure::LinearFixed { record_len } = ef.structure else {
            return Err(sw::INCOMPATIBLE_FILE_STRUCTURE);
        };
        let access = if update { ef.update } else { ef.read };
        if access != Access::Always {
            return Err(sw::SECURITY_STATUS_NOT_SATISFIED);
        }
        if c.p2 != 0x04 {
            return Err(sw::INCORRECT_P1_P2);
        }
        let len = usize::from(record_len);
        // A read may leave the length to the card (Le 0).
        let wanted = if update { c.data.len() } else { usize::from(c.p3) };
        if wanted != len && (update || c.p3 != 0) {
            return Err(sw::WRONG_LENGTH);
        }
        let start = usize::from(c.p1).checked_sub(1).ok_or(sw::RECORD_NOT_FOUND)? * len;
        ef.data.get_mut(start..start + len).ok_or(sw::RECORD_NOT_FOUND)
    }

    fn read_record(&mut self, c: &Command<'_>) -> Result<Vec<u8>, u16> {
        self.record_at(c, false).map(|r| r.to_vec())
    }

    fn update_record(&mut self, c: &Command<'_>) -> Result<(), u16> {
        let record = self.record_at(c, true)?;
        record.copy_from_slice(c.data);
        Ok(())
    }

    /// Runs a compact remote-file-management script from the MF: each APDU in turn until one
    /// fails. A script that does not parse runs nothing.
    pub fn run_script(&mut self, script: &[u8]) -> ScriptResult {
        self.selection = Selection::default();
        let Ok(commands) = apdu::parse_script(script) else {
            return ScriptResult { executed: 0, last_sw: sw::WRONG_LENGTH, last_data: Vec::new() };
        };
        let mut result = ScriptResult { executed: 0, last_sw: sw::OK, last_data: Vec::new() };
        for c in &commands {
            let r = self.execute(c);
            result = ScriptResult { executed: result.executed.saturating_add(1), last_sw: r.sw, last_data: r.data };
            if !sw::continues(r.sw) {
                break;
            }
        }
        result
    }

    /// Takes a command packet from SMS-PP data download: checks it against the card's
    /// security, runs its script, and builds the PoR the SPI asks for.
    ///
    /// Whatever goes wrong before the checksum verified is answered in clear, without a
    /// checksum: a signed or ciphered answer to a forged packet would hand the forger known
    /// material under the card's keys.
    pub fn receive_command_packet(&mut self, packet: &[u8]) -> Outcome {
        let Ok(plain) = parse_command_header(packet) else {
            // Not even a TAR to answer to.
            return Outcome {
                tar: None,
                status: PorStatus::SecurityError,
                script: None,
                por: None,
                por_via_submit: true,
            };
        };
        let Verdict { status, header, script, keys } = self.process(&plain, packet);
        let spi = plain.spi;
        let wanted = match spi.por {
            PorRequest::None => false,
            PorRequest::OnError => status != PorStatus::Ok,
            PorRequest::Always | PorRequest::Reserved => true,
        };
        // Only an authenticated packet earns a secured answer.
        let security = match &keys {
            Some(_) => PorSecurity {
                checksum: spi.por_integrity == Integrity::CryptographicChecksum,
                ciphering: spi.por_ciphering,
            },
            None => PorSecurity::PLAIN,
        };
        let por = wanted.then(|| {
            let mut data = script.as_ref().map(ScriptResult::encode).unwrap_or_default();
            data.truncate(por_room(security, keys.as_ref()));
            let response = ResponsePacket {
                tar: plain.tar,
                counter: header.map_or(0, |h| h.counter),
                status,
                additional_data: data,
                authenticated: security.checksum,
            };
            encode_response_packet(keys.as_ref(), security, &response)
                .or_else(|_| encode_response_packet(None, PorSecurity::PLAIN, &response))
                .unwrap_or_default()
        });
        Outcome { tar: Some(plain.tar), status, script, por, por_via_submit: spi.por_via_submit }
    }

    /// The checks of TS 102 225 in order: application, security level, keys, checksum and
    /// ciphering, counter; then the script. The verdict carries the keys only once the
    /// checksum verified: only then may the answer be secured.
    fn process(&mut self, plain: &PlainHeader, packet: &[u8]) -> Verdict {
        let refuse = |status| Verdict { status, header: None, script: None, keys: None };
        if !Card::knows(plain.tar) {
            return refuse(PorStatus::TarUnknown);
        }
        let spi = plain.spi;
        let min = self.ota.minimum;
        let checksum_ok = match spi.integrity {
            Integrity::CryptographicChecksum => true,
            Integrity::None => !min.checksum,
            // A CRC protects against nobody; signatures are not offered.
            Integrity::RedundancyCheck | Integrity::DigitalSignature => false,
        };
        let por_ok = matches!(spi.por_integrity, Integrity::None | Integrity::CryptographicChecksum);
        if !checksum_ok || (min.ciphering && !spi.ciphering) || spi.counter < min.counter || !por_ok {
            return refuse(PorStatus::InsufficientSecurityLevel);
        }
        let keyset = |v: u8| self.ota.keysets.get(&v);
        let (Some(kic), Some(kid)) = (keyset(plain.kic.version()), keyset(plain.kid.version())) else {
            return refuse(PorStatus::SecurityError);
        };
        let keys = OtaKeys { kic: kic.kic.clone(), kid: kid.kid.clone() };
        let opened = match open_command_packet(&keys, packet) {
            Ok(p) => p,
            Err(e) => return refuse(e.por_status()),
        };
        let header = Some(opened.header);
        let keys = (spi.integrity == Integrity::CryptographicChecksum).then_some(keys);
        let stored = self.counter(plain.tar);
        if let Err(status) = check_counter(spi.counter, stored, opened.header.counter) {
            return Verdict { status, header, script: None, keys };
        }
        if matches!(spi.counter, CounterMode::Higher | CounterMode::OneHigher) {
            self.ota.counters.insert(plain.tar.as_u32(), opened.header.counter);
        }
        let script = Some(self.run_script(&opened.secured_data));
        Verdict { status: PorStatus::Ok, header, script, keys }
    }
}

/// What the card's checks came to.
struct Verdict {
    status: PorStatus,
    /// Once deciphered.
    header: Option<CommandHeader>,
    script: Option<ScriptResult>,
    /// Once the checksum verified.
    keys: Option<OtaKeys>,
}

/// The replay rules of TS 102 225 §5.1.1 for a received counter against the card's.
fn check_counter(mode: CounterMode, stored: u64, received: u64) -> Result<(), PorStatus> {
    match mode {
        CounterMode::None | CounterMode::Available => Ok(()),
        _ if stored >= COUNTER_MAX => Err(PorStatus::CounterBlocked),
        _ if received <= stored => Err(PorStatus::CounterLow),
        CounterMode::OneHigher if received != stored + 1 => Err(PorStatus::CounterHigh),
        _ => Ok(()),
    }
}

/// Octets of additional data a PoR secured as `security` can carry in one SMS.
fn por_room(security: PorSecurity, keys: Option<&OtaKeys>) -> usize {
    let cc = if security.checksum { crate::crypto::CC_LEN } else { 0 };
    // RPL(2), RHL and TAR(4), then CNTR, PCNTR, status (7), the checksum and the data.
    let part = POR_MAX - 6;
    match keys.filter(|_| security.ciphering) {
        Some(k) => {
            let b = k.kic.algorithm().block_len();
            part / b * b - 7 - cc
        }
        None => part - 7 - cc,
    }
}

/// The offset of READ/UPDATE BINARY: P1 bit 8 would select by SFI, which this card has not.
fn binary_offset(c: &Command<'_>) -> Result<usize, u16> {
    if c.p1 & 0x80 != 0 {
        return Err(sw::INCORRECT_P1_P2);
    }
    Ok(usize::from(u16::from_be_bytes([c.p1, c.p2])))
}

impl From<PacketError> for PorStatus {
    fn from(e: PacketError) -> PorStatus {
        e.por_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_por_fits_one_sms() {
        let keys = OtaKeys::aes(&[1; 16], &[2; 16]).unwrap();
        let secured = PorSecurity { checksum: true, ciphering: true };
        for (security, room) in
            [(secured, 113), (PorSecurity { checksum: true, ciphering: false }, 116), (PorSecurity::PLAIN, 124)]
        {
            assert_eq!(por_room(security, Some(&keys)), room);
            let por = ResponsePacket {
                tar: Tar::RFM_SIM,
                counter: 1,
                status: PorStatus::Ok,
                additional_data: vec![0; room],
                authenticated: security.checksum,
            };
            let bytes = encode_response_packet(Some(&keys), security, &por).unwrap();
            assert!(bytes.len() <= POR_MAX, "{} octets", bytes.len());
        }
    }
}
