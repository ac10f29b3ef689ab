//! The in-memory session store: the embedded default for one process.
//!
//! Layout, chosen for memory (a million sessions in a few hundred MB):
//!
//! - Sessions live in [`SHARDS`] hash tables of boxed [`Entry`]s (8 bytes
//!   a slot), hashed by the first 4 bytes of their key (a SHA-256, so
//!   already uniform), compared on the whole key.
//! - An entry packs the user's name, email, display name and client
//!   address into one string; groups, user agent and login method are
//!   interned (shared by every session that has the same value).
//! - The `Record` and `Identity` a request needs are built on the
//!   session's first request and cached in the entry; the sweeper drops
//!   the cache of sessions unused for [`VIEW_CACHE_IDLE`], so memory
//!   follows the sessions in use, not all of them.
//! - The per-user index (listing, revoke-all) is a flat multimap of 32-bit
//!   user and key fingerprints; candidates are checked against the
//!   sessions themselves. The per-`sid` index (OIDC back-channel logout,
//!   SPEC 15) is the same for (login method, `sid`), and only OIDC
//!   sessions whose ID token had a `sid` are in it. A logout token naming
//!   only `sub` uses the user index (the session's user is the ID token's
//!   `sub`), filtered by login method.
//!
//! Shared state, who touches it: request tasks read (a shard read lock,
//! held for one lookup, never across an await) and slide the idle deadline
//! (atomics, no map write); logins, logouts, sticky pins and the sweeper
//! write (a shard write lock for one change). The sweeper removes expired
//! sessions and their index entries, so memory (indexes included) stays
//! bounded by live sessions; it holds a weak reference and ends when the
//! store is dropped.

use crate::auth::Identity;
use crate::clock::now_ms;
use crate::config::sessions::Sessions as SessionsConfig;
use crate::metrics::Metrics;
use crate::session::{Record, SessionKey, SessionView};
use crate::state::{SessionStore, StoreError};
use hashbrown::HashTable;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

/// Session tables; a power of two.
pub const SHARDS: usize = 16;

/// A session unused this long loses its cached `Record` and `Identity`
/// (rebuilt on its next request).
pub const VIEW_CACHE_IDLE: Duration = Duration::from_secs(60);

/// Absent optional text in [`Entry::lens`].
const NONE: u16 = u16::MAX;

/// One session. Boxed, so a table slot is one pointer.
struct Entry {
    key: SessionKey,
    last_seen_ms: AtomicU64,
    /// When the store may forget it (unix ms).
    drop_at_ms: AtomicU64,
    created_ms: u64,
    /// user, email, name and client address, one after the other.
    text: Box<str>,
    /// Byte lengths of user, email and name in `text` ([`NONE`]: absent);
    /// the client address is the rest.
    lens: [u16; 3],
    groups: Arc<Vec<String>>,
    user_agent: Arc<String>,
    login: Arc<String>,
    /// Sticky pins: upstream name -> backend address (rare). Boxed: one
    /// pointer when absent instead of an empty map's three words.
    #[allow(clippy::box_collection)]
    backends: Option<Box<BTreeMap<String, String>>>,
    /// Identity fields of an OIDC login (claims_map) and its ID token for
    /// logout (rare: `None` for password logins).
    oidc: Option<Box<OidcExtra>>,
    /// Built on first use, dropped by the sweeper when unused.
    view: OnceLock<(Arc<Record>, Arc<Identity>)>,
}

/// What an OIDC login adds to a session.
struct OidcExtra {
    extra: Vec<(String, String)>,
    id_token: Option<crate::session::IdTokenHint>,
    /// The ID token's `sid`; indexed in `by_sid`.
    sid: Option<Box<str>>,
}

impl Entry {
    fn field(&self, i: usize) -> Option<&str> {
        let mut start = 0;
        for len in &self.lens[..i] {
            if *len != NONE {
                start += usize::from(*len);
            }
        }
        match self.lens[i] {
            NONE => None,
            len => self.text.get(start..start + usize::from(len)),
        }
    }

    fn user(&self) -> &str {
        self.field(0).unwrap_or("")
    }

    fn client_ip(&self) -> &str {
        let used: usize = self
            .lens
            .iter()
            .filter(|l| **l != NONE)
            .map(|l| usize::from(*l))
            .sum();
        self.text.get(used..).unwrap_or("")
    }

    fn record(&self) -> Record {
        Record {
            user: self.user().to_string(),
            email: self.field(1).map(str::to_string),
            groups: (*self.groups).clone(),
            name: self.field(2).map(str::to_string),
            created_ms: self.created_ms,
            client_ip: self.client_ip().to_string(),
            user_agent: (*self.user_agent).clone(),
            login: (*self.login).clone(),
            backends: self.backends.as_deref().cloned().unwrap_or_default(),
            extra: self
                .oidc
                .as_ref()
                .map(|o| o.extra.clone())
                .unwrap_or_default(),
            id_token: self.oidc.as_ref().and_then(|o| o.id_token.clone()),
            sid: self.sid().map(str::to_string),
        }
    }

    fn sid(&self) -> Option<&str> {
        self.oidc.as_ref().and_then(|o| o.sid.as_deref())
    }

    fn view(&self) -> SessionView {
        let (record, identity) = self.view.get_or_init(|| {
            let record = self.record();
            let identity = Arc::new(record.identity());
            (Arc::new(record), identity)
        });
        SessionView {
            record: record.clone(),
            identity: identity.clone(),
            last_seen_ms: self.last_seen_ms.load(Relaxed),
        }
    }
}

/// Fits a field's length in the packed lengths; longer text is cut (at a
/// character boundary): no user name, email or display name is 64 KiB.
fn fit(s: &str) -> &str {
    if s.len() < usize::from(NONE) {
        return s;
    }
    let mut end = usize::from(NONE) - 1;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A 32-bit fingerprint of a session key (its first bytes: a SHA-256,
/// so uniform). Tables are hashed and sharded by it alone, so the user
/// index, which keeps only fingerprints, can find its sessions.
fn key_print(key: &SessionKey) -> u32 {
    u32::from_le_bytes(key.0[..4].try_into().expect("4 bytes"))
}

fn table_hash(key: &SessionKey) -> u64 {
    spread(key_print(key))
}

fn shard_of_print(print: u32) -> usize {
    (print & 0xff) as usize % SHARDS
}

fn shard_of(key: &SessionKey) -> usize {
    shard_of_print(key_print(key))
}

/// Values many sessions share (groups lists, user agents, login methods),
/// kept once. Unused ones are dropped by the sweeper.
struct Interner<T: Hash + Eq>(Mutex<HashSet<Arc<T>>>);

impl<T: Hash + Eq> Default for Interner<T> {
    fn default() -> Self {
        Interner(Mutex::new(HashSet::new()))
    }
}

impl<T: Hash + Eq> Interner<T> {
    fn intern(&self, v: T) -> Arc<T> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = set.get(&v) {
            return a.clone();
        }
        let a = Arc::new(v);
        set.insert(a.clone());
        a
    }

    fn sweep(&self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a| Arc::strong_count(a) > 1);
    }
}

/// A user-index entry: fingerprints of the user's name and of one of its
/// session keys. Fingerprints may collide; candidates are checked against
/// the sessions.
#[derive(Clone, Copy, PartialEq, Eq)]
struct UserRef {
    user: u32,
    key: u32,
}

pub struct MemoryStore {
    shards: Box<[RwLock<HashTable<Box<Entry>>>]>,
    by_user: Mutex<HashTable<UserRef>>,
    /// (login method, `sid`) fingerprints -> key fingerprints, as
    /// `by_user` (`UserRef::user` holds the pair's fingerprint).
    by_sid: Mutex<HashTable<UserRef>>,
    user_hasher: RandomState,
    groups: Interner<Vec<String>>,
    strings: Interner<String>,
    len: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// Spreads a 32-bit fingerprint over 64 bits (hashbrown wants the top
/// bits to vary too).
fn spread(x: u32) -> u64 {
    u64::from(x).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl MemoryStore {
    pub fn start(cfg: &SessionsConfig, metrics: Arc<Metrics>) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            by_user: Mutex::default(),
            by_sid: Mutex::default(),
            user_hasher: RandomState::new(),
            groups: Interner::default(),
            strings: Interner::default(),
            len: AtomicUsize::new(0),
            metrics,
        });
        let every =
            (cfg.idle_timeout / 10).clamp(Duration::from_millis(250), Duration::from_secs(60));
        let weak: Weak<MemoryStore> = Arc::downgrade(&store);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(s) = weak.upgrade() else { break };
                s.sweep(now_ms());
            }
        });
        store
    }

    fn user_print(&self, user: &str) -> u32 {
        self.user_hasher.hash_one(user) as u32
    }

    /// The `by_sid` fingerprint of a session with `sid` from `login`.
    fn sid_print(&self, login: &str, sid: &str) -> u32 {
        self.user_hasher.hash_one((login, sid)) as u32
    }

    /// The `by_sid` entry of `e`, if it has a `sid`.
    fn sid_ref(&self, e: &Entry) -> Option<UserRef> {
        e.sid().map(|sid| UserRef {
            user: self.sid_print(&e.login, sid),
            key: key_print(&e.key),
        })
    }

    fn unindex_sid(&self, r: Option<UserRef>) {
        if let Some(r) = r {
            let mut idx = self.by_sid.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(e) = idx.find_entry(spread(r.user), |e| *e == r) {
                e.remove();
            }
        }
    }

    fn shard(&self, key: &SessionKey) -> &RwLock<HashTable<Box<Entry>>> {
        &self.shards[shard_of(key)]
    }

    fn update_metric(&self) {
        self.metrics
            .sessions_active
            .store(self.len.load(Relaxed) as i64, Relaxed);
    }

    fn index(&self, user: &str, key: &SessionKey) {
        let r = UserRef {
            user: self.user_print(user),
            key: key_print(key),
        };
        let mut idx = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
        idx.insert_unique(spread(r.user), r, |e| spread(e.user));
    }

    /// Removes one index entry for (user, key); fingerprint twins are
    /// interchangeable, so any matching one will do.
    fn unindex(&self, idx: &mut HashTable<UserRef>, user: &str, key: &SessionKey) {
        let r = UserRef {
            user: self.user_print(user),
            key: key_print(key),
        };
        if let Ok(e) = idx.find_entry(spread(r.user), |e| *e == r) {
            e.remove();
        }
    }

    /// Removes every session past its deadline, and the cached views of
    /// sessions unused for [`VIEW_CACHE_IDLE`].
    pub fn sweep(&self, now: u64) {
        let cache_idle = VIEW_CACHE_IDLE.as_millis() as u64;
        let mut gone: Vec<(String, SessionKey)> = Vec::new();
        let mut gone_sids: Vec<UserRef> = Vec::new();
        for shard in self.shards.iter() {
            let mut t = shard.write().unwrap_or_else(|e| e.into_inner());
            t.retain(|e| {
                if now >= e.drop_at_ms.load(Relaxed) {
                    gone.push((e.user().to_string(), e.key));
                    gone_sids.extend(self.sid_ref(e));
                    return false;
                }
                if now.saturating_sub(e.last_seen_ms.load(Relaxed)) >= cache_idle {
                    e.view.take();
                }
                true
            });
        }
        if !gone.is_empty() {
            self.len.fetch_sub(gone.len(), Relaxed);
            let mut idx = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
            for (user, key) in &gone {
                self.unindex(&mut idx, user, key);
            }
        }
        if !gone_sids.is_empty() {
            let mut idx = self.by_sid.lock().unwrap_or_else(|e| e.into_inner());
            for r in gone_sids {
                if let Ok(e) = idx.find_entry(spread(r.user), |e| *e == r) {
                    e.remove();
                }
            }
        }
        self.groups.sweep();
        self.strings.sweep();
        self.update_metric();
    }

    pub fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys of `user`'s sessions (checked against the sessions: the index
    /// holds fingerprints).
    fn keys_of(&self, user: &str) -> Vec<SessionKey> {
        let print = self.user_print(user);
        let prints: Vec<u32> = {
            let idx = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
            idx.iter_hash(spread(print))
                .filter(|e| e.user == print)
                .map(|e| e.key)
                .collect()
        };
        let mut keys = Vec::new();
        for kp in prints {
            let t = self.shards[shard_of_print(kp)]
                .read()
                .unwrap_or_else(|e| e.into_inner());
            for e in t.iter_hash(spread(kp)) {
                if key_print(&e.key) == kp && e.user() == user && !keys.contains(&e.key) {
                    keys.push(e.key);
                }
            }
        }
        keys
    }

    /// Live sessions `login` created whose ID token had `sid`.
    fn with_sid(&self, login: &str, sid: &str) -> Vec<(SessionKey, SessionView)> {
        let print = self.sid_print(login, sid);
        let prints: Vec<u32> = {
            let idx = self.by_sid.lock().unwrap_or_else(|e| e.into_inner());
            idx.iter_hash(spread(print))
                .filter(|e| e.user == print)
                .map(|e| e.key)
                .collect()
        };
        let now = now_ms();
        let mut out: Vec<(SessionKey, SessionView)> = Vec::new();
        for kp in prints {
            let t = self.shards[shard_of_print(kp)]
                .read()
                .unwrap_or_else(|e| e.into_inner());
            for e in t.iter_hash(spread(kp)) {
                if key_print(&e.key) == kp
                    && e.sid() == Some(sid)
                    && *e.login == login
                    && now < e.drop_at_ms.load(Relaxed)
                    && !out.iter().any(|(k, _)| *k == e.key)
                {
                    out.push((e.key, e.view()));
                }
            }
        }
        out
    }
}

impl SessionStore for MemoryStore {
    async fn create(
        &self,
        key: SessionKey,
        record: Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut lens = [NONE; 3];
        let mut text = String::new();
        for (i, v) in [
            Some(record.user.as_str()),
            record.email.as_deref(),
            record.name.as_deref(),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(v) = v {
                let v = fit(v);
                lens[i] = v.len() as u16;
                text.push_str(v);
            }
        }
        text.push_str(&record.client_ip);
        let entry = Box::new(Entry {
            key,
            last_seen_ms: AtomicU64::new(now),
            drop_at_ms: AtomicU64::new(now + ttl.as_millis() as u64),
            created_ms: record.created_ms,
            text: text.into_boxed_str(),
            lens,
            groups: self.groups.intern(record.groups),
            user_agent: self.strings.intern(record.user_agent),
            login: self.strings.intern(record.login),
            backends: (!record.backends.is_empty()).then(|| Box::new(record.backends)),
            oidc: (!record.extra.is_empty() || record.id_token.is_some() || record.sid.is_some())
                .then(|| {
                    Box::new(OidcExtra {
                        extra: record.extra,
                        id_token: record.id_token,
                        sid: record.sid.map(String::into_boxed_str),
                    })
                }),
            view: OnceLock::new(),
        });
        let user = entry.user().to_string();
        let sid_ref = self.sid_ref(&entry);
        let replaced = {
            let mut t = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
            match t.find_entry(table_hash(&key), |e| e.key == key) {
                Ok(mut old) => Some(std::mem::replace(old.get_mut(), entry)),
                Err(_) => {
                    t.insert_unique(table_hash(&key), entry, |e| table_hash(&e.key));
                    None
                }
            }
        };
        match replaced {
            Some(old) => {
                {
                    let mut idx = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
                    self.unindex(&mut idx, old.user(), &key);
                }
                self.unindex_sid(self.sid_ref(&old));
            }
            None => {
                self.len.fetch_add(1, Relaxed);
            }
        }
        self.index(&user, &key);
        if let Some(r) = sid_ref {
            let mut idx = self.by_sid.lock().unwrap_or_else(|e| e.into_inner());
            idx.insert_unique(spread(r.user), r, |e| spread(e.user));
        }
        self.update_metric();
        Ok(())
    }

    async fn get(&self, key: SessionKey) -> Result<Option<SessionView>, StoreError> {
        let now = now_ms();
        let t = self.shard(&key).read().unwrap_or_else(|e| e.into_inner());
        Ok(t.find(table_hash(&key), |e| e.key == key)
            .filter(|e| now < e.drop_at_ms.load(Relaxed))
            .map(|e| e.view()))
    }

    async fn touch(&self, key: SessionKey, now: u64, ttl: Duration) -> Result<(), StoreError> {
        let t = self.shard(&key).read().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = t.find(table_hash(&key), |e| e.key == key) {
            e.last_seen_ms.store(now, Relaxed);
            e.drop_at_ms.store(now + ttl.as_millis() as u64, Relaxed);
        }
        Ok(())
    }

    async fn delete(&self, key: SessionKey) -> Result<Option<Arc<Record>>, StoreError> {
        let removed = {
            let mut t = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
            t.find_entry(table_hash(&key), |e| e.key == key)
                .ok()
                .map(|e| e.remove().0)
        };
        let Some(entry) = removed else {
            return Ok(None);
        };
        self.len.fetch_sub(1, Relaxed);
        {
            let mut idx = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
            self.unindex(&mut idx, entry.user(), &key);
        }
        self.unindex_sid(self.sid_ref(&entry));
        self.update_metric();
        Ok(Some(entry.view().record))
    }

    async fn list_user(&self, user: &str) -> Result<Vec<(SessionKey, SessionView)>, StoreError> {
        let now = now_ms();
        Ok(self
            .keys_of(user)
            .into_iter()
            .filter_map(|k| {
                let t = self.shard(&k).read().unwrap_or_else(|e| e.into_inner());
                t.find(table_hash(&k), |e| e.key == k)
                    .filter(|e| now < e.drop_at_ms.load(Relaxed))
                    .map(|e| (k, e.view()))
            })
            .collect())
    }

    async fn list_sid(
        &self,
        provider: &str,
        sid: &str,
    ) -> Result<Vec<(SessionKey, SessionView)>, StoreError> {
        Ok(self.with_sid(&format!("oidc:{provider}"), sid))
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for key in self.keys_of(user) {
            if self.delete(key).await?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn pin_backend(
        &self,
        key: SessionKey,
        upstream: &str,
        backend: &str,
    ) -> Result<(), StoreError> {
        let mut t = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = t.find_mut(table_hash(&key), |e| e.key == key) {
            e.backends
                .get_or_insert_with(Default::default)
                .insert(upstream.to_string(), backend.to_string());
            // The cached record names the old pins.
            e.view.take();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str, ip: &str) -> Record {
        Record {
            user: user.into(),
            email: Some(format!("{user}@example.com")),
            groups: vec!["staff".into(), "ops".into()],
            name: None,
            created_ms: 1_000,
            client_ip: ip.into(),
            user_agent: "curl/8".into(),
            login: "password".into(),
            backends: Default::default(),
            extra: Vec::new(),
            id_token: None,
            sid: None,
        }
    }

    fn key(n: u8) -> SessionKey {
        SessionKey(crate::crypto::sha256(&[n]))
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn records_come_back_as_stored_and_users_are_indexed() {
        block_on(async {
            let s = MemoryStore::start(&SessionsConfig::default(), Arc::default());
            let ttl = Duration::from_secs(60);
            let mut a = record("alice", "192.0.2.1");
            a.name = Some("Alice É.".into());
            // An OIDC login's extra fields and ID token come back too.
            a.extra = vec![("X-Auth-Tenant".into(), "blue".into())];
            a.id_token = Some(crate::session::IdTokenHint("eyJ.x.y".into()));
            s.create(key(1), a.clone(), ttl).await.unwrap();
            s.create(key(2), record("alice", "192.0.2.2"), ttl)
                .await
                .unwrap();
            s.create(key(3), record("bob", ""), ttl).await.unwrap();
            assert_eq!(s.len(), 3);
            let v = s.get(key(1)).await.unwrap().unwrap();
            assert_eq!(*v.record, a);
            assert_eq!(v.identity.sub, "alice");
            assert_eq!(v.identity.groups, vec!["staff", "ops"]);
            assert_eq!(v.identity.name.as_deref(), Some("Alice É."));
            let bob = s.get(key(3)).await.unwrap().unwrap();
            assert_eq!(bob.record.client_ip, "");
            assert_eq!(bob.record.name, None);
            // Shared values are stored once.
            let (e1, e3) = {
                let t1 = s.shard(&key(1)).read().unwrap();
                let t3 = s.shard(&key(3)).read().unwrap();
                let e1 = t1.find(table_hash(&key(1)), |e| e.key == key(1)).unwrap();
                let e3 = t3.find(table_hash(&key(3)), |e| e.key == key(3)).unwrap();
                (e1.groups.clone(), e3.groups.clone())
            };
            assert!(Arc::ptr_eq(&e1, &e3));

            let mut listed: Vec<_> = s
                .list_user("alice")
                .await
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k, v.record.client_ip.clone()))
                .collect();
            listed.sort_by(|a, b| a.1.cmp(&b.1));
            assert_eq!(
                listed,
                vec![(key(1), "192.0.2.1".into()), (key(2), "192.0.2.2".into())]
            );
            assert_eq!(s.delete_user("alice").await.unwrap(), 2);
            assert!(s.get(key(1)).await.unwrap().is_none());
            assert!(s.list_user("alice").await.unwrap().is_empty());
            assert_eq!(s.len(), 1);
            assert_eq!(s.delete(key(3)).await.unwrap().unwrap().user, "bob");
            assert!(s.is_empty());
        });
    }

    #[test]
    fn sessions_are_found_by_provider_and_sid_until_they_end() {
        block_on(async {
            let s = MemoryStore::start(&SessionsConfig::default(), Arc::default());
            let ttl = Duration::from_secs(60);
            let oidc = |login: &str, sid: Option<&str>| Record {
                login: login.into(),
                sid: sid.map(str::to_string),
                ..record("alice", "::1")
            };
            s.create(key(1), oidc("oidc:corp", Some("s-1")), ttl)
                .await
                .unwrap();
            s.create(key(2), oidc("oidc:corp", Some("s-2")), ttl)
                .await
                .unwrap();
            // The same sid from another provider is another session.
            s.create(key(3), oidc("oidc:other", Some("s-1")), ttl)
                .await
                .unwrap();
            s.create(key(4), oidc("oidc:corp", None), ttl)
                .await
                .unwrap();
            let found = |login: &str, sid: &str| -> Vec<SessionKey> {
                s.with_sid(login, sid).into_iter().map(|(k, _)| k).collect()
            };
            assert_eq!(found("oidc:corp", "s-1"), vec![key(1)]);
            assert_eq!(found("oidc:other", "s-1"), vec![key(3)]);
            assert_eq!(found("oidc:corp", "s-3"), vec![]);
            let v = s.get(key(1)).await.unwrap().unwrap();
            assert_eq!(v.record.sid.as_deref(), Some("s-1"));
            assert_eq!(s.by_sid.lock().unwrap().len(), 3);
            // Ended sessions leave the index: deleted, replaced, swept.
            s.delete(key(1)).await.unwrap();
            assert_eq!(found("oidc:corp", "s-1"), vec![]);
            s.create(key(2), oidc("oidc:corp", None), ttl)
                .await
                .unwrap();
            assert_eq!(found("oidc:corp", "s-2"), vec![]);
            assert_eq!(s.by_sid.lock().unwrap().len(), 1);
            s.sweep(now_ms() + 61_000);
            assert!(s.is_empty());
            assert_eq!(s.by_sid.lock().unwrap().len(), 0);
        });
    }

    #[test]
    fn pins_sliding_and_sweeping() {
        block_on(async {
            let s = MemoryStore::start(&SessionsConfig::default(), Arc::default());
            s.create(key(1), record("carol", "::1"), Duration::from_secs(10))
                .await
                .unwrap();
            let before = s.get(key(1)).await.unwrap().unwrap();
            assert!(before.record.backends.is_empty());
            s.pin_backend(key(1), "app", "10.0.0.1:80").await.unwrap();
            let after = s.get(key(1)).await.unwrap().unwrap();
            assert_eq!(after.record.backends["app"], "10.0.0.1:80");
            let now = now_ms();
            s.touch(key(1), now + 5_000, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(
                s.get(key(1)).await.unwrap().unwrap().last_seen_ms,
                now + 5_000
            );
            s.sweep(now + 14_000);
            assert_eq!(s.len(), 1, "the slide kept it");
            s.sweep(now + 15_001);
            assert!(s.is_empty());
            assert!(s.list_user("carol").await.unwrap().is_empty());
        });
    }

    #[test]
    fn the_view_cache_is_dropped_when_unused_and_rebuilt() {
        block_on(async {
            let s = MemoryStore::start(&SessionsConfig::default(), Arc::default());
            s.create(key(1), record("dave", "::1"), Duration::from_secs(600))
                .await
                .unwrap();
            let cached = |s: &MemoryStore| {
                let t = s.shard(&key(1)).read().unwrap();
                t.find(table_hash(&key(1)), |e| e.key == key(1))
                    .unwrap()
                    .view
                    .get()
                    .is_some()
            };
            assert!(!cached(&s));
            let first = s.get(key(1)).await.unwrap().unwrap();
            assert!(cached(&s));
            let again = s.get(key(1)).await.unwrap().unwrap();
            assert!(Arc::ptr_eq(&first.identity, &again.identity));
            s.sweep(now_ms() + VIEW_CACHE_IDLE.as_millis() as u64 + 1);
            assert!(!cached(&s));
            assert_eq!(s.get(key(1)).await.unwrap().unwrap().record, first.record);
        });
    }
}
