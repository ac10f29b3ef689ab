//! Serving one client connection with hyper: HTTP/1.1 or HTTP/2, the
//! keep-alive idle deadline, graceful shutdown, and parking of quiet
//! HTTP/1.1 connections.
//!
//! Parking: hyper keeps about 16 KiB of buffers per HTTP/1.1 connection
//! (an 8 KiB read buffer it reserves before every read, an 8 KiB write
//! buffer) plus its connection state for as long as the connection lives,
//! quiet or not. A keep-alive connection that stays quiet for
//! [`PARK_AFTER`] between two requests is parked: its socket (with its TLS
//! session) is taken back from hyper, hyper's connection is dropped with
//! its buffers, and this task waits for the client's next bytes; then a
//! new hyper connection picks the socket up. Parked, a connection costs its
//! socket, its TLS state and a small task (about 12 KiB with TLS, 9 KiB
//! without, against some 30 KiB unparked), so many idle clients cost little
//! memory. Coming back from parking costs a new hyper connection and a
//! peek at the socket, a few microseconds, only for requests that follow
//! a quiet spell.
//!
//! A connection is parked only after its first request (one that never
//! sends one meets the header deadline), and only at a message
//! boundary: no request in flight (the count drops when hyper drops the
//! response body), the framing guard between two heads (so hyper holds no
//! unparsed bytes), and no write waiting on the socket (so hyper has
//! flushed everything). The hand-over is `Tracked::poll_read` answering
//! end-of-stream to hyper after moving the socket into a slot this task
//! reads once hyper's connection ends.
//!
//! Header deadline: `header_read_timeout` bounds each request head from
//! its first byte (and the first request from the connection's start);
//! the quiet time between requests is `idle_timeout`'s. The loop keeps it
//! (`Watch::drive`), not hyper: hyper's HTTP/1 deadline is a timer armed
//! for every request, which also ran while a keep-alive connection waited
//! for its next request.

use super::{framing, ConnInfo};
use crate::body::Body;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// A quiet HTTP/1.1 keep-alive connection is parked after this long.
pub const PARK_AFTER: Duration = Duration::from_millis(100);

/// The most header fields in an HTTP/1.1 request head (431 past it).
const MAX_HEADERS: usize = 100;

/// Per-connection settings copied from the snapshot at accept time.
#[derive(Clone, Copy)]
pub(super) struct Limits {
    pub(super) header_read_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_header_bytes: usize,
}

impl From<&crate::config::Server> for Limits {
    fn from(s: &crate::config::Server) -> Self {
        Limits {
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
            max_header_bytes: s.max_header_bytes,
        }
    }
}

/// Which HTTP a connection speaks, as far as known before reading it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Proto {
    /// HTTP/1.1: ALPN said so, or the first bytes are no HTTP/2 preface.
    Http1,
    /// HTTP/2: ALPN said so.
    Http2,
    /// Not known yet: hyper's auto-detection reads the first bytes.
    Detect,
}

/// The HTTP/1.1 settings, for hyper's own builder and for the one inside
/// hyper-util's auto builder (two types with the same methods).
macro_rules! http1_settings {
    ($b:expr, $l:expr) => {
        // No hyper header deadline: hyper arms a timer for every request
        // head (a clock read, an allocation and a timer-wheel entry, about
        // 3 % of a proxied request's instructions). The connection's loop
        // keeps `header_read_timeout` instead, on the head in progress the
        // framing guard reports (`Watch::drive`).
        $b.timer(TokioTimer::new())
            .header_read_timeout(None::<Duration>)
            // A head over the limit is refused by the framing guard before
            // hyper's buffer fills (see `refuse_head`); hyper's own 431 at
            // a full buffer stays as the backstop. 8 KiB is its floor.
            .max_buf_size($l.max_header_bytes.max(8192))
            .max_headers(MAX_HEADERS)
            .keep_alive(true)
    };
}

/// The HTTP/2 settings, likewise.
macro_rules! http2_settings {
    ($b:expr, $l:expr) => {
        $b.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from($l.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(256)
            // Rapid-reset (CVE-2023-44487) and reset floods: bounded.
            .max_pending_accept_reset_streams(64)
            .max_local_error_reset_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
    };
}

fn http1_builder(l: Limits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    http1_settings!(b, l);
    b
}

fn http2_builder(l: Limits) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2_settings!(b, l);
    b
}

/// Both, for connections whose protocol hyper detects.
fn auto_builder(l: Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    http1_settings!(b.http1(), l);
    http2_settings!(b.http2(), l);
    b
}

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Plain TCP: a peek at the bytes already there tells HTTP/1.1 from an
/// HTTP/2 preface (prior knowledge) without consuming them. Anything not
/// yet decided by what arrived is left to hyper's detection.
async fn sniff(tcp: &TcpStream) -> Proto {
    let mut buf = [0u8; H2_PREFACE.len()];
    match tcp.peek(&mut buf).await {
        Ok(n) if n > 0 && !H2_PREFACE.starts_with(&buf[..n]) => Proto::Http1,
        _ => Proto::Detect,
    }
}

/// A client socket: plain TCP or TLS over TCP.
pub(super) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves when the client sent something (or closed): data is
    /// waiting in the socket, or already decrypted in the TLS session.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_;

    /// Settles [`Proto::Detect`] where the socket allows it.
    fn sniff(&self) -> impl Future<Output = Proto> + Send + '_;
}

/// Waits for a byte (or the end of the stream) in the socket. A peek, not
/// `readable()`: readiness can be left over from the last read.
async fn peek_one(tcp: &TcpStream) -> io::Result<()> {
    tcp.peek(&mut [0u8; 1]).await.map(|_| ())
}

impl ClientIo for TcpStream {
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        peek_one(self)
    }

    fn sniff(&self) -> impl Future<Output = Proto> + Send + '_ {
        sniff(self)
    }
}

impl ClientIo for Box<tokio_rustls::server::TlsStream<TcpStream>> {
    async fn readable(&mut self) -> io::Result<()> {
        let (tcp, tls) = self.get_mut();
        let buffered = tls
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            .plaintext_bytes_to_read();
        if buffered > 0 {
            return Ok(());
        }
        peek_one(tcp).await
    }

    fn sniff(&self) -> impl Future<Output = Proto> + Send + '_ {
        // Decrypted bytes cannot be peeked at: hyper detects.
        std::future::ready(Proto::Detect)
    }
}

/// What a connection's IO wrapper and its serving loop share.
#[derive(Default)]
struct ConnState {
    /// Reads and writes that moved bytes. Only the connection's own task
    /// writes it (a load and a store: no clock read, no locked
    /// instruction); the idle check reads it.
    events: AtomicU64,
    /// Requests whose response hyper has not finished with.
    in_flight: AtomicU32,
    /// A request was served: until then the connection is not parked, so
    /// a client that connects and says nothing still meets hyper's header
    /// deadline.
    served: AtomicBool,
    /// Set by the loop: park at the next read at a message boundary.
    park: AtomicBool,
    /// A response switched protocols (a relayed `101`, a `2xx` to
    /// `CONNECT`): hyper hands the socket, through this IO, to the tunnel,
    /// so the framing guard must stop reading the bytes as HTTP/1.1.
    switched: AtomicBool,
    /// HTTP/2: the header block in progress (`FramingGuard::h2_open_block`),
    /// 0 when none; the loop closes the connection when one stays
    /// unfinished for `header_read_timeout`.
    h2_block: AtomicU64,
    /// HTTP/1.1: the head in progress (`FramingGuard::h1_open_head`), 0
    /// when none, [`UNGUARDED`] once the guard stopped reading heads for
    /// any reason but a protocol switch; the loop closes the connection
    /// when one stays unfinished for `header_read_timeout`.
    h1_head: AtomicU64,
    /// HTTP/1.1: bytes read of a head over `max_header_bytes` (or
    /// [`MAX_HEADERS`]), 0 when none. Set when the IO handed the socket back for the loop to answer
    /// it ([`refuse_head`]).
    refused_head: AtomicUsize,
}

impl ConnState {
    fn touch(&self) {
        self.events
            .store(self.events.load(Relaxed).wrapping_add(1), Relaxed);
    }

    fn events(&self) -> u64 {
        self.events.load(Relaxed)
    }
}

/// `h1_head` once the framing guard is off on a connection still speaking
/// HTTP/1.1 (it found framing it refuses; hyper fails that message and
/// closes): no head can be timed any more, so the header deadline runs
/// from then on, and a connection hyper kept would be closed by it.
const UNGUARDED: u64 = u64::MAX;

/// A header block or head seen in progress by the loop's looks, and since
/// when: the same one (they are numbered) still open after the limit is
/// overdue.
#[derive(Default)]
struct OpenSince(Option<(u64, Instant)>);

impl OpenSince {
    fn overdue(&mut self, open: u64, limit: Duration) -> bool {
        match self.0 {
            _ if open == 0 => self.0 = None,
            Some((seen, since)) if seen == open => return since.elapsed() >= limit,
            _ => self.0 = Some((open, Instant::now())),
        }
        false
    }
}

/// Counts a request as in flight on its connection while alive.
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(state: &Arc<ConnState>) -> Busy {
        state.in_flight.fetch_add(1, Relaxed);
        state.served.store(true, Relaxed);
        Busy(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A response body that keeps its request in flight until hyper drops it
/// (written out, or the connection is gone).
pub(super) struct CountedBody {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Serves `io` until the client leaves, the connection idles out, or
/// shutdown has drained it.
pub(super) async fn serve_http<IO: ClientIo>(
    gw: Arc<Gateway>,
    io: IO,
    info: Arc<ConnInfo>,
    proto: Proto,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let state = Arc::new(ConnState::default());
    // A head's deadline starts with its first byte; before it, the
    // HTTP/1.1-or-HTTP/2 detection waits without one. A client that
    // connects and says nothing (or half an HTTP/2 preface) would hold its
    // connection slot until the idle timeout. So the first request must
    // have arrived within header_read_timeout of the connection's start.
    let mut cx = Client {
        gw,
        info,
        limits,
        idle: Idle {
            seen: state.events(),
            quiet_since: Instant::now(),
        },
        state,
        shutdown,
        first_request_by: Instant::now() + limits.header_read_timeout,
    };
    let mut io = io;
    let mut proto = proto;
    loop {
        if proto == Proto::Detect {
            // A client that says nothing meets the header deadline here.
            proto = tokio::select! {
                p = io.sniff() => p,
                _ = tokio::time::sleep(limits.header_read_timeout) => return,
                _ = cx.shutdown.changed() => return,
            };
        }
        // Boxed: while parked, this task keeps only the socket and a few
        // pointers, not room for hyper's connection and its builder.
        let served = Box::pin(serve_active(&mut cx, io, proto)).await;
        let Some(mut parked) = served else {
            return; // closed, or upgraded (the tunnel owns the socket now)
        };
        let refused = cx.state.refused_head.load(Relaxed);
        if refused > 0 {
            cx.gw.snapshot().no_route_metrics.requests.inc(431);
            Box::pin(refuse_head(
                &cx.gw,
                parked,
                refused,
                limits,
                &mut cx.shutdown,
            ))
            .await;
            return;
        }
        let close = *cx.shutdown.borrow()
            || tokio::select! {
                r = parked.readable() => r.is_err(),
                _ = cx.shutdown.changed() => true,
                _ = tokio::time::sleep_until(cx.idle.quiet_since + limits.idle_timeout) => true,
            };
        if close {
            let _ = tokio::time::timeout(Duration::from_secs(1), parked.shutdown()).await;
            return;
        }
        io = parked;
        // Only HTTP/1.1 connections park.
        proto = Proto::Http1;
    }
}

/// One client connection's state that outlives each spell of hyper
/// serving it: owned by `serve_http`'s task, lent to `serve_active` for
/// one spell at a time (between spells the socket is parked).
struct Client {
    gw: Arc<Gateway>,
    info: Arc<ConnInfo>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
    state: Arc<ConnState>,
    idle: Idle,
    /// The first request's head must be in by then (see `serve_http`).
    first_request_by: Instant,
}

/// The most of a refused head read before its connection closes: SPEC 16
/// lets a client send a head of up to 256 KiB and still read the 431.
const REFUSED_HEAD_MAX: usize = 256 * 1024;

/// Answers an HTTP/1.1 head over `max_header_bytes` (or with more than
/// [`MAX_HEADERS`] fields), of which `read` bytes were read, with 431 (the gateway's error body and a request id), then
/// ends the connection (SPEC 16).
///
/// A socket closed with bytes unread makes the kernel send a reset, and a
/// client still sending its head meets it before it reads any answer. So,
/// after the answer and the end of the gateway's side (FIN, after a TLS
/// close_notify), the rest is read and dropped until the client closes
/// its side: up to [`REFUSED_HEAD_MAX`] bytes of head in all, for up to
/// `header_read_timeout` (the time any head may take), or until shutdown.
/// Past either bound the connection just closes. It costs an 8 KiB buffer
/// for that while, only on such connections, and the answer is smaller
/// than what it answers.
async fn refuse_head<IO: ClientIo>(
    gw: &Gateway,
    mut io: IO,
    read: usize,
    limits: Limits,
    shutdown: &mut watch::Receiver<bool>,
) {
    let request_id = gw.request_ids.next();
    tracing::debug!(
        request_id = request_id.to_str().unwrap_or(""),
        read,
        limit = limits.max_header_bytes,
        "request head over max_header_bytes"
    );
    // JSON: the head that would say whether the client wants HTML was
    // not kept.
    let mut resp = crate::proxy::respond::error(&GatewayError::HeadersTooLarge, &request_id, false);
    resp.headers_mut()
        .insert(&crate::proxy::headers::X_REQUEST_ID, request_id);
    let answer = http1_response_bytes(resp);
    let deadline = Instant::now() + limits.header_read_timeout;
    let answered = tokio::time::timeout_at(deadline, async {
        io.write_all(&answer).await?;
        io.shutdown().await
    })
    .await;
    if !matches!(answered, Ok(Ok(()))) || *shutdown.borrow() {
        return;
    }
    let mut left = REFUSED_HEAD_MAX.saturating_sub(read);
    let mut buf = vec![0u8; 8192];
    while left > 0 {
        let n = tokio::select! {
            r = io.read(&mut buf) => match r {
                Ok(n) if n > 0 => n,
                _ => return, // the client closed (or reset)
            },
            _ = tokio::time::sleep_until(deadline) => return,
            _ = shutdown.changed() => return,
        };
        left = left.saturating_sub(n);
    }
}

/// An error response as HTTP/1.1 bytes, for the one answer written without
/// hyper ([`refuse_head`]): status line, the response's headers, a
/// `Content-Length`, `Connection: close` and a `Date`, as hyper would.
fn http1_response_bytes(resp: http::Response<Body>) -> Vec<u8> {
    let (parts, body) = resp.into_parts();
    let body = match body {
        Body::Full(Some(b)) => b,
        _ => Bytes::new(),
    };
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in &parts.headers {
        line(name.as_str().as_bytes(), value.as_bytes());
    }
    line(b"content-length", body.len().to_string().as_bytes());
    line(b"connection", b"close");
    let now = std::time::UNIX_EPOCH + Duration::from_millis(crate::clock::now_ms());
    line(b"date", http_date(now).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 section 5.6.7).
fn http_date(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
    )
}

/// Serves one plain HTTP/1.1 connection of a side listener (admin,
/// redirect) with the main listener's per-connection bounds: the first
/// request within `header_read_timeout`, every head within it too from
/// its first byte, heads over `max_header_bytes` or 100 headers
/// answered 431 (by the framing guard and [`refuse_head`], as on the main
/// listener: its smuggling check comes along, harmless here), the
/// connection closed after `idle_timeout` without a byte moving, and
/// drained on shutdown. No parking: these connections are few.
pub(super) async fn serve_side<S>(
    gw: &Gateway,
    stream: TcpStream,
    service: S,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<Body>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let state = Arc::new(ConnState::default());
    let served = state.clone();
    let service = service_fn(move |req| {
        served.served.store(true, Relaxed);
        service.call(req)
    });
    let slot = Arc::new(Mutex::new(None));
    let io = TokioIo::new(Tracked {
        inner: Some(stream),
        state: state.clone(),
        framing: Some(framing::FramingGuard::http1(
            limits.max_header_bytes,
            MAX_HEADERS,
        )),
        slot: slot.clone(),
        write_blocked: false,
        head_too_large: false,
    });
    let mut idle = Idle {
        seen: state.events(),
        quiet_since: Instant::now(),
    };
    let conn = http1_builder(limits).serve_connection(io, service);
    tokio::pin!(conn);
    Watch {
        shutdown: &mut shutdown,
        state: &state,
        idle: &mut idle,
        limits,
        may_park: false,
        first_request_by: Instant::now() + limits.header_read_timeout,
    }
    .drive(conn, |c| c.graceful_shutdown())
    .await;
    let refused = state.refused_head.load(Relaxed);
    let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let (true, Some(io)) = (refused > 0, taken) {
        Box::pin(refuse_head(gw, io, refused, limits, &mut shutdown)).await;
    }
}

/// When a connection was last seen moving bytes.
struct Idle {
    seen: u64,
    quiet_since: Instant,
}

/// Serves `io` with hyper until the connection ends (`None`) or parks
/// (`Some`: the socket, at a message boundary, hyper's side dropped).
async fn serve_active<IO: ClientIo>(cx: &mut Client, io: IO, proto: Proto) -> Option<IO> {
    let Client {
        gw,
        info,
        limits,
        shutdown,
        state,
        idle,
        first_request_by,
    } = cx;
    let (limits, first_request_by) = (*limits, *first_request_by);
    let (gw, info, counted) = (gw.clone(), info.clone(), state.clone());
    // The request's future is boxed: hyper keeps the service future inside
    // the connection's state, so an unboxed one would make every
    // connection as large as the largest request state (several KiB).
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let busy = Busy::new(&counted);
        let connect = req.method() == http::Method::CONNECT;
        let handled = crate::proxy::handle(gw.clone(), info.clone(), req);
        Box::pin(async move {
            let Ok(resp) = handled.await;
            // Set before hyper writes the response: a client may send
            // tunnel bytes only once it has read it (RFC 6455 section 4.1;
            // RFC 9110 section 9.3.6).
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS
                || (connect && resp.status().is_success())
            {
                busy.0.switched.store(true, Relaxed);
            }
            Ok::<_, Infallible>(resp.map(|body| CountedBody { body, _busy: busy }))
        })
    });
    let slot = Arc::new(Mutex::new(None));
    let io = TokioIo::new(Tracked {
        inner: Some(io),
        state: state.clone(),
        framing: Some(match proto {
            Proto::Http2 => framing::FramingGuard::http2(),
            Proto::Http1 | Proto::Detect => {
                framing::FramingGuard::http1(limits.max_header_bytes, MAX_HEADERS)
            }
        }),
        slot: slot.clone(),
        write_blocked: false,
        head_too_large: false,
    });
    let watch = Watch {
        shutdown,
        state,
        idle,
        limits,
        may_park: proto != Proto::Http2,
        first_request_by,
    };
    // One builder per protocol: hyper's auto-detection costs a read of
    // the first bytes on every connection and, through them, doubles
    // hyper's read buffer (16 KiB instead of 8).
    match proto {
        Proto::Http1 => {
            let builder = http1_builder(limits);
            let conn = builder.serve_connection(io, service).with_upgrades();
            tokio::pin!(conn);
            watch.drive(conn, |c| c.graceful_shutdown()).await;
        }
        Proto::Http2 => {
            let builder = http2_builder(limits);
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            watch.drive(conn, |c| c.graceful_shutdown()).await;
        }
        Proto::Detect => {
            let builder = auto_builder(limits);
            let conn = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(conn);
            watch.drive(conn, |c| c.graceful_shutdown()).await;
        }
    }
    state.park.store(false, Relaxed);
    let parked = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    parked
}

/// What drives a hyper connection besides hyper: shutdown, the idle
/// deadline and parking.
struct Watch<'a> {
    shutdown: &'a mut watch::Receiver<bool>,
    state: &'a ConnState,
    idle: &'a mut Idle,
    limits: Limits,
    may_park: bool,
    first_request_by: Instant,
}

impl Watch<'_> {
    /// Polls `conn` to its end, starting its graceful shutdown on the
    /// gateway's shutdown or at the idle deadline, and asking the IO to park
    /// a quiet HTTP/1.1 connection.
    async fn drive<C: Future>(self, mut conn: Pin<&mut C>, graceful: fn(Pin<&mut C>)) {
        let Watch {
            shutdown,
            state,
            idle,
            limits,
            may_park,
            first_request_by,
        } = self;
        let mut closing = *shutdown.borrow();
        if closing {
            graceful(conn.as_mut());
        }
        // Idle deadline: the connection is looked at every quarter of
        // `idle_timeout` (at most every PARK_AFTER); one that moved no byte
        // since `quiet_since` for a whole `idle_timeout` is closed, so
        // between 1x and 1.25x the timeout after its last byte.
        let check_every = (limits.idle_timeout / 4)
            .min(PARK_AFTER)
            .max(Duration::from_millis(10));
        // Header deadlines. A request head (HTTP/1.1, `h1_head`) or
        // header block (HTTP/2, `h2_block`), as the framing pass reports
        // it, seen in progress for `header_read_timeout` closes the
        // connection: at once, as a goodbye would wait on the client. The
        // same one seen at two looks, `check_every` apart at most, is the
        // same one (they are numbered), so the cut comes between the limit
        // and the limit plus two looks after its first byte. hyper's own
        // HTTP/1 deadline is off (a timer per request); HTTP/2 has none,
        // and h2 bounds a header block's size and CONTINUATION frames but
        // not its time: without this, heads after the first would be
        // bounded only by the idle timeout, which a trickling client keeps
        // away.
        let mut open_head = OpenSince::default();
        let mut open_block = OpenSince::default();
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = tokio::time::sleep_until(first_request_by), if !state.served.load(Relaxed) => {
                    if !state.served.load(Relaxed) {
                        // Nothing in flight to finish: close at once (an
                        // HTTP/2 goodbye would wait on a client that says
                        // nothing).
                        return;
                    }
                }
                r = shutdown.changed(), if !closing => {
                    if r.is_err() || *shutdown.borrow() {
                        // HTTP/1: finish the current request, then close.
                        // HTTP/2: GOAWAY, finish open streams.
                        graceful(conn.as_mut());
                        closing = true;
                    }
                }
                _ = tokio::time::sleep(check_every) => {
                    let limit = limits.header_read_timeout;
                    // A head read behind a request still being answered
                    // (pipelined) waits on the gateway, not the client:
                    // its time starts once the responses before it are
                    // out, as hyper's deadline did.
                    let head = match state.in_flight.load(Relaxed) {
                        0 => state.h1_head.load(Relaxed),
                        _ => 0,
                    };
                    if open_head.overdue(head, limit) {
                        tracing::debug!("HTTP/1.1 request head not finished in time");
                        return;
                    }
                    if open_block.overdue(state.h2_block.load(Relaxed), limit) {
                        tracing::debug!("HTTP/2 header block not finished in time");
                        return;
                    }
                    if closing {
                        continue;
                    }
                    let now = state.events();
                    if now != idle.seen {
                        idle.seen = now;
                        idle.quiet_since = Instant::now();
                        state.park.store(false, Relaxed);
                    } else if idle.quiet_since.elapsed() >= limits.idle_timeout {
                        graceful(conn.as_mut());
                        closing = true;
                    } else if may_park
                        && state.served.load(Relaxed)
                        && idle.quiet_since.elapsed() >= PARK_AFTER
                    {
                        // Taken up by Tracked::poll_read when hyper next
                        // reads, which the next poll of `conn` makes it do.
                        state.park.store(true, Relaxed);
                    }
                }
            }
        }
    }
}

/// The client socket as hyper sees it: records activity (for the idle
/// deadline), guards HTTP/1.1 request framing (`framing.rs`), and hands
/// the socket back to the loop when asked to park. After a protocol
/// switch hyper's `Upgraded` still reads through it (the tunnel's client
/// side), which is why the guard is told about the switch rather than
/// stopping at a head that asks for one.
struct Tracked<IO> {
    /// `None` once handed over to `slot`.
    inner: Option<IO>,
    state: Arc<ConnState>,
    framing: Option<framing::FramingGuard>,
    slot: Arc<Mutex<Option<IO>>>,
    /// The last write or flush waited on the socket.
    write_blocked: bool,
    /// The guard found a head over `max_header_bytes` (or [`MAX_HEADERS`]):
    /// hyper gets nothing more, and the socket goes back to the loop, which
    /// answers 431.
    head_too_large: bool,
}

impl<IO> Tracked<IO> {
    /// Nothing of hyper's in progress: no request in flight, no write
    /// waiting on the socket.
    fn quiet(&self) -> bool {
        self.state.in_flight.load(Relaxed) == 0 && !self.write_blocked
    }

    fn parkable(&self) -> bool {
        self.quiet() && self.framing.as_ref().is_some_and(|g| g.at_message_start())
    }

    /// Gives the socket to the loop: hyper, reading the end of the stream,
    /// ends its connection.
    fn hand_over(&mut self) {
        if let Some(io) = self.inner.take() {
            *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(io);
        }
    }

    /// A read after a head over the limit was found: the end of the stream
    /// once hyper finished the request before it (if one is in flight, hyper
    /// reads again when its response is out; the loop also polls hyper
    /// every `PARK_AFTER` at most). hyper, holding at most an unfinished
    /// head under its limit, ends the connection without answering.
    fn poll_refused(&mut self) -> Poll<io::Result<()>> {
        if self.inner.is_none() || self.quiet() {
            self.hand_over();
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.state.park.load(Relaxed) && this.parkable() {
            // Park: the socket goes to the loop, and hyper reads the end of
            // the stream at a message boundary, so it ends the connection.
            this.hand_over();
        }
        if this.head_too_large {
            return this.poll_refused();
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let before = buf.filled().len();
        let r = Pin::new(inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.touch();
            if let Some(g) = &mut this.framing {
                if this.state.switched.load(Relaxed) {
                    g.switched();
                }
                g.scan(&mut buf.filled_mut()[before..]);
                this.state.h2_block.store(g.h2_open_block(), Relaxed);
                this.state.h1_head.store(g.h1_open_head(), Relaxed);
                if let Some(big) = g.too_large() {
                    // hyper gets what ends the message before the head (if
                    // anything), never the head: the rest of this read is
                    // dropped, and the loop reads the rest of the head.
                    buf.set_filled(before + big.starts_at);
                    this.head_too_large = true;
                    this.state.refused_head.store(big.read, Relaxed);
                    this.framing = None;
                    if big.starts_at == 0 {
                        return this.poll_refused();
                    }
                } else if g.is_done() {
                    this.framing = None;
                    if !this.state.switched.load(Relaxed) {
                        this.state.h1_head.store(UNGUARDED, Relaxed);
                    }
                }
            }
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> Tracked<IO> {
    /// One write to the socket: remembers whether it had to wait (a parked
    /// connection must have nothing pending) and counts it as activity.
    fn write_with(
        &mut self,
        write: impl FnOnce(&mut IO) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "connection parked",
            )));
        };
        let r = write(inner);
        self.write_blocked = r.is_pending();
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(|io| Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(|io| Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let r = Pin::new(inner).poll_flush(cx);
        this.write_blocked = r.is_pending();
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            // Parked: the socket stays open for the loop.
            None => Poll::Ready(Ok(())),
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn http_dates_are_imf_fixdates() {
        let at = |secs| http_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_798_761_599), "Thu, 31 Dec 2026 23:59:59 GMT");
    }

    #[test]
    fn the_refusal_is_a_whole_http1_response() {
        let id = http::HeaderValue::from_static("abc123");
        let bytes = http1_response_bytes(crate::proxy::respond::error(
            &GatewayError::HeadersTooLarge,
            &id,
            false,
        ));
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        assert!(head.contains("\r\ncontent-type: application/json"));
        assert_eq!(
            body,
            "{\"error\":\"request header fields too large\",\"request_id\":\"abc123\"}\n"
        );
    }
}
