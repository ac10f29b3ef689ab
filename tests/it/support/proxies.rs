//! Real third-party proxies started by the tests: nginx and Caddy, each
//! as the test user with its whole configuration and state in a temp
//! folder. Neither can bind port 0 and tell us the port, so a free port is
//! picked by binding and releasing it; a start that loses the port to
//! another process is retried on a fresh one.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A started proxy; killed when dropped.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    log: std::path::PathBuf,
}

impl Proxy {
    /// What the proxy wrote to its error log and stderr, for assertions'
    /// messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `cmd` runs (`cmd <arg>` succeeds); `None` with a printed notice
/// when it does not and `require_var` is not set, a panic when it is.
fn available(cmd: &str, arg: &str, require_var: &str, test: &str) -> bool {
    let ok = Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var(require_var).as_deref() == Ok("1") {
            panic!("{cmd} is required ({require_var}=1) but not installed");
        }
        eprintln!("SKIPPED {test}: {cmd} is not installed (CI installs it)");
    }
    ok
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Starts a proxy: `config(dir, addr)` writes its config and returns the
/// command line. Waits until it accepts connections; retries on another
/// port when it exits first (the port was taken meanwhile).
async fn start(name: &str, config: impl Fn(&std::path::Path, SocketAddr) -> Command) -> Proxy {
    let mut last_log = String::new();
    for _ in 0..5 {
        let dir = crate::support::tempdir();
        let addr = free_port();
        let log = dir.path().join("stderr.log");
        let mut cmd = config(dir.path(), addr);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut p = Proxy {
            child,
            addr,
            dir,
            log,
        };
        // Up once it accepts; given up on if it exits first.
        let mut up = false;
        crate::support::poll(Duration::from_secs(15), || {
            up = std::net::TcpStream::connect(addr).is_ok();
            let over = up || p.child.try_wait().unwrap().is_some();
            async move { over }
        })
        .await;
        if up {
            return p;
        }
        last_log =
            p.log() + &std::fs::read_to_string(p.dir.path().join("error.log")).unwrap_or_default();
    }
    panic!("{name} never listened: {last_log}");
}

/// nginx with `server_body` as the body of an `http { server { ... } }`
/// block listening on its port. `None` when nginx is missing and not
/// required.
pub async fn nginx(test: &str, server_body: &str) -> Option<Proxy> {
    if !available("nginx", "-v", "GATEHOUSE_REQUIRE_NGINX", test) {
        return None;
    }
    Some(
        start("nginx", |dir, addr| {
            let d = dir.display();
            std::fs::write(
                dir.join("nginx.conf"),
                format!(
                    "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                     error_log {d}/error.log warn;\nevents {{ worker_connections 128; }}\n\
                     http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
                     fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
                     server {{\n    listen {addr};\n{server_body}\n  }}\n}}\n"
                ),
            )
            .unwrap();
            let mut c = Command::new("nginx");
            c.arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"));
            c
        })
        .await,
    )
}

/// Caddy running a Caddyfile: `site_body` inside the site block of its
/// plain-HTTP address. `None` when Caddy is missing and not required.
pub async fn caddy(test: &str, site_body: &str) -> Option<Proxy> {
    if !available("caddy", "version", "GATEHOUSE_REQUIRE_CADDY", test) {
        return None;
    }
    Some(
        start("caddy", |dir, addr| {
            let file = dir.join("Caddyfile");
            std::fs::write(
                &file,
                format!(
                    "{{\n  admin off\n  auto_https off\n}}\n\
                     http://:{port} {{\n  bind 127.0.0.1\n{site_body}\n}}\n",
                    port = addr.port()
                ),
            )
            .unwrap();
            let mut c = Command::new("caddy");
            c.arg("run")
                .arg("--config")
                .arg(&file)
                .arg("--adapter")
                .arg("caddyfile")
                .env("HOME", dir)
                .env("XDG_DATA_HOME", dir.join("data"))
                .env("XDG_CONFIG_HOME", dir.join("config"));
            c
        })
        .await,
    )
}
