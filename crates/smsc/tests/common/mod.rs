//! The SMPP server as the suites start it: on a free loopback port, with the ESMEs given, its
//! accepted submits on a channel.

// Each suite uses what it needs of this module.
#![allow(dead_code)]

use std::net::SocketAddr;

use smsc::{EsmeAccount, EsmeDirectory, SmppConfig, Submitted};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A running server; dropping it stops it.
pub struct Server {
    pub addr: SocketAddr,
    /// The submits the server accepted, in the order accepted.
    pub submitted: mpsc::Receiver<Submitted>,
    pub receivers: smsc::Receivers,
    pub stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a server with `config` that lets `accounts` bind.
pub async fn start(config: SmppConfig, accounts: impl IntoIterator<Item = EsmeAccount>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, submitted) = mpsc::channel(4096);
    let stop = CancellationToken::new();
    let receivers = smsc::Receivers::new();
    let handler = smsc::ChannelHandler::new(tx);
    let directory = EsmeDirectory::new(accounts);
    tokio::spawn(smsc::serve(listener, config, directory, handler, receivers.clone(), stop.clone()));
    Server { addr, submitted, receivers, stop }
}

/// A PDU written byte by byte: header (command_status 0) and `body`.
pub fn pdu(command_id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut v = ((16 + body.len()) as u32).to_be_bytes().to_vec();
    v.extend(command_id.to_be_bytes());
    v.extend(0u32.to_be_bytes());
    v.extend(seq.to_be_bytes());
    v.extend_from_slice(body);
    v
}
