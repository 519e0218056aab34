//! The porting order (SYSTEM.md F1): its states, reason codes, the donor's credit information,
//! the compensation it implies, and the one transition function every change goes through.
//!
//! ```text
//!  recipient's terminal verification request
//!        │
//!        ▼                deposit matches                credit information (or donor late:
//!  AwaitingDeposit ────────────────────────▶ AwaitingCreditInfo ── violation, empty credit info)
//!    │  │ mismatch → Rejected                               │
//!    │  │ donor declines → Rejected (its reason)            │
//!    │  │ donor late → Failed + violation                   ▼
//!    │  │                                          AwaitingDecision ── accept ──▶ Settling ── settled ──▶ Completed
//!    │  │                                                   │  refuse → Refused        │ funds gone → Rejected
//!    │  │                                                   │  no funds → Rejected
//!    │  │                                                   │  recipient late → Failed + violation
//!    └──┴── cancel (recipient, or subscriber via recipient) ┴──▶ Cancelled
//! ```
//!
//! An accepted order is `Settling` until the clearinghouse's settler moves the money, routes the
//! number and logs the change, for many orders in one transaction. It waits on nobody and has no
//! deadline, and it can no longer be cancelled: the recipient's acceptance is final. Only the
//! funds can still stop it, taken meanwhile by another settlement of the same recipient.
//!
//! The rule when a party misses a deadline (the "stated rule" of F1):
//! - donor declines before the deposit deadline, with a [`DeclineReason`] (no subscriber with
//!   that number, subscription not active, no port key): the order is **rejected** with that
//!   reason and nobody is charged. Only silence is a violation.
//! - donor late with the deposit: the terminal cannot be verified, so the order **fails**
//!   (`deposit_timeout`) and the donor is charged a violation; porting an unverified number would
//!   hand the number to whoever asked.
//! - donor late with the credit information: the order **goes on** without it; the donor is
//!   charged a violation and forfeits compensation (credit information all zero). A donor cannot
//!   stall a port by keeping silent.
//! - recipient late with its decision: the order **fails** (`decision_timeout`) and the recipient
//!   is charged a violation; nobody else can take the decision for it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::money::Money;

/// Where a porting order stands. The first three wait on one party, `Settling` on the
/// clearinghouse's settler; the last five are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    AwaitingDeposit,
    AwaitingCreditInfo,
    AwaitingDecision,
    Settling,
    Completed,
    Rejected,
    Refused,
    Cancelled,
    Failed,
}

/// The two operators of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Donor,
    Recipient,
}

/// What an operator is charged with (supervision, F1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// The operator let its step's deadline pass.
    DeadlineMissed,
    /// The operator, as requester, asked again after too many failed verifications.
    TooManyAttempts,
    /// The operator, as donor, deposited a proof that disagreed with the requester's, and its
    /// deposits for the number disagree with more than one requester.
    DepositMismatch,
}

impl ViolationKind {
    pub const ALL: [ViolationKind; 3] =
        [ViolationKind::DeadlineMissed, ViolationKind::TooManyAttempts, ViolationKind::DepositMismatch];

    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::DeadlineMissed => "deadline_missed",
            ViolationKind::TooManyAttempts => "too_many_attempts",
            ViolationKind::DepositMismatch => "deposit_mismatch",
        }
    }
}

impl FromStr for ViolationKind {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ViolationKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownCode { kind: "violation kind", value: s.to_owned() })
    }
}

impl OrderState {
    pub const ALL: [OrderState; 9] = [
        OrderState::AwaitingDeposit,
        OrderState::AwaitingCreditInfo,
        OrderState::AwaitingDecision,
        OrderState::Settling,
        OrderState::Completed,
        OrderState::Rejected,
        OrderState::Refused,
        OrderState::Cancelled,
        OrderState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::AwaitingDeposit => "awaiting_deposit",
            OrderState::AwaitingCreditInfo => "awaiting_credit_info",
            OrderState::AwaitingDecision => "awaiting_decision",
            OrderState::Settling => "settling",
            OrderState::Completed => "completed",
            OrderState::Rejected => "rejected",
            OrderState::Refused => "refused",
            OrderState::Cancelled => "cancelled",
            OrderState::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        self.waiting_on().is_none() && self != OrderState::Settling
    }

    /// The party whose answer the order waits for, and who is late if the deadline passes.
    pub fn waiting_on(self) -> Option<Party> {
        match self {
            OrderState::AwaitingDeposit | OrderState::AwaitingCreditInfo => Some(Party::Donor),
            OrderState::AwaitingDecision => Some(Party::Recipient),
            _ => None,
        }
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownCode {
    pub kind: &'static str,
    pub value: String,
}

impl FromStr for OrderState {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownCode { kind: "order state", value: s.to_owned() })
    }
}

/// Why an order ended anywhere but `completed`. The codes are part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No loaded number range holds the number.
    UnknownNumber,
    /// The recipient already serves the number.
    AlreadyServed,
    /// The recipient's proof differs from the donor's deposit.
    ProofMismatch,
    /// The proof's validity window has passed (or is too long).
    ProofExpired,
    /// This nonce was already used for this number.
    NonceReused,
    /// The requesting operator had too many failed verifications, of this number or in all,
    /// within the window; other operators may still ask.
    TooManyAttempts,
    /// Another order for the number is still open.
    PortInProgress,
    /// The number was ported less than the minimum interval ago.
    PortedTooRecently,
    /// The recipient's settlement account cannot pay the compensation.
    InsufficientFunds,
    /// The donor did not deposit the expected proof in time.
    DepositTimeout,
    /// The recipient did not accept or refuse in time.
    DecisionTimeout,
    /// The recipient refused to take the subscriber at the implied compensation.
    RefusedByRecipient,
    /// The recipient withdrew the order.
    CancelledByRecipient,
    /// The subscriber withdrew the order (relayed by the recipient).
    CancelledBySubscriber,
    /// The donor declined: it has no subscriber with this number.
    UnknownSubscriber,
    /// The donor declined: the number's subscription is not active (terminated, ported out).
    NumberNotActive,
    /// The donor declined: it holds no port key for the subscriber, so it cannot deposit.
    NoPortKey,
}

impl Reason {
    pub const ALL: [Reason; 17] = [
        Reason::UnknownNumber,
        Reason::AlreadyServed,
        Reason::ProofMismatch,
        Reason::ProofExpired,
        Reason::NonceReused,
        Reason::TooManyAttempts,
        Reason::PortInProgress,
        Reason::PortedTooRecently,
        Reason::InsufficientFunds,
        Reason::DepositTimeout,
        Reason::DecisionTimeout,
        Reason::RefusedByRecipient,
        Reason::CancelledByRecipient,
        Reason::CancelledBySubscriber,
        Reason::UnknownSubscriber,
        Reason::NumberNotActive,
        Reason::NoPortKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownNumber => "unknown_number",
            Reason::AlreadyServed => "already_served",
            Reason::ProofMismatch => "proof_mismatch",
            Reason::ProofExpired => "proof_expired",
            Reason::NonceReused => "nonce_reused",
            Reason::TooManyAttempts => "too_many_attempts",
            Reason::PortInProgress => "port_in_progress",
            Reason::PortedTooRecently => "ported_too_recently",
            Reason::InsufficientFunds => "insufficient_funds",
            Reason::DepositTimeout => "deposit_timeout",
            Reason::DecisionTimeout => "decision_timeout",
            Reason::RefusedByRecipient => "refused_by_recipient",
            Reason::CancelledByRecipient => "cancelled_by_recipient",
            Reason::CancelledBySubscriber => "cancelled_by_subscriber",
            Reason::UnknownSubscriber => "unknown_subscriber",
            Reason::NumberNotActive => "number_not_active",
            Reason::NoPortKey => "no_port_key",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownCode { kind: "reason", value: s.to_owned() })
    }
}

/// Why a donor declines an order awaiting its deposit: the codes a donor may give, each also a
/// [`Reason`] the order ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    /// The donor has no subscriber with this number.
    UnknownSubscriber,
    /// The subscription is not active (terminated, or ported out as far as the donor knows).
    NumberNotActive,
    /// The donor holds no port key for the subscriber, so it cannot compute the proof.
    NoPortKey,
}

impl DeclineReason {
    pub const ALL: [DeclineReason; 3] =
        [DeclineReason::UnknownSubscriber, DeclineReason::NumberNotActive, DeclineReason::NoPortKey];
}

impl From<DeclineReason> for Reason {
    fn from(d: DeclineReason) -> Reason {
        match d {
            DeclineReason::UnknownSubscriber => Reason::UnknownSubscriber,
            DeclineReason::NumberNotActive => Reason::NumberNotActive,
            DeclineReason::NoPortKey => Reason::NoPortKey,
        }
    }
}

/// Port to a new operator, or back to the operator holding the number's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    Port,
    PortBack,
}

impl OrderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::Port => "port",
            OrderKind::PortBack => "port_back",
        }
    }
}

impl FromStr for OrderKind {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "port" => Ok(OrderKind::Port),
            "port_back" => Ok(OrderKind::PortBack),
            _ => Err(UnknownCode { kind: "order kind", value: s.to_owned() }),
        }
    }
}

/// What moved a number, as published in the routing change log (F2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Ported to a new operator.
    Port,
    /// Ported back to the operator holding its range.
    PortBack,
    /// Terminated while ported: the number returns to its range holder.
    Return,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Port => "port",
            ChangeKind::PortBack => "port_back",
            ChangeKind::Return => "return",
        }
    }
}

impl FromStr for ChangeKind {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "port" => Ok(ChangeKind::Port),
            "port_back" => Ok(ChangeKind::PortBack),
            "return" => Ok(ChangeKind::Return),
            _ => Err(UnknownCode { kind: "change kind", value: s.to_owned() }),
        }
    }
}

/// What the donor says the subscriber still owes or has paid (F1 step 4). All in minor units,
/// none negative. The compensation it implies is
/// `max(0, arrears + unbilled_usage + contract_remaining − deposit_held)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(example = json!({"arrears": 12000, "unbilled_usage": 3450, "contract_remaining": 24000, "deposit_held": 5000}))
)]
pub struct CreditInfo {
    /// Billed and unpaid.
    pub arrears: Money,
    /// Used but not yet billed.
    pub unbilled_usage: Money,
    /// What the rest of a fixed-term contract would have paid.
    pub contract_remaining: Money,
    /// A deposit the donor holds for the subscriber, set against the rest.
    pub deposit_held: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credit information has a negative {0}")]
pub struct NegativeCredit(pub &'static str);

impl CreditInfo {
    /// Refuse negative figures: a donor may not push money to itself through a negative deposit.
    pub fn validate(&self) -> Result<(), NegativeCredit> {
        for (name, m) in [
            ("arrears", self.arrears),
            ("unbilled_usage", self.unbilled_usage),
            ("contract_remaining", self.contract_remaining),
            ("deposit_held", self.deposit_held),
        ] {
            if m.is_negative() {
                return Err(NegativeCredit(name));
            }
        }
        Ok(())
    }

    /// The compensation the recipient pays the donor:
    /// `max(0, arrears + unbilled_usage + contract_remaining − deposit_held)`, saturating.
    pub fn compensation(&self) -> Money {
        let owed = self.arrears.0.saturating_add(self.unbilled_usage.0).saturating_add(self.contract_remaining.0);
        Money(owed.saturating_sub(self.deposit_held.0).max(0))
    }
}

/// Something that happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The donor's deposit equals the recipient's proof.
    DepositMatched,
    /// The donor's deposit differs from the recipient's proof.
    DepositMismatched,
    /// The donor declined to deposit, with its reason.
    Declined(DeclineReason),
    /// The donor answered the credit query.
    CreditInformation(CreditInfo),
    /// The recipient accepted and its account covers the compensation.
    Accepted,
    /// The recipient accepted but its account cannot cover the compensation.
    AcceptedWithoutFunds,
    /// The settler moved the money and routed the number.
    Settled,
    /// At settlement the recipient's account no longer covered the compensation: another of
    /// its settlements, settled first, took the funds.
    SettlementUnfunded,
    /// The recipient refused.
    Refused,
    /// The recipient withdrew, on its own account or the subscriber's.
    Cancelled { by_subscriber: bool },
    /// The deadline of the current step passed.
    DeadlinePassed,
}

/// What applying an event decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to: OrderState,
    /// Why the order ended, for every terminal state but `completed`.
    pub reason: Option<Reason>,
    /// The party charged with a deadline violation.
    pub violation: Option<Party>,
    /// Credit information to record: the donor's, or all zero when the donor was late.
    pub credit: Option<CreditInfo>,
}

impl Transition {
    fn to(to: OrderState) -> Self {
        Transition { to, reason: None, violation: None, credit: None }
    }
    fn end(to: OrderState, reason: Reason) -> Self {
        Transition { to, reason: Some(reason), violation: None, credit: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event} is not allowed in state {state}")]
pub struct InvalidTransition {
    pub state: OrderState,
    pub event: &'static str,
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::DepositMatched => "deposit_matched",
        Event::DepositMismatched => "deposit_mismatched",
        Event::Declined(_) => "declined",
        Event::CreditInformation(_) => "credit_information",
        Event::Accepted => "accepted",
        Event::AcceptedWithoutFunds => "accepted_without_funds",
        Event::Settled => "settled",
        Event::SettlementUnfunded => "settlement_unfunded",
        Event::Refused => "refused",
        Event::Cancelled { .. } => "cancelled",
        Event::DeadlinePassed => "deadline_passed",
    }
}

/// The porting-order state machine: the only place that decides what an event does.
pub fn apply(state: OrderState, event: Event) -> Result<Transition, InvalidTransition> {
    use OrderState as S;
    let t = match (state, event) {
        (S::AwaitingDeposit, Event::DepositMatched) => Transition::to(S::AwaitingCreditInfo),
        (S::AwaitingDeposit, Event::DepositMismatched) => Transition::end(S::Rejected, Reason::ProofMismatch),
        (S::AwaitingDeposit, Event::Declined(why)) => Transition::end(S::Rejected, why.into()),
        (S::AwaitingDeposit, Event::DeadlinePassed) => {
            Transition { violation: Some(Party::Donor), ..Transition::end(S::Failed, Reason::DepositTimeout) }
        }
        (S::AwaitingCreditInfo, Event::CreditInformation(info)) => {
            Transition { credit: Some(info), ..Transition::to(S::AwaitingDecision) }
        }
        (S::AwaitingCreditInfo, Event::DeadlinePassed) => Transition {
            violation: Some(Party::Donor),
            credit: Some(CreditInfo::default()),
            ..Transition::to(S::AwaitingDecision)
        },
        (S::AwaitingDecision, Event::Accepted) => Transition::to(S::Settling),
        (S::Settling, Event::Settled) => Transition::to(S::Completed),
        (S::Settling, Event::SettlementUnfunded) => Transition::end(S::Rejected, Reason::InsufficientFunds),
        (S::AwaitingDecision, Event::AcceptedWithoutFunds) => Transition::end(S::Rejected, Reason::InsufficientFunds),
        (S::AwaitingDecision, Event::Refused) => Transition::end(S::Refused, Reason::RefusedByRecipient),
        (S::AwaitingDecision, Event::DeadlinePassed) => {
            Transition { violation: Some(Party::Recipient), ..Transition::end(S::Failed, Reason::DecisionTimeout) }
        }
        (s, Event::Cancelled { by_subscriber }) if s.waiting_on().is_some() => Transition::end(
            S::Cancelled,
            if by_subscriber { Reason::CancelledBySubscriber } else { Reason::CancelledByRecipient },
        ),
        (state, event) => return Err(InvalidTransition { state, event: event_name(&event) }),
    };
    Ok(t)
}

/// How long each party has for its step, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    pub deposit_ms: Millis,
    pub credit_info_ms: Millis,
    pub decision_ms: Millis,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines { deposit_ms: 30_000, credit_info_ms: 30_000, decision_ms: 60_000 }
    }
}

impl Deadlines {
    /// The deadline of the step that begins at `now` in `state`; none for terminal states.
    pub fn deadline(&self, state: OrderState, now: Millis) -> Option<Millis> {
        let span = match state {
            OrderState::AwaitingDeposit => self.deposit_ms,
            OrderState::AwaitingCreditInfo => self.credit_info_ms,
            OrderState::AwaitingDecision => self.decision_ms,
            _ => return None,
        };
        Some(now.saturating_add(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::DepositMatched),
            Just(Event::DepositMismatched),
            proptest::sample::select(DeclineReason::ALL.to_vec()).prop_map(Event::Declined),
            (0i64..1000, 0i64..1000, 0i64..1000, 0i64..1000).prop_map(|(a, b, c, d)| {
                Event::CreditInformation(CreditInfo {
                    arrears: Money(a),
                    unbilled_usage: Money(b),
                    contract_remaining: Money(c),
                    deposit_held: Money(d),
                })
            }),
            Just(Event::Accepted),
            Just(Event::AcceptedWithoutFunds),
            Just(Event::Settled),
            Just(Event::SettlementUnfunded),
            Just(Event::Refused),
            any::<bool>().prop_map(|b| Event::Cancelled { by_subscriber: b }),
            Just(Event::DeadlinePassed),
        ]
    }

    #[test]
    fn happy_path() {
        let mut s = OrderState::AwaitingDeposit;
        for e in [Event::DepositMatched, Event::CreditInformation(CreditInfo::default()), Event::Accepted] {
            s = apply(s, e).unwrap().to;
        }
        assert_eq!(s, OrderState::Settling);
        assert!(!s.is_terminal() && s.waiting_on().is_none());
        assert_eq!(apply(s, Event::Settled).unwrap().to, OrderState::Completed);
        let t = apply(s, Event::SettlementUnfunded).unwrap();
        assert_eq!((t.to, t.reason), (OrderState::Rejected, Some(Reason::InsufficientFunds)));
        // Accepted is final: neither a cancellation nor a deadline stops a settlement.
        assert!(apply(s, Event::Cancelled { by_subscriber: true }).is_err());
        assert!(apply(s, Event::DeadlinePassed).is_err());
    }

    #[test]
    fn timeout_rules() {
        let t = apply(OrderState::AwaitingDeposit, Event::DeadlinePassed).unwrap();
        assert_eq!(
            (t.to, t.reason, t.violation),
            (OrderState::Failed, Some(Reason::DepositTimeout), Some(Party::Donor))
        );
        let t = apply(OrderState::AwaitingCreditInfo, Event::DeadlinePassed).unwrap();
        assert_eq!(
            (t.to, t.violation, t.credit),
            (OrderState::AwaitingDecision, Some(Party::Donor), Some(CreditInfo::default()))
        );
        let t = apply(OrderState::AwaitingDecision, Event::DeadlinePassed).unwrap();
        assert_eq!(
            (t.to, t.reason, t.violation),
            (OrderState::Failed, Some(Reason::DecisionTimeout), Some(Party::Recipient))
        );
    }

    #[test]
    fn a_decline_ends_the_order_uncharged_and_only_before_the_deposit() {
        for why in DeclineReason::ALL {
            let t = apply(OrderState::AwaitingDeposit, Event::Declined(why)).unwrap();
            assert_eq!((t.to, t.reason, t.violation), (OrderState::Rejected, Some(Reason::from(why)), None));
            let code = serde_json::to_value(why).unwrap();
            assert_eq!(code.as_str(), Some(Reason::from(why).as_str()), "a decline code is its reason's code");
        }
        for state in [OrderState::AwaitingCreditInfo, OrderState::AwaitingDecision, OrderState::Settling] {
            assert!(apply(state, Event::Declined(DeclineReason::UnknownSubscriber)).is_err(), "{state}");
        }
    }

    #[test]
    fn compensation_formula() {
        let c = CreditInfo {
            arrears: Money(100),
            unbilled_usage: Money(50),
            contract_remaining: Money(1000),
            deposit_held: Money(300),
        };
        assert_eq!(c.compensation(), Money(850));
        let c = CreditInfo { deposit_held: Money(5000), ..c };
        assert_eq!(c.compensation(), Money(0));
        assert!(CreditInfo { arrears: Money(-1), ..c }.validate().is_err());
    }

    #[test]
    fn codes_round_trip() {
        for s in OrderState::ALL {
            assert_eq!(s.as_str().parse::<OrderState>().unwrap(), s);
        }
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>().unwrap(), r);
        }
        for k in ViolationKind::ALL {
            assert_eq!(k.as_str().parse::<ViolationKind>().unwrap(), k);
            assert_eq!(serde_json::to_value(k).unwrap().as_str(), Some(k.as_str()));
        }
    }

    proptest! {
        /// Whatever happens, an order reaches a terminal state after at most three steps of
        /// progress plus deadlines, never leaves a terminal state, and only a terminal state
        /// other than `completed` carries a reason.
        #[test]
        fn no_order_hangs_or_resurrects(events in proptest::collection::vec(any_event(), 0..20)) {
            let mut s = OrderState::AwaitingDeposit;
            for e in events {
                if let Ok(t) = apply(s, e) {
                    prop_assert!(!s.is_terminal(), "left terminal state {s}");
                    prop_assert_eq!(t.reason.is_some(), t.to.is_terminal() && t.to != OrderState::Completed);
                    s = t.to;
                }
            }
            // Deadlines, and the settler for an accepted order, finish any order within three
            // more steps.
            for _ in 0..3 {
                let e = if s == OrderState::Settling { Event::Settled } else { Event::DeadlinePassed };
                if let Ok(t) = apply(s, e) { s = t.to; }
            }
            prop_assert!(s.is_terminal());
        }
    }
}
