//! Server-side sessions (SPEC 6): ids, records, their deadlines and
//! cookies. Where sessions are stored is `crate::state`.
//!
//! A session id is 256 bits from the OS CSPRNG, sent to the browser in a
//! cookie and never stored: stores key sessions by SHA-256 of the id, so a
//! leaked store (or admin listing) does not hand out usable cookies.

use crate::auth::{Identity, Method};
use crate::config::sessions::Sessions as SessionsConfig;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A session id as the browser holds it. Debug never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(..)")
    }
}

impl SessionId {
    pub fn generate() -> SessionId {
        SessionId(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(crate::crypto::random_bytes::<32>()),
        )
    }

    /// Accepts only the shape we issue (43 base64url characters), so junk
    /// never reaches a store.
    pub fn parse(s: &str) -> Option<SessionId> {
        Self::well_formed(s).then(|| SessionId(s.to_string()))
    }

    /// The store key of a cookie value, checked and hashed in place (no
    /// copy: this runs on every request with a session cookie).
    pub fn key_of(s: &str) -> Option<SessionKey> {
        Self::well_formed(s).then(|| SessionKey(crate::crypto::sha256(s.as_bytes())))
    }

    fn well_formed(s: &str) -> bool {
        s.len() == 43
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> SessionKey {
        SessionKey(crate::crypto::sha256(self.0.as_bytes()))
    }
}

/// What stores key a session by: SHA-256 of its id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey(pub [u8; 32]);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({}..)", &self.hex()[..8])
    }
}

impl SessionKey {
    pub fn hex(&self) -> String {
        crate::crypto::hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<SessionKey> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(SessionKey(out))
    }
}

/// What a session holds. Immutable after login, except `last_seen`, which
/// stores keep beside it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub user: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Unix milliseconds.
    pub created_ms: u64,
    #[serde(default)]
    pub client_ip: String,
    #[serde(default)]
    pub user_agent: String,
    /// How the user logged in: `password` or `oidc:<provider>`.
    #[serde(default)]
    pub login: String,
    /// Sticky pins: upstream name -> backend address.
    #[serde(default)]
    pub backends: BTreeMap<String, String>,
    /// Further identity fields (an OIDC provider's `claims_map`), as
    /// header-ready strings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<(String, String)>,
    /// The ID token of an OIDC login, sent back to the provider as
    /// `id_token_hint` at logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<IdTokenHint>,
    /// The ID token's `sid` (the provider's session), when it had one: a
    /// back-channel logout token naming it ends this session (SPEC 15).
    /// The provider is `login`'s, the subject is `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// An ID token kept for logout. Debug never prints it: some applications
/// would accept it as a bearer credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdTokenHint(pub String);

impl fmt::Debug for IdTokenHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdTokenHint(..)")
    }
}

impl Record {
    pub fn identity(&self) -> Identity {
        Identity {
            sub: self.user.clone(),
            email: self.email.clone(),
            groups: self.groups.clone(),
            name: self.name.clone(),
            method: Method::Session,
            extra: self.extra.clone(),
            claims: None,
            expires_at: None,
            iss: None,
            issuer: None,
            login: Some(self.login.as_str().into()),
        }
    }
}

/// The `[[oidc]]` provider that created a session, if one did.
pub fn oidc_provider(record: &Record) -> Option<&str> {
    record.login.strip_prefix("oidc:")
}

/// A live session as a lookup returns it.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub record: Arc<Record>,
    /// Built once per session, shared by all its requests.
    pub identity: Arc<Identity>,
    pub last_seen_ms: u64,
}

impl SessionView {
    pub fn new(record: Record, last_seen_ms: u64) -> SessionView {
        let identity = Arc::new(record.identity());
        SessionView {
            record: Arc::new(record),
            identity,
            last_seen_ms,
        }
    }

    /// When it ends unless used again: the sliding idle deadline or the
    /// absolute cap, whichever is first (unix ms).
    pub fn expires_at_ms(&self, cfg: &SessionsConfig) -> u64 {
        (self.last_seen_ms + cfg.idle_timeout.as_millis() as u64)
            .min(self.record.created_ms + cfg.absolute_timeout.as_millis() as u64)
    }

    pub fn is_live(&self, cfg: &SessionsConfig, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms(cfg)
    }
}

// The clock moved to `crate::clock`; these names stay so code that still
// reaches for the session module's clock keeps compiling.
pub use crate::clock::{now_ms, unix_now};

/// The time a store should keep a session written at `now_ms`.
pub fn ttl(record: &Record, cfg: &SessionsConfig, now_ms: u64) -> Duration {
    let absolute_end = record.created_ms + cfg.absolute_timeout.as_millis() as u64;
    let left = absolute_end.saturating_sub(now_ms);
    cfg.idle_timeout.min(Duration::from_millis(left.max(1)))
}

/// `Set-Cookie` for a new session (SPEC 6: HttpOnly, Secure and SameSite
/// per config, Path=/). A browser-session cookie: the server enforces the
/// idle and absolute deadlines.
pub fn session_cookie(cfg: &SessionsConfig, id: &SessionId) -> String {
    session_cookie_with(cfg, id.as_str()).to_string()
}

/// `Set-Cookie` that removes the session cookie: the same attributes, or
/// the browser would keep the cookie it has.
pub fn expired_cookie(cfg: &SessionsConfig) -> String {
    session_cookie_with(cfg, "")
        .max_age(crate::cookies::max_age(0))
        .to_string()
}

fn session_cookie_with<'c>(cfg: &'c SessionsConfig, value: &'c str) -> cookie::CookieBuilder<'c> {
    let c = crate::cookies::build(&cfg.cookie_name, value, cfg.cookie_secure)
        .path("/")
        .same_site(cfg.cookie_same_site.into());
    match &cfg.cookie_domain {
        Some(d) => c.domain(d.as_str()),
        None => c,
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    crate::cookies::value(headers, name)
}

/// How many cookies of the session cookie's name a request may have tried.
/// A sibling subdomain can set a cookie of the same name for the parent
/// domain (cookie tossing), which the browser then sends beside ours, and
/// possibly first; each one tried may cost a store lookup, so only this
/// many are. The `__Host-` prefix keeps sibling cookies out altogether.
pub const MAX_SESSION_COOKIES: usize = 4;

/// The values of cookie `name`, in the order the browser sent them, at
/// most [`MAX_SESSION_COOKIES`]. Lazy: nothing is allocated.
pub fn cookie_values<'h>(
    headers: &'h http::HeaderMap,
    name: &'h str,
) -> impl Iterator<Item = &'h str> + 'h {
    crate::cookies::values(headers, name).take(MAX_SESSION_COOKIES)
}

/// Removes cookie `name` (the backend never sees the gateway's session
/// cookie).
pub fn strip_cookie(headers: &mut http::HeaderMap, name: &str) {
    crate::cookies::remove(headers, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookies_carry_the_configured_attributes() {
        use crate::config::sessions::SameSite;
        use crate::cookies::set_cookie_parts as parts;
        let id = SessionId::generate();
        let cfg = SessionsConfig::default();
        let set = session_cookie(&cfg, &id);
        let want = format!(
            "gatehouse_session={}; Path=/; HttpOnly; SameSite=Lax; Secure",
            id.as_str()
        );
        assert_eq!(parts(&set), parts(&want));
        assert_eq!(
            parts(&expired_cookie(&cfg)),
            parts("gatehouse_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure")
        );
        // No `Secure` unless configured, whatever SameSite says.
        let cfg = SessionsConfig {
            cookie_secure: false,
            cookie_same_site: SameSite::None,
            cookie_domain: Some("example.com".into()),
            ..SessionsConfig::default()
        };
        assert_eq!(
            parts(&expired_cookie(&cfg)),
            parts("gatehouse_session=; Path=/; Max-Age=0; HttpOnly; SameSite=None; Domain=example.com")
        );
        // The crate drops a leading dot, which browsers ignore anyway
        // (RFC 6265 section 5.2.3): the same cookie either way.
        let cfg = SessionsConfig {
            cookie_domain: Some(".example.com".into()),
            ..cfg
        };
        assert!(expired_cookie(&cfg).contains("; Domain=example.com"));
    }

    #[test]
    fn ids_are_256_bit_base64url_and_keys_are_their_sha256() {
        let id = SessionId::generate();
        assert_eq!(id.as_str().len(), 43);
        assert_ne!(id, SessionId::generate());
        assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.key().0, crate::crypto::sha256(id.as_str().as_bytes()));
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::key_of(id.as_str()) == Some(id.key()));
        assert!(SessionId::key_of("short").is_none());
        assert!(SessionId::parse(&"a".repeat(42).replace('a', "!")).is_none());
        assert_eq!(format!("{id:?}"), "SessionId(..)");
        let k = id.key();
        assert_eq!(SessionKey::from_hex(&k.hex()), Some(k));
    }

    #[test]
    fn cookies_are_found_and_stripped() {
        let mut h = http::HeaderMap::new();
        h.append("cookie", "a=1; gatehouse_session=abc; b=2".parse().unwrap());
        h.append("cookie", "c=3".parse().unwrap());
        assert_eq!(cookie_value(&h, "gatehouse_session"), Some("abc"));
        assert_eq!(cookie_value(&h, "c"), Some("3"));
        strip_cookie(&mut h, "gatehouse_session");
        assert_eq!(h.get("cookie").unwrap(), "a=1; b=2; c=3");
        assert_eq!(cookie_value(&h, "gatehouse_session"), None);
    }

    #[test]
    fn expiry_is_the_earlier_of_idle_and_absolute() {
        let cfg = SessionsConfig {
            idle_timeout: Duration::from_secs(10),
            absolute_timeout: Duration::from_secs(100),
            ..SessionsConfig::default()
        };
        let rec = Record {
            user: "u".into(),
            email: None,
            groups: vec![],
            name: None,
            created_ms: 1_000_000,
            client_ip: String::new(),
            user_agent: String::new(),
            login: String::new(),
            backends: Default::default(),
            extra: Vec::new(),
            id_token: None,
            sid: None,
        };
        let v = SessionView::new(rec.clone(), 1_000_000);
        assert_eq!(v.expires_at_ms(&cfg), 1_010_000);
        let late = SessionView::new(rec.clone(), 1_095_000);
        assert_eq!(late.expires_at_ms(&cfg), 1_100_000, "absolute cap wins");
        assert!(!late.is_live(&cfg, 1_100_000));
        assert_eq!(ttl(&rec, &cfg, 1_095_000), Duration::from_secs(5));
    }
}
