//! What the peer tests share: a server on a free loopback port with a handler that grants what
//! is asked (these tests are about the base protocol, not rating), and raw message helpers.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diameter::cc::{CcRequestType, Cca, Ccr, ImsInformation, Mscc, PsInformation, ServiceInformation, ServiceUnit};
use diameter::peer::{CreditControlHandler, KnownPeer, ServerConfig, Timers, serve};
use diameter::{Identity, dict::result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const OCS_HOST: &str = "ocs.numport.test";
pub const OCS_REALM: &str = "numport.test";

pub fn identity(host: &str, realm: &str) -> Identity {
    Identity {
        origin_host: host.into(),
        origin_realm: realm.into(),
        host_ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        vendor_id: 0,
        product_name: "numport".into(),
        origin_state_id: 1,
    }
}

/// Grants each MSCC what it requests (1 MB when it requests nothing), valid 600 s; records
/// every CCR it answered.
#[derive(Default)]
pub struct Granting {
    pub seen: Mutex<Vec<Ccr>>,
    /// Answers only after this long (for the failover test).
    pub delay: Option<Duration>,
}

impl CreditControlHandler for Granting {
    async fn credit_control(&self, ccr: Ccr) -> Cca {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let mut cca = Cca::answering(&ccr, result::SUCCESS);
        if ccr.request_type != CcRequestType::Termination {
            cca.mscc = ccr
                .mscc
                .iter()
                .map(|m| Mscc {
                    rating_group: m.rating_group,
                    service_identifiers: m.service_identifiers.clone(),
                    granted: Some(ServiceUnit {
                        total_octets: Some(m.requested.and_then(|r| r.total_octets).unwrap_or(1_000_000)),
                        ..ServiceUnit::default()
                    }),
                    validity_time: Some(600),
                    result_code: Some(result::SUCCESS),
                    ..Mscc::default()
                })
                .collect();
        }
        self.seen.lock().unwrap().push(ccr);
        cca
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub handler: Arc<Granting>,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A server that knows `peers` (host, realm), with these timers and maximum size.
pub async fn server(peers: &[(&str, &str)], timers: Timers, max_message: usize, handler: Granting) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers =
        peers.iter().map(|(h, r)| KnownPeer { origin_host: h.to_string(), origin_realm: r.to_string() }).collect();
    let mut config = ServerConfig::new(identity(OCS_HOST, OCS_REALM), peers);
    config.timers = timers;
    config.max_message = max_message;
    let handler = Arc::new(handler);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, Arc::new(config), handler.clone(), stop_rx));
    Server { addr, handler, stop, task }
}

pub fn quick_timers() -> Timers {
    Timers { tw: Duration::from_millis(300), capabilities_exchange: Duration::from_secs(2) }
}

/// Reads one whole message (or `None` at the end of the stream), failing after 5 s.
pub async fn read_message(s: &mut TcpStream) -> Option<Vec<u8>> {
    let read = async {
        let mut head = [0u8; 20];
        if s.read_exact(&mut head).await.is_err() {
            return None;
        }
        let len = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
        let mut buf = head.to_vec();
        buf.resize(len, 0);
        s.read_exact(&mut buf[20..]).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("a message or the end within 5 s")
}

/// Whether the server closed the stream (reads the end, after any messages).
pub async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

pub async fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).await.unwrap();
}

/// The PS- and IMS-Information of the test sessions: every Service-Information AVP the codec
/// and the dictionary know, so that round trips and tshark see them all.
pub fn service_information() -> ServiceInformation {
    ServiceInformation {
        ps: Some(PsInformation {
            charging_id: Some(0x1234),
            called_station_id: Some("internet".into()),
            imsi_mcc_mnc: Some("24201".into()),
            sgsn_mcc_mnc: Some("24202".into()),
            rat_type: Some(vec![6]),
            user_location_info: Some(vec![0x82, 0x42, 0xf2, 0x10, 0, 1, 0x42, 0xf2, 0x10, 0, 0, 0, 1]),
        }),
        ims: Some(ImsInformation {
            node_functionality: 6,
            role_of_node: Some(0),
            calling_party_address: Some("tel:+4790000001".into()),
            called_party_address: Some("tel:+4790000002".into()),
        }),
    }
}
