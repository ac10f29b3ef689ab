//! Outbound HTTP/1.1 (plain or TLS) for the gateway's own calls: key sets
//! (JWKS), and an OpenID provider's discovery document, token endpoint and
//! userinfo. One fresh connection per exchange (these are rare next to
//! proxied requests, and the far end may sit behind anything), a deadline
//! on the whole exchange and a cap on the body read.

use crate::config::JwksUrl;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Whole-exchange deadline: connect, TLS, request, body.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest body read (key sets, discovery documents, token responses with
/// large ID tokens, userinfo).
pub const MAX_BODY: usize = 1024 * 1024;

/// Why an exchange failed or its answer was unusable. The text names the
/// step; the caller adds which endpoint it was.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {}s", TIMEOUT.as_secs())]
    Timeout,
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("bad host name: {0}")]
    HostName(rustls_pki_types::InvalidDnsNameError),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("request: {0}")]
    Request(http::Error),
    #[error("HTTP: {0}")]
    Http(hyper::Error),
    #[error("body: {0}")]
    Body(Box<dyn std::error::Error + Send + Sync>),
    #[error("the response is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the response is not a JSON object")]
    NotObject,
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as a JSON object.
    pub fn json(&self) -> Result<serde_json::Map<String, serde_json::Value>, FetchError> {
        match serde_json::from_slice(&self.body) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => Err(FetchError::NotObject),
            Err(e) => Err(FetchError::NotJson(e)),
        }
    }
}

/// A request to send: method, extra headers, body.
pub struct Outgoing<'a> {
    pub method: http::Method,
    pub url: &'a JwksUrl,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl<'a> Outgoing<'a> {
    pub fn get(url: &'a JwksUrl) -> Outgoing<'a> {
        Outgoing {
            method: http::Method::GET,
            url,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// `application/x-www-form-urlencoded` POST (RFC 6749 section 4.1.3).
    /// Values are bytes: a client secret need not be text.
    pub fn form(url: &'a JwksUrl, fields: &[(&str, &[u8])]) -> Outgoing<'a> {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), encode_bytes(v)))
            .collect();
        Outgoing {
            method: http::Method::POST,
            url,
            headers: vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )],
            body: Bytes::from(body.join("&")),
        }
    }

    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Percent-encodes for `application/x-www-form-urlencoded` (and for
/// query strings): everything but unreserved characters.
pub fn form_encode(s: &str) -> String {
    encode_bytes(s.as_bytes())
}

/// [`form_encode`] for bytes that may not be text.
pub fn encode_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() * 3);
    for &c in b {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Sends `out` and reads the answer, within [`TIMEOUT`].
pub async fn send(tls: &Arc<rustls::ClientConfig>, out: Outgoing<'_>) -> Result<Reply, FetchError> {
    match tokio::time::timeout(TIMEOUT, exchange(tls, out)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout),
    }
}

async fn exchange(tls: &Arc<rustls::ClientConfig>, out: Outgoing<'_>) -> Result<Reply, FetchError> {
    let url = out.url;
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(FetchError::Connect)?;
    let _ = tcp.set_nodelay(true);
    if url.https {
        let name = rustls_pki_types::ServerName::try_from(url.host.clone())
            .map_err(FetchError::HostName)?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(FetchError::Tls)?;
        over(stream, out).await
    } else {
        over(tcp, out).await
    }
}

async fn over<IO>(io: IO, out: Outgoing<'_>) -> Result<Reply, FetchError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(FetchError::Http)?;
    let conn = tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(out.method)
        .uri(out.url.path_and_query.as_str())
        .header(header::HOST, out.url.authority.as_str())
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("gatehouse/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(out.body))
        .map_err(FetchError::Request)?;
    for (k, v) in out.headers {
        req.headers_mut().insert(k, v);
    }
    let result = async {
        let resp = sender.send_request(req).await.map_err(FetchError::Http)?;
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let headers = parts.headers;
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(FetchError::Body)?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
    .await;
    conn.abort();
    result
}
