//! A JWKS endpoint under the test's control: HTTPS with a certificate from
//! the test PKI (or plain HTTP on loopback), a body and status that can be
//! changed at any time, and a count of the fetches it served.

use crate::support::Pki;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

struct State {
    status: u16,
    body: String,
}

pub struct JwksServer {
    pub addr: SocketAddr,
    tls: bool,
    fetches: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    /// HTTPS on 127.0.0.1 with a certificate for `127.0.0.1` issued by
    /// `pki` (written into `dir` as `jwks.crt`/`jwks.key`).
    pub async fn https(pki: &Pki, dir: &Path, body: &str) -> JwksServer {
        pki.issue(dir, "jwks", &["127.0.0.1", "localhost"]);
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("jwks.crt"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("jwks.key")).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))), body).await
    }

    /// Plain HTTP on 127.0.0.1 (allowed for loopback JWKS URLs).
    pub async fn http(body: &str) -> JwksServer {
        Self::start(None, body).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>, body: &str) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fetches = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(Mutex::new(State {
            status: 200,
            body: body.to_string(),
        }));
        let (f, s, is_tls) = (fetches.clone(), state.clone(), tls.is_some());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (f, s, tls) = (f.clone(), s.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (f, s) = (f.clone(), s.clone());
                        async move { Ok::<_, Infallible>(serve(&f, &s, req)) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acc) => {
                            if let Ok(stream) = acc.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        JwksServer {
            addr,
            tls: is_tls,
            fetches,
            state,
            task,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/.well-known/jwks.json", self.addr)
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(SeqCst)
    }

    pub fn set(&self, status: u16, body: &str) {
        let mut s = self.state.lock().unwrap();
        s.status = status;
        s.body = body.to_string();
    }
}

fn serve(
    fetches: &AtomicUsize,
    state: &Mutex<State>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let s = state.lock().unwrap();
    let mut r = Response::new(Full::new(Bytes::from(s.body.clone())));
    if req.uri().path() != "/.well-known/jwks.json" {
        *r.status_mut() = http::StatusCode::NOT_FOUND;
        return r;
    }
    fetches.fetch_add(1, SeqCst);
    *r.status_mut() = http::StatusCode::from_u16(s.status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}
