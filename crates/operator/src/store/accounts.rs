//! Self-service accounts (F7): the number and IMSI pools, the cards the operator holds the keys
//! of, and the accounts opened on them.
//!
//! An account is opened in one transaction: the card claimed (blank to assigned), a number
//! taken from the pool, the subscriber, the SIM the air interface attaches, the account and its
//! OTA job; a crash leaves all of it or none. A pool value is allocated at most once: its row
//! in `pool_allocations` commits with what uses it, and the pool's cursor row, updated in the
//! same transaction, serialises concurrent allocations on both engines.

use numport_core::Millis;
use numport_db::sql::{self, Connection, Row};

use super::OperatorStore;
use crate::OperatorError;
use crate::account_opening::pools::Pool;

/// A card as the operator knows it; keys sealed ([`crate::sealing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCard {
    pub iccid: String,
    pub imsi: String,
    pub k_sim_sealed: String,
    pub kic_sealed: String,
    pub kid_sealed: String,
    /// `aes`, `3des2` or `3des3` (`crate::ota::stock::parse_algorithm`).
    pub algorithm: String,
    pub kic_key_index: u8,
    pub kid_key_index: u8,
    /// `blank` or `assigned`.
    pub state: String,
    pub account_id: Option<String>,
    /// The last counter reserved for a packet to the card.
    pub ota_counter: i64,
}

pub(crate) const CARD_COLUMNS: &str = "iccid, imsi, k_sim_sealed, kic_sealed, kid_sealed, algorithm, kic_key_index, \
     kid_key_index, state, account_id, ota_counter";

pub(crate) fn card_row(r: &Row) -> Result<SimCard, OperatorError> {
    Ok(SimCard {
        iccid: r.try_get("iccid")?,
        imsi: r.try_get("imsi")?,
        k_sim_sealed: r.try_get("k_sim_sealed")?,
        kic_sealed: r.try_get("kic_sealed")?,
        kid_sealed: r.try_get("kid_sealed")?,
        algorithm: r.try_get("algorithm")?,
        kic_key_index: r.try_get::<i64, _>("kic_key_index")? as u8,
        kid_key_index: r.try_get::<i64, _>("kid_key_index")? as u8,
        state: r.try_get("state")?,
        account_id: r.try_get("account_id")?,
        ota_counter: r.try_get("ota_counter")?,
    })
}

/// An account to open, everything decided but the number.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub id: String,
    pub idempotency_key: Option<String>,
    pub request_sha256: String,
    pub given_name: String,
    pub family_name: String,
    pub date_of_birth: String,
    pub id_document: String,
    pub email: Option<String>,
    pub iccid: String,
    pub plan: String,
    /// The OTA job's attributes: service provider name, SMS center address.
    pub spn: String,
    pub smsc_address: String,
    pub created_at: Millis,
}

/// What opening an account did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// Opened: the number it was given, the card's IMSI and sealed K_sim.
    New { msisdn: String, imsi: String },
    /// The same request (key and body) opened this account before.
    Repeat { id: String },
}

/// Why an account was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no blank card with this ICCID")]
    CardUnavailable,
    #[error("the number pool is exhausted")]
    PoolExhausted,
    #[error("the Idempotency-Key was used for another request")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] OperatorError),
}

impl From<numport_db::StoreError> for OpenError {
    fn from(e: numport_db::StoreError) -> OpenError {
        OpenError::Store(e.into())
    }
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: String,
    pub given_name: String,
    pub family_name: String,
    pub msisdn: String,
    pub iccid: String,
    pub imsi: String,
    pub plan: String,
    pub created_at: Millis,
}

/// Takes the next value of `pool` (named `name`) that is not in use, in the caller's
/// transaction; `None` when the pool is exhausted. `in_use` is a statement with one parameter
/// that returns a row when a candidate is already taken outside the pool (a number ported in,
/// an IMSI of a card loaded with its own).
async fn allocate(
    tx: &mut Connection,
    name: &str,
    pool: &Pool,
    in_use: &str,
    now: Millis,
) -> Result<Option<String>, OperatorError> {
    sql::query("INSERT INTO pool_cursors (pool, position) VALUES ($1, 0) ON CONFLICT (pool) DO NOTHING")
        .bind(name)
        .execute(tx)
        .await?;
    loop {
        let position: i64 =
            sql::query_scalar("UPDATE pool_cursors SET position = position + 1 WHERE pool = $1 RETURNING position")
                .bind(name)
                .fetch_one(tx)
                .await?;
        let Some(candidate) = pool.at(position as u64 - 1) else { return Ok(None) };
        if sql::query(in_use).bind(&candidate).fetch_optional(tx).await?.is_some() {
            continue;
        }
        let claimed = sql::query(
            "INSERT INTO pool_allocations (pool, value, allocated_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(&candidate)
        .bind(now)
        .execute(tx)
        .await?;
        if claimed.rows_affected() == 1 {
            return Ok(Some(candidate));
        }
    }
}

impl OperatorStore {
    /// Takes an IMSI from `pool` for a card about to be loaded; `None` when exhausted.
    pub async fn allocate_imsi(&self, pool: &Pool, now: Millis) -> Result<Option<String>, OperatorError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let imsi = allocate(&mut tx, "imsi", pool, "SELECT 1 FROM sim_cards WHERE imsi = $1", now).await?;
        tx.commit().await?;
        Ok(imsi)
    }

    /// Loads a card; with `msisdn` it is recorded as serving that number already (a card
    /// issued for a ported-in number), and the air interface attaches it. A card already
    /// loaded is refused ([`numport_db::StoreError::Duplicate`]).
    pub async fn insert_sim_card(
        &self,
        card: &SimCard,
        msisdn: Option<(&str, &[u8])>,
        now: Millis,
    ) -> Result<(), OperatorError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        sql::query(
            "INSERT INTO sim_cards (iccid, imsi, k_sim_sealed, kic_sealed, kid_sealed, algorithm, kic_key_index, \
             kid_key_index, state, ota_counter, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10)",
        )
        .bind(&card.iccid)
        .bind(&card.imsi)
        .bind(&card.k_sim_sealed)
        .bind(&card.kic_sealed)
        .bind(&card.kid_sealed)
        .bind(&card.algorithm)
        .bind(card.kic_key_index as i64)
        .bind(card.kid_key_index as i64)
        .bind(if msisdn.is_some() { "assigned" } else { "blank" })
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(numport_db::StoreError::from_insert)?;
        if let Some((msisdn, k_sim)) = msisdn {
            upsert_sim(&mut tx, &card.imsi, msisdn, k_sim).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn sim_card(&self, iccid: &str) -> Result<Option<SimCard>, OperatorError> {
        let mut conn = self.conn().await?;
        let row = sql::query(&format!("SELECT {CARD_COLUMNS} FROM sim_cards WHERE iccid = $1"))
            .bind(iccid)
            .fetch_optional(&mut conn)
            .await?;
        row.as_ref().map(card_row).transpose()
    }

    /// The card serving `msisdn` (through the SIM the air interface attaches).
    pub async fn sim_card_of(&self, msisdn: &str) -> Result<Option<SimCard>, OperatorError> {
        let mut conn = self.conn().await?;
        let row = sql::query(&format!(
            "SELECT {CARD_COLUMNS} FROM sim_cards WHERE imsi = (SELECT imsi FROM sims WHERE msisdn = $1)"
        ))
        .bind(msisdn)
        .fetch_optional(&mut conn)
        .await?;
        row.as_ref().map(card_row).transpose()
    }

    /// Cards by state: (blank, assigned).
    pub async fn sim_card_counts(&self) -> Result<(i64, i64), OperatorError> {
        let mut conn = self.conn().await?;
        let rows = sql::query("SELECT state, COUNT(*) AS n FROM sim_cards GROUP BY state").fetch_all(&mut conn).await?;
        let mut counts = (0, 0);
        for r in rows {
            let (state, n): (String, i64) = (r.try_get("state")?, r.try_get("n")?);
            match state.as_str() {
                "blank" => counts.0 = n,
                _ => counts.1 = n,
            }
        }
        Ok(counts)
    }

    /// Opens `a` in one transaction: the card claimed, a number from `numbers`, the subscriber,
    /// the SIM (`k_sim`, the card's key, which the air interface checks at attach), the
    /// account, and the OTA job that writes the card. A request whose key was used before
    /// answers that account, or [`OpenError::KeyReused`] for another body.
    pub async fn open_account(&self, a: &NewAccount, numbers: &Pool, k_sim: &[u8]) -> Result<Opened, OpenError> {
        match self.try_open_account(a, numbers, k_sim).await {
            Ok(opened) => Ok(opened),
            // A concurrent copy of the request may have committed first: its answer is ours.
            Err(e) => match self.earlier_account(a.idempotency_key.as_deref(), &a.request_sha256).await? {
                Some(opened) => Ok(opened),
                None => Err(e),
            },
        }
    }

    /// The account a request with Idempotency-Key `key` opened before: a repeat if its body's
    /// digest is `request_sha256`, else [`OpenError::KeyReused`].
    pub async fn earlier_account(&self, key: Option<&str>, request_sha256: &str) -> Result<Option<Opened>, OpenError> {
        let Some(key) = key else { return Ok(None) };
        let mut conn = self.conn().await?;
        let row = sql::query("SELECT id, request_sha256 FROM accounts WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(&mut conn)
            .await?;
        match row {
            None => Ok(None),
            Some(r) if r.try_get::<String, _>("request_sha256")? == request_sha256 => {
                Ok(Some(Opened::Repeat { id: r.try_get("id")? }))
            }
            Some(_) => Err(OpenError::KeyReused),
        }
    }

    async fn try_open_account(&self, a: &NewAccount, numbers: &Pool, k_sim: &[u8]) -> Result<Opened, OpenError> {
        if let Some(earlier) = self.earlier_account(a.idempotency_key.as_deref(), &a.request_sha256).await? {
            return Ok(earlier);
        }
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let imsi: Option<String> = sql::query_scalar(
            "UPDATE sim_cards SET state = 'assigned', account_id = $1, updated_at = $2 \
             WHERE iccid = $3 AND state = 'blank' RETURNING imsi",
        )
        .bind(&a.id)
        .bind(a.created_at)
        .bind(&a.iccid)
        .fetch_optional(&mut tx)
        .await?;
        let Some(imsi) = imsi else { return Err(OpenError::CardUnavailable) };
        let in_use = "SELECT 1 FROM subscribers WHERE msisdn = $1";
        let Some(msisdn) = allocate(&mut tx, "msisdn", numbers, in_use, a.created_at).await? else {
            return Err(OpenError::PoolExhausted);
        };
        sql::query("INSERT INTO subscribers (msisdn, status, updated_at) VALUES ($1, 'active', $2)")
            .bind(&msisdn)
            .bind(a.created_at)
            .execute(&mut tx)
            .await?;
        upsert_sim(&mut tx, &imsi, &msisdn, k_sim).await?;
        sql::query(
            "INSERT INTO accounts (id, idempotency_key, request_sha256, given_name, family_name, date_of_birth, \
             id_document, email, msisdn, iccid, imsi, plan, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&a.id)
        .bind(&a.idempotency_key)
        .bind(&a.request_sha256)
        .bind(&a.given_name)
        .bind(&a.family_name)
        .bind(&a.date_of_birth)
        .bind(&a.id_document)
        .bind(&a.email)
        .bind(&msisdn)
        .bind(&a.iccid)
        .bind(&imsi)
        .bind(&a.plan)
        .bind(a.created_at)
        .execute(&mut tx)
        .await?;
        let job = super::ota::NewOtaJob {
            iccid: a.iccid.clone(),
            msisdn: msisdn.clone(),
            kind: "account_opening",
            source: format!("account:{}", a.id),
            spn: a.spn.clone(),
            smsc_address: a.smsc_address.clone(),
            created_at: a.created_at,
        };
        super::ota::insert_job(&mut tx, &job).await?;
        tx.commit().await?;
        Ok(Opened::New { msisdn, imsi })
    }

    pub async fn account(&self, id: &str) -> Result<Option<AccountRecord>, OperatorError> {
        let mut conn = self.conn().await?;
        let row = sql::query(
            "SELECT id, given_name, family_name, msisdn, iccid, imsi, plan, created_at FROM accounts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut conn)
        .await?;
        row.map(|r| {
            Ok(AccountRecord {
                id: r.try_get("id")?,
                given_name: r.try_get("given_name")?,
                family_name: r.try_get("family_name")?,
                msisdn: r.try_get("msisdn")?,
                iccid: r.try_get("iccid")?,
                imsi: r.try_get("imsi")?,
                plan: r.try_get("plan")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Accounts without their provisioning order (a crash between the account's transaction
    /// and the order's): id, number, IMSI, plan.
    pub async fn unprovisioned_accounts(&self) -> Result<Vec<(String, String, String, String)>, OperatorError> {
        let mut conn = self.conn().await?;
        let rows = sql::query(
            "SELECT a.id, a.msisdn, a.imsi, a.plan FROM accounts a WHERE NOT EXISTS \
             (SELECT 1 FROM provisioning_orders o WHERE o.source = 'account:' || a.id) ORDER BY a.created_at",
        )
        .fetch_all(&mut conn)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("msisdn")?, r.try_get("imsi")?, r.try_get("plan")?)))
            .collect()
    }
}

/// The SIM the air interface attaches: `imsi` serves `msisdn` with key `k_sim`.
pub(crate) async fn upsert_sim(
    tx: &mut Connection,
    imsi: &str,
    msisdn: &str,
    k_sim: &[u8],
) -> Result<(), OperatorError> {
    sql::query(
        "INSERT INTO sims (imsi, msisdn, k_sim) VALUES ($1, $2, $3) \
         ON CONFLICT (imsi) DO UPDATE SET msisdn = excluded.msisdn, k_sim = excluded.k_sim",
    )
    .bind(imsi)
    .bind(msisdn)
    .bind(hex::encode(k_sim))
    .execute(tx)
    .await?;
    Ok(())
}
