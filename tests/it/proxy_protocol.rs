//! Behind an L4 balancer (SPEC 12): the PROXY protocol, versions 1 and 2,
//! before HTTP or TLS, only from `proxy_protocol_from`; and a real HAProxy
//! in TCP mode sending it, with a client on another loopback address.

use crate::support::*;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn config(b: &Backend, proto: &str, from: &str) -> String {
    simple_proxy_config(&[b]).replacen(
        "[server]\n",
        &format!(
            "[server]\nproxy_protocol = \"{proto}\"\nproxy_protocol_from = [{from}]\nheader_read_timeout = \"1s\"\n"
        ),
        1,
    )
}

/// A v2 PROXY header for a TCP/IPv4 client `ip:port`.
fn v2_tcp4(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = V2_SIG.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&ip);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// Sends `prefix` then a GET on one connection; the response text, or ""
/// when the connection was closed without one.
async fn exchange(addr: std::net::SocketAddr, prefix: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(prefix).await.unwrap();
    let _ = s
        .write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn version_1_and_2_headers_name_the_client_everywhere_the_peer_was() {
    let b = Backend::start("b").await;
    let gw = Gw::start(&config(&b, "any", "\"127.0.0.1\"")).await;
    let r = exchange(gw.addr(), b"PROXY TCP4 192.0.2.7 127.0.0.1 56324 443\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(b.last().headers["x-forwarded-for"], "192.0.2.7");
    assert_eq!(b.last().headers["x-real-ip"], "192.0.2.7");
    let r = exchange(gw.addr(), &v2_tcp4([198, 51, 100, 9], 4000)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(b.last().headers["x-forwarded-for"], "198.51.100.9");
    // A health check (LOCAL) and UNKNOWN: the connection's own address.
    let mut local = V2_SIG.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    assert!(exchange(gw.addr(), &local)
        .await
        .starts_with("HTTP/1.1 200"));
    assert_eq!(b.last().headers["x-forwarded-for"], "127.0.0.1");
    assert!(exchange(gw.addr(), b"PROXY UNKNOWN\r\n")
        .await
        .starts_with("HTTP/1.1 200"));
    assert_eq!(b.last().headers["x-forwarded-for"], "127.0.0.1");
    gw.stop().await;
}

#[tokio::test]
async fn missing_malformed_unaccepted_or_late_headers_close_the_connection_unanswered() {
    let b = Backend::start("b").await;
    let gw = Gw::start(&config(&b, "v2", "\"127.0.0.1\"")).await;
    let errors = || {
        gw.running()
            .gateway
            .metrics
            .proxy_protocol_errors
            .load(Relaxed)
    };
    assert_eq!(exchange(gw.addr(), b"").await, "", "no header");
    assert_eq!(
        exchange(gw.addr(), b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2\r\n").await,
        "",
        "v1 while only v2 is accepted"
    );
    let mut bad = v2_tcp4([192, 0, 2, 7], 1);
    bad[13] = 0x11;
    bad[15] = 4; // too short for TCP4 addresses
    bad.truncate(20);
    assert_eq!(exchange(gw.addr(), &bad).await, "", "malformed v2");
    // Half a header, then silence: closed at header_read_timeout.
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(&V2_SIG[..8]).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(errors(), 4);
    assert_eq!(b.count(), 0, "nothing reached the backend");
    let m = Client::plain(gw.admin()).get("/metrics").await.text();
    assert!(m.contains("gatehouse_proxy_protocol_errors_total 4"), "{m}");
    gw.stop().await;
}

#[tokio::test]
async fn peers_outside_proxy_protocol_from_never_have_a_header_honoured() {
    let b = Backend::start("b").await;
    let gw = Gw::start(&config(&b, "any", "\"127.0.0.2\"")).await;
    // From 127.0.0.1: a PROXY line is just a malformed request.
    let r = exchange(gw.addr(), b"PROXY TCP4 192.0.2.7 127.0.0.1 1 2\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(exchange(gw.addr(), b"").await.starts_with("HTTP/1.1 200"));
    assert_eq!(b.last().headers["x-forwarded-for"], "127.0.0.1");
    gw.stop().await;
}

#[tokio::test]
async fn the_header_comes_before_tls() {
    let b = Backend::start("b").await;
    let pki = Pki::new();
    let dir = tempdir();
    pki.issue(dir.path(), "server", &["localhost"]);
    let cfg = config(&b, "v2", "\"127.0.0.1\"").replacen(
        "[admin]",
        "[server.tls]\ncert = \"server.crt\"\nkey = \"server.key\"\n\n[admin]",
        1,
    );
    let gw = Gw::start_in(dir, &cfg).await;
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let mut tcp = tcp;
    tcp.write_all(&v2_tcp4([203, 0, 113, 5], 1234))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(pki.client_config(&["http/1.1"]))
        .connect(name, tcp)
        .await
        .expect("TLS after the PROXY header");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = send
        .send_request(crate::support::client::req("GET", "/x", &[], ""))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(b.last().headers["x-forwarded-for"], "203.0.113.5");
    gw.stop().await;
}

fn haproxy_available() -> bool {
    let ok = Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("GATEHOUSE_REQUIRE_HAPROXY").as_deref() == Ok("1") {
            panic!("haproxy is required (GATEHOUSE_REQUIRE_HAPROXY=1) but not installed");
        }
        eprintln!("SKIPPED haproxy test: haproxy is not installed (apt-get install haproxy; CI requires it)");
    }
    ok
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_real_haproxy_sending_proxy_v2_hands_over_the_clients_address() {
    if !haproxy_available() {
        return;
    }
    let b = Backend::start("b").await;
    let gw = Gw::start(&config(&b, "v2", "\"127.0.0.1\"")).await;
    let front = dead_addr();
    let dir = tempdir();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
             frontend fe\n  bind {front}\n  default_backend be\n\
             backend be\n  server gw {} send-proxy-v2\n",
            gw.addr()
        ),
    )
    .unwrap();
    let _haproxy = Haproxy(
        Command::new("haproxy")
            .args(["-db", "-f", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy"),
    );
    assert!(
        poll(Duration::from_secs(10), || async {
            std::net::TcpStream::connect(front).is_ok()
        })
        .await,
        "haproxy never listened"
    );
    // The client on 127.0.0.2, so that it and the balancer differ.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = sock.connect(front).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(b.last().headers["x-forwarded-for"], "127.0.0.2");
    gw.stop().await;
}
