//! Login lockout (SPEC 5 and 11): after `max_failures` failed attempts for
//! one user from one client IP within `failure_window`, every further
//! attempt gets 429 with `Retry-After` until `lockout` has passed, right
//! password or not.
//!
//! Shared state: a DashMap keyed by (user, IP), written by login attempts
//! only. Entries whose window and lockout have both passed are dropped when
//! the map grows, so a flood of made-up names cannot grow it forever.

use dashmap::DashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Attempts {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Throttle {
    attempts: DashMap<(String, IpAddr), Attempts>,
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

impl Throttle {
    /// `Err(retry_after)` while `user` from `ip` is locked out.
    pub fn check(&self, user: &str, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        match self
            .attempts
            .get(&(user.to_string(), ip))
            .and_then(|a| a.locked_until)
        {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    pub fn failed(&self, user: &str, ip: IpAddr, p: Policy) {
        let now = Instant::now();
        if self.attempts.len() >= MAX_TRACKED {
            self.attempts.retain(|_, a| {
                now.duration_since(a.window_start) < p.window
                    || a.locked_until.is_some_and(|u| u > now)
            });
        }
        let mut a = self
            .attempts
            .entry((user.to_string(), ip))
            .or_insert(Attempts {
                failures: 0,
                window_start: now,
                locked_until: None,
            });
        if a.locked_until.is_some_and(|u| u <= now)
            || now.duration_since(a.window_start) >= p.window
        {
            *a = Attempts {
                failures: 0,
                window_start: now,
                locked_until: None,
            };
        }
        a.failures += 1;
        if a.failures >= p.max_failures {
            a.locked_until = Some(now + p.lockout);
        }
    }

    pub fn succeeded(&self, user: &str, ip: IpAddr) {
        self.attempts.remove(&(user.to_string(), ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_per_user_and_ip_until_lockout_passes() {
        let t = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let p = Policy {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_millis(200),
        };
        for _ in 0..2 {
            assert!(t.check("alice", ip).is_ok());
            t.failed("alice", ip, p);
        }
        assert!(t.check("alice", ip).is_ok());
        t.failed("alice", ip, p);
        let wait = t.check("alice", ip).unwrap_err();
        assert!(wait <= Duration::from_millis(200));
        assert!(t.check("alice", other).is_ok(), "another IP is not locked");
        assert!(t.check("bob", ip).is_ok(), "another user is not locked");
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.check("alice", ip).is_ok());
        t.failed("alice", ip, p);
        assert!(
            t.check("alice", ip).is_ok(),
            "the count starts over after a lockout"
        );
    }
}
