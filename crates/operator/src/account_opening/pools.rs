//! Number and IMSI pools: ranges of digit strings configured in `[accounts]`, walked in
//! order. Pure: the position of the next candidate is the store's ([`crate::store::accounts`]),
//! which also makes each value allocated at most once.

use std::fmt;
use std::str::FromStr;

/// One range, `first-last` (both inclusive, the same number of digits) or a single value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    first: u64,
    last: u64,
    digits: usize,
}

/// Why a pool's configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("range {0:?}: expected digits or digits-digits")]
    Syntax(String),
    #[error("range {0:?}: both ends must have the same number of digits, {1} to {2}")]
    Digits(String, usize, usize),
    #[error("range {0:?}: its first value is above its last")]
    Reversed(String),
}

impl FromStr for Range {
    type Err = PoolError;

    fn from_str(s: &str) -> Result<Range, PoolError> {
        let s = s.trim();
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let (a, b) = (a.trim(), b.trim());
        let is_digits = |x: &str| !x.is_empty() && x.len() <= 19 && x.bytes().all(|c| c.is_ascii_digit());
        if !is_digits(a) || !is_digits(b) {
            return Err(PoolError::Syntax(s.to_owned()));
        }
        if a.len() != b.len() {
            return Err(PoolError::Digits(s.to_owned(), a.len(), b.len()));
        }
        let (first, last) = (a.parse().map_err(|_| PoolError::Syntax(s.to_owned()))?, b.parse().unwrap_or(0));
        if first > last {
            return Err(PoolError::Reversed(s.to_owned()));
        }
        Ok(Range { first, last, digits: a.len() })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0w$}-{:0w$}", self.first, self.last, w = self.digits)
    }
}

impl Range {
    fn len(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// A pool: its ranges in the order they are handed out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pool {
    ranges: Vec<Range>,
}

impl Pool {
    pub fn parse(ranges: &[String]) -> Result<Pool, PoolError> {
        Ok(Pool { ranges: ranges.iter().map(|r| r.parse()).collect::<Result<_, _>>()? })
    }

    /// Values in the pool.
    pub fn size(&self) -> u64 {
        self.ranges.iter().map(Range::len).sum()
    }

    /// The value at `position` (0-based, across the ranges in order); `None` past the end.
    pub fn at(&self, mut position: u64) -> Option<String> {
        for r in &self.ranges {
            if position < r.len() {
                return Some(format!("{:0w$}", r.first + position, w = r.digits));
            }
            position -= r.len();
        }
        None
    }

    /// Whether every value has `digits` digits.
    pub fn all_of_length(&self, digits: std::ops::RangeInclusive<usize>) -> bool {
        self.ranges.iter().all(|r| digits.contains(&r.digits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_walk_the_ranges_in_order() {
        let p = Pool::parse(&["4791000000-4791000002".into(), "4792000000".into()]).unwrap();
        assert_eq!(p.size(), 4);
        let all: Vec<_> = (0..5).map(|i| p.at(i)).collect();
        assert_eq!(
            all,
            [
                Some("4791000000".into()),
                Some("4791000001".into()),
                Some("4791000002".into()),
                Some("4792000000".into()),
                None
            ]
        );
        let imsi = Pool::parse(&["001010000000001-001010000000009".into()]).unwrap();
        assert_eq!(imsi.at(0).as_deref(), Some("001010000000001"), "leading zeros kept");
        assert!(imsi.all_of_length(15..=15));
    }

    #[test]
    fn bad_ranges_are_named() {
        assert!(matches!("47a".parse::<Range>(), Err(PoolError::Syntax(_))));
        assert!(matches!("479-4791".parse::<Range>(), Err(PoolError::Digits(..))));
        assert!(matches!("4792-4791".parse::<Range>(), Err(PoolError::Reversed(_))));
        assert!(matches!("".parse::<Range>(), Err(PoolError::Syntax(_))));
        assert_eq!("0010-0019".parse::<Range>().unwrap().to_string(), "0010-0019");
    }
}
