//! What the subscribers do, drawn from a seeded generator so that a run can be repeated:
//! who calls whom for how long, and which data services a session uses and how much.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A range of subscriber numbers (MSISDN digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribers {
    pub first: u64,
    pub count: u64,
}

impl Subscribers {
    /// Parses `first-last` or a single number.
    pub fn parse(s: &str) -> Option<Subscribers> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let (first, last): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (last >= first).then(|| Subscribers { first, count: last - first + 1 })
    }

    pub fn msisdn(&self, i: u64) -> String {
        (self.first + i % self.count.max(1)).to_string()
    }

    pub fn iter(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.count).map(|i| self.msisdn(i))
    }
}

/// A data service: its Rating-Group and Service-Identifier, and how many octets per second a
/// session using it moves downlink (uplink is a tenth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataService {
    pub rating_group: u32,
    pub service_id: u32,
    pub downlink_per_s: u64,
}

/// Web, video and messaging.
pub const DEFAULT_SERVICES: [DataService; 3] = [
    DataService { rating_group: 10, service_id: 1001, downlink_per_s: 50_000 },
    DataService { rating_group: 20, service_id: 2001, downlink_per_s: 400_000 },
    DataService { rating_group: 30, service_id: 3001, downlink_per_s: 2_000 },
];

/// The shape of the traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub subscribers: Subscribers,
    /// Called numbers: one of these prefixes completed with random digits to `number_len`.
    pub called_prefixes: Vec<String>,
    pub number_len: usize,
    /// Mean duration of an ordinary call (exponential), seconds.
    pub mean_call_s: f64,
    /// Share of calls that are long: 10 to 40 minutes.
    pub long_call_share: f64,
    /// Share of calls charged on partial CDRs (CN102083044A) rather than over Gy, among those
    /// the online-charging list puts online.
    pub partial_cdr_share: f64,
    pub services: Vec<DataService>,
    /// Longest data session, seconds.
    pub max_data_s: u64,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            subscribers: Subscribers { first: 4_790_000_000, count: 1000 },
            called_prefixes: vec!["4790".into(), "4791".into(), "4680".into()],
            number_len: 10,
            mean_call_s: 90.0,
            long_call_share: 0.05,
            partial_cdr_share: 0.2,
            services: DEFAULT_SERVICES.to_vec(),
            max_data_s: 600,
        }
    }
}

/// One call as the caller will make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPlan {
    pub n: u64,
    pub caller: String,
    pub called: String,
    /// How long the caller would talk if nothing cut the call.
    pub duration_s: u64,
    /// Whether, if online, the call is charged on partial CDRs rather than over Gy.
    pub on_partial_cdrs: bool,
}

/// One service's use in a data session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceUse {
    pub service: DataService,
    pub uplink_octets: u64,
    pub downlink_octets: u64,
}

/// One data session as the subscriber will use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlan {
    pub n: u64,
    pub subscriber: String,
    pub duration_s: u64,
    pub uses: Vec<ServiceUse>,
}

/// The seeded generator.
pub struct Traffic {
    rng: StdRng,
    profile: Profile,
    calls: u64,
    sessions: u64,
}

impl Traffic {
    pub fn new(profile: Profile, seed: u64) -> Traffic {
        Traffic { rng: StdRng::seed_from_u64(seed), profile, calls: 0, sessions: 0 }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    fn subscriber(&mut self) -> String {
        let i = self.rng.random_range(0..self.profile.subscribers.count.max(1));
        self.profile.subscribers.msisdn(i)
    }

    pub fn next_call(&mut self) -> CallPlan {
        self.calls += 1;
        let caller = self.subscriber();
        let p = &self.profile;
        let prefix = p.called_prefixes.get(self.rng.random_range(0..p.called_prefixes.len().max(1)));
        let mut called = prefix.cloned().unwrap_or_default();
        // At least one digit after the prefix.
        let len = p.number_len.max(called.len() + 1);
        while called.len() < len {
            called.push(char::from(b'0' + self.rng.random_range(0..10u8)));
        }
        let duration_s = if self.rng.random_bool(p.long_call_share.clamp(0.0, 1.0)) {
            self.rng.random_range(600..=2400)
        } else {
            // Exponential, at least a second, at most an hour.
            let u: f64 = self.rng.random();
            (-p.mean_call_s * (1.0 - u).ln()).clamp(1.0, 3600.0) as u64
        };
        let on_partial_cdrs = self.rng.random_bool(p.partial_cdr_share.clamp(0.0, 1.0));
        CallPlan { n: self.calls, caller, called, duration_s, on_partial_cdrs }
    }

    pub fn next_data(&mut self) -> DataPlan {
        self.sessions += 1;
        let subscriber = self.subscriber();
        let duration_s = self.rng.random_range(10..=self.profile.max_data_s.max(10));
        let mut uses = Vec::new();
        for &service in &self.profile.services {
            if !self.rng.random_bool(0.6) {
                continue;
            }
            let share = self.rng.random_range(0.1..1.0);
            let downlink = (service.downlink_per_s as f64 * duration_s as f64 * share) as u64;
            uses.push(ServiceUse { service, uplink_octets: downlink / 10, downlink_octets: downlink });
        }
        if uses.is_empty()
            && let Some(&service) = self.profile.services.first()
        {
            let downlink = service.downlink_per_s * duration_s / 2;
            uses.push(ServiceUse { service, uplink_octets: downlink / 10, downlink_octets: downlink });
        }
        DataPlan { n: self.sessions, subscriber, duration_s, uses }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_repeats_the_traffic() {
        let mut a = Traffic::new(Profile::default(), 7);
        let mut b = Traffic::new(Profile::default(), 7);
        for _ in 0..100 {
            assert_eq!(a.next_call(), b.next_call());
            assert_eq!(a.next_data(), b.next_data());
        }
        let mut c = Traffic::new(Profile::default(), 8);
        assert_ne!(
            (0..10).map(|_| a.next_call()).collect::<Vec<_>>(),
            (0..10).map(|_| c.next_call()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn calls_stay_within_the_profile() {
        let profile = Profile { long_call_share: 0.3, ..Profile::default() };
        let mut t = Traffic::new(profile, 1);
        let calls: Vec<CallPlan> = (0..2000).map(|_| t.next_call()).collect();
        for c in &calls {
            let n: u64 = c.caller.parse().unwrap();
            assert!((4_790_000_000..4_790_001_000).contains(&n));
            assert_eq!(c.called.len(), 10);
            assert!(["4790", "4791", "4680"].iter().any(|p| c.called.starts_with(p)));
            assert!((1..=3600).contains(&c.duration_s));
        }
        let long = calls.iter().filter(|c| c.duration_s >= 600).count();
        assert!((400..800).contains(&long), "{long}");
        let sessions: Vec<DataPlan> = (0..200).map(|_| t.next_data()).collect();
        assert!(sessions.iter().all(|s| !s.uses.is_empty() && (10..=600).contains(&s.duration_s)));
    }

    #[test]
    fn subscriber_ranges() {
        assert_eq!(Subscribers::parse("4790000000-4790000009"), Some(Subscribers { first: 4_790_000_000, count: 10 }));
        assert_eq!(Subscribers::parse("4790000005"), Some(Subscribers { first: 4_790_000_005, count: 1 }));
        assert_eq!(Subscribers::parse("9-1"), None);
        assert_eq!(Subscribers::parse("x"), None);
        assert_eq!(Subscribers { first: 10, count: 3 }.iter().collect::<Vec<_>>(), ["10", "11", "12"]);
    }
}
