//! The peer state machine of RFC 6733 §5.6 for one connection, with the watchdog of RFC 3539
//! (§3.4.1 of RFC 6733), free of I/O and of clocks: the driver feeds it what arrived and the
//! time, and does what the returned [`Step`] says.
//!
//! A connection has one role. The responder waits for a CER (and closes if none comes within
//! the CER timeout), the initiator sends one and waits for the CEA; the election of RFC 6733
//! §5.6.4 is not needed because this node never connects to a peer that connects to it.
//!
//! Watchdog: every message received restarts the Tw timer; when it expires with no DWR
//! outstanding a DWR is sent, and when it expires again with the DWR unanswered the peer is
//! declared down and the connection closed (the initiator then fails over).

use std::time::{Duration, Instant};

use crate::dict::result;

/// Which end of the connection this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Responder,
    Initiator,
}

/// The states of RFC 6733 §5.6, for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Responder: connected, no CER yet (RFC's R-Open is entered on a good one).
    WaitCer,
    /// Initiator: CER sent (Wait-I-CEA).
    WaitCea,
    /// I-Open or R-Open: application messages flow.
    Open,
    /// DPR sent, waiting for the DPA (Closing).
    Closing,
    Closed,
}

/// What arrived, as the state machine needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A CER, with the outcome of checking it (the Result-Code of the CEA).
    Cer {
        result_code: u32,
    },
    Cea {
        result_code: u32,
    },
    Dwr,
    Dwa,
    Dpr,
    Dpa,
    /// A request of an application (CCR).
    Request,
    /// An answer to one of this node's application requests (CCA).
    Answer,
}

/// A message the driver sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    Cer,
    /// A CEA with this Result-Code.
    Cea(u32),
    Dwr,
    Dwa,
    Dpr,
    Dpa,
    /// An error answer to the request that arrived, with this Result-Code.
    Refusal(u32),
}

/// Why a connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The CER (responder) or CEA (initiator) did not come in time.
    NoCapabilitiesExchange,
    /// The CER was refused (unknown peer, no common application), or the CEA was not a success.
    CapabilitiesRefused(u32),
    /// A message other than CER arrived first.
    MessageBeforeCer,
    /// The DWR went unanswered for Tw.
    WatchdogExpired,
    /// DPR/DPA done, or the DPA did not come in time.
    Disconnected,
}

/// What the driver does after an event: send at most one message, deliver the message to the
/// application, and close the connection (after sending).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    pub send: Option<Outgoing>,
    pub deliver: bool,
    pub close: Option<CloseReason>,
}

impl Step {
    fn send(s: Outgoing) -> Self {
        Step { send: Some(s), ..Step::default() }
    }

    fn close(reason: CloseReason) -> Self {
        Step { close: Some(reason), ..Step::default() }
    }
}

/// Timers: Tw of the watchdog, and how long the capabilities exchange may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RFC 3539 recommends 30 s; not below 6 s in a real network.
    pub tw: Duration,
    pub capabilities_exchange: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers { tw: Duration::from_secs(30), capabilities_exchange: Duration::from_secs(10) }
    }
}

/// One connection's state.
#[derive(Debug, Clone)]
pub struct PeerState {
    role: Role,
    state: State,
    timers: Timers,
    deadline: Instant,
    dwr_outstanding: bool,
}

impl PeerState {
    /// A connection accepted at `now`: waiting for the CER.
    pub fn responder(now: Instant, timers: Timers) -> Self {
        PeerState {
            role: Role::Responder,
            state: State::WaitCer,
            timers,
            deadline: now + timers.capabilities_exchange,
            dwr_outstanding: false,
        }
    }

    /// A connection made at `now`: the CER is to be sent.
    pub fn initiator(now: Instant, timers: Timers) -> (Self, Step) {
        let s = PeerState {
            role: Role::Initiator,
            state: State::WaitCea,
            timers,
            deadline: now + timers.capabilities_exchange,
            dwr_outstanding: false,
        };
        (s, Step::send(Outgoing::Cer))
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// When [`PeerState::on_timer`] is next due.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn heard(&mut self, now: Instant) {
        self.deadline = now + self.timers.tw;
        self.dwr_outstanding = false;
    }

    /// A message arrived at `now`.
    pub fn on_receive(&mut self, now: Instant, message: Received) -> Step {
        match self.state {
            State::WaitCer => self.wait_cer(now, message),
            State::WaitCea => self.wait_cea(now, message),
            State::Open => self.open(now, message),
            State::Closing => self.closing(now, message),
            State::Closed => Step::default(),
        }
    }

    fn wait_cer(&mut self, now: Instant, message: Received) -> Step {
        match message {
            Received::Cer { result_code } if result_code == result::SUCCESS => {
                self.state = State::Open;
                self.heard(now);
                Step::send(Outgoing::Cea(result_code))
            }
            Received::Cer { result_code } => {
                self.state = State::Closed;
                Step {
                    send: Some(Outgoing::Cea(result_code)),
                    close: Some(CloseReason::CapabilitiesRefused(result_code)),
                    deliver: false,
                }
            }
            Received::Request | Received::Dwr | Received::Dpr => {
                self.state = State::Closed;
                Step {
                    send: Some(Outgoing::Refusal(result::UNKNOWN_PEER)),
                    close: Some(CloseReason::MessageBeforeCer),
                    deliver: false,
                }
            }
            _ => {
                self.state = State::Closed;
                Step::close(CloseReason::MessageBeforeCer)
            }
        }
    }

    fn wait_cea(&mut self, now: Instant, message: Received) -> Step {
        match message {
            Received::Cea { result_code } if result_code == result::SUCCESS => {
                self.state = State::Open;
                self.heard(now);
                Step::default()
            }
            Received::Cea { result_code } => {
                self.state = State::Closed;
                Step::close(CloseReason::CapabilitiesRefused(result_code))
            }
            _ => {
                self.state = State::Closed;
                Step::close(CloseReason::MessageBeforeCer)
            }
        }
    }

    fn open(&mut self, now: Instant, message: Received) -> Step {
        self.heard(now);
        match message {
            // R-Open, R-Rcv-CER: answered again, the connection stays open.
            Received::Cer { result_code } => Step::send(Outgoing::Cea(result_code)),
            Received::Dwr => Step::send(Outgoing::Dwa),
            Received::Dpr => {
                self.state = State::Closed;
                Step { send: Some(Outgoing::Dpa), close: Some(CloseReason::Disconnected), deliver: false }
            }
            Received::Request | Received::Answer => Step { deliver: true, ..Step::default() },
            Received::Dwa | Received::Cea { .. } | Received::Dpa => Step::default(),
        }
    }

    fn closing(&mut self, _now: Instant, message: Received) -> Step {
        match message {
            Received::Dpa | Received::Dpr => {
                self.state = State::Closed;
                let send = (message == Received::Dpr).then_some(Outgoing::Dpa);
                Step { send, close: Some(CloseReason::Disconnected), deliver: false }
            }
            // Answers to requests sent before the DPR still reach their callers.
            Received::Answer => Step { deliver: true, ..Step::default() },
            Received::Dwr => Step::send(Outgoing::Dwa),
            _ => Step::default(),
        }
    }

    /// The deadline passed (the driver calls this at or after [`PeerState::deadline`]).
    pub fn on_timer(&mut self, now: Instant) -> Step {
        if now < self.deadline {
            return Step::default();
        }
        match self.state {
            State::WaitCer | State::WaitCea => {
                self.state = State::Closed;
                Step::close(CloseReason::NoCapabilitiesExchange)
            }
            State::Open if self.dwr_outstanding => {
                self.state = State::Closed;
                Step::close(CloseReason::WatchdogExpired)
            }
            State::Open => {
                self.dwr_outstanding = true;
                self.deadline = now + self.timers.tw;
                Step::send(Outgoing::Dwr)
            }
            State::Closing => {
                self.state = State::Closed;
                Step::close(CloseReason::Disconnected)
            }
            State::Closed => Step::default(),
        }
    }

    /// This node wants to disconnect: a DPR if open (then wait Tw for the DPA), else close.
    pub fn stop(&mut self, now: Instant) -> Step {
        match self.state {
            State::Open => {
                self.state = State::Closing;
                self.deadline = now + self.timers.tw;
                Step::send(Outgoing::Dpr)
            }
            State::Closing | State::Closed => Step::default(),
            State::WaitCer | State::WaitCea => {
                self.state = State::Closed;
                Step::close(CloseReason::Disconnected)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timers = Timers { tw: Duration::from_secs(30), capabilities_exchange: Duration::from_secs(10) };

    fn open_responder(now: Instant) -> PeerState {
        let mut p = PeerState::responder(now, T);
        assert_eq!(p.on_receive(now, Received::Cer { result_code: 2001 }), Step::send(Outgoing::Cea(2001)));
        assert_eq!(p.state(), State::Open);
        p
    }

    #[test]
    fn a_request_before_cer_is_refused_and_closes() {
        let now = Instant::now();
        let mut p = PeerState::responder(now, T);
        let step = p.on_receive(now, Received::Request);
        assert_eq!(step.send, Some(Outgoing::Refusal(3010)));
        assert_eq!(step.close, Some(CloseReason::MessageBeforeCer));
        assert!(!step.deliver);
        assert_eq!(p.state(), State::Closed);
    }

    #[test]
    fn a_refused_cer_is_answered_then_closed() {
        let now = Instant::now();
        let mut p = PeerState::responder(now, T);
        let step = p.on_receive(now, Received::Cer { result_code: 3010 });
        assert_eq!(step.send, Some(Outgoing::Cea(3010)));
        assert_eq!(step.close, Some(CloseReason::CapabilitiesRefused(3010)));
    }

    #[test]
    fn no_cer_in_time_closes() {
        let now = Instant::now();
        let mut p = PeerState::responder(now, T);
        assert_eq!(p.on_timer(now + Duration::from_secs(9)), Step::default());
        assert_eq!(p.on_timer(now + Duration::from_secs(10)).close, Some(CloseReason::NoCapabilitiesExchange));
    }

    #[test]
    fn the_watchdog_sends_dwr_on_idle_and_closes_a_silent_peer() {
        let now = Instant::now();
        let mut p = open_responder(now);
        assert_eq!(p.deadline(), now + T.tw);
        let t1 = now + T.tw;
        assert_eq!(p.on_timer(t1), Step::send(Outgoing::Dwr));
        let t2 = t1 + T.tw;
        assert_eq!(p.on_timer(t2).close, Some(CloseReason::WatchdogExpired));
        assert_eq!(p.state(), State::Closed);
    }

    #[test]
    fn traffic_and_dwa_keep_the_peer_up() {
        let now = Instant::now();
        let mut p = open_responder(now);
        let t1 = now + T.tw;
        assert_eq!(p.on_timer(t1), Step::send(Outgoing::Dwr));
        assert_eq!(p.on_receive(t1 + Duration::from_secs(1), Received::Dwa), Step::default());
        assert_eq!(p.deadline(), t1 + Duration::from_secs(1) + T.tw);
        let step = p.on_receive(t1 + Duration::from_secs(2), Received::Request);
        assert!(step.deliver);
        assert_eq!(p.on_receive(t1 + Duration::from_secs(3), Received::Dwr), Step::send(Outgoing::Dwa));
        assert_eq!(p.state(), State::Open);
    }

    #[test]
    fn dpr_is_answered_and_closes_and_stop_waits_for_dpa() {
        let now = Instant::now();
        let mut p = open_responder(now);
        let step = p.on_receive(now, Received::Dpr);
        assert_eq!((step.send, step.close), (Some(Outgoing::Dpa), Some(CloseReason::Disconnected)));

        let mut q = open_responder(now);
        assert_eq!(q.stop(now), Step::send(Outgoing::Dpr));
        assert_eq!(q.state(), State::Closing);
        assert!(q.on_receive(now, Received::Answer).deliver);
        assert_eq!(q.on_receive(now, Received::Dpa).close, Some(CloseReason::Disconnected));
    }

    #[test]
    fn the_initiator_opens_on_a_successful_cea_only() {
        let now = Instant::now();
        let (mut p, step) = PeerState::initiator(now, T);
        assert_eq!(step, Step::send(Outgoing::Cer));
        assert_eq!(p.on_receive(now, Received::Cea { result_code: 2001 }), Step::default());
        assert_eq!(p.state(), State::Open);
        let (mut q, _) = PeerState::initiator(now, T);
        assert_eq!(
            q.on_receive(now, Received::Cea { result_code: 5010 }).close,
            Some(CloseReason::CapabilitiesRefused(5010))
        );
        let (mut r, _) = PeerState::initiator(now, T);
        assert_eq!(r.on_timer(now + T.capabilities_exchange).close, Some(CloseReason::NoCapabilitiesExchange));
    }

    fn event() -> impl proptest::strategy::Strategy<Value = (u64, u8, u32)> {
        use proptest::prelude::*;
        (0u64..40_000, 0u8..12, prop_oneof![Just(2001u32), Just(3010), Just(5010)])
    }

    proptest::proptest! {
        /// Whatever arrives, in whatever order and at whatever time: nothing is delivered
        /// before the capabilities exchange, a closed connection stays closed and silent, and
        /// the deadline never lies in the past of the last event for an open connection.
        #[test]
        fn any_sequence_keeps_the_invariants(
            responder: bool,
            events in proptest::collection::vec(event(), 0..40),
        ) {
            let start = Instant::now();
            let mut p = if responder { PeerState::responder(start, T) } else { PeerState::initiator(start, T).0 };
            let mut now = start;
            let mut opened = false;
            for (ms, kind, code) in events {
                now += Duration::from_millis(ms);
                let before = p.state();
                let step = match kind {
                    0 => p.on_receive(now, Received::Cer { result_code: code }),
                    1 => p.on_receive(now, Received::Cea { result_code: code }),
                    2 => p.on_receive(now, Received::Dwr),
                    3 => p.on_receive(now, Received::Dwa),
                    4 => p.on_receive(now, Received::Dpr),
                    5 => p.on_receive(now, Received::Dpa),
                    6 | 7 => p.on_receive(now, Received::Request),
                    8 => p.on_receive(now, Received::Answer),
                    9 => p.stop(now),
                    _ => p.on_timer(now),
                };
                opened |= p.state() == State::Open;
                if before == State::Closed {
                    proptest::prop_assert_eq!(step, Step::default());
                }
                if step.deliver {
                    proptest::prop_assert!(opened && matches!(before, State::Open | State::Closing));
                }
                if step.close.is_some() {
                    proptest::prop_assert_eq!(p.state(), State::Closed);
                }
                if p.state() == State::Open {
                    proptest::prop_assert!(p.deadline() > now);
                }
            }
        }
    }
}
