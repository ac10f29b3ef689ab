//! Affinity: the signed affinity cookie, the gateway's memory of sticky
//! clients (learned app-cookie mappings included), and reading a request's
//! affinity before selection and writing it back after (SPEC 7).
//!
//! Affinity cookie (RFC 6265 cookie-value, base64url without padding):
//!
//! ```text
//! version (1) | backend tag (8) | client nonce (6) | MAC (12)
//! backend tag = HMAC(k, "tag" 0 upstream 0 host:port)[..8]
//! MAC         = HMAC(k, "mac" 0 upstream 0 version tag nonce)[..12]
//! k           = Mac::derive(server secret, "affinity")
//! ```
//!
//! The tag names a backend without revealing its address and depends only
//! on the secret, the upstream name and the address, so a cookie survives
//! reloads that keep its backend and every replica with the same secret
//! reads it alike. A value whose MAC does not verify is forged or damaged
//! and treated as absent. A genuine cookie whose tag matches no backend
//! names one that was removed: the client is moved and re-pinned. The
//! nonce tells clients apart for the sticky-client count; it carries no
//! authority.
//!
//! Client memory ([`Clients`]): who writes, who reads, why this shape.
//! Request tasks write one entry per sticky client after its response
//! headers arrive (skipped when the same entry was written within the last
//! second); request tasks read it before selection (identity and learn
//! modes); `/admin/upstreams` counts it. It is a `DashMap` (sharded locks,
//! each held for one insert or lookup, never across an await), keyed by a
//! per-process keyed hash of the client's key so that an attacker cannot
//! aim collisions. It is bounded (entries beyond [`MAX_CLIENTS`] are not
//! recorded) and swept by a background task that holds only a weak
//! reference and ends when the table is dropped. A reload that keeps the
//! upstream and its sticky mode keeps the table, so learned mappings and
//! counts survive it.
//!
//! Shared with the rest of the gateway:
//! - Learned mappings, with the Redis store: [`Outcome::learned`] is written
//!   through to Redis by the proxy, and a local miss ([`learn_miss`]) reads
//!   through once ([`Affinity::pin_learned`]).
//! - Identity mode with a server-side session: the session layer passes the
//!   backend recorded in the session as `session_pin` to [`read`], and
//!   stores [`Outcome::record`] back into the session after the response.

use super::hash::stable_hash;
use super::select::{Decision, Pin};
use super::{BackendSet, Upstream};
use crate::auth::Identity;
use crate::config::{HashKey, StickyMode};
use crate::crypto::Mac;
use base64::Engine;
use dashmap::DashMap;
use http::header::{self, HeaderMap, HeaderValue};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Request header telling the backend that this sticky client was moved to
/// it from another backend and may need its state rebuilt.
pub static X_GATEHOUSE_REHOMED: header::HeaderName =
    header::HeaderName::from_static("x-gatehouse-rehomed");

/// A sticky client counts as live in `/admin/upstreams` while it was seen
/// within this window (the count a preStop hook waits on).
pub const LIVE_WINDOW: Duration = Duration::from_secs(300);
/// At most this many clients are remembered per upstream (about 30 bytes
/// each); beyond it new clients are still served but not remembered.
pub const MAX_CLIENTS: usize = 262_144;
/// How often remembered clients are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

const VERSION: u8 = 1;
const TAG_LEN: usize = 8;
const NONCE_LEN: usize = 6;
const MAC_LEN: usize = 12;
const TOKEN_LEN: usize = 1 + TAG_LEN + NONCE_LEN + MAC_LEN;

/// A backend's opaque name in affinity cookies.
pub type BackendTag = [u8; TAG_LEN];

/// The affinity tag of backend `addr` of upstream `upstream`.
pub fn backend_tag(key: &Mac, upstream: &str, addr: &str) -> BackendTag {
    let mac = key.sign_parts(&[b"tag\0", upstream.as_bytes(), b"\0", addr.as_bytes()]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&mac[..TAG_LEN]);
    tag
}

/// A verified affinity cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub backend: BackendTag,
    pub nonce: [u8; NONCE_LEN],
}

fn token_mac(key: &Mac, upstream: &str, body: &[u8]) -> [u8; 32] {
    key.sign_parts(&[b"mac\0", upstream.as_bytes(), b"\0", body])
}

impl Token {
    pub fn new(backend: BackendTag) -> Token {
        Token {
            backend,
            nonce: crate::crypto::random_bytes::<NONCE_LEN>(),
        }
    }

    /// The cookie value.
    pub fn encode(&self, key: &Mac, upstream: &str) -> String {
        let mut raw = [0u8; TOKEN_LEN];
        raw[0] = VERSION;
        raw[1..1 + TAG_LEN].copy_from_slice(&self.backend);
        raw[1 + TAG_LEN..1 + TAG_LEN + NONCE_LEN].copy_from_slice(&self.nonce);
        let mac = token_mac(key, upstream, &raw[..1 + TAG_LEN + NONCE_LEN]);
        raw[1 + TAG_LEN + NONCE_LEN..].copy_from_slice(&mac[..MAC_LEN]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// Verifies a cookie value; `None` for anything not issued with `key`
    /// for `upstream`.
    pub fn decode(value: &str, key: &Mac, upstream: &str) -> Option<Token> {
        if value.len() > 64 {
            return None;
        }
        // Decoded on the stack: 64 base64 characters are at most 48 bytes.
        let mut buf = [0u8; 48];
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(value, &mut buf)
            .ok()?;
        let raw = &buf[..n];
        if raw.len() != TOKEN_LEN || raw[0] != VERSION {
            return None;
        }
        let (body, mac) = raw.split_at(1 + TAG_LEN + NONCE_LEN);
        let want = token_mac(key, upstream, body);
        if !crate::crypto::ct_eq(&want[..MAC_LEN], mac) {
            return None;
        }
        let mut t = Token {
            backend: [0; TAG_LEN],
            nonce: [0; NONCE_LEN],
        };
        t.backend.copy_from_slice(&body[1..1 + TAG_LEN]);
        t.nonce.copy_from_slice(&body[1 + TAG_LEN..]);
        Some(t)
    }
}

/// The last affinity cookie verified on one client connection, so that a
/// keep-alive client sending the same cookie on every request costs one
/// HMAC per connection instead of one per request. Owned by the
/// connection ([`crate::server::ConnInfo`]); read and written only by
/// [`read`]. Only cookies that verified are remembered, keyed by their
/// exact bytes and the [`Upstream::generation`] they verified against:
/// a hit answers exactly what verifying again would (the token carries
/// no expiry), and a reload's new upstream never matches.
#[derive(Default)]
pub struct TokenMemo(std::sync::Mutex<Option<Memo>>);

/// A copy starts empty: it is a cache, and remembers nothing for the copy.
impl Clone for TokenMemo {
    fn clone(&self) -> Self {
        TokenMemo::default()
    }
}

impl std::fmt::Debug for TokenMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenMemo")
    }
}

struct Memo {
    generation: u64,
    len: u8,
    value: [u8; 64],
    token: Token,
}

impl TokenMemo {
    /// [`Token::decode`] for upstream `name` of `generation`, remembered.
    fn decode(&self, value: &str, key: &Mac, name: &str, generation: u64) -> Option<Token> {
        // One connection's lock: HTTP/2 streams of that connection are the
        // only contenders, and nothing waits while holding it.
        let Ok(mut memo) = self.0.lock() else {
            return Token::decode(value, key, name);
        };
        if let Some(m) = memo.as_ref() {
            if m.generation == generation && &m.value[..usize::from(m.len)] == value.as_bytes() {
                return Some(m.token);
            }
        }
        let token = Token::decode(value, key, name)?;
        // decode refuses values over 64 bytes.
        let mut bytes = [0u8; 64];
        bytes[..value.len()].copy_from_slice(value.as_bytes());
        *memo = Some(Memo {
            generation,
            len: value.len() as u8,
            value: bytes,
            token,
        });
        Some(token)
    }
}

/// `Set-Cookie` for an affinity cookie (RFC 6265 section 4.1): host-only,
/// whole site, not readable by scripts, sent on top-level navigation from
/// other sites (Lax) so a link into the app keeps its backend.
///
/// A zero `ttl` makes a browser-session cookie (no `Max-Age`); otherwise
/// at least one second, since `Max-Age=0` would remove it.
pub fn affinity_cookie(name: &str, value: &str, ttl: Duration, secure: bool) -> HeaderValue {
    let mut c = crate::cookies::build(name, value, secure)
        .path("/")
        .same_site(cookie::SameSite::Lax);
    if !ttl.is_zero() {
        c = c.max_age(crate::cookies::max_age(ttl.as_secs().max(1)));
    }
    HeaderValue::from_str(&c.to_string())
        .expect("cookie names and base64url values are valid header text")
}

/// Values of cookie `name` in the request's `Cookie` header(s), in order.
pub fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    crate::cookies::values(headers, name)
}

/// Removes cookie `name` from the request.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    crate::cookies::remove(headers, name)
}

/// What a backend's `Set-Cookie` does to cookie `name`: `Some(Some(v))`
/// sets value `v`, `Some(None)` deletes it, `None` is about another cookie.
pub fn set_cookie_of<'a>(set_cookie: &'a str, name: &str) -> Option<Option<&'a str>> {
    let mut parts = set_cookie.split(';');
    let (k, v) = parts.next()?.split_once('=')?;
    if k.trim() != name {
        return None;
    }
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    let deleted = v.is_empty()
        || parts.any(|a| {
            let (ak, av) = a.split_once('=').unwrap_or((a, ""));
            let ak = ak.trim();
            (ak.eq_ignore_ascii_case("max-age") && av.trim().parse::<i64>().is_ok_and(|n| n <= 0))
                || (ak.eq_ignore_ascii_case("expires") && av.contains("1970"))
        });
    Some(if deleted { None } else { Some(v) })
}

/// The client's address: the peer, or when the peer is a trusted proxy the
/// nearest address in `X-Forwarded-For` that is not one of ours.
pub fn client_ip(peer: IpAddr, trusted: &[ipnet::IpNet], headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        // By name: selection does not depend on the proxy module.
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

/// The stable placement hash of a caller: its `sub`, or its address when
/// anonymous (until sessions give anonymous callers an id).
pub fn identity_key(identity: Option<&Identity>, ip: IpAddr) -> u64 {
    match identity {
        Some(id) => stable_hash(format!("sub:{}", id.sub).as_bytes()),
        None => stable_hash(format!("ip:{ip}").as_bytes()),
    }
}

/// The stable hash of `hash_key` for this request; `None` when the request
/// does not carry it (it is then balanced without a key).
pub fn hash_key(
    key: &HashKey,
    parts: &http::request::Parts,
    identity: Option<&Identity>,
    ip: IpAddr,
) -> Option<u64> {
    match key {
        HashKey::Identity => Some(identity_key(identity, ip)),
        HashKey::ClientIp => Some(stable_hash(format!("ip:{ip}").as_bytes())),
        HashKey::Header(name) => {
            let v = parts.headers.get(name)?;
            Some(stable_hash(v.as_bytes()))
        }
        HashKey::Cookie(name) => {
            let v = cookie_values(&parts.headers, name).next()?;
            Some(stable_hash(v.as_bytes()))
        }
        HashKey::Query(name) => {
            let q = parts.uri.query()?;
            let v = q.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == name).then_some(v)
            })?;
            Some(stable_hash(v.as_bytes()))
        }
    }
}

/// One remembered client: which backend (its stable id) and when.
#[derive(Debug, Clone, Copy)]
struct Seen {
    backend: u64,
    /// Seconds since the table's epoch.
    at: u32,
}

/// The gateway's memory of sticky clients of one upstream: where each was
/// last sent (identity and cookie modes), or which backend issued an app
/// cookie value (learn mode). See the module doc for the sharing rules.
pub struct Clients {
    map: DashMap<u64, Seen>,
    len: AtomicUsize,
    hasher: std::collections::hash_map::RandomState,
    epoch: crate::clock::Instant,
    /// Entries unused for longer than this are forgotten (seconds).
    max_age: AtomicU32,
    full_warned: AtomicBool,
    sweeper: AtomicBool,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("len", &self.len.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Clients {
    pub fn new(max_age: Duration) -> Clients {
        Clients {
            map: DashMap::new(),
            len: AtomicUsize::new(0),
            hasher: Default::default(),
            epoch: crate::clock::Instant::now(),
            max_age: AtomicU32::new(secs(max_age)),
            full_warned: AtomicBool::new(false),
            sweeper: AtomicBool::new(false),
        }
    }

    pub fn set_max_age(&self, max_age: Duration) {
        self.max_age.store(secs(max_age), Relaxed);
    }

    fn now(&self) -> u32 {
        secs(self.epoch.elapsed())
    }

    /// The table key of a client key (bytes of a cookie value, a `sub`...).
    pub fn key(&self, client: &[u8]) -> u64 {
        self.hasher.hash_one(client)
    }

    /// The backend id `key` was last recorded with, unless expired.
    pub fn get(&self, key: u64) -> Option<u64> {
        self.get_at(key, self.now())
    }

    fn get_at(&self, key: u64, now: u32) -> Option<u64> {
        let e = *self.map.get(&key)?;
        (now.saturating_sub(e.at) <= self.max_age.load(Relaxed)).then_some(e.backend)
    }

    /// Records that `key` is with `backend` now.
    pub fn touch(&self, key: u64, backend: u64) {
        self.touch_at(key, backend, self.now());
    }

    fn touch_at(&self, key: u64, backend: u64, now: u32) {
        if let Some(e) = self.map.get(&key) {
            if e.backend == backend && now.saturating_sub(e.at) < 1 {
                return;
            }
        }
        if self.len.load(Relaxed) >= MAX_CLIENTS && !self.map.contains_key(&key) {
            if !self.full_warned.swap(true, Relaxed) {
                tracing::warn!(
                    max = MAX_CLIENTS,
                    "sticky client table full: new clients are served but not remembered until the sweep frees room"
                );
            }
            return;
        }
        if self.map.insert(key, Seen { backend, at: now }).is_none() {
            self.len.fetch_add(1, Relaxed);
        }
    }

    pub fn forget(&self, key: u64) {
        if self.map.remove(&key).is_some() {
            self.len.fetch_sub(1, Relaxed);
        }
    }

    /// Drops expired entries.
    pub fn sweep(&self) {
        self.sweep_at(self.now());
    }

    fn sweep_at(&self, now: u32) {
        let max_age = self.max_age.load(Relaxed);
        let mut removed = 0;
        self.map.retain(|_, e| {
            let keep = now.saturating_sub(e.at) <= max_age;
            removed += usize::from(!keep);
            keep
        });
        self.len.fetch_sub(removed, Relaxed);
        if removed > 0 {
            self.full_warned.store(false, Relaxed);
        }
    }

    /// Live clients per backend id: seen within [`LIVE_WINDOW`] and not
    /// expired.
    pub fn live_counts(&self) -> std::collections::HashMap<u64, usize> {
        let now = self.now();
        let window = secs(LIVE_WINDOW).min(self.max_age.load(Relaxed));
        let mut out = std::collections::HashMap::new();
        for e in self.map.iter() {
            if now.saturating_sub(e.at) <= window {
                *out.entry(e.backend).or_insert(0) += 1;
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts the sweeper once per table (a reload keeps the table and must
    /// not start a second one). It ends when the table is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        if self.sweeper.swap(true, Relaxed) {
            return;
        }
        let weak: Weak<Clients> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(table) = weak.upgrade() else { break };
                table.sweep();
            }
        });
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// How long an upstream's clients are remembered.
pub fn memory_for(mode: &StickyMode, ttl: Duration) -> Duration {
    match mode {
        StickyMode::Learn { .. } => ttl.max(LIVE_WINDOW),
        _ => LIVE_WINDOW,
    }
}

/// A request's affinity, read before selection.
#[derive(Debug, Clone, Copy)]
pub struct Affinity {
    /// An explicit pin: the affinity cookie, a learned mapping, or the
    /// backend recorded in the caller's session.
    pub pin: Pin,
    /// Where this gateway last sent the client (identity mode).
    pub last: Pin,
    /// Stable placement hash: the caller (identity mode) or `hash_key`.
    pub key: Option<u64>,
    /// Identity mode: place by `key`'s consistent hash.
    pub hashed: bool,
    /// The client's entry in [`Clients`].
    client: Option<u64>,
    /// Cookie mode: the verified cookie the client sent.
    token: Option<Token>,
}

impl Affinity {
    /// No affinity: plain balancing by `key` (if any).
    pub fn none(key: Option<u64>) -> Affinity {
        Affinity {
            pin: Pin::None,
            last: Pin::None,
            key,
            hashed: false,
            client: None,
            token: None,
        }
    }
}

fn resolve(set: &BackendSet, id: Option<u64>) -> Pin {
    match id {
        None => Pin::None,
        Some(id) => set.index_of_id(id).map_or(Pin::Gone, Pin::Member),
    }
}

/// Reads the request's affinity for `up`. `session_pin` is the backend
/// (`host:port`) recorded in the caller's server-side session, if any.
pub fn read(
    up: &Upstream,
    set: &BackendSet,
    parts: &http::request::Parts,
    identity: Option<&Identity>,
    ip: IpAddr,
    session_pin: Option<&str>,
    memo: &TokenMemo,
) -> Affinity {
    let key = up
        .hash_key
        .as_ref()
        .and_then(|k| hash_key(k, parts, identity, ip));
    let (Some(sticky), Some(clients)) = (&up.sticky, &up.clients) else {
        return Affinity::none(key);
    };
    match &sticky.mode {
        StickyMode::Cookie { cookie_name } => {
            let token = cookie_values(&parts.headers, cookie_name)
                .find_map(|v| memo.decode(v, &sticky.key, &up.name, up.generation));
            let pin = match token {
                None => Pin::None,
                Some(t) => set.index_of_tag(&t.backend).map_or(Pin::Gone, Pin::Member),
            };
            Affinity {
                pin,
                last: Pin::None,
                key,
                hashed: false,
                client: token.map(|t| clients.key(&t.nonce)),
                token,
            }
        }
        StickyMode::Identity => {
            let who = identity_key(identity, ip);
            let client = clients.key(&who.to_le_bytes());
            let pin = match session_pin {
                Some(addr) => set
                    .backends
                    .iter()
                    .position(|b| b.addr == addr)
                    .map_or(Pin::Gone, Pin::Member),
                None => Pin::None,
            };
            Affinity {
                pin,
                last: resolve(set, clients.get(client)),
                key: Some(who),
                hashed: true,
                client: Some(client),
                token: None,
            }
        }
        StickyMode::Learn { app_cookie } => {
            let client = cookie_values(&parts.headers, app_cookie)
                .next()
                .map(|v| clients.key(v.as_bytes()));
            Affinity {
                pin: resolve(set, client.and_then(|c| clients.get(c))),
                last: Pin::None,
                key,
                hashed: false,
                client,
                token: None,
            }
        }
    }
}

/// Learn mode, a local miss: the request carries an app cookie this
/// process has not seen (it was learned by another replica). The caller may
/// look the value up in the shared store and [`Affinity::pin_learned`] it.
pub fn learn_miss<'h>(
    up: &Upstream,
    parts: &'h http::request::Parts,
    aff: &Affinity,
) -> Option<&'h str> {
    // `value` (not `values`): the cookie name borrows from `up`, the value from `parts`.
    match &up.sticky.as_ref()?.mode {
        StickyMode::Learn { app_cookie } if aff.pin == Pin::None => {
            crate::cookies::value(&parts.headers, app_cookie)
        }
        _ => None,
    }
}

impl Affinity {
    /// Pins to the backend another replica learned (`host:port`), when it
    /// is still a member; this process remembers it from now on.
    pub fn pin_learned(&mut self, up: &Upstream, set: &BackendSet, addr: &str) {
        let Some(i) = set.backends.iter().position(|b| b.addr == addr) else {
            return;
        };
        self.pin = Pin::Member(i);
        if let (Some(clients), Some(c)) = (up.clients.as_ref(), self.client) {
            clients.touch(c, set.backends[i].id);
        }
    }
}

/// What to do after a sticky request was answered.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `Set-Cookie` to add to the response (cookie mode).
    pub set_cookie: Option<HeaderValue>,
    /// Identity mode: the backend (`host:port`) to record in the caller's
    /// server-side session, when it differs from the session's.
    pub record: Option<String>,
    /// Learn mode: app cookie values now issued by a backend, `(value,
    /// host:port)`, for the shared store.
    pub learned: Vec<(String, String)>,
}

/// Records where the request went, once its backend answered: re-pins
/// moved clients, issues cookies, learns app cookies from `response`.
/// `secure`: the client reached us over TLS (the cookie gets `Secure`).
pub fn write(
    up: &Upstream,
    set: &BackendSet,
    aff: &Affinity,
    decision: Decision,
    response: &HeaderMap,
    secure: bool,
) -> Outcome {
    let mut out = Outcome::default();
    if decision.rehomed {
        up.repins.fetch_add(1, Relaxed);
    }
    let (Some(sticky), Some(clients)) = (&up.sticky, &up.clients) else {
        return out;
    };
    let backend = &set.backends[decision.index];
    match &sticky.mode {
        StickyMode::Cookie { cookie_name } => {
            let tag = set.tags.get(decision.index).copied();
            let (token, fresh) = match (aff.token, tag) {
                (Some(t), Some(tag)) if t.backend == tag => (t, false),
                (Some(t), Some(tag)) => (
                    Token {
                        backend: tag,
                        nonce: t.nonce,
                    },
                    true,
                ),
                (None, Some(tag)) => (Token::new(tag), true),
                (_, None) => return out,
            };
            if fresh {
                let value = token.encode(&sticky.key, &up.name);
                out.set_cookie = Some(affinity_cookie(cookie_name, &value, sticky.ttl, secure));
            }
            clients.touch(clients.key(&token.nonce), backend.id);
        }
        StickyMode::Identity => {
            if let Some(c) = aff.client {
                clients.touch(c, backend.id);
            }
            if aff.pin != Pin::Member(decision.index) {
                out.record = Some(backend.addr.clone());
            }
        }
        StickyMode::Learn { app_cookie } => {
            // The request's app cookie now lives here (a kept pin is
            // refreshed; a moved client is re-pinned to its new backend).
            if let Some(c) = aff.client {
                if aff.pin != Pin::None || decision.rehomed {
                    clients.touch(c, backend.id);
                }
            }
            for v in response.get_all(header::SET_COOKIE) {
                let Ok(v) = v.to_str() else { continue };
                match set_cookie_of(v, app_cookie) {
                    Some(Some(value)) => {
                        clients.touch(clients.key(value.as_bytes()), backend.id);
                        out.learned.push((value.to_string(), backend.addr.clone()));
                    }
                    Some(None) => {
                        if let Some(c) = aff.client {
                            clients.forget(c);
                        }
                    }
                    None => {}
                }
            }
        }
    }
    out
}

/// Live sticky clients per backend id of `up` (for `/admin/upstreams`).
pub fn live_counts(up: &Upstream) -> std::collections::HashMap<u64, usize> {
    up.clients
        .as_ref()
        .map(|c| c.live_counts())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Mac {
        Mac::derive(b"0123456789abcdef0123456789abcdef", "affinity")
    }

    #[test]
    fn tokens_round_trip_and_hide_the_address() {
        let k = key();
        let tag = backend_tag(&k, "app", "10.1.2.3:8080");
        let t = Token::new(tag);
        let v = t.encode(&k, "app");
        assert!(!v.contains("10.1.2.3") && !v.contains("8080"));
        assert!(v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Token::decode(&v, &k, "app"), Some(t));
        // Same secret elsewhere (another replica, after a reload): same tag.
        assert_eq!(tag, backend_tag(&key(), "app", "10.1.2.3:8080"));
        assert_ne!(tag, backend_tag(&k, "app", "10.1.2.4:8080"));
        assert_ne!(tag, backend_tag(&k, "other", "10.1.2.3:8080"));
    }

    #[test]
    fn a_remembered_cookie_answers_as_verifying_it_again_would() {
        let k = key();
        let t = Token::new(backend_tag(&k, "app", "10.1.2.3:8080"));
        let v = t.encode(&k, "app");
        let memo = TokenMemo::default();
        assert_eq!(memo.decode(&v, &k, "app", 7), Some(t));
        assert_eq!(memo.decode(&v, &k, "app", 7), Some(t));
        // Not the remembered bytes: verified, and refused.
        let mut bytes = v.clone().into_bytes();
        bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(memo.decode(&tampered, &k, "app", 7), None);
        assert_eq!(memo.decode(&format!("{v}A"), &k, "app", 7), None);
        assert_eq!(memo.decode(&v[..v.len() - 1], &k, "app", 7), None);
        // Still remembered after those refusals.
        assert_eq!(memo.decode(&v, &k, "app", 7), Some(t));
        // A reloaded upstream (another generation) with another key or
        // name refuses what the old one accepted on this connection.
        let other = Mac::derive(b"another secret of 32 bytes......", "affinity");
        assert_eq!(memo.decode(&v, &other, "app", 8), None);
        assert_eq!(memo.decode(&v, &k, "renamed", 8), None);
        assert_eq!(memo.decode(&v, &k, "app", 8), Some(t));
        // A copy (another connection's) starts empty.
        assert_eq!(memo.clone().decode(&v, &other, "app", 8), None);
    }

    #[test]
    fn forged_tampered_and_foreign_tokens_are_refused() {
        let k = key();
        let v = Token::new(backend_tag(&k, "app", "10.1.2.3:8080")).encode(&k, "app");
        let mut bytes = v.clone().into_bytes();
        bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(Token::decode(&tampered, &k, "app"), None);
        assert_eq!(Token::decode(&v, &k, "other-upstream"), None);
        let other = Mac::derive(b"another secret of 32 bytes......", "affinity");
        assert_eq!(Token::decode(&v, &other, "app"), None);
        for junk in [
            "",
            "10.1.2.3:8080",
            "!!!!",
            &"A".repeat(36),
            &"A".repeat(500),
        ] {
            assert_eq!(Token::decode(junk, &k, "app"), None, "{junk}");
        }
    }

    #[test]
    fn affinity_cookie_attributes() {
        use crate::cookies::set_cookie_parts as parts;
        let c = affinity_cookie("aff", "v", Duration::ZERO, false);
        assert_eq!(
            parts(c.to_str().unwrap()),
            parts("aff=v; Path=/; HttpOnly; SameSite=Lax")
        );
        let c = affinity_cookie("aff", "v", Duration::from_secs(3600), true);
        assert_eq!(
            parts(c.to_str().unwrap()),
            parts("aff=v; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure")
        );
    }

    #[test]
    fn cookies_are_found_and_removed_without_touching_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; aff=x; b=\"2\"".parse().unwrap());
        h.append(header::COOKIE, "c=3".parse().unwrap());
        assert_eq!(cookie_values(&h, "aff").collect::<Vec<_>>(), vec!["x"]);
        assert_eq!(cookie_values(&h, "b").collect::<Vec<_>>(), vec!["2"]);
        assert_eq!(cookie_values(&h, "af").count(), 0);
        remove_cookie(&mut h, "aff");
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=\"2\"; c=3");
        let mut only = HeaderMap::new();
        only.insert(header::COOKIE, "aff=x".parse().unwrap());
        remove_cookie(&mut only, "aff");
        assert!(!only.contains_key(header::COOKIE));
    }

    #[test]
    fn set_cookie_parsing_sees_sets_and_deletions() {
        assert_eq!(
            set_cookie_of("JSESSIONID=abc123; Path=/; HttpOnly", "JSESSIONID"),
            Some(Some("abc123"))
        );
        assert_eq!(set_cookie_of("other=1", "JSESSIONID"), None);
        assert_eq!(
            set_cookie_of("JSESSIONID=; Max-Age=0", "JSESSIONID"),
            Some(None)
        );
        assert_eq!(
            set_cookie_of("JSESSIONID=x; Max-Age=0", "JSESSIONID"),
            Some(None)
        );
        assert_eq!(
            set_cookie_of(
                "JSESSIONID=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                "JSESSIONID"
            ),
            Some(None)
        );
    }

    #[test]
    fn client_ip_trusts_forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "198.51.100.9, 10.0.0.7".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "203.0.113.5".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &trusted, &h),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(stranger, &trusted, &h), stranger);
        assert_eq!(client_ip(proxy, &trusted, &HeaderMap::new()), proxy);
    }

    #[test]
    fn client_memory_expires_and_counts_live_clients() {
        let c = Clients::new(Duration::from_secs(600));
        let (a, b) = (c.key(b"alice"), c.key(b"bob"));
        c.touch(a, 1);
        c.touch(b, 1);
        c.touch(b, 2);
        assert_eq!(c.get(a), Some(1));
        assert_eq!(c.get(b), Some(2));
        assert_eq!(c.len(), 2);
        let counts = c.live_counts();
        assert_eq!((counts[&1], counts[&2]), (1, 1));
        c.forget(a);
        assert_eq!(c.get(a), None);
        assert_eq!(c.len(), 1);
    }

    fn upstream_cfg(backends: &[&str], extra: &str) -> crate::config::Upstream {
        let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n\
             [[upstreams]]\nname = \"app\"\nbackends = [{}]\n{extra}\n",
            list.join(", ")
        );
        let mut c = crate::config::load_str(&text, std::path::Path::new("/tmp/g.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        c.upstreams.remove(0)
    }

    fn request(cookie: Option<&str>) -> http::request::Parts {
        let mut b = http::Request::get("/");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(()).unwrap().into_parts().0
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    /// One request through read, choose and write; returns the chosen
    /// address, whether it was a move, and the Set-Cookie.
    fn visit(
        up: &Upstream,
        cookie: Option<&str>,
        response: &HeaderMap,
    ) -> (String, bool, Option<String>) {
        let set = up.backends();
        let aff = read(
            up,
            &set,
            &request(cookie),
            None,
            IP,
            None,
            &TokenMemo::default(),
        );
        let d = up.choose(&set, &aff, &[]).expect("a backend");
        let out = write(up, &set, &aff, d, response, false);
        (
            set.backends[d.index].addr.clone(),
            d.rehomed,
            out.set_cookie.map(|c| c.to_str().unwrap().to_string()),
        )
    }

    fn cookie_pair(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_string()
    }

    #[test]
    fn cookie_affinity_pins_survives_reload_and_moves_when_the_backend_leaves() {
        let three = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"];
        let cfg = upstream_cfg(&three, "[upstreams.sticky]\nmode = \"cookie\"");
        let up = Upstream::build(&cfg, None);
        let (first, moved, set) = visit(&up, None, &HeaderMap::new());
        assert!(!moved);
        let cookie = cookie_pair(&set.expect("a new client gets a cookie"));
        for _ in 0..10 {
            let (addr, moved, set) = visit(&up, Some(&cookie), &HeaderMap::new());
            assert_eq!((addr.as_str(), moved, set), (first.as_str(), false, None));
        }
        assert_eq!(up.clients.as_ref().unwrap().len(), 1);

        // A reload that keeps the backend keeps the pin.
        let again = Upstream::build(&cfg, Some(&up));
        assert_eq!(visit(&again, Some(&cookie), &HeaderMap::new()).0, first);

        // A reload without it: moved, counted, re-pinned with a new cookie.
        let rest: Vec<&str> = three.iter().copied().filter(|a| *a != first).collect();
        let smaller = Upstream::build(
            &upstream_cfg(&rest, "[upstreams.sticky]\nmode = \"cookie\""),
            Some(&again),
        );
        let (addr, moved, set) = visit(&smaller, Some(&cookie), &HeaderMap::new());
        assert_ne!(addr, first);
        assert!(moved);
        assert_eq!(smaller.repins.load(Relaxed), 1);
        let new_cookie = cookie_pair(&set.expect("re-pinned"));
        assert_ne!(new_cookie, cookie);
        let (addr2, moved, set) = visit(&smaller, Some(&new_cookie), &HeaderMap::new());
        assert_eq!((addr2, moved, set), (addr, false, None));
    }

    #[test]
    fn learned_app_cookies_route_to_their_issuer_and_survive_reload() {
        let two = ["10.0.0.1:80", "10.0.0.2:80"];
        let cfg = upstream_cfg(
            &two,
            "[upstreams.sticky]\nmode = \"learn\"\napp_cookie = \"JSESSIONID\"",
        );
        let up = Upstream::build(&cfg, None);
        let mut issued = HeaderMap::new();
        issued.insert(
            header::SET_COOKIE,
            "JSESSIONID=s3cr3t; Path=/; HttpOnly".parse().unwrap(),
        );
        let (issuer, _, _) = visit(&up, None, &issued);
        let up = Upstream::build(&cfg, Some(&up));
        for _ in 0..6 {
            let (addr, moved, set) = visit(&up, Some("JSESSIONID=s3cr3t"), &HeaderMap::new());
            assert_eq!((addr.as_str(), moved, set), (issuer.as_str(), false, None));
        }
        // Logged out: forgotten, balanced again.
        let mut gone = HeaderMap::new();
        gone.insert(
            header::SET_COOKIE,
            "JSESSIONID=; Max-Age=0".parse().unwrap(),
        );
        visit(&up, Some("JSESSIONID=s3cr3t"), &gone);
        let set = up.backends();
        let aff = read(
            &up,
            &set,
            &request(Some("JSESSIONID=s3cr3t")),
            None,
            IP,
            None,
            &TokenMemo::default(),
        );
        assert_eq!(aff.pin, Pin::None);
    }

    #[test]
    fn identity_affinity_reports_the_backend_for_the_session_to_record() {
        let cfg = upstream_cfg(
            &["10.0.0.1:80", "10.0.0.2:80"],
            "[upstreams.sticky]\nmode = \"identity\"",
        );
        let up = Upstream::build(&cfg, None);
        let set = up.backends();
        let parts = request(None);
        let aff = read(&up, &set, &parts, None, IP, None, &TokenMemo::default());
        let d = up.choose(&set, &aff, &[]).unwrap();
        let out = write(&up, &set, &aff, d, &HeaderMap::new(), false);
        let chosen = set.backends[d.index].addr.clone();
        assert_eq!(out.record.as_deref(), Some(chosen.as_str()));
        // With that recorded in the session, the session decides.
        let other = set.backends[1 - d.index].addr.clone();
        let aff = read(
            &up,
            &set,
            &parts,
            None,
            IP,
            Some(&other),
            &TokenMemo::default(),
        );
        let d2 = up.choose(&set, &aff, &[]).unwrap();
        assert_eq!(set.backends[d2.index].addr, other);
        let out = write(&up, &set, &aff, d2, &HeaderMap::new(), false);
        assert_eq!(out.record, None);
    }

    #[test]
    fn client_memory_forgets_after_max_age() {
        let c = Clients::new(Duration::from_secs(60));
        let k = c.key(b"carol");
        c.touch_at(k, 7, 100);
        assert_eq!(c.get_at(k, 160), Some(7));
        assert_eq!(c.get_at(k, 161), None);
        c.sweep_at(160);
        assert_eq!(c.len(), 1);
        c.sweep_at(161);
        assert!(c.is_empty());
    }
}
