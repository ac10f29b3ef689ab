//! A deliberately small HTTP/2 client over TLS that shows the frames
//! themselves (RFC 9113), so a test can see a GOAWAY arrive while its
//! stream is still open, which a full client library hides.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// GOAWAY: (last stream id, error code).
    pub fn goaway(&self) -> Option<(u32, u32)> {
        (self.kind == GOAWAY && self.payload.len() >= 8).then(|| {
            let p = &self.payload;
            (
                u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
                u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            )
        })
    }
}

pub struct H2 {
    io: TlsStream<TcpStream>,
}

impl H2 {
    /// TLS with ALPN `h2`, then the client preface and an empty SETTINGS.
    pub async fn connect(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> H2 {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let io = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut h2 = H2 { io };
        h2.io
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        h2.write_frame(SETTINGS, 0, 0, &[]).await.unwrap();
        h2
    }

    async fn write_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        self.io.write_all(&f).await?;
        self.io.flush().await
    }

    /// `GET https://localhost<path>` on `stream` (odd, increasing), ended.
    pub async fn get(&mut self, stream: u32, path: &str) {
        // HPACK (RFC 7541): indexed :method GET (2) and :scheme https (7);
        // :path (4) and :authority (1) as literals without indexing.
        let mut block = vec![0x82, 0x87, 0x04, path.len() as u8];
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x01, 9]);
        block.extend_from_slice(b"localhost");
        self.write_frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
            .await
            .unwrap();
    }

    /// The next frame, `None` once the server closed the connection.
    /// SETTINGS and PING are acknowledged as a client must.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        let mut head = [0u8; 9];
        self.io.read_exact(&mut head).await.ok()?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        self.io.read_exact(&mut payload).await.ok()?;
        let f = Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        };
        // The server may be closing: a failed acknowledgement is its business.
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            let _ = self.write_frame(SETTINGS, ACK, 0, &[]).await;
        }
        if f.kind == PING && f.flags & ACK == 0 {
            let p = f.payload.clone();
            let _ = self.write_frame(PING, ACK, 0, &p).await;
        }
        Some(f)
    }
}
