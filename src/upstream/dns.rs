//! A minimal DNS stub resolver for backend discovery: A and AAAA queries
//! (RFC 1035, RFC 3596) to one recursive server, over UDP with an EDNS(0)
//! buffer (RFC 6891), and over TCP when the answer comes back truncated
//! (RFC 7766). Enough for a Kubernetes headless Service or any name whose
//! records list the backends; not a general resolver (no search domains,
//! no caching: the name is taken as fully qualified and asked every time).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// The EDNS(0) UDP payload size of DNS Flag Day 2020: no fragmentation.
const UDP_PAYLOAD: u16 = 1232;

/// Where to ask when the config names no resolver.
pub const FALLBACK_RESOLVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);

/// The first `nameserver` of /etc/resolv.conf, else 127.0.0.1:53.
pub fn system_resolver() -> SocketAddr {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some("nameserver"))
                    .then(|| words.next()?.parse::<IpAddr>().ok())
                    .flatten()
            })
        })
        .map_or(FALLBACK_RESOLVER, |ip| SocketAddr::new(ip, 53))
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Every A and AAAA address of `name`. An error when either query fails
/// (timeout, SERVFAIL, NXDOMAIN, malformed answer): a partial answer must
/// not look like backends leaving.
pub async fn resolve(server: SocketAddr, name: &str, timeout: Duration) -> io::Result<Vec<IpAddr>> {
    let (a, aaaa) = tokio::join!(
        query(server, name, TYPE_A, timeout),
        query(server, name, TYPE_AAAA, timeout)
    );
    let mut out = a?;
    out.extend(aaaa?);
    out.sort();
    out.dedup();
    Ok(out)
}

/// One question, answered over UDP (TCP if truncated) within `timeout`.
async fn query(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> io::Result<Vec<IpAddr>> {
    let id = u16::from_be_bytes(crate::crypto::random_bytes::<2>());
    let msg = encode_query(id, name, qtype)?;
    tokio::time::timeout(timeout, async {
        let bind: SocketAddr = if server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(server).await?;
        sock.send(&msg).await?;
        let mut buf = vec![0u8; usize::from(UDP_PAYLOAD)];
        loop {
            let n = sock.recv(&mut buf).await?;
            match parse_response(&buf[..n], id, name, qtype) {
                // Not ours (late answer to an earlier query): keep waiting.
                Err(Answer::Mismatch) => continue,
                Err(Answer::Truncated) => return query_tcp(server, &msg, id, name, qtype).await,
                Err(Answer::Failed(e)) => return Err(e),
                Ok(ips) => return Ok(ips),
            }
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "DNS query timed out"))?
}

async fn query_tcp(
    server: SocketAddr,
    msg: &[u8],
    id: u16,
    name: &str,
    qtype: u16,
) -> io::Result<Vec<IpAddr>> {
    let mut s = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    framed.extend_from_slice(msg);
    s.write_all(&framed).await?;
    let len = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await?;
    match parse_response(&buf, id, name, qtype) {
        Ok(ips) => Ok(ips),
        Err(Answer::Failed(e)) => Err(e),
        Err(_) => Err(invalid("unexpected DNS answer over TCP")),
    }
}

/// A query for `name` (taken as fully qualified) with recursion desired
/// and an EDNS(0) OPT record.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> io::Result<Vec<u8>> {
    let mut m = Vec::with_capacity(name.len() + 32);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]); // QD=1 AN=0 NS=0 AR=1
    encode_name(&mut m, name)?;
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT: root name, type, payload size, extended rcode/version/flags, no data.
    m.push(0);
    m.extend_from_slice(&TYPE_OPT.to_be_bytes());
    m.extend_from_slice(&UDP_PAYLOAD.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    Ok(m)
}

fn encode_name(m: &mut Vec<u8>, name: &str) -> io::Result<()> {
    let name = name.trim_end_matches('.');
    if name.len() > 253 {
        return Err(invalid("DNS name too long"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid("bad DNS label"));
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    Ok(())
}

/// Why an answer gave no addresses.
enum Answer {
    /// Another message (wrong id or question): ignore it.
    Mismatch,
    /// TC set: ask again over TCP.
    Truncated,
    Failed(io::Error),
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    /// Reads a possibly compressed name as lowercase dotted text.
    fn name(&mut self) -> Option<String> {
        let mut out = String::new();
        let mut at = self.at;
        let mut jumped = false;
        for _ in 0..128 {
            let len = *self.b.get(at)?;
            match len & 0xc0 {
                0xc0 => {
                    let ptr = usize::from(u16::from_be_bytes([len & 0x3f, *self.b.get(at + 1)?]));
                    if !jumped {
                        self.at = at + 2;
                        jumped = true;
                    }
                    at = ptr;
                }
                0 if len == 0 => {
                    if !jumped {
                        self.at = at + 1;
                    }
                    return Some(out);
                }
                0 => {
                    let label = self.b.get(at + 1..at + 1 + usize::from(len))?;
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
                    at += 1 + usize::from(len);
                }
                _ => return None,
            }
        }
        None
    }
}

/// The addresses of type `qtype` in a response to query `id` for `name`.
fn parse_response(b: &[u8], id: u16, name: &str, qtype: u16) -> Result<Vec<IpAddr>, Answer> {
    let malformed = || Answer::Failed(invalid("malformed DNS answer"));
    let mut r = Reader { b, at: 0 };
    let hdr = r.take(12).ok_or(Answer::Mismatch)?;
    let (rid, flags) = (
        u16::from_be_bytes([hdr[0], hdr[1]]),
        u16::from_be_bytes([hdr[2], hdr[3]]),
    );
    if rid != id || flags & 0x8000 == 0 {
        return Err(Answer::Mismatch);
    }
    let qd = u16::from_be_bytes([hdr[4], hdr[5]]);
    let an = u16::from_be_bytes([hdr[6], hdr[7]]);
    let want = name.trim_end_matches('.').to_ascii_lowercase();
    for _ in 0..qd {
        let q = r.name().ok_or_else(malformed)?;
        let qt = r.u16().ok_or_else(malformed)?;
        r.u16().ok_or_else(malformed)?;
        if q != want || qt != qtype {
            return Err(Answer::Mismatch);
        }
    }
    if flags & 0x0200 != 0 {
        return Err(Answer::Truncated);
    }
    match flags & 0x000f {
        0 => {}
        3 => {
            return Err(Answer::Failed(io::Error::new(
                io::ErrorKind::NotFound,
                "DNS name does not exist (NXDOMAIN)",
            )))
        }
        _ => return Err(Answer::Failed(io::Error::other("DNS server failure"))),
    }
    let mut out = Vec::new();
    for _ in 0..an {
        r.name().ok_or_else(malformed)?;
        let rtype = r.u16().ok_or_else(malformed)?;
        let class = r.u16().ok_or_else(malformed)?;
        r.take(4).ok_or_else(malformed)?; // TTL: we re-ask every interval anyway
        let len = r.u16().ok_or_else(malformed)?;
        let data = r.take(usize::from(len)).ok_or_else(malformed)?;
        match (rtype, class, data.len()) {
            (TYPE_A, CLASS_IN, 4) if qtype == TYPE_A => {
                out.push(IpAddr::V4(Ipv4Addr::new(
                    data[0], data[1], data[2], data[3],
                )));
            }
            (TYPE_AAAA, CLASS_IN, 16) if qtype == TYPE_AAAA => {
                let mut o = [0u8; 16];
                o.copy_from_slice(data);
                out.push(IpAddr::V6(Ipv6Addr::from(o)));
            }
            // CNAMEs and others: the resolver lists the target's records too.
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `query` with the given answers (name compressed to
    /// the question).
    fn answer(query: &[u8], rcode: u8, records: &[(u16, &[u8])]) -> Vec<u8> {
        let qlen = query.len() - 11; // question without the OPT record
        let mut m = query[..qlen].to_vec();
        m[2] |= 0x80;
        m[3] = rcode;
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        m[10..12].copy_from_slice(&[0, 0]);
        for (t, data) in records {
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&CLASS_IN.to_be_bytes());
            m.extend_from_slice(&[0, 0, 0, 30]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn parses_a_records_and_ignores_cnames() {
        let q = encode_query(7, "app.default.svc.cluster.local", TYPE_A).unwrap();
        let r = answer(
            &q,
            0,
            &[
                (5, &[0xc0, 12]),
                (TYPE_A, &[10, 0, 0, 1]),
                (TYPE_A, &[10, 0, 0, 2]),
            ],
        );
        let ips = parse_response(&r, 7, "app.default.svc.cluster.local.", TYPE_A)
            .ok()
            .unwrap();
        assert_eq!(
            ips,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.2".parse().unwrap()
            ]
        );
    }

    #[test]
    fn parses_aaaa_records() {
        let q = encode_query(9, "app", TYPE_AAAA).unwrap();
        let v6: Ipv6Addr = "fd00::1".parse().unwrap();
        let r = answer(&q, 0, &[(TYPE_AAAA, &v6.octets())]);
        let ips = parse_response(&r, 9, "app", TYPE_AAAA).ok().unwrap();
        assert_eq!(ips, vec![IpAddr::V6(v6)]);
    }

    #[test]
    fn failures_truncation_and_strangers_are_told_apart() {
        let q = encode_query(1, "app", TYPE_A).unwrap();
        assert!(matches!(
            parse_response(&answer(&q, 3, &[]), 1, "app", TYPE_A),
            Err(Answer::Failed(e)) if e.kind() == io::ErrorKind::NotFound
        ));
        assert!(matches!(
            parse_response(&answer(&q, 2, &[]), 1, "app", TYPE_A),
            Err(Answer::Failed(_))
        ));
        assert!(matches!(
            parse_response(&answer(&q, 0, &[]), 2, "app", TYPE_A),
            Err(Answer::Mismatch)
        ));
        assert!(matches!(
            parse_response(&answer(&q, 0, &[]), 1, "other", TYPE_A),
            Err(Answer::Mismatch)
        ));
        let mut tc = answer(&q, 0, &[]);
        tc[2] |= 0x02;
        assert!(matches!(
            parse_response(&tc, 1, "app", TYPE_A),
            Err(Answer::Truncated)
        ));
        let ok = answer(&q, 0, &[(TYPE_A, &[1, 2, 3, 4])]);
        for cut in 12..ok.len() {
            // Never panics on a short message.
            let _ = parse_response(&ok[..cut], 1, "app", TYPE_A);
        }
    }

    #[test]
    fn compression_loops_are_refused() {
        let q = encode_query(1, "app", TYPE_A).unwrap();
        let mut r = answer(&q, 0, &[]);
        r[6..8].copy_from_slice(&[0, 1]);
        r.extend_from_slice(&[0xc0, (r.len() as u8)]); // points at itself
        assert!(matches!(
            parse_response(&r, 1, "app", TYPE_A),
            Err(Answer::Failed(_))
        ));
    }

    #[test]
    fn names_are_checked_when_encoding() {
        assert!(encode_query(1, "a..b", TYPE_A).is_err());
        assert!(encode_query(1, &"a".repeat(64), TYPE_A).is_err());
        assert!(encode_query(1, "app.example.com.", TYPE_A).is_ok());
    }
}
