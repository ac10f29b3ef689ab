//! Listeners and connections: accept (bounded), TLS handshake, HTTP/1.1 or
//! HTTP/2 by ALPN or preface, idle and header deadlines, graceful shutdown.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so the
//! binary and the tests run exactly the same code on real sockets.

pub mod admin;
mod conn;
pub(crate) mod framing;
pub mod proxy_protocol;
pub mod tls;

pub use conn::PARK_AFTER;
use conn::{serve_http, serve_side, Limits, Proto};

use crate::gateway::{BoundAddrs, Gateway};
use hyper::service::service_fn;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// What the pipeline knows about the client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The client connected over TLS (the scheme it used is https).
    pub tls: bool,
    pub sni: Option<String>,
    /// ALPN chose HTTP/2.
    pub h2: bool,
    /// `peer`'s address as header text, for `X-Forwarded-For` and
    /// `X-Real-IP`: made once per connection, cloned (a reference count)
    /// per request.
    pub peer_value: http::HeaderValue,
    /// The client certificate rustls verified against `client_ca`, read
    /// once after the handshake (SPEC 15, the `mtls` method).
    pub client_cert: Option<Arc<crate::auth::mtls::ClientCert>>,
    /// The affinity cookie last verified on this connection.
    pub sticky_memo: crate::upstream::sticky::TokenMemo,
}

impl ConnInfo {
    pub fn new(
        peer: SocketAddr,
        local: SocketAddr,
        tls: bool,
        sni: Option<String>,
        h2: bool,
    ) -> ConnInfo {
        ConnInfo {
            peer,
            local,
            tls,
            sni,
            h2,
            peer_value: crate::proxy::headers::peer_value(peer.ip()),
            client_cert: None,
            sticky_memo: Default::default(),
        }
    }
}

/// The verified leaf certificate of a TLS connection, parsed. rustls only
/// reports peer certificates that passed its client verifier (a rogue one
/// fails the handshake), also for a resumed session. One that cannot be
/// read leaves the connection without a certificate: `mtls` then refuses
/// it as absent, never guesses.
fn client_cert(
    tls: &rustls::ServerConnection,
    peer: SocketAddr,
) -> Option<Arc<crate::auth::mtls::ClientCert>> {
    let leaf = tls.peer_certificates()?.first()?;
    match crate::auth::mtls::ClientCert::parse(leaf) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "client certificate not readable");
            None
        }
    }
}

/// The bound listening sockets.
pub struct Listeners {
    pub main: TcpListener,
    pub admin: TcpListener,
    pub redirect: Option<TcpListener>,
}

impl Listeners {
    /// Binds every listener the config names; errors say which address.
    pub async fn bind(cfg: &crate::config::Config) -> io::Result<Listeners> {
        async fn one(addr: SocketAddr, what: &str) -> io::Result<TcpListener> {
            bind(addr).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot bind {what} listener {addr}: {e}"))
            })
        }
        Ok(Listeners {
            main: one(cfg.server.listen, "main").await?,
            admin: one(cfg.admin.listen, "admin").await?,
            redirect: match cfg.server.redirect {
                Some(a) => Some(one(a, "redirect").await?),
                None => None,
            },
        })
    }

    pub fn addrs(&self) -> io::Result<BoundAddrs> {
        Ok(BoundAddrs {
            listen: self.main.local_addr()?,
            admin: self.admin.local_addr()?,
            redirect: self.redirect.as_ref().map(|l| l.local_addr()).transpose()?,
        })
    }
}

/// Accept backlog asked of the kernel (which caps it at `somaxconn`,
/// 4096 by default since Linux 5.4). Larger than tokio's default 1024:
/// connections that arrive in a burst, or while `max_connections` is
/// reached, wait there; past it the kernel drops them half-open.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds like `TcpListener::bind` (with `SO_REUSEADDR`), with
/// [`LISTEN_BACKLOG`].
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[derive(Clone, Copy)]
enum Kind {
    Main,
    Admin,
    Redirect,
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish for up to `shutdown_grace`, and returns.
pub async fn run(
    gw: Arc<Gateway>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let addrs = listeners.addrs()?;
    let _ = gw.bound.set(addrs);
    let snap = gw.snapshot();
    let tls = snap.tls.is_some();
    let limit = gw.conn_limit.semaphore();
    tracing::info!(addr = %addrs.listen, tls, "listening");
    tracing::info!(addr = %addrs.admin, "admin listening");
    if let Some(r) = addrs.redirect {
        tracing::info!(addr = %r, "redirect listening");
    }
    drop(snap);

    let mut loops = Vec::new();
    loops.push(tokio::spawn(accept_loop(
        gw.clone(),
        listeners.main,
        Kind::Main,
        limit.clone(),
    )));
    loops.push(tokio::spawn(accept_loop(
        gw.clone(),
        listeners.admin,
        Kind::Admin,
        Arc::new(Semaphore::new(256)),
    )));
    if let Some(r) = listeners.redirect {
        loops.push(tokio::spawn(accept_loop(
            gw.clone(),
            r,
            Kind::Redirect,
            limit,
        )));
    }
    // Certificate rotation without a restart; ends when shutdown begins.
    loops.push(tokio::spawn(tls::watch_files(gw.clone())));

    shutdown.await;
    let grace = gw.snapshot().config.server.shutdown_grace;
    tracing::info!(
        ?grace,
        "shutting down: no new connections, draining in-flight requests"
    );
    let _ = gw.shutdown.send(true);
    for l in loops {
        let _ = l.await;
    }
    // Every connection and tunnel holds a receiver; all dropped = drained.
    if tokio::time::timeout(grace, gw.shutdown.closed())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}

async fn accept_loop(gw: Arc<Gateway>, listener: TcpListener, kind: Kind, limit: Arc<Semaphore>) {
    let mut shutdown = gw.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            break;
        }
        // At the connection limit, stop accepting: new clients wait in the
        // kernel's backlog instead of costing memory here.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((mut stream, peer)) => {
                let gw = gw.clone();
                let rx = gw.shutdown.subscribe();
                tokio::spawn(async move {
                    let _permit = permit;
                    // Behind an L4 balancer: the client it speaks for.
                    let peer = match kind {
                        Kind::Main | Kind::Redirect => {
                            match Box::pin(proxied_peer(&gw, &mut stream, peer)).await {
                                Some(p) => p,
                                None => return,
                            }
                        }
                        Kind::Admin => peer,
                    };
                    // A task is as large as its largest future: the rare
                    // admin and redirect connections are boxed so that
                    // every main connection does not pay for their room.
                    match kind {
                        Kind::Main => serve_main(gw, stream, peer, rx).await,
                        Kind::Admin => Box::pin(admin::serve(gw, stream, peer, rx)).await,
                        Kind::Redirect => Box::pin(serve_redirect(gw, stream, rx)).await,
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on a
                // listener that stays readable.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The client a connection is for (SPEC 12): from a peer in
/// `proxy_protocol_from` with the PROXY protocol on, the address its
/// header names (or its own, for a health check's `LOCAL`); `None` when
/// the header is missing, malformed or late (the connection is dropped
/// unanswered, and counted). Other peers are taken as they are.
async fn proxied_peer(
    gw: &Gateway,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Option<SocketAddr> {
    let snap = gw.snapshot();
    let server = &snap.config.server;
    let Some(accept) = server.proxy_protocol else {
        return Some(peer);
    };
    if !server
        .proxy_protocol_from
        .iter()
        .any(|n| n.contains(&peer.ip()))
    {
        return Some(peer);
    }
    let deadline = server.header_read_timeout;
    drop(snap);
    match proxy_protocol::read(stream, accept, deadline).await {
        Ok(proxy_protocol::Source::Client(client)) => Some(client),
        Ok(proxy_protocol::Source::Local) => Some(peer),
        Err(e) => {
            gw.metrics.proxy_protocol_errors.fetch_add(1, Relaxed);
            tracing::debug!(%peer, error = %e, "connection closed: PROXY header refused");
            None
        }
    }
}

/// Counts an open client connection for the metrics while alive.
struct OpenConn<'a>(&'a Gateway);

impl Drop for OpenConn<'_> {
    fn drop(&mut self) {
        self.0.metrics.connections_open.fetch_sub(1, Relaxed);
    }
}

async fn serve_main(
    gw: Arc<Gateway>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    gw.metrics.connections_open.fetch_add(1, Relaxed);
    let _open = OpenConn(&gw);
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let snap = gw.snapshot();
    let limits = Limits::from(&snap.config.server);
    let acceptor = snap.tls.clone();
    drop(snap);
    match acceptor {
        None => {
            let info = Arc::new(ConnInfo::new(peer, local, false, None, false));
            serve_http(gw.clone(), stream, info, Proto::Detect, limits, shutdown).await;
        }
        Some(acc) => {
            // The handshake shares the header deadline: a client that opens
            // a socket and says nothing is dropped either way. The TLS
            // stream lives in a box: moved through several futures, it
            // would otherwise take room in each of them for every
            // connection's whole life (see conn.rs on idle memory).
            let handshake = Box::pin(acc.accept(stream));
            let tls = match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let sni = tls.get_ref().1.server_name().map(str::to_string);
            let proto = match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => Proto::Http2,
                Some(b"http/1.1") => Proto::Http1,
                _ => Proto::Detect,
            };
            let mut info = ConnInfo::new(peer, local, true, sni, proto == Proto::Http2);
            info.client_cert = client_cert(tls.get_ref().1, peer);
            serve_http(gw.clone(), tls, Arc::new(info), proto, limits, shutdown).await;
        }
    }
}

/// The plain-HTTP listener that sends everyone to https (SPEC 11):
/// `308` to `https://<host><:port unless 443><path and query>`.
async fn serve_redirect(gw: Arc<Gateway>, stream: TcpStream, shutdown: watch::Receiver<bool>) {
    let port = gw.bound.get().map_or(443, |b| b.listen.port());
    let service = service_fn(
        move |req: http::Request<hyper::body::Incoming>| async move {
            let host = Some(crate::route::request_host(req.headers(), req.uri())).filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            });
            let resp = match host {
                None => {
                    let e = crate::error::GatewayError::BadRequest(
                        crate::error::Malformed::MissingHost,
                    );
                    let mut r = crate::proxy::respond::error(
                        &e,
                        &http::HeaderValue::from_static("-"),
                        false,
                    );
                    // As on the main listener, the error decides whether
                    // the connection may carry another request.
                    if req.version() <= http::Version::HTTP_11 && !e.can_reuse_connection() {
                        r.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    r
                }
                Some(h) => {
                    let h = if h.contains(':') {
                        format!("[{h}]")
                    } else {
                        h.to_string()
                    };
                    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let loc = if port == 443 {
                        format!("https://{h}{pq}")
                    } else {
                        format!("https://{h}:{port}{pq}")
                    };
                    let mut r = http::Response::new(crate::body::Body::Empty);
                    *r.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
                    if let Ok(v) = http::HeaderValue::from_str(&loc) {
                        r.headers_mut().insert(http::header::LOCATION, v);
                    }
                    r
                }
            };
            Ok::<_, std::convert::Infallible>(resp)
        },
    );
    let limits = Limits::from(&gw.snapshot().config.server);
    serve_side(&gw, stream, service, limits, shutdown).await;
}
