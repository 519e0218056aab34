//! CN102083044A: credit control on partial CDRs during a long call, and the formal rating of
//! the complete CDR at its end.
//!
//! A switch cuts a long call's record into partial CDRs. Each is rated as it arrives, at the
//! tariff of its own start, and charged at once ([`on_partial`]): fully paid with room for at
//! least one more block, the call goes on; otherwise the switch is told to cut it off (what
//! was used is still charged, as far as the credit limit allows). When the call ends the
//! partials are merged into the complete CDR ([`merge`]), which is rated once as a whole call
//! ([`formal_charge`]); the balance is then corrected by the difference between that formal
//! charge and what the partials were charged ([`Correction`]). The two differ because each
//! partial rounds up to a started block and a call crossing a band is rated at its start.

use numport_core::{Millis, Money};
use serde::{Deserialize, Serialize};

use crate::balance::{Account, BalanceError, Entry};
use crate::rating::{RatingError, Service, TariffTable};

/// One partial (split) CDR of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialCdr {
    pub call_id: String,
    /// 1, 2, … in the order the switch cut them.
    pub seq: u32,
    pub caller: String,
    pub called: String,
    /// When this part began.
    pub start: Millis,
    pub duration_s: u64,
    /// The call ended with this part.
    pub last: bool,
}

/// The complete CDR the partials merge into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteCdr {
    pub call_id: String,
    pub caller: String,
    pub called: String,
    pub start: Millis,
    pub duration_s: u64,
    pub partials: u32,
}

/// What the switch is told after a partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum PartialDecision {
    /// Charged in full; the balance allows more.
    Continue { charged: Money },
    /// The balance ran out: release the call.
    CutOff { charged: Money, uncollected: Money },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("no partial CDRs")]
    Empty,
    #[error("partial {0} is missing")]
    Missing(u32),
    #[error("partial {0} arrived twice")]
    Duplicate(u32),
    #[error("partials of different calls or parties")]
    Mismatch,
    #[error("the last partial is not flagged as the call's end")]
    NotEnded,
}

/// What one partial costs on its own.
pub fn partial_charge(tariffs: &TariffTable, p: &PartialCdr) -> Result<Money, RatingError> {
    tariffs.rate(Service::Voice, &p.called, p.start, p.duration_s)
}

/// Rate `p`, charge it to `account`, and decide whether the call may go on.
pub fn on_partial(
    account: &mut Account,
    tariffs: &TariffTable,
    p: &PartialCdr,
    now: Millis,
) -> Result<(PartialDecision, Option<Entry>), PartialError> {
    let cost = partial_charge(tariffs, p)?;
    let (charged, entry) = account.debit_up_to(cost, now)?;
    let next_block = tariffs.price(Service::Voice, &p.called, p.start)?.cost(1).unwrap_or(Money(i64::MAX));
    let decision = if charged == cost && account.available(now) >= next_block {
        PartialDecision::Continue { charged }
    } else {
        PartialDecision::CutOff { charged, uncollected: Money(cost.0 - charged.0) }
    };
    Ok((decision, entry))
}

#[derive(Debug, thiserror::Error)]
pub enum PartialError {
    #[error(transparent)]
    Rating(#[from] RatingError),
    #[error(transparent)]
    Balance(#[from] BalanceError),
    #[error(transparent)]
    Merge(#[from] MergeError),
}

/// Merge a call's partials (in any order) into its complete CDR: numbered 1..=n without gap
/// or repeat, one call between the same parties, the last one flagged as the end.
pub fn merge(partials: &[PartialCdr]) -> Result<CompleteCdr, MergeError> {
    let mut sorted: Vec<&PartialCdr> = partials.iter().collect();
    sorted.sort_by_key(|p| p.seq);
    let first = *sorted.first().ok_or(MergeError::Empty)?;
    let mut duration_s: u64 = 0;
    for (i, p) in sorted.iter().enumerate() {
        let expected = i as u32 + 1;
        if p.seq < expected {
            return Err(MergeError::Duplicate(p.seq));
        }
        if p.seq > expected {
            return Err(MergeError::Missing(expected));
        }
        if p.call_id != first.call_id || p.caller != first.caller || p.called != first.called {
            return Err(MergeError::Mismatch);
        }
        duration_s = duration_s.saturating_add(p.duration_s);
    }
    if !sorted.last().is_some_and(|p| p.last) || sorted.iter().rev().skip(1).any(|p| p.last) {
        return Err(MergeError::NotEnded);
    }
    Ok(CompleteCdr {
        call_id: first.call_id.clone(),
        caller: first.caller.clone(),
        called: first.called.clone(),
        start: first.start,
        duration_s,
        partials: sorted.len() as u32,
    })
}

/// The formal charge of the whole call: rated once, at the tariff of its start.
pub fn formal_charge(tariffs: &TariffTable, cdr: &CompleteCdr) -> Result<Money, RatingError> {
    tariffs.rate(Service::Voice, &cdr.called, cdr.start, cdr.duration_s)
}

/// The formal result against what the partials charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    pub provisional: Money,
    pub formal: Money,
}

impl Correction {
    /// Positive: the subscriber owes more; negative: is owed.
    pub fn difference(self) -> Money {
        Money(self.formal.0 - self.provisional.0)
    }

    /// Apply it to `account`: a refund in full, or a further charge as far as the credit limit
    /// allows. Returns what actually moved (positive charged, negative refunded).
    pub fn apply(self, account: &mut Account, now: Millis) -> Result<(Money, Option<Entry>), BalanceError> {
        let d = self.difference();
        if d.is_negative() { Ok((d, account.refund(Money(-d.0))?)) } else { account.debit_up_to(d, now) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rating::{TariffRule, TimeBand};

    fn tariffs() -> TariffTable {
        TariffTable::compile(
            vec![TariffRule {
                service: Service::Voice,
                prefix: "".into(),
                band: TimeBand::ALL_DAY,
                price: Money(10),
                block: 60,
            }],
            0,
        )
        .unwrap()
    }

    fn part(seq: u32, start: Millis, duration_s: u64, last: bool) -> PartialCdr {
        PartialCdr {
            call_id: "c1".into(),
            seq,
            caller: "4790000001".into(),
            called: "4790000002".into(),
            start,
            duration_s,
            last,
        }
    }

    #[test]
    fn partials_charged_then_corrected_by_the_formal_rating() {
        let t = tariffs();
        let mut a = Account::new(1, Money(0));
        a.recharge(Money(1000), None).unwrap();
        let parts = [part(1, 0, 90, false), part(2, 90_000, 90, false), part(3, 180_000, 30, true)];
        let mut provisional = Money::ZERO;
        for p in &parts {
            let (d, _) = on_partial(&mut a, &t, p, 0).unwrap();
            let PartialDecision::Continue { charged } = d else { panic!("{d:?}") };
            provisional.0 += charged.0;
        }
        // 20 + 20 + 10 charged; the whole call is 210 s: four blocks, 40.
        assert_eq!(provisional, Money(50));
        let complete = merge(&[parts[2].clone(), parts[0].clone(), parts[1].clone()]).unwrap();
        assert_eq!((complete.duration_s, complete.partials, complete.start), (210, 3, 0));
        let c = Correction { provisional, formal: formal_charge(&t, &complete).unwrap() };
        assert_eq!(c.difference(), Money(-10));
        let (moved, e) = c.apply(&mut a, 0).unwrap();
        assert_eq!(moved, Money(-10));
        assert!(e.is_some());
        assert_eq!(a.net(), Money(960));
    }

    #[test]
    fn cut_off_when_the_balance_runs_out() {
        let t = tariffs();
        let mut a = Account::new(1, Money(5));
        a.recharge(Money(25), None).unwrap();
        let (d, _) = on_partial(&mut a, &t, &part(1, 0, 120, false), 0).unwrap();
        assert_eq!(d, PartialDecision::Continue { charged: Money(20) });
        let (d, _) = on_partial(&mut a, &t, &part(2, 0, 120, false), 0).unwrap();
        assert_eq!(d, PartialDecision::CutOff { charged: Money(10), uncollected: Money(10) });
        assert_eq!(a.debt, Money(5));
    }

    #[test]
    fn merge_refuses_gaps_repeats_and_strangers() {
        assert_eq!(merge(&[]), Err(MergeError::Empty));
        assert_eq!(merge(&[part(1, 0, 1, false), part(3, 0, 1, true)]), Err(MergeError::Missing(2)));
        assert_eq!(merge(&[part(1, 0, 1, false), part(1, 0, 1, true)]), Err(MergeError::Duplicate(1)));
        assert_eq!(merge(&[part(1, 0, 1, false), part(2, 0, 1, false)]), Err(MergeError::NotEnded));
        assert_eq!(merge(&[part(1, 0, 1, true), part(2, 0, 1, true)]), Err(MergeError::NotEnded));
        let mut other = part(2, 0, 1, true);
        other.called = "1".into();
        assert_eq!(merge(&[part(1, 0, 1, false), other]), Err(MergeError::Mismatch));
    }
}
