//! CN102083042B: mobile data charged by service. A data usage record (from the packet gateway)
//! carries usage containers, each tagged with a service identifier; it is split into one
//! sub-record per service ([`split`]); the (subscriber, service) pair then selects a charging
//! mode from a configured table ([`ModeTable`], a subscriber's own row before the `*` row for
//! everyone), and each sub-record is rated in its mode ([`rate`]).
//!
//! Flat-rate services are charged their fee once per subscriber, service and UTC day: the
//! caller says whether that day's fee was already paid.

use std::collections::HashMap;

use numport_core::{Millis, Money};
use serde::{Deserialize, Serialize};

/// One usage container of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageContainer {
    pub service_id: u32,
    pub uplink_octets: u64,
    pub downlink_octets: u64,
    pub duration_s: u64,
    pub events: u64,
}

/// A data usage record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataUsageRecord {
    /// Unique per record: a record seen twice is charged once.
    pub record_id: String,
    pub subscriber: String,
    pub start: Millis,
    pub containers: Vec<UsageContainer>,
}

/// One service's share of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubRecord {
    pub service_id: u32,
    pub octets: u64,
    pub duration_s: u64,
    pub events: u64,
}

/// How a (subscriber, service) pair is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum ChargingMode {
    /// `price` per started block of `block_octets`.
    Volume {
        price: Money,
        block_octets: u64,
    },
    /// `price` per started block of `block_s` seconds.
    Time {
        price: Money,
        block_s: u64,
    },
    /// `fee` once a day, whatever the usage.
    Flat {
        fee: Money,
    },
    /// `price` per event.
    PerEvent {
        price: Money,
    },
    Free,
}

impl ChargingMode {
    pub fn name(&self) -> &'static str {
        match self {
            ChargingMode::Volume { .. } => "volume",
            ChargingMode::Time { .. } => "time",
            ChargingMode::Flat { .. } => "flat",
            ChargingMode::PerEvent { .. } => "per_event",
            ChargingMode::Free => "free",
        }
    }

    fn valid(&self) -> bool {
        match *self {
            ChargingMode::Volume { price, block_octets: b } | ChargingMode::Time { price, block_s: b } => {
                b > 0 && !price.is_negative()
            }
            ChargingMode::Flat { fee: p } | ChargingMode::PerEvent { price: p } => !p.is_negative(),
            ChargingMode::Free => true,
        }
    }
}

/// `*` in a mode table's subscriber column: every subscriber.
pub const ANY_SUBSCRIBER: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataChargingError {
    #[error("no charging mode for subscriber {subscriber} and service {service_id}")]
    NoMode { subscriber: String, service_id: u32 },
    #[error("invalid charging mode: blocks must be at least 1 and prices not negative")]
    BadMode,
    #[error("the charge overflows")]
    Overflow,
}

/// The configured (subscriber, service) → mode table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModeTable {
    modes: HashMap<(String, u32), ChargingMode>,
}

impl ModeTable {
    pub fn set(&mut self, subscriber: &str, service_id: u32, mode: ChargingMode) -> Result<(), DataChargingError> {
        if !mode.valid() {
            return Err(DataChargingError::BadMode);
        }
        self.modes.insert((subscriber.to_owned(), service_id), mode);
        Ok(())
    }

    pub fn remove(&mut self, subscriber: &str, service_id: u32) -> bool {
        self.modes.remove(&(subscriber.to_owned(), service_id)).is_some()
    }

    /// The subscriber's own mode for the service, else everyone's.
    pub fn lookup(&self, subscriber: &str, service_id: u32) -> Result<ChargingMode, DataChargingError> {
        let key = |s: &str| (s.to_owned(), service_id);
        self.modes
            .get(&key(subscriber))
            .or_else(|| self.modes.get(&key(ANY_SUBSCRIBER)))
            .copied()
            .ok_or_else(|| DataChargingError::NoMode { subscriber: subscriber.to_owned(), service_id })
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, u32, ChargingMode)> {
        self.modes.iter().map(|((s, id), m)| (s.as_str(), *id, *m))
    }
}

/// Split a record into one sub-record per service identifier, in order of first appearance.
pub fn split(record: &DataUsageRecord) -> Vec<SubRecord> {
    let mut subs: Vec<SubRecord> = Vec::new();
    for c in &record.containers {
        let octets = c.uplink_octets.saturating_add(c.downlink_octets);
        match subs.iter_mut().find(|s| s.service_id == c.service_id) {
            Some(s) => {
                s.octets = s.octets.saturating_add(octets);
                s.duration_s = s.duration_s.saturating_add(c.duration_s);
                s.events = s.events.saturating_add(c.events);
            }
            None => {
                subs.push(SubRecord { service_id: c.service_id, octets, duration_s: c.duration_s, events: c.events })
            }
        }
    }
    subs
}

/// The UTC day a flat fee is charged for.
pub fn flat_day(at: Millis) -> i64 {
    at.div_euclid(86_400_000)
}

/// Rate a sub-record in `mode`; `flat_paid` says whether today's flat fee was already charged.
pub fn rate(mode: ChargingMode, sub: &SubRecord, flat_paid: bool) -> Result<Money, DataChargingError> {
    let per_block = |price: Money, units: u64, block: u64| -> Result<Money, DataChargingError> {
        let blocks = i64::try_from(units.div_ceil(block)).map_err(|_| DataChargingError::Overflow)?;
        price.0.checked_mul(blocks).map(Money).ok_or(DataChargingError::Overflow)
    };
    match mode {
        ChargingMode::Volume { price, block_octets } => per_block(price, sub.octets, block_octets),
        ChargingMode::Time { price, block_s } => per_block(price, sub.duration_s, block_s),
        ChargingMode::PerEvent { price } => per_block(price, sub.events, 1),
        ChargingMode::Flat { fee } => Ok(if flat_paid { Money::ZERO } else { fee }),
        ChargingMode::Free => Ok(Money::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(service_id: u32, up: u64, down: u64, duration_s: u64, events: u64) -> UsageContainer {
        UsageContainer { service_id, uplink_octets: up, downlink_octets: down, duration_s, events }
    }

    #[test]
    fn split_groups_by_service() {
        let r = DataUsageRecord {
            record_id: "r1".into(),
            subscriber: "4790000001".into(),
            start: 0,
            containers: vec![c(7, 10, 90, 5, 0), c(3, 0, 0, 0, 2), c(7, 1, 1, 1, 0)],
        };
        assert_eq!(
            split(&r),
            vec![
                SubRecord { service_id: 7, octets: 102, duration_s: 6, events: 0 },
                SubRecord { service_id: 3, octets: 0, duration_s: 0, events: 2 },
            ]
        );
    }

    #[test]
    fn the_pair_selects_the_mode() {
        let mut t = ModeTable::default();
        t.set(ANY_SUBSCRIBER, 7, ChargingMode::Volume { price: Money(5), block_octets: 100 }).unwrap();
        t.set("4790000001", 7, ChargingMode::Free).unwrap();
        t.set(ANY_SUBSCRIBER, 3, ChargingMode::PerEvent { price: Money(20) }).unwrap();
        assert_eq!(t.lookup("4790000001", 7), Ok(ChargingMode::Free));
        assert_eq!(t.lookup("4790000002", 7), Ok(ChargingMode::Volume { price: Money(5), block_octets: 100 }));
        assert!(matches!(t.lookup("4790000002", 9), Err(DataChargingError::NoMode { .. })));
        assert_eq!(t.set("x", 1, ChargingMode::Time { price: Money(1), block_s: 0 }), Err(DataChargingError::BadMode));
        assert!(t.remove("4790000001", 7));
    }

    #[test]
    fn each_mode_rates() {
        let s = SubRecord { service_id: 1, octets: 250, duration_s: 61, events: 3 };
        assert_eq!(rate(ChargingMode::Volume { price: Money(5), block_octets: 100 }, &s, false), Ok(Money(15)));
        assert_eq!(rate(ChargingMode::Time { price: Money(2), block_s: 60 }, &s, false), Ok(Money(4)));
        assert_eq!(rate(ChargingMode::PerEvent { price: Money(20) }, &s, false), Ok(Money(60)));
        assert_eq!(rate(ChargingMode::Flat { fee: Money(99) }, &s, false), Ok(Money(99)));
        assert_eq!(rate(ChargingMode::Flat { fee: Money(99) }, &s, true), Ok(Money(0)));
        assert_eq!(rate(ChargingMode::Free, &s, false), Ok(Money(0)));
        let huge = SubRecord { service_id: 1, octets: u64::MAX, duration_s: 0, events: 0 };
        assert_eq!(
            rate(ChargingMode::Volume { price: Money(5), block_octets: 1 }, &huge, false),
            Err(DataChargingError::Overflow)
        );
        assert_eq!(flat_day(86_400_000 * 3 + 5), 3);
    }
}
