//! The one body type the gateway sends, both to clients and to backends.
//!
//! An enum instead of a boxed trait object: no allocation per request, and
//! the upstream variant carries, by value, the guards that must live
//! exactly as long as the response stream (the pooled connection goes back
//! to its pool at end of stream; the backend's in-flight count drops when
//! the stream does).

use crate::upstream::pool::ReturnToPool;
use crate::upstream::InFlight;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Decides whether a long response may go on (its session or token still
/// valid). Polled with the body, so it registers the task to be woken when
/// that may have changed (a revocation naming it, its deadline): a silent
/// backend does not keep a revoked stream open. Must be cheap: it runs on
/// every frame.
pub trait StreamCheck: Send + Sync {
    /// `idle`: the backend has nothing for the client right now (the
    /// stream is waiting); `frame_bytes`: data just passed on.
    fn poll_valid(&mut self, cx: &mut Context<'_>, idle: bool, frame_bytes: u64) -> bool;
}

pub enum Body {
    Empty,
    Full(Option<Bytes>),
    /// A request body from the client, streamed to the backend.
    Incoming(Incoming),
    /// The same, with a deadline and a record of how it went.
    Request(RequestBody),
    /// A response body from a backend, streamed to the client.
    Upstream {
        inner: Incoming,
        /// The connection, back to its pool once the body was read to its
        /// end (`None` when it must not be reused).
        on_end: Option<ReturnToPool>,
        /// The backend's in-flight count, dropped with the body.
        _in_flight: Option<InFlight>,
        /// Ends the stream when the credential it was opened with ends.
        watch: Option<Box<dyn StreamCheck>>,
    },
}

impl Body {
    pub fn full(b: impl Into<Bytes>) -> Body {
        Body::Full(Some(b.into()))
    }

    fn end(&mut self) {
        if let Body::Upstream { on_end, .. } = self {
            if let Some(f) = on_end.take() {
                f.finished();
            }
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            Body::Incoming(i) => Pin::new(i).poll_frame(cx).map_err(Into::into),
            Body::Request(r) => r.poll_frame(cx),
            Body::Upstream { inner, watch, .. } => {
                let r = Pin::new(inner).poll_frame(cx);
                if let Some(w) = watch {
                    let (idle, n) = match &r {
                        Poll::Pending => (true, 0),
                        Poll::Ready(Some(Ok(f))) => {
                            (false, f.data_ref().map_or(0, |d| d.len() as u64))
                        }
                        _ => (false, 0),
                    };
                    if !w.poll_valid(cx, idle, n) {
                        // An error mid-body makes hyper abort the response
                        // (HTTP/1.1: the connection closes; HTTP/2:
                        // RST_STREAM). A frame just read is not passed on.
                        return Poll::Ready(Some(Err(
                            "the session or token of this stream ended".into()
                        )));
                    }
                }
                match &r {
                    Poll::Ready(None) => this.end(),
                    Poll::Ready(Some(Ok(_))) if http_body::Body::is_end_stream(&*this) => {
                        this.end()
                    }
                    _ => {}
                }
                r.map_err(Into::into)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Incoming(i) => i.is_end_stream(),
            Body::Request(r) => r.inner.is_end_stream(),
            Body::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Incoming(i) => i.size_hint(),
            Body::Request(r) => r.inner.size_hint(),
            Body::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

/// How a client's request body went: still arriving, all in, cut off by
/// its deadline, or broken by the client (closed early, bad chunking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyState {
    Receiving,
    Complete,
    TimedOut,
    Failed,
}

/// Shared between the body (which writes it) and the forwarding code
/// (which reads it when a backend exchange fails or takes long, to tell a
/// client's fault from a backend's).
#[derive(Debug)]
pub struct BodyProgress {
    state: AtomicU8,
    ended: tokio::sync::Notify,
    /// When the whole body must have arrived, if there is such a deadline.
    pub deadline: Option<Instant>,
}

impl BodyProgress {
    pub fn state(&self) -> BodyState {
        match self.state.load(Ordering::Acquire) {
            0 => BodyState::Receiving,
            1 => BodyState::Complete,
            2 => BodyState::TimedOut,
            _ => BodyState::Failed,
        }
    }

    fn set(&self, s: BodyState) {
        let v = match s {
            BodyState::Receiving => 0,
            BodyState::Complete => 1,
            BodyState::TimedOut => 2,
            BodyState::Failed => 3,
        };
        self.state.store(v, Ordering::Release);
        self.ended.notify_waiters();
    }

    /// Resolves once the body is no longer arriving.
    pub async fn ended(&self) {
        loop {
            let wait = self.ended.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            if self.state() != BodyState::Receiving {
                return;
            }
            wait.await;
        }
    }
}

/// The request body arrived too slowly: past `[server] request_body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
pub struct BodyTimedOut;

/// A client's request body with a deadline for all of it: past the
/// deadline the next read fails (and the backend exchange with it), so a
/// client trickling a body cannot hold a connection and a backend slot
/// for ever.
pub struct RequestBody {
    inner: Incoming,
    timer: Option<Pin<Box<Sleep>>>,
    progress: Arc<BodyProgress>,
}

impl RequestBody {
    pub fn new(inner: Incoming, deadline: Option<Instant>) -> RequestBody {
        let state = if inner.is_end_stream() { 1 } else { 0 };
        RequestBody {
            timer: deadline
                .filter(|_| state == 0)
                .map(|d| Box::pin(tokio::time::sleep_until(d))),
            inner,
            progress: Arc::new(BodyProgress {
                state: AtomicU8::new(state),
                ended: tokio::sync::Notify::new(),
                deadline,
            }),
        }
    }

    pub fn progress(&self) -> Arc<BodyProgress> {
        self.progress.clone()
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.progress.state() != BodyState::Receiving {
            return match self.progress.state() {
                BodyState::TimedOut => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
                _ => Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into),
            };
        }
        if let Some(t) = &mut self.timer {
            if t.as_mut().poll(cx).is_ready() {
                self.progress.set(BodyState::TimedOut);
                return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
            }
        }
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.progress.set(BodyState::Complete),
            Poll::Ready(Some(Err(_))) => self.progress.set(BodyState::Failed),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => {
                self.progress.set(BodyState::Complete)
            }
            _ => {}
        }
        r.map_err(Into::into)
    }
}
