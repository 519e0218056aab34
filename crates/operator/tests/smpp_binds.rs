//! The node's SMPP server refuses binds as `[smpp]` and the ESME table say (a lockout after
//! failed binds, an ESME's `max_sessions`) and counts each refusal and lockout in `/metrics`.

mod common;

use common::*;
use operator::Listeners;
use smsc::client::{Client, ClientError};
use smsc::rusmpp::CommandStatus;
use tokio_util::sync::CancellationToken;

/// The value of the series `name{label="value"}` in the node's metrics; 0 when absent.
fn series(n: &TestNode, name: &str, label: &str, value: &str) -> f64 {
    let text = n.node.metrics().render();
    let prefix = format!("{name}{{{label}=\"{value}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn bind_refusals_and_lockouts_are_counted() {
    let ch = FakeClearinghouse::start().await;
    let mut config = config("opa", &ch.url());
    config.smpp.bind_failures_per_system_id = 2;
    config.smpp.bind_lockout_ms = 60_000;
    let n = TestNode::with_config(config).await;
    let bank = smsc::EsmeAccount::new("bank", "s3cret", 100).unwrap().with_max_sessions(1);
    n.store().upsert_esme(&bank, T0).await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smpp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = smpp.local_addr().unwrap();
    let stop = CancellationToken::new();
    let listeners = Listeners { http, enum_dns: None, smpp: Some(smpp), smpp_tls: None, air: None, gy: None };
    let server = tokio::spawn(n.node.clone().serve(listeners, stop.clone()));

    let refused = |r: Result<Client, ClientError>| match r {
        Err(ClientError::Status(status)) => status,
        Err(e) => panic!("expected a refused bind, got {e}"),
        Ok(_) => panic!("bound where it must be refused"),
    };
    // One session, the ESME's max_sessions: a second is refused.
    let first = Client::bind_transmitter(addr, "bank", "s3cret").await.unwrap();
    assert_eq!(refused(Client::bind_transmitter(addr, "bank", "s3cret").await), CommandStatus::EsmeRbindfail);
    first.unbind().await.unwrap();
    // Two wrong passwords lock bank out: its right password is then refused too.
    for _ in 0..2 {
        assert_eq!(refused(Client::bind_transmitter(addr, "bank", "guess").await), CommandStatus::EsmeRinvpaswd);
    }
    assert_eq!(refused(Client::bind_transmitter(addr, "bank", "s3cret").await), CommandStatus::EsmeRbindfail);

    let refusals = "operator_smpp_refused_total";
    assert_eq!(series(&n, refusals, "reason", "too_many_sessions"), 1.0);
    assert_eq!(series(&n, refusals, "reason", "credentials"), 2.0);
    assert_eq!(series(&n, refusals, "reason", "locked_out"), 1.0);
    assert_eq!(series(&n, "operator_smpp_lockouts_total", "scope", "system_id"), 1.0);
    assert_eq!(series(&n, "operator_smpp_lockouts_total", "scope", "address"), 0.0);
    stop.cancel();
    server.await.unwrap().unwrap();
}
