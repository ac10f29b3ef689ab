//! What keeps a long-lived connection allowed (SPEC 6): a WebSocket tunnel
//! or a long streamed response lives only as long as the session or token
//! it was opened with. This module says whether that credential still
//! holds, and wakes exactly the connections a revocation ends.
//!
//! Nothing polls. A connection registers its credential's keys (session,
//! user, `jti`, refresh family) in [`Watchers`] and arms one timer for its
//! credential's own deadline (token `exp`, session caps). A revocation on
//! this replica — logout, admin revoke, revoke-all, a `jti` or family
//! denied, or any of these arriving from another replica through the shared
//! store — fires the keys it names; only the connections registered under
//! them wake, look again with [`Liveness::holds_now`] (memory only), and
//! close if their credential is gone. So a silent WebSocket or a silent
//! HTTP/2 stream closes within moments of the revocation reaching the
//! replica, and the cost is nothing while nothing is revoked.
//!
//! Shared state: one DashMap from key to the signals registered under it.
//! Written when a watched connection opens or closes (rare: long-lived
//! connections only) and when something is revoked; the request path never
//! touches it.

use crate::auth::Identity;
use crate::gateway::Gateway;
use crate::session::SessionKey;
use dashmap::DashMap;
use futures_util::task::AtomicWaker;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::Context;

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Session(SessionKey),
    /// Every session of a user, or every token of a subject (revoke-all).
    User(Box<str>),
    Jti(Box<str>),
    /// A refresh family (`sid` of the gateway's access tokens).
    Sid(Box<str>),
}

/// One watched connection's doorbell: set and woken by a revocation that
/// names one of its keys. It starts rung, so the first look happens at
/// registration: a revocation between authentication and registration is
/// not missed.
pub struct Signal {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl Default for Signal {
    fn default() -> Signal {
        Signal {
            fired: AtomicBool::new(true),
            waker: AtomicWaker::new(),
        }
    }
}

impl Signal {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether it rang since the last call; registers `cx` to be woken by
    /// the next ring.
    pub fn poll_fired(&self, cx: &mut Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.fired.swap(false, Ordering::AcqRel)
    }

    /// Resolves at the next ring.
    pub async fn fired(&self) {
        std::future::poll_fn(|cx| {
            if self.poll_fired(cx) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }
}

/// The keys long-lived connections wait on. Per key, the signals by
/// address, so a connection leaves in O(1) however many share its user.
#[derive(Default)]
pub struct Watchers {
    by_key: DashMap<Key, std::collections::HashMap<usize, Weak<Signal>>>,
}

impl Watchers {
    /// Registers a connection under `keys`; it stays registered until the
    /// returned [`Registration`] drops.
    pub fn register(self: &Arc<Self>, keys: Vec<Key>) -> Registration {
        let signal = Arc::new(Signal::default());
        let id = Arc::as_ptr(&signal) as usize;
        for k in &keys {
            self.by_key
                .entry(k.clone())
                .or_default()
                .insert(id, Arc::downgrade(&signal));
        }
        Registration {
            watchers: Arc::downgrade(self),
            keys,
            signal,
        }
    }

    /// Wakes every connection registered under `key`.
    pub fn fire(&self, key: &Key) {
        if let Some(list) = self.by_key.get(key) {
            for s in list.values().filter_map(Weak::upgrade) {
                s.fire();
            }
        }
    }

    /// Wakes every watched connection, to look again (e.g. after the feed
    /// between replicas was down: what ended meanwhile was not announced).
    pub fn fire_all(&self) {
        for list in self.by_key.iter() {
            for s in list.values().filter_map(Weak::upgrade) {
                s.fire();
            }
        }
    }

    /// No key has a connection waiting (registrations leave none behind).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// A connection's place in [`Watchers`]; leaves it when dropped.
pub struct Registration {
    watchers: Weak<Watchers>,
    keys: Vec<Key>,
    signal: Arc<Signal>,
}

impl Registration {
    pub fn signal(&self) -> &Signal {
        &self.signal
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(w) = self.watchers.upgrade() else {
            return;
        };
        let me = Arc::as_ptr(&self.signal) as usize;
        for k in &self.keys {
            w.by_key.remove_if_mut(k, |_, list| {
                list.remove(&me);
                list.is_empty()
            });
        }
    }
}

/// The credential a long-lived connection was opened with.
pub enum Liveness {
    Session {
        key: SessionKey,
        user: String,
    },
    Token {
        sub: String,
        jti: Option<String>,
        sid: Option<String>,
        iat: Option<u64>,
        exp: Option<u64>,
        /// The `[[jwt]]` name that verified it (revoke-all leeway).
        issuer: Option<Arc<str>>,
    },
}

impl Liveness {
    /// The credential of a request: its session, or else its token.
    pub fn of(session: Option<SessionKey>, id: Option<&Identity>) -> Option<Liveness> {
        let id = id?;
        if let Some(key) = session {
            return Some(Liveness::Session {
                key,
                user: id.sub.clone(),
            });
        }
        let claims = id.claims.as_ref();
        let text = |k: &str| {
            claims
                .and_then(|c| c.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        Some(Liveness::Token {
            sub: id.sub.clone(),
            jti: text("jti"),
            sid: text("sid"),
            iat: claims.and_then(|c| c.get("iat")).and_then(|v| v.as_u64()),
            exp: id.expires_at,
            issuer: id.issuer.clone(),
        })
    }

    /// The revocation keys that may end it.
    pub fn keys(&self) -> Vec<Key> {
        match self {
            Liveness::Session { key, user } => {
                vec![Key::Session(*key), Key::User(user.as_str().into())]
            }
            Liveness::Token { sub, jti, sid, .. } => {
                let mut keys = vec![Key::User(sub.as_str().into())];
                keys.extend(jti.as_deref().map(|j| Key::Jti(j.into())));
                keys.extend(sid.as_deref().map(|s| Key::Sid(s.into())));
                keys
            }
        }
    }

    /// The token's own end (unix ms); sessions have their caps elsewhere.
    pub fn token_deadline_ms(&self) -> Option<u64> {
        match self {
            Liveness::Token { exp, .. } => exp.map(|e| e.saturating_mul(1000)),
            Liveness::Session { .. } => None,
        }
    }

    /// Without a store round trip: what this replica knows has ended.
    pub fn holds_now(&self, gw: &Gateway, opened_ms: u64) -> bool {
        match self {
            Liveness::Session { key, user } => {
                !gw.revocation.ended().has_ended(*key, user, opened_ms)
            }
            Liveness::Token {
                sub,
                jti,
                sid,
                iat,
                exp,
                issuer,
            } => {
                let now = crate::clock::unix_now();
                let facts = super::TokenFacts {
                    sub,
                    jti: jti.as_deref(),
                    sid: sid.as_deref(),
                    iat: *iat,
                };
                let leeway = crate::auth::jwt::revoke_leeway_of(
                    &gw.snapshot().config,
                    issuer.as_deref().unwrap_or(""),
                );
                exp.is_none_or(|e| now < e)
                    && !gw.revocation.tokens().is_revoked(facts, now, leeway)
            }
        }
    }

    /// With the store: a session still live by its own deadlines (idle and
    /// absolute), `Some(until_ms)` when it is, with when to look next.
    /// Tokens answer from memory.
    pub async fn holds_until(&self, gw: &Gateway, opened_ms: u64) -> Option<Option<u64>> {
        if !self.holds_now(gw, opened_ms) {
            return None;
        }
        match self {
            Liveness::Session { key, .. } => match gw.store.get(*key).await {
                Ok(Some(v)) => {
                    let cfg = &gw.snapshot().config.sessions;
                    let now = crate::clock::now_ms();
                    v.is_live(cfg, now).then(|| Some(v.expires_at_ms(cfg)))
                }
                Ok(None) => None,
                // An unreachable store says nothing about this session:
                // look again in a while.
                Err(_) => Some(Some(crate::clock::now_ms() + STORE_RETRY_MS)),
            },
            Liveness::Token { .. } => Some(self.token_deadline_ms()),
        }
    }
}

/// When the session store cannot answer, a tunnel looks again this much later.
const STORE_RETRY_MS: u64 = 5_000;

/// A long response's watch (see [`crate::body::StreamCheck`]): its
/// credential's deadline (the token's `exp`, or the session's absolute cap:
/// a long download is activity, so not its idle deadline) and, once the
/// stream proves long-lived, a registration, so a revocation wakes the body
/// even while the backend sends nothing.
///
/// Registration waits until the backend first keeps the client waiting or
/// 1 MiB has passed: most responses without a length (chunked pages) end
/// before either, and cost a clock read per frame and nothing else.
pub struct StreamWatch {
    gw: Arc<Gateway>,
    liveness: Liveness,
    opened_ms: u64,
    deadline_ms: Option<u64>,
    bytes: u64,
    armed: Option<Armed>,
}

struct Armed {
    registration: Registration,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

/// Bytes after which a stream registers even if data keeps flowing.
const ARM_AFTER_BYTES: u64 = 1 << 20;

impl StreamWatch {
    /// `opened_ms`: when the request was authenticated (unix ms); what
    /// ended after it counts.
    pub fn new(
        gw: Arc<Gateway>,
        liveness: Liveness,
        absolute_cap_ms: Option<u64>,
        opened_ms: u64,
    ) -> StreamWatch {
        let deadline_ms = match &liveness {
            Liveness::Session { .. } => absolute_cap_ms,
            Liveness::Token { .. } => liveness.token_deadline_ms(),
        };
        StreamWatch {
            gw,
            liveness,
            opened_ms,
            deadline_ms,
            bytes: 0,
            armed: None,
        }
    }

    fn arm(&mut self) -> &mut Armed {
        let gw = &self.gw;
        let keys = self.liveness.keys();
        let deadline_ms = self.deadline_ms;
        self.armed.get_or_insert_with(|| Armed {
            registration: gw.revocation.watchers().register(keys),
            deadline: deadline_ms.map(|d| Box::pin(tokio::time::sleep_until(instant_at(d)))),
        })
    }
}

impl crate::body::StreamCheck for StreamWatch {
    fn poll_valid(&mut self, cx: &mut Context<'_>, idle: bool, frame_bytes: u64) -> bool {
        self.bytes = self.bytes.saturating_add(frame_bytes);
        if self.armed.is_none() {
            if self
                .deadline_ms
                .is_some_and(|d| crate::clock::now_ms() >= d)
            {
                return false;
            }
            if !idle && self.bytes < ARM_AFTER_BYTES {
                return true;
            }
        }
        let armed = self.arm();
        if let Some(d) = &mut armed.deadline {
            if d.as_mut().poll(cx).is_ready() {
                return false;
            }
        }
        if armed.registration.signal().poll_fired(cx) {
            return self.liveness.holds_now(&self.gw, self.opened_ms);
        }
        true
    }
}

/// The tokio instant at unix time `ms` (a deadline in the past is now).
pub fn instant_at(ms: u64) -> crate::clock::Instant {
    let now = crate::clock::now_ms();
    crate::clock::Instant::now() + std::time::Duration::from_millis(ms.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Wake, Waker};

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_revocation_wakes_exactly_the_connections_registered_under_its_key() {
        let w = Arc::new(Watchers::default());
        let a = w.register(vec![Key::Jti("a".into()), Key::User("alice".into())]);
        let b = w.register(vec![Key::Jti("b".into()), Key::User("bob".into())]);
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        // A new registration starts rung: its first look happens at once.
        assert!(a.signal().poll_fired(&mut cx));
        assert!(b.signal().poll_fired(&mut cx));
        assert!(!a.signal().poll_fired(&mut cx));
        assert!(!b.signal().poll_fired(&mut cx));
        w.fire(&Key::Jti("a".into()));
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "one wake");
        assert!(a.signal().poll_fired(&mut cx));
        assert!(!a.signal().poll_fired(&mut cx), "a ring is consumed");
        assert!(!b.signal().poll_fired(&mut cx));
        w.fire(&Key::User("bob".into()));
        assert!(b.signal().poll_fired(&mut cx));
        drop(a);
        drop(b);
        assert!(w.is_empty(), "registrations leave no keys behind");
    }
}
