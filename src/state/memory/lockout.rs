//! Login lockout (SPEC 5, 11 and 16): at most `max_failures` wrong-password
//! checks per user and client IP complete within `failure_window`; after
//! that every attempt gets 429 with `Retry-After` until `lockout` has
//! passed, right password or not.
//!
//! The limit holds under concurrency. A password check takes tens of
//! milliseconds, so counting failures only when a check ends would let 30
//! simultaneous attempts all through the door while the count still reads
//! zero. Instead an attempt reserves its place before the hash
//! ([`Throttle::begin`]): the failures so far plus the checks in flight
//! may never exceed `max_failures`, and an attempt that finds no room is
//! refused without a hash. The reservation ([`Attempt`]) is settled by
//! [`Attempt::succeeded`] or [`Attempt::failed`]; one dropped unsettled (the
//! client went away mid-check) counts as a failure, since the check ran.
//!
//! Shared state: a DashMap keyed by (user, IP), written by login attempts
//! only; each decision happens under that entry's shard lock. Entries with
//! nothing in flight whose window and lockout have both passed are dropped
//! when the map is full; a map still full of live entries takes no new
//! keys. Callers reserve after taking a turn at the password checker, so
//! entries are made no faster than checks run; usernames are capped at
//! [`MAX_USERNAME_BYTES`] before they get here.

use crate::clock::Instant;
use dashmap::DashMap;
use std::net::IpAddr;
use std::time::Duration;

const MAX_TRACKED: usize = 100_000;

/// Longer usernames are refused before any work (SPEC 16): they would only
/// grow this map and the log.
pub const MAX_USERNAME_BYTES: usize = 256;

/// `Retry-After` when the budget is taken by checks still running: they end
/// within a second or so, and may free it (a right password resets it).
const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Wrong passwords counted in this window.
    failures: u32,
    /// Checks reserved and not yet settled.
    in_flight: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

type Key = (String, IpAddr);

#[derive(Debug, Default)]
pub struct Throttle {
    attempts: DashMap<Key, Entry>,
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

/// A reserved password check; settle it with [`Attempt::succeeded`] or
/// [`Attempt::failed`]. Dropped unsettled, it counts as a failure.
#[must_use = "an attempt must be settled"]
#[derive(Debug)]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    key: Option<Key>,
    policy: Policy,
}

impl Throttle {
    /// Reserves one password check for `user` from `ip`, or `Err(retry_after)`
    /// when the user is locked out or the failures so far plus the checks in
    /// flight already fill `max_failures`.
    pub fn begin(&self, user: &str, ip: IpAddr, policy: Policy) -> Result<Attempt<'_>, Duration> {
        let now = Instant::now();
        let key = (user.to_string(), ip);
        if self.attempts.len() >= MAX_TRACKED && !self.attempts.contains_key(&key) {
            self.attempts.retain(|_, a| {
                a.in_flight > 0
                    || now.duration_since(a.window_start) < policy.window
                    || a.locked_until.is_some_and(|u| u > now)
            });
            // Still full of live entries: a flood of made-up names. New
            // keys wait (fail closed) rather than grow the map; known ones
            // go on. Callers take a checker slot first, so entries are
            // made no faster than checks run and this is rare.
            if self.attempts.len() >= MAX_TRACKED {
                return Err(IN_FLIGHT_RETRY);
            }
        }
        let mut a = self.attempts.entry(key.clone()).or_insert(Entry {
            failures: 0,
            in_flight: 0,
            window_start: now,
            locked_until: None,
        });
        match a.locked_until {
            Some(until) if until > now => return Err(until - now),
            Some(_) => {
                // The lockout has passed: the count starts over.
                a.failures = 0;
                a.locked_until = None;
                a.window_start = now;
            }
            None if now.duration_since(a.window_start) >= policy.window => {
                a.failures = 0;
                a.window_start = now;
            }
            None => {}
        }
        if a.failures.saturating_add(a.in_flight) >= policy.max_failures {
            return Err(IN_FLIGHT_RETRY);
        }
        a.in_flight += 1;
        Ok(Attempt {
            throttle: self,
            key: Some(key),
            policy,
        })
    }

    /// Whether `user` from `ip` is locked out right now (attempts go
    /// through [`Throttle::begin`]).
    #[cfg(test)]
    fn is_locked(&self, user: &str, ip: IpAddr) -> bool {
        let now = Instant::now();
        self.attempts
            .get(&(user.to_string(), ip))
            .and_then(|a| a.locked_until)
            .is_some_and(|u| u > now)
    }

    fn settle(&self, key: &Key, policy: Policy, failed: bool) {
        let now = Instant::now();
        let remove = match self.attempts.get_mut(key) {
            None => false,
            Some(mut a) => {
                a.in_flight = a.in_flight.saturating_sub(1);
                if failed {
                    a.failures += 1;
                    if a.failures >= policy.max_failures && a.locked_until.is_none() {
                        a.locked_until = Some(now + policy.lockout);
                    }
                    false
                } else {
                    // The right password clears the count, unless a lockout
                    // began meanwhile (other attempts failed): it stands.
                    if a.locked_until.is_none() {
                        a.failures = 0;
                    }
                    a.in_flight == 0 && a.failures == 0
                }
            }
        };
        if remove {
            self.attempts
                .remove_if(key, |_, a| a.in_flight == 0 && a.failures == 0);
        }
    }
}

impl Attempt<'_> {
    /// The password was right.
    pub fn succeeded(mut self) {
        if let Some(key) = self.key.take() {
            self.throttle.settle(&key, self.policy, false);
        }
    }

    /// The password was wrong (or the user unknown or disabled).
    pub fn failed(mut self) {
        if let Some(key) = self.key.take() {
            self.throttle.settle(&key, self.policy, true);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.throttle.settle(&key, self.policy, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        max_failures: 3,
        window: Duration::from_secs(60),
        lockout: Duration::from_millis(200),
    };

    // The throttle reads the clock: paused time, advanced past the lockout.
    #[tokio::test(start_paused = true)]
    async fn locks_after_max_failures_per_user_and_ip_until_lockout_passes() {
        let t = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            t.begin("alice", ip, P).unwrap().failed();
        }
        let wait = t.begin("alice", ip, P).unwrap_err();
        assert!(wait <= Duration::from_millis(200));
        assert!(t.is_locked("alice", ip));
        assert!(
            t.begin("alice", other, P).is_ok(),
            "another IP is not locked"
        );
        assert!(t.begin("bob", ip, P).is_ok(), "another user is not locked");
        tokio::time::advance(Duration::from_millis(199)).await;
        assert!(t.is_locked("alice", ip), "locked until the lockout passes");
        tokio::time::advance(Duration::from_millis(51)).await;
        t.begin("alice", ip, P).unwrap().failed();
        assert!(
            t.begin("alice", ip, P).is_ok(),
            "the count starts over after a lockout"
        );
    }

    #[test]
    fn checks_in_flight_count_against_the_limit() {
        let t = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| t.begin("alice", ip, P).unwrap()).collect();
        assert_eq!(
            t.begin("alice", ip, P).unwrap_err(),
            IN_FLIGHT_RETRY,
            "no fourth check while three run"
        );
        let mut held = held.into_iter();
        held.next().unwrap().succeeded();
        // A right password frees its place and clears the count so far.
        let again = t.begin("alice", ip, P).expect("room again");
        drop(again); // dropped unsettled: counted as a failure
        for a in held {
            a.failed();
        }
        assert!(t.is_locked("alice", ip), "three failures lock");
    }
}
