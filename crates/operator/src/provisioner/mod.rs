//! The node's provisioning device (F6): orders in, durable per-category queues in the node's
//! database, the dispatcher that sends them to the network elements, and the node's own flows.
//!
//! The logic (categories, protection states, allocation, the elements' protocol) is the
//! `provisioning` crate's; this module owns what is the node's: the queues' tables
//! ([`crate::store::provisioning`]), the order API ([`http`]), the metrics ([`metrics`]), the
//! configuration ([`ProvisioningConfig`]) and the elements the node simulates itself when the
//! configuration names no address for one.
//!
//! An order is acknowledged once it and its commands are committed ([`Provisioner::enqueue`]);
//! only then are its commands handed to the dispatcher, which records each outcome back in the
//! database. At start the node hands over every command still queued, in the order committed,
//! and queues the ports it recorded without a provisioning order (a crash between the port's
//! transaction and its order's): a port-in activates the subscriber on every element, a
//! port-out deactivates it.

pub mod http;
pub(crate) mod metrics;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use numport_core::{Clock, Msisdn};
use provisioning::dispatcher::{Dispatcher, DispatcherConfig, Journal, Outcome, Queued, Status};
use provisioning::element::{ElementConfig, ElementServer};
use provisioning::{Action, Category, Element, Order};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::provisioning::NewOrder;
use crate::store::{EventKind, OperatorStore};
use crate::{Node, OperatorError};

/// The `[provisioning]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisioningConfig {
    /// Where the HLR/HSS listens; `None`: the node runs a simulated one on a loopback port.
    pub hlr: Option<SocketAddr>,
    /// Where the SMS center's subscriber list is provisioned; `None`: simulated.
    pub smsc: Option<SocketAddr>,
    /// Where the charging accounts are; `None`: simulated.
    pub charging: Option<SocketAddr>,
    /// Commands per second of each simulated element.
    pub simulated_capacity: u32,
    /// Latency of each simulated element's answers, in milliseconds.
    pub simulated_latency_ms: u64,
    /// The plan a ported-in subscriber is activated with.
    pub port_in_plan: String,
    /// SHA-256 (hex) of the bearer token the order API requires; empty: the API refuses all.
    pub token_sha256: String,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            hlr: None,
            smsc: None,
            charging: None,
            simulated_capacity: 5_000,
            simulated_latency_ms: 1,
            port_in_plan: "basic".into(),
            token_sha256: String::new(),
        }
    }
}

impl ProvisioningConfig {
    fn address(&self, element: Element) -> Option<SocketAddr> {
        match element {
            Element::Hlr => self.hlr,
            Element::Smsc => self.smsc,
            Element::Charging => self.charging,
        }
    }
}

/// An order as taken: its id and category, or the id of the order its source already made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub id: i64,
    pub commands: usize,
    /// The order's source had already made this order; nothing new was queued.
    pub duplicate: bool,
}

/// Why orders were not queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// An order that cannot be provisioned; nothing of the batch was queued.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Node(#[from] OperatorError),
}

/// The node's provisioning device.
pub struct Provisioner {
    store: OperatorStore,
    clock: Arc<dyn Clock>,
    config: ProvisioningConfig,
    /// The next order and command ids; held across each enqueue's commit and hand-over, so the
    /// dispatcher gets commands in the order they were committed.
    next: tokio::sync::Mutex<Option<(i64, i64)>>,
    dispatcher: OnceLock<Dispatcher>,
    simulated: OnceLock<Vec<ElementServer>>,
}

struct StoreJournal(OperatorStore);

impl Journal for StoreJournal {
    async fn record(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        self.0.record_provisioning_outcomes(outcomes).await.map_err(|e| e.to_string())
    }
}

impl Provisioner {
    pub fn new(store: OperatorStore, clock: Arc<dyn Clock>, config: ProvisioningConfig) -> Provisioner {
        Provisioner {
            store,
            clock,
            config,
            next: tokio::sync::Mutex::new(None),
            dispatcher: OnceLock::new(),
            simulated: OnceLock::new(),
        }
    }

    pub fn config(&self) -> &ProvisioningConfig {
        &self.config
    }

    /// Queue `orders` (each with its source, if any): validated, classified, expanded, and
    /// committed before this returns; then handed to the dispatcher when it runs.
    pub async fn enqueue(&self, orders: Vec<(Order, Option<String>)>) -> Result<Vec<Accepted>, EnqueueError> {
        for (o, _) in &orders {
            o.validate().map_err(|e| EnqueueError::Invalid(format!("{}: {e}", o.msisdn)))?;
        }
        let mut next = self.next.lock().await;
        let (mut order_id, mut command_id) = match *next {
            Some(n) => n,
            None => self.store.provisioning_next_ids().await?,
        };
        let sources: Vec<&str> = orders.iter().filter_map(|(_, s)| s.as_deref()).collect();
        let known = self.store.provisioning_sources(&sources).await?;
        let now = self.clock.now_ms();
        let mut accepted = Vec::with_capacity(orders.len());
        let mut new = Vec::new();
        let mut seen: HashMap<String, i64> = HashMap::new();
        for (order, source) in orders {
            let earlier = source.as_ref().and_then(|s| known.get(s).or_else(|| seen.get(s)).copied());
            if let Some(id) = earlier {
                accepted.push(Accepted { id, commands: 0, duplicate: true });
                continue;
            }
            let category = order.category();
            let commands: Vec<Queued> = order
                .commands()
                .into_iter()
                .map(|command| {
                    command_id += 1;
                    Queued { id: command_id - 1, category, command }
                })
                .collect();
            accepted.push(Accepted { id: order_id, commands: commands.len(), duplicate: false });
            if let Some(s) = &source {
                seen.insert(s.clone(), order_id);
            }
            new.push(NewOrder { id: order_id, order, source, created_at: now, commands });
            order_id += 1;
        }
        self.store.insert_provisioning_orders(&new).await?;
        *next = Some((order_id, command_id));
        if let Some(d) = self.dispatcher.get() {
            d.submit(new.into_iter().flat_map(|o| o.commands).collect());
        }
        Ok(accepted)
    }

    /// The dispatcher's view, once it runs.
    pub fn status(&self) -> Option<Status> {
        self.dispatcher.get().map(Dispatcher::status)
    }

    /// The elements the node simulates itself.
    pub fn simulated(&self) -> &[ElementServer] {
        self.simulated.get().map(Vec::as_slice).unwrap_or_default()
    }

    /// The order a port makes: activation at the recipient, deactivation at the donor.
    async fn port_order(
        &self,
        kind: EventKind,
        msisdn: &Msisdn,
        message_id: Option<i64>,
    ) -> Result<Option<(Order, Option<String>)>, OperatorError> {
        let action = match kind {
            EventKind::PortIn => {
                let imsi = match self.store.imsi_of(msisdn).await? {
                    Some(imsi) => imsi,
                    None => placeholder_imsi(msisdn),
                };
                Action::PortIn { imsi, plan: self.config.port_in_plan.clone() }
            }
            EventKind::PortOut => Action::PortOut,
            _ => return Ok(None),
        };
        let source = message_id.map(|id| format!("message:{id}"));
        Ok(Some((Order::new(msisdn.clone(), action), source)))
    }

    /// Queue the order a recorded port makes (at most once per message).
    pub(crate) async fn provision_port(
        &self,
        kind: EventKind,
        msisdn: &Msisdn,
        message_id: Option<i64>,
    ) -> Result<(), EnqueueError> {
        if let Some(order) = self.port_order(kind, msisdn, message_id).await? {
            self.enqueue(vec![order]).await?;
        }
        Ok(())
    }
}

/// The IMSI a ported-in number is activated with when this node issued no SIM for it yet:
/// MCC 999 (reserved by ITU-T E.212 for internal use) and the number's last 12 digits, to be
/// replaced when the SIM is written.
fn placeholder_imsi(msisdn: &Msisdn) -> String {
    let digits = msisdn.as_str();
    format!("999{:0>12}", &digits[digits.len().saturating_sub(12)..])
}

/// Start the simulated elements and the dispatcher, hand over what is queued, queue the ports
/// left without their order; runs until `shutdown`, then waits for the outcomes known to be
/// recorded.
pub(crate) async fn run(node: Node, shutdown: CancellationToken) {
    if let Err(e) = start(&node, shutdown.clone()).await {
        tracing::error!(node = %node.name(), error = %e, "provisioning did not start");
    }
}

async fn start(node: &Node, shutdown: CancellationToken) -> Result<(), EnqueueError> {
    let p = node.provisioner();
    let mut addrs = HashMap::new();
    let mut simulated = Vec::new();
    for element in Element::ALL {
        let addr = match p.config.address(element) {
            Some(addr) => addr,
            None => {
                let listener = TcpListener::bind("127.0.0.1:0").await.map_err(OperatorError::from)?;
                let config = ElementConfig {
                    latency: std::time::Duration::from_millis(p.config.simulated_latency_ms),
                    ..ElementConfig::new(element, p.config.simulated_capacity)
                };
                let server = ElementServer::spawn(config, listener, shutdown.clone()).map_err(OperatorError::from)?;
                tracing::info!(node = %node.name(), %element, addr = %server.addr(), "simulated network element listening");
                let addr = server.addr();
                simulated.push(server);
                addr
            }
        };
        addrs.insert(element, addr);
    }
    let _ = p.simulated.set(simulated);
    let journal = StoreJournal(p.store.clone());
    let (dispatcher, done) =
        Dispatcher::start(DispatcherConfig::new(addrs), journal, p.clock.clone(), shutdown.clone());
    {
        // Under the enqueue lock: nothing is committed between this read and the hand-over.
        let _next = p.next.lock().await;
        let queued = p.store.queued_provisioning_commands().await?;
        if !queued.is_empty() {
            tracing::info!(node = %node.name(), commands = queued.len(), "provisioning commands queued from before");
        }
        dispatcher.submit(queued);
        let _ = p.dispatcher.set(dispatcher);
    }
    for e in p.store.unprovisioned_ports().await? {
        p.provision_port(e.kind, &e.msisdn, e.message_id).await?;
    }
    metrics::run(node.clone(), shutdown.clone());
    shutdown.cancelled().await;
    let _ = done.await;
    Ok(())
}

impl Node {
    /// The node's provisioning device.
    pub fn provisioner(&self) -> &Provisioner {
        &self.inner.provisioner
    }

    /// A port was recorded: queue its provisioning order in the background (the startup pass
    /// catches one lost in a crash).
    pub(crate) fn provision_port(&self, kind: EventKind, msisdn: &Msisdn, message_id: Option<i64>) {
        let (node, msisdn) = (self.clone(), msisdn.clone());
        self.inner.tasks.spawn(async move {
            if let Err(e) = node.provisioner().provision_port(kind, &msisdn, message_id).await {
                tracing::warn!(%msisdn, error = %e, "provisioning order for a port not queued; queued at next start");
            }
            // The recipient also re-writes the ported subscriber's card (F7).
            if kind == EventKind::PortIn
                && let Err(e) = crate::ota::port_in(&node, &msisdn, message_id).await
            {
                tracing::warn!(%msisdn, error = %e, "OTA job for a port-in not queued; queued at next start");
            }
        });
    }
}

/// Figures per category for the status answer, from the database.
pub(crate) async fn stored_counts(store: &OperatorStore) -> Result<HashMap<(Category, String), i64>, OperatorError> {
    Ok(store.provisioning_counts().await?.into_iter().map(|(c, s, n)| ((c, s), n)).collect())
}
