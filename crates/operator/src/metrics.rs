//! The node's Prometheus metrics, registered in one place so dashboards and tests agree.

use std::borrow::Cow;

use prometheus_client::encoding::EncodeLabelSet;
use telemetry::{Counter, Family, Gauge, Histogram, LatencyFamily, Registry};

/// The labels of `operator_sms_final_total`, counted once per short message: the known routes
/// and the states are borrowed, so finding the series allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SmsFinalLabels {
    route: Cow<'static, str>,
    state: &'static str,
}

/// The label of `operator_callbacks_rejected_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    reason: String,
}

/// The labels of `operator_messages_processed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProcessedLabels {
    kind: String,
    outcome: String,
}

/// The label of the per-kind message metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    kind: String,
}

/// The label of `operator_smpp_refused_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SmppRefusalLabel {
    reason: &'static str,
}

/// The label of `operator_smpp_lockouts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LockoutLabel {
    scope: &'static str,
}

/// The label of `operator_clearinghouse_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallLabel {
    call: String,
}

#[derive(Clone)]
pub(crate) struct Metrics {
    pub registry: Registry,
    pub callbacks_received: Counter,
    pub callbacks_duplicate: Counter,
    pub callbacks_rejected: Family<ReasonLabel, Counter>,
    pub unprocessed: Gauge,
    pub messages_processed: Family<ProcessedLabels, Counter>,
    pub message_processing: LatencyFamily<KindLabel>,
    pub message_failures: Family<KindLabel, Counter>,
    pub clearinghouse_failures: Family<CallLabel, Counter>,
    pub sms_commits: Counter,
    pub sms_changes: Counter,
    pub sms_commit_seconds: Histogram,
    pub sms_final: Family<SmsFinalLabels, Counter>,
    pub smpp_refused: Family<SmppRefusalLabel, Counter>,
    pub smpp_lockouts: Family<LockoutLabel, Counter>,
}

impl Metrics {
    pub fn new(registry: Registry) -> Metrics {
        let r = &registry;
        Metrics {
            callbacks_received: r.counter(
                "operator_callbacks_received",
                "Clearinghouse callbacks accepted (signature valid, body parsed)",
            ),
            callbacks_duplicate: r.counter(
                "operator_callbacks_duplicate",
                "Callbacks whose message id was already recorded (retries and replays)",
            ),
            callbacks_rejected: r.counter_family(
                "operator_callbacks_rejected",
                "Callbacks refused, by reason (no_secret, missing_signature, malformed_signature, bad_signature, stale, malformed)",
            ),
            unprocessed: r.gauge(
                "operator_messages_unprocessed",
                "Recorded clearinghouse messages not yet processed, as of the last re-processor pass",
            ),
            messages_processed: r
                .counter_family("operator_messages_processed", "Clearinghouse messages processed, by kind and outcome"),
            message_processing: r
                .latency_family("operator_message_processing", "Time to process one clearinghouse message, by kind"),
            message_failures: r.counter_family(
                "operator_message_failures",
                "Message processing attempts that failed and will be retried, by kind",
            ),
            clearinghouse_failures: r
                .counter_family("operator_clearinghouse_failures", "Calls to the clearinghouse that failed, by call"),
            sms_commits: r.counter("operator_sms_commits", "Transactions of the SMS center's group commit"),
            sms_changes: r.counter(
                "operator_sms_changes",
                "Changes to short messages committed (submits, deliveries, receipts, retries)",
            ),
            sms_commit_seconds: r.latency("operator_sms_commit", "Time of one group-commit transaction"),
            sms_final: r.counter_family(
                "operator_sms_final",
                "Short messages settled, by route (local, interconnect) and state",
            ),
            smpp_refused: r.counter_family(
                "operator_smpp_refused",
                "SMPP connections and binds refused, by reason (credentials, locked_out, too_many_sessions, connection_limit)",
            ),
            smpp_lockouts: r.counter_family(
                "operator_smpp_lockouts",
                "SMPP bind lockouts begun after failed binds, by scope (system_id, address)",
            ),
            registry,
        }
    }

    /// One group commit of `changes` changes.
    pub fn sms_commit(&self, changes: usize, took: std::time::Duration) {
        self.sms_commits.inc();
        self.sms_changes.inc_by(changes as u64);
        self.sms_commit_seconds.observe(took.as_secs_f64());
    }

    /// A short message reached a final state by `route`.
    pub fn sms_final(&self, route: &str, state: &'static str) {
        let route = match route {
            "local" => Cow::Borrowed("local"),
            "interconnect" => Cow::Borrowed("interconnect"),
            other => Cow::Owned(other.to_owned()),
        };
        self.sms_final.get_or_create(&SmsFinalLabels { route, state }).inc();
    }

    /// A callback refused before it was recorded; `reason` is a short code.
    pub fn callback_rejected(&self, reason: &str) {
        self.callbacks_rejected.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc();
    }

    /// A message's processing ended; `outcome` is `done`, `moved_on` or `given_up`.
    pub fn processed(&self, kind: &str, outcome: &str, seconds: f64) {
        self.messages_processed
            .get_or_create(&ProcessedLabels { kind: kind.to_owned(), outcome: outcome.to_owned() })
            .inc();
        self.message_processing.get_or_create(&KindLabel { kind: kind.to_owned() }).observe(seconds);
    }

    /// A message's processing failed and will be retried.
    pub fn processing_failed(&self, kind: &str) {
        self.message_failures.get_or_create(&KindLabel { kind: kind.to_owned() }).inc();
    }

    /// A call to the clearinghouse failed (transport error or error status).
    pub fn clearinghouse_failure(&self, call: &str) {
        self.clearinghouse_failures.get_or_create(&CallLabel { call: call.to_owned() }).inc();
    }
}

/// The SMPP server's refusals and lockouts, counted.
impl smsc::SmppObserver for Metrics {
    fn refused(&self, reason: smsc::Refusal) {
        self.smpp_refused.get_or_create(&SmppRefusalLabel { reason: reason.as_str() }).inc();
    }

    fn locked_out(&self, scope: smsc::LockoutScope) {
        self.smpp_lockouts.get_or_create(&LockoutLabel { scope: scope.as_str() }).inc();
    }
}
