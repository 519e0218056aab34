//! The OTA server's metrics: jobs by state (from the database), packets sent, and the proofs
//! of receipt by status.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::Node;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabel {
    status: &'static str,
}

#[derive(Default)]
pub(crate) struct OtaMetrics {
    pub sent: Counter,
    pors: Family<StatusLabel, Counter>,
    jobs: Family<StateLabel, Gauge>,
}

impl OtaMetrics {
    /// A proof of receipt came with this status (`unverifiable`: its checksum failed).
    pub fn por(&self, status: &'static str) {
        self.pors.get_or_create(&StatusLabel { status }).inc();
    }
}

/// Registers the metrics in the node's registry.
pub(crate) fn register(node: &Node) {
    let (r, m) = (node.metrics(), &node.ota().metrics);
    r.register("operator_ota_packets_sent", "Secured command packets the OTA server sent", m.sent.clone());
    r.register(
        "operator_ota_proofs_of_receipt",
        "Proofs of receipt received, by status (ok, counter_low, checksum_failed, ..., unverifiable)",
        m.pors.clone(),
    );
    r.register("operator_ota_jobs", "OTA jobs by state (queued, sent, done, failed)", m.jobs.clone());
}

/// Refreshes the jobs-by-state gauge from the database.
pub(crate) async fn refresh(node: &Node) {
    if let Ok(counts) = node.store().ota_job_counts().await {
        for state in ["queued", "sent", "done", "failed"] {
            let n = counts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
            node.ota().metrics.jobs.get_or_create(&StateLabel { state: state.into() }).set(n);
        }
    }
}
