//! The running gateway's state: one immutable [`Snapshot`] per config
//! generation behind an `ArcSwap`, plus the few things that outlive reloads.
//!
//! A request loads the snapshot once and uses it to the end, so a reload
//! never tears a request: it either runs wholly on the old config or wholly
//! on the new one.

use crate::auth::jwt::{Issuers, TokenCache};
use crate::config::{self, Config, ConfigError};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::{self, Upstream};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

/// Everything derived from one config load.
pub struct Snapshot {
    pub config: Config,
    /// Parallel to `config.upstreams`.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Parallel to `config.routes`.
    pub route_metrics: Vec<Arc<RouteMetrics>>,
    pub no_route_metrics: Arc<RouteMetrics>,
    /// Route `_gatehouse`: the gateway's own endpoints.
    pub own_endpoint_metrics: Arc<RouteMetrics>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Lowercased endpoint prefix followed by `/`, for a cheap prefix test.
    pub endpoint_prefix_slash: String,
    /// `[[jwt]]` issuers with their keys; unchanged ones carried over.
    pub jwt: Issuers,
    /// `[[oidc]]` providers with their discovery documents; unchanged ones
    /// carried over.
    pub oidc: crate::login::oidc::Providers,
}

impl Snapshot {
    /// Builds a snapshot; upstream backends unchanged since `previous` keep
    /// their live state.
    pub fn build(config: Config, metrics: &Metrics, previous: Option<&Snapshot>) -> Snapshot {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                let prev = previous.and_then(|p| p.upstreams.iter().find(|x| x.name == u.name));
                Arc::new(Upstream::build(u, prev.map(|a| a.as_ref())))
            })
            .collect();
        let route_metrics = config
            .routes
            .iter()
            .map(|r| metrics.route(&r.name))
            .collect();
        let tls = config
            .server
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.server_config.clone()));
        let endpoint_prefix_slash = format!("{}/", config.server.endpoint_prefix);
        // Providers first: `[[jwt]]` entries with `oidc = "NAME"` share
        // this snapshot's provider keys.
        let oidc = crate::login::oidc::Providers::build(&config.oidc, previous.map(|p| &p.oidc));
        let jwt = Issuers::build(&config.jwt, previous.map(|p| &p.jwt), &oidc);
        Snapshot {
            jwt,
            oidc,
            upstreams,
            route_metrics,
            no_route_metrics: metrics.route(""),
            own_endpoint_metrics: metrics.route(crate::proxy::OWN_ENDPOINT_ROUTE),
            tls,
            endpoint_prefix_slash,
            config,
        }
    }

    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        let t = &self.config.server.trusted_proxies;
        !t.is_empty() && t.iter().any(|n| n.contains(&ip))
    }
}

/// Addresses the listeners actually bound (port 0 resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundAddrs {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub redirect: Option<SocketAddr>,
}

/// Unique, cheap request ids: a random per-process prefix (12 hex digits)
/// and a counter (at least 10 hex digits). They need to be unique, not
/// secret.
pub struct RequestIds {
    prefix: [u8; 12],
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut prefix = [0u8; 12];
        prefix.copy_from_slice(crate::crypto::hex(&crate::crypto::random_bytes::<6>()).as_bytes());
        RequestIds {
            prefix,
            counter: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> http::HeaderValue {
        let n = self.counter.fetch_add(1, Relaxed);
        // Written by hand: this runs on every request, and `format!` costs
        // several times more than the id is worth.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 12 + 16];
        buf[..12].copy_from_slice(&self.prefix);
        let digits = ((64 - n.leading_zeros() as usize).div_ceil(4)).max(10);
        for i in 0..digits {
            buf[12 + digits - 1 - i] = HEX[((n >> (4 * i)) & 0xf) as usize];
        }
        http::HeaderValue::from_bytes(&buf[..12 + digits]).expect("hex is a valid header value")
    }
}

/// What a reload did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReloadSummary {
    pub routes: usize,
    pub upstreams: usize,
    /// What could not be applied (restart needed) and config warnings; the
    /// admin answer carries them once, at its top level.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `max_connections`: the permits shared by the main and redirect
/// listeners. A reload resizes it: growing adds permits at once; shrinking
/// forgets free permits, and one background task takes the rest as
/// connections end. The totals are kept here (the semaphore knows only
/// what is free), so a grow that comes while a shrink is still collecting
/// settles against it instead of feeding it.
pub struct ConnLimit {
    sem: Arc<tokio::sync::Semaphore>,
    state: Arc<std::sync::Mutex<LimitState>>,
}

struct LimitState {
    /// Permits in existence (free or held).
    total: usize,
    /// What `max_connections` says.
    target: usize,
    /// A task is collecting surplus permits.
    shrinking: bool,
}

impl ConnLimit {
    pub fn new(n: usize) -> ConnLimit {
        ConnLimit {
            sem: Arc::new(tokio::sync::Semaphore::new(n)),
            state: Arc::new(std::sync::Mutex::new(LimitState {
                total: n,
                target: n,
                shrinking: false,
            })),
        }
    }

    pub fn semaphore(&self) -> Arc<tokio::sync::Semaphore> {
        self.sem.clone()
    }

    pub fn resize(&self, n: usize) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.target = n;
        if st.total < n {
            self.sem.add_permits(n - st.total);
            st.total = n;
            return;
        }
        let forgotten = self.sem.forget_permits(st.total - n);
        st.total -= forgotten;
        if st.total > n && !st.shrinking {
            st.shrinking = true;
            let (sem, state) = (self.sem.clone(), self.state.clone());
            tokio::spawn(async move {
                loop {
                    let Ok(permit) = sem.clone().acquire_owned().await else {
                        return;
                    };
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    if st.total > st.target {
                        permit.forget();
                        st.total -= 1;
                    } else {
                        drop(permit);
                    }
                    if st.total <= st.target {
                        st.shrinking = false;
                        return;
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod limit_tests {
    use super::ConnLimit;

    #[tokio::test]
    async fn shrinking_while_busy_then_growing_keeps_the_new_limit() {
        let l = ConnLimit::new(4);
        let sem = l.semaphore();
        let held: Vec<_> = (0..4)
            .map(|_| sem.clone().try_acquire_owned().unwrap())
            .collect();
        l.resize(1); // all four busy: three must be taken as they end
        l.resize(6); // before any ended
        drop(held);
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(sem.available_permits(), 6);
        l.resize(2);
        assert_eq!(sem.available_permits(), 2);
    }
}

/// Shared by every listener and request task.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    /// Everything shared between replicas (sessions, refresh families,
    /// lockout...), created once at start (a reload cannot switch stores:
    /// that needs a restart, and the reload says so).
    pub store: crate::state::Shared,
    /// What has been revoked, here or on another replica; outlives
    /// reloads.
    pub revocation: Arc<crate::revocation::Revocation>,
    /// Identity JWTs minted for backends, reused until near expiry.
    pub identity_tokens: crate::tokens::IdentityTokens,
    /// Verified JWTs; outlives reloads (entries name their issuer and key
    /// set, so what a reload changed stops matching by itself).
    pub token_cache: TokenCache,
    pub request_ids: RequestIds,
    pub bound: OnceLock<BoundAddrs>,
    /// `true` once shutdown has begun.
    pub shutdown: watch::Sender<bool>,
    /// `max_connections` of the main and redirect listeners.
    pub conn_limit: ConnLimit,
    reload_lock: tokio::sync::Mutex<()>,
}

impl Gateway {
    pub fn new(config: Config) -> Arc<Gateway> {
        let metrics = Arc::new(Metrics::default());
        let revocation = Arc::new(crate::revocation::Revocation::default());
        let store =
            crate::state::Shared::new(&config.sessions, metrics.clone(), revocation.clone());
        let snap = Arc::new(Snapshot::build(config, &metrics, None));
        let gw = Arc::new(Gateway {
            snapshot: ArcSwap::new(snap.clone()),
            metrics,
            identity_tokens: Default::default(),
            store,
            revocation,
            token_cache: TokenCache::default(),
            request_ids: RequestIds::new(),
            bound: OnceLock::new(),
            shutdown: watch::channel(false).0,
            conn_limit: ConnLimit::new(snap.config.server.max_connections),
            reload_lock: tokio::sync::Mutex::new(()),
        });
        gw.start_background(&snap);
        gw
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Background tasks of one snapshot; they end with it.
    fn start_background(&self, snap: &Arc<Snapshot>) {
        for up in &snap.upstreams {
            upstream::spawn_background(up);
        }
        snap.jwt.start(&self.metrics);
        snap.oidc.start(&self.metrics);
    }

    /// Re-reads the config file and swaps it in if valid; otherwise the old
    /// config keeps running and the errors are returned.
    pub async fn reload(&self) -> Result<ReloadSummary, ConfigError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let old = self.snapshot();
        let path = old.config.path.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .unwrap_or_else(|e| {
                Err(ConfigError::Read {
                    file: old.config.path.display().to_string(),
                    source: std::io::Error::other(e),
                })
            });
        let new = match loaded {
            Ok(c) => c,
            Err(e) => {
                self.metrics.reloads_failure.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "reload failed; the previous config keeps running");
                return Err(e);
            }
        };
        let mut warnings = new.warnings.clone();
        let bound = self.bound.get();
        let running = config::reload::Running {
            listen: bound.map(|b| b.listen),
            admin: bound.map(|b| b.admin),
        };
        warnings.extend(
            config::reload::needs_restart(&old.config, &new, running)
                .into_iter()
                .map(|r| r.message),
        );
        let n = &new;
        // Applied here, to what outlives the snapshot.
        self.conn_limit.resize(n.server.max_connections);
        self.store.apply(&n.sessions);
        let summary = ReloadSummary {
            routes: n.routes.len(),
            upstreams: n.upstreams.len(),
            warnings,
        };
        let snap = Arc::new(Snapshot::build(new, &self.metrics, Some(&old)));
        self.start_background(&snap);
        self.snapshot.store(snap);
        self.metrics.reloads_success.fetch_add(1, Relaxed);
        for w in &summary.warnings {
            tracing::warn!("{w}");
        }
        tracing::info!(
            routes = summary.routes,
            upstreams = summary.upstreams,
            "config reloaded"
        );
        Ok(summary)
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::RequestIds;

    #[test]
    fn request_ids_are_prefix_and_zero_padded_hex_counter() {
        let ids = RequestIds::new();
        let prefix = std::str::from_utf8(&ids.prefix).unwrap().to_string();
        assert_eq!(ids.next(), format!("{prefix}0000000000").as_str());
        assert_eq!(ids.next(), format!("{prefix}0000000001").as_str());
        ids.counter
            .store(0xabc_def0_1234, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(ids.next(), format!("{prefix}abcdef01234").as_str());
        ids.counter
            .store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(ids.next(), format!("{prefix}ffffffffffffffff").as_str());
    }
}
