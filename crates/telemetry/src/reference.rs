//! `/metrics` read back by an independent parser, for tests: the Python reference client's
//! `prometheus_client.parser.text_string_to_metric_families`, run by `python3`. A test checks
//! first that the module is there (`testkit::python_module("prometheus_client", …)`).
//!
//! The parser names a counter's family without its `_total` suffix and its samples with it, and
//! turns a sample it cannot place under a `# TYPE` into a family of type `unknown`;
//! [`Exposition::check_typed`] refuses those.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

const PARSE: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
def value(v):
    return v if math.isfinite(v) else str(v)
json.dump([
    {"name": f.name, "type": f.type, "help": f.documentation,
     "samples": [{"name": s.name, "labels": s.labels, "value": value(s.value)} for s in f.samples]}
    for f in text_string_to_metric_families(sys.stdin.read())
], sys.stdout)
"#;

/// One metric family as the parser read it.
#[derive(Debug, Clone)]
pub struct ParsedFamily {
    pub name: String,
    /// `counter`, `gauge`, `histogram`, … or `unknown`.
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `f64::INFINITY` and `NAN` included.
    pub value: f64,
}

/// A whole exposition as the parser read it.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub families: Vec<ParsedFamily>,
}

/// Parses `text` with the Python reference parser; `Err` with its message when it refuses the
/// text or cannot run.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = text.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(|e| format!("python3: {e}"))?;
    writer.join().expect("the writer thread does not panic").map_err(|e| format!("python3's stdin: {e}"))?;
    if !out.status.success() {
        return Err(format!("the parser refused the exposition: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("the parser's output: {e}"))?;
    let families = json.as_array().ok_or("the parser's output is no list")?.iter().map(family).collect();
    Ok(Exposition { families })
}

fn family(f: &serde_json::Value) -> ParsedFamily {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let sample = |s: &serde_json::Value| Sample {
        name: text(&s["name"]),
        labels: s["labels"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
            .unwrap_or_default(),
        value: match &s["value"] {
            serde_json::Value::String(special) => special.parse().unwrap_or(f64::NAN),
            v => v.as_f64().unwrap_or(f64::NAN),
        },
    };
    ParsedFamily {
        name: text(&f["name"]),
        kind: text(&f["type"]),
        help: text(&f["help"]),
        samples: f["samples"].as_array().map(|s| s.iter().map(sample).collect()).unwrap_or_default(),
    }
}

impl Exposition {
    /// The family `name` (a counter's without `_total`); panics, listing the families there
    /// are, when it is missing.
    #[track_caller]
    pub fn family(&self, name: &str) -> &ParsedFamily {
        self.families.iter().find(|f| f.name == name).unwrap_or_else(|| {
            let names: Vec<_> = self.families.iter().map(|f| f.name.as_str()).collect();
            panic!("no metric family {name} among {names:?}")
        })
    }

    /// The value of the sample `name` whose labels are exactly `labels`, if there is one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.families.iter().flat_map(|f| &f.samples).find(|s| s.name == name && s.labels == want).map(|s| s.value)
    }

    /// Panics unless every family has a type and a help text and every family name is used
    /// once: what a sample outside its `# TYPE`, or a metric registered twice, would break.
    #[track_caller]
    pub fn check_typed(&self) {
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.families {
            assert!(f.kind != "unknown", "family {} has no type: {f:?}", f.name);
            assert!(!f.help.is_empty(), "family {} has no help text", f.name);
            assert!(seen.insert(&f.name), "family {} appears twice", f.name);
        }
    }
}

impl ParsedFamily {
    /// Checks the shape of a histogram: buckets cumulative and ending in `+Inf`, whose count is
    /// the `_count` of the same labels. Panics otherwise.
    #[track_caller]
    pub fn check_histogram(&self) {
        assert_eq!(self.kind, "histogram", "{} is a {}", self.name, self.kind);
        let series = |s: &Sample| {
            let mut l = s.labels.clone();
            l.remove("le");
            l
        };
        let mut buckets: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name.ends_with("_bucket")) {
            let le: f64 = s.labels["le"].parse().unwrap_or_else(|_| panic!("{}: le {:?}", self.name, s.labels["le"]));
            buckets.entry(series(s)).or_default().push((le, s.value));
        }
        for (labels, b) in &buckets {
            assert!(b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{} {labels:?}: {b:?}", self.name);
            let (le, total) = *b.last().expect("a series has buckets");
            assert_eq!(le, f64::INFINITY, "{} {labels:?} ends in +Inf", self.name);
            let count = self.samples.iter().find(|s| s.name.ends_with("_count") && s.labels == *labels);
            assert_eq!(count.map(|s| s.value), Some(total), "{} {labels:?}: _count is the +Inf bucket", self.name);
        }
    }
}
