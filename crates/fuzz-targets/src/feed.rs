//! What a replica reads from the clearinghouse and from its own disk. The first byte picks the
//! input, the rest is its text:
//!
//! - 0: a page of the change feed (`GET /v1/routing/changes`, JSON), checked against a
//!   checkpoint as the follower does, journalled and applied to an index;
//! - 1: a routing snapshot (`GET /v1/routing/snapshot`, the snapshot file on disk: a JSON
//!   header, then record lines);
//! - 2: a line of the replica's journal.
//!
//! Invariants: a change reads back from its journal line unchanged; a snapshot that loads,
//! written out and loaded again, writes the same bytes.

use clearinghouse_api::model::ChangePage;
use replica::disk::{parse_journal_line, push_journal_line};

pub fn run(data: &[u8]) {
    let Some((&kind, text)) = data.split_first() else { return };
    match kind % 3 {
        0 => change_page(text),
        1 => snapshot(text),
        _ => journal_line(text),
    }
}

fn change_page(json: &[u8]) {
    let Ok(page) = serde_json::from_slice::<ChangePage>(json) else { return };
    // Checkpoints the page may meet: the log's head, and just before the page's first change.
    let first = page.changes.first().map(|c| c.seq.saturating_sub(1));
    if ![Some(page.head), first].into_iter().flatten().any(|after| replica::check_page(after, &page).is_ok()) {
        return;
    }
    let mut index = npdb::Index::new(
        [npdb::Operator { name: "opa".parse().expect("name"), routing_number: "D001".parse().expect("rn") }],
        [("4790".parse().expect("prefix"), "opa".parse().expect("name"))],
    )
    .expect("index");
    let mut journal = String::new();
    for c in &page.changes {
        journal.clear();
        push_journal_line(&mut journal, c);
        let line = journal.strip_suffix('\n').expect("a journal line ends with a newline");
        assert_eq!(parse_journal_line(line).as_ref(), Some(c), "change {c:?} does not read back from {line:?}");
        replica::apply_change(&mut index, c);
    }
    written_snapshot_reads_back(&index, page.head, page.ranges_version);
}

fn snapshot(text: &[u8]) {
    if let Ok((index, header)) = npdb::snapshot::read_index(text, |_| {}) {
        written_snapshot_reads_back(&index, header.seq, header.ranges_version);
    }
}

/// The snapshot of `index` loads, and the loaded index writes the same snapshot (its record
/// lines in any order: an index writes them in the order of its table's slots).
fn written_snapshot_reads_back(index: &npdb::Index, seq: i64, ranges_version: i64) {
    let write = |index: &npdb::Index| {
        let bytes =
            npdb::snapshot::write_index_versioned(index, seq, ranges_version, Vec::new()).expect("writing to memory");
        let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        lines[1..].sort();
        (bytes, lines)
    };
    let (bytes, lines) = write(index);
    let (again, header) = npdb::snapshot::read_index(&bytes[..], |_| {})
        .unwrap_or_else(|e| panic!("a written snapshot does not load: {e}\n{}", String::from_utf8_lossy(&bytes)));
    assert_eq!((header.seq, header.ranges_version), (seq, ranges_version));
    assert_eq!(write(&again).1, lines, "a snapshot loaded and written again differs");
}

fn journal_line(text: &[u8]) {
    let Ok(line) = std::str::from_utf8(text) else { return };
    if let Some(change) = parse_journal_line(line) {
        let mut again = String::new();
        push_journal_line(&mut again, &change);
        let again = again.strip_suffix('\n').expect("a journal line ends with a newline");
        assert_eq!(parse_journal_line(again), Some(change), "journal line {line:?} rewritten as {again:?}");
    }
}
