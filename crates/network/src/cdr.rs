//! The offline CDR file format, version 1 (docs/CDR_FILES.md): one record per call or data
//! session, online and offline alike, so that billing can reconcile the two (CN101431580B).
//!
//! ```text
//! #numport-cdr,1,<node>,<file_seq>,<opened_ms>
//! record_type,record_id,served,other_party,start_ms,duration_s,charging,cause,session_id,partials,result_code,services
//! voice,msc.example-1-17,4790000001,4791234567,1796000000000,95,online,normal,msc.example;1;17,0,2001,
//! data,msc.example-2-4,4790000002,internet,1796000000500,120,online,normal,msc.example;2;4,0,2001,10/1001:5000:90000;20/2001:100:300
//! #end,2,<sha256 hex of every byte above this line>,<closed_ms>
//! ```
//!
//! Encoding and parsing are pure; [`crate::cdr_file`] writes the files. The parser returns a
//! typed error for anything that is not exactly this format, and never panics.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// The first field of a file's first line.
pub const MAGIC: &str = "#numport-cdr";
/// The version this module writes and reads.
pub const VERSION: u32 = 1;
/// The second line of every file.
pub const COLUMNS: &str = "record_type,record_id,served,other_party,start_ms,duration_s,charging,cause,session_id,partials,result_code,services";
const COLUMN_NAMES: [&str; 12] = [
    "record_type",
    "record_id",
    "served",
    "other_party",
    "start_ms",
    "duration_s",
    "charging",
    "cause",
    "session_id",
    "partials",
    "result_code",
    "services",
];
/// The first field of a file's last line.
pub const TRAILER: &str = "#end";

macro_rules! keyword {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),* }
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

keyword! {
    /// What the record describes.
    RecordType { Voice = "voice", Data = "data" }
}
keyword! {
    /// How the served subscriber was charged for it.
    Charging {
        /// Credit control over Diameter Gy.
        Online = "online",
        /// Credit control on partial CDRs (CN102083044A).
        PartialCdr = "partial_cdr",
        /// Not charged in real time: billing rates it from this file.
        Offline = "offline",
    }
}
keyword! {
    /// Why the call or session ended.
    Cause {
        /// The subscriber hung up or the session ended.
        Normal = "normal",
        /// The OCS refused further units (4012).
        CreditLimit = "credit_limit",
        /// The last grant (Final-Unit-Indication) was used up.
        FinalUnits = "final_units",
        /// The OCS answered a partial CDR with cut-off.
        CutOff = "cut_off",
        /// The OCS could not be asked, or answered with an error other than 4012.
        Failure = "failure",
    }
}

/// One service's volume in a data record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ServiceVolume {
    pub rating_group: u32,
    pub service_id: u32,
    pub uplink_octets: u64,
    pub downlink_octets: u64,
}

/// One call or data session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cdr {
    pub record_type: RecordType,
    /// Unique per node: `<node>-<kind>-<n>`.
    pub record_id: String,
    /// The subscriber charged: the caller, or the data subscriber (MSISDN digits).
    pub served: String,
    /// The called number, or the access point name.
    pub other_party: String,
    /// When the call was answered or the session began: ms since 1970-01-01T00:00:00Z (UTC).
    pub start_ms: i64,
    /// Seconds used: what the subscriber is charged for.
    pub duration_s: u64,
    pub charging: Charging,
    pub cause: Cause,
    /// The Gy Session-Id (online), the call id of the partial CDRs, or empty (offline).
    pub session_id: String,
    /// Partial CDRs sent for the call (0 unless charged on partial CDRs).
    pub partials: u32,
    /// The last Result-Code the OCS answered (Gy), or none.
    pub result_code: Option<u32>,
    /// Per-service volumes of a data session, in the order the services were used.
    pub services: Vec<ServiceVolume>,
}

/// A file's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// The node that wrote it (its Diameter Origin-Host).
    pub node: String,
    /// 1, 2, … per node, never reused.
    pub file_seq: u64,
    pub opened_ms: i64,
}

/// A parsed, complete file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrFile {
    pub header: FileHeader,
    pub records: Vec<Cdr>,
    pub closed_ms: i64,
}

/// A text field that cannot be written: empty where required, or with a character the format
/// reserves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?}: printable ASCII without ',' or '\"' required")]
pub struct EncodeError {
    pub field: &'static str,
    pub value: String,
}

/// Why a file is not a valid version 1 CDR file. Lines count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty file")]
    Empty,
    #[error("line {0} is not terminated by a newline")]
    Unterminated(usize),
    #[error("line {0} is not UTF-8")]
    NotUtf8(usize),
    #[error("the first line is not a numport CDR header")]
    Header,
    #[error("version {0} (this parser reads {VERSION})")]
    Version(String),
    #[error("the second line is not the version {VERSION} column list")]
    Columns,
    #[error("line {line}: {found} fields, expected {}", COLUMN_NAMES.len())]
    FieldCount { line: usize, found: usize },
    #[error("line {line}: bad {column} {value:?}")]
    Field { line: usize, column: &'static str, value: String },
    #[error("no trailer: the file was not closed")]
    MissingTrailer,
    #[error("line {0}: bad trailer")]
    Trailer(usize),
    #[error("the trailer counts {stated} records, the file has {found}")]
    Count { stated: u64, found: u64 },
    #[error("checksum mismatch")]
    Checksum,
    #[error("line {0}: data after the trailer")]
    AfterTrailer(usize),
}

fn text_ok(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b',' && b != b'"')
}

fn check<'a>(field: &'static str, value: &'a str, required: bool) -> Result<&'a str, EncodeError> {
    if text_ok(value) && !(required && value.is_empty()) {
        Ok(value)
    } else {
        Err(EncodeError { field, value: value.to_owned() })
    }
}

impl FileHeader {
    /// The header line, with its newline.
    pub fn encode(&self) -> Result<String, EncodeError> {
        check("node", &self.node, true)?;
        Ok(format!("{MAGIC},{VERSION},{},{},{}\n{COLUMNS}\n", self.node, self.file_seq, self.opened_ms))
    }
}

impl Cdr {
    /// Appends the record's line (with its newline) to `out`.
    pub fn encode_into(&self, out: &mut String) -> Result<(), EncodeError> {
        let record_id = check("record_id", &self.record_id, true)?;
        let served = check("served", &self.served, true)?;
        let other = check("other_party", &self.other_party, false)?;
        let session = check("session_id", &self.session_id, false)?;
        let code = self.result_code.map(|c| c.to_string()).unwrap_or_default();
        let _ = write!(
            out,
            "{},{record_id},{served},{other},{},{},{},{},{session},{},{code},",
            self.record_type.as_str(),
            self.start_ms,
            self.duration_s,
            self.charging.as_str(),
            self.cause.as_str(),
            self.partials,
        );
        for (i, s) in self.services.iter().enumerate() {
            let sep = if i == 0 { "" } else { ";" };
            let _ = write!(out, "{sep}{}/{}:{}:{}", s.rating_group, s.service_id, s.uplink_octets, s.downlink_octets);
        }
        out.push('\n');
        Ok(())
    }
}

/// The trailer line closing a file of `records` records whose bytes so far hash to `digest`.
pub fn trailer(records: u64, digest: &[u8], closed_ms: i64) -> String {
    format!("{TRAILER},{records},{},{closed_ms}\n", hex::encode(digest))
}

/// The lines of `bytes`, each with its 1-based number and its byte range including the newline.
fn lines(bytes: &[u8]) -> Result<Vec<(usize, &str, usize)>, ParseError> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let n = out.len() + 1;
        let Some(len) = bytes[start..].iter().position(|&b| b == b'\n') else {
            return Err(ParseError::Unterminated(n));
        };
        let text = std::str::from_utf8(&bytes[start..start + len]).map_err(|_| ParseError::NotUtf8(n))?;
        start += len + 1;
        out.push((n, text, start));
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(line: usize, column: &'static str, value: &str) -> Result<T, ParseError> {
    // `FromStr` for integers takes a leading '+'; the format writes none.
    if value.starts_with('+') {
        return Err(ParseError::Field { line, column, value: value.to_owned() });
    }
    value.parse().map_err(|_| ParseError::Field { line, column, value: value.to_owned() })
}

fn header(line: &str) -> Result<FileHeader, ParseError> {
    let f: Vec<&str> = line.split(',').collect();
    if f.first() != Some(&MAGIC) || f.len() != 5 {
        return Err(ParseError::Header);
    }
    if f[1] != VERSION.to_string() {
        return Err(ParseError::Version(f[1].to_owned()));
    }
    if f[2].is_empty() || !text_ok(f[2]) {
        return Err(ParseError::Header);
    }
    Ok(FileHeader {
        node: f[2].to_owned(),
        file_seq: f[3].parse().map_err(|_| ParseError::Header)?,
        opened_ms: f[4].parse().map_err(|_| ParseError::Header)?,
    })
}

fn services(line: usize, value: &str) -> Result<Vec<ServiceVolume>, ParseError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let bad = || ParseError::Field { line, column: "services", value: value.to_owned() };
    value
        .split(';')
        .map(|s| {
            let (ids, volumes) = s.split_once(':').ok_or_else(bad)?;
            let (rg, sid) = ids.split_once('/').ok_or_else(bad)?;
            let (up, down) = volumes.split_once(':').ok_or_else(bad)?;
            Ok(ServiceVolume {
                rating_group: number(line, "services", rg)?,
                service_id: number(line, "services", sid)?,
                uplink_octets: number(line, "services", up)?,
                downlink_octets: number(line, "services", down)?,
            })
        })
        .collect()
}

fn record(line: usize, text: &str) -> Result<Cdr, ParseError> {
    let f: Vec<&str> = text.split(',').collect();
    if f.len() != COLUMN_NAMES.len() {
        return Err(ParseError::FieldCount { line, found: f.len() });
    }
    let bad = |i: usize| ParseError::Field { line, column: COLUMN_NAMES[i], value: f[i].to_owned() };
    let text_field = |i: usize, required: bool| {
        if text_ok(f[i]) && !(required && f[i].is_empty()) { Ok(f[i].to_owned()) } else { Err(bad(i)) }
    };
    Ok(Cdr {
        record_type: RecordType::parse(f[0]).ok_or_else(|| bad(0))?,
        record_id: text_field(1, true)?,
        served: text_field(2, true)?,
        other_party: text_field(3, false)?,
        start_ms: number(line, COLUMN_NAMES[4], f[4])?,
        duration_s: number(line, COLUMN_NAMES[5], f[5])?,
        charging: Charging::parse(f[6]).ok_or_else(|| bad(6))?,
        cause: Cause::parse(f[7]).ok_or_else(|| bad(7))?,
        session_id: text_field(8, false)?,
        partials: number(line, COLUMN_NAMES[9], f[9])?,
        result_code: if f[10].is_empty() { None } else { Some(number(line, COLUMN_NAMES[10], f[10])?) },
        services: services(line, f[11])?,
    })
}

/// Parses a complete file: header, columns, records, and the trailer whose count and
/// SHA-256 must match what precedes it.
pub fn parse(bytes: &[u8]) -> Result<CdrFile, ParseError> {
    let lines = lines(bytes)?;
    let mut it = lines.iter();
    let &(_, first, _) = it.next().ok_or(ParseError::Empty)?;
    let header = header(first)?;
    match it.next() {
        Some(&(_, columns, _)) if columns == COLUMNS => {}
        Some(_) => return Err(ParseError::Columns),
        None => return Err(ParseError::MissingTrailer),
    }
    let mut records = Vec::new();
    let mut body_end = lines.get(1).map(|l| l.2).unwrap_or(0);
    for &(n, text, end) in it {
        if text.starts_with(TRAILER) {
            if n != lines.len() {
                return Err(ParseError::AfterTrailer(n + 1));
            }
            let f: Vec<&str> = text.split(',').collect();
            if f.len() != 4 || f[0] != TRAILER {
                return Err(ParseError::Trailer(n));
            }
            let stated: u64 = f[1].parse().map_err(|_| ParseError::Trailer(n))?;
            let digest = hex::decode(f[2]).map_err(|_| ParseError::Trailer(n))?;
            let closed_ms = f[3].parse().map_err(|_| ParseError::Trailer(n))?;
            if stated != records.len() as u64 {
                return Err(ParseError::Count { stated, found: records.len() as u64 });
            }
            if Sha256::digest(&bytes[..body_end]).as_slice() != digest.as_slice() {
                return Err(ParseError::Checksum);
            }
            return Ok(CdrFile { header, records, closed_ms });
        }
        records.push(record(n, text)?);
        body_end = end;
    }
    Err(ParseError::MissingTrailer)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn voice(n: u32) -> Cdr {
        Cdr {
            record_type: RecordType::Voice,
            record_id: format!("msc.test-v-{n}"),
            served: "4790000001".into(),
            other_party: "4791234567".into(),
            start_ms: 1_796_000_000_000 + i64::from(n),
            duration_s: 95,
            charging: Charging::Online,
            cause: Cause::Normal,
            session_id: format!("msc.test;1;{n}"),
            partials: 0,
            result_code: Some(2001),
            services: Vec::new(),
        }
    }

    fn data() -> Cdr {
        Cdr {
            record_type: RecordType::Data,
            record_id: "msc.test-d-1".into(),
            served: "4790000002".into(),
            other_party: "internet".into(),
            start_ms: 0,
            duration_s: 120,
            charging: Charging::Offline,
            cause: Cause::CreditLimit,
            session_id: String::new(),
            partials: 0,
            result_code: None,
            services: vec![
                ServiceVolume { rating_group: 10, service_id: 1001, uplink_octets: 5, downlink_octets: 90 },
                ServiceVolume { rating_group: 20, service_id: 2001, uplink_octets: 0, downlink_octets: 7 },
            ],
        }
    }

    pub(crate) fn file(records: &[Cdr]) -> Vec<u8> {
        let h = FileHeader { node: "msc.test".into(), file_seq: 3, opened_ms: 7 };
        let mut text = h.encode().unwrap();
        for r in records {
            r.encode_into(&mut text).unwrap();
        }
        let digest = Sha256::digest(text.as_bytes());
        text.push_str(&trailer(records.len() as u64, &digest, 9));
        text.into_bytes()
    }

    #[test]
    fn round_trip() {
        let records = vec![voice(1), data(), voice(2)];
        let parsed = parse(&file(&records)).unwrap();
        assert_eq!(parsed.records, records);
        assert_eq!(parsed.header, FileHeader { node: "msc.test".into(), file_seq: 3, opened_ms: 7 });
        assert_eq!(parsed.closed_ms, 9);
        assert_eq!(parse(&file(&[])).unwrap().records, vec![]);
    }

    #[test]
    fn damaged_files_are_typed_errors() {
        let good = file(&[voice(1), voice(2)]);
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(&good[..good.len() - 1]), Err(ParseError::Unterminated(5)));
        let cut = good.iter().rposition(|&b| b == b'#').unwrap();
        assert_eq!(parse(&good[..cut]), Err(ParseError::MissingTrailer));
        let text = String::from_utf8(good.clone()).unwrap();
        let flipped = text.replacen(",95,", ",96,", 1);
        assert_eq!(parse(flipped.as_bytes()), Err(ParseError::Checksum));
        assert_eq!(
            parse(text.replacen("#end,2", "#end,3", 1).as_bytes()),
            Err(ParseError::Count { stated: 3, found: 2 })
        );
        assert_eq!(
            parse(text.replacen(",1,msc.test,", ",2,msc.test,", 1).as_bytes()),
            Err(ParseError::Version("2".into()))
        );
        assert_eq!(parse(text.replacen("services", "volumes", 1).as_bytes()), Err(ParseError::Columns));
        assert!(matches!(
            parse(text.replacen(",online,", ",roaming,", 1).as_bytes()),
            Err(ParseError::Field { line: 3, column: "charging", .. })
        ));
        assert_eq!(parse(format!("{text}x\n").as_bytes()), Err(ParseError::AfterTrailer(6)));
    }

    #[test]
    fn reserved_characters_are_refused_when_writing() {
        let mut r = voice(1);
        r.other_party = "47,91".into();
        assert_eq!(r.encode_into(&mut String::new()).unwrap_err().field, "other_party");
        r.other_party = String::new();
        r.served = String::new();
        assert_eq!(r.encode_into(&mut String::new()).unwrap_err().field, "served");
    }
}
