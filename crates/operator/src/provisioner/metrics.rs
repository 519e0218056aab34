//! The provisioning device's metrics: gauges refreshed from the dispatcher's status, and
//! counters advanced by what changed since.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use crate::Node;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabel {
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    category: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ElementLabel {
    element: &'static str,
}

/// How often the figures are refreshed.
const PERIOD: Duration = Duration::from_millis(500);

/// Register the metrics in the node's registry and refresh them until `shutdown`.
pub(crate) fn run(node: Node, shutdown: CancellationToken) {
    let r = node.metrics();
    let depth = Family::<CategoryLabel, Gauge>::default();
    r.register(
        "operator_provisioning_queue_depth",
        "Provisioning commands queued and not yet finished, by category",
        depth.clone(),
    );
    let state = Family::<CategoryLabel, Gauge>::default();
    r.register(
        "operator_provisioning_state",
        "Protection state by category: 0 normal, 1 limited, 2 suspended",
        state.clone(),
    );
    let transitions = Family::<CategoryLabel, Counter>::default();
    r.register("operator_provisioning_transitions", "Protection state changes, by category", transitions.clone());
    let outcomes = Family::<OutcomeLabels, Counter>::default();
    r.register(
        "operator_provisioning_commands",
        "Provisioning commands finished, by category and outcome (executed, dead, retried)",
        outcomes.clone(),
    );
    let utilisation = Family::<ElementLabel, Gauge<f64, AtomicU64>>::default();
    r.register(
        "operator_provisioning_element_utilisation",
        "Utilisation a network element last reported",
        utilisation.clone(),
    );
    let capacity = Family::<ElementLabel, Gauge>::default();
    r.register(
        "operator_provisioning_element_capacity",
        "Commands per second a network element last reported",
        capacity.clone(),
    );
    let element_depth = Family::<ElementLabel, Gauge>::default();
    r.register(
        "operator_provisioning_element_depth",
        "Queue depth a network element last reported",
        element_depth.clone(),
    );
    tokio::spawn(async move {
        let mut seen: std::collections::HashMap<(&'static str, &'static str), u64> = Default::default();
        let mut tick = tokio::time::interval(PERIOD);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(status) = node.provisioner().status() else { continue };
            for c in &status.categories {
                let category = c.category.as_str();
                depth.get_or_create(&CategoryLabel { category }).set(c.depth as i64);
                state.get_or_create(&CategoryLabel { category }).set(c.state.level());
                for (outcome, now) in
                    [("executed", c.executed), ("dead", c.dead), ("retried", c.retried), ("transition", c.transitions)]
                {
                    let last = seen.entry((category, outcome)).or_default();
                    let delta = now.saturating_sub(*last);
                    *last = now;
                    if outcome == "transition" {
                        transitions.get_or_create(&CategoryLabel { category }).inc_by(delta);
                    } else {
                        outcomes.get_or_create(&OutcomeLabels { category, outcome }).inc_by(delta);
                    }
                }
            }
            for e in &status.elements {
                let label = ElementLabel { element: e.element.as_str() };
                if let Some(load) = e.load {
                    utilisation.get_or_create(&label).set(load.utilisation);
                    capacity.get_or_create(&label).set(i64::from(load.capacity));
                    element_depth.get_or_create(&label).set(load.depth as i64);
                }
            }
        }
    });
}
