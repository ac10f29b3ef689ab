//! The admin listener (SPEC 8): probes and metrics open, `/admin/*` behind
//! a bearer token compared in constant time.

use crate::body::Body;
use crate::gateway::Gateway;
use crate::metrics::escape;
use crate::proxy::respond::json;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::watch;

pub(crate) async fn serve(
    gw: Arc<Gateway>,
    stream: TcpStream,
    _peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    // The main listener's bounds (SPEC 3 step 2): the admin port is
    // usually internal, but a slow or idle client must not hold one of its
    // 256 connection slots for long either.
    let limits = super::Limits::from(&gw.snapshot().config.server);
    let served = gw.clone();
    let service = hyper::service::service_fn(move |req| {
        let gw = served.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&gw, req).await) }
    });
    super::serve_side(&gw, stream, service, limits, shutdown).await;
}

fn error(status: StatusCode, msg: &str) -> Response<Body> {
    json(status, json!({ "error": msg }).to_string())
}

/// Checks `Authorization: Bearer <token>` in constant time.
fn authorized(gw: &Gateway, req: &Request<Incoming>) -> Result<(), Box<Response<Body>>> {
    let snap = gw.snapshot();
    let Some(token) = &snap.config.admin.token else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "admin API disabled (no admin token configured)",
        )));
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if crate::crypto::ct_eq(given.trim().as_bytes(), &token.0) {
        Ok(())
    } else {
        let mut r = error(StatusCode::UNAUTHORIZED, "admin token required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"gatehouse-admin\""),
        );
        Err(Box::new(r))
    }
}

async fn handle(gw: &Gateway, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, "{\"status\":\"ok\"}".into()),
        (&Method::GET, "/readyz") => readyz(gw),
        (&Method::GET, "/metrics") => metrics(gw),
        (_, p) if p.starts_with("/admin/") => {
            if let Err(r) = authorized(gw, &req) {
                return *r;
            }
            if req.method() == Method::POST && path == "/admin/tokens/revoke" {
                return revoke_token(gw, req).await;
            }
            admin(gw, req.method().clone(), &path, req.uri().query()).await
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn readyz(gw: &Gateway) -> Response<Body> {
    let mut reasons: Vec<String> = Vec::new();
    if gw.bound.get().is_none() {
        reasons.push("listeners not bound".into());
    }
    if gw.is_shutting_down() {
        reasons.push("shutting down".into());
    }
    if let Some(why) = gw.store.not_ready() {
        reasons.push(format!("session store unreachable: {why}"));
    }
    for up in &gw.snapshot().upstreams {
        if !up.resolved.load(Relaxed) {
            reasons.push(format!(
                "upstream `{}`: waiting for its first DNS answer",
                up.name
            ));
        }
    }
    // A jwks_url issuer that never got its keys cannot verify a token.
    reasons.extend(gw.snapshot().jwt.not_ready());
    // Nor can a single sign-on provider without its discovery document.
    reasons.extend(gw.snapshot().oidc.not_ready());
    if reasons.is_empty() {
        json(StatusCode::OK, "{\"status\":\"ready\"}".into())
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "not ready", "reasons": reasons }).to_string(),
        )
    }
}

fn metrics(gw: &Gateway) -> Response<Body> {
    let mut out = String::with_capacity(8192);
    gw.metrics.render(&mut out);
    let snap = gw.snapshot();
    out.push_str("# HELP gatehouse_upstream_requests_total Backend responses by upstream, backend and status.\n# TYPE gatehouse_upstream_requests_total counter\n");
    for up in &snap.upstreams {
        for b in &up.backends().backends {
            for status in 100..600u16 {
                let v = b.requests.get(status);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "gatehouse_upstream_requests_total{{upstream=\"{}\",backend=\"{}\",status=\"{status}\"}} {v}",
                        escape(&up.name),
                        escape(&b.addr)
                    );
                }
            }
        }
    }
    out.push_str("# HELP gatehouse_backend_healthy 1 when the backend takes traffic (healthy, not ejected).\n# TYPE gatehouse_backend_healthy gauge\n");
    for up in &snap.upstreams {
        for b in &up.backends().backends {
            let healthy = b.healthy.load(Relaxed) && !b.is_ejected();
            let _ = writeln!(
                out,
                "gatehouse_backend_healthy{{upstream=\"{}\",backend=\"{}\"}} {}",
                escape(&up.name),
                escape(&b.addr),
                u8::from(healthy)
            );
        }
    }
    out.push_str("# HELP gatehouse_backend_in_flight Requests in flight per backend.\n# TYPE gatehouse_backend_in_flight gauge\n");
    for up in &snap.upstreams {
        for b in &up.backends().backends {
            let _ = writeln!(
                out,
                "gatehouse_backend_in_flight{{upstream=\"{}\",backend=\"{}\"}} {}",
                escape(&up.name),
                escape(&b.addr),
                b.in_flight.load(Relaxed)
            );
        }
    }
    // Counters per upstream: name, help, value.
    type PerUpstream = fn(&crate::upstream::Upstream) -> u64;
    let per_upstream: [(&str, &str, PerUpstream); 2] = [
        (
            "gatehouse_sticky_repins_total",
            "Sticky clients moved to another backend and re-pinned.",
            |up| up.repins.load(Relaxed),
        ),
        (
            "gatehouse_upstream_panic_total",
            "Requests sent to ejected backends because every backend of the upstream was ejected (panic mode).",
            |up| up.panics.load(Relaxed),
        ),
    ];
    for (name, help, value) in per_upstream {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for up in &snap.upstreams {
            let _ = writeln!(
                out,
                "{name}{{upstream=\"{}\"}} {}",
                escape(&up.name),
                value(up)
            );
        }
    }
    let mut r = Response::new(Body::full(out));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `POST /admin/tokens/revoke` `{"jti": "...", "exp": 1700000000}`: deny
/// that token until its `exp`, on every replica.
async fn revoke_token(gw: &Gateway, req: Request<Incoming>) -> Response<Body> {
    let body = match crate::login::read_body(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::BAD_REQUEST, "unreadable body"),
    };
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "expected JSON {\"jti\": \"...\", \"exp\": <unix seconds>}",
            )
        }
    };
    let (Some(jti), Some(exp)) = (
        v["jti"].as_str().filter(|j| !j.is_empty()),
        v["exp"].as_u64(),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"jti\": \"...\", \"exp\": <unix seconds>}",
        );
    };
    match crate::tokens::revoke(
        gw,
        crate::revocation::Revoke::Jti {
            jti: jti.to_string(),
            exp,
        },
    )
    .await
    {
        Ok(()) => {
            tracing::info!(jti = %jti, exp, "admin revoked a token");
            json(
                StatusCode::OK,
                json!({ "revoked": jti, "until": exp }).to_string(),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "admin: token revocation failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
        }
    }
}

fn store_error(e: crate::state::StoreError) -> Response<Body> {
    tracing::warn!(error = %e, "admin: session store failed");
    error(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
}

async fn admin(gw: &Gateway, method: Method, path: &str, query: Option<&str>) -> Response<Body> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        (Method::GET, ["admin", "sessions"]) => {
            let Some(user) = query.and_then(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == "user")
                    .map(|(_, v)| crate::login::percent_decode_form(v))
            }) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "query parameter `user` is required",
                );
            };
            let snap = gw.snapshot();
            match gw.store.list_user(&user).await {
                Ok(list) => {
                    let cfg = &snap.config.sessions;
                    let sessions: Vec<_> = list
                        .iter()
                        .filter(|(_, v)| v.is_live(cfg, crate::clock::now_ms()))
                        .map(|(k, v)| {
                            json!({
                                "id": k.hex(),
                                "user": v.record.user,
                                "created_at": v.record.created_ms / 1000,
                                "last_seen": v.last_seen_ms / 1000,
                                "expires_at": v.expires_at_ms(cfg) / 1000,
                                "client_ip": v.record.client_ip,
                                "user_agent": v.record.user_agent,
                                "method": "session",
                                "login": v.record.login,
                            })
                        })
                        .collect();
                    json(StatusCode::OK, json!({ "sessions": sessions }).to_string())
                }
                Err(e) => store_error(e),
            }
        }
        (Method::DELETE, ["admin", "sessions", id]) => {
            let Some(key) = crate::session::SessionKey::from_hex(id) else {
                return error(StatusCode::BAD_REQUEST, "a session id is 64 hex characters");
            };
            match gw.store.delete(key).await {
                Ok(Some(r)) => {
                    tracing::info!(user = %r.user, session = %&id[..12], "admin revoked a session");
                    json(StatusCode::OK, json!({ "revoked": id }).to_string())
                }
                Ok(None) => error(StatusCode::NOT_FOUND, "no such session"),
                Err(e) => store_error(e),
            }
        }
        (Method::POST, ["admin", "users", name, "revoke"]) => {
            let Some(user) = crate::percent::decode_strict(name) else {
                return error(StatusCode::BAD_REQUEST, "malformed user name");
            };
            let sessions = match gw.store.delete_user(&user).await {
                Ok(n) => n,
                Err(e) => return store_error(e),
            };
            let snap = gw.snapshot();
            match crate::tokens::revoke_user_tokens(gw, &snap, &user).await {
                Ok(families) => {
                    tracing::info!(user = %user, sessions, token_families = families, "admin revoked everything a user holds");
                    json(
                        StatusCode::OK,
                        json!({ "user": user, "sessions_revoked": sessions, "token_families_revoked": families, "tokens_issued_before": crate::clock::unix_now() }).to_string(),
                    )
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin: revoking tokens failed");
                    error(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
                }
            }
        }
        (Method::POST, ["admin", "reload"]) => match gw.reload().await {
            Ok(summary) => json(
                StatusCode::OK,
                json!({ "status": "reloaded", "summary": summary, "warnings": summary.warnings })
                    .to_string(),
            ),
            Err(e) => {
                let errors: Vec<String> = if e.problems().is_empty() {
                    vec![e.to_string()]
                } else {
                    e.problems().iter().map(|p| p.to_string()).collect()
                };
                json(
                    StatusCode::BAD_REQUEST,
                    json!({ "status": "failed", "errors": errors }).to_string(),
                )
            }
        },
        (Method::GET, ["admin", "upstreams"]) => {
            let snap = gw.snapshot();
            let ups: Vec<_> = snap
                .upstreams
                .iter()
                .map(|u| {
                    let sticky = crate::upstream::sticky::live_counts(u);
                    json!({
                        "name": u.name,
                        "backends": u.backends().backends.iter().map(|b| json!({
                            "addr": b.addr,
                            "healthy": b.healthy.load(Relaxed),
                            "ejected": b.is_ejected(),
                            "draining": b.is_draining(),
                            "retiring": b.retiring.load(Relaxed),
                            "in_flight": b.in_flight.load(Relaxed),
                            "sticky_clients": sticky.get(&b.id).copied().unwrap_or(0),
                            "weight": b.weight,
                            "idle_connections": b.pool.idle_count(),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json(StatusCode::OK, json!({ "upstreams": ups }).to_string())
        }
        (
            Method::POST,
            ["admin", "upstreams", name, "backends", addr, action @ ("drain" | "undrain")],
        ) => {
            let Some(addr) = crate::percent::decode_strict(addr) else {
                return error(StatusCode::BAD_REQUEST, "malformed backend address");
            };
            let snap = gw.snapshot();
            let backend = snap
                .upstreams
                .iter()
                .find(|u| u.name == *name)
                .and_then(|u| u.backends().find(&addr).cloned());
            match backend {
                None => error(StatusCode::NOT_FOUND, "no such upstream or backend"),
                Some(b) => {
                    let draining = *action == "drain";
                    b.draining.store(draining, Relaxed);
                    tracing::info!(upstream = %name, backend = %addr, draining, "drain state changed");
                    json(
                        StatusCode::OK,
                        json!({ "addr": addr, "draining": draining }).to_string(),
                    )
                }
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}
