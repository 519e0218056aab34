//! What the portability center does on its own database, outside the operator API: register
//! operators, issue and rotate their credentials, load number ranges and an existing database of
//! ported numbers, fund settlement accounts.
//! The `numport clearinghouse …` subcommands call these; every change is audited as `admin`.

use std::io::Read;
use std::path::Path;

use crate::store::ledger::{self, Posted};
use crate::store::operators::{self, Operator};
use crate::store::{audit, ranges, routing};
use numport_core::{JournalEntry, Millis, Money, Msisdn, OperatorName, Prefix, RoutingNumber};
use numport_db::{Db, StoreError};
use rand::RngCore;
use serde_json::json;

use crate::auth;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no operator named {0:?}")]
    UnknownOperator(String),
    #[error("operator {0:?} or routing number {1:?} is already registered")]
    Duplicate(String, String),
    #[error("ranges CSV line {line}: {message}")]
    Csv { line: u64, message: String },
    #[error("invalid amount: {0}")]
    Amount(String),
    #[error("master key file {path}: {message}")]
    MasterKey { path: String, message: String },
}

/// Read the master key (64 hex digits) from `path`, creating it with a fresh random key (mode
/// 0600) if it does not exist. Callback secrets are derived from it; it never leaves the file.
pub fn load_or_create_master_key(path: &Path) -> Result<[u8; 32], AdminError> {
    let err = |message: String| AdminError::MasterKey { path: path.display().to_string(), message };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut key = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut key).map_err(|_| err("expected 64 hex digits".into()))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            write_private(path, &hex::encode(key)).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(text.as_bytes())
}

pub async fn register_operator(
    db: &Db,
    name: &OperatorName,
    routing_number: &RoutingNumber,
    callback_url: Option<&str>,
    now: Millis,
) -> Result<Operator, AdminError> {
    let mut tx = db.begin().await?;
    let op = operators::insert(&mut tx, name, routing_number, callback_url, now).await.map_err(|e| {
        if e.is_duplicate() {
            AdminError::Duplicate(name.to_string(), routing_number.to_string())
        } else {
            AdminError::Store(e)
        }
    })?;
    audit::append(
        &mut tx,
        now,
        "admin",
        "operator_registered",
        None,
        None,
        None,
        &json!({ "operator": name, "routing_number": routing_number, "callback_url": callback_url }).to_string(),
    )
    .await?;
    tx.commit().await?;
    Ok(op)
}

async fn operator(db: &Db, name: &str) -> Result<Operator, AdminError> {
    let mut conn = db.acquire().await?;
    operators::by_name(&mut conn, name).await?.ok_or_else(|| AdminError::UnknownOperator(name.to_owned()))
}

/// Credentials handed to an operator once; the clearinghouse keeps only a hash and a version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Credentials {
    pub operator: String,
    /// `Authorization: Bearer <api_token>` on every request.
    pub api_token: String,
    /// Hex key the operator verifies callback signatures with.
    pub callback_secret: String,
    pub callback_key_version: i64,
}

/// Issue new credentials; earlier keys stop working after `grace_ms` (0: at once).
pub async fn issue_credentials(
    db: &Db,
    master_key: &[u8; 32],
    name: &str,
    grace_ms: Millis,
    now: Millis,
) -> Result<Credentials, AdminError> {
    let op = operator(db, name).await?;
    let key = auth::new_key();
    let mut tx = db.begin().await?;
    let revoked = operators::revoke_api_keys(&mut tx, op.id, now + grace_ms.max(0)).await?;
    operators::insert_api_key(&mut tx, &key.key_id, op.id, &key.secret_hash, now).await?;
    let version = operators::bump_callback_key_version(&mut tx, op.id).await?;
    audit::append(
        &mut tx,
        now,
        "admin",
        "credentials_issued",
        None,
        None,
        None,
        &json!({ "operator": name, "key_id": key.key_id, "revoked_keys": revoked, "callback_key_version": version })
            .to_string(),
    )
    .await?;
    tx.commit().await?;
    let secret = numport_core::signing::derive_callback_secret(master_key, name, version);
    Ok(Credentials {
        operator: name.to_owned(),
        api_token: key.token,
        callback_secret: hex::encode(secret),
        callback_key_version: version,
    })
}

/// Load `prefix,operator` lines (a header line is allowed). All or nothing.
pub async fn load_ranges_csv(db: &Db, reader: impl Read, now: Millis) -> Result<usize, AdminError> {
    let mut rdr =
        csv::ReaderBuilder::new().has_headers(false).trim(csv::Trim::All).comment(Some(b'#')).from_reader(reader);
    let mut tx = db.begin().await?;
    let mut ops: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut n = 0usize;
    for rec in rdr.records() {
        let rec =
            rec.map_err(|e| AdminError::Csv { line: e.position().map_or(0, |p| p.line()), message: e.to_string() })?;
        let line = rec.position().map_or(0, |p| p.line());
        let (Some(prefix), Some(name)) = (rec.get(0), rec.get(1)) else {
            return Err(AdminError::Csv { line, message: "expected two fields: prefix,operator".into() });
        };
        if line == 1 && prefix.eq_ignore_ascii_case("prefix") {
            continue;
        }
        let prefix: Prefix = prefix
            .parse()
            .map_err(|e: numport_core::msisdn::NumberError| AdminError::Csv { line, message: e.to_string() })?;
        let op_id = match ops.get(name) {
            Some(id) => *id,
            None => {
                let op = operators::by_name(&mut tx, name)
                    .await?
                    .ok_or_else(|| AdminError::Csv { line, message: format!("no operator named {name:?}") })?;
                ops.insert(name.to_owned(), op.id);
                op.id
            }
        };
        ranges::upsert(&mut tx, &prefix, op_id).await?;
        n += 1;
    }
    let version = ranges::bump_version(&mut tx).await?;
    audit::append(
        &mut tx,
        now,
        "admin",
        "ranges_loaded",
        None,
        None,
        None,
        &json!({ "ranges": n, "ranges_version": version }).to_string(),
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// Pay `amount` into an operator's settlement account from outside (the funding account).
/// The idempotency key makes a repeated command a no-op.
pub async fn fund(
    db: &Db,
    name: &str,
    amount: Money,
    idempotency_key: &str,
    now: Millis,
) -> Result<(Posted, Money), AdminError> {
    if amount.0 <= 0 {
        return Err(AdminError::Amount(format!("{} minor units; funding must be positive", amount.0)));
    }
    let op = operator(db, name).await?;
    let mut tx = db.begin().await?;
    let funding = ledger::funding_account(&mut tx).await?;
    let (acct, _) = ledger::operator_account(&mut tx, op.id).await?;
    let entry = JournalEntry::transfer(funding, acct, amount).map_err(|e| AdminError::Amount(e.to_string()))?;
    let posted = ledger::post(&mut tx, &format!("funding:{idempotency_key}"), "funding", None, &entry, now)
        .await
        .map_err(|e| match e {
            ledger::PostError::Store(s) => AdminError::Store(s),
            other => AdminError::Amount(other.to_string()),
        })?;
    if matches!(posted, Posted::New(_)) {
        audit::append(
            &mut tx,
            now,
            "admin",
            "account_funded",
            None,
            None,
            None,
            &json!({ "operator": name, "amount": amount, "key": idempotency_key }).to_string(),
        )
        .await?;
    }
    let (_, balance) = ledger::operator_account(&mut tx, op.id).await?;
    tx.commit().await?;
    Ok((posted, balance))
}

/// What [`import_ported_csv`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortedImport {
    /// Numbers recorded as ported (each with a change-log entry).
    pub imported: u64,
    /// Lines naming the number's own range holder: not an exception, nothing to record.
    pub range_holder: u64,
}

/// Rows written per transaction by [`import_ported_csv`].
const IMPORT_BATCH: usize = 10_000;

/// Load an existing national database's ported numbers from CSV (`msisdn,operator`, an
/// optional `msisdn,operator` header, `#` comments): each becomes a ported-number record and
/// a change-log entry, so replicas following the feed receive it like any port. Batches of
/// 10,000 rows commit on their own (`progress` is told the lines done after each); a line that
/// fails stops the import with its line number, and the batches before it stay. Importing the
/// same file again rewrites the same records.
pub async fn import_ported_csv(
    db: &Db,
    reader: impl Read,
    now: Millis,
    mut progress: impl FnMut(u64),
) -> Result<PortedImport, AdminError> {
    let mut conn = db.acquire().await?;
    let ops = operators::list(&mut conn).await?;
    let range_rows = ranges::list(&mut conn).await?;
    drop(conn);
    let index = npdb::Index::new(
        ops.iter().map(|o| npdb::Operator { name: o.name.clone(), routing_number: o.routing_number.clone() }),
        range_rows.iter().filter_map(|(p, h)| Some((p.parse().ok()?, h.parse().ok()?))),
    )
    .map_err(|e| AdminError::Csv { line: 0, message: e.to_string() })?;
    let mut rdr =
        csv::ReaderBuilder::new().has_headers(false).trim(csv::Trim::All).comment(Some(b'#')).from_reader(reader);
    let mut report = PortedImport::default();
    let mut batch: Vec<(Msisdn, i64, numport_core::RoutingNumber)> = Vec::with_capacity(IMPORT_BATCH);
    let mut lines = 0u64;
    let mut rec = csv::StringRecord::new();
    loop {
        let more =
            rdr.read_record(&mut rec).map_err(|e| AdminError::Csv { line: lines + 1, message: e.to_string() })?;
        if more {
            let line = rec.position().map_or(lines + 1, |p| p.line());
            lines = line;
            let (Some(number), Some(name)) = (rec.get(0), rec.get(1)) else {
                return Err(AdminError::Csv { line, message: "expected two fields: msisdn,operator".into() });
            };
            if line == 1 && number.eq_ignore_ascii_case("msisdn") {
                continue;
            }
            let msisdn: Msisdn = number
                .parse()
                .map_err(|e: numport_core::msisdn::NumberError| AdminError::Csv { line, message: e.to_string() })?;
            let name: OperatorName =
                name.parse().map_err(|_| AdminError::Csv { line, message: format!("bad operator name {name:?}") })?;
            let op = index
                .op_id(&name)
                .map_err(|_| AdminError::Csv { line, message: format!("no operator named {name}") })?;
            let holder = index
                .range_holder(npdb::key_of(&msisdn))
                .ok_or_else(|| AdminError::Csv { line, message: format!("{msisdn} is in no number range") })?;
            if holder == op {
                report.range_holder += 1;
                continue;
            }
            let info = &ops[op as usize];
            batch.push((msisdn, info.id, info.routing_number.clone()));
        }
        if batch.len() >= IMPORT_BATCH || (!more && !batch.is_empty()) {
            // A number listed twice in one batch keeps its last line (one row per statement).
            batch.reverse();
            let mut seen = std::collections::HashSet::with_capacity(batch.len());
            batch.retain(|(m, _, _)| seen.insert(m.clone()));
            batch.reverse();
            let mut tx = db.begin().await?;
            routing::import_ported(&mut tx, &batch, now).await?;
            audit::append(
                &mut tx,
                now,
                "admin",
                "ported_imported",
                None,
                None,
                None,
                &json!({ "numbers": batch.len(), "up_to_line": lines }).to_string(),
            )
            .await?;
            tx.commit().await?;
            report.imported += batch.len() as u64;
            batch.clear();
            progress(lines);
        }
        if !more {
            return Ok(report);
        }
    }
}
