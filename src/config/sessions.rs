//! `[sessions]` and `[login]`: validation into typed settings.

use super::file::{LoginFile, SessionsFile};
use super::units::parse_duration;
use super::Problem;
use crate::login::users::Users;
use crate::tokens::keys::SigningKeys;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_COOKIE_NAME: &str = "gatehouse_session";
pub const DEFAULT_KEY_PREFIX: &str = "gatehouse:";
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_SESSION_ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_FAILURES: u32 = 5;
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_LOCKOUT: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_ISSUER: &str = "gatehouse";
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_REFRESH_TOKEN_TTL: Duration = Duration::from_secs(14 * 86400);
/// No refresh family outlives its login by more than this (SPEC 16).
pub const DEFAULT_REFRESH_TOKEN_MAX_AGE: Duration = Duration::from_secs(30 * 86400);
pub const DEFAULT_REFRESH_REUSE_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Redis(std::sync::Arc<super::store::RedisSettings>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// The attribute as the `cookie` crate writes it.
impl From<SameSite> for cookie::SameSite {
    fn from(s: SameSite) -> Self {
        match s {
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sessions {
    /// `[sessions]` was present (sessions are offered at all).
    pub enabled: bool,
    pub store: StoreKind,
    pub key_prefix: String,
    pub cookie_name: String,
    pub cookie_domain: Option<String>,
    pub cookie_secure: bool,
    pub cookie_same_site: SameSite,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub cache_ttl: Duration,
    /// `csrf = "origin"`.
    pub csrf: bool,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            enabled: false,
            store: StoreKind::Memory,
            key_prefix: DEFAULT_KEY_PREFIX.into(),
            cookie_name: DEFAULT_COOKIE_NAME.into(),
            cookie_domain: None,
            cookie_secure: true,
            cookie_same_site: SameSite::Lax,
            idle_timeout: DEFAULT_SESSION_IDLE,
            absolute_timeout: DEFAULT_SESSION_ABSOLUTE,
            cache_ttl: DEFAULT_CACHE_TTL,
            csrf: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Login {
    pub users_file: Option<PathBuf>,
    pub users: Arc<Users>,
    /// Signs access tokens and backend identity tokens.
    pub keys: Arc<SigningKeys>,
    pub issuer: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// A family ends this long after the login that started it.
    pub refresh_token_max_age: Duration,
    pub refresh_reuse_grace: Duration,
    pub max_failures: u32,
    pub failure_window: Duration,
    pub lockout: Duration,
}

fn err(problems: &mut Vec<Problem>, path: &str, message: impl Into<String>) {
    problems.push(Problem {
        path: path.into(),
        line: None,
        message: message.into(),
    });
}

fn duration(
    problems: &mut Vec<Problem>,
    path: &str,
    v: &Option<String>,
    default: Duration,
) -> Duration {
    match v {
        None => default,
        Some(t) => parse_duration(t).unwrap_or_else(|m| {
            err(problems, path, m.to_string());
            default
        }),
    }
}

pub(super) fn sessions(problems: &mut Vec<Problem>, s: Option<&SessionsFile>) -> Sessions {
    let Some(s) = s else {
        return Sessions::default();
    };
    // Which Redis, for store = "redis", is read by `super::redis` (it
    // needs the config folder and the secret forms).
    let store = match s.store.as_deref() {
        None | Some("memory") => StoreKind::Memory,
        // Replaced by the Redis settings in validate.rs.
        Some("redis") => StoreKind::Memory,
        Some(o) => {
            err(
                problems,
                "sessions.store",
                format!("`{o}`: expected \"memory\" or \"redis\""),
            );
            StoreKind::Memory
        }
    };
    if let Some(prefix) = &s.key_prefix {
        // A brace would turn part of every key into a Redis Cluster hash
        // tag and break the keyspace's own tags.
        if prefix.contains(['{', '}']) {
            err(
                problems,
                "sessions.key_prefix",
                "must not contain `{` or `}` (Redis Cluster hash tags)",
            );
        }
    }
    let cookie_name = s
        .cookie_name
        .clone()
        .unwrap_or_else(|| DEFAULT_COOKIE_NAME.into());
    if !crate::cookies::is_name(&cookie_name) {
        err(
            problems,
            "sessions.cookie_name",
            format!("`{cookie_name}` is not a valid cookie name"),
        );
    }
    let cookie_secure = s.cookie_secure.unwrap_or(true);
    let cookie_same_site = match s.cookie_same_site.as_deref() {
        None | Some("lax") => SameSite::Lax,
        Some("strict") => SameSite::Strict,
        Some("none") => SameSite::None,
        Some(o) => {
            err(
                problems,
                "sessions.cookie_same_site",
                format!("`{o}`: expected \"strict\", \"lax\" or \"none\""),
            );
            SameSite::Lax
        }
    };
    if cookie_same_site == SameSite::None && !cookie_secure {
        err(
            problems,
            "sessions.cookie_same_site",
            "cookie_same_site = \"none\" needs cookie_secure = true (browsers refuse it otherwise)",
        );
    }
    let idle_timeout = duration(
        problems,
        "sessions.idle_timeout",
        &s.idle_timeout,
        DEFAULT_SESSION_IDLE,
    );
    let absolute_timeout = duration(
        problems,
        "sessions.absolute_timeout",
        &s.absolute_timeout,
        DEFAULT_SESSION_ABSOLUTE,
    );
    if idle_timeout.is_zero() || absolute_timeout.is_zero() {
        err(
            problems,
            "sessions.idle_timeout",
            "session timeouts must be more than 0",
        );
    }
    let cache_ttl = duration(
        problems,
        "sessions.cache_ttl",
        &s.cache_ttl,
        DEFAULT_CACHE_TTL,
    );
    let csrf = match s.csrf.as_deref() {
        None | Some("origin") => true,
        Some("off") => false,
        Some(o) => {
            err(
                problems,
                "sessions.csrf",
                format!("`{o}`: expected \"origin\" or \"off\""),
            );
            true
        }
    };
    let cookie_domain = s.cookie_domain.clone().filter(|d| !d.is_empty());
    if let Some(d) = &cookie_domain {
        if !d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            err(
                problems,
                "sessions.cookie_domain",
                format!("`{d}` is not a domain"),
            );
        }
    }
    // A browser drops a cookie whose name prefix promises what its
    // attributes do not (RFC 6265bis section 4.1.3): logins would seem to
    // work and never stick. SECURITY.md recommends `__Host-`.
    let has_prefix = |p: &str| {
        cookie_name
            .get(..p.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(p))
    };
    if has_prefix("__Host-") && (!cookie_secure || cookie_domain.is_some()) {
        err(
            problems,
            "sessions.cookie_name",
            "a `__Host-` cookie needs cookie_secure = true and no cookie_domain (browsers refuse it otherwise)",
        );
    } else if has_prefix("__Secure-") && !cookie_secure {
        err(
            problems,
            "sessions.cookie_name",
            "a `__Secure-` cookie needs cookie_secure = true (browsers refuse it otherwise)",
        );
    }
    Sessions {
        enabled: true,
        store,
        key_prefix: s
            .key_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_KEY_PREFIX.into()),
        cookie_name,
        cookie_domain,
        cookie_secure,
        cookie_same_site,
        idle_timeout,
        absolute_timeout,
        cache_ttl,
        csrf,
    }
}

pub(super) fn login(
    problems: &mut Vec<Problem>,
    l: Option<&LoginFile>,
    base: &Path,
) -> Option<Login> {
    let l = l?;
    let users_file = l.users_file.as_ref().map(|f| base.join(f));
    let users = match &users_file {
        None => Arc::new(Users::default()),
        Some(path) => match Users::load(path) {
            Ok(u) => Arc::new(u),
            Err(e) => {
                err(problems, "login.users_file", e.to_string());
                Arc::new(Users::default())
            }
        },
    };
    let previous: Vec<PathBuf> = l
        .previous_keys
        .iter()
        .flatten()
        .map(|k| base.join(k))
        .collect();
    let signing_key_file = l.signing_key_file.as_ref().map(|f| base.join(f));
    // The key loader reads the files itself: each is first checked to be a
    // regular file within the size limit (SPEC 16), so `/dev/zero` or a
    // huge file is refused before it is read whole.
    let unusable = signing_key_file
        .iter()
        .map(|p| ("login.signing_key_file", p))
        .chain(previous.iter().map(|p| ("login.previous_keys", p)))
        .filter_map(|(key, p)| {
            super::read::read_limited(p, super::read::MAX_FILE_BYTES)
                .err()
                .map(|e| (key, e))
        })
        .collect::<Vec<_>>();
    let ephemeral =
        || Arc::new(SigningKeys::load(None, &[]).expect("an ephemeral key always loads"));
    let keys = if !unusable.is_empty() {
        for (key, e) in unusable {
            err(problems, key, e.to_string());
        }
        ephemeral()
    } else {
        match SigningKeys::load(signing_key_file.as_deref(), &previous) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                err(problems, e.key_path(), e.to_string());
                ephemeral()
            }
        }
    };
    let max_failures = l.max_failures.unwrap_or(DEFAULT_MAX_FAILURES);
    if max_failures == 0 {
        err(problems, "login.max_failures", "must be at least 1");
    }
    Some(Login {
        users_file,
        users,
        keys,
        issuer: l.issuer.clone().unwrap_or_else(|| DEFAULT_ISSUER.into()),
        access_token_ttl: duration(
            problems,
            "login.access_token_ttl",
            &l.access_token_ttl,
            DEFAULT_ACCESS_TOKEN_TTL,
        ),
        refresh_token_ttl: duration(
            problems,
            "login.refresh_token_ttl",
            &l.refresh_token_ttl,
            DEFAULT_REFRESH_TOKEN_TTL,
        ),
        refresh_token_max_age: duration(
            problems,
            "login.refresh_token_max_age",
            &l.refresh_token_max_age,
            DEFAULT_REFRESH_TOKEN_MAX_AGE,
        ),
        refresh_reuse_grace: duration(
            problems,
            "login.refresh_reuse_grace",
            &l.refresh_reuse_grace,
            DEFAULT_REFRESH_REUSE_GRACE,
        ),
        max_failures,
        failure_window: duration(
            problems,
            "login.failure_window",
            &l.failure_window,
            DEFAULT_FAILURE_WINDOW,
        ),
        lockout: duration(problems, "login.lockout", &l.lockout, DEFAULT_LOCKOUT),
    })
}
