//! Keep-alive connections to backends (HTTP/1.1, plain or TLS).
//!
//! Our own small pool rather than a generic client, for one reason: a
//! request may only be retried on another backend if it never reached the
//! first, and `try_send_request` hands back a request that was not sent.
//! That makes retries safe for every method, bodies included.

use super::{Backend, Upstream};
use crate::body::Body;
use crate::clock::Instant;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// Idle connections older than this are closed rather than reused: many
/// servers drop keep-alive connections after 60-75 s, and reusing one just
/// as the server closes it would waste a request.
pub const MAX_IDLE_AGE: Duration = Duration::from_secs(50);

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// A backend's idle connections. The mutex guards a short push/pop and is
/// never held across an await.
pub struct ConnPool {
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
}

impl ConnPool {
    pub fn new(max_idle: usize) -> Self {
        ConnPool {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// The most recently used live connection, if any.
    pub fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(c) = idle.pop() {
            if !c.sender.is_closed() && c.since.elapsed() < MAX_IDLE_AGE {
                return Some(c.sender);
            }
        }
        None
    }

    pub fn checkin(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }
}

/// Returns the connection to its backend's pool once the response body has
/// been read to the end (only then may HTTP/1.1 send the next request).
pub struct ReturnToPool {
    pub backend: Arc<Backend>,
    pub sender: SendRequest<Body>,
}

impl ReturnToPool {
    /// The response body was read to its end: the connection may carry
    /// the next request.
    pub fn finished(self) {
        self.backend.pool.checkin(self.sender);
    }
}

/// Opens a new connection to `backend` within the upstream's connect
/// timeout. Errors mean the request never reached the backend.
pub async fn connect(up: &Upstream, backend: &Backend) -> std::io::Result<SendRequest<Body>> {
    let tcp = tokio::time::timeout(up.connect_timeout, TcpStream::connect(&backend.addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = tcp.set_nodelay(true);
    match &up.tls {
        None => handshake(tcp).await,
        Some(tls) => {
            let host = crate::route::host_without_port(&backend.addr).to_string();
            let name = rustls_pki_types::ServerName::try_from(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = tokio::time::timeout(up.connect_timeout, tls.connect(name, tcp))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            handshake(stream).await
        }
    }
}

async fn handshake<IO>(io: IO) -> std::io::Result<SendRequest<Body>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        // Errors here are the backend closing the connection; requests on it
        // already saw them.
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}
