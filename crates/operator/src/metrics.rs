//! The node's Prometheus metrics, named in one place so dashboards and tests agree.

use telemetry::{Counter, Gauge, Registry};

#[derive(Clone)]
pub(crate) struct Metrics {
    pub registry: Registry,
    pub callbacks_received: Counter,
    pub callbacks_duplicate: Counter,
    pub unprocessed: Gauge,
    pub sms_commits: Counter,
    pub sms_changes: Counter,
    pub sms_commit_seconds: telemetry::Histogram,
}

impl Metrics {
    pub fn new(registry: Registry) -> Metrics {
        Metrics {
            callbacks_received: registry.counter(
                "operator_callbacks_received_total",
                "Clearinghouse callbacks accepted (signature valid, body parsed).",
                &[],
            ),
            callbacks_duplicate: registry.counter(
                "operator_callbacks_duplicate_total",
                "Callbacks whose message id was already recorded (retries and replays).",
                &[],
            ),
            unprocessed: registry.gauge(
                "operator_messages_unprocessed",
                "Recorded clearinghouse messages not yet processed, as of the last re-processor pass.",
                &[],
            ),
            sms_commits: registry.counter(
                "operator_sms_commits_total",
                "Transactions of the SMS center's group commit.",
                &[],
            ),
            sms_changes: registry.counter(
                "operator_sms_changes_total",
                "Changes to short messages committed (submits, deliveries, receipts, retries).",
                &[],
            ),
            sms_commit_seconds: registry.histogram(
                "operator_sms_commit_seconds",
                "Time of one group-commit transaction.",
                &[],
            ),
            registry,
        }
    }

    /// One group commit of `changes` changes.
    pub fn sms_commit(&self, changes: usize, took: std::time::Duration) {
        self.sms_commits.inc();
        self.sms_changes.add(changes as u64);
        self.sms_commit_seconds.observe(took.as_secs_f64());
    }

    /// A short message reached a final state by `route`.
    pub fn sms_final(&self, route: &str, state: &str) {
        self.registry
            .counter(
                "operator_sms_final_total",
                "Short messages settled, by route (local, interconnect) and state.",
                &[("route", route), ("state", state)],
            )
            .inc();
    }

    /// A callback refused before it was recorded; `reason` is a short code.
    pub fn callback_rejected(&self, reason: &str) {
        self.registry
            .counter(
                "operator_callbacks_rejected_total",
                "Callbacks refused, by reason (missing_signature, bad_signature, stale, malformed).",
                &[("reason", reason)],
            )
            .inc();
    }

    /// A message's processing ended; `outcome` is `done`, `moved_on` or `given_up`.
    pub fn processed(&self, kind: &str, outcome: &str, seconds: f64) {
        self.registry
            .counter(
                "operator_messages_processed_total",
                "Clearinghouse messages processed, by kind and outcome.",
                &[("kind", kind), ("outcome", outcome)],
            )
            .inc();
        self.registry
            .histogram(
                "operator_message_processing_seconds",
                "Time to process one clearinghouse message, by kind.",
                &[("kind", kind)],
            )
            .observe(seconds);
    }

    /// A message's processing failed and will be retried.
    pub fn processing_failed(&self, kind: &str) {
        self.registry
            .counter(
                "operator_message_failures_total",
                "Message processing attempts that failed and will be retried, by kind.",
                &[("kind", kind)],
            )
            .inc();
    }

    /// A call to the clearinghouse failed (transport error or error status).
    pub fn clearinghouse_failure(&self, call: &str) {
        self.registry
            .counter(
                "operator_clearinghouse_failures_total",
                "Calls to the clearinghouse that failed, by call.",
                &[("call", call)],
            )
            .inc();
    }
}
