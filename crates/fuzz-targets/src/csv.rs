//! The CSV files operators and the clearinghouse import. The first byte picks the file, the
//! rest is its text:
//!
//! - 0: an operator's subscriber import (`numport operator import-subscribers`), through
//!   [`parse_subscribers_csv`];
//! - 1: number ranges (`prefix,operator`) and operators (`name,routing_number`), as the
//!   clearinghouse's range load and `numport npdb import` read them, into an index;
//! - 2: ported numbers (`msisdn,operator`): as `numport npdb import` reads them (record lines
//!   through [`npdb::snapshot::parse_record`]) and as the clearinghouse's national-database
//!   import does (CSV records, each number checked against the range holders).
//!
//! The importers that write to a database run the field parsers exercised here on each record;
//! what they add is the database write.
//!
//! Invariant: subscribers that parse, written back as CSV, parse to the same subscribers.

use npdb::{Index, Operator};
use numport_core::{Msisdn, OperatorName, Prefix, RoutingNumber};
use operator::store::subscribers::{Subscriber, parse_subscribers_csv};

pub fn run(data: &[u8]) {
    let Some((&kind, text)) = data.split_first() else { return };
    match kind % 3 {
        0 => subscribers(text),
        1 => ranges(text),
        _ => ported(text),
    }
}

/// The reader every importer builds: no header row (a header is recognised by its first
/// field), fields trimmed, `#` comments.
fn reader(text: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new().has_headers(false).trim(csv::Trim::All).comment(Some(b'#')).from_reader(text)
}

fn subscribers(text: &[u8]) {
    let Ok(subs) = parse_subscribers_csv(text, 0) else { return };
    let mut again = String::new();
    for s in &subs {
        again += &subscriber_line(s);
    }
    let parsed = parse_subscribers_csv(again.as_bytes(), 0).unwrap_or_else(|e| panic!("{again:?}: {e}"));
    assert_eq!(parsed, subs, "subscribers written back as {again:?} parse differently");
}

fn subscriber_line(s: &Subscriber) -> String {
    format!(
        "{},{},{},{},{},{}\n",
        s.msisdn,
        s.port_key.as_ref().map(|k| k.to_hex()).unwrap_or_default(),
        s.arrears.0,
        s.unbilled_usage.0,
        s.contract_remaining.0,
        s.deposit_held.0
    )
}

/// Both two-column files from one text: every record read as a range and as an operator.
fn ranges(text: &[u8]) {
    let (mut operators, mut ranges) = (Vec::new(), Vec::new());
    for record in reader(text).records() {
        let Ok(record) = record else { return };
        let (Some(a), Some(b)) = (record.get(0), record.get(1)) else { return };
        if let (Ok(name), Ok(routing_number)) = (a.parse::<OperatorName>(), b.parse::<RoutingNumber>()) {
            operators.push(Operator { name, routing_number });
        }
        if let (Ok(prefix), Ok(holder)) = (a.parse::<Prefix>(), b.parse::<OperatorName>()) {
            ranges.push((prefix, holder));
        }
    }
    operators.push(Operator { name: "opa".parse().expect("name"), routing_number: "D001".parse().expect("rn") });
    let _ = Index::new(operators.iter().cloned(), ranges.iter().cloned());
    let _ = Index::new(operators, ranges.into_iter().map(|(p, _)| (p, "opa".parse().expect("name"))));
}

fn ported(text: &[u8]) {
    let mut index = Index::new(
        [("opa", "D001"), ("opb", "D002")]
            .map(|(name, rn)| Operator { name: name.parse().expect("name"), routing_number: rn.parse().expect("rn") }),
        [("4790".parse().expect("prefix"), "opa".parse().expect("name"))],
    )
    .expect("index");
    // `numport npdb import`: one record a line.
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Ok((key, op)) = npdb::snapshot::parse_record(&index, line) {
            index.set_serving_id(key, op).expect("an operator of the index");
        }
    }
    // The clearinghouse's import: CSV records.
    for record in reader(text).records() {
        let Ok(record) = record else { return };
        let (Some(number), Some(name)) = (record.get(0), record.get(1)) else { return };
        let (Ok(msisdn), Ok(name)) = (number.parse::<Msisdn>(), name.parse::<OperatorName>()) else { continue };
        if index.op_id(&name).is_ok() {
            let _ = index.range_holder(npdb::key_of(&msisdn));
            let _ = index.apply(&msisdn, &name);
        }
    }
}
