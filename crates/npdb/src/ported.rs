//! The ported-number exceptions: an open-addressing hash table of packed 8-byte slots.
//!
//! # Why this layout
//!
//! Ten million ported numbers take 114–200 MB, far more than the CPU caches, so a random
//! lookup costs what its cache misses cost. A sorted array with binary search pays ~24 dependent
//! misses per lookup; an Eytzinger layout still pays several. This table pays about one:
//!
//! - **One slot is one `u64`**: the number's digits as an integer in the low 50 bits
//!   (10^15 < 2^50; E.164 numbers never start with 0, so the integer identifies the digit string
//!   without a separate length) and the serving operator's id in the high 14 bits. The key and
//!   the answer arrive in the same load; there is no parallel array to miss in a second time.
//! - **Linear probing over 64-byte-aligned lines of 8 slots**: at load ≤ 0.7 a probe sequence
//!   usually ends inside the line of its home slot, so a hit *or a miss* (a never-ported number,
//!   half of real traffic) costs one cache line. Within the line the slots are compared without
//!   branches (see [`Ported::get_code`]).
//! - **Home slot = fast range reduction of a Fibonacci hash** (`(k·φ·2^64 mod 2^64) · slots >> 64`):
//!   numbers are ported in dense runs of a range, and the multiplication scatters neighbours
//!   across the table; any slot count works, so the table is sized to the load wanted instead of the
//!   next power of two.
//! - **Empty slot = 0** (no E.164 number is 0), so a fresh table is one zeroed allocation, and
//!   **deletion shifts the following entries back** (no tombstones, so a table under a steady
//!   stream of ports and returns never degrades or needs a rebuild).
//!
//! Memory against speed: a bulk build sizes the table to load 0.5, 8 / 0.5 = 16 bytes per ported
//! number. Load 0.7 would take 11.4 bytes, but a never-ported number's probe then leaves its line
//! far more often, and batched lookups over ten million numbers run markedly slower
//! (docs/BENCHMARKS.md, lookup). As ports accumulate the load rises; past 0.7 the table grows to
//! load 0.4 (20 bytes per number). So the table stays between 11.4 and 20 bytes per ported
//! number, inside F2's budget of 24 (docs/SPEC.md).

/// Bits of a slot holding the number.
pub(crate) const KEY_BITS: u32 = 50;
pub(crate) const KEY_MASK: u64 = (1 << KEY_BITS) - 1;
/// Operator ids must fit the remaining 14 bits.
pub(crate) const MAX_OPERATORS: usize = 1 << (64 - KEY_BITS);

const SLOTS_PER_LINE: usize = 8;
/// [`Ported::get_code`]: the key was found (the low 16 bits are its operator), or is absent.
pub(crate) const FOUND: u32 = 1 << 16;
pub(crate) const ABSENT: u32 = 1 << 17;
/// Load factor a bulk build or a growth step aims at, in tenths.
const BUILD_LOAD_TENTHS: usize = 5;
/// Load factor above which the table grows, in tenths.
const MAX_LOAD_TENTHS: usize = 7;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u64; SLOTS_PER_LINE]);

const EMPTY_LINE: Line = Line([0; SLOTS_PER_LINE]);

pub(crate) struct Ported {
    lines: Vec<Line>,
    slots: usize,
    len: usize,
}

#[inline(always)]
fn hash(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn lines_for(entries: usize) -> usize {
    let slots = (entries * 10).div_ceil(BUILD_LOAD_TENTHS).max(4 * SLOTS_PER_LINE);
    slots.div_ceil(SLOTS_PER_LINE)
}

/// A zeroed table of `n` lines, backed by transparent huge pages where the kernel offers them.
///
/// With 4 KiB pages a 100 MB table spans 25,000 pages, far beyond the TLB, so nearly every
/// lookup would pay a page walk (itself often a cache miss) on top of its data miss; with 2 MiB
/// pages the whole table fits the TLB. The hint must precede the first touch, hence allocate,
/// advise, then zero. `madvise` only advises the kernel on memory this table owns; it is no I/O.
fn zeroed_lines(n: usize) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::with_capacity(n);
    #[cfg(target_os = "linux")]
    if n * size_of::<Line>() >= 4 << 20 {
        // SAFETY: the range lies inside the allocation just made, which nothing else uses;
        // MADV_HUGEPAGE changes no contents and failure is harmless.
        // madvise wants a page-aligned start: advise the whole pages inside the allocation.
        let start = lines.as_mut_ptr() as usize;
        let end = start + n * size_of::<Line>();
        let aligned = start.next_multiple_of(4096);
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, end - aligned, libc::MADV_HUGEPAGE);
        }
    }
    lines.resize(n, EMPTY_LINE);
    lines
}

impl Ported {
    pub(crate) fn with_capacity(entries: usize) -> Ported {
        let lines = zeroed_lines(lines_for(entries));
        let slots = lines.len() * SLOTS_PER_LINE;
        Ported { lines, slots, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.lines.capacity() * size_of::<Line>()
    }

    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        ((hash(key) as u128 * self.slots as u128) >> 64) as usize
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> u64 {
        self.lines[i / SLOTS_PER_LINE].0[i % SLOTS_PER_LINE]
    }

    #[inline(always)]
    fn set_slot(&mut self, i: usize, v: u64) {
        self.lines[i / SLOTS_PER_LINE].0[i % SLOTS_PER_LINE] = v;
    }

    #[inline(always)]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots { 0 } else { i + 1 }
    }

    /// The operator recorded for `key` (1 ≤ key < 2^50).
    #[cfg(test)]
    pub(crate) fn get(&self, key: u64) -> Option<u16> {
        let code = self.get_code(key);
        (code & FOUND != 0).then_some(code as u16)
    }

    /// [`Ported::get`] as a code for branch-free callers: `FOUND | op` or `ABSENT`.
    ///
    /// The slots from the home slot to the end of its cache line are all compared, and the first
    /// match or empty slot is picked with conditional moves, not branches. A branch on the loaded
    /// data would be mispredicted on about every other lookup (hit or miss is a coin toss for the
    /// CPU), and each misprediction discards the following lookups the CPU had started, so their
    /// cache misses would no longer overlap. Only a probe run leaving the line takes a branch.
    #[inline(always)]
    pub(crate) fn get_code(&self, key: u64) -> u32 {
        let i = self.home(key);
        let line = &self.lines[i / SLOTS_PER_LINE].0;
        let start = i % SLOTS_PER_LINE;
        let mut code = 0u32;
        for p in (0..SLOTS_PER_LINE).rev() {
            let s = line[p];
            let here = if s & KEY_MASK == key {
                FOUND | (s >> KEY_BITS) as u32
            } else if s == 0 {
                ABSENT
            } else {
                code
            };
            code = if p >= start { here } else { code };
        }
        if code == 0 {
            let next = self.next((i / SLOTS_PER_LINE + 1) * SLOTS_PER_LINE - 1);
            code = match self.probe_from(key, next, self.slot(next)) {
                Some(op) => FOUND | op as u32,
                None => ABSENT,
            };
        }
        code
    }

    /// Asks the CPU to fetch the cache line where `key`'s probe starts, without waiting for it.
    #[inline(always)]
    pub(crate) fn prefetch(&self, key: u64) {
        let line = &self.lines[self.home(key) / SLOTS_PER_LINE];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // SAFETY: SSE is part of the x86_64 baseline, and a prefetch never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>((line as *const Line).cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = line;
    }

    /// Continues a probe at slot `i`, whose content `s` the caller already loaded.
    #[inline(always)]
    fn probe_from(&self, key: u64, mut i: usize, mut s: u64) -> Option<u16> {
        loop {
            if s & KEY_MASK == key {
                return Some((s >> KEY_BITS) as u16);
            }
            if s == 0 {
                return None;
            }
            i = self.next(i);
            s = self.slot(i);
        }
    }

    fn find_slot(&self, key: u64) -> Result<usize, usize> {
        let mut i = self.home(key);
        loop {
            let s = self.slot(i);
            if s == 0 {
                return Err(i);
            }
            if s & KEY_MASK == key {
                return Ok(i);
            }
            i = self.next(i);
        }
    }

    /// Records `key → op`, replacing an earlier record. Returns whether the key was new.
    pub(crate) fn insert(&mut self, key: u64, op: u16) -> bool {
        debug_assert!(key != 0 && key <= KEY_MASK && (op as usize) < MAX_OPERATORS);
        let packed = key | (op as u64) << KEY_BITS;
        match self.find_slot(key) {
            Ok(i) => {
                self.set_slot(i, packed);
                false
            }
            Err(i) => {
                if (self.len + 1) * 10 > self.slots * MAX_LOAD_TENTHS {
                    self.grow(self.len + self.len / 4 + 1);
                    let i = self.find_slot(key).expect_err("key absent before growth");
                    self.set_slot(i, packed);
                } else {
                    self.set_slot(i, packed);
                }
                self.len += 1;
                true
            }
        }
    }

    /// Makes room for `additional` more entries without growing on the way.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let want = self.len + additional;
        if want * 10 > self.slots * MAX_LOAD_TENTHS {
            self.grow(want);
        }
    }

    /// Deletes `key`'s record, shifting back the entries of its probe run so that no tombstone is
    /// left. Returns whether there was one.
    pub(crate) fn remove(&mut self, key: u64) -> bool {
        let Ok(mut hole) = self.find_slot(key) else { return false };
        let mut j = hole;
        loop {
            j = self.next(j);
            let s = self.slot(j);
            if s == 0 {
                break;
            }
            let h = self.home(s & KEY_MASK);
            // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j { hole < h && h <= j } else { hole < h || h <= j };
            if !stays {
                self.set_slot(hole, s);
                hole = j;
            }
        }
        self.set_slot(hole, 0);
        self.len -= 1;
        true
    }

    fn grow(&mut self, entries: usize) {
        let old = std::mem::replace(&mut self.lines, zeroed_lines(lines_for(entries)));
        self.slots = self.lines.len() * SLOTS_PER_LINE;
        for line in &old {
            for &s in &line.0 {
                if s != 0 {
                    let i = self.find_slot(s & KEY_MASK).expect_err("keys are unique");
                    self.set_slot(i, s);
                }
            }
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u16)> + '_ {
        self.lines.iter().flat_map(|l| l.0).filter(|&s| s != 0).map(|s| (s & KEY_MASK, (s >> KEY_BITS) as u16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn churn_matches_a_hashmap() {
        // A small key space and a table that starts tiny: growth, wrap-around and back-shifting
        // deletion are all exercised.
        let mut t = Ported::with_capacity(0);
        let mut m: HashMap<u64, u16> = HashMap::new();
        let mut x = 12345u64;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = 10_000_000 + x % 3000;
            if x.is_multiple_of(3) {
                assert_eq!(t.remove(key), m.remove(&key).is_some());
            } else {
                let op = (step % 7) as u16;
                assert_eq!(t.insert(key, op), m.insert(key, op).is_none());
            }
            assert_eq!(t.len(), m.len());
        }
        for k in 10_000_000..10_003_000 {
            assert_eq!(t.get(k), m.get(&k).copied());
        }
        let mut all: Vec<_> = t.iter().collect();
        all.sort_unstable();
        let mut want: Vec<_> = m.into_iter().collect();
        want.sort_unstable();
        assert_eq!(all, want);
    }
}
