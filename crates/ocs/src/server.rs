//! The OCS as a role serves it: Diameter Gy on a listener, the Tcc supervisor, and the
//! settings both hosts share (`numport ocs` alone, and the operator node that embeds it), so
//! that one piece of code builds the Diameter identity and the list of peers.

use std::net::SocketAddr;
use std::sync::Arc;

use diameter::base::Identity;
use diameter::peer::{KnownPeer, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Ocs;
use crate::gy::GyHandler;

/// A Diameter peer allowed to connect: a switching centre's or gateway's Origin-Host and
/// Origin-Realm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub origin_host: String,
    pub origin_realm: String,
}

impl std::str::FromStr for Peer {
    type Err = String;

    /// `origin-host,origin-realm`, as the command line takes it.
    fn from_str(s: &str) -> Result<Peer, String> {
        let (host, realm) = s.split_once(',').ok_or("expected origin-host,origin-realm")?;
        let (host, realm) = (host.trim(), realm.trim());
        if host.is_empty() || realm.is_empty() {
            return Err("expected origin-host,origin-realm, both non-empty".into());
        }
        Ok(Peer { origin_host: host.into(), origin_realm: realm.into() })
    }
}

/// Who the OCS is on Diameter and whom it accepts.
#[derive(Debug, Clone)]
pub struct GySettings {
    pub origin_host: String,
    pub origin_realm: String,
    /// The peers whose CER is accepted; any other is answered 3010.
    pub peers: Vec<Peer>,
    /// TLS from the first octet (RFC 6733 §2.1), as numport-tls builds it; `None` is plain TCP.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl GySettings {
    /// The Diameter server's configuration for a listener bound to `addr`.
    pub fn server_config(&self, addr: SocketAddr) -> ServerConfig {
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let identity = Identity {
            origin_host: self.origin_host.clone(),
            origin_realm: self.origin_realm.clone(),
            host_ip_addresses: vec![addr.ip()],
            vendor_id: 0,
            product_name: "numport".into(),
            // Changes at every start, so peers see the restart (RFC 6733 §8.16).
            origin_state_id: started.as_secs() as u32,
        };
        let peers = self
            .peers
            .iter()
            .map(|p| KnownPeer { origin_host: p.origin_host.clone(), origin_realm: p.origin_realm.clone() })
            .collect();
        ServerConfig { tls: self.tls.clone(), ..ServerConfig::new(identity, peers) }
    }
}

/// A running OCS: its Diameter server (if it serves Gy) and Tcc supervisor.
pub struct Running {
    stop: watch::Sender<bool>,
    gy: Option<JoinHandle<std::io::Result<()>>>,
    supervisor: JoinHandle<()>,
}

impl Running {
    /// Stop serving Gy and supervising, and wait for both.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        let served = match self.gy {
            Some(gy) => gy.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        };
        let _ = self.supervisor.await;
        served
    }
}

/// Check the books, then serve Gy on `listener` (none: the OCS is reached only through its
/// API) and supervise sessions until [`Running::stop`] (or `shutdown`, for the supervisor).
pub async fn start(
    ocs: &Ocs,
    listener: Option<TcpListener>,
    settings: &GySettings,
    shutdown: CancellationToken,
) -> crate::service::Result<Running> {
    let report = ocs.check_ledger().await?;
    tracing::info!(accounts = report.accounts, total = report.total, "OCS books checked");
    let (stop, stopped) = watch::channel(false);
    let gy = match listener {
        Some(listener) => {
            let addr = listener.local_addr().map_err(|e| crate::OcsError::Invalid(format!("the Gy listener: {e}")))?;
            let config = Arc::new(settings.server_config(addr));
            let handler = Arc::new(GyHandler::new(ocs.clone()));
            tracing::info!(%addr, peers = settings.peers.len(), "OCS serving Diameter Gy");
            Some(tokio::spawn(diameter::peer::serve(listener, config, handler, stopped)))
        }
        None => None,
    };
    let supervisor = ocs.spawn_supervisor(shutdown);
    Ok(Running { stop, gy, supervisor })
}

#[cfg(test)]
mod tests {
    use super::Peer;

    #[test]
    fn a_peer_is_host_comma_realm() {
        let p: Peer = " msc1.opa.local , opa.local".parse().unwrap();
        assert_eq!(p, Peer { origin_host: "msc1.opa.local".into(), origin_realm: "opa.local".into() });
        assert!("msc1.opa.local".parse::<Peer>().is_err());
        assert!(",opa.local".parse::<Peer>().is_err());
    }
}
