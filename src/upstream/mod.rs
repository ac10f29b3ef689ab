//! Upstream pools: backends with their live state, and choosing one.
//!
//! Shared state, and why it is shaped so: every field a request touches is
//! an atomic (in-flight count, health, ejection deadline), so choosing a
//! backend takes no lock. Each backend's idle connections sit behind their
//! own short mutex (`pool.rs`), never held across an await. A reload builds
//! new [`Upstream`]s but reuses the `Arc<Backend>` of every backend that did
//! not change, so health, ejection, drain state and warm connections survive.

pub mod hash;
pub mod health;
pub mod pool;
pub mod select;

use crate::config::{self, Balance, Health};
use crate::metrics::StatusCounters;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One backend server and its live state.
pub struct Backend {
    /// `host:port` as configured.
    pub addr: String,
    pub weight: u32,
    /// Whether its connections use TLS (part of its identity across reloads).
    tls: bool,
    pub in_flight: AtomicU32,
    /// Set by active health checks; true until a check says otherwise.
    pub healthy: AtomicBool,
    pub draining: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `epoch` until which the backend is ejected.
    ejected_until: AtomicU64,
    epoch: Instant,
    pub requests: StatusCounters,
    pub pool: pool::ConnPool,
    checks: health::Streaks,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Backend {
    pub fn new(addr: String, weight: u32, tls: bool, max_idle: usize) -> Self {
        Backend {
            addr,
            weight,
            tls,
            in_flight: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            epoch: Instant::now(),
            requests: StatusCounters::default(),
            pool: pool::ConnPool::new(max_idle),
            checks: health::Streaks::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Takes new clients: healthy, not ejected, not draining.
    pub fn is_available(&self) -> bool {
        self.healthy.load(Relaxed) && !self.draining.load(Relaxed) && !self.is_ejected()
    }

    /// Passive health: a connect error or 5xx. After `limit` in a row the
    /// backend is ejected for `eject_for`.
    pub fn record_failure(&self, health: &Health) {
        let n = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if health.passive_failures > 0 && n >= health.passive_failures {
            let until = self.now_ms() + health.eject_for.as_millis() as u64;
            self.ejected_until.store(until.max(1), Relaxed);
            self.consecutive_failures.store(0, Relaxed);
            tracing::warn!(backend = %self.addr, eject_for = ?health.eject_for, "backend ejected after consecutive failures");
        }
    }

    pub fn record_success(&self) {
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
    }

    /// Counts a request in flight until the guard drops.
    pub fn track(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }
}

/// Decrements the backend's in-flight count when dropped.
pub struct InFlight(pub Arc<Backend>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// An upstream of one config generation.
pub struct Upstream {
    pub name: String,
    pub backends: Vec<Arc<Backend>>,
    pub balance: Balance,
    pub tls: Option<tokio_rustls::TlsConnector>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retries: u32,
    pub health: Health,
    /// Weighted round-robin order, precomputed (smooth WRR) so the hot path
    /// is one atomic increment.
    schedule: Vec<u16>,
    cursor: AtomicUsize,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Smooth weighted round robin (as nginx does it), unrolled into a fixed
/// schedule: weights 5,1,1 give a,a,b,a,c,a,a rather than a,a,a,a,a,b,c.
fn wrr_schedule(weights: &[u32]) -> Vec<u16> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += i64::from(*w);
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
            .expect("non-empty");
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

impl Upstream {
    /// Builds the runtime upstream, reusing backends of `previous` whose
    /// address and TLS setting are unchanged.
    pub fn build(cfg: &config::Upstream, previous: Option<&Upstream>) -> Upstream {
        let tls = cfg.tls.is_some();
        let backends: Vec<Arc<Backend>> = cfg
            .backends
            .iter()
            .map(|b| {
                previous
                    .and_then(|p| {
                        p.backends
                            .iter()
                            .find(|x| x.addr == b.addr && x.tls == tls && x.weight == b.weight)
                    })
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Backend::new(
                            b.addr.clone(),
                            b.weight,
                            tls,
                            cfg.max_idle_per_backend,
                        ))
                    })
            })
            .collect();
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        Upstream {
            name: cfg.name.clone(),
            schedule: wrr_schedule(&weights),
            backends,
            balance: cfg.balance,
            tls: cfg.tls.clone().map(tokio_rustls::TlsConnector::from),
            connect_timeout: cfg.connect_timeout,
            request_timeout: cfg.request_timeout,
            retries: cfg.retries,
            health: cfg.health.clone(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Chooses a backend for a new request, skipping those in `tried`.
    /// `None`: no available backend (503).
    pub fn select(&self, tried: &[usize]) -> Option<usize> {
        let ok = |i: usize| !tried.contains(&i) && self.backends[i].is_available();
        match self.balance {
            Balance::RoundRobin | Balance::Hash => {
                let n = self.schedule.len();
                let start = self.cursor.fetch_add(1, Relaxed);
                (0..n)
                    .map(|k| usize::from(self.schedule[(start + k) % n]))
                    .find(|&i| ok(i))
            }
            Balance::LeastConn => {
                // Least in-flight per unit of weight; ties rotate so equal
                // backends share the load.
                let n = self.backends.len();
                let start = self.cursor.fetch_add(1, Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| ok(i))
                    .min_by(|&a, &b| {
                        let la = u64::from(self.backends[a].in_flight.load(Relaxed))
                            * u64::from(self.backends[b].weight);
                        let lb = u64::from(self.backends[b].in_flight.load(Relaxed))
                            * u64::from(self.backends[a].weight);
                        la.cmp(&lb)
                    })
            }
            Balance::Random => {
                // Power of two choices: two random candidates, the less busy wins.
                let cands: Vec<usize> = (0..self.backends.len()).filter(|&i| ok(i)).collect();
                match cands.len() {
                    0 => None,
                    1 => Some(cands[0]),
                    n => {
                        let a = cands[fast_random(n)];
                        let b = cands[fast_random(n)];
                        let (la, lb) = (
                            self.backends[a].in_flight.load(Relaxed),
                            self.backends[b].in_flight.load(Relaxed),
                        );
                        Some(if lb < la { b } else { a })
                    }
                }
            }
        }
    }
}

/// A non-cryptographic random index in `0..n` (load balancing only).
fn fast_random(n: usize) -> usize {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(u64::from_le_bytes(crate::crypto::random_bytes::<8>()) | 1);
    }
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(weights: &[u32], balance: Balance) -> Upstream {
        let cfg = config::Upstream {
            name: "u".into(),
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, w)| config::BackendSpec {
                    addr: format!("127.0.0.1:{}", 9000 + i),
                    weight: *w,
                })
                .collect(),
            balance,
            tls: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            retries: 0,
            max_idle_per_backend: 1,
            health: Health {
                path: None,
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                unhealthy_after: 2,
                healthy_after: 2,
                passive_failures: 3,
                eject_for: Duration::from_secs(30),
            },
            hash_key: None,
            sticky: None,
            discovery: None,
        };
        Upstream::build(&cfg, None)
    }

    #[test]
    fn weighted_round_robin_follows_weights_and_interleaves() {
        let u = upstream(&[5, 1, 1], Balance::RoundRobin);
        let picks: Vec<usize> = (0..7).map(|_| u.select(&[]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 1);
        assert_ne!(picks[0..3], [0, 0, 0], "smooth WRR interleaves: {picks:?}");
    }

    #[test]
    fn round_robin_skips_tried_and_unavailable_backends() {
        let u = upstream(&[1, 1, 1], Balance::RoundRobin);
        u.backends[1].draining.store(true, Relaxed);
        for _ in 0..10 {
            let i = u.select(&[0]).unwrap();
            assert_eq!(i, 2);
        }
        assert_eq!(u.select(&[0, 2]), None);
    }

    #[test]
    fn consecutive_failures_eject_a_backend() {
        let u = upstream(&[1, 1], Balance::RoundRobin);
        for _ in 0..3 {
            u.backends[0].record_failure(&u.health);
        }
        assert!(u.backends[0].is_ejected());
        for _ in 0..10 {
            assert_eq!(u.select(&[]), Some(1));
        }
    }

    #[test]
    fn success_resets_the_failure_count() {
        let u = upstream(&[1], Balance::RoundRobin);
        u.backends[0].record_failure(&u.health);
        u.backends[0].record_failure(&u.health);
        u.backends[0].record_success();
        u.backends[0].record_failure(&u.health);
        assert!(!u.backends[0].is_ejected());
    }

    #[test]
    fn least_conn_prefers_the_idle_backend() {
        let u = upstream(&[1, 1, 1], Balance::LeastConn);
        u.backends[0].in_flight.store(5, Relaxed);
        u.backends[2].in_flight.store(2, Relaxed);
        for _ in 0..5 {
            assert_eq!(u.select(&[]), Some(1));
        }
    }

    #[test]
    fn random_two_choices_never_picks_the_busiest_of_two() {
        let u = upstream(&[1, 1], Balance::Random);
        u.backends[0].in_flight.store(9, Relaxed);
        let ones = (0..200).filter(|_| u.select(&[]) == Some(1)).count();
        assert!(ones > 140, "{ones}");
    }

    #[test]
    fn reload_keeps_state_of_unchanged_backends() {
        let a = upstream(&[1, 1], Balance::RoundRobin);
        a.backends[0].draining.store(true, Relaxed);
        let cfg = config::Upstream {
            name: "u".into(),
            backends: vec![config::BackendSpec {
                addr: "127.0.0.1:9000".into(),
                weight: 1,
            }],
            balance: Balance::RoundRobin,
            tls: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            retries: 0,
            max_idle_per_backend: 1,
            health: a.health.clone(),
            hash_key: None,
            sticky: None,
            discovery: None,
        };
        let b = Upstream::build(&cfg, Some(&a));
        assert!(Arc::ptr_eq(&a.backends[0], &b.backends[0]));
        assert!(b.backends[0].draining.load(Relaxed));
    }
}
