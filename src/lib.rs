//! gatehouse: a reverse-proxy authentication gateway.
//!
//! The crate is the whole gateway; `main.rs` only parses the command line.
//! A request flows through [`proxy::handle`], which is the one place the
//! phases are ordered:
//!
//! ```text
//! accept (server) -> TLS (server::tls) -> HTTP/1.1 or HTTP/2 (hyper)
//!   -> normalise path + route (route) -> strip identity headers (proxy::headers)
//!   -> authenticate + authorise (auth) -> choose backend (upstream)
//!   -> rewrite + forward, streamed (proxy::forward) -> respond
//! ```
//!
//! State lives in [`gateway::Gateway`]: an immutable config snapshot behind
//! an `ArcSwap` (swapped whole on reload) and the few live counters that
//! outlive reloads.

pub mod auth;
pub mod body;
pub mod clock;
pub mod config;
pub mod cookies;
pub mod crypto;
pub mod demo;
pub mod error;
pub mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod login;
pub mod metrics;
pub mod percent;
pub mod proxy;
pub mod revocation;
pub mod route;
pub mod server;
pub mod session;
pub mod state;
pub mod telemetry;
pub mod tokens;
pub mod upstream;

use gateway::{BoundAddrs, Gateway};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A gateway serving in this process (what `gatehouse run` does, minus
/// signals): bound, running, and stoppable.
pub struct Running {
    pub gateway: Arc<Gateway>,
    pub addrs: BoundAddrs,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Starts graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Shuts down gracefully and waits until it is done.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.begin_shutdown();
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Waits for the server to end (after [`Running::begin_shutdown`]).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Binds the config's listeners and starts serving.
pub async fn start(config: config::Config) -> std::io::Result<Running> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let listeners = server::Listeners::bind(&config).await?;
    let addrs = listeners.addrs()?;
    let gateway = Gateway::new(config);
    gateway
        .store
        .wait_connected(std::time::Duration::from_secs(2))
        .await;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run(gateway.clone(), listeners, async move {
        let _ = rx.await;
    }));
    Ok(Running {
        gateway,
        addrs,
        stop: Some(tx),
        task,
    })
}
