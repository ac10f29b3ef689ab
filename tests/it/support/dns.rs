//! A tiny authoritative-looking DNS server on 127.0.0.1:0 (UDP) for
//! discovery tests: every A question is answered from a list the test
//! changes, every AAAA question from another (empty unless set); other
//! questions get an empty answer. It can be told to fail (SERVFAIL, or
//! NXDOMAIN) and counts the questions it was asked.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::watch;

pub struct DnsServer {
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Ipv4Addr>>>,
    records_v6: Arc<Mutex<Vec<Ipv6Addr>>>,
    fail: Arc<AtomicBool>,
    nxdomain: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    _stop: watch::Sender<bool>,
}

impl DnsServer {
    pub async fn start() -> DnsServer {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let records_v6 = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicBool::new(false));
        let nxdomain = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (stop, mut stop_rx) = watch::channel(false);
        let (r, r6, f, nx, q) = (
            records.clone(),
            records_v6.clone(),
            fail.clone(),
            nxdomain.clone(),
            queries.clone(),
        );
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
                let ips_v6 = r6.lock().unwrap().clone();
                let rcode = if f.load(Relaxed) {
                    2
                } else if nx.load(Relaxed) {
                    3
                } else {
                    0
                };
                if let Some(resp) = respond(&buf[..n], &ips, &ips_v6, rcode) {
                    let _ = sock.send_to(&resp, peer).await;
                }
            }
        });
        DnsServer {
            addr,
            records,
            records_v6,
            fail,
            nxdomain,
            queries,
            _stop: stop,
        }
    }

    /// The addresses A questions are answered with from now on.
    pub fn set(&self, ips: &[&str]) {
        *self.records.lock().unwrap() = ips.iter().map(|i| i.parse().unwrap()).collect();
    }

    /// The addresses AAAA questions are answered with from now on.
    pub fn set_v6(&self, ips: &[&str]) {
        *self.records_v6.lock().unwrap() = ips.iter().map(|i| i.parse().unwrap()).collect();
    }

    /// Answer SERVFAIL from now on (or stop doing so).
    pub fn fail(&self, on: bool) {
        self.fail.store(on, Relaxed);
    }

    /// Answer NXDOMAIN from now on (or stop doing so); SERVFAIL wins.
    pub fn nxdomain(&self, on: bool) {
        self.nxdomain.store(on, Relaxed);
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Relaxed)
    }
}

/// The answer to query `q` (header, one question; extra records ignored)
/// with response code `rcode` (answers only with 0).
fn respond(q: &[u8], ips: &[Ipv4Addr], ips_v6: &[Ipv6Addr], rcode: u8) -> Option<Vec<u8>> {
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
    let answers: Vec<Vec<u8>> = match (rcode, qtype) {
        (0, 1) => ips.iter().map(|ip| ip.octets().to_vec()).collect(),
        (0, 28) => ips_v6.iter().map(|ip| ip.octets().to_vec()).collect(),
        _ => Vec::new(),
    };
    m[2] = 0x81; // QR, RD
    m[3] = 0x80 | rcode; // RA, rcode
    m[4..6].copy_from_slice(&[0, 1]);
    m[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    m[8..12].copy_from_slice(&[0, 0, 0, 0]);
    for data in &answers {
        // Name: pointer to the question; type as asked; class IN; TTL 5 s.
        m.extend_from_slice(&[0xc0, 12]);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 5]);
        m.extend_from_slice(&(data.len() as u16).to_be_bytes());
        m.extend_from_slice(data);
    }
    Some(m)
}
