//! The PROXY protocol (SPEC 12; HAProxy's specification, versions 1 and 2):
//! an L4 balancer in front of the gateway tells it, in a header before
//! anything else on the connection (before TLS), which client the
//! connection is for.
//!
//! Only peers in `proxy_protocol_from` may send it, and from them it is
//! required: a missing, malformed or unaccepted header closes the
//! connection without an answer. The header is read exactly — never a
//! byte past it, which belongs to TLS or HTTP — by [`read`]: version 1 up
//! to its CRLF (at most 107 bytes), version 2 its 16 fixed bytes and then
//! the length they announce. [`parse`] is the pure part, fuzzed.

use crate::config::ProxyProtocol;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Version 2's 12-byte signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// The longest version 2 address block read (addresses and TLVs; AWS NLB
/// and HAProxy send a few TLVs, far below this).
const V2_MAX_BODY: usize = 2048;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's address, to use wherever the peer address was.
    Client(SocketAddr),
    /// No client (a balancer's health check: v2 `LOCAL`, v1 `UNKNOWN`, an
    /// unspecified family): the connection's own address stands.
    Local,
}

/// Why a connection's PROXY header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed PROXY header")]
    Malformed,
    #[error("PROXY header version not accepted")]
    Version,
    #[error("no complete PROXY header in time")]
    Timeout,
    #[error("connection closed before the PROXY header ended")]
    Closed,
}

/// How far `buf` is from a complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// At least this many bytes in all are needed before deciding.
    Incomplete(usize),
    /// A header of `len` bytes.
    Done {
        len: usize,
        source: Source,
    },
    Invalid(Error),
}

/// Parses the header at the start of `buf`, accepting the versions of
/// `accept`. Pure: no I/O, no allocation.
pub fn parse(buf: &[u8], accept: ProxyProtocol) -> Parse {
    match buf.first() {
        None => Parse::Incomplete(1),
        Some(b'P') if accept.accepts_v1() => parse_v1(buf),
        Some(b'\r') if accept.accepts_v2() => parse_v2(buf),
        Some(b'P' | b'\r') => Parse::Invalid(Error::Version),
        Some(_) => Parse::Invalid(Error::Malformed),
    }
}

fn parse_v1(buf: &[u8]) -> Parse {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Parse::Invalid(Error::Malformed)
        } else {
            Parse::Incomplete(buf.len() + 1)
        };
    };
    let len = end + 1;
    if len > V1_MAX || end == 0 || buf[end - 1] != b'\r' {
        return Parse::Invalid(Error::Malformed);
    }
    let Ok(line) = std::str::from_utf8(&buf[..end - 1]) else {
        return Parse::Invalid(Error::Malformed);
    };
    let mut parts = line.split(' ');
    if parts.next() != Some("PROXY") {
        return Parse::Invalid(Error::Malformed);
    }
    let source = match parts.next() {
        // Whatever follows UNKNOWN is to be ignored.
        Some("UNKNOWN") => {
            return Parse::Done {
                len,
                source: Source::Local,
            }
        }
        Some(family @ ("TCP4" | "TCP6")) => {
            let fields: Vec<&str> = parts.collect();
            let [src, dst, sport, dport] = fields[..] else {
                return Parse::Invalid(Error::Malformed);
            };
            let ip = |s: &str| -> Option<IpAddr> {
                if family == "TCP4" {
                    s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
                }
            };
            // Decimal ports only: no sign, no leading zeros but "0".
            let port = |s: &str| -> Option<u16> {
                let digits = !s.is_empty()
                    && s.len() <= 5
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s == "0" || !s.starts_with('0'));
                digits.then(|| s.parse().ok()).flatten()
            };
            match (ip(src), ip(dst), port(sport), port(dport)) {
                (Some(ip), Some(_), Some(p), Some(_)) => SocketAddr::new(ip, p),
                _ => return Parse::Invalid(Error::Malformed),
            }
        }
        _ => return Parse::Invalid(Error::Malformed),
    };
    Parse::Done {
        len,
        source: Source::Client(source),
    }
}

fn parse_v2(buf: &[u8]) -> Parse {
    let sig = buf.len().min(12);
    if buf[..sig] != V2_SIGNATURE[..sig] {
        return Parse::Invalid(Error::Malformed);
    }
    if buf.len() < 16 {
        return Parse::Incomplete(16);
    }
    let body_len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if body_len > V2_MAX_BODY {
        return Parse::Invalid(Error::Malformed);
    }
    let len = 16 + body_len;
    if buf.len() < len {
        return Parse::Incomplete(len);
    }
    let body = &buf[16..len];
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Parse::Invalid(Error::Malformed);
    }
    let source = match command {
        0 => Source::Local,
        1 => match buf[13] {
            // TCP over IPv4: src addr, dst addr, src port, dst port.
            0x11 if body.len() >= 12 => Source::Client(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(body[0], body[1], body[2], body[3])),
                u16::from_be_bytes([body[8], body[9]]),
            )),
            0x21 if body.len() >= 36 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[..16]);
                Source::Client(SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(a)),
                    u16::from_be_bytes([body[32], body[33]]),
                ))
            }
            0x11 | 0x21 => return Parse::Invalid(Error::Malformed),
            // Unspecified, UDP, UNIX: no client address to use.
            _ => Source::Local,
        },
        _ => return Parse::Invalid(Error::Malformed),
    };
    Parse::Done { len, source }
}

/// Reads the PROXY header at the start of `io`, within `deadline`, never
/// reading past it.
pub async fn read<R: AsyncRead + Unpin>(
    io: &mut R,
    accept: ProxyProtocol,
    deadline: Duration,
) -> Result<Source, Error> {
    let exchange = async {
        let mut buf = [0u8; 16 + V2_MAX_BODY];
        let mut have = 0;
        loop {
            let want = match parse(&buf[..have], accept) {
                Parse::Done { source, .. } => return Ok(source),
                Parse::Invalid(e) => return Err(e),
                Parse::Incomplete(n) => n,
            };
            // Version 1 has no length up front: a byte at a time until its
            // LF (at most 107), so nothing after it is consumed. Version 2
            // says how long it is.
            let upto = if buf[0] == b'P' { have + 1 } else { want };
            io.read_exact(&mut buf[have..upto])
                .await
                .map_err(|_| Error::Closed)?;
            have = upto;
        }
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .unwrap_or(Err(Error::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: ProxyProtocol = ProxyProtocol::Any;

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn version_1_headers_give_the_client_address() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(h, ANY),
            Parse::Done {
                len: 45,
                source: Source::Client("192.0.2.7:56324".parse().unwrap())
            }
        );
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n";
        assert!(matches!(
            parse(h, ProxyProtocol::V1),
            Parse::Done { source: Source::Client(a), .. } if a == "[2001:db8::7]:1".parse().unwrap()
        ));
        assert!(matches!(
            parse(b"PROXY UNKNOWN ffff::1 whatever\r\n", ANY),
            Parse::Done {
                source: Source::Local,
                ..
            }
        ));
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7", ANY), Parse::Incomplete(21));
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n"[..],
            b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 443\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 065535 443\r\n",
            b"PROXY TCP4 2001:db8::7 198.51.100.1 1 443\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 443\n",
            b"PROXY  TCP4 192.0.2.7 198.51.100.1 1 443\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 443\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert_eq!(parse(bad, ANY), Parse::Invalid(Error::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse(&[b'P'; 200], ANY),
            Parse::Invalid(Error::Malformed),
            "no LF within 107 bytes"
        );
    }

    #[test]
    fn version_2_headers_give_the_client_address_and_skip_tlvs() {
        let mut body = vec![192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb];
        body.extend_from_slice(&[0x04, 0x00, 0x02, b'h', b'i']); // a TLV
        let h = v2(1, 0x11, &body);
        assert_eq!(
            parse(&h, ANY),
            Parse::Done {
                len: h.len(),
                source: Source::Client("192.0.2.7:56324".parse().unwrap())
            }
        );
        assert_eq!(parse(&h[..20], ANY), Parse::Incomplete(h.len()));
        assert_eq!(parse(&h[..5], ANY), Parse::Incomplete(16));
        let mut six = [0u8; 36];
        six[15] = 1;
        six[32] = 0x12;
        six[33] = 0x34;
        assert!(matches!(
            parse(&v2(1, 0x21, &six), ANY),
            Parse::Done { source: Source::Client(a), .. } if a == "[::1]:4660".parse().unwrap()
        ));
        assert!(matches!(
            parse(&v2(0, 0x11, &body), ANY),
            Parse::Done {
                source: Source::Local,
                ..
            }
        ));
        assert!(matches!(
            parse(&v2(1, 0x00, &[]), ANY),
            Parse::Done {
                source: Source::Local,
                ..
            }
        ));
        assert_eq!(
            parse(&v2(1, 0x11, &body[..11]), ANY),
            Parse::Invalid(Error::Malformed)
        );
        assert_eq!(
            parse(&v2(2, 0x11, &body), ANY),
            Parse::Invalid(Error::Malformed)
        );
        let mut wrong_version = v2(1, 0x11, &body);
        wrong_version[12] = 0x11;
        assert_eq!(parse(&wrong_version, ANY), Parse::Invalid(Error::Malformed));
        assert_eq!(parse(b"\r\nGET", ANY), Parse::Invalid(Error::Malformed));
    }

    #[test]
    fn only_accepted_versions_pass() {
        let v1 = b"PROXY UNKNOWN\r\n";
        let v2h = v2(0, 0, &[]);
        assert_eq!(parse(v1, ProxyProtocol::V2), Parse::Invalid(Error::Version));
        assert_eq!(
            parse(&v2h, ProxyProtocol::V1),
            Parse::Invalid(Error::Version)
        );
        assert!(matches!(parse(v1, ProxyProtocol::V1), Parse::Done { .. }));
        assert!(matches!(parse(&v2h, ProxyProtocol::V2), Parse::Done { .. }));
    }

    #[tokio::test]
    async fn reading_stops_exactly_at_the_end_of_the_header() {
        let mut input: &[u8] = b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\nGET / HTTP/1.1\r\n";
        let s = read(&mut input, ANY, Duration::from_secs(1)).await.unwrap();
        assert_eq!(s, Source::Client("192.0.2.7:1".parse().unwrap()));
        assert_eq!(input, b"GET / HTTP/1.1\r\n");
        let mut h = v2(1, 0x11, &[192, 0, 2, 7, 198, 51, 100, 1, 0, 1, 0, 2]);
        h.extend_from_slice(b"\x16\x03\x01");
        let mut input: &[u8] = &h;
        read(&mut input, ANY, Duration::from_secs(1)).await.unwrap();
        assert_eq!(input, b"\x16\x03\x01", "the TLS hello is left");
        let mut short: &[u8] = b"PROXY TCP4";
        assert_eq!(
            read(&mut short, ANY, Duration::from_secs(1)).await,
            Err(Error::Closed)
        );
    }
}
