//! Test support: a test PKI made at run time, backends on port 0, an
//! in-process gateway, and small HTTP/1.1, HTTP/2 and raw-socket clients.
//! Everything talks over real sockets on 127.0.0.1.

#![allow(dead_code)]

pub mod backend;
pub mod client;
pub mod dns;
pub mod keys;
pub mod pki;
pub mod process;
pub mod raw_backend;
pub mod redis;
pub mod sessions;

use gatehouse::Running;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use backend::Backend;
pub use client::{Client, Resp};
pub use dns::DnsServer;
pub use pki::Pki;

/// A gateway started from config text, with its folder (PKI files live
/// there, so the config can name `server.crt` and friends).
pub struct Gw {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Gw {
    /// Starts a gateway from `toml` written into a fresh folder, after
    /// `prepare` has put files there.
    pub async fn start_in(dir: tempfile::TempDir, toml: &str) -> Gw {
        let config_path = dir.path().join("gatehouse.toml");
        std::fs::write(&config_path, toml).unwrap();
        let cfg = gatehouse::config::load(&config_path).unwrap_or_else(|e| panic!("config: {e}"));
        let running = gatehouse::start(cfg).await.expect("gateway starts");
        Gw {
            running: Some(running),
            dir,
            config_path,
        }
    }

    pub async fn start(toml: &str) -> Gw {
        Gw::start_in(tempdir(), toml).await
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.running().addrs.listen
    }

    pub fn admin(&self) -> std::net::SocketAddr {
        self.running().addrs.admin
    }

    pub fn plain(&self) -> Client {
        Client::plain(self.addr())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(10), r.stop())
                .await
                .expect("stops in time")
                .expect("stops cleanly");
        }
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("gatehouse-test-")
        .tempdir()
        .unwrap()
}

/// The usual header of a test config: plain HTTP on port 0, admin on port 0.
pub fn base_config() -> String {
    "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[log]\naccess_log = false\n\n".to_string()
}

/// One upstream and one `auth = "none"` route over it.
pub fn simple_proxy_config(backends: &[&Backend]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "{}[[upstreams]]\nname = \"app\"\nbackends = [{}]\n\n[[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        base_config(),
        list.join(", ")
    )
}

/// An address on which nothing listens (bound, then closed).
pub fn dead_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// How long [`poll`] waits between two looks.
pub const POLL_EVERY: Duration = Duration::from_millis(20);

/// The one way a test waits for something to happen: asks `f` until it
/// returns true (then true) or `within` has passed (then false, after one
/// last look at the deadline). Under paused tokio time the pause between
/// looks advances the clock instead of waiting.
pub async fn poll<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Waits until the gateway's clock has passed the whole second `mark`:
/// revocation marks and `iat` are whole seconds, so a token minted in the
/// mark's own second counts as issued before it.
pub async fn next_second_after(mark: u64) {
    let passed = poll(Duration::from_secs(2), || async {
        gatehouse::clock::unix_now() > mark
    })
    .await;
    assert!(passed, "the clock did not pass second {mark}");
}
