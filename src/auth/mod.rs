//! Who is calling: identities, and authenticating a request with the
//! route's methods in order (SPEC 6).

pub mod authz;
pub mod jwt;
pub mod keys;
pub mod revocation;
#[cfg(test)]
pub(crate) mod testkeys;

use crate::config::{AuthMethod, AuthMode, OnUnauthenticated, Route};
use crate::error::{Challenge, GatewayError};
use crate::gateway::{Gateway, Snapshot};
use crate::metrics::AuthResult;
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
}

impl Identity {
    /// An identity field by name, as a header value would carry it.
    pub fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "sub" => Some(Cow::Borrowed(&self.sub)),
            "email" => self.email.as_deref().map(Cow::Borrowed),
            "groups" => (!self.groups.is_empty()).then(|| Cow::Owned(self.groups.join(","))),
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

/// What authentication produced for one request.
pub type AuthOutcome = Result<Option<Arc<Identity>>, GatewayError>;

/// What one method made of a request.
#[derive(Debug)]
pub enum Attempt {
    /// Valid credentials.
    Accepted(Arc<Identity>),
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
    }
}

/// Authenticates `parts` with the route's methods, in order: the first
/// that accepts wins. `Ok(None)` is an anonymous caller on a route that
/// allows one. Invalid credentials are refused (401) even on an
/// `optional` route, unless a later method accepts the request: a client
/// that sends a bad token must learn so, not silently become anonymous.
///
/// A method may consume what it read: a query-string token is removed
/// from the URL, and a validated `Authorization` header too with
/// `identity.strip_authorization`.
pub async fn authenticate(
    gw: &Gateway,
    snap: &Snapshot,
    route: &Route,
    parts: &mut http::request::Parts,
    html: bool,
) -> AuthOutcome {
    if route.auth == AuthMode::None {
        return Ok(None);
    }
    let mut invalid: Option<&'static str> = None;
    for &method in &route.methods {
        let attempt = match method {
            AuthMethod::Jwt => jwt::authenticate(gw, snap, parts).await,
            // Sessions come with the session store; until then no request
            // carries one.
            AuthMethod::Session => Attempt::Absent,
        };
        match attempt {
            Attempt::Accepted(id) => return Ok(Some(id)),
            Attempt::Absent => {}
            Attempt::Rejected(why) => {
                invalid.get_or_insert(why);
            }
            Attempt::Failed(e) => return Err(e),
        }
    }
    if let Some(why) = invalid {
        return Err(unauthenticated(snap, route, parts, html, Some(why)));
    }
    for &method in &route.methods {
        gw.metrics.auth(method_label(method), AuthResult::Missing);
    }
    match route.auth {
        AuthMode::Required => Err(unauthenticated(snap, route, parts, html, None)),
        _ => Ok(None),
    }
}

/// The 401 or login redirect for a caller without valid credentials.
pub fn unauthenticated(
    snap: &Snapshot,
    route: &Route,
    parts: &http::request::Parts,
    html: bool,
    invalid: Option<&'static str>,
) -> GatewayError {
    let redirect = match route.on_unauthenticated {
        OnUnauthenticated::Auto => html,
        OnUnauthenticated::Redirect => true,
        OnUnauthenticated::Status401 => false,
    };
    if redirect {
        let rd = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        return GatewayError::Unauthenticated(Challenge::Login {
            location: format!(
                "{}/login?rd={}",
                snap.config.server.endpoint_prefix,
                url_encode(rd)
            ),
        });
    }
    GatewayError::Unauthenticated(match invalid {
        Some(why) => Challenge::InvalidToken(why),
        None => Challenge::Missing,
    })
}

/// Percent-encodes everything but unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
