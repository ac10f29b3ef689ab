//! The request pipeline. [`handle`] is the only place the phase order is
//! written down (SPEC 3):
//!
//! 1. framing checks   malformed or smuggling-prone requests     -> 400
//! 2. normalise path   RFC 3986 dot segments and escapes         -> 400
//! 3. own endpoints    `<endpoint_prefix>/...`, forward-auth among them
//! 4. route            host + normalised path, first match       -> 404
//! 5. strip            identity headers a client must not send  (every route)
//! 6. authenticate     the route's methods in order              -> 401
//! 7. authorise        `[routes.require]`                        -> 403
//! 8. forward          choose backend (affinity), rewrite, send  -> 502/503/504
//! 9. respond          login page (302) for a browser's 401, affinity cookie,
//!    hop-by-hop out, request id, access log
//!
//! Steps 4-7 are `decide`: the one decision, made for in-line requests
//! here and for the original request of a forward-auth question
//! (`forward_auth.rs`, SPEC 14), which answers it in its own step 9.

mod affinity;
pub mod forward;
mod forward_auth;
pub mod headers;
pub mod respond;
mod tunnel;

use crate::auth::{self, Identity};
use crate::body::Body;
use crate::error::{Challenge, GatewayError, Malformed};
use crate::gateway::{Gateway, Snapshot};
use crate::revocation::liveness::{Liveness, StreamWatch};
use crate::route;
use crate::server::ConnInfo;
use crate::telemetry::{self, RequestLog, RouteName};
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
    /// A forward-auth decision: the original request, which the access
    /// line names instead of the endpoint's.
    original: Option<Box<forward_auth::Original>>,
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
        original: None,
    };
    let method = req.method().clone();
    let http1 = req.version() <= Version::HTTP_11;
    let path_for_log = if snap.config.log.access_log {
        Some(req.uri().path().to_string())
    } else {
        None
    };
    // Every line logged while serving this request carries its id, and
    // its route and backend once they are known (the `request` span,
    // made only for a line that is logged: telemetry.rs).
    let log = RequestLog::new(ctx.request_id.clone(), snap.clone());
    let inner = async {
        let result = handle_inner(&gw, &snap, &conn, trusted, req, &mut ctx).await;
        if let Err(e) = &result {
            if e.status().is_server_error() {
                tracing::warn!(
                    request_id = ctx.request_id.to_str().unwrap_or(""),
                    error = %crate::telemetry::chain(e),
                    "request failed"
                );
            }
        }
        result
    };
    let mut resp = match log.scope(inner).await {
        Ok(r) => r,
        Err(e) => {
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
    // Never indexed by HTTP/2's header compression (HPACK): a value unique
    // to each response would only churn the connection's table, evicting
    // entries the next responses could use (HTTP/1 ignores the flag).
    let mut id = ctx.request_id.clone();
    id.set_sensitive(true);
    resp.headers_mut().insert(&headers::X_REQUEST_ID, id);
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
        if let Some(o) = &ctx.original {
            // One line per decision, naming what was decided on.
            tracing::info!(
                target: "gatehouse::access",
                method = %o.method,
                host = %o.host,
                path = %o.path,
                status,
                duration_ms = elapsed.as_micros() as f64 / 1000.0,
                route = route_name,
                forward_auth = true,
                request_id = ctx.request_id.to_str().unwrap_or(""),
                peer = %conn.peer.ip(),
            );
            return Ok(resp);
        }
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
    // 1. Framing.
    check_framing(&req)?;

    // 2. Normalise before anything looks at the path: routing and the
    // forwarded request must agree on what was asked for. `None`: the
    // path is normal as it came (the common case, no copy).
    let normalized = match route::normalize_path(req.uri().path()) {
        Ok(std::borrow::Cow::Borrowed(_)) => None,
        Ok(std::borrow::Cow::Owned(p)) => Some(p),
        Err(_) => return Err(GatewayError::BadRequest(Malformed::Path)),
    };

    // 3. The gateway's own endpoints, forward-auth decisions among them.
    let path = normalized.as_deref().unwrap_or(req.uri().path());
    if let Some(sub_path) = own_sub_path(snap, path) {
        let sub_path = sub_path.to_string();
        ctx.own_endpoint = true;
        telemetry::set_route(RouteName::Own);
        // Boxed: these futures are large (password checks, OIDC, a whole
        // decision), and inline they would make every proxied request's
        // future as large, moved into hyper's box each time.
        if forward_auth::is_endpoint(&sub_path) {
            return Box::pin(forward_auth::handle(gw, snap, conn, req, &sub_path, ctx)).await;
        }
        return Box::pin(crate::login::handle(
            gw,
            snap,
            conn,
            req,
            &sub_path,
            ctx.html,
            &ctx.request_id,
        ))
        .await;
    }

    let (mut parts, body) = req.into_parts();

    // 4-7. Route, strip, authenticate, authorise: the decision, shared
    // with forward-auth. A caller without credentials is answered in
    // step 9's terms: the login page for a browser, else the 401.
    let decision = match decide(
        gw,
        snap,
        conn,
        &mut parts,
        normalized.as_deref(),
        Mode::InLine,
        ctx,
    )
    .await
    {
        Ok(d) => d,
        Err(e) => return Err(inline_refusal(snap, ctx, &parts, e)),
    };
    let route = &snap.config.routes[decision.route];
    let identity = decision.identity;
    let session_key = decision.session;
    let session_record = decision.session_record;
    // The path to forward when it is not the request's own (normalisation
    // or strip_prefix changed it); `None`: the request's path as it came.
    let forward_path: Option<String> = if route.strip_prefix {
        let path = normalized.as_deref().unwrap_or(parts.uri.path());
        Some(route::strip_prefix(&route.path_prefix, path).into_owned())
    } else {
        normalized
    };
    let liveness = Liveness::of(session_key, identity.as_deref());
    // What ends after this moment ends long-lived connections opened now.
    let authenticated_ms = crate::clock::now_ms();
    if snap.config.identity.strip_session_cookie && snap.config.sessions.enabled {
        crate::session::strip_cookie(&mut parts.headers, &snap.config.sessions.cookie_name);
    }

    // 8. Choose, rewrite and forward. Affinity is read before the rewrite
    // (which replaces X-Forwarded-For).
    let Some(upstream_idx) = route.upstream else {
        return Err(GatewayError::NoRoute);
    };
    let upstream = &snap.upstreams[upstream_idx];
    let set = upstream.backends();
    let place = affinity::Place {
        gw,
        upstream,
        set: &set,
    };
    let pin = place
        .read(
            snap,
            conn,
            &mut parts,
            identity.as_deref(),
            session_record.as_deref(),
        )
        .await;
    let (mut parts, handshake) = tunnel::Handshake::take(route.websocket, parts);
    let target = Target {
        upstream: &upstream.name,
        path: forward_path.as_deref(),
        websocket: handshake.is_some(),
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
    let fwd = forward::forward(upstream, &set, &pin, outbound).await?;
    ctx.backend = Some(fwd.backend.clone());
    let forward::Forwarded {
        mut response,
        in_flight,
        conn: pooled,
        decision,
        ..
    } = fwd;
    let affinity_cookie = place
        .commit(&pin, decision, response.headers(), secure, session_key)
        .await;

    // 9. Respond. The gateway's own cookies are set by the gateway only.
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
        affinity::cookie_name(upstream).unwrap_or(""),
    ];
    headers::drop_own_set_cookies(response.headers_mut(), &own_cookies);
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return tunnel::switch(
            handshake,
            response,
            in_flight,
            gw,
            liveness,
            authenticated_ms,
            affinity_cookie,
        );
    }
    let (mut rparts, rbody) = response.into_parts();
    headers::remove_hop_by_hop(&mut rparts.headers, false);
    if let Some(c) = affinity_cookie {
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

/// Who asks for a decision: the in-line pipeline, which refuses routes
/// without an upstream, or a forward-auth endpoint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    InLine,
    ForwardAuth,
}

/// What steps 4-7 decided: the request may pass, on this route, as this
/// caller (none on `auth = "none"` and anonymous `optional`).
struct Decision {
    /// Index into the snapshot's routes.
    route: usize,
    identity: Option<Arc<Identity>>,
    /// The server-side session that authenticated it, with its record.
    session: Option<crate::session::SessionKey>,
    session_record: Option<Arc<crate::session::Record>>,
}

/// Steps 4-7 for a request whose path is already normalised (step 2;
/// `normalized` is `None` when the request's own path is normal):
/// the one decision both modes make (SPEC 14). A refusal is the error
/// the in-line pipeline would answer, except that an unauthenticated
/// caller gets the plain 401 here: sending a browser to the login page
/// instead is the respond step's choice, which differs between modes.
/// Records the route and a dead session cookie in `ctx`.
async fn decide(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    parts: &mut http::request::Parts,
    normalized: Option<&str>,
    mode: Mode,
    ctx: &mut Ctx,
) -> Result<Decision, GatewayError> {
    // 4. Route on host (port removed) and the normalised path.
    let path = normalized.unwrap_or(parts.uri.path());
    let host = route::request_host(&parts.headers, &parts.uri);
    let found = route::lookup(&snap.config.routes, host, path);
    // A backend that decodes `%2F`, folds case or drops `;params` could
    // read this request as another route's path than the one matched:
    // refused, so no route's rules can be side-stepped that way.
    if route::is_ambiguous(&snap.config.routes, host, path, found.map(|(i, _)| i)) {
        return Err(GatewayError::BadRequest(Malformed::AmbiguousPath));
    }
    let (route_idx, route) = found.ok_or(GatewayError::NoRoute)?;
    ctx.route = Some(route_idx);
    telemetry::set_route(RouteName::Config(route_idx));
    // A decision-only route has nothing to proxy to.
    if mode == Mode::InLine && route.upstream.is_none() {
        return Err(GatewayError::NoRoute);
    }

    // 5. Strip identity headers before authenticating, on every route
    // including auth = "none": whatever the client sent under those names
    // must never reach a backend, and must never be read as an identity.
    headers::strip_identity(&mut parts.headers, &snap.config.identity);

    // 6. Authenticate with the route's methods, in order.
    let found = auth::authenticate(gw, snap, route, parts, conn).await?;
    ctx.expire_session_cookie = found.expire_session_cookie;
    let identity = found.require(route)?;

    // 7. Authorise with `[routes.require]`.
    if let Err(e) = auth::authz::authorize(route, identity.as_deref()) {
        if let (GatewayError::Forbidden, Some(id)) = (&e, identity.as_deref()) {
            gw.metrics
                .auth(id.method.as_str(), crate::metrics::AuthResult::Forbidden);
        }
        return Err(e);
    }
    let (session, session_record) = match found.authenticated {
        Some(a) => (a.session, a.session_record),
        None => (None, None),
    };
    Ok(Decision {
        route: route_idx,
        identity,
        session,
        session_record,
    })
}

/// Step 9 for a refused in-line request: a caller without credentials is
/// sent to the login page when the route says so (SPEC 6, `on_unauthenticated`),
/// coming back to the path it asked for.
fn inline_refusal(
    snap: &Snapshot,
    ctx: &Ctx,
    parts: &http::request::Parts,
    e: GatewayError,
) -> GatewayError {
    let (GatewayError::Unauthenticated(_), Some(i)) = (&e, ctx.route) else {
        return e;
    };
    let rd = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    match auth::login_location(snap, &snap.config.routes[i], ctx.html, "", None, rd) {
        Some(location) => GatewayError::Unauthenticated(Challenge::Login { location }),
        None => e,
    }
}

/// Step 1. hyper refuses conflicting Content-Length values and malformed
/// chunking. A head carrying both Content-Length and Transfer-Encoding
/// never gets here: hyper drops Content-Length while parsing, so the
/// connection's framing guard (server/framing.rs) refuses such a head
/// before hyper reads it. What is left to check is what hyper passes on as
/// valid.
fn check_framing<B>(req: &Request<B>) -> Result<(), GatewayError> {
    if req.version() <= Version::HTTP_11 && !headers::transfer_coding_is_plain(req.headers()) {
        return Err(GatewayError::BadRequest(Malformed::TransferEncoding));
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    if let Some(h) = hosts.next() {
        if hosts.next().is_some() {
            return Err(GatewayError::BadRequest(Malformed::DuplicateHost));
        }
        // Not text: routing would see no host at all while the backend
        // (which gets it as sent) may see one.
        if h.to_str().is_err() {
            return Err(GatewayError::BadRequest(Malformed::HostNotText));
        }
    }
    Ok(())
}

/// The part of a normalised path after `endpoint_prefix` when the path is
/// one of the gateway's own (step 3).
fn own_sub_path<'p>(snap: &Snapshot, path: &'p str) -> Option<&'p str> {
    let prefix = &snap.config.server.endpoint_prefix;
    (path.starts_with(snap.endpoint_prefix_slash.as_str()) || path == prefix.as_str())
        .then(|| &path[prefix.len()..])
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
                .map_err(|_| GatewayError::BadRequest(Malformed::Target))?
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
        add_identity(gw, snap, &mut parts.headers, id, upstream)?;
    }
    // The verified client certificate (SPEC 15), on any route: a fact
    // about the connection the gateway checked, like X-Forwarded-Proto.
    // Not in a forward-auth answer: there
    // the connection is the proxy's. A client's own copy was stripped in step 5.
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

/// The identity headers of `[identity] headers`, and the `[identity.jwt]`
/// header (for `default_audience` unless configured): what a backend is
/// told about the caller, in-line (step 8) and in a forward-auth 200.
fn add_identity(
    gw: &Gateway,
    snap: &Snapshot,
    out: &mut http::HeaderMap,
    id: &Identity,
    default_audience: &str,
) -> Result<(), GatewayError> {
    for (name, field) in &snap.config.identity.headers {
        let value = match field.as_str() {
            "iss" => id.iss(&snap.config).map(std::borrow::Cow::Borrowed),
            _ => id.field(field),
        };
        if let Some(v) = value {
            if !headers::is_safe_value(&v) {
                return Err(GatewayError::BadRequest(Malformed::IdentityValue));
            }
            // from_bytes: UTF-8 names and emails travel as RFC 9110
            // obs-text rather than being dropped.
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                out.insert(name.clone(), v);
            }
        }
    }
    if let Some(jcfg) = &snap.config.identity.jwt {
        let audience = jcfg.audience.as_deref().unwrap_or(default_audience);
        if let Some(v) = gw
            .identity_tokens
            .header_value(&snap.config, jcfg, id, audience)
        {
            out.insert(jcfg.header.clone(), v);
        }
    }
    Ok(())
}

/// The `route` label of the gateway's own endpoints (login, token, ...) in
/// metrics and logs; `""` is left for requests no route matched.
pub const OWN_ENDPOINT_ROUTE: &str = "_gatehouse";

/// Responses above this size (or without a length) are watched.
const LONG_RESPONSE_BYTES: u64 = 1 << 20;
