//! The built binary, end to end: CLI, ready file, signals, exit codes.

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

async fn wait_for_file(path: &std::path::Path) -> serde_json::Value {
    assert!(
        poll(Duration::from_secs(20), || async { path.exists() }).await,
        "ready file never appeared"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn run_writes_ready_file_serves_and_finishes_in_flight_requests_on_sigterm() {
    let b = Backend::start("b1").await;
    let dir = tempdir();
    let cfg = dir.path().join("gatehouse.toml");
    std::fs::write(&cfg, simple_proxy_config(&[&b])).unwrap();
    let ready = dir.path().join("ready.json");
    let child = Command::new(BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "run",
            "--ready-file",
            ready.to_str().unwrap(),
        ])
        .env("GATEHOUSE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let info = wait_for_file(&ready).await;
    let listen: std::net::SocketAddr = info["listen"].as_str().unwrap().parse().unwrap();
    let admin: std::net::SocketAddr = info["admin"].as_str().unwrap().parse().unwrap();
    assert_ne!(listen.port(), 0);
    assert!(info["redirect"].is_null());
    assert_eq!(Client::plain(admin).get("/healthz").await.status, 200);
    assert_eq!(Client::plain(listen).get("/x").await.status, 200);

    // A slow request in flight when SIGTERM arrives still completes.
    let slow = tokio::spawn(async move { Client::plain(listen).get("/slow/1500").await });
    assert!(
        poll(Duration::from_secs(5), || async {
            b.requests()
                .iter()
                .any(|s| s.path_and_query == "/slow/1500")
        })
        .await
    );
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow done");
    // New connections are refused once it stopped accepting (within 200
    // ms; refused once, refused for good).
    assert!(
        poll(Duration::from_millis(200), || async {
            tokio::net::TcpStream::connect(listen).await.is_err()
        })
        .await
    );
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(status.status.success(), "exit status {:?}", status.status);
    let log = String::from_utf8_lossy(&status.stderr);
    assert!(
        log.contains(&format!("listening addr={listen} tls=false")),
        "{log}"
    );
}

#[test]
fn check_exits_0_for_a_good_config_and_1_naming_the_error_for_a_bad_one() {
    let dir = tempdir();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[[upstreams]]\nname = \"a\"\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nname = \"r\"\nupstream = \"a\"\nauth = \"none\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[routes]]\nname = \"r\"\nupstream = \"nowhere\"\n").unwrap();
    let out = Command::new(BIN)
        .env("GATEHOUSE_CONFIG", bad.to_str().unwrap())
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("routes[0].upstream"), "{err}");
    assert!(err.contains("bad.toml"), "{err}");
    // `run` with a bad config starts nothing and exits 1.
    let out = Command::new(BIN)
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn version_prints_the_version() {
    let out = Command::new(BIN).arg("version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn demo_serves_tls_with_the_printed_certificate() {
    // The demo's pieces, as `gatehouse demo` wires them: echo backends, a
    // fresh certificate, the written config. Then curl-like requests.
    let a = gatehouse::demo::spawn_echo_backend("echo-a", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let b = gatehouse::demo::spawn_echo_backend("echo-b", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempdir();
    let files = gatehouse::demo::write_files(dir.path(), 0, &[a, b]).unwrap();
    let cfg = gatehouse::config::load(&files.config).unwrap();
    let running = gatehouse::start(cfg).await.unwrap();
    // Trust exactly the demo certificate, as `curl --cacert` would.
    let pem = std::fs::read(&files.cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let c = Client::tls(running.addrs.listen, std::sync::Arc::new(tls), "localhost");
    let first = c.get_with("/hello", &[("x-auth-user", "mallory")]).await;
    let second = c.get("/hello").await;
    assert_eq!(first.status, 200);
    let (x, y) = (first.json(), second.json());
    assert_ne!(
        x["backend"], y["backend"],
        "round robin over both echo backends"
    );
    assert!(
        x["headers"].get("x-auth-user").is_none(),
        "spoofed header stripped"
    );
    assert_eq!(files.fingerprint.len(), 32 * 3 - 1);
    running.stop().await.unwrap();
}

use rustls_pki_types::pem::PemObject;

#[tokio::test]
async fn access_log_lines_are_json_with_the_request_facts() {
    let b = Backend::start("b1").await;
    let dir = tempdir();
    let cfg = dir.path().join("gatehouse.toml");
    std::fs::write(
        &cfg,
        simple_proxy_config(&[&b]).replace(
            "[log]\naccess_log = false\n",
            "[log]\nformat = \"json\"\naccess_log = true\n",
        ),
    )
    .unwrap();
    let ready = dir.path().join("ready.json");
    let child = Command::new(BIN)
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--ready-file",
            ready.to_str().unwrap(),
        ])
        .env("GATEHOUSE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let info = wait_for_file(&ready).await;
    let listen: std::net::SocketAddr = info["listen"].as_str().unwrap().parse().unwrap();
    let r = Client::plain(listen).get("/logged?secret=1").await;
    assert_eq!(r.status, 200);
    let rid = r.header("x-request-id").unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|l| l["target"] == "gatehouse::access")
        .unwrap_or_else(|| panic!("no access line in {text}"));
    assert_eq!(access["method"], "GET");
    assert_eq!(
        access["path"], "/logged",
        "the query string (which may hold tokens) is not logged"
    );
    assert_eq!(access["status"], 200);
    assert_eq!(access["route"], "app");
    assert_eq!(access["backend"], b.addr);
    assert_eq!(access["request_id"], rid);
    assert!(access["duration_ms"].as_f64().is_some());
}

#[tokio::test]
async fn demo_exits_zero_on_sigterm_like_run() {
    let port = dead_addr().port();
    let mut child = Command::new(BIN)
        .args(["demo", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = poll(Duration::from_secs(20), || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(up, "the demo never listened on {port}");
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut status = None;
    assert!(
        poll(Duration::from_secs(10), || {
            status = child.try_wait().unwrap();
            std::future::ready(status.is_some())
        })
        .await,
        "the demo kept running after SIGTERM"
    );
    assert_eq!(status.unwrap().code(), Some(0), "{status:?}");
}

/// `gatehouse check --config <file>` under a 1 GiB address-space limit (so
/// a check that reads without bound fails fast instead of eating the
/// machine's memory) and a 20 s deadline: exit code, stderr, time taken.
fn check_bounded(config: &std::path::Path) -> (Option<i32>, String, Duration) {
    let start = std::time::Instant::now();
    let mut child = Command::new("prlimit")
        .arg("--as=1073741824")
        .arg(BIN)
        .args(["check", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gatehouse check under prlimit");
    // A watchdog kills it at the deadline; the wait below then returns.
    let (done, watch) = std::sync::mpsc::channel::<()>();
    let pid = child.id().to_string();
    let watchdog = std::thread::spawn(move || {
        let late = watch.recv_timeout(Duration::from_secs(20)).is_err();
        if late {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        late
    });
    let status = child.wait().unwrap();
    let _ = done.send(());
    assert!(!watchdog.join().unwrap(), "check still running after 20 s");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err, start.elapsed())
}

/// SPEC 16: `check` refuses a `*_file` secret or users file that is not a
/// regular file or is over 1 MiB, at once, naming the path.
#[test]
fn check_refuses_dev_zero_and_oversized_files_quickly_naming_them() {
    let dir = tempdir();
    let big = dir.path().join("big-secret");
    std::fs::write(&big, vec![b'a'; 2 << 20]).unwrap();
    let big = big.to_str().unwrap();
    let not_regular = "not a regular file";
    let too_large = "larger than 1 MiB";
    for (key, file, why) in [
        ("[server]\nsecret_file", "/dev/zero", not_regular),
        ("[admin]\ntoken_file", "/dev/zero", not_regular),
        ("[login]\nusers_file", "/dev/zero", not_regular),
        ("[server]\nsecret_file", big, too_large),
        ("[login]\nusers_file", big, too_large),
    ] {
        let config = dir.path().join("g.toml");
        std::fs::write(&config, format!("{key} = \"{file}\"\n")).unwrap();
        let (code, err, took) = check_bounded(&config);
        assert_eq!(code, Some(1), "{key} = {file}: {err}");
        // Not "memory allocation failed" after reading up to the limit.
        assert!(
            err.contains(&format!("cannot read {file}: {why}")),
            "{key} = {file}: {err}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{key} = {file}: took {took:?}"
        );
    }
}
