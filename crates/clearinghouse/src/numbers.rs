//! Numbers (status, return on termination) and the operator's own views: settlement account,
//! violations, inbox.

use crate::store::{audit, ledger, orders, outbox, ranges, routing};
use clearinghouse_api::model::{Account, NumberReturned, NumberStatus, StatementLine, Violation};
use clearinghouse_api::{Envelope, Message};
use numport_core::Msisdn;
use numport_core::porting::ChangeKind;
use numport_db::Connection;
use serde_json::json;

use crate::Clearinghouse;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::porting::enqueue;

impl Clearinghouse {
    /// Who serves a number now. Every operator may ask: routing data is shared by design (F2).
    pub async fn number_status(&self, conn: &mut Connection, msisdn: &Msisdn) -> Result<NumberStatus> {
        let holder_id = ranges::holder_of(conn, msisdn).await?.ok_or(Error::NotFound("number range"))?;
        let ported = routing::ported_to(conn, msisdn).await?;
        let holder = self.operator(conn, holder_id).await?;
        let serving = match ported {
            Some(id) => self.operator(conn, id).await?,
            None => holder.clone(),
        };
        Ok(NumberStatus {
            msisdn: msisdn.clone(),
            serving_operator: serving.name.clone(),
            routing_number: serving.routing_number.to_string(),
            range_holder: holder.name.clone(),
            ported: ported.is_some(),
        })
    }

    /// The serving operator terminated a ported number: it goes back to its range holder.
    pub async fn return_number(
        &self,
        conn: &mut Connection,
        caller: &Caller,
        msisdn: &Msisdn,
    ) -> Result<NumberReturned> {
        let now = self.now();
        let serving = routing::ported_to(conn, msisdn).await?;
        if serving != Some(caller.operator_id) {
            return Err(Error::Forbidden("only the operator serving a ported number can return it".into()));
        }
        if orders::open_order_for(conn, msisdn).await?.is_some() {
            return Err(Error::conflict("port_in_progress", "the number has an open porting order"));
        }
        let holder_id = ranges::holder_of(conn, msisdn).await?.ok_or(Error::NotFound("number range"))?;
        let holder = self.operator(conn, holder_id).await?;
        audit::append(
            conn,
            now,
            &caller.actor(),
            "number_returned",
            None,
            None,
            None,
            &json!({ "msisdn": msisdn, "to": holder.name }).to_string(),
        )
        .await?;
        // No longer ported, with its change log entry.
        let head = routing::lock_head(conn).await?.last_seq(conn).await?;
        let change = routing::NewChange {
            msisdn,
            operator_id: holder.id,
            routing_number: &holder.routing_number,
            kind: ChangeKind::Return,
            order_id: None,
            at: now,
        };
        routing::record_changes(conn, head, &[change]).await?;
        let seq = head + 1;
        self.note_feed_seq(seq);
        let msg = Message::NumberReturned { msisdn: msisdn.clone(), from: caller.name.clone(), seq };
        enqueue(conn, holder.id, &msg, now).await?;
        Ok(NumberReturned { msisdn: msisdn.clone(), range_holder: holder.name.clone(), seq })
    }

    pub async fn account(&self, conn: &mut Connection, caller: &Caller) -> Result<Account> {
        let (id, balance) = ledger::operator_account(conn, caller.operator_id).await?;
        let statement = ledger::statement(conn, id, 100)
            .await?
            .into_iter()
            .map(|l| StatementLine {
                journal_id: l.journal_id,
                kind: l.kind,
                order_id: l.order_id,
                amount: l.amount,
                at: l.at,
            })
            .collect();
        Ok(Account { operator: caller.name.clone(), balance, statement })
    }

    pub async fn violations(
        &self,
        conn: &mut Connection,
        operator_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Violation>> {
        Ok(orders::violations(conn, operator_id, limit)
            .await?
            .into_iter()
            .map(|v| Violation {
                id: v.id,
                operator: v.operator,
                kind: v.kind,
                order_id: v.order_id,
                step: v.step,
                deadline_at: v.deadline_at,
                recorded_at: v.recorded_at,
                lateness_ms: v.lateness_ms,
            })
            .collect())
    }

    pub async fn inbox(&self, conn: &mut Connection, caller: &Caller, after: i64, limit: i64) -> Result<Vec<Envelope>> {
        outbox::inbox(conn, caller.operator_id, after, limit.clamp(1, 1000))
            .await?
            .into_iter()
            .map(|m| envelope(&m))
            .collect()
    }
}

/// The wire form of an outbox row.
pub fn envelope(m: &outbox::Message) -> Result<Envelope> {
    let message: Message = serde_json::from_str(&m.body)
        .map_err(|e| Error::Store(numport_db::StoreError::Corrupt(format!("message {}: {e}", m.id))))?;
    Ok(Envelope { id: m.id, created_at: m.created_at, message })
}
