//! CN102547642B: who is put under online charging. The switching centre takes the called
//! number of a call, looks it up in the list the OCS keeps (whole numbers and prefixes), and
//! charges the *caller* online where it matches, offline otherwise. The longest match
//! decides, and a whole-number entry matches only that number exactly, so `4790` (prefix) and
//! `4790000001` (number) can both be listed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What an entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Exactly this number.
    Number,
    /// Every number that starts with these digits.
    Prefix,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Number => "number",
            EntryKind::Prefix => "prefix",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        match s {
            "number" => Some(EntryKind::Number),
            "prefix" => Some(EntryKind::Prefix),
            _ => None,
        }
    }
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    pub digits: String,
    pub kind: EntryKind,
}

/// How the caller is charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "charging")]
pub enum ChargingDecision {
    Online { matched: ListEntry },
    Offline,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a number or prefix of 1 to 15 digits")]
pub struct BadEntry(pub String);

/// The online-charging list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnlineList {
    entries: BTreeMap<String, EntryKind>,
}

/// Digits of a called number as switches send it: a leading `+` dropped.
fn digits(s: &str) -> &str {
    s.strip_prefix('+').unwrap_or(s)
}

impl OnlineList {
    pub fn new(entries: impl IntoIterator<Item = ListEntry>) -> Result<OnlineList, BadEntry> {
        let mut list = OnlineList::default();
        for e in entries {
            list.insert(e)?;
        }
        Ok(list)
    }

    /// Check an entry: 1 to 15 digits (E.164's length).
    pub fn validate(e: &ListEntry) -> Result<String, BadEntry> {
        let d = digits(&e.digits);
        if d.is_empty() || d.len() > 15 || !d.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadEntry(e.digits.clone()));
        }
        Ok(d.to_owned())
    }

    /// Add or replace an entry.
    pub fn insert(&mut self, e: ListEntry) -> Result<(), BadEntry> {
        let d = Self::validate(&e)?;
        self.entries.insert(d, e.kind);
        Ok(())
    }

    /// Remove an entry; whether it was there.
    pub fn remove(&mut self, digits_: &str) -> bool {
        self.entries.remove(digits(digits_)).is_some()
    }

    pub fn entries(&self) -> impl Iterator<Item = ListEntry> + '_ {
        self.entries.iter().map(|(d, k)| ListEntry { digits: d.clone(), kind: *k })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How the caller of a call to `called` is charged.
    pub fn decide(&self, called: &str) -> ChargingDecision {
        let called = digits(called);
        for len in (1..=called.len()).rev() {
            let Some(head) = called.get(..len) else { continue };
            match self.entries.get(head) {
                Some(EntryKind::Prefix) => {
                    return ChargingDecision::Online {
                        matched: ListEntry { digits: head.into(), kind: EntryKind::Prefix },
                    };
                }
                Some(EntryKind::Number) if len == called.len() => {
                    return ChargingDecision::Online {
                        matched: ListEntry { digits: head.into(), kind: EntryKind::Number },
                    };
                }
                _ => {}
            }
        }
        ChargingDecision::Offline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(d: &str, kind: EntryKind) -> ListEntry {
        ListEntry { digits: d.into(), kind }
    }

    #[test]
    fn longest_match_decides() {
        let mut l = OnlineList::new([e("4790", EntryKind::Prefix), e("479012", EntryKind::Prefix)]).unwrap();
        l.insert(e("+4791234567", EntryKind::Number)).unwrap();
        assert_eq!(l.decide("4790123456"), ChargingDecision::Online { matched: e("479012", EntryKind::Prefix) });
        assert_eq!(l.decide("+4790999999"), ChargingDecision::Online { matched: e("4790", EntryKind::Prefix) });
        assert_eq!(l.decide("4791234567"), ChargingDecision::Online { matched: e("4791234567", EntryKind::Number) });
        // A number entry is not a prefix.
        assert_eq!(l.decide("47912345678"), ChargingDecision::Offline);
        assert_eq!(l.decide("4680000000"), ChargingDecision::Offline);
        assert_eq!(l.decide(""), ChargingDecision::Offline);
        assert!(l.remove("4790"));
        assert_eq!(l.decide("4790999999"), ChargingDecision::Offline);
        assert!(!l.remove("4790"));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn bad_entries_refused() {
        let mut l = OnlineList::default();
        for bad in ["", "+", "47a", "1234567890123456"] {
            assert!(l.insert(e(bad, EntryKind::Prefix)).is_err(), "{bad}");
        }
        assert!(l.is_empty());
        // Non-ASCII input never panics the lookup.
        assert_eq!(l.decide("4é7"), ChargingDecision::Offline);
    }
}
