//! JWT test helpers shared by the JWT, OIDC, bypass and fault tests: an
//! HS256 issuer with its key, good claims, a gateway config with a JWT
//! route, and a bearer request.

use super::keys;
use super::*;
use gatehouse::metrics::AuthResult;
use serde_json::{json, Value};

/// 64 bytes: long enough for HS256, HS384 and HS512.
pub const SECRET: &str = "k3Yf0r-HS-tests-only:0123456789abcdef0123456789abcdef01234567890";
pub const ISS: &str = "https://idp.example.test/";

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a good token for `ISS` and audience `app`.
pub fn claims() -> Value {
    let n = now();
    json!({"iss": ISS, "sub": "alice", "aud": "app", "exp": n + 600, "iat": n - 10,
           "email": "alice@example.com", "groups": ["staff", "dev"], "name": "Alice"})
}

/// `base` with `extra`'s members set (a `null` member removes the claim).
pub fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

/// A gateway config: one upstream over `b`, the `routes` text, then `rest`
/// (`[[jwt]]` tables, `[identity]`, ...).
pub fn config(b: &Backend, routes: &str, rest: &str) -> String {
    format!(
        "{}[[upstreams]]\nname = \"app\"\nbackends = [\"{}\"]\n\n{routes}\n{rest}",
        base_config(),
        b.addr
    )
}

/// The usual route: everything needs a JWT.
pub const JWT_ROUTE: &str =
    "[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"app\"\nmethods = [\"jwt\"]\n";

/// An HS256 issuer for `ISS` with audience `app`.
pub fn hs_issuer() -> String {
    format!(
        "[[jwt]]\nname = \"idp\"\nissuer = \"{ISS}\"\naudiences = [\"app\"]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n"
    )
}

pub fn hs_key() -> keys::Key {
    keys::Key::hmac(jsonwebtoken::Algorithm::HS256, SECRET.as_bytes())
}

/// `GET path` with `Authorization: Bearer token` and optional extra headers.
pub async fn get_bearer(gw: &Gw, path: &str, token: &str, extra: &[(&str, &str)]) -> Resp {
    let auth = format!("Bearer {token}");
    let mut h: Vec<(&str, &str)> = vec![("authorization", auth.as_str())];
    h.extend_from_slice(extra);
    gw.plain().get_with(path, &h).await
}

pub fn auth_count(gw: &Gw, result: AuthResult) -> u64 {
    gw.running().gateway.metrics.auth_count("jwt", result)
}

/// The 401 a bad token must get: RFC 6750 `invalid_token`, no token echo.
pub fn assert_invalid_token(r: &Resp, token: &str, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    let www = r.header("www-authenticate").unwrap_or("");
    assert!(
        www.starts_with("Bearer ") && www.contains("error=\"invalid_token\""),
        "{what}: {www}"
    );
    assert!(www.contains("error_description=\""), "{what}: {www}");
    if token.len() > 8 {
        assert!(!r.text().contains(token), "{what}: token echoed in body");
        assert!(!www.contains(token), "{what}: token echoed in header");
    }
}
