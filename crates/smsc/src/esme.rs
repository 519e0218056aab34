//! The enterprises allowed to bind (ESMEs): system_id, password stored only as an Argon2id
//! hash, and a submit rate limit.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Argon2id with small parameters: SMPP passwords are at most 8 characters, so the hash must be
/// slow to guess offline, yet a bind must not take a core for long (binds are limited per
/// connection, and locked out per system_id and address by [`crate::bind_guard`], on top).
/// 4 MiB, 2 passes: a few milliseconds of one core per bind.
fn hasher() -> Argon2<'static> {
    let params = Params::new(4096, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Debug, Clone)]
pub struct EsmeAccount {
    pub system_id: String,
    /// PHC string (`$argon2id$…`).
    pub password_hash: String,
    /// submit_sm per second this ESME may send; beyond it, ESME_RTHROTTLED.
    pub max_submits_per_s: u32,
    /// What this ESME's data_coding 0 means.
    pub default_alphabet: DefaultAlphabet,
    /// Sessions this ESME may hold bound at once; a bind beyond them gets ESME_RBINDFAIL.
    pub max_sessions: u32,
}

/// [`EsmeAccount::max_sessions`] unless set: a transmitter and a receiver, or a transceiver,
/// several times over for a gateway that spreads its load.
pub const DEFAULT_MAX_SESSIONS: u32 = 8;

/// What data_coding 0 (the "SMSC default alphabet") means on one ESME's binds: GSM 03.38 as
/// unpacked septets, or Latin-1 for the ESMEs that send it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DefaultAlphabet {
    #[default]
    Gsm,
    Latin1,
}

impl DefaultAlphabet {
    /// Its name in the ESME table and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultAlphabet::Gsm => "gsm",
            DefaultAlphabet::Latin1 => "latin1",
        }
    }
}

/// A [`DefaultAlphabet`] name that is neither `gsm` nor `latin1`.
#[derive(Debug, thiserror::Error)]
#[error("unknown default alphabet {0:?} (gsm or latin1)")]
pub struct UnknownAlphabet(pub String);

impl std::str::FromStr for DefaultAlphabet {
    type Err = UnknownAlphabet;

    fn from_str(s: &str) -> Result<DefaultAlphabet, UnknownAlphabet> {
        match s {
            "gsm" => Ok(DefaultAlphabet::Gsm),
            "latin1" => Ok(DefaultAlphabet::Latin1),
            _ => Err(UnknownAlphabet(s.to_owned())),
        }
    }
}

impl EsmeAccount {
    /// A new account; the password is hashed here and not kept.
    pub fn new(
        system_id: &str,
        password: &str,
        max_submits_per_s: u32,
    ) -> Result<EsmeAccount, argon2::password_hash::Error> {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())?;
        let password_hash = hasher().hash_password(password.as_bytes(), &salt)?.to_string();
        Ok(EsmeAccount {
            system_id: system_id.to_owned(),
            password_hash,
            max_submits_per_s,
            default_alphabet: DefaultAlphabet::Gsm,
            max_sessions: DEFAULT_MAX_SESSIONS,
        })
    }

    pub fn with_default_alphabet(self, default_alphabet: DefaultAlphabet) -> EsmeAccount {
        EsmeAccount { default_alphabet, ..self }
    }

    pub fn with_max_sessions(self, max_sessions: u32) -> EsmeAccount {
        EsmeAccount { max_sessions, ..self }
    }

    pub fn verify(&self, password: &str) -> bool {
        PasswordHash::new(&self.password_hash).is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
    }
}

/// Whether `password` is `account`'s. Without an account the same Argon2 verification runs
/// against a stand-in hash and fails, so that a bind for an unknown system_id takes as long as
/// one with a wrong password and timing does not tell which system_ids exist.
pub fn verify_bind(account: Option<&EsmeAccount>, password: &str) -> bool {
    static STAND_IN: OnceLock<Option<EsmeAccount>> = OnceLock::new();
    match account {
        Some(a) => a.verify(password),
        None => {
            if let Some(stand_in) = STAND_IN.get_or_init(|| EsmeAccount::new("", "stand-in", 1).ok()) {
                stand_in.verify(password);
            }
            false
        }
    }
}

/// Every ESME, by system_id.
#[derive(Debug, Clone, Default)]
pub struct EsmeDirectory {
    accounts: HashMap<String, EsmeAccount>,
}

impl EsmeDirectory {
    pub fn new(accounts: impl IntoIterator<Item = EsmeAccount>) -> EsmeDirectory {
        EsmeDirectory { accounts: accounts.into_iter().map(|a| (a.system_id.clone(), a)).collect() }
    }

    pub fn get(&self, system_id: &str) -> Option<&EsmeAccount> {
        self.accounts.get(system_id)
    }
}

/// A token bucket: `rate` tokens per second, bursts up to one second's worth.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32) -> TokenBucket {
        let rate = per_second.max(1) as f64;
        TokenBucket { rate, tokens: rate, at: Instant::now() }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.take_n(now, 1)
    }

    /// Takes `n` tokens if there is one: a request for many messages (a submit_multi to more
    /// destinations than the rate) goes through, and the bucket stays in debt until refilled.
    pub fn take_n(&mut self, now: Instant, n: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= f64::from(n);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn passwords_are_hashed_and_verified() {
        let a = EsmeAccount::new("bank", "s3cret", 10).unwrap();
        assert!(a.password_hash.starts_with("$argon2id$"));
        assert!(!a.password_hash.contains("s3cret"));
        assert!(a.verify("s3cret"));
        assert!(!a.verify("s3cret!"));
        assert!(verify_bind(Some(&a), "s3cret"));
        assert!(!verify_bind(None, "stand-in"));
    }

    #[test]
    fn bucket_limits_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10);
        assert_eq!((0..20).filter(|_| b.take(t0)).count(), 10);
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn many_at_once_leave_a_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10);
        assert!(b.take_n(t0, 25));
        assert!(!b.take(t0 + Duration::from_millis(1000)));
        assert!(b.take(t0 + Duration::from_millis(1600)));
    }
}
