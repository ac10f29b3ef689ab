//! A real HTTP/1.1 backend on 127.0.0.1:0 that records what it receives.
//!
//! Paths: `/status/N`, `/slow/MS`, `/download/N` (N bytes streamed),
//! `/upload` (answers `<len> <sha256>` of the streamed body), `/ws`
//! (WebSocket echo), `/healthz` (answers the status set by
//! [`Backend::set_health`], 200 at first), `/setcookie/NAME=VALUE` (JSON
//! with that `Set-Cookie`), `.../silent` (one chunk, then a minute of
//! silence); anything else answers JSON naming the backend.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: http::HeaderMap,
}

pub struct Backend {
    pub name: String,
    pub addr: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    health: Arc<AtomicU16>,
    stop: watch::Sender<bool>,
}

type RespBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(s: impl Into<Bytes>) -> RespBody {
    Full::new(s.into()).boxed()
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_on(name, "127.0.0.1:0").await
    }

    /// Starts on a given address (to bring a stopped backend back).
    pub async fn start_on(name: &str, addr: &str) -> Backend {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let health = Arc::new(AtomicU16::new(200));
        let (stop, stop_rx) = watch::channel(false);
        let (n, s, h) = (name.to_string(), seen.clone(), health.clone());
        tokio::spawn(async move {
            let mut stop_rx2 = stop_rx.clone();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop_rx2.changed() => break,
                };
                let Ok((stream, _)) = accepted else { continue };
                let (n, s, h, mut stop_rx) = (n.clone(), s.clone(), h.clone(), stop_rx.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        serve(n.clone(), s.clone(), h.clone(), req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades();
                    tokio::select! {
                        _ = conn => {}
                        _ = stop_rx.changed() => {}
                    }
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            seen,
            health,
            stop,
        }
    }

    /// The status `/healthz` answers from now on.
    pub fn set_health(&self, status: u16) {
        self.health.store(status, Ordering::Relaxed);
    }

    /// Closes the listener and every connection: the backend is gone.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the backend saw a request")
    }
}

async fn serve(
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    health: Arc<AtomicU16>,
    mut req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    if req.uri().path() == "/healthz" {
        let mut r = Response::new(full("health"));
        *r.status_mut() = StatusCode::from_u16(health.load(Ordering::Relaxed)).unwrap();
        return Ok(r);
    }
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_string();
    let mut resp = if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(format!("status {code}")));
        *r.status_mut() = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        r
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(1000))).await;
        Response::new(full("slow done"))
    } else if let Some(n) = path.strip_prefix("/download/") {
        let total: usize = n.parse().unwrap_or(0);
        let stream = futures_stream(total);
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut()
            .insert("x-total", total.to_string().parse().unwrap());
        r
    } else if let Some(n) = path.rsplit_once("/stream/").map(|(_, n)| n.to_string()) {
        // n chunks, one every 100 ms: a long-lived streamed response.
        let n: usize = n.parse().unwrap_or(10);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        tokio::spawn(async move {
            for i in 0..n {
                if tx
                    .send(Ok(Frame::data(Bytes::from(format!("chunk {i}\n")))))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Response::new(StreamBody::new(ReceiverStream(rx)).boxed())
    } else if path.ends_with("/silent") {
        // One chunk, then nothing until the gateway drops the response: a
        // quiet long-lived stream (server-sent events between events, a
        // long poll).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        tokio::spawn(async move {
            let _ = tx.send(Ok(Frame::data(Bytes::from("hello\n")))).await;
            tx.closed().await;
        });
        Response::new(StreamBody::new(ReceiverStream(rx)).boxed())
    } else if path == "/upload" {
        let mut body = req.into_body();
        let mut len = 0usize;
        let mut hasher = Sha256Stream::default();
        while let Some(frame) = body.frame().await {
            // A body the gateway broke off (the client went away): done.
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                len += data.len();
                hasher.update(&data);
            }
        }
        Response::new(full(format!("{len} {}", hasher.hex())))
    } else if let Some(cookie) = path.strip_prefix("/setcookie/") {
        let body = serde_json::json!({ "backend": name, "path": path });
        let mut r = Response::new(full(body.to_string()));
        r.headers_mut().insert(
            "set-cookie",
            format!("{cookie}; Path=/; HttpOnly").parse().unwrap(),
        );
        r
    } else if path == "/ws" || path.ends_with("/ws") {
        return Ok(websocket(&name, &mut req));
    } else {
        let body = serde_json::json!({ "backend": name, "path": req.uri().path(), "method": req.method().as_str() });
        Response::new(full(body.to_string()))
    };
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    Ok(resp)
}

/// `total` deterministic bytes (i % 251) in 64 KiB chunks.
pub fn pattern(total: usize) -> Vec<u8> {
    (0..total).map(|i| (i % 251) as u8).collect()
}

fn futures_stream(
    total: usize,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        let mut sent = 0;
        while sent < total {
            let n = (total - sent).min(64 * 1024);
            let chunk: Vec<u8> = (sent..sent + n).map(|i| (i % 251) as u8).collect();
            if tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                return;
            }
            sent += n;
        }
    });
    ReceiverStream(rx)
}

struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// Streaming SHA-256 (aws-lc-rs, already in the tree).
#[derive(Clone)]
pub struct Sha256Stream(aws_lc_rs::digest::Context);

impl Default for Sha256Stream {
    fn default() -> Self {
        Sha256Stream(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }
}

impl Sha256Stream {
    pub fn update(&mut self, d: &[u8]) {
        self.0.update(d);
    }
    pub fn hex(self) -> String {
        gatehouse::crypto::hex(self.0.finish().as_ref())
    }
}

/// RFC 6455 handshake, then echo each (small) frame back unmasked.
fn websocket(name: &str, req: &mut Request<Incoming>) -> Response<RespBody> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let accept = websocket_accept(&key);
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut io = TokioIo::new(up);
        loop {
            let mut head = [0u8; 2];
            if io.read_exact(&mut head).await.is_err() {
                return;
            }
            let opcode = head[0] & 0x0f;
            let masked = head[1] & 0x80 != 0;
            let len = (head[1] & 0x7f) as usize;
            if len >= 126 {
                return; // the tests send short frames only
            }
            let mut mask = [0u8; 4];
            if masked && io.read_exact(&mut mask).await.is_err() {
                return;
            }
            let mut payload = vec![0u8; len];
            if io.read_exact(&mut payload).await.is_err() {
                return;
            }
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            if opcode == 0x8 {
                let _ = io.write_all(&[0x88, 0]).await;
                return;
            }
            let mut out = vec![0x80 | opcode, len as u8];
            out.extend_from_slice(&payload);
            if io.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    r.headers_mut()
        .insert("connection", "Upgrade".parse().unwrap());
    r.headers_mut()
        .insert("sec-websocket-accept", accept.parse().unwrap());
    r.headers_mut().insert("x-backend", name.parse().unwrap());
    r
}

pub fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine;
    let mut data = key.to_vec();
    data.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &data);
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}
