//! The Redis side of the shared state (SPEC 10, 13), for several gateway
//! replicas: the connection in its three forms, the event feed between
//! replicas, and health. What is stored where is in [`keys`]; the
//! operations are in `sessions.rs`, `refresh.rs` and `lockout.rs`.
//!
//! Forms:
//! - standalone (`redis_url`, `rediss://` for TLS): one multiplexed
//!   connection that reconnects by itself (the crate's connection manager);
//! - Sentinel: the sentinels name the master; the health loop asks them
//!   again whenever the master stops answering like one (and every few
//!   seconds anyway), and moves the connection to the promoted replica;
//! - Cluster: the crate's cluster connection, which follows `MOVED`/`ASK`
//!   and failovers inside the cluster. Every pipeline and script touches
//!   one hash tag (see [`keys`]).
//!
//! Each replica caches session lookups for `cache_ttl`, so most requests
//! never touch Redis. The cache is used only while the event subscription
//! is live: a replica that may have missed a revocation asks Redis every
//! time instead. Redis unreachable and nothing fresh cached: the lookup
//! fails and the request gets 503, never a stale yes.
//!
//! Who owns what: [`RedisStore`] owns the connection (swapped whole by the
//! health loop, read by every command), the session cache and the health
//! flags. Events from other replicas go straight to the
//! [`Revocation`](crate::revocation::Revocation) given at construction.
//! Background tasks hold weak references and end with the store.

pub mod keys;
pub mod lockout;
pub mod refresh;
pub mod sessions;

use super::StoreError;
use crate::config::store::{RedisForm, RedisSettings};
use crate::revocation::{Event, Revocation};
use crate::session::SessionKey;
use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Bound on any one Redis command: a request waits at most this long
/// before the store counts as unreachable.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);

/// How often the health loop runs (PING, reconnects, sentinel checks).
const HEALTH_EVERY: Duration = Duration::from_millis(500);

/// A healthy Sentinel setup still asks the sentinels this often: a master
/// that was demoted without going away keeps answering PING.
const SENTINEL_RECHECK: Duration = Duration::from_secs(5);

/// The live connection: one node (standalone, or Sentinel's current
/// master) or a cluster.
#[derive(Clone)]
enum Conn {
    Node {
        conn: ConnectionManager,
        /// `host:port`, for `/readyz` and logs.
        addr: String,
    },
    Cluster(redis::cluster_async::ClusterConnection),
}

pub(super) struct Cached {
    view: crate::session::SessionView,
    fetched: tokio::time::Instant,
}

pub struct RedisStore {
    settings: Arc<RedisSettings>,
    keys: keys::Keys,
    conn: ArcSwapOption<Conn>,
    revocation: Arc<Revocation>,
    cache: DashMap<SessionKey, Cached>,
    /// Milliseconds; a reload may change it.
    cache_ttl_ms: AtomicU64,
    /// `sessions.absolute_timeout` in milliseconds (a reload may change
    /// it): how long a session's index entries must last, since the
    /// session's own TTL slides with use and the indexes' does not.
    absolute_ms: AtomicU64,
    reachable: AtomicBool,
    subscribed: AtomicBool,
    /// A command saw the node refuse writes (a demoted master) or vanish:
    /// the health loop asks the sentinels now rather than later.
    suspect: AtomicBool,
    /// Why the store is not ready, for `/readyz` (no credentials in it).
    problem: Mutex<Option<String>>,
}

/// Whether an error means "the store cannot be reached right now" (503)
/// rather than a bad command. A demoted master (`READONLY`) and a cluster
/// in the middle of a failover count as unreachable: the answer would be
/// stale or refused.
fn unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(
                redis::ServerErrorKind::ReadOnly
                    | redis::ServerErrorKind::MasterDown
                    | redis::ServerErrorKind::TryAgain
                    | redis::ServerErrorKind::ClusterDown
            )
        )
}

impl RedisStore {
    /// Creates the store and its background tasks (connect and health,
    /// subscribe). Start-up never waits for Redis.
    pub fn start(
        settings: Arc<RedisSettings>,
        cfg: &crate::config::sessions::Sessions,
        revocation: Arc<Revocation>,
    ) -> Arc<RedisStore> {
        let store = Arc::new(RedisStore {
            settings,
            keys: keys::Keys::new(&cfg.key_prefix),
            conn: ArcSwapOption::empty(),
            revocation,
            cache: DashMap::new(),
            cache_ttl_ms: AtomicU64::new(cfg.cache_ttl.as_millis() as u64),
            absolute_ms: AtomicU64::new(cfg.absolute_timeout.as_millis() as u64),
            reachable: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            suspect: AtomicBool::new(false),
            problem: Mutex::new(Some("not connected yet".into())),
        });
        tokio::spawn(health_loop(Arc::downgrade(&store)));
        tokio::spawn(subscribe_loop(Arc::downgrade(&store)));
        store
    }

    pub(super) fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms.load(Relaxed))
    }

    /// Applies a reloaded `sessions.cache_ttl`.
    pub fn set_cache_ttl(&self, ttl: Duration) {
        self.cache_ttl_ms.store(ttl.as_millis() as u64, Relaxed);
    }

    /// Applies a reloaded `sessions.absolute_timeout`.
    pub fn set_absolute_timeout(&self, d: Duration) {
        self.absolute_ms.store(d.as_millis() as u64, Relaxed);
    }

    /// How long an index entry for a session created at `created_ms` must
    /// last: until the session's absolute end, however it slides (and at
    /// least `ttl`).
    pub(super) fn index_ttl(&self, created_ms: u64, ttl: Duration) -> Duration {
        let end = created_ms.saturating_add(self.absolute_ms.load(Relaxed));
        let left = end.saturating_sub(crate::session::now_ms());
        ttl.max(Duration::from_millis(left))
    }

    pub fn is_connected(&self) -> bool {
        self.conn.load().is_some()
    }

    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Relaxed)
    }

    /// The form, where it is connected, and what is wrong, for `/readyz`.
    pub fn status(&self) -> String {
        let at = match self.conn.load().as_deref() {
            Some(Conn::Node { addr, .. }) => format!(" at {addr}"),
            Some(Conn::Cluster(_)) => String::new(),
            None => String::new(),
        };
        let problem = self
            .problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match problem {
            Some(p) => format!("redis {}{at}: {p}", self.settings.describe()),
            None => format!("redis {}{at}", self.settings.describe()),
        }
    }

    fn set_problem(&self, p: Option<String>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// Runs one pipeline (or script) against the current connection,
    /// within [`COMMAND_TIMEOUT`]. Every pipeline touches one hash tag.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let Some(conn) = self.conn.load_full() else {
            return Err(StoreError::Unavailable);
        };
        // Boxed: the client's futures (the cluster one above all) run to
        // kilobytes, and every request future that may reach the store
        // would carry that size inline — moved into hyper's box on every
        // request, Redis or not. One allocation per command costs less
        // than the network round trip it waits for.
        let query: std::pin::Pin<
            Box<dyn std::future::Future<Output = redis::RedisResult<T>> + Send + '_>,
        > = Box::pin(async move {
            match &*conn {
                Conn::Node { conn, .. } => cmd.query_async::<T>(&mut conn.clone()).await,
                Conn::Cluster(c) => cmd.query_async::<T>(&mut c.clone()).await,
            }
        });
        let result = tokio::time::timeout(COMMAND_TIMEOUT, query).await;
        match result {
            Ok(Ok(v)) => {
                self.reachable.store(true, Relaxed);
                Ok(v)
            }
            Ok(Err(e)) if unreachable(&e) => {
                self.reachable.store(false, Relaxed);
                self.suspect.store(true, Relaxed);
                Err(StoreError::Unreachable(e))
            }
            Ok(Err(e)) => Err(StoreError::Backend(e)),
            Err(_) => {
                self.reachable.store(false, Relaxed);
                self.suspect.store(true, Relaxed);
                Err(StoreError::Unavailable)
            }
        }
    }

    /// Sets a single-use marker for `ttl` unless it exists; `true` when
    /// this call set it.
    pub async fn set_once(
        &self,
        kind: &str,
        digest: &[u8; 32],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut p = redis::pipe();
        p.cmd("SET")
            .arg(self.keys.once(kind, digest))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let (set,): (Option<String>,) = self.run(&p).await?;
        Ok(set.is_some())
    }

    /// Announces `event` to every replica (this one hears it too).
    /// `text` is an encoded [`Event`].
    pub async fn publish(&self, text: &str) -> Result<(), StoreError> {
        let mut p = redis::pipe();
        p.cmd("PUBLISH").arg(self.keys.channel()).arg(text).ignore();
        self.run::<()>(&p).await
    }

    /// An event from the feed: drop what the cache knows of it, then put
    /// it in place.
    fn heard(&self, text: &str) {
        let Some(event) = Event::parse(text) else {
            return;
        };
        match &event {
            Event::Session(k) => {
                self.cache.remove(k);
            }
            Event::User(u) => self.cache.retain(|_, c| c.view.record.user != *u),
            Event::Token(_) => {}
        }
        self.revocation.apply(&event);
    }

    /// After every (re)subscription: events may have been missed, so the
    /// cache goes, watched connections look again, and the token
    /// revocations in force are read back.
    async fn resubscribed(self: Arc<Self>) {
        self.cache.clear();
        self.revocation.resync();
        // The command connection may still be reconnecting after the same
        // outage: retry for a while.
        for attempt in 0..50u32 {
            match refresh::load_revocations(&self).await {
                Ok(events) => {
                    for e in &events {
                        self.revocation.apply(e);
                    }
                    tracing::debug!(count = events.len(), "revocations reloaded from Redis");
                    return;
                }
                Err(e) if attempt == 49 => {
                    tracing::warn!(error = %e, "could not reload revocations from Redis")
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether `url` is a Redis URL, and if so whether it asks for TLS
/// (`rediss://`); for config validation.
pub fn url_uses_tls(url: &str) -> Option<bool> {
    redis::IntoConnectionInfo::into_connection_info(url)
        .ok()
        .map(|info| matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }))
}

/// A client for one node (`host:port`) with the configured credentials and
/// TLS; `db` selects the database (not for clusters).
fn node_client(s: &RedisSettings, addr: &str, db: i64) -> redis::RedisResult<redis::Client> {
    client_at(s, addr, db, Login::Data)
}

/// Whom a connection logs in as: a data node (the ACL user and
/// `redis_password*`) or a sentinel (`sentinel_password*`).
#[derive(Clone, Copy)]
enum Login {
    Data,
    Sentinel,
}

/// A client for `host:port` (database `db`; 0 selects none) with TLS as
/// configured.
fn client_at(
    s: &RedisSettings,
    addr: &str,
    db: i64,
    login: Login,
) -> redis::RedisResult<redis::Client> {
    let scheme = if s.tls { "rediss" } else { "redis" };
    let info = redis::IntoConnectionInfo::into_connection_info(
        format!("{scheme}://{addr}/{db}").as_str(),
    )?;
    client_for(s, info, login)
}

/// `info` with the configured credentials for `login` (they win over a
/// URL's), as a client with the configured CA.
fn client_for(
    s: &RedisSettings,
    info: redis::ConnectionInfo,
    login: Login,
) -> redis::RedisResult<redis::Client> {
    let mut redis = info.redis_settings().clone();
    let (user, password) = match login {
        Login::Data => (s.username.as_deref(), s.password.as_ref()),
        Login::Sentinel => (None, s.sentinel_password.as_ref()),
    };
    if let Some(u) = user {
        redis = redis.set_username(u);
    }
    if let Some(p) = password {
        redis = redis.set_password(String::from_utf8_lossy(&p.0));
    }
    let info = info.set_redis_settings(redis);
    match &s.ca_pem {
        Some(pem) if s.tls => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
        _ => redis::Client::open(info),
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1))
}

/// The client of the node to use now: the URL's, or the master the
/// sentinels name.
async fn current_node(s: &RedisSettings) -> Result<(redis::Client, String), String> {
    match &s.form {
        RedisForm::Standalone { url } => {
            let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
                .map_err(|_| "invalid redis_url".to_string())?;
            let addr = info.addr().to_string();
            let client = client_for(s, info, Login::Data).map_err(|e| e.to_string())?;
            Ok((client, addr))
        }
        RedisForm::Sentinel { master, nodes, db } => {
            let addr = ask_sentinels(s, master, nodes).await?;
            let client = node_client(s, &addr, *db).map_err(|e| e.to_string())?;
            Ok((client, addr))
        }
        RedisForm::Cluster { .. } => Err("not a single node".into()),
    }
}

/// `SENTINEL get-master-addr-by-name`, asked of each sentinel in turn; the
/// first answer wins.
async fn ask_sentinels(
    s: &RedisSettings,
    master: &str,
    nodes: &[String],
) -> Result<String, String> {
    let mut last = String::from("no sentinel answered");
    for node in nodes {
        let client = client_at(s, node, 0, Login::Sentinel);
        let ask = async {
            let mut c = client?.get_multiplexed_async_connection().await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query_async::<Option<(String, u16)>>(&mut c)
                .await
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, ask).await {
            Ok(Ok(Some((host, port)))) => return Ok(format!("{host}:{port}")),
            Ok(Ok(None)) => last = format!("sentinel {node} knows no master `{master}`"),
            Ok(Err(e)) => last = format!("sentinel {node}: {e}"),
            Err(_) => last = format!("sentinel {node}: timed out"),
        }
    }
    Err(last)
}

/// Connects in the configured form.
async fn connect(s: &RedisSettings) -> Result<Conn, String> {
    match &s.form {
        RedisForm::Cluster { nodes } => {
            let scheme = if s.tls { "rediss" } else { "redis" };
            let mut b = redis::cluster::ClusterClientBuilder::new(
                nodes.iter().map(|n| format!("{scheme}://{n}")),
            )
            .connection_timeout(COMMAND_TIMEOUT)
            .response_timeout(COMMAND_TIMEOUT)
            .retries(2);
            if let Some(u) = &s.username {
                b = b.username(u);
            }
            if let Some(p) = &s.password {
                b = b.password(String::from_utf8_lossy(&p.0));
            }
            if s.tls {
                b = b.tls(redis::TlsMode::Secure);
                if let Some(pem) = &s.ca_pem {
                    b = b.certs(redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.clone()),
                    });
                }
            }
            let client = b.build().map_err(|e| e.to_string())?;
            let conn = tokio::time::timeout(COMMAND_TIMEOUT * 3, client.get_async_connection())
                .await
                .map_err(|_| "timed out connecting to the cluster".to_string())?
                .map_err(|e| e.to_string())?;
            Ok(Conn::Cluster(conn))
        }
        _ => {
            let (client, addr) = current_node(s).await?;
            let conn = tokio::time::timeout(
                COMMAND_TIMEOUT * 2,
                ConnectionManager::new_with_config(client, manager_config()),
            )
            .await
            .map_err(|_| format!("timed out connecting to {addr}"))?
            .map_err(|e| format!("{addr}: {e}"))?;
            Ok(Conn::Node { conn, addr })
        }
    }
}

/// Connects, keeps `reachable` honest with a PING every
/// [`HEALTH_EVERY`], follows Sentinel failovers, and drops cache entries
/// past their TTL.
async fn health_loop(weak: Weak<RedisStore>) {
    let mut last_sentinel_check = tokio::time::Instant::now();
    loop {
        let Some(s) = weak.upgrade() else { return };
        if s.conn.load().is_none() {
            match connect(&s.settings).await {
                Ok(c) => {
                    s.conn.store(Some(Arc::new(c)));
                    s.set_problem(None);
                    tracing::info!(store = %s.status(), "connected to the Redis store");
                }
                Err(e) => {
                    tracing::warn!(store = %s.settings.describe(), error = %e, "Redis store unreachable; retrying");
                    s.reachable.store(false, Relaxed);
                    s.set_problem(Some(e));
                }
            }
        }
        if s.conn.load().is_some() {
            let mut p = redis::pipe();
            p.cmd("PING");
            match s.run::<(String,)>(&p).await {
                Ok(_) => s.set_problem(None),
                Err(e) => {
                    let mut why = e.to_string();
                    // A cluster: say how much of it answers (SPEC 13).
                    if let RedisForm::Cluster { nodes } = &s.settings.form {
                        let up = seeds_answering(&s.settings, nodes).await;
                        why = format!("{up} of {} seed nodes answer; {why}", nodes.len());
                    }
                    s.set_problem(Some(why));
                }
            }
        }
        // Sentinel: a master that stopped answering, refused a write, or
        // simply has not been checked for a while: ask who the master is.
        if let RedisForm::Sentinel { master, nodes, .. } = &s.settings.form {
            let due = s.suspect.swap(false, Relaxed)
                || !s.is_reachable()
                || last_sentinel_check.elapsed() >= SENTINEL_RECHECK;
            if due {
                last_sentinel_check = tokio::time::Instant::now();
                match ask_sentinels(&s.settings, master, nodes).await {
                    Ok(addr) => {
                        let moved = match s.conn.load().as_deref() {
                            Some(Conn::Node { addr: now, .. }) => *now != addr,
                            _ => false,
                        };
                        if moved {
                            tracing::warn!(master = %addr, "Sentinel names a new master; moving there");
                            s.reachable.store(false, Relaxed);
                            s.conn.store(None);
                            // Reconnect at once, on the next turn.
                            drop(s);
                            continue;
                        }
                    }
                    Err(e) => s.set_problem(Some(e)),
                }
            }
        }
        let ttl = s.cache_ttl();
        s.cache.retain(|_, c| c.fetched.elapsed() < ttl);
        drop(s);
        tokio::time::sleep(HEALTH_EVERY).await;
    }
}

/// How many of the cluster's seed nodes answer a PING, each asked on its
/// own connection (for `/readyz` when the cluster does not answer).
async fn seeds_answering(s: &RedisSettings, nodes: &[String]) -> usize {
    let pings = nodes.iter().map(|n| async move {
        let ping = async {
            let mut c = node_client(s, n, 0)?
                .get_multiplexed_async_connection()
                .await?;
            redis::cmd("PING").query_async::<String>(&mut c).await
        };
        matches!(tokio::time::timeout(COMMAND_TIMEOUT, ping).await, Ok(Ok(_)))
    });
    futures_util::future::join_all(pings)
        .await
        .into_iter()
        .filter(|up| *up)
        .count()
}

/// The pub/sub connection for the event feed: the standalone node, the
/// master the sentinels name, or the next cluster node in turn (a
/// cluster delivers a PUBLISH to subscribers on every node).
async fn feed_client(s: &RedisSettings, turn: usize) -> Result<redis::Client, String> {
    match &s.form {
        RedisForm::Cluster { nodes } => {
            node_client(s, &nodes[turn % nodes.len()], 0).map_err(|e| e.to_string())
        }
        _ => current_node(s).await.map(|(c, _)| c),
    }
}

async fn subscribe_loop(weak: Weak<RedisStore>) {
    let mut turn = 0usize;
    loop {
        let Some(s) = weak.upgrade() else { return };
        let settings = s.settings.clone();
        let channel = s.keys.channel();
        drop(s);
        turn = turn.wrapping_add(1);
        let sub = tokio::time::timeout(COMMAND_TIMEOUT * 2, async {
            let client = feed_client(&settings, turn).await?;
            let mut ps = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
            ps.subscribe(&channel).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(ps)
        })
        .await;
        if let Ok(Ok(ps)) = sub {
            if let Some(s) = weak.upgrade() {
                s.subscribed.store(true, Relaxed);
                tokio::spawn(s.resubscribed());
            }
            let mut messages = ps.into_on_message();
            while let Some(msg) = messages.next().await {
                let Some(s) = weak.upgrade() else { return };
                if let Ok(text) = msg.get_payload::<String>() {
                    s.heard(&text);
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
