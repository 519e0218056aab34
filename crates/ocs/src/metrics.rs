//! The OCS's metrics, registered once in the registry of the server that embeds it (the
//! operator node's `/metrics`, or `numport ocs`'s), so every seed method shows there.

use prometheus_client::encoding::EncodeLabelSet;
use telemetry::{Counter, Family, Gauge, Histogram, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CcrLabels {
    pub request_type: &'static str,
    pub result_code: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: &'static str,
}

/// The handles; clones share the figures.
#[derive(Clone)]
pub struct Metrics {
    pub ccr: Family<CcrLabels, Counter>,
    pub ccr_latency: Histogram,
    pub retransmissions: Counter,
    pub charged: Counter,
    pub uncollected_units: Counter,
    pub tcc_released: Counter,
    pub recharges: Counter,
    pub recharged: Counter,
    pub charging_decisions: Family<OutcomeLabel, Counter>,
    pub online_list_entries: Gauge,
    pub capacity_requests: Family<OutcomeLabel, Counter>,
    pub capacity_loaded: Gauge,
    pub capacity_total: Gauge,
    pub data_subrecords: Family<ModeLabel, Counter>,
    pub partial_cdrs: Family<OutcomeLabel, Counter>,
    pub call_corrections: Family<OutcomeLabel, Counter>,
    pub group_commits: GroupCommitMetrics,
}

/// The writer's group commits: what a CCR's answer waits for after its logic ran.
#[derive(Clone)]
pub struct GroupCommitMetrics {
    pub latency: Histogram,
    pub effects: Counter,
}

impl Metrics {
    pub fn register(r: &Registry) -> Metrics {
        Metrics {
            group_commits: GroupCommitMetrics {
                latency: r.latency("ocs_group_commit_latency", "Time to write and commit one group of changes"),
                effects: r.counter(
                    "ocs_group_commit_effects",
                    "Credit-control changes (CCRs, Tcc releases) committed in groups",
                ),
            },
            ccr: r.counter_family("ocs_ccr", "Credit-control requests answered, by CC-Request-Type and Result-Code"),
            ccr_latency: r.latency("ocs_ccr_latency", "Time from a CCR's arrival to its durable answer"),
            retransmissions: r.counter("ocs_retransmissions", "CCRs answered from the stored answer, charging nothing"),
            charged: r.counter("ocs_charged_minor_units", "Money charged by credit control, in minor units"),
            uncollected_units: r
                .counter("ocs_uncollected_units", "Units used beyond a grant that the credit limit left uncharged"),
            tcc_released: r
                .counter("ocs_tcc_released_sessions", "Silent sessions whose reservations the Tcc timer released"),
            recharges: r.counter("ocs_recharges", "Recharges applied"),
            recharged: r.counter("ocs_recharged_minor_units", "Money recharged, in minor units"),
            charging_decisions: r.counter_family(
                "ocs_charging_decisions",
                "Online-charging list lookups (CN102547642B), by outcome: online or offline",
            ),
            online_list_entries: r.gauge("ocs_online_list_entries", "Numbers and prefixes on the online-charging list"),
            capacity_requests: r.counter_family(
                "ocs_capacity_requests",
                "Requests to load a subscriber into online charging (CN101425910A), by outcome",
            ),
            capacity_loaded: r.gauge("ocs_capacity_loaded", "Online-charging capacity loaded"),
            capacity_total: r.gauge("ocs_capacity_total", "Online-charging capacity configured"),
            data_subrecords: r
                .counter_family("ocs_data_subrecords", "Data usage sub-records rated (CN102083042B), by charging mode"),
            partial_cdrs: r.counter_family(
                "ocs_partial_cdrs",
                "Partial CDRs under credit control (CN102083044A), by decision: continue or cut_off",
            ),
            call_corrections: r.counter_family(
                "ocs_call_corrections",
                "Complete CDRs rated formally (CN102083044A), by correction: charge, refund or none",
            ),
        }
    }
}
