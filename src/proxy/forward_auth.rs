//! Forward-auth (SPEC 14): decisions for a proxy that is already there.
//! nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth` ask
//! `<endpoint_prefix>/auth`, describing the original request in headers;
//! Envoy `ext_authz` and Gateway API `ExternalAuth` ask
//! `<endpoint_prefix>/authz/<original path>` with the original method and
//! `Host`. Either way the answer is the in-line pipeline's steps 4-7
//! ([`super::decide`]) for the original request with the caller's own
//! credentials, then a forward-auth shaped respond step: 200 with the
//! identity headers, the login redirect in the form the caller can pass
//! on, or the in-line refusal.
//!
//! Owns no state: the route rules come from the snapshot, sessions and
//! revocations from their owners (sliding expiry included), and the
//! decision counters live in [`crate::metrics::Metrics`].

use super::{decide, Ctx, Mode};
use crate::body::Body;
use crate::error::{Challenge, GatewayError, Malformed};
use crate::gateway::{Gateway, Snapshot};
use crate::route;
use crate::server::ConnInfo;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

/// The original request a decision is about, for the access log.
pub(super) struct Original {
    pub method: Method,
    pub host: String,
    pub path: String,
}

/// The endpoints under `endpoint_prefix` that this module answers.
pub(super) fn is_endpoint(sub_path: &str) -> bool {
    sub_path == "/auth" || sub_path == "/authz" || sub_path.starts_with("/authz/")
}

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// How the caller described the original request: this decides the shape
/// of the login redirect (nginx cannot pass a 302 through).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// `/auth` with `X-Original-URL` (nginx `auth_request`).
    OriginalUrl,
    /// `/auth` with `X-Forwarded-*` (Traefik, Caddy).
    Forwarded,
    /// `/authz/<path>` (Envoy, Gateway API).
    Authz,
}

/// The original request as described: scheme, authority, method, path and
/// query.
struct Described {
    caller: Caller,
    https: bool,
    authority: http::uri::Authority,
    method: Method,
    path_and_query: http::uri::PathAndQuery,
}

/// Answers one forward-auth request. Counts the decision under its route
/// (`gatehouse_forward_auth_total`).
pub(super) async fn handle(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    sub_path: &str,
    ctx: &mut Ctx,
) -> Result<Response<Body>, GatewayError> {
    let Some(fa) = &snap.config.forward_auth else {
        return Err(GatewayError::NotFound);
    };
    let out = answer(gw, snap, conn, req, sub_path, fa, ctx).await;
    let route = ctx
        .route
        .map_or("", |i| snap.config.routes[i].name.as_str());
    gw.metrics.forward_auth(route, result_label(&out));
    out
}

async fn answer(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    sub_path: &str,
    fa: &crate::config::ForwardAuth,
    ctx: &mut Ctx,
) -> Result<Response<Body>, GatewayError> {
    let d = describe(&req, sub_path, conn)?;
    let (mut parts, _body) = req.into_parts();
    ctx.original = Some(Box::new(Original {
        method: d.method.clone(),
        host: d.authority.as_str().to_string(),
        path: d.path_and_query.path().to_string(),
    }));

    // The original path, normalised as in-line (step 2): what in-line
    // refuses is refused here.
    let path = route::normalize_path(d.path_and_query.path())
        .map_err(|_| GatewayError::BadRequest(Malformed::Path))?
        .into_owned();
    // The gateway's own pages (the login page above all) must be reachable
    // through the proxy that asks: no route rules apply to them.
    if super::own_sub_path(snap, &path).is_some() {
        return Ok(allowed());
    }

    // The original request, as steps 4-7 read it: its method, target and
    // host, the caller's own headers (Cookie, Authorization, Accept,
    // Origin), and the scheme it used.
    let scheme = if d.https { "https" } else { "http" };
    parts.method = d.method.clone();
    parts.uri = http::Uri::from(d.path_and_query.clone());
    let host = HeaderValue::from_str(d.authority.as_str())
        .map_err(|_| GatewayError::BadRequest(Malformed::OriginalHost))?;
    parts.headers.insert(header::HOST, host);
    parts
        .headers
        .insert(&X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    // CSRF `origin` compares against the original scheme whether or not
    // the asking proxy is in `trusted_proxies`.
    let original_conn = ConnInfo::new(conn.peer, conn.local, d.https, None, false);
    ctx.html = super::respond::wants_html(&parts.headers);

    let decision = match decide(
        gw,
        snap,
        &original_conn,
        &mut parts,
        Some(&path),
        Mode::ForwardAuth,
        ctx,
    )
    .await
    {
        Ok(decision) => decision,
        Err(e) => return refusal(snap, ctx, fa, &d, e),
    };

    let mut resp = allowed();
    if let Some(id) = &decision.identity {
        let route = &snap.config.routes[decision.route];
        // Decision-only routes have no upstream: the identity JWT's
        // audience is then the route's name (SPEC 14).
        let audience = route
            .upstream
            .map_or(route.name.as_str(), |u| snap.upstreams[u].name.as_str());
        super::add_identity(gw, snap, resp.headers_mut(), id, audience)?;
    }
    Ok(resp)
}

/// 200, empty body, not to be cached by the asking proxy.
fn allowed() -> Response<Body> {
    let mut r = Response::new(Body::Empty);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The respond step for a refused decision: a caller without credentials
/// that in-line would send to the login page gets its URL, coming back to
/// the original absolute URL, as a 302 or (nginx) a 401 carrying the
/// `Location`; every other refusal is the in-line one.
fn refusal(
    snap: &Snapshot,
    ctx: &Ctx,
    fa: &crate::config::ForwardAuth,
    d: &Described,
    e: GatewayError,
) -> Result<Response<Body>, GatewayError> {
    let (GatewayError::Unauthenticated(_), Some(i)) = (&e, ctx.route) else {
        return Err(e);
    };
    let scheme = if d.https { "https" } else { "http" };
    let base = format!("{scheme}://{}", d.authority.as_str());
    let rd = format!("{base}{}", d.path_and_query.as_str());
    let Some(location) = crate::auth::login_location(
        snap,
        &snap.config.routes[i],
        ctx.html,
        &base,
        fa.login_url.as_deref(),
        &rd,
    ) else {
        return Err(e);
    };
    let login = GatewayError::Unauthenticated(Challenge::Login { location });
    if d.caller != Caller::OriginalUrl {
        return Err(login);
    }
    let mut r = super::respond::error(&login, &ctx.request_id, ctx.html);
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    Ok(r)
}

/// Reads the original request from the forward-auth request. The
/// describing headers are taken from any peer: they only choose which
/// route's rules apply to the caller's own credentials.
fn describe(
    req: &Request<Incoming>,
    sub_path: &str,
    conn: &ConnInfo,
) -> Result<Described, GatewayError> {
    let h = req.headers();
    let text = |name: &HeaderName| -> Result<Option<&str>, GatewayError> {
        match h.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.trim()))
                .map_err(|_| GatewayError::BadRequest(Malformed::ForwardAuthHeader)),
        }
    };
    let method = |v: Option<&str>| -> Result<Method, GatewayError> {
        match v {
            None | Some("") => Ok(req.method().clone()),
            Some(m) => Method::from_bytes(m.as_bytes())
                .map_err(|_| GatewayError::BadRequest(Malformed::OriginalMethod)),
        }
    };
    let scheme_https = |v: Option<&str>| -> Result<bool, GatewayError> {
        // A list names the proxy nearest the client first.
        match v.map(|p| p.split(',').next().unwrap_or("").trim()) {
            None | Some("") => Ok(conn.tls),
            Some(p) if p.eq_ignore_ascii_case("https") => Ok(true),
            Some(p) if p.eq_ignore_ascii_case("http") => Ok(false),
            Some(_) => Err(GatewayError::BadRequest(Malformed::OriginalScheme)),
        }
    };
    let authority = |v: &str| -> Result<http::uri::Authority, GatewayError> {
        match v.parse::<http::uri::Authority>() {
            // No userinfo: `user@host` would be read as `host` here and
            // maybe otherwise elsewhere.
            Ok(a) if !a.as_str().contains('@') && !a.host().is_empty() => Ok(a),
            _ => Err(GatewayError::BadRequest(Malformed::OriginalHost)),
        }
    };
    let target = |v: &str| -> Result<http::uri::PathAndQuery, GatewayError> {
        match v.parse::<http::uri::PathAndQuery>() {
            Ok(pq) if pq.path().starts_with('/') => Ok(pq),
            _ => Err(GatewayError::BadRequest(Malformed::OriginalPath)),
        }
    };

    if sub_path == "/auth" {
        if let Some(url) = text(&X_ORIGINAL_URL)? {
            let uri: http::Uri = url
                .parse()
                .map_err(|_| GatewayError::BadRequest(Malformed::OriginalUrl))?;
            let (Some(scheme), Some(a)) = (uri.scheme_str(), uri.authority()) else {
                return Err(GatewayError::BadRequest(Malformed::OriginalUrlNotAbsolute));
            };
            let https = scheme_https(Some(scheme))?;
            let path_and_query = match uri.path_and_query() {
                Some(pq) if pq.path().starts_with('/') => pq.clone(),
                _ => http::uri::PathAndQuery::from_static("/"),
            };
            return Ok(Described {
                caller: Caller::OriginalUrl,
                https,
                authority: authority(a.as_str())?,
                method: method(text(&X_ORIGINAL_METHOD)?)?,
                path_and_query,
            });
        }
        let Some(host) = text(&X_FORWARDED_HOST)? else {
            return Err(GatewayError::BadRequest(Malformed::NoOriginal));
        };
        // A list names the host the client asked for first.
        let host = host.split(',').next().unwrap_or("").trim();
        return Ok(Described {
            caller: Caller::Forwarded,
            https: scheme_https(text(&X_FORWARDED_PROTO)?)?,
            authority: authority(host)?,
            method: method(text(&X_FORWARDED_METHOD)?)?,
            path_and_query: match text(&X_FORWARDED_URI)? {
                None | Some("") => http::uri::PathAndQuery::from_static("/"),
                Some(u) => target(u)?,
            },
        });
    }

    // `/authz/<path>`: the request is the original one, moved under the
    // prefix (the path is already normalised, step 2).
    let path = match &sub_path["/authz".len()..] {
        "" => "/",
        p => p,
    };
    let path_and_query = match req.uri().query() {
        Some(q) => target(&format!("{path}?{q}"))?,
        None => target(path)?,
    };
    let host = Some(route::request_authority(req.headers(), req.uri()))
        .filter(|h| !h.is_empty())
        .ok_or(GatewayError::BadRequest(Malformed::NoHost))?;
    Ok(Described {
        caller: Caller::Authz,
        https: scheme_https(text(&X_FORWARDED_PROTO)?)?,
        authority: authority(host)?,
        method: req.method().clone(),
        path_and_query,
    })
}

/// The `result` label of a decision (SPEC 14): `allowed`, or the
/// `gatehouse_auth_total` result the refusal stands for.
fn result_label(out: &Result<Response<Body>, GatewayError>) -> &'static str {
    match out {
        Ok(r) if r.status().is_success() => "allowed",
        // The nginx form of the login redirect.
        Ok(_) => "missing",
        Err(GatewayError::Unauthenticated(Challenge::InvalidToken(why))) => {
            if why.contains("expired") {
                "expired"
            } else if why.contains("revoked") {
                "revoked"
            } else {
                "invalid"
            }
        }
        Err(GatewayError::Unauthenticated(_)) => "missing",
        Err(GatewayError::Forbidden) => "forbidden",
        Err(GatewayError::BadRequest(_) | GatewayError::NoRoute) => "invalid",
        Err(GatewayError::Locked { .. }) => "locked",
        Err(_) => "error",
    }
}
