//! Path normalisation and route matching (`src/route/mod.rs`).
//!
//! Checked, for any request target the HTTP parser lets through:
//! - the normalised path is normal (starts with `/`, no `//`, no dot
//!   segments, escapes upper-case and only of reserved bytes) and
//!   normalising it again changes nothing;
//! - the route matched is one whose host and per-segment prefix match;
//! - the security property: unless the gateway refuses the request as
//!   ambiguous, a backend reading the forwarded (normalised) path
//!   leniently, as modelled independently below, lands on the same route.
#![no_main]

use gatehouse::config::{AuthMode, HostMatch, OnUnauthenticated, Route};
use gatehouse::route;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn routes() -> &'static [Route] {
    static R: OnceLock<Vec<Route>> = OnceLock::new();
    R.get_or_init(|| {
        let r = |host: HostMatch, prefix: &str| Route {
            name: prefix.into(),
            host,
            path_prefix: prefix.into(),
            upstream: Some(0),
            auth: AuthMode::Required,
            methods: vec![],
            on_unauthenticated: OnUnauthenticated::Auto,
            strip_prefix: false,
            websocket: false,
            issuers: Vec::new(),
            require: Default::default(),
        };
        vec![
            r(HostMatch::Exact("admin.example.com".into()), "/"),
            r(HostMatch::Wildcard(".apps.example.com".into()), "/internal"),
            r(HostMatch::Any, "/public"),
            r(HostMatch::Any, "/admin"),
            r(HostMatch::Any, "/api/v1/"),
            r(HostMatch::Any, "/Api/Legacy"),
            r(HostMatch::Any, "/a.b"),
            r(HostMatch::Any, "/"),
        ]
    })
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// An independent model of a lenient backend: decode every escape (at most
/// three rounds), `\` is `/`, `;...` ends a segment, case does not matter,
/// then dot segments and empty segments go. Returns the segments.
fn backend_view(path: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut p = path.to_vec();
    for _ in 0..3 {
        let mut out = Vec::new();
        let mut i = 0;
        while i < p.len() {
            match (
                p[i],
                p.get(i + 1).and_then(|&b| hex(b)),
                p.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (b'%', Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                (c, _, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        if out == p {
            break;
        }
        p = out;
    }
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let mut last_dir = false;
    for raw in p.split(|&b| b == b'/' || b == b'\\') {
        let seg: Vec<u8> = raw
            .iter()
            .take_while(|&&b| b != b';')
            .map(u8::to_ascii_lowercase)
            .collect();
        last_dir = seg.is_empty() || seg == b"." || seg == b"..";
        if seg == b".." {
            segs.pop();
        } else if !seg.is_empty() && seg != b"." {
            segs.push(seg);
        }
    }
    (segs, last_dir || segs_is_root(&p))
}

fn segs_is_root(p: &[u8]) -> bool {
    p.iter().all(|&b| b == b'/' || b == b'\\')
}

/// The route such a backend's path falls under: host compared without a
/// trailing dot, prefixes per segment, all case-insensitively.
fn backend_route(host: &str, path: &[u8]) -> Option<usize> {
    let (segs, dir) = backend_view(path);
    let host = host
        .strip_suffix('.')
        .filter(|h| !h.is_empty())
        .unwrap_or(host)
        .to_ascii_lowercase();
    routes().iter().position(|r| {
        let host_ok = match &r.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => *h == host,
            HostMatch::Wildcard(sfx) => {
                host.ends_with(sfx.as_str()) && {
                    let label = &host[..host.len() - sfx.len()];
                    !label.is_empty() && !label.contains('.')
                }
            }
        };
        let prefix = r.path_prefix.to_ascii_lowercase();
        let psegs: Vec<&[u8]> = prefix
            .as_bytes()
            .split(|&b| b == b'/')
            .filter(|s| !s.is_empty())
            .collect();
        let path_ok = if prefix == "/" {
            true
        } else if prefix.ends_with('/') {
            // "/api/v1/" needs what comes after it, or the bare dir.
            segs.len() > psegs.len() && segs.iter().zip(&psegs).all(|(a, b)| a.as_slice() == *b)
                || segs.len() == psegs.len()
                    && dir
                    && segs.iter().zip(&psegs).all(|(a, b)| a.as_slice() == *b)
        } else {
            segs.len() >= psegs.len() && segs.iter().zip(&psegs).all(|(a, b)| a.as_slice() == *b)
        };
        host_ok && path_ok
    })
}

const HOSTS: [&str; 7] = [
    "localhost",
    "admin.example.com",
    "ADMIN.example.com.",
    "x.apps.example.com",
    "x.y.apps.example.com",
    "apps.example.com",
    "admin.example.com.",
];

fuzz_target!(|input: &[u8]| {
    let Some((&sel, target)) = input.split_first() else {
        return;
    };
    let host = HOSTS[sel as usize % HOSTS.len()];
    // Only what the HTTP layer accepts as a request target gets here.
    let Ok(pq) = http::uri::PathAndQuery::try_from(target) else {
        return;
    };
    let raw = pq.path();
    let Ok(norm) = route::normalize_path(raw) else {
        return;
    };
    let n = norm.as_ref();
    assert!(n.starts_with('/'), "{n:?}");
    assert!(!n.contains("//"), "{n:?}");
    for seg in n.split('/') {
        assert!(seg != "." && seg != "..", "dot segment left in {n:?}");
    }
    let b = n.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'%' {
            let (h, l) = (b[i + 1], b[i + 2]);
            assert!(h.is_ascii_hexdigit() && l.is_ascii_hexdigit(), "{n:?}");
            assert!(!h.is_ascii_lowercase() && !l.is_ascii_lowercase(), "{n:?}");
            let v = hex(h).unwrap() << 4 | hex(l).unwrap();
            assert!(
                !(v.is_ascii_alphanumeric() || b"-._~".contains(&v)),
                "unreserved byte left escaped in {n:?}"
            );
        }
    }
    assert_eq!(route::normalize_path(n).unwrap(), n, "not idempotent");

    let matched = route::lookup(routes(), host, n).map(|(i, r)| {
        assert!(route::prefix_matches(&r.path_prefix, n));
        i
    });
    if route::is_ambiguous(routes(), host, n, matched) {
        return; // refused with 400
    }
    assert_eq!(
        backend_route(host, n.as_bytes()),
        matched,
        "host {host:?} path {n:?} (from {raw:?}) reaches another route at a lenient backend"
    );
});
