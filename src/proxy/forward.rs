//! Sending a request to a backend: choose, connect or reuse, send, and
//! retry only what never reached a backend.

use crate::body::{Body, BodyProgress, BodyState};
use crate::error::GatewayError;
use crate::upstream::pool::{self, ReturnToPool};
use crate::upstream::select::Decision;
use crate::upstream::sticky::{Affinity, X_GATEHOUSE_REHOMED};
use crate::upstream::{Backend, BackendSet, InFlight, Upstream};
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;

/// A backend's answer (headers received), with what must live as long as
/// its body.
pub struct Forwarded {
    pub response: Response<Incoming>,
    pub backend: Arc<Backend>,
    pub in_flight: InFlight,
    /// The connection, to go back to the pool at end of body (`None` after
    /// an upgrade: the connection now belongs to the tunnel).
    pub conn: Option<ReturnToPool>,
    /// Which backend of the set answered, and whether a sticky client was
    /// moved to it.
    pub decision: Decision,
}

/// At most this many distinct backends are tried for one request.
const MAX_TRIED: usize = 8;

/// Forwards `req` to a backend of `set` (the upstream's backends, loaded
/// once for this request), honouring the request's affinity `aff`. A
/// request is retried (up to `retries` times, on other backends) when it
/// was never sent: connect refused or timed out, or a pooled connection
/// found closed before the request went out. A request that may have
/// reached a backend is retried only when it is idempotent (RFC 9110
/// section 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE), had no body,
/// and its connection was lost before any response came: RFC 9110 allows
/// that, and it is what keeps a backend that dies mid-request from
/// failing the reads in flight. A timeout is never retried.
///
/// A sticky client sent to another backend than its own (its backend is
/// down, gone, or refused the connection) carries `X-Gatehouse-Rehomed: 1`.
pub async fn forward(
    up: &Upstream,
    set: &BackendSet,
    aff: &Affinity,
    mut req: Request<Body>,
) -> Result<Forwarded, GatewayError> {
    let progress = match req.body() {
        Body::Request(b) => Some(b.progress()),
        _ => None,
    };
    let mut tried = [usize::MAX; MAX_TRIED];
    let mut n_tried = 0;
    let mut retries_left = up.retries;
    // Pooled connections found dead after checkout; bounded so a backend
    // that closes everything cannot loop us.
    let mut stale_left = 3;
    let mut last_connect_error = None;
    let mut last_lost: Option<hyper::Error> = None;
    let replayable = is_idempotent(req.method()) && http_body::Body::is_end_stream(req.body());
    loop {
        let Some(decision) = up.choose(set, aff, &tried[..n_tried]) else {
            if let Some(e) = last_lost {
                return Err(GatewayError::BackendFailed(e));
            }
            return Err(match last_connect_error {
                Some(e) => GatewayError::BackendConnect(e),
                None => GatewayError::NoHealthyBackend,
            });
        };
        let i = decision.index;
        if decision.rehomed {
            req.headers_mut()
                .insert(&X_GATEHOUSE_REHOMED, HeaderValue::from_static("1"));
        } else {
            req.headers_mut().remove(&X_GATEHOUSE_REHOMED);
        }
        let backend = &set.backends[i];
        crate::telemetry::set_backend(backend);
        let in_flight = backend.track();
        let mut sender = match backend.pool.checkout() {
            Some(mut s) => match s.ready().await {
                Ok(()) => Some(s),
                Err(_) => None,
            },
            None => None,
        };
        if sender.is_none() {
            match pool::connect(up, backend).await {
                Ok(mut s) => {
                    if s.ready().await.is_ok() {
                        sender = Some(s);
                    }
                }
                Err(e) => {
                    backend.record_failure(&up.health);
                    tracing::debug!(backend = %backend.addr, error = %e, "connect failed");
                    last_connect_error = Some(e);
                }
            }
        }
        let Some(mut sender) = sender else {
            // Never reached this backend: another may take it.
            if retries_left == 0 || n_tried == MAX_TRIED {
                return Err(GatewayError::BackendConnect(
                    last_connect_error
                        .unwrap_or_else(|| std::io::Error::other("connection not ready")),
                ));
            }
            retries_left -= 1;
            tried[n_tried] = i;
            n_tried += 1;
            continue;
        };
        // What is needed to send it again, when that may be allowed.
        let replay = (replayable && retries_left > 0 && n_tried < MAX_TRIED).then(|| {
            (
                req.method().clone(),
                req.uri().clone(),
                req.version(),
                req.headers().clone(),
            )
        });
        let exchange = tokio::select! {
            r = sender.try_send_request(req) => Some(r),
            _ = response_clock(progress.as_deref(), up.request_timeout) => None,
        };
        match exchange {
            None => {
                if let Some(e) = client_fault(progress.as_deref()) {
                    return Err(e);
                }
                backend.record_failure(&up.health);
                return Err(GatewayError::BackendTimeout);
            }
            Some(Ok(response)) => {
                if response.status().is_server_error() {
                    backend.record_failure(&up.health);
                } else {
                    backend.record_success();
                }
                backend.requests.inc(response.status().as_u16());
                return Ok(Forwarded {
                    response,
                    backend: backend.clone(),
                    in_flight,
                    conn: Some(ReturnToPool {
                        backend: backend.clone(),
                        sender,
                    }),
                    decision,
                });
            }
            Some(Err(mut e)) => match e.take_message() {
                Some(unsent) if stale_left > 0 => {
                    // The connection died before our request went out.
                    stale_left -= 1;
                    req = unsent;
                }
                _ => {
                    // A body the client broke off, sent malformed or too
                    // slowly is no fault of the backend's: no passive
                    // ejection for it, and the client hears what it did.
                    if let Some(fault) = client_fault(progress.as_deref()) {
                        return Err(fault);
                    }
                    backend.record_failure(&up.health);
                    let e = e.into_error();
                    match replay {
                        Some((method, uri, version, headers)) if connection_lost(&e) => {
                            tracing::debug!(backend = %backend.addr, error = %e, "connection lost; retrying an idempotent request");
                            let mut again = Request::new(Body::Empty);
                            *again.method_mut() = method;
                            *again.uri_mut() = uri;
                            *again.version_mut() = version;
                            *again.headers_mut() = headers;
                            req = again;
                            retries_left -= 1;
                            tried[n_tried] = i;
                            n_tried += 1;
                            last_lost = Some(e);
                        }
                        _ => return Err(GatewayError::BackendFailed(e)),
                    }
                }
            },
        }
    }
}

/// Runs out when the backend has had `request_timeout` to answer, counted
/// from the end of the request body: a large upload is not the backend's
/// delay. A body still arriving at its deadline starts the count then, so
/// a backend that stops reading cannot hold the request for ever.
async fn response_clock(progress: Option<&BodyProgress>, request_timeout: std::time::Duration) {
    if let Some(p) = progress {
        match p.deadline {
            Some(d) => {
                tokio::select! {
                    _ = p.ended() => {}
                    _ = tokio::time::sleep_until(d) => {}
                }
            }
            None => p.ended().await,
        }
    }
    tokio::time::sleep(request_timeout).await;
}

/// The client's part in a failed exchange, if its body is to blame.
fn client_fault(progress: Option<&BodyProgress>) -> Option<GatewayError> {
    match progress?.state() {
        BodyState::TimedOut => Some(GatewayError::RequestTimeout),
        BodyState::Failed => Some(GatewayError::ClientBody),
        BodyState::Receiving | BodyState::Complete => None,
    }
}

/// RFC 9110 section 9.2.2.
fn is_idempotent(m: &http::Method) -> bool {
    matches!(
        *m,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::TRACE
            | http::Method::PUT
            | http::Method::DELETE
    )
}

/// The connection broke (closed, reset) rather than the backend answering
/// something unreadable.
fn connection_lost(e: &hyper::Error) -> bool {
    e.is_incomplete_message()
        || e.is_closed()
        || e.is_canceled()
        || e.is_body_write_aborted()
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}
