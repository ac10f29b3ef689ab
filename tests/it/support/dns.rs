//! A tiny authoritative-looking DNS server on 127.0.0.1:0 (UDP) for
//! discovery tests: every A question is answered from a list the test
//! changes; AAAA and other questions get an empty answer. It can be told
//! to fail (SERVFAIL) and counts the questions it was asked.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::watch;

pub struct DnsServer {
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Ipv4Addr>>>,
    fail: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    _stop: watch::Sender<bool>,
}

impl DnsServer {
    pub async fn start() -> DnsServer {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (stop, mut stop_rx) = watch::channel(false);
        let (r, f, q) = (records.clone(), fail.clone(), queries.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (n, peer) = tokio::select! {
                    got = sock.recv_from(&mut buf) => match got {
                        Ok(x) => x,
                        Err(_) => continue,
                    },
                    _ = stop_rx.changed() => break,
                };
                q.fetch_add(1, Relaxed);
                let ips = r.lock().unwrap().clone();
                if let Some(resp) = respond(&buf[..n], &ips, f.load(Relaxed)) {
                    let _ = sock.send_to(&resp, peer).await;
                }
            }
        });
        DnsServer {
            addr,
            records,
            fail,
            queries,
            _stop: stop,
        }
    }

    /// The addresses A questions are answered with from now on.
    pub fn set(&self, ips: &[&str]) {
        *self.records.lock().unwrap() = ips.iter().map(|i| i.parse().unwrap()).collect();
    }

    /// Answer SERVFAIL from now on (or stop doing so).
    pub fn fail(&self, on: bool) {
        self.fail.store(on, Relaxed);
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Relaxed)
    }
}

/// The answer to query `q` (header, one question; extra records ignored).
fn respond(q: &[u8], ips: &[Ipv4Addr], fail: bool) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut at = 12;
    while *q.get(at)? != 0 {
        at += 1 + usize::from(q[at]);
    }
    let question_end = at + 5;
    let qtype = u16::from_be_bytes([*q.get(at + 1)?, *q.get(at + 2)?]);
    let mut m = q[..question_end.min(q.len())].to_vec();
    let answers: &[Ipv4Addr] = if fail || qtype != 1 { &[] } else { ips };
    m[2] = 0x81; // QR, RD
    m[3] = if fail { 0x82 } else { 0x80 }; // RA, rcode
    m[4..6].copy_from_slice(&[0, 1]);
    m[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    m[8..12].copy_from_slice(&[0, 0, 0, 0]);
    for ip in answers {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
        m.extend_from_slice(&ip.octets());
    }
    Some(m)
}
