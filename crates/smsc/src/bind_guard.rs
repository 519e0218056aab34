//! Who may bind, beyond the password: failed binds counted per system_id and per source
//! address, with a lockout once they are too many, and the sessions each ESME holds at once.
//!
//! A password guesser is slowed three ways: Argon2 makes each guess cost the server and the
//! guesser milliseconds, a connection is closed after `max_failed_binds`, and here, after
//! `max_failures_per_*` failures within `window`, every bind for that system_id or from that
//! address is refused at once with ESME_RBINDFAIL for `lockout`, without Argon2 work, whatever
//! its password. Unknown system_ids are counted and locked out as known ones are, so a lockout
//! tells no more than a wrong password which ids exist. A successful bind clears its
//! system_id's count, not its address's: a guesser holding one valid account cannot reset its
//! own count with it.
//!
//! Password checks run a few at a time ([`BindGuard::verifying`]): Argon2 takes 4 MiB and
//! milliseconds of a core, and a thousand connections binding at once must not take a thousand
//! times that.
//!
//! Each table is bounded ([`MAX_TRACKED`]): when full, entries that neither count within their
//! window nor are locked out are dropped, and failures of keys that still do not fit are not
//! counted per that key (the other key still counts them).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keys tracked per table; beyond it, see the module documentation.
pub const MAX_TRACKED: usize = 100_000;

/// When failed binds lock a system_id or an address out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutConfig {
    /// Failed binds for one system_id within `window` that lock it out (0: never).
    pub max_failures_per_system_id: u32,
    /// Failed binds from one address (an IPv6 address's /64) within `window` that lock it out
    /// (0: never).
    pub max_failures_per_address: u32,
    pub window: Duration,
    /// How long a locked-out system_id or address is refused.
    pub lockout: Duration,
}

impl Default for LockoutConfig {
    /// Ten failures of one system_id, or twenty from one address, within a minute lock it out
    /// for five minutes: far above what a misconfigured gateway retrying does in a minute with
    /// its connection closed after three failures, far below what guessing needs.
    fn default() -> Self {
        LockoutConfig {
            max_failures_per_system_id: 10,
            max_failures_per_address: 20,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
        }
    }
}

/// What a lockout applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockoutScope {
    SystemId,
    Address,
}

impl LockoutScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LockoutScope::SystemId => "system_id",
            LockoutScope::Address => "address",
        }
    }
}

/// Why a connection or a bind was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Wrong password or unknown system_id (ESME_RINVPASWD).
    Credentials,
    /// The system_id or the address is locked out (ESME_RBINDFAIL).
    LockedOut,
    /// The ESME already holds its `max_sessions` (ESME_RBINDFAIL).
    TooManySessions,
    /// The server holds `max_connections`: the connection was closed on accept.
    ConnectionLimit,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Credentials => "credentials",
            Refusal::LockedOut => "locked_out",
            Refusal::TooManySessions => "too_many_sessions",
            Refusal::ConnectionLimit => "connection_limit",
        }
    }
}

/// Told of refusals and lockouts as they happen (the operator node counts them in its
/// metrics). Called on the session's task: keep it to an atomic add.
pub trait SmppObserver: Send + Sync + 'static {
    fn refused(&self, _reason: Refusal) {}
    fn locked_out(&self, _scope: LockoutScope) {}
}

/// An [`SmppObserver`] in [`crate::SmppConfig`]; by default, none.
#[derive(Clone, Default)]
pub struct Observer(Option<Arc<dyn SmppObserver>>);

impl Observer {
    pub fn new(observer: Arc<dyn SmppObserver>) -> Observer {
        Observer(Some(observer))
    }

    pub(crate) fn refused(&self, reason: Refusal) {
        if let Some(o) = &self.0 {
            o.refused(reason);
        }
    }

    fn locked_out(&self, scope: LockoutScope) {
        if let Some(o) = &self.0 {
            o.locked_out(scope);
        }
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Observer(set)" } else { "Observer(none)" })
    }
}

/// One key's failures in its current window, and its lockout.
#[derive(Debug, Clone, Copy)]
struct Tally {
    since: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

/// The tallies of one kind of key, bounded by [`MAX_TRACKED`].
#[derive(Debug)]
struct Tallies<K> {
    limit: u32,
    map: HashMap<K, Tally>,
}

impl<K: Hash + Eq + Clone> Tallies<K> {
    fn new(limit: u32) -> Tallies<K> {
        Tallies { limit, map: HashMap::new() }
    }

    /// Whether `key` is locked out at `now`; a lockout that ended is forgotten with its count.
    fn locked(&mut self, key: &K, now: Instant) -> bool {
        match self.map.get(key).and_then(|t| t.locked_until) {
            Some(until) if until > now => true,
            Some(_) => {
                self.map.remove(key);
                false
            }
            None => false,
        }
    }

    /// Counts a failure of `key`; true when it locks `key` out.
    fn fail(&mut self, key: &K, now: Instant, c: &LockoutConfig) -> bool {
        if self.limit == 0 {
            return false;
        }
        if !self.map.contains_key(key) && self.map.len() >= MAX_TRACKED {
            self.map.retain(|_, t| t.locked_until.is_some_and(|u| u > now) || now.duration_since(t.since) < c.window);
            if self.map.len() >= MAX_TRACKED {
                return false;
            }
        }
        let t = self.map.entry(key.clone()).or_insert(Tally { since: now, failures: 0, locked_until: None });
        if now.duration_since(t.since) >= c.window {
            *t = Tally { since: now, failures: 0, locked_until: None };
        }
        t.failures += 1;
        if t.failures >= self.limit && t.locked_until.is_none() {
            t.locked_until = Some(now + c.lockout);
            return true;
        }
        false
    }

    fn forget(&mut self, key: &K) {
        if self.map.get(key).is_some_and(|t| t.locked_until.is_none()) {
            self.map.remove(key);
        }
    }
}

/// The address failures are counted under: an IPv4 address (also when mapped into IPv6), or
/// an IPv6 address's /64, the least a single host is usually given.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

struct Failures {
    by_system_id: Tallies<String>,
    by_address: Tallies<IpAddr>,
}

/// The server's record of failed binds and of the sessions each ESME holds; one per server,
/// shared by its sessions.
pub struct BindGuard {
    config: LockoutConfig,
    /// Password checks running at once.
    verifications: tokio::sync::Semaphore,
    failures: Mutex<Failures>,
    sessions: Mutex<HashMap<Arc<str>, u32>>,
    observer: Observer,
}

impl BindGuard {
    pub fn new(config: LockoutConfig, observer: Observer) -> Arc<BindGuard> {
        let failures = Failures {
            by_system_id: Tallies::new(config.max_failures_per_system_id),
            by_address: Tallies::new(config.max_failures_per_address),
        };
        // Twice the cores: the checks keep every core busy while their tasks are scheduled.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(BindGuard {
            config,
            verifications: tokio::sync::Semaphore::new(2 * cores),
            failures: Mutex::new(failures),
            sessions: Mutex::new(HashMap::new()),
            observer,
        })
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a bind for `system_id` from `peer` may be checked at all: false while either is
    /// locked out.
    pub fn admits(&self, system_id: &str, peer: IpAddr) -> bool {
        let now = Instant::now();
        let mut f = self.failures();
        let locked = f.by_system_id.locked(&system_id.to_owned(), now) | f.by_address.locked(&address_key(peer), now);
        drop(f);
        if locked {
            self.observer.refused(Refusal::LockedOut);
        }
        !locked
    }

    /// Waits for a turn to check a password; the turn lasts as long as the permit.
    pub async fn verifying(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.verifications.acquire().await.expect("the semaphore is never closed")
    }

    /// Counts a failed bind for `system_id` from `peer`, and locks either out at its limit.
    pub fn failed(&self, system_id: &str, peer: IpAddr) {
        let now = Instant::now();
        let mut f = self.failures();
        let id_locked = f.by_system_id.fail(&system_id.to_owned(), now, &self.config);
        let address_locked = f.by_address.fail(&address_key(peer), now, &self.config);
        drop(f);
        self.observer.refused(Refusal::Credentials);
        let lockout_s = self.config.lockout.as_secs_f64();
        if id_locked {
            tracing::warn!(system_id, %peer, lockout_s, "SMPP binds for this system_id locked out after failed binds");
            self.observer.locked_out(LockoutScope::SystemId);
        }
        if address_locked {
            tracing::warn!(%peer, lockout_s, "SMPP binds from this address locked out after failed binds");
            self.observer.locked_out(LockoutScope::Address);
        }
    }

    /// A bind for `system_id` succeeded: its count starts over.
    pub fn succeeded(&self, system_id: &str) {
        self.failures().by_system_id.forget(&system_id.to_owned());
    }

    /// A session slot of `system_id`, if it holds fewer than `max` (at least one); the slot is
    /// given back when dropped.
    pub fn open_session(self: &Arc<Self>, system_id: &str, max: u32) -> Option<SessionSlot> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let id: Arc<str> = system_id.into();
        let held = sessions.entry(id.clone()).or_insert(0);
        if *held >= max.max(1) {
            drop(sessions);
            self.observer.refused(Refusal::TooManySessions);
            return None;
        }
        *held += 1;
        Some(SessionSlot { guard: self.clone(), system_id: id })
    }

    /// The sessions `system_id` holds.
    pub fn sessions(&self, system_id: &str) -> u32 {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(system_id).copied().unwrap_or(0)
    }
}

/// One bound session of an ESME, counted against its `max_sessions` while it lives.
pub struct SessionSlot {
    guard: Arc<BindGuard>,
    system_id: Arc<str>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut sessions = self.guard.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = sessions.get_mut(&self.system_id) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                sessions.remove(&self.system_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_id: u32, per_address: u32) -> LockoutConfig {
        LockoutConfig {
            max_failures_per_system_id: per_id,
            max_failures_per_address: per_address,
            window: Duration::from_secs(60),
            lockout: Duration::from_millis(200),
        }
    }

    #[test]
    fn a_system_id_is_locked_out_at_its_limit_from_any_address_until_the_lockout_ends() {
        let g = BindGuard::new(config(3, 100), Observer::default());
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..2 {
            assert!(g.admits("bank", a));
            g.failed("bank", a);
        }
        assert!(g.admits("bank", b));
        g.failed("bank", b);
        assert!(!g.admits("bank", a) && !g.admits("bank", b), "locked out wherever it comes from");
        assert!(g.admits("shop", a), "another id from the same address is not");
        std::thread::sleep(Duration::from_millis(250));
        assert!(g.admits("bank", a), "the lockout ended");
        g.failed("bank", a);
        assert!(g.admits("bank", a), "and the count started over");
    }

    #[test]
    fn an_address_is_locked_out_for_every_system_id_and_success_does_not_reset_it() {
        let g = BindGuard::new(config(100, 3), Observer::default());
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        g.failed("x1", a);
        g.succeeded("mine");
        g.failed("x2", same_64);
        g.failed("x3", a);
        assert!(!g.admits("mine", a), "its own valid account does not help it");
        assert!(!g.admits("mine", same_64), "the /64 is one address");
        assert!(g.admits("mine", "2001:db8:0:1::1".parse().unwrap()));
        assert!(g.admits("mine", "::ffff:192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn success_clears_the_system_ids_count_and_zero_disables() {
        let g = BindGuard::new(config(2, 0), Observer::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        g.failed("bank", a);
        g.succeeded("bank");
        g.failed("bank", a);
        assert!(g.admits("bank", a));
        for _ in 0..50 {
            g.failed(&rand::random::<u32>().to_string(), a);
        }
        assert!(g.admits("other", a), "no address limit");
    }

    #[tokio::test]
    async fn password_checks_run_twice_the_cores_at_a_time() {
        use futures::FutureExt;
        let g = BindGuard::new(LockoutConfig::default(), Observer::default());
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut turns = Vec::new();
        for _ in 0..2 * cores {
            turns.push(g.verifying().now_or_never().expect("a free turn"));
        }
        assert!(g.verifying().now_or_never().is_none(), "a check beyond them waits");
        turns.pop();
        assert!(g.verifying().now_or_never().is_some());
    }

    #[test]
    fn sessions_are_capped_per_esme_and_given_back() {
        let g = BindGuard::new(LockoutConfig::default(), Observer::default());
        let one = g.open_session("bank", 2).unwrap();
        let two = g.open_session("bank", 2).unwrap();
        assert!(g.open_session("bank", 2).is_none());
        assert!(g.open_session("shop", 2).is_some());
        drop(one);
        assert_eq!(g.sessions("bank"), 1);
        let _three = g.open_session("bank", 2).unwrap();
        drop(two);
        assert!(g.open_session("solo", 0).is_some(), "at least one");
    }
}
