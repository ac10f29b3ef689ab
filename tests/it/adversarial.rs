//! Adversarial HTTP over raw sockets: request smuggling, header tricks,
//! size limits, HTTP/2 floods, slow and aborted bodies, connection floods
//! and file-descriptor exhaustion. Each test checks the answer the client
//! got AND what reached the backend (a raw backend records the exact
//! bytes), and that the gateway serves normally afterwards.

use crate::support::client::{raw, req};
use crate::support::raw_backend::RawBackend;
use crate::support::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(3);

fn open_config(backend: &str, server_extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\n\
         [[upstreams]]\nname = \"app\"\nbackends = [\"{backend}\"]\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n"
    )
}

fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {:?}", &resp[..resp.len().min(120)]))
}

/// Each smuggling attempt gets 400 and nothing reaches the backend; the
/// `GET /smuggled` hidden in the bodies never becomes a request.
#[tokio::test]
async fn smuggling_variants_get_400_and_never_reach_the_backend() {
    let b = RawBackend::start().await;
    let gw = Gw::start(&open_config(&b.addr, "")).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "CL.TE",
            format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "TE.CL",
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len()),
        ),
        (
            "TE xchunked + CL",
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "TE xchunked alone",
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "TE with leading space + CL",
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "TE with a tab + CL",
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "space before the colon",
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "duplicate TE, last not chunked",
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "TE chunked twice",
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "TE in HTTP/1.0",
            format!("POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "conflicting CL",
            format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{smuggled}"),
        ),
        (
            "CL list with two values",
            format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 40\r\n\r\nabcd{smuggled}"),
        ),
        (
            "CL with a sign",
            format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd{smuggled}"),
        ),
        (
            "CL in hex",
            format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x4\r\n\r\nabcd{smuggled}"),
        ),
        (
            "chunk size overflow",
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nx\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "bare LF line ends, CL+TE",
            format!("POST / HTTP/1.1\nHost: x\nContent-Length: 4\nTransfer-Encoding: chunked\n\n0\r\n\r\n{smuggled}"),
        ),
        (
            "obs-fold continuation",
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n{smuggled}"),
        ),
        (
            "two Host headers",
            format!("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n{smuggled}"),
        ),
    ];
    for (name, bytes) in &cases {
        let resp = raw(gw.addr(), bytes.as_bytes(), WAIT).await;
        let status = status_of(&resp);
        assert!(
            status == 400 || status == 501,
            "{name}: got {status}, want 400: {resp:?}"
        );
        // Exactly one answer: the smuggled request was not served.
        assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{name}: {resp:?}");
    }
    assert!(
        b.requests().is_empty(),
        "reached the backend: {:?}",
        b.requests()
    );
    // A second pipelined request after a well-framed one is fine.
    let ok = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcdGET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let resp = raw(gw.addr(), ok.as_bytes(), WAIT).await;
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "{resp}");
    let seen = b.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, b"abcd");
    assert!(seen[1].head.starts_with("GET /next "));
    gw.stop().await;
}

/// Requests the gateway accepts with odd framing reach the backend framed
/// one way only: one Content-Length (or chunked), never both, and never a
/// header a backend could fold into a framing header (`Transfer_Encoding`).
#[tokio::test]
async fn accepted_odd_framing_reaches_the_backend_framed_one_way() {
    let b = RawBackend::start().await;
    let gw = Gw::start(&open_config(&b.addr, "")).await;
    let cases: Vec<(&str, String, &[u8])> = vec![
        (
            "identical duplicate CL",
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".into(),
            b"hello",
        ),
        (
            "TE chunked with extensions and trailers",
            "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Auth-User: mallory\r\n\r\n".into(),
            b"hello",
        ),
        (
            "underscore lookalikes of framing headers",
            "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\nContent_Length: 0\r\nConnection: close\r\n\r\nhello".into(),
            b"hello",
        ),
    ];
    for (name, bytes, body) in &cases {
        let resp = raw(gw.addr(), bytes.as_bytes(), WAIT).await;
        assert_eq!(status_of(&resp), 200, "{name}: {resp}");
        let last = b
            .requests()
            .pop()
            .unwrap_or_else(|| panic!("{name}: nothing forwarded"));
        assert_eq!(&last.body, body, "{name}");
        let cl = last.header_values("content-length");
        let te = last.header_values("transfer-encoding");
        assert!(
            (cl.len() == 1 && te.is_empty()) || (cl.is_empty() && te == ["chunked"]),
            "{name}: framed both or neither way: {}",
            last.head
        );
        for n in last.header_names() {
            let folded = n.to_ascii_lowercase().replace('_', "-");
            assert!(
                !(n.contains('_')
                    && ["transfer-encoding", "content-length", "host", "connection"]
                        .contains(&folded.as_str())),
                "{name}: lookalike {n} forwarded"
            );
        }
        assert!(
            !last.head.to_ascii_lowercase().contains("mallory"),
            "{name}: trailer became a header"
        );
    }
    assert_eq!(b.requests().len(), cases.len());
    gw.stop().await;
}

fn backend_ejected(gw: &Gw) -> bool {
    let snap = gw.running().gateway.snapshot();
    let set = snap.upstreams[0].backends();
    set.backends.iter().any(|b| b.is_ejected())
}

/// A body trickled a byte at a time is cut off at `request_body_timeout`
/// with 408, the connection closes, and the backend is not blamed (no
/// passive ejection however many times it happens).
#[tokio::test]
async fn slow_bodies_get_408_at_the_body_deadline_and_do_not_eject_the_backend() {
    let b = Backend::start("b1").await;
    let cfg = open_config(&b.addr, "request_body_timeout = \"700ms\"\n").replace(
        "\n\n[[routes]]",
        "\n[upstreams.health]\npassive_failures = 2\n\n[[routes]]",
    );
    let gw = Gw::start(&cfg).await;
    for round in 0..3 {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nsome")
            .await
            .unwrap();
        let start = Instant::now();
        let out = trickle_until_closed(&mut s, b"x", Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("round {round}: connection held past the deadline"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 408"), "round {round}: {text}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }
    assert!(!backend_ejected(&gw), "slow clients ejected the backend");
    assert_eq!(gw.plain().get("/after").await.status, 200);
    gw.stop().await;
}

/// Uploads the client abandons half way (connection closed) or sends
/// malformed (bad chunk) are the client's doing: 400 for it, never a
/// passive ejection of the backend that was receiving them.
#[tokio::test]
async fn aborted_and_malformed_uploads_do_not_eject_the_backend() {
    let b = Backend::start("b1").await;
    let cfg = open_config(&b.addr, "").replace(
        "\n\n[[routes]]",
        "\n[upstreams.health]\npassive_failures = 2\n\n[[routes]]",
    );
    let gw = Gw::start(&cfg).await;
    for i in 0..3 {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nonly this")
            .await
            .unwrap();
        // Once the gateway has started forwarding (the backend has this
        // upload's head), walk away.
        let uploads = || {
            b.requests()
                .iter()
                .filter(|r| {
                    r.headers
                        .get("content-length")
                        .is_some_and(|v| v == "100000")
                })
                .count()
        };
        assert!(
            poll(Duration::from_secs(2), || async { uploads() > i }).await,
            "upload {i} was not forwarded"
        );
        drop(s);
        let bad = raw(
            gw.addr(),
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nzz\r\n",
            WAIT,
        )
        .await;
        assert_eq!(status_of(&bad), 400, "{bad}");
    }
    assert!(
        poll(Duration::from_secs(2), || async { b.count() >= 3 }).await,
        "the uploads were forwarded"
    );
    assert!(!backend_ejected(&gw), "client faults ejected the backend");
    assert_eq!(gw.plain().get("/after").await.status, 200);
    gw.stop().await;
}

/// Login and token bodies above 64 KiB get 413, whether announced by
/// Content-Length or streamed chunked; a slow one gets 408.
#[tokio::test]
async fn oversized_login_and_token_bodies_get_413() {
    let b = Backend::start("b1").await;
    let store = crate::support::sessions::Store::Memory;
    let gw = crate::support::sessions::session_gateway(&store, &b, "", "").await;
    let big = "a".repeat(70 * 1024);
    for path in ["/.gatehouse/login", "/.gatehouse/token"] {
        let r = raw(
            gw.addr(),
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\nusername={big}", big.len() + 9).as_bytes(),
            WAIT,
        )
        .await;
        assert_eq!(
            status_of(&r),
            413,
            "{path} by length: {}",
            &r[..r.len().min(200)]
        );
        let mut chunked = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n");
        for piece in big.as_bytes().chunks(8192) {
            chunked.push_str(&format!(
                "{:x}\r\n{}\r\n",
                piece.len(),
                std::str::from_utf8(piece).unwrap()
            ));
        }
        chunked.push_str("0\r\n\r\n");
        let r = raw(gw.addr(), chunked.as_bytes(), WAIT).await;
        assert_eq!(
            status_of(&r),
            413,
            "{path} chunked: {}",
            &r[..r.len().min(200)]
        );
        // Just under the limit is read (and refused for its content).
        let fine = "a".repeat(60 * 1024);
        let r = gw
            .plain()
            .send(req(
                "POST",
                path,
                &[("content-type", "application/x-www-form-urlencoded")],
                &format!("username={fine}&password=x"),
            ))
            .await;
        assert!(
            r.status == 401 || r.status == 400,
            "{path} under the limit: {}",
            r.status
        );
    }
    assert_eq!(b.count(), 0);
    gw.stop().await;
}

/// Headers a client cannot smuggle in: obs-fold continuations, bare CR,
/// NUL; identity values with CR/LF never become headers; too many or too
/// large headers get 431; very long URIs get 414 or 431, never a 5xx.
#[tokio::test]
async fn header_injection_and_size_limits() {
    let b = RawBackend::start().await;
    let gw = Gw::start(&open_config(&b.addr, "max_header_bytes = \"16KiB\"\n")).await;
    for (name, bytes) in [
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n X-Auth-User: admin\r\n\r\n".to_string(),
        ),
        (
            "bare CR",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\rX-Auth-User: admin\r\n\r\n".to_string(),
        ),
        (
            "NUL in value",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".to_string(),
        ),
        (
            "NUL in name",
            "GET / HTTP/1.1\r\nHost: x\r\nX\0A: a\r\n\r\n".to_string(),
        ),
        (
            "space in name",
            "GET / HTTP/1.1\r\nHost: x\r\nX A: a\r\n\r\n".to_string(),
        ),
        (
            "CR in request line",
            "GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ),
        (
            "invalid UTF-8 Host",
            "GET / HTTP/1.1\r\nHost: a\u{e9}\r\n\r\n".to_string(),
        ),
    ] {
        let resp = raw(gw.addr(), bytes.as_bytes(), WAIT).await;
        assert_eq!(status_of(&resp), 400, "{name}: {resp}");
    }
    assert!(b.requests().is_empty(), "{:?}", b.requests());

    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw(
        gw.addr(),
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), 431, "101 headers");
    let one_big = "v".repeat(20 * 1024);
    let resp = raw(
        gw.addr(),
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {one_big}\r\n\r\n").as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), 431, "one large header");
    let cookies: String = (0..2000).map(|i| format!("c{i}=vvvvvvvvvv; ")).collect();
    let resp = raw(
        gw.addr(),
        format!("GET / HTTP/1.1\r\nHost: x\r\nCookie: {cookies}\r\n\r\n").as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), 431, "a cookie header over the limit");

    for len in [17 * 1024, 64 * 1024, 70 * 1024, 1024 * 1024] {
        let path = format!("/{}", "p".repeat(len));
        let resp = raw(
            gw.addr(),
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            WAIT,
        )
        .await;
        let status = status_of(&resp);
        assert!(
            status == 414 || status == 431,
            "URI of {len} bytes: {status}"
        );
        let query = format!("/q?{}", "a=b&".repeat(len / 4));
        let resp = raw(
            gw.addr(),
            format!("GET {query} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            WAIT,
        )
        .await;
        let status = status_of(&resp);
        assert!(
            status == 414 || status == 431,
            "query of {len} bytes: {status}"
        );
    }
    assert!(b.requests().is_empty());
    // Under the limit, long URIs and headers are forwarded whole.
    let path = format!("/{}", "p".repeat(12 * 1024));
    let resp = raw(
        gw.addr(),
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nX-Bytes: caf\u{e9}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{}", &resp[..resp.len().min(200)]);
    let seen = b.requests();
    assert!(seen[0].head.starts_with(&format!("GET {path} ")));
    // Non-ASCII (obs-text) values travel as they are.
    assert_eq!(
        seen[0].header_values("x-bytes"),
        vec!["caf\u{e9}".to_string()]
    );
    gw.stop().await;
}

/// Minimal HTTP/2 framing for floods no well-behaved client library sends
/// (RFC 9113 section 4.1; HPACK RFC 7541 literals, no Huffman).
mod h2raw {
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    }

    fn int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut v: usize) {
        let max = (1usize << prefix_bits) - 1;
        if v < max {
            out.push(first | v as u8);
            return;
        }
        out.push(first | max as u8);
        v -= max;
        while v >= 128 {
            out.push((v % 128) as u8 | 0x80);
            v /= 128;
        }
        out.push(v as u8);
    }

    /// A literal header field without indexing, new name.
    pub fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
        out.push(0);
        int(out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        int(out, 0, 7, value.len());
        out.extend_from_slice(value);
    }

    /// `GET <path>` for `localhost`, plain http.
    pub fn request_block(path: &str) -> Vec<u8> {
        let mut b = vec![0x82, 0x86]; // :method GET, :scheme http
        b.push(0x04); // :path, literal without indexing, indexed name 4
        int(&mut b, 0, 7, path.len());
        b.extend_from_slice(path.as_bytes());
        b.push(0x01); // :authority, indexed name 1
        int(&mut b, 0, 7, 9);
        b.extend_from_slice(b"localhost");
        b
    }

    /// Connection start: preface, empty SETTINGS, and an ACK for the
    /// server's SETTINGS.
    pub fn start() -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        frame(&mut out, SETTINGS, 0x1, 0, &[]);
        out
    }

    /// Frame types the server sent, read until it closes or `within`.
    pub async fn read_frame_types(
        s: &mut tokio::net::TcpStream,
        within: std::time::Duration,
    ) -> (Vec<u8>, bool) {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(within, async {
            let mut chunk = vec![0u8; 65536];
            loop {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .is_ok();
        let mut kinds = Vec::new();
        let mut at = 0;
        while buf.len() >= at + 9 {
            let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
            kinds.push(buf[at + 3]);
            at += 9 + len;
        }
        (kinds, closed)
    }
}

/// Resident memory of this process (gateway included), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// After a flood, the gateway still answers a plain request on a new
/// connection, over HTTP/1.1 and HTTP/2.
async fn still_serves(gw: &Gw) {
    assert_eq!(gw.plain().get("/after").await.status, 200);
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake after the flood");
    tokio::spawn(conn);
    let r = send
        .send_request(
            http::Request::get("http://localhost/after-h2")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .expect("h2 request after the flood");
    assert_eq!(r.status(), 200);
}

/// CVE-2023-44487: streams opened and reset at once, thousands per
/// connection. The gateway stops the connection (GOAWAY), does not pass
/// the flood on to the backend, and keeps serving.
#[tokio::test]
async fn http2_rapid_reset_flood_is_stopped_and_the_gateway_keeps_serving() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(&h2raw::start()).await.unwrap();
    let block = h2raw::request_block("/flood");
    let mut sent = 0u32;
    let start = Instant::now();
    'flood: for batch in 0..100u32 {
        let mut out = Vec::new();
        for i in 0..200u32 {
            let id = 1 + 2 * (batch * 200 + i);
            h2raw::frame(
                &mut out,
                h2raw::HEADERS,
                h2raw::END_HEADERS | h2raw::END_STREAM,
                id,
                &block,
            );
            h2raw::frame(&mut out, h2raw::RST_STREAM, 0, id, &8u32.to_be_bytes());
        }
        if s.write_all(&out).await.is_err() {
            break 'flood;
        }
        sent += 200;
        if start.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let (kinds, closed) = h2raw::read_frame_types(&mut s, Duration::from_secs(10)).await;
    eprintln!(
        "rapid reset: {sent} streams sent, goaway={}, closed={closed}, {} reached the backend",
        kinds.contains(&h2raw::GOAWAY),
        b.count()
    );
    assert!(
        kinds.contains(&h2raw::GOAWAY) || closed,
        "the flood connection was neither told off nor closed (sent {sent} streams)"
    );
    // Streams reset before they were served need not reach the backend;
    // whatever did was bounded by the per-connection limits.
    assert!(
        b.count() < 20_000,
        "{} of {sent} flood requests reached the backend",
        b.count()
    );
    still_serves(&gw).await;
    gw.stop().await;
}

/// CVE-2024-27316 style: one HEADERS frame without END_HEADERS followed by
/// CONTINUATION frames without end. The gateway cuts the connection off
/// once the header list passes its limit, memory stays flat, and it keeps
/// serving.
#[tokio::test]
async fn http2_continuation_flood_is_cut_off_with_bounded_memory() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    // Warm up, so the first measurement is not before the runtime grew.
    still_serves(&gw).await;
    let warm = b.count();
    let before = rss_kib();
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let mut out = h2raw::start();
    h2raw::frame(
        &mut out,
        h2raw::HEADERS,
        h2raw::END_STREAM,
        1,
        &h2raw::request_block("/cont"),
    );
    s.write_all(&out).await.unwrap();
    let value = vec![b'v'; 4000];
    let mut block = Vec::new();
    h2raw::literal(&mut block, "x-flood", &value);
    let mut frames = Vec::new();
    for _ in 0..64 {
        h2raw::frame(&mut frames, h2raw::CONTINUATION, 0, 1, &block);
    }
    // Up to 256 MiB offered; a server buffering it all would show.
    let mut written = 0usize;
    let start = Instant::now();
    while written < 256 * 1024 * 1024 && start.elapsed() < Duration::from_secs(15) {
        match tokio::time::timeout(Duration::from_secs(2), s.write_all(&frames)).await {
            Ok(Ok(())) => written += frames.len(),
            _ => break,
        }
    }
    let (_, closed) = h2raw::read_frame_types(&mut s, Duration::from_secs(5)).await;
    assert!(
        closed || written < 256 * 1024 * 1024,
        "the gateway read {written} bytes of CONTINUATION without stopping"
    );
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "memory grew by {grown} KiB during the flood"
    );
    eprintln!("continuation flood: {written} bytes written, closed={closed}, rss +{grown} KiB");
    assert_eq!(
        b.count(),
        warm,
        "the flooded request never reached the backend"
    );
    still_serves(&gw).await;
    gw.stop().await;
}

/// Opens up to `n` connections that never send a byte, `batch` at a
/// time, each connect bounded (past the accept backlog the kernel makes
/// connects wait). Returns those that connected.
async fn idle_connections(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let batch = left.min(500);
        let tries: Vec<_> = (0..batch)
            .map(|_| {
                tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_millis(1500), TcpStream::connect(addr))
                        .await
                        .ok()
                        .and_then(Result::ok)
                })
            })
            .collect();
        for t in tries {
            if let Ok(Some(s)) = t.await {
                held.push(s);
            }
        }
        left -= batch;
    }
    held
}

/// `max_connections` holds: idle connections beyond it wait in the
/// kernel's backlog, the header deadline sheds the idle ones, and the
/// accept loop goes on serving; once the idle clients go, at once.
#[tokio::test]
async fn the_connection_limit_holds_and_the_accept_loop_serves_again() {
    let b = Backend::start("b1").await;
    let cfg = simple_proxy_config(&[&b]).replace(
        "[server]\n",
        "[server]\nmax_connections = 32\nheader_read_timeout = \"1s\"\n",
    );
    let gw = Gw::start(&cfg).await;
    let metrics = gw.running().gateway.metrics.clone();
    let idle = idle_connections(gw.addr(), 300).await;
    // Watched for 1.5 s: going over the limit ends the watch at once.
    let mut peak = 0;
    let over = poll(Duration::from_millis(1500), || {
        peak = peak.max(
            metrics
                .connections_open
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let over = peak > 32;
        async move { over }
    })
    .await;
    assert!(
        !over && peak <= 32,
        "{peak} connections open with max_connections = 32"
    );
    assert!(
        peak >= 30,
        "the limit was not reached ({peak}): the test proved nothing"
    );
    // While idle clients still hold their sockets, a real request gets
    // through as the header deadline sheds them.
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(30), gw.plain().get("/while-idle"))
        .await
        .expect("served while idle connections were held");
    assert_eq!(r.status, 200);
    eprintln!(
        "connection limit: {} idle held, peak {peak} open, a request served after {:?}",
        idle.len(),
        started.elapsed()
    );
    drop(idle);
    let r = tokio::time::timeout(Duration::from_secs(5), gw.plain().get("/after"))
        .await
        .expect("served at once after the idle clients left");
    assert_eq!(r.status, 200);
    gw.stop().await;
}

/// The real binary holding 10,000 idle connections at once (fewer if this
/// process may not open that many files): it keeps serving meanwhile,
/// notices when they go, and serves afterwards; SIGTERM still exits 0.
#[tokio::test]
async fn ten_thousand_idle_connections_against_the_binary() {
    let want = 10_000usize;
    let soft = crate::support::process::raise_nofile(want as u64 + 512) as usize;
    // The binary gets the same limit: 512 descriptors to spare for it.
    let n = want.min(soft.saturating_sub(512));
    if n < want {
        eprintln!("NOTE: only {n} idle connections: this process may open {soft} files");
    }
    let b = Backend::start("b1").await;
    let cfg = simple_proxy_config(&[&b])
        .replace("[server]\n", "[server]\nheader_read_timeout = \"60s\"\n");
    let mut p = crate::support::process::GwProcess::spawn(&cfg, Some(soft as u64)).await;
    let start = Instant::now();
    let idle = idle_connections(p.listen, n).await;
    let connected = start.elapsed();
    // What the gateway reports once it has caught up (asserted below).
    let last = std::cell::Cell::new(0.0);
    poll(Duration::from_secs(5), || async {
        last.set(p.metric("gatehouse_connections_open").await.unwrap_or(0.0));
        last.get() >= idle.len() as f64
    })
    .await;
    let open = last.get();
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), Client::plain(p.listen).get("/x"))
        .await
        .expect("served while the idle connections are held");
    assert_eq!(r.status, 200);
    eprintln!(
        "10k idle: {} connected in {connected:?}, gateway reports {open} open, a request took {:?}",
        idle.len(),
        t.elapsed()
    );
    assert!(
        idle.len() >= n * 95 / 100,
        "only {} of {n} connected",
        idle.len()
    );
    // Each connection the client holds is open at the gateway. With the
    // kernel's default accept backlog of 1024 a burst overflowed it: the
    // kernel dropped the handshake half-way, so clients either retried
    // after a second or held a socket the gateway never saw (~2% here).
    assert!(
        open >= idle.len() as f64,
        "gateway reports {open} open of {} connected",
        idle.len()
    );
    drop(idle);
    let drained = poll(Duration::from_secs(10), || async {
        p.metric("gatehouse_connections_open").await.unwrap_or(1e9) < 10.0
    })
    .await;
    assert!(drained, "closed idle connections were not noticed");
    assert_eq!(Client::plain(p.listen).get("/after").await.status, 200);
    assert!(p.is_running());
    p.signal("TERM");
    let status = p
        .wait(Duration::from_secs(15))
        .await
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// Found here: a client that connects and never sends a byte (or half an
/// HTTP/2 preface, or a preface and nothing more) was held until the idle
/// timeout: the HTTP/1-or-2 sniffing before hyper's header deadline had
/// none, nor has HTTP/2. The first request must now arrive within
/// `header_read_timeout`.
#[tokio::test]
async fn a_connection_that_never_speaks_is_closed_at_the_header_deadline() {
    let b = Backend::start("b1").await;
    let cfg = simple_proxy_config(&[&b]).replace(
        "[server]\n",
        "[server]\nheader_read_timeout = \"500ms\"\nidle_timeout = \"60s\"\n",
    );
    let gw = Gw::start(&cfg).await;
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a silent connection was kept open");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // Half an HTTP/2 preface is no better.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a half preface kept the connection open");
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(&h2raw::start()).await.unwrap();
    let (_, closed) = h2raw::read_frame_types(&mut s, Duration::from_secs(5)).await;
    assert!(
        closed,
        "an HTTP/2 connection without a request was kept open"
    );
    assert_eq!(gw.plain().get("/fine").await.status, 200);
    gw.stop().await;
}

/// Out of file descriptors (RLIMIT_NOFILE of 64 for the binary): accept
/// fails with EMFILE, the loop backs off instead of spinning or dying,
/// and the gateway serves again once descriptors are free.
#[tokio::test]
async fn emfile_makes_the_accept_loop_back_off_and_recover() {
    let b = Backend::start("b1").await;
    let cfg = simple_proxy_config(&[&b])
        .replace("[server]\n", "[server]\nheader_read_timeout = \"1s\"\n");
    let mut p = crate::support::process::GwProcess::spawn(&cfg, Some(64)).await;
    assert_eq!(Client::plain(p.listen).get("/before").await.status, 200);
    let idle = idle_connections(p.listen, 120).await;
    assert!(
        poll(Duration::from_secs(5), || async {
            p.log().contains("accept failed")
        })
        .await,
        "no EMFILE seen: the test proved nothing\n{}",
        p.log()
    );
    // Held sockets are shed at the header deadline; the backlog drains.
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        Client::plain(p.listen).get("/during"),
    )
    .await
    .expect("served while out of descriptors");
    assert_eq!(r.status, 200);
    drop(idle);
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        Client::plain(p.listen).get("/after"),
    )
    .await
    .expect("served after descriptors came back");
    assert_eq!(r.status, 200);
    assert!(p.is_running(), "died of EMFILE");
    let failures = p.log().matches("accept failed").count();
    eprintln!("EMFILE: {failures} accept failures logged, then served again");
    // Backing off: about one failure per 50 ms at most, not a busy loop.
    assert!(failures < 2_000, "{failures} accept failures: spinning");
}

/// A backend cannot set the gateway's own cookies (session fixation by a
/// compromised or header-injectable app): its `Set-Cookie` for the
/// session cookie is dropped, its other cookies pass.
#[tokio::test]
async fn backends_cannot_set_the_gateways_session_cookie() {
    let b = Backend::start("b1").await;
    let store = crate::support::sessions::Store::Memory;
    let gw = crate::support::sessions::session_gateway(&store, &b, "", "").await;
    let r = gw.plain().get("/setcookie/gatehouse_session=planted").await;
    assert_eq!(r.status, 200);
    assert!(
        !r.headers
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().contains("planted")),
        "{:?}",
        r.headers
    );
    let r = gw.plain().get("/setcookie/app=1").await;
    assert!(r.header("set-cookie").unwrap().starts_with("app=1"));
    gw.stop().await;
}

/// A request head after the first on a keep-alive HTTP/1.1 connection
/// meets `header_read_timeout` too (the connection's loop keeps it, from
/// the head's first byte), whether it starts at once or after the
/// connection went quiet and was parked; a trickle keeps the idle
/// deadline away, so only the header deadline can cut it. A prompt second
/// request on the same kind of connection is served.
#[tokio::test]
async fn slow_heads_after_the_first_request_meet_the_header_deadline() {
    let b = Backend::start("b1").await;
    let cfg = simple_proxy_config(&[&b]).replace(
        "[server]\n",
        "[server]\nheader_read_timeout = \"500ms\"\nidle_timeout = \"60s\"\n",
    );
    let gw = Gw::start(&cfg).await;
    // A connection that was served one request, then stayed quiet.
    let served_then_quiet = |quiet: Duration| {
        let addr = gw.addr();
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"HEAD /first HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
            tokio::time::sleep(quiet).await;
            s
        }
    };
    for quiet in [Duration::ZERO, Duration::from_millis(400)] {
        let mut s = served_then_quiet(quiet).await;
        s.write_all(b"GET /second HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let start = Instant::now();
        let out = trickle_until_closed(&mut s, b"X-Slow: v\r\n", Duration::from_secs(5))
            .await
            .unwrap_or_else(|| {
                panic!("after {quiet:?} quiet: a slow second head held the connection")
            });
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "after {quiet:?} quiet: cut after {took:?}"
        );
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        // The same, prompt: served.
        let mut s = served_then_quiet(quiet).await;
        s.write_all(b"HEAD /second HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
    }
    // Three per round: the slow heads never reached the backend.
    assert_eq!(b.count(), 6);

    // Pipelined: half a second head read with the first request, whose
    // answer takes longer than the header deadline. The wait is the
    // gateway's, not the client's: the answer comes whole, and only then
    // does the second head's time start.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /slow/1200 HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 9];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"slow done");
    let start = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the unfinished second head held the connection"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    gw.stop().await;
}

/// Reads one response head (up to the blank line) from `s`.
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, async {
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
    })
    .await;
    assert!(read.is_ok(), "no response head in time: {head:?}");
    String::from_utf8_lossy(&head).into_owned()
}

/// SPEC 16: a backend's `101` is relayed only as the answer to a WebSocket
/// handshake, with the `Sec-WebSocket-Accept` the client's key calls for.
/// Otherwise the client gets 502 and no tunnel: what it sends next never
/// reaches the backend as raw bytes. A correct handshake still tunnels
/// (the control at the end, which also shows the negatives had time).
#[tokio::test]
async fn a_backend_switch_without_the_websocket_accept_gets_502_and_no_tunnel() {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let b = RawBackend::replying(|r| {
        let path = r.head.split(' ').nth(1).unwrap_or("");
        let accept = match path {
            "/ws-none" | "/plain" => None,
            "/ws-wrong" => Some(crate::support::backend::websocket_accept(b"another key")),
            "/ws-right" => Some(crate::support::backend::websocket_accept(
                r.header_values("sec-websocket-key")
                    .first()
                    .map_or("", |k| k.as_str())
                    .as_bytes(),
            )),
            _ => return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        };
        let mut out =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                .to_vec();
        if let Some(a) = accept {
            out.extend_from_slice(format!("Sec-WebSocket-Accept: {a}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    })
    .await;
    let gw = Gw::start(&open_config(&b.addr, "")).await;
    let handshake = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    for (name, request) in [
        ("no accept", handshake("/ws-none")),
        ("wrong accept", handshake("/ws-wrong")),
        (
            "101 to a plain request",
            "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        ),
    ] {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut s).await;
        assert_eq!(status_of(&head), 502, "{name}: {head}");
        // What the client meant for the tunnel.
        let _ = s.write_all(format!("RAW-{name}\r\n\r\n").as_bytes()).await;
    }
    // The control: a real handshake opens a tunnel and bytes flow.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(handshake("/ws-right").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 101, "{head}");
    s.write_all(b"RAW-control").await.unwrap();
    assert!(
        poll(WAIT, || async {
            b.raw_after_switch().contains("RAW-control")
        })
        .await,
        "the control's bytes never arrived: {:?}",
        b.raw_after_switch()
    );
    let after = b.raw_after_switch();
    assert!(
        !after.contains("RAW-no") && !after.contains("RAW-wrong") && !after.contains("RAW-101"),
        "a refused switch tunnelled: {after:?}"
    );
    assert_eq!(b.requests().len(), 4, "{:?}", b.requests());
    drop(s); // ends the tunnel, which a stop would wait for
    gw.stop().await;
}

/// SPEC 3 step 2 after an `Upgrade` that was not switched: the request
/// carrying it is answered normally (the backend says 200, or the route
/// refuses), and the next request on the connection with both
/// Content-Length and Transfer-Encoding still gets 400, its body never a
/// request of its own.
#[tokio::test]
async fn a_smuggling_head_after_an_unswitched_upgrade_still_gets_400() {
    let b = RawBackend::start().await;
    let cfg = open_config(&b.addr, "").replace(
        "[[routes]]\n",
        "[[routes]]\nname = \"closed\"\npath_prefix = \"/closed\"\nupstream = \"app\"\n\n[[routes]]\n",
    );
    let gw = Gw::start(&cfg).await;
    let smuggle = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for (name, first, first_status) in [
        (
            "Upgrade: foo, backend 200",
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n",
            200,
        ),
        (
            "WebSocket handshake, backend 200",
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            200,
        ),
        (
            "WebSocket handshake, route refuses",
            "GET /closed/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            401,
        ),
    ] {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(first.as_bytes()).await.unwrap();
        let head = read_head(&mut s).await;
        assert_eq!(status_of(&head), first_status, "{name}: {head}");
        // Its body, so the next response starts where it should.
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        s.write_all(smuggle.as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut rest)).await;
        let rest = String::from_utf8_lossy(&rest);
        assert_eq!(status_of(&rest), 400, "{name}: {rest}");
        assert_eq!(rest.matches("HTTP/1.1 ").count(), 1, "{name}: {rest}");
    }
    // Upgrade and both framing headers in one head.
    let resp = raw(
        gw.addr(),
        b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nConnection: upgrade\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    let seen = b.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|r| r.head.starts_with("GET ")), "{seen:?}");
    gw.stop().await;
}

/// SPEC 16: a backend's `Set-Cookie` for any of the gateway's cookies
/// (session, affinity, OIDC sign-in state), in any spelling a browser
/// reads as that name, never reaches the client; other cookies do.
#[tokio::test]
async fn backends_cannot_set_the_gateways_cookies_in_any_spelling() {
    let planted = [
        "gatehouse_session=planted-1; Path=/",
        " gatehouse_session =planted-2; Path=/",
        "\tgatehouse_session\t=planted-3",
        "=gatehouse_session=planted-4; Path=/",
        "= gatehouse_session =planted-5",
        "gatehouse_oidc=planted-6; Path=/; HttpOnly",
        "=gatehouse_oidc=planted-7",
        "gh_aff=planted-8; Path=/",
        " =gh_aff=planted-9",
    ];
    let kept = [
        "app=1; Path=/",
        "gatehouse_session_x=2",
        "a=gatehouse_session=3",
    ];
    let mut reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n".to_vec();
    for c in planted.iter().chain(&kept) {
        reply.extend_from_slice(format!("Set-Cookie: {c}\r\n").as_bytes());
    }
    reply.extend_from_slice(b"\r\nok");
    let b = RawBackend::replying(move |_| reply.clone()).await;
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nsecret = \"adversarial-tests-secret-0123456789abcdef\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\n\
         [sessions]\nstore = \"memory\"\ncookie_secure = false\n\n\
         [[upstreams]]\nname = \"app\"\nbackends = [\"{}\"]\n[upstreams.sticky]\nmode = \"cookie\"\ncookie_name = \"gh_aff\"\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        b.addr
    );
    let gw = Gw::start(&cfg).await;
    for path in ["/", "/again"] {
        let r = gw.plain().get(path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let got: Vec<&str> = r
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(
            !got.iter().any(|c| c.contains("planted")),
            "a planted cookie reached the client: {got:?}"
        );
        for k in kept {
            assert!(got.contains(&k), "{k} was dropped: {got:?}");
        }
    }
    gw.stop().await;
}

/// The admin listener has the main listener's bounds: a head sent slowly
/// is cut at `header_read_timeout`, a keep-alive connection left quiet is
/// closed at `idle_timeout`, a client that never speaks is dropped at the
/// header deadline, and a head over `max_header_bytes` gets 431.
#[tokio::test]
async fn the_admin_listener_bounds_slow_idle_and_oversized_clients() {
    let b = Backend::start("b1").await;
    // Slow heads: a short header deadline, a long idle timeout (the
    // trickle would keep an idle deadline away anyway).
    let gw = Gw::start(&simple_proxy_config(&[&b]).replace(
        "[server]\n",
        "[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"60s\"\nmax_header_bytes = \"16KiB\"\n",
    ))
    .await;
    let mut s = TcpStream::connect(gw.admin()).await.unwrap();
    let start = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("X-{i}: v\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), rd.read_to_end(&mut out)).await;
    trickle.abort();
    assert!(closed.is_ok(), "a slow head held the admin connection");
    let took = start.elapsed();
    eprintln!("admin: slow head (a header line every 200 ms) cut after {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "slow head cut after {took:?}"
    );
    assert!(!String::from_utf8_lossy(&out).contains(" 200 "), "{out:?}");

    // A connection that never speaks.
    let mut s = TcpStream::connect(gw.admin()).await.unwrap();
    let start = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "a silent admin connection was kept");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // Oversized heads: 431, whether one large header or many.
    let big = "v".repeat(20 * 1024);
    let resp = raw(
        gw.admin(),
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), 431, "one large header");
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw(
        gw.admin(),
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), 431, "101 headers");
    // However large, with a clean close (as on the main listener).
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "v".repeat(250 << 10)
    );
    let (resp, end) = send_head_then_read(gw.admin(), head.as_bytes()).await;
    assert_refused("admin, 250 KiB", &resp, end);
    // Still serving.
    let resp = raw(
        gw.admin(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    gw.stop().await;

    // Idle keep-alive: the idle timeout, well before the header deadline.
    let gw = Gw::start(&simple_proxy_config(&[&b]).replace(
        "[server]\n",
        "[server]\nheader_read_timeout = \"10s\"\nidle_timeout = \"1s\"\n",
    ))
    .await;
    let mut s = TcpStream::connect(gw.admin()).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 200, "{head}");
    let start = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "an idle keep-alive admin connection was kept"
    );
    let took = start.elapsed();
    eprintln!("admin: idle keep-alive connection closed after {took:?}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "idle admin connection closed after {took:?}"
    );
    gw.stop().await;
}

/// HTTP/2 streams after the first have a header deadline too: a header
/// block left unfinished (HEADERS without END_HEADERS, or a HEADERS frame
/// whose payload trickles in) for `header_read_timeout` closes the
/// connection, however long `idle_timeout` is and though bytes keep
/// coming. A connection that only waits between complete requests is
/// kept (the control).
#[tokio::test]
async fn http2_header_blocks_after_the_first_request_meet_the_header_deadline() {
    use h2raw::*;
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b]).replace(
        "[server]\n",
        "[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"60s\"\n",
    ))
    .await;
    // A first request, answered: after it, only the new deadline applies.
    let opened = || async {
        let mut s = TcpStream::connect(gw.addr()).await.unwrap();
        let mut out = start();
        frame(
            &mut out,
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &request_block("/first"),
        );
        s.write_all(&out).await.unwrap();
        let (kinds, closed) = read_frame_types(&mut s, Duration::from_millis(500)).await;
        assert!(kinds.contains(&HEADERS) && !closed, "{kinds:?}");
        s
    };
    let block = request_block("/second");

    // Stalled: HEADERS without END_HEADERS, then nothing.
    let mut s = opened().await;
    let mut out = Vec::new();
    frame(&mut out, HEADERS, END_STREAM, 3, &block[..block.len() / 2]);
    s.write_all(&out).await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_frame_types(&mut s, Duration::from_secs(8)).await;
    let took = started.elapsed();
    eprintln!("HTTP/2: stalled header block, connection closed after {took:?}");
    assert!(closed, "a stalled header block kept the connection");
    assert!(
        took < Duration::from_secs(3),
        "stalled block closed after {took:?}"
    );

    // Trickled: a HEADERS frame's payload one byte every 200 ms.
    let s = opened().await;
    let (mut rd, mut wr) = s.into_split();
    let mut head = Vec::new();
    frame(&mut head, HEADERS, END_STREAM | END_HEADERS, 3, &block);
    let payload = head.split_off(9);
    wr.write_all(&head).await.unwrap();
    let trickle = tokio::spawn(async move {
        for byte in payload {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(&[byte]).await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), rd.read_to_end(&mut sink)).await;
    trickle.abort();
    let took = started.elapsed();
    eprintln!("HTTP/2: trickled header block, connection closed after {took:?}");
    assert!(
        closed.is_ok(),
        "a trickled header block kept the connection"
    );
    assert!(
        took < Duration::from_secs(3),
        "trickled block closed after {took:?}"
    );

    // The control: quiet between complete requests for longer than the
    // header deadline, then another request on the same connection.
    let mut s = opened().await;
    let (kinds, closed) = read_frame_types(&mut s, Duration::from_millis(1500)).await;
    assert!(
        !closed && !kinds.contains(&GOAWAY),
        "a quiet connection between requests was ended: {kinds:?}"
    );
    let mut out = Vec::new();
    frame(&mut out, HEADERS, END_STREAM | END_HEADERS, 3, &block);
    s.write_all(&out).await.unwrap();
    let (kinds, closed) = read_frame_types(&mut s, Duration::from_millis(500)).await;
    assert!(!closed && kinds.contains(&HEADERS), "{kinds:?}");
    assert!(b.requests().iter().any(|r| r.path_and_query == "/second"));
    drop(s);
    still_serves(&gw).await;
    gw.stop().await;
}

/// Sends `head` whole, then reads until the gateway closes: what it
/// answered, and how the connection ended (`Ok` for a clean end of stream,
/// `Err` for a reset or a timeout). Unlike `raw`, a head the client could
/// not finish sending is a failure: the gateway must read it. The head
/// goes out in 8 KiB pieces a few milliseconds apart, as over a real
/// network: on loopback a single write lands whole in the kernel's
/// buffers before the gateway reads a byte, which hides what a client
/// still sending meets.
async fn send_head_then_read(
    addr: std::net::SocketAddr,
    head: &[u8],
) -> (String, Result<(), String>) {
    send_head_then_read_on(TcpStream::connect(addr).await.unwrap(), head).await
}

async fn send_head_then_read_on<S>(mut s: S, head: &[u8]) -> (String, Result<(), String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for piece in head.chunks(8192) {
        if let Err(e) = s.write_all(piece).await {
            return (String::new(), Err(format!("writing the head: {e}")));
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut out = Vec::new();
    let end = match tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("reading: {e}")),
        Err(_) => Err("no end of stream in time".to_string()),
    };
    (String::from_utf8_lossy(&out).into_owned(), end)
}

/// `resp` is the gateway's whole 431 for an oversized head, followed by a
/// clean end of stream.
fn assert_refused(what: &str, resp: &str, end: Result<(), String>) {
    assert_eq!(end, Ok(()), "{what}: {resp:?}");
    assert_eq!(status_of(resp), 431, "{what}");
    let lower = resp.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nconnection: close\r\n"),
        "{what}: {resp}"
    );
    let id = lower
        .split("\r\nx-request-id: ")
        .nth(1)
        .and_then(|r| r.split("\r\n").next())
        .unwrap_or_else(|| panic!("{what}: no X-Request-Id: {resp}"));
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: body {body:?}"));
    assert_eq!(json["error"], "request header fields too large", "{what}");
    assert_eq!(json["request_id"], id, "{what}");
}

/// A request head over `max_header_bytes` gets the gateway's 431 however
/// large it is (up to 256 KiB): the client finishes sending it, reads the
/// whole answer (JSON body, `X-Request-Id`, `Connection: close`), then a
/// clean end of stream, not a reset. One large header or many lines alike;
/// nothing reaches the backend.
#[tokio::test]
async fn oversized_heads_get_431_and_a_clean_close_up_to_256_kib() {
    let b = RawBackend::start().await;
    let gw = Gw::start(&open_config(&b.addr, "max_header_bytes = \"16KiB\"\n")).await;
    let mut results = Vec::new();
    for kib in [20, 64, 250] {
        let size = kib * 1024;
        let one_header = format!(
            "GET /big HTTP/1.1\r\nHost: x\r\nCookie: c={}\r\n\r\n",
            "v".repeat(size)
        );
        let line = format!("X-Fill: {}\r\n", "f".repeat(2000));
        let many_lines = format!(
            "GET /big HTTP/1.1\r\nHost: x\r\n{}\r\n",
            line.repeat(size / line.len())
        );
        // More headers than the 100 allowed, too: over the size limit, it
        // gets the same answer.
        let tiny_lines = format!(
            "GET /big HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "X-N: v\r\n".repeat(size / 8)
        );
        for (shape, head) in [
            ("one header", one_header),
            ("many lines", many_lines),
            ("tiny lines", tiny_lines),
        ] {
            let started = Instant::now();
            let (resp, end) = send_head_then_read(gw.addr(), head.as_bytes()).await;
            eprintln!(
                "{kib} KiB head ({shape}): {:?}, end {end:?} after {:?}",
                resp.lines().next(),
                started.elapsed()
            );
            results.push((kib, shape, resp, end));
        }
    }
    for (kib, shape, resp, end) in results {
        assert_refused(&format!("{kib} KiB ({shape})"), &resp, end);
    }
    assert!(b.requests().is_empty(), "{:?}", b.requests());
    // Pipelined behind a request in flight: that request is answered in
    // full, then the 431, then the end.
    let mut two = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    two.extend_from_slice(
        format!(
            "GET /big HTTP/1.1\r\nX-Big: {}\r\n\r\n",
            "b".repeat(64 << 10)
        )
        .as_bytes(),
    );
    let (resp, end) = send_head_then_read(gw.addr(), &two).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let second = resp
        .find("HTTP/1.1 431")
        .unwrap_or_else(|| panic!("{resp}"));
    assert_refused("pipelined", &resp[second..], end);
    let seen = b.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].head.starts_with("GET /first "), "{seen:?}");
    // The gateway serves the next connection.
    let resp = raw(
        gw.addr(),
        b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    gw.stop().await;

    // A limit under hyper's 8 KiB buffer floor holds too.
    let gw = Gw::start(&open_config(&b.addr, "max_header_bytes = \"1KiB\"\n")).await;
    let fill = |n: usize| {
        format!(
            "GET /small HTTP/1.1\r\nHost: x\r\nX-Fill: {}\r\n\r\n",
            "f".repeat(n)
        )
    };
    let (resp, end) = send_head_then_read(gw.addr(), fill(2000).as_bytes()).await;
    assert_refused("2 KiB over 1 KiB", &resp, end);
    let resp = raw(
        gw.addr(),
        fill(500)
            .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
            .as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    gw.stop().await;
}

/// The same over TLS (ALPN http/1.1): the answer, the gateway's
/// close_notify, then the end of the stream.
#[tokio::test]
async fn oversized_heads_over_tls_get_431_and_a_clean_close() {
    let b = RawBackend::start().await;
    let pki = Pki::new();
    let dir = tempdir();
    pki.issue(dir.path(), "server", &["localhost"]);
    let cfg = open_config(
        &b.addr,
        "max_header_bytes = \"16KiB\"\n[server.tls]\ncert = \"server.crt\"\nkey = \"server.key\"\n",
    );
    let gw = Gw::start_in(dir, &cfg).await;
    for kib in [20, 64, 250] {
        let head = format!(
            "GET /big HTTP/1.1\r\nHost: localhost\r\nCookie: c={}\r\n\r\n",
            "v".repeat(kib * 1024)
        );
        let tcp = TcpStream::connect(gw.addr()).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(pki.client_config(&["http/1.1"]))
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .unwrap();
        let (resp, end) = send_head_then_read_on(tls, head.as_bytes()).await;
        eprintln!(
            "TLS, {kib} KiB head: {:?}, end {end:?}",
            resp.lines().next()
        );
        assert_refused(&format!("TLS, {kib} KiB"), &resp, end);
    }
    assert!(b.requests().is_empty(), "{:?}", b.requests());
    gw.stop().await;
}

/// The rest of a refused head is read for a bounded time and up to a
/// bounded size: a client that trickles the rest of its head gets its 431
/// and the gateway's end of the stream at once, and the connection is gone
/// at `header_read_timeout`; one that sends without end is cut off after
/// some 256 KiB.
#[tokio::test]
async fn refused_heads_are_read_for_a_bounded_time_and_size() {
    let b = RawBackend::start().await;
    let gw = Gw::start(&open_config(
        &b.addr,
        "max_header_bytes = \"16KiB\"\nheader_read_timeout = \"1s\"\nidle_timeout = \"60s\"\n",
    ))
    .await;
    // Trickled: 20 KiB of a head, then a byte every 100 ms. The answer
    // and the gateway's FIN come at once; the client's writes succeed
    // (they are read) until the gateway closes: a write after that meets
    // a reset.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nX-A: {}", "a".repeat(20 * 1024)).as_bytes())
        .await
        .unwrap();
    let answered = Instant::now();
    let mut out = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut out)).await;
    let resp = String::from_utf8_lossy(&out);
    assert!(matches!(ended, Ok(Ok(_))), "{ended:?}");
    assert_eq!(status_of(&resp), 431);
    let mut closed = None;
    while answered.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"a").await.is_err() {
            closed = Some(answered.elapsed());
            break;
        }
    }
    eprintln!("trickled oversized head: 431 at once, connection gone after {closed:?}");
    let closed = closed.expect("the gateway kept reading a trickled head");
    assert!(
        closed >= Duration::from_millis(800) && closed < Duration::from_secs(3),
        "closed after {closed:?}"
    );

    // Endless: the client sends a head that never ends, 8 KiB at a time.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let line = format!("X-Fill: {}\r\n", "f".repeat(8180));
    let mut sent = 0usize;
    let started = Instant::now();
    while sent < 16 << 20 && started.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(Duration::from_secs(2), s.write_all(line.as_bytes())).await {
            Ok(Ok(())) => sent += line.len(),
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!("endless oversized head: cut off after {} KiB", sent / 1024);
    assert!(sent < 8 << 20, "the gateway read {sent} bytes of one head");
    assert!(b.requests().is_empty());
    gw.stop().await;
}

/// HTTP/2: a header block whose decoded size is over `max_header_bytes`
/// gets 431 on its stream (h2 answers it, from `max_header_list_size`),
/// and the connection goes on: the next request on it is served. A flood
/// of such blocks is no amplification: each answer is a few bytes against
/// the kilobytes of the block, nothing reaches the backend, and the
/// connection still serves. (Past four times the limit, h2 ends the
/// connection instead: its bound on decoding, with the CONTINUATION flood
/// test above.)
#[tokio::test]
async fn http2_oversized_header_blocks_get_431_and_the_connection_keeps_serving() {
    use h2raw::*;
    let b = Backend::start("b1").await;
    let gw = Gw::start(
        &simple_proxy_config(&[&b])
            .replace("[server]\n", "[server]\nmax_header_bytes = \"16KiB\"\n"),
    )
    .await;
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let get = |path: &str, big: usize| {
        let mut r = http::Request::get(format!("http://localhost{path}"));
        if big > 0 {
            r = r.header("x-big", "v".repeat(big));
        }
        r.body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    for kib in [17, 20, 60] {
        let r = tokio::time::timeout(WAIT, send.send_request(get("/big", kib * 1024)))
            .await
            .unwrap_or_else(|_| panic!("{kib} KiB: no answer"))
            .unwrap_or_else(|e| panic!("{kib} KiB: {e}"));
        assert_eq!(r.status(), 431, "{kib} KiB block");
        let r = tokio::time::timeout(WAIT, send.send_request(get("/next", 0)))
            .await
            .unwrap_or_else(|_| panic!("after {kib} KiB: no answer"))
            .unwrap_or_else(|e| panic!("after {kib} KiB: {e}"));
        assert_eq!(r.status(), 200, "the request after a {kib} KiB block");
    }
    assert!(!conn.is_finished());
    conn.abort();
    assert_eq!(b.count(), 3, "only the small requests reached the backend");

    // The flood: 200 blocks of 20 KiB (a HEADERS and a CONTINUATION
    // frame each, nothing indexed), then a plain request.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let mut out = start();
    for i in 0..200u32 {
        let mut block = request_block("/flood");
        literal(&mut block, "x-big", &[b'v'; 12 * 1024]);
        let mut more = Vec::new();
        literal(&mut more, "x-more", &[b'm'; 8 * 1024]);
        frame(&mut out, HEADERS, END_STREAM, 1 + 2 * i, &block);
        frame(&mut out, CONTINUATION, END_HEADERS, 1 + 2 * i, &more);
    }
    frame(
        &mut out,
        HEADERS,
        END_STREAM | END_HEADERS,
        401,
        &request_block("/after-flood"),
    );
    let sent = out.len();
    let (mut rd, mut wr) = s.split();
    let (written, answers) = tokio::join!(wr.write_all(&out), async {
        // (kind, stream) of each frame, until the plain request's answer.
        let mut frames = Vec::new();
        let mut received = 0;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 65536];
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let n = rd.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return false;
                }
                received += n;
                buf.extend_from_slice(&chunk[..n]);
                let mut at = 0;
                while buf.len() >= at + 9 {
                    let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
                    if buf.len() < at + 9 + len {
                        break;
                    }
                    let id =
                        u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]]);
                    frames.push((buf[at + 3], id & 0x7fff_ffff));
                    at += 9 + len;
                }
                buf.drain(..at);
                if frames.contains(&(HEADERS, 401)) {
                    return true;
                }
            }
        })
        .await;
        (got == Ok(true), frames, received)
    });
    written.unwrap();
    drop(s);
    let (answered, frames, received) = answers;
    let refused = frames
        .iter()
        .filter(|(k, id)| *k == HEADERS && *id < 401)
        .count();
    eprintln!(
        "HTTP/2 flood of 200 oversized blocks ({} KiB): {refused} answered, {} frames \
         ({received} bytes) back, goaway={}, plain request answered={answered}",
        sent / 1024,
        frames.len(),
        frames.iter().any(|(k, _)| *k == GOAWAY),
    );
    assert!(
        answered,
        "the request after the flood was not answered: {frames:?}"
    );
    assert_eq!(refused, 200, "one answer per oversized block");
    assert!(received < sent / 100, "{received} bytes back for {sent}");
    assert!(!frames.iter().any(|(k, _)| *k == GOAWAY), "{frames:?}");
    assert_eq!(b.count(), 4, "only the plain request reached the backend");
    still_serves(&gw).await;
    gw.stop().await;
}
