//! Request and response bodies of the clearinghouse API.

use numport_core::porting::{CreditInfo, OrderKind, OrderState, Reason};
use numport_core::{Millis, Money, Msisdn, OperatorName};
use serde::{Deserialize, Serialize};

/// F1 step 1: the recipient's terminal verification request, which opens a porting order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortingRequest {
    pub msisdn: Msisdn,
    /// The terminal's single-use random number, 16 bytes in hex.
    pub nonce: String,
    /// End of the proof's validity (Unix ms), chosen by the terminal and bound into the proof.
    pub expiry: Millis,
    /// HMAC-SHA256 proof from the terminal, 32 bytes in hex.
    pub proof: String,
}

/// F1 step 2: the donor deposits the proof it expects for a nonce the terminal gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    pub msisdn: Msisdn,
    pub nonce: String,
    pub proof: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositAccepted {
    /// The order the deposit was matched against, if one was already waiting.
    pub order_id: Option<i64>,
}

/// F1 step 4: the donor's answer to the credit query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditInformationRequest {
    pub credit: CreditInfo,
}

/// F1 step 5: the recipient takes the subscriber and pays, or refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub accept: bool,
    /// On acceptance, the compensation the recipient agrees to pay; it must equal what the
    /// credit information implies, so that nobody pays what they did not see.
    #[serde(default)]
    pub compensation: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// True when the recipient relays the subscriber's own withdrawal.
    #[serde(default)]
    pub by_subscriber: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    /// Where the clearinghouse POSTs this operator's messages; `null` to poll the inbox only.
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Every message with an id up to this one has been processed.
    pub up_to: i64,
}

/// A porting order as an operator party to it sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: i64,
    pub msisdn: Msisdn,
    pub kind: OrderKind,
    pub recipient: OperatorName,
    pub donor: Option<OperatorName>,
    pub state: OrderState,
    pub reason: Option<Reason>,
    pub expiry: Millis,
    /// Deadline of the current step (Unix ms), while the order is open.
    pub deadline_at: Option<Millis>,
    pub credit: Option<CreditInfo>,
    pub compensation: Option<Money>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub completed_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderList {
    pub orders: Vec<Order>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTrail {
    pub order_id: i64,
    pub entries: Vec<AuditEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    pub journal_id: i64,
    pub kind: String,
    pub order_id: Option<i64>,
    pub amount: Money,
    pub at: Millis,
}

/// An operator's settlement account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub operator: OperatorName,
    pub balance: Money,
    pub statement: Vec<StatementLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub id: i64,
    pub operator: OperatorName,
    pub order_id: i64,
    /// The state whose deadline was missed.
    pub step: OrderState,
    pub deadline_at: Millis,
    pub recorded_at: Millis,
    pub lateness_ms: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationList {
    pub violations: Vec<Violation>,
}

/// A message as read from the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inbox {
    pub messages: Vec<crate::messages::Envelope>,
}

/// Who serves a number now, per the clearinghouse's authoritative record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberStatus {
    pub msisdn: Msisdn,
    pub serving_operator: OperatorName,
    pub routing_number: String,
    pub range_holder: OperatorName,
    pub ported: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberReturned {
    pub msisdn: Msisdn,
    pub range_holder: OperatorName,
    pub seq: i64,
}

/// Every error the API returns: a stable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub message: String,
}

/// One entry of the routing change log (F2): who serves a number from `seq` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingChange {
    pub seq: i64,
    pub msisdn: Msisdn,
    pub operator: OperatorName,
    pub routing_number: String,
    pub kind: numport_core::porting::ChangeKind,
    pub effective_at: Millis,
}

/// A page of the change log after the sequence number asked for, and the log's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePage {
    pub changes: Vec<RoutingChange>,
    /// The last sequence number written; a follower is up to date once it has applied it.
    pub head: i64,
    /// Version of the number ranges. The feed carries numbers, not ranges: a follower whose
    /// snapshot has another version reloads the snapshot.
    #[serde(default)]
    pub ranges_version: i64,
}
