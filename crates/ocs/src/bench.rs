//! The rating benchmark behind `rated_per_s`: [`TariffTable::price`] and [`crate::rating::Price::cost`]
//! on one core, over a tariff of a national numbering plan's size.

use std::time::{Duration, Instant};

use numport_core::Money;

use crate::rating::{Service, TariffRule, TariffTable, TimeBand};

/// A tariff with `prefixes` destination prefixes (4 to 7 digits), each with a day and a night
/// band, for voice, plus SMS and data defaults.
pub fn sample_tariffs(prefixes: usize) -> TariffTable {
    let mut rules = Vec::with_capacity(prefixes * 2 + 2);
    for i in 0..prefixes {
        let prefix = format!("{}", 4700 + (i * 7919) % 990_000);
        rules.push(TariffRule {
            service: Service::Voice,
            prefix: prefix.clone(),
            band: TimeBand { start_minute: 480, end_minute: 1080 },
            price: Money(1 + (i % 50) as i64),
            block: 60,
        });
        rules.push(TariffRule {
            service: Service::Voice,
            prefix,
            band: TimeBand { start_minute: 1080, end_minute: 480 },
            price: Money(1 + (i % 20) as i64),
            block: 1,
        });
    }
    rules.push(TariffRule {
        service: Service::Voice,
        prefix: String::new(),
        band: TimeBand::ALL_DAY,
        price: Money(30),
        block: 60,
    });
    rules.push(TariffRule {
        service: Service::Sms,
        prefix: String::new(),
        band: TimeBand::ALL_DAY,
        price: Money(50),
        block: 1,
    });
    TariffTable::compile(rules, 60).expect("the sample tariff is valid")
}

/// Rate events for at least `duration` on this thread and return events rated per second.
/// Destinations and times vary per event (from a precomputed set, so nothing is allocated
/// while timing); the sum of the charges is kept so the work cannot be optimised away.
pub fn rated_per_s(duration: Duration) -> f64 {
    let table = sample_tariffs(10_000);
    let destinations: Vec<String> =
        (0..4096).map(|i| format!("47{:08}", (i as u64 * 2_654_435_761) % 100_000_000)).collect();
    let mut total: i64 = 0;
    let mut rated: u64 = 0;
    let start = Instant::now();
    while start.elapsed() < duration {
        for (i, d) in destinations.iter().enumerate() {
            let at = (i as i64) * 97_000 + rated as i64;
            if let Ok(m) = table.rate(Service::Voice, d, at, 1 + (i as u64 % 600)) {
                total = total.wrapping_add(m.0);
            }
        }
        rated += destinations.len() as u64;
    }
    std::hint::black_box(total);
    rated as f64 / start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sample_tariff_rates_every_destination() {
        let t = super::sample_tariffs(100);
        assert!(t.rate(super::Service::Voice, "4799999999", 0, 61).is_ok());
        assert!(super::rated_per_s(std::time::Duration::from_millis(5)) > 0.0);
    }
}
