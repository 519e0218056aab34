//! The SMPP interconnect over TLS between two operator nodes: opb's SMS center offers SMPP over
//! TLS (`[smpp.tls]`), opa's link to it verifies opb's certificate against the CA in its
//! `[[interconnect]]` (`tls = { ca = … }`). Certificates from the PKI `numport pki` makes.
//!
//! What must hold: a message for a number opb serves crosses over TLS and is `forwarded` at opa;
//! a link that trusts another CA never binds, and the message waits `queued`; a TLS key that
//! cannot be read stops the node at start with an error that names `[smpp.tls]`; a link idle
//! for longer than the peer's idle timeout stays bound (its enquire_link keep it up).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use numport_core::ManualClock;
use numport_tls::TlsFiles;
use numport_tls::pki::{Authority, Leaf};
use operator::config::{InterconnectPeer, PeerTls, SmppTls};
use operator::store::sms::SmsState;
use operator::{Listeners, Node, OperatorConfig, OperatorError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// `opa` or `opb`, its replica loaded from disk (ranges 4790 opa, 4791 opb), configured by
/// `tweak`; the ESMEs `bank` (at opa) and `ic-opa` (opa's interconnect account at opb).
async fn node(name: &str, dir: &Path, tweak: impl FnOnce(&mut OperatorConfig)) -> Node {
    let npdb = dir.join(format!("npdb-{name}"));
    let ops = [("opa", "D001"), ("opb", "D002")]
        .map(|(n, r)| npdb::Operator { name: n.parse().unwrap(), routing_number: r.parse().unwrap() });
    let ranges = [("4790", "opa"), ("4791", "opb")].map(|(p, o)| (p.parse().unwrap(), o.parse().unwrap()));
    let index = npdb::Index::new(ops, ranges).unwrap();
    replica::disk::install_index(&npdb, &index, 0, 0).unwrap();
    let mut config = OperatorConfig {
        database_url: format!("sqlite://{}/operator-{{name}}.db", dir.display()),
        npdb: replica::ReplicaConfig { data_dir: Some(npdb), ..config(name, "http://127.0.0.1:9").npdb },
        ..config(name, "http://127.0.0.1:9")
    };
    tweak(&mut config);
    let node = Node::open(config, Arc::new(ManualClock::new(T0))).await.unwrap();
    for (esme, password) in [("bank", "s3cret"), ("ic-opa", "icpw")] {
        node.store().upsert_esme(&smsc::EsmeAccount::new(esme, password, 1000).unwrap(), T0).await.unwrap();
    }
    node
}

/// Serves `node` with an SMPP listener (plain, or TLS); returns its address.
async fn serve(node: &Node, tls: bool, stop: &CancellationToken) -> SocketAddr {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smpp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = smpp.local_addr().unwrap();
    let (smpp, smpp_tls) = if tls { (None, Some(smpp)) } else { (Some(smpp), None) };
    let listeners = Listeners { http, enum_dns: None, smpp, smpp_tls, air: None, gy: None };
    tokio::spawn(node.clone().serve(listeners, stop.clone()));
    addr
}

/// A CA written to `dir/STEM-ca.pem`, and opb's certificate from it for 127.0.0.1.
fn issue(dir: &Path, stem: &str) -> (std::path::PathBuf, TlsFiles) {
    let ca = Authority::generate(&format!("{stem} CA"), YEAR).unwrap();
    let ca_path = dir.join(format!("{stem}-ca.pem"));
    std::fs::write(&ca_path, &ca.own().cert_pem).unwrap();
    let leaf = Leaf::new("operator", "opb", vec!["127.0.0.1".into()], YEAR);
    (ca_path, ca.issue(&leaf).unwrap().write(dir, stem).unwrap())
}

/// opa, with its interconnect to opb at `addr` trusting `ca`.
async fn opa(dir: &Path, addr: SocketAddr, ca: &Path) -> Node {
    node("opa", dir, |c| {
        c.interconnect = vec![InterconnectPeer {
            operator: op("opb"),
            addr,
            system_id: "ic-opa".into(),
            password: "icpw".into(),
            tls: Some(PeerTls { ca: ca.to_owned(), server_name: None }),
            enquire_link_ms: operator::config::DEFAULT_ENQUIRE_LINK_MS,
        }];
    })
    .await
}

/// The bank at opa submits a message for 4791000005, a number opb serves; its id at opa.
async fn submit_for_opb(opa_smpp: SocketAddr) -> i64 {
    let bank = smsc::client::Client::bind_transmitter(opa_smpp, "bank", "s3cret").await.unwrap();
    let id = bank.submit("MyBank", "4791000005", b"across").await.unwrap().parse().unwrap();
    bank.unbind().await.unwrap();
    id
}

async fn state(node: &Node, id: i64) -> SmsState {
    node.store().sms(id).await.unwrap().expect("recorded").state
}

#[tokio::test]
async fn a_message_crosses_to_the_peer_over_tls_and_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, identity) = issue(dir.path(), "opb");
    let (other_ca, _) = issue(dir.path(), "other");
    let stop = CancellationToken::new();

    let opb_dir = tempfile::tempdir().unwrap();
    let opb = node("opb", opb_dir.path(), |c| {
        c.smpp.tls = Some(SmppTls { listen: "127.0.0.1:0".parse().unwrap(), cert: identity.cert, key: identity.key });
    })
    .await;
    let opb_tls = serve(&opb, true, &stop).await;

    // Trusting opb's CA: the message crosses and is forwarded.
    let opa_dir = tempfile::tempdir().unwrap();
    let good = opa(opa_dir.path(), opb_tls, &ca).await;
    let id = submit_for_opb(serve(&good, false, &stop).await).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&good, id).await != SmsState::Forwarded {
        assert!(Instant::now() < deadline, "not forwarded over TLS: {:?}", state(&good, id).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Trusting another CA: the link never binds, the message waits.
    let wary_dir = tempfile::tempdir().unwrap();
    let wary = opa(wary_dir.path(), opb_tls, &other_ca).await;
    let id = submit_for_opb(serve(&wary, false, &stop).await).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(state(&wary, id).await, SmsState::Queued);
    stop.cancel();
}

#[tokio::test]
async fn a_tls_key_that_cannot_be_read_stops_the_node_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_, identity) = issue(dir.path(), "opb");
    let missing = dir.path().join("no-such.key");
    let opb = node("opb", dir.path(), |c| {
        c.smpp.tls = Some(SmppTls { listen: "127.0.0.1:0".parse().unwrap(), cert: identity.cert, key: missing });
    })
    .await;
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smpp_tls = Some(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let listeners = Listeners { http, enum_dns: None, smpp: None, smpp_tls, air: None, gy: None };
    let served = tokio::time::timeout(Duration::from_secs(5), opb.serve(listeners, CancellationToken::new())).await;
    match served.expect("the node did not stop at start") {
        Err(e @ OperatorError::Config(_)) => assert!(e.to_string().contains("[smpp.tls]"), "{e}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn the_tls_keys_read_from_the_configuration() {
    let c: OperatorConfig = toml::from_str(
        r#"
        name = "opa"
        [smpp]
        listen = "127.0.0.1:2775"
        tls = { listen = "127.0.0.1:3550", cert = "pki/operator-opa.pem", key = "pki/operator-opa.key" }
        [[interconnect]]
        operator = "opb"
        addr = "127.0.0.1:3551"
        system_id = "ic-opa"
        password = "icpw"
        tls = { ca = "pki/ca.pem", server_name = "smsc.opb.example" }
        "#,
    )
    .unwrap();
    let tls = c.smpp.tls.unwrap();
    assert_eq!((tls.listen.port(), tls.key.to_str()), (3550, Some("pki/operator-opa.key")));
    let peer = c.interconnect[0].tls.as_ref().unwrap();
    assert_eq!((peer.ca.to_str(), peer.server_name.as_deref()), (Some("pki/ca.pem"), Some("smsc.opb.example")));
    assert_eq!(c.interconnect[0].enquire_link_ms, operator::config::DEFAULT_ENQUIRE_LINK_MS);
    assert!(toml::from_str::<OperatorConfig>("[smpp]\ntls = { listen = \"127.0.0.1:3550\", cert = \"c\" }").is_err());
}

/// Relays connections from `front` to `back`, counting them.
async fn counting_relay(front: TcpListener, back: SocketAddr) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = front.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(back).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    count
}

#[tokio::test]
async fn an_idle_link_stays_bound_past_the_peers_idle_timeout() {
    // The peer: an SMS center that unbinds a session silent for 300 ms.
    let stop = CancellationToken::new();
    let peer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer_listener.local_addr().unwrap();
    let peer_config = smsc::SmppConfig { idle_timeout: Duration::from_millis(300), ..smsc::SmppConfig::default() };
    let directory = smsc::EsmeDirectory::new([smsc::EsmeAccount::new("ic-opa", "icpw", 1000).unwrap()]);
    let (tx, mut submitted) = tokio::sync::mpsc::channel(16);
    let handler = smsc::ChannelHandler::new(tx);
    tokio::spawn(smsc::serve(peer_listener, peer_config, directory, handler, smsc::Receivers::new(), stop.clone()));
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    let connections = counting_relay(front, peer_addr).await;

    // opa's link to it sends enquire_link after 100 ms without sending.
    let dir = tempfile::tempdir().unwrap();
    let opa = node("opa", dir.path(), |c| {
        c.interconnect = vec![InterconnectPeer {
            operator: op("opb"),
            addr: front_addr,
            system_id: "ic-opa".into(),
            password: "icpw".into(),
            tls: None,
            enquire_link_ms: 100,
        }];
    })
    .await;
    let opa_smpp = serve(&opa, false, &stop).await;
    eventually("the link connects", async || connections.load(Ordering::SeqCst) == 1).await;

    // Idle for more than three of the peer's idle timeouts, then a message crosses.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    submit_for_opb(opa_smpp).await;
    let crossed = tokio::time::timeout(Duration::from_secs(10), submitted.recv()).await;
    assert_eq!(crossed.expect("the message did not cross").expect("peer running").system_id, "ic-opa");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "the link reconnected: it was unbound while idle");
    stop.cancel();
}
