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
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum Body {
    Empty,
    Full(Option<Bytes>),
    /// A request body from the client, streamed to the backend.
    Incoming(Incoming),
    /// A response body from a backend, streamed to the client.
    Upstream {
        inner: Incoming,
        /// The connection, back to its pool once the body was read to its
        /// end (`None` when it must not be reused).
        on_end: Option<ReturnToPool>,
        /// The backend's in-flight count, dropped with the body.
        _in_flight: Option<InFlight>,
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
            Body::Upstream { inner, .. } => {
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
