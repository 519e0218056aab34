//! Subscriber numbers (E.164), number-range prefixes and routing numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a number, prefix or routing number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("empty number")]
    Empty,
    #[error("number has {0} digits; E.164 allows 8 to 15")]
    Length(usize),
    #[error("number contains {0:?}; only digits (with an optional leading '+') are allowed")]
    Character(char),
    #[error("E.164 numbers start with a country code, never with 0")]
    LeadingZero,
    #[error("prefix has {0} digits; 1 to 15 are allowed")]
    PrefixLength(usize),
    #[error("routing number must be 1 to 10 hex digits (RFC 4694 rn), got {0:?}")]
    RoutingNumber(String),
}

/// An international subscriber number in E.164 form, kept as its digits without '+'.
///
/// Accepts `+4790000001` and `4790000001`; prints digits only, which is also the storage and
/// wire form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Msisdn(String);

impl Msisdn {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Every leading part of the number, longest first: the candidates for a range prefix.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        (1..=self.0.len()).rev().map(move |n| &self.0[..n])
    }
}

impl FromStr for Msisdn {
    type Err = NumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix('+').unwrap_or(s);
        if digits.is_empty() {
            return Err(NumberError::Empty);
        }
        if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
            return Err(NumberError::Character(c));
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(NumberError::Length(digits.len()));
        }
        if digits.starts_with('0') {
            return Err(NumberError::LeadingZero);
        }
        Ok(Msisdn(digits.to_owned()))
    }
}

impl TryFrom<String> for Msisdn {
    type Error = NumberError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Msisdn> for String {
    fn from(m: Msisdn) -> String {
        m.0
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The leading digits of a number range held by one operator (e.g. `4790`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix(String);

impl Prefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Prefix {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.trim().strip_prefix('+').unwrap_or(s.trim());
        if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
            return Err(NumberError::Character(c));
        }
        if !(1..=15).contains(&digits.len()) {
            return Err(NumberError::PrefixLength(digits.len()));
        }
        Ok(Prefix(digits.to_owned()))
    }
}

impl TryFrom<String> for Prefix {
    type Error = NumberError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        p.0
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The routing number that networks prepend to reach the serving operator (RFC 4694 `rn=`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoutingNumber(String);

impl RoutingNumber {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RoutingNumber {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=10).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit());
        if !ok {
            return Err(NumberError::RoutingNumber(s.to_owned()));
        }
        Ok(RoutingNumber(s.to_ascii_uppercase()))
    }
}

impl TryFrom<String> for RoutingNumber {
    type Error = NumberError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RoutingNumber> for String {
    fn from(r: RoutingNumber) -> String {
        r.0
    }
}

impl fmt::Display for RoutingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msisdn_accepts_e164_with_or_without_plus() {
        assert_eq!("+4790000001".parse::<Msisdn>().unwrap().as_str(), "4790000001");
        assert_eq!("4790000001".parse::<Msisdn>().unwrap().as_str(), "4790000001");
    }

    #[test]
    fn msisdn_rejects_bad_input() {
        assert_eq!("".parse::<Msisdn>(), Err(NumberError::Empty));
        assert_eq!("47900".parse::<Msisdn>(), Err(NumberError::Length(5)));
        assert_eq!("0790000001".parse::<Msisdn>(), Err(NumberError::LeadingZero));
        assert_eq!("47-9000001".parse::<Msisdn>(), Err(NumberError::Character('-')));
        assert_eq!("1234567890123456".parse::<Msisdn>(), Err(NumberError::Length(16)));
    }

    #[test]
    fn prefixes_longest_first() {
        let m: Msisdn = "4790000001".parse().unwrap();
        let p: Vec<_> = m.prefixes().collect();
        assert_eq!(p.first(), Some(&"4790000001"));
        assert_eq!(p.last(), Some(&"4"));
        assert_eq!(p.len(), 10);
    }

    #[test]
    fn routing_number_is_hex() {
        assert_eq!("d012".parse::<RoutingNumber>().unwrap().as_str(), "D012");
        assert!("D01Z".parse::<RoutingNumber>().is_err());
        assert!("".parse::<RoutingNumber>().is_err());
    }
}
