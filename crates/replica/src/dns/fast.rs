//! The UDP fast path: the one query an ENUM server answers all day — a single-question IN
//! NAPTR query for a number in the zone, with or without an EDNS OPT record — parsed and
//! answered on the bytes, without building hickory-proto's message objects.
//!
//! Anything else (another type or class, a name outside the zone, a number in no range, more
//! records, another opcode, EDNS version > 0, compression in the question) returns `None` and
//! takes the general path, which answers from the same index through hickory-proto.
//! `tests::same_answer_as_the_general_path` holds the two to the same bytes.

use npdb::Index;

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
    let header = query.get(..HEADER)?;
    // QR = 0, opcode QUERY, no TC; one question, no answers or authorities, ≤ 1 additional.
    if header[2] & 0xFA != 0 || header[4..8] != [0, 1, 0, 0] || header[8..10] != [0, 0] || header[10] != 0 {
        return None;
    }
    let additional = header[11];
    if additional > 1 {
        return None;
    }
    // The question: digit labels, then the zone's labels, then the root.
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
    at += 4;
    let question_end = at;
    if qtype != TYPE_NAPTR || qclass != CLASS_IN {
        return None;
    }
    // The OPT record, if any: root name, type OPT, version 0.
    let edns_payload = if additional == 1 {
        let opt = query.get(at..at + 11)?;
        if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != TYPE_OPT || opt[6] != 0 {
            return None;
        }
        let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
        if query.len() != at + 11 + rdlen {
            return None;
        }
        Some(u16::from_be_bytes([opt[3], opt[4]]).max(512))
    } else if query.len() == question_end {
        None
    } else {
        return None;
    };
    // The number: labels reversed, 8 to 15 digits, no leading zero (what `Msisdn` accepts).
    let number = &mut digits[..n];
    number.reverse();
    if !(8..=15).contains(&n) || number[0] == b'0' {
        return None;
    }
    let key = number.iter().fold(0u64, |k, &d| k * 10 + (d - b'0') as u64);
    let route = index.route(index.lookup_digits(key)?);

    out.clear();
    out.extend_from_slice(&query[..question_end]);
    out[2] = 0x80 | 0x04 | (query[2] & 0x01); // QR, AA, RD as asked
    out[3] = query[3] & 0x10; // CD as asked, RCODE NOERROR
    out[6..12].copy_from_slice(&[0, 1, 0, 0, 0, edns_payload.is_some() as u8]);
    // The answer: name by pointer to the question, NAPTR, IN, TTL, then RDATA.
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
    if let Some(payload) = edns_payload {
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&payload.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // ext-rcode, version 0, flags, rdlen 0
    }
    Some(())
}

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}
