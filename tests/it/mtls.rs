//! Client certificates as identity (SPEC 15, the `mtls` method): each
//! `client_identity`, OU groups and email, rogue certificates, routes that
//! mix sessions and certificates, the client-certificate header and its
//! stripping, over HTTP/1.1 and HTTP/2; and `check` refusing `mtls`
//! without a client CA. Certificates are made by the test.

use crate::support::client::{req, Conn};
use crate::support::sessions::{alice_hash, login, ALICE_PW};
use crate::support::*;
use rcgen::{DnType, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::process::Command;

type ClientKey = (CertificateDer<'static>, PrivateKeyDer<'static>);

const ALPNS: [&[&str]; 2] = [&["http/1.1"], &["h2"]];

/// The server's PKI (its certificate) and the clients' CA, which is
/// another one: the gateway must verify clients against `client_ca`, not
/// against whatever signed its own certificate.
struct Setup {
    server_pki: Pki,
    clients: Pki,
}

/// A gateway whose client CA is `clients`, `client_auth = "optional"`,
/// `sub` from `choice`. Routes: `/m` (mtls only), `/mixed` (session, then
/// mtls), `/open` (no authentication).
async fn gateway(choice: &str, backend: &Backend) -> (Gw, Setup) {
    let server_pki = Pki::new();
    let clients = Pki::new();
    let dir = tempdir();
    server_pki.issue(dir.path(), "server", &["localhost", "127.0.0.1"]);
    std::fs::write(dir.path().join("clients-ca.crt"), &clients.ca_pem).unwrap();
    std::fs::write(
        dir.path().join("users.toml"),
        format!(
            "[[users]]\nusername = \"alice\"\npassword_hash = \"{}\"\nemail = \"alice@example.com\"\n",
            alice_hash()
        ),
    )
    .unwrap();
    let cfg = format!(
        r#"[server]
listen = "127.0.0.1:0"

[server.tls]
cert = "server.crt"
key = "server.key"
client_ca = "clients-ca.crt"
client_auth = "optional"
client_identity = "{choice}"

[admin]
listen = "127.0.0.1:0"

[log]
access_log = true

[sessions]
cookie_secure = false

[login]
users_file = "users.toml"

[identity]
client_cert_header = "X-Client-Cert"
headers = {{ "X-Auth-User" = "sub", "X-Auth-Email" = "email", "X-Auth-Groups" = "groups", "X-Auth-Method" = "method", "X-Auth-Issuer" = "iss" }}

[[upstreams]]
name = "app"
backends = ["{b}"]

[[routes]]
name = "m"
path_prefix = "/m"
upstream = "app"
methods = ["mtls"]
on_unauthenticated = "401"

[[routes]]
name = "mixed"
path_prefix = "/mixed"
upstream = "app"
methods = ["session", "mtls"]
on_unauthenticated = "401"

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "app"
auth = "none"
"#,
        b = backend.addr
    );
    (
        Gw::start_in(dir, &cfg).await,
        Setup {
            server_pki,
            clients,
        },
    )
}

/// A certificate with every name this feature reads: CN, two OUs, two
/// email SANs (the first counts), a URI and a DNS SAN.
fn full_cert(pki: &Pki) -> ClientKey {
    pki.client_cert(|p| {
        p.distinguished_name.push(DnType::CommonName, "svc-reports");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "eng");
        // rcgen keeps one value per attribute type: a second OU goes in
        // under its OID spelled out.
        p.distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 11]), "ops");
        p.subject_alt_names = vec![
            SanType::DnsName("reports.internal.example".try_into().unwrap()),
            SanType::Rfc822Name("reports@example.com".try_into().unwrap()),
            SanType::URI("spiffe://example.com/reports".try_into().unwrap()),
            SanType::Rfc822Name("second@example.com".try_into().unwrap()),
        ];
    })
}

/// A TLS client to `gw` over `alpn`, presenting `cert` when given.
fn client(gw: &Gw, s: &Setup, alpn: &[&str], cert: Option<ClientKey>) -> Client {
    let cfg = match cert {
        Some(c) => s.server_pki.client_config_with_cert(alpn, c),
        None => s.server_pki.client_config(alpn),
    };
    Client::tls(gw.addr(), cfg, "localhost")
}

/// Same, with the given ALPN checked to be what the connection speaks.
async fn connect(c: &Client, alpn: &[&str]) -> Conn {
    let (conn, got) = c.connect().await.expect("TLS connection");
    assert_eq!(got.as_deref(), Some(alpn[0].as_bytes()));
    conn
}

fn header(seen: &backend::Seen, name: &str) -> Option<String> {
    seen.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// The `iss` of an `mtls` identity: the issuing CA's subject (every test
/// CA has this name).
const CLIENT_CA_NAME: &str = "CN=gatehouse test CA";

#[tokio::test]
async fn each_client_identity_choice_names_the_subject() {
    let cases = [
        ("cn", "svc-reports"),
        ("san_email", "reports@example.com"),
        ("san_uri", "spiffe://example.com/reports"),
        ("san_dns", "reports.internal.example"),
    ];
    for (choice, sub) in cases {
        let b = Backend::start("b").await;
        let (gw, s) = gateway(choice, &b).await;
        for alpn in ALPNS {
            let c = client(&gw, &s, alpn, Some(full_cert(&s.clients)));
            let mut conn = connect(&c, alpn).await;
            // Several requests on one connection: the certificate is the
            // connection's, read once, and holds for each of them (each
            // HTTP/2 stream too).
            for i in 0..3 {
                let r = conn
                    .send(req("GET", &format!("/m/{i}"), &[], ""))
                    .await
                    .unwrap();
                assert_eq!(r.status, 200, "{choice} {alpn:?} request {i}");
                let seen = b.last();
                assert_eq!(seen.path_and_query, format!("/m/{i}"));
                assert_eq!(header(&seen, "x-auth-user").as_deref(), Some(sub));
                assert_eq!(header(&seen, "x-auth-method").as_deref(), Some("mtls"));
                assert_eq!(
                    header(&seen, "x-auth-email").as_deref(),
                    Some("reports@example.com"),
                    "email is the first rfc822Name"
                );
                assert_eq!(header(&seen, "x-auth-groups").as_deref(), Some("eng,ops"));
                assert_eq!(
                    header(&seen, "x-auth-issuer").as_deref(),
                    Some(CLIENT_CA_NAME)
                );
            }
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_certificate_without_the_chosen_field_does_not_authenticate() {
    let b = Backend::start("b").await;
    let (gw, s) = gateway("san_email", &b).await;
    // Verified by the CA, but no rfc822Name: who it is cannot be said.
    let cn_only = s.clients.client_cert(|p| {
        p.distinguished_name.push(DnType::CommonName, "svc-x");
    });
    for alpn in ALPNS {
        let c = client(&gw, &s, alpn, Some(cn_only.clone_key()));
        let r = c.get("/m/x").await;
        assert_eq!(r.status, 401, "{alpn:?}");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.contains("invalid_token")),
            "{:?}",
            r.header("www-authenticate")
        );
    }
    assert_eq!(b.count(), 0);
    gw.stop().await;

    // With `cn`, a certificate without a CN is refused likewise.
    let (gw, s) = gateway("cn", &b).await;
    let no_cn = s.clients.client_cert(|p| {
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "eng");
        p.subject_alt_names = vec![SanType::DnsName("x.example".try_into().unwrap())];
    });
    let r = client(&gw, &s, &["http/1.1"], Some(no_cn))
        .get("/m/x")
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(b.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn rogue_certificates_are_refused_at_the_handshake() {
    let b = Backend::start("b").await;
    let (gw, s) = gateway("cn", &b).await;
    // Same subject, same CA name, another CA's key.
    let rogue_ca = Pki::new();
    for alpn in ALPNS {
        let c = client(&gw, &s, alpn, Some(full_cert(&rogue_ca)));
        // TLS 1.3: the client's side of the handshake ends before the
        // server has looked at its certificate, so the refusal (an alert)
        // arrives on the first request.
        let outcome = match c.connect().await {
            Err(_) => None,
            Ok((mut conn, _)) => conn.send(req("GET", "/m/x", &[], "")).await.ok(),
        };
        assert!(
            outcome.is_none(),
            "{alpn:?}: a rogue certificate got an answer: {:?}",
            outcome.map(|r| r.status)
        );
        // Not even a route without authentication is served to it.
        let outcome = match c.connect().await {
            Err(_) => None,
            Ok((mut conn, _)) => conn.send(req("GET", "/open/x", &[], "")).await.ok(),
        };
        assert!(outcome.is_none(), "{alpn:?}");
    }
    assert_eq!(b.count(), 0, "nothing reached the backend");
    // The genuine certificate still works on the same gateway.
    let r = client(&gw, &s, &["http/1.1"], Some(full_cert(&s.clients)))
        .get("/m/x")
        .await;
    assert_eq!(r.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn routes_mixing_sessions_and_certificates() {
    let b = Backend::start("b").await;
    let (gw, s) = gateway("cn", &b).await;
    // No certificate (client_auth = "optional"): the session works.
    let plain = client(&gw, &s, &["http/1.1"], None);
    let cookie = login(&plain, "alice", ALICE_PW).await.expect("login");
    for alpn in ALPNS {
        let no_cert = client(&gw, &s, alpn, None);
        let r = no_cert
            .send(req("GET", "/mixed/a", &[("cookie", &cookie)], ""))
            .await;
        assert_eq!(r.status, 200, "{alpn:?}");
        let seen = b.last();
        assert_eq!(header(&seen, "x-auth-user").as_deref(), Some("alice"));
        assert_eq!(header(&seen, "x-auth-method").as_deref(), Some("session"));
        assert_eq!(header(&seen, "x-client-cert"), None);
        // Neither a cookie nor a certificate: 401.
        assert_eq!(no_cert.get("/mixed/a").await.status, 401, "{alpn:?}");
        // ... and `mtls` alone needs the certificate.
        let r = no_cert
            .send(req("GET", "/m/a", &[("cookie", &cookie)], ""))
            .await;
        assert_eq!(r.status, 401, "{alpn:?}");

        // A certificate, no cookie: mtls.
        let with_cert = client(&gw, &s, alpn, Some(full_cert(&s.clients)));
        let r = with_cert.get("/mixed/b").await;
        assert_eq!(r.status, 200, "{alpn:?}");
        let seen = b.last();
        assert_eq!(header(&seen, "x-auth-user").as_deref(), Some("svc-reports"));
        assert_eq!(header(&seen, "x-auth-method").as_deref(), Some("mtls"));
        // Both: the route's order decides (session first).
        let r = with_cert
            .send(req("GET", "/mixed/c", &[("cookie", &cookie)], ""))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            header(&b.last(), "x-auth-method").as_deref(),
            Some("session")
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn the_client_cert_header_carries_the_escaped_pem_and_clients_cannot_send_it() {
    let b = Backend::start("b").await;
    let (gw, s) = gateway("cn", &b).await;
    let forged = "-----BEGIN%20CERTIFICATE-----%0Aforged";
    for alpn in ALPNS {
        let cert = full_cert(&s.clients);
        let der = cert.0.clone();
        let c = client(&gw, &s, alpn, Some(cert));
        for path in ["/m/h", "/open/h"] {
            let r = c
                .send(req(
                    "GET",
                    path,
                    &[("x-client-cert", forged), ("x_client_cert", forged)],
                    "",
                ))
                .await;
            assert_eq!(r.status, 200, "{alpn:?} {path}");
            let seen = b.last();
            let values: Vec<_> = seen.headers.get_all("x-client-cert").iter().collect();
            assert_eq!(values.len(), 1, "{alpn:?} {path}: only the gateway's value");
            assert!(seen.headers.get("x_client_cert").is_none());
            let text = values[0].to_str().unwrap();
            // nginx's $ssl_client_escaped_cert: unreserved characters kept,
            // the rest %XX, so the whole PEM is one header-safe token.
            assert!(
                text.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
                "{text}"
            );
            assert!(!text.contains(['+', '/', '=', ' ']), "{text}");
            let pem = percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .unwrap()
                .into_owned();
            assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
            use rustls_pki_types::pem::PemObject;
            let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(back, der, "{alpn:?} {path}: the presented leaf");
        }
        // Without a certificate, a client's forged header never gets through.
        let r = client(&gw, &s, alpn, None)
            .send(req("GET", "/open/h", &[("x-client-cert", forged)], ""))
            .await;
        assert_eq!(r.status, 200);
        assert!(b.last().headers.get("x-client-cert").is_none(), "{alpn:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_certificate_on_a_cross_site_unsafe_request_is_refused() {
    let b = Backend::start("b").await;
    let (gw, s) = gateway("cn", &b).await;
    let c = client(&gw, &s, &["http/1.1"], Some(full_cert(&s.clients)));
    // A browser presents its certificate on a cross-site form post too.
    let r = c
        .send(req(
            "POST",
            "/m/x",
            &[("origin", "https://evil.example")],
            "",
        ))
        .await;
    assert_eq!(r.status, 403);
    // Machine clients send no Origin; a same-origin page names ours.
    assert_eq!(c.send(req("POST", "/m/x", &[], "")).await.status, 200);
    let r = c
        .send(req("POST", "/m/x", &[("origin", "https://localhost")], ""))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(b.count(), 2);
    // Counted under their own method label.
    let metrics = Client::plain(gw.admin()).get("/metrics").await.text();
    assert!(
        metrics.contains("gatehouse_auth_total{method=\"mtls\",result=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatehouse_auth_total{method=\"mtls\",result=\"forbidden\"} 1"),
        "{metrics}"
    );
    gw.stop().await;
}

#[test]
fn check_refuses_mtls_without_a_client_ca() {
    let dir = tempdir();
    let pki = Pki::new();
    pki.issue(dir.path(), "server", &["localhost"]);
    pki.write_ca(dir.path());
    let routes = "[[upstreams]]\nname = \"a\"\nbackends = [\"127.0.0.1:1\"]\n\n\
                  [[routes]]\nname = \"r\"\nupstream = \"a\"\nmethods = [\"jwt\", \"mtls\"]\n";
    let tls = "[server.tls]\ncert = \"server.crt\"\nkey = \"server.key\"\n";
    let bad = [
        ("no-tls", String::new()),
        ("no-ca", tls.to_string()),
        (
            "auth-none",
            format!("{tls}client_ca = \"ca.crt\"\nclient_auth = \"none\"\n"),
        ),
    ];
    for (name, server) in bad {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, format!("{server}\n{routes}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        // The key path and its line (the `methods` line).
        let line = format!("{server}\n{routes}")
            .lines()
            .position(|l| l.starts_with("methods"))
            .unwrap()
            + 1;
        assert!(
            err.contains(&format!("routes[0].methods[1] (line {line}")),
            "{name}: {err}"
        );
        assert!(err.contains("client_ca"), "{name}: {err}");
    }
    // With a client CA that is asked for, the same routes pass.
    let path = dir.path().join("good.toml");
    std::fs::write(
        &path,
        format!("{tls}client_ca = \"ca.crt\"\nclient_auth = \"optional\"\nclient_identity = \"san_uri\"\n\n{routes}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An unknown client_identity is named with its key.
    let path = dir.path().join("odd.toml");
    std::fs::write(
        &path,
        format!("{tls}client_ca = \"ca.crt\"\nclient_identity = \"serial\"\n\n{routes}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("server.tls.client_identity"), "{err}");
}

trait CloneKey {
    fn clone_key(&self) -> Self;
}

impl CloneKey for ClientKey {
    fn clone_key(&self) -> Self {
        (self.0.clone(), self.1.clone_key())
    }
}
