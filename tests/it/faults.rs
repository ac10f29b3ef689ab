//! Fault injection under load, on loopback with bounded loops: backends
//! killed and restarted, Redis killed and restarted, config reloads and
//! SIGTERM, a JWKS endpoint that hangs or answers garbage. Each test runs
//! real clients against the gateway while the fault happens and counts
//! what every request got. Short runs always; longer ones with
//! `GATEHOUSE_LONG_TESTS=1`.

use crate::support::client::req;
use crate::support::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn long() -> bool {
    std::env::var("GATEHOUSE_LONG_TESTS").as_deref() == Ok("1")
}

/// How many requests of a load complete around each fault: phases are
/// counted in finished requests, not timed, so a slow machine stretches
/// them instead of shrinking them.
fn phase() -> u64 {
    if long() {
        1500
    } else {
        150
    }
}

/// Longest any request may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(15);

/// What the requests of a load got: status (0 for a transport error, 1 for
/// a hang) -> count, and the slowest answer.
#[derive(Default)]
pub struct Tally {
    by_status: Mutex<BTreeMap<u16, u64>>,
    /// Request number -> status, for tests that follow single requests.
    each: Mutex<Vec<(u64, u16)>>,
    slowest_ms: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn add(&self, n: u64, status: u16, took: Duration) {
        self.each.lock().unwrap().push((n, status));
        *self.by_status.lock().unwrap().entry(status).or_default() += 1;
        self.slowest_ms.fetch_max(took.as_millis() as u64, Relaxed);
    }
    pub fn counts(&self) -> BTreeMap<u16, u64> {
        self.by_status.lock().unwrap().clone()
    }
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }
    pub fn count(&self, status: u16) -> u64 {
        self.counts().get(&status).copied().unwrap_or(0)
    }
    /// How many requests got `status` among those whose number passes `which`.
    pub fn count_of(&self, status: u16, which: impl Fn(u64) -> bool) -> usize {
        self.each
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, s)| *s == status && which(*n))
            .count()
    }
    pub fn status_of(&self, n: u64) -> Option<u16> {
        self.each
            .lock()
            .unwrap()
            .iter()
            .find(|(i, _)| *i == n)
            .map(|(_, s)| *s)
    }
    pub fn slowest(&self) -> Duration {
        Duration::from_millis(self.slowest_ms.load(Relaxed))
    }
    fn error(&self, e: String) {
        let mut errs = self.errors.lock().unwrap();
        if errs.len() < 5 {
            errs.push(e);
        }
    }
    pub fn summary(&self) -> String {
        format!(
            "{:?} (slowest {:?}) {:?}",
            self.counts(),
            self.slowest(),
            self.errors.lock().unwrap()
        )
    }
}

/// A request to send, built per attempt.
pub type MakeReq =
    Arc<dyn Fn(u64) -> http::Request<http_body_util::Full<bytes::Bytes>> + Send + Sync>;

/// Runs `workers` clients, each sending `make(n)` on a fresh connection in
/// a loop, until `stop` is set. Returns the tally (and the join handles
/// are awaited by `finish`).
pub struct Load {
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, workers: usize, make: MakeReq) -> Load {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let seq = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|_| {
                let (tally, stop, make, seq) =
                    (tally.clone(), stop.clone(), make.clone(), seq.clone());
                tokio::spawn(async move {
                    let client = Client::plain(addr);
                    while !stop.load(Relaxed) {
                        let n = seq.fetch_add(1, Relaxed);
                        let start = Instant::now();
                        let r = tokio::time::timeout(HANG, async {
                            let (mut c, _) = client.connect().await?;
                            c.send(make(n)).await.map_err(std::io::Error::other)
                        })
                        .await;
                        match r {
                            Ok(Ok(resp)) => tally.add(n, resp.status, start.elapsed()),
                            Ok(Err(e)) => {
                                tally.error(e.to_string());
                                tally.add(n, 0, start.elapsed());
                            }
                            Err(_) => tally.add(n, 1, start.elapsed()),
                        }
                    }
                })
            })
            .collect();
        Load { tally, stop, tasks }
    }

    /// Returns once `n` more requests of this load have completed
    /// (whatever they got); panics if the load stalls instead.
    pub async fn run_for(&self, n: u64) {
        let target = self.tally.total() + n;
        assert!(
            poll(HANG * 2, || async { self.tally.total() >= target }).await,
            "the load stalled short of {target} requests: {}",
            self.tally.summary()
        );
    }

    pub async fn finish(self) -> Arc<Tally> {
        self.stop.store(true, Relaxed);
        for t in self.tasks {
            tokio::time::timeout(HANG + Duration::from_secs(5), t)
                .await
                .expect("a load worker hung")
                .unwrap();
        }
        self.tally
    }
}

pub fn get(path: &'static str) -> MakeReq {
    Arc::new(move |_| req("GET", path, &[], ""))
}

fn two_backend_config(a: &str, b: &str) -> String {
    format!(
        "{}[[upstreams]]\nname = \"app\"\nbackends = [\"{a}\", \"{b}\"]\nretries = 2\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        base_config()
    )
}

/// A backend dies mid-load (listener and every connection dropped, even
/// with requests in flight) and comes back on the same address. With two
/// backends, idempotent requests see no failure at all; requests with a
/// body that were in flight get a clean 502, and nothing hangs.
#[tokio::test]
async fn a_backend_killed_and_restarted_mid_load_loses_no_idempotent_request() {
    let b1 = Backend::start("b1").await;
    let b2 = Backend::start("b2").await;
    let addr1 = b1.addr.clone();
    let gw = Gw::start(&two_backend_config(&b1.addr, &b2.addr)).await;
    let rounds = if long() { 5 } else { 2 };
    let gets = Load::start(gw.addr(), 12, get("/slow/20"));
    let posts = Load::start(
        gw.addr(),
        4,
        Arc::new(|_| {
            req(
                "POST",
                "/slow/20",
                &[("content-type", "text/plain")],
                "payload",
            )
        }),
    );
    let mut b1 = Some(b1);
    for _ in 0..rounds {
        gets.run_for(phase()).await;
        b1.take().unwrap().stop();
        gets.run_for(phase()).await;
        b1 = Some(Backend::start_on("b1", &addr1).await);
    }
    gets.run_for(phase()).await;
    posts.run_for(phase() / 10).await;
    let gets = gets.finish().await;
    let posts = posts.finish().await;
    eprintln!(
        "backend kill x{rounds}: GET {}; POST {}",
        gets.summary(),
        posts.summary()
    );
    assert!(gets.total() > 100, "too little load: {}", gets.summary());
    assert_eq!(
        gets.count(200),
        gets.total(),
        "idempotent requests failed: {}",
        gets.summary()
    );
    for (status, n) in posts.counts() {
        assert!(
            status == 200 || status == 502,
            "{n} POSTs got {status}: {}",
            posts.summary()
        );
    }
    assert!(posts.count(200) > 0);
    assert!(gets.slowest() < Duration::from_secs(5) && posts.slowest() < Duration::from_secs(5));
    drop(b2);
    gw.stop().await;
}

/// Redis is killed (SIGKILL) mid-load and restarted on the same port with
/// its append-only file. Session routes answer 503 while it is down (never
/// a 401: no session is taken for dead), come back without a gateway
/// restart, and every session written before the kill is still there,
/// including one created just before it. JWT routes never notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_mid_load() {
    use crate::support::redis::RedisServer;
    let Some(mut redis) = RedisServer::start("redis_killed_and_restarted_mid_load") else {
        return;
    };
    let b = Backend::start("app").await;
    let dir = tempdir();
    let pw = "fault tests password";
    std::fs::write(
        dir.path().join("users.toml"),
        format!(
            "[[users]]\nusername = \"alice\"\npassword_hash = \"{}\"\ngroups = [\"staff\"]\n",
            gatehouse::login::users::hash_password(pw)
        ),
    )
    .unwrap();
    let cfg = format!(
        "{}[sessions]\nstore = \"redis\"\nredis_url = \"{}\"\ncookie_secure = false\ncache_ttl = \"200ms\"\n\
         key_prefix = \"faults-{}:\"\n\n[login]\nusers_file = \"users.toml\"\n\n{}\
         [[upstreams]]\nname = \"app\"\nbackends = [\"{}\"]\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/app\"\nupstream = \"app\"\nmethods = [\"session\"]\n\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\nmethods = [\"jwt\"]\n",
        base_config(),
        redis.url(),
        gatehouse::crypto::hex(&gatehouse::crypto::random_bytes::<4>()),
        crate::support::jwt::hs_issuer(),
        b.addr
    );
    let gw = Gw::start_in(dir, &cfg).await;
    let c = gw.plain();
    let mut cookies = Vec::new();
    for _ in 0..(if long() { 30 } else { 8 }) {
        cookies.push(
            crate::support::sessions::login(&c, "alice", pw)
                .await
                .unwrap(),
        );
    }
    let cookies = Arc::new(cookies);
    let token = crate::support::jwt::hs_key().sign(None, &crate::support::jwt::claims());
    let sessions = {
        let cookies = cookies.clone();
        Load::start(
            gw.addr(),
            6,
            Arc::new(move |n| {
                req(
                    "GET",
                    "/app/x",
                    &[("cookie", &cookies[n as usize % cookies.len()])],
                    "",
                )
            }),
        )
    };
    let jwts = Load::start(
        gw.addr(),
        4,
        Arc::new(move |_| {
            req(
                "GET",
                "/api/x",
                &[("authorization", &format!("Bearer {token}"))],
                "",
            )
        }),
    );
    let rounds = if long() { 3 } else { 1 };
    let mut last_minute = Vec::new();
    for _ in 0..rounds {
        sessions.run_for(phase()).await;
        jwts.run_for(phase()).await;
        // Written just before the crash: must survive it.
        last_minute.push(
            crate::support::sessions::login(&c, "alice", pw)
                .await
                .unwrap(),
        );
        // The outage is on once the load's requests with the first
        // cookie (number n uses cookie n % len) get 503 too: a cached
        // session answers for a while after the kill.
        let seen = |t: &Tally| t.count_of(503, |n| n % cookies.len() as u64 == 0);
        let before = seen(&sessions.tally);
        tokio::task::block_in_place(|| redis.kill());
        assert!(
            poll(HANG, || async { seen(&sessions.tally) > before }).await,
            "the outage was not seen: {}",
            sessions.tally.summary()
        );
        sessions.run_for(phase() / 5).await;
        assert_eq!(
            c.get_with("/app/x", &[("cookie", &cookies[0])])
                .await
                .status,
            503
        );
        tokio::task::block_in_place(|| redis.restart());
        let start = Instant::now();
        let back = poll(Duration::from_secs(15), || async {
            c.get_with("/app/x", &[("cookie", &cookies[0])])
                .await
                .status
                == 200
        })
        .await;
        assert!(back, "sessions did not come back without a restart");
        eprintln!(
            "redis: sessions back {:?} after the restart",
            start.elapsed()
        );
    }
    sessions.run_for(phase()).await;
    jwts.run_for(phase()).await;
    let sessions = sessions.finish().await;
    let jwts = jwts.finish().await;
    eprintln!(
        "redis kill x{rounds}: sessions {}; JWT {}",
        sessions.summary(),
        jwts.summary()
    );
    for (status, n) in sessions.counts() {
        assert!(
            status == 200 || status == 503,
            "{n} session requests got {status}: {}",
            sessions.summary()
        );
    }
    assert!(
        sessions.count(503) > 0,
        "the outage was not seen: {}",
        sessions.summary()
    );
    assert_eq!(
        jwts.count(200),
        jwts.total(),
        "JWT routes noticed Redis: {}",
        jwts.summary()
    );
    assert!(jwts.total() > 50);
    for (i, cookie) in cookies.iter().chain(&last_minute).enumerate() {
        assert_eq!(
            c.get_with("/app/x", &[("cookie", cookie)]).await.status,
            200,
            "session {i} was lost"
        );
    }
    gw.stop().await;
}

/// The real binary under load: its config rewritten and SIGHUP sent again
/// and again (backends added and removed, a route header changed, now and
/// then a broken file that must be refused while the old config keeps
/// serving), then SIGTERM. No request fails during the reloads; after
/// SIGTERM every request that reached a backend still gets its answer,
/// and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_and_sigterm_under_load_against_the_binary() {
    use crate::support::process::GwProcess;
    let b1 = Backend::start("b1").await;
    let b2 = Backend::start("b2").await;
    let config = |backends: &str, route: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"10s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\n\
             [[upstreams]]\nname = \"app\"\nbackends = [{backends}]\n\n\
             [[routes]]\nname = \"{route}\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n"
        )
    };
    let one = config(&format!("\"{}\"", b1.addr), "one");
    let mut p = GwProcess::spawn(&one, None).await;
    // The listen address is fixed now: reloads must keep it.
    let pin = |text: String| {
        text.replace(
            "127.0.0.1:0\"\nshutdown",
            &format!("{}\"\nshutdown", p.listen),
        )
    };
    let variants = [
        pin(config(&format!("\"{}\", \"{}\"", b1.addr, b2.addr), "two")),
        pin(config(&format!("\"{}\"", b2.addr), "three")),
        pin(one.clone()),
    ];
    let load = Load::start(
        p.listen,
        8,
        Arc::new(|n| req("GET", &format!("/slow/30?n={n}"), &[], "")),
    );
    let reloads = if long() { 60 } else { 12 };
    // Each reload is awaited (its result counted in the metrics) and the
    // load runs on between two of them.
    let reloads_done = || async {
        let mut n = 0.0;
        for result in ["success", "failure"] {
            let name = format!("gatehouse_config_reloads_total{{result=\"{result}\"}}");
            n += p.metric(&name).await.unwrap_or(0.0);
        }
        n
    };
    for i in 0..reloads {
        load.run_for(20).await;
        let done = reloads_done().await;
        if i % 5 == 4 {
            std::fs::write(&p.config, "[server]\nlisten = \"oops\"\n").unwrap();
        } else {
            std::fs::write(&p.config, &variants[i % 3]).unwrap();
        }
        p.signal("HUP");
        assert!(
            poll(Duration::from_secs(5), || async {
                reloads_done().await > done
            })
            .await,
            "reload {i} was never done"
        );
    }
    load.run_for(40).await;
    let during = load.finish().await;
    eprintln!("{reloads} reloads under load: {}", during.summary());
    assert_eq!(
        during.count(200),
        during.total(),
        "requests failed during reloads: {}",
        during.summary()
    );
    assert!(during.total() > 100);
    let log = p.log();
    assert!(
        log.contains("oops") || log.to_ascii_lowercase().contains("reload"),
        "{log}"
    );

    // SIGTERM in the middle of slow requests.
    const RELOADED: &str = "gatehouse_config_reloads_total{result=\"success\"}";
    let reloaded = p.metric(RELOADED).await.unwrap_or(0.0);
    std::fs::write(&p.config, &variants[0]).unwrap();
    p.signal("HUP");
    assert!(
        poll(Duration::from_secs(5), || async {
            p.metric(RELOADED).await.unwrap_or(0.0) > reloaded
        })
        .await,
        "the last reload never happened"
    );
    let load = Load::start(
        p.listen,
        8,
        Arc::new(|n| req("GET", &format!("/slow/400?n={n}"), &[], "")),
    );
    // Every load worker has a slow request at a backend.
    let slow_seen = || {
        b1.requests()
            .into_iter()
            .chain(b2.requests())
            .filter(|s| s.path_and_query.starts_with("/slow/400?"))
            .count()
    };
    assert!(
        poll(Duration::from_secs(10), || async { slow_seen() >= 8 }).await,
        "the slow requests never reached the backends"
    );
    let before = b1.count() + b2.count();
    p.signal("TERM");
    let status = p
        .wait(Duration::from_secs(15))
        .await
        .expect("exits after SIGTERM");
    let after = load.finish().await;
    assert!(status.success(), "{status:?}");
    let mut reached = 0;
    for seen in b1.requests().into_iter().chain(b2.requests()) {
        if let Some(n) = seen.path_and_query.strip_prefix("/slow/400?n=") {
            reached += 1;
            let n: u64 = n.parse().unwrap();
            assert_eq!(
                after.status_of(n),
                Some(200),
                "request {n} reached a backend but its client got {:?}",
                after.status_of(n)
            );
        }
    }
    eprintln!(
        "SIGTERM under load: {reached} requests reached backends and were answered; clients saw {}",
        after.summary()
    );
    assert!(reached > 0 && before > 0);
    assert_eq!(after.count(1), 0, "a request hung: {}", after.summary());
}

/// A JWKS endpoint whose behaviour the test switches: serve the keys,
/// accept and never answer, answer 200 with garbage, or answer 500.
struct FlakyJwks {
    url: String,
    mode: Arc<std::sync::atomic::AtomicU8>,
    /// Fetches taken in each mode, counted as they are read.
    hits: Arc<[AtomicU64; 4]>,
    body: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

const GOOD: u8 = 0;
const HANG_FOREVER: u8 = 1;
const GARBAGE: u8 = 2;
const ERROR: u8 = 3;

impl FlakyJwks {
    async fn start(body: String) -> FlakyJwks {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", l.local_addr().unwrap());
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(GOOD));
        let body = Arc::new(Mutex::new(body));
        let hits: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        let (m, b, h) = (mode.clone(), body.clone(), hits.clone());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
                let now = m.load(Relaxed);
                h[now as usize].fetch_add(1, Relaxed);
                let (status, text) = match now {
                    HANG_FOREVER => {
                        held.push(s);
                        continue;
                    }
                    GARBAGE => (
                        "200 OK",
                        "{\"keys\": [{\"kty\": \"EC\", \"crv\": tru".to_string(),
                    ),
                    ERROR => ("500 Internal Server Error", "oops".to_string()),
                    _ => ("200 OK", b.lock().unwrap().clone()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        FlakyJwks {
            url,
            mode,
            hits,
            body,
            task,
        }
    }
}

impl Drop for FlakyJwks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The identity provider's JWKS endpoint hangs, then answers garbage, then
/// 500s, while tokens keep coming (each one new, so no verified-token
/// cache hides a lost key). Tokens signed with the keys already fetched are
/// accepted throughout; tokens naming an unknown key get 401 in bounded
/// time; when the endpoint is healthy again a rotated-in key is taken up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_or_garbage_jwks_endpoint_keeps_old_keys_and_serving() {
    use crate::support::keys::{jwks, Key};
    use jsonwebtoken::Algorithm;
    let b = Backend::start("b1").await;
    let k1 = Arc::new(Key::ec(Algorithm::ES256));
    let k2 = Key::ec(Algorithm::ES256);
    let idp = FlakyJwks::start(jwks(&[k1.jwk_with("k1")])).await;
    let issuer = format!(
        "[[jwt]]\nname = \"idp\"\nissuer = \"{}\"\naudiences = [\"app\"]\nalgorithms = [\"ES256\"]\n\
         jwks_url = \"{}\"\njwks_refresh = \"1s\"\njwks_min_refetch = \"1s\"\n",
        crate::support::jwt::ISS,
        idp.url
    );
    let gw = Gw::start(&crate::support::jwt::config(
        &b,
        crate::support::jwt::JWT_ROUTE,
        &issuer,
    ))
    .await;
    let fresh = |key: &Key, kid: &str, n: u64| {
        let mut c = crate::support::jwt::claims();
        c["jti"] = format!("{kid}-{n}").into();
        key.sign(Some(kid), &c)
    };
    let t = fresh(&k1, "k1", 0);
    assert!(
        crate::support::poll(Duration::from_secs(10), || async {
            crate::support::jwt::get_bearer(&gw, "/", &t, &[])
                .await
                .status
                == 200
        })
        .await,
        "keys never arrived"
    );
    let known = {
        let k1 = k1.clone();
        Load::start(
            gw.addr(),
            4,
            Arc::new(move |n| {
                let mut c = crate::support::jwt::claims();
                c["jti"] = format!("k1-{n}").into();
                let t = k1.sign(Some("k1"), &c);
                req("GET", "/", &[("authorization", &format!("Bearer {t}"))], "")
            }),
        )
    };
    let unknown = {
        let k1 = k1.clone();
        Load::start(
            gw.addr(),
            2,
            Arc::new(move |n| {
                let mut c = crate::support::jwt::claims();
                c["jti"] = format!("k9-{n}").into();
                let t = k1.sign(Some(&format!("unknown-{n}")), &c);
                req("GET", "/", &[("authorization", &format!("Bearer {t}"))], "")
            }),
        )
    };
    let cycles = if long() { 3 } else { 1 };
    for _ in 0..cycles {
        for mode in [HANG_FOREVER, GARBAGE, ERROR] {
            // Each trouble lasts until the gateway has fetched into it and
            // tokens with the known key kept coming meanwhile (those with
            // an unknown key may wait on the hanging fetch).
            let fetched = idp.hits[mode as usize].load(Relaxed);
            idp.mode.store(mode, Relaxed);
            assert!(
                poll(HANG * 2, || async {
                    idp.hits[mode as usize].load(Relaxed) > fetched
                })
                .await,
                "the gateway never fetched the keys in mode {mode}"
            );
            known.run_for(phase() / 3).await;
        }
        idp.mode.store(GOOD, Relaxed);
        known.run_for(phase() / 3).await;
    }
    // Rotation after the trouble: k2 is published and taken up.
    *idp.body.lock().unwrap() = jwks(&[k1.jwk_with("k1"), k2.jwk_with("k2")]);
    let start = Instant::now();
    let taken = poll(Duration::from_secs(25), || async {
        let t2 = fresh(&k2, "k2", start.elapsed().as_millis() as u64);
        crate::support::jwt::get_bearer(&gw, "/", &t2, &[])
            .await
            .status
            == 200
    })
    .await;
    let known = known.finish().await;
    let unknown = unknown.finish().await;
    eprintln!(
        "JWKS hang/garbage/500 x{cycles}: known kid {}; unknown kid {}; new key taken after {:?}",
        known.summary(),
        unknown.summary(),
        start.elapsed()
    );
    assert!(taken, "the rotated key was never taken up");
    assert!(known.total() > 50);
    assert_eq!(
        known.count(200),
        known.total(),
        "old keys lost: {}",
        known.summary()
    );
    assert_eq!(unknown.count(401), unknown.total(), "{}", unknown.summary());
    assert!(
        unknown.slowest() < Duration::from_secs(13),
        "{}",
        unknown.summary()
    );
    assert!(
        known.slowest() < Duration::from_secs(2),
        "known keys waited on the IdP: {}",
        known.summary()
    );
    gw.stop().await;
}
