//! Prometheus metrics on the `prometheus-client` crate, the `/metrics` + `/healthz` routes
//! every numport HTTP server mounts, and the JSON shape of every server's errors
//! ([`errors`]).
//!
//! Each server owns its [`Registry`] (no global recorder), so several servers in one test
//! process keep their figures apart. A server registers all its metrics once, when it starts,
//! and keeps the handles: a [`Counter`] or a [`Gauge`] is an `Arc` of one atomic, so updating
//! it on a hot path is one atomic add; a [`Family`] finds the handle of a label set in a hash
//! map under a read lock; a [`Histogram`] takes a short mutex per observation, so it belongs
//! on paths that run per request or per batch, not per packet.
//!
//! Names follow the library's conventions, and the exposition keeps the names dashboards know:
//! a counter is registered without `_total` and exported with it, a histogram of seconds is
//! registered without `_seconds` and with [`Unit::Seconds`], and help texts are written without
//! the final full stop, which the library adds. `/metrics` is the Prometheus text exposition
//! format, version 0.0.4.

pub mod errors;
pub mod reference;

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Metric;

pub use errors::{error_response, json_errors};

pub use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Unit;

/// Latency buckets from 0.5 ms to 10 s, in seconds.
pub const LATENCY_BUCKETS: [f64; 13] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A histogram of durations in seconds over [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A family of [`latency_histogram`]s, one per label set.
pub type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What a label set of a [`Family`] must be: usually a struct deriving these traits and
/// `prometheus_client::encoding::EncodeLabelSet`, whose fields are the labels in their order.
pub trait Labels: EncodeLabelSet + Clone + Eq + Hash + Debug + Send + Sync + 'static {}

impl<T: EncodeLabelSet + Clone + Eq + Hash + Debug + Send + Sync + 'static> Labels for T {}

/// The metrics of one server. Clones share the same registry.
#[derive(Clone, Default)]
pub struct Registry(Arc<Mutex<prometheus_client::registry::Registry>>);

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, prometheus_client::registry::Registry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `metric` as `name`. Each name is registered once per registry.
    #[track_caller]
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        debug_assert!(!help.ends_with('.'), "{name}: the library adds the help text's full stop");
        self.inner().register(name, help, metric);
    }

    /// Registers `metric` as `name` followed by `unit`'s suffix.
    #[track_caller]
    pub fn register_with_unit(&self, name: &str, help: &str, unit: Unit, metric: impl Metric) {
        debug_assert!(!help.ends_with('.'), "{name}: the library adds the help text's full stop");
        self.inner().register_with_unit(name, help, unit, metric);
    }

    /// A new counter, exported as `name_total`.
    #[track_caller]
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        self.register(name, help, counter.clone());
        counter
    }

    /// A new gauge, exported as `name`.
    #[track_caller]
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        let gauge = Gauge::default();
        self.register(name, help, gauge.clone());
        gauge
    }

    /// A new [`latency_histogram`], exported as `name_seconds`.
    #[track_caller]
    pub fn latency(&self, name: &str, help: &str) -> Histogram {
        let histogram = latency_histogram();
        self.register_with_unit(name, help, Unit::Seconds, histogram.clone());
        histogram
    }

    /// A new family of counters labelled by `L`, exported as `name_total`.
    #[track_caller]
    pub fn counter_family<L: Labels>(&self, name: &str, help: &str) -> Family<L, Counter> {
        let family = Family::default();
        self.register(name, help, family.clone());
        family
    }

    /// A new family of [`latency_histogram`]s labelled by `L`, exported as `name_seconds`.
    #[track_caller]
    pub fn latency_family<L: Labels>(&self, name: &str, help: &str) -> LatencyFamily<L> {
        let family: LatencyFamily<L> = Family::new_with_constructor(latency_histogram);
        self.register_with_unit(name, help, Unit::Seconds, family.clone());
        family
    }

    /// The Prometheus text exposition (version 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.inner()).expect("writing to a String does not fail");
        out
    }
}

/// What `/healthz` reports: healthy or not, and details as JSON.
pub type HealthCheck = Arc<dyn Fn() -> (bool, serde_json::Value) + Send + Sync>;

/// `/metrics` (Prometheus text) and `/healthz` (JSON; 503 when unhealthy), to merge into a
/// server's router.
pub fn routes<S: Clone + Send + Sync + 'static>(registry: Registry, health: HealthCheck) -> Router<S> {
    metrics_routes(registry).merge(health_routes(health))
}

/// `/metrics` alone: for a server's own metrics listener (a role's `metrics_listen`).
pub fn metrics_routes<S: Clone + Send + Sync + 'static>(registry: Registry) -> Router<S> {
    Router::new().route(
        "/metrics",
        get(move || {
            let r = registry.clone();
            async move { ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], r.render()) }
        }),
    )
}

/// `/healthz` alone: what stays on a server's API listener when `/metrics` has its own.
pub fn health_routes<S: Clone + Send + Sync + 'static>(health: HealthCheck) -> Router<S> {
    Router::new().route(
        "/healthz",
        get(move || {
            let h = health.clone();
            async move {
                let (ok, detail) = h();
                let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (status, axum::Json(detail)).into_response()
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Kind {
        kind: String,
    }

    #[test]
    fn renders_prometheus_text() {
        let r = Registry::new();
        let things: Family<Kind, Counter> = r.counter_family("x", "Things");
        things.get_or_create(&Kind { kind: "a\"b".into() }).inc_by(3);
        r.gauge("y", "Level").set(-2);
        let h = r.latency("z", "Time");
        h.observe(0.003);
        h.observe(20.0);
        let text = r.render();
        assert!(
            text.contains("# HELP x_total Things.\n# TYPE x_total counter\nx_total{kind=\"a\\\"b\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE y gauge\ny -2\n"), "{text}");
        assert!(text.contains("# TYPE z_seconds histogram\n"), "{text}");
        assert!(text.contains("z_seconds_bucket{le=\"0.0025\"} 0\n"), "{text}");
        assert!(text.contains("z_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("z_seconds_bucket{le=\"10\"} 1\n"), "{text}");
        assert!(text.contains("z_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("z_seconds_count 2\n"), "{text}");
    }

    #[test]
    fn the_reference_parser_reads_what_is_rendered() {
        if !testkit::python_module("prometheus_client", "pip install prometheus-client") {
            return;
        }
        let r = Registry::new();
        let things: Family<Kind, Counter> = r.counter_family("x", "Things, with a \\ and\na new line");
        things.get_or_create(&Kind { kind: "a\"b\\c\nd".into() }).inc_by(3);
        r.gauge("y", "Level").set(-2);
        let h: LatencyFamily<Kind> = r.latency_family("z", "Time");
        h.get_or_create(&Kind { kind: "k".into() }).observe(0.003);
        h.get_or_create(&Kind { kind: "k".into() }).observe(20.0);
        let m = reference::parse(&r.render()).unwrap();
        m.check_typed();
        assert_eq!(m.family("x").help, "Things, with a \\ and\na new line.");
        assert_eq!(m.value("x_total", &[("kind", "a\"b\\c\nd")]), Some(3.0));
        assert_eq!(m.value("y", &[]), Some(-2.0));
        let z = m.family("z_seconds");
        z.check_histogram();
        assert_eq!(m.value("z_seconds_bucket", &[("kind", "k"), ("le", "0.005")]), Some(1.0));
        assert_eq!(m.value("z_seconds_bucket", &[("kind", "k"), ("le", "+Inf")]), Some(2.0));
        let sum = m.value("z_seconds_sum", &[("kind", "k")]).unwrap();
        assert!((sum - 20.003).abs() < 1e-9, "{sum}");
        assert!(reference::parse("x_total{kind=\"a} 1\n").is_err(), "the parser refuses broken text");
    }

    #[test]
    fn registries_are_apart() {
        let (a, b) = (Registry::new(), Registry::new());
        a.counter("hits", "Hits").inc();
        b.counter("hits", "Hits");
        assert!(a.render().contains("hits_total 1\n"));
        assert!(b.render().contains("hits_total 0\n"));
    }
}
