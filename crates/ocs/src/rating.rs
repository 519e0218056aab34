//! Rating: what a quantity of a service costs, by destination prefix (longest match) and time
//! of day.
//!
//! Tariff rules are compiled once into a [`TariffTable`]: per service a digit trie (ten child
//! slots per node, in one flat vector) whose nodes point at a run of time bands in another flat
//! vector. Rating walks the destination's digits once and scans the few bands of the prefixes
//! it passes, so it allocates nothing and touches a handful of cache lines; `ocs::bench`
//! measures it.
//!
//! Rounding is stated once, in [`Price::cost`]: a quantity is charged per *started* block
//! (`ceil(units / block) × price_per_block`), so 61 s at 60 s blocks are two blocks.
//!
//! Time of day is the event's local minute, `(epoch minutes + utc_offset) mod 1440`; a band
//! `[start, end)` with `start > end` wraps past midnight. Where the longest prefix has no band
//! covering the minute, the next shorter prefix that has one decides; no band at all is a
//! [`RatingError::NoTariff`] (Diameter 5031, rating failed).

use numport_core::{Millis, Money};
use serde::{Deserialize, Serialize};

/// The services rated, each with its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Voice calls, in seconds (CC-Time).
    Voice,
    /// Short messages, in events (CC-Service-Specific-Units).
    Sms,
    /// Packet data, in octets (CC-Total-Octets).
    Data,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Voice, Service::Sms, Service::Data];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Voice => "voice",
            Service::Sms => "sms",
            Service::Data => "data",
        }
    }

    pub fn unit(self) -> UnitKind {
        match self {
            Service::Voice => UnitKind::Time,
            Service::Sms => UnitKind::ServiceSpecific,
            Service::Data => UnitKind::Octets,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::str::FromStr for Service {
    type Err = RatingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| RatingError::UnknownService(s.to_owned()))
    }
}

/// The unit a quantity is counted in, as RFC 4006's Unit AVPs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// CC-Time, seconds.
    Time,
    /// CC-Total-Octets.
    Octets,
    /// CC-Service-Specific-Units (events).
    ServiceSpecific,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Time => "time",
            UnitKind::Octets => "octets",
            UnitKind::ServiceSpecific => "service_specific",
        }
    }
}

impl std::str::FromStr for UnitKind {
    type Err = RatingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [UnitKind::Time, UnitKind::Octets, UnitKind::ServiceSpecific]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| RatingError::UnknownService(s.to_owned()))
    }
}

/// A band of the day, `[start_minute, end_minute)` in local minutes (0..=1440); wraps past
/// midnight when `start > end`; `0..1440` is the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeBand {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl TimeBand {
    pub const ALL_DAY: TimeBand = TimeBand { start_minute: 0, end_minute: 1440 };

    #[inline]
    fn covers(self, minute: u16) -> bool {
        if self.start_minute <= self.end_minute {
            minute >= self.start_minute && minute < self.end_minute
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }
}

/// One tariff rule as configured: a service to a destination prefix during a band costs
/// `price` per started block of `block` units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TariffRule {
    pub service: Service,
    /// Digits only; empty matches every destination.
    pub prefix: String,
    pub band: TimeBand,
    /// Minor units per started block; zero rates the traffic free.
    pub price: Money,
    /// Units per block (seconds, octets, events); at least 1.
    pub block: u64,
}

/// The price that applies to one event: `per_block` per started `block` of units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub per_block: Money,
    pub block: u64,
}

impl Price {
    /// What `units` cost: per started block. `None` on overflow.
    #[inline]
    pub fn cost(self, units: u64) -> Option<Money> {
        if self.per_block.0 == 0 {
            return Some(Money::ZERO);
        }
        let blocks = units.div_ceil(self.block);
        let blocks = i64::try_from(blocks).ok()?;
        self.per_block.0.checked_mul(blocks).map(Money)
    }

    /// The most units `budget` pays for, in whole blocks (so that `cost(units_for(b)) <= b`);
    /// `u64::MAX` when the price is zero.
    #[inline]
    pub fn units_for(self, budget: Money) -> u64 {
        if self.per_block.0 <= 0 {
            return u64::MAX;
        }
        let blocks = (budget.0.max(0) / self.per_block.0) as u64;
        blocks.saturating_mul(self.block)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    #[error("no tariff for {service} to {destination:?} at minute {minute} of the day")]
    NoTariff { service: &'static str, destination: String, minute: u16 },
    #[error("destination {0:?} is not a string of digits")]
    BadDestination(String),
    #[error("tariff rule {index}: {reason}")]
    BadRule { index: usize, reason: &'static str },
    #[error("unknown service or unit {0:?}")]
    UnknownService(String),
    #[error("the charge overflows")]
    Overflow,
}

const NONE: u32 = u32::MAX;

/// A trie node: children by digit, and the run of bands of the prefix ending here.
#[derive(Debug, Clone, Copy)]
struct Node {
    child: [u32; 10],
    bands_start: u32,
    bands_len: u32,
}

impl Node {
    const EMPTY: Node = Node { child: [NONE; 10], bands_start: 0, bands_len: 0 };
}

#[derive(Debug, Clone, Copy)]
struct CompiledBand {
    band: TimeBand,
    price: Price,
}

/// The compiled tariffs; immutable, shared behind an `Arc`, rebuilt when the tariffs change.
#[derive(Debug, Clone)]
pub struct TariffTable {
    /// One trie per service, each rooted at its own index into `nodes`.
    roots: [u32; 3],
    nodes: Vec<Node>,
    bands: Vec<CompiledBand>,
    /// Minutes added to UTC to get the local time of day.
    utc_offset_minutes: i32,
    rules: Vec<TariffRule>,
}

impl TariffTable {
    /// Compile `rules`; `utc_offset_minutes` is the zone the bands are written in.
    pub fn compile(rules: Vec<TariffRule>, utc_offset_minutes: i32) -> Result<TariffTable, RatingError> {
        for (index, r) in rules.iter().enumerate() {
            let bad = |reason| Err(RatingError::BadRule { index, reason });
            if !r.prefix.bytes().all(|b| b.is_ascii_digit()) {
                return bad("prefix must be digits");
            }
            if r.block == 0 {
                return bad("block must be at least one unit");
            }
            if r.price.is_negative() {
                return bad("price must not be negative");
            }
            if r.band.start_minute > 1440 || r.band.end_minute > 1440 || r.band.start_minute == r.band.end_minute {
                return bad("band minutes must be distinct and within 0..=1440");
            }
        }
        // Group the bands of each (service, prefix) together so a node points at one run.
        let mut order: Vec<usize> = (0..rules.len()).collect();
        order.sort_by(|&a, &b| {
            (rules[a].service.index(), &rules[a].prefix, rules[a].band.start_minute).cmp(&(
                rules[b].service.index(),
                &rules[b].prefix,
                rules[b].band.start_minute,
            ))
        });
        let mut nodes = vec![Node::EMPTY; 3];
        let roots = [0, 1, 2];
        let mut bands = Vec::with_capacity(rules.len());
        for &i in &order {
            let r = &rules[i];
            let mut at = roots[r.service.index()] as usize;
            for d in r.prefix.bytes().map(|b| (b - b'0') as usize) {
                if nodes[at].child[d] == NONE {
                    nodes.push(Node::EMPTY);
                    nodes[at].child[d] = (nodes.len() - 1) as u32;
                }
                at = nodes[at].child[d] as usize;
            }
            let node = &mut nodes[at];
            if node.bands_len == 0 {
                node.bands_start = bands.len() as u32;
            }
            node.bands_len += 1;
            bands.push(CompiledBand { band: r.band, price: Price { per_block: r.price, block: r.block } });
        }
        Ok(TariffTable { roots, nodes, bands, utc_offset_minutes, rules })
    }

    /// The rules this table was compiled from.
    pub fn rules(&self) -> &[TariffRule] {
        &self.rules
    }

    pub fn utc_offset_minutes(&self) -> i32 {
        self.utc_offset_minutes
    }

    /// The local minute of the day of `at`.
    #[inline]
    pub fn minute_of_day(&self, at: Millis) -> u16 {
        let minutes = at.div_euclid(60_000) + i64::from(self.utc_offset_minutes);
        minutes.rem_euclid(1440) as u16
    }

    /// The price of `service` to `destination` (digits, a leading `+` ignored) at `at`.
    #[inline]
    pub fn price(&self, service: Service, destination: &str, at: Millis) -> Result<Price, RatingError> {
        let minute = self.minute_of_day(at);
        let digits = destination.strip_prefix('+').unwrap_or(destination).as_bytes();
        let mut at_node = self.roots[service.index()] as usize;
        let mut found = self.band_price(at_node, minute);
        for &b in digits {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return Err(RatingError::BadDestination(destination.to_owned()));
            }
            let next = self.nodes[at_node].child[d as usize];
            if next == NONE {
                break;
            }
            at_node = next as usize;
            if let Some(p) = self.band_price(at_node, minute) {
                found = Some(p);
            }
        }
        found.ok_or_else(|| RatingError::NoTariff {
            service: service.as_str(),
            destination: destination.to_owned(),
            minute,
        })
    }

    #[inline]
    fn band_price(&self, node: usize, minute: u16) -> Option<Price> {
        let n = &self.nodes[node];
        let run = &self.bands[n.bands_start as usize..(n.bands_start + n.bands_len) as usize];
        run.iter().find(|b| b.band.covers(minute)).map(|b| b.price)
    }

    /// What `units` of `service` to `destination` at `at` cost.
    #[inline]
    pub fn rate(&self, service: Service, destination: &str, at: Millis, units: u64) -> Result<Money, RatingError> {
        self.price(service, destination, at)?.cost(units).ok_or(RatingError::Overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Millis = 3_600_000;

    fn rule(service: Service, prefix: &str, band: (u16, u16), price: i64, block: u64) -> TariffRule {
        TariffRule {
            service,
            prefix: prefix.into(),
            band: TimeBand { start_minute: band.0, end_minute: band.1 },
            price: Money(price),
            block,
        }
    }

    fn table() -> TariffTable {
        TariffTable::compile(
            vec![
                rule(Service::Voice, "", (0, 1440), 10, 60),
                rule(Service::Voice, "47", (480, 1080), 5, 60),
                rule(Service::Voice, "47", (1080, 480), 2, 60),
                rule(Service::Voice, "479", (0, 1440), 20, 1),
                rule(Service::Sms, "", (0, 1440), 50, 1),
                rule(Service::Data, "", (0, 1440), 1, 1_000_000),
            ],
            0,
        )
        .unwrap()
    }

    #[test]
    fn longest_prefix_and_band_decide() {
        let t = table();
        // 10:00 UTC, day band of "47".
        assert_eq!(t.price(Service::Voice, "4712345678", 10 * HOUR).unwrap().per_block, Money(5));
        // 20:00: the night band wraps midnight.
        assert_eq!(t.price(Service::Voice, "4712345678", 20 * HOUR).unwrap().per_block, Money(2));
        assert_eq!(t.price(Service::Voice, "+4712345678", 2 * HOUR).unwrap().per_block, Money(2));
        // "479" is longer and all day.
        assert_eq!(t.price(Service::Voice, "4791234", 10 * HOUR).unwrap(), Price { per_block: Money(20), block: 1 });
        // Elsewhere the default.
        assert_eq!(t.price(Service::Voice, "4612345", 10 * HOUR).unwrap().per_block, Money(10));
        assert_eq!(t.price(Service::Sms, "4612345", 10 * HOUR).unwrap().per_block, Money(50));
    }

    #[test]
    fn charged_per_started_block() {
        let t = table();
        assert_eq!(t.rate(Service::Voice, "46", 0, 0).unwrap(), Money(0));
        assert_eq!(t.rate(Service::Voice, "46", 0, 1).unwrap(), Money(10));
        assert_eq!(t.rate(Service::Voice, "46", 0, 60).unwrap(), Money(10));
        assert_eq!(t.rate(Service::Voice, "46", 0, 61).unwrap(), Money(20));
        assert_eq!(t.rate(Service::Data, "", 0, 2_500_000).unwrap(), Money(3));
    }

    #[test]
    fn units_for_never_costs_more_than_the_budget() {
        let p = Price { per_block: Money(7), block: 60 };
        for budget in 0..200 {
            let u = p.units_for(Money(budget));
            assert!(p.cost(u).unwrap() <= Money(budget));
            assert!(p.cost(u + 60).unwrap() > Money(budget));
        }
        assert_eq!(Price { per_block: Money(0), block: 1 }.units_for(Money(0)), u64::MAX);
    }

    #[test]
    fn shorter_prefix_covers_a_gap_in_bands() {
        let t = TariffTable::compile(
            vec![rule(Service::Voice, "", (0, 1440), 10, 60), rule(Service::Voice, "1", (0, 60), 1, 60)],
            0,
        )
        .unwrap();
        assert_eq!(t.price(Service::Voice, "12", 0).unwrap().per_block, Money(1));
        assert_eq!(t.price(Service::Voice, "12", 2 * HOUR).unwrap().per_block, Money(10));
    }

    #[test]
    fn errors() {
        let t = TariffTable::compile(vec![rule(Service::Voice, "47", (0, 1440), 1, 1)], 0).unwrap();
        assert!(matches!(t.price(Service::Voice, "46", 0), Err(RatingError::NoTariff { .. })));
        assert!(matches!(t.price(Service::Sms, "47", 0), Err(RatingError::NoTariff { .. })));
        assert!(matches!(t.price(Service::Voice, "47a", 0), Err(RatingError::BadDestination(_))));
        for bad in [
            rule(Service::Voice, "4x", (0, 1440), 1, 1),
            rule(Service::Voice, "4", (0, 1440), 1, 0),
            rule(Service::Voice, "4", (0, 1440), -1, 1),
            rule(Service::Voice, "4", (10, 10), 1, 1),
            rule(Service::Voice, "4", (10, 1441), 1, 1),
        ] {
            assert!(TariffTable::compile(vec![bad], 0).is_err());
        }
        let p = Price { per_block: Money(i64::MAX), block: 1 };
        assert_eq!(p.cost(2), None);
    }

    #[test]
    fn utc_offset_moves_the_band() {
        let t = TariffTable::compile(
            vec![rule(Service::Voice, "", (0, 720), 1, 1), rule(Service::Voice, "", (720, 1440), 2, 1)],
            120,
        )
        .unwrap();
        // 11:00 UTC is 13:00 local.
        assert_eq!(t.price(Service::Voice, "", 11 * HOUR).unwrap().per_block, Money(2));
        assert_eq!(t.minute_of_day(-60_000 * 121), 1439);
    }
}
