//! Who is calling: identities, and authenticating a request with the
//! route's methods in order (SPEC 6).

pub mod authz;
pub mod jwt;
pub mod keys;
pub mod mtls;
#[cfg(test)]
pub(crate) mod testkeys;

use crate::config::{AuthMethod, AuthMode, OnUnauthenticated, Route};
use crate::error::{Challenge, GatewayError};
use crate::gateway::{Gateway, Snapshot};
use crate::metrics::AuthResult;
use crate::server::ConnInfo;
use crate::session::{self, SessionId, SessionKey, SessionView};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::borrow::Cow;
use std::sync::Arc;

/// How an identity was established (the `method` identity field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Session,
    Jwt,
    Mtls,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Session => "session",
            Method::Jwt => "jwt",
            Method::Mtls => "mtls",
        }
    }
}

/// An authenticated caller, as the backend will be told about it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub sub: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub name: Option<String>,
    pub method: Method,
    /// Further fields from `claims_map`, already rendered as strings.
    pub extra: Vec<(String, String)>,
    /// The token's claims, for `[routes.require] claims`.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    /// A token's `iss` (the `iss` identity field; sessions derive theirs
    /// from `login`, see [`Identity::iss`]).
    pub iss: Option<Arc<str>>,
    /// The `[[jwt]]` name that verified a token (`gatehouse` for the
    /// gateway's own), for route `issuers`.
    pub issuer: Option<Arc<str>>,
    /// How a session was started (`password`, `oidc:<provider>`).
    pub login: Option<Box<str>>,
}

impl Found {
    /// The identity, or the 401 when the route needs one (the respond step
    /// turns it into the login page for browsers).
    pub fn require(&self, route: &Route) -> Result<Option<Arc<Identity>>, GatewayError> {
        match (&self.authenticated, route.auth) {
            (Some(a), _) => Ok(Some(a.identity.clone())),
            (None, AuthMode::Required) => Err(unauthenticated(None)),
            (None, _) => Ok(None),
        }
    }
}

impl Identity {
    /// The `iss` identity field (SPEC 16): the token's issuer; for a session,
    /// its OIDC provider's issuer, or `login.issuer` for a local login.
    pub fn iss<'a>(&'a self, cfg: &'a crate::config::Config) -> Option<&'a str> {
        if let Some(iss) = &self.iss {
            return Some(iss);
        }
        match self.login.as_deref()? {
            "password" => cfg.login.as_ref().map(|l| l.issuer.as_str()),
            other => {
                let name = other.strip_prefix("oidc:")?;
                cfg.oidc
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.issuer.as_str())
            }
        }
    }

    /// An identity field by name, as a header value would carry it.
    pub fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "sub" => Some(Cow::Borrowed(&self.sub)),
            "email" => self.email.as_deref().map(Cow::Borrowed),
            "groups" => {
                let joined = join_list(self.groups.iter().map(String::as_str), "groups");
                (!joined.is_empty()).then_some(Cow::Owned(joined))
            }
            "name" => self.name.as_deref().map(Cow::Borrowed),
            "method" => Some(Cow::Borrowed(self.method.as_str())),
            other => self
                .extra
                .iter()
                .find(|(k, _)| k == other)
                .map(|(_, v)| Cow::Borrowed(v.as_str())),
        }
    }
}

/// Joins a list field for a header, `,`-separated. An element containing `,` is left out (SPEC 16): a backend that
/// splits the header on `,` would read it as two elements, a group nobody
/// is in (`"admin,ops"` as `admin` and `ops`). Left-out elements are
/// logged by count and field, not by value.
pub(crate) fn join_list<'a>(items: impl Iterator<Item = &'a str>, field: &str) -> String {
    let mut out = String::new();
    let mut left_out = 0usize;
    for item in items {
        if item.contains(',') {
            left_out += 1;
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(item);
    }
    if left_out > 0 {
        tracing::warn!(
            field,
            left_out,
            "list elements containing ',' left out of an identity header"
        );
    }
    out
}

/// A caller whose credentials checked out.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub identity: Arc<Identity>,
    /// The server-side session, when the session cookie authenticated it.
    pub session: Option<SessionKey>,
    /// Its record (sticky pins live there).
    pub session_record: Option<Arc<session::Record>>,
    /// When the credential ends (unix seconds).
    pub expires_at: Option<u64>,
}

impl Authenticated {
    /// A caller authenticated by a token (no server-side session).
    fn token(identity: Arc<Identity>) -> Authenticated {
        Authenticated {
            expires_at: identity.expires_at,
            identity,
            session: None,
            session_record: None,
        }
    }
}

/// What authentication found for one request.
#[derive(Debug, Default)]
pub struct Found {
    pub authenticated: Option<Authenticated>,
    /// A session cookie named no live session: the response expires it.
    pub expire_session_cookie: bool,
}

enum SessionLookup {
    Absent,
    Dead,
    Live(SessionKey, SessionView),
}

/// The session cookie, if any, and what it names. Only requests that carry
/// the cookie touch the store, so JWT traffic keeps flowing when Redis is
/// down.
///
/// A request may carry several cookies of the session cookie's name: one
/// planted for the parent domain by a sibling subdomain comes beside ours,
/// maybe first. Each is tried in order (at most
/// [`session::MAX_SESSION_COOKIES`]) and the first that names a live
/// session wins, so a planted junk or expired cookie no longer logs the
/// user out. (One naming a live session of the planter's own still wins
/// when sent first; only the `__Host-` prefix stops that.) Ill-formed
/// values never reach the store, and the usual single cookie costs what it
/// always did.
async fn lookup_session(
    gw: &Gateway,
    snap: &Snapshot,
    headers: &http::HeaderMap,
) -> Result<SessionLookup, GatewayError> {
    let cfg = &snap.config.sessions;
    let mut seen = false;
    for raw in session::cookie_values(headers, &cfg.cookie_name) {
        seen = true;
        let Some(key) = SessionId::key_of(raw) else {
            continue;
        };
        match gw.store.authenticate(key, cfg).await {
            Ok(Some((key, view))) => return Ok(SessionLookup::Live(key, view)),
            Ok(None) => {}
            Err(e) => {
                gw.metrics.auth("session", AuthResult::Error);
                return Err(GatewayError::StoreUnavailable(Box::new(e)));
            }
        }
    }
    if !seen {
        return Ok(SessionLookup::Absent);
    }
    gw.metrics.auth("session", AuthResult::Invalid);
    Ok(SessionLookup::Dead)
}

fn from_session(snap: &Snapshot, key: SessionKey, view: &SessionView) -> Authenticated {
    Authenticated {
        identity: view.identity.clone(),
        session: Some(key),
        session_record: Some(view.record.clone()),
        expires_at: Some(view.expires_at_ms(&snap.config.sessions) / 1000),
    }
}

/// Where a request says it comes from: `Origin`, or without it `Referer`
/// (SPEC 11, CSRF `origin`), against the scheme://host[:port] the client
/// used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOrigin {
    /// A page of the gateway's own origin.
    Same,
    /// Another origin, `Origin: null`, or a header that cannot be read.
    Foreign,
    /// Neither header (API clients, some privacy settings).
    Unstated,
}

/// The client reached the gateway over https: from a peer in
/// `trusted_proxies`, what its `X-Forwarded-Proto` says (the first value of
/// a list: the proxy nearest the client); otherwise whether this connection
/// is TLS. A TLS-terminating proxy in front of a plain listener makes the
/// browser's origin `https://...` although this connection is plain. From
/// any other peer the header is the client's say-so and is ignored; a
/// trusted value that is neither `http` nor `https` leaves the
/// connection's own scheme.
pub fn client_used_https(snap: &Snapshot, conn: &ConnInfo, headers: &http::HeaderMap) -> bool {
    if !snap.is_trusted_proxy(conn.peer.ip()) {
        return conn.tls;
    }
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or("").trim());
    match forwarded {
        Some(p) if p.eq_ignore_ascii_case("https") => true,
        Some(p) if p.eq_ignore_ascii_case("http") => false,
        _ => conn.tls,
    }
}

/// The origin a request states, from its headers, against the scheme the
/// client used (see [`client_used_https`]) and its `Host`.
pub fn request_origin(
    snap: &Snapshot,
    headers: &http::HeaderMap,
    uri: &http::Uri,
    conn: &ConnInfo,
) -> RequestOrigin {
    let host = crate::route::request_authority(headers, uri);
    let scheme = if client_used_https(snap, conn, headers) {
        "https"
    } else {
        "http"
    };
    let matches = |origin: &str| {
        !host.is_empty()
            && origin.len() == scheme.len() + 3 + host.len()
            && origin.starts_with(scheme)
            && origin[scheme.len()..].starts_with("://")
            && origin[scheme.len() + 3..].eq_ignore_ascii_case(host)
    };
    let verdict = |same: bool| {
        if same {
            RequestOrigin::Same
        } else {
            RequestOrigin::Foreign
        }
    };
    // A header that is there but not text is not skipped over: it says
    // nothing we can trust, so it counts as another origin.
    if let Some(o) = headers.get(http::header::ORIGIN) {
        return verdict(o.to_str().is_ok_and(matches));
    }
    if let Some(r) = headers.get(http::header::REFERER) {
        let Ok(r) = r.to_str() else {
            return RequestOrigin::Foreign;
        };
        let end = r
            .get(scheme.len() + 3..)
            .and_then(|rest| rest.find('/'))
            .map_or(r.len(), |i| i + scheme.len() + 3);
        return verdict(matches(&r[..end]));
    }
    RequestOrigin::Unstated
}

/// The request came from a page of the same origin (SPEC 11, CSRF
/// `origin`): `Origin`, or without it `Referer`, equals the
/// scheme://host[:port] the client used. Neither header: not the same.
pub fn same_origin(snap: &Snapshot, parts: &http::request::Parts, conn: &ConnInfo) -> bool {
    request_origin(snap, &parts.headers, &parts.uri, conn) == RequestOrigin::Same
}

/// CSRF `origin` for a credential the browser attaches by itself (a
/// cookie, which rides along on cross-site requests): an unsafe method
/// must come from the gateway's own origin.
pub(crate) fn cross_site(snap: &Snapshot, parts: &http::request::Parts, conn: &ConnInfo) -> bool {
    snap.config.sessions.csrf && !is_safe_method(&parts.method) && !same_origin(snap, parts, conn)
}

fn is_safe_method(m: &http::Method) -> bool {
    matches!(
        *m,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// Any credential the request carries, for the gateway's own endpoints
/// (`/userinfo`): the session cookie, then a bearer token.
///
/// For safe methods: there is no connection here to check an origin
/// against, so a cookie-borne credential on an unsafe method is refused
/// (403) rather than let through unchecked.
pub async fn identify(
    gw: &Gateway,
    snap: &Snapshot,
    parts: &mut http::request::Parts,
) -> Result<Found, GatewayError> {
    let mut found = Found::default();
    let csrf_unchecked = snap.config.sessions.csrf && !is_safe_method(&parts.method);
    match lookup_session(gw, snap, &parts.headers).await? {
        SessionLookup::Live(..) if csrf_unchecked => {
            gw.metrics.auth("session", AuthResult::Forbidden);
            return Err(GatewayError::Forbidden);
        }
        SessionLookup::Live(key, view) => {
            found.authenticated = Some(from_session(snap, key, &view));
            return Ok(found);
        }
        SessionLookup::Dead => found.expire_session_cookie = true,
        SessionLookup::Absent => {}
    }
    match jwt::authenticate(gw, snap, parts, &[]).await {
        Attempt::Accepted {
            from_cookie: true, ..
        } if csrf_unchecked => {
            gw.metrics.auth("jwt", AuthResult::Forbidden);
            return Err(GatewayError::Forbidden);
        }
        Attempt::Accepted { identity, .. } => {
            found.authenticated = Some(Authenticated::token(identity));
        }
        Attempt::Failed(e) => return Err(e),
        Attempt::Absent | Attempt::Rejected(_) => {}
    }
    Ok(found)
}

/// What one method made of a request.
#[derive(Debug)]
pub enum Attempt {
    /// Valid credentials; `from_cookie` when a browser would have attached
    /// them by itself (CSRF `origin` applies).
    Accepted {
        identity: Arc<Identity>,
        from_cookie: bool,
    },
    /// No credentials of this kind.
    Absent,
    /// Credentials of this kind that are not valid; the reason is short,
    /// fixed text for `WWW-Authenticate` (never any of the credential).
    Rejected(&'static str),
    /// The method could not decide (e.g. its store is unreachable): the
    /// request fails with this error rather than pass as anonymous.
    Failed(GatewayError),
}

fn method_label(m: AuthMethod) -> &'static str {
    match m {
        AuthMethod::Session => "session",
        AuthMethod::Jwt => "jwt",
        AuthMethod::Mtls => "mtls",
    }
}

/// Authenticates `parts` with the route's methods, in order: the first
/// that accepts wins. `Ok` without an identity is an anonymous caller; see
/// [`Found::require`] for the 401. Invalid credentials are refused (401)
/// even on an `optional` route, unless a later method accepts the request:
/// a client that sends a bad token must learn so, not silently become
/// anonymous. A session cookie naming no live session is treated as absent
/// (SPEC 6) and expired in the response.
///
/// A method may consume what it read: a query-string token is removed
/// from the URL, and a validated `Authorization` header too with
/// `identity.strip_authorization`.
pub async fn authenticate(
    gw: &Gateway,
    snap: &Snapshot,
    route: &Route,
    parts: &mut http::request::Parts,
    conn: &ConnInfo,
) -> Result<Found, GatewayError> {
    let mut found = Found::default();
    if route.auth == AuthMode::None {
        return Ok(found);
    }
    let mut invalid: Option<&'static str> = None;
    for &method in &route.methods {
        let attempt = match method {
            AuthMethod::Jwt => match jwt::authenticate(gw, snap, parts, &route.issuers).await {
                // A token read from a cookie rides along on cross-site
                // requests like the session cookie (SPEC 16); one from a
                // header is sent only by code that chose to.
                Attempt::Accepted {
                    from_cookie: true, ..
                } if cross_site(snap, parts, conn) => {
                    gw.metrics.auth("jwt", AuthResult::Forbidden);
                    return Err(GatewayError::Forbidden);
                }
                attempt => attempt,
            },
            AuthMethod::Session => match lookup_session(gw, snap, &parts.headers).await? {
                SessionLookup::Live(key, view) => {
                    if cross_site(snap, parts, conn) {
                        gw.metrics.auth("session", AuthResult::Forbidden);
                        return Err(GatewayError::Forbidden);
                    }
                    gw.metrics.auth("session", AuthResult::Ok);
                    found.authenticated = Some(from_session(snap, key, &view));
                    return Ok(found);
                }
                SessionLookup::Dead => {
                    found.expire_session_cookie = true;
                    Attempt::Absent
                }
                SessionLookup::Absent => Attempt::Absent,
            },
            AuthMethod::Mtls => mtls::authenticate(gw, snap, parts, conn),
        };
        match attempt {
            Attempt::Accepted { identity, .. } => {
                found.authenticated = Some(Authenticated::token(identity));
                return Ok(found);
            }
            Attempt::Absent => {}
            Attempt::Rejected(why) => {
                invalid.get_or_insert(why);
            }
            Attempt::Failed(e) => return Err(e),
        }
    }
    if let Some(why) = invalid {
        return Err(unauthenticated(Some(why)));
    }
    // One "missing" per request, under the route's first method.
    if let Some(&first) = route.methods.first() {
        gw.metrics.auth(method_label(first), AuthResult::Missing);
    }
    Ok(found)
}

/// The 401 for a caller without valid credentials. Whether a browser gets
/// the login page instead is the respond step's choice
/// ([`login_location`]): the in-line pipeline and forward-auth answer it
/// differently.
pub fn unauthenticated(invalid: Option<&'static str>) -> GatewayError {
    GatewayError::Unauthenticated(match invalid {
        Some(why) => Challenge::InvalidToken(why),
        None => Challenge::Missing,
    })
}

/// Where a caller without valid credentials is sent instead of a 401 (per
/// the route's `on_unauthenticated`), or `None` for the 401. `base` is what
/// precedes the gateway's own paths in the location (`""` in-line: the
/// same origin; `<scheme>://<host>` in forward-auth); `login_url` replaces
/// the login page (forward-auth's central login host); `rd` is where to
/// come back to.
pub fn login_location(
    snap: &Snapshot,
    route: &Route,
    html: bool,
    base: &str,
    login_url: Option<&str>,
    rd: &str,
) -> Option<String> {
    let redirect = match route.on_unauthenticated {
        OnUnauthenticated::Auto => html,
        OnUnauthenticated::Redirect => true,
        OnUnauthenticated::Status401 => false,
    };
    if !redirect {
        return None;
    }
    if let Some(url) = login_url {
        let sep = if url.contains('?') { '&' } else { '?' };
        return Some(format!("{url}{sep}rd={}", url_encode(rd)));
    }
    // With one single sign-on provider and no local users, the login
    // page would hold one button: `redirect` routes skip it.
    let local_users = snap
        .config
        .login
        .as_ref()
        .is_some_and(|l| l.users_file.is_some());
    if let ([only], false, OnUnauthenticated::Redirect) = (
        snap.config.oidc.as_slice(),
        local_users,
        route.on_unauthenticated,
    ) {
        return Some(format!(
            "{base}{}",
            crate::login::oidc::start_href(snap, &only.name, rd)
        ));
    }
    Some(format!(
        "{base}{}/login?rd={}",
        snap.config.server.endpoint_prefix,
        url_encode(rd)
    ))
}

/// Every byte but RFC 3986's unreserved characters (ALPHA, DIGIT and
/// `-._~`); bytes above ASCII are always escaped.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters (upper-case hex).
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot whose `trusted_proxies` is `trusted` (TOML list text).
    fn snapshot(trusted: &str) -> Snapshot {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = {trusted}\n\
             [[upstreams]]\nname = \"app\"\nbackends = [\"127.0.0.1:9\"]\n"
        );
        let c = crate::config::load_str(&text, std::path::Path::new("/tmp/g.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        Snapshot::build(c, &crate::metrics::Metrics::default(), None)
    }

    fn origin(tls: bool, pairs: &[(&str, &[u8])]) -> RequestOrigin {
        origin_from(&snapshot("[]"), tls, pairs)
    }

    fn origin_from(snap: &Snapshot, tls: bool, pairs: &[(&str, &[u8])]) -> RequestOrigin {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::HOST, "gw.example:8443".parse().unwrap());
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        let addr = "127.0.0.1:1".parse().unwrap();
        let conn = ConnInfo::new(addr, addr, tls, None, false);
        request_origin(snap, &h, &"/".parse().unwrap(), &conn)
    }

    #[test]
    fn url_encode_keeps_exactly_the_unreserved_characters() {
        let all: String = (0u8..0x80).map(char::from).chain(['é', '€']).collect();
        let mut want = String::new();
        for b in all.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                want.push(char::from(b));
            } else {
                want.push_str(&format!("%{b:02X}"));
            }
        }
        assert_eq!(url_encode(&all), want);
        assert_eq!(url_encode("/x?y=1 2"), "%2Fx%3Fy%3D1%202");
    }

    #[test]
    fn forwarded_proto_counts_only_from_trusted_proxies() {
        use RequestOrigin::*;
        let https: &[(&str, &[u8])] = &[
            ("x-forwarded-proto", b"https"),
            ("origin", b"https://gw.example:8443"),
        ];
        let trusting = snapshot("[\"127.0.0.0/8\"]");
        assert_eq!(origin_from(&trusting, false, https), Same);
        // The peer (127.0.0.1) is not trusted: its header is ignored.
        assert_eq!(origin(false, https), Foreign);
        assert_eq!(
            origin_from(&snapshot("[\"10.0.0.0/8\"]"), false, https),
            Foreign
        );
        // A trusted proxy saying http is believed, on a TLS connection
        // too; a list counts by its first value; anything else leaves the
        // connection's scheme.
        let plain: &[(&str, &[u8])] = &[
            ("x-forwarded-proto", b"http"),
            ("origin", b"http://gw.example:8443"),
        ];
        assert_eq!(origin_from(&trusting, false, plain), Same);
        assert_eq!(origin_from(&trusting, true, plain), Same);
        assert_eq!(origin_from(&trusting, true, https), Same);
        let listed: &[(&str, &[u8])] = &[
            ("x-forwarded-proto", b"HTTPS, http"),
            ("origin", b"https://gw.example:8443"),
        ];
        assert_eq!(origin_from(&trusting, false, listed), Same);
        let odd: &[(&str, &[u8])] = &[
            ("x-forwarded-proto", b"wss"),
            ("origin", b"https://gw.example:8443"),
        ];
        assert_eq!(origin_from(&trusting, false, odd), Foreign);
    }

    #[test]
    fn origin_then_referer_decide_and_unreadable_headers_are_foreign() {
        use RequestOrigin::*;
        assert_eq!(
            origin(true, &[("origin", b"https://GW.example:8443")]),
            Same
        );
        assert_eq!(
            origin(false, &[("origin", b"https://gw.example:8443")]),
            Foreign
        );
        assert_eq!(origin(true, &[("origin", b"https://gw.example")]), Foreign);
        assert_eq!(origin(true, &[("origin", b"null")]), Foreign);
        assert_eq!(
            origin(true, &[("referer", b"https://gw.example:8443/a?b")]),
            Same
        );
        assert_eq!(
            origin(true, &[("referer", b"https://gw.example:8443.evil/")]),
            Foreign
        );
        assert_eq!(origin(true, &[]), Unstated);
        // Origin wins over Referer, both ways.
        let same: &[u8] = b"https://gw.example:8443";
        let evil: &[u8] = b"https://evil.example";
        assert_eq!(
            origin(true, &[("origin", evil), ("referer", same)]),
            Foreign
        );
        assert_eq!(origin(true, &[("origin", same), ("referer", evil)]), Same);
        // A header that is not text is not skipped to reach the next one.
        assert_eq!(
            origin(true, &[("origin", b"https://\xffx"), ("referer", same)]),
            Foreign
        );
        assert_eq!(
            origin(true, &[("referer", b"https://gw.example:8443/\xff")]),
            Foreign
        );
    }
}
