//! bench-backend: a deliberately tiny upstream for `bench/run.sh`.
//!
//!     bench-backend ADDR=NAME [ADDR=NAME ...]
//!
//! One current-thread process serves every listener (the load core is
//! shared with the load generator, so the backend must cost little).
//!
//! - `GET */echo`  200, JSON `{"backend", "method", "path", "headers"}`
//! - `GET */big`   200, a 1 MiB body (the same static bytes every time)
//! - anything else 200, `ok\n`
//!
//! Every response carries `X-Backend: NAME`, so balancing and stickiness
//! can be seen from the client.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

const BIG: usize = 1 << 20;

fn handle(req: &Request<Incoming>, name: &HeaderValue, big: &Bytes) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let (body, kind) = if path.ends_with("/echo") {
        let mut headers = serde_json::Map::new();
        for (k, v) in req.headers() {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            match headers.get_mut(k.as_str()) {
                Some(serde_json::Value::String(s)) => {
                    s.push_str(", ");
                    s.push_str(&v);
                }
                _ => {
                    headers.insert(k.as_str().to_owned(), serde_json::Value::String(v));
                }
            }
        }
        let doc = serde_json::json!({
            "backend": name.to_str().unwrap_or(""),
            "method": req.method().as_str(),
            "path": path,
            "headers": headers,
        });
        (Bytes::from(doc.to_string() + "\n"), "application/json")
    } else if path.ends_with("/big") {
        (big.clone(), "application/octet-stream")
    } else {
        (Bytes::from_static(b"ok\n"), "text/plain")
    };
    let mut r = Response::new(Full::new(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert("x-backend", name.clone());
    r
}

async fn serve(addr: SocketAddr, name: HeaderValue, big: Bytes) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    eprintln!("bench-backend {name:?} listening on {addr}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (name, big) = (name.clone(), big.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = handle(&req, &name, &big);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() {
    let listeners: Vec<(SocketAddr, HeaderValue)> = std::env::args()
        .skip(1)
        .map(|a| {
            let (addr, name) = a.split_once('=').unwrap_or((&a, "b"));
            (
                addr.parse().expect("usage: bench-backend ADDR=NAME ..."),
                HeaderValue::from_str(name).expect("a name fit for a header"),
            )
        })
        .collect();
    assert!(!listeners.is_empty(), "usage: bench-backend ADDR=NAME ...");
    let big = Bytes::from(vec![b'x'; BIG]);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            let mut tasks = Vec::new();
            for (addr, name) in listeners {
                tasks.push(tokio::spawn(serve(addr, name, big.clone())));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
}
