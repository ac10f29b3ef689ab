//! Active health checks: a background task per upstream, off the request
//! path. It holds only a weak reference, so it ends by itself when a reload
//! replaces the upstream and the last request using the old one finishes.

use super::{pool, Backend, Upstream};
use crate::body::Body;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use std::time::Duration;

/// Consecutive results of active checks, per backend.
#[derive(Default)]
pub struct Streaks {
    ok: AtomicU32,
    failed: AtomicU32,
}

pub fn spawn_active_checks(up: &Arc<Upstream>) {
    if up.health.path.is_none() {
        return;
    }
    let weak: Weak<Upstream> = Arc::downgrade(up);
    tokio::spawn(async move {
        loop {
            let Some(up) = weak.upgrade() else { break };
            let mut checks = tokio::task::JoinSet::new();
            for b in &up.backends().backends {
                let (up, b) = (up.clone(), b.clone());
                checks.spawn(async move {
                    let ok = check(&up, &b).await;
                    apply(&up, &b, &b.checks, ok);
                });
            }
            while checks.join_next().await.is_some() {}
            let interval = up.health.interval;
            drop(up);
            // Jitter (up to 10%) keeps replicas from checking in lockstep.
            let jitter =
                interval.mul_f64(f64::from(crate::crypto::random_bytes::<1>()[0]) / 2550.0);
            tokio::time::sleep(interval + jitter).await;
        }
    });
}

fn apply(up: &Upstream, b: &Backend, s: &Streaks, ok: bool) {
    if ok {
        s.failed.store(0, Relaxed);
        let n = s.ok.fetch_add(1, Relaxed) + 1;
        if n >= up.health.healthy_after && !b.healthy.swap(true, Relaxed) {
            tracing::info!(upstream = %up.name, backend = %b.addr, "backend healthy again");
        }
    } else {
        s.ok.store(0, Relaxed);
        let n = s.failed.fetch_add(1, Relaxed) + 1;
        if n >= up.health.unhealthy_after && b.healthy.swap(false, Relaxed) {
            tracing::warn!(upstream = %up.name, backend = %b.addr, "backend unhealthy: active checks failing");
        }
    }
}

/// One check: a fresh connection (not the pool's, so it says something about
/// new connections) and `GET path`; 2xx or 3xx within the timeout is healthy.
async fn check(up: &Upstream, b: &Backend) -> bool {
    let Some(path) = up.health.path.as_deref() else {
        return true;
    };
    let attempt = async {
        let mut sender = pool::connect(up, b).await.ok()?;
        let req = http::Request::get(path)
            .header(http::header::HOST, b.addr.as_str())
            .header(http::header::USER_AGENT, "gatehouse-health-check")
            .body(Body::Empty)
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let s = resp.status();
        Some(s.is_success() || s.is_redirection())
    };
    tokio::time::timeout(up.health.timeout.max(Duration::from_millis(1)), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
