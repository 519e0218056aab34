//! Writing CDR files ([`crate::cdr`]'s format) so that billing never reads half a file: a file
//! is written under a hidden temporary name (`.<name>.tmp`), and closed by appending its
//! trailer, `fsync`, renaming it to its final name (`cdr-<node>-<seq>.csv`) and `fsync` of the
//! directory. A file is closed when it reaches the record or byte limit, when it has been open
//! for the age limit, and when the writer finishes. Sequence numbers continue after the
//! highest one already in the directory, so a restarted node never reuses a name.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::cdr::{self, Cdr, FileHeader};

/// When a file is closed and the next one opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_records: u64,
    pub max_bytes: u64,
    pub max_age: Duration,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { max_records: 100_000, max_bytes: 64 << 20, max_age: Duration::from_secs(300) }
    }
}

impl Rotation {
    /// Whether a file with these figures is due to be closed.
    pub fn due(&self, records: u64, bytes: u64, age: Duration) -> bool {
        records >= self.max_records || bytes >= self.max_bytes || age >= self.max_age
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CdrFileError {
    #[error("CDR directory {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Encode(#[from] cdr::EncodeError),
    #[error("the CDR writer stopped")]
    Stopped,
}

/// The final name of file `seq` of `node`.
pub fn file_name(node: &str, seq: u64) -> String {
    format!("cdr-{node}-{seq:08}.csv")
}

/// The sequence number of a final file name of `node`.
fn seq_of(node: &str, name: &str) -> Option<u64> {
    name.strip_prefix("cdr-")?.strip_prefix(node)?.strip_prefix('-')?.strip_suffix(".csv")?.parse().ok()
}

struct Open {
    header: FileHeader,
    temp: PathBuf,
    out: BufWriter<File>,
    hash: Sha256,
    records: u64,
    bytes: u64,
    opened: Instant,
}

/// A directory of CDR files of one node, written synchronously (see [`CdrSink`] for a thread).
pub struct CdrWriter {
    dir: PathBuf,
    node: String,
    rotation: Rotation,
    next_seq: u64,
    open: Option<Open>,
    closed: Vec<PathBuf>,
    line: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl CdrWriter {
    /// Writes into `dir` (created if missing) as `node`.
    pub fn new(dir: &Path, node: &str, rotation: Rotation) -> Result<CdrWriter, CdrFileError> {
        let io = |e| CdrFileError::Io(dir.to_owned(), e);
        // The node name is part of the file names and the header.
        cdr::FileHeader { node: node.into(), file_seq: 0, opened_ms: 0 }.encode()?;
        if node.contains(['/', '\\']) || node.starts_with('.') {
            return Err(cdr::EncodeError { field: "node", value: node.into() }.into());
        }
        fs::create_dir_all(dir).map_err(io)?;
        let mut last = 0;
        for entry in fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            if let Some(seq) = name.to_str().and_then(|n| seq_of(node, n)) {
                last = last.max(seq);
            }
        }
        Ok(CdrWriter {
            dir: dir.to_owned(),
            node: node.to_owned(),
            rotation,
            next_seq: last + 1,
            open: None,
            closed: Vec::new(),
            line: String::new(),
        })
    }

    fn io(&self, e: std::io::Error) -> CdrFileError {
        CdrFileError::Io(self.dir.clone(), e)
    }

    fn open_next(&mut self) -> Result<Open, CdrFileError> {
        let header = FileHeader { node: self.node.clone(), file_seq: self.next_seq, opened_ms: now_ms() };
        self.next_seq += 1;
        let temp = self.dir.join(format!(".{}.tmp", file_name(&self.node, header.file_seq)));
        let file = File::create(&temp).map_err(|e| self.io(e))?;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let text = header.encode()?;
        out.write_all(text.as_bytes()).map_err(|e| self.io(e))?;
        let mut hash = Sha256::new();
        hash.update(text.as_bytes());
        Ok(Open { header, temp, out, hash, records: 0, bytes: text.len() as u64, opened: Instant::now() })
    }

    /// Appends `record`, opening a file if none is open and closing it when it is full.
    pub fn write(&mut self, record: &Cdr) -> Result<(), CdrFileError> {
        self.line.clear();
        record.encode_into(&mut self.line)?;
        let mut open = match self.open.take() {
            Some(o) => o,
            None => self.open_next()?,
        };
        if let Err(e) = open.out.write_all(self.line.as_bytes()) {
            return Err(self.io(e));
        }
        open.hash.update(self.line.as_bytes());
        open.records += 1;
        open.bytes += self.line.len() as u64;
        self.open = Some(open);
        self.rotate_if_due()
    }

    /// Closes the open file if it reached a limit (its age included).
    pub fn rotate_if_due(&mut self) -> Result<(), CdrFileError> {
        let due = self.open.as_ref().is_some_and(|o| self.rotation.due(o.records, o.bytes, o.opened.elapsed()));
        if due { self.close() } else { Ok(()) }
    }

    /// Closes the open file, if any: trailer, fsync, rename, fsync of the directory.
    pub fn close(&mut self) -> Result<(), CdrFileError> {
        let Some(mut o) = self.open.take() else { return Ok(()) };
        let digest = o.hash.finalize_reset();
        let end = cdr::trailer(o.records, &digest, now_ms());
        let done = self.dir.join(file_name(&self.node, o.header.file_seq));
        let finish = || -> std::io::Result<()> {
            o.out.write_all(end.as_bytes())?;
            let file = o.out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            fs::rename(&o.temp, &done)?;
            File::open(&self.dir)?.sync_all()
        };
        finish().map_err(|e| self.io(e))?;
        self.closed.push(done);
        Ok(())
    }

    /// The files closed so far, oldest first.
    pub fn closed(&self) -> &[PathBuf] {
        &self.closed
    }
}

enum Command {
    Record(Box<Cdr>),
    Finish,
}

/// A [`CdrWriter`] on a thread of its own, so that the simulator's tasks never wait for the
/// disk: records are queued, and files past their age are closed even when no record comes.
pub struct CdrSink {
    tx: mpsc::Sender<Command>,
    thread: std::thread::JoinHandle<Result<Vec<PathBuf>, CdrFileError>>,
}

impl CdrSink {
    pub fn start(mut writer: CdrWriter) -> CdrSink {
        let (tx, rx) = mpsc::channel();
        let tick = (writer.rotation.max_age / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let thread = std::thread::spawn(move || {
            loop {
                match rx.recv_timeout(tick) {
                    Ok(Command::Record(r)) => writer.write(&r)?,
                    Ok(Command::Finish) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(mpsc::RecvTimeoutError::Timeout) => writer.rotate_if_due()?,
                }
            }
            writer.close()?;
            Ok(writer.closed)
        });
        CdrSink { tx, thread }
    }

    /// Queues `record`; fails only once the writer has failed (the error comes from [`finish`](Self::finish)).
    pub fn send(&self, record: Cdr) -> Result<(), CdrFileError> {
        self.tx.send(Command::Record(Box::new(record))).map_err(|_| CdrFileError::Stopped)
    }

    /// Writes what is queued, closes the open file, and returns every file closed.
    pub fn finish(self) -> Result<Vec<PathBuf>, CdrFileError> {
        let _ = self.tx.send(Command::Finish);
        self.thread.join().map_err(|_| CdrFileError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::tests::voice;

    #[test]
    fn files_rotate_parse_and_never_reuse_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation { max_records: 3, ..Rotation::default() };
        let mut w = CdrWriter::new(dir.path(), "msc.test", rotation).unwrap();
        for n in 0..7 {
            w.write(&voice(n)).unwrap();
        }
        w.close().unwrap();
        let files = w.closed().to_vec();
        assert_eq!(files.len(), 3);
        let counts: Vec<usize> =
            files.iter().map(|f| cdr::parse(&fs::read(f).unwrap()).unwrap().records.len()).collect();
        assert_eq!(counts, [3, 3, 1]);
        let seqs: Vec<u64> = files.iter().map(|f| cdr::parse(&fs::read(f).unwrap()).unwrap().header.file_seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        // No temporary file is left behind, and a new writer continues the sequence.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
        let sink = CdrSink::start(CdrWriter::new(dir.path(), "msc.test", Rotation::default()).unwrap());
        sink.send(voice(9)).unwrap();
        let more = sink.finish().unwrap();
        assert_eq!(more, vec![dir.path().join(file_name("msc.test", 4))]);
    }

    #[test]
    fn age_closes_an_idle_file() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation { max_age: Duration::from_millis(40), ..Rotation::default() };
        let sink = CdrSink::start(CdrWriter::new(dir.path(), "msc.test", rotation).unwrap());
        sink.send(voice(1)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let closed_before_finish = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().ends_with(".csv"))
            .count();
        assert_eq!(closed_before_finish, 1);
        assert_eq!(sink.finish().unwrap().len(), 1);
    }

    #[test]
    fn unsafe_node_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "a/b", "..", "a,b"] {
            assert!(CdrWriter::new(dir.path(), bad, Rotation::default()).is_err(), "{bad}");
        }
    }
}
