//! The UDP fast path: the one query an ENUM server answers all day — a single-question IN
//! NAPTR query for a number in the zone, with or without an EDNS OPT record — parsed and
//! answered on the bytes, without building hickory-proto's message objects.
//!
//! Anything else (another type or class, a name outside the zone, a number in no range, more
//! records, another opcode, EDNS version > 0, an EDNS option that is malformed or whose
//! contents hickory-proto reads, compression in the question) returns `None` and takes the
//! general path, which answers from the same index through hickory-proto: negative answers, the
//! apex, empty non-terminals, BADVERS and FORMERR are all its.
//! `tests::same_answer_as_the_general_path` and the `dns_fast` fuzz target hold the two to the
//! same answers.

use npdb::{Index, Route};

const HEADER: usize = 12;
const TYPE_NAPTR: u16 = 35;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// What the fast path needs of the server's configuration.
pub(crate) struct FastZone {
    /// The zone's labels, lower-case, without the root (`["e164", "arpa"]`).
    pub labels: Vec<Vec<u8>>,
    pub rn_context: String,
    pub ttl: u32,
}

/// The answer to `query`, or `None` when it is not the common case. `out` is cleared first.
pub(crate) fn answer(zone: &FastZone, index: &Index, query: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let additional = check_header(query)?;
    let mut q = parse_question(zone, query)?;
    let edns = parse_opt(query, q.end, additional)?;
    let question = &query[..q.end];
    let number = q.number()?;
    let key = number.iter().fold(0u64, |k, &d| k * 10 + (d - b'0') as u64);
    let route = index.route(index.lookup_digits(key)?);

    out.clear();
    write_header(out, question, edns.is_some());
    write_naptr(out, zone, number, &route)?;
    if let Some(opt) = edns {
        write_opt(out, opt);
    }
    Some(())
}

/// The question of a common-case query: its digit labels, and where it ends.
struct Question {
    /// The digit labels' digits (ASCII) in query order: the number reversed, in `digits[..n]`.
    digits: [u8; 15],
    n: usize,
    /// The offset just past the question (header included).
    end: usize,
}

impl Question {
    /// The number, turned back into its order: 8 to 15 digits, no leading zero (what `Msisdn`
    /// accepts).
    #[inline]
    fn number(&mut self) -> Option<&[u8]> {
        let number = &mut self.digits[..self.n];
        number.reverse();
        if !(8..=15).contains(&self.n) || number[0] == b'0' {
            return None;
        }
        Some(number)
    }
}

/// Checks the header of a common-case query (QR = 0, opcode QUERY, no TC; one question, no
/// answers or authorities, at most one additional record); returns the additional count.
#[inline]
fn check_header(query: &[u8]) -> Option<u8> {
    let header = query.get(..HEADER)?;
    if header[2] & 0xFA != 0 || header[4..8] != [0, 1, 0, 0] || header[8..10] != [0, 0] || header[10] != 0 {
        return None;
    }
    let additional = header[11];
    (additional <= 1).then_some(additional)
}

/// Parses the question: digit labels, then the zone's labels, then the root; type NAPTR,
/// class IN.
#[inline]
fn parse_question(zone: &FastZone, query: &[u8]) -> Option<Question> {
    let mut at = HEADER;
    let mut digits = [0u8; 15];
    let mut n = 0;
    loop {
        let len = *query.get(at)? as usize;
        if len != 1 {
            break;
        }
        let d = *query.get(at + 1)?;
        if !d.is_ascii_digit() || n == digits.len() {
            return None;
        }
        digits[n] = d;
        n += 1;
        at += 2;
    }
    for label in &zone.labels {
        let len = *query.get(at)? as usize;
        let got = query.get(at + 1..at + 1 + len)?;
        if len != label.len() || !got.eq_ignore_ascii_case(label) {
            return None;
        }
        at += 1 + len;
    }
    if *query.get(at)? != 0 {
        return None;
    }
    at += 1;
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let qclass = u16::from_be_bytes([*query.get(at + 2)?, *query.get(at + 3)?]);
    if qtype != TYPE_NAPTR || qclass != CLASS_IN {
        return None;
    }
    Some(Question { digits, n, end: at + 4 })
}

/// What the answer's OPT record repeats of the query's.
#[derive(Clone, Copy)]
struct Opt {
    /// The client's UDP payload size, at least 512.
    payload: u16,
    /// The DO bit (RFC 3225), echoed.
    dnssec_ok: bool,
}

/// The OPT record after the question (at `at`) if `additional` says there is one: root name,
/// type OPT, version 0 (a higher one is BADVERS, for the general path), and nothing after it.
/// `Some(Some(_))` for an OPT record, `Some(None)` for a query that ends with its question.
#[inline]
fn parse_opt(query: &[u8], at: usize, additional: u8) -> Option<Option<Opt>> {
    if additional == 0 {
        return (query.len() == at).then_some(None);
    }
    let opt = query.get(at..at + 11)?;
    if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != TYPE_OPT || opt[6] != 0 {
        return None;
    }
    let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
    if query.len() != at + 11 + rdlen || !plain_options(&query[at + 11..]) {
        return None;
    }
    let payload = u16::from_be_bytes([opt[3], opt[4]]).max(512);
    Some(Some(Opt { payload, dnssec_ok: opt[7] & 0x80 != 0 }))
}

/// Whether OPT RDATA is whole options (code, length, data) whose contents the general path does
/// not read: a malformed one is FORMERR there, and client subnet and NSID are its to judge.
#[inline]
fn plain_options(mut rdata: &[u8]) -> bool {
    const NSID: u16 = 3;
    const CLIENT_SUBNET: u16 = 8;
    while let Some((head, rest)) = rdata.split_first_chunk::<4>() {
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        if code == NSID || code == CLIENT_SUBNET || rest.len() < len {
            return false;
        }
        rdata = &rest[len..];
    }
    rdata.is_empty()
}

/// The response's header and question: the query's `question` (header included) with QR, AA,
/// RD and CD set as asked, one answer, and an additional record if `edns`.
#[inline]
fn write_header(out: &mut Vec<u8>, question: &[u8], edns: bool) {
    out.extend_from_slice(question);
    out[2] = 0x80 | 0x04 | (question[2] & 0x01); // QR, AA, RD as asked
    out[3] = question[3] & 0x10; // CD as asked, RCODE NOERROR
    out[6..12].copy_from_slice(&[0, 1, 0, 0, 0, edns as u8]);
}

/// The answer: name by pointer to the question, NAPTR, IN, TTL, then RDATA (the `tel:` URI of
/// `number`, with the routing number if it is ported).
#[inline]
fn write_naptr(out: &mut Vec<u8>, zone: &FastZone, number: &[u8], route: &Route<'_>) -> Option<()> {
    out.extend_from_slice(&[0xC0, HEADER as u8]);
    out.extend_from_slice(&TYPE_NAPTR.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&zone.ttl.to_be_bytes());
    let rdlen_at = out.len();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&100u16.to_be_bytes());
    out.extend_from_slice(&10u16.to_be_bytes());
    push_string(out, b"u");
    push_string(out, b"E2U+pstn:tel");
    let regexp_len_at = out.len();
    out.push(0);
    out.extend_from_slice(b"!^.*$!tel:+");
    out.extend_from_slice(number);
    out.extend_from_slice(b";npdi");
    if route.ported {
        out.extend_from_slice(b";rn=");
        out.extend_from_slice(route.routing_number.as_str().as_bytes());
        out.extend_from_slice(b";rn-context=");
        out.extend_from_slice(zone.rn_context.as_bytes());
    }
    out.push(b'!');
    let regexp_len = out.len() - regexp_len_at - 1;
    out[regexp_len_at] = u8::try_from(regexp_len).ok()?;
    out.push(0); // replacement: the root
    let rdlen = (out.len() - rdlen_at - 2) as u16;
    out[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    Some(())
}

/// The OPT record: root name, type OPT, the UDP payload size, version 0, the DO bit, no
/// options.
#[inline]
fn write_opt(out: &mut Vec<u8>, opt: Opt) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&opt.payload.to_be_bytes());
    let flags = if opt.dnssec_ok { 0x80 } else { 0 };
    out.extend_from_slice(&[0, 0, flags, 0, 0, 0]); // ext-rcode, version 0, DO and Z, rdlen 0
}

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}
