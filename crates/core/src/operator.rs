//! Operator names: how an operator is named in the API, in messages and in the audit trail.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operator name must be 1 to 32 characters of a-z, 0-9 and '-', got {0:?}")]
pub struct OperatorNameError(pub String);

/// A registered operator's short name (`opa`, `telenor-no`); unique at the clearinghouse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperatorName(String);

impl OperatorName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OperatorName {
    type Err = OperatorNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok =
            (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(OperatorNameError(s.to_owned()));
        }
        Ok(OperatorName(s.to_owned()))
    }
}

impl TryFrom<String> for OperatorName {
    type Error = OperatorNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<OperatorName> for String {
    fn from(o: OperatorName) -> String {
        o.0
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!("opa".parse::<OperatorName>().is_ok());
        assert!("telenor-no".parse::<OperatorName>().is_ok());
        assert!("OpA".parse::<OperatorName>().is_err());
        assert!("".parse::<OperatorName>().is_err());
        assert!("a b".parse::<OperatorName>().is_err());
    }
}
