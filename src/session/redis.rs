//! The Redis session store, for several gateway replicas.
//!
//! Layout (all under `key_prefix`):
//! - `session:<hex sha256 of id>`: a hash with `data` (the record as JSON)
//!   and `last_seen` (unix ms), expiring with the session (TTL slides).
//! - `user:<name>`: a set of that user's session hashes (listing, revoke-all).
//! - channel `events`: `session:<hex>` and `user:<name>` announce deletions
//!   so every replica drops its cached copy at once.
//!
//! Each replica caches lookups for `cache_ttl`, so most requests never touch
//! Redis. The cache is used only while the pub/sub subscription is live: a
//! replica that may have missed a revocation asks Redis every time instead.
//! Redis unreachable and nothing fresh cached: the lookup fails and the
//! request gets 503, never a stale yes. The connection manager reconnects by
//! itself; background tasks hold weak references and end with the store.

use super::{Record, SessionKey, SessionStore, SessionView, StoreError};
use crate::clock::Instant;
use crate::config::sessions::Sessions as SessionsConfig;
use dashmap::DashMap;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// Bound on any one Redis command: a request waits at most this long
/// before the store counts as unreachable.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);

struct Cached {
    view: SessionView,
    fetched: Instant,
}

/// What the event subscription reports beyond session deletions: other
/// messages on the channel, and each (re)subscription (state may have been
/// missed while disconnected).
pub enum StoreEvent<'a> {
    Message(&'a str),
    Subscribed,
}

pub type EventHook = Arc<dyn Fn(StoreEvent<'_>) + Send + Sync>;

pub struct RedisStore {
    client: redis::Client,
    conn: OnceLock<ConnectionManager>,
    pub(crate) prefix: String,
    hook: OnceLock<EventHook>,
    ended: OnceLock<Arc<super::Ended>>,
    cache: DashMap<SessionKey, Cached>,
    /// Milliseconds; a reload may change it.
    cache_ttl_ms: AtomicU64,
    reachable: AtomicBool,
    subscribed: AtomicBool,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        StoreError::Unavailable
    } else {
        StoreError::Backend(e)
    }
}

impl RedisStore {
    fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms.load(Relaxed))
    }

    /// Applies a reloaded `sessions.cache_ttl`.
    pub fn set_cache_ttl(&self, ttl: Duration) {
        self.cache_ttl_ms.store(ttl.as_millis() as u64, Relaxed);
    }

    /// Creates the store and its background tasks (connect, subscribe,
    /// health). Start-up never waits for Redis.
    pub fn start(url: &str, cfg: &SessionsConfig) -> Arc<RedisStore> {
        // The URL was checked during config validation.
        let client = redis::Client::open(url).expect("validated Redis URL");
        let store = Arc::new(RedisStore {
            client,
            conn: OnceLock::new(),
            prefix: cfg.key_prefix.clone(),
            cache: DashMap::new(),
            cache_ttl_ms: AtomicU64::new(cfg.cache_ttl.as_millis() as u64),
            reachable: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            hook: OnceLock::new(),
            ended: OnceLock::new(),
        });
        tokio::spawn(connect_loop(Arc::downgrade(&store)));
        tokio::spawn(subscribe_loop(Arc::downgrade(&store)));
        store
    }

    pub fn is_connected(&self) -> bool {
        self.conn.get().is_some()
    }

    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Relaxed)
    }

    pub fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    fn session_key(&self, key: SessionKey) -> String {
        format!("{}session:{}", self.prefix, key.hex())
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}user:{}", self.prefix, user)
    }

    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        self.conn.get().cloned().ok_or(StoreError::Unavailable)
    }

    fn learned_key(&self, upstream: &str, value: &str) -> String {
        format!(
            "{}learn:{upstream}:{}",
            self.prefix,
            crate::crypto::hex(&crate::crypto::sha256(value.as_bytes()))
        )
    }

    /// Sticky learn mode: which backend (`host:port`) issued app cookie
    /// `value`, as any replica learned it. Errors read as "unknown".
    pub async fn learned_get(&self, upstream: &str, value: &str) -> Option<String> {
        let mut p = redis::pipe();
        p.cmd("GET").arg(self.learned_key(upstream, value));
        self.run::<(Option<String>,)>(&p)
            .await
            .ok()
            .and_then(|(v,)| v)
    }

    /// Records a learned app cookie value for every replica, for `ttl`.
    pub async fn learned_put(&self, upstream: &str, value: &str, backend: &str, ttl: Duration) {
        let mut p = redis::pipe();
        p.cmd("SET")
            .arg(self.learned_key(upstream, value))
            .arg(backend)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore();
        if let Err(e) = self.run::<()>(&p).await {
            tracing::debug!(error = %e, "could not share a learned sticky mapping");
        }
    }

    /// Where session deletions announced by other replicas are recorded.
    pub fn set_ended(&self, ended: Arc<super::Ended>) {
        let _ = self.ended.set(ended);
    }

    /// Installs the handler for events other than session deletions (set
    /// once, by the gateway).
    pub fn set_event_hook(&self, hook: EventHook) {
        let _ = self.hook.set(hook);
    }

    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut c = self.conn()?;
        match tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => {
                self.reachable.store(true, Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => {
                let e = unavailable(e);
                if matches!(e, StoreError::Unavailable) {
                    self.reachable.store(false, Relaxed);
                }
                Err(e)
            }
            Err(_) => {
                self.reachable.store(false, Relaxed);
                Err(StoreError::Unavailable)
            }
        }
    }

    /// Sets `<key_prefix><name>` for `ttl` unless it exists; `true` when
    /// this call set it. A single-use marker every replica sees (OIDC
    /// states).
    pub async fn set_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut p = redis::pipe();
        p.cmd("SET")
            .arg(format!("{}{name}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let (set,): (Option<String>,) = self.run(&p).await?;
        Ok(set.is_some())
    }

    fn forget(&self, msg: &str) {
        if let Some(hex) = msg.strip_prefix("session:") {
            if let Some(k) = SessionKey::from_hex(hex) {
                self.cache.remove(&k);
                if let Some(e) = self.ended.get() {
                    e.session(k);
                }
            }
        } else if let Some(user) = msg.strip_prefix("user:") {
            self.cache.retain(|_, c| c.view.record.user != user);
            if let Some(e) = self.ended.get() {
                e.user(user);
            }
        } else if let Some(h) = self.hook.get() {
            h(StoreEvent::Message(msg));
        }
    }
}

/// A session from its hash fields: `data`, `last_seen`, `pin:<upstream>`.
fn view_from_fields(fields: Vec<(String, String)>) -> Result<Option<SessionView>, StoreError> {
    let mut data = None;
    let mut last_seen = 0;
    let mut pins = Vec::new();
    for (k, v) in fields {
        match k.as_str() {
            "data" => data = Some(v),
            "last_seen" => last_seen = v.parse().unwrap_or(0),
            _ => {
                if let Some(up) = k.strip_prefix("pin:") {
                    pins.push((up.to_string(), v));
                }
            }
        }
    }
    let Some(data) = data else { return Ok(None) };
    let mut record: Record = serde_json::from_str(&data).map_err(StoreError::Corrupt)?;
    record.backends.extend(pins);
    Ok(Some(SessionView::new(record, last_seen)))
}

async fn connect_loop(weak: Weak<RedisStore>) {
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    loop {
        let Some(s) = weak.upgrade() else { return };
        if s.conn.get().is_none() {
            match ConnectionManager::new_with_config(s.client.clone(), cfg.clone()).await {
                Ok(c) => {
                    let _ = s.conn.set(c);
                    s.reachable.store(true, Relaxed);
                    tracing::info!("connected to the Redis session store");
                }
                Err(e) => tracing::warn!(error = %e, "Redis session store unreachable; retrying"),
            }
        }
        // Health: PING once a second keeps `reachable` honest for /readyz.
        if s.conn.get().is_some() {
            let mut p = redis::pipe();
            p.cmd("PING");
            let _ = s.run::<(String,)>(&p).await;
        }
        // Cached entries older than the TTL are useless; drop them.
        let ttl = s.cache_ttl();
        s.cache.retain(|_, c| c.fetched.elapsed() < ttl);
        drop(s);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn subscribe_loop(weak: Weak<RedisStore>) {
    loop {
        let Some(s) = weak.upgrade() else { return };
        let client = s.client.clone();
        let channel = s.channel();
        drop(s);
        let sub = tokio::time::timeout(COMMAND_TIMEOUT, async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        })
        .await;
        if let Ok(Ok(ps)) = sub {
            if let Some(s) = weak.upgrade() {
                // Events may have been missed while unsubscribed.
                s.cache.clear();
                s.subscribed.store(true, Relaxed);
                if let Some(h) = s.hook.get() {
                    h(StoreEvent::Subscribed);
                }
            }
            let mut messages = ps.into_on_message();
            while let Some(msg) = messages.next().await {
                let Some(s) = weak.upgrade() else { return };
                if let Ok(text) = msg.get_payload::<String>() {
                    s.forget(&text);
                }
            }
            if let Some(s) = weak.upgrade() {
                s.subscribed.store(false, Relaxed);
                s.cache.clear();
                tracing::warn!("lost the Redis event subscription; reconnecting");
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl SessionStore for RedisStore {
    async fn create(
        &self,
        key: SessionKey,
        record: Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(&record).map_err(StoreError::Corrupt)?;
        let k = self.session_key(key);
        let u = self.user_key(&record.user);
        let mut p = redis::pipe();
        p.hset_multiple(
            &k,
            &[
                ("data", json.as_str()),
                ("last_seen", &record.created_ms.to_string()),
            ],
        )
        .ignore()
        .pexpire(&k, ttl.as_millis() as i64)
        .ignore()
        .sadd(&u, key.hex())
        .ignore()
        .cmd("PEXPIRE")
        .arg(&u)
        .arg(ttl.as_millis().max(1) as i64)
        .arg("GT")
        .ignore()
        // A fresh index key has no TTL for GT to compare against.
        .cmd("PEXPIRE")
        .arg(&u)
        .arg(ttl.as_millis().max(1) as i64)
        .arg("NX")
        .ignore();
        self.run::<()>(&p).await
    }

    async fn get(&self, key: SessionKey) -> Result<Option<SessionView>, StoreError> {
        if self.subscribed.load(Relaxed) {
            if let Some(c) = self.cache.get(&key) {
                if c.fetched.elapsed() < self.cache_ttl() {
                    return Ok(Some(c.view.clone()));
                }
            }
        }
        let mut p = redis::pipe();
        p.hgetall(self.session_key(key));
        let (fields,): (Vec<(String, String)>,) = self.run(&p).await?;
        let Some(view) = view_from_fields(fields)? else {
            self.cache.remove(&key);
            return Ok(None);
        };
        self.cache.insert(
            key,
            Cached {
                view: view.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(Some(view))
    }

    async fn touch(&self, key: SessionKey, now: u64, ttl: Duration) -> Result<(), StoreError> {
        let k = self.session_key(key);
        let mut p = redis::pipe();
        p.cmd("HSET")
            .arg(&k)
            .arg("last_seen")
            .arg(now)
            .ignore()
            .pexpire(&k, ttl.as_millis() as i64)
            .ignore();
        self.run::<()>(&p).await?;
        if let Some(mut c) = self.cache.get_mut(&key) {
            c.view.last_seen_ms = now;
        }
        Ok(())
    }

    async fn delete(&self, key: SessionKey) -> Result<Option<std::sync::Arc<Record>>, StoreError> {
        let k = self.session_key(key);
        let mut p = redis::pipe();
        p.cmd("HGET").arg(&k).arg("data").del(&k).ignore();
        let (data,): (Option<String>,) = self.run(&p).await?;
        let record = data.and_then(|d| serde_json::from_str::<Record>(&d).ok());
        let mut p = redis::pipe();
        if let Some(r) = &record {
            p.srem(self.user_key(&r.user), key.hex()).ignore();
        }
        p.publish(self.channel(), format!("session:{}", key.hex()))
            .ignore();
        self.run::<()>(&p).await?;
        self.cache.remove(&key);
        Ok(record.map(Arc::new))
    }

    async fn list_user(&self, user: &str) -> Result<Vec<(SessionKey, SessionView)>, StoreError> {
        let mut p = redis::pipe();
        p.smembers(self.user_key(user));
        let (members,): (Vec<String>,) = self.run(&p).await?;
        let keys: Vec<SessionKey> = members
            .iter()
            .filter_map(|h| SessionKey::from_hex(h))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for k in &keys {
            p.hgetall(self.session_key(*k));
        }
        let rows: Vec<Vec<(String, String)>> = self.run(&p).await?;
        let mut out = Vec::new();
        let mut stale = redis::pipe();
        for (k, fields) in keys.into_iter().zip(rows) {
            match view_from_fields(fields).ok().flatten() {
                Some(v) => out.push((k, v)),
                None => {
                    stale.srem(self.user_key(user), k.hex()).ignore();
                }
            }
        }
        let _ = self.run::<()>(&stale).await;
        Ok(out)
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let u = self.user_key(user);
        let mut p = redis::pipe();
        p.smembers(&u);
        let (members,): (Vec<String>,) = self.run(&p).await?;
        let mut p = redis::pipe();
        for h in &members {
            p.del(format!("{}session:{h}", self.prefix));
        }
        p.del(&u).ignore();
        p.publish(self.channel(), format!("user:{user}")).ignore();
        let deleted: Vec<i64> = self.run(&p).await?;
        self.cache.retain(|_, c| c.view.record.user != user);
        Ok(deleted.iter().filter(|n| **n > 0).count())
    }

    async fn pin_backend(
        &self,
        key: SessionKey,
        upstream: &str,
        backend: &str,
    ) -> Result<(), StoreError> {
        // Only into a session that still exists: a plain HSET would revive
        // a deleted one as a key without data or TTL.
        let mut p = redis::pipe();
        p.cmd("EVAL")
            .arg("if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return 0")
            .arg(1)
            .arg(self.session_key(key))
            .arg(format!("pin:{upstream}"))
            .arg(backend)
            .ignore();
        self.run::<()>(&p).await?;
        if let Some(mut c) = self.cache.get_mut(&key) {
            let mut r = (*c.view.record).clone();
            r.backends.insert(upstream.to_string(), backend.to_string());
            c.view.record = Arc::new(r);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut p = redis::pipe();
        p.cmd("PING");
        self.run::<(String,)>(&p).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reload_applies_a_new_cache_ttl_to_the_running_store() {
        let cfg = SessionsConfig {
            cache_ttl: Duration::from_millis(500),
            ..Default::default()
        };
        // Nothing listens there: the store starts without Redis anyway.
        let store = super::super::Store::Redis(RedisStore::start("redis://127.0.0.1:1/0", &cfg));
        let super::super::Store::Redis(r) = &store else {
            unreachable!()
        };
        assert_eq!(r.cache_ttl(), Duration::from_millis(500));
        store.apply(&SessionsConfig {
            cache_ttl: Duration::from_secs(3),
            ..Default::default()
        });
        assert_eq!(r.cache_ttl(), Duration::from_secs(3));
    }
}
