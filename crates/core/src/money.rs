//! Money in integer minor units, and the balanced journal entry every movement must be.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount in minor units (cents, øre, fen). Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(pub i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn minor_units(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Money {
    /// Two decimal places, the customary presentation; storage never sees this form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("amount {0:?} is not a decimal with at most two places, like 1250 or 12.50")]
pub struct AmountError(pub String);

impl std::str::FromStr for Money {
    type Err = AmountError;

    /// Parse the customary form, `12.50`, `-3`, `0.5`, into minor units. Never through a float.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AmountError(s.to_owned());
        let (neg, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (units, cents) = body.split_once('.').unwrap_or((body, ""));
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(units)
            || !(cents.is_empty() || (digits(cents) && cents.len() <= 2))
            || (body.contains('.') && cents.is_empty())
        {
            return Err(err());
        }
        let units: i64 = units.parse().map_err(|_| err())?;
        let cents: i64 = if cents.is_empty() { 0 } else { format!("{cents:0<2}").parse().map_err(|_| err())? };
        let v = units.checked_mul(100).and_then(|u| u.checked_add(cents)).ok_or_else(err)?;
        Ok(Money(if neg { -v } else { v }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("a journal entry needs at least two lines")]
    TooFewLines,
    #[error("journal entry does not balance: lines sum to {0}")]
    Unbalanced(i64),
    #[error("journal line of zero amount")]
    ZeroLine,
    #[error("journal amounts overflow")]
    Overflow,
}

/// One business event's postings: each line moves `amount` into (positive) or out of (negative)
/// an account. The lines sum to zero, so money is never created or destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry<A> {
    lines: Vec<(A, Money)>,
}

impl<A> JournalEntry<A> {
    pub fn new(lines: Vec<(A, Money)>) -> Result<Self, JournalError> {
        if lines.len() < 2 {
            return Err(JournalError::TooFewLines);
        }
        let mut sum: i64 = 0;
        for (_, m) in &lines {
            if m.0 == 0 {
                return Err(JournalError::ZeroLine);
            }
            sum = sum.checked_add(m.0).ok_or(JournalError::Overflow)?;
        }
        if sum != 0 {
            return Err(JournalError::Unbalanced(sum));
        }
        Ok(JournalEntry { lines })
    }

    /// `amount` from `from` to `to`: the two-line entry of a transfer.
    pub fn transfer(from: A, to: A, amount: Money) -> Result<Self, JournalError> {
        let neg = Money(amount.0.checked_neg().ok_or(JournalError::Overflow)?);
        JournalEntry::new(vec![(from, neg), (to, amount)])
    }

    pub fn lines(&self) -> &[(A, Money)] {
        &self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        assert_eq!(Money(12345).to_string(), "123.45");
        assert_eq!(Money(-5).to_string(), "-0.05");
        assert_eq!(Money(0).to_string(), "0.00");
    }

    #[test]
    fn parse() {
        assert_eq!("12.50".parse::<Money>(), Ok(Money(1250)));
        assert_eq!("12.5".parse::<Money>(), Ok(Money(1250)));
        assert_eq!("-3".parse::<Money>(), Ok(Money(-300)));
        assert_eq!("0.05".parse::<Money>(), Ok(Money(5)));
        for bad in ["", "1.", ".5", "1.234", "1e3", "abc", "99999999999999999999"] {
            assert!(bad.parse::<Money>().is_err(), "{bad}");
        }
    }

    #[test]
    fn journal_must_balance() {
        assert!(JournalEntry::new(vec![(1, Money(5)), (2, Money(-5))]).is_ok());
        assert_eq!(JournalEntry::new(vec![(1, Money(5)), (2, Money(-4))]), Err(JournalError::Unbalanced(1)));
        assert_eq!(JournalEntry::new(vec![(1, Money(5))]), Err(JournalError::TooFewLines));
        assert_eq!(JournalEntry::transfer(1, 2, Money(0)), Err(JournalError::ZeroLine));
        assert_eq!(JournalEntry::transfer(1, 2, Money(i64::MIN)), Err(JournalError::Overflow));
    }
}
