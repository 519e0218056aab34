//! The per-category overload-protection state, driven by the elements' load reports.
//!
//! Each category has a state: [`ProtectionState::Normal`] sends at the full rate the allocator
//! gives it, [`ProtectionState::Limited`] at most a share of an element's budget,
//! [`ProtectionState::Suspended`] nothing. The input is a [`Pressure`]: the worst, over the
//! elements the category sends to, of the element's reported utilisation, its reported queue
//! (as a multiple of the queueing delay it is allowed), and the work of higher-priority
//! categories queued for it (as seconds of the element's capacity). A category thus yields when
//! an element is overloaded or when more important work cannot drain, not because of its own
//! backlog.
//!
//! Hysteresis: a state rises at once when the pressure reaches its threshold (protection must be
//! quick), and falls one step only after the pressure has stayed below `release` × that
//! threshold for `hold_ms` (recovery must be sure). Time comes from the caller, so tests drive
//! it with a test clock.

use std::fmt;

use numport_core::Millis;
use serde::{Deserialize, Serialize};

use super::order::{Category, Element};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProtectionState {
    Normal,
    Limited,
    Suspended,
}

impl ProtectionState {
    pub const ALL: [ProtectionState; 3] =
        [ProtectionState::Normal, ProtectionState::Limited, ProtectionState::Suspended];

    pub fn as_str(self) -> &'static str {
        match self {
            ProtectionState::Normal => "normal",
            ProtectionState::Limited => "limited",
            ProtectionState::Suspended => "suspended",
        }
    }

    /// 0, 1, 2: the level plotted and exported as a gauge.
    pub fn level(self) -> i64 {
        self as i64
    }

    fn down(self) -> ProtectionState {
        match self {
            ProtectionState::Suspended => ProtectionState::Limited,
            _ => ProtectionState::Normal,
        }
    }
}

impl fmt::Display for ProtectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The load an element reports with every answer and in its periodic reports.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ElementLoad {
    /// Commands received and not yet executed.
    pub depth: u64,
    /// Commands received in the last report window over what its capacity allows in it.
    pub utilisation: f64,
    /// Commands per second the element executes now.
    pub capacity: u32,
}

/// Which signal made a pressure what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Signal {
    Utilisation,
    /// The element's own queue, over [`TARGET_DELAY_MS`] of its capacity.
    ElementQueue,
    /// Higher-priority commands queued here, over one second of the element's capacity.
    WorkAhead,
}

/// The queueing delay at an element that counts as pressure 1.
pub const TARGET_DELAY_MS: u64 = 50;

/// How loaded an element is for one category: 1.0 is "at capacity".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pressure {
    pub value: f64,
    pub element: Element,
    pub signal: Signal,
}

impl Pressure {
    pub const NONE: Pressure = Pressure { value: 0.0, element: Element::Hlr, signal: Signal::Utilisation };

    /// The pressure on `element` for a category with `work_ahead` commands of higher-priority
    /// categories queued for it.
    pub fn of(element: Element, load: &ElementLoad, work_ahead: u64) -> Pressure {
        let capacity = f64::from(load.capacity.max(1));
        let queue = load.depth as f64 * 1000.0 / (capacity * TARGET_DELAY_MS as f64);
        let ahead = work_ahead as f64 / capacity;
        [(load.utilisation, Signal::Utilisation), (queue, Signal::ElementQueue), (ahead, Signal::WorkAhead)]
            .into_iter()
            .map(|(value, signal)| Pressure { value, element, signal })
            .fold(Pressure::NONE, Pressure::max)
    }

    /// The larger of two pressures.
    pub fn max(self, other: Pressure) -> Pressure {
        if other.value > self.value { other } else { self }
    }
}

impl fmt::Display for Pressure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signal = match self.signal {
            Signal::Utilisation => "utilisation",
            Signal::ElementQueue => "queue",
            Signal::WorkAhead => "work ahead",
        };
        write!(f, "{} {signal} {:.2}", self.element, self.value)
    }
}

/// When a category's state changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Pressure at which the state becomes at least limited.
    pub limit_at: f64,
    /// Pressure at which it is suspended; `None`: never (what must go through).
    pub suspend_at: Option<f64>,
    /// A state falls once the pressure stays below `release` × its threshold ...
    pub release: f64,
    /// ... for this long.
    pub hold_ms: Millis,
}

impl Thresholds {
    /// The defaults: activations are never suspended and only limited when an element is
    /// swamped; bulk yields as soon as an element is at capacity.
    pub fn default_for(category: Category) -> Thresholds {
        let (limit_at, suspend_at) = match category {
            Category::Activation => (3.0, None),
            Category::Service => (1.5, Some(3.0)),
            Category::Bulk => (1.0, Some(1.5)),
        };
        Thresholds { limit_at, suspend_at, release: 0.7, hold_ms: 2_000 }
    }

    fn target(&self, pressure: f64) -> ProtectionState {
        match self.suspend_at {
            Some(s) if pressure >= s => ProtectionState::Suspended,
            _ if pressure >= self.limit_at => ProtectionState::Limited,
            _ => ProtectionState::Normal,
        }
    }

    /// The pressure a state must stay under to fall.
    fn release_below(&self, state: ProtectionState) -> f64 {
        let threshold = match state {
            ProtectionState::Suspended => self.suspend_at.unwrap_or(f64::INFINITY),
            _ => self.limit_at,
        };
        threshold * self.release
    }
}

/// A state change and what caused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    pub category: Category,
    pub from: ProtectionState,
    pub to: ProtectionState,
    pub at: Millis,
    /// The pressure observed, e.g. `hlr utilisation 1.42`.
    pub cause: String,
}

/// One category's protection state machine.
#[derive(Debug, Clone)]
pub struct Protection {
    category: Category,
    thresholds: Thresholds,
    state: ProtectionState,
    /// Since when the pressure has been below the current state's release level.
    calm_since: Option<Millis>,
}

impl Protection {
    pub fn new(category: Category, thresholds: Thresholds) -> Protection {
        Protection { category, thresholds, state: ProtectionState::Normal, calm_since: None }
    }

    pub fn state(&self) -> ProtectionState {
        self.state
    }

    /// Take one observation at `now`; the transition it causes, if any.
    pub fn observe(&mut self, pressure: Pressure, now: Millis) -> Option<Transition> {
        let target = self.thresholds.target(pressure.value);
        let to = if target > self.state {
            self.calm_since = None;
            target
        } else if self.state != ProtectionState::Normal && pressure.value < self.thresholds.release_below(self.state) {
            let since = *self.calm_since.get_or_insert(now);
            if now - since < self.thresholds.hold_ms {
                return None;
            }
            self.calm_since = None;
            self.state.down()
        } else {
            self.calm_since = None;
            return None;
        };
        let from = std::mem::replace(&mut self.state, to);
        (from != to).then(|| Transition { category: self.category, from, to, at: now, cause: pressure.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use numport_core::{Clock, ManualClock};

    use super::*;
    use ProtectionState::*;

    fn hlr(value: f64) -> Pressure {
        Pressure { value, element: Element::Hlr, signal: Signal::Utilisation }
    }

    /// Feed `value` every 100 ms for `ms`, collecting the states reached.
    fn run(p: &mut Protection, clock: &ManualClock, value: f64, ms: Millis) -> Vec<(ProtectionState, ProtectionState)> {
        let mut seen = Vec::new();
        for _ in 0..ms / 100 {
            clock.advance_ms(100);
            if let Some(t) = p.observe(hlr(value), clock.now_ms()) {
                seen.push((t.from, t.to));
            }
        }
        seen
    }

    #[test]
    fn rises_at_once_and_falls_one_step_per_hold() {
        let clock = ManualClock::new(0);
        let mut p = Protection::new(Category::Bulk, Thresholds::default_for(Category::Bulk));
        assert_eq!(run(&mut p, &clock, 0.9, 1_000), []);
        let t = p.observe(hlr(2.0), clock.now_ms()).unwrap();
        assert_eq!((t.from, t.to, t.cause.as_str()), (Normal, Suspended, "hlr utilisation 2.00"));
        // Below suspend (1.5) but above its release level (1.05): stays suspended however long.
        assert_eq!(run(&mut p, &clock, 1.2, 10_000), []);
        // Calm: one step down once it has lasted the hold (2 s from the first calm report),
        // the next after another.
        assert_eq!(run(&mut p, &clock, 0.5, 2_000), []);
        assert_eq!(run(&mut p, &clock, 0.5, 100), [(Suspended, Limited)]);
        assert_eq!(run(&mut p, &clock, 0.5, 2_000), []);
        assert_eq!(run(&mut p, &clock, 0.5, 100), [(Limited, Normal)]);
    }

    #[test]
    fn does_not_flap_around_a_threshold() {
        let clock = ManualClock::new(0);
        let mut p = Protection::new(Category::Service, Thresholds::default_for(Category::Service));
        // Pressure oscillating across the limit threshold (1.5) every 300 ms.
        let mut transitions = Vec::new();
        for i in 0..100 {
            let value = if i % 6 < 3 { 1.6 } else { 1.0 };
            transitions.extend(run(&mut p, &clock, value, 100));
        }
        assert_eq!(transitions, [(Normal, Limited)], "one rise, no flapping");
        assert_eq!(p.state(), Limited);
    }

    #[test]
    fn calm_interrupted_restarts_the_hold() {
        let clock = ManualClock::new(0);
        let mut p = Protection::new(Category::Bulk, Thresholds::default_for(Category::Bulk));
        run(&mut p, &clock, 1.2, 100);
        assert_eq!(p.state(), Limited);
        assert_eq!(run(&mut p, &clock, 0.1, 1_500), []);
        assert_eq!(run(&mut p, &clock, 0.9, 100), [], "0.9 is above the release level 0.7");
        assert_eq!(run(&mut p, &clock, 0.1, 2_000), []);
        assert_eq!(run(&mut p, &clock, 0.1, 100), [(Limited, Normal)]);
    }

    #[test]
    fn activation_is_never_suspended() {
        let clock = ManualClock::new(0);
        let mut p = Protection::new(Category::Activation, Thresholds::default_for(Category::Activation));
        assert_eq!(run(&mut p, &clock, 2.9, 500), []);
        assert_eq!(run(&mut p, &clock, 100.0, 500), [(Normal, Limited)]);
    }

    #[test]
    fn pressure_takes_the_worst_signal() {
        let load = ElementLoad { depth: 100, utilisation: 0.5, capacity: 1_000 };
        // 100 queued at 1,000/s is 100 ms: twice the target delay.
        let p = Pressure::of(Element::Smsc, &load, 0);
        assert_eq!((p.signal, p.value), (Signal::ElementQueue, 2.0));
        let p = Pressure::of(Element::Smsc, &load, 3_000);
        assert_eq!((p.signal, p.value), (Signal::WorkAhead, 3.0));
        assert_eq!(p.to_string(), "smsc work ahead 3.00");
        let idle = ElementLoad { depth: 0, utilisation: 0.0, capacity: 0 };
        assert_eq!(Pressure::of(Element::Hlr, &idle, 0).value, 0.0);
    }
}
