//! `gatehouse demo`: a working gateway with nothing to set up. A
//! throw-away certificate (its own CA), two built-in echo backends, and the curl
//! commands to try it, printed on start.

use crate::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::net::TcpListener;

/// Starts an echo backend on `addr`: every request gets a JSON description
/// of itself (method, path, headers) and `X-Backend: <name>`.
pub async fn spawn_echo_backend(
    name: &'static str,
    addr: SocketAddr,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    Ok::<_, std::convert::Infallible>(echo(name, &req))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(bound)
}

fn echo(name: &'static str, req: &Request<Incoming>) -> Response<Body> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into()),
            )
        })
        .collect();
    let body = serde_json::json!({
        "backend": name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": headers,
    });
    let mut r = Response::new(Body::full(format!("{body:#}\n")));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert("x-backend", http::HeaderValue::from_static(name));
    r
}

/// The demo's files: a fresh certificate and a config pointing at it.
pub struct DemoFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub cert: PathBuf,
    pub fingerprint: String,
}

/// Writes a throw-away CA (`demo.crt`, what clients trust), a server
/// certificate for localhost/127.0.0.1 signed by it, and a config that
/// serves `port` over TLS in front of `backends`.
pub fn write_files(dir: &Path, port: u16, backends: &[SocketAddr]) -> std::io::Result<DemoFiles> {
    std::fs::create_dir_all(dir)?;
    // A CA and a certificate it signed, not one self-signed certificate:
    // OpenSSL (curl --cacert) takes only a CA as a trust anchor, and
    // rustls refuses a CA certificate as a server's own.
    let server = demo_certificate().map_err(std::io::Error::other)?;
    let cert = dir.join("demo.crt");
    let key = dir.join("demo.key");
    std::fs::write(&cert, server.ca.pem())?;
    std::fs::write(dir.join("demo-server.crt"), server.cert.pem())?;
    write_private(
        &dir.join("demo.secret"),
        crate::crypto::hex(&crate::crypto::random_bytes::<32>()).as_bytes(),
    )?;
    write_private(&key, server.key.serialize_pem().as_bytes())?;
    // Signs the demo's access tokens (P-256, PKCS#8).
    let token_key = rcgen::KeyPair::generate().map_err(std::io::Error::other)?;
    write_private(
        &dir.join("demo-signing.pem"),
        token_key.serialize_pem().as_bytes(),
    )?;
    let fp = crate::crypto::sha256(server.cert.der());
    let fingerprint = fp
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    // The demo user: demo / demo. Hashed here, never written in clear.
    std::fs::write(
        dir.join("users.toml"),
        format!(
            "# Written by `gatehouse demo`: one DEMO user, password \"demo\".\n[[users]]\nusername = \"demo\"\npassword_hash = \"{}\"\nemail = \"demo@example.com\"\ngroups = [\"staff\"]\n",
            crate::login::users::hash_password("demo")
        ),
    )?;
    let list = backends
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = dir.join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            r#"# Written by `gatehouse demo`. A DEMO: throw-away certificate authority, no real users.
[server]
listen = "127.0.0.1:{port}"
secret_file = "demo.secret"

[server.tls]
cert = "demo-server.crt"
key = "demo.key"

[admin]
listen = "127.0.0.1:0"

[sessions]
store = "memory"
idle_timeout = "30m"
absolute_timeout = "12h"

[login]
users_file = "users.toml"
signing_key_file = "demo-signing.pem"

[[upstreams]]
name = "echo"
backends = [{list}]
  [upstreams.sticky]
  mode = "cookie"

[[routes]]
name = "private"
path_prefix = "/private"
upstream = "echo"
auth = "required"
methods = ["session"]

[[routes]]
name = "echo"
path_prefix = "/"
upstream = "echo"
auth = "none"
"#
        ),
    )?;
    Ok(DemoFiles {
        dir: dir.to_path_buf(),
        config,
        cert,
        fingerprint,
    })
}

/// The demo's server certificate, the CA that signed it, and its key.
struct DemoCertificate {
    ca: rcgen::Certificate,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn demo_certificate() -> Result<DemoCertificate, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gatehouse DEMO CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))?;
    Ok(DemoCertificate { ca, cert, key })
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Runs the demo until Ctrl-C.
pub async fn run(port: u16) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let a = spawn_echo_backend("echo-a", "127.0.0.1:0".parse()?).await?;
    let b = spawn_echo_backend("echo-b", "127.0.0.1:0".parse()?).await?;
    let dir = std::env::temp_dir().join(format!("gatehouse-demo-{}", std::process::id()));
    let files = write_files(&dir, port, &[a, b])?;
    let cfg = crate::config::load(&files.config)?;
    let running = crate::start(cfg).await?;
    let addr = running.addrs.listen;
    let admin = running.addrs.admin;
    let p = addr.port();
    println!(
        r#"
  ================================================================
   gatehouse DEMO -- not for production: throw-away certificate,
   built-in echo backends. Files in {dir}
  ================================================================

  TLS certificate SHA-256 fingerprint:
    {fp}

  Try it:
    curl --cacert {cert} https://localhost:{p}/hello
    curl -k https://127.0.0.1:{p}/hello               # again: the other backend answers
    curl -k -b jar -c jar https://127.0.0.1:{p}/hello # with a cookie jar: one backend every time (affinity cookie)
    curl -k -H 'X-Auth-User: mallory' https://127.0.0.1:{p}/   # spoofed identity header is stripped
    curl -k --http2 -sI https://127.0.0.1:{p}/        # HTTP/2
    curl http://{admin}/metrics                       # Prometheus metrics

  Log in (DEMO user demo / demo) and call the protected route:
    curl -k -c /tmp/gh.jar -H 'Content-Type: application/json' \
         -d '{{"username":"demo","password":"demo"}}' https://127.0.0.1:{p}/.gatehouse/login
    curl -k -b /tmp/gh.jar https://127.0.0.1:{p}/private/    # the backend sees X-Auth-User: demo

  Browser: https://localhost:{p}/private/  -> login page, demo / demo
           (accept the certificate, or import demo.crt as a CA)
  Config used: {config}
  Ctrl-C stops.
"#,
        dir = files.dir.display(),
        fp = files.fingerprint,
        cert = files.cert.display(),
        config = files.config.display(),
    );
    tracing::warn!("this is a DEMO: throw-away certificate and built-in backends");
    // SIGTERM (a supervisor, `timeout`, `docker stop`) ends it as cleanly
    // as Ctrl-C, with exit status 0, like `run` (SPEC 16).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    running.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
