//! Registered-claim checks (RFC 7519 section 4.1) and the identity a
//! verified token yields.

use super::Reject;
use crate::auth::{Identity, Method};
use crate::config::JwtIssuer;
use serde_json::{Map, Value};
use std::sync::Arc;

pub(crate) type Claims = Map<String, Value>;

/// The claim at `path`: a top-level claim of exactly that name first (so
/// namespaced claims such as `https://example.com/roles` work), else a
/// dotted path into nested objects (`realm_access.roles`).
pub fn claim_at<'a>(claims: &'a Claims, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    if !path.contains('.') {
        return None;
    }
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// A claim value as one header-ready string: strings as they are, numbers
/// and booleans as JSON writes them, lists joined with `,` (leaving out
/// elements that contain `,`: see [`crate::auth::join_list`]), objects as
/// compact JSON; `null` is no value. Nothing is sanitised here: a value
/// with CR, LF or NUL makes the request fail (400) where headers are set.
pub fn render(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => {
            let rendered: Vec<String> = items.iter().filter_map(render).collect();
            Some(crate::auth::join_list(
                rendered.iter().map(String::as_str),
                "claim",
            ))
        }
        Value::Object(_) => Some(v.to_string()),
    }
}

/// `groups`: a list, or a single string taken as one group.
fn render_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(render).collect(),
        other => render(other).into_iter().collect(),
    }
}

/// A NumericDate claim (RFC 7519 section 2): any JSON number, seconds.
fn numeric(claims: &Claims, name: &str) -> Result<Option<f64>, Reject> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(Reject::BadClaims),
        Some(_) => Err(Reject::BadClaims),
    }
}

/// What the time checks learned, for the cache and revocation.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// `exp` in whole seconds (floored), if present.
    pub exp: Option<u64>,
    /// `iat` in whole seconds (floored), if present.
    pub iat: Option<u64>,
}

fn whole(x: f64) -> u64 {
    if x <= 0.0 {
        0
    } else {
        x as u64
    }
}

/// Checks required claims, `exp`, `nbf`, `iat` (with `leeway` both ways)
/// and `aud`, at `now` (unix seconds).
pub fn check(cfg: &JwtIssuer, claims: &Claims, now: u64) -> Result<Times, Reject> {
    for name in &cfg.required_claims {
        if claim_at(claims, name).is_none_or(Value::is_null) {
            return Err(Reject::MissingClaim);
        }
    }
    let now = now as f64;
    let leeway = cfg.leeway.as_secs_f64();
    let exp = numeric(claims, "exp")?;
    let nbf = numeric(claims, "nbf")?;
    let iat = numeric(claims, "iat")?;
    // "The current time MUST be before the expiration time" (4.1.4).
    if exp.is_some_and(|exp| now >= exp + leeway) {
        return Err(Reject::Expired);
    }
    // "MUST NOT be accepted for processing" before nbf (4.1.5).
    if nbf.is_some_and(|nbf| now + leeway < nbf) {
        return Err(Reject::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now + leeway) {
        return Err(Reject::IssuedInFuture);
    }
    if !cfg.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => cfg.audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| cfg.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !ok {
            return Err(Reject::WrongAudience);
        }
    }
    match claims.get("sub") {
        None | Some(Value::String(_)) => {}
        Some(_) => return Err(Reject::BadClaims),
    }
    Ok(Times {
        exp: exp.map(whole),
        iat: iat.map(whole),
    })
}

/// The identity of a verified token: `sub`, the `claims_map` fields, and
/// the claims themselves (for `[routes.require] claims`).
pub fn identity(cfg: &JwtIssuer, claims: Claims, times: Times) -> Identity {
    let sub = match claims.get("sub") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let mut id = Identity {
        sub,
        email: None,
        groups: Vec::new(),
        name: None,
        method: Method::Jwt,
        extra: Vec::new(),
        claims: None,
        expires_at: times.exp,
        iss: Some(cfg.issuer.as_str().into()),
        issuer: Some(cfg.name.as_str().into()),
        login: None,
    };
    for (field, path) in &cfg.claims_map {
        let Some(v) = claim_at(&claims, path) else {
            continue;
        };
        match field.as_str() {
            "email" => id.email = render(v),
            "name" => id.name = render(v),
            "groups" => id.groups = render_list(v),
            _ => {
                if let Some(s) = render(v) {
                    id.extra.push((field.clone(), s));
                }
            }
        }
    }
    id.claims = Some(Arc::new(claims));
    id
}
