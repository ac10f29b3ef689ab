//! A backend that records the exact bytes of every request it receives:
//! the head as written on the wire, and the body framed by its own plain
//! reading (Content-Length, else chunked, else none). Answers `200 ok`
//! (or what a test's reply function writes) and keeps the connection for
//! the next request. Tests use it to see what a smuggling attempt or an
//! odd header turned into on the backend side, and to send answers no
//! well-behaved server library would. After a reply that starts with
//! `HTTP/1.1 101` it reads no more requests: every further byte is
//! recorded as it came (`raw_after_switch`).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub struct RawRequest {
    /// Request line and header lines, as received (without the blank line).
    pub head: String,
    pub body: Vec<u8>,
}

impl RawRequest {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    /// Header names as sent.
    pub fn header_names(&self) -> Vec<String> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, _)| k.to_string())
            .collect()
    }
}

/// What the backend writes back for a request: the whole response.
pub type Reply = Arc<dyn Fn(&RawRequest) -> Vec<u8> + Send + Sync>;

pub struct RawBackend {
    pub addr: String,
    pub seen: Arc<Mutex<Vec<RawRequest>>>,
    /// Bytes received after a `101` reply, on any connection.
    pub after_switch: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    pub async fn start() -> RawBackend {
        RawBackend::replying(|_| b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()).await
    }

    /// Answers every request with what `reply` returns.
    pub async fn replying(
        reply: impl Fn(&RawRequest) -> Vec<u8> + Send + Sync + 'static,
    ) -> RawBackend {
        let reply: Reply = Arc::new(reply);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let after_switch = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (seen.clone(), after_switch.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, s.clone(), reply.clone(), a.clone()));
            }
        });
        RawBackend {
            addr,
            seen,
            after_switch,
            task,
        }
    }

    pub fn requests(&self) -> Vec<RawRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// What arrived after a `101`, as text.
    pub fn raw_after_switch(&self) -> String {
        String::from_utf8_lossy(&self.after_switch.lock().unwrap()).into_owned()
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
    h.windows(needle.len()).position(|w| w == needle)
}

async fn serve(
    mut s: TcpStream,
    seen: Arc<Mutex<Vec<RawRequest>>>,
    reply: Reply,
    after_switch: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if !read_more(&mut s, &mut buf).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let req = RawRequest {
            head,
            body: Vec::new(),
        };
        let cl: Option<usize> = req
            .header_values("content-length")
            .first()
            .and_then(|v| v.parse().ok());
        let chunked = req
            .header_values("transfer-encoding")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("chunked"));
        let mut body = Vec::new();
        if let Some(n) = cl {
            while buf.len() < n {
                if !read_more(&mut s, &mut buf).await {
                    return;
                }
            }
            body = buf.drain(..n).collect();
        } else if chunked {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&buf, b"\r\n") {
                        break i;
                    }
                    if !read_more(&mut s, &mut buf).await {
                        return;
                    }
                };
                let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .unwrap_or(0);
                buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers until an empty line.
                    loop {
                        let e = loop {
                            if let Some(i) = find(&buf, b"\r\n") {
                                break i;
                            }
                            if !read_more(&mut s, &mut buf).await {
                                return;
                            }
                        };
                        buf.drain(..e + 2);
                        if e == 0 {
                            break;
                        }
                    }
                    break;
                }
                while buf.len() < size + 2 {
                    if !read_more(&mut s, &mut buf).await {
                        return;
                    }
                }
                body.extend(buf.drain(..size));
                buf.drain(..2);
            }
        }
        let req = RawRequest { body, ..req };
        let answer = reply(&req);
        seen.lock().unwrap().push(req);
        if s.write_all(&answer).await.is_err() {
            return;
        }
        if answer.starts_with(b"HTTP/1.1 101") {
            // Another protocol from here: keep every byte as it comes.
            loop {
                after_switch.lock().unwrap().extend_from_slice(&buf);
                buf.clear();
                if !read_more(&mut s, &mut buf).await {
                    return;
                }
            }
        }
    }
}
