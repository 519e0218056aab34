//! CN101425910A: online-charging capacity control. A request to load a subscriber into online
//! charging sums the capacity already loaded, compares it with the configured total, and
//! admits or refuses with the reason. Each subscriber weighs what it costs the OCS (a heavy
//! data user more than a voice-only prepaid line); the sum of the weights never exceeds the
//! total, so the OCS is never loaded past what it was dimensioned for.

use serde::{Deserialize, Serialize};

/// The answer to a load request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "admission")]
pub enum Admission {
    Admitted {
        loaded: u64,
        total: u64,
    },
    /// Already loaded: nothing changes, and the request succeeds (it is idempotent).
    AlreadyLoaded {
        loaded: u64,
        total: u64,
    },
    Refused {
        reason: Refusal,
    },
}

/// Why a load was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Refusal {
    #[error("online-charging capacity exhausted: {loaded} loaded + {requested} requested > {total} configured")]
    CapacityExhausted { loaded: u64, requested: u64, total: u64 },
    #[error("no online-charging capacity is configured")]
    NotConfigured,
    #[error("a subscriber's weight must be at least 1")]
    ZeroWeight,
}

/// Decide a load request of `weight` given the `total` configured, the weights already
/// `loaded`, and whether this subscriber is among them.
pub fn admit(total: Option<u64>, loaded: u64, already: bool, weight: u64) -> Admission {
    let Some(total) = total else { return Admission::Refused { reason: Refusal::NotConfigured } };
    if already {
        return Admission::AlreadyLoaded { loaded, total };
    }
    if weight == 0 {
        return Admission::Refused { reason: Refusal::ZeroWeight };
    }
    match loaded.checked_add(weight) {
        Some(after) if after <= total => Admission::Admitted { loaded: after, total },
        _ => Admission::Refused { reason: Refusal::CapacityExhausted { loaded, requested: weight, total } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_total() {
        assert_eq!(admit(Some(10), 7, false, 3), Admission::Admitted { loaded: 10, total: 10 });
        assert_eq!(
            admit(Some(10), 8, false, 3),
            Admission::Refused { reason: Refusal::CapacityExhausted { loaded: 8, requested: 3, total: 10 } }
        );
        assert_eq!(admit(Some(10), 10, true, 3), Admission::AlreadyLoaded { loaded: 10, total: 10 });
        assert_eq!(admit(None, 0, false, 1), Admission::Refused { reason: Refusal::NotConfigured });
        assert_eq!(admit(Some(10), 0, false, 0), Admission::Refused { reason: Refusal::ZeroWeight });
        assert!(matches!(admit(Some(u64::MAX), u64::MAX, false, 1), Admission::Refused { .. }));
        let Admission::Refused { reason } = admit(Some(1), 1, false, 1) else { panic!() };
        assert_eq!(reason.to_string(), "online-charging capacity exhausted: 1 loaded + 1 requested > 1 configured");
    }
}
