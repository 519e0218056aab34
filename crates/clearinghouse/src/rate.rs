//! Each operator's request rate, limited at the door (`Caller` extraction): a token bucket per
//! operator, kept as one atomic in the form of the generic cell rate algorithm (GCRA). The
//! bucket is the instant at which it would be full again; a request moves that instant one
//! interval later, and is refused if that would put it more than a burst ahead of now. A
//! request costs one compare-and-swap on its own operator's bucket, and no lock: the bucket
//! travels with the cached credentials, so the map of buckets is read only when those are
//! verified again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::RateLimit;

/// One operator's bucket: the instant (µs) at which it is full again; at or before now, full.
#[derive(Debug, Default)]
pub struct Bucket {
    full_at_us: AtomicI64,
}

/// The buckets of every operator, and the rate they refill at.
#[derive(Debug)]
pub struct RateLimiter {
    /// Microseconds one request uses up; 0 = no limit.
    interval_us: i64,
    /// How far ahead of now the bucket may be emptied: the burst, less one request.
    tolerance_us: i64,
    buckets: Mutex<HashMap<i64, Arc<Bucket>>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        let interval_us = if limit.per_second == 0 { 0 } else { (1_000_000 / i64::from(limit.per_second)).max(1) };
        let tolerance_us = interval_us.saturating_mul(i64::from(limit.burst.max(1)) - 1);
        RateLimiter { interval_us, tolerance_us, buckets: Mutex::default() }
    }

    /// The bucket of `operator_id` (made on first use); taken when its credentials are verified.
    pub fn bucket(&self, operator_id: i64) -> Arc<Bucket> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(operator_id).or_default().clone()
    }

    /// Take one request from `bucket` at `now_us`: `Ok`, or `Err` with the microseconds until
    /// one would be admitted.
    pub fn take(&self, bucket: &Bucket, now_us: i64) -> Result<(), i64> {
        if self.interval_us == 0 {
            return Ok(());
        }
        let mut full_at = bucket.full_at_us.load(Ordering::Relaxed);
        loop {
            let start = full_at.max(now_us);
            let ahead = start - now_us;
            if ahead > self.tolerance_us {
                return Err(ahead - self.tolerance_us);
            }
            match bucket.full_at_us.compare_exchange_weak(
                full_at,
                start + self.interval_us,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => full_at = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let r = RateLimiter::new(RateLimit { per_second: 10, burst: 3 });
        let b = r.bucket(1);
        for _ in 0..3 {
            assert_eq!(r.take(&b, 0), Ok(()));
        }
        assert_eq!(r.take(&b, 0), Err(100_000), "the next token comes in 1/10 s");
        assert_eq!(r.take(&b, 100_000), Ok(()));
        assert!(r.take(&b, 100_000).is_err());
        // Idle long enough, the bucket is full again, and no fuller.
        for _ in 0..3 {
            assert_eq!(r.take(&b, 10_000_000), Ok(()));
        }
        assert!(r.take(&b, 10_000_000).is_err());
    }

    #[test]
    fn operators_have_their_own_buckets_and_zero_means_no_limit() {
        let r = RateLimiter::new(RateLimit { per_second: 1, burst: 1 });
        assert_eq!(r.take(&r.bucket(1), 0), Ok(()));
        assert!(r.take(&r.bucket(1), 0).is_err());
        assert_eq!(r.take(&r.bucket(2), 0), Ok(()));
        let open = RateLimiter::new(RateLimit { per_second: 0, burst: 0 });
        let b = open.bucket(1);
        assert!((0..10_000).all(|_| open.take(&b, 0).is_ok()));
    }

    #[test]
    fn concurrent_takers_get_exactly_the_burst() {
        let r = Arc::new(RateLimiter::new(RateLimit { per_second: 1, burst: 1000 }));
        let b = r.bucket(1);
        let admitted: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4).map(|_| s.spawn(|| (0..1000).filter(|_| r.take(&b, 5).is_ok()).count())).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1000);
    }
}
