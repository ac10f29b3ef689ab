//! Proxying behaviour: forwarding headers, routing, normalisation, bodies,
//! WebSockets, failures and their status codes.

use crate::support::client::{raw, req};
use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use std::time::Duration;

#[tokio::test]
async fn proxies_a_request_and_sets_forwarding_headers() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    let r = gw
        .plain()
        .get_with("/hello?x=1", &[("host", "app.example.com:8080")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["backend"], "b1");
    let seen = b.last();
    assert_eq!(seen.path_and_query, "/hello?x=1");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "app.example.com:8080");
    assert_eq!(seen.headers["host"], "app.example.com:8080");
    let rid = r
        .header("x-request-id")
        .expect("request id on the response");
    assert_eq!(seen.headers["x-request-id"], rid);
    gw.stop().await;
}

#[tokio::test]
async fn client_forwarding_headers_and_request_id_are_replaced_when_untrusted() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    let r = gw
        .plain()
        .get_with(
            "/",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("x-request-id", "spoofed-id"),
                ("forwarded", "for=6.6.6.6"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = b.last();
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert!(seen.headers.get("forwarded").is_none());
    assert_ne!(seen.headers["x-request-id"], "spoofed-id");
    assert_ne!(r.header("x-request-id"), Some("spoofed-id"));
    gw.stop().await;
}

#[tokio::test]
async fn trusted_proxy_chain_and_request_id_are_kept() {
    let b = Backend::start("b1").await;
    let cfg = simple_proxy_config(&[&b]).replace(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
    );
    let gw = Gw::start(&cfg).await;
    let r = gw
        .plain()
        .get_with(
            "/",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-request-id", "edge-123"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    assert_eq!(r.header("x-request-id"), Some("edge-123"));
    let seen = b.last();
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-request-id"], "edge-123");
    gw.stop().await;
}

/// SPEC 16: the headers some frameworks read as the original URL, method,
/// host, scheme or client address.
const OTHER_FORWARDING: [&str; 17] = [
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Original-Host",
    "X-Original-Method",
    "X-Forwarded-Prefix",
    "X-Forwarded-Port",
    "X-Forwarded-Ssl",
    "X-Forwarded-Scheme",
    "X-Forwarded-Server",
    "X-Forwarded-Method",
    "X-Forwarded-Uri",
    "X-Host",
    "True-Client-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "CF-Connecting-IP",
    "Client-IP",
];

/// From an untrusted peer none of them reaches the backend, in either
/// spelling; from a trusted proxy they pass as sent.
#[tokio::test]
async fn other_forwarding_headers_pass_only_from_trusted_proxies() {
    let b = Backend::start("b1").await;
    let untrusted = Gw::start(&simple_proxy_config(&[&b])).await;
    let trusted = Gw::start(&simple_proxy_config(&[&b]).replace(
        "[server]\n",
        "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
    ))
    .await;
    let underscored: Vec<String> = OTHER_FORWARDING
        .iter()
        .map(|h| h.replace('-', "_"))
        .collect();
    let mut sent: Vec<(&str, &str)> = OTHER_FORWARDING.iter().map(|h| (*h, "/admin")).collect();
    sent.extend(underscored.iter().map(|h| (h.as_str(), "/admin")));
    sent.push(("X-Original-URL-Note", "kept"));

    let r = untrusted.plain().get_with("/", &sent).await;
    assert_eq!(r.status, 200);
    let seen = b.last();
    for (h, _) in &sent[..sent.len() - 1] {
        assert!(seen.headers.get(*h).is_none(), "{h} reached the backend");
    }
    assert_eq!(seen.headers["x-original-url-note"], "kept");

    let r = trusted.plain().get_with("/", &sent).await;
    assert_eq!(r.status, 200);
    let seen = b.last();
    for h in OTHER_FORWARDING {
        assert_eq!(seen.headers[h], "/admin", "{h} from a trusted proxy");
    }
    untrusted.stop().await;
    trusted.stop().await;
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_backend_on_an_open_route() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    let r = gw
        .plain()
        .get_with(
            "/",
            &[
                ("x-auth-user", "admin"),
                ("X_Auth_User", "admin"),
                ("x-auth-groups", "admin"),
                ("remote-user", "root"),
                ("x-forwarded-user", "root"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = b.last();
    for h in [
        "x-auth-user",
        "x_auth_user",
        "x-auth-groups",
        "remote-user",
        "x-forwarded-user",
    ] {
        assert!(seen.headers.get(h).is_none(), "{h} reached the backend");
    }
    gw.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    let r = gw
        .plain()
        .get_with(
            "/",
            &[
                ("connection", "x-private"),
                ("x-private", "1"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic eA=="),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = b.last();
    for h in ["x-private", "te", "proxy-authorization", "connection"] {
        assert!(seen.headers.get(h).is_none(), "{h} reached the backend");
    }
    gw.stop().await;
}

fn two_route_config(public: &Backend, admin: &Backend) -> String {
    format!(
        "{}[[upstreams]]\nname = \"public\"\nbackends = [\"{}\"]\n\n[[upstreams]]\nname = \"admin\"\nbackends = [\"{}\"]\n\n\
[[routes]]\nname = \"api-host\"\nhost = \"api.example.com\"\npath_prefix = \"/\"\nupstream = \"admin\"\nauth = \"none\"\nstrip_prefix = false\n\n\
[[routes]]\nname = \"stripped\"\npath_prefix = \"/svc\"\nupstream = \"admin\"\nauth = \"none\"\nstrip_prefix = true\n\n\
[[routes]]\nname = \"public\"\npath_prefix = \"/public\"\nupstream = \"public\"\nauth = \"none\"\n",
        base_config(),
        public.addr,
        admin.addr
    )
}

#[tokio::test]
async fn routes_match_host_and_path_prefix_first_match_wins() {
    let public = Backend::start("public").await;
    let admin = Backend::start("admin").await;
    let gw = Gw::start(&two_route_config(&public, &admin)).await;
    let c = gw.plain();
    assert_eq!(c.get("/public/x").await.json()["backend"], "public");
    assert_eq!(
        c.get_with("/public/x", &[("host", "API.example.com:443")])
            .await
            .json()["backend"],
        "admin"
    );
    // Per-segment prefix: /publicity is not under /public.
    assert_eq!(c.get("/publicity").await.status, 404);
    assert_eq!(c.get("/nothing").await.status, 404);
    // strip_prefix forwards the rest of the path.
    let r = c.get("/svc/items?a=b").await;
    assert_eq!(r.status, 200);
    assert_eq!(admin.last().path_and_query, "/items?a=b");
    gw.stop().await;
}

#[tokio::test]
async fn normalised_path_is_matched_and_forwarded() {
    let public = Backend::start("public").await;
    let admin = Backend::start("admin").await;
    let gw = Gw::start(&two_route_config(&public, &admin)).await;
    let c = gw.plain();
    // A dot-dot escape from /public is resolved before matching: /admin has
    // no route here, so 404, and nothing reaches a backend as /admin.
    assert_eq!(c.get("/public/../admin").await.status, 404);
    assert_eq!(c.get("/public/%2e%2e/admin").await.status, 404);
    assert_eq!(c.get("/public/./a//b/%7euser").await.status, 200);
    assert_eq!(public.last().path_and_query, "/public/a/b/~user");
    assert!(public
        .requests()
        .iter()
        .all(|s| !s.path_and_query.contains("..")));
    assert_eq!(c.get("/public/%zz").await.status, 400);
    gw.stop().await;
}

#[tokio::test]
async fn large_bodies_stream_both_ways_intact() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    let size = 20 * 1024 * 1024;
    let data = backend::pattern(size);
    let mut h = backend::Sha256Stream::default();
    h.update(&data);
    let want = format!("{size} {}", h.hex());
    let upload = http::Request::post("/upload")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(data)))
        .unwrap();
    let r = gw.plain().send(upload).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), want, "upload digest");
    let r = gw.plain().get(&format!("/download/{size}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), size);
    assert!(
        r.body.as_ref() == backend::pattern(size).as_slice(),
        "download content"
    );
    gw.stop().await;
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains(&format!(
        "sec-websocket-accept: {}",
        backend::websocket_accept(key.as_bytes()).to_ascii_lowercase()
    )));
    // A masked text frame "hello", echoed back unmasked.
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&mask);
    frame.extend(b"hello".iter().enumerate().map(|(i, c)| c ^ mask[i % 4]));
    for _ in 0..3 {
        s.write_all(&frame).await.unwrap();
        let mut echo = [0u8; 7];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&echo, b"\x81\x05hello");
    }
    drop(s);
    gw.stop().await;
}

#[tokio::test]
async fn dead_backend_gets_502_and_slow_backend_504() {
    let slow = Backend::start("slow").await;
    let cfg = format!(
        "{}[[upstreams]]\nname = \"dead\"\nbackends = [\"{}\"]\nretries = 0\n\n[[upstreams]]\nname = \"slow\"\nbackends = [\"{}\"]\nrequest_timeout = \"300ms\"\n\n\
[[routes]]\nname = \"dead\"\npath_prefix = \"/dead\"\nupstream = \"dead\"\nauth = \"none\"\n\n[[routes]]\nname = \"slow\"\npath_prefix = \"/\"\nupstream = \"slow\"\nauth = \"none\"\n",
        base_config(),
        dead_addr(),
        slow.addr
    );
    let gw = Gw::start(&cfg).await;
    let r = gw.plain().get("/dead").await;
    assert_eq!(r.status, 502);
    let body = r.json();
    assert_eq!(body["error"], "bad gateway");
    assert_eq!(body["request_id"], r.header("x-request-id").unwrap());
    assert!(
        !r.text().contains("127.0.0.1"),
        "error body must not name the backend"
    );
    let r = gw.plain().get("/slow/2000").await;
    assert_eq!(r.status, 504);
    // Browsers get a small HTML page instead of JSON.
    let r = gw
        .plain()
        .get_with("/dead", &[("accept", "text/html")])
        .await;
    assert_eq!(r.status, 502);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    gw.stop().await;
}

#[tokio::test]
async fn refused_connections_are_retried_on_another_backend() {
    let good = Backend::start("good").await;
    let cfg = format!(
        "{}[[upstreams]]\nname = \"app\"\nbackends = [\"{}\", \"{}\"]\nretries = 2\n\n[[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        base_config(),
        dead_addr(),
        good.addr
    );
    let gw = Gw::start(&cfg).await;
    for _ in 0..20 {
        let r = gw
            .plain()
            .send(req("POST", "/x", &[], "not idempotent, but never sent"))
            .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(good.count(), 20);
    gw.stop().await;
}

#[tokio::test]
async fn ejected_backends_are_still_tried_and_only_unhealthy_ones_leave_503() {
    let cfg = format!(
        "{}[[upstreams]]\nname = \"app\"\nbackends = [\"{}\"]\nretries = 0\n  [upstreams.health]\n  passive_failures = 2\n  eject_for = \"30s\"\n\n[[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        base_config(),
        dead_addr()
    );
    let gw = Gw::start(&cfg).await;
    assert_eq!(gw.plain().get("/").await.status, 502);
    assert_eq!(gw.plain().get("/").await.status, 502);
    // Two failures in a row: ejected. Passive ejection never empties an
    // upstream (SPEC 7, panic mode): still tried, still 502.
    assert_eq!(gw.plain().get("/").await.status, 502);
    gw.stop().await;

    // An active check's verdict does leave nothing to try: 503.
    let sick = Backend::start("sick").await;
    sick.set_health(500);
    let cfg = format!(
        "{}[[upstreams]]\nname = \"app\"\nbackends = [\"{}\"]\n  [upstreams.health]\n  path = \"/healthz\"\n  interval = \"1s\"\n  unhealthy_after = 1\n\n[[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        base_config(),
        sick.addr
    );
    let gw = Gw::start(&cfg).await;
    let c = gw.plain();
    let unavailable = poll(Duration::from_secs(5), || async {
        c.get("/").await.status == 503
    })
    .await;
    assert!(unavailable, "still {}", c.get("/").await.status);
    gw.stop().await;
}

#[tokio::test]
async fn both_content_length_and_transfer_encoding_is_rejected() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    let w = Duration::from_secs(2);
    let cl_te = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert!(raw(gw.addr(), cl_te, w).await.starts_with("HTTP/1.1 400"));
    let te_cl = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n";
    assert!(raw(gw.addr(), te_cl, w).await.starts_with("HTTP/1.1 400"));
    let dup_cl =
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde";
    assert!(raw(gw.addr(), dup_cl, w).await.starts_with("HTTP/1.1 400"));
    let obfuscated =
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n";
    assert!(raw(gw.addr(), obfuscated, w)
        .await
        .starts_with("HTTP/1.1 400"));
    let two_hosts = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
    assert!(raw(gw.addr(), two_hosts, w)
        .await
        .starts_with("HTTP/1.1 400"));
    assert_eq!(b.count(), 0, "no smuggling attempt reached the backend");
    gw.stop().await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let b = Backend::start("b1").await;
    let cfg =
        simple_proxy_config(&[&b]).replace("[server]\n", "[server]\nmax_header_bytes = \"8KiB\"\n");
    let gw = Gw::start(&cfg).await;
    let big = "a".repeat(20_000);
    let r = raw(
        gw.addr(),
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
        Duration::from_secs(2),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(80)]);
    assert_eq!(b.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn slowloris_is_cut_off_by_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let b = Backend::start("b1").await;
    let cfg = simple_proxy_config(&[&b])
        .replace("[server]\n", "[server]\nheader_read_timeout = \"500ms\"\n");
    let gw = Gw::start(&cfg).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let start = std::time::Instant::now();
    // Keep trickling a byte at a time; the server must still close.
    let closed = trickle_until_closed(&mut s, b"X", Duration::from_secs(5)).await;
    assert!(closed.is_some(), "connection left open");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(b.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let b = Backend::start("b1").await;
    let cfg =
        simple_proxy_config(&[&b]).replace("[server]\n", "[server]\nidle_timeout = \"300ms\"\n");
    let gw = Gw::start(&cfg).await;
    let (mut conn, _) = gw.plain().connect().await.unwrap();
    assert_eq!(
        conn.send(req("GET", "/", &[], "")).await.unwrap().status,
        200
    );
    // Closed by the gateway well within three idle timeouts.
    assert!(
        poll(Duration::from_millis(900), || async { conn.is_closed() }).await,
        "idle connection still open"
    );
    assert!(
        conn.send(req("GET", "/", &[], "")).await.is_err(),
        "idle connection still open"
    );
    gw.stop().await;
}

/// Long enough for a quiet keep-alive connection to be parked (hyper's
/// side dropped, the socket kept) before the next bytes arrive.
fn quiet_spell() -> Duration {
    gatehouse::server::PARK_AFTER * 5
}

/// Reads what the gateway sends on `s` into `out` until it has been quiet
/// for a [`quiet_spell`]; the connection must stay open meanwhile.
async fn read_until_quiet(s: &mut tokio::net::TcpStream, out: &mut Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    while let Ok(n) = tokio::time::timeout(quiet_spell(), s.read(&mut buf)).await {
        let n = n.expect("read");
        assert!(
            n > 0,
            "closed in a quiet spell: {}",
            String::from_utf8_lossy(out)
        );
        out.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_quiet_keep_alive_connection_serves_what_comes_next() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    let (mut conn, _) = gw.plain().connect().await.unwrap();
    for i in 0..3 {
        let r = conn.send(req("GET", &format!("/q/{i}"), &[], "")).await;
        assert_eq!(r.unwrap().status, 200, "request {i} on the same connection");
        assert!(
            !poll(quiet_spell(), || async { conn.is_closed() }).await,
            "closed in a quiet spell after request {i}"
        );
    }

    // Pipelined requests after a quiet spell, and a WebSocket upgrade.
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /p/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    read_until_quiet(&mut s, &mut out).await;
    s.write_all(
        b"GET /p/2 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /p/3 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("all three answered")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{out}");
    for p in ["/p/1", "/p/2", "/p/3"] {
        assert!(out.contains(p), "{p} in {out}");
    }

    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    read_until_quiet(&mut s, &mut seen).await;
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("HTTP/1.1 101") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("upgrade answered")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    drop((s, conn));
    gw.stop().await;
}

#[tokio::test]
async fn quiet_spells_inside_a_request_or_a_response_cut_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    // A request body that pauses half-way.
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello")
        .await
        .unwrap();
    // Nothing may come back while the body is incomplete.
    let mut out = Vec::new();
    read_until_quiet(&mut s, &mut out).await;
    s.write_all(b"world").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answered")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\r\n\r\n10 "), "the whole body arrived: {out}");

    // A backend that answers after a quiet spell.
    let (mut conn, _) = gw.plain().connect().await.unwrap();
    let slow = format!("/slow/{}", quiet_spell().as_millis());
    let r = conn.send(req("GET", &slow, &[], "")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"slow done");
    assert_eq!(
        conn.send(req("GET", "/", &[], "")).await.unwrap().status,
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn gateway_endpoint_prefix_is_reserved() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    assert_eq!(gw.plain().get("/.gatehouse/nope").await.status, 404);
    assert_eq!(b.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn required_auth_without_credentials_is_401_or_login_redirect() {
    let b = Backend::start("b1").await;
    let cfg = simple_proxy_config(&[&b]).replace(
        "auth = \"none\"",
        "auth = \"required\"\nmethods = [\"jwt\"]",
    );
    let gw = Gw::start(&cfg).await;
    let r = gw.plain().get("/secret").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );
    let r = gw
        .plain()
        .get_with("/secret?a=1", &[("accept", "text/html")])
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/.gatehouse/login?rd=%2Fsecret%3Fa%3D1")
    );
    assert_eq!(b.count(), 0);
    gw.stop().await;
}
