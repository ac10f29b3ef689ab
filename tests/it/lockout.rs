//! Password checks under attack (SPEC 16): the lockout holds against
//! simultaneous attempts over HTTP/1.1 and HTTP/2, oversized usernames are
//! refused before any work, and a check's working memory is given back.

use crate::support::client::req;
use crate::support::process::GwProcess;
use crate::support::sessions::{login, session_gateway, Store, ALICE_PW};
use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Attempts fired at once; the limit is `MAX_FAILURES`.
const ATTEMPTS: usize = 30;
const MAX_FAILURES: usize = 5;

fn login_body(pw: &str) -> String {
    serde_json::json!({ "username": "alice", "password": pw }).to_string()
}

fn token_body(pw: &str) -> String {
    format!(
        "grant_type=password&username=alice&password={}",
        pw.replace(' ', "+")
    )
}

/// `(path, content type, body)` of a wrong-password attempt at `endpoint`.
fn attempt(endpoint: &str, pw: &str) -> (String, &'static str, String) {
    match endpoint {
        "login" => (
            "/.gatehouse/login".into(),
            "application/json",
            login_body(pw),
        ),
        _ => (
            "/.gatehouse/token".into(),
            "application/x-www-form-urlencoded",
            token_body(pw),
        ),
    }
}

/// Fires `ATTEMPTS` wrong passwords at once, each on its own HTTP/1.1
/// connection; their statuses.
async fn burst_http1(gw: &Gw, endpoint: &str) -> Vec<u16> {
    let c = gw.plain();
    let mut conns = Vec::new();
    for _ in 0..ATTEMPTS {
        conns.push(c.connect().await.unwrap().0);
    }
    let sends = conns.into_iter().enumerate().map(|(i, mut conn)| {
        let (path, ctype, body) = attempt(endpoint, &format!("wrong-{i}"));
        async move {
            conn.send(req("POST", &path, &[("content-type", ctype)], &body))
                .await
                .unwrap()
        }
    });
    futures_util::future::join_all(sends)
        .await
        .iter()
        .map(|r| r.status)
        .collect()
}

/// The same over one HTTP/2 connection (prior knowledge), as concurrent
/// streams; the responses.
async fn burst_http2(gw: &Gw, endpoint: &str) -> Vec<Resp> {
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let sends = (0..ATTEMPTS).map(|i| {
        let mut send = send.clone();
        let (path, ctype, body) = attempt(endpoint, &format!("wrong-{i}"));
        async move {
            let r = http::Request::builder()
                .method("POST")
                .uri(format!("http://localhost{path}"))
                .header("content-type", ctype)
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            send.ready().await.unwrap();
            let resp = send.send_request(r).await.unwrap();
            let (parts, body) = resp.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .unwrap()
                .to_bytes();
            Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
                version: parts.version,
            }
        }
    });
    futures_util::future::join_all(sends).await
}

/// The statuses a burst may produce: at most `MAX_FAILURES` wrong-password
/// answers (each a completed check), every other attempt 429.
fn assert_lockout_held(statuses: &[u16], wrong: u16, what: &str) {
    let checked = statuses.iter().filter(|s| **s == wrong).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        checked <= MAX_FAILURES,
        "{what}: {checked} wrong-password checks completed (limit {MAX_FAILURES}): {statuses:?}"
    );
    assert_eq!(checked + refused, ATTEMPTS, "{what}: {statuses:?}");
}

async fn lockout_gateway(b: &Backend) -> Gw {
    session_gateway(
        &Store::Memory,
        b,
        "",
        &format!("max_failures = {MAX_FAILURES}\nfailure_window = \"5m\"\nlockout = \"5m\"\n"),
    )
    .await
}

#[tokio::test]
async fn simultaneous_logins_over_http1_cannot_pass_the_lockout() {
    let b = Backend::start("app").await;
    let gw = lockout_gateway(&b).await;
    let statuses = burst_http1(&gw, "login").await;
    assert_lockout_held(&statuses, 401, "login over HTTP/1.1");
    // The right password now is refused too: the user is locked out.
    let c = gw.plain();
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/login",
            &[("content-type", "application/json")],
            &login_body(ALICE_PW),
        ))
        .await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert!(r.header("set-cookie").is_none(), "no session");
    gw.stop().await;
}

#[tokio::test]
async fn simultaneous_token_requests_over_one_http2_connection_cannot_pass_the_lockout() {
    let b = Backend::start("app").await;
    let gw = lockout_gateway(&b).await;
    let resps = burst_http2(&gw, "token").await;
    assert!(resps.iter().all(|r| r.version == http::Version::HTTP_2));
    let statuses: Vec<u16> = resps.iter().map(|r| r.status).collect();
    assert_lockout_held(&statuses, 400, "token over HTTP/2");
    // A refused attempt is an RFC 6749 error a client library understands
    // (SPEC 11), with when to come back.
    let locked = resps.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(locked.json()["error"], "invalid_grant");
    assert!(locked.header("retry-after").is_some());
    gw.stop().await;
}

#[tokio::test]
async fn simultaneous_logins_over_http2_and_tokens_over_http1_hold_too() {
    let b = Backend::start("app").await;
    let gw = lockout_gateway(&b).await;
    let statuses: Vec<u16> = burst_http2(&gw, "login")
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_lockout_held(&statuses, 401, "login over HTTP/2");
    gw.stop().await;

    let gw = lockout_gateway(&b).await;
    let statuses = burst_http1(&gw, "token").await;
    assert_lockout_held(&statuses, 400, "token over HTTP/1.1");
    gw.stop().await;
}

#[tokio::test]
async fn usernames_over_256_bytes_are_refused_before_any_password_check() {
    let b = Backend::start("app").await;
    let gw = session_gateway(&Store::Memory, &b, "", "max_failures = 2\n").await;
    let c = gw.plain();
    let long = "a".repeat(257);
    let metrics = &gw.running().gateway.metrics;
    let checks_before = metrics.auth_count("login", gatehouse::metrics::AuthResult::Invalid);
    for _ in 0..4 {
        // Past max_failures: had they been checked, the last would be 429.
        assert_eq!(login(&c, &long, "x").await, Err(400));
        let r = c
            .send(req(
                "POST",
                "/.gatehouse/token",
                &[("content-type", "application/x-www-form-urlencoded")],
                &format!("grant_type=password&username={long}&password=x"),
            ))
            .await;
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"], "invalid_request");
    }
    assert_eq!(
        metrics.auth_count("login", gatehouse::metrics::AuthResult::Invalid),
        checks_before,
        "no password was checked"
    );
    // 256 bytes is still a username (a wrong one here).
    assert_eq!(login(&c, &"a".repeat(256), "x").await, Err(401));
    gw.stop().await;
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

#[tokio::test]
async fn failed_logins_give_the_password_checks_memory_back() {
    let b = Backend::start("app").await;
    let dir = tempdir();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[[users]]\nusername = \"alice\"\npassword_hash = \"{}\"\n",
            gatehouse::login::users::hash_password(ALICE_PW)
        ),
    )
    .unwrap();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [sessions]\ncookie_secure = false\n\
         [login]\nusers_file = \"{}\"\nmax_failures = 1000\n\
         [[upstreams]]\nname = \"app\"\nbackends = [\"{}\"]\n\
         [[routes]]\nname = \"open\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        users.display(),
        b.addr
    );
    let gw = GwProcess::spawn(&cfg, None).await;
    let pid = gw.child.id();
    let c = Client::plain(gw.listen);
    let before = rss_kib(pid);
    // 100 failed logins, four at a time, known and unknown users alike, so
    // several blocking threads each run checks.
    for round in 0..25 {
        let tries = (0..4).map(|i| {
            let c = c.clone();
            let user = if i % 2 == 0 { "alice" } else { "nobody" };
            async move { login(&c, user, &format!("wrong-{round}-{i}")).await }
        });
        for r in futures_util::future::join_all(tries).await {
            assert_eq!(r, Err(401));
        }
    }
    let grown_mib = rss_kib(pid).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 32,
        "100 failed logins grew resident memory by {grown_mib} MiB (limit 32)"
    );
}
