//! The OTA server (F7): writes subscribers' cards over the air with secured packets of ETSI
//! TS 102 225 / 3GPP TS 31.115, sent as SMS-PP data download through the node's own SMS
//! center, and collects the cards' proofs of receipt (PoR).
//!
//! A job ([`crate::store::ota`]) names a card and what to write: the number (EF_MSISDN), the
//! service provider name (EF_SPN), the SMS center address (EF_SMSP) and the product keys (the
//! card's K_sim and a new SMS-authentication key, in the product's DF). Jobs come from account
//! opening ([`crate::account_opening`]) and from completed port-ins ([`port_in`]).
//!
//! The SMS-authentication key is the SMS center's ([`crate::sms_center::authentication`]), the
//! one source of truth for what a SIM holds: a job's first attempt issues the SIM's next key
//! version (issued, not active) and records the version on the job, so that every attempt
//! writes the same key; the job's successful proof of receipt activates it, in the transaction
//! that ends the job, and the SMS center tags with it from then on, the key before it accepted
//! for `[sms_auth] grace_s` more. A job that fails activates nothing: the SIM's key stays.
//!
//! Each attempt:
//! 1. reserves the card's next counter and records the attempt in one transaction, committed
//!    before anything is built, so a counter never goes out twice, even after `kill -9`;
//! 2. builds the script of APDUs and the command packet ([`script`]: AES-CBC ciphering with KIc,
//!    AES-CMAC with KID, counter "higher than the card's", a PoR asked for, checksummed and
//!    ciphered, by SMS-SUBMIT);
//! 3. submits it to the SMS center as a message from the OTA server's address
//!    (`[ota] address`) with TP-PID 0x7F, DCS 0xF6 (class 2, 8-bit) and the command packet
//!    identifier in the user data header, one message per SMS when it is longer than one;
//!    the SMS center stores and delivers it like any other message.
//!
//! The card answers with an SMS-SUBMIT to the OTA server's address, which the air interface
//! hands here ([`Ota::receive_por`]): it is checked with the card's keys, matched to the job by
//! its counter, and ends the job (`done` when the PoR is OK and every command of the script
//! executed with 90 00). A job without its PoR in time is tried again with a fresh counter,
//! with doubling back-off, up to `[ota] max_attempts`; a PoR whose status no retry can change
//! (unknown TAR, insufficient security level, a script that failed) fails it at once.
//!
//! The keys are kept sealed ([`crate::sealing`], contexts in [`stock`]; the SMS-authentication
//! keys by the SMS center) and opened only to build or check a packet.

pub mod handset;
pub mod http;
pub(crate) mod metrics;
pub mod script;
pub mod stock;

use std::time::Duration;

use numport_core::{Msisdn, OperatorName};
use serde::{Deserialize, Serialize};
use sms::tpdu::SmsSubmit;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::sealing::Sealer;
use crate::sms_center::Submission;
use crate::sms_center::authentication::{self, IssuedKey};
use crate::store::accounts::SimCard;
use crate::store::ota::{NewOtaJob, OtaJob};
use crate::{Node, OperatorError};

/// The `[ota]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtaConfig {
    /// The OTA server's address: the originator of its packets, where the cards send their
    /// proofs of receipt (digits, a short code or an E.164 number).
    pub address: String,
    /// The toolkit application reference of the card's remote file management (6 hex digits).
    pub tar: String,
    /// The service provider name written to cards (at most 16 characters of the GSM 7-bit
    /// alphabet); empty: the operator's name.
    pub spn: String,
    /// The SMS center address written to cards' EF_SMSP (E.164, `+` and digits); empty: no
    /// job can be made.
    pub sms_center_address: String,
    /// Attempts of a job before it fails.
    pub max_attempts: u32,
    /// How long an attempt waits for its PoR before the next; doubles with each attempt.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for OtaConfig {
    fn default() -> Self {
        OtaConfig {
            address: "1998".into(),
            tar: "B00010".into(),
            spn: String::new(),
            sms_center_address: String::new(),
            max_attempts: 8,
            retry_initial_ms: 10_000,
            retry_max_ms: 300_000,
        }
    }
}

impl OtaConfig {
    /// The service provider name cards get.
    pub fn spn(&self, operator: &OperatorName) -> String {
        if self.spn.trim().is_empty() { operator.to_string() } else { self.spn.trim().to_owned() }
    }

    /// The OTA server's address, checked: 1 to 15 digits.
    pub fn address(&self) -> Result<&str, OperatorError> {
        let a = self.address.trim().trim_start_matches('+');
        if (1..=15).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_digit()) {
            Ok(a)
        } else {
            Err(OperatorError::Config(format!("[ota] address {:?} is no number", self.address)))
        }
    }

    pub fn tar(&self) -> Result<sim::packet::Tar, OperatorError> {
        self.tar.parse().map_err(|_| OperatorError::Config(format!("[ota] tar {:?}: 6 hex digits", self.tar)))
    }

    /// The wait for the PoR of attempt `attempt` (1-based).
    pub fn retry_after(&self, attempt: i64) -> u64 {
        let doubled = self.retry_initial_ms.saturating_mul(1u64 << (attempt - 1).clamp(0, 30));
        doubled.min(self.retry_max_ms.max(self.retry_initial_ms))
    }
}

/// The OTA server's shared state.
#[derive(Default)]
pub struct Ota {
    /// Woken when a job is queued, so it leaves at once rather than at the next poll.
    wake: Notify,
    pub(crate) metrics: metrics::OtaMetrics,
}

/// How often the worker looks for due jobs when nothing wakes it.
const POLL: Duration = Duration::from_millis(500);
/// Jobs one pass takes at most.
const BATCH: i64 = 256;

impl Ota {
    /// Tells the worker a job was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

impl Node {
    /// The node's OTA server.
    pub fn ota(&self) -> &Ota {
        &self.inner.ota
    }
}

/// A card's keys, opened: what building a packet for it and checking its PoR take.
pub struct OpenedCard {
    pub k_sim: zeroize::Zeroizing<Vec<u8>>,
    pub keys: sim::packet::OtaKeys,
    pub kic_index: u8,
    pub kid_index: u8,
}

/// Opens the keys of `card`.
pub(crate) fn open_card(sealer: &Sealer, card: &SimCard) -> Result<OpenedCard, OperatorError> {
    let open = |ctx: stock::Context, sealed: &str| {
        sealer
            .open(ctx.context(&card.iccid).as_bytes(), sealed)
            .map_err(|e| OperatorError::Corrupt(format!("key of card {}: {e}", card.iccid)))
    };
    let algorithm = stock::parse_algorithm(&card.algorithm)
        .ok_or_else(|| OperatorError::Corrupt(format!("algorithm {:?} of card {}", card.algorithm, card.iccid)))?;
    let (kic, kid) = (open(stock::KIC_CONTEXT, &card.kic_sealed)?, open(stock::KID_CONTEXT, &card.kid_sealed)?);
    let key = |k: &[u8]| {
        sim::Key::new(algorithm, k).map_err(|e| OperatorError::Corrupt(format!("key of card {}: {e}", card.iccid)))
    };
    Ok(OpenedCard {
        k_sim: open(stock::K_SIM_CONTEXT, &card.k_sim_sealed)?,
        keys: sim::packet::OtaKeys { kic: key(&kic)?, kid: key(&kid)? },
        kic_index: card.kic_key_index,
        kid_index: card.kid_key_index,
    })
}

/// Runs the OTA server until `shutdown`: every due job gets its next attempt.
pub(crate) async fn run(node: Node, shutdown: CancellationToken) {
    metrics::register(&node);
    if let Err(e) = crate::account_opening::queue_unprovisioned(&node).await {
        tracing::warn!(error = %e, "accounts without provisioning order not queued");
    }
    if let Err(e) = queue_lost_port_ins(&node).await {
        tracing::warn!(error = %e, "port-ins without OTA job not queued");
    }
    let mut refreshed = std::time::Instant::now() - POLL;
    loop {
        if let Err(e) = pass(&node).await {
            tracing::warn!(error = %e, "OTA pass failed");
        }
        if refreshed.elapsed() >= POLL {
            metrics::refresh(&node).await;
            refreshed = std::time::Instant::now();
        }
        let wait = match node.store().next_ota_attempt().await {
            Ok(Some(at)) => Duration::from_millis((at - node.now()).clamp(1, POLL.as_millis() as i64) as u64),
            _ => POLL,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = node.ota().wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One pass: the next attempt of every job due.
async fn pass(node: &Node) -> Result<(), OperatorError> {
    let now = node.now();
    let due = node.store().due_ota_jobs(now, BATCH).await?;
    let attempts = due.into_iter().map(|job| {
        let node = node.clone();
        async move {
            let id = job.id;
            if let Err(e) = attempt(&node, job).await {
                tracing::warn!(job = id, error = %e, "OTA attempt failed");
            }
        }
    });
    futures::future::join_all(attempts).await;
    Ok(())
}

/// The next attempt of `job`, or its end when it has had them all.
async fn attempt(node: &Node, job: OtaJob) -> Result<(), OperatorError> {
    let now = node.now();
    let config = &node.config().ota;
    if job.attempts >= i64::from(config.max_attempts) {
        let reason = match job.por_status {
            Some(s) => format!(
                "no successful proof of receipt after {} attempts (last: {})",
                job.attempts,
                sim::packet::PorStatus::from_code(s as u8)
            ),
            None => format!("no proof of receipt after {} attempts", job.attempts),
        };
        return finish(node, &job, "failed", None, &reason).await;
    }
    let sealer = node.sealer()?;
    let Some(card) = node.store().sim_card(&job.iccid).await? else {
        return finish(node, &job, "failed", None, "the card is not in the stock").await;
    };
    let opened = open_card(sealer, &card)?;
    let Some(sms_auth) = sms_auth_key(node, &job, &card.imsi).await? else {
        let reason = "the SIM's SMS-authentication key of this job was superseded by a newer one";
        return finish(node, &job, "failed", None, reason).await;
    };
    let writes = script::CardWrites {
        msisdn: format!("+{}", job.msisdn),
        spn: job.spn.clone(),
        sms_center: job.smsc_address.clone(),
        k_sim: opened.k_sim.to_vec(),
        sms_auth_version: sms_auth.version,
        sms_auth_key: zeroize::Zeroizing::new(sms_auth.key),
    };
    let script = match writes.script() {
        Ok(s) => s,
        Err(e) => return finish(node, &job, "failed", None, &format!("nothing to write: {e}")).await,
    };
    // The counter is durable before the packet exists.
    let retry_at = now + config.retry_after(job.attempts + 1) as i64;
    let Some(reserved) = node.store().reserve_ota_attempt(job.id, &job.iccid, now, retry_at).await? else {
        return Ok(());
    };
    let tar = config.tar()?;
    let packet = script::command_packet(&opened, tar, reserved.counter as u64, &script)
        .map_err(|e| OperatorError::Config(format!("command packet of job {}: {e}", job.id)))?;
    let from = config.address()?.to_owned();
    let expires = retry_at.max(now + 1000);
    let parts = script::command_sms(&packet, reserved.counter as u16)
        .map_err(|e| OperatorError::Config(format!("SMS of job {}: {e}", job.id)))?;
    for payload in parts {
        let submission = Submission {
            system_id: "ota".into(),
            source_addr: from.clone(),
            source_ton: sms::address::TON_NATIONAL,
            destination: job.msisdn.clone(),
            esm_class: crate::sms_center::long_message::UDHI,
            protocol_id: sim::sms_pp::PID_SIM_DATA_DOWNLOAD,
            data_coding: sms::tpdu::DataCoding::SIM_DATA_DOWNLOAD.0,
            registered_delivery: 0,
            payload,
            validity: Some(expires),
            schedule: None,
            origin_ref: None,
        };
        if let Err(refusal) = crate::sms_center::accept(node, submission, now).await {
            tracing::warn!(job = job.id, ?refusal, "OTA message refused by the SMS center; retried later");
            let reason = format!("SMS center refused the packet: {refusal:?}");
            return node.store().record_ota_status_reason(job.id, &reason, now).await;
        }
    }
    node.ota().metrics.sent.inc();
    tracing::info!(
        job = job.id,
        msisdn = job.msisdn,
        counter = reserved.counter,
        attempt = reserved.attempt,
        "OTA packet sent"
    );
    Ok(())
}

/// The SMS-authentication key `job` writes into the SIM `imsi`: the one issued for it, or at
/// its first attempt a new one, issued now ([`Node::issue_sms_auth_key`]) and recorded on the
/// job. `None` if the job's key is gone (a newer one was activated since).
async fn sms_auth_key(node: &Node, job: &OtaJob, imsi: &str) -> Result<Option<IssuedKey>, OperatorError> {
    if let Some(version) = job.sms_auth_version {
        let config = &node.config().sms_auth;
        return authentication::issued_key(node.store(), node.sealer()?, config, imsi, version, node.now()).await;
    }
    let issued = node.issue_sms_auth_key(imsi).await?;
    if !node.store().set_ota_job_sms_auth_version(job.id, issued.version, node.now()).await? {
        // Another attempt recorded its key first; the next pass writes that one.
        return Err(OperatorError::Config(format!("job {} had its key issued meanwhile", job.id)));
    }
    tracing::info!(job = job.id, imsi, version = issued.version, "SMS-authentication key issued for an OTA job");
    Ok(Some(issued))
}

async fn finish(node: &Node, job: &OtaJob, state: &str, status: Option<u8>, reason: &str) -> Result<(), OperatorError> {
    let reason = (state != "done").then_some(reason);
    if node.store().finish_ota_job(job.id, state, status, reason, None, node.now()).await? {
        tracing::info!(job = job.id, msisdn = job.msisdn, state, reason, "OTA job ended");
    }
    Ok(())
}

/// Ends `job`, whose card confirmed the whole script, and activates the SMS-authentication key
/// it wrote into the SIM `imsi`, in one transaction: the SMS center tags with it from the next
/// SMS-DELIVER on.
async fn written(node: &Node, job: &OtaJob, imsi: &str, status: Option<u8>) -> Result<(), OperatorError> {
    let now = node.now();
    let activation = job.sms_auth_version.map(|v| authentication::activation(&node.config().sms_auth, imsi, v, now));
    if node.store().finish_ota_job(job.id, "done", status, None, activation.as_ref(), now).await? {
        node.sms_auth().reload(imsi).await;
        tracing::info!(job = job.id, msisdn = job.msisdn, version = job.sms_auth_version, "OTA job done; key active");
    }
    Ok(())
}

/// What a PoR says about its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PorOutcome {
    /// The card executed the whole script.
    Written,
    /// A status a later attempt may not meet (a counter the card had not yet seen, a
    /// ciphering error): the job goes on.
    Retry(String),
    /// A status no retry changes: the job fails.
    Failed(String),
}

/// What the PoR with `status` and script result `result` means.
pub fn judge(status: sim::packet::PorStatus, result: Option<&sim::apdu::ScriptResult>, commands: usize) -> PorOutcome {
    use sim::packet::PorStatus as S;
    match status {
        S::Ok => match result {
            Some(r) if r.last_sw == sim::apdu::sw::OK && usize::from(r.executed) == commands => PorOutcome::Written,
            Some(r) => PorOutcome::Failed(format!(
                "the card stopped at command {} of {commands} with status word {:04X}",
                r.executed, r.last_sw
            )),
            None => PorOutcome::Failed("the proof of receipt carries no script result".into()),
        },
        S::CounterLow | S::CounterHigh | S::CipheringError | S::SecurityError | S::MoreTime | S::InsufficientMemory => {
            PorOutcome::Retry(format!("card answered {status}"))
        }
        other => PorOutcome::Failed(format!("card answered {other}")),
    }
}

impl Ota {
    /// Takes an SMS-SUBMIT the terminal `msisdn` sent to the OTA server's address: the proof
    /// of receipt of a packet to its card. The `SubmitAck` cause to answer with.
    pub(crate) async fn receive_por(&self, node: &Node, msisdn: &str, submit: &SmsSubmit) -> u8 {
        match self.por(node, msisdn, submit).await {
            Ok(()) => sms::air::CAUSE_OK,
            Err(e) => {
                tracing::info!(msisdn, error = %e, "proof of receipt refused");
                crate::air::CAUSE_SEMANTICALLY_INCORRECT_MESSAGE
            }
        }
    }

    async fn por(&self, node: &Node, msisdn: &str, submit: &SmsSubmit) -> Result<(), OperatorError> {
        let bad = |m: String| OperatorError::Config(m);
        let packet = script::response_packet_bytes(submit).map_err(bad)?;
        let Some((job, card)) = node.store().ota_job_awaiting(msisdn).await? else {
            return Err(bad("no OTA job waits for a proof of receipt from this number".into()));
        };
        let opened = open_card(node.sealer()?, &card)?;
        let por = match script::read_por(&opened, &packet) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.por("unverifiable");
                return Err(bad(format!("job {}: {e}", job.id)));
            }
        };
        self.metrics.por(status_label(por.status));
        let (from, to) = (job.counter_from.unwrap_or(i64::MAX), job.counter.unwrap_or(-1));
        if !(from..=to).contains(&(por.counter as i64)) {
            return Err(bad(format!(
                "job {}: {} for counter {}, none of its packets'",
                job.id, por.status, por.counter
            )));
        }
        let result = sim::apdu::ScriptResult::decode(&por.additional_data);
        let now = node.now();
        let status = Some(por.status.code());
        // Only a checksummed PoR ends a job: an unauthenticated error status may be anyone's.
        let outcome = match judge(por.status, result.as_ref(), script::COMMANDS) {
            PorOutcome::Failed(reason) if !por.authenticated => PorOutcome::Retry(reason),
            outcome => outcome,
        };
        match outcome {
            PorOutcome::Written => written(node, &job, &card.imsi, status).await?,
            PorOutcome::Failed(reason) => finish(node, &job, "failed", status, &reason).await?,
            PorOutcome::Retry(reason) => {
                node.store().record_ota_status(job.id, por.status.code(), &reason, now).await?
            }
        }
        Ok(())
    }
}

/// The metrics label of a PoR status.
fn status_label(s: sim::packet::PorStatus) -> &'static str {
    use sim::packet::PorStatus as S;
    match s {
        S::Ok => "ok",
        S::ChecksumFailed => "checksum_failed",
        S::CounterLow => "counter_low",
        S::CounterHigh => "counter_high",
        S::CounterBlocked => "counter_blocked",
        S::CipheringError => "ciphering_error",
        S::SecurityError => "security_error",
        S::InsufficientMemory => "insufficient_memory",
        S::MoreTime => "more_time",
        S::TarUnknown => "tar_unknown",
        S::InsufficientSecurityLevel => "insufficient_security_level",
        _ => "other",
    }
}

/// Queues the OTA jobs of port-ins recorded without one (run at start).
async fn queue_lost_port_ins(node: &Node) -> Result<(), OperatorError> {
    for (msisdn, message_id) in node.store().port_ins_without_ota_job().await? {
        match msisdn.parse() {
            Ok(m) => port_in(node, &m, Some(message_id)).await?,
            Err(e) => tracing::warn!(msisdn, error = %e, "port event with an invalid number"),
        }
    }
    Ok(())
}

/// Queues the job that re-writes the card of `msisdn`, ported in to this node: its SPN, SMS
/// center address and keys (the SIM's next SMS-authentication key, issued by the job's first
/// attempt). Nothing if the node holds no card for the number (it did not issue one with OTA
/// keys).
pub(crate) async fn port_in(node: &Node, msisdn: &Msisdn, message_id: Option<i64>) -> Result<(), OperatorError> {
    let Some(card) = node.store().sim_card_of(msisdn.as_str()).await? else {
        tracing::info!(%msisdn, "ported-in number has no card with OTA keys here; no OTA job");
        return Ok(());
    };
    let config = &node.config().ota;
    let source = match message_id {
        Some(id) => format!("port_in:message:{id}"),
        None => format!("port_in:{msisdn}:{}", node.now()),
    };
    let job = NewOtaJob {
        iccid: card.iccid.clone(),
        msisdn: msisdn.to_string(),
        kind: "port_in",
        source,
        spn: config.spn(node.name()),
        smsc_address: config.sms_center_address.clone(),
        created_at: node.now(),
    };
    if let Some(id) = node.store().insert_ota_job(&job).await? {
        tracing::info!(%msisdn, job = id, "OTA job queued for a ported-in number");
        node.ota().wake();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::apdu::ScriptResult;
    use sim::packet::PorStatus;

    #[test]
    fn waits_double_up_to_the_maximum() {
        let c = OtaConfig { retry_initial_ms: 1_000, retry_max_ms: 5_000, ..OtaConfig::default() };
        assert_eq!((1..=5).map(|a| c.retry_after(a)).collect::<Vec<_>>(), [1_000, 2_000, 4_000, 5_000, 5_000]);
        assert_eq!(c.retry_after(80), 5_000);
    }

    #[test]
    fn a_por_ends_a_job_only_when_it_says_so() {
        let ok = ScriptResult { executed: 14, last_sw: 0x9000, last_data: vec![] };
        assert_eq!(judge(PorStatus::Ok, Some(&ok), 14), PorOutcome::Written);
        let stopped = ScriptResult { executed: 3, last_sw: 0x6A82, last_data: vec![] };
        assert!(matches!(judge(PorStatus::Ok, Some(&stopped), 14), PorOutcome::Failed(r) if r.contains("6A82")));
        assert!(matches!(judge(PorStatus::Ok, None, 14), PorOutcome::Failed(_)));
        assert!(matches!(judge(PorStatus::CounterLow, None, 14), PorOutcome::Retry(_)));
        assert!(matches!(judge(PorStatus::TarUnknown, None, 14), PorOutcome::Failed(_)));
        assert!(matches!(judge(PorStatus::InsufficientSecurityLevel, None, 14), PorOutcome::Failed(_)));
    }

    #[test]
    fn the_address_and_tar_are_checked() {
        let c = OtaConfig::default();
        assert_eq!(c.address().unwrap(), "1998");
        assert_eq!(c.tar().unwrap(), sim::packet::Tar::RFM_SIM);
        assert!(OtaConfig { address: "OTA".into(), ..c.clone() }.address().is_err());
        assert!(OtaConfig { tar: "B0001".into(), ..c }.tar().is_err());
    }
}
