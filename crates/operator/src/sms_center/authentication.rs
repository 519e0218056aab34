//! SMS authentication at the SMS center (F3): every SMS-DELIVER the node sends over the air
//! carries [`sms::auth`]'s element, a counter and a MAC under the key the SMS center shares
//! with the subscriber's SIM, so that the handset tells this network's SMS from a pseudo base
//! station's and from replays of recorded ones.
//!
//! **Keys.** Each SIM (by IMSI) has keys in versions 1–255, stored sealed
//! (`store::sms_auth`, AES-256-GCM under the node's key-encryption key, [`crate::sealing`],
//! bound to IMSI and version). This store is the one source of truth for what a SIM holds. A
//! key is *issued* ([`issue_key`]: the OTA server, [`crate::ota`], writes its bytes into the
//! SIM, at account opening and at a port-in), then *activated* once the SIM confirms holding
//! it (the OTA job's proof of receipt, [`activation`]): from then the center tags with it, and
//! the keys before it are retired, kept for `[sms_auth] grace_s` and then deleted; keys issued
//! before it and never activated (a job that failed) are deleted at once. The same grace is
//! what the SIM is told to accept the old key for ([`IssuedKey::previous_accepted_for_ms`]),
//! so that SMS tagged just before the switch, still on their way, stay authentic. A SIM the
//! node issues with its card personalised outside OTA (`numport operator add-sim`) gets version
//! 1, active at once ([`provision_sim_key`]); a later OTA job writes version 2.
//!
//! **Counters.** Per SIM, only growing, never reused, across restarts and `kill -9`: the node
//! reserves them in blocks of `[sms_auth] counter_block`, writing the block's end to the
//! database before it uses the first counter of the block; after a restart it starts at the
//! last mark written, so at most one block is skipped and none used twice. One counter per
//! SMS-DELIVER sent: a message sent again after a lost acknowledgement gets a new one.
//!
//! **What is tagged.** Every SMS-DELIVER built in [`crate::air`]: messages of this node's
//! subscribers, of ESMEs, those arriving over an interconnect (after a port the serving
//! operator tags, whoever sent it), and messages with a submitter's own user data header (a
//! SIM data download among them) when the element still fits; the SIM's own OTA security
//! protects a data download that does not. Every SMS-STATUS-REPORT too, in the user data its
//! TP-PI announces, with a counter of the same sequence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use numport_core::Millis;
use serde::{Deserialize, Serialize};
use sms::auth::{KEY_LEN, MtMessage, SmsAuthKey};

use crate::OperatorError;
use crate::sealing::Sealer;
use crate::store::OperatorStore;
use crate::store::sms_auth::{Activation, StoredAuthKey};

/// `[sms_auth]`: SMS authentication at this node's SMS center.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsAuthConfig {
    /// Tag every SMS-DELIVER (false only to measure what tagging costs).
    pub enabled: bool,
    /// How long a retired key stays accepted (and kept) after the next one is activated.
    pub grace_s: u64,
    /// Counters reserved per database write.
    pub counter_block: u32,
}

impl Default for SmsAuthConfig {
    fn default() -> SmsAuthConfig {
        SmsAuthConfig { enabled: true, grace_s: 7 * 86_400, counter_block: 1000 }
    }
}

impl SmsAuthConfig {
    pub fn grace_ms(&self) -> Millis {
        self.grace_s.saturating_mul(1000).min(i64::MAX as u64) as i64
    }
}

/// A key to write into a SIM.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedKey {
    pub imsi: String,
    pub version: u8,
    pub key: [u8; KEY_LEN],
    /// How long the SIM goes on accepting the key before this one, once it holds this one.
    pub previous_accepted_for_ms: Millis,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey").field("imsi", &self.imsi).field("version", &self.version).finish_non_exhaustive()
    }
}

/// The context a SIM's key is sealed for: a sealed key copied to another SIM's or version's
/// row does not open.
fn context(imsi: &str, version: u8) -> Vec<u8> {
    format!("sms-auth-key:{imsi}:{version}").into_bytes()
}

/// Issues the next key version of the SIM `imsi`, stored sealed and not yet active: the key
/// to write into the SIM. Activate it with [`activate_key`] once the SIM confirms.
pub async fn issue_key(
    store: &OperatorStore,
    sealer: &Sealer,
    config: &SmsAuthConfig,
    imsi: &str,
    now: Millis,
) -> Result<IssuedKey, OperatorError> {
    let newest = store.sms_auth_keys(imsi, now).await?.first().map_or(0, |k| k.version);
    let version = newest
        .checked_add(1)
        .ok_or_else(|| OperatorError::Config(format!("SIM {imsi} has used all 255 key versions")))?;
    insert(store, sealer, config, imsi, version, now, None)
        .await?
        .ok_or_else(|| OperatorError::Config(format!("key version {version} of SIM {imsi} was issued meanwhile")))
}

/// Records a SIM the operator issues (its IMSI, number and attach key `k_sim`) and gives it its
/// first SMS-authentication key: the key to write into the SIM, unless it had one already.
pub async fn issue_sim(
    store: &OperatorStore,
    sealer: &Sealer,
    config: &SmsAuthConfig,
    imsi: &str,
    msisdn: &str,
    k_sim: &[u8],
    now: Millis,
) -> Result<Option<IssuedKey>, OperatorError> {
    store.upsert_sim(imsi, msisdn, k_sim).await?;
    provision_sim_key(store, sealer, config, imsi, now).await
}

/// Gives the SIM `imsi` its first key, active at once, if it has none; the key, if it was
/// made. Called where the node issues a SIM.
pub async fn provision_sim_key(
    store: &OperatorStore,
    sealer: &Sealer,
    config: &SmsAuthConfig,
    imsi: &str,
    now: Millis,
) -> Result<Option<IssuedKey>, OperatorError> {
    if !store.sms_auth_keys(imsi, now).await?.is_empty() {
        return Ok(None);
    }
    insert(store, sealer, config, imsi, 1, now, Some(now)).await
}

async fn insert(
    store: &OperatorStore,
    sealer: &Sealer,
    config: &SmsAuthConfig,
    imsi: &str,
    version: u8,
    now: Millis,
    activated_at: Option<Millis>,
) -> Result<Option<IssuedKey>, OperatorError> {
    let key: [u8; KEY_LEN] = rand::random();
    let sealed = sealer.seal(&context(imsi, version), &key);
    if !store.insert_sms_auth_key(imsi, version, &sealed, now, activated_at).await? {
        return Ok(None);
    }
    Ok(Some(IssuedKey { imsi: imsi.to_owned(), version, key, previous_accepted_for_ms: config.grace_ms() }))
}

/// What activating key `version` of the SIM `imsi` at `now` takes: the keys before it are
/// retired after the grace period.
pub fn activation(config: &SmsAuthConfig, imsi: &str, version: u8, now: Millis) -> Activation {
    Activation { imsi: imsi.to_owned(), version, retire_at: now.saturating_add(config.grace_ms()) }
}

/// Activates key `version` of the SIM `imsi` (the SIM holds it now) and retires the ones
/// before it after the grace period. False if there is no such key.
pub async fn activate_key(
    store: &OperatorStore,
    config: &SmsAuthConfig,
    imsi: &str,
    version: u8,
    now: Millis,
) -> Result<bool, OperatorError> {
    store.activate_sms_auth_key(&activation(config, imsi, version, now), now).await
}

/// Key `version` of the SIM `imsi`, opened: what the OTA server writes into the SIM. `None`
/// if the SIM has no such key (any more).
pub async fn issued_key(
    store: &OperatorStore,
    sealer: &Sealer,
    config: &SmsAuthConfig,
    imsi: &str,
    version: u8,
    now: Millis,
) -> Result<Option<IssuedKey>, OperatorError> {
    let keys = store.sms_auth_keys(imsi, now).await?;
    let Some(k) = keys.iter().find(|k| k.version == version) else { return Ok(None) };
    Ok(Some(IssuedKey {
        imsi: imsi.to_owned(),
        version,
        key: open(sealer, imsi, k)?,
        previous_accepted_for_ms: config.grace_ms(),
    }))
}

/// The key of `stored`, a key of the SIM `imsi`, out of its seal.
fn open(sealer: &Sealer, imsi: &str, stored: &StoredAuthKey) -> Result<[u8; KEY_LEN], OperatorError> {
    let corrupt =
        |e: String| OperatorError::Corrupt(format!("SMS authentication key {} of {imsi}: {e}", stored.version));
    let key = sealer.open(&context(imsi, stored.version), &stored.sealed).map_err(|e| corrupt(e.to_string()))?;
    key.as_slice().try_into().map_err(|_| corrupt(format!("{} octets", key.len())))
}

/// The active key the SIM `imsi` is tagged with: the newest activated one.
async fn active_key(
    store: &OperatorStore,
    sealer: &Sealer,
    imsi: &str,
    now: Millis,
) -> Result<Option<SmsAuthKey>, OperatorError> {
    let keys = store.sms_auth_keys(imsi, now).await?;
    let Some(k) = keys.into_iter().find(|k| k.activated_at.is_some() && k.retired_at.is_none()) else {
        return Ok(None);
    };
    let key = zeroize::Zeroizing::new(open(sealer, imsi, &k)?);
    SmsAuthKey::new(k.version, key.as_slice())
        .map(Some)
        .map_err(|e| OperatorError::Corrupt(format!("SMS authentication key of {imsi}: {e}")))
}

/// A SIM's tagging state: its active key, and the counters reserved and not yet used.
struct SimState {
    key: Option<SmsAuthKey>,
    /// The next counter to use; `end` is the first one not reserved.
    next: u32,
    end: u32,
}

/// The SMS center's tagger: each SIM's active key and reserved counters, loaded at the
/// SIM's attach.
pub struct Authenticator {
    config: SmsAuthConfig,
    sims: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<SimState>>>>>,
}

impl Authenticator {
    pub fn new(config: SmsAuthConfig) -> Authenticator {
        Authenticator { config, sims: Mutex::new(HashMap::new()) }
    }

    pub fn config(&self) -> &SmsAuthConfig {
        &self.config
    }

    fn sim(&self, imsi: &str) -> Arc<tokio::sync::Mutex<Option<SimState>>> {
        let mut sims = self.sims.lock().unwrap_or_else(|e| e.into_inner());
        sims.entry(imsi.to_owned()).or_default().clone()
    }

    /// Reads the SIM's active key again before its next SMS (at attach, and when a key was
    /// activated). Its counters go on from where they are.
    pub async fn reload(&self, imsi: &str) {
        // The counters left in the block are skipped, never reused.
        *self.sim(imsi).lock().await = None;
    }

    /// Tags `messages`, the SMS-DELIVERs of one message (or a status report) to the SIM
    /// `imsi` serving `msisdn`, each with the next counter. A SIM without a key gets them
    /// untagged (and its handset, which has no key either, cannot tell them from forgeries).
    /// An error leaves them untagged too; the caller does not send them.
    pub async fn tag(
        &self,
        store: &OperatorStore,
        sealer: &Sealer,
        imsi: &str,
        msisdn: &str,
        messages: &mut [impl MtMessage],
        now: Millis,
    ) -> Result<(), OperatorError> {
        if !self.config.enabled {
            return Ok(());
        }
        let sim = self.sim(imsi);
        let mut guard = sim.lock().await;
        if guard.is_none() {
            let key = active_key(store, sealer, imsi, now).await?;
            if key.is_none() {
                tracing::warn!(imsi, "no SMS authentication key: SMS-DELIVERs go untagged");
            }
            *guard = Some(SimState { key, next: 0, end: 0 });
        }
        let Some(state) = guard.as_mut() else { return Ok(()) };
        let Some(key) = state.key.clone() else { return Ok(()) };
        for m in messages {
            if state.next >= state.end {
                let block = self.config.counter_block.max(1);
                state.next = store.reserve_sms_auth_counters(imsi, block).await?;
                state.end = state.next.saturating_add(block);
            }
            key.tag(m, msisdn, state.next);
            state.next += 1;
        }
        Ok(())
    }
}
