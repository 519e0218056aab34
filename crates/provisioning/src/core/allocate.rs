//! How many commands each category may send to an element now.
//!
//! Two parts. [`Pacer`] is a token bucket per element whose rate is a fraction
//! ([`HEADROOM`]) of the capacity the element last reported, so the device never sends faster
//! than the element executes, and its burst is small beside the element's own queue, so timing
//! jitter cannot push the element beyond it either. [`allocate`] shares what the pacer grants
//! among the categories by priority: the highest takes what it needs first, the others what is
//! left, each capped by its protection state.

use super::order::Category;
use super::protection::ProtectionState;

/// The share of an element's reported capacity the device uses.
pub const HEADROOM: f64 = 0.9;

/// A token bucket; time in microseconds from the caller.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last_us: i64,
}

impl Pacer {
    /// A bucket for an element of `capacity` commands/s, full, at `now_us`; `burst_ms` of the
    /// rate may go at once (at least one command).
    pub fn new(capacity: u32, burst_ms: u32, now_us: i64) -> Pacer {
        let mut p = Pacer { rate_per_s: 0.0, burst: 1.0, tokens: 0.0, last_us: now_us };
        p.set_capacity(capacity, burst_ms);
        p.tokens = p.burst;
        p
    }

    /// Follow a capacity the element reported; tokens above the new burst are dropped.
    pub fn set_capacity(&mut self, capacity: u32, burst_ms: u32) {
        self.rate_per_s = f64::from(capacity) * HEADROOM;
        self.burst = (self.rate_per_s * f64::from(burst_ms) / 1000.0).max(1.0);
        self.tokens = self.tokens.min(self.burst);
    }

    /// Whole commands that may go at `now_us`.
    pub fn available(&mut self, now_us: i64) -> u32 {
        let elapsed = (now_us - self.last_us).max(0) as f64 / 1e6;
        self.last_us = self.last_us.max(now_us);
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.burst);
        self.tokens.floor() as u32
    }

    /// Spend `n` commands (no more than [`Pacer::available`] said).
    pub fn take(&mut self, n: u32) {
        self.tokens = (self.tokens - f64::from(n)).max(0.0);
    }
}

/// The share of an element's budget a limited category may take.
pub const LIMITED_SHARE: f64 = 0.25;

/// Share `budget` commands among the categories (indexed as [`Category::ALL`]) that want
/// `demand` of them, by priority and state. Never grants more than `budget` in total nor more
/// than a category's demand; a suspended category gets nothing, a limited one at most
/// [`LIMITED_SHARE`] of the budget (rounded up, so a small budget still lets one through).
pub fn allocate(budget: u32, demand: [u32; 3], states: [ProtectionState; 3]) -> [u32; 3] {
    let mut remaining = budget;
    let mut grant = [0; 3];
    for c in Category::ALL {
        let i = c.index();
        let cap = match states[i] {
            ProtectionState::Normal => remaining,
            ProtectionState::Limited => ((f64::from(budget) * LIMITED_SHARE).ceil() as u32).min(remaining),
            ProtectionState::Suspended => 0,
        };
        grant[i] = demand[i].min(cap);
        remaining -= grant[i];
    }
    grant
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use ProtectionState::*;

    fn state() -> impl Strategy<Value = ProtectionState> {
        prop_oneof![Just(Normal), Just(Limited), Just(Suspended)]
    }

    proptest! {
        #[test]
        fn never_over_budget_or_demand(budget in 0u32..10_000, demand in prop::array::uniform3(0u32..10_000),
                                       states in prop::array::uniform3(state())) {
            let g = allocate(budget, demand, states);
            prop_assert!(g.iter().sum::<u32>() <= budget);
            for i in 0..3 {
                prop_assert!(g[i] <= demand[i]);
                if states[i] == Suspended { prop_assert_eq!(g[i], 0); }
            }
            if states[0] == Normal {
                prop_assert_eq!(g[0], demand[0].min(budget), "the highest priority is served first");
            }
            if states == [Normal; 3] {
                prop_assert_eq!(g.iter().sum::<u32>(), budget.min(demand.iter().sum()), "nothing left idle");
            }
        }

        #[test]
        fn pacer_never_exceeds_rate_plus_burst(capacity in 1u32..50_000, steps in prop::collection::vec(0i64..20_000, 1..200)) {
            let mut p = Pacer::new(capacity, 10, 0);
            let (mut now, mut sent) = (0i64, 0u64);
            for dt in steps {
                now += dt;
                let n = p.available(now);
                p.take(n);
                sent += u64::from(n);
            }
            let rate = f64::from(capacity) * HEADROOM;
            let allowed = rate * now as f64 / 1e6 + (rate * 0.010).max(1.0);
            prop_assert!(sent as f64 <= allowed + 1e-6, "{sent} sent, {allowed} allowed");
        }
    }

    #[test]
    fn overload_leaves_the_priority_share_intact() {
        // An element at a fifth of its capacity: 100 per tick becomes 20.
        assert_eq!(allocate(20, [15, 50, 500], [Normal, Limited, Suspended]), [15, 5, 0]);
        assert_eq!(allocate(20, [30, 50, 500], [Normal, Normal, Normal]), [20, 0, 0]);
        assert_eq!(allocate(3, [0, 9, 9], [Normal, Limited, Limited]), [0, 1, 1]);
    }

    #[test]
    fn pacer_follows_a_capacity_drop() {
        let mut p = Pacer::new(10_000, 10, 0);
        assert_eq!(p.available(0), 90);
        p.take(90);
        p.set_capacity(2_000, 10);
        assert_eq!(p.available(1_000_000), 18, "burst of 10 ms at 1,800/s");
    }
}
