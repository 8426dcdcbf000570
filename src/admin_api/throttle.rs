//! Slowing down admin-token guessing: a per-client-address count of bad tokens that, past an
//! allowance, shuts the address out for a while (429 with `Retry-After`), the period doubling
//! with each further bad token.
//!
//! Owns: the failure table and its bounds. The admin API asks [`AuthThrottle::check`] before it
//! looks a token up (so a shut-out client gets 429 even with a good token, and a guess costs
//! no database round trip) and reports each unknown token with [`AuthThrottle::failed`].
//!
//! Design notes:
//! - Keyed by client address; IPv6 clients by their /64 (one host usually holds a whole /64),
//!   IPv4-mapped addresses as IPv4. Behind a reverse proxy every client shares the proxy's
//!   address; forwarded headers are not trusted.
//! - A good token does not clear an entry: a client on another address cannot wipe an
//!   attacker's count, and neither can a legitimate admin behind the same NAT. Entries are
//!   forgotten [`FORGET_AFTER`] after their last bad token or the end of their shut-out,
//!   whichever is later.
//! - Bounded memory: at most `table_max` addresses. When full, forgotten entries go first,
//!   then the one whose last bad token is oldest.
//! - A missing token is refused (401) but not counted: it guesses nothing.
//! - `governor` (already a dependency) limits a rate with GCRA; it has no failure count with
//!   exponential periods, no look without consuming a cell and no bound on its key table, so
//!   this is a small table of its own.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::Config;

/// Longest shut-out, however many bad tokens came.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// An entry is forgotten this long after its last bad token or the end of its shut-out.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// How the throttle is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Bad tokens an address may send before it is shut out.
    pub failures_allowed: u32,
    /// The first shut-out; each further bad token doubles it, up to [`MAX_DELAY`].
    pub first_delay: Duration,
    /// Most addresses remembered.
    pub table_max: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}

impl ThrottleConfig {
    /// Sizes from the configuration (`admin.auth_*`).
    pub fn from_config(config: &Config) -> Self {
        Self {
            failures_allowed: config.admin_auth_failures_allowed.max(1),
            first_delay: config.admin_auth_delay,
            table_max: config.admin_auth_table_max.max(1),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    /// Quiet for [`FORGET_AFTER`] since its last bad token or the end of its shut-out,
    /// whichever is later.
    fn forgotten(&self, now: Instant) -> bool {
        let since = self
            .locked_until
            .map_or(self.last_failure, |t| t.max(self.last_failure));
        now.saturating_duration_since(since) >= FORGET_AFTER
    }
}

/// The per-address bad-token table.
#[derive(Debug)]
pub struct AuthThrottle {
    config: ThrottleConfig,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

/// The table key of a client address: IPv4 as is (also when IPv4-mapped), IPv6 by its /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl AuthThrottle {
    /// An empty table.
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `ip` is shut out: how long until it may try again.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let table = self.table.lock();
        match table.get(&client_key(ip)).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a bad token from `ip`; returns the shut-out it now serves, if any.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let key = client_key(ip);
        let mut table = self.table.lock();
        if !table.contains_key(&key) && table.len() >= self.config.table_max {
            table.retain(|_, e| !e.forgotten(now));
            if table.len() >= self.config.table_max
                && let Some(oldest) = table
                    .iter()
                    .min_by_key(|(_, e)| e.last_failure)
                    .map(|(k, _)| *k)
            {
                table.remove(&oldest);
            }
        }
        let entry = table.entry(key).or_insert(Entry {
            failures: 0,
            last_failure: now,
            locked_until: None,
        });
        if entry.forgotten(now) {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let past = entry.failures.checked_sub(self.config.failures_allowed)?;
        let delay = self
            .config
            .first_delay
            .saturating_mul(1u32.checked_shl(past).unwrap_or(u32::MAX))
            .min(MAX_DELAY);
        entry.locked_until = Some(now + delay);
        Some(delay)
    }

    /// Addresses remembered now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(allowed: u32, first_ms: u64, max: usize) -> AuthThrottle {
        AuthThrottle::new(ThrottleConfig {
            failures_allowed: allowed,
            first_delay: Duration::from_millis(first_ms),
            table_max: max,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allowance_then_doubling_shut_outs_up_to_the_cap() {
        let t = throttle(3, 1000, 16);
        let a = ip("10.0.0.1");
        let t0 = Instant::now();
        assert_eq!(t.failed(a, t0), None);
        assert_eq!(t.failed(a, t0), None);
        assert!(t.check(a, t0).is_ok());
        assert_eq!(t.failed(a, t0), Some(Duration::from_secs(1)));
        assert_eq!(t.check(a, t0), Err(Duration::from_secs(1)));
        assert_eq!(
            t.check(a, t0 + Duration::from_millis(400)),
            Err(Duration::from_millis(600))
        );
        let t1 = t0 + Duration::from_secs(1);
        assert!(t.check(a, t1).is_ok(), "the shut-out ends");
        assert_eq!(t.failed(a, t1), Some(Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(t.failed(a, t2), Some(Duration::from_secs(4)));
        // Many more: capped, no overflow.
        let mut now = t2;
        for _ in 0..100 {
            now += Duration::from_secs(1);
            assert!(t.failed(a, now).unwrap() <= MAX_DELAY);
        }
        assert_eq!(t.failed(a, now), Some(MAX_DELAY));
        // The longest shut-out is not forgotten the moment it ends.
        let ended = now + MAX_DELAY;
        assert!(t.check(a, ended).is_ok());
        assert_eq!(t.failed(a, ended), Some(MAX_DELAY));
        // Quiet long enough after the end of a shut-out: a fresh allowance.
        let quiet = ended + MAX_DELAY + FORGET_AFTER;
        assert_eq!(t.failed(a, quiet), None);
    }

    #[test]
    fn addresses_are_counted_apart_and_ipv6_by_its_64() {
        let t = throttle(1, 60_000, 16);
        let now = Instant::now();
        assert!(t.failed(ip("10.0.0.1"), now).is_some());
        assert!(t.check(ip("10.0.0.1"), now).is_err());
        assert!(t.check(ip("10.0.0.2"), now).is_ok());
        assert!(t.check(ip("::ffff:10.0.0.1"), now).is_err(), "IPv4-mapped");
        assert!(t.failed(ip("2001:db8:1:2::1"), now).is_some());
        assert!(
            t.check(ip("2001:db8:1:2:ffff::9"), now).is_err(),
            "same /64"
        );
        assert!(t.check(ip("2001:db8:1:3::1"), now).is_ok(), "another /64");
    }

    #[test]
    fn entries_are_forgotten_after_a_quiet_period() {
        let t = throttle(2, 1000, 16);
        let a = ip("10.0.0.1");
        let now = Instant::now();
        assert_eq!(t.failed(a, now), None);
        // Long after: the old failure no longer counts.
        let later = now + FORGET_AFTER;
        assert_eq!(t.failed(a, later), None);
        assert!(t.failed(a, later).is_some());
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest_first() {
        let t = throttle(1, 60_000, 3);
        let now = Instant::now();
        for (i, host) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            t.failed(ip(host), now + Duration::from_secs(i as u64));
        }
        assert_eq!(t.len(), 3);
        let later = now + Duration::from_secs(10);
        t.failed(ip("10.0.0.4"), later);
        assert_eq!(t.len(), 3);
        assert!(t.check(ip("10.0.0.1"), later).is_ok(), "oldest forgotten");
        assert!(t.check(ip("10.0.0.2"), later).is_err());
        assert!(t.check(ip("10.0.0.4"), later).is_err());
        for i in 0..10_000u32 {
            t.failed(IpAddr::from(i.to_be_bytes()), later);
        }
        assert_eq!(t.len(), 3);
    }
}
