//! The node: shared state behind a cheap handle, its HTTP router, and its lifetime.
//!
//! [`Node`] owns what every part of an operator node shares (configuration, database,
//! clearinghouse client, clock, metrics) and the background tasks. Feature modules
//! ([`crate::portability`], [`crate::sms_center`]) add routes to [`Node::router`] (with their
//! OpenAPI operations, [`crate::openapi`]) and tasks to [`Node::run`], and keep their logic in
//! their own module.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use clearinghouse_api::ClearinghouseClient;
use numport_core::{Clock, Millis, OperatorName};
use replica::Replica;
use telemetry::{HealthCheck, Registry};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use crate::openapi::{Health, NodeDoc};
use crate::store::OperatorStore;
use crate::{OperatorError, portability};

/// Largest request body the node accepts; every API body is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long [`Node::run`] waits, after the server stopped, for message processing to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a node listens on.
pub struct Listeners {
    pub http: TcpListener,
    pub enum_dns: Option<replica::dns::EnumSockets>,
    pub smpp: Option<TcpListener>,
    /// SMPP over TLS, with the certificate and key of `[smpp.tls]`.
    pub smpp_tls: Option<TcpListener>,
    /// The air interface terminals attach to.
    pub air: Option<TcpListener>,
    /// Diameter Gy of the embedded OCS (`[ocs]`).
    pub gy: Option<TcpListener>,
}

/// An operator node; cheap to clone, every clone is the same node.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

pub(crate) struct NodeInner {
    pub config: OperatorConfig,
    pub store: OperatorStore,
    pub client: ClearinghouseClient,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    /// Decoded `callback_secret`; `None` refuses every callback.
    pub callback_secret: Option<Vec<u8>>,
    /// The key that seals card keys at rest; `None` when none is configured.
    pub sealer: Option<crate::sealing::Sealer>,
    /// Ids of messages being processed now, so the re-processor does not start them twice.
    pub inflight: Mutex<HashSet<i64>>,
    /// Message processing spawned from callbacks, drained at shutdown.
    pub tasks: TaskTracker,
    pub callback_registered: AtomicBool,
    /// The node's copy of the routing data (F2).
    pub replica: Replica,
    /// The SMS center's dispatch and group commit.
    pub sms: crate::sms_center::SmsCenter,
    /// Provisioning of the network elements (F6).
    pub provisioner: crate::provisioner::Provisioner,
    /// The OTA server (F7).
    pub ota: crate::ota::Ota,
    /// SMS authentication: each SIM's key and counters for tagging SMS-DELIVERs (F3).
    pub sms_auth: crate::sms_center::authentication::Authenticator,
    /// The embedded online charging system (F4), with its resolved `[ocs]` section.
    pub ocs: Option<(ocs::Ocs, crate::online_charging::OcsSection)>,
}

impl Node {
    /// Open the node's database (creating and migrating it) and its replica's data directory,
    /// and build the node. A configuration [`OperatorConfig::check`] refuses is not started.
    pub async fn open(config: OperatorConfig, clock: Arc<dyn Clock>) -> Result<Node, OperatorError> {
        config.check()?;
        let callback_secret = config.callback_secret_bytes()?;
        config.service_number()?;
        if callback_secret.is_none() {
            tracing::warn!(
                node = %config.name,
                "no callback_secret configured: callbacks are refused, messages arrive by inbox catch-up only"
            );
        }
        let sealer = config.sealer()?;
        let store = OperatorStore::open(&config.database()).await?;
        let registry = Registry::new();
        let ocs = match &config.ocs {
            Some(section) => {
                let section = section.resolved(&config.name);
                Some((crate::online_charging::open(&section, clock.clone(), &registry).await?, section))
            }
            None => None,
        };
        let replica = Replica::open(config.resolved_npdb(), &registry).await?;
        let sms = crate::sms_center::SmsCenter::new(
            store.max_sms_id().await?,
            config.interconnect.iter().map(|p| p.operator.to_string()),
        );
        let client = ClearinghouseClient::with_tls(
            &config.clearinghouse_url,
            &config.api_token,
            config.clearinghouse_tls.as_ref(),
        )?;
        let provisioner =
            crate::provisioner::Provisioner::new(store.clone(), clock.clone(), config.provisioning.clone());
        Ok(Node {
            inner: Arc::new(NodeInner {
                provisioner,
                sms_auth: crate::sms_center::authentication::Authenticator::new(config.sms_auth.clone()),
                metrics: Metrics::new(registry),
                config,
                store,
                client,
                clock,
                callback_secret,
                sealer,
                replica,
                sms,
                ota: crate::ota::Ota::default(),
                ocs,
                inflight: Mutex::new(HashSet::new()),
                tasks: TaskTracker::new(),
                callback_registered: AtomicBool::new(false),
            }),
        })
    }

    pub fn name(&self) -> &OperatorName {
        &self.inner.config.name
    }

    pub fn config(&self) -> &OperatorConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &OperatorStore {
        &self.inner.store
    }

    /// The key that seals card keys at rest: an error naming the missing setting when the
    /// node has none.
    pub fn sealer(&self) -> Result<&crate::sealing::Sealer, OperatorError> {
        self.inner
            .sealer
            .as_ref()
            .ok_or_else(|| OperatorError::Config("key_encryption_key is not set: card keys cannot be sealed".into()))
    }

    pub fn client(&self) -> &ClearinghouseClient {
        &self.inner.client
    }

    /// The embedded online charging system (F4), when the configuration has `[ocs]`.
    pub fn ocs(&self) -> Option<&ocs::Ocs> {
        self.inner.ocs.as_ref().map(|(ocs, _)| ocs)
    }

    /// The SMS center's tagger of SMS-DELIVERs (F3).
    pub fn sms_auth(&self) -> &crate::sms_center::authentication::Authenticator {
        &self.inner.sms_auth
    }

    /// Records a SIM this operator issues and gives it its first SMS-authentication key: the
    /// key to write into the SIM (`None` if it had one).
    pub async fn issue_sim(
        &self,
        imsi: &str,
        msisdn: &str,
        k_sim: &[u8],
    ) -> Result<Option<crate::sms_center::authentication::IssuedKey>, OperatorError> {
        let config = &self.inner.config.sms_auth;
        crate::sms_center::authentication::issue_sim(
            self.store(),
            self.sealer()?,
            config,
            imsi,
            msisdn,
            k_sim,
            self.now(),
        )
        .await
    }

    /// Issues the next SMS-authentication key of the SIM `imsi`, not yet active: the key the
    /// OTA server writes into the SIM. Activate it with [`Node::activate_sms_auth_key`] once the
    /// SIM confirms.
    pub async fn issue_sms_auth_key(
        &self,
        imsi: &str,
    ) -> Result<crate::sms_center::authentication::IssuedKey, OperatorError> {
        let config = &self.inner.config.sms_auth;
        crate::sms_center::authentication::issue_key(self.store(), self.sealer()?, config, imsi, self.now()).await
    }

    /// Activates key `version` of the SIM `imsi`: the SMS center tags with it from its next
    /// SMS-DELIVER on, and the keys before it are retired after the grace period. False if
    /// there is no such key.
    pub async fn activate_sms_auth_key(&self, imsi: &str, version: u8) -> Result<bool, OperatorError> {
        let config = &self.inner.config.sms_auth;
        let done =
            crate::sms_center::authentication::activate_key(self.store(), config, imsi, version, self.now()).await?;
        self.sms_auth().reload(imsi).await;
        Ok(done)
    }

    /// The node's SMS center.
    pub fn sms(&self) -> &crate::sms_center::SmsCenter {
        &self.inner.sms
    }

    /// The node's portability replica.
    pub fn replica(&self) -> &Replica {
        &self.inner.replica
    }

    pub fn metrics(&self) -> &Registry {
        &self.inner.metrics.registry
    }

    pub fn now(&self) -> Millis {
        self.inner.clock.now_ms()
    }

    /// Whether the callback URL has been registered at the clearinghouse since start.
    pub fn callback_registered(&self) -> bool {
        self.inner.callback_registered.load(Ordering::Relaxed)
    }

    /// Every route of the node, with the body limit: the portability adapter's routes, the
    /// replica's lookups, `/metrics`, `/healthz` and `/openapi.json` (the document of them all,
    /// [`crate::openapi`]); every error in the JSON shape ([`telemetry::json_errors`]).
    pub fn router(&self) -> Router {
        let node = self.clone();
        let health: HealthCheck = Arc::new(move || {
            let npdb = node.replica().status();
            let health = Health {
                status: if npdb.stale { "stale" } else { "ok" },
                operator: node.name().clone(),
                callback_registered: node.callback_registered(),
                unprocessed_messages: node.inner.metrics.unprocessed.get(),
                npdb,
            };
            (true, serde_json::to_value(health).unwrap_or_default())
        });
        let (routes, doc) = OpenApiRouter::with_openapi(NodeDoc::openapi())
            .merge(portability::routes())
            .merge(crate::provisioner::http::routes())
            .merge(crate::account_opening::http::routes())
            .merge(crate::ota::http::routes())
            .with_state(self.clone())
            .merge(replica::http::api(self.replica().clone()))
            .split_for_parts();
        let routes = routes
            .merge(replica::http::openapi_route(&doc))
            .merge(match &self.inner.ocs {
                Some((ocs, section)) => ocs::http::router(ocs.clone(), &section.api_token_sha256),
                None => Router::new(),
            })
            .merge(match self.config().metrics_listen {
                None => telemetry::routes(self.inner.metrics.registry.clone(), health),
                Some(_) => telemetry::health_routes(health),
            })
            .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES));
        telemetry::json_errors(routes).layer(TraceLayer::new_for_http())
    }

    /// The SMPP server's listeners; the TLS one with the certificate of `[smpp.tls]`.
    fn smpp_endpoints(
        &self,
        plain: Option<TcpListener>,
        tls: Option<TcpListener>,
    ) -> Result<Option<smsc::Endpoints>, OperatorError> {
        let tls = match (tls, &self.config().smpp.tls) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(OperatorError::Config("an SMPP TLS listener needs [smpp.tls] cert and key".into()));
            }
            (Some(listener), Some(files)) => {
                let identity = numport_tls::TlsFiles { cert: files.cert.clone(), key: files.key.clone() };
                let config = numport_tls::server_config(&identity, None)
                    .map_err(|e| OperatorError::Config(format!("[smpp.tls]: {e}")))?;
                Some((listener, config))
            }
        };
        Ok((plain.is_some() || tls.is_some()).then_some(smsc::Endpoints { plain, tls }))
    }

    /// Serve the node's HTTP API on `listener` until `shutdown` is cancelled, with no ENUM or
    /// SMPP server.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) -> Result<(), OperatorError> {
        self.serve(
            Listeners { http: listener, enum_dns: None, smpp: None, smpp_tls: None, air: None, gy: None },
            shutdown,
        )
        .await
    }

    /// Serve the node on its listeners until `shutdown` is cancelled: HTTP, ENUM (bound by
    /// [`replica::dns::bind`]) and SMPP where given.
    ///
    /// Also runs the background work, which stops on the same token: registering the callback
    /// URL and catching up with the inbox (retried with back-off while the clearinghouse is
    /// unreachable; startup does not wait for it), the re-processor of messages whose
    /// processing did not finish, and the replica following the routing feed. On shutdown,
    /// in-flight message processing gets a few seconds to finish; anything cut short is still
    /// recorded and is processed at the next start.
    pub async fn serve(self, listeners: Listeners, shutdown: CancellationToken) -> Result<(), OperatorError> {
        let Listeners { http: listener, enum_dns, smpp, smpp_tls, air, gy } = listeners;
        // TLS files are read before anything runs: a wrong path stops the node at start.
        let tls = numport_tls::serving(self.config().tls.as_ref(), self.config().plain_http)?;
        let smpp = self.smpp_endpoints(smpp, smpp_tls)?;
        let mut links_tls = HashMap::new();
        for peer in &self.config().interconnect {
            links_tls.insert(peer.operator.to_string(), crate::sms_center::interconnect::client_tls(peer)?);
        }
        let bound = listener.local_addr()?;
        tracing::info!(node = %self.name(), addr = %bound, "operator node listening");
        let background = shutdown.child_token();
        let mut tasks = JoinSet::new();
        tasks.spawn(self.clone().startup_sync(bound, background.clone()));
        tasks.spawn(self.clone().reprocessor(background.clone()));
        tasks.spawn(self.replica().clone().follow(background.clone()));
        tasks.spawn(crate::provisioner::run(self.clone(), background.clone()));
        tasks.spawn(crate::ota::run(self.clone(), background.clone()));
        // The SMS center's committer stops last: every task that commits has stopped by then.
        let sms_stop = CancellationToken::new();
        let sms_tasks = self.sms().tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
        let committer = match sms_tasks {
            Some(t) => {
                for (operator, queue) in t.peers {
                    if let Some(peer) = self.config().interconnect.iter().find(|p| p.operator.as_str() == operator) {
                        let tls = links_tls.remove(&operator).flatten();
                        let run = crate::sms_center::interconnect::run(
                            self.clone(),
                            peer.clone(),
                            tls,
                            queue,
                            background.clone(),
                        );
                        tasks.spawn(run);
                    }
                }
                tasks.spawn(crate::sms_center::receipts::run(self.clone(), t.receipts, background.clone()));
                tasks.spawn(crate::sms_center::scheduler::run(self.clone(), background.clone()));
                Some(tokio::spawn(crate::sms_center::committer::run(self.clone(), t.commits, sms_stop.clone())))
            }
            None => {
                tracing::warn!(node = %self.name(), "the node was served before: the SMS center does not run again");
                None
            }
        };
        if let Some(air) = air {
            tasks.spawn(crate::air::serve(self.clone(), air, background.clone()));
        }
        if let Some(smpp) = smpp {
            let esmes = self.store().esmes().await?;
            let addr = smpp.plain.as_ref().and_then(|l| l.local_addr().ok());
            let tls = smpp.tls.as_ref().and_then(|(l, _)| l.local_addr().ok());
            tracing::info!(node = %self.name(), esmes = esmes.len(), ?addr, ?tls, "SMPP server listening");
            let config = smsc::SmppConfig {
                observer: smsc::Observer::new(Arc::new(self.inner.metrics.clone())),
                ..self.config().smpp.server_config(self.name())
            };
            let alphabets = esmes.iter().map(|a| (a.system_id.clone(), a.default_alphabet)).collect();
            let center = crate::sms_center::SubmitToCenter { node: self.clone(), alphabets };
            let (stop, receivers) = (background.clone(), self.sms().receivers.clone());
            tasks.spawn(async move {
                let directory = smsc::EsmeDirectory::new(esmes);
                if let Err(e) = smsc::serve(smpp, config, directory, center, receivers, stop).await {
                    tracing::error!(error = %e, "SMPP server stopped");
                }
            });
        }
        if let Some(sockets) = enum_dns {
            let handler = replica::dns::EnumHandler::new(self.replica().clone(), &self.replica().config().enum_dns)
                .map_err(OperatorError::Config)?;
            let stop = background.clone();
            tasks.spawn(async move {
                if let Err(e) = replica::dns::serve(handler, sockets, stop).await {
                    tracing::error!(error = %e, "ENUM server stopped");
                }
            });
        }

        let ocs = self.start_ocs(gy, tls.clone(), background.clone()).await?;
        if let Some(addr) = self.config().metrics_listen {
            let router = telemetry::metrics_routes(self.inner.metrics.registry.clone());
            let (_, metrics) =
                numport_tls::http::serve_metrics(addr, router, self.config().tls.as_ref(), shutdown.clone()).await?;
            tasks.spawn(async move {
                let _ = metrics.await;
            });
        }
        let served = numport_tls::http::serve(listener, self.router(), tls, shutdown.clone()).await;

        background.cancel();
        while tasks.join_next().await.is_some() {}
        if let Some(ocs) = ocs
            && let Err(e) = ocs.stop().await
        {
            tracing::error!(node = %self.name(), error = %e, "the OCS's Diameter server failed");
        }
        sms_stop.cancel();
        if let Some(c) = committer {
            let _ = c.await;
        }
        self.inner.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.inner.tasks.wait()).await.is_err() {
            tracing::warn!(node = %self.name(), "message processing still running at shutdown; it resumes at next start");
        }
        tracing::info!(node = %self.name(), "operator node stopped");
        served?;
        Ok(())
    }

    /// Serve the embedded OCS's Gy on `gy` and supervise its sessions; nothing without `[ocs]`.
    async fn start_ocs(
        &self,
        gy: Option<TcpListener>,
        tls: Option<Arc<numport_tls::rustls::ServerConfig>>,
        stop: CancellationToken,
    ) -> Result<Option<ocs::server::Running>, OperatorError> {
        let Some((ocs, section)) = &self.inner.ocs else {
            return match gy {
                Some(_) => Err(OperatorError::Config("a Diameter Gy listener needs an [ocs] table".into())),
                None => Ok(None),
            };
        };
        let running = ocs::server::start(ocs, gy, &section.gy_settings(tls), stop)
            .await
            .map_err(|e| OperatorError::Config(format!("starting the OCS: {e}")))?;
        Ok(Some(running))
    }

    /// The callback URL this node registers when bound to `bound`.
    pub fn callback_url(&self, bound: SocketAddr) -> String {
        self.inner.config.callback_url(bound)
    }
}
