//! SPEC 13 against real Redis topologies started by the tests: Sentinel
//! failover, a Redis Cluster, TLS, ACL users with password files, lockout
//! counters shared by replicas, and `/readyz` reasons without secrets.

use crate::support::redis_ha::{
    available, cli, free_port, Cluster, Node, SentinelOpts, SentinelSet, MASTER_NAME,
};
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
    let store = Store::Lines(set.store_lines(), Box::new(()));
    let a = session_gateway(&store, &b, "", "").await;
    let gb = second_replica(&a).await;
    let (ca, cb) = (a.plain(), gb.plain());
    let kept = login(&ca, "alice", ALICE_PW).await.unwrap();
    let ended = login(&ca, "alice", ALICE_PW).await.unwrap();
    assert_eq!(get_app(&cb, &kept).await, 200, "a login on A works on B");
    // Replicated before the crash (what a failover can keep): the
    // replica's offset has reached the master's.
    let want = repl_offset(set.master.port, "master_repl_offset");
    assert!(
        poll(Duration::from_secs(5), || async {
            repl_offset(set.replica.port, "slave_repl_offset") >= want
        })
        .await,
        "the replica did not catch up"
    );

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

#[tokio::test]
async fn a_redis_cluster_carries_sessions_revocations_and_lockout_across_replicas() {
    let Some(cluster) = Cluster::start("redis_cluster_sessions") else {
        return;
    };
    let b = Backend::start("app").await;
    let store = Store::Lines(cluster.store_lines(), Box::new(()));
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
    // The whole cluster gone: /readyz names the form and how much answers.
    let mut cluster = cluster;
    for n in &mut cluster.nodes {
        n.kill();
    }
    assert!(
        poll(Duration::from_secs(10), || async {
            let (status, body) = readyz(&a).await;
            status == 503
                && body.contains("cluster seeds")
                && body.contains("0 of 3 seed nodes answer")
        })
        .await,
        "{:?}",
        readyz(&a).await
    );
    a.stop().await;
    gb.stop().await;
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
async fn a_password_in_the_url_works_and_redis_password_wins_over_it() {
    if !crate::support::redis_ha::available("redis_url_password") {
        return;
    }
    let redis = Node::start(&["--requirepass".into(), "right-pw".into()]);
    let b = Backend::start("app").await;
    // The URL's userinfo alone.
    let store = Store::Lines(
        format!(
            "store = \"redis\"\nredis_url = \"redis://:right-pw@127.0.0.1:{}/0\"\n",
            redis.port
        ),
        Box::new(()),
    );
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW)
        .await
        .expect("login with the URL's password");
    assert_eq!(get_app(&c, &cookie).await, 200);
    gw.stop().await;
    // A wrong password in the URL, the right one in redis_password_file:
    // the file wins.
    let dir = tempdir();
    std::fs::write(dir.path().join("pw"), "right-pw\n").unwrap();
    let store = Store::Lines(
        format!(
            "store = \"redis\"\nredis_url = \"redis://:wrong-pw@127.0.0.1:{}/0\"\nredis_password_file = \"{}\"\n",
            redis.port,
            dir.path().join("pw").display()
        ),
        Box::new(()),
    );
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW)
        .await
        .expect("redis_password_file wins");
    assert_eq!(get_app(&c, &cookie).await, 200);
    gw.stop().await;
    // Only the wrong one: 503, and neither the body nor /readyz shows it.
    let store = Store::Lines(
        format!(
            "store = \"redis\"\nredis_url = \"redis://:wrong-pw@127.0.0.1:{}/0\"\n",
            redis.port
        ),
        Box::new(()),
    );
    let gw = session_gateway(&store, &b, "", "").await;
    let r = gw
        .plain()
        .send(client::req(
            "POST",
            "/.gatehouse/login",
            &[("content-type", "application/json")],
            &serde_json::json!({ "username": "alice", "password": ALICE_PW }).to_string(),
        ))
        .await;
    assert_eq!(r.status, 503);
    assert!(!r.text().contains("wrong-pw"), "{}", r.text());
    let (status, body) = readyz(&gw).await;
    assert_eq!(status, 503);
    assert!(
        !body.contains("wrong-pw") && !body.contains("right-pw"),
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

/// Sentinels with a password of their own, in front of data nodes with
/// another: both files are needed, and without the sentinels' one the
/// gateway says so in `/readyz` (never showing a password).
#[tokio::test]
async fn sentinels_with_their_own_password_need_sentinel_password_file() {
    let (data_pw, sentinel_pw) = ("data-pw-4b1d", "sentinel-pw-9e2c");
    let Some(set) = SentinelSet::start_with(
        "sentinel_auth",
        SentinelOpts {
            data_password: Some(data_pw.into()),
            sentinel_password: Some(sentinel_pw.into()),
            tls_dir: None,
        },
    ) else {
        return;
    };
    // The sentinels refuse questions without their password.
    let asked = cli(set.sentinels[0].port, &["SENTINEL", "masters"]);
    assert!(asked.contains("NOAUTH"), "{asked}");
    let b = Backend::start("app").await;
    let secrets = tempdir();
    let data_file = secrets.path().join("redis-password");
    let sentinel_file = secrets.path().join("sentinel-password");
    std::fs::write(&data_file, format!("{data_pw}\n")).unwrap();
    std::fs::write(&sentinel_file, format!("{sentinel_pw}\n")).unwrap();
    let base = format!(
        "store = \"redis\"\nredis_sentinel = {{ master = \"{MASTER_NAME}\", nodes = [{}] }}\n\
         redis_password_file = \"{}\"\n",
        set.sentinel_nodes(),
        data_file.display()
    );
    let both = Store::Lines(
        format!(
            "{base}sentinel_password_file = \"{}\"\n",
            sentinel_file.display()
        ),
        Box::new(()),
    );
    let gw = session_gateway(&both, &b, "", "").await;
    let c = gw.plain();
    let cookie = match login(&c, "alice", ALICE_PW).await {
        Ok(c) => c,
        Err(s) => panic!(
            "login via authenticated sentinels: {s}: {:?}",
            readyz(&gw).await
        ),
    };
    assert_eq!(get_app(&c, &cookie).await, 200);
    assert_eq!(readyz(&gw).await.0, 200);
    // The session is on the master the sentinels name.
    assert_ne!(set.data_cli(set.master.port, &["DBSIZE"]), "0");
    // `check` reads both files and shows neither.
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
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains(data_pw) && !text.contains(sentinel_pw),
        "{text}"
    );
    gw.stop().await;

    let data_only = Store::Lines(base, Box::new(()));
    let gw = session_gateway(&data_only, &b, "", "").await;
    assert_eq!(
        login(&gw.plain(), "alice", ALICE_PW).await.unwrap_err(),
        503
    );
    // The last sentinel asked says why.
    let reason =
        |body: &str| body.contains("sentinel 127.0.0.1:") && body.contains("Authentication");
    assert!(
        poll(Duration::from_secs(5), || async {
            let (status, body) = readyz(&gw).await;
            status == 503 && reason(&body)
        })
        .await,
        "no reason naming the sentinels: {:?}",
        readyz(&gw).await
    );
    let (_, body) = readyz(&gw).await;
    assert!(body.contains("sentinel master `mymaster`"), "{body}");
    assert!(
        !body.contains(data_pw) && !body.contains(sentinel_pw),
        "{body}"
    );
    gw.stop().await;
}

/// `field` of `INFO replication` on `port`, as a number (0 when absent).
fn repl_offset(port: u16, field: &str) -> u64 {
    offset_in(&cli(port, &["INFO", "replication"]), field)
}

fn offset_in(info: &str, field: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Logs alice in on `c` until there are at least `n` sessions and every
/// master of `cluster` holds keys.
async fn spread_sessions(c: &Client, cluster: &Cluster, n: usize) -> Vec<String> {
    let masters: Vec<usize> = (0..cluster.nodes.len())
        .filter(|&i| cluster.is_master(i))
        .collect();
    let mut cookies = Vec::new();
    while cookies.len() < n || masters.iter().any(|&m| cluster.dbsizes()[m] == 0) {
        assert!(cookies.len() < 60, "sessions do not spread over the shards");
        cookies.push(login(c, "alice", ALICE_PW).await.unwrap());
    }
    cookies
}

/// A logout on `from` is enforced on `to` before `to`'s session cache
/// (1 s) would have let the session through: it came over the feed.
async fn logout_reaches(from: &Client, to: &Client, cookie: &str) {
    assert_eq!(get_app(to, cookie).await, 200, "cached on the other side");
    assert_eq!(logout(from, cookie).await, 204);
    assert!(
        poll(Duration::from_millis(400), || async {
            get_app(to, cookie).await == 401
        })
        .await,
        "the logout did not reach the other replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_failover_keeps_sessions_and_the_feed_without_restart() {
    let Some(mut cluster) = Cluster::start_with("cluster_failover", 1, 1000) else {
        return;
    };
    let b = Backend::start("app").await;
    let store = Store::Lines(cluster.store_lines(), Box::new(()));
    let a = session_gateway(&store, &b, "", "").await;
    let gb = second_replica(&a).await;
    let (ca, cb) = (a.plain(), gb.plain());
    let cookies = spread_sessions(&ca, &cluster, 12).await;
    for c in &cookies {
        assert_eq!(get_app(&cb, c).await, 200, "a login on A works on B");
    }
    let masters: Vec<usize> = (0..cluster.nodes.len())
        .filter(|&i| cluster.is_master(i))
        .collect();
    assert_eq!(masters.len(), 3);
    // Everything written so far is on the replicas (what a failover keeps).
    for &m in &masters {
        let r = cluster.replica_of(m).expect("every master has a replica");
        let want = repl_offset(cluster.nodes[m].port, "master_repl_offset");
        let rp = cluster.nodes[r].port;
        assert!(
            poll(Duration::from_secs(5), || async {
                repl_offset(rp, "slave_repl_offset") >= want
            })
            .await,
            "replica {r} did not catch up with master {m}"
        );
    }
    let sizes = cluster.dbsizes();
    let victim = *masters.iter().max_by_key(|&&m| sizes[m]).unwrap();
    let heir = cluster.replica_of(victim).unwrap();
    let heir_port = cluster.nodes[heir].port;
    cluster.nodes[victim].kill();
    let killed = Instant::now();
    // Until the replica takes over: 200 or 503, nothing else.
    let promoted = poll(Duration::from_secs(30), || async {
        for c in &cookies[..4] {
            let s = get_app(&ca, c).await;
            assert!(s == 200 || s == 503, "{s} during the failover");
        }
        cli(heir_port, &["ROLE"]).starts_with("master")
            && cli(heir_port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
    })
    .await;
    assert!(promoted, "the cluster did not promote the replica");
    let promoted_at = Instant::now();
    let recovered = poll(Duration::from_secs(10), || async {
        for c in &cookies {
            if get_app(&ca, c).await != 200 || get_app(&cb, c).await != 200 {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        recovered,
        "sessions written before the kill did not come back within 10 s of the promotion: {:?}",
        readyz(&a).await
    );
    eprintln!(
        "cluster failover: promotion {} ms after the kill, sessions back {} ms after it",
        (promoted_at - killed).as_millis(),
        promoted_at.elapsed().as_millis()
    );
    // Logouts after the failover reach the other replica both ways.
    logout_reaches(&ca, &cb, &cookies[0]).await;
    logout_reaches(&cb, &ca, &cookies[1]).await;
    // New sessions land on the promoted shard too.
    let fresh = login(&cb, "alice", ALICE_PW).await.unwrap();
    assert_eq!(get_app(&ca, &fresh).await, 200);
    assert_eq!(readyz(&a).await.0, 200);
    assert_eq!(readyz(&gb).await.0, 200);
    a.stop().await;
    gb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_resharding_under_live_sessions_is_followed() {
    let Some(cluster) = Cluster::start("cluster_reshard") else {
        return;
    };
    let b = Backend::start("app").await;
    let store = Store::Lines(cluster.store_lines(), Box::new(()));
    let a = session_gateway(&store, &b, "", "").await;
    let gb = second_replica(&a).await;
    let (ca, cb) = (a.plain(), gb.plain());
    let cookies = spread_sessions(&ca, &cluster, 12).await;
    // `reshard` takes a source's lowest slots first: move enough of node
    // 0's to carry at least one session key to node 1.
    let (from, to) = (&cluster.nodes[0], &cluster.nodes[1]);
    let slot = |k: &str| -> u64 { cli(from.port, &["CLUSTER", "KEYSLOT", k]).parse().unwrap() };
    let keys = cli(from.port, &["KEYS", "*{s:*"]);
    let lowest_key = keys
        .lines()
        .map(slot)
        .min()
        .expect("session keys on node 0");
    // `<id> <addr> myself,master - ... connected <first>-<last> ...`
    let nodes = cli(from.port, &["CLUSTER", "NODES"]);
    let lowest_owned: u64 = nodes
        .lines()
        .find(|l| l.contains("myself"))
        .and_then(|l| l.split_whitespace().nth(8))
        .and_then(|r| r.split('-').next())
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("no slots on node 0: {nodes}"));
    let moving = lowest_key - lowest_owned + 1;
    let (from_id, to_id) = (cluster.id(0), cluster.id(1));
    let seed = format!("127.0.0.1:{}", from.port);
    let reshard = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &seed])
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", &moving.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster reshard")
    });
    // Every request keeps working while slots move.
    let mut rounds = 0;
    while !reshard.is_finished() {
        for c in &cookies {
            assert_eq!(get_app(&ca, c).await, 200, "A during the resharding");
            assert_eq!(get_app(&cb, c).await, 200, "B during the resharding");
        }
        rounds += 1;
    }
    let out = reshard.await.unwrap();
    assert!(
        out.status.success(),
        "reshard failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("resharding: {moving} slots moved under {rounds} rounds of requests");
    assert_ne!(
        cli(
            to.port,
            &["CLUSTER", "COUNTKEYSINSLOT", &lowest_key.to_string()]
        ),
        "0",
        "the session key did not move"
    );
    for c in &cookies {
        assert_eq!(get_app(&ca, c).await, 200, "A after the resharding");
        assert_eq!(get_app(&cb, c).await, 200, "B after the resharding");
    }
    // Writes to moved slots, and the feed, still work.
    for c in &cookies {
        logout_reaches(&ca, &cb, c).await;
    }
    a.stop().await;
    gb.stop().await;
}

/// The Sentinel form with everything on TLS ports only (sentinels, master,
/// replica, replication): the gateway verifies against `redis_ca_file`
/// and follows a failover.
#[tokio::test]
async fn sentinel_form_over_tls_only_follows_a_failover() {
    if !available("sentinel_tls") {
        return;
    }
    let pki = Pki::new();
    let certs = tempdir();
    pki.issue(certs.path(), "redis", &["127.0.0.1", "localhost"]);
    pki.write_ca(certs.path());
    let Some(mut set) = SentinelSet::start_with(
        "sentinel_tls",
        SentinelOpts {
            tls_dir: Some(certs.path().to_path_buf()),
            ..SentinelOpts::default()
        },
    ) else {
        return;
    };
    // Nothing answers in plain text.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", set.sentinels[0].port))
            .map(|_| cli(set.sentinels[0].port, &["PING"]) != "PONG")
            .unwrap_or(true)
    );
    let b = Backend::start("app").await;
    let store = Store::Lines(
        format!(
            "store = \"redis\"\nredis_sentinel = {{ master = \"{MASTER_NAME}\", nodes = [{}] }}\n\
             redis_tls = true\nredis_ca_file = \"{}\"\n",
            set.sentinel_nodes(),
            certs.path().join("ca.crt").display()
        ),
        Box::new(()),
    );
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    let cookie = match login(&c, "alice", ALICE_PW).await {
        Ok(c) => c,
        Err(s) => panic!("login via TLS sentinels: {s}: {:?}", readyz(&gw).await),
    };
    assert_eq!(get_app(&c, &cookie).await, 200);
    assert_eq!(readyz(&gw).await.0, 200);
    let want = cli_offset_tls(&set, set.master.port, "master_repl_offset");
    assert!(
        poll(Duration::from_secs(5), || async {
            cli_offset_tls(&set, set.replica.port, "slave_repl_offset") >= want
        })
        .await,
        "the replica did not catch up"
    );
    let old = set.master.port;
    set.master.kill();
    assert!(
        poll(Duration::from_secs(30), || async {
            set.current_master_port().is_some_and(|p| p != old)
        })
        .await,
        "no promotion"
    );
    assert!(
        poll(Duration::from_secs(10), || async {
            get_app(&c, &cookie).await == 200
        })
        .await,
        "no recovery within 10 s of the promotion: {:?}",
        readyz(&gw).await
    );
    gw.stop().await;
}

fn cli_offset_tls(set: &SentinelSet, port: u16, field: &str) -> u64 {
    offset_in(&set.data_cli(port, &["INFO", "replication"]), field)
}

/// Revocation latency between replicas and the Sentinel failover gap, as
/// docs/scale-out.md reports them. Not a pass/fail test: run it with
/// `bench/revocation-latency.sh` (release build), which prints the
/// figures. Each trial answers a revocation on replica A and times until
/// replica B enforces it (B polled back to back).
mod latency {
    use super::*;
    use crate::support::tokens::{alice_users, api, password_grant, signing_key, token_gateway};

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
        measure("sentinel", &set.store_lines()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement: bench/revocation-latency.sh"]
    async fn revocation_latency_cluster() {
        let Some(cluster) = Cluster::start("latency") else {
            return;
        };
        measure("cluster", &cluster.store_lines()).await;
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
            let store = Store::Lines(set.store_lines(), Box::new(()));
            let gw = session_gateway(&store, &b, "", "").await;
            let c = gw.plain();
            let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
            let want = repl_offset(set.master.port, "master_repl_offset");
            assert!(
                poll(Duration::from_secs(5), || async {
                    repl_offset(set.replica.port, "slave_repl_offset") >= want
                })
                .await
            );
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

/// SPEC 13: no log line carries a Redis password, whether it came in the
/// URL's userinfo or from a password file (the real binary, its log
/// captured, against a Redis that refuses both).
#[tokio::test]
async fn redis_passwords_never_reach_the_log() {
    if !crate::support::redis_ha::available("redis_passwords_log") {
        return;
    }
    let redis = Node::start(&["--requirepass".into(), "right-pw".into()]);
    let dir = tempdir();
    std::fs::write(dir.path().join("pw"), "file-secret\n").unwrap();
    for (name, lines) in [
        (
            "url-secret",
            format!(
                "redis_url = \"redis://someone:url-secret@127.0.0.1:{}/0\"\n",
                redis.port
            ),
        ),
        (
            "file-secret",
            format!(
                "redis_url = \"redis://127.0.0.1:{}/0\"\nredis_password_file = \"{}\"\n",
                redis.port,
                dir.path().join("pw").display()
            ),
        ),
    ] {
        let gw = crate::support::process::GwProcess::spawn(
            &format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                 [sessions]\nstore = \"redis\"\n{lines}cookie_secure = false\n\
                 [[routes]]\nname = \"open\"\npath_prefix = \"/\"\nauth = \"none\"\nupstream = \"a\"\n\
                 [[upstreams]]\nname = \"a\"\nbackends = [\"127.0.0.1:1\"]\n"
            ),
            None,
        )
        .await;
        // Failed connections are logged as they are retried; /readyz and
        // a request with a session cookie make the store's errors travel.
        let admin = Client::plain(gw.admin);
        assert!(
            poll(Duration::from_secs(10), || async {
                admin.get("/readyz").await.status == 503 && gw.log().contains("Redis")
            })
            .await,
            "{}",
            gw.log()
        );
        let log = gw.log();
        assert!(!log.contains(name), "{name} in the log: {log}");
        assert!(!log.contains("right-pw"));
    }
}
