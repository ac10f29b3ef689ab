//! Route matching: host (without port) and normalised path, first match
//! wins (SPEC 3 step 4 and 11).
//!
//! Normalisation happens before matching and its result is also what is
//! forwarded: if the backend saw a different path than the one matched, a
//! request for `/public/../admin` could pass the `/public` rule and reach
//! `/admin`.

use crate::config::{HostMatch, Route};
use crate::percent;
use percent_encoding::percent_decode;
use std::borrow::Cow;

/// Why a request path cannot be normalised; the request gets 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with `/`")]
    NotAbsolute,
    #[error("the path has a malformed %-escape")]
    BadEscape,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// True when `path` is certainly already normal: no `%`, no `//`, and no
/// `.` or `..` segment. The common case, answered without allocating.
fn is_plainly_normal(p: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &b) in p.iter().enumerate() {
        match b {
            b'%' => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                // "/." followed by end, "/" or ".": a dot segment (or a
                // name starting with dots, which the slow path handles).
                match p.get(i + 1) {
                    None | Some(b'/') | Some(b'.') => return false,
                    _ => {}
                }
            }
            _ => {}
        }
        prev = b;
    }
    true
}

/// Normalises a request path per RFC 3986 sections 6.2.2 and 5.2.4:
/// %-escapes of unreserved characters decoded (others upper-cased),
/// `.`/`..` segments resolved (never above the root), `//` collapsed. A
/// trailing slash is kept.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let p = path.as_bytes();
    if p.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plainly_normal(p) {
        return Ok(Cow::Borrowed(path));
    }
    // 1. %-decoding of unreserved characters.
    let mut decoded = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' {
            let v = percent::escape(&p[i..]).ok_or(PathError::BadEscape)?;
            if is_unreserved(v) {
                decoded.push(v);
            } else {
                decoded.push(b'%');
                decoded.extend(p[i + 1..i + 3].iter().map(u8::to_ascii_uppercase));
            }
            i += 3;
        } else {
            decoded.push(p[i]);
            i += 1;
        }
    }
    // 2. Segments: drop empty ones and ".", pop on "..".
    let trailing = decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    let mut segs: Vec<&[u8]> = Vec::new();
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segs {
        out.push('/');
        // Only ASCII came in (the URI parser guarantees it) and decoding
        // produced only unreserved ASCII, so this is valid UTF-8.
        out.push_str(std::str::from_utf8(s).map_err(|_| PathError::BadEscape)?);
    }
    if segs.is_empty() || trailing {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// The authority a request names, as sent (port included): its `Host`
/// field, or else the target's authority (HTTP/2's `:authority`, an
/// absolute-form target); `""` when it names none or `Host` is not text.
/// The one reading of a request's host: routing, redirect checks, origin
/// checks and callback URLs must all see the same one.
pub fn request_authority<'a>(headers: &'a http::HeaderMap, uri: &'a http::Uri) -> &'a str {
    headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// [`request_authority`] without its port: what routes match against
/// (case-insensitively, so nothing is lowercased or allocated here).
pub fn request_host<'a>(headers: &'a http::HeaderMap, uri: &'a http::Uri) -> &'a str {
    host_without_port(request_authority(headers, uri))
}

/// The host a request names, lowercase comparison is left to the matcher:
/// the port is removed (also from `[v6]:port`).
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(host, |(h, _)| h);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

pub(crate) fn host_matches(m: &HostMatch, host: &str) -> bool {
    match m {
        HostMatch::Any => true,
        HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
        HostMatch::Wildcard(suffix) => {
            // ".example.com": exactly one more, non-empty label.
            host.len() > suffix.len()
                && host.is_char_boundary(host.len() - suffix.len())
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && !host[..host.len() - suffix.len()].contains('.')
        }
    }
}

/// Per-segment prefix match: `/api` matches `/api`, `/api/`, `/api/x`,
/// never `/apix`. A prefix ending in `/` matches what starts with it.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

/// The first route matching `host` (port already removed) and the
/// normalised `path`, with its index.
pub fn lookup<'r>(routes: &'r [Route], host: &str, path: &str) -> Option<(usize, &'r Route)> {
    routes
        .iter()
        .enumerate()
        .find(|(_, r)| host_matches(&r.host, host) && prefix_matches(&r.path_prefix, path))
}

/// Rounds of %-decoding a lenient reader is assumed to apply (some
/// frameworks decode twice: `%252e` -> `%2e` -> `.`).
const LENIENT_DECODE_ROUNDS: usize = 3;

/// The (normalised) path as a lenient backend might read it, when that
/// could differ from the text: every %-escape decoded (up to
/// [`LENIENT_DECODE_ROUNDS`] times), `\` read as `/`, `;params` dropped
/// from each segment (Servlet containers), ASCII case folded (Windows
/// servers), then dot segments resolved and `//` collapsed. `None` when
/// the path has nothing that such a reader would treat differently.
pub fn lenient_path(path: &str) -> Option<Vec<u8>> {
    if !path
        .bytes()
        .any(|b| matches!(b, b'%' | b'\\' | b';' | b'A'..=b'Z'))
    {
        return None;
    }
    let mut bytes = path.as_bytes().to_vec();
    for _ in 0..LENIENT_DECODE_ROUNDS {
        // Every escape decoded, a malformed one left as text. Borrowed:
        // nothing was decoded, so another round would change nothing.
        match Cow::from(percent_decode(&bytes)) {
            Cow::Borrowed(_) => break,
            Cow::Owned(out) => bytes = out,
        }
    }
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let mut trailing = false;
    for seg in bytes.split(|&b| b == b'/' || b == b'\\') {
        let seg = seg.split(|&b| b == b';').next().unwrap_or_default();
        trailing = matches!(seg, b"" | b"." | b"..");
        match seg {
            b"" | b"." => {}
            b".." => {
                segs.pop();
            }
            s => segs.push(s.to_ascii_lowercase()),
        }
    }
    let mut out = Vec::with_capacity(bytes.len());
    for s in &segs {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if segs.is_empty() || trailing {
        out.push(b'/');
    }
    Some(out)
}

/// [`prefix_matches`] on bytes, ASCII case-insensitively.
fn prefix_matches_folded(prefix: &str, path: &[u8]) -> bool {
    let p = prefix.as_bytes();
    if p == b"/" {
        return true;
    }
    if path.len() < p.len() || !path[..p.len()].eq_ignore_ascii_case(p) {
        return false;
    }
    p.ends_with(b"/") || matches!(path.get(p.len()), None | Some(b'/'))
}

/// True when a lenient reader of this request (see [`lenient_path`]; a
/// host with a trailing dot is the same host) would pick another route
/// than `matched`, the route the request matched as written. Forwarding
/// such a request could let a backend serve a protected route's path
/// under an open route's rules (`/ADMIN`, `/public/..%2Fadmin`,
/// `/admin;x/`, `/public\..\admin`), so the gateway refuses it (400).
pub fn is_ambiguous(routes: &[Route], host: &str, path: &str, matched: Option<usize>) -> bool {
    let folded_host = host.strip_suffix('.').filter(|h| !h.is_empty());
    let lenient = lenient_path(path);
    // A prefix written in mixed case (`/Api`) is reachable in lower case
    // (`/api`) at a case-insensitive backend, whatever the path.
    if folded_host.is_none()
        && lenient.is_none()
        && !routes
            .iter()
            .any(|r| r.path_prefix.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return false;
    }
    let host = folded_host.unwrap_or(host);
    let path = lenient.as_deref().unwrap_or(path.as_bytes());
    let other = routes
        .iter()
        .position(|r| host_matches(&r.host, host) && prefix_matches_folded(&r.path_prefix, path));
    other != matched
}

/// The path to forward when the route strips its prefix.
pub fn strip_prefix<'p>(prefix: &str, path: &'p str) -> Cow<'p, str> {
    if prefix == "/" {
        return Cow::Borrowed(path);
    }
    let rest = &path[prefix.trim_end_matches('/').len()..];
    if rest.is_empty() {
        Cow::Borrowed("/")
    } else {
        Cow::Borrowed(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize_path(p).unwrap().into_owned()
    }

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        assert!(matches!(
            normalize_path("/a/b/c").unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            normalize_path("/a/.well-known/x").unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(n("/"), "/");
        assert_eq!(n("/a/b/"), "/a/b/");
    }

    #[test]
    fn dot_segments_resolve_and_never_climb_above_root() {
        assert_eq!(n("/public/../admin"), "/admin");
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/..."), "/...");
        assert_eq!(n("/..a/b"), "/..a/b");
    }

    #[test]
    fn encoded_dots_and_letters_decode_before_resolving() {
        assert_eq!(n("/public/%2e%2e/admin"), "/admin");
        assert_eq!(n("/public/%2E%2E/admin"), "/admin");
        assert_eq!(n("/public/.%2e/admin"), "/admin");
        assert_eq!(n("/%61dmin"), "/admin");
        assert_eq!(n("/a%7eb"), "/a~b");
    }

    #[test]
    fn reserved_escapes_stay_encoded_and_are_uppercased() {
        assert_eq!(n("/a%2fb"), "/a%2Fb");
        assert_eq!(n("/a%2Fb/../c"), "/c");
        assert_eq!(n("/x%20y"), "/x%20y");
    }

    #[test]
    fn duplicate_slashes_collapse() {
        assert_eq!(n("//admin"), "/admin");
        assert_eq!(n("/a//b///c"), "/a/b/c");
    }

    #[test]
    fn malformed_paths_are_errors() {
        assert_eq!(normalize_path("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("*"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(normalize_path("/a%4"), Err(PathError::BadEscape));
    }

    #[test]
    fn prefixes_match_per_segment() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/jwt/", "/jwt/x"));
        assert!(!prefix_matches("/jwt/", "/jwtx"));
    }

    #[test]
    fn wildcard_hosts_match_exactly_one_label() {
        let w = HostMatch::Wildcard(".example.com".into());
        assert!(host_matches(&w, "a.example.com"));
        assert!(host_matches(&w, "A.Example.COM"));
        assert!(!host_matches(&w, "example.com"));
        assert!(!host_matches(&w, "a.b.example.com"));
        assert!(!host_matches(&w, ".example.com"));
        let e = HostMatch::Exact("app.example.com".into());
        assert!(host_matches(&e, "APP.example.com"));
        assert!(!host_matches(&e, "app.example.com.evil"));
    }

    #[test]
    fn ports_are_removed_from_hosts() {
        assert_eq!(host_without_port("a.example.com:8443"), "a.example.com");
        assert_eq!(host_without_port("a.example.com"), "a.example.com");
        assert_eq!(host_without_port("[::1]:8443"), "::1");
        assert_eq!(host_without_port("127.0.0.1:80"), "127.0.0.1");
    }

    fn route(host: HostMatch, prefix: &str) -> Route {
        Route {
            name: prefix.into(),
            host,
            path_prefix: prefix.into(),
            upstream: Some(0),
            auth: crate::config::AuthMode::None,
            methods: vec![],
            on_unauthenticated: crate::config::OnUnauthenticated::Auto,
            strip_prefix: false,
            websocket: false,
            issuers: Vec::new(),
            require: Default::default(),
        }
    }

    fn lenient(p: &str) -> Option<String> {
        lenient_path(p).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn the_lenient_view_decodes_splits_drops_params_and_folds_case() {
        assert_eq!(lenient("/plain/path"), None, "nothing to read differently");
        assert_eq!(lenient("/public/..%2Fadmin").as_deref(), Some("/admin"));
        assert_eq!(lenient("/public/..%5Cadmin").as_deref(), Some("/admin"));
        assert_eq!(lenient("/public\\..\\admin").as_deref(), Some("/admin"));
        assert_eq!(lenient("/public/..;/admin").as_deref(), Some("/admin"));
        assert_eq!(
            lenient("/admin;jsessionid=x/y").as_deref(),
            Some("/admin/y")
        );
        assert_eq!(lenient("/ADMIN/X").as_deref(), Some("/admin/x"));
        assert_eq!(
            lenient("/public/%252e%252e/admin").as_deref(),
            Some("/admin")
        );
        assert_eq!(lenient("/a%2F").as_deref(), Some("/a/"));
        assert_eq!(lenient("/a%2Fb%2F..").as_deref(), Some("/a/"));
    }

    #[test]
    fn a_path_a_lenient_backend_reads_as_another_route_is_ambiguous() {
        let routes = vec![
            route(HostMatch::Exact("admin.example.com".into()), "/"),
            route(HostMatch::Any, "/admin"),
            route(HostMatch::Any, "/files"),
            route(HostMatch::Any, "/"),
        ];
        let check = |host: &str, path: &str| {
            let path = normalize_path(path).unwrap();
            let matched = lookup(&routes, host, &path).map(|(i, _)| i);
            is_ambiguous(&routes, host, &path, matched)
        };
        for p in [
            "/ADMIN",
            "/Admin/x",
            "/x/..%2Fadmin",
            "/x/..%2fadmin/y",
            "/x\\..\\admin",
            "/admin;a=b/x",
            "/x/..;/admin",
            "/admin%2Fsecret",
            "/%2561dmin",
            "/admin/%2E%2E%2Fx",
        ] {
            assert!(check("h", p), "{p} should be ambiguous");
        }
        for p in [
            "/admin/x",
            "/Administration",
            "/files/a%2Fb",
            "/files/A%2F..%2Fb",
            "/x/y%2Fz",
            "/x;y",
            "/Static/App.css",
        ] {
            assert!(!check("h", p), "{p} should not be ambiguous");
        }
        assert!(check("admin.example.com.", "/"), "trailing dot host");
        // A mixed-case prefix, asked for in lower case (no upper case in
        // the path at all): found with the `path_route` fuzz target's oracle.
        let routes = vec![route(HostMatch::Any, "/Api"), route(HostMatch::Any, "/")];
        let path = "/api/x";
        let matched = lookup(&routes, "h", path).map(|(i, _)| i);
        assert_eq!(matched, Some(1));
        assert!(is_ambiguous(&routes, "h", path, matched));
        assert!(!is_ambiguous(&routes, "h", "/Api/x", Some(0)));
        assert!(!check("admin.example.com", "/x"));
        assert!(!check("other.example.com.", "/x"));
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        assert_eq!(strip_prefix("/api", "/api/x"), "/x");
        assert_eq!(strip_prefix("/api", "/api"), "/");
        assert_eq!(strip_prefix("/api/", "/api/x"), "/x");
        assert_eq!(strip_prefix("/", "/x"), "/x");
    }
}
