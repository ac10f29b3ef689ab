//! Prometheus metrics (SPEC 8), kept in atomics.
//!
//! Who writes: request tasks, with relaxed atomic adds (no lock on the hot
//! path). Who reads: `/metrics`, which renders a snapshot. Per-route series
//! are looked up by name once per config load and carried across reloads, so
//! counters survive a reload of an unchanged route.

use dashmap::DashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Counters for every status code 100..=599.
pub struct StatusCounters(Box<[AtomicU64]>);

impl Default for StatusCounters {
    fn default() -> Self {
        StatusCounters((100..600).map(|_| AtomicU64::new(0)).collect())
    }
}

impl StatusCounters {
    pub fn inc(&self, status: u16) {
        if let Some(c) = self.0.get(usize::from(status).wrapping_sub(100)) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn get(&self, status: u16) -> u64 {
        self.0
            .get(usize::from(status).wrapping_sub(100))
            .map_or(0, |c| c.load(Relaxed))
    }

    fn nonzero(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.0.iter().enumerate().filter_map(|(i, c)| {
            let v = c.load(Relaxed);
            (v > 0).then_some((i as u16 + 100, v))
        })
    }
}

/// Latency buckets in seconds: fine below 10 ms where a proxy lives, coarse
/// above for slow backends.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

#[derive(Default)]
pub struct RouteMetrics {
    pub requests: StatusCounters,
    pub duration: Histogram,
}

/// Result labels of `gatehouse_auth_total` (SPEC 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    Ok,
    Missing,
    Expired,
    Invalid,
    Revoked,
    Forbidden,
    Locked,
    Error,
}

impl AuthResult {
    const ALL: [AuthResult; 8] = [
        AuthResult::Ok,
        AuthResult::Missing,
        AuthResult::Expired,
        AuthResult::Invalid,
        AuthResult::Revoked,
        AuthResult::Forbidden,
        AuthResult::Locked,
        AuthResult::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AuthResult::Ok => "ok",
            AuthResult::Missing => "missing",
            AuthResult::Expired => "expired",
            AuthResult::Invalid => "invalid",
            AuthResult::Revoked => "revoked",
            AuthResult::Forbidden => "forbidden",
            AuthResult::Locked => "locked",
            AuthResult::Error => "error",
        }
    }
}

/// Result labels of `gatehouse_forward_auth_total` (SPEC 14): those of
/// `gatehouse_auth_total`, plus `allowed`.
pub const FORWARD_AUTH_RESULTS: [&str; 9] = [
    "allowed",
    "ok",
    "missing",
    "expired",
    "invalid",
    "revoked",
    "forbidden",
    "locked",
    "error",
];

/// Method labels of `gatehouse_auth_total`.
pub const AUTH_METHODS: [&str; 6] = ["session", "jwt", "login", "oidc", "token", "mtls"];

/// Process-wide metrics. One per gateway; survives reloads.
#[derive(Default)]
pub struct Metrics {
    routes: DashMap<String, Arc<RouteMetrics>>,
    auth: [[AtomicU64; 8]; AUTH_METHODS.len()],
    /// `gatehouse_forward_auth_total` by route, then by
    /// [`FORWARD_AUTH_RESULTS`] position. Only forward-auth decisions
    /// touch it.
    forward_auth: DashMap<String, [AtomicU64; FORWARD_AUTH_RESULTS.len()]>,
    pub jwt_cache_hits: AtomicU64,
    pub jwks_fetches_ok: AtomicU64,
    pub jwks_fetches_failed: AtomicU64,
    /// Connections dropped for a missing, malformed or late PROXY header.
    pub proxy_protocol_errors: AtomicU64,
    pub reloads_success: AtomicU64,
    pub reloads_failure: AtomicU64,
    pub connections_open: AtomicI64,
    pub sessions_active: AtomicI64,
    /// Back-channel logouts (SPEC 15) by [`BACKCHANNEL_RESULTS`].
    pub backchannel_logouts: [AtomicU64; 3],
    /// Sessions ended by back-channel logouts.
    pub backchannel_sessions_ended: AtomicU64,
}

/// Results of a back-channel logout: the token was accepted, refused
/// (400), or could not be acted on (the store or the keys unavailable).
pub const BACKCHANNEL_RESULTS: [&str; 3] = ["ok", "invalid", "error"];

impl Metrics {
    /// The series of route `name` (`""` for requests that matched none).
    pub fn route(&self, name: &str) -> Arc<RouteMetrics> {
        self.routes.entry(name.to_string()).or_default().clone()
    }

    pub fn auth(&self, method: &str, result: AuthResult) {
        if let Some(m) = AUTH_METHODS.iter().position(|x| *x == method) {
            let r = AuthResult::ALL
                .iter()
                .position(|x| *x == result)
                .unwrap_or(7);
            self.auth[m][r].fetch_add(1, Relaxed);
        }
    }

    /// Counts one forward-auth decision; `result` is one of
    /// [`FORWARD_AUTH_RESULTS`] (anything else counts as `error`).
    pub fn forward_auth(&self, route: &str, result: &str) {
        let r = FORWARD_AUTH_RESULTS
            .iter()
            .position(|x| *x == result)
            .unwrap_or(FORWARD_AUTH_RESULTS.len() - 1);
        if let Some(e) = self.forward_auth.get(route) {
            e[r].fetch_add(1, Relaxed);
            return;
        }
        self.forward_auth.entry(route.to_string()).or_default()[r].fetch_add(1, Relaxed);
    }

    pub fn auth_count(&self, method: &str, result: AuthResult) -> u64 {
        AUTH_METHODS
            .iter()
            .position(|x| *x == method)
            .map_or(0, |m| {
                self.auth[m][AuthResult::ALL
                    .iter()
                    .position(|x| *x == result)
                    .unwrap_or(7)]
                .load(Relaxed)
            })
    }

    /// Renders the process-wide series; the caller appends upstream series.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP gatehouse_requests_total Requests by route and status.\n# TYPE gatehouse_requests_total counter\n");
        let mut names: Vec<_> = self
            .routes
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, m) in &names {
            for (status, v) in m.requests.nonzero() {
                let _ = writeln!(
                    out,
                    "gatehouse_requests_total{{route=\"{}\",status=\"{status}\"}} {v}",
                    escape(name)
                );
            }
        }
        out.push_str("# HELP gatehouse_request_duration_seconds Time to response headers, by route.\n# TYPE gatehouse_request_duration_seconds histogram\n");
        for (name, m) in &names {
            m.duration.render(
                out,
                "gatehouse_request_duration_seconds",
                &format!("route=\"{}\"", escape(name)),
            );
        }
        out.push_str("# HELP gatehouse_auth_total Authentication attempts by method and result.\n# TYPE gatehouse_auth_total counter\n");
        for (mi, method) in AUTH_METHODS.iter().enumerate() {
            for (ri, result) in AuthResult::ALL.iter().enumerate() {
                let v = self.auth[mi][ri].load(Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "gatehouse_auth_total{{method=\"{method}\",result=\"{}\"}} {v}",
                        result.label()
                    );
                }
            }
        }
        out.push_str("# HELP gatehouse_forward_auth_total Forward-auth decisions by route and result.\n# TYPE gatehouse_forward_auth_total counter\n");
        let mut fa: Vec<(String, Vec<u64>)> = self
            .forward_auth
            .iter()
            .map(|e| {
                (
                    e.key().clone(),
                    e.value().iter().map(|c| c.load(Relaxed)).collect(),
                )
            })
            .collect();
        fa.sort_by(|a, b| a.0.cmp(&b.0));
        for (route, counts) in &fa {
            for (result, v) in FORWARD_AUTH_RESULTS.iter().zip(counts) {
                if *v > 0 {
                    let _ = writeln!(
                        out,
                        "gatehouse_forward_auth_total{{route=\"{}\",result=\"{result}\"}} {v}",
                        escape(route)
                    );
                }
            }
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            out,
            "gatehouse_proxy_protocol_errors_total",
            "Connections closed for a missing, malformed or late PROXY protocol header.",
            "counter",
            self.proxy_protocol_errors.load(Relaxed) as i64,
        );
        gauge(
            out,
            "gatehouse_jwt_cache_hits_total",
            "Tokens accepted from the verified-token cache.",
            "counter",
            self.jwt_cache_hits.load(Relaxed) as i64,
        );
        let _ = writeln!(
            out,
            "# HELP gatehouse_jwks_fetches_total JWKS fetches by result.\n# TYPE gatehouse_jwks_fetches_total counter\ngatehouse_jwks_fetches_total{{result=\"success\"}} {}\ngatehouse_jwks_fetches_total{{result=\"failure\"}} {}",
            self.jwks_fetches_ok.load(Relaxed),
            self.jwks_fetches_failed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gatehouse_config_reloads_total Config reloads by result.\n# TYPE gatehouse_config_reloads_total counter\ngatehouse_config_reloads_total{{result=\"success\"}} {}\ngatehouse_config_reloads_total{{result=\"failure\"}} {}",
            self.reloads_success.load(Relaxed),
            self.reloads_failure.load(Relaxed)
        );
        out.push_str("# HELP gatehouse_backchannel_logouts_total OIDC back-channel logout requests by result.\n# TYPE gatehouse_backchannel_logouts_total counter\n");
        for (i, result) in BACKCHANNEL_RESULTS.iter().enumerate() {
            let _ = writeln!(
                out,
                "gatehouse_backchannel_logouts_total{{result=\"{result}\"}} {}",
                self.backchannel_logouts[i].load(Relaxed)
            );
        }
        gauge(
            out,
            "gatehouse_backchannel_logout_sessions_total",
            "Sessions ended by OIDC back-channel logouts.",
            "counter",
            self.backchannel_sessions_ended.load(Relaxed) as i64,
        );
        gauge(
            out,
            "gatehouse_connections_open",
            "Open client connections.",
            "gauge",
            self.connections_open.load(Relaxed),
        );
        gauge(
            out,
            "gatehouse_sessions_active",
            "Live sessions in the memory store.",
            "gauge",
            self.sessions_active.load(Relaxed),
        );
    }
}

/// Escapes a label value (Prometheus text format).
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
