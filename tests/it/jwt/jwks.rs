use super::jwks_server::JwksServer;
use super::keys::{jwks, Key};
use super::*;
use jsonwebtoken::Algorithm;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

fn issuer(url: &str, extra: &str) -> String {
    format!(
        "[[jwt]]\nname = \"idp\"\nissuer = \"{ISS}\"\naudiences = [\"app\"]\nalgorithms = [\"ES256\", \"RS256\"]\n\
         jwks_url = \"{url}\"\njwks_min_refetch = \"1s\"\n{extra}"
    )
}

async fn ready(gw: &Gw) -> Resp {
    Client::plain(gw.admin()).get("/readyz").await
}

/// The JWKS comes over HTTPS (CA from `ca_file`). When the identity
/// provider rotates to a new `kid`, the gateway picks it up by itself;
/// tokens with forged `kid`s do not make it fetch more than once per
/// `jwks_min_refetch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_jwks_is_picked_up_and_forged_kids_cause_no_refetch_storm() {
    let b = Backend::start("b1").await;
    let pki = Pki::new();
    let dir = tempdir();
    pki.write_ca(dir.path());
    let k1 = Key::ec(Algorithm::ES256);
    let k2 = Key::rsa(Algorithm::RS256);
    let server = JwksServer::https(&pki, dir.path(), &jwks(&[k1.jwk_with("k1")])).await;
    let jwt = issuer(&server.url(), "ca_file = \"ca.crt\"\n");
    let gw = Gw::start_in(dir, &config(&b, JWT_ROUTE, &jwt)).await;

    // Fetched at start, in the background.
    assert!(
        poll(Duration::from_secs(10), || async {
            ready(&gw).await.status == 200
        })
        .await
    );
    assert_eq!(server.fetches(), 1);
    let t1 = k1.sign(Some("k1"), &claims());
    assert_eq!(get_bearer(&gw, "/", &t1, &[]).await.status, 200);

    // A storm of tokens with made-up kids: four clients, each sending 25
    // one after the other (concurrent ones could share a single fetch and
    // hide a missing rate limit).
    let before = server.fetches();
    let started = Instant::now();
    let mut lanes = Vec::new();
    for lane in 0..4u64 {
        let tokens: Vec<String> = (0..25u64)
            .map(|i| {
                let kid = format!(
                    "forged-{lane}-{i}-{:x}",
                    now().wrapping_mul(0x9E37_79B9) ^ i
                );
                k1.sign(Some(&kid), &claims())
            })
            .collect();
        let c = gw.plain();
        lanes.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for t in tokens {
                let auth = format!("Bearer {t}");
                statuses.push(
                    c.get_with("/", &[("authorization", auth.as_str())])
                        .await
                        .status,
                );
            }
            statuses
        }));
    }
    for lane in lanes {
        assert!(lane.await.unwrap().iter().all(|s| *s == 401));
    }
    let elapsed = started.elapsed();
    let during = server.fetches() - before;
    assert!(
        during <= 1 + elapsed.as_secs() as usize,
        "{during} fetches in {elapsed:?} for 100 forged kids"
    );

    // Rotation: k1 is gone, k2 is new. A k2 token passes once the gateway
    // refetches, which an unknown kid asks for (at most once a second).
    server.set(200, &jwks(&[k2.jwk_with("k2")]));
    let t2 = k2.sign(Some("k2"), &claims());
    assert!(
        poll(Duration::from_secs(10), || async {
            get_bearer(&gw, "/", &t2, &[]).await.status == 200
        })
        .await,
        "the rotated key was never picked up"
    );
    assert_eq!(b.last().headers["x-auth-user"], "alice");
    // The old key's token is no longer good, cached or not.
    assert_eq!(get_bearer(&gw, "/", &t1, &[]).await.status, 401);
    let m = &gw.running().gateway.metrics;
    assert_eq!(m.jwks_fetches_ok.load(Relaxed) as usize, server.fetches());
    assert_eq!(m.jwks_fetches_failed.load(Relaxed), 0);
    gw.stop().await;
}

/// An identity provider that is down at start does not stop the gateway:
/// its tokens get 401 and `/readyz` says why until the keys arrive.
#[tokio::test]
async fn a_failed_first_fetch_does_not_stop_start_up_and_readyz_reports_it() {
    let b = Backend::start("b1").await;
    let k = Key::ed25519();
    // Plain http is allowed on loopback.
    let server = JwksServer::http("").await;
    server.set(503, "down for maintenance");
    let jwt = issuer(&server.url(), "").replace("\"ES256\", \"RS256\"", "\"EdDSA\"");
    let routes = format!(
        "{JWT_ROUTE}[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"app\"\nauth = \"none\"\n"
    )
    .replace("path_prefix = \"/\"", "path_prefix = \"/api\"");
    let gw = Gw::start(&config(&b, &routes, &jwt)).await;

    assert!(poll(Duration::from_secs(10), || async { server.fetches() >= 1 }).await);
    let r = ready(&gw).await;
    assert_eq!(r.status, 503);
    let reasons = r.json()["reasons"].to_string();
    assert!(reasons.contains("jwt issuer `idp`"), "{reasons}");
    let t = k.sign(Some("k1"), &claims());
    let r = get_bearer(&gw, "/api", &t, &[]).await;
    assert_invalid_token(&r, &t, "no keys yet");
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("issuer keys unavailable"));
    assert!(auth_count(&gw, AuthResult::Error) >= 1);
    // Routes without JWT are served meanwhile.
    assert_eq!(gw.plain().get("/open").await.status, 200);

    server.set(200, &jwks(&[k.jwk_with("k1")]));
    assert!(
        poll(Duration::from_secs(10), || async {
            get_bearer(&gw, "/api", &t, &[]).await.status == 200
        })
        .await
    );
    assert_eq!(ready(&gw).await.status, 200);
    let m = &gw.running().gateway.metrics;
    assert!(m.jwks_fetches_failed.load(Relaxed) >= 1);
    assert!(m.jwks_fetches_ok.load(Relaxed) >= 1);
    gw.stop().await;
}

/// A reload keeps fetched keys and verified tokens of an unchanged issuer;
/// a changed issuer with the same URL keeps the keys, not the tokens.
#[tokio::test]
async fn reload_keeps_keys_and_cached_tokens_where_unchanged() {
    let b = Backend::start("b1").await;
    let k = Key::ec(Algorithm::ES256);
    let server = JwksServer::http(&jwks(&[k.jwk_with("k1")])).await;
    let text = config(&b, JWT_ROUTE, &issuer(&server.url(), ""));
    let gw = Gw::start(&text).await;
    let t = k.sign(Some("k1"), &claims());
    assert!(
        poll(Duration::from_secs(10), || async {
            get_bearer(&gw, "/", &t, &[]).await.status == 200
        })
        .await
    );
    let fetches = server.fetches();
    let m = &gw.running().gateway.metrics;
    let hits = || m.jwt_cache_hits.load(Relaxed);

    gw.running()
        .gateway
        .reload()
        .await
        .expect("same config reloads");
    let h0 = hits();
    assert_eq!(get_bearer(&gw, "/", &t, &[]).await.status, 200);
    assert_eq!(hits(), h0 + 1, "unchanged issuer: still a cache hit");

    std::fs::write(
        &gw.config_path,
        text.replace("jwks_min_refetch", "leeway = \"5s\"\njwks_min_refetch"),
    )
    .unwrap();
    gw.running()
        .gateway
        .reload()
        .await
        .expect("changed config reloads");
    let h1 = hits();
    assert_eq!(get_bearer(&gw, "/", &t, &[]).await.status, 200);
    assert_eq!(hits(), h1, "changed issuer: verified again");
    assert_eq!(server.fetches(), fetches, "the keys were carried over");
    gw.stop().await;
}

/// A provider rotating its key right after the gateway's start-up fetch:
/// the first token with the new `kid` triggers a refetch and passes. The
/// `jwks_min_refetch` window counts refetches asked for by unknown kids,
/// not scheduled loads (SPEC 2).
#[tokio::test]
async fn a_rotation_right_after_the_scheduled_fetch_is_picked_up_by_the_first_new_token() {
    let b = Backend::start("b1").await;
    let k1 = Key::ec(Algorithm::ES256);
    let k2 = Key::ec(Algorithm::ES256);
    let server = JwksServer::http(&jwks(&[k1.jwk_with("k1")])).await;
    let jwt = format!(
        "[[jwt]]\nname = \"idp\"\nissuer = \"{ISS}\"\naudiences = [\"app\"]\nalgorithms = [\"ES256\"]\n\
         jwks_url = \"{}\"\njwks_min_refetch = \"30s\"\n",
        server.url()
    );
    let gw = Gw::start(&config(&b, JWT_ROUTE, &jwt)).await;
    assert!(
        poll(Duration::from_secs(10), || async {
            ready(&gw).await.status == 200
        })
        .await
    );
    assert_eq!(server.fetches(), 1);
    server.set(200, &jwks(&[k1.jwk_with("k1"), k2.jwk_with("k2")]));
    let t2 = k2.sign(Some("k2"), &claims());
    let r = get_bearer(&gw, "/", &t2, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.headers.get("www-authenticate"));
    assert_eq!(server.fetches(), 2);
    // That refetch now counts: a forged kid right after it fetches nothing.
    let forged = k1.sign(Some("forged"), &claims());
    assert_eq!(get_bearer(&gw, "/", &forged, &[]).await.status, 401);
    assert_eq!(server.fetches(), 2);
    gw.stop().await;
}

/// `jwks_file` is loaded again while the gateway runs (SPEC 16), as a
/// Kubernetes-mounted key set changes on disk: a token naming a `kid` the
/// loaded set lacks makes the gateway read the file again at once, so a
/// key added to it verifies on its first use.
#[tokio::test]
async fn a_key_added_to_a_jwks_file_verifies_on_its_first_token() {
    let b = Backend::start("b1").await;
    let k1 = Key::ec(Algorithm::ES256);
    let k2 = Key::ec(Algorithm::ES256);
    let dir = tempdir();
    let file = dir.path().join("keys.json");
    std::fs::write(&file, jwks(&[k1.jwk_with("k1")])).unwrap();
    // No jwks_refresh: only an unknown kid can bring the new key in time.
    let jwt = format!(
        "[[jwt]]\nname = \"idp\"\nissuer = \"{ISS}\"\naudiences = [\"app\"]\nalgorithms = [\"ES256\"]\n\
         jwks_file = \"keys.json\"\n"
    );
    let gw = Gw::start_in(dir, &config(&b, JWT_ROUTE, &jwt)).await;
    // The keys read by the config check serve from the start.
    assert_eq!(ready(&gw).await.status, 200);
    let t1 = k1.sign(Some("k1"), &claims());
    assert_eq!(get_bearer(&gw, "/", &t1, &[]).await.status, 200);

    std::fs::write(&file, jwks(&[k1.jwk_with("k1"), k2.jwk_with("k2")])).unwrap();
    let t2 = k2.sign(Some("k2"), &claims());
    let r = get_bearer(&gw, "/", &t2, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.headers.get("www-authenticate"));
    assert_eq!(b.last().headers["x-auth-user"], "alice");
    let m = &gw.running().gateway.metrics;
    assert_eq!(m.jwks_fetches_ok.load(Relaxed), 1, "one re-read");
    // That re-read counts against jwks_min_refetch (30s): forged kids
    // right after it read nothing.
    for i in 0..5 {
        let forged = k1.sign(Some(&format!("forged-{i}")), &claims());
        assert_eq!(get_bearer(&gw, "/", &forged, &[]).await.status, 401);
    }
    assert_eq!(m.jwks_fetches_ok.load(Relaxed), 1);
    gw.stop().await;
}

/// With `jwks_refresh`, a key removed from the file stops verifying within
/// the interval, tokens already verified included; a file that turns
/// invalid (a half-written mount, garbage) keeps the keys loaded before.
#[tokio::test]
async fn a_jwks_file_is_re_read_every_jwks_refresh_and_a_broken_one_keeps_the_old_keys() {
    let b = Backend::start("b1").await;
    let k1 = Key::ec(Algorithm::ES256);
    let k2 = Key::ed25519();
    let dir = tempdir();
    let file = dir.path().join("keys.json");
    std::fs::write(&file, jwks(&[k1.jwk_with("k1"), k2.jwk_with("k2")])).unwrap();
    let jwt = format!(
        "[[jwt]]\nname = \"idp\"\nissuer = \"{ISS}\"\naudiences = [\"app\"]\nalgorithms = [\"ES256\", \"EdDSA\"]\n\
         jwks_file = \"keys.json\"\njwks_refresh = \"1s\"\njwks_min_refetch = \"1h\"\n"
    );
    let gw = Gw::start_in(dir, &config(&b, JWT_ROUTE, &jwt)).await;
    let t1 = k1.sign(Some("k1"), &claims());
    let t2 = k2.sign(Some("k2"), &claims());
    assert_eq!(get_bearer(&gw, "/", &t1, &[]).await.status, 200);
    assert_eq!(get_bearer(&gw, "/", &t2, &[]).await.status, 200);
    // Use up the one re-read an unknown kid may ask for in the hour, so
    // only the schedule can notice what follows.
    let forged = k1.sign(Some("forged"), &claims());
    assert_eq!(get_bearer(&gw, "/", &forged, &[]).await.status, 401);

    std::fs::write(&file, jwks(&[k2.jwk_with("k2")])).unwrap();
    assert!(
        poll(Duration::from_secs(5), || async {
            get_bearer(&gw, "/", &t1, &[]).await.status == 401
        })
        .await,
        "the removed key still verifies"
    );
    assert_eq!(get_bearer(&gw, "/", &t2, &[]).await.status, 200);

    let m = &gw.running().gateway.metrics;
    let failed = m.jwks_fetches_failed.load(Relaxed);
    std::fs::write(&file, "{\"keys\": [").unwrap();
    assert!(
        poll(Duration::from_secs(5), || async {
            m.jwks_fetches_failed.load(Relaxed) > failed
        })
        .await,
        "the broken file was never re-read"
    );
    let t2_again = k2.sign(Some("k2"), &with(claims(), serde_json::json!({"jti": "x"})));
    assert_eq!(get_bearer(&gw, "/", &t2_again, &[]).await.status, 200);
    assert_eq!(ready(&gw).await.status, 200);
    gw.stop().await;
}

/// A `jwks_file` that cannot be used any more is logged, naming the file,
/// and its keys stay in use (the real binary, its log as operators read
/// it).
#[tokio::test]
async fn a_broken_jwks_file_is_logged_and_its_old_keys_kept() {
    let b = Backend::start("b1").await;
    let k = Key::ec(Algorithm::ES256);
    let dir = tempdir();
    let file = dir.path().join("keys.json");
    std::fs::write(&file, jwks(&[k.jwk_with("k1")])).unwrap();
    let jwt = format!(
        "[[jwt]]\nname = \"idp\"\nissuer = \"{ISS}\"\naudiences = [\"app\"]\nalgorithms = [\"ES256\"]\n\
         jwks_file = \"{}\"\njwks_refresh = \"1s\"\n",
        file.display()
    );
    let cfg = config(&b, JWT_ROUTE, &jwt).replace("[log]\n", "[log]\nformat = \"json\"\n");
    let gw = crate::support::process::GwProcess::spawn(&cfg, None).await;
    let c = Client::plain(gw.listen);
    let t = k.sign(Some("k1"), &claims());
    let auth = format!("Bearer {t}");
    assert_eq!(
        c.get_with("/", &[("authorization", &auth)]).await.status,
        200
    );

    std::fs::write(&file, "not a key set").unwrap();
    let failed = |log: &str| {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["message"] == "JWKS fetch failed; keeping the current keys")
    };
    assert!(
        poll(Duration::from_secs(5), || async {
            failed(&gw.log()).is_some()
        })
        .await,
        "{}",
        gw.log()
    );
    let line = failed(&gw.log()).unwrap();
    assert_eq!(line["issuer"], "idp", "{line}");
    assert_eq!(line["file"], file.display().to_string(), "{line}");
    assert!(
        line["error"].as_str().unwrap().contains("not a JWKS"),
        "{line}"
    );
    let t2 = k.sign(Some("k1"), &with(claims(), serde_json::json!({"jti": "2"})));
    let auth = format!("Bearer {t2}");
    assert_eq!(
        c.get_with("/", &[("authorization", &auth)]).await.status,
        200
    );
}
