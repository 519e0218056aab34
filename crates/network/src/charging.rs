//! What the switching centre and the gateway do after each answer of the OCS, as pure state
//! machines: a voice call over Gy ([`GyCall`]), a call on partial CDRs ([`PartialCall`],
//! CN102083044A), and a data session with one MSCC per Rating-Group ([`DataSession`]). The
//! driver ([`crate::sim`]) sends what they ask and sleeps the time they say was used.

use diameter::cc::{Cca, Mscc};

use crate::cdr::Cause;

/// DIAMETER_SUCCESS.
pub const SUCCESS: u32 = 2001;
/// DIAMETER_CREDIT_LIMIT_REACHED.
pub const CREDIT_LIMIT_REACHED: u32 = 4012;

/// One MSCC of an answer, as the client acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub result_code: u32,
    /// Seconds or octets granted.
    pub units: u64,
    /// Final-Unit-Indication: no more after these.
    pub last: bool,
}

impl Grant {
    /// The grant of `m` (its Result-Code, else the message's).
    pub fn of(m: &Mscc, message_code: u32) -> Grant {
        let g = m.granted.unwrap_or_default();
        let units = g.time.map(u64::from).or(g.total_octets).or(g.service_specific_units).unwrap_or(0);
        Grant { result_code: m.result_code.unwrap_or(message_code), units, last: m.final_unit_indication.is_some() }
    }

    /// The grant for rating group `rg` in `cca`: the message's Result-Code when the MSCC is
    /// missing (a protocol error answers no MSCC).
    pub fn in_answer(cca: &Cca, rg: u32) -> Grant {
        match cca.mscc.iter().find(|m| m.rating_group == Some(rg)) {
            Some(m) => Grant::of(m, cca.result_code),
            None => Grant { result_code: cca.result_code, units: 0, last: true },
        }
    }
}

fn cause_of(result_code: u32) -> Cause {
    if result_code == CREDIT_LIMIT_REACHED { Cause::CreditLimit } else { Cause::Failure }
}

/// The next request of a Gy session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// After `wait_s` of use, CCR-UPDATE reporting `used` and asking for more.
    Update { wait_s: u64, used: u64 },
    /// After `wait_s` of use, CCR-TERMINATION reporting `used`; the session ends with `cause`.
    Terminate { wait_s: u64, used: u64, cause: Cause },
    /// The session never opened (the INITIAL failed): nothing more to send.
    Released { cause: Cause },
}

/// A voice call charged over Gy: CCR-INITIAL asks for a quota of seconds, each grant is used
/// and reported with CCR-UPDATE (asking again), and the call ends with CCR-TERMINATION when
/// the caller hangs up, the last grant (Final-Unit-Indication) is used up, or the OCS refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GyCall {
    /// How long the caller wants to talk.
    pub wanted_s: u64,
    /// Seconds used and reported so far (or being reported).
    pub used_s: u64,
    pub requests: u32,
    pub cause: Option<Cause>,
}

impl GyCall {
    pub fn new(wanted_s: u64) -> GyCall {
        GyCall { wanted_s, used_s: 0, requests: 0, cause: None }
    }

    /// The CC-Request-Number of the next request (0 for the INITIAL).
    pub fn next_number(&mut self) -> u32 {
        self.requests += 1;
        self.requests - 1
    }

    /// What to do after the answer `grant` to the INITIAL (`initial`) or to an UPDATE.
    pub fn on_grant(&mut self, grant: Grant, initial: bool) -> Next {
        if grant.result_code != SUCCESS || grant.units == 0 {
            let cause = if grant.result_code == SUCCESS { Cause::CreditLimit } else { cause_of(grant.result_code) };
            self.cause = Some(cause);
            return if initial { Next::Released { cause } } else { Next::Terminate { wait_s: 0, used: 0, cause } };
        }
        let remaining = self.wanted_s - self.used_s;
        if remaining <= grant.units {
            self.used_s += remaining;
            self.cause = Some(Cause::Normal);
            return Next::Terminate { wait_s: remaining, used: remaining, cause: Cause::Normal };
        }
        self.used_s += grant.units;
        if grant.last {
            self.cause = Some(Cause::FinalUnits);
            return Next::Terminate { wait_s: grant.units, used: grant.units, cause: Cause::FinalUnits };
        }
        Next::Update { wait_s: grant.units, used: grant.units }
    }

    /// The OCS could not be reached: the call is released at what was reported.
    pub fn on_failure(&mut self, used_in_flight: u64) -> Cause {
        self.used_s -= used_in_flight.min(self.used_s);
        self.cause = Some(Cause::Failure);
        Cause::Failure
    }
}

/// One partial CDR to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    pub seq: u32,
    /// Seconds into the call this part starts.
    pub offset_s: u64,
    pub duration_s: u64,
    pub last: bool,
}

/// A call charged on partial CDRs: every `every_s` of conversation the switch cuts a partial
/// CDR and sends it; the OCS answers continue or cut-off. The last partial, flagged, closes the
/// call (after a cut-off, a closing partial of 0 s), so the OCS can merge them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialCall {
    pub wanted_s: u64,
    pub every_s: u64,
    pub elapsed_s: u64,
    pub sent: u32,
    pub cause: Option<Cause>,
}

impl PartialCall {
    pub fn new(wanted_s: u64, every_s: u64) -> PartialCall {
        PartialCall { wanted_s, every_s: every_s.max(1), elapsed_s: 0, sent: 0, cause: None }
    }

    /// The next partial (talked through before it is sent), or `None` once the last was sent.
    pub fn next_partial(&mut self) -> Option<Partial> {
        if self.sent > 0 && self.cause.is_some() {
            return None;
        }
        let duration_s = (self.wanted_s - self.elapsed_s).min(self.every_s);
        let offset_s = self.elapsed_s;
        self.elapsed_s += duration_s;
        self.sent += 1;
        let last = self.elapsed_s >= self.wanted_s;
        if last {
            self.cause = Some(Cause::Normal);
        }
        Some(Partial { seq: self.sent, offset_s, duration_s, last })
    }

    /// The OCS's decision on the partial just sent: `false` (cut-off) ends the call, and the
    /// closing partial is then the next.
    pub fn on_decision(&mut self, go_on: bool) -> Option<Partial> {
        if go_on || self.cause.is_some() {
            return None;
        }
        self.cause = Some(Cause::CutOff);
        self.sent += 1;
        Some(Partial { seq: self.sent, offset_s: self.elapsed_s, duration_s: 0, last: true })
    }
}

/// One Rating-Group's state in a data session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub rating_group: u32,
    pub service_id: u32,
    /// What the subscriber would move, uplink and downlink.
    pub wanted_up: u64,
    pub wanted_down: u64,
    /// What was moved and reported (or is being reported).
    pub used_up: u64,
    pub used_down: u64,
    /// Octets of the current grant.
    pub granted: u64,
    /// No further grant: the last was used, or the OCS refused.
    pub closed: bool,
    pub last_code: u32,
}

impl Flow {
    fn remaining(&self) -> u64 {
        (self.wanted_up + self.wanted_down).saturating_sub(self.used_up + self.used_down)
    }

    fn wanted(&self) -> u64 {
        self.wanted_up + self.wanted_down
    }
}

/// What a data session reports for one Rating-Group in its next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub rating_group: u32,
    pub service_id: u32,
    pub used_up: u64,
    pub used_down: u64,
    /// Whether to ask for more.
    pub request: bool,
}

/// A data session on the gateway: one MSCC per Rating-Group (with its Service-Identifier),
/// volumes in octets. Each round uses every open group's grant (or what it still wants), and
/// reports it; a group whose grant was the last, or that the OCS refused, stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSession {
    pub flows: Vec<Flow>,
    pub requests: u32,
}

impl DataSession {
    pub fn new(flows: impl IntoIterator<Item = (u32, u32, u64, u64)>) -> DataSession {
        let flows = flows
            .into_iter()
            .map(|(rating_group, service_id, up, down)| Flow {
                rating_group,
                service_id,
                wanted_up: up,
                wanted_down: down,
                used_up: 0,
                used_down: 0,
                granted: 0,
                closed: false,
                last_code: 0,
            })
            .collect();
        DataSession { flows, requests: 0 }
    }

    pub fn next_number(&mut self) -> u32 {
        self.requests += 1;
        self.requests - 1
    }

    /// Takes the answer's grants. Returns the reports of the next request and whether it is
    /// the TERMINATION (nothing left to use, or nothing granted).
    pub fn on_answer(&mut self, cca: &Cca) -> (Vec<Report>, bool) {
        for f in &mut self.flows {
            if f.closed {
                continue;
            }
            let g = Grant::in_answer(cca, f.rating_group);
            f.last_code = g.result_code;
            if g.result_code != SUCCESS || g.units == 0 {
                f.closed = true;
                f.granted = 0;
            } else {
                f.granted = g.units;
                f.closed = g.last;
            }
        }
        let mut reports = Vec::new();
        for f in &mut self.flows {
            if f.granted == 0 {
                continue;
            }
            let take = f.remaining().min(f.granted);
            // Uplink and downlink in the proportion the subscriber wants them.
            let up = (u128::from(take) * u128::from(f.wanted_up) / u128::from(f.wanted().max(1))) as u64;
            let (up, down) = (up, take - up);
            f.used_up += up;
            f.used_down += down;
            f.granted = 0;
            if f.remaining() == 0 {
                f.closed = true;
            }
            reports.push(Report {
                rating_group: f.rating_group,
                service_id: f.service_id,
                used_up: up,
                used_down: down,
                request: !f.closed,
            });
        }
        let done = self.flows.iter().all(|f| f.closed);
        (reports, done)
    }

    /// The share (0..=1) of the session's wanted volume used so far.
    pub fn progress(&self) -> f64 {
        let wanted: u64 = self.flows.iter().map(Flow::wanted).sum();
        let used: u64 = self.flows.iter().map(|f| f.used_up + f.used_down).sum();
        if wanted == 0 { 1.0 } else { used as f64 / wanted as f64 }
    }

    /// Why it ended: the worst of its groups.
    pub fn cause(&self) -> Cause {
        let code = |c: u32| self.flows.iter().any(|f| f.last_code == c);
        if self.flows.iter().any(|f| f.last_code != SUCCESS && f.last_code != CREDIT_LIMIT_REACHED && f.last_code != 0)
        {
            Cause::Failure
        } else if code(CREDIT_LIMIT_REACHED) {
            Cause::CreditLimit
        } else if self.flows.iter().any(|f| f.remaining() > 0) {
            Cause::FinalUnits
        } else {
            Cause::Normal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diameter::cc::{CcRequestType, FinalUnitAction, FinalUnitIndication, ServiceUnit};

    fn ok(units: u64) -> Grant {
        Grant { result_code: SUCCESS, units, last: false }
    }

    #[test]
    fn a_call_uses_each_grant_then_hangs_up() {
        let mut c = GyCall::new(700);
        assert_eq!(c.next_number(), 0);
        assert_eq!(c.on_grant(ok(300), true), Next::Update { wait_s: 300, used: 300 });
        assert_eq!(c.on_grant(ok(300), false), Next::Update { wait_s: 300, used: 300 });
        assert_eq!(c.on_grant(ok(300), false), Next::Terminate { wait_s: 100, used: 100, cause: Cause::Normal });
        assert_eq!(c.used_s, 700);
    }

    #[test]
    fn the_last_grant_and_a_refusal_cut_the_call() {
        let mut c = GyCall::new(700);
        c.on_grant(ok(300), true);
        let last = Grant { last: true, ..ok(120) };
        assert_eq!(c.on_grant(last, false), Next::Terminate { wait_s: 120, used: 120, cause: Cause::FinalUnits });
        assert_eq!((c.used_s, c.cause), (420, Some(Cause::FinalUnits)));

        let mut c = GyCall::new(700);
        c.on_grant(ok(300), true);
        let refused = Grant { result_code: CREDIT_LIMIT_REACHED, units: 0, last: false };
        assert_eq!(c.on_grant(refused, false), Next::Terminate { wait_s: 0, used: 0, cause: Cause::CreditLimit });
        assert_eq!(c.used_s, 300);

        let mut c = GyCall::new(60);
        let unknown = Grant { result_code: 5030, units: 0, last: false };
        assert_eq!(c.on_grant(unknown, true), Next::Released { cause: Cause::Failure });
        assert_eq!(c.used_s, 0);
    }

    #[test]
    fn a_failure_takes_back_what_was_not_reported() {
        let mut c = GyCall::new(700);
        c.on_grant(ok(300), true);
        assert_eq!(c.on_failure(300), Cause::Failure);
        assert_eq!(c.used_s, 0);
    }

    #[test]
    fn partial_cdrs_every_n_minutes() {
        let mut p = PartialCall::new(700, 300);
        let parts: Vec<Partial> = std::iter::from_fn(|| p.next_partial()).collect();
        assert_eq!(
            parts,
            [
                Partial { seq: 1, offset_s: 0, duration_s: 300, last: false },
                Partial { seq: 2, offset_s: 300, duration_s: 300, last: false },
                Partial { seq: 3, offset_s: 600, duration_s: 100, last: true },
            ]
        );
        assert_eq!(p.cause, Some(Cause::Normal));
        let mut short = PartialCall::new(40, 300);
        assert_eq!(short.next_partial(), Some(Partial { seq: 1, offset_s: 0, duration_s: 40, last: true }));
        assert_eq!(short.on_decision(false), None);
        assert_eq!(short.next_partial(), None);
    }

    #[test]
    fn a_cut_off_closes_the_call_with_an_empty_last_partial() {
        let mut p = PartialCall::new(1000, 300);
        p.next_partial();
        assert_eq!(p.on_decision(true), None);
        p.next_partial();
        assert_eq!(p.on_decision(false), Some(Partial { seq: 3, offset_s: 600, duration_s: 0, last: true }));
        assert_eq!((p.cause, p.elapsed_s, p.next_partial()), (Some(Cause::CutOff), 600, None));
    }

    fn cca(grants: &[(u32, u32, u64, bool)]) -> Cca {
        Cca {
            session_id: "s".into(),
            result_code: SUCCESS,
            origin_host: "ocs".into(),
            origin_realm: "r".into(),
            auth_application_id: 4,
            request_type: CcRequestType::Update,
            request_number: 1,
            mscc: grants
                .iter()
                .map(|&(rg, code, octets, last)| Mscc {
                    rating_group: Some(rg),
                    result_code: Some(code),
                    granted: Some(ServiceUnit { total_octets: Some(octets), ..Default::default() }),
                    final_unit_indication: last
                        .then_some(FinalUnitIndication { action: FinalUnitAction::Terminate, redirect_server: None }),
                    ..Default::default()
                })
                .collect(),
            cc_session_failover: None,
            credit_control_failure_handling: None,
            error_message: None,
            failed_avp: None,
        }
    }

    #[test]
    fn a_data_session_reports_per_rating_group() {
        let mut s = DataSession::new([(10, 1001, 100, 900), (20, 2001, 0, 50)]);
        let (r, done) = s.on_answer(&cca(&[(10, SUCCESS, 600, false), (20, SUCCESS, 600, false)]));
        assert!(!done);
        assert_eq!(
            r,
            [
                Report { rating_group: 10, service_id: 1001, used_up: 60, used_down: 540, request: true },
                Report { rating_group: 20, service_id: 2001, used_up: 0, used_down: 50, request: false },
            ]
        );
        let (r, done) = s.on_answer(&cca(&[(10, SUCCESS, 600, false)]));
        assert!(done);
        assert_eq!(r, [Report { rating_group: 10, service_id: 1001, used_up: 40, used_down: 360, request: false }]);
        assert_eq!((s.cause(), s.progress()), (Cause::Normal, 1.0));
    }

    #[test]
    fn a_refused_group_stops_and_the_others_go_on() {
        let mut s = DataSession::new([(10, 1001, 0, 1000), (20, 2001, 0, 1000)]);
        let (r, done) = s.on_answer(&cca(&[(10, CREDIT_LIMIT_REACHED, 0, false), (20, SUCCESS, 300, true)]));
        assert!(done);
        assert_eq!(r, [Report { rating_group: 20, service_id: 2001, used_up: 0, used_down: 300, request: false }]);
        assert_eq!(s.cause(), Cause::CreditLimit);
        assert!((s.progress() - 0.15).abs() < 1e-9);
    }
}
