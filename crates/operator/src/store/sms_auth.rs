//! The SMS center's authentication keys and counters (F3): `sms_auth_keys` (each SIM's keys,
//! sealed, by version) and `sms_auth_counters` (the mark below which a SIM's counters may have
//! been used). The logic is in [`crate::sms_center::authentication`]; this is its SQL.

use numport_core::Millis;
use numport_db::sql::{self, Connection};

use super::OperatorStore;
use crate::OperatorError;

/// A key as stored: sealed ([`crate::sealing`], hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuthKey {
    pub version: u8,
    pub sealed: String,
    pub activated_at: Option<Millis>,
    pub retired_at: Option<Millis>,
}

/// A key the SIM holds now: to activate, and the keys before it to retire at `retire_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub imsi: String,
    pub version: u8,
    pub retire_at: Millis,
}

/// Activates key `a.version` of the SIM `a.imsi` at `now` in the caller's transaction: the
/// active keys before it are retired at `a.retire_at`, and those before it that were issued
/// and never activated (an OTA job that failed) are deleted, since no SIM confirmed holding
/// them. False if there is no such key.
pub(crate) async fn activate_key(tx: &mut Connection, a: &Activation, now: Millis) -> Result<bool, OperatorError> {
    let done = sql::query(
        "UPDATE sms_auth_keys SET activated_at = COALESCE(activated_at, $3), retired_at = NULL \
         WHERE imsi = $1 AND version = $2",
    )
    .bind(&a.imsi)
    .bind(i64::from(a.version))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sql::query(
        "UPDATE sms_auth_keys SET retired_at = $3 WHERE imsi = $1 AND version < $2 \
         AND activated_at IS NOT NULL AND retired_at IS NULL",
    )
    .bind(&a.imsi)
    .bind(i64::from(a.version))
    .bind(a.retire_at)
    .execute(&mut *tx)
    .await?;
    sql::query("DELETE FROM sms_auth_keys WHERE imsi = $1 AND version < $2 AND activated_at IS NULL")
        .bind(&a.imsi)
        .bind(i64::from(a.version))
        .execute(&mut *tx)
        .await?;
    Ok(true)
}

impl OperatorStore {
    /// Records key `version` of the SIM `imsi`, sealed; active at once if `activated_at` is
    /// given. False if the SIM already has that version.
    pub async fn insert_sms_auth_key(
        &self,
        imsi: &str,
        version: u8,
        sealed: &str,
        now: Millis,
        activated_at: Option<Millis>,
    ) -> Result<bool, OperatorError> {
        let done = sql::query(
            "INSERT INTO sms_auth_keys (imsi, version, sealed_key, created_at, activated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (imsi, version) DO NOTHING",
        )
        .bind(imsi)
        .bind(i64::from(version))
        .bind(sealed)
        .bind(now)
        .bind(activated_at)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The SIM's keys, newest first, without those whose grace ended before `now` (which are
    /// deleted).
    pub async fn sms_auth_keys(&self, imsi: &str, now: Millis) -> Result<Vec<StoredAuthKey>, OperatorError> {
        let mut conn = self.conn().await?;
        sql::query("DELETE FROM sms_auth_keys WHERE imsi = $1 AND retired_at IS NOT NULL AND retired_at < $2")
            .bind(imsi)
            .bind(now)
            .execute(&mut conn)
            .await?;
        let rows = sql::query(
            "SELECT version, sealed_key, activated_at, retired_at FROM sms_auth_keys WHERE imsi = $1 \
             ORDER BY version DESC",
        )
        .bind(imsi)
        .fetch_all(&mut conn)
        .await?;
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get("version")?;
                let sealed: String = r.try_get("sealed_key")?;
                Ok(StoredAuthKey {
                    version: u8::try_from(version)
                        .map_err(|_| OperatorError::Corrupt(format!("SMS authentication key version {version}")))?,
                    sealed,
                    activated_at: r.try_get("activated_at")?,
                    retired_at: r.try_get("retired_at")?,
                })
            })
            .collect()
    }

    /// Activates `a` at `now`, in one transaction. False if there is no such key.
    pub async fn activate_sms_auth_key(&self, a: &Activation, now: Millis) -> Result<bool, OperatorError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        if !activate_key(&mut tx, a, now).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Reserves the next `block` counters of the SIM `imsi`, durably, before any of them is
    /// used: the first of them. Counters start at 1.
    pub async fn reserve_sms_auth_counters(&self, imsi: &str, block: u32) -> Result<u32, OperatorError> {
        let end: i64 = sql::query_scalar(
            "INSERT INTO sms_auth_counters (imsi, reserved_until) VALUES ($1, 1 + $2) \
             ON CONFLICT (imsi) DO UPDATE SET reserved_until = sms_auth_counters.reserved_until + $2 \
             RETURNING reserved_until",
        )
        .bind(imsi)
        .bind(i64::from(block))
        .fetch_one(&mut *self.conn().await?)
        .await?;
        let first = end - i64::from(block);
        u32::try_from(end)
            .ok()
            .and_then(|_| u32::try_from(first).ok())
            .ok_or_else(|| OperatorError::Corrupt(format!("SMS authentication counters of {imsi} exhausted at {end}")))
    }
}
