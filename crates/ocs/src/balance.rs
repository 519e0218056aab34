//! Balances: monetary and unit buckets with expiry, reservations held against them, a credit
//! limit nothing can overrun, and the double-entry journal of every money movement.
//!
//! An [`Account`] is the whole state of one subscriber's balance, loaded under the account's
//! lock, changed by the pure operations here, and written back in the same transaction. Money
//! a reservation holds is *taken out* of the buckets when reserved (earliest expiry first, the
//! main bucket last, then credit up to the limit), so an expiry or a second session can never
//! spend it again; commit charges what was used and returns the rest. Hence the invariants,
//! checked by [`Account::check`] and the property tests:
//!
//! - `0 <= debt <= credit_limit` at all times: only [`Account::reserve`], [`Account::debit`] and
//!   [`Account::debit_up_to`] take credit, and each takes at most the headroom;
//! - the ledger account [`Ledger::Available`] sums to `Σ money buckets − debt`, and
//!   [`Ledger::Reserved`] to the money the reservations hold;
//! - every entry balances ([`JournalEntry`]), so money is conserved across the accounts
//!   `Available`, `Reserved`, `Revenue` (charged), `Funding` (recharges' source) and
//!   `Forfeited` (expired).
//!
//! Unit buckets (free minutes, octets, messages) are quantities, not money: they are drawn by
//! reservations the same way and are not journaled.

use numport_core::{JournalEntry, Millis, Money, money::JournalError};
use serde::{Deserialize, Serialize};

use crate::rating::{Price, UnitKind};

pub type AccountId = i64;

/// The bucket every account has: no expiry, where refunds and recharges without expiry go.
pub const MAIN_BUCKET: i64 = 0;

/// The ledger accounts money moves between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ledger {
    /// What the subscriber holds, net of credit taken: `Σ buckets − debt`.
    Available(AccountId),
    /// What the subscriber's reservations hold.
    Reserved(AccountId),
    /// Charged usage.
    Revenue,
    /// Where recharges come from (payments).
    Funding,
    /// Expired balances.
    Forfeited,
}

impl Ledger {
    /// The stored form: `available:42`, `reserved:42`, `revenue`, `funding`, `forfeited`.
    pub fn key(&self) -> String {
        match self {
            Ledger::Available(a) => format!("available:{a}"),
            Ledger::Reserved(a) => format!("reserved:{a}"),
            Ledger::Revenue => "revenue".into(),
            Ledger::Funding => "funding".into(),
            Ledger::Forfeited => "forfeited".into(),
        }
    }

    pub fn parse(s: &str) -> Option<Ledger> {
        match s {
            "revenue" => Some(Ledger::Revenue),
            "funding" => Some(Ledger::Funding),
            "forfeited" => Some(Ledger::Forfeited),
            _ => {
                let (kind, id) = s.split_once(':')?;
                let id = id.parse().ok()?;
                match kind {
                    "available" => Some(Ledger::Available(id)),
                    "reserved" => Some(Ledger::Reserved(id)),
                    _ => None,
                }
            }
        }
    }
}

pub type Entry = JournalEntry<Ledger>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyBucket {
    /// Number within the account; [`MAIN_BUCKET`] is the main bucket.
    pub no: i64,
    pub remaining: Money,
    pub expires_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitBucket {
    pub no: i64,
    pub unit: UnitKind,
    /// The rating group it may be spent on; `None` for any.
    pub rating_group: Option<u32>,
    pub remaining: u64,
    pub expires_at: Option<Millis>,
}

/// What a reservation took from one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draw {
    pub bucket: i64,
    pub amount: i64,
}

/// Units and money held for one rating group of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub session_id: String,
    pub rating_group: u32,
    pub unit: UnitKind,
    /// The price the units were bought at; used units are charged at it.
    pub price: Price,
    /// Units granted in all.
    pub granted: u64,
    /// Of those, units drawn from unit buckets.
    pub units: u64,
    pub unit_draws: Vec<Draw>,
    /// Money held, from buckets and credit.
    pub money: Money,
    pub money_draws: Vec<Draw>,
    /// Of `money`, the part taken as credit.
    pub debt: Money,
    pub created_at: Millis,
}

/// A grant: units reserved, and whether it is the last the balance allows (Final-Unit-Indication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub units: u64,
    pub money: Money,
    pub last: bool,
}

/// What a commit charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Charged {
    pub money: Money,
    /// Units used beyond the grant that the balance could not pay for (never charged past the limit).
    pub uncollected_units: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    #[error("no reservation for session {0:?} rating group {1}")]
    NoReservation(String, u32),
    #[error("session {0:?} already holds a reservation for rating group {1}")]
    AlreadyReserved(String, u32),
    #[error("insufficient funds: {needed} needed, {available} available")]
    InsufficientFunds { needed: Money, available: Money },
    #[error("amount must be positive")]
    NotPositive,
    #[error("amount overflows")]
    Overflow,
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("balance invariant broken: {0}")]
    Invariant(String),
}

/// A balanced entry from `lines`, zero lines left out; `None` when nothing moved.
fn entry(lines: Vec<(Ledger, Money)>) -> Result<Option<Entry>, BalanceError> {
    let lines: Vec<_> = lines.into_iter().filter(|(_, m)| m.0 != 0).collect();
    if lines.is_empty() {
        return Ok(None);
    }
    Ok(Some(JournalEntry::new(lines)?))
}

fn live(expires_at: Option<Millis>, now: Millis) -> bool {
    expires_at.is_none_or(|e| e > now)
}

/// One subscriber's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    /// How far below zero the balance may go (credit), in minor units; never negative.
    pub credit_limit: Money,
    /// Credit taken, `0..=credit_limit`.
    pub debt: Money,
    pub money: Vec<MoneyBucket>,
    pub units: Vec<UnitBucket>,
    pub reservations: Vec<Reservation>,
}

impl Account {
    /// A new account with an empty main bucket.
    pub fn new(id: AccountId, credit_limit: Money) -> Account {
        Account {
            id,
            credit_limit: Money(credit_limit.0.max(0)),
            debt: Money::ZERO,
            money: vec![MoneyBucket { no: MAIN_BUCKET, remaining: Money::ZERO, expires_at: None }],
            units: Vec::new(),
            reservations: Vec::new(),
        }
    }

    /// Money that can still be spent or reserved: live buckets plus the credit headroom.
    pub fn available(&self, now: Millis) -> Money {
        let held: i64 = self.money.iter().filter(|b| live(b.expires_at, now)).map(|b| b.remaining.0).sum();
        Money(held + (self.credit_limit.0 - self.debt.0).max(0))
    }

    /// `Σ money buckets − debt`: what the [`Ledger::Available`] account sums to.
    pub fn net(&self) -> Money {
        Money(self.money.iter().map(|b| b.remaining.0).sum::<i64>() - self.debt.0)
    }

    /// What the reservations hold: what [`Ledger::Reserved`] sums to.
    pub fn reserved(&self) -> Money {
        Money(self.reservations.iter().map(|r| r.money.0).sum())
    }

    /// Units left of `unit` for `rating_group`, live ones only.
    pub fn units_available(&self, unit: UnitKind, rating_group: u32, now: Millis) -> u64 {
        self.units
            .iter()
            .filter(|b| b.unit == unit && b.rating_group.is_none_or(|g| g == rating_group) && live(b.expires_at, now))
            .map(|b| b.remaining)
            .sum()
    }

    pub fn reservation(&self, session_id: &str, rating_group: u32) -> Option<&Reservation> {
        self.reservations.iter().find(|r| r.session_id == session_id && r.rating_group == rating_group)
    }

    /// Take `amount` out of the live buckets (earliest expiry first, the unexpiring last) and
    /// then credit; all or nothing.
    fn draw_money(&mut self, amount: Money, now: Millis) -> Result<(Vec<Draw>, Money), BalanceError> {
        let available = self.available(now);
        if amount > available {
            return Err(BalanceError::InsufficientFunds { needed: amount, available });
        }
        let mut order: Vec<usize> = (0..self.money.len())
            .filter(|&i| live(self.money[i].expires_at, now) && self.money[i].remaining.0 > 0)
            .collect();
        order.sort_by_key(|&i| (self.money[i].expires_at.unwrap_or(Millis::MAX), self.money[i].no));
        let mut left = amount.0;
        let mut draws = Vec::new();
        for i in order {
            if left == 0 {
                break;
            }
            let b = &mut self.money[i];
            let take = left.min(b.remaining.0);
            b.remaining.0 -= take;
            left -= take;
            draws.push(Draw { bucket: b.no, amount: take });
        }
        self.debt.0 += left;
        Ok((draws, Money(left)))
    }

    /// Put `amount` back: credit taken is repaid first, then the `draws` are refilled (latest
    /// first), the rest into `into` (a new bucket's number, or the main bucket).
    fn credit_money(&mut self, amount: Money, draws: &[Draw], into: i64) {
        let mut left = amount.0;
        let repay = left.min(self.debt.0);
        self.debt.0 -= repay;
        left -= repay;
        for d in draws.iter().rev() {
            if left == 0 {
                break;
            }
            if let Some(b) = self.money.iter_mut().find(|b| b.no == d.bucket) {
                let give = left.min(d.amount);
                b.remaining.0 += give;
                left -= give;
            }
        }
        if left > 0 {
            match self.money.iter_mut().find(|b| b.no == into) {
                Some(b) => b.remaining.0 += left,
                None => self.money.push(MoneyBucket { no: into, remaining: Money(left), expires_at: None }),
            }
        }
    }

    fn draw_units(&mut self, unit: UnitKind, rating_group: u32, wanted: u64, now: Millis) -> (u64, Vec<Draw>) {
        let mut order: Vec<usize> = (0..self.units.len())
            .filter(|&i| {
                let b = &self.units[i];
                b.unit == unit
                    && b.rating_group.is_none_or(|g| g == rating_group)
                    && live(b.expires_at, now)
                    && b.remaining > 0
            })
            .collect();
        order.sort_by_key(|&i| (self.units[i].expires_at.unwrap_or(Millis::MAX), self.units[i].no));
        let (mut left, mut draws) = (wanted, Vec::new());
        for i in order {
            if left == 0 {
                break;
            }
            let b = &mut self.units[i];
            let take = left.min(b.remaining);
            b.remaining -= take;
            left -= take;
            draws.push(Draw { bucket: b.no, amount: take as i64 });
        }
        (wanted - left, draws)
    }

    fn return_units(&mut self, mut amount: u64, draws: &[Draw]) {
        for d in draws.iter().rev() {
            if amount == 0 {
                return;
            }
            if let Some(b) = self.units.iter_mut().find(|b| b.no == d.bucket) {
                let give = amount.min(d.amount as u64);
                b.remaining += give;
                amount -= give;
            }
        }
    }

    /// Reserve up to `wanted` units of `unit` at `price` for (`session_id`, `rating_group`):
    /// unit buckets first, then money for the rest, as much as the balance and the credit
    /// limit allow. A grant of zero units reserves nothing.
    pub fn reserve(
        &mut self,
        session_id: &str,
        rating_group: u32,
        unit: UnitKind,
        price: Price,
        wanted: u64,
        now: Millis,
    ) -> Result<(Grant, Option<Entry>), BalanceError> {
        if self.reservation(session_id, rating_group).is_some() {
            return Err(BalanceError::AlreadyReserved(session_id.to_owned(), rating_group));
        }
        let (units, unit_draws) = self.draw_units(unit, rating_group, wanted, now);
        let rest = wanted - units;
        let available = self.available(now);
        // A request whose cost overflows is one the balance cannot pay in full either.
        let bought = match price.cost(rest) {
            Some(cost) if cost <= available => rest,
            _ => rest.min(price.units_for(available)),
        };
        let money = price.cost(bought).ok_or(BalanceError::Overflow)?;
        let (money_draws, debt) = self.draw_money(money, now)?;
        let granted = units + bought;
        let after = self.available(now);
        let more_possible =
            self.units_available(unit, rating_group, now) > 0 || price.cost(1).is_some_and(|one| one <= after);
        let grant = Grant { units: granted, money, last: granted < wanted || !more_possible };
        if granted == 0 {
            return Ok((grant, None));
        }
        self.reservations.push(Reservation {
            session_id: session_id.to_owned(),
            rating_group,
            unit,
            price,
            granted,
            units,
            unit_draws,
            money,
            money_draws,
            debt,
            created_at: now,
        });
        let journal = entry(vec![(Ledger::Available(self.id), Money(-money.0)), (Ledger::Reserved(self.id), money)])?;
        Ok((grant, journal))
    }

    /// Charge `used` units against the reservation of (`session_id`, `rating_group`) and
    /// release the rest. Units used beyond the grant are charged from what is still available
    /// and, past that, reported uncollected: the credit limit holds whatever the gateway says.
    pub fn commit(
        &mut self,
        session_id: &str,
        rating_group: u32,
        used: u64,
        now: Millis,
    ) -> Result<(Charged, Vec<Entry>), BalanceError> {
        let pos = self
            .reservations
            .iter()
            .position(|r| r.session_id == session_id && r.rating_group == rating_group)
            .ok_or_else(|| BalanceError::NoReservation(session_id.to_owned(), rating_group))?;
        let r = self.reservations.remove(pos);
        let from_units = used.min(r.units);
        self.return_units(r.units - from_units, &r.unit_draws);
        let beyond_units = used - from_units;
        let cost = r.price.cost(beyond_units).unwrap_or(Money(i64::MAX));
        let from_reservation = cost.min(r.money);
        let returned = Money(r.money.0 - from_reservation.0);
        self.credit_money(returned, &r.money_draws, MAIN_BUCKET);
        let mut entries = Vec::new();
        entries.extend(entry(vec![
            (Ledger::Reserved(self.id), Money(-r.money.0)),
            (Ledger::Available(self.id), returned),
            (Ledger::Revenue, from_reservation),
        ])?);
        let mut charged = Charged { money: from_reservation, uncollected_units: 0 };
        if cost > r.money {
            let (extra, e) = self.debit_up_to(Money(cost.0 - r.money.0), now)?;
            entries.extend(e);
            charged.money.0 += extra.0;
            if extra.0 < cost.0 - r.money.0 {
                // The units the extra money paid for, in whole blocks; the rest is uncollected.
                let paid_units = r.price.units_for(Money(r.money.0 + extra.0));
                charged.uncollected_units = beyond_units.saturating_sub(paid_units);
            }
        }
        Ok((charged, entries))
    }

    /// Release every reservation of `session_id` (nothing used): the Tcc expiry and the end of
    /// a session.
    pub fn release_session(&mut self, session_id: &str, now: Millis) -> Result<Vec<Entry>, BalanceError> {
        let groups: Vec<u32> =
            self.reservations.iter().filter(|r| r.session_id == session_id).map(|r| r.rating_group).collect();
        let mut entries = Vec::new();
        for g in groups {
            entries.extend(self.commit(session_id, g, 0, now)?.1);
        }
        Ok(entries)
    }

    /// Charge `amount` at once, all or nothing.
    pub fn debit(&mut self, amount: Money, now: Millis) -> Result<Option<Entry>, BalanceError> {
        if amount.is_negative() {
            return Err(BalanceError::NotPositive);
        }
        self.draw_money(amount, now)?;
        entry(vec![(Ledger::Available(self.id), Money(-amount.0)), (Ledger::Revenue, amount)])
    }

    /// Charge as much of `amount` as is available; returns what was charged.
    pub fn debit_up_to(&mut self, amount: Money, now: Millis) -> Result<(Money, Option<Entry>), BalanceError> {
        let take = Money(amount.0.clamp(0, self.available(now).0));
        Ok((take, self.debit(take, now)?))
    }

    /// Give `amount` of charged money back (a correction in the subscriber's favour).
    pub fn refund(&mut self, amount: Money) -> Result<Option<Entry>, BalanceError> {
        if amount.is_negative() {
            return Err(BalanceError::NotPositive);
        }
        self.credit_money(amount, &[], MAIN_BUCKET);
        entry(vec![(Ledger::Revenue, Money(-amount.0)), (Ledger::Available(self.id), amount)])
    }

    /// A recharge: credit taken is repaid first, the rest goes to the main bucket, or with an
    /// expiry to a new bucket of its own. Returns the bucket's number and the entry.
    pub fn recharge(&mut self, amount: Money, expires_at: Option<Millis>) -> Result<(i64, Entry), BalanceError> {
        if amount.0 <= 0 {
            return Err(BalanceError::NotPositive);
        }
        let no = match expires_at {
            None => MAIN_BUCKET,
            Some(_) => self.money.iter().map(|b| b.no).max().unwrap_or(0) + 1,
        };
        if let Some(at) = expires_at {
            self.money.push(MoneyBucket { no, remaining: Money::ZERO, expires_at: Some(at) });
        }
        self.credit_money(amount, &[], no);
        let journal =
            JournalEntry::new(vec![(Ledger::Funding, Money(-amount.0)), (Ledger::Available(self.id), amount)])?;
        Ok((no, journal))
    }

    /// Add a unit bucket (a bundle of minutes, octets or messages).
    pub fn add_units(
        &mut self,
        unit: UnitKind,
        rating_group: Option<u32>,
        amount: u64,
        expires_at: Option<Millis>,
    ) -> i64 {
        let no = self.units.iter().map(|b| b.no).max().unwrap_or(0) + 1;
        self.units.push(UnitBucket { no, unit, rating_group, remaining: amount, expires_at });
        no
    }

    /// Forfeit what is left in expired buckets; expired unit buckets are emptied too.
    pub fn expire(&mut self, now: Millis) -> Result<Vec<Entry>, BalanceError> {
        let mut entries = Vec::new();
        for b in self.money.iter_mut().filter(|b| !live(b.expires_at, now) && b.remaining.0 > 0) {
            let amount = std::mem::take(&mut b.remaining);
            entries.extend(entry(vec![(Ledger::Available(self.id), Money(-amount.0)), (Ledger::Forfeited, amount)])?);
        }
        for b in self.units.iter_mut().filter(|b| !live(b.expires_at, now)) {
            b.remaining = 0;
        }
        Ok(entries)
    }

    /// The invariants, given what the ledger says this account's `Available` and `Reserved` sum to.
    pub fn check(&self, available_ledger: Money, reserved_ledger: Money) -> Result<(), BalanceError> {
        let fail = |s: String| Err(BalanceError::Invariant(s));
        if self.debt.is_negative() || self.debt > self.credit_limit {
            return fail(format!("debt {} outside 0..={}", self.debt, self.credit_limit));
        }
        if self.money.iter().any(|b| b.remaining.is_negative()) {
            return fail("a bucket below zero".into());
        }
        if self.net() != available_ledger {
            return fail(format!("buckets net {} but the ledger says {}", self.net(), available_ledger));
        }
        if self.reserved() != reserved_ledger {
            return fail(format!("reservations hold {} but the ledger says {}", self.reserved(), reserved_ledger));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const P: Price = Price { per_block: Money(10), block: 60 };

    #[derive(Default)]
    struct Books(HashMap<Ledger, i64>);

    impl Books {
        fn post<'a>(&mut self, entries: impl IntoIterator<Item = &'a Entry>) {
            for e in entries {
                for (l, m) in e.lines() {
                    *self.0.entry(*l).or_default() += m.0;
                }
            }
        }
        fn get(&self, l: Ledger) -> Money {
            Money(self.0.get(&l).copied().unwrap_or(0))
        }
        fn check(&self, a: &Account) {
            a.check(self.get(Ledger::Available(a.id)), self.get(Ledger::Reserved(a.id))).unwrap();
            assert_eq!(self.0.values().sum::<i64>(), 0);
        }
    }

    #[test]
    fn reserve_commit_release() {
        let mut books = Books::default();
        let mut a = Account::new(1, Money(0));
        let (_, e) = a.recharge(Money(100), None).unwrap();
        books.post([&e]);
        let (g, e) = a.reserve("s", 1, UnitKind::Time, P, 300, 0).unwrap();
        assert_eq!(g, Grant { units: 300, money: Money(50), last: false });
        books.post(&e);
        assert_eq!(a.available(0), Money(50));
        let (c, e) = a.commit("s", 1, 61, 0).unwrap();
        books.post(&e);
        assert_eq!(c.money, Money(20));
        assert_eq!(a.available(0), Money(80));
        assert_eq!(books.get(Ledger::Revenue), Money(20));
        books.check(&a);
        assert!(matches!(a.commit("s", 1, 0, 0), Err(BalanceError::NoReservation(..))));
    }

    #[test]
    fn grant_is_limited_by_balance_and_credit() {
        let mut books = Books::default();
        let mut a = Account::new(1, Money(15));
        books.post([&a.recharge(Money(20), None).unwrap().1]);
        let (g, e) = a.reserve("s", 1, UnitKind::Time, P, 600, 0).unwrap();
        books.post(&e);
        // 35 available buys 3 blocks of 60 s; the last grant.
        assert_eq!(g, Grant { units: 180, money: Money(30), last: true });
        assert_eq!(a.debt, Money(10));
        let (g, e) = a.reserve("t", 1, UnitKind::Time, P, 60, 0).unwrap();
        assert_eq!(g.units, 0);
        assert!(e.is_none());
        // Overuse is charged only down to the credit limit.
        let (c, e) = a.commit("s", 1, 600, 0).unwrap();
        books.post(&e);
        assert_eq!(c.money, Money(35));
        assert_eq!(c.uncollected_units, 600 - 180);
        assert_eq!(a.debt, Money(15));
        books.check(&a);
    }

    #[test]
    fn unit_buckets_first_then_money() {
        let mut books = Books::default();
        let mut a = Account::new(1, Money(0));
        books.post([&a.recharge(Money(100), None).unwrap().1]);
        a.add_units(UnitKind::Time, Some(1), 90, None);
        a.add_units(UnitKind::Time, Some(2), 1000, None);
        let (g, e) = a.reserve("s", 1, UnitKind::Time, P, 150, 0).unwrap();
        books.post(&e);
        assert_eq!((g.units, g.money), (150, Money(10)));
        let (c, e) = a.commit("s", 1, 100, 0).unwrap();
        books.post(&e);
        assert_eq!(c.money, Money(10));
        assert_eq!(a.units_available(UnitKind::Time, 1, 0), 0);
        assert_eq!(a.units_available(UnitKind::Time, 2, 0), 1000);
        let (g, _) = a.reserve("t", 1, UnitKind::Time, P, 30, 0).unwrap();
        assert_eq!(g.money, Money(10));
        a.release_session("t", 0).unwrap();
        books.check(&a);
    }

    #[test]
    fn expiry_forfeits_but_never_reserved_money() {
        let mut books = Books::default();
        let mut a = Account::new(1, Money(0));
        books.post([&a.recharge(Money(100), Some(1000)).unwrap().1]);
        books.post([&a.recharge(Money(5), None).unwrap().1]);
        let (g, e) = a.reserve("s", 1, UnitKind::Time, P, 120, 0).unwrap();
        books.post(&e);
        assert_eq!(g.money, Money(20));
        // The expiring bucket is drawn first.
        assert_eq!(a.money.iter().find(|b| b.no == 1).unwrap().remaining, Money(80));
        books.post(&a.expire(2000).unwrap());
        assert_eq!(books.get(Ledger::Forfeited), Money(80));
        assert_eq!(a.available(2000), Money(5));
        // Released money returns to its (expired) bucket and is forfeited at the next sweep.
        books.post(&a.release_session("s", 2000).unwrap());
        books.post(&a.expire(2000).unwrap());
        assert_eq!(books.get(Ledger::Forfeited), Money(100));
        books.check(&a);
    }

    #[test]
    fn recharge_repays_credit_first_and_debit_is_all_or_nothing() {
        let mut books = Books::default();
        let mut a = Account::new(1, Money(50));
        books.post(&a.debit(Money(30), 0).unwrap());
        assert_eq!(a.debt, Money(30));
        assert!(matches!(a.debit(Money(21), 0), Err(BalanceError::InsufficientFunds { .. })));
        books.post([&a.recharge(Money(40), None).unwrap().1]);
        assert_eq!((a.debt, a.net()), (Money(0), Money(10)));
        books.post(&a.refund(Money(5)).unwrap());
        assert_eq!(a.net(), Money(15));
        assert!(a.recharge(Money(0), None).is_err());
        books.check(&a);
    }

    #[test]
    fn ledger_keys_round_trip() {
        for l in [Ledger::Available(7), Ledger::Reserved(9), Ledger::Revenue, Ledger::Funding, Ledger::Forfeited] {
            assert_eq!(Ledger::parse(&l.key()), Some(l));
        }
        assert_eq!(Ledger::parse("other:1"), None);
    }
}
