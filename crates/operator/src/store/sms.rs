//! The SMS center's tables: ESME accounts, and every acknowledged short message.

use numport_core::Millis;
use sqlx::Row;

use super::OperatorStore;
use crate::OperatorError;

/// A short message to record, as accepted from an ESME and routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSms {
    pub system_id: String,
    pub source_addr: String,
    pub source_ton: u8,
    pub destination: String,
    pub serving_operator: String,
    /// `local` or `interconnect`.
    pub route: &'static str,
    pub esm_class: u8,
    pub data_coding: u8,
    pub registered_delivery: u8,
    pub payload: Vec<u8>,
    pub submitted_at: Millis,
}

/// A recorded short message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSms {
    pub id: i64,
    pub system_id: String,
    pub source_addr: String,
    pub source_ton: u8,
    pub destination: String,
    pub serving_operator: String,
    pub route: String,
    pub data_coding: u8,
    pub payload: Vec<u8>,
    pub state: String,
    pub submitted_at: Millis,
}

const SMS_COLUMNS: &str = "id, system_id, source_addr, source_ton, destination, serving_operator, route, \
     data_coding, payload, state, submitted_at";

fn sms_row(r: &sqlx::any::AnyRow) -> Result<StoredSms, OperatorError> {
    Ok(StoredSms {
        id: r.try_get("id")?,
        system_id: r.try_get("system_id")?,
        source_addr: r.try_get("source_addr")?,
        source_ton: r.try_get::<i64, _>("source_ton")? as u8,
        destination: r.try_get("destination")?,
        serving_operator: r.try_get("serving_operator")?,
        route: r.try_get("route")?,
        data_coding: r.try_get::<i64, _>("data_coding")? as u8,
        payload: hex::decode(r.try_get::<&str, _>("payload")?)
            .map_err(|e| OperatorError::Corrupt(format!("sms payload: {e}")))?,
        state: r.try_get("state")?,
        submitted_at: r.try_get("submitted_at")?,
    })
}

impl OperatorStore {
    /// Adds or replaces an ESME account.
    pub async fn upsert_esme(&self, account: &smsc::EsmeAccount, now: Millis) -> Result<(), OperatorError> {
        sqlx::query(
            "INSERT INTO esme_accounts (system_id, password_hash, max_submits_per_s, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (system_id) DO UPDATE SET \
             password_hash = excluded.password_hash, max_submits_per_s = excluded.max_submits_per_s",
        )
        .bind(&account.system_id)
        .bind(&account.password_hash)
        .bind(account.max_submits_per_s as i64)
        .bind(now)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    pub async fn esmes(&self) -> Result<Vec<smsc::EsmeAccount>, OperatorError> {
        let rows = sqlx::query("SELECT system_id, password_hash, max_submits_per_s FROM esme_accounts")
            .fetch_all(&mut *self.conn().await?)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(smsc::EsmeAccount {
                    system_id: r.try_get("system_id")?,
                    password_hash: r.try_get("password_hash")?,
                    max_submits_per_s: r.try_get::<i64, _>("max_submits_per_s")?.clamp(1, u32::MAX as i64) as u32,
                })
            })
            .collect()
    }

    /// Records an accepted message (state `queued`); returns its id, the SMPP message id.
    pub async fn insert_sms(&self, m: &NewSms) -> Result<i64, OperatorError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sms_messages (system_id, source_addr, source_ton, destination, serving_operator, route, \
             esm_class, data_coding, registered_delivery, payload, state, submitted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', $11) RETURNING id",
        )
        .bind(&m.system_id)
        .bind(&m.source_addr)
        .bind(m.source_ton as i64)
        .bind(&m.destination)
        .bind(&m.serving_operator)
        .bind(m.route)
        .bind(m.esm_class as i64)
        .bind(m.data_coding as i64)
        .bind(m.registered_delivery as i64)
        .bind(hex::encode(&m.payload))
        .bind(m.submitted_at)
        .fetch_one(&mut *self.conn().await?)
        .await?;
        Ok(id)
    }

    pub async fn sms(&self, id: i64) -> Result<Option<StoredSms>, OperatorError> {
        let row = sqlx::query(&format!("SELECT {SMS_COLUMNS} FROM sms_messages WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(sms_row).transpose()
    }

    /// Messages queued for local delivery to `msisdn`, oldest first.
    pub async fn queued_for(&self, msisdn: &str, limit: i64) -> Result<Vec<StoredSms>, OperatorError> {
        let rows = sqlx::query(&format!(
            "SELECT {SMS_COLUMNS} FROM sms_messages WHERE destination = $1 AND route = 'local' AND state = 'queued' \
             ORDER BY id LIMIT $2"
        ))
        .bind(msisdn)
        .bind(limit)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(sms_row).collect()
    }

    /// Messages queued for another operator's SMS center, oldest first.
    pub async fn queued_interconnect(&self, limit: i64) -> Result<Vec<StoredSms>, OperatorError> {
        let rows = sqlx::query(&format!(
            "SELECT {SMS_COLUMNS} FROM sms_messages WHERE route = 'interconnect' AND state = 'queued' ORDER BY id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(sms_row).collect()
    }

    /// Moves a message from `queued` to `state`; false if it was no longer queued.
    pub async fn finish_sms(&self, id: i64, state: &str) -> Result<bool, OperatorError> {
        let r = sqlx::query("UPDATE sms_messages SET state = $1 WHERE id = $2 AND state = 'queued'")
            .bind(state)
            .bind(id)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Adds or replaces a SIM: its IMSI, the number it serves and its key.
    pub async fn upsert_sim(&self, imsi: &str, msisdn: &str, k_sim: &[u8]) -> Result<(), OperatorError> {
        sqlx::query(
            "INSERT INTO sims (imsi, msisdn, k_sim) VALUES ($1, $2, $3) \
             ON CONFLICT (imsi) DO UPDATE SET msisdn = excluded.msisdn, k_sim = excluded.k_sim",
        )
        .bind(imsi)
        .bind(msisdn)
        .bind(hex::encode(k_sim))
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    /// The number and key of a SIM.
    pub async fn sim(&self, imsi: &str) -> Result<Option<(String, Vec<u8>)>, OperatorError> {
        let row = sqlx::query("SELECT msisdn, k_sim FROM sims WHERE imsi = $1")
            .bind(imsi)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.map(|r| {
            let key = hex::decode(r.try_get::<&str, _>("k_sim")?)
                .map_err(|e| OperatorError::Corrupt(format!("k_sim: {e}")))?;
            Ok((r.try_get("msisdn")?, key))
        })
        .transpose()
    }
}
