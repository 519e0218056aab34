//! Subscriber accounts: what the donor needs to prove a port request and answer a credit query.
//!
//! The port key is the derived key `K` of `numport_core::proof` (hex), never the PIN. The four
//! figures of a credit query are kept per subscriber in minor units; charging and billing will
//! maintain them later, today they are loaded (CSV) or written by tests.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use numport_core::porting::{CreditInfo, UnknownCode};
use numport_core::proof::PortKey;
use numport_core::{Millis, Money, Msisdn};
use numport_db::sql::{self, Row};

use super::{Backend, OperatorStore, parse_col};
use crate::OperatorError;

/// Whether this node serves the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriberStatus {
    Active,
    /// Ported to another operator; the row stays for the final bill and the audit.
    PortedOut,
}

impl SubscriberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberStatus::Active => "active",
            SubscriberStatus::PortedOut => "ported_out",
        }
    }
}

impl fmt::Display for SubscriberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriberStatus {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(SubscriberStatus::Active),
            "ported_out" => Ok(SubscriberStatus::PortedOut),
            _ => Err(UnknownCode { kind: "subscriber status", value: s.to_owned() }),
        }
    }
}

/// One subscriber account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub msisdn: Msisdn,
    /// `K`, from which the donor computes the expected terminal proof; `None` until provisioned.
    pub port_key: Option<PortKey>,
    /// Billed and unpaid.
    pub arrears: Money,
    /// Used but not yet billed.
    pub unbilled_usage: Money,
    /// What the rest of a fixed-term contract would pay.
    pub contract_remaining: Money,
    /// Deposit held for the subscriber.
    pub deposit_held: Money,
    pub status: SubscriberStatus,
    pub updated_at: Millis,
}

impl Subscriber {
    /// An active subscriber with zero balances and no port key: what a port-in creates.
    pub fn new(msisdn: Msisdn, now: Millis) -> Subscriber {
        Subscriber {
            msisdn,
            port_key: None,
            arrears: Money::ZERO,
            unbilled_usage: Money::ZERO,
            contract_remaining: Money::ZERO,
            deposit_held: Money::ZERO,
            status: SubscriberStatus::Active,
            updated_at: now,
        }
    }

    /// The answer to a credit query. Negative figures (a credit balance) are reported as zero,
    /// because the clearinghouse refuses negative credit information.
    pub fn credit_info(&self) -> CreditInfo {
        let clamp = |m: Money| Money(m.0.max(0));
        CreditInfo {
            arrears: clamp(self.arrears),
            unbilled_usage: clamp(self.unbilled_usage),
            contract_remaining: clamp(self.contract_remaining),
            deposit_held: clamp(self.deposit_held),
        }
    }
}

const COLUMNS: &str = "msisdn, port_key, arrears, unbilled_usage, contract_remaining, deposit_held, status, updated_at";

const UPSERT_TAIL: &str = " ON CONFLICT (msisdn) DO UPDATE SET port_key = excluded.port_key, \
     arrears = excluded.arrears, unbilled_usage = excluded.unbilled_usage, \
     contract_remaining = excluded.contract_remaining, deposit_held = excluded.deposit_held, \
     status = excluded.status, updated_at = excluded.updated_at";

/// Rows per INSERT in bulk writes (8 parameters each). On PostgreSQL each statement is a round
/// trip, so a statement takes many rows; on SQLite a statement costs only its own work, and a
/// small one is prepared once for every full chunk.
fn batch_rows(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 16,
        Backend::Postgres => 128,
    }
}

fn subscriber_row(r: &Row) -> Result<Subscriber, OperatorError> {
    let msisdn: String = r.try_get("msisdn")?;
    let port_key: Option<String> = r.try_get("port_key")?;
    let status: String = r.try_get("status")?;
    Ok(Subscriber {
        msisdn: parse_col("msisdn", &msisdn)?,
        port_key: port_key
            .map(|k| PortKey::from_hex(&k).map_err(|e| OperatorError::Corrupt(format!("port key of {msisdn}: {e}"))))
            .transpose()?,
        arrears: Money(r.try_get("arrears")?),
        unbilled_usage: Money(r.try_get("unbilled_usage")?),
        contract_remaining: Money(r.try_get("contract_remaining")?),
        deposit_held: Money(r.try_get("deposit_held")?),
        status: parse_col("subscriber status", &status)?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn values_placeholders(rows: usize) -> String {
    (0..rows)
        .map(|i| {
            let b = i * 8;
            format!("(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl OperatorStore {
    /// Insert the subscriber, or replace every field of the existing row.
    pub async fn upsert_subscriber(&self, s: &Subscriber) -> Result<(), OperatorError> {
        self.upsert_subscribers(std::slice::from_ref(s)).await.map(|_| ())
    }

    /// Insert or replace many subscribers in one transaction (bulk load), in multi-row batches.
    /// When a number appears twice, the later entry wins. Returns the rows written.
    pub async fn upsert_subscribers(&self, subs: &[Subscriber]) -> Result<u64, OperatorError> {
        // PostgreSQL refuses to update one row twice in a statement: keep the last of each number.
        let mut last: HashMap<&Msisdn, usize> = HashMap::with_capacity(subs.len());
        for (i, s) in subs.iter().enumerate() {
            last.insert(&s.msisdn, i);
        }
        let unique: Vec<&Subscriber> =
            subs.iter().enumerate().filter(|(i, s)| last.get(&s.msisdn) == Some(i)).map(|(_, s)| s).collect();
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let mut written = 0;
        for chunk in unique.chunks(batch_rows(self.backend)) {
            let sql =
                format!("INSERT INTO subscribers ({COLUMNS}) VALUES {}{UPSERT_TAIL}", values_placeholders(chunk.len()));
            let mut q = sql::query(&sql);
            for s in chunk {
                q = q
                    .bind(s.msisdn.as_str())
                    .bind(s.port_key.as_ref().map(PortKey::to_hex))
                    .bind(s.arrears.0)
                    .bind(s.unbilled_usage.0)
                    .bind(s.contract_remaining.0)
                    .bind(s.deposit_held.0)
                    .bind(s.status.as_str())
                    .bind(s.updated_at);
            }
            written += q.execute(&mut tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    pub async fn subscriber(&self, msisdn: &Msisdn) -> Result<Option<Subscriber>, OperatorError> {
        let row = sql::query(&format!("SELECT {COLUMNS} FROM subscribers WHERE msisdn = $1"))
            .bind(msisdn.as_str())
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(subscriber_row).transpose()
    }

    /// Change a subscriber's status; false if the number has no account here.
    pub async fn set_subscriber_status(
        &self,
        msisdn: &Msisdn,
        status: SubscriberStatus,
        now: Millis,
    ) -> Result<bool, OperatorError> {
        let r = sql::query("UPDATE subscribers SET status = $1, updated_at = $2 WHERE msisdn = $3")
            .bind(status.as_str())
            .bind(now)
            .bind(msisdn.as_str())
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn subscriber_count(&self) -> Result<i64, OperatorError> {
        Ok(sql::query_scalar("SELECT COUNT(*) FROM subscribers").fetch_one(&mut *self.conn().await?).await?)
    }

    /// Load subscribers from CSV (`msisdn,port_key,arrears,unbilled_usage,contract_remaining,
    /// deposit_held`; a header line is optional; an empty port key means none) as active
    /// accounts, all in one transaction: a bad line imports nothing. Returns the rows written.
    pub async fn import_subscribers_csv<R: std::io::Read>(&self, reader: R, now: Millis) -> Result<u64, OperatorError> {
        let subs = parse_subscribers_csv(reader, now)?;
        self.upsert_subscribers(&subs).await
    }
}

/// Parse the subscriber CSV of [`OperatorStore::import_subscribers_csv`].
pub fn parse_subscribers_csv<R: std::io::Read>(reader: R, now: Millis) -> Result<Vec<Subscriber>, OperatorError> {
    let mut rdr =
        csv::ReaderBuilder::new().has_headers(false).trim(csv::Trim::All).comment(Some(b'#')).from_reader(reader);
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = |rec: Option<&csv::StringRecord>| rec.and_then(|r| r.position()).map_or(i as u64 + 1, |p| p.line());
        let rec = rec.map_err(|e| OperatorError::Import {
            line: e.position().map_or(i as u64 + 1, |p| p.line()),
            message: e.to_string(),
        })?;
        let bad = |message: String| OperatorError::Import { line: line(Some(&rec)), message };
        if i == 0 && rec.get(0) == Some("msisdn") {
            continue;
        }
        if rec.len() != 6 {
            return Err(bad(format!("expected 6 columns, found {}", rec.len())));
        }
        let field = |n: usize| rec.get(n).unwrap_or_default();
        let msisdn: Msisdn = field(0).parse().map_err(|e| bad(format!("msisdn: {e}")))?;
        let port_key = match field(1) {
            "" => None,
            k => Some(PortKey::from_hex(k).map_err(|e| bad(e.to_string()))?),
        };
        let money = |n: usize, what: &str| field(n).parse::<i64>().map(Money).map_err(|e| bad(format!("{what}: {e}")));
        out.push(Subscriber {
            msisdn,
            port_key,
            arrears: money(2, "arrears")?,
            unbilled_usage: money(3, "unbilled_usage")?,
            contract_remaining: money(4, "contract_remaining")?,
            deposit_held: money(5, "deposit_held")?,
            status: SubscriberStatus::Active,
            updated_at: now,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_parses_with_and_without_header() {
        let key = "ab".repeat(32);
        let text = format!(
            "msisdn,port_key,arrears,unbilled_usage,contract_remaining,deposit_held\n\
             4790000001,{key},100,20,3000,500\n\
             # a comment\n\
             +4790000002,,0,0,0,0\n"
        );
        let subs = parse_subscribers_csv(text.as_bytes(), 7).unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].port_key.as_ref().map(PortKey::to_hex), Some(key));
        assert_eq!(subs[0].contract_remaining, Money(3000));
        assert_eq!(subs[1].msisdn.as_str(), "4790000002");
        assert_eq!(subs[1].port_key, None);
        assert_eq!(subs[1].updated_at, 7);

        let no_header = parse_subscribers_csv("4790000003,,1,2,3,4\n".as_bytes(), 0).unwrap();
        assert_eq!(no_header[0].deposit_held, Money(4));
    }

    #[test]
    fn csv_errors_name_the_line() {
        let err = parse_subscribers_csv("4790000001,,0,0,0,0\n4790000002,,x,0,0,0\n".as_bytes(), 0).unwrap_err();
        assert!(matches!(err, OperatorError::Import { line: 2, .. }), "{err}");
        let err = parse_subscribers_csv("12,,0,0,0,0\n".as_bytes(), 0).unwrap_err();
        assert!(matches!(err, OperatorError::Import { line: 1, .. }), "{err}");
        let err = parse_subscribers_csv("4790000001,zz,0,0,0,0\n".as_bytes(), 0).unwrap_err();
        assert!(matches!(err, OperatorError::Import { .. }), "{err}");
        let err = parse_subscribers_csv("4790000001,,0,0\n".as_bytes(), 0).unwrap_err();
        assert!(matches!(err, OperatorError::Import { .. }), "{err}");
    }

    #[test]
    fn credit_info_never_negative() {
        let mut s = Subscriber::new("4790000001".parse().unwrap(), 0);
        s.arrears = Money(-50);
        s.contract_remaining = Money(70);
        let c = s.credit_info();
        assert_eq!(c.arrears, Money(0));
        assert_eq!(c.contract_remaining, Money(70));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn placeholders_number_every_column() {
        assert_eq!(values_placeholders(2), "($1, $2, $3, $4, $5, $6, $7, $8), ($9, $10, $11, $12, $13, $14, $15, $16)");
    }
}
