//! The in-memory portability index: number ranges plus ported-number exceptions. No I/O.
//!
//! # What it answers
//!
//! For a number: its serving operator and that operator's routing number. If the number has an
//! exception (it is ported), the exception's operator; otherwise the holder of the longest range
//! prefix that matches it; otherwise nothing (the number belongs to no known range).
//!
//! # Representation
//!
//! - Operators are few, so they are interned as small ids ([`OpId`]) into a table of
//!   (name, routing number). Slots store ids, never strings. The id has 14 bits in a slot, so an
//!   index holds at most 16,384 operators — a country has a handful.
//! - A number is keyed by its digits read as an integer ([`key_of`]). E.164 numbers never start
//!   with 0, so the integer identifies the digit string (no "4790" vs "04790" ambiguity) and fits
//!   in 50 bits (15 digits < 10^15 < 2^50).
//! - Exceptions live in a packed open-addressing hash table (`ported.rs` explains the layout and
//!   its 11.4–20 bytes per ported number, 16 after a bulk build); ranges in flat sorted arrays for longest-prefix match by
//!   one binary search (`ranges.rs`).
//!
//! # Updates
//!
//! Every change of the feed — port, port-back, return — is "number N is now served by operator
//! X" ([`Index::apply`]). The index stores an exception only where X differs from the range
//! holder and deletes it where X is the range holder, so a port-back and a return both drop the
//! exception, the table holds only real exceptions, and applying the same change twice is a
//! no-op (idempotent, as a replica resuming its feed needs). Updates are in place: no delta
//! buffer, no periodic merge, no stop-the-world except the rare growth step (a rehash of the
//! whole table; bootstrap with [`Index::reserve`] to avoid it).
//!
//! # Names below a prefix
//!
//! ENUM needs to know whether a digit string is the start of some number the index serves
//! ([`Index::serves_below`]): a range holds every number of 8 to 15 digits under its prefix, and
//! a ported number outside every range (an "orphan", rare: its range was withdrawn or never
//! imported) adds itself. Orphans are kept apart in a sorted set for that question, since the
//! hash table cannot answer it.
//!
//! # Memory accounting
//!
//! [`Index::memory_bytes`] counts heap bytes held by the index: the exact capacity of the slot
//! table and range arrays, and the hash maps of prefixes and operator names estimated from their
//! capacity (hashbrown: one control byte per bucket plus the entry). The operator table is counted
//! by its strings' lengths. At ten million exceptions the slot table is >99.9% of the total.

use std::collections::{BTreeSet, HashMap};

use numport_core::{Msisdn, OperatorName, Prefix, RoutingNumber};

use crate::ported::{FOUND, KEY_MASK, MAX_OPERATORS, Ported};
use crate::ranges::{NONE, POW10, Ranges};

/// An operator's id inside one index: its position in the operator table.
pub type OpId = u16;

/// An operator as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: OperatorName,
    pub routing_number: RoutingNumber,
}

/// The hot-path answer: who serves the number, and whether that is by a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub operator: OpId,
    /// The number has an exception record (served by someone other than its range holder).
    pub ported: bool,
}

/// The full answer for a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    pub operator: OpId,
    pub name: &'a OperatorName,
    pub routing_number: &'a RoutingNumber,
    pub ported: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("unknown operator {0:?}")]
    UnknownOperator(String),
    #[error("operator {0:?} listed twice")]
    DuplicateOperator(String),
    #[error("operator id {0} is not in the operator table")]
    UnknownOperatorId(OpId),
    #[error("at most {MAX_OPERATORS} operators")]
    TooManyOperators,
    #[error("{0} is not the key of an E.164 number (8 to 15 digits, no leading zero)")]
    BadKey(u64),
}

/// Smallest and largest key of an E.164 number (8 to 15 digits, no leading 0).
const MIN_KEY: u64 = POW10[7];
const MAX_KEY: u64 = POW10[15] - 1;
const _: () = assert!(MAX_KEY <= KEY_MASK);

/// The integer key of a number: its digits read in base 10.
pub fn key_of(msisdn: &Msisdn) -> u64 {
    msisdn.as_str().bytes().fold(0u64, |k, b| k * 10 + (b - b'0') as u64)
}

fn check_key(key: u64) -> Result<u64, IndexError> {
    if (MIN_KEY..=MAX_KEY).contains(&key) { Ok(key) } else { Err(IndexError::BadKey(key)) }
}

/// The portability index. See the module documentation.
pub struct Index {
    operators: Vec<Operator>,
    by_name: HashMap<OperatorName, OpId>,
    ranges: Ranges,
    ported: Ported,
    /// The keys of exceptions that lie in no range.
    orphans: BTreeSet<u64>,
}

impl Index {
    /// An index with these operators (ids in the given order) and ranges, and no exceptions.
    pub fn new(
        operators: impl IntoIterator<Item = Operator>,
        ranges: impl IntoIterator<Item = (Prefix, OperatorName)>,
    ) -> Result<Index, IndexError> {
        let mut index = Index {
            operators: Vec::new(),
            by_name: HashMap::new(),
            ranges: Ranges::new(),
            ported: Ported::with_capacity(0),
            orphans: BTreeSet::new(),
        };
        for op in operators {
            index.add_operator(op)?;
        }
        for (prefix, holder) in ranges {
            let id = index.op_id(&holder)?;
            let (len, value) = prefix_key(&prefix);
            index.ranges.set(len, value, Some(id));
        }
        index.ranges.rebuild();
        Ok(index)
    }

    /// Bootstrap from a snapshot: [`Index::new`], then every `(number, serving operator)` record.
    pub fn from_snapshot(
        operators: impl IntoIterator<Item = Operator>,
        ranges: impl IntoIterator<Item = (Prefix, OperatorName)>,
        records: impl IntoIterator<Item = (Msisdn, OperatorName)>,
    ) -> Result<Index, IndexError> {
        let mut index = Index::new(operators, ranges)?;
        let records = records.into_iter();
        index.reserve(records.size_hint().0);
        for (msisdn, op) in records {
            let id = index.op_id(&op)?;
            index.set_serving_id(key_of(&msisdn), id)?;
        }
        Ok(index)
    }

    /// Registers another operator; returns its id. Names are unique.
    pub fn add_operator(&mut self, op: Operator) -> Result<OpId, IndexError> {
        if self.by_name.contains_key(&op.name) {
            return Err(IndexError::DuplicateOperator(op.name.to_string()));
        }
        if self.operators.len() >= MAX_OPERATORS {
            return Err(IndexError::TooManyOperators);
        }
        let id = self.operators.len() as OpId;
        self.by_name.insert(op.name.clone(), id);
        self.operators.push(op);
        Ok(id)
    }

    pub fn op_id(&self, name: &OperatorName) -> Result<OpId, IndexError> {
        self.by_name.get(name).copied().ok_or_else(|| IndexError::UnknownOperator(name.to_string()))
    }

    pub fn operator(&self, id: OpId) -> Option<&Operator> {
        self.operators.get(id as usize)
    }

    pub fn operators(&self) -> &[Operator] {
        &self.operators
    }

    /// Sets (`Some`) or removes (`None`) the holder of a number range. Existing exceptions are
    /// kept as they are.
    pub fn set_range(&mut self, prefix: &Prefix, holder: Option<&OperatorName>) -> Result<(), IndexError> {
        let id = holder.map(|h| self.op_id(h)).transpose()?;
        let (len, value) = prefix_key(prefix);
        self.ranges.set(len, value, id);
        self.ranges.rebuild();
        let ranges = &self.ranges;
        self.orphans = self.ported.iter().map(|(key, _)| key).filter(|&key| ranges.holder(key) == NONE).collect();
        Ok(())
    }

    /// Every range as (prefix digits, prefix value, holder), in no particular order.
    pub fn ranges(&self) -> impl Iterator<Item = (u8, u64, OpId)> + '_ {
        self.ranges.iter().map(|((len, value), op)| (len, value, op))
    }

    /// Every range as (prefix, holder name), sorted by prefix (for writing a snapshot).
    pub fn range_list(&self) -> Vec<(Prefix, OperatorName)> {
        let mut list: Vec<(Prefix, OperatorName)> = self
            .ranges()
            .filter_map(|(len, value, op)| {
                let prefix = format!("{value:0width$}", width = len as usize).parse().ok()?;
                Some((prefix, self.operators.get(op as usize)?.name.clone()))
            })
            .collect();
        list.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        list
    }

    /// Number of ranges (prefixes with a holder).
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// Makes room for `additional` more exceptions, so that inserting them never rehashes.
    pub fn reserve(&mut self, additional: usize) {
        self.ported.reserve(additional);
    }

    /// Applies one change of the feed (port, port-back or return): `msisdn` is now served by
    /// `serving`. Returns whether the number is now recorded as ported.
    pub fn apply(&mut self, msisdn: &Msisdn, serving: &OperatorName) -> Result<bool, IndexError> {
        let id = self.op_id(serving)?;
        self.set_serving_id(key_of(msisdn), id)
    }

    /// [`Index::apply`] by key and operator id. Returns whether the number is now ported.
    pub fn set_serving_id(&mut self, key: u64, op: OpId) -> Result<bool, IndexError> {
        let key = check_key(key)?;
        if op as usize >= self.operators.len() {
            return Err(IndexError::UnknownOperatorId(op));
        }
        let holder = self.ranges.holder(key);
        if holder == op {
            self.ported.remove(key);
            Ok(false)
        } else {
            self.ported.insert(key, op);
            if holder == NONE {
                self.orphans.insert(key);
            }
            Ok(true)
        }
    }

    /// Who serves `msisdn` now, with the routing number to reach it; `None` when the number is
    /// in no known range and not ported.
    pub fn lookup(&self, msisdn: &Msisdn) -> Option<Route<'_>> {
        self.lookup_digits(key_of(msisdn)).map(|hit| self.route(hit))
    }

    /// Resolves a [`Hit`] to names and routing number.
    pub fn route(&self, hit: Hit) -> Route<'_> {
        let op = &self.operators[hit.operator as usize];
        Route { operator: hit.operator, name: &op.name, routing_number: &op.routing_number, ported: hit.ported }
    }

    /// The hot path: lookup by key ([`key_of`]). Keys that are no E.164 number answer `None`.
    #[inline]
    pub fn lookup_digits(&self, key: u64) -> Option<Hit> {
        if !(MIN_KEY..=MAX_KEY).contains(&key) {
            return None;
        }
        // The range search touches only cache-resident arrays; doing it unconditionally lets the
        // CPU overlap it with the table's cache miss.
        let holder = self.ranges.holder(key);
        finish(self.ported.get_code(key), holder)
    }

    /// Many lookups at once: `out[i]` answers `keys[i]`. While answering key `i` it prefetches
    /// the table line of key `i + 16`, so that many cache misses are in flight at any time. A
    /// loop of single lookups overlaps only the two or three misses whose lookups fit in the
    /// CPU's reorder window; this is why batching is several times faster (`numport bench
    /// lookup` measures both; a DNS server receiving queries with `recvmmsg` or an HTTP batch
    /// request should use it).
    pub fn lookup_batch(&self, keys: &[u64], out: &mut [Option<Hit>]) {
        const AHEAD: usize = 16;
        assert_eq!(keys.len(), out.len(), "one answer per key");
        for &k in keys.iter().take(AHEAD) {
            self.ported.prefetch(k & KEY_MASK);
        }
        for (i, (o, &k)) in out.iter_mut().zip(keys).enumerate() {
            if let Some(&next) = keys.get(i + AHEAD) {
                self.ported.prefetch(next & KEY_MASK);
            }
            *o = self.lookup_digits(k);
        }
    }

    /// Whether the index serves some number that starts with `digits` and is longer (the
    /// question an ENUM server asks of a name above the numbers' names). `false` for anything
    /// but 1 to 14 ASCII digits without a leading zero.
    pub fn serves_below(&self, digits: &str) -> bool {
        let k = digits.len() as u32;
        if !(1..15).contains(&k) || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
            return false;
        }
        let prefix = digits.bytes().fold(0u64, |p, b| p * 10 + (b - b'0') as u64);
        (k.max(7) + 1..=15).any(|len| {
            let scale = POW10[(len - k) as usize];
            let (lo, hi) = (prefix * scale, (prefix + 1) * scale);
            self.ranges.holds_any(len, lo, hi) || self.orphans.range(lo..hi).next().is_some()
        })
    }

    /// The range holder of `key`, ignoring exceptions.
    pub fn range_holder(&self, key: u64) -> Option<OpId> {
        let h = self.ranges.holder(key);
        (h != NONE).then_some(h)
    }

    /// Number of ported-number exceptions.
    pub fn len(&self) -> usize {
        self.ported.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ported.len() == 0
    }

    /// Every exception as (key, serving operator), in table order (for writing a snapshot).
    pub fn ported(&self) -> impl Iterator<Item = (u64, OpId)> + '_ {
        self.ported.iter()
    }

    /// Heap bytes held by the index structures (see "Memory accounting" above).
    pub fn memory_bytes(&self) -> usize {
        let ops: usize = self.operators.iter().map(|o| o.name.as_str().len() + o.routing_number.as_str().len()).sum();
        let names = (self.by_name.capacity() * 8 / 7) * (size_of::<(OperatorName, OpId)>() + 1);
        // A B-tree node holds up to 11 keys; count a node per 6 (half full) at ~100 bytes.
        let orphans = self.orphans.len().div_ceil(6) * 100;
        self.ported.heap_bytes()
            + self.ranges.heap_bytes()
            + orphans
            + self.operators.capacity() * size_of::<Operator>()
            + 2 * ops
            + names
    }
}

/// Combines the exception table's code and the range holder without a branch on either.
#[inline(always)]
fn finish(code: u32, holder: u16) -> Option<Hit> {
    let ported = code & FOUND != 0;
    let operator = if ported { code as u16 } else { holder };
    (operator != NONE).then_some(Hit { operator, ported })
}

fn prefix_key(prefix: &Prefix) -> (u8, u64) {
    let s = prefix.as_str();
    (s.len() as u8, s.bytes().fold(0u64, |k, b| k * 10 + (b - b'0') as u64))
}
