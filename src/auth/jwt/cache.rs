//! Verified tokens by the SHA-256 of their text, so a token seen again
//! costs a hash and a map lookup instead of a signature check.
//!
//! Who writes: a request after a full verification (insert) or after
//! finding a stale entry (remove). Who reads: every JWT request. A
//! `DashMap` (sharded read/write locks) so no request waits on a global
//! lock; a guard is never held across an await or while touching the map
//! again.
//!
//! An entry only answers while it still means what it meant: before the
//! token's `exp`, for the very issuer object it was verified for (a reload
//! that changes an issuer gives it a new object), and for the key set
//! generation it was checked against (a rotated JWKS re-verifies once).
//! Revocation is checked on every hit by the caller.

use super::Issuer;
use crate::auth::Identity;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Weak};

/// Default bound on entries (about 100 MB at 1 KB per entry, worst case).
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;
/// Entries of tokens without `exp` live this long (seconds).
pub(crate) const NO_EXP_TTL: u64 = 300;

pub(crate) struct Entry {
    pub identity: Arc<Identity>,
    /// Unix seconds: the entry answers while `now < deadline`.
    pub deadline: u64,
    pub issuer: Weak<Issuer>,
    pub key_generation: u64,
    pub jti: Option<Box<str>>,
    pub sid: Option<Box<str>>,
    pub iat: Option<u64>,
}

pub(crate) type Key = [u8; 32];

/// The bounded cache. One per gateway; survives reloads.
pub struct TokenCache {
    map: DashMap<Key, Entry>,
    capacity: usize,
    /// Evictions so far; picks which bit of the key hash the next one tests.
    evictions: AtomicU32,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::with_capacity(DEFAULT_CAPACITY)
    }
}

/// What a lookup found.
pub(crate) enum Hit<T> {
    /// Usable entry; `T` is what the caller's check returned.
    Fresh(T),
    /// No entry.
    Miss,
    /// An entry that no longer answers; it has been removed.
    Stale,
}

impl TokenCache {
    pub fn with_capacity(capacity: usize) -> TokenCache {
        TokenCache {
            map: DashMap::new(),
            capacity: capacity.max(1),
            evictions: AtomicU32::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Looks `key` up. `usable` decides under the shard's read lock whether
    /// the entry still answers (returning `Some`), without cloning it.
    pub(crate) fn get<T>(&self, key: &Key, usable: impl FnOnce(&Entry) -> Option<T>) -> Hit<T> {
        let verdict = match self.map.get(key) {
            None => return Hit::Miss,
            Some(e) => usable(&e),
        };
        match verdict {
            Some(t) => Hit::Fresh(t),
            None => {
                self.map.remove(key);
                Hit::Stale
            }
        }
    }

    /// Adds an entry. When full, expired entries go first; if that frees
    /// too little, about half the entries go too: those with a given bit of
    /// their key (a SHA-256, so a fair coin) set, a different bit each time.
    /// They are only re-verified when seen again.
    pub(crate) fn insert(&self, key: Key, entry: Entry, now: u64) {
        if entry.deadline <= now {
            return;
        }
        if self.map.len() >= self.capacity {
            self.map.retain(|_, e| e.deadline > now);
            if self.map.len() >= self.capacity * 9 / 10 {
                let n = self.evictions.fetch_add(1, Relaxed) as usize;
                let (byte, bit) = (n % 32, (n / 32) % 8);
                self.map.retain(|k, _| k[byte] & (1 << bit) == 0);
            }
        }
        self.map.insert(key, entry);
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.map.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}
