//! What the clearinghouse tells operators. Each message is one outbox row; it reaches the
//! operator as a signed callback (`POST` of an [`Envelope`], or of an array of them when several
//! are due at once, to its callback URL) and stays readable from `GET /v1/inbox`.

use numport_core::porting::{CreditInfo, OrderState, Reason};
use numport_core::{Millis, Money, Msisdn, OperatorName};
use serde::{Deserialize, Serialize};

/// A message with its outbox id, which receivers use to drop duplicates and replays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: i64,
    pub created_at: Millis,
    pub message: Message,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// To the donor: an order waits for its deposit of the expected proof (F1 step 2).
    DepositRequested {
        order_id: i64,
        msisdn: Msisdn,
        nonce: String,
        recipient: OperatorName,
        expiry: Millis,
        deadline_at: Millis,
    },
    /// To the donor: the terminal is verified; answer with its credit information (step 3).
    CreditQuery { order_id: i64, msisdn: Msisdn, recipient: OperatorName, deadline_at: Millis },
    /// To the recipient: the donor's credit information and the compensation it implies (step 4).
    CreditInformation {
        order_id: i64,
        msisdn: Msisdn,
        donor: OperatorName,
        credit: CreditInfo,
        compensation: Money,
        /// True when the donor missed its deadline and the figures are the zero default.
        donor_defaulted: bool,
        deadline_at: Millis,
    },
    /// To the donor: the recipient accepted and the compensation is settled (step 5 and 6).
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
