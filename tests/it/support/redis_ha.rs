//! Real Redis topologies for the SPEC 13 tests, started by the tests: a
//! plain node with any extra arguments (TLS, ACL users), a master with a
//! replica watched by three sentinels (optionally with passwords for the
//! data nodes and for the sentinels, or on TLS ports only), and a
//! three-master cluster made by `redis-cli --cluster create`, with or
//! without a replica per master.
//!
//! Like [`super::redis`], they skip with a notice when Redis is not
//! installed, and fail instead under `GATEHOUSE_REQUIRE_REDIS=1`.

use super::poll_blocking;
use std::path::{Path, PathBuf};
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
    cli_as(port, None, None, args)
}

/// [`cli`] with a password and, when `tls_dir` is given, over TLS with
/// the `ca.crt` there.
pub fn cli_as(port: u16, password: Option<&str>, tls_dir: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some(pw) = password {
        cmd.args(["--no-auth-warning", "-a", pw]);
    }
    if let Some(d) = tls_dir {
        cmd.arg("--tls").arg("--cacert").arg(d.join("ca.crt"));
    }
    let out = cmd.args(args).output().expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Server arguments for TLS only, with `redis.crt`/`redis.key`/`ca.crt`
/// from `dir`, replication over TLS too.
pub fn tls_args(dir: &Path) -> Vec<String> {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    vec![
        "--tls-cert-file".into(),
        p("redis.crt"),
        "--tls-key-file".into(),
        p("redis.key"),
        "--tls-ca-cert-file".into(),
        p("ca.crt"),
        "--tls-auth-clients".into(),
        "no".into(),
        "--tls-replication".into(),
        "yes".into(),
    ]
}

/// One `redis-server` (or sentinel) process, killed when dropped.
pub struct Node {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Node {
    /// Starts `redis-server` on a free port with `extra` arguments (no
    /// persistence) and waits until it answers PING (unless it wants a
    /// password).
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
        // A node with a password is waited for by whoever knows it.
        if plain_port && !extra.iter().any(|a| a == "--requirepass") {
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
        self.wait_ping_as(None, None)
    }

    /// Waits until the node answers PING with `password`, over TLS when
    /// `tls_dir` is given.
    pub fn wait_ping_as(&self, password: Option<&str>, tls_dir: Option<&Path>) {
        assert!(
            poll_blocking(Duration::from_secs(10), || {
                cli_as(self.port, password, tls_dir, &["PING"]) == "PONG"
            }),
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
    pub opts: SentinelOpts,
}

pub const MASTER_NAME: &str = "mymaster";

/// Credentials and TLS for a [`SentinelSet`].
#[derive(Clone, Default)]
pub struct SentinelOpts {
    /// `requirepass` (and `masterauth`) of the data nodes.
    pub data_password: Option<String>,
    /// `requirepass` of the sentinels themselves.
    pub sentinel_password: Option<String>,
    /// Everything TLS only, with the `redis.crt`, `redis.key` and `ca.crt`
    /// in this directory.
    pub tls_dir: Option<PathBuf>,
}

impl SentinelSet {
    pub fn start(test: &str) -> Option<SentinelSet> {
        Self::start_with(test, SentinelOpts::default())
    }

    pub fn start_with(test: &str, opts: SentinelOpts) -> Option<SentinelSet> {
        if !available(test) {
            return None;
        }
        let mut data_args: Vec<String> = Vec::new();
        if let Some(pw) = &opts.data_password {
            data_args.extend(["--requirepass".into(), pw.clone()]);
            data_args.extend(["--masterauth".into(), pw.clone()]);
        }
        let data_node = |extra: &[String]| {
            let mut args = data_args.clone();
            args.extend(extra.iter().cloned());
            let n = match &opts.tls_dir {
                Some(d) => {
                    args.extend(tls_args(d));
                    Node::start_tls_only(free_port(), &args)
                }
                None => Node::start(&args),
            };
            n.wait_ping_as(opts.data_password.as_deref(), opts.tls_dir.as_deref());
            n
        };
        let master = data_node(&[]);
        let replica = data_node(&[
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ]);
        let sentinels = (0..3)
            .map(|_| {
                let port = free_port();
                let dir = super::tempdir();
                let conf = dir.path().join("sentinel.conf");
                let mut text = format!(
                    "bind 127.0.0.1\ndir {d}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {m} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    d = dir.path().display(),
                    m = master.port
                );
                if let Some(pw) = &opts.data_password {
                    text.push_str(&format!("sentinel auth-pass {MASTER_NAME} {pw}\n"));
                }
                if let Some(pw) = &opts.sentinel_password {
                    text.push_str(&format!("requirepass {pw}\n"));
                }
                match &opts.tls_dir {
                    Some(d) => {
                        text.push_str(&format!("port 0\ntls-port {port}\n"));
                        for pair in tls_args(d).chunks(2) {
                            text.push_str(&format!(
                                "{} {}\n",
                                pair[0].trim_start_matches("--"),
                                pair[1]
                            ));
                        }
                    }
                    None => text.push_str(&format!("port {port}\n")),
                }
                std::fs::write(&conf, text).unwrap();
                let log = std::fs::File::create(dir.path().join("sentinel.log")).unwrap();
                let child = Command::new("redis-server")
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .expect("start redis-server --sentinel");
                let n = Node {
                    child: Some(child),
                    port,
                    dir,
                };
                n.wait_ping_as(opts.sentinel_password.as_deref(), opts.tls_dir.as_deref());
                n
            })
            .collect();
        let set = SentinelSet {
            master,
            replica,
            sentinels,
            opts,
        };
        // Ready when the replica is in sync and every sentinel knows it.
        let settled = poll_blocking(Duration::from_secs(20), || {
            let synced = set
                .data_cli(set.replica.port, &["INFO", "replication"])
                .contains("master_link_status:up");
            synced
                && set.sentinels.iter().all(|s| {
                    set.sentinel_cli(s.port, &["SENTINEL", "replicas", MASTER_NAME])
                        .contains(&set.replica.port.to_string())
                })
        });
        assert!(settled, "sentinel setup did not settle");
        Some(set)
    }

    /// `redis-cli` against a data node, with its password and TLS.
    pub fn data_cli(&self, port: u16, args: &[&str]) -> String {
        cli_as(
            port,
            self.opts.data_password.as_deref(),
            self.opts.tls_dir.as_deref(),
            args,
        )
    }

    /// `redis-cli` against a sentinel, with its password and TLS.
    pub fn sentinel_cli(&self, port: u16, args: &[&str]) -> String {
        cli_as(
            port,
            self.opts.sentinel_password.as_deref(),
            self.opts.tls_dir.as_deref(),
            args,
        )
    }

    /// The `[sessions]` lines of a gateway on these sentinels.
    pub fn store_lines(&self) -> String {
        format!(
            "store = \"redis\"\nredis_sentinel = {{ master = \"{MASTER_NAME}\", nodes = [{}] }}\n",
            self.sentinel_nodes()
        )
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
        let out = self.sentinel_cli(
            self.sentinels[0].port,
            &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
        );
        out.lines().nth(1)?.trim().parse().ok()
    }
}

/// A Redis Cluster of three masters, slots spread by `redis-cli --cluster
/// create`, with or without one replica each.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Three masters, no replicas.
    pub fn start(test: &str) -> Option<Cluster> {
        Self::start_with(test, 0, 2000)
    }

    /// Three masters with `replicas` replicas each; a node unreachable for
    /// `node_timeout_ms` counts as failed (and its replica takes over).
    pub fn start_with(test: &str, replicas: usize, node_timeout_ms: u64) -> Option<Cluster> {
        if !available(test) {
            return None;
        }
        let nodes: Vec<Node> = (0..3 * (1 + replicas))
            .map(|_| {
                Node::start(&[
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-node-timeout".into(),
                    node_timeout_ms.to_string(),
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
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        // Ready when every node sees all slots served and every replica
        // is in sync with its master.
        let ok = poll_blocking(Duration::from_secs(20), || {
            cluster.nodes.iter().enumerate().all(|(i, n)| {
                cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
                    && (cluster.is_master(i)
                        || cli(n.port, &["INFO", "replication"]).contains("master_link_status:up"))
            })
        });
        assert!(ok, "cluster did not become ok");
        Some(cluster)
    }

    /// Whether node `i` is a master now (`ROLE`).
    pub fn is_master(&self, i: usize) -> bool {
        cli(self.nodes[i].port, &["ROLE"]).starts_with("master")
    }

    /// Node `i`'s cluster id.
    pub fn id(&self, i: usize) -> String {
        cli(self.nodes[i].port, &["CLUSTER", "MYID"])
    }

    /// The index of the node that replicates node `master`.
    pub fn replica_of(&self, master: usize) -> Option<usize> {
        let port = self.nodes[master].port.to_string();
        (0..self.nodes.len()).find(|&i| {
            i != master
                && !self.is_master(i)
                && cli(self.nodes[i].port, &["INFO", "replication"])
                    .contains(&format!("master_port:{port}"))
        })
    }

    /// The `[sessions]` lines of a gateway on this cluster.
    pub fn store_lines(&self) -> String {
        format!("store = \"redis\"\nredis_cluster = [{}]\n", self.seeds())
    }

    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("\"127.0.0.1:{}\"", n.port))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Keys per node (`DBSIZE` of each; a replica has its master's).
    pub fn dbsizes(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| cli(n.port, &["DBSIZE"]).parse().unwrap_or(0))
            .collect()
    }
}
