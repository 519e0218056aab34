//! The Gy credit-control session (RFC 4006 with the 3GPP MSCC of TS 32.299), as a pure
//! function of the request, the session so far and the subscriber's [`Account`].
//!
//! The Diameter layer turns a CCR into a [`CreditControlRequest`] and the returned
//! [`CreditControlAnswer`] into a CCA; the service ([`crate::Ocs`]) loads the account and the
//! session under the account's lock, calls [`credit_control`], and stores the account, the
//! session (with this answer) and the journal in one transaction before answering. So:
//!
//! - **Retransmissions** (same Session-Id and CC-Request-Number as the session's last request)
//!   get the stored answer back from [`replay`], and nothing is charged again.
//! - **Per MSCC** (one reservation per session and Rating-Group): Used-Service-Unit is charged
//!   against the group's reservation and the rest released; then the Requested-Service-Unit
//!   (or the policy's default quota when the CCR asks for none) is reserved as far as the
//!   balance and the credit limit allow; a grant short of the request, or after which nothing
//!   more could be bought, carries Final-Unit-Indication (TERMINATE); no grant at all is 4012.
//!   Each group has its own Result-Code and Validity-Time.
//! - **Message Result-Code**: 5030 for an unknown subscriber, 5002 for an unknown or closed
//!   session, 5012 for a request out of sequence; otherwise the groups' common code, or 2001
//!   when they differ.
//! - **TERMINATION** charges the used units and releases every reservation of the session.
//! - **EVENT** (direct debiting, e.g. an SMS) charges the requested units at once, or answers
//!   4012 without charging.
//! - **Tcc**: every request restarts the session's supervision deadline; [`supervise`] releases
//!   the reservations of a session whose deadline passed.

use numport_core::{Millis, Money};
use serde::{Deserialize, Serialize};

use crate::balance::{Account, AccountId, BalanceError, Entry};
use crate::rating::{Service, TariffTable, UnitKind};

/// The Result-Code values the OCS answers (RFC 6733 §7.1, RFC 4006 §9).
pub mod result_code {
    pub const SUCCESS: u32 = 2001;
    pub const END_USER_SERVICE_DENIED: u32 = 4010;
    pub const CREDIT_CONTROL_NOT_APPLICABLE: u32 = 4011;
    pub const CREDIT_LIMIT_REACHED: u32 = 4012;
    pub const UNKNOWN_SESSION_ID: u32 = 5002;
    pub const MISSING_AVP: u32 = 5005;
    pub const UNABLE_TO_COMPLY: u32 = 5012;
    pub const USER_UNKNOWN: u32 = 5030;
    pub const RATING_FAILED: u32 = 5031;
}
use result_code::*;

/// CC-Request-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestType {
    Initial = 1,
    Update = 2,
    Termination = 3,
    Event = 4,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Initial => "initial",
            RequestType::Update => "update",
            RequestType::Termination => "termination",
            RequestType::Event => "event",
        }
    }
}

/// Subscription-Id-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionIdType {
    EndUserE164 = 0,
    EndUserImsi = 1,
    EndUserSipUri = 2,
    EndUserNai = 3,
    EndUserPrivate = 4,
}

/// Subscription-Id: who is charged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubscriptionId {
    pub kind: SubscriptionIdType,
    pub data: String,
}

impl SubscriptionId {
    pub fn e164(msisdn: impl Into<String>) -> SubscriptionId {
        SubscriptionId { kind: SubscriptionIdType::EndUserE164, data: msisdn.into() }
    }
}

/// Requested-, Granted- or Used-Service-Unit: CC-Time, CC-Total-Octets, CC-Service-Specific-Units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceUnits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_octets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_specific: Option<u64>,
}

impl ServiceUnits {
    /// Only `amount` of `unit`.
    pub fn of(unit: UnitKind, amount: u64) -> ServiceUnits {
        let mut u = ServiceUnits::default();
        *u.slot(unit) = Some(amount);
        u
    }

    pub fn get(&self, unit: UnitKind) -> Option<u64> {
        match unit {
            UnitKind::Time => self.time,
            UnitKind::Octets => self.total_octets,
            UnitKind::ServiceSpecific => self.service_specific,
        }
    }

    fn slot(&mut self, unit: UnitKind) -> &mut Option<u64> {
        match unit {
            UnitKind::Time => &mut self.time,
            UnitKind::Octets => &mut self.total_octets,
            UnitKind::ServiceSpecific => &mut self.service_specific,
        }
    }
}

/// One Multiple-Services-Credit-Control of a CCR.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MsccRequest {
    pub rating_group: Option<u32>,
    pub service_identifier: Option<u32>,
    /// Requested-Service-Unit; present but empty asks for the default quota.
    pub requested: Option<ServiceUnits>,
    /// Used-Service-Unit, summed when the CCR carries several.
    pub used: Option<ServiceUnits>,
}

impl MsccRequest {
    /// The group the reservation is kept under: Rating-Group, else Service-Identifier, else 0.
    pub fn group(&self) -> u32 {
        self.rating_group.or(self.service_identifier).unwrap_or(0)
    }
}

/// A CCR in domain terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditControlRequest {
    pub session_id: String,
    pub request_type: RequestType,
    pub request_number: u32,
    pub subscription_id: SubscriptionId,
    /// From Service-Context-Id: voice (32260), SMS (32274), data (32251).
    pub service: Service,
    /// The called party (voice, SMS) the tariff's prefix matches; data sessions are rated by
    /// their Rating-Group written in decimal.
    pub destination: Option<String>,
    /// Event-Timestamp, else the time of arrival.
    pub event_time: Millis,
    pub mscc: Vec<MsccRequest>,
}

/// Final-Unit-Action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalUnitAction {
    Terminate = 0,
    Redirect = 1,
    RestrictAccess = 2,
}

/// One Multiple-Services-Credit-Control of a CCA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsccAnswer {
    pub rating_group: Option<u32>,
    pub service_identifier: Option<u32>,
    pub result_code: u32,
    pub granted: Option<ServiceUnits>,
    /// Validity-Time, seconds.
    pub validity_time: Option<u32>,
    /// Final-Unit-Indication's action, on the last grant.
    pub final_unit_action: Option<FinalUnitAction>,
}

/// A CCA in domain terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditControlAnswer {
    pub session_id: String,
    pub request_type: RequestType,
    pub request_number: u32,
    pub result_code: u32,
    pub mscc: Vec<MsccAnswer>,
}

impl CreditControlAnswer {
    pub fn error(req: &CreditControlRequest, result_code: u32) -> CreditControlAnswer {
        CreditControlAnswer {
            session_id: req.session_id.clone(),
            request_type: req.request_type,
            request_number: req.request_number,
            result_code,
            mscc: Vec::new(),
        }
    }
}

/// The operator's Gy settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GyPolicy {
    /// Granted when a CCR asks for no amount: seconds of voice.
    pub default_seconds: u64,
    /// Octets of data.
    pub default_octets: u64,
    /// Events (messages).
    pub default_events: u64,
    /// Validity-Time of a grant, seconds.
    pub validity_time_s: u32,
    /// Tcc, the session supervision timer, ms: longer than the Validity-Time, so a gateway that
    /// keeps to it is never cut.
    pub tcc_ms: Millis,
}

impl Default for GyPolicy {
    fn default() -> GyPolicy {
        GyPolicy {
            default_seconds: 300,
            default_octets: 10_000_000,
            default_events: 1,
            validity_time_s: 600,
            tcc_ms: 900_000,
        }
    }
}

impl GyPolicy {
    pub fn default_quota(&self, unit: UnitKind) -> u64 {
        match unit {
            UnitKind::Time => self.default_seconds,
            UnitKind::Octets => self.default_octets,
            UnitKind::ServiceSpecific => self.default_events,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Open,
    Closed,
    /// Closed by the Tcc timer: its reservations were released.
    TimedOut,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Open => "open",
            SessionState::Closed => "closed",
            SessionState::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<SessionState> {
        [SessionState::Open, SessionState::Closed, SessionState::TimedOut].into_iter().find(|v| v.as_str() == s)
    }
}

/// A credit-control session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub account_id: AccountId,
    pub service: Service,
    pub destination: Option<String>,
    pub state: SessionState,
    pub last_request_number: u32,
    pub last_request_type: RequestType,
    /// What was answered to the last request, for its retransmissions.
    pub last_answer: CreditControlAnswer,
    /// Tcc: when the session's reservations are released unless a request comes first.
    pub tcc_deadline: Millis,
    /// Money charged in the session so far.
    pub charged: Money,
}

/// What a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub answer: CreditControlAnswer,
    /// The session to store (absent only when the request was refused before one existed).
    pub session: Option<Session>,
    pub entries: Vec<Entry>,
    pub charged: Money,
    pub uncollected_units: u64,
}

/// The stored answer, if `req` repeats the session's last request.
pub fn replay(session: Option<&Session>, req: &CreditControlRequest) -> Option<CreditControlAnswer> {
    let s = session?;
    (s.last_request_number == req.request_number && s.last_request_type == req.request_type)
        .then(|| s.last_answer.clone())
}

/// Apply `req` (not a retransmission: see [`replay`]) to `account` and `session`.
pub fn credit_control(
    account: &mut Account,
    session: Option<Session>,
    req: &CreditControlRequest,
    tariffs: &TariffTable,
    policy: &GyPolicy,
    now: Millis,
) -> Result<Outcome, BalanceError> {
    let refuse = |code| Outcome {
        answer: CreditControlAnswer::error(req, code),
        session: None,
        entries: Vec::new(),
        charged: Money::ZERO,
        uncollected_units: 0,
    };
    let mut session = match (req.request_type, session) {
        (RequestType::Initial | RequestType::Event, None) => Session {
            id: req.session_id.clone(),
            account_id: account.id,
            service: req.service,
            destination: req.destination.clone(),
            state: SessionState::Open,
            last_request_number: req.request_number,
            last_request_type: req.request_type,
            last_answer: CreditControlAnswer::error(req, SUCCESS),
            tcc_deadline: now,
            charged: Money::ZERO,
        },
        (RequestType::Update | RequestType::Termination, None) => return Ok(refuse(UNKNOWN_SESSION_ID)),
        (_, Some(s)) if s.state != SessionState::Open => return Ok(refuse(UNKNOWN_SESSION_ID)),
        (RequestType::Initial | RequestType::Event, Some(_)) => return Ok(refuse(UNABLE_TO_COMPLY)),
        (_, Some(s)) if req.request_number <= s.last_request_number => return Ok(refuse(UNABLE_TO_COMPLY)),
        (_, Some(s)) => s,
    };
    if req.request_type == RequestType::Event && req.mscc.is_empty() {
        return Ok(refuse(MISSING_AVP));
    }
    let mut run = Run {
        account,
        session: &session,
        req,
        tariffs,
        policy,
        now,
        entries: Vec::new(),
        charged: Money::ZERO,
        uncollected: 0,
    };
    let mut answers = Vec::with_capacity(req.mscc.len());
    for m in &req.mscc {
        answers.push(run.mscc(m)?);
    }
    if req.request_type == RequestType::Termination {
        let released = run.account.release_session(&req.session_id, now)?;
        run.entries.extend(released);
    }
    let (entries, charged, uncollected) = (run.entries, run.charged, run.uncollected);
    let result_code = match answers.first() {
        Some(first) if answers.iter().all(|a| a.result_code == first.result_code) => first.result_code,
        _ => SUCCESS,
    };
    let answer = CreditControlAnswer {
        session_id: req.session_id.clone(),
        request_type: req.request_type,
        request_number: req.request_number,
        result_code,
        mscc: answers,
    };
    if session.destination.is_none() {
        session.destination = req.destination.clone();
    }
    session.state = match req.request_type {
        RequestType::Termination | RequestType::Event => SessionState::Closed,
        _ => SessionState::Open,
    };
    session.last_request_number = req.request_number;
    session.last_request_type = req.request_type;
    session.last_answer = answer.clone();
    session.tcc_deadline = now + policy.tcc_ms;
    session.charged.0 += charged.0;
    Ok(Outcome { answer, session: Some(session), entries, charged, uncollected_units: uncollected })
}

/// One request's work on its MSCCs.
struct Run<'a> {
    account: &'a mut Account,
    session: &'a Session,
    req: &'a CreditControlRequest,
    tariffs: &'a TariffTable,
    policy: &'a GyPolicy,
    now: Millis,
    entries: Vec<Entry>,
    charged: Money,
    uncollected: u64,
}

impl Run<'_> {
    fn mscc(&mut self, m: &MsccRequest) -> Result<MsccAnswer, BalanceError> {
        let group = m.group();
        let unit = self.session.service.unit();
        let mut answer = MsccAnswer {
            rating_group: m.rating_group,
            service_identifier: m.service_identifier,
            result_code: SUCCESS,
            granted: None,
            validity_time: None,
            final_unit_action: None,
        };
        let used = m.used.and_then(|u| u.get(unit)).unwrap_or(0);
        let price = self.tariffs.price(self.session.service, &self.destination(group), self.req.event_time);
        if self.req.request_type == RequestType::Event {
            let Ok(price) = price else { return Ok(MsccAnswer { result_code: RATING_FAILED, ..answer }) };
            let wanted = m.requested.and_then(|u| u.get(unit)).filter(|&u| u > 0);
            let wanted = wanted.unwrap_or(self.policy.default_quota(unit));
            // A cost that overflows is one no balance can pay.
            let cost = price.cost(wanted).unwrap_or(Money(i64::MAX));
            return match self.account.debit(cost, self.now) {
                Ok(e) => {
                    self.entries.extend(e);
                    self.charged.0 += cost.0;
                    Ok(MsccAnswer { granted: Some(ServiceUnits::of(unit, wanted)), ..answer })
                }
                Err(BalanceError::InsufficientFunds { .. }) => {
                    Ok(MsccAnswer { result_code: CREDIT_LIMIT_REACHED, ..answer })
                }
                Err(e) => Err(e),
            };
        }
        if self.account.reservation(&self.req.session_id, group).is_some() {
            let (c, e) = self.account.commit(&self.req.session_id, group, used, self.now)?;
            self.entries.extend(e);
            self.charged.0 += c.money.0;
            self.uncollected = self.uncollected.saturating_add(c.uncollected_units);
        } else if used > 0 {
            // Usage reported without a reservation (a gateway that went on after a Tcc release):
            // charged as far as the balance allows, never past the credit limit.
            if let Ok(p) = price {
                let cost = p.cost(used).unwrap_or(Money(i64::MAX));
                let (charged, e) = self.account.debit_up_to(cost, self.now)?;
                self.entries.extend(e);
                self.charged.0 += charged.0;
                if charged < cost {
                    self.uncollected = self.uncollected.saturating_add(used.saturating_sub(p.units_for(charged)));
                }
            }
        }
        if self.req.request_type == RequestType::Termination {
            return Ok(answer);
        }
        let Ok(price) = price else { return Ok(MsccAnswer { result_code: RATING_FAILED, ..answer }) };
        let wanted = m.requested.and_then(|u| u.get(unit)).filter(|&u| u > 0);
        let wanted = wanted.unwrap_or(self.policy.default_quota(unit));
        let (grant, e) = self.account.reserve(&self.req.session_id, group, unit, price, wanted, self.now)?;
        self.entries.extend(e);
        if grant.units == 0 {
            answer.result_code = CREDIT_LIMIT_REACHED;
            return Ok(answer);
        }
        answer.granted = Some(ServiceUnits::of(unit, grant.units));
        answer.validity_time = Some(self.policy.validity_time_s);
        answer.final_unit_action = grant.last.then_some(FinalUnitAction::Terminate);
        Ok(answer)
    }

    /// The destination the tariff's prefix is matched against.
    fn destination(&self, group: u32) -> String {
        match self.session.service {
            Service::Data => group.to_string(),
            _ => self.req.destination.clone().or_else(|| self.session.destination.clone()).unwrap_or_default(),
        }
    }
}

/// Tcc supervision: if `session` is open and its deadline passed, release its reservations
/// and mark it timed out; returns the release's entries.
pub fn supervise(
    account: &mut Account,
    session: &mut Session,
    now: Millis,
) -> Result<Option<Vec<Entry>>, BalanceError> {
    if session.state != SessionState::Open || session.tcc_deadline > now {
        return Ok(None);
    }
    let entries = account.release_session(&session.id, now)?;
    session.state = SessionState::TimedOut;
    Ok(Some(entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rating::{TariffRule, TimeBand};

    fn tariffs() -> TariffTable {
        let rule = |service, prefix: &str, price, block| TariffRule {
            service,
            prefix: prefix.into(),
            band: TimeBand::ALL_DAY,
            price: Money(price),
            block,
        };
        TariffTable::compile(
            vec![
                rule(Service::Voice, "47", 10, 60),
                rule(Service::Sms, "", 50, 1),
                rule(Service::Data, "10", 1, 1_000_000),
            ],
            0,
        )
        .unwrap()
    }

    fn ccr(t: RequestType, n: u32, mscc: Vec<MsccRequest>) -> CreditControlRequest {
        CreditControlRequest {
            session_id: "gw;1;1".into(),
            request_type: t,
            request_number: n,
            subscription_id: SubscriptionId::e164("4790000001"),
            service: Service::Voice,
            destination: Some("4791234567".into()),
            event_time: 0,
            mscc,
        }
    }

    fn rsu(rg: u32, req: Option<u64>, used: Option<u64>) -> MsccRequest {
        MsccRequest {
            rating_group: Some(rg),
            service_identifier: None,
            requested: req.map(|s| ServiceUnits::of(UnitKind::Time, s)),
            used: used.map(|s| ServiceUnits::of(UnitKind::Time, s)),
        }
    }

    fn step(a: &mut Account, s: Option<Session>, r: &CreditControlRequest) -> Outcome {
        credit_control(a, s, r, &tariffs(), &GyPolicy::default(), 1000).unwrap()
    }

    #[test]
    fn initial_update_termination() {
        let mut a = Account::new(1, Money(0));
        a.recharge(Money(100), None).unwrap();
        let o = step(&mut a, None, &ccr(RequestType::Initial, 0, vec![rsu(1, Some(120), None)]));
        assert_eq!(o.answer.result_code, SUCCESS);
        assert_eq!(o.answer.mscc[0].granted, Some(ServiceUnits::of(UnitKind::Time, 120)));
        assert_eq!(o.answer.mscc[0].validity_time, Some(600));
        assert_eq!(o.answer.mscc[0].final_unit_action, None);
        assert_eq!(a.available(0), Money(80));
        let s = o.session.unwrap();
        assert_eq!(s.tcc_deadline, 1000 + 900_000);
        // Update: 100 s used (2 blocks), ask for 600 more: 80 left buys 480 s, the last grant.
        let o = step(&mut a, Some(s), &ccr(RequestType::Update, 1, vec![rsu(1, Some(600), Some(100))]));
        assert_eq!(o.charged, Money(20));
        assert_eq!(o.answer.mscc[0].granted, Some(ServiceUnits::of(UnitKind::Time, 480)));
        assert_eq!(o.answer.mscc[0].final_unit_action, Some(FinalUnitAction::Terminate));
        let s = o.session.unwrap();
        // Nothing left: 4012 for the group and the message.
        let o = step(&mut a, Some(s), &ccr(RequestType::Update, 2, vec![rsu(1, Some(60), Some(480))]));
        assert_eq!(o.answer.result_code, CREDIT_LIMIT_REACHED);
        assert_eq!(o.answer.mscc[0].result_code, CREDIT_LIMIT_REACHED);
        let s = o.session.unwrap();
        let o = step(&mut a, Some(s), &ccr(RequestType::Termination, 3, vec![rsu(1, None, Some(0))]));
        assert_eq!(o.answer.result_code, SUCCESS);
        assert_eq!(o.session.as_ref().unwrap().state, SessionState::Closed);
        assert_eq!(o.session.unwrap().charged, Money(100));
        assert!(a.reservations.is_empty());
        assert_eq!(a.net(), Money(0));
    }

    #[test]
    fn sequence_and_unknown_sessions() {
        let mut a = Account::new(1, Money(0));
        a.recharge(Money(100), None).unwrap();
        let o = step(&mut a, None, &ccr(RequestType::Update, 1, vec![]));
        assert_eq!(o.answer.result_code, UNKNOWN_SESSION_ID);
        let o = step(&mut a, None, &ccr(RequestType::Initial, 0, vec![rsu(1, Some(60), None)]));
        let s = o.session.unwrap();
        assert_eq!(replay(Some(&s), &ccr(RequestType::Initial, 0, vec![])), Some(s.last_answer.clone()));
        assert_eq!(replay(Some(&s), &ccr(RequestType::Update, 1, vec![])), None);
        let o = step(&mut a, Some(s.clone()), &ccr(RequestType::Initial, 5, vec![]));
        assert_eq!(o.answer.result_code, UNABLE_TO_COMPLY);
        let o = step(&mut a, Some(s.clone()), &ccr(RequestType::Update, 0, vec![]));
        assert_eq!(o.answer.result_code, UNABLE_TO_COMPLY);
        let mut closed = s;
        closed.state = SessionState::Closed;
        let o = step(&mut a, Some(closed), &ccr(RequestType::Update, 1, vec![]));
        assert_eq!(o.answer.result_code, UNKNOWN_SESSION_ID);
    }

    #[test]
    fn per_group_codes_and_rating_failure() {
        let mut a = Account::new(1, Money(0));
        a.recharge(Money(100), None).unwrap();
        let mut r = ccr(RequestType::Initial, 0, vec![rsu(1, Some(60), None), rsu(2, Some(60), None)]);
        r.destination = Some("4612345".into());
        let o = step(&mut a, None, &r);
        assert_eq!(o.answer.mscc[0].result_code, RATING_FAILED);
        assert_eq!(o.answer.result_code, RATING_FAILED);
        let mut r = ccr(RequestType::Initial, 0, vec![rsu(1, Some(60), None), rsu(2, Some(6000), None)]);
        r.session_id = "other".into();
        let o = step(&mut a, None, &r);
        assert_eq!(o.answer.result_code, SUCCESS);
        assert_eq!(o.answer.mscc[1].granted, Some(ServiceUnits::of(UnitKind::Time, 540)));
        assert_eq!(o.answer.mscc[1].final_unit_action, Some(FinalUnitAction::Terminate));
    }

    #[test]
    fn event_direct_debit() {
        let mut a = Account::new(1, Money(0));
        a.recharge(Money(120), None).unwrap();
        let sms = |n: &str| {
            let mut r = ccr(RequestType::Event, 0, vec![MsccRequest::default()]);
            r.session_id = n.into();
            r.service = Service::Sms;
            r
        };
        let o = step(&mut a, None, &sms("e1"));
        assert_eq!((o.answer.result_code, o.charged), (SUCCESS, Money(50)));
        assert_eq!(o.session.unwrap().state, SessionState::Closed);
        step(&mut a, None, &sms("e2"));
        let o = step(&mut a, None, &sms("e3"));
        assert_eq!((o.answer.result_code, o.charged), (CREDIT_LIMIT_REACHED, Money(0)));
        assert_eq!(a.net(), Money(20));
    }

    #[test]
    fn tcc_releases_a_silent_session() {
        let mut a = Account::new(1, Money(0));
        a.recharge(Money(100), None).unwrap();
        let o = step(&mut a, None, &ccr(RequestType::Initial, 0, vec![rsu(1, Some(600), None)]));
        let mut s = o.session.unwrap();
        assert_eq!(a.available(0), Money(0));
        let deadline = s.tcc_deadline;
        assert_eq!(supervise(&mut a, &mut s, deadline - 1).unwrap(), None);
        let released = supervise(&mut a, &mut s, deadline).unwrap().unwrap();
        assert_eq!(released.len(), 1);
        assert_eq!(s.state, SessionState::TimedOut);
        assert_eq!(a.available(0), Money(100));
        // A late update on it is an unknown session; nothing charged.
        let o = step(&mut a, Some(s), &ccr(RequestType::Update, 1, vec![rsu(1, None, Some(600))]));
        assert_eq!(o.answer.result_code, UNKNOWN_SESSION_ID);
        assert_eq!(a.net(), Money(100));
    }

    #[test]
    fn data_rated_by_rating_group() {
        let mut a = Account::new(1, Money(0));
        a.recharge(Money(5), None).unwrap();
        let mut r = ccr(RequestType::Initial, 0, vec![MsccRequest { rating_group: Some(10), ..Default::default() }]);
        r.service = Service::Data;
        r.destination = None;
        let o = step(&mut a, None, &r);
        assert_eq!(o.answer.mscc[0].granted, Some(ServiceUnits::of(UnitKind::Octets, 5_000_000)));
        assert_eq!(o.answer.mscc[0].final_unit_action, Some(FinalUnitAction::Terminate));
    }
}
