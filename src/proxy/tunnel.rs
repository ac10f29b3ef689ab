//! An upgraded connection (a WebSocket): bytes relayed both ways until
//! either side closes, shutdown's grace ends it, or the credential it was
//! opened with ends.
//!
//! The credential is watched without polling (`crate::revocation::liveness`): the
//! tunnel sleeps on its registration's doorbell and on one timer for the
//! credential's own deadline. Woken by a revocation naming it, it looks in
//! memory; at the deadline it asks the store (a session may have been used
//! meanwhile, which moves its idle deadline). When the credential is gone,
//! the client gets a WebSocket close frame, 1008 (policy violation), before
//! the TCP close, so browsers report why instead of 1006.

use super::headers;
use crate::body::Body;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::revocation::liveness::{instant_at, Liveness};
use http::{header, Request, Response, StatusCode, Version};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// A WebSocket handshake the client sent on a route that allows them: the
/// client side of the upgrade (taken before the request goes out) and the
/// `Sec-WebSocket-Accept` the backend's 101 must carry (SPEC 16).
pub(super) struct Handshake {
    client: hyper::upgrade::OnUpgrade,
    accept: Option<headers::WebSocketAccept>,
}

impl Handshake {
    /// The handshake of this request, if it is one the route allows
    /// (HTTP/1.1 only). Its upgrade headers then survive the rewrite.
    pub(super) fn take(
        allowed: bool,
        parts: http::request::Parts,
    ) -> (http::request::Parts, Option<Handshake>) {
        if !(allowed
            && parts.version == Version::HTTP_11
            && headers::is_websocket_upgrade(&parts.headers))
        {
            return (parts, None);
        }
        // Taken before the request is sent: the key goes to the backend.
        let accept = headers::WebSocketAccept::for_request(&parts.headers);
        let mut tmp = Request::from_parts(parts, ());
        let client = hyper::upgrade::on(&mut tmp);
        (tmp.into_parts().0, Some(Handshake { client, accept }))
    }
}

/// A backend answered 101. Relayed only as the answer to the WebSocket
/// handshake the client sent: anything else would turn the client's
/// connection into a raw byte pipe to the backend, past every check of the
/// gateway. The tunnel then runs on its own task; the client gets the 101
/// (with the affinity cookie, if any).
pub(super) fn switch(
    handshake: Option<Handshake>,
    mut response: Response<hyper::body::Incoming>,
    in_flight: crate::upstream::InFlight,
    gw: &Arc<Gateway>,
    liveness: Option<Liveness>,
    opened_ms: u64,
    set_cookie: Option<http::HeaderValue>,
) -> Result<Response<Body>, GatewayError> {
    debug_assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let Some(Handshake {
        client,
        accept: Some(accept),
    }) = handshake
    else {
        return Err(GatewayError::UnexpectedSwitch);
    };
    if !accept.answered_by(response.headers()) {
        return Err(GatewayError::UnexpectedSwitch);
    }
    let backend = hyper::upgrade::on(&mut response);
    tokio::spawn(run(
        client,
        backend,
        in_flight,
        gw.shutdown.subscribe(),
        gw.clone(),
        liveness,
        opened_ms,
    ));
    let (mut parts, _) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, true);
    if let Some(c) = set_cookie {
        parts.headers.append(header::SET_COOKIE, c);
    }
    Ok(Response::from_parts(parts, Body::Empty))
}

/// RFC 6455 section 5.5.1: FIN + close opcode, unmasked (server to client),
/// a 2-byte status 1008 and a short reason.
const CLOSE_POLICY: &[u8] = b"\x88\x09\x03\xf0revoked";

/// How long the client gets to take the close frame.
const CLOSE_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

async fn run(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    in_flight: crate::upstream::InFlight,
    shutdown: tokio::sync::watch::Receiver<bool>,
    gw: Arc<Gateway>,
    liveness: Option<Liveness>,
    opened_ms: u64,
) {
    // Holding a shutdown receiver makes a graceful shutdown wait for this
    // tunnel, up to the grace period.
    let _draining = shutdown;
    let _in_flight = in_flight;
    let (c, b) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut c = hyper_util::rt::TokioIo::new(c);
    let mut b = hyper_util::rt::TokioIo::new(b);
    let ended = async {
        let Some(l) = &liveness else {
            return std::future::pending().await;
        };
        let registration = gw.revocation.watchers().register(l.keys());
        // The signal starts rung: the first turn of the loop looks (with
        // the store) at where the credential stands now.
        let mut next = None;
        loop {
            let deadline = async {
                match next {
                    Some(ms) => tokio::time::sleep_until(instant_at(ms)).await,
                    None => std::future::pending().await,
                }
            };
            // Rung (a revocation naming it, or every tunnel after the feed
            // between replicas came back) or due: look, with the store for
            // a session (what ended elsewhere while the feed was down was
            // never announced).
            tokio::select! {
                _ = registration.signal().fired() => {}
                _ = deadline => {}
            }
            match l.holds_until(&gw, opened_ms).await {
                Some(until) => next = until,
                None => return,
            }
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut c, &mut b) => {}
        _ = ended => {
            tracing::info!("closed a WebSocket: its session or token was revoked or expired");
            // The backend side goes at once; a client that stopped reading
            // cannot hold the tunnel (and the backend's slot) with a full
            // send buffer.
            drop(b);
            let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
                let _ = c.write_all(CLOSE_POLICY).await;
                let _ = c.shutdown().await;
            })
            .await;
        }
    }
}
