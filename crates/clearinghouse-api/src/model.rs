//! Request and response bodies of the clearinghouse API.
//!
//! Each derives `utoipa::ToSchema`: the OpenAPI document's schemas are generated from these
//! types and their doc comments, so a field changed here changes the document. A [`Millis`]
//! field is documented as the `Millis` schema (`value_type = UnixMillis`).

use numport_core::openapi::UnixMillis;
use numport_core::porting::{CreditInfo, DeclineReason, OrderKind, OrderState, Reason, ViolationKind};
use numport_core::{Millis, Money, Msisdn, OperatorName, RoutingNumber};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// F1 step 1: the recipient's terminal verification request, which opens a porting order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "msisdn": "4790000001",
    "nonce": "00112233445566778899aabbccddeeff",
    "expiry": 1767226500000_i64,
    "proof": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
}))]
pub struct PortingRequest {
    pub msisdn: Msisdn,
    /// The terminal's single-use random number, 16 bytes in hex.
    #[schema(pattern = "^[0-9a-fA-F]{32}$", example = "00112233445566778899aabbccddeeff")]
    pub nonce: String,
    /// End of the proof's validity (Unix ms), chosen by the terminal and bound into the proof.
    /// Must be in the future and not too far ahead (by default at most 15 minutes), else the
    /// order is `rejected` / `proof_expired`.
    #[schema(value_type = UnixMillis)]
    pub expiry: Millis,
    /// HMAC-SHA256 proof from the terminal, 32 bytes in hex.
    #[schema(
        pattern = "^[0-9a-fA-F]{64}$",
        example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    )]
    pub proof: String,
}

/// F1 step 2: the donor deposits the proof it expects for a nonce the terminal gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    pub msisdn: Msisdn,
    /// The terminal's nonce, 16 bytes in hex (answered in lower case).
    #[schema(pattern = "^[0-9a-fA-F]{32}$", example = "00112233445566778899aabbccddeeff")]
    pub nonce: String,
    /// The proof the donor computed with the subscriber's key, 32 bytes in hex.
    #[schema(
        pattern = "^[0-9a-fA-F]{64}$",
        example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    )]
    pub proof: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DepositAccepted {
    /// The order the deposit was matched against, if one was already waiting; `null` if the
    /// deposit waits for the recipient's request.
    pub order_id: Option<i64>,
}

/// F1 step 4: the donor's answer to the credit query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditInformationRequest {
    pub credit: CreditInfo,
}

/// F1 step 5: the recipient takes the subscriber and pays, or refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"accept": true, "compensation": 34450}))]
pub struct DecisionRequest {
    /// `true` to take the subscriber and pay the compensation, `false` to refuse.
    pub accept: bool,
    /// Required on acceptance: the compensation the recipient agrees to pay. It must equal what
    /// the credit information implies (the order's `compensation`), so that nobody pays what
    /// they did not see; otherwise 422 `compensation_mismatch`. Ignored on refusal.
    #[serde(default)]
    pub compensation: Option<Money>,
}

/// The donor declines an order awaiting its deposit: it cannot deposit a proof for this
/// number, and says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "unknown_subscriber"}))]
pub struct DeclineRequest {
    /// The order ends `rejected` with this code as its `reason`.
    pub reason: DeclineReason,
}

/// Withdraws an order; an empty body means `{"by_subscriber": false}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"by_subscriber": true}))]
pub struct CancelRequest {
    /// True when the recipient relays the subscriber's own withdrawal (reason
    /// `cancelled_by_subscriber`), else the reason is `cancelled_by_recipient`.
    #[serde(default)]
    pub by_subscriber: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://opb.example.net/numport/callback"}))]
pub struct CallbackRequest {
    /// Where the clearinghouse POSTs this operator's messages (an `http://` or `https://` URL of
    /// at most 2048 characters); `null` (or omitted) to poll the inbox only.
    #[schema(max_length = 2048, format = "uri")]
    pub url: Option<String>,
}

/// The answer to `PUT /v1/operators/me/callback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallbackSet {
    /// The callback URL now registered, or `null`.
    pub callback_url: Option<String>,
}

/// The answer to `GET /v1/operators/me/callback`: the registered URL and whether the
/// clearinghouse can deliver to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"callback_url": "https://opb.example.net/numport/callback", "undelivered": 2,
    "last_error": "callback failed: error sending request"}))]
pub struct CallbackStatus {
    /// The callback URL registered, or `null`.
    pub callback_url: Option<String>,
    /// Messages for the operator delivered neither by callback nor acknowledged from the inbox.
    pub undelivered: i64,
    /// Why the latest failed attempt among those failed (unreachable, TLS refused, an error
    /// status); `null` when none has failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"up_to": 1017}))]
pub struct AckRequest {
    /// Every message with an id up to and including this one has been processed: stop calling
    /// back about them.
    pub up_to: i64,
}

/// The answer to `POST /v1/inbox/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AckResult {
    /// How many messages were newly marked delivered (no longer called back about).
    pub acknowledged: u64,
}

/// A porting order as an operator party to it sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": 42, "msisdn": "4790000001", "kind": "port", "recipient": "opb", "donor": "opa",
    "state": "awaiting_decision", "reason": null, "expiry": 1767226500000_i64,
    "deadline_at": 1767225690000_i64,
    "credit": {"arrears": 12000, "unbilled_usage": 3450, "contract_remaining": 24000, "deposit_held": 5000},
    "compensation": 34450, "created_at": 1767225600000_i64, "updated_at": 1767225630000_i64,
    "completed_at": null
}))]
pub struct Order {
    pub id: i64,
    pub msisdn: Msisdn,
    pub kind: OrderKind,
    /// The operator that wants the subscriber (and pays).
    pub recipient: OperatorName,
    /// The operator serving the number when the order was opened; `null` when the number is in
    /// no known range.
    pub donor: Option<OperatorName>,
    pub state: OrderState,
    /// Why the order ended; set for every terminal state but `completed`, else `null`.
    pub reason: Option<Reason>,
    /// End of the terminal proof's validity.
    #[schema(value_type = UnixMillis)]
    pub expiry: Millis,
    /// Deadline of the current step (Unix ms) while the order is open; `null` once terminal.
    #[schema(value_type = Option<UnixMillis>)]
    pub deadline_at: Option<Millis>,
    /// The donor's credit information once given (all zero if the donor missed its deadline).
    pub credit: Option<CreditInfo>,
    /// The compensation the credit information implies, once known.
    pub compensation: Option<Money>,
    #[schema(value_type = UnixMillis)]
    pub created_at: Millis,
    #[schema(value_type = UnixMillis)]
    pub updated_at: Millis,
    /// When the order reached `completed`.
    #[schema(value_type = Option<UnixMillis>)]
    pub completed_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderList {
    /// Newest first.
    pub orders: Vec<Order>,
}

/// One recorded action on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    #[schema(value_type = UnixMillis)]
    pub at: Millis,
    /// Who acted: `operator:<name>`, `supervisor` (deadline rule) or `clearinghouse`.
    #[schema(example = "operator:opb")]
    pub actor: String,
    /// What happened, e.g. `order_requested`, `proof_deposited`, `state_changed`.
    #[schema(example = "state_changed")]
    pub action: String,
    /// The order state before, for state changes (an `OrderState` value).
    pub from_state: Option<String>,
    /// The order state after (an `OrderState` value).
    pub to_state: Option<String>,
    /// Action-specific details (any JSON value), e.g. `{"reason": …, "violation": …, "credit": …}`
    /// for a state change.
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditTrail {
    pub order_id: i64,
    /// Oldest first.
    pub entries: Vec<AuditEntry>,
}

/// One posting to the operator's settlement account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatementLine {
    /// The balanced journal entry this posting belongs to.
    pub journal_id: i64,
    /// The business event: `compensation` (a settled port) or `funding` (money paid in by the
    /// portability center).
    #[schema(example = "compensation")]
    pub kind: String,
    /// The porting order, for compensation.
    pub order_id: Option<i64>,
    /// Positive credits the account, negative debits it.
    pub amount: Money,
    #[schema(value_type = UnixMillis)]
    pub at: Millis,
}

/// An operator's settlement account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub operator: OperatorName,
    /// Current balance.
    pub balance: Money,
    /// The latest postings (up to 100), newest first.
    pub statement: Vec<StatementLine>,
}

/// What the operator was charged with (supervision, F1): a deadline it missed, a request after
/// too many failed verifications, or a deposit held responsible for a failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Violation {
    pub id: i64,
    pub operator: OperatorName,
    pub kind: ViolationKind,
    pub order_id: i64,
    /// The state the order was in: for a missed deadline, the state whose deadline it was
    /// (`awaiting_deposit`, `awaiting_credit_info` or `awaiting_decision`).
    pub step: OrderState,
    /// The deadline missed; for the other kinds, when the offence happened.
    #[schema(value_type = UnixMillis)]
    pub deadline_at: Millis,
    #[schema(value_type = UnixMillis)]
    pub recorded_at: Millis,
    /// How late, in milliseconds, when the violation was recorded.
    #[schema(value_type = i64, minimum = 0)]
    pub lateness_ms: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ViolationList {
    /// Newest first.
    pub violations: Vec<Violation>,
}

/// Messages as read from the inbox, in ascending id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Inbox {
    pub messages: Vec<crate::messages::Envelope>,
}

/// Who serves a number now, per the clearinghouse's authoritative record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NumberStatus {
    pub msisdn: Msisdn,
    pub serving_operator: OperatorName,
    /// The serving operator's routing number (RFC 4694 `rn`, 1–10 upper-case hex digits).
    #[schema(pattern = "^[0-9A-F]{1,10}$", example = "D012")]
    pub routing_number: String,
    /// The operator holding the number range.
    pub range_holder: OperatorName,
    /// True when the number is served by an operator other than its range holder.
    pub ported: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NumberReturned {
    pub msisdn: Msisdn,
    /// The operator now serving the number again.
    pub range_holder: OperatorName,
    /// Sequence number of the change in the routing change log (F2).
    pub seq: i64,
}

/// Every error the API returns: a stable machine code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// Stable error code, e.g. `unauthorized`, `not_found`, `invalid_state`.
    #[schema(example = "invalid_state")]
    pub error: String,
    /// Human-readable explanation; not for parsing.
    pub message: String,
}

/// One entry of the routing change log (F2): who serves a number from `seq` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoutingChange {
    /// Gap-free sequence number, in commit order.
    pub seq: i64,
    pub msisdn: Msisdn,
    pub operator: OperatorName,
    /// The serving operator's routing number (RFC 4694 `rn`, 1–10 upper-case hex digits).
    /// Typed, so that a page carrying anything else is refused as it is read: a replica writes
    /// it into its journal's comma-separated lines.
    #[schema(value_type = String, pattern = "^[0-9A-F]{1,10}$", example = "D012")]
    pub routing_number: RoutingNumber,
    pub kind: numport_core::porting::ChangeKind,
    #[schema(value_type = UnixMillis)]
    pub effective_at: Millis,
}

/// A page of the change log after the sequence number asked for, and the log's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChangePage {
    pub changes: Vec<RoutingChange>,
    /// The last sequence number written; a follower is up to date once it has applied it.
    pub head: i64,
    /// Version of the number ranges, bumped whenever ranges are loaded. The feed carries
    /// numbers, not ranges: a follower whose snapshot has another version reloads the snapshot.
    #[serde(default)]
    pub ranges_version: i64,
}
