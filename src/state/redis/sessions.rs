//! Sessions, their per-user and per-`sid` indexes, sticky pins and learned
//! sticky mappings in Redis (keys: see `keys.rs`). Lookups go through the
//! replica's cache while the event feed is live (see the module doc of
//! `super`). Index entries last until their session's absolute end (the
//! session's own TTL slides); one whose session is gone is skipped and
//! pruned by the next listing.

use super::{Cached, RedisStore};
use crate::revocation::Event;
use crate::session::{Record, SessionKey, SessionView};
use crate::state::{SessionStore, StoreError};
use std::sync::Arc;
use std::time::Duration;

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

impl RedisStore {
    /// Sticky learn mode: which backend (`host:port`) issued app cookie
    /// `value`, as any replica learned it. Errors read as "unknown".
    pub async fn learned_get(&self, upstream: &str, value: &str) -> Option<String> {
        let mut p = redis::pipe();
        p.cmd("GET").arg(self.keys.learned(upstream, value));
        self.run::<(Option<String>,)>(&p)
            .await
            .ok()
            .and_then(|(v,)| v)
    }

    /// Records a learned app cookie value for every replica, for `ttl`.
    pub async fn learned_put(&self, upstream: &str, value: &str, backend: &str, ttl: Duration) {
        let mut p = redis::pipe();
        p.cmd("SET")
            .arg(self.keys.learned(upstream, value))
            .arg(backend)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore();
        if let Err(e) = self.run::<()>(&p).await {
            tracing::debug!(error = %e, "could not share a learned sticky mapping");
        }
    }

    /// The `sid` index a session is listed in, if it has one.
    fn sid_index(&self, record: &Record) -> Option<String> {
        let provider = crate::session::oidc_provider(record)?;
        Some(self.keys.oidc_sid(provider, record.sid.as_deref()?))
    }

    /// The live sessions in index set `index` whose record `keep`s; the
    /// entries whose session is gone are pruned.
    async fn list_index(
        &self,
        index: &str,
        keep: impl Fn(&Record) -> bool,
    ) -> Result<Vec<(SessionKey, SessionView)>, StoreError> {
        let mut p = redis::pipe();
        p.smembers(index);
        let (members,): (Vec<String>,) = self.run(&p).await?;
        let keys: Vec<SessionKey> = members
            .iter()
            .filter_map(|h| SessionKey::from_hex(h))
            .collect();
        // One read per session: each has its own tag (slot).
        let reads = keys.iter().map(|k| async move {
            let mut p = redis::pipe();
            p.hgetall(self.keys.session(*k));
            self.run::<(Vec<(String, String)>,)>(&p).await
        });
        let rows = futures_util::future::join_all(reads).await;
        let mut out = Vec::new();
        let mut stale = redis::pipe();
        for (k, row) in keys.into_iter().zip(rows) {
            let (fields,) = row?;
            match view_from_fields(fields).ok().flatten() {
                Some(v) if keep(&v.record) => out.push((k, v)),
                Some(_) => {}
                None => {
                    stale.srem(index, k.hex()).ignore();
                }
            }
        }
        let _ = self.run::<()>(&stale).await;
        Ok(out)
    }

    /// Adds `member` to index set `key`, which lives at least `ttl` more.
    fn index_add(p: &mut redis::Pipeline, key: &str, member: &str, ttl: Duration) {
        let ms = ttl.as_millis().max(1) as i64;
        p.sadd(key, member)
            .ignore()
            .cmd("PEXPIRE")
            .arg(key)
            .arg(ms)
            .arg("GT")
            .ignore()
            // A fresh index key has no TTL for GT to compare against.
            .cmd("PEXPIRE")
            .arg(key)
            .arg(ms)
            .arg("NX")
            .ignore();
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
        let k = self.keys.session(key);
        let index_ttl = self.index_ttl(record.created_ms, ttl);
        // Index first: a session never exists unlisted (revoke-all and
        // back-channel logout find it); an index entry without its session
        // is skipped and pruned.
        let mut index = redis::pipe();
        Self::index_add(
            &mut index,
            &self.keys.user_sessions(&record.user),
            &key.hex(),
            index_ttl,
        );
        self.run::<()>(&index).await?;
        if let Some(sid_key) = self.sid_index(&record) {
            // Another tag: a pipeline of its own.
            let mut index = redis::pipe();
            Self::index_add(&mut index, &sid_key, &key.hex(), index_ttl);
            self.run::<()>(&index).await?;
        }
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
        .ignore();
        self.run::<()>(&p).await
    }

    async fn get(&self, key: SessionKey) -> Result<Option<SessionView>, StoreError> {
        if self.subscribed.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(c) = self.cache.get(&key) {
                if c.fetched.elapsed() < self.cache_ttl() {
                    return Ok(Some(c.view.clone()));
                }
            }
        }
        let mut p = redis::pipe();
        p.hgetall(self.keys.session(key));
        let (fields,): (Vec<(String, String)>,) = self.run(&p).await?;
        let Some(view) = view_from_fields(fields)? else {
            self.cache.remove(&key);
            return Ok(None);
        };
        self.cache.insert(
            key,
            Cached {
                view: view.clone(),
                fetched: tokio::time::Instant::now(),
            },
        );
        Ok(Some(view))
    }

    async fn touch(&self, key: SessionKey, now: u64, ttl: Duration) -> Result<(), StoreError> {
        let k = self.keys.session(key);
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

    async fn delete(&self, key: SessionKey) -> Result<Option<Arc<Record>>, StoreError> {
        let k = self.keys.session(key);
        let mut p = redis::pipe();
        p.cmd("HGET").arg(&k).arg("data").del(&k).ignore();
        let (data,): (Option<String>,) = self.run(&p).await?;
        let record = data.and_then(|d| serde_json::from_str::<Record>(&d).ok());
        if let Some(r) = &record {
            let mut p = redis::pipe();
            p.srem(self.keys.user_sessions(&r.user), key.hex()).ignore();
            self.run::<()>(&p).await?;
            if let Some(sid_key) = self.sid_index(r) {
                let mut p = redis::pipe();
                p.srem(sid_key, key.hex()).ignore();
                self.run::<()>(&p).await?;
            }
        }
        // Alone: in a cluster the channel name routes like a key.
        self.publish(&Event::Session(key).encode()).await?;
        self.cache.remove(&key);
        Ok(record.map(Arc::new))
    }

    async fn list_user(&self, user: &str) -> Result<Vec<(SessionKey, SessionView)>, StoreError> {
        self.list_index(&self.keys.user_sessions(user), |_| true)
            .await
    }

    async fn list_sid(
        &self,
        provider: &str,
        sid: &str,
    ) -> Result<Vec<(SessionKey, SessionView)>, StoreError> {
        // The key holds a digest of the sid: the records are checked.
        self.list_index(&self.keys.oidc_sid(provider, sid), |r| {
            crate::session::oidc_provider(r) == Some(provider) && r.sid.as_deref() == Some(sid)
        })
        .await
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let index = self.keys.user_sessions(user);
        let mut p = redis::pipe();
        p.smembers(&index);
        let (members,): (Vec<String>,) = self.run(&p).await?;
        let deletes = members.iter().map(|h| async move {
            let mut p = redis::pipe();
            p.del(self.keys.session_hex(h));
            self.run::<(i64,)>(&p).await
        });
        let mut deleted = 0;
        for r in futures_util::future::join_all(deletes).await {
            deleted += usize::from(r?.0 > 0);
        }
        let mut p = redis::pipe();
        p.del(&index).ignore();
        self.run::<()>(&p).await?;
        self.publish(&Event::User(user.to_string()).encode())
            .await?;
        self.cache.retain(|_, c| c.view.record.user != user);
        Ok(deleted)
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
            .arg(self.keys.session(key))
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
}
