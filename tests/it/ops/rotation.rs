//! Certificate rotation: files changed on disk are served to new
//! connections after the next check, with no SIGHUP and no restart.

use super::*;
use std::time::Duration;

/// Polls until a new connection is served `want`, or `within` passes.
async fn until_served(gw: &Gw, pki: &Pki, want: &[u8], within: Duration) -> bool {
    poll(within, || async {
        served_cert(gw.addr(), pki).await.ok().as_deref() == Some(want)
    })
    .await
}

#[tokio::test]
async fn changed_certificate_files_reach_new_connections_without_sighup() {
    let b = Backend::start("b").await;
    let pki = Pki::new();
    let dir = tempdir();
    pki.issue(dir.path(), "server", &["localhost"]);
    let crt = dir.path().join("server.crt");
    let first = cert_der(&crt);
    let gw = Gw::start_in(dir, &tls_config(&[&b], "reload_interval = \"100ms\"")).await;
    let stats = &gw.running().gateway.metrics;
    use std::sync::atomic::Ordering::Relaxed;
    let successes = || stats.reloads_success.load(Relaxed);
    let failures = || stats.reloads_failure.load(Relaxed);
    assert_eq!(served_cert(gw.addr(), &pki).await.unwrap(), first);
    let client = Client::tls(gw.addr(), pki.client_config(&["http/1.1"]), "localhost");
    let (mut kept, _) = client.connect().await.unwrap();
    let get = |p: &str| client::req("GET", p, &[], "");
    assert_eq!(kept.send(get("/before")).await.unwrap().status, 200);

    // Rotate in place: a new key and certificate over the old files, written
    // one after the other as a careless script would.
    pki.issue(gw.path(), "server", &["localhost"]);
    let second = cert_der(&crt);
    assert_ne!(first, second);
    assert!(
        until_served(&gw, &pki, &second, Duration::from_secs(10)).await,
        "new connections never got the new certificate"
    );
    // Counted just after the swap that new connections already see.
    assert!(poll(Duration::from_secs(2), || async { successes() == 1 }).await);
    // A connection opened before the rotation keeps working.
    assert_eq!(kept.send(get("/after")).await.unwrap().status, 200);

    // A broken certificate: one failed reload, the previous one stays.
    let failed_before = failures();
    // Renamed into place, so there is exactly one broken state to see.
    let tmp = gw.path().join("broken.tmp");
    std::fs::write(&tmp, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    std::fs::rename(&tmp, &crt).unwrap();
    assert!(
        poll(Duration::from_secs(10), || async {
            failures() > failed_before
        })
        .await,
        "the broken file was never noticed"
    );
    assert_eq!(served_cert(gw.addr(), &pki).await.unwrap(), second);
    // Not retried every interval: one error per broken state, and the one
    // rotation before it was applied once (watched for a few intervals).
    let more = poll(Duration::from_millis(600), || async {
        failures() != failed_before + 1 || successes() != 1
    })
    .await;
    assert!(!more, "the broken state was retried or re-applied");
    assert_eq!(failures(), failed_before + 1);
    assert_eq!(successes(), 1);
    assert_eq!(served_cert(gw.addr(), &pki).await.unwrap(), second);

    // Fixed: picked up again.
    pki.issue(gw.path(), "server", &["localhost"]);
    let third = cert_der(&crt);
    assert!(until_served(&gw, &pki, &third, Duration::from_secs(10)).await);
    assert!(poll(Duration::from_secs(2), || async { successes() == 2 }).await);
    gw.stop().await;
}

#[tokio::test]
async fn reload_interval_0s_leaves_rotation_to_sighup() {
    let b = Backend::start("b").await;
    let pki = Pki::new();
    let dir = tempdir();
    pki.issue(dir.path(), "server", &["localhost"]);
    let first = cert_der(&dir.path().join("server.crt"));
    let gw = Gw::start_in(dir, &tls_config(&[&b], "reload_interval = \"0s\"")).await;
    pki.issue(gw.path(), "server", &["localhost"]);
    let second = cert_der(&gw.path().join("server.crt"));
    // No check runs: for a while the old certificate is still served.
    let changed = poll(Duration::from_millis(300), || async {
        served_cert(gw.addr(), &pki).await.unwrap() != first
    })
    .await;
    assert!(!changed, "a certificate changed without SIGHUP");
    assert_eq!(served_cert(gw.addr(), &pki).await.unwrap(), first);
    // What SIGHUP does.
    gw.running().gateway.reload().await.unwrap();
    assert_eq!(served_cert(gw.addr(), &pki).await.unwrap(), second);
    gw.stop().await;
}

#[test]
fn reload_interval_is_validated_and_defaults_to_30s() {
    let pki = Pki::new();
    let dir = tempdir();
    pki.issue(dir.path(), "server", &["localhost"]);
    let path = dir.path().join("g.toml");
    let tls = |extra: &str| {
        format!("[server.tls]\ncert = \"server.crt\"\nkey = \"server.key\"\n{extra}\n")
    };
    let load = |extra: &str| gatehouse::config::load_str(&tls(extra), &path);
    let interval = |extra: &str| load(extra).unwrap().server.tls.unwrap().reload_interval;
    assert_eq!(interval(""), Duration::from_secs(30));
    assert_eq!(interval("reload_interval = \"0s\""), Duration::ZERO);
    assert_eq!(
        interval("reload_interval = \"5m\""),
        Duration::from_secs(300)
    );
    for bad in ["\"10ms\"", "\"soon\"", "30"] {
        let e = load(&format!("reload_interval = {bad}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.tls.reload_interval"), "{bad}: {e}");
    }
}
