//! What a Gy message costs the codec, per message, on one core: a CCR-Update (two MSCC with
//! used and requested units, Service-Information) decoded, validated and typed as the responder
//! does; the CCA encoded; the CCR encoded as the initiator does. Each figure is the median of
//! 11 rounds of about 200 ms of the thread's CPU time (so that the other work of a shared
//! machine, which preempts the benchmark, does not count); `--json` prints them as one JSON
//! object.
//!
//!     cargo bench -p diameter --bench codec [-- --json]

use std::hint::black_box;
use std::time::Duration;

use diameter::cc::*;
use diameter::message::Message;
use diameter::validate::validate;

fn ccr() -> Ccr {
    let unit = |octets| ServiceUnit { total_octets: Some(octets), ..Default::default() };
    Ccr {
        session_id: "pgw.numport.test;1780000000;42".into(),
        origin_host: "pgw.numport.test".into(),
        origin_realm: "numport.test".into(),
        destination_realm: "numport.test".into(),
        destination_host: None,
        auth_application_id: 4,
        service_context_id: PS_CONTEXT.into(),
        request_type: CcRequestType::Update,
        request_number: 3,
        user_name: None,
        origin_state_id: Some(1),
        event_timestamp: Some(ntp_seconds(1_780_000_000)),
        subscription_ids: vec![SubscriptionId { kind: SubscriptionIdType::EndUserE164, data: "4790000001".into() }],
        requested_action: None,
        multiple_services_indicator: Some(1),
        mscc: [10, 20]
            .map(|rg| Mscc {
                rating_group: Some(rg),
                service_identifiers: vec![rg + 1],
                requested: Some(unit(1 << 20)),
                used: vec![ServiceUnit {
                    time: Some(60),
                    input_octets: Some(1000),
                    output_octets: Some(2000),
                    ..unit(3000)
                }],
                reporting_reason: Some(3),
                ..Default::default()
            })
            .into(),
        termination_cause: None,
        service_information: Some(ServiceInformation {
            ps: Some(PsInformation {
                charging_id: Some(7),
                called_station_id: Some("internet".into()),
                sgsn_mcc_mnc: Some("24201".into()),
                rat_type: Some(vec![6]),
                ..Default::default()
            }),
            ims: None,
        }),
        retransmitted: false,
    }
}

/// CPU time this thread has used.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given, which lives on this stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Median nanoseconds of CPU time per call of `f`.
fn measure(mut f: impl FnMut()) -> f64 {
    let mut per_round = Vec::new();
    for _ in 0..11 {
        let (start, mut n) = (cpu_time(), 0u64);
        while cpu_time() - start < Duration::from_millis(200) {
            for _ in 0..100 {
                f();
            }
            n += 100;
        }
        per_round.push((cpu_time() - start).as_nanos() as f64 / n as f64);
    }
    per_round.sort_by(f64::total_cmp);
    per_round[per_round.len() / 2]
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let ccr = ccr();
    let bytes = ccr.encode(1, 2);
    let request = Message::decode(&bytes).unwrap().header;
    let mut cca = Cca::answering(&ccr, 2001);
    cca.origin_host = "ocs.numport.test".into();
    cca.origin_realm = "numport.test".into();
    cca.mscc = ccr
        .mscc
        .iter()
        .map(|m| Mscc {
            rating_group: m.rating_group,
            granted: Some(ServiceUnit { total_octets: Some(1 << 20), ..Default::default() }),
            validity_time: Some(600),
            result_code: Some(2001),
            ..Default::default()
        })
        .collect();

    let decode = measure(|| {
        let m = Message::decode(black_box(&bytes)).unwrap();
        validate(&m).unwrap();
        black_box(Ccr::decode(&m).unwrap());
    });
    let validate_only = measure(|| {
        let m = Message::decode(black_box(&bytes)).unwrap();
        validate(&m).unwrap();
    });
    let mut buf = Vec::with_capacity(512);
    let encode_cca = measure(|| {
        buf = black_box(&cca).encode_into(std::mem::take(&mut buf), &request);
        buf.clear();
    });
    let encode_ccr = measure(|| {
        buf = black_box(&ccr).encode_into(std::mem::take(&mut buf), 1, 2);
        buf.clear();
    });
    let figures = [
        ("ccr_octets", bytes.len() as f64),
        ("ccr_decode_validate_ns", decode),
        ("ccr_validate_only_ns", validate_only),
        ("cca_encode_ns", encode_cca),
        ("ccr_encode_ns", encode_ccr),
    ];
    if json {
        let body: Vec<String> = figures.iter().map(|(k, v)| format!("\"{k}\": {v:.0}")).collect();
        println!("{{{}}}", body.join(", "));
    } else {
        for (k, v) in figures {
            println!("{k:>24}: {v:.0}");
        }
    }
}
