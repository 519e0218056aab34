//! The OTA server's jobs (F7): one card to write each, the counters reserved for its packets,
//! and how it ended.
//!
//! A packet's counter is reserved in a transaction of its own, committed before the packet is
//! built and sent ([`OperatorStore::reserve_ota_attempt`]): the card's `ota_counter` only
//! grows, so no counter is used twice, not even after `kill -9`.

use numport_core::Millis;
use numport_db::sql::{self, Connection, Row};

use super::OperatorStore;
use super::accounts::{CARD_COLUMNS, SimCard, card_row};
use super::sms_auth::{Activation, activate_key};
use crate::OperatorError;

/// A job to write.
#[derive(Debug, Clone)]
pub struct NewOtaJob {
    pub iccid: String,
    pub msisdn: String,
    /// `account_opening` or `port_in`.
    pub kind: &'static str,
    /// What made it, once: `account:<id>`, `port_in:message:<id>`.
    pub source: String,
    pub spn: String,
    pub smsc_address: String,
    pub created_at: Millis,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtaJob {
    pub id: i64,
    pub iccid: String,
    pub msisdn: String,
    pub kind: String,
    pub source: Option<String>,
    /// `queued`, `sent` (waiting for the proof of receipt), `done` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub counter_from: Option<i64>,
    pub counter: Option<i64>,
    pub spn: String,
    pub smsc_address: String,
    /// The version of the SIM's SMS-authentication key the job writes
    /// ([`crate::sms_center::authentication`]); `None` until its first attempt issues it.
    pub sms_auth_version: Option<u8>,
    /// The status byte of the last proof of receipt (TS 102 225 §5.1.2), if one came.
    pub por_status: Option<i64>,
    pub reason: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

const JOB_COLUMNS: &str = "id, iccid, msisdn, kind, source, state, attempts, next_attempt_at, counter_from, counter, \
     spn, smsc_address, sms_auth_version, por_status, reason, created_at, updated_at";

fn job_row(r: &Row) -> Result<OtaJob, OperatorError> {
    Ok(OtaJob {
        id: r.try_get("id")?,
        iccid: r.try_get("iccid")?,
        msisdn: r.try_get("msisdn")?,
        kind: r.try_get("kind")?,
        source: r.try_get("source")?,
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        counter_from: r.try_get("counter_from")?,
        counter: r.try_get("counter")?,
        spn: r.try_get("spn")?,
        smsc_address: r.try_get("smsc_address")?,
        sms_auth_version: r
            .try_get::<Option<i64>, _>("sms_auth_version")?
            .map(|v| u8::try_from(v).map_err(|_| OperatorError::Corrupt(format!("SMS authentication key version {v}"))))
            .transpose()?,
        por_status: r.try_get("por_status")?,
        reason: r.try_get("reason")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Writes `job` in the caller's transaction; a second job from the same source is not
/// written. Its id, if written.
pub(crate) async fn insert_job(tx: &mut Connection, job: &NewOtaJob) -> Result<Option<i64>, OperatorError> {
    Ok(sql::query_scalar(
        "INSERT INTO ota_jobs (iccid, msisdn, kind, source, state, attempts, next_attempt_at, spn, smsc_address, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $5, $5) \
         ON CONFLICT (source) DO NOTHING RETURNING id",
    )
    .bind(&job.iccid)
    .bind(&job.msisdn)
    .bind(job.kind)
    .bind(&job.source)
    .bind(job.created_at)
    .bind(&job.spn)
    .bind(&job.smsc_address)
    .fetch_optional(tx)
    .await?)
}

/// A packet about to leave: its counter and attempt number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub counter: i64,
    pub attempt: i64,
}

impl OperatorStore {
    /// Queues `job`; `None` if its source made one before.
    pub async fn insert_ota_job(&self, job: &NewOtaJob) -> Result<Option<i64>, OperatorError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let id = insert_job(&mut tx, job).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn ota_job(&self, id: i64) -> Result<Option<OtaJob>, OperatorError> {
        let mut conn = self.conn().await?;
        let row = sql::query(&format!("SELECT {JOB_COLUMNS} FROM ota_jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut conn)
            .await?;
        row.as_ref().map(job_row).transpose()
    }

    pub async fn ota_job_by_source(&self, source: &str) -> Result<Option<OtaJob>, OperatorError> {
        let mut conn = self.conn().await?;
        let row = sql::query(&format!("SELECT {JOB_COLUMNS} FROM ota_jobs WHERE source = $1"))
            .bind(source)
            .fetch_optional(&mut conn)
            .await?;
        row.as_ref().map(job_row).transpose()
    }

    /// Jobs whose next attempt is due at `now` (queued, or sent without a proof of receipt in
    /// time), soonest first. A card has one job at a time: a later one waits until the one
    /// before has ended, so a PoR's counter names its job without doubt.
    pub async fn due_ota_jobs(&self, now: Millis, limit: i64) -> Result<Vec<OtaJob>, OperatorError> {
        let mut conn = self.conn().await?;
        let rows = sql::query(&format!(
            "SELECT {JOB_COLUMNS} FROM ota_jobs j WHERE state IN ('queued', 'sent') AND next_attempt_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM ota_jobs o WHERE o.iccid = j.iccid AND o.id < j.id \
             AND o.state IN ('queued', 'sent')) ORDER BY next_attempt_at, id LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(job_row).collect()
    }

    /// The earliest next attempt of an unfinished job.
    pub async fn next_ota_attempt(&self) -> Result<Option<Millis>, OperatorError> {
        let mut conn = self.conn().await?;
        Ok(sql::query_scalar("SELECT MIN(next_attempt_at) FROM ota_jobs WHERE state IN ('queued', 'sent')")
            .fetch_one(&mut conn)
            .await?)
    }

    /// Reserves the next counter of job `id`'s card and records the attempt, due again at
    /// `retry_at` unless its proof of receipt comes first; committed before this returns.
    /// `None` if the job finished meanwhile.
    pub async fn reserve_ota_attempt(
        &self,
        id: i64,
        iccid: &str,
        now: Millis,
        retry_at: Millis,
    ) -> Result<Option<Reserved>, OperatorError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let counter: i64 = sql::query_scalar(
            "UPDATE sim_cards SET ota_counter = ota_counter + 1, updated_at = $1 WHERE iccid = $2 RETURNING ota_counter",
        )
        .bind(now)
        .bind(iccid)
        .fetch_one(&mut tx)
        .await?;
        let attempt: Option<i64> = sql::query_scalar(
            "UPDATE ota_jobs SET state = 'sent', attempts = attempts + 1, counter = $1, \
             counter_from = COALESCE(counter_from, $1), next_attempt_at = $2, updated_at = $3 \
             WHERE id = $4 AND state IN ('queued', 'sent') RETURNING attempts",
        )
        .bind(counter)
        .bind(retry_at)
        .bind(now)
        .bind(id)
        .fetch_optional(&mut tx)
        .await?;
        let Some(attempt) = attempt else { return Ok(None) };
        tx.commit().await?;
        Ok(Some(Reserved { counter, attempt }))
    }

    /// The job waiting for a proof of receipt from `msisdn`'s card, with the card.
    pub async fn ota_job_awaiting(&self, msisdn: &str) -> Result<Option<(OtaJob, SimCard)>, OperatorError> {
        let mut conn = self.conn().await?;
        let row = sql::query(&format!(
            "SELECT {JOB_COLUMNS} FROM ota_jobs WHERE msisdn = $1 AND state = 'sent' ORDER BY id DESC LIMIT 1"
        ))
        .bind(msisdn)
        .fetch_optional(&mut conn)
        .await?;
        let Some(job) = row.as_ref().map(job_row).transpose()? else { return Ok(None) };
        let card = sql::query(&format!("SELECT {CARD_COLUMNS} FROM sim_cards WHERE iccid = $1"))
            .bind(&job.iccid)
            .fetch_one(&mut conn)
            .await?;
        Ok(Some((job, card_row(&card)?)))
    }

    /// Records the end of job `id` (`done` or `failed`), if it has not ended yet, and in the
    /// same transaction the activation of the SMS-authentication key its card confirmed
    /// holding. False if it had ended already.
    pub async fn finish_ota_job(
        &self,
        id: i64,
        state: &str,
        por_status: Option<u8>,
        reason: Option<&str>,
        activate: Option<&Activation>,
        now: Millis,
    ) -> Result<bool, OperatorError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let ended = sql::query(
            "UPDATE ota_jobs SET state = $1, por_status = COALESCE($2, por_status), reason = $3, updated_at = $4 \
             WHERE id = $5 AND state IN ('queued', 'sent')",
        )
        .bind(state)
        .bind(por_status.map(i64::from))
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(&mut tx)
        .await?;
        if ended.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(a) = activate
            && !activate_key(&mut tx, a, now).await?
        {
            tracing::warn!(job = id, imsi = a.imsi, version = a.version, "the key the card confirmed is not issued");
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records the version of the SMS-authentication key job `id` writes, unless one is
    /// recorded already; false then.
    pub async fn set_ota_job_sms_auth_version(&self, id: i64, version: u8, now: Millis) -> Result<bool, OperatorError> {
        let mut conn = self.conn().await?;
        let done = sql::query(
            "UPDATE ota_jobs SET sms_auth_version = $1, updated_at = $2 WHERE id = $3 AND sms_auth_version IS NULL",
        )
        .bind(i64::from(version))
        .bind(now)
        .bind(id)
        .execute(&mut conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a proof of receipt that ends no job (an error status the job retries on).
    pub async fn record_ota_status(
        &self,
        id: i64,
        por_status: u8,
        reason: &str,
        now: Millis,
    ) -> Result<(), OperatorError> {
        let mut conn = self.conn().await?;
        sql::query("UPDATE ota_jobs SET por_status = $1, reason = $2, updated_at = $3 WHERE id = $4")
            .bind(i64::from(por_status))
            .bind(reason)
            .bind(now)
            .bind(id)
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Records why an attempt of job `id` did not leave; it is tried again when due.
    pub async fn record_ota_status_reason(&self, id: i64, reason: &str, now: Millis) -> Result<(), OperatorError> {
        let mut conn = self.conn().await?;
        sql::query("UPDATE ota_jobs SET reason = $1, updated_at = $2 WHERE id = $3")
            .bind(reason)
            .bind(now)
            .bind(id)
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Queues failed job `id` again from its first attempt; false if it is not failed.
    pub async fn retry_ota_job(&self, id: i64, now: Millis) -> Result<bool, OperatorError> {
        let mut conn = self.conn().await?;
        let r = sql::query(
            "UPDATE ota_jobs SET state = 'queued', attempts = 0, next_attempt_at = $1, reason = NULL, updated_at = $1 \
             WHERE id = $2 AND state = 'failed'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut conn)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Port-ins this node recorded as recipient, for a number whose card it holds, without
    /// their OTA job (a crash between the port's transaction and the job's): number and
    /// message id.
    pub async fn port_ins_without_ota_job(&self) -> Result<Vec<(String, i64)>, OperatorError> {
        let mut conn = self.conn().await?;
        let rows = sql::query(
            "SELECT e.msisdn, e.message_id FROM port_events e \
             JOIN sims s ON s.msisdn = e.msisdn JOIN sim_cards c ON c.imsi = s.imsi \
             WHERE e.kind = 'port_in' AND e.message_id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM ota_jobs j WHERE j.source = 'port_in:message:' || e.message_id) \
             ORDER BY e.id",
        )
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("msisdn")?, r.try_get("message_id")?))).collect()
    }

    /// Jobs by state.
    pub async fn ota_job_counts(&self) -> Result<Vec<(String, i64)>, OperatorError> {
        let mut conn = self.conn().await?;
        let rows = sql::query("SELECT state, COUNT(*) AS n FROM ota_jobs GROUP BY state ORDER BY state")
            .fetch_all(&mut conn)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("state")?, r.try_get("n")?))).collect()
    }

    /// The most recent jobs, newest first.
    pub async fn recent_ota_jobs(&self, limit: i64) -> Result<Vec<OtaJob>, OperatorError> {
        let mut conn = self.conn().await?;
        let rows = sql::query(&format!("SELECT {JOB_COLUMNS} FROM ota_jobs ORDER BY id DESC LIMIT $1"))
            .bind(limit)
            .fetch_all(&mut conn)
            .await?;
        rows.iter().map(job_row).collect()
    }
}
