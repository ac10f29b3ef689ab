//! A real `redis-server` on a free loopback port, started by the test.
//!
//! When `redis-server` is not installed the Redis tests print a notice and
//! skip, unless `GATEHOUSE_REQUIRE_REDIS=1` (CI sets it), where they fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

impl RedisServer {
    /// Starts a server, or returns `None` (after printing why) when Redis is
    /// not installed and not required.
    pub fn start(test: &str) -> Option<RedisServer> {
        if !available() {
            if std::env::var("GATEHOUSE_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("redis-server is required (GATEHOUSE_REQUIRE_REDIS=1) but not installed");
            }
            eprintln!("SKIPPED {test}: redis-server is not installed (apt-get install redis-server; CI requires it)");
            return None;
        }
        let dir = crate::support::tempdir();
        let mut s = RedisServer {
            child: None,
            port: free_port(),
            dir,
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                // Survives a kill and restart: every write is on disk first.
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                self.dir.path().to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        // Redis logs when it accepts connections (after loading its
        // append-only file, on a restart). The reader goes on draining the
        // log until the server exits, so it never blocks on a full pipe.
        let log = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            for line in BufReader::new(log).lines() {
                let Ok(line) = line else { break };
                if line.contains("Ready to accept connections") {
                    let _ = ready_tx.send(());
                }
            }
        });
        self.child = Some(child);
        // An error here: ten seconds passed, or the server exited (its log
        // ended) without getting ready.
        if ready.recv_timeout(Duration::from_secs(10)).is_err() {
            panic!("redis-server did not come up on port {}", self.port);
        }
    }

    /// Keys in database 0 (`DBSIZE`).
    pub fn dbsize(&self) -> u64 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"DBSIZE\r\n").unwrap();
        let mut buf = [0u8; 32];
        let n = s.read(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        text.trim()
            .trim_start_matches(':')
            .parse()
            .unwrap_or_else(|_| panic!("DBSIZE answered {text:?}"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
