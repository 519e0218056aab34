//! The index against a plain model: ranges as digit-string prefixes, the feed as a map of every
//! number's last serving operator.

use std::collections::HashMap;

use npdb::{Hit, Index, Operator, key_of};
use numport_core::{Msisdn, OperatorName, Prefix};
use proptest::prelude::*;

const NAMES: [&str; 4] = ["opa", "opb", "opc", "opd"];

fn operators() -> Vec<Operator> {
    NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| Operator { name: n.parse().unwrap(), routing_number: format!("D00{i}").parse().unwrap() })
        .collect()
}

fn name(i: usize) -> OperatorName {
    NAMES[i].parse().unwrap()
}

struct Model {
    ranges: HashMap<String, usize>,
    serving: HashMap<String, usize>,
}

impl Model {
    fn holder(&self, number: &str) -> Option<usize> {
        (1..=number.len()).rev().find_map(|n| self.ranges.get(&number[..n]).copied())
    }
    fn lookup(&self, number: &str) -> Option<(usize, bool)> {
        let holder = self.holder(number);
        match self.serving.get(number) {
            Some(&op) => Some((op, Some(op) != holder)),
            None => holder.map(|h| (h, false)),
        }
    }
}

/// Digit strings from a small alphabet, so that prefixes nest and numbers collide.
fn digits(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[47][470]{{{},{}}}", min - 1, max - 1)).unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    Serve(String, usize),
    Lookup(String),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (digits(8, 10), 0..NAMES.len()).prop_map(|(n, op)| Step::Serve(n, op)),
        digits(8, 10).prop_map(Step::Lookup),
    ]
}

fn check(index: &Index, model: &Model, number: &str) {
    let m: Msisdn = number.parse().unwrap();
    let got = index.lookup(&m).map(|r| (r.operator as usize, r.ported));
    assert_eq!(got, model.lookup(number), "{number}");
    if let Some(r) = index.lookup(&m) {
        assert_eq!(r.name.as_str(), NAMES[r.operator as usize]);
        assert_eq!(r.routing_number.as_str(), format!("D00{}", r.operator));
    }
    let mut out = [None];
    index.lookup_batch(&[key_of(&m)], &mut out);
    assert_eq!(out[0], index.lookup_digits(key_of(&m)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_model(
        ranges in proptest::collection::vec((digits(1, 5), 0..NAMES.len()), 0..12),
        steps in proptest::collection::vec(step(), 0..300),
    ) {
        let mut model = Model { ranges: HashMap::new(), serving: HashMap::new() };
        for (p, op) in &ranges {
            model.ranges.insert(p.clone(), *op);
        }
        let mut index = Index::new(
            operators(),
            model.ranges.iter().map(|(p, &op)| (p.parse::<Prefix>().unwrap(), name(op))),
        )
        .unwrap();
        for s in &steps {
            match s {
                Step::Serve(n, op) => {
                    let ported = index.apply(&n.parse().unwrap(), &name(*op)).unwrap();
                    model.serving.insert(n.clone(), *op);
                    prop_assert_eq!(ported, model.lookup(n).unwrap().1);
                    check(&index, &model, n);
                }
                Step::Lookup(n) => check(&index, &model, n),
            }
        }
        let exceptions = model.serving.keys().filter(|n| model.lookup(n).unwrap().1).count();
        prop_assert_eq!(index.len(), exceptions);
        for n in model.serving.keys() {
            check(&index, &model, n);
        }
        // Re-applying every change is a no-op (idempotent apply).
        for (n, &op) in &model.serving {
            index.apply(&n.parse().unwrap(), &name(op)).unwrap();
        }
        prop_assert_eq!(index.len(), exceptions);
    }
}

fn sample() -> Index {
    let ranges = [("47", 0), ("4790", 1), ("479012", 2), ("46", 3)];
    Index::new(operators(), ranges.map(|(p, op)| (p.parse().unwrap(), name(op)))).unwrap()
}

fn route(index: &Index, n: &str) -> Option<(&'static str, bool)> {
    index.lookup(&n.parse().unwrap()).map(|r| (NAMES[r.operator as usize], r.ported))
}

#[test]
fn longest_prefix_wins() {
    let index = sample();
    assert_eq!(route(&index, "4712345678"), Some(("opa", false)));
    assert_eq!(route(&index, "4790999999"), Some(("opb", false)));
    assert_eq!(route(&index, "4790123456"), Some(("opc", false)));
    assert_eq!(route(&index, "4790133456"), Some(("opb", false)));
    assert_eq!(route(&index, "46701234567"), Some(("opd", false)));
}

#[test]
fn outside_every_range_is_none_unless_ported() {
    let mut index = sample();
    assert_eq!(route(&index, "4812345678"), None);
    assert_eq!(route(&index, "123456789012345"), None);
    index.apply(&"4812345678".parse().unwrap(), &name(2)).unwrap();
    assert_eq!(route(&index, "4812345678"), Some(("opc", true)));
}

#[test]
fn port_port_back_and_return() {
    let mut index = sample();
    let n: Msisdn = "4790123456".parse().unwrap();
    assert!(index.apply(&n, &name(0)).unwrap());
    assert_eq!(route(&index, "4790123456"), Some(("opa", true)));
    assert_eq!(route(&index, "4790123457"), Some(("opc", false)), "the neighbour is not ported");
    assert!(index.apply(&n, &name(1)).unwrap());
    assert_eq!(route(&index, "4790123456"), Some(("opb", true)));
    assert_eq!(index.len(), 1);
    // Port-back (or return): served by the range holder again, the exception is gone.
    assert!(!index.apply(&n, &name(2)).unwrap());
    assert_eq!(route(&index, "4790123456"), Some(("opc", false)));
    assert!(index.is_empty());
}

#[test]
fn snapshot_bootstrap_and_errors() {
    let ranges = [("4790", 1)].map(|(p, op)| (p.parse().unwrap(), name(op)));
    let records = [("4790000001", 0), ("4790000002", 1), ("4790000003", 3)]
        .map(|(n, op)| (n.parse::<Msisdn>().unwrap(), name(op)));
    let index = Index::from_snapshot(operators(), ranges, records).unwrap();
    assert_eq!(index.len(), 2, "a record naming the range holder is no exception");
    assert_eq!(route(&index, "4790000003"), Some(("opd", true)));
    assert!(index.memory_bytes() > 0);
    let mut index = index;
    assert!(index.apply(&"4790000001".parse().unwrap(), &"nobody".parse().unwrap()).is_err());
    assert!(index.set_serving_id(4790, 0).is_err(), "not an E.164 key");
    assert!(index.set_serving_id(4790000001, 9).is_err(), "unknown operator id");
    assert_eq!(index.lookup_digits(0), None);
    assert_eq!(index.lookup_digits(u64::MAX), None);
    let mut out = [Some(Hit { operator: 0, ported: true }); 2];
    index.lookup_batch(&[0, 4790000003], &mut out);
    assert_eq!(out, [None, Some(Hit { operator: 3, ported: true })]);
}

#[test]
fn range_changes() {
    let mut index = sample();
    index.set_range(&"4791".parse().unwrap(), Some(&name(3))).unwrap();
    assert_eq!(route(&index, "4791000000"), Some(("opd", false)));
    index.set_range(&"4790".parse().unwrap(), None).unwrap();
    assert_eq!(route(&index, "4790999999"), Some(("opa", false)));
    assert_eq!(index.ranges().count(), 4);
    assert_eq!(index.range_count(), 4);
}

#[test]
fn numbers_below_a_prefix() {
    let mut index = sample();
    // Ranges: every number of 8 to 15 digits under a prefix is served.
    for below in ["4", "47", "479", "4790", "47901", "4790123", "47901234", "46", "47901234567890"] {
        assert!(index.serves_below(below), "{below}");
    }
    for nothing in ["", "0", "04", "5", "48", "4x", "479012345678901", "4790123456789012"] {
        assert!(!index.serves_below(nothing), "{nothing:?}");
    }
    // A ported number outside every range adds its own prefixes, and stays there when a range
    // around it is given and withdrawn.
    let orphan: Msisdn = "5512345678".parse().unwrap();
    assert!(index.apply(&orphan, &name(1)).unwrap());
    for below in ["5", "55", "551234567"] {
        assert!(index.serves_below(below), "{below}");
    }
    assert!(!index.serves_below("5512345679") && !index.serves_below("552"));
    index.set_range(&"55".parse().unwrap(), Some(&name(0))).unwrap();
    assert!(index.serves_below("552"), "the range's numbers");
    index.set_range(&"55".parse().unwrap(), None).unwrap();
    assert!(!index.serves_below("552"));
    assert!(index.serves_below("551234567"), "the ported number again");
}
