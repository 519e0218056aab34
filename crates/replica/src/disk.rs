//! What a replica keeps on disk: a snapshot and the journal of changes applied since.
//!
//! ```text
//! <data_dir>/LOCK       held (flock) while a replica runs on this directory
//! <data_dir>/snapshot   the index at some feed sequence S (npdb::snapshot format)
//! <data_dir>/journal    changes after S, one line each: seq,msisdn,operator,routing_number,kind,effective_at
//! ```
//!
//! The clearinghouse holds the truth, so the journal is a cache of it: lines are written (not
//! fsynced) before their changes are applied in memory. A `kill -9` loses nothing (the page
//! cache keeps the write); a power cut may lose the tail, which leaves the checkpoint lower and
//! the replica fetches those changes again. A torn last line is cut off at load. The snapshot,
//! by contrast, replaces the old one only once complete and synced (write, fsync, rename).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use clearinghouse_api::model::RoutingChange;
use npdb::Index;
use npdb::snapshot::{self, SnapshotError};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} is in use by another replica")]
    Locked(PathBuf),
    #[error("{path}: {source}")]
    Snapshot { path: PathBuf, source: SnapshotError },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DiskError + '_ {
    move |source| DiskError::Io { path: path.to_owned(), source }
}

pub(crate) struct Disk {
    dir: PathBuf,
    journal: File,
    /// Lines in the journal (applied changes after the snapshot).
    journal_lines: u64,
    _lock: File,
}

/// What [`Disk::load`] found.
pub(crate) struct Loaded {
    pub index: Index,
    pub snapshot_seq: i64,
    pub ranges_version: i64,
    /// Changes replayed from the journal, in order, after `snapshot_seq`.
    pub replayed: Vec<RoutingChange>,
}

impl Disk {
    /// Opens (creating) the data directory and takes its lock.
    pub(crate) fn open(dir: &Path) -> Result<Disk, DiskError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("LOCK");
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
        lock_exclusive(&lock).map_err(|_| DiskError::Locked(dir.to_owned()))?;
        let journal_path = dir.join("journal");
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&journal_path)
            .map_err(io_err(&journal_path))?;
        Ok(Disk { dir: dir.to_owned(), journal, journal_lines: 0, _lock: lock })
    }

    pub(crate) fn snapshot_path(&self) -> PathBuf {
        self.dir.join("snapshot")
    }

    /// Where a snapshot being downloaded goes until it is complete.
    pub(crate) fn partial_snapshot_path(&self) -> PathBuf {
        self.dir.join("snapshot.part")
    }

    pub(crate) fn journal_lines(&self) -> u64 {
        self.journal_lines
    }

    /// The snapshot plus the journal's changes after it; `None` when there is no snapshot yet.
    /// Journal lines at or before the snapshot's sequence are skipped (left by a crash between
    /// snapshot and journal truncation); replay stops at the first torn, unreadable or
    /// non-consecutive line, and the journal is cut there.
    pub(crate) fn load(&mut self) -> Result<Option<Loaded>, DiskError> {
        let path = self.snapshot_path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.truncate_journal()?;
                return Ok(None);
            }
            Err(e) => return Err(DiskError::Io { path, source: e }),
        };
        let (index, header) = snapshot::read_index(BufReader::with_capacity(1 << 20, file), |_| {})
            .map_err(|source| DiskError::Snapshot { path: path.clone(), source })?;
        let snapshot_seq = header.seq;

        let jpath = self.dir.join("journal");
        self.journal.rewind().map_err(io_err(&jpath))?;
        let mut reader = BufReader::new(&self.journal);
        let mut line = String::new();
        let mut good_bytes = 0u64;
        let mut replayed = Vec::new();
        let mut last = snapshot_seq;
        let mut lines = 0u64;
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io_err(&jpath))?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            let Some(change) = parse_journal_line(line.trim_end()) else {
                tracing::warn!(line = %line.trim_end(), "unreadable journal line; replay stops here");
                break;
            };
            if change.seq > last {
                // The next seq, checked without `+ 1`, which overflows at i64::MAX.
                if change.seq.checked_sub(1) != Some(last) {
                    tracing::warn!(last, found = change.seq, "journal skips a sequence number; replay stops here");
                    break;
                }
                last = change.seq;
                replayed.push(change);
            }
            good_bytes += n as u64;
            lines += 1;
        }
        drop(reader);
        self.journal.set_len(good_bytes).map_err(io_err(&jpath))?;
        self.journal_lines = lines;
        Ok(Some(Loaded { index, snapshot_seq, ranges_version: header.ranges_version, replayed }))
    }

    /// Appends applied changes to the journal (before they are applied in memory).
    pub(crate) fn append(&mut self, changes: &[RoutingChange]) -> Result<(), DiskError> {
        let mut buf = String::with_capacity(changes.len() * 64);
        for c in changes {
            push_journal_line(&mut buf, c);
        }
        self.journal.write_all(buf.as_bytes()).map_err(io_err(&self.dir.join("journal")))?;
        self.journal_lines += changes.len() as u64;
        Ok(())
    }

    /// Writes `index` (valid at `seq`, ranges at `ranges_version`) as the new snapshot and
    /// empties the journal.
    pub(crate) fn write_snapshot(&mut self, index: &Index, seq: i64, ranges_version: i64) -> Result<(), DiskError> {
        let part = self.dir.join("snapshot.new");
        let file = File::create(&part).map_err(io_err(&part))?;
        let out = snapshot::write_index_versioned(index, seq, ranges_version, BufWriter::with_capacity(1 << 20, file))
            .map_err(io_err(&part))?;
        let file = out.into_inner().map_err(|e| DiskError::Io { path: part.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io_err(&part))?;
        self.install(&part)
    }

    /// Makes a complete, synced snapshot file the current snapshot and empties the journal.
    pub(crate) fn install(&mut self, complete: &Path) -> Result<(), DiskError> {
        let path = self.snapshot_path();
        fs::rename(complete, &path).map_err(io_err(&path))?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        self.truncate_journal()
    }

    fn truncate_journal(&mut self) -> Result<(), DiskError> {
        self.journal.set_len(0).map_err(io_err(&self.dir.join("journal")))?;
        self.journal_lines = 0;
        Ok(())
    }
}

/// Makes `index` (valid at feed sequence `seq`, its ranges at the clearinghouse's
/// `ranges_version`) the snapshot of the replica directory `dir`, dropping its journal: a
/// replica starting there loads it and follows the feed from `seq`. Refused while a replica
/// runs on the directory.
pub fn install_index(dir: &Path, index: &Index, seq: i64, ranges_version: i64) -> Result<(), DiskError> {
    Disk::open(dir)?.write_snapshot(index, seq, ranges_version)
}

/// Appends the journal line of `c`, newline included.
pub fn push_journal_line(buf: &mut String, c: &RoutingChange) {
    use std::fmt::Write as _;
    let _ = writeln!(
        buf,
        "{},{},{},{},{},{}",
        c.seq,
        c.msisdn,
        c.operator,
        c.routing_number,
        c.kind.as_str(),
        c.effective_at
    );
}

/// The change a journal line (without its newline) holds; `None` for a torn or foreign line.
pub fn parse_journal_line(line: &str) -> Option<RoutingChange> {
    let mut f = line.split(',');
    let change = RoutingChange {
        seq: f.next()?.parse().ok()?,
        msisdn: f.next()?.parse().ok()?,
        operator: f.next()?.parse().ok()?,
        routing_number: f.next()?.parse().ok()?,
        kind: f.next()?.parse().ok()?,
        effective_at: f.next()?.parse().ok()?,
    };
    f.next().is_none().then_some(change)
}

#[cfg(unix)]
fn lock_exclusive(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function borrows; no memory is involved.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(not(unix))]
fn lock_exclusive(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use npdb::Operator;
    use numport_core::porting::ChangeKind;

    fn change(seq: i64, msisdn: &str, op: &str) -> RoutingChange {
        RoutingChange {
            seq,
            msisdn: msisdn.parse().unwrap(),
            operator: op.parse().unwrap(),
            routing_number: "D002".parse().unwrap(),
            kind: ChangeKind::Port,
            effective_at: 1,
        }
    }

    fn index() -> Index {
        let ops = [("opa", "D001"), ("opb", "D002")]
            .map(|(n, r)| Operator { name: n.parse().unwrap(), routing_number: r.parse().unwrap() });
        Index::new(ops, [("4790".parse().unwrap(), "opa".parse().unwrap())]).unwrap()
    }

    #[test]
    fn snapshot_journal_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = Disk::open(dir.path()).unwrap();
        assert!(disk.load().unwrap().is_none());
        disk.write_snapshot(&index(), 10, 0).unwrap();
        disk.append(&[change(11, "4790000001", "opb"), change(12, "4790000002", "opb")]).unwrap();
        drop(disk);
        // A torn line after two good ones, as a crash mid-write leaves it.
        let mut j = OpenOptions::new().append(true).open(dir.path().join("journal")).unwrap();
        j.write_all(b"13,47900").unwrap();
        drop(j);

        let mut disk = Disk::open(dir.path()).unwrap();
        let loaded = disk.load().unwrap().unwrap();
        assert_eq!(loaded.snapshot_seq, 10);
        assert_eq!(loaded.replayed.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![11, 12]);
        assert_eq!(disk.journal_lines(), 2);
        let len = fs::metadata(dir.path().join("journal")).unwrap().len();
        disk.append(&[change(13, "4790000003", "opb")]).unwrap();
        let text = fs::read_to_string(dir.path().join("journal")).unwrap();
        assert!(text.ends_with("\n13,4790000003,opb,D002,port,1\n"), "{text}");
        assert!(len > 0);
    }

    #[test]
    fn lines_before_the_snapshot_are_skipped_and_a_skip_stops_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = Disk::open(dir.path()).unwrap();
        disk.write_snapshot(&index(), 10, 0).unwrap();
        disk.append(&[
            change(9, "4790000001", "opb"),
            change(11, "4790000002", "opb"),
            change(13, "4790000003", "opb"),
        ])
        .unwrap();
        let loaded = disk.load().unwrap().unwrap();
        assert_eq!(loaded.replayed.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![11]);
        assert_eq!(disk.journal_lines(), 2, "the line after the skip is cut");
    }

    /// The overflow the `feed` fuzz target found in `check_page`, here at load: a snapshot at
    /// seq i64::MAX (the clearinghouse's header names it) overflowed `snapshot_seq + 1`.
    #[test]
    fn a_snapshot_at_the_last_seq_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = Disk::open(dir.path()).unwrap();
        disk.write_snapshot(&index(), i64::MAX, 0).unwrap();
        disk.append(&[change(i64::MAX, "4790000001", "opb"), change(i64::MIN, "4790000002", "opb")]).unwrap();
        let loaded = disk.load().unwrap().unwrap();
        assert_eq!(loaded.snapshot_seq, i64::MAX);
        assert!(loaded.replayed.is_empty());
    }

    #[test]
    fn a_second_replica_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Disk::open(dir.path()).unwrap();
        assert!(matches!(Disk::open(dir.path()), Err(DiskError::Locked(_))));
    }
}
