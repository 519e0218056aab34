//! The clearinghouse's figures at `/metrics`, registered in one place so that dashboards and
//! tests agree on their names.

use numport_core::porting::Reason;
use prometheus_client::encoding::EncodeLabelSet;
use telemetry::{Counter, Family, Histogram, LatencyFamily, Registry};

use crate::Counts;

/// The labels of `numport_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route's pattern (`/v1/porting-orders/{id}`), or `unmatched`.
    pub route: String,
    pub status: u16,
}

/// The label of `numport_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

/// The label of `numport_orders_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// The clearinghouse's own figures, exported at `/metrics`.
pub struct Metrics {
    pub registry: Registry,
    pub orders_requested: Counter,
    pub ports_completed: Counter,
    pub compensation_minor_units: Counter,
    pub violations: Counter,
    pub orders_closed: Family<ReasonLabel, Counter>,
    pub callbacks_delivered: Counter,
    pub callbacks_failed: Counter,
    pub callback_duration: Histogram,
    pub settlement_batches: Counter,
    pub settlement_batch_duration: Histogram,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_request_duration: LatencyFamily<RouteLabel>,
}

impl Metrics {
    pub(crate) fn new(registry: Registry) -> Metrics {
        let r = &registry;
        Metrics {
            orders_requested: r.counter("numport_orders_requested", "Terminal verification requests received"),
            ports_completed: r.counter("numport_ports_completed", "Porting orders settled and routed"),
            compensation_minor_units: r.counter(
                "numport_compensation_settled_minor_units",
                "Compensation moved from recipients to donors, in minor units",
            ),
            violations: r.counter("numport_violations", "Deadlines missed by operators"),
            orders_closed: r.counter_family("numport_orders_closed", "Orders ended without a port, by reason"),
            callbacks_delivered: r.counter("numport_callbacks_delivered", "Messages delivered to callback URLs"),
            callbacks_failed: r
                .counter("numport_callbacks_failed", "Callback attempts that failed and will be retried"),
            callback_duration: r
                .latency("numport_callback_duration", "Time from sending a callback to the operator's answer"),
            settlement_batches: r.counter(
                "numport_settlement_batches",
                "Settlement batches committed; orders settled per batch is ports completed over this",
            ),
            settlement_batch_duration: r.latency(
                "numport_settlement_batch_duration",
                "Time a settlement batch takes, from its first read to its COMMIT",
            ),
            http_requests: r.counter_family("numport_http_requests", "HTTP requests by route and status"),
            http_request_duration: r.latency_family("numport_http_request_duration", "HTTP request latency by route"),
            registry,
        }
    }

    /// Add what a committed transaction counted.
    pub fn add(&self, counts: Counts) {
        self.orders_requested.inc_by(counts.orders_requested);
        self.ports_completed.inc_by(counts.ports_completed);
        self.compensation_minor_units.inc_by(counts.compensation_minor_units);
        self.violations.inc_by(counts.violations);
        for reason in counts.closed {
            self.closed(reason);
        }
    }

    pub fn closed(&self, reason: Reason) {
        self.orders_closed.get_or_create(&ReasonLabel { reason: reason.as_str() }).inc();
    }

    /// One HTTP request answered with `status` after `seconds`.
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels { method: method.to_owned(), route: route.to_owned(), status };
        self.http_requests.get_or_create(&labels).inc();
        self.http_request_duration.get_or_create(&RouteLabel { route: labels.route }).observe(seconds);
    }
}
