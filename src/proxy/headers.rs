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
    // HeaderName is already lowercase; `_` and `-` are the same on both
    // sides (a configured identity header may itself use `_`).
    let fold = |c: u8| if c == b'_' { b'-' } else { c };
    n.iter()
        .zip(pat.as_bytes())
        .all(|(&a, &b)| fold(a) == fold(b))
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

/// The GUID a WebSocket server appends to the client's key (RFC 6455
/// section 1.3).
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value a WebSocket handshake's answer must
/// carry: base64 of the SHA-1 of the request's key and the GUID (RFC 6455
/// section 4.2.2). A backend that sends it has read the request as a
/// WebSocket handshake; one that switches protocols without it has not,
/// and the gateway must not open a tunnel for it (SPEC 16).
#[derive(Clone, Copy)]
pub struct WebSocketAccept([u8; 28]);

impl WebSocketAccept {
    /// For a request carrying exactly one `Sec-WebSocket-Key`; `None`
    /// otherwise (no valid handshake can answer it).
    pub fn for_request(headers: &HeaderMap) -> Option<WebSocketAccept> {
        let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
        let key = keys.next()?;
        if keys.next().is_some() {
            return None;
        }
        Some(WebSocketAccept::of_key(key.as_bytes()))
    }

    fn of_key(key: &[u8]) -> WebSocketAccept {
        use base64::Engine;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(key);
        ctx.update(WEBSOCKET_GUID);
        let digest = ctx.finish();
        let mut out = [0u8; 28];
        // 20 bytes are 28 base64 characters with padding.
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(digest.as_ref(), &mut out)
            .unwrap_or(0);
        debug_assert_eq!(n, out.len());
        WebSocketAccept(out)
    }

    /// The response carries exactly one `Sec-WebSocket-Accept`, and it is
    /// this one.
    pub fn answered_by(&self, response: &HeaderMap) -> bool {
        let mut values = response.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
        values.next().is_some_and(|v| v.as_bytes() == self.0) && values.next().is_none()
    }
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

/// Headers whose meaning belongs to HTTP framing or to the gateway.
const MANAGED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "x-gatehouse-rehomed",
];

/// Headers that tell a backend where a request came from or what it
/// originally was, which some frameworks and proxies honour: the path or
/// method to serve (`X-Original-URL`, `X-Rewrite-URL`,
/// `X-Forwarded-Uri`, ...), the scheme, port or host the client used, or
/// the client's address (`True-Client-IP`, `CF-Connecting-IP`, ...).
/// Only a trusted proxy may send them (SPEC 16); from anyone else they
/// are removed, in both spellings.
const UNTRUSTED_FORWARDING: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-original-method",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-host",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "client-ip",
];

fn is_untrusted_forwarding(name: &HeaderName) -> bool {
    let n = name.as_str();
    // Every listed name starts with one of these letters (a test checks
    // it): most headers (Host, Accept..., User-Agent) are turned away
    // here instead of being compared with all seventeen, for every header
    // of every request from outside `trusted_proxies`.
    if !matches!(n.as_bytes().first(), Some(b'x' | b't' | b'c')) {
        return false;
    }
    UNTRUSTED_FORWARDING.iter().any(|f| matches_folded(n, f))
}

/// Removes [`UNTRUSTED_FORWARDING`] headers (a request from a peer outside
/// `trusted_proxies`). One pass over the names, comparing without
/// allocating; a list is made only when something must go.
fn strip_untrusted_forwarding(headers: &mut HeaderMap) {
    if !headers.keys().any(is_untrusted_forwarding) {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_untrusted_forwarding(k))
        .cloned()
        .collect();
    for n in doomed {
        headers.remove(&n);
    }
}

/// Removes headers spelled with `_` that read as a framing or gateway
/// header once `_` is taken for `-`, as some backends (CGI-style servers)
/// do: a `Transfer_Encoding` or `Content_Length` the gateway ignores could
/// frame the body differently there (request smuggling), and an
/// `X_Forwarded_For` could stand in for the address the gateway sets.
pub fn strip_lookalikes(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let n = k.as_str();
            n.contains('_')
                && (MANAGED.iter().any(|m| matches_folded(n, m))
                    || UNTRUSTED_FORWARDING.iter().any(|m| matches_folded(n, m))
                    || matches_folded(n, "proxy-*"))
        })
        .cloned()
        .collect();
    for n in doomed {
        headers.remove(&n);
    }
}

/// The request's `Transfer-Encoding`, if any, is exactly `chunked`. The
/// gateway relays bodies and applies no other coding, and `chunked`
/// applied twice (`chunked, chunked`) is malformed (RFC 9112 section
/// 6.1): a front end that read such a body another way would desync.
pub fn transfer_coding_is_plain(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|c| c.trim_ascii());
    match codings.next() {
        None => true,
        Some(c) => c.eq_ignore_ascii_case(b"chunked") && codings.next().is_none(),
    }
}

/// Sets `X-Forwarded-For/Proto/Host` and `X-Real-IP`. From a trusted proxy
/// the chain is extended and its values kept; from anyone else they are
/// replaced, since a client could write anything there, and `Forwarded`
/// and the other forwarding headers ([`UNTRUSTED_FORWARDING`]) are
/// removed. `peer` is the
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
        strip_untrusted_forwarding(headers);
    }
}

/// Joins several `Cookie` fields into one, `; `-separated.
pub fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// Removes a backend's `Set-Cookie` for any of the gateway's own cookie
/// `names` (its session cookie, its affinity cookie, its sign-in state
/// cookie): those cookies mean what the gateway says. A backend (or a
/// header injection in an app) setting the session cookie could otherwise
/// plant a session of its choosing in the browser (session fixation), or
/// log users out. Which name a value sets is read as a browser reads it
/// ([`crate::cookies::set_cookie_name`]: whitespace, nameless cookies).
pub fn drop_own_set_cookies(headers: &mut HeaderMap, names: &[&str]) {
    let own = |v: &HeaderValue| crate::cookies::sets_any(v.as_bytes(), names);
    if !headers.get_all(header::SET_COOKIE).iter().any(own) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !own(v))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for v in kept {
        headers.append(header::SET_COOKIE, v);
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
            client_cert_header: None,
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
    fn identity_headers_configured_with_underscores_are_stripped_in_both_spellings() {
        let mut cfg = identity_cfg();
        cfg.headers = vec![(HeaderName::from_static("x_remote_login"), "sub".into())];
        cfg.strip = vec![];
        let mut h = HeaderMap::new();
        h.insert("x_remote_login", "root".parse().unwrap());
        h.insert("x-remote-login", "root".parse().unwrap());
        h.insert("x-remote-login-hint", "kept".parse().unwrap());
        strip_identity(&mut h, &cfg);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-remote-login-hint"]);
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
    fn other_forwarding_headers_pass_only_from_a_trusted_proxy() {
        let peer = peer_value("192.0.2.7".parse().unwrap());
        let sent = |h: &mut HeaderMap| {
            for n in UNTRUSTED_FORWARDING {
                h.insert(HeaderName::from_static(n), "/admin".parse().unwrap());
            }
            h.insert("x-original-url-hint", "kept".parse().unwrap());
            h.insert("x-hostname", "kept".parse().unwrap());
        };
        let mut h = HeaderMap::new();
        sent(&mut h);
        set_forwarded(&mut h, &peer, false, false, None);
        for n in UNTRUSTED_FORWARDING {
            assert!(!h.contains_key(*n), "{n} from an untrusted peer");
        }
        assert_eq!(h["x-original-url-hint"], "kept");
        assert_eq!(h["x-hostname"], "kept");
        let mut h = HeaderMap::new();
        sent(&mut h);
        set_forwarded(&mut h, &peer, true, false, None);
        for n in UNTRUSTED_FORWARDING {
            assert_eq!(h[*n], "/admin", "{n} from a trusted proxy");
        }
        // `_` spellings, which a backend may fold into the real names.
        let mut h = HeaderMap::new();
        for n in ["x_original_url", "true_client_ip", "cf_connecting_ip"] {
            h.insert(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                "x".parse().unwrap(),
            );
        }
        strip_lookalikes(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn split_cookie_fields_are_joined() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }

    #[test]
    fn underscore_lookalikes_of_managed_headers_are_removed() {
        let mut h = HeaderMap::new();
        for n in [
            "transfer_encoding",
            "content_length",
            "x_forwarded_for",
            "proxy_authorization",
            "x_request_id",
            "x_custom_header",
            "content-length",
        ] {
            h.insert(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                "1".parse().unwrap(),
            );
        }
        strip_lookalikes(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["content-length", "x_custom_header"]);
    }

    #[test]
    fn only_a_single_chunked_transfer_coding_is_plain() {
        let te = |vals: &[&str]| {
            let mut h = HeaderMap::new();
            for v in vals {
                h.append(header::TRANSFER_ENCODING, v.parse().unwrap());
            }
            transfer_coding_is_plain(&h)
        };
        assert!(te(&[]));
        assert!(te(&["chunked"]));
        assert!(te(&["Chunked "]));
        assert!(!te(&["chunked, chunked"]));
        assert!(!te(&["chunked", "chunked"]));
        assert!(!te(&["gzip, chunked"]));
        assert!(!te(&["xchunked"]));
        assert!(!te(&[""]));
    }

    #[test]
    fn backends_cannot_set_the_gateways_cookies() {
        let mut h = HeaderMap::new();
        for v in [
            "gatehouse_session=planted; Path=/",
            "app=1; Path=/",
            " aff =x",
            "=gatehouse_session=nameless",
            "gatehouse_oidc=x",
            "gatehouse_session_other=1",
        ] {
            h.append(header::SET_COOKIE, v.parse().unwrap());
        }
        drop_own_set_cookies(&mut h, &["gatehouse_session", "aff", "gatehouse_oidc"]);
        let left: Vec<&str> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, vec!["app=1; Path=/", "gatehouse_session_other=1"]);
    }

    #[test]
    fn websocket_accept_is_the_rfc_6455_value_and_must_match_exactly() {
        // RFC 6455 section 1.3's example.
        let mut req = HeaderMap::new();
        req.insert(
            header::SEC_WEBSOCKET_KEY,
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        let accept = WebSocketAccept::for_request(&req).unwrap();
        let resp = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::SEC_WEBSOCKET_ACCEPT, v.parse().unwrap());
            }
            h
        };
        assert!(accept.answered_by(&resp(&["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="])));
        assert!(!accept.answered_by(&resp(&[])));
        assert!(!accept.answered_by(&resp(&["s3pPLMBiTxaQ9kYGzzhZRbK+xOo"])));
        assert!(!accept.answered_by(&resp(&["S3pPLMBiTxaQ9kYGzzhZRbK+xOo="])));
        assert!(!accept.answered_by(&resp(&[
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        ])));
        // No key, or two: no handshake can be answered.
        assert!(WebSocketAccept::for_request(&HeaderMap::new()).is_none());
        req.append(
            header::SEC_WEBSOCKET_KEY,
            "b3RoZXIga2V5IGhlcmUh".parse().unwrap(),
        );
        assert!(WebSocketAccept::for_request(&req).is_none());
    }

    #[test]
    fn untrusted_forwarding_names_all_pass_the_first_letter_check() {
        for name in UNTRUSTED_FORWARDING {
            assert!(
                is_untrusted_forwarding(&HeaderName::from_static(name)),
                "{name}"
            );
            let underscored = name.replace('-', "_");
            assert!(
                is_untrusted_forwarding(&HeaderName::from_bytes(underscored.as_bytes()).unwrap()),
                "{underscored}"
            );
        }
    }

    #[test]
    fn unsafe_values_are_detected() {
        assert!(is_safe_value("alice"));
        assert!(!is_safe_value("alice\r\nX-Admin: 1"));
        assert!(!is_safe_value("a\0b"));
    }
}
