//! uring-spike: the smallest reverse proxy that carries hyper 1.x
//! connections over either epoll (tokio) or io_uring (monoio), to measure
//! the CPU per request of the two I/O paths with everything else equal.
//!
//!     uring-spike --io epoll|uring --listen ADDR --backend ADDR [--tls CERT KEY]
//!                 [--uring-setup default|coop|defer]
//!
//! `--uring-setup` picks how the kernel runs io_uring's completion work
//! (task_work) for this one thread: `default` interrupts the thread to run
//! it as soon as a completion is ready, `coop` (IORING_SETUP_COOP_TASKRUN)
//! runs it at the thread's next kernel entry, `defer`
//! (IORING_SETUP_SINGLE_ISSUER + DEFER_TASKRUN) only when the thread asks
//! for completions in `io_uring_enter`.
//!
//! Per accepted client connection: one hyper http1 server connection
//! (keep-alive) and one hyper http1 client connection to the backend,
//! opened when the client connects; every request goes over it and the
//! response body is streamed back. One thread in both modes. Only
//! `accept_loop_*` (runtime, listener, socket type) differs between the two;
//! `handle` and `proxy` are the same code for both, generic over a tokio
//! `AsyncRead + AsyncWrite` stream (tokio's `TcpStream` for epoll,
//! `monoio_compat::StreamWrapper<monoio::net::TcpStream>` for io_uring).
//!
//! State: each connection owns its backend `SendRequest` (shared between
//! the requests of that connection only, which hyper serves one at a time);
//! nothing is shared across connections but the TLS acceptor.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::client::conn::http1 as client_http1;
use hyper::server::conn::http1 as server_http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;

/// How the runtime of the mode spawns a `!Send` task on its one thread.
type Spawn = fn(LocalFuture);

#[derive(Clone, Copy)]
enum UringSetup {
    Default,
    Coop,
    Defer,
}

struct Args {
    uring: bool,
    setup: UringSetup,
    listen: SocketAddr,
    backend: SocketAddr,
    tls: Option<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut io, mut listen, mut backend, mut tls) = (None, None, None, None);
    let mut setup = UringSetup::Default;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--io" => io = it.next(),
            "--listen" => listen = it.next(),
            "--backend" => backend = it.next(),
            "--tls" => tls = it.next().zip(it.next()),
            "--uring-setup" => {
                setup = match it.next().as_deref() {
                    Some("default") => UringSetup::Default,
                    Some("coop") => UringSetup::Coop,
                    Some("defer") => UringSetup::Defer,
                    _ => return Err("--uring-setup default|coop|defer".into()),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let uring = match io.as_deref() {
        Some("epoll") => false,
        Some("uring") => true,
        _ => return Err("--io epoll|uring is required".into()),
    };
    let addr = |v: Option<String>, what: &str| -> Result<SocketAddr, String> {
        v.ok_or(format!("{what} is required"))?
            .parse()
            .map_err(|e| format!("{what}: {e}"))
    };
    Ok(Args {
        uring,
        setup,
        listen: addr(listen, "--listen")?,
        backend: addr(backend, "--backend")?,
        tls,
    })
}

/// TLS 1.3 only, ALPN http/1.1, aws-lc-rs: the same settings in both modes.
fn tls_acceptor(cert: &str, key: &str) -> Result<TlsAcceptor, Box<dyn std::error::Error>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// One client connection, after accept and backend connect: the same code
/// for both modes.
async fn handle<C, B>(client: C, backend: B, tls: Option<TlsAcceptor>, spawn: Spawn)
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
    B: AsyncRead + AsyncWrite + Unpin + 'static,
{
    match tls {
        None => proxy(client, backend, spawn).await,
        Some(acceptor) => match acceptor.accept(client).await {
            Ok(tls) => proxy(tls, backend, spawn).await,
            Err(e) => eprintln!("tls handshake: {e}"),
        },
    }
}

async fn proxy<C, B>(client: C, backend: B, spawn: Spawn)
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
    B: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (sender, conn) = match client_http1::handshake::<_, Incoming>(TokioIo::new(backend)).await {
        Ok(pair) => pair,
        Err(e) => return eprintln!("backend handshake: {e}"),
    };
    spawn(Box::pin(async move {
        if let Err(e) = conn.await {
            eprintln!("backend connection: {e}");
        }
    }));
    let sender = Rc::new(RefCell::new(sender));
    let service = service_fn(move |req: Request<Incoming>| {
        let sender = sender.clone();
        async move {
            // hyper serves one request of a connection at a time, so the
            // borrow is never contended; it is held only inside a poll.
            poll_fn(|cx| sender.borrow_mut().poll_ready(cx)).await?;
            let fut = sender.borrow_mut().send_request(req);
            let resp: Response<Incoming> = fut.await?;
            Ok::<_, hyper::Error>(resp)
        }
    });
    if let Err(e) = server_http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(client), service)
        .await
    {
        if !e.is_incomplete_message() {
            eprintln!("client connection: {e}");
        }
    }
}

fn accept_loop_epoll(args: Args, tls: Option<TlsAcceptor>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    fn spawn(f: LocalFuture) {
        tokio::task::spawn_local(f);
    }
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        loop {
            let (client, _) = listener.accept().await?;
            let tls = tls.clone();
            let backend_addr = args.backend;
            spawn(Box::pin(async move {
                let backend = match tokio::net::TcpStream::connect(backend_addr).await {
                    Ok(s) => s,
                    Err(e) => return eprintln!("backend connect: {e}"),
                };
                let _ = client.set_nodelay(true);
                let _ = backend.set_nodelay(true);
                handle(client, backend, tls, spawn).await
            }));
        }
    })
}

fn accept_loop_uring(args: Args, tls: Option<TlsAcceptor>) -> std::io::Result<()> {
    let mut urb = io_uring::IoUring::builder();
    match args.setup {
        UringSetup::Default => {}
        UringSetup::Coop => {
            urb.setup_coop_taskrun();
        }
        UringSetup::Defer => {
            urb.setup_single_issuer().setup_defer_taskrun();
        }
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .uring_builder(urb)
        .with_entries(1024)
        .build()?;
    fn spawn(f: LocalFuture) {
        monoio::spawn(f);
    }
    rt.block_on(async move {
        let listener = monoio::net::TcpListener::bind(args.listen)?;
        loop {
            let (client, _) = listener.accept().await?;
            let tls = tls.clone();
            let backend_addr = args.backend;
            spawn(Box::pin(async move {
                let backend = match monoio::net::TcpStream::connect(backend_addr).await {
                    Ok(s) => s,
                    Err(e) => return eprintln!("backend connect: {e}"),
                };
                let _ = client.set_nodelay(true);
                let _ = backend.set_nodelay(true);
                let client = monoio_compat::StreamWrapper::new(client);
                let backend = monoio_compat::StreamWrapper::new(backend);
                handle(client, backend, tls, spawn).await
            }));
        }
    })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("uring-spike: {e}");
            std::process::exit(2);
        }
    };
    let tls = match &args.tls {
        None => None,
        Some((cert, key)) => match tls_acceptor(cert, key) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("uring-spike: tls: {e}");
                std::process::exit(2);
            }
        },
    };
    let res = if args.uring {
        accept_loop_uring(args, tls)
    } else {
        accept_loop_epoll(args, tls)
    };
    if let Err(e) = res {
        eprintln!("uring-spike: {e}");
        std::process::exit(1);
    }
}
