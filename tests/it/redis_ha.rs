//! SPEC 13 against real Redis topologies started by the tests: Sentinel
//! failover, a Redis Cluster, TLS, ACL users with password files, lockout
//! counters shared by replicas, and `/readyz` reasons without secrets.

use crate::support::redis_ha::{cli, free_port, Cluster, Node, SentinelSet, MASTER_NAME};
use crate::support::sessions::{login, logout, session_gateway, Store, ALICE_PW};
use crate::support::*;
use std::time::{Duration, Instant};

async fn get_app(c: &Client, cookie: &str) -> u16 {
    c.get_with("/app/x", &[("cookie", cookie)]).await.status
}

/// A second replica with the same config (and so the same key prefix).
async fn second_replica(a: &Gw) -> Gw {
    let cfg = std::fs::read_to_string(&a.config_path).unwrap();
    let dir = tempdir();
    std::fs::copy(a.path().join("users.toml"), dir.path().join("users.toml")).unwrap();
    for f in ["ca.crt", "redis-password"] {
        if a.path().join(f).exists() {
            std::fs::copy(a.path().join(f), dir.path().join(f)).unwrap();
        }
    }
    Gw::start_in(dir, &cfg).await
}

async fn readyz(gw: &Gw) -> (u16, String) {
    let r = Client::plain(gw.admin()).get("/readyz").await;
    (r.status, r.text())
}

#[tokio::test]
async fn sentinel_failover_keeps_sessions_recovers_within_10s_and_applies_revocations() {
    let Some(set) = SentinelSet::start("sentinel_failover") else {
        return;
    };
    let b = Backend::start("app").await;
    let store = Store::Lines(
        format!(
            "store = \"redis\"\nredis_sentinel = {{ master = \"{MASTER_NAME}\", nodes = [{}] }}\n",
            set.sentinel_nodes()
        ),
        Box::new(()),
    );
    let a = session_gateway(&store, &b, "", "").await;
    let gb = second_replica(&a).await;
    let (ca, cb) = (a.plain(), gb.plain());
    let kept = login(&ca, "alice", ALICE_PW).await.unwrap();
    let ended = login(&ca, "alice", ALICE_PW).await.unwrap();
    assert_eq!(get_app(&cb, &kept).await, 200, "a login on A works on B");
    // Replicated before the crash (what a failover can keep).
    assert_eq!(cli(set.master.port, &["WAIT", "1", "2000"]), "1");

    let old = set.master.port;
    let mut set = set;
    set.master.kill();
    let killed = Instant::now();
    // Until the promotion, session routes answer 503: never a stale 200.
    let promotion = poll(Duration::from_secs(30), || async {
        let s = get_app(&ca, &kept).await;
        assert!(s == 503 || s == 200, "{s}");
        set.current_master_port().is_some_and(|p| p != old)
    })
    .await;
    assert!(
        promotion,
        "no promotion {:?} after the kill",
        killed.elapsed()
    );
    let promoted = Instant::now();
    // B follows first; the logout it takes is made while A may still be
    // reconnecting, and A applies it once back.
    assert!(
        poll(Duration::from_secs(10), || async {
            logout(&cb, &ended).await == 204
        })
        .await,
        "B did not recover within 10 s of the promotion"
    );
    assert!(
        poll(Duration::from_secs(10), || async {
            get_app(&ca, &kept).await == 200
        })
        .await,
        "A did not recover within 10 s of the promotion"
    );
    assert!(promoted.elapsed() < Duration::from_secs(20));
    assert!(
        poll(Duration::from_secs(3), || async {
            get_app(&ca, &ended).await == 401
        })
        .await,
        "the logout made during the gap is not applied on A"
    );
    assert_eq!(
        get_app(&cb, &kept).await,
        200,
        "the session written before survives"
    );
    let (status, body) = readyz(&a).await;
    assert_eq!(status, 200, "{body}");
    a.stop().await;
    gb.stop().await;
}

fn cluster_store(cluster: &Cluster) -> String {
    format!("store = \"redis\"\nredis_cluster = [{}]\n", cluster.seeds())
}

#[tokio::test]
async fn a_redis_cluster_carries_sessions_revocations_and_lockout_across_replicas() {
    let Some(cluster) = Cluster::start("redis_cluster_sessions") else {
        return;
    };
    let b = Backend::start("app").await;
    let store = Store::Lines(cluster_store(&cluster), Box::new(()));
    let a = session_gateway(&store, &b, "", "max_failures = 3\n").await;
    let gb = second_replica(&a).await;
    let (ca, cb) = (a.plain(), gb.plain());
    let mut cookies = Vec::new();
    for _ in 0..6 {
        cookies.push(login(&ca, "alice", ALICE_PW).await.unwrap());
    }
    for c in &cookies {
        assert_eq!(get_app(&cb, c).await, 200, "a login on A works on B");
    }
    // Sessions spread over the shards (each has its own tag).
    let sizes = cluster.dbsizes();
    assert!(sizes.iter().filter(|n| **n > 0).count() >= 2, "{sizes:?}");
    // A logout on B ends the session on A (the feed crosses shards).
    assert_eq!(logout(&cb, &cookies[0]).await, 204);
    assert!(
        poll(Duration::from_secs(2), || async {
            get_app(&ca, &cookies[0]).await == 401
        })
        .await,
        "A still accepts a session logged out on B"
    );
    // Revoke-all on A: every session of alice ends on B.
    let r = Client::plain(a.admin())
        .send(client::req(
            "POST",
            "/admin/users/alice/revoke",
            &[("authorization", "Bearer admin-token-0123456789")],
            "",
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for c in &cookies[1..] {
        assert!(
            poll(Duration::from_secs(2), || async {
                get_app(&cb, c).await == 401
            })
            .await,
            "B still accepts a revoked session"
        );
    }
    // Lockout counted across replicas: 3 failures spread over A and B
    // lock alice out on both.
    let wrong = |c: Client| async move { login(&c, "alice", "wrong").await.unwrap_err() };
    assert_eq!(wrong(ca.clone()).await, 401);
    assert_eq!(wrong(cb.clone()).await, 401);
    assert_eq!(wrong(ca.clone()).await, 401);
    assert_eq!(login(&cb, "alice", ALICE_PW).await.unwrap_err(), 429);
    assert_eq!(login(&ca, "alice", ALICE_PW).await.unwrap_err(), 429);
    a.stop().await;
    gb.stop().await;
}

#[tokio::test]
async fn a_redis_cluster_rotates_refresh_tokens_with_reuse_detection() {
    let Some(cluster) = Cluster::start("redis_cluster_refresh") else {
        return;
    };
    crate::tokens::rotation_and_reuse(&cluster_store(&cluster)).await;
}

#[tokio::test]
async fn a_redis_cluster_shares_learned_sticky_mappings() {
    let Some(cluster) = Cluster::start("redis_cluster_learned") else {
        return;
    };
    crate::sticky::learned_app_cookies_are_shared(&cluster_store(&cluster)).await;
}

#[tokio::test]
async fn lockout_is_shared_by_two_replicas_on_standalone_redis() {
    let Some(redis) = crate::support::redis::RedisServer::start("lockout_shared") else {
        return;
    };
    let b = Backend::start("app").await;
    let store = Store::Redis(redis);
    let a = session_gateway(&store, &b, "", "max_failures = 4\n").await;
    let gb = second_replica(&a).await;
    // Eight simultaneous wrong passwords, half on each replica: at most
    // four checks run (401); the rest are refused (429).
    let tries = (0..8).map(|i| {
        let c = if i % 2 == 0 { a.plain() } else { gb.plain() };
        async move { login(&c, "alice", "wrong").await.unwrap_err() }
    });
    let statuses = futures_util::future::join_all(tries).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        4,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    for gw in [&a, &gb] {
        assert_eq!(
            login(&gw.plain(), "alice", ALICE_PW).await.unwrap_err(),
            429
        );
    }
    a.stop().await;
    gb.stop().await;
}

/// A TLS-only Redis with a certificate from the test CA, an ACL user
/// `gatehouse` whose password is `pw`, and the default user off.
fn tls_acl_redis(pki: &Pki, dir: &std::path::Path, pw: &str) -> Node {
    pki.issue(dir, "redis", &["127.0.0.1", "localhost"]);
    pki.write_ca(dir);
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    std::fs::write(
        dir.join("acl.conf"),
        format!("user gatehouse on >{pw} ~* &* +@all\nuser default off\n"),
    )
    .unwrap();
    let n = Node::start_tls_only(
        free_port(),
        &[
            "--tls-cert-file".into(),
            p("redis.crt"),
            "--tls-key-file".into(),
            p("redis.key"),
            "--tls-ca-cert-file".into(),
            p("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
            p("acl.conf"),
        ],
    );
    // Up when its TLS port accepts.
    assert!(
        poll_blocking(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", n.port)).is_ok()
        }),
        "TLS redis did not come up: {}",
        std::fs::read_to_string(n.dir.path().join("redis.log")).unwrap_or_default()
    );
    n
}

#[tokio::test]
async fn tls_redis_with_an_acl_user_and_a_password_file() {
    if !crate::support::redis_ha::available("tls_redis") {
        return;
    }
    let pki = Pki::new();
    let certs = tempdir();
    let redis = tls_acl_redis(&pki, certs.path(), "s3cret-pw");
    let b = Backend::start("app").await;
    let lines = |ca: &str, pw_file: &str| {
        format!(
            "store = \"redis\"\nredis_url = \"rediss://127.0.0.1:{}/0\"\nredis_ca_file = \"{ca}\"\n\
             redis_username = \"gatehouse\"\nredis_password_file = \"{pw_file}\"\n",
            redis.port
        )
    };
    std::fs::write(certs.path().join("pw"), "s3cret-pw\n").unwrap();
    std::fs::write(certs.path().join("wrong-pw"), "not-it\n").unwrap();
    let ca = certs.path().join("ca.crt");
    let good = Store::Lines(
        lines(
            ca.to_str().unwrap(),
            certs.path().join("pw").to_str().unwrap(),
        ),
        Box::new(()),
    );
    let gw = session_gateway(&good, &b, "", "").await;
    let c = gw.plain();
    let cookie = match login(&c, "alice", ALICE_PW).await {
        Ok(c) => c,
        Err(s) => panic!("login over TLS: {s}: {:?}", readyz(&gw).await),
    };
    assert_eq!(get_app(&c, &cookie).await, 200);
    assert_eq!(readyz(&gw).await.0, 200);
    gw.stop().await;

    // A CA that did not sign the server's certificate: no connection, 503,
    // and /readyz says why.
    let other = Pki::new();
    let other_dir = tempdir();
    other.write_ca(other_dir.path());
    let wrong_ca = Store::Lines(
        lines(
            other_dir.path().join("ca.crt").to_str().unwrap(),
            certs.path().join("pw").to_str().unwrap(),
        ),
        Box::new(()),
    );
    let gw = session_gateway(&wrong_ca, &b, "", "").await;
    assert_eq!(
        login(&gw.plain(), "alice", ALICE_PW).await.unwrap_err(),
        503
    );
    let (status, body) = readyz(&gw).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("standalone rediss://127.0.0.1"), "{body}");
    assert!(body.to_lowercase().contains("certificate"), "{body}");
    gw.stop().await;

    // A wrong password: 503, and the reason never shows a password.
    let wrong_pw = Store::Lines(
        lines(
            ca.to_str().unwrap(),
            certs.path().join("wrong-pw").to_str().unwrap(),
        ),
        Box::new(()),
    );
    let gw = session_gateway(&wrong_pw, &b, "", "").await;
    assert_eq!(
        login(&gw.plain(), "alice", ALICE_PW).await.unwrap_err(),
        503
    );
    let (status, body) = readyz(&gw).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        !body.contains("not-it") && !body.contains("s3cret-pw"),
        "{body}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_password_in_the_url_never_reaches_readyz_or_check_output() {
    // Nothing listens there: the store stays unreachable.
    let port = free_port();
    let b = Backend::start("app").await;
    let store = Store::Lines(
        format!("store = \"redis\"\nredis_url = \"redis://user:url-secret@127.0.0.1:{port}/0\"\n"),
        Box::new(()),
    );
    let gw = session_gateway(&store, &b, "", "").await;
    let (status, body) = readyz(&gw).await;
    assert_eq!(status, 503);
    assert!(body.contains(&format!("127.0.0.1:{port}")), "{body}");
    assert!(!body.contains("url-secret"), "{body}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("--config")
        .arg(&gw.config_path)
        .arg("check")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("url-secret"), "{text}");
    gw.stop().await;
}

/// Revocation latency between replicas and the Sentinel failover gap, as
/// docs/scale-out.md reports them. Not a pass/fail test: run it with
/// `bench/revocation-latency.sh` (release build), which prints the
/// figures. Each trial answers a revocation on replica A and times until
/// replica B enforces it (B polled back to back).
mod latency {
    use super::*;
    use crate::tokens::{alice_users, api, password_grant, signing_key, token_gateway};

    fn trials() -> usize {
        std::env::var("GATEHOUSE_TRIALS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(200)
    }

    fn report(form: &str, what: &str, mut ms: Vec<f64>) {
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
        println!(
            "LATENCY form={form} revocation={what} trials={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            ms.len(),
            at(0.50),
            at(0.99),
            ms[ms.len() - 1]
        );
    }

    /// Milliseconds from `revoke` answering on A to `denied` holding on B.
    async fn time_until<F, Fut>(denied: F) -> f64
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while !denied().await {
            assert!(start.elapsed() < Duration::from_secs(5), "never enforced");
        }
        start.elapsed().as_secs_f64() * 1000.0
    }

    /// Two replicas on `store` lines: logout, revoke-all and a token's
    /// `jti`, each `trials()` times.
    async fn measure(form: &str, store: &str) {
        let b = Backend::start("app").await;
        let dir_a = tempdir();
        std::fs::write(dir_a.path().join("users.toml"), alice_users()).unwrap();
        std::fs::write(dir_a.path().join("signing.pem"), signing_key()).unwrap();
        let dir_b = tempdir();
        for f in ["users.toml", "signing.pem"] {
            std::fs::copy(dir_a.path().join(f), dir_b.path().join(f)).unwrap();
        }
        let prefix = format!(
            "key_prefix = \"lat{}:\"\n",
            gatehouse::crypto::hex(&gatehouse::crypto::random_bytes::<4>())
        );
        let store = format!("{store}{prefix}");
        let a = token_gateway(&b, &store, "", dir_a).await;
        let gb = token_gateway(&b, &store, "", dir_b).await;
        let (ca, cb) = (a.plain(), gb.plain());
        let admin = Client::plain(a.admin());
        let web = |c: &Client, cookie: &str| {
            let (c, cookie) = (c.clone(), cookie.to_string());
            async move { c.get_with("/web/x", &[("cookie", &cookie)]).await.status }
        };
        let (mut logout_ms, mut all_ms, mut jti_ms) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..trials() {
            // Session logout.
            let cookie = login(&ca, "alice", ALICE_PW).await.unwrap();
            assert_eq!(web(&cb, &cookie).await, 200);
            assert_eq!(logout(&ca, &cookie).await, 204);
            logout_ms.push(time_until(|| async { web(&cb, &cookie).await == 401 }).await);
            // Revoke-all (sessions and tokens of the user).
            let cookie = login(&ca, "alice", ALICE_PW).await.unwrap();
            assert_eq!(web(&cb, &cookie).await, 200);
            let r = admin
                .send(client::req(
                    "POST",
                    "/admin/users/alice/revoke",
                    &[("authorization", "Bearer admin-token-0123456789")],
                    "",
                ))
                .await;
            assert_eq!(r.status, 200);
            let marked = gatehouse::clock::unix_now();
            all_ms.push(time_until(|| async { web(&cb, &cookie).await == 401 }).await);
            // A revoke-all mark is whole seconds: the next token must be
            // issued after it.
            next_second_after(marked).await;
            // One access token, by its jti (bearer logout).
            let at = password_grant(&ca).await["access_token"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(api(&cb, &at).await, 200);
            let r = ca
                .send(client::req(
                    "POST",
                    "/.gatehouse/logout",
                    &[("authorization", &format!("Bearer {at}"))],
                    "",
                ))
                .await;
            assert!(r.status < 400, "{}", r.status);
            jti_ms.push(time_until(|| async { api(&cb, &at).await == 401 }).await);
        }
        report(form, "session-logout", logout_ms);
        report(form, "revoke-all", all_ms);
        report(form, "jti", jti_ms);
        a.stop().await;
        gb.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement: bench/revocation-latency.sh"]
    async fn revocation_latency_standalone() {
        let Some(r) = crate::support::redis::RedisServer::start("latency") else {
            return;
        };
        measure(
            "standalone",
            &format!("store = \"redis\"\nredis_url = \"{}\"\n", r.url()),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement: bench/revocation-latency.sh"]
    async fn revocation_latency_sentinel() {
        let Some(set) = SentinelSet::start("latency") else {
            return;
        };
        measure(
            "sentinel",
            &format!(
                "store = \"redis\"\nredis_sentinel = {{ master = \"{MASTER_NAME}\", nodes = [{}] }}\n",
                set.sentinel_nodes()
            ),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement: bench/revocation-latency.sh"]
    async fn revocation_latency_cluster() {
        let Some(cluster) = Cluster::start("latency") else {
            return;
        };
        measure("cluster", &cluster_store(&cluster)).await;
    }

    /// From the master's SIGKILL to the first 200 on a session route, and
    /// from the sentinels' promotion to it; five failovers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement: bench/revocation-latency.sh"]
    async fn sentinel_failover_gap() {
        for round in 0..5 {
            let Some(mut set) = SentinelSet::start("failover gap") else {
                return;
            };
            let b = Backend::start("app").await;
            let store = Store::Lines(
                format!(
                    "store = \"redis\"\nredis_sentinel = {{ master = \"{MASTER_NAME}\", nodes = [{}] }}\n",
                    set.sentinel_nodes()
                ),
                Box::new(()),
            );
            let gw = session_gateway(&store, &b, "", "").await;
            let c = gw.plain();
            let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
            assert_eq!(cli(set.master.port, &["WAIT", "1", "2000"]), "1");
            let old = set.master.port;
            set.master.kill();
            let killed = Instant::now();
            let promoted = std::cell::Cell::new(None);
            let recovered = poll(Duration::from_secs(60), || async {
                if get_app(&c, &cookie).await == 200 {
                    return true;
                }
                if promoted.get().is_none() && set.current_master_port().is_some_and(|p| p != old) {
                    promoted.set(Some(Instant::now()));
                }
                false
            })
            .await;
            assert!(recovered, "no recovery");
            let promoted = promoted.get();
            let back = Instant::now();
            println!(
                "FAILOVER round={round} kill_to_200_ms={} promotion_to_200_ms={}",
                (back - killed).as_millis(),
                promoted.map_or(0, |p| (back - p).as_millis())
            );
            gw.stop().await;
        }
    }
}
