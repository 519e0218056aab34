//! `kill -9` of the SMS center that ESMEs submit to, while they submit: every acknowledged
//! message still reaches its terminal, locally and over the interconnect, and no terminal
//! shows one twice. Driven by `numport bench sms` at a small size (the benchmark plays the
//! bank and the handsets, kills opa mid-stream and restarts it).

use std::process::Command;

#[test]
fn no_acknowledged_message_is_lost_or_shown_twice_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_numport"))
        .args(["bench", "sms", "--json", "--messages", "2000", "--terminals", "10", "--esmes", "2"])
        .args(["--rate", "500", "--seconds", "1", "--crash-rate", "400", "--dir"])
        .arg(dir.path().join("cluster"))
        .env("NUMPORT_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let figures: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(figures["throughput"]["messages"], 2000, "{stderr}");
    assert_eq!(figures["latency"]["all_delivered"], true, "{stderr}");
    let crash = &figures["crash"];
    assert!(crash["acknowledged"].as_u64().unwrap() > 1000, "{crash}");
    assert_eq!(crash["lost"], 0, "acknowledged messages lost across the kill: {crash}\n{stderr}");
    assert_eq!(crash["shown_twice"], 0, "messages shown twice across the kill: {crash}\n{stderr}");
}
