//! Metrics in the Prometheus text format, and the `/metrics` + `/healthz` routes.
//!
//! Each server owns its [`Registry`] (no global recorder), so several servers in one test
//! process keep their figures apart. Metric handles are `Arc`s of atomics: updating one on a
//! hot path is a single atomic add.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Cumulative histogram of durations in seconds with fixed upper bounds.
#[derive(Clone)]
pub struct Histogram(Arc<HistogramInner>);

struct HistogramInner {
    bounds: Vec<f64>,
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// Latency buckets from 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

impl Histogram {
    fn new(bounds: &[f64]) -> Histogram {
        Histogram(Arc::new(HistogramInner {
            bounds: bounds.to_vec(),
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, seconds: f64) {
        let h = &self.0;
        if let Some(i) = h.bounds.iter().position(|b| seconds <= *b) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

enum Family {
    Counter(BTreeMap<String, Counter>),
    Gauge(BTreeMap<String, Gauge>),
    Histogram(BTreeMap<String, Histogram>),
}

impl Family {
    fn kind(&self) -> &'static str {
        match self {
            Family::Counter(_) => "counter",
            Family::Gauge(_) => "gauge",
            Family::Histogram(_) => "histogram",
        }
    }
}

/// The metrics of one server.
#[derive(Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<String, (String, Family)>>>,
}

fn label_key(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect::<Vec<_>>()
        .join(",")
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    fn with_family<T>(&self, name: &str, help: &str, make: fn() -> Family, f: impl FnOnce(&mut Family) -> T) -> T {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let entry = fams.entry(name.to_owned()).or_insert_with(|| (help.to_owned(), make()));
        f(&mut entry.1)
    }

    /// The counter `name{labels}`, created on first use. Registering a name twice with another
    /// kind is a programming error; the second handle is then detached (counts go nowhere).
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        self.with_family(
            name,
            help,
            || Family::Counter(BTreeMap::new()),
            |f| match f {
                Family::Counter(m) => m.entry(label_key(labels)).or_default().clone(),
                _ => Counter::default(),
            },
        )
    }

    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        self.with_family(
            name,
            help,
            || Family::Gauge(BTreeMap::new()),
            |f| match f {
                Family::Gauge(m) => m.entry(label_key(labels)).or_default().clone(),
                _ => Gauge::default(),
            },
        )
    }

    pub fn histogram(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Histogram {
        self.with_family(
            name,
            help,
            || Family::Histogram(BTreeMap::new()),
            |f| match f {
                Family::Histogram(m) => {
                    m.entry(label_key(labels)).or_insert_with(|| Histogram::new(LATENCY_BUCKETS)).clone()
                }
                _ => Histogram::new(LATENCY_BUCKETS),
            },
        )
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, (help, fam)) in fams.iter() {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind());
            let braces = |labels: &str| if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            match fam {
                Family::Counter(m) => {
                    for (l, c) in m {
                        let _ = writeln!(out, "{name}{} {}", braces(l), c.get());
                    }
                }
                Family::Gauge(m) => {
                    for (l, g) in m {
                        let _ = writeln!(out, "{name}{} {}", braces(l), g.get());
                    }
                }
                Family::Histogram(m) => {
                    for (l, h) in m {
                        let h = &h.0;
                        let sep = if l.is_empty() { "" } else { "," };
                        let mut cumulative = 0;
                        for (b, n) in h.bounds.iter().zip(&h.buckets) {
                            cumulative += n.load(Ordering::Relaxed);
                            let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"{b}\"}} {cumulative}");
                        }
                        let count = h.count.load(Ordering::Relaxed);
                        let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"+Inf\"}} {count}");
                        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                        let _ = writeln!(out, "{name}_sum{} {sum}", braces(l));
                        let _ = writeln!(out, "{name}_count{} {count}", braces(l));
                    }
                }
            }
        }
        out
    }
}

/// What `/healthz` reports: healthy or not, and details as JSON.
pub type HealthCheck = Arc<dyn Fn() -> (bool, serde_json::Value) + Send + Sync>;

/// `/metrics` (Prometheus text) and `/healthz` (JSON; 503 when unhealthy), to merge into a
/// server's router.
pub fn routes<S: Clone + Send + Sync + 'static>(registry: Registry, health: HealthCheck) -> Router<S> {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let r = registry.clone();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], r.render()) }
            }),
        )
        .route(
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

    #[test]
    fn renders_prometheus_text() {
        let r = Registry::new();
        r.counter("x_total", "Things.", &[("kind", "a\"b")]).add(3);
        r.gauge("y", "Level.", &[]).set(-2);
        let h = r.histogram("z_seconds", "Time.", &[]);
        h.observe(0.003);
        h.observe(20.0);
        let text = r.render();
        assert!(text.contains("# TYPE x_total counter\nx_total{kind=\"a\\\"b\"} 3\n"), "{text}");
        assert!(text.contains("y -2\n"));
        assert!(text.contains("z_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("z_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("z_seconds_count 2\n"));
    }
}
