//! The SMS center's tables: ESME accounts, and every acknowledged short message.

use numport_core::Millis;
use numport_db::sql::{self, Connection, Row};

use super::OperatorStore;
use crate::OperatorError;

/// Where a short message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmsState {
    /// Accepted, not yet delivered (local) or handed on (interconnect).
    Queued,
    /// Accepted by the serving operator's SMS center; its receipt will tell the end.
    Forwarded,
    Delivered,
    /// The validity period ran out first.
    Expired,
    Undeliverable,
    /// Cancelled by its ESME (cancel_sm) before it was delivered or handed on.
    Deleted,
}

impl SmsState {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsState::Queued => "queued",
            SmsState::Forwarded => "forwarded",
            SmsState::Delivered => "delivered",
            SmsState::Expired => "expired",
            SmsState::Undeliverable => "undeliverable",
            SmsState::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<SmsState> {
        [
            SmsState::Queued,
            SmsState::Forwarded,
            SmsState::Delivered,
            SmsState::Expired,
            SmsState::Undeliverable,
            SmsState::Deleted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Whether nothing more happens to the message (but its receipt).
    pub fn is_final(self) -> bool {
        matches!(self, SmsState::Delivered | SmsState::Expired | SmsState::Undeliverable | SmsState::Deleted)
    }
}

/// A short message to record, as accepted and routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSms {
    /// The ESME that submitted it; its receipt goes back there. A message a terminal
    /// submitted over the air carries [`terminal_submitter`]'s marker instead.
    pub system_id: String,
    pub source_addr: String,
    pub source_ton: u8,
    pub destination: String,
    pub serving_operator: String,
    /// `local` or `interconnect`.
    pub route: &'static str,
    pub esm_class: u8,
    /// SMPP protocol_id, the TP-PID of its SMS-DELIVER: 0x7F for SIM data download (OTA).
    pub protocol_id: u8,
    pub data_coding: u8,
    pub registered_delivery: u8,
    pub payload: Vec<u8>,
    pub submitted_at: Millis,
    /// End of the validity period.
    pub expires_at: Millis,
    /// When the scheduler looks at it if it is still queued by then.
    pub next_attempt_at: Millis,
    /// The submitting SMS center's id for it (interconnect), which makes a repeat harmless.
    pub origin_ref: Option<String>,
    /// Not delivered before this time (SMPP schedule_delivery_time); 0: at once.
    pub scheduled_at: Millis,
}

/// The `system_id` of a message a terminal submitted over the air (SMS-SUBMIT):
/// `msisdn:<number>:<TP-MR>`, the terminal's number and the message reference it chose for
/// this message (or part). Its receipt goes back to that terminal as an SMS-STATUS-REPORT
/// carrying the TP-MR instead of to an ESME; keeping both in `system_id` needs no column of
/// its own (`remote_id` is the interconnect's). No ESME can be mistaken for one: an SMPP
/// system_id has at most 15 characters, and the marker is longer.
pub fn terminal_submitter(msisdn: &str, message_reference: u8) -> String {
    format!("{TERMINAL_MARKER}{msisdn}:{message_reference}")
}

const TERMINAL_MARKER: &str = "msisdn:";

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
    pub esm_class: u8,
    /// SMPP protocol_id (TP-PID).
    pub protocol_id: u8,
    pub data_coding: u8,
    pub registered_delivery: u8,
    pub payload: Vec<u8>,
    pub state: SmsState,
    pub submitted_at: Millis,
    pub expires_at: Millis,
    pub next_attempt_at: Millis,
    /// Not delivered before this time; 0: at once.
    pub scheduled_at: Millis,
    pub attempts: i64,
    pub remote_id: Option<String>,
    pub origin_ref: Option<String>,
    pub done_at: Option<Millis>,
    /// `none`, `owed` or `sent`.
    pub receipt: String,
}

impl StoredSms {
    /// The record of a message just inserted with `id`.
    pub fn new(id: i64, m: NewSms) -> StoredSms {
        StoredSms {
            id,
            system_id: m.system_id,
            source_addr: m.source_addr,
            source_ton: m.source_ton,
            destination: m.destination,
            serving_operator: m.serving_operator,
            route: m.route.to_owned(),
            esm_class: m.esm_class,
            protocol_id: m.protocol_id,
            data_coding: m.data_coding,
            registered_delivery: m.registered_delivery,
            payload: m.payload,
            state: SmsState::Queued,
            submitted_at: m.submitted_at,
            expires_at: m.expires_at,
            next_attempt_at: m.next_attempt_at,
            scheduled_at: m.scheduled_at,
            attempts: 0,
            remote_id: None,
            origin_ref: m.origin_ref,
            done_at: None,
            receipt: "none".into(),
        }
    }

    /// The number and TP-MR of the terminal that submitted the message, if a terminal did
    /// (see [`terminal_submitter`]).
    pub fn submitting_terminal(&self) -> Option<(&str, u8)> {
        let (msisdn, mr) = self.system_id.strip_prefix(TERMINAL_MARKER)?.rsplit_once(':')?;
        Some((msisdn, mr.parse().ok()?))
    }

    /// Whether a final `state` owes the submitter a receipt (SMPP registered_delivery bits 0-1:
    /// 1 on any final outcome, 2 on failure only).
    pub fn receipt_wanted(&self, state: SmsState) -> bool {
        match self.registered_delivery & 0x03 {
            1 => true,
            2 => state != SmsState::Delivered,
            _ => false,
        }
    }
}

/// State changes and new messages committed in one transaction (the SMS center's group
/// commit): many submits and deliveries share one commit.
#[derive(Debug, Default)]
pub struct SmsBatch {
    pub inserts: Vec<StoredSms>,
    /// Final outcomes; a receipt is owed where registered_delivery asks for one.
    pub finals: Vec<(i64, SmsState)>,
    /// Accepted by the next SMS center under this id.
    pub forwarded: Vec<(i64, String)>,
    pub receipts_sent: Vec<i64>,
    /// A delivery attempt failed (terminal absent); next try at the time given.
    pub retries: Vec<(i64, Millis)>,
    /// Messages their ESME cancelled (cancel_sm): id and the ESME's system_id.
    pub cancels: Vec<(i64, String)>,
    /// Messages their ESME replaced (replace_sm).
    pub replacements: Vec<Replacement>,
}

/// A replace_sm's new content for a message still queued; `None` keeps what it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub id: i64,
    /// The ESME that asks: only its own messages are replaced.
    pub system_id: String,
    pub data_coding: u8,
    pub payload: Vec<u8>,
    pub registered_delivery: u8,
    pub expires_at: Option<Millis>,
    pub scheduled_at: Option<Millis>,
}

impl Replacement {
    /// `m` as it reads once replaced.
    pub fn apply_to(&self, m: StoredSms) -> StoredSms {
        StoredSms {
            data_coding: self.data_coding,
            payload: self.payload.clone(),
            registered_delivery: self.registered_delivery,
            expires_at: self.expires_at.unwrap_or(m.expires_at),
            scheduled_at: self.scheduled_at.unwrap_or(m.scheduled_at),
            next_attempt_at: self.scheduled_at.unwrap_or(m.next_attempt_at),
            ..m
        }
    }
}

/// What a committed [`SmsBatch`] did besides what it was asked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SmsApplied {
    /// Inserts kept out as repeats of a message already here (same ESME and origin_ref), each
    /// with the id of the message it repeats.
    pub repeats: Vec<(i64, i64)>,
    /// Final outcomes that changed nothing, the message being final already (a peer's receipt
    /// after the message expired here, say): no receipt is owed for them.
    pub stale_finals: Vec<i64>,
    /// The cancels and replacements that found their message still queued (by id).
    pub amended: Vec<i64>,
}

/// The one statement of a cancel: a queued message of that ESME becomes deleted, owing no
/// receipt (the ESME asked for the end).
pub(crate) const CANCEL_SQL: &str = "UPDATE sms_messages SET state = 'deleted', done_at = $1, receipt = 'none' \
     WHERE id = $2 AND system_id = $3 AND state = 'queued'";

/// The one statement of a replacement of a queued message of that ESME.
pub(crate) const REPLACE_SQL: &str = "UPDATE sms_messages SET data_coding = $1, payload = $2, \
     registered_delivery = $3, expires_at = COALESCE($4, expires_at), scheduled_at = COALESCE($5, scheduled_at), \
     next_attempt_at = COALESCE($5, next_attempt_at) WHERE id = $6 AND system_id = $7 AND state = 'queued'";

impl SmsBatch {
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty()
            && self.finals.is_empty()
            && self.forwarded.is_empty()
            && self.receipts_sent.is_empty()
            && self.retries.is_empty()
            && self.cancels.is_empty()
            && self.replacements.is_empty()
    }
}

const SMS_COLUMNS: &str = "id, system_id, source_addr, source_ton, destination, serving_operator, route, esm_class, \
     data_coding, registered_delivery, payload, state, submitted_at, expires_at, next_attempt_at, attempts, remote_id, origin_ref, done_at, receipt, scheduled_at, protocol_id";

/// Rows per multi-row INSERT on PostgreSQL (SQLite's batches go through `sms_sqlite`, one
/// prepared single-row INSERT per message). A size chosen, not measured to be best: a full
/// chunk is one statement, prepared once per session.
const INSERT_CHUNK: usize = 16;

fn sms_row(r: &Row) -> Result<StoredSms, OperatorError> {
    let state: &str = r.try_get("state")?;
    Ok(StoredSms {
        id: r.try_get("id")?,
        system_id: r.try_get("system_id")?,
        source_addr: r.try_get("source_addr")?,
        source_ton: r.try_get::<i64, _>("source_ton")? as u8,
        destination: r.try_get("destination")?,
        serving_operator: r.try_get("serving_operator")?,
        route: r.try_get("route")?,
        esm_class: r.try_get::<i64, _>("esm_class")? as u8,
        protocol_id: r.try_get::<i64, _>("protocol_id")? as u8,
        data_coding: r.try_get::<i64, _>("data_coding")? as u8,
        registered_delivery: r.try_get::<i64, _>("registered_delivery")? as u8,
        payload: hex::decode(r.try_get::<&str, _>("payload")?)
            .map_err(|e| OperatorError::Corrupt(format!("sms payload: {e}")))?,
        state: SmsState::parse(state).ok_or_else(|| OperatorError::Corrupt(format!("sms state {state:?}")))?,
        submitted_at: r.try_get("submitted_at")?,
        expires_at: r.try_get("expires_at")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        scheduled_at: r.try_get("scheduled_at")?,
        attempts: r.try_get("attempts")?,
        remote_id: r.try_get("remote_id")?,
        origin_ref: r.try_get("origin_ref")?,
        done_at: r.try_get("done_at")?,
        receipt: r.try_get("receipt")?,
    })
}

/// The inserts of `chunk` that an existing message with the same ESME and origin_ref kept out,
/// each with that message's id.
async fn find_repeats(tx: &mut Connection, chunk: &[StoredSms]) -> Result<Vec<(i64, i64)>, OperatorError> {
    let with_ref: Vec<&StoredSms> = chunk.iter().filter(|m| m.origin_ref.is_some()).collect();
    if with_ref.is_empty() {
        return Ok(Vec::new());
    }
    let marks = (1..=with_ref.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    let sql = format!("SELECT id, system_id, origin_ref FROM sms_messages WHERE origin_ref IN ({marks})");
    let mut q = sql::query(&sql);
    for m in &with_ref {
        q = q.bind(m.origin_ref.as_deref());
    }
    let mut repeats = Vec::new();
    for row in q.fetch_all(tx).await? {
        let (id, system_id, origin_ref): (i64, String, Option<String>) =
            (row.try_get("id")?, row.try_get("system_id")?, row.try_get("origin_ref")?);
        if let Some(m) = with_ref.iter().find(|m| m.system_id == system_id && m.origin_ref == origin_ref)
            && m.id != id
        {
            repeats.push((m.id, id));
        }
    }
    Ok(repeats)
}

enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// `1, 2, 3`: ids are integers, so a list of them is safe to write into the statement.
fn id_list(ids: impl Iterator<Item = i64>) -> String {
    ids.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// Inserts `messages` in chunks of [`INSERT_CHUNK`] rows; returns the repeats kept out (see
/// [`OperatorStore::apply_sms_batch`]).
async fn insert_messages(tx: &mut Connection, messages: &[StoredSms]) -> Result<Vec<(i64, i64)>, OperatorError> {
    let mut repeats = Vec::new();
    for chunk in messages.chunks(INSERT_CHUNK) {
        let sql = insert_sql(chunk.len());
        let mut q = sql::query(&sql);
        for m in chunk {
            q = q
                .bind(m.id)
                .bind(&m.system_id)
                .bind(&m.source_addr)
                .bind(m.source_ton as i64)
                .bind(&m.destination)
                .bind(&m.serving_operator)
                .bind(&m.route)
                .bind(m.esm_class as i64)
                .bind(m.data_coding as i64)
                .bind(m.registered_delivery as i64)
                .bind(hex::encode(&m.payload))
                .bind(m.submitted_at)
                .bind(m.expires_at)
                .bind(m.next_attempt_at)
                .bind(&m.origin_ref)
                .bind(m.scheduled_at)
                .bind(m.protocol_id as i64);
        }
        let inserted = q.execute(&mut *tx).await?.rows_affected();
        if inserted < chunk.len() as u64 {
            repeats.extend(find_repeats(tx, chunk).await?);
        }
    }
    Ok(repeats)
}

/// Parameters of one message in [`insert_sql`].
const INSERT_PARAMS: usize = 17;

/// The INSERT of `rows` messages, [`INSERT_PARAMS`] parameters each. A repeat of a forwarded
/// message (same ESME, same origin_ref) is not inserted.
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| {
            let p: Vec<String> = (1..=INSERT_PARAMS).map(|n| format!("${}", i * INSERT_PARAMS + n)).collect();
            format!("({}, 'queued', {})", p[..11].join(", "), p[11..].join(", "))
        })
        .collect();
    format!(
        "INSERT INTO sms_messages (id, system_id, source_addr, source_ton, destination, serving_operator, \
         route, esm_class, data_coding, registered_delivery, payload, state, submitted_at, expires_at, \
         next_attempt_at, origin_ref, scheduled_at, protocol_id) VALUES {} ON CONFLICT DO NOTHING",
        values.join(", ")
    )
}

/// Final outcomes, one statement per final state; a receipt is owed where registered_delivery
/// asks for one. Returns the ids of messages that were final already.
async fn record_finals(
    tx: &mut Connection,
    finals: &[(i64, SmsState)],
    now: Millis,
) -> Result<Vec<i64>, OperatorError> {
    let mut stale = Vec::new();
    for state in [SmsState::Delivered, SmsState::Expired, SmsState::Undeliverable] {
        let ids: Vec<i64> = finals.iter().filter(|(_, s)| *s == state).map(|(id, _)| *id).collect();
        if ids.is_empty() {
            continue;
        }
        // registered_delivery bits 0-1: 1 asks for a receipt on any outcome, 2 on failure only.
        let owed = if state == SmsState::Delivered {
            "(registered_delivery % 4) = 1"
        } else {
            "(registered_delivery % 4) IN (1, 2)"
        };
        let changed = sql::query(&format!(
            "UPDATE sms_messages SET state = $1, done_at = $2, \
             receipt = CASE WHEN {owed} THEN 'owed' ELSE 'none' END \
             WHERE id IN ({}) AND state IN ('queued', 'forwarded') RETURNING id",
            id_list(ids.iter().copied())
        ))
        .bind(state.as_str())
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>("id"))
        .collect::<Result<std::collections::HashSet<i64>, _>>()?;
        stale.extend(ids.into_iter().filter(|id| !changed.contains(id)));
    }
    Ok(stale)
}

/// Messages accepted by the next SMS center, one statement per chunk: each message's remote id
/// picked by a CASE on its id.
async fn record_forwarded(tx: &mut Connection, forwarded: &[(i64, String)]) -> Result<(), OperatorError> {
    for chunk in forwarded.chunks(INSERT_CHUNK * 4) {
        let cases: String = (1..=chunk.len()).map(|i| format!(" WHEN {} THEN ${i}", chunk[i - 1].0)).collect();
        let sql = format!(
            "UPDATE sms_messages SET state = 'forwarded', remote_id = CASE id{cases} END \
             WHERE id IN ({}) AND state = 'queued'",
            id_list(chunk.iter().map(|(id, _)| *id))
        );
        let mut q = sql::query(&sql);
        for (_, remote_id) in chunk {
            q = q.bind(remote_id);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// The batch's cancels and replacements; the ids of those that found their message queued.
async fn amend(tx: &mut Connection, batch: &SmsBatch, now: Millis) -> Result<Vec<i64>, OperatorError> {
    let mut amended = Vec::new();
    for (id, system_id) in &batch.cancels {
        if sql::query(CANCEL_SQL).bind(now).bind(id).bind(system_id).execute(&mut *tx).await?.rows_affected() == 1 {
            amended.push(*id);
        }
    }
    for r in &batch.replacements {
        let applied = sql::query(REPLACE_SQL)
            .bind(r.data_coding as i64)
            .bind(hex::encode(&r.payload))
            .bind(r.registered_delivery as i64)
            .bind(r.expires_at)
            .bind(r.scheduled_at)
            .bind(r.id)
            .bind(&r.system_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if applied == 1 {
            amended.push(r.id);
        }
    }
    Ok(amended)
}

impl OperatorStore {
    /// Adds or replaces an ESME account.
    pub async fn upsert_esme(&self, account: &smsc::EsmeAccount, now: Millis) -> Result<(), OperatorError> {
        sql::query(
            "INSERT INTO esme_accounts \
             (system_id, password_hash, max_submits_per_s, created_at, default_alphabet, max_sessions) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (system_id) DO UPDATE SET \
             password_hash = excluded.password_hash, max_submits_per_s = excluded.max_submits_per_s, \
             default_alphabet = excluded.default_alphabet, max_sessions = excluded.max_sessions",
        )
        .bind(&account.system_id)
        .bind(&account.password_hash)
        .bind(account.max_submits_per_s as i64)
        .bind(now)
        .bind(account.default_alphabet.as_str())
        .bind(i64::from(account.max_sessions))
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    pub async fn esmes(&self) -> Result<Vec<smsc::EsmeAccount>, OperatorError> {
        let rows = sql::query(
            "SELECT system_id, password_hash, max_submits_per_s, default_alphabet, max_sessions FROM esme_accounts",
        )
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(smsc::EsmeAccount {
                    system_id: r.try_get("system_id")?,
                    password_hash: r.try_get("password_hash")?,
                    max_submits_per_s: r.try_get::<i64, _>("max_submits_per_s")?.clamp(1, u32::MAX as i64) as u32,
                    default_alphabet: r
                        .try_get::<String, _>("default_alphabet")?
                        .parse()
                        .map_err(|e: smsc::esme::UnknownAlphabet| OperatorError::Config(e.to_string()))?,
                    max_sessions: r.try_get::<i64, _>("max_sessions")?.clamp(1, u32::MAX as i64) as u32,
                })
            })
            .collect()
    }

    /// The highest message id in use (0 for none): the SMS center numbers new messages itself,
    /// so a whole batch is inserted in one statement.
    pub async fn max_sms_id(&self) -> Result<i64, OperatorError> {
        let id: Option<i64> =
            sql::query_scalar("SELECT MAX(id) FROM sms_messages").fetch_one(&mut *self.conn().await?).await?;
        Ok(id.unwrap_or(0))
    }

    /// Commits a batch in one transaction; see [`SmsApplied`] for what it returns.
    pub async fn apply_sms_batch(&self, batch: SmsBatch, now: Millis) -> Result<SmsApplied, OperatorError> {
        if let Some(writer) = &self.sms_writer {
            return writer.apply(batch, now).await;
        }
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let repeats = insert_messages(&mut tx, &batch.inserts).await?;
        let stale_finals = record_finals(&mut tx, &batch.finals, now).await?;
        record_forwarded(&mut tx, &batch.forwarded).await?;
        if !batch.receipts_sent.is_empty() {
            sql::query(&format!(
                "UPDATE sms_messages SET receipt = 'sent' WHERE id IN ({})",
                id_list(batch.receipts_sent.iter().copied())
            ))
            .execute(&mut tx)
            .await?;
        }
        for (id, next) in &batch.retries {
            sql::query(
                "UPDATE sms_messages SET attempts = attempts + 1, next_attempt_at = $1 WHERE id = $2 AND state = 'queued'",
            )
            .bind(next)
            .bind(id)
            .execute(&mut tx)
            .await?;
        }
        let amended = amend(&mut tx, &batch, now).await?;
        tx.commit().await?;
        Ok(SmsApplied { repeats, stale_finals, amended })
    }

    pub async fn sms(&self, id: i64) -> Result<Option<StoredSms>, OperatorError> {
        let row = sql::query(&format!("SELECT {SMS_COLUMNS} FROM sms_messages WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(sms_row).transpose()
    }

    /// The message `id` of ESME `system_id` (a message of another is not found).
    pub async fn sms_of(&self, system_id: &str, id: i64) -> Result<Option<StoredSms>, OperatorError> {
        Ok(self
            .select_sms("WHERE id = $1 AND system_id = $2 LIMIT $3", &[Arg::Int(id), Arg::Text(system_id)], 1)
            .await?
            .pop())
    }

    /// Queued messages of ESME `system_id` from `source_addr` to `destination`, oldest first.
    pub async fn queued_from(
        &self,
        system_id: &str,
        source_addr: &str,
        destination: &str,
        limit: i64,
    ) -> Result<Vec<StoredSms>, OperatorError> {
        self.select_sms(
            "WHERE destination = $1 AND state = 'queued' AND system_id = $2 AND source_addr = $3 ORDER BY id LIMIT $4",
            &[Arg::Text(destination), Arg::Text(system_id), Arg::Text(source_addr)],
            limit,
        )
        .await
    }

    /// Messages queued for local delivery to `msisdn` whose next attempt is due by `due_by`
    /// and whose schedule allows delivery at `now`, oldest first.
    pub async fn queued_for(
        &self,
        msisdn: &str,
        due_by: Millis,
        now: Millis,
        limit: i64,
    ) -> Result<Vec<StoredSms>, OperatorError> {
        self.select_sms(
            "WHERE destination = $1 AND state = 'queued' AND route = 'local' \
             AND next_attempt_at <= $2 AND scheduled_at <= $3 ORDER BY id LIMIT $4",
            &[Arg::Text(msisdn), Arg::Int(due_by), Arg::Int(now)],
            limit,
        )
        .await
    }

    /// Local messages whose next delivery attempt is due at `now`, oldest first.
    pub async fn due_local(&self, now: Millis, limit: i64) -> Result<Vec<StoredSms>, OperatorError> {
        self.select_sms(
            "WHERE state = 'queued' AND route = 'local' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2",
            &[Arg::Int(now)],
            limit,
        )
        .await
    }

    /// Queued messages whose validity period ended by `now`.
    pub async fn expired_by(&self, now: Millis, limit: i64) -> Result<Vec<StoredSms>, OperatorError> {
        self.select_sms(
            "WHERE state = 'queued' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
            &[Arg::Int(now)],
            limit,
        )
        .await
    }

    /// Messages forwarded to another SMS center, not yet settled by its receipt, whose
    /// validity period ended by `by`.
    pub async fn forwarded_expired_by(&self, by: Millis, limit: i64) -> Result<Vec<StoredSms>, OperatorError> {
        self.select_sms(
            "WHERE state = 'forwarded' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
            &[Arg::Int(by)],
            limit,
        )
        .await
    }

    /// Messages queued for `operator`'s SMS center whose schedule allows sending at `now`,
    /// oldest first.
    pub async fn queued_interconnect(
        &self,
        operator: &str,
        now: Millis,
        limit: i64,
    ) -> Result<Vec<StoredSms>, OperatorError> {
        self.select_sms(
            "WHERE state = 'queued' AND route = 'interconnect' \
             AND serving_operator = $1 AND scheduled_at <= $2 ORDER BY id LIMIT $3",
            &[Arg::Text(operator), Arg::Int(now)],
            limit,
        )
        .await
    }

    /// Final messages whose receipt the submitter has not acknowledged, oldest first.
    pub async fn owed_receipts(&self, limit: i64) -> Result<Vec<StoredSms>, OperatorError> {
        self.select_sms("WHERE receipt = 'owed' ORDER BY id LIMIT $1", &[], limit).await
    }

    /// The message forwarded to `operator`, which gave it `remote_id`.
    pub async fn forwarded_as(&self, operator: &str, remote_id: &str) -> Result<Option<StoredSms>, OperatorError> {
        Ok(self
            .select_sms(
                "WHERE serving_operator = $1 AND remote_id = $2 AND remote_id IS NOT NULL LIMIT $3",
                &[Arg::Text(operator), Arg::Text(remote_id)],
                1,
            )
            .await?
            .pop())
    }

    /// The messages `filter` selects; its last parameter is the limit. Filters on open
    /// messages repeat `state IN ('queued', 'forwarded')` so that SQLite, which matches a
    /// partial index's condition literally, uses the small index of open messages.
    async fn select_sms(&self, filter: &str, args: &[Arg<'_>], limit: i64) -> Result<Vec<StoredSms>, OperatorError> {
        let sql = format!("SELECT {SMS_COLUMNS} FROM sms_messages {filter}");
        let mut q = sql::query(&sql);
        for a in args {
            q = match *a {
                Arg::Text(t) => q.bind(t),
                Arg::Int(i) => q.bind(i),
            };
        }
        let rows = q.bind(limit).fetch_all(&mut *self.conn().await?).await?;
        rows.iter().map(sms_row).collect()
    }

    /// Adds or replaces a SIM: its IMSI, the number it serves and its key.
    pub async fn upsert_sim(&self, imsi: &str, msisdn: &str, k_sim: &[u8]) -> Result<(), OperatorError> {
        super::accounts::upsert_sim(&mut *self.conn().await?, imsi, msisdn, k_sim).await
    }

    /// The number and key of a SIM.
    pub async fn sim(&self, imsi: &str) -> Result<Option<(String, Vec<u8>)>, OperatorError> {
        let row = sql::query("SELECT msisdn, k_sim FROM sims WHERE imsi = $1")
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
