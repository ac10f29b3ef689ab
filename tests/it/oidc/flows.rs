//! The flow end to end: start, state cookie, callback, session, logout;
//! state checks before any token request; replicas; discovery outages.

use super::op::{Op, SeenAuth};
use super::*;
use crate::support::redis::RedisServer;

#[tokio::test]
async fn sign_in_gives_a_session_and_the_backend_sees_the_id_token_identity() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    let mut a = agent(&gw);

    // A browser without a session goes to the login page, which offers
    // the provider (no local form: there is no [login]).
    let r = a.get(&url("/app/page?x=1")).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/.gatehouse/login?rd=%2Fapp%2Fpage%3Fx%3D1")
    );
    let page = a
        .get(&url("/.gatehouse/login?rd=%2Fapp%2Fpage%3Fx%3D1"))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Sign in with corp"), "{}", page.text());
    assert!(page
        .text()
        .contains("href=\"/.gatehouse/start/corp?rd=%2Fapp%2Fpage%3Fx%3D1\""));
    assert!(!page.text().contains("name=\"password\""));

    // Start: 302 to the provider, state in a short-lived cookie.
    let start = url("/.gatehouse/start/corp?rd=%2Fapp%2Fpage%3Fx%3D1");
    let r = a.get(&start).await;
    assert_eq!(r.status, 302);
    let authorize = Agent::location(&start, &r);
    assert!(
        authorize.starts_with(&format!("{}/authorize?", op.issuer())),
        "{authorize}"
    );
    let set = r.header("set-cookie").unwrap();
    assert!(set.starts_with("gatehouse_oidc="), "{set}");
    for attr in [
        "Max-Age=600",
        "Path=/.gatehouse",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("Secure"), "cookie_secure = false: {set}");
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // The provider saw a code flow with PKCE S256, state and nonce.
    let r = a.get(&authorize).await;
    assert_eq!(r.status, 302);
    let q = op.lock().authorize_queries[0].clone();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], op::CLIENT_ID);
    assert_eq!(q["redirect_uri"], "http://gw.test/.gatehouse/callback");
    assert_eq!(q["scope"], "openid email profile groups");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"].len(), 43);
    assert_eq!(q["nonce"].len(), 43);
    assert_ne!(q["state"], q["nonce"]);

    // Callback: 303 to rd with a session cookie; the state cookie goes.
    let cb = Agent::location(&authorize, &r);
    let r = a.get(&cb).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/app/page?x=1"));
    let cookies: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("gatehouse_session=")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("gatehouse_oidc=;") && c.contains("Max-Age=0")),
        "{cookies:?}"
    );
    assert!(a.cookie(GW, "gatehouse_oidc").is_none());
    assert_eq!(op.lock().token_auth, vec![SeenAuth::Basic]);
    assert_eq!(op.lock().userinfo_calls, 0, "the ID token had every claim");
    assert_eq!(oidc_count(&gw, AuthResult::Ok), 1);

    // The backend sees who signed in, from the ID token.
    let r = a.get(&url("/app/page?x=1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = b.last();
    let h = |n: &str| seen.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("x-auth-user").as_deref(), Some("alice-0001"));
    assert_eq!(h("x-auth-email").as_deref(), Some("alice@example.com"));
    assert_eq!(h("x-auth-groups").as_deref(), Some("staff,dev"));
    assert_eq!(h("x-auth-method").as_deref(), Some("session"));
    assert!(h("cookie").is_none_or(|c| !c.contains("gatehouse_session")));

    let info = a.get(&url("/.gatehouse/userinfo")).await;
    assert_eq!(info.status, 200);
    let j = info.json();
    assert_eq!(j["sub"], "alice-0001");
    assert_eq!(j["method"], "session");
    assert_eq!(j["name"], "Alice");
}

#[tokio::test]
async fn a_wrong_or_missing_state_stops_before_the_token_endpoint() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;

    // The state returned does not match the cookie's.
    let mut a = agent(&gw);
    let cb = to_callback(&mut a, "/app").await;
    let q = op.lock().authorize_queries[0].clone();
    let forged = cb.replace(
        &format!("state={}", q["state"]),
        "state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    assert_ne!(forged, cb);
    assert_refused(&a.get(&forged).await, "wrong state");
    // The cookie is gone with that answer: the right state fails now too.
    assert_refused(&a.get(&cb).await, "state cookie already cleared");

    // No state parameter at all.
    let mut a = agent(&gw);
    let cb = to_callback(&mut a, "/app").await;
    let no_state = cb.split("&state=").next().unwrap().to_string();
    assert_refused(&a.get(&no_state).await, "no state");

    // A callback from a browser that never started a flow.
    let mut a = agent(&gw);
    let cb = to_callback(&mut a, "/app").await;
    a.forget_cookies(GW);
    assert_refused(&a.get(&cb).await, "no cookie");

    // A cookie tampered with (rd changed) or signed with another secret.
    let mut a = agent(&gw);
    let cb = to_callback(&mut a, "/app").await;
    let v = a.cookie(GW, "gatehouse_oidc").unwrap();
    let (payload, tag) = v.split_once('.').unwrap();
    let mut flipped = payload.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
    a.set_cookie(GW, "gatehouse_oidc", &tampered, "/.gatehouse");
    assert_refused(&a.get(&cb).await, "tampered cookie");

    assert_eq!(op.token_calls(), 0, "no token request without a good state");
    assert_eq!(oidc_count(&gw, AuthResult::Missing), 2);
    assert_eq!(oidc_count(&gw, AuthResult::Invalid), 3);
    assert_eq!(oidc_count(&gw, AuthResult::Ok), 0);
}

#[tokio::test]
async fn a_replayed_state_and_cookie_fail_even_when_the_cookie_is_kept() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    let mut a = agent(&gw);
    let cb = to_callback(&mut a, "/app").await;
    let cookie = a.cookie(GW, "gatehouse_oidc").unwrap();
    assert_eq!(a.get(&cb).await.status, 303);
    assert_eq!(op.token_calls(), 1);

    // An attacker who kept a copy of the cookie and the callback URL.
    let mut thief = agent(&gw);
    thief.set_cookie(GW, "gatehouse_oidc", &cookie, "/.gatehouse");
    assert_refused(&thief.get(&cb).await, "replay");
    assert_eq!(op.token_calls(), 1, "the replay never reached the provider");
    assert_eq!(oidc_count(&gw, AuthResult::Invalid), 1);
}

/// Redirects off the gateway's hosts are refused as for the login form.
#[tokio::test]
async fn rd_is_kept_through_the_provider_and_unsafe_values_fall_back_to_root() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    for (rd, expect) in [
        ("/app/a?b=c&d=e", "/app/a?b=c&d=e"),
        ("//evil.com/x", "/"),
        ("https://evil.com/", "/"),
        ("javascript:alert(1)", "/"),
    ] {
        let mut a = agent(&gw);
        let r = sign_in(&mut a, rd).await;
        assert_eq!(r.status, 303, "{rd}");
        assert_eq!(r.header("location"), Some(expect), "{rd}");
    }
}

#[tokio::test]
async fn unknown_providers_are_404_and_an_unreachable_one_503_until_discovery_works() {
    let op = Op::start().await;
    op.lock().discovery_status = 503;
    let b = Backend::start("app").await;
    let gw = Gw::start(&config(&op, &b, "", "", "")).await;
    let admin = Client::plain(gw.admin());
    let mut a = agent(&gw);

    assert_eq!(a.get(&url("/.gatehouse/start/nope")).await.status, 404);
    assert_eq!(a.get(&url("/.gatehouse/start/")).await.status, 404);
    assert_eq!(a.get(&url("/.gatehouse/start/corp")).await.status, 503);
    let ready = admin.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.text().contains("oidc provider `corp`"),
        "{}",
        ready.text()
    );
    // The login page still renders (the button works once it is back).
    assert_eq!(a.get(&url("/.gatehouse/login")).await.status, 200);

    op.lock().discovery_status = 200;
    wait_ready(&gw).await;
    let r = sign_in(&mut a, "/app").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(op.lock().discovery_calls >= 2);
}

/// A sign-in begun on one replica finishes on another with the same
/// server secret: the state cookie is all it needs.
#[tokio::test]
async fn a_flow_started_on_one_gateway_finishes_on_another() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw_a = start(&op, &b, "", "").await;
    let gw_b = start(&op, &b, "", "").await;
    let mut a = agent(&gw_a);
    let cb = to_callback(&mut a, "/app/x").await;
    a.map(GW, gw_b.addr());
    let r = a.get(&cb).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(oidc_count(&gw_b, AuthResult::Ok), 1);
    assert_eq!(oidc_count(&gw_a, AuthResult::Ok), 0);
    let r = a.get(&url("/app/x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(b.last().headers.get("x-auth-user").unwrap(), "alice-0001");
}

/// With the Redis store the session works on every replica, and a replay
/// is refused by a replica that never saw the first use.
#[tokio::test]
async fn with_redis_sessions_replicas_share_the_session_and_the_used_states() {
    let Some(redis) = RedisServer::start("oidc_redis_replicas") else {
        return;
    };
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let store = format!(
        "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"oidc-{}:\"\n",
        redis.url(),
        gatehouse::crypto::hex(&gatehouse::crypto::random_bytes::<4>())
    );
    let gw_a = start(&op, &b, "", &store).await;
    let gw_b = start(&op, &b, "", &store).await;
    let mut a = agent(&gw_a);
    let cb = to_callback(&mut a, "/app/x").await;
    let cookie = a.cookie(GW, "gatehouse_oidc").unwrap();
    a.map(GW, gw_b.addr());
    assert_eq!(a.get(&cb).await.status, 303);
    a.map(GW, gw_a.addr());
    assert_eq!(a.get(&url("/app/x")).await.status, 200, "session on A");

    let mut thief = agent(&gw_a);
    thief.set_cookie(GW, "gatehouse_oidc", &cookie, "/.gatehouse");
    assert_refused(&thief.get(&cb).await, "replay on the other replica");
    assert_eq!(op.token_calls(), 1);
}

#[tokio::test]
async fn logout_of_an_oidc_session_goes_to_the_providers_end_session_endpoint() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    let mut a = agent(&gw);
    assert_eq!(sign_in(&mut a, "/app").await.status, 303);
    let id_token = op.lock().issued[0].clone();

    let r = a
        .send(
            "POST",
            &url("/.gatehouse/logout"),
            &[("origin", "http://gw.test")],
            "",
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let loc = r.header("location").unwrap().to_string();
    let (base, query) = loc.split_once('?').unwrap();
    assert_eq!(base, format!("{}/logout", op.issuer()));
    let q = gatehouse::login::parse_form(query.as_bytes());
    assert_eq!(q["id_token_hint"], id_token);
    assert_eq!(q["post_logout_redirect_uri"], "http://gw.test/");
    // The session is gone here before the provider is even asked.
    assert!(a.cookie(GW, "gatehouse_session").is_none());
    let r = a.get(&url("/app")).await;
    assert_eq!(r.status, 302);
    assert!(r
        .header("location")
        .unwrap()
        .starts_with("/.gatehouse/login"));
    // The provider's page, then back.
    let r = a.get(&loc).await;
    assert_eq!(r.status, 200);
    assert_eq!(op.lock().logouts.len(), 1);
}

#[tokio::test]
async fn logout_without_an_end_session_endpoint_goes_home() {
    let op = Op::start().await;
    op.lock().end_session = false;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    let mut a = agent(&gw);
    assert_eq!(sign_in(&mut a, "/app").await.status, 303);
    let r = a
        .send(
            "POST",
            &url("/.gatehouse/logout"),
            &[("origin", "http://gw.test")],
            "",
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"));
    assert_eq!(a.get(&url("/app")).await.status, 302);
}

#[tokio::test]
async fn client_secret_post_is_used_when_it_is_all_the_provider_takes() {
    let op = Op::start().await;
    op.lock().auth_methods = Some(vec!["client_secret_post".into()]);
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    let mut a = agent(&gw);
    assert_eq!(sign_in(&mut a, "/app").await.status, 303);
    assert_eq!(op.lock().token_auth, vec![SeenAuth::Post]);
}

#[tokio::test]
async fn userinfo_fills_claims_the_id_token_lacks() {
    let op = Op::start().await;
    op.set_overrides(serde_json::json!({"groups": null, "name": null}));
    op.lock().userinfo_claims = serde_json::json!({
        "groups": ["from-userinfo"], "name": "Alice U", "email": "other@example.com"
    });
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "claims_map = { tenant = \"org.id\" }\n", "").await;
    op.lock().userinfo_claims["org"] = serde_json::json!({"id": "t-42"});
    let mut a = agent(&gw);
    assert_eq!(sign_in(&mut a, "/app").await.status, 303);
    assert_eq!(op.lock().userinfo_calls, 1);
    assert_eq!(a.get(&url("/app")).await.status, 200);
    let seen = b.last();
    assert_eq!(seen.headers["x-auth-groups"], "from-userinfo");
    // The ID token's own claims win over userinfo's.
    assert_eq!(seen.headers["x-auth-email"], "alice@example.com");
    let info = a.get(&url("/.gatehouse/userinfo")).await.json();
    assert_eq!(info["name"], "Alice U");
}

#[tokio::test]
async fn a_redirect_route_with_one_provider_and_no_local_users_starts_the_sign_in_at_once() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let routes = "[[routes]]\nname = \"direct\"\npath_prefix = \"/direct\"\nupstream = \"app\"\non_unauthenticated = \"redirect\"\n";
    let gw = Gw::start(&config(&op, &b, "", "", routes)).await;
    wait_ready(&gw).await;
    let r = gw.plain().get("/direct/x?y=1").await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/.gatehouse/start/corp?rd=%2Fdirect%2Fx%3Fy%3D1")
    );
    // "auto" routes still show the login page to browsers.
    let r = gw
        .plain()
        .get_with("/app/x", &[("accept", "text/html")])
        .await;
    assert_eq!(
        r.header("location"),
        Some("/.gatehouse/login?rd=%2Fapp%2Fx")
    );
}

#[tokio::test]
async fn the_login_page_offers_providers_beside_the_local_form() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let dir = tempdir();
    std::fs::write(dir.path().join("users.toml"), "").unwrap();
    let gw = Gw::start_in(
        dir,
        &config(&op, &b, "", "", "[login]\nusers_file = \"users.toml\"\n"),
    )
    .await;
    let page = gw.plain().get("/.gatehouse/login?rd=%2Fapp").await;
    assert_eq!(page.status, 200);
    let t = page.text();
    assert!(t.contains("name=\"password\""), "{t}");
    assert!(t.contains("Sign in with corp"), "{t}");
    assert!(t.contains("/.gatehouse/start/corp?rd=%2Fapp"), "{t}");
}

/// A reload that changes the provider's entry keeps its discovery
/// document and keys: sign-ins go on even while the provider's discovery
/// endpoint is down, and a sign-in begun before the reload finishes.
#[tokio::test]
async fn a_reload_changing_the_provider_keeps_sign_ins_working() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    let mut before = agent(&gw);
    let cb = to_callback(&mut before, "/app").await;

    op.lock().discovery_status = 503;
    let text = std::fs::read_to_string(&gw.config_path)
        .unwrap()
        .replace("\"groups\"]", "\"groups\", \"offline_access\"]");
    std::fs::write(&gw.config_path, text).unwrap();
    gw.running().gateway.reload().await.expect("reloads");

    let mut a = agent(&gw);
    let r = a.get(&url("/.gatehouse/start/corp")).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert!(
        r.header("location").unwrap().contains("offline_access"),
        "the new scopes apply"
    );
    assert_eq!(Client::plain(gw.admin()).get("/readyz").await.status, 200);
    let r = before.get(&cb).await;
    assert_eq!(r.status, 303, "{}", r.text());
}

/// The `iss` identity field of a single sign-on session names its provider
/// (SPEC 16).
#[tokio::test]
async fn an_oidc_session_names_its_providers_issuer_in_the_iss_field() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let rest = "[identity]\nheaders = { \"X-Auth-User\" = \"sub\", \"X-Auth-Issuer\" = \"iss\" }\n";
    let gw = Gw::start(&config(&op, &b, "", "", rest)).await;
    wait_ready(&gw).await;
    let mut a = agent(&gw);
    assert_eq!(sign_in(&mut a, "/app").await.status, 303);
    assert_eq!(a.get(&url("/app/x")).await.status, 200);
    assert_eq!(
        b.last().headers["x-auth-issuer"],
        format!("{}/", op.issuer()).as_str()
    );
    gw.stop().await;
}
