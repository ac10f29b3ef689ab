//! The real `gatehouse` binary as a child process: started from config
//! text with `--ready-file`, its log written to a file in its folder,
//! signalled and waited for. Optionally started under `prlimit` (to give
//! it a small file-descriptor limit).

use super::poll;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

pub struct GwProcess {
    pub child: Child,
    pub listen: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl GwProcess {
    /// Starts the binary on `toml`; `nofile` puts it under that
    /// RLIMIT_NOFILE (soft and hard) with `prlimit`.
    pub async fn spawn(toml: &str, nofile: Option<u64>) -> GwProcess {
        let dir = crate::support::tempdir();
        let config = dir.path().join("gatehouse.toml");
        std::fs::write(&config, toml).unwrap();
        let ready = dir.path().join("ready.json");
        let log = std::fs::File::create(dir.path().join("gatehouse.log")).unwrap();
        let args = [
            "--config",
            config.to_str().unwrap(),
            "run",
            "--ready-file",
            ready.to_str().unwrap(),
        ];
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .args(args)
            .env("GATEHOUSE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the gatehouse binary");
        // Complete JSON only: the file may be caught half-written.
        let read = || {
            std::fs::read(&ready)
                .ok()
                .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
        };
        let up = poll(Duration::from_secs(20), || async { read().is_some() }).await;
        assert!(up, "the binary never became ready");
        let info = read().expect("the ready file stays");
        GwProcess {
            child,
            listen: info["listen"].as_str().unwrap().parse().unwrap(),
            admin: info["admin"].as_str().unwrap().parse().unwrap(),
            dir,
            config,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gatehouse.log")).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit, up to `within`; its exit status.
    pub async fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = &mut self.child;
        // The closure's future is ready at once: it borrows nothing.
        poll(within, || {
            std::future::ready(child.try_wait().unwrap().is_some())
        })
        .await;
        // A reaped child keeps answering with its status.
        child.try_wait().unwrap()
    }

    /// The value of a metric line (first match) from the admin listener.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = crate::support::Client::plain(self.admin)
            .get("/metrics")
            .await
            .text();
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

impl Drop for GwProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's RLIMIT_NOFILE soft limit, raised to the hard limit with
/// `prlimit` when it is below `want` (no privilege needed for that).
pub fn raise_nofile(want: u64) -> u64 {
    let read = || -> (u64, u64) {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or("");
        let nums: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (
            nums.first().copied().unwrap_or(1024),
            nums.get(1).copied().unwrap_or(1024),
        )
    };
    let (soft, hard) = read();
    if soft < want && hard > soft {
        let _ = Command::new("prlimit")
            .args([
                "--pid",
                &std::process::id().to_string(),
                &format!("--nofile={}:{hard}", hard.min(want.max(soft))),
            ])
            .status();
    }
    read().0
}
