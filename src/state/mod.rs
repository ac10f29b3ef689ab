//! All state shared between replicas, behind one interface (SPEC 10):
//! sessions, refresh-token families, token revocations, learned sticky
//! mappings, single-use markers and login lockout counters.
//!
//! Two implementations: [`memory`] (one process, the default) and
//! [`redis`] (several replicas; standalone, Sentinel or Cluster). No other
//! module names Redis; the whole keyspace is documented in
//! `redis/keys.rs`.
//!
//! What stays per replica whatever the store: the revocation state that
//! requests read ([`crate::revocation::Revocation`], fed by the store's
//! event feed), the password-check queue and the sticky tables. The
//! single-use markers and lockout counters are checked in this process
//! first, so a replay on the same replica costs no round trip.
//!
//! Who owns what: [`Shared`] is built once per process (a reload changes
//! only `cache_ttl`) and owned by the `Gateway`; every request that needs
//! shared state goes through it.

pub mod memory;
pub mod redis;

use crate::clock::now_ms;
use crate::config::sessions::{Sessions as SessionsConfig, StoreKind};
use crate::revocation::{Event, Revocation, Revoke};
use crate::session::{Record, SessionKey, SessionView};
use crate::tokens::refresh::{NewFamily, Pair, Presented, Rotation};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use memory::lockout::{Policy as LockoutPolicy, MAX_USERNAME_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection, or a command timed out.
    #[error("session store unreachable")]
    Unavailable,
    /// The connection failed under a command (kept for the logs).
    #[error("session store unreachable: {0}")]
    Unreachable(#[source] ::redis::RedisError),
    #[error("session store error: {0}")]
    Backend(#[source] ::redis::RedisError),
    #[error("corrupt session record: {0}")]
    Corrupt(#[source] serde_json::Error),
}

/// What one session store does. Implementations: the memory store and the
/// Redis store; [`Shared`] dispatches with a plain match.
pub trait SessionStore: Send + Sync {
    fn create(
        &self,
        key: SessionKey,
        record: Record,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn get(
        &self,
        key: SessionKey,
    ) -> impl Future<Output = Result<Option<SessionView>, StoreError>> + Send;
    /// Slides the idle deadline: `last_seen` = `now_ms`, kept for `ttl`.
    fn touch(
        &self,
        key: SessionKey,
        now_ms: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn delete(
        &self,
        key: SessionKey,
    ) -> impl Future<Output = Result<Option<Arc<Record>>, StoreError>> + Send;
    fn list_user(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<Vec<(SessionKey, SessionView)>, StoreError>> + Send;
    /// Live sessions `provider` created from an ID token with `sid`.
    fn list_sid(
        &self,
        provider: &str,
        sid: &str,
    ) -> impl Future<Output = Result<Vec<(SessionKey, SessionView)>, StoreError>> + Send;
    /// Deletes every session of `user`; returns how many.
    fn delete_user(&self, user: &str) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// Records that the session's requests to `upstream` go to `backend`
    /// (sticky identity mode). A session that no longer exists stays gone.
    fn pin_backend(
        &self,
        key: SessionKey,
        upstream: &str,
        backend: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<memory::Memory>),
    Redis(Arc<redis::RedisStore>),
}

/// The shared state of this process (see the module doc).
#[derive(Clone)]
pub struct Shared {
    backend: Backend,
    revocation: Arc<Revocation>,
    /// Checked first, whatever the store (see the module doc).
    once: Arc<memory::once::OnceMarks>,
    lockout: Arc<memory::lockout::Throttle>,
}

/// A login attempt refused before its password check.
#[derive(Debug)]
pub enum LockoutRefusal {
    /// Locked out, or the budget is taken by checks in flight.
    RetryAfter(Duration),
    /// The shared counters cannot be reached: fail closed.
    Store(StoreError),
}

impl Shared {
    pub fn new(
        cfg: &SessionsConfig,
        metrics: Arc<crate::metrics::Metrics>,
        revocation: Arc<Revocation>,
    ) -> Shared {
        let backend = match &cfg.store {
            StoreKind::Memory => Backend::Memory(Arc::new(memory::Memory {
                sessions: memory::sessions::MemoryStore::start(cfg, metrics),
                refresh: memory::refresh::MemoryRefresh::start(),
            })),
            StoreKind::Redis(settings) => Backend::Redis(redis::RedisStore::start(
                settings.clone(),
                cfg,
                revocation.clone(),
            )),
        };
        Shared {
            backend,
            revocation,
            once: Default::default(),
            lockout: Default::default(),
        }
    }

    /// Why the store is not ready (for `/readyz`), or `None`.
    pub fn not_ready(&self) -> Option<String> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Redis(r) => (!r.is_reachable()).then(|| r.status()),
        }
    }

    /// Applies what a reload may change in a running store (the store
    /// form, addresses and key prefix need a restart). The memory store
    /// keeps no lookup cache: `cache_ttl` is for Redis.
    pub fn apply(&self, cfg: &SessionsConfig) {
        if let Backend::Redis(r) = &self.backend {
            r.set_cache_ttl(cfg.cache_ttl);
            r.set_absolute_timeout(cfg.absolute_timeout);
        }
    }

    /// Waits up to `limit` for a first connection to the store (Redis), so
    /// a gateway started next to a healthy Redis serves sessions from its
    /// first request. Start-up goes on either way.
    pub async fn wait_connected(&self, limit: Duration) {
        if let Backend::Redis(s) = &self.backend {
            let deadline = tokio::time::Instant::now() + limit;
            while !s.is_connected() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    // ---- sessions ----

    pub async fn create(
        &self,
        key: SessionKey,
        record: Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => m.sessions.create(key, record, ttl).await,
            Backend::Redis(s) => s.create(key, record, ttl).await,
        }
    }

    pub async fn get(&self, key: SessionKey) -> Result<Option<SessionView>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => m.sessions.get(key).await,
            Backend::Redis(s) => s.get(key).await,
        }
    }

    pub async fn touch(
        &self,
        key: SessionKey,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => m.sessions.touch(key, now_ms, ttl).await,
            Backend::Redis(s) => s.touch(key, now_ms, ttl).await,
        }
    }

    /// Ends a session: deleted from the store, ended on this replica at
    /// once (and, with Redis, on every other through the feed).
    pub async fn delete(&self, key: SessionKey) -> Result<Option<Arc<Record>>, StoreError> {
        let r = match &self.backend {
            Backend::Memory(m) => m.sessions.delete(key).await,
            Backend::Redis(s) => s.delete(key).await,
        }?;
        if r.is_some() {
            self.revocation.apply(&Event::Session(key));
        }
        Ok(r)
    }

    pub async fn list_user(
        &self,
        user: &str,
    ) -> Result<Vec<(SessionKey, SessionView)>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => m.sessions.list_user(user).await,
            Backend::Redis(s) => s.list_user(user).await,
        }
    }

    /// Live sessions OIDC provider `provider` created from an ID token
    /// whose `sid` was `sid` (back-channel logout, SPEC 15).
    pub async fn sessions_by_sid(
        &self,
        provider: &str,
        sid: &str,
    ) -> Result<Vec<(SessionKey, SessionView)>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => m.sessions.list_sid(provider, sid).await,
            Backend::Redis(s) => s.list_sid(provider, sid).await,
        }
    }

    /// Live sessions OIDC provider `provider` created for subject `sub`.
    /// The session's user is the ID token's `sub`, so this is the user
    /// index, narrowed to that provider's logins.
    pub async fn sessions_by_sub(
        &self,
        provider: &str,
        sub: &str,
    ) -> Result<Vec<(SessionKey, SessionView)>, StoreError> {
        let mut list = self.list_user(sub).await?;
        list.retain(|(_, v)| crate::session::oidc_provider(&v.record) == Some(provider));
        Ok(list)
    }

    /// Ends every session of `user`, here and on every replica; returns
    /// how many there were.
    pub async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let n = match &self.backend {
            Backend::Memory(m) => m.sessions.delete_user(user).await,
            Backend::Redis(s) => s.delete_user(user).await,
        }?;
        self.revocation.apply(&Event::User(user.to_string()));
        Ok(n)
    }

    pub async fn pin_backend(
        &self,
        key: SessionKey,
        upstream: &str,
        backend: &str,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => m.sessions.pin_backend(key, upstream, backend).await,
            Backend::Redis(s) => s.pin_backend(key, upstream, backend).await,
        }
    }

    /// Looks up a live session by its key (from the cookie's id), sliding
    /// its idle deadline (writes coalesced to one per 1% of
    /// `idle_timeout`). `Ok(None)`: no such live session (unknown, forged,
    /// expired).
    pub async fn authenticate(
        &self,
        key: SessionKey,
        cfg: &SessionsConfig,
    ) -> Result<Option<(SessionKey, SessionView)>, StoreError> {
        let Some(view) = self.get(key).await? else {
            return Ok(None);
        };
        let now = now_ms();
        if !view.is_live(cfg, now) {
            return Ok(None);
        }
        let slack = (cfg.idle_timeout.as_millis() as u64 / 100).max(1);
        if now.saturating_sub(view.last_seen_ms) >= slack {
            let ttl = crate::session::ttl(&view.record, cfg, now);
            self.touch(key, now, ttl).await?;
        }
        Ok(Some((key, view)))
    }

    // ---- refresh families ----

    pub async fn family_create(&self, f: &NewFamily<'_>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.refresh.create(f);
                Ok(())
            }
            Backend::Redis(r) => redis::refresh::create(r, f).await,
        }
    }

    pub async fn family_rotate(
        &self,
        t: &Presented,
        now: u64,
        grace_ms: u64,
    ) -> Result<Rotation, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.refresh.rotate(t, now, grace_ms)),
            Backend::Redis(r) => redis::refresh::rotate(r, t, now, grace_ms).await,
        }
    }

    pub async fn family_complete(
        &self,
        old: &Presented,
        next: [u8; 32],
        expires_ms: u64,
        pair: &Pair,
        grace_ms: u64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let pair = (grace_ms > 0).then_some(pair);
        match &self.backend {
            Backend::Memory(m) => {
                m.refresh.complete(old, next, expires_ms, pair, now);
                Ok(())
            }
            Backend::Redis(r) => {
                redis::refresh::complete(r, old, next, expires_ms, pair, now, grace_ms).await
            }
        }
    }

    pub async fn family_revoke(&self, family: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.refresh.revoke_family(family);
                Ok(())
            }
            Backend::Redis(r) => redis::refresh::revoke_family(r, family).await,
        }
    }

    /// Revokes every family of `user`; returns their ids.
    pub async fn families_revoke_user(&self, user: &str) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.refresh.revoke_user(user)),
            Backend::Redis(r) => redis::refresh::revoke_user(r, user).await,
        }
    }

    // ---- token revocations ----

    /// Applies `r` on this replica, and with Redis also persists and
    /// announces it, so every replica applies it within moments (and one
    /// that was disconnected reads it back when it reconnects).
    pub async fn revoke(&self, r: Revoke) -> Result<(), StoreError> {
        let until = r.until();
        let event = Event::Token(r);
        self.revocation.apply(&event);
        if let Backend::Redis(s) = &self.backend {
            redis::refresh::publish_revocation(s, &event.encode(), until).await?;
        }
        Ok(())
    }

    // ---- learned sticky mappings ----

    /// Whether learned mappings travel between replicas (Redis only; each
    /// replica also keeps its own table).
    pub fn shares_learned(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// A mapping another replica learned: the backend that issued app
    /// cookie `value`. Errors read as "unknown".
    pub async fn learned_get(&self, upstream: &str, value: &str) -> Option<String> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Redis(r) => r.learned_get(upstream, value).await,
        }
    }

    /// Shares a learned mapping with the other replicas, off the request
    /// path (they learn it a moment later).
    pub fn learned_put(&self, upstream: &str, value: String, backend: String, ttl: Duration) {
        if let Backend::Redis(r) = &self.backend {
            let (r, upstream) = (r.clone(), upstream.to_string());
            tokio::spawn(async move { r.learned_put(&upstream, &value, &backend, ttl).await });
        }
    }

    // ---- single-use markers ----

    /// Marks `value` of `kind` (e.g. `oidc-state`) used until `until`
    /// (unix seconds); `false` when it already was, here or on any replica.
    pub async fn first_use(
        &self,
        kind: &str,
        value: &str,
        until: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let digest = crate::crypto::sha256(format!("{kind}\0{value}").as_bytes());
        if !self.once.first_use(digest, until, now) {
            return Ok(false);
        }
        match &self.backend {
            Backend::Memory(_) => Ok(true),
            Backend::Redis(r) => {
                let ttl = Duration::from_secs(until.saturating_sub(now).max(1));
                r.set_once(kind, &digest, ttl).await
            }
        }
    }

    // ---- login lockout ----

    /// Reserves one password check for `user` from `ip` (SPEC 5, 13, 16):
    /// refused when locked out, or when the failures so far plus the checks
    /// in flight fill `max_failures` — counted across every replica with
    /// Redis. Settle it with [`Attempt::succeeded`] or [`Attempt::failed`].
    pub async fn lockout_begin(
        &self,
        user: &str,
        ip: IpAddr,
        policy: LockoutPolicy,
    ) -> Result<Attempt<'_>, LockoutRefusal> {
        match &self.backend {
            Backend::Memory(_) => self
                .lockout
                .begin(user, ip, policy)
                .map(|a| Attempt(AttemptInner::Memory(a)))
                .map_err(LockoutRefusal::RetryAfter),
            Backend::Redis(r) => {
                let a = redis::lockout::begin(r, user, ip, policy).await?;
                Ok(Attempt(AttemptInner::Redis(a)))
            }
        }
    }
}

/// A reserved password check. Dropped unsettled (the client went away
/// mid-check), it counts as a failure: the check ran.
#[must_use = "an attempt must be settled"]
pub struct Attempt<'a>(AttemptInner<'a>);

enum AttemptInner<'a> {
    Memory(memory::lockout::Attempt<'a>),
    Redis(redis::lockout::Attempt),
}

impl Attempt<'_> {
    /// The password was right.
    pub async fn succeeded(self) {
        match self.0 {
            AttemptInner::Memory(a) => a.succeeded(),
            AttemptInner::Redis(a) => a.settle(false).await,
        }
    }

    /// The password was wrong (or the user unknown or disabled).
    pub async fn failed(self) {
        match self.0 {
            AttemptInner::Memory(a) => a.failed(),
            AttemptInner::Redis(a) => a.settle(true).await,
        }
    }
}
