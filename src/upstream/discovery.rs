//! DNS discovery (`discovery = { dns = "name:port", interval }`): every
//! interval the name is resolved and each A/AAAA address becomes a backend
//! beside the fixed `backends`.
//!
//! - A new address is added at once (healthy until checks say otherwise).
//! - An address that disappears is drained, not cut: it is marked
//!   `retiring` (no new clients, its sticky clients and in-flight requests
//!   stay) and dropped from the set once it has no request in flight and
//!   no live sticky client, or after [`RETIRE_AT_MOST`].
//! - A failed or empty resolution changes nothing: the last good set stays.
//!
//! The task holds a weak reference to its upstream and ends when a reload
//! replaces it (the new upstream starts its own task, keeping the
//! discovered backends and their state). It builds a new [`BackendSet`]
//! and swaps it in; requests never wait for it.
//!
//! The DNS client is hickory's stub resolver, owned by the task alone and
//! built when the task starts: it asks the configured `resolver`, else the
//! name servers of the system configuration (/etc/resolv.conf, read then,
//! so again on each reload). It keeps no cache: every interval both
//! questions go to the server, whatever the records' TTL, so an answer
//! never outlives the interval that asked for it.

use super::{sticky, Backend, BackendSet, Upstream, DISCOVERED_WEIGHT};
use crate::config::Discovery;
use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A backend gone from DNS is dropped after this long even if it still has
/// sticky clients (they are then moved, with `X-Gatehouse-Rehomed`).
pub const RETIRE_AT_MOST: Duration = sticky::LIVE_WINDOW;
/// Longest wait for one DNS answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Where to ask when the config names no resolver and the system
/// configuration cannot be read or lists no name server (as libc does).
pub const FALLBACK_RESOLVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);

pub fn spawn(up: &Arc<Upstream>) {
    let Some(d) = up.discovery.clone() else {
        return;
    };
    let weak: Weak<Upstream> = Arc::downgrade(up);
    tokio::spawn(async move {
        let timeout = QUERY_TIMEOUT.min(d.interval.max(Duration::from_millis(100)));
        let dns = Resolver::new(&d, timeout);
        loop {
            let Some(up) = weak.upgrade() else { break };
            match dns.resolve(&d.host).await {
                Ok(ips) if !ips.is_empty() => {
                    let addrs: Vec<String> = ips
                        .into_iter()
                        .map(|ip| SocketAddr::new(ip, d.port).to_string())
                        .collect();
                    apply(&up, &addrs);
                }
                Ok(_) => tracing::warn!(
                    upstream = %up.name, name = %d.host,
                    "DNS discovery found no addresses; keeping the last good backends"
                ),
                Err(e) => tracing::warn!(
                    upstream = %up.name, name = %d.host, resolver = %dns.servers, error = %e,
                    "DNS discovery failed; keeping the last good backends"
                ),
            }
            retire(&up);
            drop(up);
            tokio::time::sleep(d.interval).await;
        }
    });
}

/// Why a resolution gave no set of addresses to apply.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("`{0}` is not a DNS name: {1}")]
    Name(String, String),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// Timeout of one server, SERVFAIL, REFUSED, NXDOMAIN, a malformed
    /// answer, or a socket error.
    #[error(transparent)]
    Dns(#[from] ResolveError),
}

/// The DNS client of one discovery task.
pub struct Resolver {
    inner: TokioResolver,
    timeout: Duration,
    /// The servers asked, for logs.
    pub servers: String,
}

impl Resolver {
    /// A client of `d.resolver`, else of the name servers in
    /// /etc/resolv.conf (hickory's reading of it; its search domains do
    /// not apply, the name is fully qualified), else of
    /// [`FALLBACK_RESOLVER`]. Only the server list is taken from the
    /// system: timeouts, retries and caching are discovery's own.
    pub fn new(d: &Discovery, timeout: Duration) -> Resolver {
        let config = match d.resolver {
            Some(server) => from_servers(server),
            None => match hickory_resolver::system_conf::read_system_conf() {
                Ok((config, _)) => config,
                Err(e) => {
                    tracing::warn!(
                        name = %d.host, error = %e, fallback = %FALLBACK_RESOLVER,
                        "DNS discovery: no name server in the system configuration"
                    );
                    from_servers(FALLBACK_RESOLVER)
                }
            },
        };
        // Each server is listed twice in a row (UDP, then TCP).
        let mut addrs: Vec<SocketAddr> = config
            .name_servers()
            .iter()
            .map(|n| n.socket_addr)
            .collect();
        addrs.dedup();
        let servers = addrs
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        // One try per round: the next interval is the retry.
        opts.attempts = 0;
        // Large answers (many pods) in one UDP datagram when the server can.
        opts.edns0 = true;
        // No cache: a record's TTL must not hide a change past the next
        // interval (both the size and the TTL bounds, so nothing is kept).
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        // Backends come from DNS, not from /etc/hosts.
        opts.use_hosts_file = ResolveHosts::Never;
        let inner = TokioResolver::builder_with_config(config, Default::default())
            .with_options(opts)
            .build();
        Resolver {
            inner,
            timeout,
            servers,
        }
    }

    /// Every A and AAAA address of `host` (taken as fully qualified),
    /// sorted. An error when either question fails (timeout, SERVFAIL,
    /// NXDOMAIN, malformed answer): a partial answer must not look like
    /// backends leaving. A name with no record of a type (NOERROR, empty)
    /// counts as no address of that type.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        let mut name =
            Name::from_ascii(host).map_err(|e| LookupError::Name(host.into(), e.to_string()))?;
        name.set_fqdn(true);
        let both = async {
            tokio::join!(
                self.inner.ipv4_lookup(name.clone()),
                self.inner.ipv6_lookup(name.clone())
            )
        };
        let (a, aaaa) = tokio::time::timeout(self.timeout, both)
            .await
            .map_err(|_| LookupError::TimedOut(self.timeout))?;
        let mut out: Vec<IpAddr> = none_if_empty(a)?
            .iter()
            .flat_map(|l| l.iter().map(|r| IpAddr::V4(r.0)))
            .collect();
        out.extend(
            none_if_empty(aaaa)?
                .iter()
                .flat_map(|l| l.iter().map(|r| IpAddr::V6(r.0))),
        );
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// UDP, and TCP for truncated answers, to one server.
fn from_servers(server: SocketAddr) -> ResolverConfig {
    ResolverConfig::from_parts(
        None,
        Vec::new(),
        NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true),
    )
}

/// hickory reports an empty NOERROR answer as an error; here it is an
/// answer with no address. Every other response code stays an error.
fn none_if_empty<T>(r: Result<T, ResolveError>) -> Result<Option<T>, ResolveError> {
    match r {
        Ok(l) => Ok(Some(l)),
        Err(e)
            if e.proto().is_some_and(|p| {
                matches!(
                    p.kind(),
                    ProtoErrorKind::NoRecordsFound {
                        response_code: ResponseCode::NoError,
                        ..
                    }
                )
            }) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Makes the discovered part of the set equal `addrs`: new ones join,
/// missing ones start retiring, returning ones stop retiring.
pub fn apply(up: &Upstream, addrs: &[String]) {
    let cur = up.backends();
    let fixed = |addr: &str| up.static_backends.iter().any(|s| s.addr == addr);
    let mut next: Vec<Arc<Backend>> = Vec::with_capacity(cur.len() + addrs.len());
    for b in &cur.backends {
        if !fixed(&b.addr) {
            let listed = addrs.iter().any(|a| *a == b.addr);
            if listed && b.retiring.load(Relaxed) {
                tracing::info!(upstream = %up.name, backend = %b.addr, "backend is back in DNS");
            } else if !listed && !b.retiring.load(Relaxed) {
                tracing::info!(upstream = %up.name, backend = %b.addr, "backend left DNS: draining");
            }
            b.set_retiring(!listed);
        }
        next.push(b.clone());
    }
    for a in addrs {
        if !next.iter().any(|b| b.addr == *a) {
            tracing::info!(upstream = %up.name, backend = %a, "backend found in DNS");
            next.push(Arc::new(Backend::new(
                a.clone(),
                DISCOVERED_WEIGHT,
                up.tls.is_some(),
                up.max_idle_per_backend,
            )));
        }
    }
    if next.len() != cur.len() {
        up.replace_backends(next);
    }
    up.resolved.store(true, Relaxed);
}

/// Drops retiring backends that are done: nothing in flight and no live
/// sticky client, or retiring for longer than [`RETIRE_AT_MOST`].
pub fn retire(up: &Upstream) {
    let cur: Arc<BackendSet> = up.backends();
    if !cur.backends.iter().any(|b| b.retiring.load(Relaxed)) {
        return;
    }
    let live = sticky::live_counts(up);
    let done = |b: &Backend| {
        let Some(for_) = b.retiring_for() else {
            return false;
        };
        let idle = b.in_flight.load(Relaxed) == 0 && live.get(&b.id).copied().unwrap_or(0) == 0;
        idle || for_ >= RETIRE_AT_MOST
    };
    let next: Vec<Arc<Backend>> = cur.backends.iter().filter(|b| !done(b)).cloned().collect();
    if next.len() != cur.len() {
        for b in cur.backends.iter().filter(|b| done(b)) {
            tracing::info!(upstream = %up.name, backend = %b.addr, "drained backend removed");
        }
        up.replace_backends(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(extra: &str) -> Upstream {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"app\"\n{extra}\n\
             discovery = {{ dns = \"app.test:80\", resolver = \"127.0.0.1:5353\" }}\n"
        );
        let mut c = crate::config::load_str(&text, std::path::Path::new("/tmp/g.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        Upstream::build(&c.upstreams.remove(0), None)
    }

    fn addrs(up: &Upstream) -> Vec<String> {
        up.backends()
            .backends
            .iter()
            .map(|b| b.addr.clone())
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn answers_add_backends_and_missing_ones_drain_before_leaving() {
        let up = upstream("");
        assert!(!up.resolved.load(Relaxed));
        assert!(up.backends().is_empty());
        apply(&up, &s(&["10.0.0.1:80", "10.0.0.2:80"]));
        assert!(up.resolved.load(Relaxed));
        assert_eq!(addrs(&up), s(&["10.0.0.1:80", "10.0.0.2:80"]));

        apply(&up, &s(&["10.0.0.2:80"]));
        let gone = up.backends().find("10.0.0.1:80").unwrap().clone();
        assert!(gone.retiring.load(Relaxed));
        assert_eq!(gone.fit(), crate::upstream::select::Fit::KeepOnly);
        // Still serving a request: stays in the set.
        let guard = gone.track();
        retire(&up);
        assert_eq!(addrs(&up).len(), 2);
        drop(guard);
        retire(&up);
        assert_eq!(addrs(&up), s(&["10.0.0.2:80"]));
    }

    #[test]
    fn a_returning_address_stops_draining_and_keeps_its_state() {
        let up = upstream("");
        apply(&up, &s(&["10.0.0.1:80", "10.0.0.2:80"]));
        let b = up.backends().find("10.0.0.1:80").unwrap().clone();
        let _busy = b.track();
        apply(&up, &s(&["10.0.0.2:80"]));
        assert!(b.retiring.load(Relaxed));
        apply(&up, &s(&["10.0.0.1:80", "10.0.0.2:80"]));
        assert!(!b.retiring.load(Relaxed));
        assert!(Arc::ptr_eq(&b, up.backends().find("10.0.0.1:80").unwrap()));
    }

    #[test]
    fn fixed_backends_never_drain_and_reload_keeps_discovered_ones() {
        let up = upstream("backends = [\"10.0.9.9:80\"]");
        apply(&up, &s(&["10.0.0.1:80"]));
        apply(&up, &s(&["10.0.0.2:80"]));
        retire(&up);
        assert_eq!(addrs(&up), s(&["10.0.9.9:80", "10.0.0.2:80"]));
        assert!(!up.backends().backends[0].retiring.load(Relaxed));

        let text = "[server]\nlisten = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"app\"\n\
                    backends = [\"10.0.9.9:80\"]\n\
                    discovery = { dns = \"app.test:80\", interval = \"1s\" }\n";
        let mut c = crate::config::load_str(text, std::path::Path::new("/tmp/g.toml")).unwrap();
        let reloaded = Upstream::build(&c.upstreams.remove(0), Some(&up));
        assert_eq!(addrs(&reloaded), s(&["10.0.9.9:80", "10.0.0.2:80"]));
        assert!(reloaded.resolved.load(Relaxed));
        assert!(Arc::ptr_eq(
            up.backends().find("10.0.0.2:80").unwrap(),
            reloaded.backends().find("10.0.0.2:80").unwrap()
        ));
    }
}
