//! python-diameter (PyPI), an independent Diameter implementation, as a Gy client against the
//! server: its node completes the capabilities exchange, a watchdog exchange and the
//! disconnect, and a CCR-Initial/Update/Termination session through `tests/python/gy_client.py`.
//! Needs `pip install python-diameter` (see testkit for the behaviour when it is missing).

mod common;

use std::time::Duration;

use diameter::cc::CcRequestType;
use diameter::peer::Timers;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_diameter_completes_cer_dwr_and_a_credit_control_session() {
    if !testkit::python_module("diameter", "pip install python-diameter") {
        return;
    }
    let timers = Timers { tw: Duration::from_secs(30), capabilities_exchange: Duration::from_secs(5) };
    let srv = common::server(&[("gw.python.test", "python.test")], timers, 65536, common::Granting::default()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/gy_client.py");
    let run = tokio::process::Command::new("python3").arg(script).arg(srv.addr.port().to_string()).arg("1").output();
    let out = tokio::time::timeout(Duration::from_secs(30), run).await.expect("the client ends").expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python client failed: {stderr}");

    let answers: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 3, "{answers:?}");
    for (n, a) in answers.iter().enumerate() {
        assert_eq!(a["result_code"], 2001, "{a}");
        assert_eq!(a["request_type"], n + 1, "{a}");
        assert_eq!(a["request_number"], n, "{a}");
    }
    for a in &answers[..2] {
        let mscc = &a["mscc"][0];
        assert_eq!((mscc["rating_group"].as_u64(), mscc["total_octets"].as_u64()), (Some(10), Some(1_000_000)), "{a}");
        assert_eq!(mscc["validity_time"], 600);
        assert_eq!(mscc["result_code"], 2001);
    }
    assert_eq!(answers[2]["mscc"], serde_json::json!([]));

    // python-diameter's log: its CER answered, its DWR answered, its DPR answered.
    for line in ["is now ready", "sending DWR", "got DWA", "sending DPR", "got DPA"] {
        assert!(stderr.contains(line), "python-diameter did not log {line:?}:\n{stderr}");
    }

    // What the server decoded from python-diameter's bytes.
    let seen = srv.handler.seen.lock().unwrap().clone();
    let types: Vec<_> = seen.iter().map(|c| c.request_type).collect();
    assert_eq!(types, [CcRequestType::Initial, CcRequestType::Update, CcRequestType::Termination]);
    assert!(seen.iter().all(|c| c.session_id == seen[0].session_id && c.origin_host == "gw.python.test"));
    assert_eq!(seen[0].subscription_ids[0].data, "4790000001");
    let update = &seen[1].mscc[0];
    assert_eq!((update.rating_group, update.service_identifiers.as_slice()), (Some(10), &[1][..]));
    assert_eq!(update.used[0].total_octets, Some(800_000));
    assert_eq!((update.used[0].input_octets, update.used[0].output_octets), (Some(300_000), Some(500_000)));
    assert_eq!(update.requested.and_then(|r| r.total_octets), Some(1_000_000));
    assert_eq!(seen[2].mscc[0].used[0].time, Some(42));
    let _ = srv.stop.send(true);
}
