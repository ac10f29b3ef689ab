//! Upstream pools: backends with their live state, and choosing one.
//!
//! Shared state, and why it is shaped so: every field a request touches is
//! an atomic (in-flight count, health, ejection deadline), so choosing a
//! backend takes no lock. Each backend's idle connections sit behind their
//! own short mutex (`pool.rs`), never held across an await. A reload builds
//! new [`Upstream`]s but reuses the `Arc<Backend>` of every backend that did
//! not change, so health, ejection, drain state and warm connections survive.
//!
//! The backend list itself can change at runtime (DNS discovery), so it is
//! a [`BackendSet`] behind an `ArcSwap`: a request loads the set once (a
//! lock-free pointer load and reference count) and uses that set to the
//! end; the discovery task builds a whole new set and swaps it in. Nothing
//! on the request path waits for a writer.
//!
//! Selection itself is pure (`select.rs`, `hash.rs`); this module feeds it
//! the set and each backend's [`Fit`](select::Fit). Affinity (sticky
//! sessions) is read and written in `sticky.rs`.

pub mod discovery;
pub mod hash;
pub mod health;
pub mod pool;
pub mod select;
pub mod sticky;

use crate::clock::Instant;
use crate::config::{self, Balance, HashKey, Health};
use crate::metrics::StatusCounters;
use arc_swap::ArcSwap;
use select::{Decision, Fit, Pin, Policy};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use sticky::{Affinity, BackendTag, Clients};

/// Weight of a backend found by DNS (records carry no weight).
pub const DISCOVERED_WEIGHT: u32 = 1;

/// One backend server and its live state.
pub struct Backend {
    /// `host:port` as configured (or found by DNS).
    pub addr: String,
    /// Stable hash of `addr`: the backend's name in consistent hashing and
    /// in the sticky-client memory (the same on every replica and reload).
    pub id: u64,
    pub weight: u32,
    /// Whether its connections use TLS (part of its identity across reloads).
    tls: bool,
    pub in_flight: AtomicU32,
    /// Set by active health checks; true until a check says otherwise.
    pub healthy: AtomicBool,
    /// Set by the admin API: keeps its sticky clients, takes no new ones.
    pub draining: AtomicBool,
    /// Gone from DNS discovery: drained like `draining` until it has no
    /// requests in flight and no live sticky clients, then dropped.
    pub retiring: AtomicBool,
    /// When `retiring` was set (milliseconds since `epoch`).
    retiring_since: AtomicU64,
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
            id: hash::stable_hash(addr.as_bytes()),
            addr,
            weight,
            tls,
            in_flight: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            retiring: AtomicBool::new(false),
            retiring_since: AtomicU64::new(0),
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
        self.fit() == Fit::Yes
    }

    /// Draining by the admin API or gone from DNS.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed) || self.retiring.load(Relaxed)
    }

    /// What this backend can do for a request: nothing when unhealthy or
    /// ejected, only its existing sticky clients when draining, anything
    /// otherwise.
    pub fn fit(&self) -> Fit {
        if !self.healthy.load(Relaxed) || self.is_ejected() {
            Fit::No
        } else if self.is_draining() {
            Fit::KeepOnly
        } else {
            Fit::Yes
        }
    }

    /// Marks the backend as gone from discovery (or back).
    pub fn set_retiring(&self, retiring: bool) {
        if retiring && !self.retiring.swap(true, Relaxed) {
            self.retiring_since.store(self.now_ms().max(1), Relaxed);
        } else if !retiring {
            self.retiring.store(false, Relaxed);
        }
    }

    /// How long the backend has been retiring.
    pub fn retiring_for(&self) -> Option<Duration> {
        if !self.retiring.load(Relaxed) {
            return None;
        }
        let since = self.retiring_since.load(Relaxed);
        Some(Duration::from_millis(self.now_ms().saturating_sub(since)))
    }

    /// Passive health: a connect error or 5xx. After `limit` in a row the
    /// backend is ejected for `eject_for`.
    pub fn record_failure(&self, health: &Health) {
        let n = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if health.passive_failures > 0 && n >= health.passive_failures {
            self.consecutive_failures.store(0, Relaxed);
            // Requests that were in flight when it was ejected fail too:
            // one ejection, one log line, not one per straggler.
            if self.is_ejected() {
                return;
            }
            let until = self.now_ms() + health.eject_for.as_millis() as u64;
            self.ejected_until.store(until.max(1), Relaxed);
            tracing::warn!(backend = %self.addr, eject_for = ?health.eject_for, "backend ejected after consecutive failures");
        }
    }

    /// [`Backend::fit`] as if it were not ejected (panic mode).
    fn fit_despite_ejection(&self) -> Fit {
        if !self.healthy.load(Relaxed) {
            Fit::No
        } else if self.is_draining() {
            Fit::KeepOnly
        } else {
            Fit::Yes
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

/// The backends of an upstream at one moment, with what selection needs
/// precomputed. Immutable; replaced whole when membership changes.
pub struct BackendSet {
    pub backends: Vec<Arc<Backend>>,
    /// Weighted round-robin order, precomputed (smooth WRR) so the hot path
    /// is one atomic increment.
    schedule: Vec<u16>,
    /// (stable hash, weight) per backend, for consistent hashing.
    members: Vec<(u64, u32)>,
    /// Affinity-cookie tag per backend (cookie mode only, else empty).
    tags: Vec<BackendTag>,
}

impl BackendSet {
    fn new(backends: Vec<Arc<Backend>>, upstream: &str, sticky: Option<&config::Sticky>) -> Self {
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        let tags = match sticky {
            Some(s) if matches!(s.mode, config::StickyMode::Cookie { .. }) => backends
                .iter()
                .map(|b| sticky::backend_tag(&s.key, upstream, &b.addr))
                .collect(),
            _ => Vec::new(),
        };
        BackendSet {
            schedule: wrr_schedule(&weights),
            members: backends.iter().map(|b| (b.id, b.weight)).collect(),
            tags,
            backends,
        }
    }

    pub fn len(&self) -> usize {
        self.backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    pub fn find(&self, addr: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.addr == addr)
    }

    /// Every backend is ejected, and none is unhealthy or draining: the
    /// condition for panic mode.
    fn all_ejected(&self) -> bool {
        !self.backends.is_empty()
            && self
                .backends
                .iter()
                .all(|b| b.is_ejected() && b.healthy.load(Relaxed) && !b.is_draining())
    }

    fn index_of_id(&self, id: u64) -> Option<usize> {
        self.backends.iter().position(|b| b.id == id)
    }

    fn index_of_tag(&self, tag: &BackendTag) -> Option<usize> {
        self.tags.iter().position(|t| t == tag)
    }
}

/// An upstream of one config generation.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(0);

pub struct Upstream {
    pub name: String,
    pub balance: Balance,
    pub hash_key: Option<HashKey>,
    pub sticky: Option<config::Sticky>,
    pub discovery: Option<config::Discovery>,
    pub tls: Option<tokio_rustls::TlsConnector>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retries: u32,
    pub health: Health,
    /// The fixed `backends` of the config (discovery adds to them).
    static_backends: Vec<config::BackendSpec>,
    max_idle_per_backend: usize,
    set: ArcSwap<BackendSet>,
    cursor: AtomicUsize,
    /// Sticky modes: the memory of sticky clients (kept across reloads
    /// that keep the mode).
    pub clients: Option<Arc<Clients>>,
    /// `gatehouse_sticky_repins_total{upstream}` (kept across reloads).
    pub repins: Arc<AtomicU64>,
    /// Discovery: whether a DNS answer was applied yet (readiness).
    pub resolved: Arc<AtomicBool>,
    /// `gatehouse_upstream_panic_total{upstream}`: requests sent to ejected
    /// backends because every backend was ejected (kept across reloads).
    pub panics: Arc<AtomicU64>,
    /// In panic mode now: logged once on the way in and once on the way out.
    panicking: AtomicBool,
    /// This instance among every upstream the process built, never reused:
    /// what a connection's remembered affinity cookie was verified
    /// against ([`sticky::TokenMemo`]). A reload builds new instances, so
    /// a changed key or name is never matched by an old memo.
    pub generation: u64,
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
    /// address, TLS setting and weight are unchanged, its backends found by
    /// DNS (until the next answer), and its sticky-client memory when the
    /// sticky mode is the same.
    pub fn build(cfg: &config::Upstream, previous: Option<&Upstream>) -> Upstream {
        let tls = cfg.tls.is_some();
        let prev_set = previous.map(|p| p.backends());
        let reuse = |addr: &str, weight: u32| {
            prev_set
                .as_ref()
                .and_then(|s| s.find(addr))
                .filter(|x| x.tls == tls && x.weight == weight)
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(Backend::new(
                        addr.to_string(),
                        weight,
                        tls,
                        cfg.max_idle_per_backend,
                    ))
                })
        };
        let mut backends: Vec<Arc<Backend>> = cfg
            .backends
            .iter()
            .map(|b| reuse(&b.addr, b.weight))
            .collect();
        for b in &backends {
            // A backend once found by DNS and now configured: it stays.
            b.set_retiring(false);
        }
        let same_discovery = match (previous, &cfg.discovery) {
            (Some(p), Some(d)) => p
                .discovery
                .as_ref()
                .is_some_and(|pd| pd.host == d.host && pd.port == d.port),
            _ => false,
        };
        if let (true, Some(p), Some(set)) = (same_discovery, previous, prev_set.as_ref()) {
            for b in &set.backends {
                let fixed = p.static_backends.iter().any(|s| s.addr == b.addr);
                if !fixed && !backends.iter().any(|x| x.addr == b.addr) {
                    backends.push(reuse(&b.addr, DISCOVERED_WEIGHT));
                }
            }
        }
        let clients = cfg.sticky.as_ref().map(|s| {
            let memory = sticky::memory_for(&s.mode, s.ttl);
            match previous {
                Some(Upstream {
                    sticky: Some(ps),
                    clients: Some(c),
                    ..
                }) if ps.mode == s.mode => {
                    c.set_max_age(memory);
                    c.clone()
                }
                _ => Arc::new(Clients::new(memory)),
            }
        });
        Upstream {
            name: cfg.name.clone(),
            set: ArcSwap::from_pointee(BackendSet::new(backends, &cfg.name, cfg.sticky.as_ref())),
            balance: cfg.balance,
            hash_key: cfg.hash_key.clone(),
            sticky: cfg.sticky.clone(),
            discovery: cfg.discovery.clone(),
            tls: cfg.tls.clone().map(tokio_rustls::TlsConnector::from),
            connect_timeout: cfg.connect_timeout,
            request_timeout: cfg.request_timeout,
            retries: cfg.retries,
            health: cfg.health.clone(),
            static_backends: cfg.backends.clone(),
            max_idle_per_backend: cfg.max_idle_per_backend,
            cursor: AtomicUsize::new(0),
            clients,
            repins: previous.map_or_else(Default::default, |p| p.repins.clone()),
            panics: previous.map_or_else(Default::default, |p| p.panics.clone()),
            panicking: AtomicBool::new(false),
            generation: NEXT_GENERATION.fetch_add(1, Relaxed),
            resolved: match previous {
                Some(p) if same_discovery => p.resolved.clone(),
                _ => Arc::new(AtomicBool::new(cfg.discovery.is_none())),
            },
        }
    }

    /// The current backend set. Load it once per request and use it to the
    /// end (indices in a [`Decision`] refer to it).
    pub fn backends(&self) -> Arc<BackendSet> {
        self.set.load_full()
    }

    /// Replaces the backend set (discovery is the only writer).
    fn replace_backends(&self, backends: Vec<Arc<Backend>>) {
        self.set.store(Arc::new(BackendSet::new(
            backends,
            &self.name,
            self.sticky.as_ref(),
        )));
    }

    /// Chooses a backend of `set` for a request with affinity `aff`,
    /// skipping the indices in `tried`. `None`: no backend can take it
    /// (503).
    ///
    /// Passive ejection never empties an upstream by itself (SPEC 7, as
    /// nginx never marks a group's last server down and Envoy has a panic
    /// threshold): when every backend is ejected, and none is unhealthy by
    /// an active check or draining, they are chosen as if they were not,
    /// so one that hiccuped is used again as soon as it answers.
    pub fn choose(&self, set: &BackendSet, aff: &Affinity, tried: &[usize]) -> Option<Decision> {
        let normal = self.choose_by(set, aff, tried, Backend::fit);
        if normal.is_some() || !set.all_ejected() {
            if normal.is_some() && self.panicking.load(Relaxed) {
                self.panicking.store(false, Relaxed);
                tracing::info!(upstream = %self.name, "a backend is back: panic mode over");
            }
            return normal;
        }
        if !self.panicking.swap(true, Relaxed) {
            tracing::warn!(upstream = %self.name, "every backend is ejected: sending requests to them anyway (panic mode)");
        }
        self.panics.fetch_add(1, Relaxed);
        self.choose_by(set, aff, tried, Backend::fit_despite_ejection)
    }

    fn choose_by(
        &self,
        set: &BackendSet,
        aff: &Affinity,
        tried: &[usize],
        fit_of: fn(&Backend) -> Fit,
    ) -> Option<Decision> {
        let fit = |i: usize| {
            if tried.contains(&i) {
                Fit::No
            } else {
                fit_of(&set.backends[i])
            }
        };
        match (aff.hashed, aff.key) {
            (true, Some(key)) => {
                let ranking = || {
                    select::order(
                        set.len(),
                        Policy::Hash {
                            key,
                            members: &set.members,
                        },
                    )
                };
                if aff.pin == Pin::None {
                    select::hashed(ranking(), aff.last, fit)
                } else {
                    select::pinned(aff.pin, ranking, fit)
                }
            }
            _ => select::pinned(aff.pin, || self.order(set, aff.key), fit),
        }
    }

    /// Candidates for a request without a usable pin, by `balance`.
    fn order<'a>(&self, set: &'a BackendSet, key: Option<u64>) -> select::Candidates<'a> {
        let n = set.backends.len();
        let policy = match (self.balance, key) {
            (Balance::Hash, Some(key)) => Policy::Hash {
                key,
                members: &set.members,
            },
            (Balance::RoundRobin | Balance::Hash, _) => Policy::RoundRobin {
                schedule: &set.schedule,
                cursor: self.cursor.fetch_add(1, Relaxed),
            },
            (Balance::LeastConn, _) => Policy::LeastConn {
                loads: set
                    .backends
                    .iter()
                    .map(|b| (b.in_flight.load(Relaxed), b.weight))
                    .collect(),
                cursor: self.cursor.fetch_add(1, Relaxed),
            },
            (Balance::Random, _) => Policy::Random {
                loads: set
                    .backends
                    .iter()
                    .map(|b| b.in_flight.load(Relaxed))
                    .collect(),
                draws: [fast_random(n.max(1)), fast_random(n.max(1))],
            },
        };
        select::order(n, policy)
    }
}

/// Starts an upstream's background tasks: active health checks, DNS
/// discovery and the sticky-client sweeper. Each ends by itself once the
/// upstream (or the table) is no longer used.
pub fn spawn_background(up: &Arc<Upstream>) {
    health::spawn_active_checks(up);
    discovery::spawn(up);
    if let Some(c) = &up.clients {
        c.spawn_sweeper();
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

    /// A request without affinity, as the old `select` did it.
    fn pick(u: &Upstream, tried: &[usize]) -> Option<usize> {
        u.choose(&u.backends(), &Affinity::none(None), tried)
            .map(|d| d.index)
    }

    #[test]
    fn weighted_round_robin_follows_weights_and_interleaves() {
        let u = upstream(&[5, 1, 1], Balance::RoundRobin);
        let picks: Vec<usize> = (0..7).map(|_| pick(&u, &[]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 1);
        assert_ne!(picks[0..3], [0, 0, 0], "smooth WRR interleaves: {picks:?}");
    }

    #[test]
    fn round_robin_skips_tried_and_unavailable_backends() {
        let u = upstream(&[1, 1, 1], Balance::RoundRobin);
        u.backends().backends[1].draining.store(true, Relaxed);
        for _ in 0..10 {
            let i = pick(&u, &[0]).unwrap();
            assert_eq!(i, 2);
        }
        assert_eq!(pick(&u, &[0, 2]), None);
    }

    #[test]
    fn consecutive_failures_eject_a_backend() {
        let u = upstream(&[1, 1], Balance::RoundRobin);
        for _ in 0..3 {
            u.backends().backends[0].record_failure(&u.health);
        }
        assert!(u.backends().backends[0].is_ejected());
        for _ in 0..10 {
            assert_eq!(pick(&u, &[]), Some(1));
        }
    }

    #[test]
    fn when_every_backend_is_ejected_they_are_used_anyway_unless_marked_down() {
        let u = upstream(&[1, 1], Balance::RoundRobin);
        for b in &u.backends().backends {
            for _ in 0..3 {
                b.record_failure(&u.health);
            }
            assert!(b.is_ejected());
        }
        assert!(pick(&u, &[]).is_some(), "panic mode");
        assert_eq!(pick(&u, &[0]), Some(1), "tried ones are still skipped");
        assert_eq!(u.panics.load(Relaxed), 2);
        // An active check's verdict or a drain is the operator's: no panic.
        u.backends().backends[0].healthy.store(false, Relaxed);
        assert_eq!(pick(&u, &[]), None);
        u.backends().backends[0].healthy.store(true, Relaxed);
        u.backends().backends[1].draining.store(true, Relaxed);
        assert_eq!(pick(&u, &[]), None);
    }

    // Paused time: the second round of failures comes later by the clock.
    #[tokio::test(start_paused = true)]
    async fn failures_of_an_ejected_backend_do_not_eject_it_again() {
        let u = upstream(&[1], Balance::RoundRobin);
        let b = &u.backends().backends[0];
        for _ in 0..3 {
            b.record_failure(&u.health);
        }
        let until = b.ejected_until.load(Relaxed);
        tokio::time::advance(Duration::from_millis(5)).await;
        for _ in 0..3 {
            b.record_failure(&u.health);
        }
        assert_eq!(b.ejected_until.load(Relaxed), until);
    }

    #[test]
    fn success_resets_the_failure_count() {
        let u = upstream(&[1], Balance::RoundRobin);
        u.backends().backends[0].record_failure(&u.health);
        u.backends().backends[0].record_failure(&u.health);
        u.backends().backends[0].record_success();
        u.backends().backends[0].record_failure(&u.health);
        assert!(!u.backends().backends[0].is_ejected());
    }

    #[test]
    fn least_conn_prefers_the_idle_backend() {
        let u = upstream(&[1, 1, 1], Balance::LeastConn);
        u.backends().backends[0].in_flight.store(5, Relaxed);
        u.backends().backends[2].in_flight.store(2, Relaxed);
        for _ in 0..5 {
            assert_eq!(pick(&u, &[]), Some(1));
        }
    }

    #[test]
    fn random_two_choices_never_picks_the_busiest_of_two() {
        let u = upstream(&[1, 1], Balance::Random);
        u.backends().backends[0].in_flight.store(9, Relaxed);
        // Two random draws include the idle backend 3 times in 4.
        let ones = (0..2000).filter(|_| pick(&u, &[]) == Some(1)).count();
        assert!(ones > 1350, "{ones}");
    }

    #[test]
    fn reload_keeps_state_of_unchanged_backends() {
        let a = upstream(&[1, 1], Balance::RoundRobin);
        a.backends().backends[0].draining.store(true, Relaxed);
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
        assert!(Arc::ptr_eq(
            &a.backends().backends[0],
            &b.backends().backends[0]
        ));
        assert!(b.backends().backends[0].draining.load(Relaxed));
    }
}
