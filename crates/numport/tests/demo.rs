//! The real `numport` binary end to end: `numport demo --check` starts a clearinghouse and
//! three operators as processes on loopback, ports a number from the handset (`numport
//! terminal port`), and checks every step; and the command line of the roles parses.

use std::process::{Command, Output};

fn numport(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_numport"))
        .args(args)
        .env("NUMPORT_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("running numport {}: {e}", args.join(" ")))
}

fn show(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn demo_check_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("demo");
    let out = numport(&["demo", "--check", "--dir", data.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout.contains("all checks passed"), "{}", show(&out));
    assert!(!stdout.contains("FAIL"), "{}", show(&out));
    // The port went from the handset: the authorisation by SMS to opa's service number; a
    // wrong PIN first, which the handset reports.
    assert!(stdout.contains("to the service number 1999: accepted"), "{}", show(&out));
    assert!(stdout.contains("verification failed: the PIN is wrong"), "{}", show(&out));
    assert!(stdout.contains("4790000001 is served by opb"), "{}", show(&out));
    // F2 and F3 steps ran: lookups at every operator, the bank's SMS routed to the new operator.
    assert_eq!(stdout.matches("ENUM NAPTR → tel:+4790000001;npdi;rn=D002").count(), 3, "{}", show(&out));
    assert!(stdout.contains("opa routed it: interconnect to opb"), "{}", show(&out));
    // F6: the recipient provisioned the subscriber on each network element, the donor deprovisioned.
    assert!(stdout.contains("opb: port_in order, commands executed: hlr "), "{}", show(&out));
    assert!(stdout.contains("opb provisioned the subscriber on its network elements"), "{}", show(&out));
    assert!(stdout.contains("opa deprovisioned the subscriber on its network elements"), "{}", show(&out));
    assert!(
        stdout.contains("the handset on opb shows:") && stdout.contains("from MyBank: Your code is 123456"),
        "{}",
        show(&out)
    );
    // F3's authentication: the bank's SMS is authentic at the handset, the fake base station's
    // phishing SMS is flagged.
    assert!(stdout.contains("[authentic (key 1, counter "), "{}", show(&out));
    assert!(stdout.contains("[forged: sent by a pseudo base station (no authentication element)]"), "{}", show(&out));
    // The demo kept its databases and logs where it was told to.
    for f in ["clearinghouse.db", "clearinghouse.log", "operator-opa.db", "operator-opb.log"] {
        assert!(data.join(f).exists(), "{f} missing from {}", data.display());
    }
}

#[test]
fn role_help_succeeds() {
    for args in [
        &["--help"][..],
        &["clearinghouse", "--help"],
        &["operator", "--help"],
        &["npdb", "--help"],
        &["terminal", "--help"],
        &["fakebts", "--help"],
        &["bench", "smsauth", "--help"],
        &["terminal", "port", "--help"],
        &["npdb", "import", "--help"],
        &["bench", "enum", "--help"],
        &["bench", "propagation", "--help"],
        &["bench", "porting", "--help"],
        &["demo", "--help"],
    ] {
        let out = numport(args);
        assert!(out.status.success(), "numport {}: {}", args.join(" "), show(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"), "numport {}: {}", args.join(" "), show(&out));
    }
    let out = numport(&["bench", "porting", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--ports", "--concurrency", "--db", "--json"] {
        assert!(help.contains(flag), "bench porting --help lacks {flag}:\n{help}");
    }
}

#[test]
fn unknown_subcommand_fails() {
    let out = numport(&["no-such-role"]);
    assert!(!out.status.success(), "{}", show(&out));
}
