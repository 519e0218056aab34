//! `numport bench lookup`: build an index of `n` ported numbers and time lookups on one core.
//!
//! The data set: three operators; five 4-digit ranges of 11-digit numbers (10^7 numbers each)
//! plus one nested 5-digit range, so longest-prefix match is exercised. The `i`-th ported number
//! is a fixed permutation of the ranges' numbers, so the benchmark can regenerate any ported
//! number from `i` without keeping a list that would inflate the memory figures. Each is ported to
//! an operator other than its range holder, so every one is a real exception.
//!
//! Memory is reported two ways: the index's own accounting ([`Index::memory_bytes`]) and the
//! growth of the process's resident set across the build (`/proc/self/statm`), which also
//! catches allocator overhead and anything the accounting misses.
//!
//! Queries are drawn beforehand into a pool of keys (half ported numbers, half never-ported
//! numbers answered by their range holder, in random order), which the timed loop cycles through.

use std::hint::black_box;
use std::time::Instant;

use numport_core::{OperatorName, Prefix, RoutingNumber};
use serde::Serialize;

use crate::{Index, Operator};

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct LookupReport {
    pub numbers: usize,
    pub lookups: usize,
    pub build_s: f64,
    /// Single lookups ([`Index::lookup_digits`]) in a loop, one core.
    pub lookups_per_s: f64,
    /// The same queries through [`Index::lookup_batch`].
    pub batch_lookups_per_s: f64,
    pub memory_bytes: usize,
    /// Index-accounted heap bytes / ported numbers.
    pub bytes_per_ported_number: f64,
    /// Resident-set growth across the build / ported numbers.
    pub rss_bytes_per_ported_number: f64,
    /// Process memory on transparent huge pages after the build (the table asks for them).
    pub huge_page_bytes: usize,
    /// How many answers were ported hits (a check that the mix is what it claims).
    pub ported_hits: usize,
    /// Bytes of the index written as a snapshot (`npdb::snapshot`).
    pub snapshot_bytes: usize,
    /// Reading that snapshot back into a new index: a replica's bootstrap, minus the transfer.
    pub snapshot_load_s: f64,
}

const RANGES: [(u64, u16); 5] = [(4670, 0), (4672, 1), (4673, 2), (4676, 0), (4679, 1)];
const PER_RANGE: u64 = 10_000_000;
/// Numbers available to port.
pub const MAX_NUMBERS: usize = RANGES.len() * PER_RANGE as usize;

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `i`-th number of the ranges in a scrambled order (a bijection on `0..MAX_NUMBERS`); the
/// first `n` are the ported ones of [`build_index`]`(n)`.
pub fn number(i: usize) -> u64 {
    let r = i % RANGES.len();
    let t = (i / RANGES.len()) as u64;
    // 3_999_971 is coprime to 10^7, so t ↦ (a·t + b) mod 10^7 is a permutation.
    RANGES[r].0 * PER_RANGE + (t * 3_999_971 + 12_345) % PER_RANGE
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as usize
}

/// Anonymous memory of the process backed by transparent huge pages (`/proc/self/smaps_rollup`).
fn huge_page_bytes() -> usize {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn name(s: &str) -> OperatorName {
    s.parse().expect("valid operator name")
}

/// The benchmark index's operators and ranges, with no exceptions.
pub fn bench_index() -> Index {
    let operators = [("opa", "D001"), ("opb", "D002"), ("opc", "D003")].map(|(n, rn)| Operator {
        name: name(n),
        routing_number: rn.parse::<RoutingNumber>().expect("valid routing number"),
    });
    let names = ["opa", "opb", "opc"];
    let mut ranges: Vec<(Prefix, OperatorName)> =
        RANGES.iter().map(|&(p, op)| (p.to_string().parse().expect("prefix"), name(names[op as usize]))).collect();
    ranges.push(("46701".parse().expect("prefix"), name("opc")));
    Index::new(operators, ranges).expect("valid benchmark index")
}

/// The benchmark index with its first `n` numbers ([`number`]) ported, each to an operator
/// other than its range holder.
pub fn build_index(n: usize) -> Index {
    let n = n.min(MAX_NUMBERS);
    let mut index = bench_index();
    index.reserve(n);
    for i in 0..n {
        let key = number(i);
        let holder = index.range_holder(key).expect("benchmark numbers are in a range");
        let op = (holder + 1 + (i as u16 & 1)) % 3;
        index.set_serving_id(key, op).expect("valid key and operator");
    }
    index
}

/// `count` query keys against [`build_index`]`(n)`, in random order: half ported numbers, half
/// never-ported numbers of the same ranges (answered by their range holder).
pub fn query_pool(n: usize, count: usize, seed: u64) -> Vec<u64> {
    let n = n.min(MAX_NUMBERS);
    let mut rng = seed;
    (0..count)
        .map(|_| {
            let r = splitmix(&mut rng);
            if r & 1 == 0 && n > 0 {
                number((r >> 1) as usize % n)
            } else if n < MAX_NUMBERS {
                number(n + (r >> 1) as usize % (MAX_NUMBERS - n))
            } else {
                number((r >> 1) as usize % n)
            }
        })
        .collect()
}

/// Builds an index of `n` ported numbers and times `lookups` lookups. See the module docs.
pub fn bench_lookup(n: usize, lookups: usize, seed: u64) -> LookupReport {
    let n = n.min(MAX_NUMBERS);
    let rss_before = rss_bytes();
    let t0 = Instant::now();
    let index = build_index(n);
    let build_s = t0.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    let huge_page_bytes = huge_page_bytes();
    assert_eq!(index.len(), n, "every benchmark number is an exception");

    let pool_len = lookups.clamp(1, 1 << 22);
    let pool = query_pool(n, pool_len, seed);

    // Warm-up pass (page faults, branch predictors), then the timed loop.
    let mut ported_hits = 0usize;
    for &k in &pool {
        ported_hits += black_box(index.lookup_digits(black_box(k))).is_some_and(|h| h.ported) as usize;
    }
    let passes = lookups.div_ceil(pool_len);
    let t = Instant::now();
    let mut acc = 0u64;
    for _ in 0..passes {
        for &k in &pool {
            if let Some(h) = index.lookup_digits(black_box(k)) {
                acc = acc.wrapping_add(h.operator as u64 + h.ported as u64);
            }
        }
    }
    black_box(acc);
    let single_s = t.elapsed().as_secs_f64();

    let mut out = vec![None; pool_len];
    let t = Instant::now();
    for _ in 0..passes {
        index.lookup_batch(black_box(&pool), &mut out);
        black_box(&out);
    }
    let batch_s = t.elapsed().as_secs_f64();
    let done = passes * pool_len;

    let snapshot = crate::snapshot::write_index(&index, 1, Vec::new()).expect("writing to memory");
    let t = Instant::now();
    let (loaded, _) = crate::snapshot::read_index(&snapshot[..], |_| {}).expect("the snapshot just written");
    let snapshot_load_s = t.elapsed().as_secs_f64();
    assert_eq!(loaded.len(), index.len());
    drop(loaded);

    let memory_bytes = index.memory_bytes();
    let per = |b: usize| if n == 0 { 0.0 } else { b as f64 / n as f64 };
    LookupReport {
        numbers: n,
        lookups: done,
        build_s,
        lookups_per_s: done as f64 / single_s,
        batch_lookups_per_s: done as f64 / batch_s,
        memory_bytes,
        bytes_per_ported_number: per(memory_bytes),
        rss_bytes_per_ported_number: per(rss_after.saturating_sub(rss_before)),
        huge_page_bytes,
        ported_hits,
        snapshot_bytes: snapshot.len(),
        snapshot_load_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_distinct_and_in_range() {
        let mut seen: Vec<u64> = (0..200_000).map(number).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 200_000);
        assert!(seen.iter().all(|&k| RANGES.iter().any(|&(p, _)| k / PER_RANGE == p)));
    }

    #[test]
    fn small_run() {
        let r = bench_lookup(20_000, 100_000, 1);
        assert_eq!(r.numbers, 20_000);
        assert!(r.lookups >= 100_000);
        // Half the pool is ported numbers.
        let share = r.ported_hits as f64 / 100_000.0;
        assert!((0.45..0.55).contains(&share), "{share}");
        assert!(r.bytes_per_ported_number < 24.0, "{}", r.bytes_per_ported_number);
    }
}
