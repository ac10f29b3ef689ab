//! The gateway's own endpoints under `endpoint_prefix` (SPEC 4): the login
//! page and form, logout, userinfo, and single sign-on (`oidc`).

pub mod oidc;
pub mod page;
pub mod users;

use crate::auth;
use crate::body::Body;
use crate::clock::now_ms;
use crate::error::{GatewayError, Malformed};
use crate::gateway::{Gateway, Snapshot};
use crate::metrics::AuthResult;
use crate::proxy::respond;
use crate::server::ConnInfo;
use crate::session::{self, Record, SessionId, SessionView};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde_json::json;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Bodies of login and token requests are small; anything larger is refused.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Serves `<prefix><sub_path>`. `request_id` is the response's
/// `X-Request-Id`, for pages and log lines that must be correlated with it.
pub async fn handle(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    sub_path: &str,
    html: bool,
    request_id: &HeaderValue,
) -> Result<Response<Body>, GatewayError> {
    match (req.method(), sub_path) {
        (&Method::GET, "/login") => login_page(snap, conn, &req),
        (&Method::POST, "/login") => login_submit(gw, snap, conn, req).await,
        (&Method::POST, "/logout") => logout(gw, snap, conn, req, html).await,
        (&Method::GET, "/userinfo") => userinfo(gw, snap, conn, req).await,
        (_, "/token" | "/jwks.json") => crate::tokens::handle(gw, snap, conn, req, sub_path).await,
        (&Method::GET, "/callback") => oidc::callback(gw, snap, conn, req, html, request_id).await,
        (&Method::POST, "/backchannel-logout") => oidc::backchannel_logout(gw, snap, req).await,
        (&Method::GET, p) if p.starts_with("/start/") => {
            oidc::start(snap, conn, &req, &p["/start/".len()..])
        }
        (_, "/login") => Err(GatewayError::MethodNotAllowed { allow: "GET, POST" }),
        (_, "/logout") => Err(GatewayError::MethodNotAllowed { allow: "POST" }),
        (_, "/userinfo" | "/callback") => Err(GatewayError::MethodNotAllowed { allow: "GET" }),
        (_, "/backchannel-logout") if !snap.oidc.is_empty() => {
            Err(GatewayError::MethodNotAllowed { allow: "POST" })
        }
        (_, p) if p.starts_with("/start/") && snap.oidc.get(&p["/start/".len()..]).is_some() => {
            Err(GatewayError::MethodNotAllowed { allow: "GET" })
        }
        _ => Err(GatewayError::NotFound),
    }
}

/// Where to send the user after login (SPEC 4 and 11): a relative path
/// starting with a single `/`, or an absolute URL whose host is this host
/// or one a route matches (exactly or by a `*.` wildcard), over https — or
/// http when the login itself arrived over plain HTTP (`plain_http`, see
/// [`auth::client_used_https`]). Anything else (`//evil.com`,
/// `https://evil.com`, `javascript:`) becomes `/`.
pub fn safe_redirect(rd: &str, request_host: &str, snap: &Snapshot, plain_http: bool) -> String {
    let ok_chars = !rd.is_empty() && rd.bytes().all(|b| (0x21..0x7f).contains(&b));
    if !ok_chars {
        return "/".into();
    }
    if rd.starts_with('/') {
        return if rd.starts_with("//") || rd.starts_with("/\\") {
            "/".into()
        } else {
            rd.to_string()
        };
    }
    let rest = match (rd.strip_prefix("https://"), rd.strip_prefix("http://")) {
        (Some(rest), _) => rest,
        (None, Some(rest)) if plain_http => rest,
        _ => return "/".into(),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') || authority.contains('\\') {
        return "/".into();
    }
    // The authority must read the same to every URL parser: a DNS name (or
    // a bracketed IPv6 literal) and an optional numeric port. Anything
    // else (`a:b.example.org`, `%`-escapes) could pass a wildcard match
    // here and send the browser somewhere else.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((h, p))
                if h.bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') =>
            {
                (h, p)
            }
            _ => return "/".into(),
        },
        None => match authority.split_once(':') {
            Some((h, _)) => (h, &authority[h.len()..]),
            None => (authority, ""),
        },
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = authority.starts_with('[')
        || host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !port_ok || !name_ok {
        return "/".into();
    }
    let this = crate::route::host_without_port(request_host);
    // Any host, named or matched by a wildcard; `HostMatch::Any` (a route
    // without `host`) names none.
    let routed = snap.config.routes.iter().any(|r| match &r.host {
        crate::config::HostMatch::Any => false,
        m => crate::route::host_matches(m, host),
    });
    if !host.is_empty() && (host.eq_ignore_ascii_case(this) || routed) {
        return rd.to_string();
    }
    "/".into()
}

fn login_action(snap: &Snapshot) -> String {
    format!("{}/login", snap.config.server.endpoint_prefix)
}

fn html_response(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The login page must not be framed (clickjacking) or load anything.
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    r
}

/// `(name, href)` of the single sign-on buttons: one per `[[oidc]]`
/// provider, carrying `rd` on.
fn providers(snap: &Snapshot, rd: &str) -> Vec<(String, String)> {
    snap.config
        .oidc
        .iter()
        .map(|p| (p.name.clone(), oidc::start_href(snap, &p.name, rd)))
        .collect()
}

fn render_login(
    snap: &Snapshot,
    rd: &str,
    error: Option<&str>,
    username: &str,
    status: StatusCode,
) -> Response<Body> {
    let action = login_action(snap);
    let local = snap
        .config
        .login
        .as_ref()
        .is_some_and(|l| l.users_file.is_some());
    let page = page::render(&page::Page {
        action: &action,
        rd,
        error,
        username,
        providers: &providers(snap, rd),
        local_form: local,
    });
    html_response(status, page)
}

pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode_form(v))
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space); a
/// `%` not followed by two hex digits stays as it is (see
/// [`crate::percent`]: `%+1` is not an escape).
pub fn percent_decode_form(s: &str) -> String {
    // Spaces first, so that an escaped `+` (`%2B`) stays a `+`.
    let spaced = if s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// The decoded `(name, value)` pairs of a form body, in order, repeats
/// included.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode_form(k), percent_decode_form(v))
        })
        .collect()
}

pub fn parse_form(body: &[u8]) -> BTreeMap<String, String> {
    form_pairs(body).into_iter().collect()
}

fn login_page(
    snap: &Snapshot,
    conn: &ConnInfo,
    req: &Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    if snap.config.login.is_none() && snap.config.oidc.is_empty() {
        return Err(GatewayError::NotFound);
    }
    let rd = query_param(req.uri().query(), "rd").unwrap_or_else(|| "/".into());
    let plain = !auth::client_used_https(snap, conn, req.headers());
    let rd = safe_redirect(
        &rd,
        crate::route::request_authority(req.headers(), req.uri()),
        snap,
        plain,
    );
    Ok(render_login(snap, &rd, None, "", StatusCode::OK))
}

/// Time a small body (a form, a token request, an admin call) has to
/// arrive in full: at most 64 KiB, so a client that takes longer is
/// holding the connection, not uploading.
pub const SMALL_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a small request body, refusing more than `limit` bytes (413) or
/// one that takes longer than [`SMALL_BODY_TIMEOUT`] (408).
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, GatewayError> {
    let read = tokio::time::timeout(SMALL_BODY_TIMEOUT, Limited::new(body, limit).collect());
    match read.await.map_err(|_| GatewayError::RequestTimeout)? {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(GatewayError::BodyTooLarge)
        }
        Err(_) => Err(GatewayError::BadRequest(Malformed::UnreadableBody)),
    }
}

fn is_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

/// The fields of a form or JSON body.
pub async fn read_fields(
    req: Request<Incoming>,
) -> Result<(BTreeMap<String, String>, bool), GatewayError> {
    let json = is_json(&req);
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > MAX_FORM_BYTES {
            return Err(GatewayError::BodyTooLarge);
        }
    }
    let body = read_body(req.into_body(), MAX_FORM_BYTES).await?;
    let fields = if json {
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| GatewayError::BadRequest(Malformed::Json))?;
        v.as_object()
            .ok_or(GatewayError::BadRequest(Malformed::JsonNotObject))?
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect()
    } else {
        parse_form(&body)
    };
    Ok((fields, json))
}

/// The outcome of checking a username and password, with the lockout and
/// metrics applied. Shared by the login form and the token endpoint.
pub async fn check_password(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    username: &str,
    password: &str,
) -> Result<users::User, GatewayError> {
    let login = snap.config.login.as_ref().ok_or(GatewayError::NotFound)?;
    if username.len() > crate::state::MAX_USERNAME_BYTES {
        return Err(GatewayError::UsernameTooLong);
    }
    let ip = conn.peer.ip();
    let policy = crate::state::LockoutPolicy {
        max_failures: login.max_failures,
        window: login.failure_window,
        lockout: login.lockout,
    };
    // First a turn at the checker, so the lockout's entries grow no faster
    // than checks can run (attempts waiting in line leave nothing behind);
    // then the place is reserved before the hash, so simultaneous attempts
    // cannot all pass a check that still counts none of them.
    // (`None` only if the checker were shut, which it never is: fail closed.)
    let slot = users::slot().await.ok_or(GatewayError::Locked {
        retry_after: std::time::Duration::from_secs(1),
    })?;
    let attempt = match gw.store.lockout_begin(username, ip, policy).await {
        Ok(a) => a,
        Err(crate::state::LockoutRefusal::RetryAfter(retry_after)) => {
            gw.metrics.auth("login", AuthResult::Locked);
            return Err(GatewayError::Locked { retry_after });
        }
        Err(crate::state::LockoutRefusal::Store(e)) => {
            return Err(GatewayError::StoreUnavailable(Box::new(e)));
        }
    };
    match users::verify(
        slot,
        login.users.clone(),
        username.to_string(),
        password.to_string(),
    )
    .await
    {
        Some(u) => {
            attempt.succeeded().await;
            gw.metrics.auth("login", AuthResult::Ok);
            Ok(u)
        }
        None => {
            attempt.failed().await;
            gw.metrics.auth("login", AuthResult::Invalid);
            tracing::info!(user = %username.escape_debug(), peer = %ip, "login failed");
            Err(GatewayError::Unauthenticated(
                crate::error::Challenge::InvalidToken("invalid credentials"),
            ))
        }
    }
}

/// Creates a fresh session for `user` (never reusing an id the browser
/// brought: no fixation). Returns the id and the stored view.
pub async fn create_session(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    user: &users::User,
    user_agent: &str,
    login: &str,
) -> Result<(SessionId, SessionView), GatewayError> {
    let record = Record {
        user: user.username.clone(),
        email: user.email.clone(),
        groups: user.groups.clone(),
        name: user.name.clone(),
        created_ms: now_ms(),
        client_ip: conn.peer.ip().to_string(),
        user_agent: user_agent.chars().take(256).collect(),
        login: login.to_string(),
        backends: BTreeMap::new(),
        extra: Vec::new(),
        id_token: None,
        sid: None,
    };
    store_session(gw, snap, record).await
}

/// Stores `record` under a fresh session id (its `created_ms` is the
/// login time). Shared by every way of logging in.
pub async fn store_session(
    gw: &Gateway,
    snap: &Snapshot,
    record: Record,
) -> Result<(SessionId, SessionView), GatewayError> {
    let cfg = &snap.config.sessions;
    let id = SessionId::generate();
    let now = record.created_ms;
    let ttl = session::ttl(&record, cfg, now);
    gw.store
        .create(id.key(), record.clone(), ttl)
        .await
        .map_err(|e| GatewayError::StoreUnavailable(Box::new(e)))?;
    tracing::info!(user = %record.user, login = %record.login, session = %&id.key().hex()[..12], "session created");
    Ok((id, SessionView::new(record, now)))
}

async fn login_submit(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    if snap.config.login.is_none() {
        return Err(GatewayError::NotFound);
    }
    // Login CSRF (SPEC 16): a page elsewhere must not log the browser in
    // as someone else (the attacker's account, to watch what the victim
    // then does). Checked before the body is read and any password is
    // tried. A login stating no origin at all is an API client's.
    if snap.config.sessions.csrf
        && auth::request_origin(snap, req.headers(), req.uri(), conn)
            == auth::RequestOrigin::Foreign
    {
        gw.metrics.auth("login", AuthResult::Forbidden);
        return Err(GatewayError::Forbidden);
    }
    let host = crate::route::request_authority(req.headers(), req.uri()).to_string();
    let plain = !auth::client_used_https(snap, conn, req.headers());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (fields, json) = read_fields(req).await?;
    let username = fields.get("username").map(String::as_str).unwrap_or("");
    let password = fields.get("password").map(String::as_str).unwrap_or("");
    let rd = safe_redirect(
        fields.get("rd").map(String::as_str).unwrap_or("/"),
        &host,
        snap,
        plain,
    );
    let user = match check_password(gw, snap, conn, username, password).await {
        Ok(u) => u,
        Err(GatewayError::Unauthenticated(_)) if !json => {
            return Ok(render_login(
                snap,
                &rd,
                Some("Wrong username or password."),
                username,
                StatusCode::UNAUTHORIZED,
            ));
        }
        Err(GatewayError::Unauthenticated(_)) => {
            return Ok(respond::json(
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_credentials"}).to_string(),
            ));
        }
        Err(e) => return Err(e),
    };
    let (id, view) = create_session(gw, snap, conn, &user, &user_agent, "password").await?;
    let cookie = HeaderValue::from_str(&session::session_cookie(&snap.config.sessions, &id))
        .map_err(|_| GatewayError::BadRequest(Malformed::Cookie))?;
    let mut resp = if json {
        let body = json!({
            "user": { "sub": user.username, "email": user.email, "groups": user.groups },
            "expires_at": view.expires_at_ms(&snap.config.sessions) / 1000,
        });
        respond::json(StatusCode::OK, body.to_string())
    } else {
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::SEE_OTHER;
        r.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&rd).unwrap_or(HeaderValue::from_static("/")),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    };
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

async fn logout(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    html: bool,
) -> Result<Response<Body>, GatewayError> {
    let cfg = &snap.config.sessions;
    let (parts, _body) = req.into_parts();
    // A bearer access token: deny it (and its refresh family) everywhere.
    if crate::tokens::logout_bearer(gw, snap, &parts.headers).await?
        && crate::session::cookie_value(&parts.headers, &cfg.cookie_name).is_none()
    {
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(r);
    }
    // Every well-formed session cookie is ended, not only the first: a
    // cookie planted for the parent domain by a sibling subdomain may come
    // before ours (see `auth::lookup_session`), and a logout that deleted
    // only that one would leave the user signed in. Ill-formed values never
    // reach the store; at most `MAX_SESSION_COOKIES` are looked at.
    let keys: Vec<session::SessionKey> = session::cookie_values(&parts.headers, &cfg.cookie_name)
        .filter_map(SessionId::key_of)
        .collect();
    if !keys.is_empty() && cfg.csrf && !auth::same_origin(snap, &parts, conn) {
        gw.metrics.auth("session", AuthResult::Forbidden);
        return Err(GatewayError::Forbidden);
    }
    // Where a single sign-on session ends: at its provider, when it says
    // where (the first such session's).
    let mut provider_logout = None;
    for &key in &keys {
        if let Some(r) = gw
            .store
            .delete(key)
            .await
            .map_err(|e| GatewayError::StoreUnavailable(Box::new(e)))?
        {
            tracing::info!(user = %r.user, session = %&key.hex()[..12], "logged out");
            if provider_logout.is_none() {
                provider_logout = oidc::logout_location(snap, conn, &parts, &r);
            }
        }
    }
    let mut resp = Response::new(Body::Empty);
    if let Some(location) = provider_logout {
        *resp.status_mut() = StatusCode::SEE_OTHER;
        resp.headers_mut().insert(header::LOCATION, location);
    } else if html {
        *resp.status_mut() = StatusCode::SEE_OTHER;
        resp.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
    } else {
        *resp.status_mut() = StatusCode::NO_CONTENT;
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&session::expired_cookie(cfg)) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn userinfo(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let (mut parts, _) = req.into_parts();
    let _ = conn;
    let found = auth::identify(gw, snap, &mut parts).await?;
    let Some(a) = found.authenticated else {
        return Err(GatewayError::Unauthenticated(
            crate::error::Challenge::Missing,
        ));
    };
    let id = &a.identity;
    let body = json!({
        "sub": id.sub,
        "email": id.email,
        "groups": id.groups,
        "name": id.name,
        "method": id.method.as_str(),
        "expires_at": a.expires_at,
    });
    Ok(respond::json(StatusCode::OK, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode() {
        let f = parse_form(b"username=al%C3%ADce&password=a+b%26c&rd=%2Fx%3Fy%3D1&empty=");
        assert_eq!(f["username"], "alíce");
        assert_eq!(f["password"], "a b&c");
        assert_eq!(f["rd"], "/x?y=1");
        assert_eq!(f["empty"], "");
        assert_eq!(percent_decode_form("100%"), "100%");
        assert_eq!(percent_decode_form("%zz"), "%zz");
        assert_eq!(
            percent_decode_form("%+1%+F"),
            "% 1% F",
            "no signs: not \\x01 and \\x0f"
        );
        assert_eq!(percent_decode_form("%4"), "%4");
        assert_eq!(percent_decode_form("%41%4a"), "AJ");
        assert_eq!(
            percent_decode_form("a%2Bb+c"),
            "a+b c",
            "an escaped + stays"
        );
    }
}
