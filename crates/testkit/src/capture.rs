//! Packets on the loopback interface, captured by Wireshark's `dumpcap` while a test runs, for
//! `tshark` to decode afterwards: the check that what a server puts on the wire is what an
//! independent dissector reads without a malformed packet or an expert warning.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Child;

/// A running capture on `lo`; [`Capture::stop`] ends it and gives the file.
pub struct Capture {
    dumpcap: Child,
    pcap: PathBuf,
}

impl Capture {
    /// Starts dumpcap writing what passes the capture filter `filter` to `pcap`, and returns
    /// once it captures; `None` (after [`crate::skip`]) when dumpcap is missing or may not
    /// capture on lo.
    pub async fn start(filter: &str, pcap: &Path) -> Option<Capture> {
        let dumpcap = crate::command("dumpcap", "apt-get install tshark")?;
        let mut child = tokio::process::Command::new(dumpcap)
            .args(["-q", "-i", "lo", "-f", filter, "-w"])
            .arg(pcap)
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("dumpcap starts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut stderr).await;
                }
                // The line naming the failure starts with `dumpcap:`; advice on permissions follows.
                let why = stderr.lines().find(|l| l.starts_with("dumpcap:")).unwrap_or("no message");
                crate::skip(
                    &format!("permission for dumpcap to capture on lo ({status}; {why})"),
                    "run as root, or as a member of group wireshark after `dpkg-reconfigure wireshark-common`",
                );
                return None;
            }
            // Capturing has begun once dumpcap has written its file header.
            if std::fs::metadata(pcap).is_ok_and(|m| m.len() > 0) {
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Some(Capture { dumpcap: child, pcap: pcap.to_owned() });
            }
            assert!(tokio::time::Instant::now() < deadline, "dumpcap did not start capturing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lets the last packets reach the file, stops dumpcap with SIGINT (so that it closes the
    /// file properly) and returns the file's path.
    pub async fn stop(mut self) -> PathBuf {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(pid) = self.dumpcap.id() {
            // SAFETY: signalling our own child process; no memory is involved.
            unsafe { libc::kill(pid as i32, libc::SIGINT) };
        }
        let _ = self.dumpcap.wait().await;
        self.pcap.clone()
    }
}

/// What tshark prints for `args` (after `-r pcap`); panics with its error output if it fails.
pub fn tshark(pcap: &Path, args: &[&str]) -> Vec<String> {
    let tshark = crate::find_program("tshark").expect("tshark, installed with dumpcap (apt-get install tshark)");
    let out = std::process::Command::new(tshark).arg("-r").arg(pcap).args(args).output().expect("tshark runs");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// The display filter of the packets tshark finds malformed or warns about.
pub const PROBLEMS: &str = "_ws.malformed || _ws.expert.severity >= 0x600000";

/// A link-layer type Wireshark leaves to its user (`DLT_USER0`), which [`tshark_user_dlt`]
/// hands to a dissector of the test's choosing: how bytes that travel on no IP link (a TPDU)
/// reach tshark.
pub const DLT_USER0: u32 = 147;

/// Writes `packets` to a pcap file at `path` with link type `dlt`, one record each.
pub fn write_pcap(path: &Path, dlt: u32, packets: &[Vec<u8>]) {
    let mut out = Vec::new();
    // Magic, version 2.4, no time zone correction, no accuracy, snap length, link type.
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    for v in [0u32, 0, 65_535, dlt] {
        out.extend(v.to_le_bytes());
    }
    for (i, p) in packets.iter().enumerate() {
        for v in [i as u32, 0, p.len() as u32, p.len() as u32] {
            out.extend(v.to_le_bytes());
        }
        out.extend_from_slice(p);
    }
    std::fs::write(path, out).expect("the pcap file is written");
}

/// The tshark option that decodes [`DLT_USER0`] with `dissector` (e.g. `gsm_sms`).
pub fn tshark_user_dlt(dissector: &str) -> String {
    format!("uat:user_dlts:\"User 0 (DLT=147)\",\"{dissector}\",\"0\",\"\",\"0\",\"\"")
}
