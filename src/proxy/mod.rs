//! The request pipeline. [`handle`] is the only place the phase order is
//! written down (SPEC 3):
//!
//! 1. framing checks   malformed or smuggling-prone requests     -> 400
//! 2. normalise path   RFC 3986 dot segments and escapes         -> 400
//! 3. own endpoints    `<endpoint_prefix>/...`
//! 4. route            host + normalised path, first match       -> 404
//! 5. strip            identity headers a client must not send  (every route)
//! 6. authenticate     the route's methods in order              -> 401 / 302
//! 7. authorise        `[routes.require]`                        -> 403
//! 8. forward          choose backend (affinity), rewrite, send  -> 502/503/504
//! 9. respond          affinity cookie, hop-by-hop out, request id, access log

pub mod forward;
pub mod headers;
pub mod respond;
mod tunnel;

use crate::auth::{self, Identity};
use crate::body::Body;
use crate::error::GatewayError;
use crate::gateway::{Gateway, Snapshot};
use crate::revocation::liveness::{Liveness, StreamWatch};
use crate::route;
use crate::server::ConnInfo;
use crate::upstream::sticky;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

/// What the phases learn about a request, for the response and the log.
struct Ctx {
    request_id: HeaderValue,
    html: bool,
    route: Option<usize>,
    backend: Option<Arc<crate::upstream::Backend>>,
    /// A session cookie to expire on the way out (it named no live session).
    expire_session_cookie: bool,
    /// When the request head was in: the body deadline counts from here.
    received: tokio::time::Instant,
    /// Served by the gateway's own endpoints (metrics route `_gatehouse`).
    own_endpoint: bool,
}

/// Serves one request from a client connection. Never fails: every error
/// becomes a response here.
pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let snap = gw.snapshot();
    let trusted = snap.is_trusted_proxy(conn.peer.ip());
    let request_id = match req.headers().get(&headers::X_REQUEST_ID) {
        Some(v) if trusted && v.len() <= 128 && v.to_str().is_ok_and(headers::is_safe_value) => {
            v.clone()
        }
        _ => gw.request_ids.next(),
    };
    let mut ctx = Ctx {
        request_id,
        html: respond::wants_html(req.headers()),
        route: None,
        backend: None,
        expire_session_cookie: false,
        received: tokio::time::Instant::now(),
        own_endpoint: false,
    };
    let method = req.method().clone();
    let http1 = req.version() <= Version::HTTP_11;
    let path_for_log = if snap.config.log.access_log {
        Some(req.uri().path().to_string())
    } else {
        None
    };
    // Every line logged while serving this request carries its id, and
    // its route and backend once they are known.
    let span = tracing::info_span!(
        "request",
        request_id = ctx.request_id.to_str().unwrap_or(""),
        route = tracing::field::Empty,
        backend = tracing::field::Empty,
    );
    let inner = handle_inner(&gw, &snap, &conn, trusted, req, &mut ctx);
    let mut resp = match tracing::Instrument::instrument(inner, span.clone()).await {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_server_error() {
                let _in_request = span.enter();
                tracing::warn!(
                    request_id = ctx.request_id.to_str().unwrap_or(""),
                    error = %crate::telemetry::chain(&e),
                    "request failed"
                );
            }
            let mut r = respond::error(&e, &ctx.request_id, ctx.html);
            // The error decides whether the connection may go on; HTTP/1
            // closes it once the answer is out when it may not.
            if http1 && !e.can_reuse_connection() {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
    };
    resp.headers_mut()
        .insert(&headers::X_REQUEST_ID, ctx.request_id.clone());
    if ctx.expire_session_cookie {
        if let Ok(v) = HeaderValue::from_str(&crate::session::expired_cookie(&snap.config.sessions))
        {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    let rm = match ctx.route {
        Some(i) => &snap.route_metrics[i],
        None if ctx.own_endpoint => &snap.own_endpoint_metrics,
        None => &snap.no_route_metrics,
    };
    rm.requests.inc(status);
    rm.duration.observe(elapsed);
    if let Some(path) = path_for_log {
        let route_name = match ctx.route {
            Some(i) => snap.config.routes[i].name.as_str(),
            None if ctx.own_endpoint => OWN_ENDPOINT_ROUTE,
            None => "",
        };
        let bytes = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info!(
            target: "gatehouse::access",
            method = %method,
            path = %path,
            status,
            bytes,
            // Whole microseconds, so the float prints as written (0.044).
            duration_ms = elapsed.as_micros() as f64 / 1000.0,
            route = route_name,
            backend = ctx.backend.as_ref().map_or("", |b| b.addr.as_str()),
            request_id = ctx.request_id.to_str().unwrap_or(""),
            peer = %conn.peer.ip(),
        );
    }
    Ok(resp)
}

async fn handle_inner(
    gw: &Arc<Gateway>,
    snap: &Snapshot,
    conn: &ConnInfo,
    trusted: bool,
    req: Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<Response<Body>, GatewayError> {
    // 1. Framing. hyper refuses conflicting Content-Length values and
    // malformed chunking. A head carrying both Content-Length and
    // Transfer-Encoding never gets here: hyper drops Content-Length while
    // parsing, so the connection's framing guard (server/framing.rs)
    // refuses such a head before hyper reads it. What is left to check is
    // what hyper passes on as valid.
    if req.version() <= Version::HTTP_11 && !headers::transfer_coding_is_plain(req.headers()) {
        return Err(GatewayError::BadRequest("unsupported Transfer-Encoding"));
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    if let Some(h) = hosts.next() {
        if hosts.next().is_some() {
            return Err(GatewayError::BadRequest("more than one Host header"));
        }
        // Not text: routing would see no host at all while the backend
        // (which gets it as sent) may see one.
        if h.to_str().is_err() {
            return Err(GatewayError::BadRequest("malformed Host header"));
        }
    }

    // 2. Normalise before anything looks at the path: routing and the
    // forwarded request must agree on what was asked for.
    let path = route::normalize_path(req.uri().path())
        .map_err(|_| GatewayError::BadRequest("malformed path"))?;

    // 3. The gateway's own endpoints.
    if path.starts_with(snap.endpoint_prefix_slash.as_str())
        || path == snap.config.server.endpoint_prefix
    {
        let sub_path = path[snap.config.server.endpoint_prefix.len()..].to_string();
        ctx.own_endpoint = true;
        tracing::Span::current().record("route", OWN_ENDPOINT_ROUTE);
        return crate::login::handle(gw, snap, conn, req, &sub_path, ctx.html, &ctx.request_id)
            .await;
    }

    // 4. Route on host (port removed) and the normalised path.
    let host_value = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let host = route::host_without_port(host_value);
    let found = route::lookup(&snap.config.routes, host, &path);
    // A backend that decodes `%2F`, folds case or drops `;params` could
    // read this request as another route's path than the one matched:
    // refused, so no route's rules can be side-stepped that way.
    if route::is_ambiguous(&snap.config.routes, host, &path, found.map(|(i, _)| i)) {
        return Err(GatewayError::BadRequest("ambiguous path"));
    }
    let (route_idx, route) = found.ok_or(GatewayError::NoRoute)?;
    ctx.route = Some(route_idx);
    tracing::Span::current().record("route", route.name.as_str());
    // The path to forward when it is not the request's own (normalisation
    // or strip_prefix changed it); `None`: the request's path as it came.
    let forward_path: Option<String> = if route.strip_prefix {
        Some(route::strip_prefix(&route.path_prefix, &path).into_owned())
    } else {
        match path {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(p) => Some(p),
        }
    };

    let (mut parts, body) = req.into_parts();

    // 5. Strip identity headers before authenticating, on every route
    // including auth = "none": whatever the client sent under those names
    // must never reach a backend, and must never be read as an identity.
    headers::strip_identity(&mut parts.headers, &snap.config.identity);

    // 6-7. Authenticate and authorise.
    let found = auth::authenticate(gw, snap, route, &mut parts, conn, ctx.html).await?;
    ctx.expire_session_cookie = found.expire_session_cookie;
    let identity = found.require(snap, route, &parts, ctx.html)?;
    auth::authz::authorize(gw, snap, route, &parts, identity.as_deref(), ctx.html)?;
    let session_key = found.authenticated.as_ref().and_then(|a| a.session);
    let liveness = Liveness::of(session_key, identity.as_deref());
    // What ends after this moment ends long-lived connections opened now.
    let authenticated_ms = crate::session::now_ms();
    let session_record = found.authenticated.and_then(|a| a.session_record);
    if snap.config.identity.strip_session_cookie && snap.config.sessions.enabled {
        crate::session::strip_cookie(&mut parts.headers, &snap.config.sessions.cookie_name);
    }

    // 8. Choose, rewrite and forward. Affinity is read before the rewrite
    // (which replaces X-Forwarded-For) and the gateway's affinity cookie is
    // not passed on: the backend has no use for it.
    let upstream = &snap.upstreams[route.upstream];
    let set = upstream.backends();
    let client_ip = if upstream.sticky.is_some() || upstream.hash_key.is_some() {
        sticky::client_ip(
            conn.peer.ip(),
            &snap.config.server.trusted_proxies,
            &parts.headers,
        )
    } else {
        conn.peer.ip()
    };
    // Identity mode with a server-side session: the backend recorded in the
    // session wins over the hash, so adding backends moves nobody.
    let pinned = session_record
        .as_ref()
        .and_then(|r| r.backends.get(&upstream.name))
        .map(String::as_str);
    let mut affinity = sticky::read(
        upstream,
        &set,
        &parts,
        identity.as_deref(),
        client_ip,
        pinned,
    );
    // Learn mode across replicas: an app cookie another replica learned.
    if let Some(value) =
        sticky::learn_miss(upstream, &parts, &affinity).filter(|_| gw.store.shares_learned())
    {
        if let Some(addr) = gw.store.learned_get(&upstream.name, value).await {
            affinity.pin_learned(upstream, &set, &addr);
        }
    }
    if let Some(crate::config::Sticky {
        mode: crate::config::StickyMode::Cookie { cookie_name },
        ..
    }) = &upstream.sticky
    {
        sticky::remove_cookie(&mut parts.headers, cookie_name);
    }
    let websocket = route.websocket
        && parts.version == Version::HTTP_11
        && headers::is_websocket_upgrade(&parts.headers);
    // What the backend's 101 must carry (SPEC 16). Taken before the
    // request is sent: the key goes to the backend with it.
    let websocket_accept = if websocket {
        headers::WebSocketAccept::for_request(&parts.headers)
    } else {
        None
    };
    let client_upgrade = if websocket {
        let mut tmp = Request::from_parts(parts, ());
        let on = hyper::upgrade::on(&mut tmp);
        parts = tmp.into_parts().0;
        Some(on)
    } else {
        None
    };
    let target = Target {
        upstream: &upstream.name,
        path: forward_path.as_deref(),
        websocket,
        identity: identity.as_deref(),
    };
    rewrite_request(gw, snap, conn, trusted, &mut parts, &target)?;
    parts
        .headers
        .insert(&headers::X_REQUEST_ID, ctx.request_id.clone());
    // The scheme the client used: ours, or a trusted proxy's.
    let secure = parts
        .headers
        .get(&headers::X_FORWARDED_PROTO)
        .is_some_and(|v| v == "https");
    let body_deadline = snap
        .config
        .server
        .request_body_timeout
        .map(|t| ctx.received + t);
    let outbound = Request::from_parts(
        parts,
        Body::Request(crate::body::RequestBody::new(body, body_deadline)),
    );

    let fwd = forward::forward(upstream, &set, &affinity, outbound).await?;
    ctx.backend = Some(fwd.backend.clone());
    let forward::Forwarded {
        mut response,
        in_flight,
        conn: pooled,
        decision,
        ..
    } = fwd;
    // Re-pin moved clients, issue affinity cookies, learn app cookies.
    let affinity_out = sticky::write(
        upstream,
        &set,
        &affinity,
        decision,
        response.headers(),
        secure,
    );
    if let Some(sticky) = upstream
        .sticky
        .as_ref()
        .filter(|_| gw.store.shares_learned())
    {
        for (value, addr) in affinity_out.learned {
            gw.store
                .learned_put(&upstream.name, value, addr, sticky.ttl);
        }
    }
    if let (Some(backend), Some(key)) = (&affinity_out.record, session_key) {
        if let Err(e) = gw.store.pin_backend(key, &upstream.name, backend).await {
            tracing::warn!(error = %e, "could not record the sticky backend in the session");
        }
    }

    // 9. Respond. The gateway's own cookies are set by the gateway only.
    let affinity_cookie = match &upstream.sticky {
        Some(crate::config::Sticky {
            mode: crate::config::StickyMode::Cookie { cookie_name },
            ..
        }) => Some(cookie_name.as_str()),
        _ => None,
    };
    let session_cookie = snap
        .config
        .sessions
        .enabled
        .then_some(snap.config.sessions.cookie_name.as_str());
    // "" stands for a cookie the gateway does not issue here: no value
    // sets a cookie without a name.
    let own_cookies = [
        crate::login::oidc::state::STATE_COOKIE,
        session_cookie.unwrap_or(""),
        affinity_cookie.unwrap_or(""),
    ];
    headers::drop_own_set_cookies(response.headers_mut(), &own_cookies);
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Relayed only as the answer to the WebSocket handshake the client
        // sent: anything else would turn the client's connection into a
        // raw byte pipe to the backend, past every check of the gateway.
        let (Some(client_upgrade), Some(accept)) = (client_upgrade, websocket_accept) else {
            return Err(GatewayError::UnexpectedSwitch);
        };
        if !accept.answered_by(response.headers()) {
            return Err(GatewayError::UnexpectedSwitch);
        }
        let backend_upgrade = hyper::upgrade::on(&mut response);
        let shutdown = gw.shutdown.subscribe();
        tokio::spawn(tunnel::run(
            client_upgrade,
            backend_upgrade,
            in_flight,
            shutdown,
            gw.clone(),
            liveness,
            authenticated_ms,
        ));
        let (mut rparts, _) = response.into_parts();
        headers::remove_hop_by_hop(&mut rparts.headers, true);
        if let Some(c) = affinity_out.set_cookie {
            rparts.headers.append(header::SET_COOKIE, c);
        }
        return Ok(Response::from_parts(rparts, Body::Empty));
    }
    let (mut rparts, rbody) = response.into_parts();
    headers::remove_hop_by_hop(&mut rparts.headers, false);
    if let Some(c) = affinity_out.set_cookie {
        rparts.headers.append(header::SET_COOKIE, c);
    }
    // Long responses (streamed, or large) opened with a session or token
    // end when it does; short ones are not worth the bookkeeping.
    let long = rparts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_none_or(|n| n > LONG_RESPONSE_BYTES);
    let watch = match (long, liveness) {
        (true, Some(l)) => {
            let cap = session_record
                .as_deref()
                .map(|r| r.created_ms + snap.config.sessions.absolute_timeout.as_millis() as u64);
            Some(
                Box::new(StreamWatch::new(gw.clone(), l, cap, authenticated_ms))
                    as Box<dyn crate::body::StreamCheck>,
            )
        }
        _ => None,
    };
    let body = Body::Upstream {
        inner: rbody,
        on_end: pooled,
        _in_flight: Some(in_flight),
        watch,
    };
    Ok(Response::from_parts(rparts, body))
}

/// Where step 8 sends a request, as its rewrite needs it.
#[derive(Clone, Copy)]
struct Target<'a> {
    /// The upstream's name (the identity JWT's default audience).
    upstream: &'a str,
    /// The path to forward when it is not the request's own (normalised,
    /// or with `strip_prefix` applied).
    path: Option<&'a str>,
    /// A WebSocket upgrade: its `Upgrade`/`Connection` headers are kept.
    websocket: bool,
    identity: Option<&'a Identity>,
}

/// Step 8's rewrite: origin-form URI with the normalised path, HTTP/1.1,
/// hop-by-hop headers out, forwarding headers and identity in.
fn rewrite_request(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    trusted: bool,
    parts: &mut http::request::Parts,
    target: &Target<'_>,
) -> Result<(), GatewayError> {
    let Target {
        upstream,
        path,
        websocket,
        identity,
    } = *target;
    // Origin form: the path (and query) alone. When the path is the
    // request's own, its bytes are reused as they are.
    let pq = match (path, parts.uri.path_and_query()) {
        (None, Some(pq)) => pq.clone(),
        (path, _) => {
            let path = path.unwrap_or_else(|| parts.uri.path());
            let mut s =
                String::with_capacity(path.len() + 1 + parts.uri.query().map_or(0, str::len));
            s.push_str(path);
            if let Some(q) = parts.uri.query() {
                s.push('?');
                s.push_str(q);
            }
            http::uri::PathAndQuery::try_from(s)
                .map_err(|_| GatewayError::BadRequest("malformed request target"))?
        }
    };
    // HTTP/2 requests carry the host in :authority only.
    if !parts.headers.contains_key(header::HOST) {
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    parts.uri = Uri::from(pq);
    // HTTP/2 may split cookies over several fields; HTTP/1.1 backends
    // expect one (RFC 9113 section 8.2.3).
    if parts.version == Version::HTTP_2 {
        headers::join_cookies(&mut parts.headers);
    }
    parts.version = Version::HTTP_11;
    headers::remove_hop_by_hop(&mut parts.headers, websocket);
    headers::strip_lookalikes(&mut parts.headers);
    // Only the gateway says whether a client was moved: forward() sets or
    // removes X-Gatehouse-Rehomed on every attempt.
    let host = parts.headers.get(header::HOST).cloned();
    headers::set_forwarded(
        &mut parts.headers,
        &conn.peer_value,
        trusted,
        conn.tls,
        host.as_ref(),
    );
    if let Some(id) = identity {
        for (name, field) in &snap.config.identity.headers {
            let value = match field.as_str() {
                "iss" => id.iss(&snap.config).map(std::borrow::Cow::Borrowed),
                _ => id.field(field),
            };
            if let Some(v) = value {
                if !headers::is_safe_value(&v) {
                    return Err(GatewayError::BadRequest(
                        "identity value not allowed in a header",
                    ));
                }
                // from_bytes: UTF-8 names and emails travel as RFC 9110
                // obs-text rather than being dropped.
                if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                    parts.headers.insert(name.clone(), v);
                }
            }
        }
        if let Some(jcfg) = &snap.config.identity.jwt {
            let audience = jcfg.audience.as_deref().unwrap_or(upstream);
            if let Some(v) = gw
                .identity_tokens
                .header_value(&snap.config, jcfg, id, audience)
            {
                parts.headers.insert(jcfg.header.clone(), v);
            }
        }
    }
    // The verified client certificate (SPEC 15), on any route: a fact
    // about the connection the gateway checked, like X-Forwarded-Proto.
    // A client's own copy was stripped in step 5.
    if let (Some(name), Some(cert)) = (
        &snap.config.identity.client_cert_header,
        conn.client_cert.as_deref(),
    ) {
        if let Some(v) = cert.escaped_pem() {
            parts.headers.insert(name.clone(), v);
        }
    }
    Ok(())
}

/// The `route` label of the gateway's own endpoints (login, token, ...) in
/// metrics and logs; `""` is left for requests no route matched.
pub const OWN_ENDPOINT_ROUTE: &str = "_gatehouse";

/// Responses above this size (or without a length) are watched.
const LONG_RESPONSE_BYTES: u64 = 1 << 20;
