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

use super::{dns, sticky, Backend, BackendSet, Upstream, DISCOVERED_WEIGHT};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A backend gone from DNS is dropped after this long even if it still has
/// sticky clients (they are then moved, with `X-Gatehouse-Rehomed`).
pub const RETIRE_AT_MOST: Duration = sticky::LIVE_WINDOW;
/// Longest wait for one DNS answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn spawn(up: &Arc<Upstream>) {
    if up.discovery.is_none() {
        return;
    }
    let weak: Weak<Upstream> = Arc::downgrade(up);
    tokio::spawn(async move {
        loop {
            let Some(up) = weak.upgrade() else { break };
            let Some(d) = up.discovery.clone() else { break };
            let server = d.resolver.unwrap_or_else(dns::system_resolver);
            let timeout = QUERY_TIMEOUT.min(d.interval.max(Duration::from_millis(100)));
            match dns::resolve(server, &d.host, timeout).await {
                Ok(ips) if !ips.is_empty() => {
                    let addrs: Vec<String> = ips
                        .into_iter()
                        .map(|ip| std::net::SocketAddr::new(ip, d.port).to_string())
                        .collect();
                    apply(&up, &addrs);
                }
                Ok(_) => tracing::warn!(
                    upstream = %up.name, name = %d.host,
                    "DNS discovery found no addresses; keeping the last good backends"
                ),
                Err(e) => tracing::warn!(
                    upstream = %up.name, name = %d.host, resolver = %server, error = %e,
                    "DNS discovery failed; keeping the last good backends"
                ),
            }
            retire(&up);
            drop(up);
            tokio::time::sleep(d.interval).await;
        }
    });
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
