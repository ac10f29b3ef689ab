//! Small real clients: HTTP/1.1 or HTTP/2, plain or TLS (rustls), and raw
//! sockets for what a well-behaved client would never send.

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
}

pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    pub fn plain(addr: SocketAddr) -> Client {
        Client { addr, tls: None }
    }

    pub fn tls(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, sni: &str) -> Client {
        Client {
            addr,
            tls: Some((cfg, sni.to_string())),
        }
    }

    /// Opens a connection; HTTP/2 when TLS negotiated `h2`.
    pub async fn connect(&self) -> std::io::Result<(Conn, Option<Vec<u8>>)> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => {
                let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(std::io::Error::other)?;
                tokio::spawn(async move {
                    let _ = c.await;
                });
                Ok((Conn::H1(s), None))
            }
            Some((cfg, sni)) => {
                let name = rustls_pki_types::ServerName::try_from(sni.clone()).unwrap();
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await?;
                let alpn = tls.get_ref().1.alpn_protocol().map(|a| a.to_vec());
                if alpn.as_deref() == Some(b"h2") {
                    let (s, c) = hyper::client::conn::http2::handshake(
                        TokioExecutor::new(),
                        TokioIo::new(tls),
                    )
                    .await
                    .map_err(std::io::Error::other)?;
                    tokio::spawn(async move {
                        let _ = c.await;
                    });
                    Ok((Conn::H2(s), alpn))
                } else {
                    let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                        .await
                        .map_err(std::io::Error::other)?;
                    tokio::spawn(async move {
                        let _ = c.await;
                    });
                    Ok((Conn::H1(s), alpn))
                }
            }
        }
    }

    /// One request on a fresh connection.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Resp {
        let (mut c, _) = self.connect().await.expect("connect to gateway");
        c.send(req).await.expect("response")
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(req("GET", path, &[], "")).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(req("GET", path, headers, "")).await
    }
}

impl Conn {
    /// Whether the connection has ended (the peer closed it, say).
    pub fn is_closed(&self) -> bool {
        match self {
            Conn::H1(s) => s.is_closed(),
            Conn::H2(s) => s.is_closed(),
        }
    }

    pub async fn send(&mut self, mut req: Request<Full<Bytes>>) -> hyper::Result<Resp> {
        let resp = match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Conn::H2(s) => {
                // HTTP/2 wants an absolute URI (the :authority).
                if req.uri().authority().is_none() {
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("localhost")
                        .to_string();
                    let uri = format!(
                        "https://{host}{}",
                        req.uri().path_and_query().map_or("/", |p| p.as_str())
                    );
                    *req.uri_mut() = uri.parse().unwrap();
                    req.headers_mut().remove("host");
                }
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            version: parts.version,
        })
    }
}

/// Builds a request; `Host: localhost` unless `headers` names one.
pub fn req(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", "localhost");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// Writes `bytes` on a fresh plain connection and reads until the server
/// closes or `wait` passes. Returns what was read.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before taking all of it (a huge head).
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
