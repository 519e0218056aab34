//! `numport npdb` end to end: a replica built from an existing national database's CSV files
//! (`numport npdb import`), then served by the standalone replica process while no
//! clearinghouse answers: lookups over HTTP and ENUM from the imported data, marked stale.

use std::time::Duration;

use numport::launch::launch;

#[tokio::test]
async fn imported_snapshot_is_served_stale_without_a_clearinghouse() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let ops = write("ops.csv", "name,routing_number\nopa,D001\nopb,D002\n");
    let ranges = write("ranges.csv", "prefix,operator\n4790,opa\n4791,opb\n");
    let ported: String = (1..=1000).map(|i| format!("47900{i:05},opb\n")).collect();
    let ported = write("ported.csv", &format!("msisdn,operator\n{ported}"));
    let data = dir.path().join("npdb").display().to_string();
    let bin = env!("CARGO_BIN_EXE_numport");
    let out = std::process::Command::new(bin)
        .args(["npdb", "import", "--data-dir", &data, "--operators", &ops, "--ranges", &ranges])
        .args(["--ported", &ported, "--seq", "7"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("snapshot of 1000 ported numbers and 2 ranges at seq 7"));

    // A bad line is refused with its line number.
    let bad = write("bad.csv", "4790000001,opb\n4790000002,opz\n");
    let out = std::process::Command::new(bin)
        .args(["npdb", "import", "--data-dir", &format!("{data}-bad"), "--operators", &ops, "--ranges", &ranges])
        .args(["--ported", &bad])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.csv:2"), "{}", String::from_utf8_lossy(&out.stderr));

    // A standalone replica not told whose feed to follow, or with which key, does not start.
    let cfg = write("npdb.toml", "[replica]\npoll_wait_ms = 100\n");
    for (flags, key) in [
        (&[][..], "replica.clearinghouse_url"),
        (&["--clearinghouse-url", "http://127.0.0.1:9"][..], "replica.api_token"),
    ] {
        let out = std::process::Command::new(bin)
            .args(["npdb", "--config", &cfg, "--data-dir", &data, "--listen", "127.0.0.1:0", "--enum-listen"])
            .arg("127.0.0.1:0")
            .args(flags)
            .env_remove("NUMPORT_CLEARINGHOUSE_URL")
            .env_remove("NUMPORT_API_TOKEN")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{key} is not set")), "{stderr}");
    }

    // Without TLS, plain HTTP must be asked for: the refusal names the keys.
    let out = std::process::Command::new(bin)
        .args(["npdb", "--data-dir", &data, "--listen", "127.0.0.1:0", "--enum-listen", "127.0.0.1:0"])
        .args(["--clearinghouse-url", "http://127.0.0.1:9", "--api-token", "key.secret"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("[tls]") && stderr.contains("plain_http = true"), "{stderr}");

    // SAFETY of the environment: tests in this binary do not read NUMPORT_BIN concurrently.
    unsafe { std::env::set_var("NUMPORT_BIN", bin) };
    let proc = launch(
        &[
            "npdb".into(),
            "--data-dir".into(),
            data,
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--enum-listen".into(),
            "127.0.0.1:0".into(),
            "--clearinghouse-url".into(),
            "http://127.0.0.1:9".into(),
            "--api-token".into(),
            "key.secret".into(),
            "--plain-http".into(),
        ],
        &dir.path().join("npdb.log"),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let one: serde_json::Value =
        http.get(format!("{}/v1/lookup/4790000500", proc.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (one["operator"].as_str(), one["ported"].as_bool(), one["seq"].as_i64()),
        (Some("opb"), Some(true), Some(7))
    );
    assert_eq!(one["stale"], true, "no clearinghouse confirms the data");
    let msisdn = "4790000500".parse().unwrap();
    let enum_answer = replica::dns::query_naptr(proc.dns.unwrap(), &msisdn, "e164.arpa.").await.unwrap();
    assert_eq!(enum_answer, replica::dns::EnumAnswer::Uri("tel:+4790000500;npdi;rn=D002;rn-context=+47".into()));
    // Health says stale but serving; metrics say so too.
    let mut health = serde_json::Value::Null;
    for _ in 0..100 {
        health = http.get(format!("{}/healthz", proc.url())).send().await.unwrap().json().await.unwrap();
        if health["npdb"]["last_error"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health["status"], "stale", "{health}");
    let metrics = http.get(format!("{}/metrics", proc.url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("npdb_stale 1"), "{metrics}");
    assert!(metrics.contains("npdb_ported_numbers 1000"), "{metrics}");

    // The same scrape read back by the Python reference parser.
    if testkit::python_module("prometheus_client", "pip install prometheus-client") {
        let m = telemetry::reference::parse(&metrics).unwrap();
        m.check_typed();
        for (family, kind) in [
            ("npdb_changes_applied", "counter"),
            ("npdb_feed_gaps", "counter"),
            ("npdb_bootstraps", "counter"),
            ("npdb_feed_errors", "counter"),
            ("npdb_http_lookups", "counter"),
            ("npdb_enum_answers", "counter"),
            ("npdb_enum_nxdomain", "counter"),
            ("npdb_enum_errors", "counter"),
            ("npdb_stale", "gauge"),
            ("npdb_lag_changes", "gauge"),
            ("npdb_checkpoint_seq", "gauge"),
            ("npdb_ported_numbers", "gauge"),
        ] {
            assert_eq!(m.family(family).kind, kind, "{family}");
        }
        assert_eq!(m.value("npdb_http_lookups_total", &[]), Some(1.0));
        assert_eq!(m.value("npdb_enum_answers_total", &[]), Some(1.0));
        assert_eq!(m.value("npdb_enum_errors_total", &[]), Some(0.0));
        assert!(m.value("npdb_feed_errors_total", &[]).unwrap() >= 1.0, "the clearinghouse did not answer");
        assert_eq!(m.value("npdb_checkpoint_seq", &[]), Some(7.0));
        assert_eq!(m.value("npdb_ported_numbers", &[]), Some(1000.0));
        assert_eq!(m.value("npdb_stale", &[]), Some(1.0));
    }
}
