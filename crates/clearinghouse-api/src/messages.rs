//! What the clearinghouse tells operators. Each message is one outbox row; it reaches the
//! operator as a signed callback (`POST` of an [`Envelope`], or of an array of them when several
//! are due at once, to its callback URL) and stays readable from `GET /v1/inbox`.

use numport_core::openapi::UnixMillis;
use numport_core::porting::{CreditInfo, OrderState, Reason};
use numport_core::{Millis, Money, Msisdn, OperatorName};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A message with its outbox id, which receivers use to drop duplicates and replays. Ids only
/// increase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": 1017, "created_at": 1767225630000_i64,
    "message": {"kind": "credit_query", "order_id": 42, "msisdn": "4790000001", "recipient": "opb",
                "deadline_at": 1767225660000_i64}
}))]
pub struct Envelope {
    /// Outbox id, unique; the same as `x-numport-message-id` on a callback.
    pub id: i64,
    #[schema(value_type = UnixMillis)]
    pub created_at: Millis,
    pub message: Message,
}

/// The body of a callback: one envelope, or several due at once (signed and acknowledged as a
/// whole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CallbackBody {
    One(Envelope),
    Many(Vec<Envelope>),
}

/// What the clearinghouse tells an operator, tagged by `kind`. Receivers should ignore kinds
/// they do not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// To the donor: an order waits for its deposit of the expected proof (F1 step 2). Answer
    /// with `POST /v1/deposits` before `deadline_at`, else the order fails (`deposit_timeout`)
    /// and the donor is charged a violation.
    DepositRequested {
        order_id: i64,
        msisdn: Msisdn,
        nonce: String,
        recipient: OperatorName,
        /// End of the terminal proof's validity.
        #[schema(value_type = UnixMillis)]
        expiry: Millis,
        #[schema(value_type = UnixMillis)]
        deadline_at: Millis,
    },
    /// To the donor: the terminal is verified; answer with its credit information (step 3) via
    /// `POST /v1/porting-orders/{id}/credit-information` before `deadline_at`, else the order
    /// goes on with zero figures, and the donor forfeits compensation and is charged a violation.
    CreditQuery {
        order_id: i64,
        msisdn: Msisdn,
        recipient: OperatorName,
        #[schema(value_type = UnixMillis)]
        deadline_at: Millis,
    },
    /// To the recipient: the donor's credit information and the compensation it implies (step 4).
    /// Decide with `POST /v1/porting-orders/{id}/decision` before `deadline_at`, else the order
    /// fails (`decision_timeout`) and the recipient is charged a violation.
    CreditInformation {
        order_id: i64,
        msisdn: Msisdn,
        donor: OperatorName,
        credit: CreditInfo,
        /// `max(0, arrears + unbilled_usage + contract_remaining − deposit_held)`: the amount to
        /// confirm on acceptance.
        compensation: Money,
        /// True when the donor missed its deadline and the figures are the zero default.
        donor_defaulted: bool,
        #[schema(value_type = UnixMillis)]
        deadline_at: Millis,
    },
    /// To the donor: the recipient accepted and the compensation is settled (step 5 and 6); the
    /// donor's account was credited.
    CompensationConfirmed { order_id: i64, msisdn: Msisdn, recipient: OperatorName, compensation: Money },
    /// To the recipient: the number is now routed to it (step 6).
    PortCompleted { order_id: i64, msisdn: Msisdn, donor: OperatorName, routing_number: String, seq: i64 },
    /// To both parties: the order ended without a port.
    OrderClosed { order_id: i64, msisdn: Msisdn, state: OrderState, reason: Reason },
    /// To the range holder: a ported number was terminated and is back in its range.
    NumberReturned { msisdn: Msisdn, from: OperatorName, seq: i64 },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::DepositRequested { .. } => "deposit_requested",
            Message::CreditQuery { .. } => "credit_query",
            Message::CreditInformation { .. } => "credit_information",
            Message::CompensationConfirmed { .. } => "compensation_confirmed",
            Message::PortCompleted { .. } => "port_completed",
            Message::OrderClosed { .. } => "order_closed",
            Message::NumberReturned { .. } => "number_returned",
        }
    }

    pub fn order_id(&self) -> Option<i64> {
        match self {
            Message::DepositRequested { order_id, .. }
            | Message::CreditQuery { order_id, .. }
            | Message::CreditInformation { order_id, .. }
            | Message::CompensationConfirmed { order_id, .. }
            | Message::PortCompleted { order_id, .. }
            | Message::OrderClosed { order_id, .. } => Some(*order_id),
            Message::NumberReturned { .. } => None,
        }
    }
}
