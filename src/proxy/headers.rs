//! Header rewriting between client and backend.

use crate::config::Identity as IdentityConfig;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// `name` equals the folded `pattern` (lowercase, `_` read as `-`), or
/// starts with it when the pattern ends in `*`.
fn matches_folded(name: &str, pattern: &str) -> bool {
    let (pat, wildcard) = match pattern.strip_suffix('*') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let n = name.as_bytes();
    if n.len() < pat.len() || (!wildcard && n.len() != pat.len()) {
        return false;
    }
    n.iter().zip(pat.as_bytes()).all(|(&a, &b)| {
        // HeaderName is already lowercase.
        let a = if a == b'_' { b'-' } else { a };
        a == b
    })
}

fn folded_eq(name: &str, configured: &HeaderName) -> bool {
    matches_folded(name, configured.as_str())
}

/// Removes every header the client must not be able to set: the
/// `identity.strip` patterns and every header the gateway itself sets as
/// identity. Runs on every route, before authentication, so nothing a
/// client sends can be mistaken for an identity the gateway vouched for.
pub fn strip_identity(headers: &mut HeaderMap, cfg: &IdentityConfig) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let n = name.as_str();
        if cfg.strip.iter().any(|p| matches_folded(n, p))
            || cfg.headers.iter().any(|(h, _)| folded_eq(n, h))
        {
            doomed.push(name.clone());
        }
    }
    for name in doomed {
        headers.remove(&name);
    }
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A WebSocket upgrade request (RFC 6455 section 4.1).
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && connection_has(headers, "upgrade")
}

/// A hop-by-hop header by name alone: one of the fixed set, or `Proxy-*`.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == KEEP_ALIVE
        || name.as_str().starts_with("proxy-")
}

/// Removes hop-by-hop headers (RFC 9110 section 7.6.1): `Connection` and
/// every header it names, `Keep-Alive`, `TE`, `Trailer`,
/// `Transfer-Encoding`, `Upgrade` (kept with `Connection: upgrade` when
/// `keep_upgrade`, for a WebSocket), and every `Proxy-*` header.
///
/// Most messages carry none of them, so one pass over the names decides
/// whether anything needs removing (each removal hashes its name).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if !headers.keys().any(is_hop_by_hop) {
        if keep_upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(keep_upgrade && n == header::UPGRADE))
            .collect();
        for n in listed {
            headers.remove(&n);
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
    if headers.keys().any(|k| k.as_str().starts_with("proxy-")) {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for n in proxy {
            headers.remove(&n);
        }
    }
}

/// Sets `X-Forwarded-For/Proto/Host` and `X-Real-IP`. From a trusted proxy
/// the chain is extended and its values kept; from anyone else they are
/// replaced, since a client could write anything there. `peer` is the
/// peer's address as header text ([`peer_value`], made once per
/// connection).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &HeaderValue,
    trusted: bool,
    https: bool,
    host: Option<&HeaderValue>,
) {
    let extended = match (
        trusted,
        headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()),
    ) {
        (true, Some(prev)) if !prev.is_empty() => {
            let mut v = Vec::with_capacity(prev.len() + 2 + peer.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
        _ => None,
    };
    headers.insert(&X_FORWARDED_FOR, extended.unwrap_or_else(|| peer.clone()));
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(
            &X_FORWARDED_PROTO,
            HeaderValue::from_static(if https { "https" } else { "http" }),
        );
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(h) => {
                headers.insert(&X_FORWARDED_HOST, h.clone());
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
    if !(trusted && headers.contains_key(&X_REAL_IP)) {
        headers.insert(&X_REAL_IP, peer.clone());
    }
    if !trusted {
        // RFC 7239 `Forwarded` from an untrusted client is as forgeable as
        // X-Forwarded-For; backends must not see it.
        headers.remove(&FORWARDED);
    }
}

/// A peer address as header text (`192.0.2.7`, `2001:db8::1`).
pub fn peer_value(peer: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.to_string()).expect("an IP address is valid header text")
}

/// A header value is safe to forward: no CR, LF or NUL (SPEC 6).
pub fn is_safe_value(v: &str) -> bool {
    !v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Identity;

    fn identity_cfg() -> Identity {
        Identity {
            headers: vec![(HeaderName::from_static("x-user-name"), "sub".into())],
            strip: vec!["x-auth-*".into(), "remote-user".into()],
            strip_session_cookie: true,
            strip_authorization: false,
            jwt: None,
        }
    }

    #[test]
    fn strip_removes_patterns_and_identity_headers_with_underscores_too() {
        let mut h = HeaderMap::new();
        h.insert("x-auth-user", "mallory".parse().unwrap());
        h.insert("x_auth_groups", "admin".parse().unwrap());
        h.insert("X-AUTH-EMAIL", "m@evil".parse().unwrap());
        h.insert("remote_user", "root".parse().unwrap());
        h.insert("x_user_name", "root".parse().unwrap());
        h.insert("x-authorization", "not under x-auth-".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        strip_identity(&mut h, &identity_cfg());
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "x-authorization"]);
    }

    #[test]
    fn hop_by_hop_headers_and_what_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        remove_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        for name in [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-foo",
        ] {
            let mut h = HeaderMap::new();
            h.insert("x-kept", "1".parse().unwrap());
            h.insert(HeaderName::from_static(name), "x".parse().unwrap());
            remove_hop_by_hop(&mut h, false);
            let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(left, vec!["x-kept"], "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-kept", "1".parse().unwrap());
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn websocket_upgrade_keeps_upgrade_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(is_websocket_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn untrusted_forwarded_headers_are_replaced_trusted_ones_extended() {
        let peer = peer_value("192.0.2.7".parse().unwrap());
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, "1.2.3.4".parse().unwrap());
        h.insert(&X_FORWARDED_PROTO, "https".parse().unwrap());
        h.insert(&FORWARDED, "for=1.2.3.4".parse().unwrap());
        set_forwarded(
            &mut h,
            &peer,
            false,
            false,
            Some(&"app.example.com".parse().unwrap()),
        );
        assert_eq!(h[&X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(h[&X_REAL_IP], "192.0.2.7");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "app.example.com");
        assert!(!h.contains_key(&FORWARDED));

        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, "1.2.3.4".parse().unwrap());
        h.insert(&X_FORWARDED_PROTO, "https".parse().unwrap());
        set_forwarded(&mut h, &peer, true, false, None);
        assert_eq!(h[&X_FORWARDED_FOR], "1.2.3.4, 192.0.2.7");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn unsafe_values_are_detected() {
        assert!(is_safe_value("alice"));
        assert!(!is_safe_value("alice\r\nX-Admin: 1"));
        assert!(!is_safe_value("a\0b"));
    }
}
