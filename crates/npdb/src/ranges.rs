//! Number ranges, flattened for longest-prefix match by one binary search.
//!
//! # Why this layout
//!
//! A prefix `p` of `d` digits covers, among numbers of `L ≥ d` digits, the interval
//! `[p·10^(L−d), (p+1)·10^(L−d))`. Prefixes nest or are disjoint, so for each number length the
//! intervals cut the number line into pieces each owned by the longest covering prefix (or by
//! nobody). Those pieces, for all lengths 1‥15, go into one sorted array of starts keyed by
//! `(length << 50) | value`, with a parallel array of owners. Longest-prefix match is then a
//! binary search over a few thousand `u64`s that stay in L1/L2 cache, instead of up to 15 hash
//! probes, each needing a division by a power of ten.
//!
//! The source of truth is the prefix map; the flat arrays are rebuilt from it on every range
//! change (ranges change a few times a year; a rebuild over thousands of prefixes takes
//! milliseconds).

use std::collections::HashMap;

use crate::ported::KEY_BITS;

/// No operator holds the range.
pub(crate) const NONE: u16 = u16::MAX;

pub(crate) const POW10: [u64; 17] = {
    let mut t = [1u64; 17];
    let mut i = 1;
    while i < 17 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// Number of decimal digits of `key` (0 for 0).
#[inline(always)]
pub(crate) fn digits(key: u64) -> u32 {
    let t = ((64 - (key | 1).leading_zeros()) * 1233) >> 12;
    t + (key >= POW10[t as usize]) as u32
}

#[derive(Default)]
pub(crate) struct Ranges {
    /// (digits of the prefix, value of the prefix) → holder.
    prefixes: HashMap<(u8, u64), u16>,
    /// Sorted starts of the flattened pieces, `(length << 50) | value`; `starts[0] == 0`.
    starts: Vec<u64>,
    /// Owner of each piece, or `NONE`.
    owners: Vec<u16>,
}

impl Ranges {
    pub(crate) fn new() -> Ranges {
        let mut r = Ranges::default();
        r.rebuild();
        r
    }

    pub(crate) fn len(&self) -> usize {
        self.prefixes.len()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        // hashbrown: one control byte per bucket plus the entry; buckets ≈ capacity · 8/7.
        let map = (self.prefixes.capacity() * 8 / 7) * (size_of::<((u8, u64), u16)>() + 1);
        map + self.starts.capacity() * 8 + self.owners.capacity() * 2
    }

    /// Sets (`Some`) or removes (`None`) the holder of the range `prefix` (`len` digits).
    pub(crate) fn set(&mut self, len: u8, prefix: u64, holder: Option<u16>) {
        match holder {
            Some(op) => self.prefixes.insert((len, prefix), op),
            None => self.prefixes.remove(&(len, prefix)),
        };
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = ((u8, u64), u16)> + '_ {
        self.prefixes.iter().map(|(&k, &v)| (k, v))
    }

    /// Longest-prefix match by the prefix map: the slow reference, used to build the flat arrays.
    fn slow_holder(&self, len: u32, value: u64) -> u16 {
        if value >= POW10[len as usize] {
            return NONE;
        }
        for d in (1..=len).rev() {
            let p = value / POW10[(len - d) as usize];
            if let Some(&op) = self.prefixes.get(&(d as u8, p)) {
                return op;
            }
        }
        NONE
    }

    /// Recomputes the flat arrays from the prefix map. Call after a batch of [`Ranges::set`].
    pub(crate) fn rebuild(&mut self) {
        let mut starts = vec![0u64];
        let mut owners = vec![NONE];
        let mut bounds = Vec::new();
        for len in 1..=15u32 {
            bounds.clear();
            for &(d, p) in self.prefixes.keys() {
                let d = d as u32;
                // A prefix longer than the number, or one with a leading zero, matches nothing.
                if d > len || p < POW10[d as usize - 1] {
                    continue;
                }
                let scale = POW10[(len - d) as usize];
                bounds.push(p * scale);
                bounds.push((p + 1) * scale);
            }
            bounds.sort_unstable();
            bounds.dedup();
            for &b in &bounds {
                let owner = self.slow_holder(len, b);
                if *owners.last().expect("sentinel") != owner {
                    starts.push((len as u64) << KEY_BITS | b);
                    owners.push(owner);
                }
            }
        }
        starts.shrink_to_fit();
        owners.shrink_to_fit();
        self.starts = starts;
        self.owners = owners;
    }

    /// Whether some range holds a number of `len` digits in `lo..hi` (values of `len` digits).
    pub(crate) fn holds_any(&self, len: u32, lo: u64, hi: u64) -> bool {
        let (lo, hi) = ((len as u64) << KEY_BITS | lo, (len as u64) << KEY_BITS | hi);
        // The piece holding `lo`, then every piece that starts before `hi`.
        let first = self.starts.partition_point(|&s| s <= lo) - 1;
        let last = self.starts.partition_point(|&s| s < hi);
        self.owners[first..last].iter().any(|&o| o != NONE)
    }

    /// The range holder of the number `key` (digits as an integer), or `NONE`.
    #[inline(always)]
    pub(crate) fn holder(&self, key: u64) -> u16 {
        let c = (digits(key) as u64) << KEY_BITS | key;
        let i = self.starts.partition_point(|&s| s <= c);
        // starts[0] == 0 ≤ c, so i ≥ 1.
        self.owners[i - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_count() {
        for k in [1u64, 9, 10, 11, 99, 100, 999_999_999, 1_000_000_000, 999_999_999_999_999, POW10[15]] {
            assert_eq!(digits(k) as usize, k.to_string().len(), "{k}");
        }
        for (i, &p) in POW10.iter().enumerate().take(16).skip(1) {
            assert_eq!(digits(p - 1), i as u32);
            assert_eq!(digits(p), i as u32 + 1);
        }
    }

    #[test]
    fn nested_prefixes() {
        let mut r = Ranges::new();
        r.set(2, 47, Some(0));
        r.set(4, 4790, Some(1));
        r.set(6, 479012, Some(2));
        r.set(3, 123, Some(3));
        r.set(2, 5, Some(4)); // "05": leading zero, matches no number
        r.rebuild();
        assert_eq!(r.holder(4712345678), 0);
        assert_eq!(r.holder(4790123456), 2);
        assert_eq!(r.holder(4790133456), 1);
        assert_eq!(r.holder(4791000000), 0);
        assert_eq!(r.holder(4800000000), NONE);
        assert_eq!(r.holder(46999999999), NONE);
        assert_eq!(r.holder(12300000), 3);
        assert_eq!(r.holder(123999999999999), 3);
        assert_eq!(r.holder(1240000000), NONE);
        assert_eq!(r.holder(50000000), NONE);
        // Every length is its own block: a 4-digit "4790" answers as a 4-digit number.
        assert_eq!(r.holder(4790), 1);
        assert_eq!(r.holder(47), 0);
        assert_eq!(r.holder(4), NONE);
        // Pieces: 4790 (and the 47 around it) hold ten-digit numbers; 48 holds none.
        assert!(r.holds_any(10, 4_790_000_000, 4_791_000_000));
        assert!(r.holds_any(10, 4_700_000_000, 4_710_000_000));
        assert!(!r.holds_any(10, 4_800_000_000, 4_900_000_000));
        assert!(r.holds_any(10, 4_000_000_000, 5_000_000_000), "47 lies inside");
        assert!(r.holds_any(8, 12_399_999, 12_400_000));
        assert!(!r.holds_any(8, 12_400_000, 12_500_000));
    }
}
