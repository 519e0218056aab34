//! Concatenated short messages (TS 23.040 §9.2.3.24.1 and .8): a text too long for one TPDU
//! travels as up to 255 parts, each with a header naming the message (a reference), the
//! number of parts and its own place among them; the receiver puts them back together.
//!
//! [`segment`] is the sending side (the SMS center), [`Reassembler`] the receiving side (the
//! handset). Both are pure: the caller picks references and feeds received TPDUs.

use std::collections::HashMap;
use std::ops::Range;

use crate::gsm7;
use crate::tpdu::{Alphabet, DataCoding, Payload, SmsDeliver, UserData};
use crate::udh::{Concat, InformationElement, UserDataHeader};

/// Septets of an SMS without a header: 140 octets.
const GSM7_SINGLE: usize = 160;
/// UTF-16 units of an SMS without a header: 140 octets.
const UCS2_SINGLE: usize = 70;
/// Octets of 8-bit data in an SMS without a header.
const OCTETS_SINGLE: usize = 140;

/// The reference that ties the parts of one message together. The receiver tells messages
/// apart by originator, reference and part count, so a sender uses a fresh one per message
/// to the same recipient (a counter does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// IEI 0x00: a 6-octet header, leaving 153 septets or 67 UCS-2 units per part.
    Eight(u8),
    /// IEI 0x08: a 7-octet header, leaving 152 septets or 66 UCS-2 units per part; the wider
    /// reference repeats less often on a busy route.
    Sixteen(u16),
}

impl Reference {
    fn concat(self, total: u8, seq: u8) -> Concat {
        match self {
            Reference::Eight(r) => Concat { reference: r.into(), wide: false, total, seq },
            Reference::Sixteen(r) => Concat { reference: r, wide: true, total, seq },
        }
    }

    /// Octets of the concatenation element: IEI, length, data.
    fn element_octets(self) -> usize {
        match self {
            Reference::Eight(_) => 5,
            Reference::Sixteen(_) => 6,
        }
    }
}

/// What one SMS carries beside a user data header of `header` octets (its length octet
/// included; 0: none): (septets, UCS-2 units, octets). Septets lose the header's octets and
/// the fill bits that align the text to a septet boundary.
fn capacity(header: usize) -> (usize, usize, usize) {
    let octets = OCTETS_SINGLE.saturating_sub(header);
    (octets * 8 / 7, octets / 2, octets)
}

/// Why a text cannot be sent as one concatenated message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("the text needs {0} parts; a concatenated message has at most 255")]
    TooManyParts(usize),
}

/// The user data of each SMS of one message, in order, all under one data coding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    /// [`DataCoding::GSM7`] when every character is in the 7-bit alphabet or its extension,
    /// else [`DataCoding::UCS2`].
    pub dcs: DataCoding,
    /// One part without a header if the text fits a single SMS; otherwise parts 1..=n, each
    /// with a concatenation element.
    pub parts: Vec<UserData>,
}

/// Splits `text` into the user data of one or more SMS. An escape sequence (ESC and an
/// extension character) or a UTF-16 surrogate pair is never cut, since a receiver that
/// decodes part by part would show garbage. The GSM 7-bit fill bits after the header are
/// added when the TPDU is encoded.
pub fn segment(text: &str, reference: Reference) -> Result<Segments, SegmentError> {
    let (dcs, payload) = match gsm7::encode(text) {
        Ok(septets) => (DataCoding::GSM7, Payload::Septets(septets)),
        Err(_) => (DataCoding::UCS2, Payload::Octets(text.encode_utf16().flat_map(u16::to_be_bytes).collect())),
    };
    Ok(Segments { dcs, parts: split_payload(payload, dcs, reference)? })
}

/// Splits a payload already in its coding (`dcs`: septets for the 7-bit alphabet, UCS-2
/// octets, or 8-bit data) into the user data of one or more SMS, as [`segment`] splits a
/// text: one part without a header if it fits, else parts with a concatenation element. The
/// SMS center's side, for a message stored as submitted.
pub fn split_payload(payload: Payload, dcs: DataCoding, reference: Reference) -> Result<Vec<UserData>, SegmentError> {
    split_payload_leaving(payload, dcs, reference, 0)
}

/// [`split_payload`], leaving `room` octets of user data header free in every part (a lone
/// part too) for elements the sender adds afterwards, such as the SMS center's authentication
/// element ([`crate::auth`]).
pub fn split_payload_leaving(
    payload: Payload,
    dcs: DataCoding,
    reference: Reference,
    room: usize,
) -> Result<Vec<UserData>, SegmentError> {
    let (single_septets, single_units, single_octets) = match room {
        0 => (GSM7_SINGLE, UCS2_SINGLE, OCTETS_SINGLE),
        room => capacity(1 + room),
    };
    let (per_septets, per_units, per_octets) = capacity(1 + reference.element_octets() + room);
    let payloads: Vec<Payload> = match (payload, dcs.alphabet()) {
        (Payload::Septets(septets), _) => split(&septets, single_septets, per_septets, |s| s == gsm7::ESC)
            .into_iter()
            .map(|r| Payload::Septets(septets[r].to_vec()))
            .collect(),
        (Payload::Octets(octets), Alphabet::Ucs2) => {
            // Units as pairs of octets (an odd last octet stays on its own).
            let units: Vec<&[u8]> = octets.chunks(2).collect();
            let opens_pair = |u: &[u8]| u.len() == 2 && (0xD8..0xDC).contains(&u[0]);
            split(&units, single_units, per_units, opens_pair)
                .into_iter()
                .map(|r| Payload::Octets(units[r].concat()))
                .collect()
        }
        (Payload::Octets(octets), _) => split(&octets, single_octets, per_octets, |_| false)
            .into_iter()
            .map(|r| Payload::Octets(octets[r].to_vec()))
            .collect(),
    };
    if payloads.len() == 1 {
        return Ok(payloads.into_iter().map(|payload| UserData { header: None, payload }).collect());
    }
    let total = u8::try_from(payloads.len()).map_err(|_| SegmentError::TooManyParts(payloads.len()))?;
    Ok((1..=total)
        .zip(payloads)
        .map(|(seq, payload)| UserData {
            header: Some(UserDataHeader { elements: vec![InformationElement::Concat(reference.concat(total, seq))] }),
            payload,
        })
        .collect())
}

/// Splits 8-bit `octets` into the user data of one or more SMS, each part's header holding a
/// concatenation element when there are several, and the first part's header also `first`
/// (the command packet identifier of SIM data download goes in the first part only, TS 31.115
/// §4.2). Parts are filled to 140 octets with their headers.
pub fn split_octets(
    octets: &[u8],
    reference: Reference,
    first: &[InformationElement],
) -> Result<Vec<UserData>, SegmentError> {
    let extra: usize = first.iter().map(InformationElement::encoded_len).sum();
    let header = |elements: Vec<InformationElement>| (!elements.is_empty()).then_some(UserDataHeader { elements });
    let single = OCTETS_SINGLE - if first.is_empty() { 0 } else { 1 + extra };
    if octets.len() <= single {
        return Ok(vec![UserData { header: header(first.to_vec()), payload: Payload::Octets(octets.to_vec()) }]);
    }
    let concat_len = InformationElement::Concat(reference.concat(1, 1)).encoded_len();
    let (head, rest) = octets.split_at((OCTETS_SINGLE - 1 - concat_len - extra).min(octets.len()));
    let chunks: Vec<&[u8]> = std::iter::once(head).chain(rest.chunks(OCTETS_SINGLE - 1 - concat_len)).collect();
    let total = u8::try_from(chunks.len()).map_err(|_| SegmentError::TooManyParts(chunks.len()))?;
    Ok((1..=total)
        .zip(chunks)
        .map(|(seq, chunk)| {
            let mut elements = vec![InformationElement::Concat(reference.concat(total, seq))];
            if seq == 1 {
                elements.extend_from_slice(first);
            }
            UserData { header: header(elements), payload: Payload::Octets(chunk.to_vec()) }
        })
        .collect())
}

/// The ranges of `units` that make the parts: all of it if it fits `single`, else greedy runs
/// of at most `per_part`, where a unit for which `opens_pair` holds stays with the next one.
fn split<T: Copy>(units: &[T], single: usize, per_part: usize, opens_pair: impl Fn(T) -> bool) -> Vec<Range<usize>> {
    // A text that fits one SMS is one run of any length up to `single`.
    let per_part = if units.len() <= single { single } else { per_part };
    let mut parts = Vec::with_capacity(units.len().div_ceil(per_part));
    let (mut start, mut at) = (0, 0);
    while at < units.len() {
        let width = if opens_pair(units[at]) && at + 1 < units.len() { 2 } else { 1 };
        if at + width - start > per_part {
            parts.push(start..at);
            start = at;
        }
        at += width;
    }
    parts.push(start..units.len());
    parts
}

/// A message some of whose parts have arrived.
struct Pending {
    /// Index `seq - 1`; a part keeps its own data coding, since nothing forces a sender to
    /// use one for all.
    parts: Vec<Option<(DataCoding, Payload)>>,
    received: usize,
    /// When a part last arrived, in [`Reassembler`] ticks: the least recent is dropped first.
    touched: u64,
}

/// (originator, 16-bit reference?, reference, total parts). The reference width is part of
/// the key because 8-bit reference 5 and 16-bit reference 5 are different messages.
type Key = (String, bool, u16, u8);

/// Puts received parts back together, the handset's side of [`segment`]. Parts may come in any
/// order and more than once (an SMS center retries when an acknowledgement is lost). Parts of
/// a message that never completes are held until `max_pending` newer messages push them out,
/// so a sender cannot make the handset hold unbounded memory.
pub struct Reassembler {
    pending: HashMap<Key, Pending>,
    max_pending: usize,
    tick: u64,
}

impl Reassembler {
    /// Holds at most `max_pending` incomplete messages (at least one).
    pub fn new(max_pending: usize) -> Reassembler {
        Reassembler { pending: HashMap::new(), max_pending: max_pending.max(1), tick: 0 }
    }

    /// Incomplete messages held now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// [`Reassembler::receive`] for a decoded SMS-DELIVER.
    pub fn receive_deliver(&mut self, deliver: &SmsDeliver) -> Option<String> {
        self.receive(&deliver.originator.value, &deliver.user_data, deliver.dcs)
    }

    /// Takes one received SMS; returns the whole text once every part is in: at once for an
    /// unsegmented SMS, `None` for a part that leaves the message incomplete or was seen
    /// before. A concatenation element with no parts, or a sequence number of 0 or beyond the
    /// total, is ignored as TS 23.040 §9.2.3.24.1 says, so that SMS reads on its own.
    pub fn receive(&mut self, originator: &str, user_data: &UserData, dcs: DataCoding) -> Option<String> {
        self.receive_parts(originator, user_data, dcs).map(|parts| join(parts.into_iter()))
    }

    /// [`Reassembler::receive`] for 8-bit data (SIM data download): the payload's octets once
    /// every part is in (septets count as one octet each).
    pub fn receive_octets(&mut self, originator: &str, user_data: &UserData, dcs: DataCoding) -> Option<Vec<u8>> {
        let parts = self.receive_parts(originator, user_data, dcs)?;
        let mut out = Vec::new();
        for (_, payload) in parts {
            match payload {
                Payload::Octets(o) | Payload::Septets(o) => out.extend(o),
            }
        }
        Some(out)
    }

    /// The parts of the message in order, once every part is in.
    fn receive_parts(
        &mut self,
        originator: &str,
        user_data: &UserData,
        dcs: DataCoding,
    ) -> Option<Vec<(DataCoding, Payload)>> {
        let concat = user_data.header.as_ref().and_then(UserDataHeader::concat);
        let Some(c) = concat.filter(|c| c.total > 1 && c.seq >= 1 && c.seq <= c.total) else {
            return Some(vec![(dcs, user_data.payload.clone())]);
        };
        self.tick += 1;
        let key = (originator.to_owned(), c.wide, c.reference, c.total);
        if !self.pending.contains_key(&key) && self.pending.len() >= self.max_pending {
            let oldest = self.pending.iter().min_by_key(|(_, p)| p.touched).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.pending.remove(&oldest);
            }
        }
        let entry = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            parts: vec![None; c.total.into()],
            received: 0,
            touched: 0,
        });
        let slot = &mut entry.parts[usize::from(c.seq) - 1];
        if slot.is_some() {
            return None;
        }
        *slot = Some((dcs, user_data.payload.clone()));
        entry.received += 1;
        entry.touched = self.tick;
        if entry.received < entry.parts.len() {
            return None;
        }
        let done = self.pending.remove(&key)?;
        Some(done.parts.into_iter().flatten().collect())
    }
}

/// The text of the parts in order. Runs of parts in one alphabet are decoded together, so that
/// an escape sequence or surrogate pair another sender did cut still reads whole.
fn join(parts: impl Iterator<Item = (DataCoding, Payload)>) -> String {
    let text = |dcs: DataCoding, payload: Payload| UserData { header: None, payload }.text(dcs);
    let mut out = String::new();
    let mut run: Option<(DataCoding, Payload)> = None;
    for (dcs, payload) in parts {
        let leftover = match &mut run {
            Some((d, acc)) if d.alphabet() == dcs.alphabet() => append(acc, payload),
            _ => Some(payload),
        };
        if let Some(payload) = leftover
            && let Some((d, acc)) = run.replace((dcs, payload))
        {
            out.push_str(&text(d, acc));
        }
    }
    if let Some((d, acc)) = run {
        out.push_str(&text(d, acc));
    }
    out
}

/// Appends `next` to `acc` if both are septets or both octets; otherwise hands it back.
fn append(acc: &mut Payload, next: Payload) -> Option<Payload> {
    match (acc, next) {
        (Payload::Septets(a), Payload::Septets(b)) => a.extend(b),
        (Payload::Octets(a), Payload::Octets(b)) => a.extend(b),
        (_, next) => return Some(next),
    }
    None
}
