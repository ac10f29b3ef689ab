//! Load balancing and sticky sessions (SPEC 7): affinity cookies, identity
//! hashing, learned app cookies, failover with re-pinning, drain, health,
//! least connections, consistent hashing on a header.

use crate::support::client::req;
use crate::support::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const ADMIN_TOKEN: &str = "sticky-tests-admin-token";
const SECRET: &str = "sticky-tests-secret-0123456789abcdef";
const AFFINITY: &str = "gatehouse_affinity";

/// A gateway config with an admin token, a fixed secret, one upstream
/// `app` over `backends` (with `extra` lines in its table) and one open
/// route to it.
fn config(backends: &[&Backend], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nsecret = \"{SECRET}\"\ntrusted_proxies = [\"127.0.0.1\"]\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n\n\
         [log]\naccess_log = false\n\n\
         [[upstreams]]\nname = \"app\"\nbackends = [{}]\n{extra}\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        list.join(", ")
    )
}

fn backend_of(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("x-backend").expect("X-Backend").to_string()
}

/// The `name=value` pair of the response's Set-Cookie for `name`.
fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_string())
}

fn set_cookie_line(r: &Resp, name: &str) -> String {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no Set-Cookie for {name}: {:?}", r.headers))
        .to_string()
}

async fn get(gw: &Gw, path: &str, headers: &[(&str, &str)]) -> Resp {
    gw.plain().get_with(path, headers).await
}

async fn admin(gw: &Gw, method: &str, path: &str) -> Resp {
    Client::plain(gw.admin())
        .send(req(
            method,
            path,
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            "",
        ))
        .await
}

/// `/admin/upstreams` entry of backend `addr` of upstream `app`.
async fn backend_state(gw: &Gw, addr: &str) -> serde_json::Value {
    let r = admin(gw, "GET", "/admin/upstreams").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    v["upstreams"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == addr)
        .cloned()
        .unwrap_or_else(|| panic!("{addr} not in {v}"))
}

/// Polls `/admin/upstreams` until backend `addr` has `field` = `want`
/// (at most 5 s).
async fn wait_for_state(
    gw: &Gw,
    addr: &str,
    field: &str,
    want: impl Into<serde_json::Value>,
) -> bool {
    let want = want.into();
    poll(Duration::from_secs(5), || async {
        backend_state(gw, addr).await[field] == want
    })
    .await
}

async fn metrics(gw: &Gw) -> String {
    Client::plain(gw.admin()).get("/metrics").await.text()
}

fn repins(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("gatehouse_sticky_repins_total{upstream=\"app\"} "))
        .and_then(|v| v.parse().ok())
        .expect("gatehouse_sticky_repins_total for app")
}

async fn backends(n: usize) -> Vec<Backend> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Backend::start(&format!("b{i}")).await);
    }
    v
}

fn by_name<'a>(bs: &'a [Backend], name: &str) -> &'a Backend {
    bs.iter().find(|b| b.name == name).expect("known backend")
}

#[tokio::test]
async fn affinity_cookie_keeps_a_client_on_one_backend_for_50_requests() {
    let bs = backends(3).await;
    let gw = Gw::start(&config(
        &bs.iter().collect::<Vec<_>>(),
        "[upstreams.sticky]\nmode = \"cookie\"",
    ))
    .await;
    let first = get(&gw, "/", &[]).await;
    let pinned = backend_of(&first);
    let line = set_cookie_line(&first, AFFINITY);
    assert!(line.contains("; Path=/"), "{line}");
    assert!(line.contains("; HttpOnly"), "{line}");
    assert!(line.contains("; SameSite=Lax"), "{line}");
    assert!(!line.contains("Secure"), "plain HTTP: {line}");
    assert!(
        !line.contains("Max-Age"),
        "ttl 0s is a session cookie: {line}"
    );
    let cookie = set_cookie(&first, AFFINITY).unwrap();
    let b = by_name(&bs, &pinned);
    assert!(
        !cookie.contains(b.addr.rsplit(':').next().unwrap()) && !cookie.contains("127.0.0.1"),
        "the cookie must not name the backend: {cookie}"
    );

    for _ in 0..50 {
        let r = get(&gw, "/", &[("cookie", &format!("other=1; {cookie}"))]).await;
        assert_eq!(backend_of(&r), pinned);
        assert_eq!(set_cookie(&r, AFFINITY), None, "cookie set only once");
    }
    assert_eq!(b.count(), 51);
    let seen = b.last();
    assert_eq!(
        seen.headers["cookie"], "other=1",
        "the backend never sees the affinity cookie"
    );
    assert!(!seen.headers.contains_key("x-gatehouse-rehomed"));

    let state = backend_state(&gw, &b.addr).await;
    assert_eq!(state["sticky_clients"], 1, "{state}");
    gw.stop().await;
}

#[tokio::test]
async fn affinity_cookie_ttl_sets_max_age_and_tls_clients_get_secure() {
    let b = Backend::start("b0").await;
    let dir = tempdir();
    let pki = Pki::new();
    pki.issue(dir.path(), "server", &["localhost"]);
    let cfg = config(
        &[&b],
        "[upstreams.sticky]\nmode = \"cookie\"\ncookie_name = \"aff\"\nttl = \"2h\"",
    )
    .replace(
        "[admin]",
        "[server.tls]\ncert = \"server.crt\"\nkey = \"server.key\"\n\n[admin]",
    );
    let gw = Gw::start_in(dir, &cfg).await;
    let client = Client::tls(gw.addr(), pki.client_config(&["http/1.1"]), "localhost");
    let r = client.get("/").await;
    let line = set_cookie_line(&r, "aff");
    assert!(line.contains("; Max-Age=7200"), "{line}");
    assert!(line.contains("; Secure"), "{line}");
    gw.stop().await;
}

#[tokio::test]
async fn forged_or_tampered_affinity_cookie_is_ignored_and_replaced() {
    let bs = backends(3).await;
    let gw = Gw::start(&config(
        &bs.iter().collect::<Vec<_>>(),
        "[upstreams.sticky]\nmode = \"cookie\"",
    ))
    .await;
    let genuine = set_cookie(&get(&gw, "/", &[]).await, AFFINITY).unwrap();
    let value = genuine.split_once('=').unwrap().1;
    let mut tampered = value.as_bytes().to_vec();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for forged in [
        "forged".to_string(),
        bs[0].addr.clone(),
        tampered,
        "A".repeat(value.len()),
    ] {
        let r = get(&gw, "/", &[("cookie", &format!("{AFFINITY}={forged}"))]).await;
        let name = backend_of(&r);
        let replaced = set_cookie(&r, AFFINITY).expect("a forged cookie is replaced");
        assert_ne!(replaced, format!("{AFFINITY}={forged}"));
        let seen = by_name(&bs, &name).last();
        assert!(
            !seen.headers.contains_key("x-gatehouse-rehomed"),
            "a forged cookie is no affinity, so nobody was moved"
        );
        // The replacement pins like any genuine cookie.
        for _ in 0..3 {
            let r = get(&gw, "/", &[("cookie", &replaced)]).await;
            assert_eq!(backend_of(&r), name);
        }
    }
    assert_eq!(repins(&metrics(&gw).await), 0);
    gw.stop().await;
}

#[tokio::test]
async fn killed_backend_clients_are_rehomed_with_a_new_cookie_and_no_5xx() {
    let bs = backends(3).await;
    // No pooled connections: every request connects, so a dead backend is
    // a refused connection (never sent, safe to retry for any method).
    let gw = Gw::start(&config(
        &bs.iter().collect::<Vec<_>>(),
        "max_idle_per_backend = 0\n\
         [upstreams.sticky]\nmode = \"cookie\"\n\
         [upstreams.health]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nunhealthy_after = 1\nhealthy_after = 1",
    ))
    .await;
    let first = get(&gw, "/", &[]).await;
    let old = backend_of(&first);
    let old_cookie = set_cookie(&first, AFFINITY).unwrap();
    let dead = by_name(&bs, &old);
    dead.stop();

    // Before health notices: the refused connection is retried elsewhere.
    let r = get(&gw, "/", &[("cookie", &old_cookie)]).await;
    let new = backend_of(&r);
    assert_ne!(new, old);
    let new_cookie = set_cookie(&r, AFFINITY).expect("re-pinned with a new cookie");
    assert_ne!(new_cookie, old_cookie);
    let seen = by_name(&bs, &new).last();
    assert_eq!(seen.headers["x-gatehouse-rehomed"], "1");

    for method in ["GET", "POST", "PUT", "DELETE"] {
        let r = gw
            .plain()
            .send(req(method, "/", &[("cookie", &new_cookie)], "body"))
            .await;
        assert_eq!(backend_of(&r), new, "{method}");
        assert_eq!(set_cookie(&r, AFFINITY), None);
        let seen = by_name(&bs, &new).last();
        assert!(!seen.headers.contains_key("x-gatehouse-rehomed"));
    }

    // Once health has noticed, old cookies move without a connect attempt.
    assert!(
        wait_for_state(&gw, &dead.addr, "healthy", false).await,
        "active checks mark the dead backend unhealthy"
    );
    for _ in 0..20 {
        let r = gw
            .plain()
            .send(req("POST", "/", &[("cookie", &old_cookie)], "x"))
            .await;
        assert_ne!(backend_of(&r), old);
        assert!(set_cookie(&r, AFFINITY).is_some());
    }
    assert!(repins(&metrics(&gw).await) >= 21);
    gw.stop().await;
}

#[tokio::test]
async fn a_client_sent_rehomed_header_never_reaches_the_backend() {
    let b = Backend::start("b0").await;
    let gw = Gw::start(&config(&[&b], "[upstreams.sticky]\nmode = \"cookie\"")).await;
    let r = get(&gw, "/", &[("x-gatehouse-rehomed", "1")]).await;
    assert_eq!(r.status, 200);
    assert!(!b.last().headers.contains_key("x-gatehouse-rehomed"));
    gw.stop().await;
}

#[tokio::test]
async fn identity_affinity_agrees_between_two_gateways() {
    let bs = backends(3).await;
    let cfg = config(
        &bs.iter().collect::<Vec<_>>(),
        "[upstreams.sticky]\nmode = \"identity\"",
    );
    let (g1, g2) = (Gw::start(&cfg).await, Gw::start(&cfg).await);
    // Anonymous callers are placed by client address; the gateways trust
    // 127.0.0.1 as a proxy, so X-Forwarded-For names the caller.
    let mut used = HashSet::new();
    for i in 1..=15 {
        let ip = format!("198.51.100.{i}");
        let h = [("x-forwarded-for", ip.as_str())];
        let on1 = backend_of(&get(&g1, "/", &h).await);
        for _ in 0..3 {
            assert_eq!(
                backend_of(&get(&g1, "/", &h).await),
                on1,
                "{ip} on gateway 1"
            );
            assert_eq!(
                backend_of(&get(&g2, "/", &h).await),
                on1,
                "{ip} on gateway 2"
            );
        }
        used.insert(on1);
    }
    assert!(used.len() >= 2, "callers spread over backends: {used:?}");
    g1.stop().await;
    g2.stop().await;
}

#[tokio::test]
async fn learned_jsessionid_routes_to_the_backend_that_issued_it() {
    let bs = backends(3).await;
    let gw = Gw::start(&config(
        &bs.iter().collect::<Vec<_>>(),
        "[upstreams.sticky]\nmode = \"learn\"\napp_cookie = \"JSESSIONID\"",
    ))
    .await;
    let mut issuers = HashMap::new();
    for s in ["s1", "s2", "s3"] {
        let r = get(&gw, &format!("/setcookie/JSESSIONID={s}"), &[]).await;
        assert_eq!(
            set_cookie(&r, "JSESSIONID").as_deref(),
            Some(format!("JSESSIONID={s}").as_str()),
            "the app's cookie reaches the client"
        );
        issuers.insert(s, backend_of(&r));
    }
    // Round robin gave the three sessions to three backends.
    assert_eq!(issuers.values().collect::<HashSet<_>>().len(), 3);
    for _ in 0..10 {
        for (s, issuer) in &issuers {
            let r = get(&gw, "/", &[("cookie", &format!("JSESSIONID={s}"))]).await;
            assert_eq!(&backend_of(&r), issuer, "session {s}");
        }
    }
    // An unknown value is balanced as usual.
    let spread: HashSet<String> = futures_join(&gw, 6, "JSESSIONID=unknown").await;
    assert!(spread.len() > 1);

    // The issuer of s1 dies: s1 moves, is told, and stays on its new home.
    let dead = by_name(&bs, &issuers["s1"]);
    dead.stop();
    let r = get(&gw, "/", &[("cookie", "JSESSIONID=s1")]).await;
    let new = backend_of(&r);
    assert_ne!(new, issuers["s1"]);
    assert_eq!(
        by_name(&bs, &new).last().headers["x-gatehouse-rehomed"],
        "1"
    );
    for _ in 0..5 {
        let r = get(&gw, "/", &[("cookie", "JSESSIONID=s1")]).await;
        assert_eq!(backend_of(&r), new);
        assert!(!by_name(&bs, &new)
            .last()
            .headers
            .contains_key("x-gatehouse-rehomed"));
    }
    gw.stop().await;
}

/// Sends `n` requests with `cookie` and collects the backends that answered.
async fn futures_join(gw: &Gw, n: usize, cookie: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for _ in 0..n {
        out.insert(backend_of(&get(gw, "/", &[("cookie", cookie)]).await));
    }
    out
}

#[tokio::test]
async fn draining_keeps_existing_sticky_clients_and_sends_new_ones_elsewhere() {
    let bs = backends(3).await;
    let gw = Gw::start(&config(
        &bs.iter().collect::<Vec<_>>(),
        "[upstreams.sticky]\nmode = \"cookie\"",
    ))
    .await;
    let mut clients: Vec<(String, String)> = Vec::new();
    for _ in 0..6 {
        let r = get(&gw, "/", &[]).await;
        clients.push((backend_of(&r), set_cookie(&r, AFFINITY).unwrap()));
    }
    let drained = by_name(&bs, &clients[0].0);
    let own: Vec<&String> = clients
        .iter()
        .filter(|(b, _)| *b == drained.name)
        .map(|(_, c)| c)
        .collect();
    let path = format!(
        "/admin/upstreams/app/backends/{}/drain",
        drained.addr.replace(':', "%3A")
    );
    assert_eq!(admin(&gw, "POST", &path).await.status, 200);

    for _ in 0..5 {
        for c in &own {
            let r = get(&gw, "/", &[("cookie", c)]).await;
            assert_eq!(backend_of(&r), drained.name, "existing client kept");
            assert_eq!(set_cookie(&r, AFFINITY), None);
        }
    }
    for _ in 0..30 {
        let r = get(&gw, "/", &[]).await;
        assert_ne!(
            backend_of(&r),
            drained.name,
            "no new clients while draining"
        );
    }
    let state = backend_state(&gw, &drained.addr).await;
    assert_eq!(state["draining"], true);
    assert_eq!(state["sticky_clients"], own.len(), "{state}");

    let path = path.replace("/drain", "/undrain");
    assert_eq!(admin(&gw, "POST", &path).await.status, 200);
    let mut back = false;
    for _ in 0..30 {
        back |= backend_of(&get(&gw, "/", &[]).await) == drained.name;
    }
    assert!(back, "undrained backend takes new clients again");
    gw.stop().await;
}

#[tokio::test]
async fn least_connections_prefers_the_idle_backend() {
    let bs = backends(2).await;
    let gw = Gw::start(&config(
        &bs.iter().collect::<Vec<_>>(),
        "balance = \"least_conn\"",
    ))
    .await;
    let slow_client = gw.plain();
    let slow = tokio::spawn(async move { slow_client.get("/slow/3000").await });
    assert!(
        poll(Duration::from_secs(5), || async {
            bs.iter().any(|b| b.count() == 1)
        })
        .await
    );
    let busy = bs.iter().find(|b| b.count() == 1).unwrap();
    let idle = bs.iter().find(|b| b.name != busy.name).unwrap();
    for _ in 0..10 {
        let r = get(&gw, "/", &[]).await;
        assert_eq!(
            backend_of(&r),
            idle.name,
            "the busy backend has a request in flight"
        );
    }
    assert_eq!(busy.count(), 1);
    assert_eq!(slow.await.unwrap().status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn hash_on_a_header_routes_each_value_consistently() {
    let bs = backends(4).await;
    let gw = Gw::start(&config(
        &bs.iter().collect::<Vec<_>>(),
        "balance = \"hash\"\nhash_key = \"header:X-Tenant\"",
    ))
    .await;
    let mut used = HashSet::new();
    for t in 0..12 {
        let tenant = format!("tenant-{t}");
        let first = backend_of(&get(&gw, "/", &[("x-tenant", &tenant)]).await);
        for _ in 0..4 {
            assert_eq!(
                backend_of(&get(&gw, "/", &[("x-tenant", &tenant)]).await),
                first,
                "{tenant}"
            );
        }
        used.insert(first);
    }
    assert!(used.len() >= 2, "{used:?}");
    // Without the header, requests are spread by round robin.
    let mut spread = HashSet::new();
    for _ in 0..8 {
        spread.insert(backend_of(&get(&gw, "/", &[]).await));
    }
    assert_eq!(spread.len(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn failing_health_checks_stop_traffic_until_the_backend_recovers() {
    let bs = backends(2).await;
    let gw = Gw::start(&config(
        &bs.iter().collect::<Vec<_>>(),
        "[upstreams.health]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nunhealthy_after = 2\nhealthy_after = 2",
    ))
    .await;
    let (sick, well) = (&bs[0], &bs[1]);
    sick.set_health(500);
    assert!(
        wait_for_state(&gw, &sick.addr, "healthy", false).await,
        "a 500 on the health path marks the backend unhealthy"
    );
    assert!(metrics(&gw).await.contains(&format!(
        "gatehouse_backend_healthy{{upstream=\"app\",backend=\"{}\"}} 0",
        sick.addr
    )));
    let before = sick.count();
    for _ in 0..20 {
        assert_eq!(backend_of(&get(&gw, "/", &[]).await), well.name);
    }
    assert_eq!(sick.count(), before, "no traffic to an unhealthy backend");

    sick.set_health(200);
    assert!(
        wait_for_state(&gw, &sick.addr, "healthy", true).await,
        "recovers after healthy_after good checks"
    );
    let mut reached = false;
    for _ in 0..10 {
        reached |= backend_of(&get(&gw, "/", &[]).await) == sick.name;
    }
    assert!(reached);
    gw.stop().await;
}

#[tokio::test]
async fn no_backend_left_is_503() {
    let b = Backend::start("b0").await;
    let gw = Gw::start(&config(&[&b], "[upstreams.sticky]\nmode = \"cookie\"")).await;
    let cookie = set_cookie(&get(&gw, "/", &[]).await, AFFINITY).unwrap();
    let path = format!("/admin/upstreams/app/backends/{}/drain", b.addr);
    assert_eq!(admin(&gw, "POST", &path).await.status, 200);
    // Its sticky client is still served; a new client has nowhere to go.
    assert_eq!(get(&gw, "/", &[("cookie", &cookie)]).await.status, 200);
    assert_eq!(get(&gw, "/", &[]).await.status, 503);
    gw.stop().await;
}

#[test]
fn sticky_example_config_passes_check() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sticky.toml");
    let cfg = gatehouse::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let modes: Vec<_> = cfg
        .upstreams
        .iter()
        .filter_map(|u| u.sticky.as_ref().map(|s| s.mode.clone()))
        .collect();
    assert!(modes
        .iter()
        .any(|m| matches!(m, gatehouse::config::StickyMode::Cookie { .. })));
    assert!(modes.contains(&gatehouse::config::StickyMode::Identity));
    assert!(modes
        .iter()
        .any(|m| matches!(m, gatehouse::config::StickyMode::Learn { .. })));
}

/// Three backends on 127.0.0.1-3, all on the same port (DNS gives
/// addresses, the port comes from the config).
async fn same_port_backends() -> (Vec<Backend>, u16) {
    let first = Backend::start_on("d1", "127.0.0.1:0").await;
    let port: u16 = first.addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut v = vec![first];
    for i in 2..=3 {
        v.push(Backend::start_on(&format!("d{i}"), &format!("127.0.0.{i}:{port}")).await);
    }
    (v, port)
}

fn discovery_line(dns: &DnsServer, port: u16) -> String {
    format!(
        "discovery = {{ dns = \"app.gatehouse.test:{port}\", interval = \"100ms\", resolver = \"{}\" }}",
        dns.addr
    )
}

async fn listed_backends(gw: &Gw) -> Vec<String> {
    let v = admin(gw, "GET", "/admin/upstreams").await.json();
    let mut out: Vec<String> = v["upstreams"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["addr"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// Polls `/admin/upstreams` until upstream `app` lists exactly `want`.
async fn wait_for_backends(gw: &Gw, want: &[&str]) -> bool {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    poll(Duration::from_secs(10), || async {
        listed_backends(gw).await == want
    })
    .await
}

#[tokio::test]
async fn dns_discovery_adds_and_removes_backends_without_dropping_requests() {
    let dns = DnsServer::start().await;
    dns.fail(true);
    let (bs, port) = same_port_backends().await;
    let addr = |i: usize| format!("127.0.0.{i}:{port}");
    let gw = Gw::start(&config(&[], &discovery_line(&dns, port))).await;

    // No answer yet: not ready, nothing to send to.
    let r = Client::plain(gw.admin()).get("/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("DNS"), "{}", r.text());
    assert_eq!(get(&gw, "/", &[]).await.status, 503);

    dns.set(&["127.0.0.1"]);
    dns.fail(false);
    assert!(wait_for_backends(&gw, &[&addr(1)]).await);
    assert_eq!(Client::plain(gw.admin()).get("/readyz").await.status, 200);
    assert_eq!(backend_of(&get(&gw, "/", &[]).await), "d1");

    // Steady load for the rest of the test; every answer must be a 200.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, client) = (stop.clone(), gw.plain());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                statuses.push(client.get("/").await.status);
            }
            statuses
        })
    };

    dns.set(&["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    assert!(wait_for_backends(&gw, &[&addr(1), &addr(2), &addr(3)]).await);
    assert!(
        poll(Duration::from_secs(5), || async {
            bs.iter().all(|b| b.count() > 3)
        })
        .await,
        "new backends take traffic"
    );

    dns.set(&["127.0.0.2", "127.0.0.3"]);
    assert!(
        wait_for_backends(&gw, &[&addr(2), &addr(3)]).await,
        "a vanished address is drained, then dropped"
    );
    let d1_after = bs[0].count();

    // A failing resolver changes nothing.
    dns.fail(true);
    let asked = dns.queries();
    assert!(
        poll(Duration::from_secs(5), || async {
            dns.queries() >= asked + 6
        })
        .await
    );
    assert_eq!(listed_backends(&gw).await, vec![addr(2), addr(3)]);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = load.await.unwrap();
    assert!(statuses.len() > 20, "load ran: {}", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "dropped requests: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    assert_eq!(bs[0].count(), d1_after, "no traffic to a removed backend");
    gw.stop().await;
}

#[tokio::test]
async fn a_backend_gone_from_dns_keeps_its_sticky_clients() {
    let dns = DnsServer::start().await;
    let (bs, port) = same_port_backends().await;
    dns.set(&["127.0.0.1", "127.0.0.2"]);
    let addr = |i: usize| format!("127.0.0.{i}:{port}");
    let gw = Gw::start(&config(
        &[],
        &format!(
            "{}\n[upstreams.sticky]\nmode = \"cookie\"",
            discovery_line(&dns, port)
        ),
    ))
    .await;
    assert!(wait_for_backends(&gw, &[&addr(1), &addr(2)]).await);
    let mut cookie = None;
    for _ in 0..6 {
        let r = get(&gw, "/", &[]).await;
        if backend_of(&r) == "d1" {
            cookie = set_cookie(&r, AFFINITY);
            break;
        }
    }
    let cookie = cookie.expect("a client pinned to d1");

    dns.set(&["127.0.0.2"]);
    assert!(wait_for_state(&gw, &addr(1), "retiring", true).await);
    for _ in 0..5 {
        let r = get(&gw, "/", &[("cookie", &cookie)]).await;
        assert_eq!(backend_of(&r), "d1", "its sticky client stays");
        assert_eq!(set_cookie(&r, AFFINITY), None);
    }
    for _ in 0..10 {
        assert_eq!(
            backend_of(&get(&gw, "/", &[]).await),
            "d2",
            "no new clients"
        );
    }
    let state = backend_state(&gw, &addr(1)).await;
    assert_eq!(state["draining"], true);
    assert_eq!(state["sticky_clients"], 1);

    dns.set(&["127.0.0.1", "127.0.0.2"]);
    assert!(wait_for_state(&gw, &addr(1), "retiring", false).await);
    assert_eq!(bs[2].count(), 0);
    gw.stop().await;
}

/// Discovery's DNS client asks the configured server both questions on
/// every round (no cache, whatever the records' TTL), and a failure is an
/// error, never a smaller set of addresses.
#[tokio::test]
async fn dns_discovery_asks_a_and_aaaa_every_round_and_fails_whole() {
    use gatehouse::upstream::discovery::Resolver;
    use std::net::IpAddr;
    let dns = DnsServer::start().await;
    let d = gatehouse::config::Discovery {
        host: "app.gatehouse.test".into(),
        port: 80,
        interval: Duration::from_secs(10),
        resolver: Some(dns.addr),
    };
    let r = Resolver::new(&d, Duration::from_secs(2));
    let ips = |v: &[&str]| -> Vec<IpAddr> { v.iter().map(|s| s.parse().unwrap()).collect() };

    // A name with no records: no address, not an error.
    assert_eq!(r.resolve(&d.host).await.unwrap(), ips(&[]));
    dns.set(&["127.0.0.2", "127.0.0.1"]);
    dns.set_v6(&["fd00::1"]);
    assert_eq!(
        r.resolve(&d.host).await.unwrap(),
        ips(&["127.0.0.1", "127.0.0.2", "fd00::1"])
    );

    // The records have a TTL of 5 s; asked again at once, the server is
    // asked both questions again and its new answer is the one used.
    let asked = dns.queries();
    dns.set(&["127.0.0.3"]);
    dns.set_v6(&[]);
    assert_eq!(r.resolve(&d.host).await.unwrap(), ips(&["127.0.0.3"]));
    assert_eq!(dns.queries(), asked + 2);

    dns.nxdomain(true);
    assert!(r.resolve(&d.host).await.is_err(), "NXDOMAIN is an error");
    dns.nxdomain(false);
    dns.fail(true);
    assert!(r.resolve(&d.host).await.is_err(), "SERVFAIL is an error");
    dns.fail(false);
    assert_eq!(r.resolve(&d.host).await.unwrap(), ips(&["127.0.0.3"]));
}

#[test]
fn demo_backends_are_cookie_sticky() {
    let dir = tempdir();
    let files = gatehouse::demo::write_files(
        dir.path(),
        0,
        &[
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ],
    )
    .unwrap();
    let cfg = gatehouse::config::load(&files.config).unwrap_or_else(|e| panic!("{e}"));
    let sticky = cfg.upstreams[0]
        .sticky
        .as_ref()
        .expect("sticky demo upstream");
    assert!(matches!(
        sticky.mode,
        gatehouse::config::StickyMode::Cookie { .. }
    ));
}

#[tokio::test]
async fn learned_app_cookies_are_shared_between_replicas_through_redis() {
    let Some(redis) = crate::support::redis::RedisServer::start("learned_app_cookies_are_shared")
    else {
        return;
    };
    learned_app_cookies_are_shared(&format!(
        "store = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    ))
    .await;
}

#[tokio::test]
async fn learned_app_cookies_are_shared_between_replicas_through_a_redis_cluster() {
    let Some(cluster) = crate::support::redis_ha::Cluster::start("learned_app_cookies_cluster")
    else {
        return;
    };
    learned_app_cookies_are_shared(&cluster.store_lines()).await;
}

/// Two replicas on the Redis store given by `store` lines: an app cookie
/// learned through one is routed home by the other.
async fn learned_app_cookies_are_shared(store: &str) {
    let x = Backend::start("x").await;
    let y = Backend::start("y").await;
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\
         [sessions]\n{}key_prefix = \"learn-test:\"\n\
         [[upstreams]]\nname = \"app\"\nbackends = [\"{}\", \"{}\"]\n  [upstreams.sticky]\n  mode = \"learn\"\n  app_cookie = \"JSESSIONID\"\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        store,
        x.addr,
        y.addr
    );
    let a = Gw::start(&cfg).await;
    let b = Gw::start(&cfg).await;
    // The app issues JSESSIONID=s1 through replica A.
    let r = a.plain().get("/setcookie/JSESSIONID=s1").await;
    let issuer = r.header("x-backend").unwrap().to_string();
    // Replica B never saw that response, yet sends the session home.
    let homed = poll(Duration::from_secs(1), || async {
        let r = b
            .plain()
            .get_with("/x", &[("cookie", "JSESSIONID=s1")])
            .await;
        r.header("x-backend") == Some(issuer.as_str())
    })
    .await;
    assert!(homed, "B did not learn where JSESSIONID=s1 lives");
    for _ in 0..10 {
        let r = b
            .plain()
            .get_with("/x", &[("cookie", "JSESSIONID=s1")])
            .await;
        assert_eq!(r.header("x-backend"), Some(issuer.as_str()));
    }
    a.stop().await;
    b.stop().await;
}

/// The only backend of an upstream fails a burst of connects and is
/// ejected: requests keep going to it (panic mode, counted) rather than
/// getting 503 for `eject_for`, and succeed as soon as it is back.
#[tokio::test]
async fn a_single_backend_upstream_is_never_emptied_by_passive_ejection() {
    let addr = dead_addr();
    let cfg = format!(
        "{}[[upstreams]]\nname = \"app\"\nbackends = [\"{addr}\"]\nconnect_timeout = \"1s\"\n\
         [upstreams.health]\npassive_failures = 3\neject_for = \"60s\"\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        base_config()
    );
    let gw = Gw::start(&cfg).await;
    let c = gw.plain();
    let burst = (0..16).map(|_| {
        let c = c.clone();
        async move { c.get("/").await.status }
    });
    let statuses = futures_util::future::join_all(burst).await;
    assert!(statuses.iter().all(|s| *s == 502), "{statuses:?}");
    let set = gw.running().gateway.snapshot().upstreams[0].backends();
    assert!(set.backends[0].is_ejected());
    // Ejected, yet still tried: 502 (the backend is down), never 503.
    assert_eq!(c.get("/").await.status, 502);
    let _b = Backend::start_on("back", &addr.to_string()).await;
    assert_eq!(
        c.get("/").await.status,
        200,
        "used again as soon as it answers"
    );
    let metrics = Client::plain(gw.admin()).get("/metrics").await.text();
    let panics: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gatehouse_upstream_panic_total{upstream=\"app\"} "))
        .and_then(|v| v.parse().ok())
        .expect("panic counter");
    assert!(panics >= 2, "{panics}");
    gw.stop().await;
}
