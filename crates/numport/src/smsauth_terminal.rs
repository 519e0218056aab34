//! How `numport terminal` puts SMS authentication to use ([`numport::handset_auth`]): each
//! SMS-DELIVER and status report judged before it is acknowledged, each shown with its verdict
//! and a message stored with it in the inbox.

use std::path::{Path, PathBuf};

use numport::handset_auth::{HandsetAuth, Judgement, SimKey};
use numport_core::{Clock, SystemClock};
use sms::tpdu::{SmsDeliver, Tpdu};

use crate::terminal_cmd::Shown;
use crate::terminal_sim::CardFile;

/// The SMS-authentication state beside the terminal's state file: `<state>.smsauth`.
pub fn state_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".smsauth");
    PathBuf::from(name)
}

/// The handset's verifier: its state beside `state` (the terminal's state file), the keys of
/// `card` (its SMS-authentication EF) and `keys` given on the command line.
pub fn open(
    state: Option<&Path>,
    card: Option<&CardFile>,
    keys: &[SimKey],
    grace_ms: i64,
) -> anyhow::Result<HandsetAuth> {
    let mut all: Vec<SimKey> = keys.to_vec();
    all.extend(card.and_then(CardFile::sms_auth_key));
    let state = state.map(state_path);
    HandsetAuth::open(state.as_deref(), &all, grace_ms, SystemClock.now_ms())
}

/// Takes in the key the card holds now, if it is new: written over the air, it is used from
/// the next SMS on, the older ones accepted for `grace_ms` more.
pub fn take_card_key(auth: &mut HandsetAuth, card: Option<&CardFile>, grace_ms: i64) -> anyhow::Result<()> {
    match card.and_then(CardFile::sms_auth_key) {
        Some(key) => auth.take_key(&key, grace_ms, SystemClock.now_ms()),
        None => Ok(()),
    }
}

/// The number the MAC covers as the destination: the SIM's own (its EF_MSISDN, which the OTA
/// server writes at account opening and port-in) when a card holds one, else the number the
/// network attached the SIM as. A handset knows its number from its SIM; the attach answer
/// is the base station's word, and a pseudo base station's at that.
pub fn own_number(card: Option<&CardFile>, attached: &str) -> String {
    card.and_then(CardFile::msisdn).unwrap_or_else(|| attached.to_owned())
}

/// The verdict on `tpdu` if it is an SMS-DELIVER (for a part, its message's so far, and the
/// SMS-DELIVER, whose message [`HandsetAuth::complete`] finishes) or an SMS-STATUS-REPORT,
/// to the subscriber `msisdn`; saved before the caller acknowledges it. A SIM without SMS
/// authentication (no key at all) gives no verdict.
pub fn judge(
    auth: &mut HandsetAuth,
    tpdu: &[u8],
    msisdn: &str,
) -> anyhow::Result<Option<(Judgement, Option<SmsDeliver>)>> {
    if !auth.has_keys() {
        return Ok(None);
    }
    let now = SystemClock.now_ms();
    match Tpdu::decode_mt(tpdu) {
        Ok(Tpdu::Deliver(d)) => Ok(Some((auth.judge(&d, msisdn, now)?, Some(d)))),
        Ok(Tpdu::StatusReport(r)) => Ok(Some((auth.judge_report(&r, msisdn, now)?, None))),
        _ => Ok(None),
    }
}

/// The line to print for `show` with its `verdict`; a message goes to the inbox with it.
pub fn show(auth: &mut HandsetAuth, show: &Shown, verdict: Option<&Judgement>, json: bool) -> anyhow::Result<String> {
    let mut object = show.json();
    if let Some(v) = verdict {
        object["verdict"] = v.verdict.clone().into();
        object["verdict_detail"] = v.detail.clone().into();
    }
    if matches!(show, Shown::Message { .. }) {
        auth.store(&object)?;
    }
    Ok(match (json, verdict) {
        (true, _) => object.to_string(),
        (false, Some(v)) if v.is_authentic() => format!("{}  [{}]", show.line(), v.detail),
        (false, Some(v)) => format!("{}  [WARNING: {}]", show.line(), v.detail),
        (false, None) => show.line(),
    })
}
