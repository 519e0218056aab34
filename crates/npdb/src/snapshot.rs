//! The routing snapshot: every current record and the feed sequence it is valid at, as text.
//!
//! One format serves three purposes: the clearinghouse's `GET /v1/routing/snapshot` body, the
//! replica's snapshot file on disk, and a national database's export fed to a bulk import. It is
//! line-oriented so that it streams (neither side holds it whole), can be inspected with `head`
//! and `grep`, and parses at tens of millions of lines per second without a general CSV reader:
//!
//! ```text
//! {"format":"numport-snapshot","version":1,"seq":1234,"operators":[{"name":"opa","routing_number":"D001"},…],"ranges":[["4790","opa"],…]}
//! 4790000001,opb
//! 4790000007,opc
//! end,2
//! ```
//!
//! The first line is a JSON header: the sequence number of the change log the records are valid
//! at, the operator table, and the number ranges. Then one `msisdn,serving operator` line per
//! ported number (only exceptions: a number served by its range holder has no line). The last
//! line, `end,<records>`, tells a complete snapshot from one cut off in transfer or by a crash.
//!
//! **Fuzzy snapshots.** A writer that reads a live database may see changes committed after the
//! header's `seq`. That is safe because every change is "number N is now served by X": a
//! follower that loads the snapshot and then applies every change after `seq` ends in the same
//! state, whichever of those changes the snapshot already reflected.

use std::io::{self, BufRead, Write};

use numport_core::{Msisdn, OperatorName, Prefix, RoutingNumber};
use serde::{Deserialize, Serialize};

use crate::{Index, IndexError, OpId, Operator};

/// Value of the header's `format` field.
pub const FORMAT: &str = "numport-snapshot";
pub const VERSION: u32 = 1;
/// Media type of the snapshot on HTTP.
pub const MEDIA_TYPE: &str = "application/vnd.numport.snapshot";

/// The header line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub format: String,
    pub version: u32,
    /// Change-log sequence the records reflect (at least).
    pub seq: i64,
    pub operators: Vec<SnapshotOperator>,
    /// `(prefix, range holder)`.
    pub ranges: Vec<(Prefix, OperatorName)>,
    /// How many record lines follow, as far as the writer knew: the reader sizes its table
    /// from it. Without it a reader would grow the table as records come, and records that
    /// arrive in another table's order (an index dumps its slots in hash order) pile into one
    /// end of the smaller table: linear probing then goes quadratic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ported: Option<u64>,
    /// The clearinghouse's version of the number ranges (0 where none is known).
    #[serde(default)]
    pub ranges_version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotOperator {
    pub name: OperatorName,
    pub routing_number: RoutingNumber,
}

impl SnapshotHeader {
    pub fn new(
        seq: i64,
        operators: Vec<SnapshotOperator>,
        ranges: Vec<(Prefix, OperatorName)>,
        ported: Option<u64>,
    ) -> SnapshotHeader {
        SnapshotHeader { format: FORMAT.into(), version: VERSION, seq, operators, ranges, ported, ranges_version: 0 }
    }

    /// An index with this header's operators and ranges and no exceptions yet.
    pub fn empty_index(&self) -> Result<Index, IndexError> {
        Index::new(
            self.operators.iter().map(|o| Operator { name: o.name.clone(), routing_number: o.routing_number.clone() }),
            self.ranges.iter().cloned(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading the snapshot: {0}")]
    Io(#[from] io::Error),
    #[error("snapshot header: {0}")]
    Header(String),
    #[error("snapshot line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error("snapshot is incomplete: it ends after {records} records without its end line")]
    Truncated { records: u64 },
    #[error("snapshot end line says {claimed} records, {read} were read")]
    CountMismatch { claimed: u64, read: u64 },
    #[error("snapshot data: {0}")]
    Index(#[from] IndexError),
}

/// The header line, newline included.
pub fn header_line(header: &SnapshotHeader) -> Vec<u8> {
    let mut line = serde_json::to_vec(header).unwrap_or_else(|_| unreachable!("the header serializes"));
    line.push(b'\n');
    line
}

/// Appends one record line: a ported number's digits and its serving operator's name.
pub fn push_record(out: &mut Vec<u8>, digits: &[u8], operator: &str) {
    out.extend_from_slice(digits);
    out.push(b',');
    out.extend_from_slice(operator.as_bytes());
    out.push(b'\n');
}

/// The end line for a snapshot of `records` records.
pub fn end_line(records: u64) -> Vec<u8> {
    format!("end,{records}\n").into_bytes()
}

/// Writes a snapshot from an index: header, records, end line, in 64 KiB writes.
pub fn write_index<W: Write>(index: &Index, seq: i64, out: W) -> io::Result<W> {
    write_index_versioned(index, seq, 0, out)
}

/// [`write_index`] with the ranges version the index's ranges came at.
pub fn write_index_versioned<W: Write>(index: &Index, seq: i64, ranges_version: i64, mut out: W) -> io::Result<W> {
    let mut header = SnapshotHeader::new(
        seq,
        index
            .operators()
            .iter()
            .map(|o| SnapshotOperator { name: o.name.clone(), routing_number: o.routing_number.clone() })
            .collect(),
        index.range_list(),
        Some(index.len() as u64),
    );
    header.ranges_version = ranges_version;
    out.write_all(&header_line(&header))?;
    let names: Vec<&str> = index.operators().iter().map(|o| o.name.as_str()).collect();
    let mut buf = Vec::with_capacity(1 << 16);
    let mut records = 0u64;
    for (key, op) in index.ported() {
        push_record(&mut buf, key.to_string().as_bytes(), names[op as usize]);
        records += 1;
        if buf.len() > 60_000 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.write_all(&end_line(records))?;
    Ok(out)
}

/// Reads a snapshot into a new index; returns it with the header.
///
/// `progress` is called every 2^16 records with the records read so far (a progress bar).
pub fn read_index<R: BufRead>(
    mut input: R,
    mut progress: impl FnMut(u64),
) -> Result<(Index, SnapshotHeader), SnapshotError> {
    let mut line = Vec::with_capacity(256);
    if input.read_until(b'\n', &mut line)? == 0 {
        return Err(SnapshotError::Header("empty input".into()));
    }
    let header: SnapshotHeader =
        serde_json::from_slice(trim_newline(&line)).map_err(|e| SnapshotError::Header(e.to_string()))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(SnapshotError::Header(format!(
            "format {:?} version {} (expected {FORMAT:?} version {VERSION})",
            header.format, header.version
        )));
    }
    let mut index = header.empty_index()?;
    // A hint, not a promise: capped, so a hostile header cannot make us allocate terabytes, and
    // believed only once `BELIEVED_AFTER` records back it, so that a header alone cannot make
    // us allocate gigabytes either. Until then the records wait in `early`, to go into a table
    // of the right size (see `SnapshotHeader::ported` for why the size matters).
    let hint = header.ported.unwrap_or(0).min(1 << 28) as usize;
    let mut early: Vec<(u64, u64, OpId)> = Vec::with_capacity(hint.min(BELIEVED_AFTER));
    let mut believed = false;
    let mut records = 0u64;
    let mut lineno = 1u64;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Err(SnapshotError::Truncated { records });
        }
        lineno += 1;
        let complete = line.last() == Some(&b'\n');
        let text = trim_newline(&line);
        if let Some(count) = text.strip_prefix(b"end,") {
            let claimed = parse_u64(count).ok_or_else(|| bad(lineno, "end line without a record count"))?;
            if claimed != records {
                return Err(SnapshotError::CountMismatch { claimed, read: records });
            }
            if !believed {
                insert_early(&mut index, early.len(), &mut early)?;
            }
            return Ok((index, header));
        }
        if !complete {
            return Err(SnapshotError::Truncated { records });
        }
        let (key, op) = parse_record(&index, text).map_err(|r| bad(lineno, r))?;
        if !believed {
            early.push((lineno, key, op));
            if early.len() == BELIEVED_AFTER {
                believed = true;
                insert_early(&mut index, hint, &mut early)?;
            }
        } else {
            if records as usize >= hint && records.is_power_of_two() {
                index.reserve((records as usize).max(1 << 16));
            }
            index.set_serving_id(key, op).map_err(|e| bad(lineno, &e.to_string()))?;
        }
        records += 1;
        if records & 0xFFFF == 0 {
            progress(records);
        }
    }
}

/// Records [`read_index`] reads before it believes the header's `ported` hint.
const BELIEVED_AFTER: usize = 1 << 16;

/// Sizes `index` for `expected` records (at least those in `early`), then moves the `early`
/// records `(line, key, operator)` in.
fn insert_early(index: &mut Index, expected: usize, early: &mut Vec<(u64, u64, OpId)>) -> Result<(), SnapshotError> {
    index.reserve(expected.max(early.len()));
    for (lineno, key, op) in early.drain(..) {
        index.set_serving_id(key, op).map_err(|e| bad(lineno, &e.to_string()))?;
    }
    Ok(())
}

/// Parses one `msisdn,operator` line against the index's operator table.
pub fn parse_record(index: &Index, line: &[u8]) -> Result<(u64, OpId), &'static str> {
    let comma = line.iter().position(|&b| b == b',').ok_or("expected msisdn,operator")?;
    let (digits, name) = (&line[..comma], &line[comma + 1..]);
    let name = trim_cr(name);
    let msisdn = std::str::from_utf8(digits).ok().and_then(|s| s.parse::<Msisdn>().ok()).ok_or("bad msisdn")?;
    let op = index
        .operators()
        .iter()
        .position(|o| o.name.as_str().as_bytes() == name)
        .ok_or("operator not in the snapshot's operator table")?;
    Ok((crate::key_of(&msisdn), op as OpId))
}

fn bad(line: u64, reason: &str) -> SnapshotError {
    SnapshotError::Line { line, reason: reason.to_owned() }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    trim_cr(line.strip_suffix(b"\n").unwrap_or(line))
}

fn trim_cr(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"\r").unwrap_or(s)
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        let ops = [("opa", "D001"), ("opb", "D002")]
            .map(|(n, r)| Operator { name: n.parse().unwrap(), routing_number: r.parse().unwrap() });
        let mut index = Index::new(ops, [("4790".parse().unwrap(), "opa".parse().unwrap())]).expect("valid index");
        index.apply(&"4790000001".parse().unwrap(), &"opb".parse().unwrap()).unwrap();
        index.apply(&"4790000002".parse().unwrap(), &"opb".parse().unwrap()).unwrap();
        index
    }

    #[test]
    fn round_trip() {
        let index = sample();
        let bytes = write_index(&index, 42, Vec::new()).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.ends_with("end,2\n"), "{text}");
        let (back, header) = read_index(&bytes[..], |_| {}).unwrap();
        assert_eq!(header.seq, 42);
        assert_eq!(back.len(), 2);
        let route = back.lookup(&"4790000002".parse().unwrap()).unwrap();
        assert_eq!(route.name.as_str(), "opb");
        assert!(route.ported);
        assert_eq!(back.lookup(&"4790000003".parse().unwrap()).unwrap().name.as_str(), "opa");
    }

    #[test]
    fn truncation_and_garbage_are_typed_errors() {
        let bytes = write_index(&sample(), 1, Vec::new()).unwrap();
        let without_end = &bytes[..bytes.len() - "end,2\n".len()];
        assert!(matches!(read_index(without_end, |_| {}), Err(SnapshotError::Truncated { records: 2 })));
        // Cut in the middle of a record line.
        let cut = &without_end[..without_end.len() - 3];
        assert!(matches!(read_index(cut, |_| {}), Err(SnapshotError::Truncated { .. })));
        let mut wrong_count = without_end.to_vec();
        wrong_count.extend_from_slice(b"end,3\n");
        assert!(matches!(read_index(&wrong_count[..], |_| {}), Err(SnapshotError::CountMismatch { .. })));
        let mut unknown_op = without_end.to_vec();
        unknown_op.extend_from_slice(b"4790000009,opz\nend,3\n");
        assert!(matches!(read_index(&unknown_op[..], |_| {}), Err(SnapshotError::Line { line: 4, .. })));
        assert!(matches!(read_index(&b"not json\n"[..], |_| {}), Err(SnapshotError::Header(_))));
        assert!(matches!(read_index(&b""[..], |_| {}), Err(SnapshotError::Header(_))));
    }

    /// Seen with the `feed` fuzz target: a snapshot of 150 bytes whose header claimed 2^28
    /// records took 18 s and gigabytes to read, filling a table of that size.
    #[test]
    fn a_header_alone_does_not_size_the_table() {
        let op = SnapshotOperator { name: "opa".parse().unwrap(), routing_number: "D001".parse().unwrap() };
        let mut input = header_line(&SnapshotHeader::new(7, vec![op], vec![], Some(1 << 28)));
        push_record(&mut input, b"4790000001", "opa");
        input.extend(end_line(1));
        let (index, header) = read_index(&input[..], |_| {}).unwrap();
        assert_eq!((header.seq, index.len()), (7, 1));
        assert!(index.memory_bytes() < 1 << 20, "{} bytes", index.memory_bytes());
    }

    proptest::proptest! {
        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut input = write_index(&sample(), 1, Vec::new()).unwrap();
            input.truncate(input.len().min(bytes.len()));
            input.extend_from_slice(&bytes);
            let _ = read_index(&input[..], |_| {});
        }
    }
}
