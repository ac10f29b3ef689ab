//! The typed form of an upstream's placement keys (SPEC 2, 7): `hash_key`,
//! `[upstreams.sticky]` and `discovery`, with their validation.
//!
//! Kept apart from `validate.rs` so the upstream rules read in one place.

use super::file::{DiscoveryFile, StickyFile};
use super::validate::Check;
use super::Secret;
use crate::crypto::Mac;
use std::net::SocketAddr;
use std::time::Duration;

/// Cookie the gateway sets in `sticky.mode = "cookie"` unless `cookie_name` says otherwise.
pub const DEFAULT_AFFINITY_COOKIE: &str = "gatehouse_affinity";
/// How long an unused learned mapping (`mode = "learn"`) is kept when
/// `ttl` is absent or `"0s"`: the gateway cannot know the app's own
/// session lifetime.
pub const DEFAULT_LEARNED_TTL: Duration = Duration::from_secs(3600);
/// `discovery.interval` when absent.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(10);
/// Purpose label of the affinity cookie key, derived from the server secret.
pub(super) const AFFINITY_KEY_PURPOSE: &str = "affinity";

/// What `balance = "hash"` hashes (`hash_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The authenticated `sub`; anonymous callers fall back to the client IP.
    Identity,
    ClientIp,
    Header(http::HeaderName),
    Cookie(String),
    Query(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyMode {
    /// A gateway-issued, signed affinity cookie.
    Cookie { cookie_name: String },
    /// Consistent hash of the caller's identity.
    Identity,
    /// Learn which backend issued the app's own session cookie.
    Learn { app_cookie: String },
}

#[derive(Debug, Clone)]
pub struct Sticky {
    pub mode: StickyMode,
    /// Cookie mode: `Max-Age` (zero: a browser-session cookie). Learn mode:
    /// how long an unused mapping is kept.
    pub ttl: Duration,
    /// Signs affinity cookies: derived from the server secret, so replicas
    /// configured alike accept each other's cookies.
    pub key: Mac,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// DNS name whose A/AAAA records are the backends.
    pub host: String,
    pub port: u16,
    pub interval: Duration,
    /// DNS server to ask; `None`: the name servers of /etc/resolv.conf.
    pub resolver: Option<SocketAddr>,
}

/// Parses `hash_key`; `None` (with a problem recorded) when malformed.
pub(super) fn hash_key(c: &mut Check<'_>, path: &str, text: &str) -> Option<HashKey> {
    let bad = |c: &mut Check<'_>, why: &str| {
        c.err(
            path,
            format!("`{text}`: {why} (expected \"identity\", \"client_ip\", \"header:NAME\", \"cookie:NAME\" or \"query:NAME\")"),
        );
        None
    };
    match text.split_once(':') {
        None if text == "identity" => Some(HashKey::Identity),
        None if text == "client_ip" => Some(HashKey::ClientIp),
        None => bad(c, "unknown key"),
        Some((_, "")) => bad(c, "the name is missing"),
        Some(("header", name)) => match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => Some(HashKey::Header(h)),
            Err(_) => bad(c, "not a valid header name"),
        },
        Some(("cookie", name)) if crate::cookies::is_name(name) => {
            Some(HashKey::Cookie(name.into()))
        }
        Some(("cookie", _)) => bad(c, "not a valid cookie name"),
        Some(("query", name)) => Some(HashKey::Query(name.into())),
        Some(_) => bad(c, "unknown source"),
    }
}

/// Validates `[upstreams.sticky]` at `path`.
pub(super) fn sticky(
    c: &mut Check<'_>,
    path: &str,
    s: &StickyFile,
    balance: Option<&str>,
    secret: &Secret,
) -> Option<Sticky> {
    let ttl = c.duration(&format!("{path}.ttl"), &s.ttl, Duration::ZERO);
    let only = |c: &mut Check<'_>, key: &str, given: bool, mode: &str| {
        if given {
            c.err(
                format!("{path}.{key}"),
                format!("`{key}` only applies with mode = \"{mode}\""),
            );
        }
    };
    let mode = match s.mode.as_str() {
        "cookie" => {
            only(c, "app_cookie", s.app_cookie.is_some(), "learn");
            let cookie_name = s
                .cookie_name
                .clone()
                .unwrap_or_else(|| DEFAULT_AFFINITY_COOKIE.into());
            if !crate::cookies::is_name(&cookie_name) {
                c.err(
                    format!("{path}.cookie_name"),
                    format!("`{cookie_name}` is not a valid cookie name"),
                );
            }
            StickyMode::Cookie { cookie_name }
        }
        "identity" => {
            only(c, "cookie_name", s.cookie_name.is_some(), "cookie");
            only(c, "app_cookie", s.app_cookie.is_some(), "learn");
            if s.ttl.is_some() {
                c.warnings.push(format!(
                    "{path}.ttl has no effect with mode = \"identity\" (placement is a hash of the caller)"
                ));
            }
            if matches!(balance, Some(b) if b != "round_robin") {
                c.warnings.push(format!(
                    "{path}: mode = \"identity\" places every caller by a consistent hash of who it is; `balance` and `hash_key` are not used"
                ));
            }
            StickyMode::Identity
        }
        "learn" => {
            only(c, "cookie_name", s.cookie_name.is_some(), "cookie");
            match &s.app_cookie {
                Some(n) if crate::cookies::is_name(n) => StickyMode::Learn {
                    app_cookie: n.clone(),
                },
                Some(n) => {
                    c.err(
                        format!("{path}.app_cookie"),
                        format!("`{n}` is not a valid cookie name"),
                    );
                    return None;
                }
                None => {
                    c.err(
                        format!("{path}.app_cookie"),
                        "mode = \"learn\" needs `app_cookie` (the app's session cookie, e.g. \"JSESSIONID\")",
                    );
                    return None;
                }
            }
        }
        o => {
            c.err(
                format!("{path}.mode"),
                format!("`{o}`: expected \"cookie\", \"identity\" or \"learn\""),
            );
            return None;
        }
    };
    let ttl = match mode {
        StickyMode::Learn { .. } if ttl.is_zero() => DEFAULT_LEARNED_TTL,
        _ => ttl,
    };
    Some(Sticky {
        mode,
        ttl,
        key: Mac::derive(&secret.0, AFFINITY_KEY_PURPOSE),
    })
}

/// Validates `discovery = { dns = "name:port", interval, resolver }`.
pub(super) fn discovery(c: &mut Check<'_>, path: &str, d: &DiscoveryFile) -> Option<Discovery> {
    let interval = c.duration(
        &format!("{path}.interval"),
        &d.interval,
        DEFAULT_DISCOVERY_INTERVAL,
    );
    if interval.is_zero() {
        c.err(format!("{path}.interval"), "must be more than 0");
    }
    let resolver = match d.resolver.as_deref() {
        None => None,
        Some(r) => match r
            .parse::<SocketAddr>()
            .or_else(|_| r.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
        {
            Ok(a) => Some(a),
            Err(_) => {
                c.err(
                    format!("{path}.resolver"),
                    format!("`{r}`: expected IP or IP:PORT of a DNS server"),
                );
                None
            }
        },
    };
    let parsed = d.dns.rsplit_once(':').and_then(|(host, port)| {
        let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
        let host = host.trim_end_matches('.');
        let ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        ok.then(|| (host.to_ascii_lowercase(), port))
    });
    match parsed {
        Some((host, port)) => Some(Discovery {
            host,
            port,
            interval,
            resolver,
        }),
        None => {
            c.err(
                format!("{path}.dns"),
                format!(
                    "`{}`: expected a DNS name and port, e.g. \"app-headless.default.svc.cluster.local:8080\"",
                    d.dns
                ),
            );
            None
        }
    }
}

/// Cross-upstream checks: two cookie-sticky upstreams sharing one cookie
/// name would overwrite each other's cookie on a client using both.
pub(super) fn check_cookie_names(c: &mut Check<'_>, ups: &[super::Upstream]) {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for u in ups {
        if let Some(Sticky {
            mode: StickyMode::Cookie { cookie_name },
            ..
        }) = &u.sticky
        {
            if let Some((_, other)) = seen.iter().find(|(n, _)| n == cookie_name) {
                c.warnings.push(format!(
                    "upstreams `{other}` and `{}` use the same affinity cookie `{cookie_name}`: a client of both would be re-pinned back and forth unless their routes are on different hosts; set distinct `cookie_name`s",
                    u.name
                ));
            }
            seen.push((cookie_name, &u.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{load_str, Balance, ConfigError, HashKey, StickyMode};
    use std::path::Path;

    fn upstream(extra: &str) -> Result<crate::config::Config, ConfigError> {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n\
             [[upstreams]]\nname = \"app\"\nbackends = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n{extra}\n\
             [[routes]]\nname = \"r\"\nupstream = \"app\"\nauth = \"none\"\n"
        );
        load_str(&text, Path::new("/tmp/gatehouse.toml"))
    }

    fn messages(e: ConfigError) -> String {
        e.problems()
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn cookie_mode_defaults_its_cookie_name_and_session_lifetime() {
        let c = upstream("[upstreams.sticky]\nmode = \"cookie\"").unwrap();
        let s = c.upstreams[0].sticky.as_ref().unwrap();
        assert_eq!(
            s.mode,
            StickyMode::Cookie {
                cookie_name: "gatehouse_affinity".into()
            }
        );
        assert!(s.ttl.is_zero());
    }

    #[test]
    fn learn_mode_needs_an_app_cookie() {
        let e = upstream("[upstreams.sticky]\nmode = \"learn\"").unwrap_err();
        assert!(messages(e).contains("upstreams[0].sticky.app_cookie"));
        let c =
            upstream("[upstreams.sticky]\nmode = \"learn\"\napp_cookie = \"JSESSIONID\"").unwrap();
        let s = c.upstreams[0].sticky.as_ref().unwrap();
        assert_eq!(s.ttl, super::DEFAULT_LEARNED_TTL);
    }

    #[test]
    fn keys_of_another_mode_and_unknown_modes_are_refused() {
        let e = upstream("[upstreams.sticky]\nmode = \"cookie\"\napp_cookie = \"JSESSIONID\"")
            .unwrap_err();
        assert!(messages(e).contains("only applies with mode = \"learn\""));
        let e = upstream("[upstreams.sticky]\nmode = \"ip\"").unwrap_err();
        assert!(messages(e).contains("upstreams[0].sticky.mode"));
        let e =
            upstream("[upstreams.sticky]\nmode = \"cookie\"\ncookie_name = \"a b\"").unwrap_err();
        assert!(messages(e).contains("not a valid cookie name"));
    }

    #[test]
    fn hash_key_forms_parse_and_default_to_identity() {
        let c = upstream("balance = \"hash\"").unwrap();
        assert_eq!(c.upstreams[0].balance, Balance::Hash);
        assert_eq!(c.upstreams[0].hash_key, Some(HashKey::Identity));
        for (text, want) in [
            ("client_ip", HashKey::ClientIp),
            (
                "header:X-Tenant",
                HashKey::Header(http::HeaderName::from_static("x-tenant")),
            ),
            ("cookie:cart", HashKey::Cookie("cart".into())),
            ("query:user", HashKey::Query("user".into())),
        ] {
            let c = upstream(&format!("balance = \"hash\"\nhash_key = \"{text}\"")).unwrap();
            assert_eq!(c.upstreams[0].hash_key, Some(want));
        }
        let e = upstream("balance = \"hash\"\nhash_key = \"body:x\"").unwrap_err();
        assert!(messages(e).contains("upstreams[0].hash_key"));
        let e = upstream("balance = \"hash\"\nhash_key = \"header:\"").unwrap_err();
        assert!(messages(e).contains("the name is missing"));
    }

    #[test]
    fn discovery_alone_is_enough_backends_and_its_fields_are_checked() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"app\"\n\
                    discovery = { dns = \"app.default.svc.cluster.local:8080\", interval = \"5s\", resolver = \"10.0.0.10\" }\n";
        let c = load_str(text, Path::new("/tmp/g.toml")).unwrap();
        let d = c.upstreams[0].discovery.as_ref().unwrap();
        assert_eq!(d.host, "app.default.svc.cluster.local");
        assert_eq!(d.port, 8080);
        assert_eq!(d.interval, std::time::Duration::from_secs(5));
        assert_eq!(d.resolver, Some("10.0.0.10:53".parse().unwrap()));

        let text = "[server]\nlisten = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"app\"\n\
                    discovery = { dns = \"app:0\", resolver = \"nope\" }\n";
        let e = load_str(text, Path::new("/tmp/g.toml")).unwrap_err();
        let m = messages(e);
        assert!(m.contains("upstreams[0].discovery.dns"), "{m}");
        assert!(m.contains("upstreams[0].discovery.resolver"), "{m}");
    }

    #[test]
    fn shared_affinity_cookie_names_are_warned_about() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\n\
            [[upstreams]]\nname = \"a\"\nbackends = [\"127.0.0.1:1\"]\n[upstreams.sticky]\nmode = \"cookie\"\n\
            [[upstreams]]\nname = \"b\"\nbackends = [\"127.0.0.1:2\"]\n[upstreams.sticky]\nmode = \"cookie\"\n";
        let c = load_str(text, Path::new("/tmp/g.toml")).unwrap();
        assert!(c
            .warnings
            .iter()
            .any(|w| w.contains("same affinity cookie")));
    }
}
