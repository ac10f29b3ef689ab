//! The in-memory session store: the embedded default for one process.
//!
//! Shared state: `sessions` (DashMap, sharded locks held only for a map
//! operation, never across an await) and a per-user index for listing and
//! revoke-all. Readers are request tasks; writers are logins, logouts, the
//! idle-deadline slide (an atomic store, no map write) and the sweeper,
//! which removes expired entries so memory stays bounded by live sessions.
//! The sweeper holds a weak reference and ends when the store is dropped.

use super::{now_ms, Record, SessionKey, SessionStore, SessionView, StoreError};
use crate::auth::Identity;
use crate::config::sessions::Sessions as SessionsConfig;
use crate::metrics::Metrics;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

struct Entry {
    record: Arc<Record>,
    identity: Arc<Identity>,
    last_seen_ms: AtomicU64,
    /// When the store may forget it (unix ms).
    drop_at_ms: AtomicU64,
}

pub struct MemoryStore {
    sessions: DashMap<SessionKey, Entry>,
    by_user: DashMap<String, Vec<SessionKey>>,
    metrics: Arc<Metrics>,
}

impl MemoryStore {
    pub fn start(cfg: &SessionsConfig, metrics: Arc<Metrics>) -> Arc<MemoryStore> {
        let store = Arc::new(MemoryStore {
            sessions: DashMap::new(),
            by_user: DashMap::new(),
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

    /// Removes every session past its deadline.
    pub fn sweep(&self, now: u64) {
        let mut gone: Vec<(String, SessionKey)> = Vec::new();
        self.sessions.retain(|k, e| {
            let keep = now < e.drop_at_ms.load(Relaxed);
            if !keep {
                gone.push((e.record.user.clone(), *k));
            }
            keep
        });
        for (user, key) in gone {
            self.unindex(&user, key);
        }
        self.metrics
            .sessions_active
            .store(self.sessions.len() as i64, Relaxed);
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn unindex(&self, user: &str, key: SessionKey) {
        if let dashmap::mapref::entry::Entry::Occupied(mut e) = self.by_user.entry(user.to_string())
        {
            e.get_mut().retain(|k| *k != key);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    fn view(e: &Entry) -> SessionView {
        SessionView {
            record: e.record.clone(),
            identity: e.identity.clone(),
            last_seen_ms: e.last_seen_ms.load(Relaxed),
        }
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
        let user = record.user.clone();
        let identity = Arc::new(record.identity());
        self.sessions.insert(
            key,
            Entry {
                record: Arc::new(record),
                identity,
                last_seen_ms: AtomicU64::new(now),
                drop_at_ms: AtomicU64::new(now + ttl.as_millis() as u64),
            },
        );
        self.by_user.entry(user).or_default().push(key);
        self.metrics
            .sessions_active
            .store(self.sessions.len() as i64, Relaxed);
        Ok(())
    }

    async fn get(&self, key: SessionKey) -> Result<Option<SessionView>, StoreError> {
        let now = now_ms();
        Ok(self
            .sessions
            .get(&key)
            .filter(|e| now < e.drop_at_ms.load(Relaxed))
            .map(|e| Self::view(&e)))
    }

    async fn touch(&self, key: SessionKey, now: u64, ttl: Duration) -> Result<(), StoreError> {
        if let Some(e) = self.sessions.get(&key) {
            e.last_seen_ms.store(now, Relaxed);
            e.drop_at_ms.store(now + ttl.as_millis() as u64, Relaxed);
        }
        Ok(())
    }

    async fn delete(&self, key: SessionKey) -> Result<Option<Arc<Record>>, StoreError> {
        let removed = self.sessions.remove(&key).map(|(_, e)| e.record);
        if let Some(r) = &removed {
            self.unindex(&r.user, key);
        }
        self.metrics
            .sessions_active
            .store(self.sessions.len() as i64, Relaxed);
        Ok(removed)
    }

    async fn list_user(&self, user: &str) -> Result<Vec<(SessionKey, SessionView)>, StoreError> {
        let keys = self
            .by_user
            .get(user)
            .map(|v| v.clone())
            .unwrap_or_default();
        let now = now_ms();
        Ok(keys
            .into_iter()
            .filter_map(|k| {
                self.sessions
                    .get(&k)
                    .filter(|e| now < e.drop_at_ms.load(Relaxed))
                    .map(|e| (k, Self::view(&e)))
            })
            .collect())
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let keys = self
            .by_user
            .remove(user)
            .map(|(_, v)| v)
            .unwrap_or_default();
        let n = keys
            .iter()
            .filter(|k| self.sessions.remove(k).is_some())
            .count();
        self.metrics
            .sessions_active
            .store(self.sessions.len() as i64, Relaxed);
        Ok(n)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn pin_backend(
        &self,
        key: SessionKey,
        upstream: &str,
        backend: &str,
    ) -> Result<(), StoreError> {
        if let Some(mut e) = self.sessions.get_mut(&key) {
            let mut r = (*e.record).clone();
            r.backends.insert(upstream.to_string(), backend.to_string());
            e.record = Arc::new(r);
        }
        Ok(())
    }
}
