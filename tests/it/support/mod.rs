//! Test support: a test PKI made at run time, backends on port 0, an
//! in-process gateway, and small HTTP/1.1, HTTP/2 and raw-socket clients.
//! Everything talks over real sockets on 127.0.0.1.

#![allow(dead_code)]

pub mod backend;
pub mod client;
pub mod dns;
pub mod jwt;
pub mod keys;
pub mod pki;
pub mod process;
pub mod proxies;
pub mod raw_backend;
pub mod redis;
pub mod redis_ha;
pub mod sessions;
pub mod tokens;

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

/// A slow client: writes `piece` to `s` every 100 ms until the gateway
/// closes the connection, and returns what it answered (read to the end),
/// or `None` when the connection was still open after `within`.
pub async fn trickle_until_closed(
    s: &mut tokio::net::TcpStream,
    piece: &[u8],
    within: Duration,
) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = Vec::new();
    let closed = tokio::time::timeout(within, async {
        loop {
            tokio::select! {
                _ = s.read_to_end(&mut out) => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if s.write_all(piece).await.is_err() { break; }
                }
            }
        }
    })
    .await;
    closed.ok().map(|()| out)
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
/// last look at the deadline). Between two looks it lets [`POLL_EVERY`]
/// pass with [`pass`], so under a [`ManualClock`] it advances the clock.
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
        pass(POLL_EVERY).await;
    }
}

/// [`poll`]'s blocking twin, for code off the runtime (starting and
/// watching child processes from plain threads): asks `f` until it returns
/// true (then true) or `within` has passed (then false, after one last
/// look), [`POLL_EVERY`] apart.
pub fn poll_blocking(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

thread_local! {
    /// Whether this thread's test holds a [`ManualClock`].
    static MANUAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Paused tokio time that moves only when the test says so, for tests of
/// state that expires inside the gateway's own process (the memory session
/// store, refresh families, lockouts): `#[tokio::test(start_paused =
/// true)]`, then `let _clock = ManualClock::hold();` first thing.
///
/// Why not tokio's auto-advance alone: a paused runtime that finds nothing
/// to run jumps its clock to the next timer, and a loopback round trip on a
/// busy machine can leave it idle for a moment; the jump then fires the
/// gateway's deadlines (a lockout ending, a session expiring) in the middle
/// of a request. A blocking task in flight turns auto-advance off (tokio
/// does that so `spawn_blocking` work is not overtaken by the clock), so
/// the guard keeps one parked until it is dropped, and time moves only
/// through [`pass`] (`tokio::time::advance`).
pub struct ManualClock {
    release: Option<std::sync::mpsc::Sender<()>>,
}

impl ManualClock {
    pub fn hold() -> ManualClock {
        let (release, parked) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            // Returns once the guard drops its sender.
            let _ = parked.recv();
        });
        MANUAL.with(|m| m.set(true));
        ManualClock {
            release: Some(release),
        }
    }
}

impl Drop for ManualClock {
    fn drop(&mut self) {
        MANUAL.with(|m| m.set(false));
        self.release.take();
    }
}

/// Lets `d` of the gateway's time pass: under a [`ManualClock`] the clock
/// is advanced at once; otherwise (real time: a Redis store's TTLs run on
/// the server's clock, child processes on theirs) this waits.
pub async fn pass(d: Duration) {
    if MANUAL.with(|m| m.get()) {
        tokio::time::advance(d).await;
    } else {
        tokio::time::sleep(d).await;
    }
}

/// [`pass`] until `at`.
pub async fn pass_until(at: tokio::time::Instant) {
    pass(at.saturating_duration_since(tokio::time::Instant::now())).await;
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
