//! Real Redis topologies for the SPEC 13 tests, started by the tests: a
//! plain node with any extra arguments (TLS, ACL users), a master with a
//! replica watched by three sentinels, and a three-master cluster made by
//! `redis-cli --cluster create`.
//!
//! Like [`super::redis`], they skip with a notice when Redis is not
//! installed, and fail instead under `GATEHOUSE_REQUIRE_REDIS=1`.

use super::poll_blocking;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `redis-server` and `redis-cli` are here; panics when they are
/// required and missing.
pub fn available(test: &str) -> bool {
    let ok = ["redis-server", "redis-cli"].iter().all(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if !ok {
        if std::env::var("GATEHOUSE_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!("redis-server and redis-cli are required (GATEHOUSE_REQUIRE_REDIS=1)");
        }
        eprintln!("SKIPPED {test}: redis-server/redis-cli not installed (apt-get install redis-server redis-tools; CI requires them)");
    }
    ok
}

/// `redis-cli -p <port> <args>` (plain TCP, no auth): its output, trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One `redis-server` (or sentinel) process, killed when dropped.
pub struct Node {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Node {
    /// Starts `redis-server` on a free port with `extra` arguments (no
    /// persistence) and waits until `ready` says it answers.
    pub fn start(extra: &[String]) -> Node {
        Self::start_with(extra, true)
    }

    fn start_with(extra: &[String], plain_port: bool) -> Node {
        let dir = super::tempdir();
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--dir".into(),
            dir.path().to_str().unwrap().into(),
        ];
        args.extend([
            "--port".into(),
            if plain_port {
                port.to_string()
            } else {
                "0".into()
            },
        ]);
        // A config file (ACL `user` lines need one) goes first.
        let (conf, rest): (Vec<String>, Vec<String>) =
            extra.iter().cloned().partition(|a| a.ends_with(".conf"));
        args.extend(rest);
        let log = std::fs::File::create(dir.path().join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(&conf)
            .args(&args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start redis-server");
        let n = Node {
            child: Some(child),
            port,
            dir,
        };
        if plain_port {
            n.wait_ping();
        }
        n
    }

    /// A node that listens for TLS only, on `tls_port`, with `extra`.
    pub fn start_tls_only(tls_port: u16, extra: &[String]) -> Node {
        let mut args = vec!["--tls-port".to_string(), tls_port.to_string()];
        args.extend(extra.iter().cloned());
        let mut n = Self::start_with(&args, false);
        n.port = tls_port;
        n
    }

    pub fn wait_ping(&self) {
        assert!(
            poll_blocking(Duration::from_secs(10), || cli(self.port, &["PING"])
                == "PONG"),
            "redis on port {} did not come up",
            self.port
        );
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A master, one replica and three sentinels (quorum 2) watching them
/// as `mymaster`; failures are detected within a second.
pub struct SentinelSet {
    pub master: Node,
    pub replica: Node,
    pub sentinels: Vec<Node>,
}

pub const MASTER_NAME: &str = "mymaster";

impl SentinelSet {
    pub fn start(test: &str) -> Option<SentinelSet> {
        if !available(test) {
            return None;
        }
        let master = Node::start(&[]);
        let replica = Node::start(&[
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ]);
        let sentinels = (0..3)
            .map(|_| {
                let port = free_port();
                let dir = super::tempdir();
                let conf = dir.path().join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {d}\n\
                         sentinel monitor {MASTER_NAME} 127.0.0.1 {m} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                         sentinel failover-timeout {MASTER_NAME} 5000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n",
                        d = dir.path().display(),
                        m = master.port
                    ),
                )
                .unwrap();
                let child = Command::new("redis-server")
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start redis-server --sentinel");
                let n = Node {
                    child: Some(child),
                    port,
                    dir,
                };
                n.wait_ping();
                n
            })
            .collect();
        let set = SentinelSet {
            master,
            replica,
            sentinels,
        };
        // Ready when the replica is in sync and every sentinel knows it.
        let settled = poll_blocking(Duration::from_secs(20), || {
            let synced =
                cli(set.replica.port, &["INFO", "replication"]).contains("master_link_status:up");
            synced
                && set.sentinels.iter().all(|s| {
                    cli(s.port, &["SENTINEL", "replicas", MASTER_NAME])
                        .contains(&set.replica.port.to_string())
                })
        });
        assert!(settled, "sentinel setup did not settle");
        Some(set)
    }

    pub fn sentinel_nodes(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("\"127.0.0.1:{}\"", s.port))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The master's port as the sentinels see it now.
    pub fn current_master_port(&self) -> Option<u16> {
        let out = cli(
            self.sentinels[0].port,
            &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
        );
        out.lines().nth(1)?.trim().parse().ok()
    }
}

/// A Redis Cluster of three masters (no replicas), slots spread by
/// `redis-cli --cluster create`.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start(test: &str) -> Option<Cluster> {
        if !available(test) {
            return None;
        }
        let nodes: Vec<Node> = (0..3)
            .map(|_| {
                Node::start(&[
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-node-timeout".into(),
                    "2000".into(),
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let ok = poll_blocking(Duration::from_secs(20), || {
            nodes
                .iter()
                .all(|n| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
        assert!(ok, "cluster did not become ok");
        Some(Cluster { nodes })
    }

    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("\"127.0.0.1:{}\"", n.port))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Keys per node (`DBSIZE` of each master).
    pub fn dbsizes(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| cli(n.port, &["DBSIZE"]).parse().unwrap_or(0))
            .collect()
    }
}
