//! The rating benchmark behind `rated_per_s`: [`TariffTable::price`] and [`crate::rating::Price::cost`]
//! on one core, over a tariff of a national numbering plan's size.

use std::time::{Duration, Instant};

use numport_core::Money;
use serde::Serialize;

use crate::rating::{Service, TariffRule, TariffTable, TimeBand, UnitKind};
use crate::session::{CreditControlRequest, MsccRequest, RequestType, ServiceUnits, SubscriptionId};
use crate::{Ocs, OcsError};

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

/// What [`credit_control_load`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct CcrFigures {
    pub ccr_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// Retransmissions whose answer differed from the first (each would be a charge twice).
    pub double_charged: u64,
    /// Money spent beyond credit limits, summed over accounts ([`Ocs::check_ledger`]).
    pub overdraft: i64,
}

/// Drive `ocs` in process (no Diameter) with `workers` concurrent gateways for `duration`,
/// each running voice sessions (INITIAL, two UPDATEs, TERMINATION) on one of `accounts`
/// accounts named `4791000000 + i`, which must exist and be funded; one request in ten is
/// sent twice. Measures what the OCS's transactions sustain on its database.
pub async fn credit_control_load(
    ocs: &Ocs,
    accounts: usize,
    workers: usize,
    duration: Duration,
) -> Result<CcrFigures, OcsError> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let ocs = ocs.clone();
            tokio::spawn(async move {
                let (mut latencies, mut doubles) = (Vec::new(), 0u64);
                let msisdn = format!("{}", 4_791_000_000u64 + (w % accounts.max(1)) as u64);
                let mut call = 0u64;
                while started.elapsed() < duration {
                    call += 1;
                    let kinds =
                        [RequestType::Initial, RequestType::Update, RequestType::Update, RequestType::Termination];
                    for (n, kind) in kinds.into_iter().enumerate() {
                        let req = load_request(&format!("bench;{w};{call}"), &msisdn, kind, n as u32);
                        let t = Instant::now();
                        let answer = ocs.credit_control(req.clone()).await?;
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                        if (call + n as u64).is_multiple_of(10) && ocs.credit_control(req).await? != answer {
                            doubles += 1;
                        }
                    }
                }
                Ok::<_, OcsError>((latencies, doubles))
            })
        })
        .collect();
    let (mut latencies, mut double_charged) = (Vec::new(), 0);
    for t in tasks {
        let (l, d) = t.await.map_err(|e| OcsError::Invalid(e.to_string()))??;
        latencies.extend(l);
        double_charged += d;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at =
        |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied();
    let report = ocs.check_ledger().await?;
    Ok(CcrFigures {
        ccr_per_s: latencies.len() as f64 / elapsed,
        p50_ms: at(0.5).unwrap_or(0.0),
        p99_ms: at(0.99).unwrap_or(0.0),
        requests: latencies.len() as u64,
        double_charged,
        overdraft: report.overdraft,
    })
}

fn load_request(session: &str, msisdn: &str, kind: RequestType, n: u32) -> CreditControlRequest {
    let units = |s| Some(ServiceUnits::of(UnitKind::Time, s));
    CreditControlRequest {
        session_id: session.into(),
        request_type: kind,
        request_number: n,
        subscription_id: SubscriptionId::e164(msisdn),
        service: Service::Voice,
        destination: Some("4790000000".into()),
        event_time: 0,
        mscc: vec![MsccRequest {
            rating_group: Some(1),
            service_identifier: None,
            requested: if kind == RequestType::Termination { None } else { units(120) },
            used: if n == 0 { None } else { units(100) },
        }],
    }
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
