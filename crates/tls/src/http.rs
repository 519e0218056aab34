//! HTTP over TLS: how every numport server serves its axum router, and how every client is
//! built.
//!
//! [`serve`] runs its own accept loop when TLS is on: each connection's handshake runs in a task
//! of its own under [`HANDSHAKE_TIMEOUT`], so a slow or silent client holds only its own task
//! and never the loop. A verified client certificate travels into every request of its
//! connection as a [`ClientCertificate`] extension.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::serve::ListenerExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{ClientTls, PeerIdentity, ServerTls, TlsError, peer_identity, server_config};

/// Longest a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The verified certificate a client presented on this request's connection (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate(pub PeerIdentity);

/// Serves `router` on `listener` until `shutdown` fires, over TLS when `tls` is set; then stops
/// accepting and lets the connections finish the requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    match tls {
        None => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let app = router.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
        }
        Some(config) => serve_tls(listener, router, TlsAcceptor::from(config), shutdown).await,
    }
}

/// Binds `addr` and serves `router` (a role's `/metrics`) there in a task of its own until
/// `shutdown`, over TLS with the role's certificate when it has one, without asking for client
/// certificates (a scraper is no operator).
pub async fn serve_metrics(
    addr: SocketAddr,
    router: Router,
    tls: Option<&ServerTls>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let invalid = |e: TlsError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let tls = tls.map(|tls| server_config(&tls.identity(), None)).transpose().map_err(invalid)?;
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "metrics listening");
    Ok((bound, tokio::spawn(serve(listener, router, tls, shutdown))))
}

async fn serve_tls(
    listener: TcpListener,
    router: Router,
    acceptor: TlsAcceptor,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: as axum::serve does,
                // wait a moment rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        tokio::spawn(connection(acceptor.clone(), tcp, remote, router.clone(), watcher));
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One connection: the handshake, then HTTP/1.1 until the client or the shutdown closes it.
async fn connection(acceptor: TlsAcceptor, tcp: TcpStream, remote: SocketAddr, router: Router, watcher: Watcher) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
    };
    let client = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|cert| {
        // rustls verified the chain; a subject this reader cannot parse names nobody.
        ClientCertificate(peer_identity(cert).unwrap_or_default())
    });
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        if let Some(client) = &client {
            request.extensions_mut().insert(client.clone());
        }
        router.clone().oneshot(request)
    });
    let http = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
    if let Err(e) = watcher.watch(http).await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// A reqwest client, set up by `configure`, that trusts only `tls`'s CA and presents its
/// certificate, if any; without `tls`, one for `http://` URLs.
pub fn client(
    tls: Option<&ClientTls>,
    configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, TlsError> {
    let builder = reqwest::Client::builder();
    let builder = match tls {
        Some(tls) => builder.use_preconfigured_tls(Arc::unwrap_or_clone(tls.config()?)),
        None => builder,
    };
    configure(builder).build().map_err(TlsError::HttpClient)
}
