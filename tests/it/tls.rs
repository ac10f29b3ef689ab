//! TLS termination: certificates by SNI, ALPN, version floor, redirect.

use crate::support::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn tls_gateway(extra_server: &str, backend: &Backend) -> (Gw, Pki) {
    let pki = Pki::new();
    let dir = tempdir();
    pki.issue(dir.path(), "server", &["localhost", "127.0.0.1"]);
    pki.issue(dir.path(), "api", &["api.example.com"]);
    pki.issue(dir.path(), "wild", &["*.internal.example.com"]);
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{extra_server}\n[server.tls]\ncert = \"server.crt\"\nkey = \"server.key\"\n\n\
[[server.tls.certificates]]\nhosts = [\"api.example.com\"]\ncert = \"api.crt\"\nkey = \"api.key\"\n\n\
[[server.tls.certificates]]\nhosts = [\"*.internal.example.com\"]\ncert = \"wild.crt\"\nkey = \"wild.key\"\n\n\
[admin]\nlisten = \"127.0.0.1:0\"\n\n[[upstreams]]\nname = \"app\"\nbackends = [\"{}\"]\n\n[[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        backend.addr
    );
    (Gw::start_in(dir, &cfg).await, pki)
}

async fn peer_cert_names(gw: &Gw, pki: &Pki, sni: &str) -> Result<Vec<u8>, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await?;
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(pki.client_config(&["http/1.1"]))
        .connect(name, tcp)
        .await?;
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
}

#[tokio::test]
async fn quiet_tls_connections_serve_their_next_requests() {
    let b = Backend::start("b1").await;
    let (gw, pki) = tls_gateway("", &b).await;
    for alpn in [&["http/1.1"][..], &["h2"][..]] {
        let c = Client::tls(gw.addr(), pki.client_config(alpn), "localhost");
        let (mut conn, _) = c.connect().await.unwrap();
        for i in 0..3 {
            let r = conn
                .send(client::req("GET", &format!("/q/{i}"), &[], ""))
                .await;
            assert_eq!(r.unwrap().status, 200, "{alpn:?} request {i}");
            // A quiet spell long enough to be parked, in which the
            // connection must stay open.
            assert!(
                !crate::support::poll(gatehouse::server::PARK_AFTER * 5, || async {
                    conn.is_closed()
                })
                .await,
                "{alpn:?} closed in a quiet spell after request {i}"
            );
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn https_with_http1_and_http2_by_alpn() {
    let b = Backend::start("b1").await;
    let (gw, pki) = tls_gateway("", &b).await;
    let h1 = Client::tls(gw.addr(), pki.client_config(&["http/1.1"]), "localhost");
    let (mut c, alpn) = h1.connect().await.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let r = c.send(client::req("GET", "/x", &[], "")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(b.last().headers["x-forwarded-proto"], "https");

    let h2 = Client::tls(
        gw.addr(),
        pki.client_config(&["h2", "http/1.1"]),
        "localhost",
    );
    let (mut c, alpn) = h2.connect().await.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    for i in 0..5 {
        let r = c
            .send(client::req("GET", &format!("/h2/{i}"), &[], ""))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.version, http::Version::HTTP_2);
    }
    // The backend got HTTP/1.1 with a Host header taken from :authority.
    assert_eq!(b.last().path_and_query, "/h2/4");
    assert_eq!(b.last().headers["host"], "localhost");
    gw.stop().await;
}

#[tokio::test]
async fn sni_chooses_the_matching_certificate() {
    let b = Backend::start("b1").await;
    let (gw, pki) = tls_gateway("", &b).await;
    let default = peer_cert_names(&gw, &pki, "localhost").await.unwrap();
    let api = peer_cert_names(&gw, &pki, "api.example.com").await.unwrap();
    let wild = peer_cert_names(&gw, &pki, "db.internal.example.com")
        .await
        .unwrap();
    assert_ne!(default, api);
    assert_ne!(api, wild);
    // The client verified each against its name, so each was the right one;
    // a name with two extra labels is not covered by the wildcard and gets
    // the default certificate, which the client rejects.
    assert!(peer_cert_names(&gw, &pki, "a.b.internal.example.com")
        .await
        .is_err());
    let c = Client::tls(
        gw.addr(),
        pki.client_config(&["http/1.1"]),
        "api.example.com",
    );
    assert_eq!(c.get("/").await.status, 200);
    gw.stop().await;
}

/// A hand-written TLS 1.1 ClientHello: no TLS library here still speaks 1.1.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0xc0, 0x13]); // 2 suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend(hs);
    rec
}

#[tokio::test]
async fn tls_1_1_is_refused() {
    let b = Backend::start("b1").await;
    let (gw, _pki) = tls_gateway("", &b).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(&tls11_client_hello()).await.unwrap();
    let mut buf = vec![0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    // An alert record (21), fatal (2): protocol_version (70) or
    // handshake_failure (40); never a ServerHello (22).
    assert_eq!(buf[0], 0x15, "expected a TLS alert, got {buf:?}");
    assert_eq!(buf[5], 2);
    assert!(buf[6] == 70 || buf[6] == 40, "alert {}", buf[6]);
    assert_eq!(b.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn min_version_1_3_refuses_a_tls_1_2_client() {
    let b = Backend::start("b1").await;
    let pki = Pki::new();
    let dir = tempdir();
    pki.issue(dir.path(), "server", &["localhost"]);
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"server.crt\"\nkey = \"server.key\"\nmin_version = \"1.3\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
[[upstreams]]\nname = \"app\"\nbackends = [\"{}\"]\n[[routes]]\nname = \"app\"\nupstream = \"app\"\nauth = \"none\"\n",
        b.addr
    );
    let gw = Gw::start_in(dir, &cfg).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let only12 = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let r = tokio_rustls::TlsConnector::from(std::sync::Arc::new(only12))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await;
    assert!(
        r.is_err(),
        "TLS 1.2 handshake must fail against min_version 1.3"
    );
    let ok = Client::tls(gw.addr(), pki.client_config(&["http/1.1"]), "localhost");
    assert_eq!(ok.get("/").await.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn redirect_listener_sends_308_to_https() {
    let b = Backend::start("b1").await;
    let (gw, _pki) = tls_gateway("[server.redirect]\nlisten = \"127.0.0.1:0\"\n", &b).await;
    let redirect = gw
        .running()
        .addrs
        .redirect
        .expect("redirect listener bound");
    let port = gw.addr().port();
    let r = Client::plain(redirect)
        .get_with("/a/b?c=d", &[("host", "app.example.com:8080")])
        .await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://app.example.com:{port}/a/b?c=d").as_str())
    );
    // A host that cannot go into a URL: 400, and, like every malformed
    // request, the end of the connection (the pipelined second request
    // gets no answer).
    let out = client::raw(
        redirect,
        b"GET / HTTP/1.1\r\nHost: bad_host\r\n\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "{out}"
    );
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    gw.stop().await;
}

use rustls_pki_types::pem::PemObject;

/// An HTTPS backend with a certificate from the test CA, answering with the
/// path it saw.
async fn tls_backend(pki: &Pki, dir: &std::path::Path) -> std::net::SocketAddr {
    pki.issue(dir, "backend", &["127.0.0.1", "localhost"]);
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(dir.join("backend.crt"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("backend.key")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(format!(
                                "tls backend saw {}",
                                req.uri().path()
                            ))),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn backends_can_be_reached_over_verified_tls() {
    let pki = Pki::new();
    let dir = tempdir();
    pki.write_ca(dir.path());
    let addr = tls_backend(&pki, dir.path()).await;
    let cfg = format!(
        "{}[[upstreams]]\nname = \"secure\"\nbackends = [\"{addr}\"]\ntls = true\nca = \"ca.crt\"\n\n\
         [[upstreams]]\nname = \"untrusted\"\nbackends = [\"{addr}\"]\ntls = true\nretries = 0\n\n\
         [[routes]]\nname = \"untrusted\"\npath_prefix = \"/untrusted\"\nupstream = \"untrusted\"\nauth = \"none\"\n\n\
         [[routes]]\nname = \"secure\"\npath_prefix = \"/\"\nupstream = \"secure\"\nauth = \"none\"\n",
        base_config()
    );
    let gw = Gw::start_in(dir, &cfg).await;
    for _ in 0..3 {
        let r = gw.plain().get("/over-tls").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "tls backend saw /over-tls");
    }
    // Without the CA (system roots only) the backend's certificate is not
    // trusted: the gateway refuses to talk to it.
    assert_eq!(gw.plain().get("/untrusted").await.status, 502);
    gw.stop().await;
}
