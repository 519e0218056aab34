//! The terminal's SIM card ([`sim::Card`]), kept in a card file between runs.
//!
//! `numport terminal sim new` personalises a card as a SIM vendor does (IMSI, K_sim, the OTA
//! key set; the operator is given the same values), `numport terminal sim show` prints its
//! files, with every key as its check value only. A receiving terminal started with `--card
//! FILE` hands each SMS-DELIVER of SIM data download (TP-PID 0x7F, class 2) to the card
//! instead of showing it; the card runs the secured packet, the file is rewritten, and the
//! card's proof of receipt goes back over the air as an SMS-SUBMIT to the packet's originator.
//!
//! The card file is JSON and holds secrets (K_sim, the OTA keys): it is created with mode 0600,
//! and replaced atomically (a temporary file, fsync, rename, fsync of the directory), so a
//! crash leaves the old card or the new one, never half of one. It is written before the PoR
//! is sent, so the counter of a packet acknowledged by a PoR survives any crash and a replay
//! is refused after a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use sim::sms_pp::{DataDownload, is_data_download};
use sim::uicc::{Card, Personalisation};
use sim::{Algorithm, OtaKeys};
use sms::tpdu::Tpdu;

#[derive(clap::Subcommand)]
pub enum SimCommand {
    /// Personalise a new card file, as a SIM vendor does.
    New(NewArgs),
    /// Print the card's files (keys as check values only).
    Show(ShowArgs),
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// The card file to create (refused if it exists).
    #[arg(long, value_name = "FILE")]
    card: PathBuf,
    #[arg(long)]
    imsi: String,
    /// The SIM key (hex, 16 to 32 octets).
    #[arg(long, env = "NUMPORT_K_SIM", hide_env_values = true)]
    k_sim: String,
    /// The OTA ciphering key KIc (hex).
    #[arg(long, env = "NUMPORT_OTA_KIC", hide_env_values = true)]
    kic: String,
    /// The OTA checksum key KID (hex).
    #[arg(long, env = "NUMPORT_OTA_KID", hide_env_values = true)]
    kid: String,
    /// The algorithm of KIc and KID.
    #[arg(long, value_enum, default_value = "aes")]
    algorithm: OtaAlgorithm,
    /// The key version (1 to 15) the OTA keys are stored under.
    #[arg(long, default_value_t = 1)]
    key_version: u8,
    #[arg(long)]
    msisdn: Option<String>,
    /// The service provider name.
    #[arg(long)]
    spn: Option<String>,
    /// The SMS center address.
    #[arg(long)]
    smsc: Option<String>,
    /// The SMS-authentication key (hex, at most 32 octets).
    #[arg(long, env = "NUMPORT_SMS_AUTH_KEY", hide_env_values = true)]
    sms_auth_key: Option<String>,
    /// The version of the SMS-authentication key.
    #[arg(long, default_value_t = 1, requires = "sms_auth_key")]
    sms_auth_version: u8,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OtaAlgorithm {
    /// AES-CBC and AES-CMAC.
    Aes,
    /// Triple DES (16 octets: two keys, 24: three).
    TripleDes,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    #[arg(long, value_name = "FILE")]
    card: PathBuf,
    /// One JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

pub fn run(command: SimCommand) -> anyhow::Result<ExitCode> {
    match command {
        SimCommand::New(args) => new(args),
        SimCommand::Show(args) => show(args),
    }
}

fn hex_arg(name: &str, value: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(value.trim()).with_context(|| format!("--{name} must be hex"))
}

fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    if args.card.exists() {
        bail!("{} exists: a new card would lose its counters", args.card.display());
    }
    let (kic, kid) = (hex_arg("kic", &args.kic)?, hex_arg("kid", &args.kid)?);
    let keys = match args.algorithm {
        OtaAlgorithm::Aes => OtaKeys::aes(&kic, &kid),
        OtaAlgorithm::TripleDes => OtaKeys::triple_des(&kic, &kid),
    }?;
    let card = Card::personalise(&Personalisation {
        imsi: args.imsi,
        k_sim: hex_arg("k-sim", &args.k_sim)?,
        ota_keys: vec![(args.key_version, keys)],
        msisdn: args.msisdn,
        spn: args.spn,
        smsc: args.smsc,
        sms_auth: match &args.sms_auth_key {
            Some(k) => Some((args.sms_auth_version, hex_arg("sms-auth-key", k)?)),
            None => None,
        },
    })?;
    write_atomically(&args.card, &card.to_bytes())?;
    println!("card {} personalised", args.card.display());
    print!("{}", lines(&card));
    Ok(ExitCode::SUCCESS)
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let card = read_card(&args.card)?;
    if args.json {
        println!("{}", json(&card));
    } else {
        print!("{}", lines(&card));
    }
    Ok(ExitCode::SUCCESS)
}

fn read_card(path: &Path) -> anyhow::Result<Card> {
    let bytes = std::fs::read(path).with_context(|| format!("reading the card file {}", path.display()))?;
    Card::from_bytes(&bytes).with_context(|| format!("the card file {}", path.display()))
}

fn kcv(bytes: [u8; 3]) -> String {
    hex::encode_upper(bytes)
}

fn algorithm(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Aes => "AES",
        Algorithm::TripleDes2Key => "3DES-2KEY",
        Algorithm::TripleDes3Key => "3DES-3KEY",
    }
}

fn json(card: &Card) -> serde_json::Value {
    let ota: Vec<_> = card
        .ota_keys()
        .map(|(version, k)| {
            serde_json::json!({
                "version": version,
                "kic": { "algorithm": algorithm(k.kic.algorithm()), "kcv": kcv(k.kic.check_value()) },
                "kid": { "algorithm": algorithm(k.kid.algorithm()), "kcv": kcv(k.kid.check_value()) },
            })
        })
        .collect();
    let sms_auth = card.sms_auth_key().map(
        |(version, key)| serde_json::json!({ "version": version, "kcv": kcv(sim::crypto::secret_check_value(key)) }),
    );
    serde_json::json!({
        "imsi": card.imsi(),
        "msisdn": card.msisdn(),
        "spn": card.spn(),
        "smsc": card.smsc(),
        "k_sim_kcv": kcv(sim::crypto::secret_check_value(card.k_sim())),
        "sms_auth_key": sms_auth,
        "ota_keys": ota,
        "counters": { "B00010": card.counter(sim::Tar::RFM_SIM), "B00011": card.counter(sim::Tar::RFM_USIM) },
    })
}

fn lines(card: &Card) -> String {
    let or_none = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut out = String::new();
    out.push_str(&format!("EF_IMSI   (7F20/6F07)  {}\n", or_none(card.imsi())));
    out.push_str(&format!("EF_MSISDN (7F20/6F40)  {}\n", or_none(card.msisdn())));
    out.push_str(&format!("EF_SPN    (7F20/6F46)  {}\n", or_none(card.spn())));
    out.push_str(&format!("EF_SMSP   (7F20/6F42)  SMS center {}\n", or_none(card.smsc())));
    out.push_str(&format!("K_sim     (7F90/6F01)  KCV {}\n", kcv(sim::crypto::secret_check_value(card.k_sim()))));
    match card.sms_auth_key() {
        Some((version, key)) => out.push_str(&format!(
            "SMS auth  (7F90/6F02)  version {version}, KCV {}\n",
            kcv(sim::crypto::secret_check_value(key))
        )),
        None => out.push_str("SMS auth  (7F90/6F02)  -\n"),
    }
    for (version, k) in card.ota_keys() {
        out.push_str(&format!(
            "OTA keys  version {version}: KIc {} KCV {}, KID {} KCV {}\n",
            algorithm(k.kic.algorithm()),
            kcv(k.kic.check_value()),
            algorithm(k.kid.algorithm()),
            kcv(k.kid.check_value()),
        ));
    }
    for tar in [sim::Tar::RFM_SIM, sim::Tar::RFM_USIM] {
        out.push_str(&format!("counter   TAR {tar}: {}\n", card.counter(tar)));
    }
    out
}

/// Replaces `path` with `bytes`: a temporary file beside it (mode 0600), fsync, rename, fsync
/// of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    Ok(())
}

/// The receiving terminal's card: the file, the card in it, and the parts of a command
/// packet not yet whole.
pub struct CardFile {
    path: PathBuf,
    card: Card,
    download: DataDownload,
    next_mr: u8,
}

/// A data download the card took: what to show (as JSON and as a line), and the PoR to send;
/// nothing yet for a part that leaves its packet incomplete.
#[derive(Default)]
pub struct Taken {
    pub shown: Option<(serde_json::Value, String)>,
    /// The SMS-SUBMIT TPDU of the PoR and its destination.
    pub por: Option<(Vec<u8>, String)>,
}

impl CardFile {
    pub fn open(path: &Path) -> anyhow::Result<CardFile> {
        let card = read_card(path)?;
        Ok(CardFile { path: path.to_owned(), card, download: DataDownload::default(), next_mr: rand::random() })
    }

    /// The number in the card's EF_MSISDN, digits without `+`, if one was written.
    pub fn msisdn(&self) -> Option<String> {
        self.card.msisdn().map(|m| m.trim_start_matches('+').to_owned()).filter(|m| !m.is_empty())
    }

    /// The SMS-authentication key the card holds (its EF), if one was written.
    pub fn sms_auth_key(&self) -> Option<numport::handset_auth::SimKey> {
        let (version, key) = self.card.sms_auth_key()?;
        Some(numport::handset_auth::SimKey { version, key: key.try_into().ok()? })
    }

    /// Takes `tpdu` if it is SIM data download: `None` for anything else, which the terminal
    /// shows as before. A part that leaves its packet incomplete is taken with nothing to
    /// show. The card file is rewritten before this returns.
    pub fn take(&mut self, tpdu: &[u8]) -> anyhow::Result<Option<Taken>> {
        let Ok(Tpdu::Deliver(d)) = Tpdu::decode_mt(tpdu) else { return Ok(None) };
        if !is_data_download(&d) {
            return Ok(None);
        }
        let mr = self.next_mr;
        let Some(reception) = self.download.deliver(&mut self.card, &d, mr) else { return Ok(Some(Taken::default())) };
        write_atomically(&self.path, &self.card.to_bytes())?;
        let from = d.originator.value.clone();
        let outcome = reception.outcome;
        let tar = outcome.tar.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
        let script = outcome.script.as_ref();
        let (executed, last_sw) = script.map_or((0, 0), |s| (s.executed, s.last_sw));
        let line = format!(
            "SIM data download from {from}: TAR {tar}, {}, {executed} commands, last SW {last_sw:04X}",
            outcome.status
        );
        let shown = serde_json::json!({ "sim_data_download": {
            "from": from, "tar": tar, "status": outcome.status.code(), "executed": executed,
            "last_sw": format!("{last_sw:04X}"), "por": reception.por.is_some(),
        }});
        let por = reception.por.and_then(|submit| Tpdu::Submit(submit).encode().ok()).map(|tpdu| {
            self.next_mr = self.next_mr.wrapping_add(1);
            (tpdu, from.clone())
        });
        Ok(Some(Taken { shown: Some((shown, line)), por }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_file_is_replaced_whole_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!path.with_extension("tmp").exists());
    }

    /// The MAC's destination is the number the card holds, else the one the node attached the
    /// SIM as.
    #[test]
    fn the_handsets_number_comes_from_the_card() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        let personalise = |msisdn: Option<&str>| {
            let card = Card::personalise(&Personalisation {
                imsi: "242010000000001".into(),
                k_sim: vec![1; 16],
                ota_keys: Vec::new(),
                msisdn: msisdn.map(str::to_owned),
                spn: None,
                smsc: None,
                sms_auth: None,
            })
            .unwrap();
            write_atomically(&path, &card.to_bytes()).unwrap();
            CardFile::open(&path).unwrap()
        };
        let own = crate::smsauth_terminal::own_number;
        assert_eq!(own(Some(&personalise(Some("+4790500000"))), "4799999999"), "4790500000");
        assert_eq!(own(Some(&personalise(None)), "4799999999"), "4799999999");
        assert_eq!(own(None, "4799999999"), "4799999999");
    }
}
