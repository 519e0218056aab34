//! The SMPP server against Kannel, a widely deployed third-party SMS gateway, as the ESME: its
//! bearerbox binds as a transceiver and submits what its smsbox's HTTP sendsms interface is
//! given (GSM text, UCS-2, and a long text it splits into concatenated parts). Needs Kannel
//! (`apt-get install kannel`; see [`testkit`] for what its absence does).

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sms::udh::UserDataHeader;
use smsc::rusmpp::tlvs::TlvTag;
use smsc::{EsmeAccount, EsmeDirectory, SmppConfig, Submitted};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SYSTEM_ID: &str = "kannel";
const PASSWORD: &str = "s3cret";
const ADMIN_PASSWORD: &str = "adm1n";
const SENDSMS_USER: &str = "bank";
const SENDSMS_PASSWORD: &str = "sendsms";
/// How long Kannel gets to start and bind.
const BIND_DEADLINE: Duration = Duration::from_secs(20);
/// How long a submit may take from sendsms to our handler.
const SUBMIT_DEADLINE: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    submitted: mpsc::Receiver<Submitted>,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let directory = EsmeDirectory::new([EsmeAccount::new(SYSTEM_ID, PASSWORD, 50).unwrap()]);
    let (tx, submitted) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    let config = SmppConfig::default();
    let handler = smsc::ChannelHandler::new(tx);
    tokio::spawn(smsc::serve(listener, config, directory, handler, smsc::Receivers::new(), stop.clone()));
    Server { addr, submitted, stop }
}

/// `N` distinct loopback ports that were free a moment ago (bound together, then released).
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// bearerbox and smsbox, configured in a temporary directory; both are killed on drop.
struct Kannel {
    children: Vec<Child>,
    dir: tempfile::TempDir,
    admin_port: u16,
    smsbox_port: u16,
    sendsms_port: u16,
}

impl Drop for Kannel {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const LOGS: [&str; 4] = ["bearerbox.log", "bearerbox.out", "smsbox.log", "smsbox.out"];

impl Kannel {
    fn config(&self, smpp: SocketAddr) -> String {
        let dir = self.dir.path().display();
        let (admin, smsbox, sendsms) = (self.admin_port, self.smsbox_port, self.sendsms_port);
        let (host, port) = (smpp.ip(), smpp.port());
        // 1 (info) by default; 0 (debug) dumps every SMPP PDU.
        let level = std::env::var("NUMPORT_KANNEL_LOG_LEVEL").unwrap_or_else(|_| "1".into());
        format!(
            r#"group = core
admin-port = {admin}
admin-interface = 127.0.0.1
admin-password = {ADMIN_PASSWORD}
admin-allow-ip = "127.0.0.1"
smsbox-port = {smsbox}
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-file = "{dir}/bearerbox.log"
log-level = {level}
store-type = file
store-location = "{dir}/kannel.store"
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = numport
host = {host}
port = {port}
transceiver-mode = true
smsc-username = {SYSTEM_ID}
smsc-password = {PASSWORD}
system-type = "kannel"
reconnect-delay = 1
# Often, so that enquire_link is exchanged during the short test too.
enquire-link-interval = 1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox}
sendsms-port = {sendsms}
sendsms-interface = 127.0.0.1
log-file = "{dir}/smsbox.log"
log-level = {level}

group = sendsms-user
username = {SENDSMS_USER}
password = {SENDSMS_PASSWORD}
max-messages = 3
concatenation = true

group = sms-service
keyword = default
text = "No service here"
"#
        )
    }

    /// Starts bearerbox, then smsbox once bearerbox listens for boxes.
    async fn start(smpp: SocketAddr, bearerbox: &Path, smsbox: &Path) -> Kannel {
        let [admin_port, smsbox_port, sendsms_port] = free_ports();
        let dir = tempfile::tempdir().unwrap();
        let mut kannel = Kannel { children: Vec::new(), dir, admin_port, smsbox_port, sendsms_port };
        let conf = kannel.dir.path().join("kannel.conf");
        std::fs::write(&conf, kannel.config(smpp)).unwrap();
        kannel.spawn(bearerbox, "bearerbox", &conf);
        let deadline = Instant::now() + BIND_DEADLINE;
        while !testkit::listening(smsbox_port) {
            kannel.check_alive();
            assert!(Instant::now() < deadline, "bearerbox never listened for smsbox\n{}", kannel.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        kannel.spawn(smsbox, "smsbox", &conf);
        kannel
    }

    fn spawn(&mut self, binary: &Path, name: &str, conf: &Path) {
        let out = File::create(self.dir.path().join(format!("{name}.out"))).unwrap();
        let child = Command::new(binary)
            // Console verbosity: warnings and worse (the log file has the rest).
            .args(["-v", "2"])
            .arg(conf)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        self.children.push(child);
    }

    /// Panics (with the logs) if bearerbox or smsbox has exited.
    fn check_alive(&mut self) {
        let exited: Vec<String> = self
            .children
            .iter_mut()
            .filter_map(|c| c.try_wait().ok().flatten().map(|status| format!("pid {}: {status}", c.id())))
            .collect();
        assert!(exited.is_empty(), "Kannel exited ({})\n{}", exited.join(", "), self.logs());
    }

    /// The last lines of every log, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for name in LOGS {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                out += &format!(
                    "--- {name} (last 30 lines) ---\n{}\n",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                );
            }
        }
        out
    }

    /// What bearerbox logged as an error or warning about the SMPP connection (a refused bind,
    /// a generic_nack, an error status in a response, a PDU it could not parse).
    fn smpp_complaints(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("bearerbox.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("SMPP") && (l.contains("ERROR:") || l.contains("WARNING:") || l.contains("PANIC:")))
            .map(str::to_owned)
            .collect()
    }

    async fn status(&self, http: &reqwest::Client) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/status.txt", self.admin_port);
        let r = http.get(url).query(&[("password", ADMIN_PASSWORD)]).send().await.ok()?;
        r.text().await.ok()
    }

    /// Waits until bearerbox's status page shows the SMSC connection online and smsbox connected.
    async fn wait_bound(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + BIND_DEADLINE;
        let mut last = String::new();
        loop {
            self.check_alive();
            let complaints = self.smpp_complaints();
            assert!(complaints.is_empty(), "Kannel could not bind:\n{}\n{}", complaints.join("\n"), self.logs());
            if let Some(status) = self.status(http).await {
                let smsc_online = section(&status, "SMSC connections:").any(|l| l.contains("(online"));
                let smsbox_connected = section(&status, "Box connections:").any(|l| l.contains("smsbox"));
                if smsc_online && smsbox_connected {
                    return;
                }
                last = status;
            }
            assert!(
                Instant::now() < deadline,
                "Kannel did not bind within {BIND_DEADLINE:?}\n--- status.txt ---\n{last}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One sendsms request; Kannel must accept it (202).
    async fn send(&self, http: &reqwest::Client, to: &str, text: &str, extra: &[(&str, &str)]) {
        let url = format!("http://127.0.0.1:{}/cgi-bin/sendsms", self.sendsms_port);
        let mut query = vec![
            ("username", SENDSMS_USER),
            ("password", SENDSMS_PASSWORD),
            ("from", "MyBank"),
            ("to", to),
            ("text", text),
        ];
        query.extend_from_slice(extra);
        // smsbox may open its HTTP port a little after it connects to bearerbox: retry refusals.
        let deadline = Instant::now() + SUBMIT_DEADLINE;
        let response = loop {
            match http.get(&url).query(&query).send().await {
                Ok(r) => break r,
                Err(e) if e.is_connect() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("sendsms request failed: {e}\n{}", self.logs()),
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 202, "sendsms refused {text:?}: {body}\n{}", self.logs());
    }
}

/// The indented lines under a heading of Kannel's status.txt.
fn section<'a>(status: &'a str, heading: &str) -> impl Iterator<Item = &'a str> {
    status.lines().skip_while(move |l| l.trim() != heading).skip(1).take_while(|l| !l.trim().is_empty())
}

async fn next_submit(s: &mut Server, kannel: &Kannel, what: &str) -> Submitted {
    match tokio::time::timeout(SUBMIT_DEADLINE, s.submitted.recv()).await {
        Ok(Some(m)) => m,
        _ => panic!("no submit_sm for {what} within {SUBMIT_DEADLINE:?}\n{}", kannel.logs()),
    }
}

#[tokio::test]
async fn kannel_binds_as_transceiver_and_submits_gsm_ucs2_and_concatenated_text() {
    let Some(bearerbox) = testkit::command("bearerbox", "apt-get install kannel") else { return };
    let Some(smsbox) = testkit::command("smsbox", "apt-get install kannel") else { return };
    let mut s = start_server().await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut kannel = Kannel::start(s.addr, &bearerbox, &smsbox).await;
    kannel.wait_bound(&http).await;

    // (a) Plain GSM text: one submit_sm, GSM default alphabet (data_coding 0), one septet per
    // octet (for these characters the same bytes as ASCII), international destination.
    let text = "Your code is 123456. It expires in 5 minutes.";
    kannel.send(&http, "+4790000001", text, &[]).await;
    let m = next_submit(&mut s, &kannel, "the GSM text").await;
    let logs = kannel.logs();
    assert_eq!(m.system_id, SYSTEM_ID);
    assert_eq!(m.submit.destination_addr.as_str(), "4790000001", "{logs}");
    assert_eq!(u8::from(m.submit.dest_addr_ton), 1, "international TON: {:?}\n{logs}", m.submit.dest_addr_ton);
    assert_eq!(m.submit.source_addr.as_str(), "MyBank", "{logs}");
    assert_eq!(u8::from(m.submit.data_coding), 0, "{:?}", m.submit.data_coding);
    assert_eq!(u8::from(m.submit.esm_class) & 0x40, 0, "no UDH: {:?}", m.submit.esm_class);
    assert_eq!(m.submit.short_message().as_ref(), text.as_bytes());

    // (b) Non-GSM characters with coding=2: UCS-2 (data_coding 8), the text in UTF-16BE.
    let text = "Привет! Код 4711 — ✓ 世界";
    kannel.send(&http, "+4790000002", text, &[("coding", "2"), ("charset", "UTF-8")]).await;
    let m = next_submit(&mut s, &kannel, "the UCS-2 text").await;
    assert_eq!(m.submit.destination_addr.as_str(), "4790000002");
    assert_eq!(u8::from(m.submit.data_coding), 8, "{:?}", m.submit.data_coding);
    let utf16be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    assert_eq!(m.submit.short_message().as_ref(), utf16be.as_slice());

    // (c) 300 GSM characters: Kannel splits them into two submit_sm with a concatenation UDH.
    let mut long: String = (1..).map(|i| format!("Statement line {i:02}: balance 1000 NOK. ")).take(10).collect();
    long.truncate(297);
    long.push_str("END");
    assert_eq!(long.len(), 300);
    kannel.send(&http, "+4790000003", &long, &[]).await;
    let mut parts = Vec::new();
    for n in 1..=2 {
        let m = next_submit(&mut s, &kannel, &format!("part {n} of the long text")).await;
        let submit = &m.submit;
        assert_eq!(submit.destination_addr.as_str(), "4790000003");
        assert_eq!(u8::from(submit.data_coding), 0, "{:?}", submit.data_coding);
        assert_ne!(u8::from(submit.esm_class) & 0x40, 0, "UDHI set: {:?}", submit.esm_class);
        let sm = submit.short_message().as_ref();
        let (udh, udh_len) = UserDataHeader::decode(sm).unwrap_or_else(|e| panic!("UDH of {sm:02x?}: {e}"));
        let concat = udh.concat().unwrap_or_else(|| panic!("no concatenation element in {udh:?}"));
        let tlvs: Vec<TlvTag> = submit.tlvs().iter().map(|t| t.tag()).collect();
        parts.push((concat, String::from_utf8(sm[udh_len..].to_vec()).unwrap(), tlvs));
    }
    parts.sort_by_key(|(c, ..)| c.seq);
    let (c1, c2) = (parts[0].0, parts[1].0);
    assert_eq!(c1.reference, c2.reference, "same concatenation reference: {c1:?} {c2:?}");
    assert_eq!((c1.seq, c1.total, c2.seq, c2.total), (1, 2, 2, 2), "{c1:?} {c2:?}");
    assert_eq!(parts[0].1.clone() + &parts[1].1, long);
    // Kannel marks the first part with the more_messages_to_send TLV; it is decoded, not lost.
    assert_eq!(parts[0].2, [TlvTag::MoreMessagesToSend], "TLVs of part 1");

    // Nothing else arrives (no resubmission: Kannel took every submit_sm_resp), and Kannel
    // counts the three messages as sent (the two parts as one, once both are answered), none
    // failed, and logged no complaint about an answer of ours.
    let deadline = Instant::now() + SUBMIT_DEADLINE;
    loop {
        let status = kannel.status(&http).await.unwrap_or_default();
        let line = section(&status, "SMSC connections:").find(|l| l.contains("(online")).unwrap_or_default();
        if line.contains("sent: sms 3 ") && line.contains("failed 0") {
            break;
        }
        assert!(Instant::now() < deadline, "Kannel's counters: {line}\n{}", kannel.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.submitted.try_recv().is_err(), "an unexpected further submit_sm");
    let complaints = kannel.smpp_complaints();
    assert!(complaints.is_empty(), "Kannel complained about our answers:\n{}", complaints.join("\n"));
}

#[tokio::test]
async fn kannel_sends_gsm_text_with_the_extension_table_and_accented_letters_intact() {
    let Some(bearerbox) = testkit::command("bearerbox", "apt-get install kannel") else { return };
    let Some(smsbox) = testkit::command("smsbox", "apt-get install kannel") else { return };
    let mut s = start_server().await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut kannel = Kannel::start(s.addr, &bearerbox, &smsbox).await;
    kannel.wait_bound(&http).await;

    // Kannel's defaults (no alt-charset, no coding given): UTF-8 from sendsms is converted to
    // the GSM default alphabet, sent as data_coding 0, one septet per octet, the extension
    // table's characters as escape (0x1B) and code.
    let text = "@£$_{}[]~€ \\|^ ÄÖÑÜäöñüà èéùìòÇØøÅåÆæßÉ ¿¡§ ¥ ΔΦΓΛΩΠΨΣΘΞ";
    kannel.send(&http, "+4790000004", text, &[]).await;
    let m = next_submit(&mut s, &kannel, "the GSM text").await;
    let sm = m.submit.short_message().as_ref();
    assert_eq!(u8::from(m.submit.data_coding), 0, "{:?}", m.submit.data_coding);
    assert_eq!(u8::from(m.submit.esm_class) & 0x40, 0, "no UDH: {:?}", m.submit.esm_class);
    assert!(sm.iter().all(|&b| b < 0x80), "not unpacked septets: {sm:02x?}");
    assert_eq!(sm, sms::gsm7::encode(text).unwrap().as_slice(), "septets on the wire");
    assert_eq!(sms::gsm7::decode(sm), text, "the text as the handler reads it");
    let complaints = kannel.smpp_complaints();
    assert!(complaints.is_empty(), "Kannel complained about our answers:\n{}", complaints.join("\n"));
}
