//! The handset's side of SMS authentication (F3): every SMS-DELIVER and SMS-STATUS-REPORT is
//! checked against the keys the SIM holds ([`sms::auth::Verifier`]) and gets a verdict, shown
//! and stored with the message: authentic, forged ("sent by a pseudo base station") or
//! replayed.
//!
//! A concatenated message's verdict is the worst of its parts' (one forged part injected into a
//! genuine message makes the message forged). The replay window, the keys and the verdicts of
//! parts whose message is not yet complete live in a state file (JSON, replaced atomically and
//! synced before the SMS is acknowledged), so that a restarted handset still refuses a counter
//! it accepted before; the messages with their verdicts are appended to an inbox file (one JSON
//! object a line).
//!
//! The keys come from the SIM: [`SimKey`]s, version and key, as the SMS center issued them.
//! When the SIM is given a newer version, the older keys stay accepted for a grace period,
//! then no more. The card's SMS-authentication EF holds a version and a key only, not the
//! grace the node configured (`[sms_auth] grace_s`), so the handset is told it
//! (`numport terminal --sms-auth-grace-s`, whose default is the node's default).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sms::auth::{HeldKey, KEY_LEN, ReplayWindow, SmsAuthKey, Verdict, Verifier};
use sms::tpdu::{SmsDeliver, SmsStatusReport};

/// A key the SIM holds: `VERSION:HEX` on the command line.
#[derive(Clone, PartialEq, Eq)]
pub struct SimKey {
    pub version: u8,
    pub key: [u8; KEY_LEN],
}

impl std::fmt::Debug for SimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimKey").field("version", &self.version).finish_non_exhaustive()
    }
}

impl std::str::FromStr for SimKey {
    type Err = String;

    fn from_str(s: &str) -> Result<SimKey, String> {
        let (version, key) = s.trim().split_once(':').ok_or("expected VERSION:HEX")?;
        let version: u8 = version.parse().map_err(|_| format!("key version {version:?}"))?;
        if version == 0 {
            return Err("key version 0 is no version".into());
        }
        let key = hex::decode(key).map_err(|e| format!("key: {e}"))?;
        let key = key.try_into().map_err(|k: Vec<u8>| format!("a key of {} octets (expected {KEY_LEN})", k.len()))?;
        Ok(SimKey { version, key })
    }
}

impl std::fmt::Display for SimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.version, hex::encode(self.key))
    }
}

/// The concatenated message a part belongs to: originator, 16-bit reference, reference, parts.
type MessageKey = (String, bool, u16, u8);

fn message_of(d: &SmsDeliver) -> Option<MessageKey> {
    let c = d.user_data.header.as_ref()?.concat()?;
    (c.total > 1 && c.seq >= 1 && c.seq <= c.total).then(|| (d.originator.value.clone(), c.wide, c.reference, c.total))
}

/// A verdict as it is shown and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgement {
    /// `authentic`, `forged` or `replayed`.
    pub verdict: String,
    /// The verdict in words, with its reason.
    pub detail: String,
}

impl From<&Verdict> for Judgement {
    fn from(v: &Verdict) -> Judgement {
        Judgement { verdict: v.code().to_owned(), detail: v.to_string() }
    }
}

impl Judgement {
    fn rank(&self) -> u8 {
        match self.verdict.as_str() {
            "authentic" => 0,
            "replayed" => 1,
            _ => 2,
        }
    }

    pub fn is_authentic(&self) -> bool {
        self.verdict == "authentic"
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredKey {
    version: u8,
    key: String,
    /// Unix ms; `None`: the current key.
    accepted_until: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingPart {
    originator: String,
    wide: bool,
    reference: u16,
    total: u8,
    judgement: Judgement,
}

/// The state file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    window: String,
    keys: Vec<StoredKey>,
    pending: Vec<PendingPart>,
}

/// The handset's verifier, with its state and inbox files.
pub struct HandsetAuth {
    verifier: Verifier,
    /// Verdicts so far of concatenated messages not yet complete.
    pending: HashMap<MessageKey, Judgement>,
    /// The keys as the state file keeps them.
    held: Vec<StoredKey>,
    state: Option<PathBuf>,
    inbox: Option<std::fs::File>,
}

impl HandsetAuth {
    /// Loads the state at `state` (none yet: a fresh window) and opens the inbox beside it;
    /// takes in the SIM's `keys`: a version newer than those held makes the older ones
    /// accepted for `grace_ms` from `now_ms` on.
    pub fn open(state: Option<&Path>, keys: &[SimKey], grace_ms: i64, now_ms: i64) -> anyhow::Result<HandsetAuth> {
        let stored = match state {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice::<State>(&bytes)
                    .with_context(|| format!("{} is no SMS authentication state", path.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            },
            None => State::default(),
        };
        let window = match stored.window.as_str() {
            "" => ReplayWindow::default(),
            w => ReplayWindow::from_text(w).context("the replay window in the state file does not read")?,
        };
        let held: Vec<StoredKey> = stored.keys;
        let verifier_keys = held.iter().map(held_key).collect::<anyhow::Result<Vec<_>>>()?;
        let pending =
            stored.pending.into_iter().map(|p| ((p.originator, p.wide, p.reference, p.total), p.judgement)).collect();
        let inbox = match state {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(inbox_path(path))
                    .with_context(|| format!("opening {}", inbox_path(path).display()))?,
            ),
            None => None,
        };
        let mut me = HandsetAuth {
            verifier: Verifier { keys: verifier_keys, window },
            pending,
            held,
            state: state.map(Path::to_owned),
            inbox,
        };
        for k in keys {
            me.add_key(k, grace_ms, now_ms)?;
        }
        me.save()?;
        Ok(me)
    }

    /// Takes in a key the SIM holds, if it is new, and saves the state: a version newer than
    /// those held makes the older ones accepted for `grace_ms` from `now_ms` on.
    pub fn take_key(&mut self, key: &SimKey, grace_ms: i64, now_ms: i64) -> anyhow::Result<()> {
        if self.add_key(key, grace_ms, now_ms)? {
            self.save()?;
        }
        Ok(())
    }

    /// [`HandsetAuth::take_key`] without saving; whether the key was new.
    fn add_key(&mut self, k: &SimKey, grace_ms: i64, now_ms: i64) -> anyhow::Result<bool> {
        if self.held.iter().any(|h| h.version == k.version) {
            return Ok(false);
        }
        let until = Some(now_ms.saturating_add(grace_ms));
        let newest = self.held.iter().all(|h| h.version < k.version);
        if newest {
            for h in self.held.iter_mut().filter(|h| h.accepted_until.is_none()) {
                h.accepted_until = until;
            }
        }
        // An older key handed in late is accepted no longer than the grace from now.
        let accepted_until = if newest { None } else { until };
        self.held.push(StoredKey { version: k.version, key: hex::encode(k.key), accepted_until });
        self.verifier.keys = self.held.iter().map(held_key).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(true)
    }

    /// Whether the SIM holds any key (without one, every SMS reads as forged).
    pub fn has_keys(&self) -> bool {
        !self.verifier.keys.is_empty()
    }

    /// Judges one received SMS-DELIVER to `msisdn` (the SIM's number) at `now_ms`, and saves
    /// the state before the caller acknowledges it. For a part of a concatenated message the
    /// verdict so far of its whole message, which [`HandsetAuth::complete`] hands out when the
    /// message is shown.
    pub fn judge(&mut self, deliver: &SmsDeliver, msisdn: &str, now_ms: i64) -> anyhow::Result<Judgement> {
        let verdict = self.verifier.verify(deliver, msisdn, now_ms);
        let mut judgement = Judgement::from(&verdict);
        if let Some(key) = message_of(deliver) {
            let so_far = self.pending.entry(key).or_insert_with(|| judgement.clone());
            if judgement.rank() > so_far.rank() {
                *so_far = judgement.clone();
            }
            judgement = so_far.clone();
        }
        self.save()?;
        Ok(judgement)
    }

    /// Judges one received SMS-STATUS-REPORT to `msisdn` at `now_ms`, as [`HandsetAuth::judge`]
    /// an SMS-DELIVER: a pseudo base station's "delivered" is forged like its SMS.
    pub fn judge_report(&mut self, report: &SmsStatusReport, msisdn: &str, now_ms: i64) -> anyhow::Result<Judgement> {
        let verdict = self.verifier.verify(report, msisdn, now_ms);
        self.save()?;
        Ok(Judgement::from(&verdict))
    }

    /// The verdict of the message whose last part is `deliver`, now complete; forgotten here.
    pub fn complete(&mut self, deliver: &SmsDeliver) -> Option<Judgement> {
        let key = message_of(deliver)?;
        self.pending.remove(&key)
    }

    /// Appends a shown message with its verdict to the inbox (synced).
    pub fn store(&mut self, message: &serde_json::Value) -> anyhow::Result<()> {
        let Some(inbox) = &mut self.inbox else { return Ok(()) };
        let mut line = message.to_string();
        line.push('\n');
        inbox.write_all(line.as_bytes()).context("writing the inbox")?;
        inbox.sync_data().context("syncing the inbox")?;
        Ok(())
    }

    /// Writes the state file: a new file synced, then renamed over the old one.
    fn save(&self) -> anyhow::Result<()> {
        let Some(path) = &self.state else { return Ok(()) };
        let state = State {
            window: self.verifier.window.to_text(),
            keys: self.held.clone(),
            pending: self
                .pending
                .iter()
                .map(|((originator, wide, reference, total), j)| PendingPart {
                    originator: originator.clone(),
                    wide: *wide,
                    reference: *reference,
                    total: *total,
                    judgement: j.clone(),
                })
                .collect(),
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec(&state)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }

    /// The highest counter accepted.
    pub fn top(&self) -> u32 {
        self.verifier.window.top()
    }
}

fn held_key(k: &StoredKey) -> anyhow::Result<HeldKey> {
    let bytes = hex::decode(&k.key).context("a key in the state file is not hex")?;
    let key = SmsAuthKey::new(k.version, &bytes).map_err(|e| anyhow::anyhow!("state file key: {e}"))?;
    Ok(HeldKey { key, accepted_until: k.accepted_until })
}

/// The inbox beside a state file: `<state>.inbox`.
pub fn inbox_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".inbox");
    PathBuf::from(name)
}

/// Reads an inbox: the messages with their verdicts, in order. A line cut by a crash is
/// skipped.
pub fn read_inbox(path: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => bail!("reading {}: {e}", path.display()),
    };
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sms::address::Address;
    use sms::concat::{Reference, split_payload_leaving};
    use sms::tpdu::{DataCoding, Payload, Timestamp, UserData};

    const NUMBER: &str = "4790000001";
    const NOW: i64 = 1_796_000_000_000;

    fn key(version: u8) -> SimKey {
        SimKey { version, key: [version; KEY_LEN] }
    }

    fn deliver(user_data: UserData) -> SmsDeliver {
        SmsDeliver {
            more_messages: false,
            status_report_indication: false,
            reply_path: false,
            originator: Address::alphanumeric("MyBank"),
            pid: 0,
            dcs: DataCoding::GSM7,
            scts: Timestamp { year: 26, month: 12, day: 7, hour: 14, minute: 0, second: 0, tz_quarters: 4 },
            user_data,
        }
    }

    fn tagged(k: &SimKey, mut d: SmsDeliver, counter: u32) -> SmsDeliver {
        SmsAuthKey::new(k.version, &k.key).unwrap().tag(&mut d, NUMBER, counter);
        d
    }

    #[test]
    fn the_window_and_keys_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("t.smsauth");
        let sms = tagged(&key(1), deliver(UserData::gsm7("Your code is 123456").unwrap()), 7);
        let mut h = HandsetAuth::open(Some(&state), &[key(1)], 1000, NOW).unwrap();
        assert_eq!(h.judge(&sms, NUMBER, NOW).unwrap().verdict, "authentic");
        h.store(&serde_json::json!({ "text": "Your code is 123456", "verdict": "authentic" })).unwrap();
        drop(h);

        // Restarted without the key on the command line: the state file has it, and the counter.
        let mut h = HandsetAuth::open(Some(&state), &[], 1000, NOW).unwrap();
        assert!(h.has_keys());
        assert_eq!(h.top(), 7);
        assert_eq!(h.judge(&sms, NUMBER, NOW).unwrap().verdict, "replayed");
        assert_eq!(read_inbox(&inbox_path(&state)).unwrap().len(), 1);
        // A state file that is not one is an error, not a fresh window.
        std::fs::write(&state, b"{\"window\": \"12:zz\"}").unwrap();
        assert!(HandsetAuth::open(Some(&state), &[], 1000, NOW).is_err());
    }

    #[test]
    fn a_forged_part_makes_the_message_forged() {
        let septets = sms::gsm7::encode(&"Kontoutskrift ".repeat(20)).unwrap();
        let parts = split_payload_leaving(
            Payload::Septets(septets),
            DataCoding::GSM7,
            Reference::Sixteen(9),
            sms::auth::ELEMENT_OCTETS,
        )
        .unwrap();
        assert_eq!(parts.len(), 3);
        let mut h = HandsetAuth::open(None, &[key(1)], 1000, NOW).unwrap();
        let first = tagged(&key(1), deliver(parts[0].clone()), 1);
        let injected = deliver(parts[1].clone());
        let last = tagged(&key(1), deliver(parts[2].clone()), 3);
        assert_eq!(h.judge(&first, NUMBER, NOW).unwrap().verdict, "authentic");
        assert_eq!(h.judge(&injected, NUMBER, NOW).unwrap().verdict, "forged");
        assert_eq!(h.judge(&last, NUMBER, NOW).unwrap().verdict, "forged", "the message so far");
        assert_eq!(h.complete(&last).map(|j| j.verdict), Some("forged".into()));
        assert_eq!(h.complete(&last), None, "forgotten once complete");
    }

    #[test]
    fn a_new_key_leaves_the_old_one_a_grace() {
        let mut h = HandsetAuth::open(None, &[key(1)], 1000, NOW).unwrap();
        h.take_key(&key(2), 1000, NOW).unwrap();
        let old = tagged(&key(1), deliver(UserData::gsm7("a").unwrap()), 1);
        let new = tagged(&key(2), deliver(UserData::gsm7("b").unwrap()), 2);
        let late = tagged(&key(1), deliver(UserData::gsm7("c").unwrap()), 3);
        assert_eq!(h.judge(&old, NUMBER, NOW + 1000).unwrap().verdict, "authentic");
        assert_eq!(h.judge(&new, NUMBER, NOW + 1000).unwrap().verdict, "authentic");
        let j = h.judge(&late, NUMBER, NOW + 1001).unwrap();
        assert_eq!(j.verdict, "forged");
        assert!(j.detail.contains("retired"), "{}", j.detail);
        assert!("1:00".parse::<SimKey>().is_err() && "0:00".parse::<SimKey>().is_err());
        assert_eq!(key(3).to_string().parse::<SimKey>(), Ok(key(3)));
    }
}
