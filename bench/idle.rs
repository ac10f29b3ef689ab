//! bench-idle: opens many keep-alive connections to a proxy, sends one
//! request on each, then holds them all open and idle until SIGTERM, so
//! `bench/run.sh` can read the proxy's resident memory per idle connection.
//!
//!     bench-idle URL COUNT [CERT_PEM]
//!
//! URL is `http://host:port/path` or `https://...`, where the server must
//! present exactly the certificate in CERT_PEM (the bench's self-signed
//! one, which is a CA certificate and so no valid end-entity for webpki).
//! Prints `ready N failed M` once N connections have had their response.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Connections being set up at once.
const PARALLEL: usize = 64;

/// Accepts only the pinned certificate, with a valid handshake signature.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Sends `GET path` and reads one response with a Content-Length body.
async fn one_request(io: &mut Box<dyn Io>, host: &str, path: &str) -> std::io::Result<()> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    io.write_all(req.as_bytes()).await?;
    io.flush().await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the response"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Ok(());
        }
    }
}

async fn open(
    addr: SocketAddr,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    host: &str,
    path: &str,
) -> std::io::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some((c, name)) => Box::new(c.connect(name, tcp).await?),
    };
    one_request(&mut io, host, path).await?;
    Ok(io)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: bench-idle URL COUNT [CERT_PEM]");
    let count: usize = args
        .next()
        .and_then(|c| c.parse().ok())
        .expect("COUNT is a number");
    let cert = args.next();
    let (https, rest) = match url.split_once("://") {
        Some(("https", r)) => (true, r),
        Some(("http", r)) => (false, r),
        _ => panic!("URL must start with http:// or https://"),
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = host.parse().expect("URL host must be ip:port");
    let tls = https.then(|| {
        let pem = cert.expect("https needs CERT_PEM");
        let cert = CertificateDer::from_pem_file(&pem).expect("a PEM certificate in CERT_PEM");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(Pinned {
            cert,
            provider: provider.clone(),
        });
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::IpAddress(addr.ip().into());
        (tokio_rustls::TlsConnector::from(Arc::new(cfg)), name)
    });

    let gate = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let (tls, host, path) = (tls.clone(), host.to_string(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let r = open(addr, tls, &host, &path).await;
            drop(permit);
            r
        }));
    }
    let mut held = Vec::with_capacity(count);
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(io)) => held.push(io),
            Ok(Err(e)) => {
                if failed == 0 {
                    eprintln!("first failure: {e}");
                }
                failed += 1;
            }
            Err(e) => {
                eprintln!("task failed: {e}");
                failed += 1;
            }
        }
    }
    println!("ready {} failed {failed}", held.len());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    term.recv().await;
    drop(held);
}
