//! SIGTERM under load, on the real binary: the listener closes at once,
//! idle keep-alive connections are closed, in-flight HTTP/1.1 requests and
//! HTTP/2 streams finish (HTTP/2 clients get GOAWAY first), exit code 0.

use super::h2raw::{self, H2};
use super::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
/// Long enough that "refused while still draining" is not a race.
const SLOW: &str = "/slow/3000";
const IN_FLIGHT_H1: usize = 8;

struct Proc {
    child: std::process::Child,
    listen: SocketAddr,
}

/// Starts `gatehouse run` on `dir/gatehouse.toml` and waits for its ready file.
async fn spawn_gatehouse(dir: &Path) -> Proc {
    let ready = dir.join("ready.json");
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir.join("gatehouse.toml"))
        .arg("--ready-file")
        .arg(&ready)
        .env("GATEHOUSE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        poll(Duration::from_secs(20), || async { ready.exists() }).await,
        "ready file never appeared"
    );
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    Proc {
        child,
        listen: info["listen"].as_str().unwrap().parse().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_http1_and_http2_refuses_new_connections_and_exits_0() {
    let b = Backend::start("b").await;
    let pki = Pki::new();
    let dir = tempdir();
    pki.issue(dir.path(), "server", &["localhost"]);
    std::fs::write(dir.path().join("gatehouse.toml"), tls_config(&[&b], "")).unwrap();
    let gh = spawn_gatehouse(dir.path()).await;
    let listen = gh.listen;
    let h1 = Client::tls(listen, pki.client_config(&["http/1.1"]), "localhost");

    // An idle keep-alive connection, used once.
    let (mut idle, _) = h1.connect().await.unwrap();
    let r = idle
        .send(client::req("GET", "/idle", &[], ""))
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    // Requests in flight: HTTP/1.1 on their own connections, and one
    // HTTP/2 stream read frame by frame.
    let slow: Vec<_> = (0..IN_FLIGHT_H1)
        .map(|_| {
            let c = h1.clone();
            tokio::spawn(async move { c.get(SLOW).await })
        })
        .collect();
    let mut h2 = H2::connect(listen, pki.client_config(&["h2"])).await;
    h2.get(1, SLOW).await;
    let seen = || {
        b.requests()
            .iter()
            .filter(|s| s.path_and_query == SLOW)
            .count()
    };
    assert!(
        poll(Duration::from_secs(10), || async {
            seen() == IN_FLIGHT_H1 + 1
        })
        .await,
        "only {} slow requests reached the backend",
        seen()
    );

    let pid = gh.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());

    // The listener closes at once, while the slow requests still run.
    assert!(
        poll(Duration::from_secs(2), || async {
            std::net::TcpStream::connect(listen).is_err()
        })
        .await,
        "still accepting connections after SIGTERM"
    );
    assert!(
        slow.iter().all(|t| !t.is_finished()),
        "the listener should close before in-flight requests end"
    );
    // The idle keep-alive connection is closed rather than left to time out.
    let client::Conn::H1(idle) = idle else {
        panic!("HTTP/1.1 was asked for")
    };
    let closed = poll(Duration::from_secs(2), || async { idle.is_closed() }).await;
    assert!(closed, "idle keep-alive connection left open");

    // HTTP/2: GOAWAY while stream 1 is open, then its response, then close.
    let mut frames = Vec::new();
    let read_all = async {
        while let Some(f) = h2.read_frame().await {
            frames.push(f);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("the HTTP/2 connection ends once its stream is done");
    let first_goaway = frames.iter().position(|f| f.kind == h2raw::GOAWAY);
    let response = frames
        .iter()
        .position(|f| f.kind == h2raw::HEADERS && f.stream == 1);
    let (Some(g), Some(h)) = (first_goaway, response) else {
        panic!("expected GOAWAY and a response on stream 1: {frames:?}")
    };
    assert!(
        g < h,
        "GOAWAY must come while the stream is open: {frames:?}"
    );
    for f in frames.iter().filter(|f| f.kind == h2raw::GOAWAY) {
        let (last, code) = f.goaway().unwrap();
        assert_eq!(code, 0, "graceful GOAWAY carries NO_ERROR");
        assert!(last >= 1, "stream 1 is within the GOAWAY's last stream id");
    }
    assert_eq!(
        frames[h].payload[0], 0x88,
        ":status 200 (HPACK static index 8)"
    );
    let body: Vec<u8> = frames
        .iter()
        .filter(|f| f.kind == h2raw::DATA && f.stream == 1)
        .flat_map(|f| f.payload.clone())
        .collect();
    assert_eq!(body, b"slow done");
    assert!(frames
        .iter()
        .any(|f| f.stream == 1 && f.flags & h2raw::END_STREAM != 0));

    for t in slow {
        let r = t.await.expect("in-flight request completed");
        assert_eq!((r.status, r.text().as_str()), (200, "slow done"));
    }
    let out = tokio::task::spawn_blocking(move || gh.child.wait_with_output().unwrap())
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("shutting down"), "{log}");
}
