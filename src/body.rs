//! The one body type the gateway sends, both to clients and to backends.
//!
//! An enum instead of a boxed trait object: no allocation per request, and
//! the upstream variant carries the guards that must live exactly as long
//! as the response stream (the pooled connection goes back to its pool at
//! end of stream; the backend's in-flight count drops when the stream does).

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Called once when an upstream response body has been read to its end.
pub trait OnEnd: Send + Sync {
    fn finished(self: Box<Self>);
}

/// Decides, frame by frame, whether a long response may go on (its
/// session or token still valid). Must be cheap: it runs on every frame.
pub trait StreamCheck: Send + Sync {
    fn still_valid(&mut self) -> bool;
}

pub enum Body {
    Empty,
    Full(Option<Bytes>),
    /// A request body from the client, streamed to the backend.
    Incoming(Incoming),
    /// A response body from a backend, streamed to the client.
    Upstream {
        inner: Incoming,
        on_end: Option<Box<dyn OnEnd>>,
        /// Dropped with the body (counts, tickets).
        _guard: Option<Box<dyn Send + Sync>>,
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
            Body::Upstream { inner, watch, .. } => {
                if let Some(w) = watch {
                    if !w.still_valid() {
                        // An error mid-body makes hyper abort the response
                        // (HTTP/1.1: the connection closes; HTTP/2: RST_STREAM).
                        return Poll::Ready(Some(Err(
                            "the session or token of this stream ended".into()
                        )));
                    }
                }
                let r = Pin::new(inner).poll_frame(cx);
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
            Body::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Incoming(i) => i.size_hint(),
            Body::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
