//! Reloads under load: a steady mix of keep-alive HTTP/1.1, HTTP/2 and
//! fresh connections over TLS sees no failure while valid and invalid
//! configs are reloaded, and a certificate changed by a reload reaches new
//! connections.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// At least this many requests in all.
const TOTAL: usize = 2_000;
/// Requests between two reloads.
const BETWEEN: usize = 300;

#[derive(Default)]
struct Tally {
    done: AtomicUsize,
    stop: AtomicBool,
    failures: Mutex<Vec<String>>,
    by_kind: [AtomicUsize; 3],
}

impl Tally {
    fn check(&self, kind: usize, what: &str, r: Result<Resp, String>) {
        match r {
            Ok(r) if r.status == 200 && backend_of(&r).is_some_and(|b| b == "a" || b == "b") => {
                self.done.fetch_add(1, SeqCst);
                self.by_kind[kind].fetch_add(1, SeqCst);
            }
            Ok(r) => {
                self.failures
                    .lock()
                    .unwrap()
                    .push(format!("{what}: {} {}", r.status, r.text()))
            }
            Err(e) => self.failures.lock().unwrap().push(format!("{what}: {e}")),
        }
    }

    async fn until_done(&self, n: usize) {
        let done = poll(Duration::from_secs(60), || async {
            self.done.load(SeqCst) >= n
        })
        .await;
        assert!(
            done,
            "load stalled at {} requests; failures: {:?}",
            self.done.load(SeqCst),
            self.failures.lock().unwrap()
        );
    }
}

fn backend_of(r: &Resp) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v["backend"].as_str().map(str::to_string)
}

const KEEP_ALIVE: usize = 0;
const FRESH: usize = 1;
const H2: usize = 2;

/// Requests on one connection until told to stop (keep-alive or HTTP/2).
async fn one_connection(client: Client, kind: usize, tally: Arc<Tally>) {
    let (mut conn, _) = client.connect().await.expect("connect");
    let mut i = 0;
    while !tally.stop.load(SeqCst) {
        i += 1;
        let r = conn
            .send(client::req("GET", &format!("/k{kind}/{i}"), &[], ""))
            .await;
        tally.check(kind, "keep-alive request", r.map_err(|e| e.to_string()));
    }
}

/// A new TLS connection for every request.
async fn fresh_connections(client: Client, tally: Arc<Tally>) {
    let mut i = 0;
    while !tally.stop.load(SeqCst) {
        i += 1;
        let r = match client.connect().await {
            Ok((mut c, _)) => c
                .send(client::req("GET", &format!("/fresh/{i}"), &[], ""))
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("connect: {e}")),
        };
        tally.check(FRESH, "fresh connection", r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request_and_rotate_the_certificate() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let pki = Pki::new();
    let dir = tempdir();
    pki.issue(dir.path(), "server", &["localhost"]);
    // Reloads only when asked, so the certificate changes exactly at one.
    let cfg = |bs: &[&Backend]| tls_config(bs, "reload_interval = \"0s\"");
    let gw = Gw::start_in(dir, &cfg(&[&a, &b])).await;
    let first = cert_der(&gw.path().join("server.crt"));

    let tally = Arc::new(Tally::default());
    let h1 = Client::tls(gw.addr(), pki.client_config(&["http/1.1"]), "localhost");
    let h2 = Client::tls(gw.addr(), pki.client_config(&["h2"]), "localhost");
    let workers = vec![
        tokio::spawn(one_connection(h1.clone(), KEEP_ALIVE, tally.clone())),
        tokio::spawn(one_connection(h1.clone(), KEEP_ALIVE, tally.clone())),
        tokio::spawn(one_connection(h2, H2, tally.clone())),
        tokio::spawn(fresh_connections(h1.clone(), tally.clone())),
        tokio::spawn(fresh_connections(h1, tally.clone())),
    ];

    // Valid and invalid configs in turn; the second valid one also brings a
    // new certificate.
    let broken_route = cfg(&[&a]).replace("upstream = \"app\"", "upstream = \"nowhere\"");
    let mut second = None;
    for n in 0..5 {
        tally.until_done((n + 1) * BETWEEN).await;
        match n {
            0 => {
                std::fs::write(&gw.config_path, cfg(&[&b])).unwrap();
                let r = admin_reload(gw.admin()).await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
            1 => {
                std::fs::write(&gw.config_path, &broken_route).unwrap();
                let r = admin_reload(gw.admin()).await;
                assert_eq!(r.status, 400, "{}", r.text());
                assert!(r.text().contains("nowhere"), "{}", r.text());
            }
            2 => {
                pki.issue(gw.path(), "server", &["localhost"]);
                second = Some(cert_der(&gw.path().join("server.crt")));
                std::fs::write(&gw.config_path, cfg(&[&a])).unwrap();
                let r = admin_reload(gw.admin()).await;
                assert_eq!(r.status, 200, "{}", r.text());
                assert_eq!(
                    served_cert(gw.addr(), &pki).await.unwrap(),
                    second.clone().unwrap()
                );
            }
            3 => {
                std::fs::write(&gw.config_path, "[server]\nlisten = 5\n").unwrap();
                assert!(gw.running().gateway.reload().await.is_err());
            }
            _ => {
                std::fs::write(&gw.config_path, cfg(&[&a, &b])).unwrap();
                gw.running().gateway.reload().await.unwrap();
            }
        }
    }
    tally.until_done(TOTAL.max(5 * BETWEEN + BETWEEN)).await;
    tally.stop.store(true, SeqCst);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("worker stops")
            .unwrap();
    }

    let failures = tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    let done = tally.done.load(SeqCst);
    let kinds: Vec<usize> = tally.by_kind.iter().map(|k| k.load(SeqCst)).collect();
    assert!(done >= TOTAL, "{done}");
    assert!(
        kinds.iter().all(|k| *k >= 50),
        "a mix of connections: {kinds:?}"
    );
    assert!(a.count() > 0 && b.count() > 0);

    // New connections get the new certificate; the first is gone.
    let served = served_cert(gw.addr(), &pki).await.unwrap();
    assert_eq!(Some(served.clone()), second);
    assert_ne!(served, first);
    let admin = gw.admin();
    assert_eq!(
        metric(admin, "gatehouse_config_reloads_total{result=\"success\"}").await,
        Some(3.0)
    );
    assert_eq!(
        metric(admin, "gatehouse_config_reloads_total{result=\"failure\"}").await,
        Some(2.0)
    );
    gw.stop().await;
}
