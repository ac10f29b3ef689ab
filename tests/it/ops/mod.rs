//! Operations: certificate rotation, reload and shutdown under load, and
//! the metric names the contract lists.

mod h2raw;
mod logs;
mod metrics;
mod reload;
mod rotation;
mod shutdown;

use crate::support::*;
use rustls_pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::Path;

pub const TOKEN: &str = "ops-admin-token-0123456789";

/// A TLS gateway config over `backends`, with an admin token. `tls_extra`
/// goes into `[server.tls]`.
pub fn tls_config(backends: &[&Backend], tls_extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[server.tls]\ncert = \"server.crt\"\nkey = \"server.key\"\n{tls_extra}\n\n\
[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n[log]\naccess_log = false\n\n\
[[upstreams]]\nname = \"app\"\nbackends = [{}]\n\n\
[[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        list.join(", ")
    )
}

/// The DER of the first certificate in a PEM file.
pub fn cert_der(path: &Path) -> Vec<u8> {
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}

/// The leaf certificate a new TLS connection is served. The client config
/// is fresh each time: no session resumption, a full handshake.
pub async fn served_cert(addr: SocketAddr, pki: &Pki) -> std::io::Result<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(pki.client_config(&["http/1.1"]))
        .connect(name, tcp)
        .await?;
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
}

/// `POST /admin/reload` with the admin token.
pub async fn admin_reload(admin: SocketAddr) -> Resp {
    Client::plain(admin)
        .send(client::req(
            "POST",
            "/admin/reload",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            "",
        ))
        .await
}

/// The value of one metric series (exact name and labels) from `/metrics`.
pub async fn metric(admin: SocketAddr, series: &str) -> Option<f64> {
    let text = Client::plain(admin).get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
