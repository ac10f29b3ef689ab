//! Sessions and local login, each behaviour run against both stores: the
//! in-memory default and a real redis-server started by the test.

use crate::support::client::req;
use crate::support::redis::RedisServer;
use crate::support::*;
use std::time::Duration;

pub use crate::support::sessions::*;

async fn get_app(c: &Client, cookie: &str) -> u16 {
    c.get_with("/app/x", &[("cookie", cookie)]).await.status
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        // The memory store runs on the gateway's clock only: paused time
        // (support::ManualClock), so its expiry tests advance the clock
        // instead of waiting.
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    let _clock = crate::support::ManualClock::hold();
                    super::$name(super::Store::Memory).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(r) = crate::support::redis::RedisServer::start(stringify!($name)) else { return };
                    super::$name(super::Store::Redis(r)).await;
                }
            )*
        }
    };
}

both_stores!(
    login_gives_a_session_the_backend_sees_the_identity_and_logout_ends_it,
    form_login_redirects_to_rd_and_bad_rd_falls_back_to_root,
    idle_timeout_slides_and_absolute_timeout_caps,
    login_always_creates_a_fresh_id,
    forged_or_unknown_cookies_are_ignored_and_expired,
    lockout_after_max_failures_then_recovery,
    unsafe_methods_with_a_session_need_same_origin,
    admin_lists_and_revokes_sessions,
    userinfo_describes_the_caller,
    authorization_by_group_gives_403,
    a_login_from_another_origin_is_refused_before_any_password_check,
    a_second_session_cookie_planted_beside_ours_is_not_a_logout,
    logout_ends_every_session_cookie_not_only_the_first,
    behind_a_trusted_tls_proxy_https_origins_are_same_origin,
);

async fn login_gives_a_session_the_backend_sees_the_identity_and_logout_ends_it(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    // Not logged in: a browser goes to the login page, an API client gets 401.
    let r = c.get_with("/app/x", &[("accept", "text/html")]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/.gatehouse/login?rd=%2Fapp%2Fx")
    );
    assert_eq!(c.get("/app/x").await.status, 401);
    let page = c.get("/.gatehouse/login?rd=%2Fapp%2Fx").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("name=\"password\"") && page.text().contains("value=\"/app/x\""));

    let body = serde_json::json!({"username": "alice", "password": ALICE_PW}).to_string();
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/login",
            &[("content-type", "application/json")],
            &body,
        ))
        .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["user"]["sub"], "alice");
    assert_eq!(j["user"]["email"], "alice@example.com");
    assert!(j["expires_at"].as_u64().unwrap() > 1_700_000_000);
    let set = r.header("set-cookie").unwrap();
    assert!(set.starts_with("gatehouse_session="), "{set}");
    for attr in ["HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    assert!(!set.contains("Secure"), "cookie_secure = false");
    let cookie = set.split(';').next().unwrap().to_string();

    let r = c
        .get_with(
            "/app/x",
            &[
                ("cookie", &format!("{cookie}; other=1")),
                ("x-auth-user", "mallory"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = b.last();
    assert_eq!(seen.headers["x-auth-user"], "alice");
    assert_eq!(seen.headers["x-auth-email"], "alice@example.com");
    assert_eq!(seen.headers["x-auth-groups"], "staff,ops");
    assert_eq!(seen.headers["x-auth-method"], "session");
    assert_eq!(
        seen.headers["cookie"], "other=1",
        "the session cookie never reaches the backend"
    );

    let r = c
        .send(req(
            "POST",
            "/.gatehouse/logout",
            &[("cookie", &cookie), ("origin", "http://localhost")],
            "",
        ))
        .await;
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(get_app(&c, &cookie).await, 401);

    // Wrong password and disabled users get the same generic 401.
    assert_eq!(login(&c, "alice", "nope").await, Err(401));
    assert_eq!(login(&c, "bob", ALICE_PW).await, Err(401));
    assert_eq!(login(&c, "nobody", ALICE_PW).await, Err(401));
    gw.stop().await;
}

async fn form_login_redirects_to_rd_and_bad_rd_falls_back_to_root(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    let form = |rd: &str| {
        format!(
            "username=alice&password={}&rd={}",
            ALICE_PW.replace(' ', "+"),
            gatehouse::auth::url_encode(rd)
        )
    };
    let cases = [
        ("/app/x?y=1", "/app/x?y=1"),
        ("//evil.com/x", "/"),
        ("/\\evil.com", "/"),
        ("https://evil.com/", "/"),
        // This login arrives over plain HTTP, so http:// is allowed (SPEC 11).
        ("http://localhost/app", "http://localhost/app"),
        ("http://evil.com/app", "/"),
        ("javascript:alert(1)", "/"),
        ("https://localhost/app/y", "https://localhost/app/y"),
        ("https://user@evil.com@localhost/", "/"),
    ];
    for (rd, want) in cases {
        let r = c
            .send(req(
                "POST",
                "/.gatehouse/login",
                &[("content-type", "application/x-www-form-urlencoded")],
                &form(rd),
            ))
            .await;
        assert_eq!(r.status, 303, "{rd}");
        assert_eq!(r.header("location"), Some(want), "rd = {rd}");
        assert!(r.header("set-cookie").is_some());
    }
    // A failed form login shows the form again with a generic message.
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            "username=alice&password=x&rd=%2Fapp",
        ))
        .await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("Wrong username or password"));
    assert!(r.header("set-cookie").is_none());
    gw.stop().await;
}

async fn idle_timeout_slides_and_absolute_timeout_caps(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(
        &store,
        &b,
        "idle_timeout = \"1500ms\"\nabsolute_timeout = \"4s\"\ncache_ttl = \"100ms\"\n",
        "",
    )
    .await;
    let c = gw.plain();
    let busy = login(&c, "alice", ALICE_PW).await.unwrap();
    // Times are ms after the busy session's login. Activity every 500 ms
    // keeps it alive past the 1.5 s idle timeout; a second session used
    // once at 2.5 s and then left idle for 1.8 s ends; the busy one ends at
    // its 4 s cap although it was used 800 ms before (its idle deadline
    // would be 5 s).
    let plan = [
        (0, "busy", 200),
        (500, "busy", 200),
        (1000, "busy", 200),
        (1500, "busy", 200),
        (2000, "busy", 200),
        (2500, "busy", 200),
        (2500, "new idle", 200),
        (3000, "busy", 200),
        (3500, "busy", 200),
        (4300, "idle", 401),
        (4300, "busy", 401),
    ];
    let start = tokio::time::Instant::now();
    let mut idle = String::new();
    for (at, who, want) in plan {
        pass_until(start + Duration::from_millis(at)).await;
        if who == "new idle" {
            idle = login(&c, "alice", ALICE_PW).await.unwrap();
        }
        let cookie = if who == "busy" { &busy } else { &idle };
        assert_eq!(get_app(&c, cookie).await, want, "{who} at {at} ms");
    }
    gw.stop().await;
}

async fn login_always_creates_a_fresh_id(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    // An attacker plants a cookie value; logging in must not adopt it.
    let planted = "gatehouse_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let body = serde_json::json!({"username": "alice", "password": ALICE_PW}).to_string();
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/login",
            &[("content-type", "application/json"), ("cookie", planted)],
            &body,
        ))
        .await;
    assert_eq!(r.status, 200);
    let fresh = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(fresh, planted);
    assert_eq!(get_app(&c, planted).await, 401);
    assert_eq!(get_app(&c, &fresh).await, 200);
    let again = login(&c, "alice", ALICE_PW).await.unwrap();
    assert_ne!(again, fresh, "every login gets a new id");
    gw.stop().await;
}

async fn forged_or_unknown_cookies_are_ignored_and_expired(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    for forged in [
        "gatehouse_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "gatehouse_session=not-even-the-right-shape",
    ] {
        let r = c.get_with("/app/x", &[("cookie", forged)]).await;
        assert_eq!(r.status, 401);
        assert!(r
            .header("set-cookie")
            .is_some_and(|s| s.starts_with("gatehouse_session=;") && s.contains("Max-Age=0")));
        // On an open route it is simply not looked at.
        assert_eq!(c.get_with("/open", &[("cookie", forged)]).await.status, 200);
    }
    assert_eq!(
        b.requests()
            .iter()
            .filter(|s| s.path_and_query == "/app/x")
            .count(),
        0
    );
    gw.stop().await;
}

async fn lockout_after_max_failures_then_recovery(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(
        &store,
        &b,
        "",
        "max_failures = 3\nfailure_window = \"1m\"\nlockout = \"1500ms\"\n",
    )
    .await;
    let c = gw.plain();
    for _ in 0..3 {
        assert_eq!(login(&c, "alice", "wrong").await, Err(401));
    }
    // Locked: even the right password gets 429 with Retry-After.
    let body = serde_json::json!({"username": "alice", "password": ALICE_PW}).to_string();
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/login",
            &[("content-type", "application/json")],
            &body,
        ))
        .await;
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    pass(Duration::from_millis(1700)).await;
    assert!(login(&c, "alice", ALICE_PW).await.is_ok());
    let m = Client::plain(gw.admin()).get("/metrics").await.text();
    assert!(
        m.contains("gatehouse_auth_total{method=\"login\",result=\"locked\"} 1"),
        "{m}"
    );
    gw.stop().await;
}

async fn unsafe_methods_with_a_session_need_same_origin(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let post = |h: Vec<(&'static str, String)>| {
        let c = c.clone();
        let cookie = cookie.clone();
        async move {
            let mut headers: Vec<(&str, &str)> = vec![("cookie", cookie.as_str())];
            for (k, v) in &h {
                headers.push((k, v.as_str()));
            }
            c.send(req("POST", "/app/form", &headers, "x=1"))
                .await
                .status
        }
    };
    assert_eq!(post(vec![]).await, 403, "no Origin nor Referer");
    assert_eq!(
        post(vec![("origin", "http://evil.example".into())]).await,
        403
    );
    assert_eq!(
        post(vec![("origin", "https://localhost".into())]).await,
        403,
        "scheme must match"
    );
    assert_eq!(post(vec![("origin", "http://localhost".into())]).await, 200);
    assert_eq!(
        post(vec![("referer", "http://localhost/app/page".into())]).await,
        200
    );
    assert_eq!(
        post(vec![("referer", "http://localhost.evil.com/app".into())]).await,
        403
    );
    // Safe methods need nothing.
    assert_eq!(get_app(&c, &cookie).await, 200);
    gw.stop().await;
}

/// POSTs a login (JSON or form) with `headers`; returns the status and
/// whether a session cookie was set.
async fn login_with(c: &Client, json: bool, pw: &str, headers: &[(&str, &str)]) -> (u16, bool) {
    let (ctype, body) = if json {
        (
            "application/json",
            serde_json::json!({"username": "alice", "password": pw}).to_string(),
        )
    } else {
        (
            "application/x-www-form-urlencoded",
            format!("username=alice&password={}&rd=%2Fapp", pw.replace(' ', "+")),
        )
    };
    let mut h = vec![("content-type", ctype)];
    h.extend_from_slice(headers);
    let r = c.send(req("POST", "/.gatehouse/login", &h, &body)).await;
    let cookie = r.headers.get_all("set-cookie").iter().any(|v| {
        v.to_str().unwrap().starts_with("gatehouse_session=")
            && !v.to_str().unwrap().contains("Max-Age=0")
    });
    (r.status, cookie)
}

async fn alice_sessions(gw: &Gw) -> usize {
    let r = Client::plain(gw.admin())
        .get_with(
            "/admin/sessions?user=alice",
            &[("authorization", "Bearer admin-token-0123456789")],
        )
        .await;
    r.json()["sessions"].as_array().unwrap().len()
}

/// Login CSRF (SPEC 16): a page of another origin must not log the browser
/// in (as the attacker, say). `Origin`, or without it `Referer`, naming
/// another origin gets 403, no session and no password check; neither
/// header is an API client, let in.
async fn a_login_from_another_origin_is_refused_before_any_password_check(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(&store, &b, "", "max_failures = 2\n").await;
    let c = gw.plain();
    let foreign: [&[(&str, &str)]; 6] = [
        &[("origin", "http://evil.example")],
        &[("origin", "null")],
        &[("origin", "https://localhost")],
        &[("referer", "http://evil.example/login")],
        &[("referer", "http://localhost.evil.example/")],
        // Origin decides when both are there.
        &[
            ("origin", "http://evil.example"),
            ("referer", "http://localhost/"),
        ],
    ];
    for json in [true, false] {
        for h in foreign {
            // Right and wrong passwords alike: refused before the check, so
            // these count towards no lockout either (max_failures = 2).
            for pw in [ALICE_PW, "wrong"] {
                assert_eq!(
                    login_with(&c, json, pw, h).await,
                    (403, false),
                    "json={json} {h:?}"
                );
            }
        }
    }
    assert_eq!(alice_sessions(&gw).await, 0, "no session was created");
    let same: [&[(&str, &str)]; 3] = [
        &[("origin", "http://localhost")],
        &[("referer", "http://localhost/.gatehouse/login?rd=%2Fapp")],
        &[],
    ];
    for json in [true, false] {
        for h in same {
            let want = if json { 200 } else { 303 };
            assert_eq!(
                login_with(&c, json, ALICE_PW, h).await,
                (want, true),
                "json={json} {h:?}"
            );
        }
    }
    assert_eq!(alice_sessions(&gw).await, 6);
    let m = Client::plain(gw.admin()).get("/metrics").await.text();
    assert!(
        m.contains("gatehouse_auth_total{method=\"login\",result=\"forbidden\"} 24"),
        "{m}"
    );
    gw.stop().await;

    // csrf = "off": the operator's choice, let through.
    let gw = session_gateway(&store, &b, "csrf = \"off\"\n", "").await;
    let c = gw.plain();
    for json in [true, false] {
        let (status, cookie) = login_with(&c, json, ALICE_PW, foreign[0]).await;
        assert!(cookie && (status == 200 || status == 303), "{status}");
    }
    gw.stop().await;
}

/// Cookie tossing: a sibling subdomain sets `gatehouse_session` for the
/// parent domain, and the browser sends it beside ours, before or after.
/// The one naming a live session is used, the cookie is not expired, and
/// no copy reaches the backend. At most four are tried.
async fn a_second_session_cookie_planted_beside_ours_is_not_a_logout(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    let ours = login(&c, "alice", ALICE_PW).await.unwrap();
    let unknown = "gatehouse_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let junk = "gatehouse_session=junk";
    let expires = |r: &Resp| {
        r.headers
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().contains("Max-Age=0"))
    };
    for cookie in [
        format!("{junk}; {ours}; other=1"),
        format!("{ours}; {junk}; other=1"),
        format!("{unknown}; other=1; {ours}"),
        format!("{junk}; {unknown}; {unknown}; {ours}; other=1"),
    ] {
        let r = c.get_with("/app/x", &[("cookie", &cookie)]).await;
        assert_eq!(r.status, 200, "{cookie}");
        assert!(!expires(&r), "{cookie}: our cookie must not be expired");
        let seen = b.last();
        assert_eq!(seen.headers["x-auth-user"], "alice");
        assert_eq!(seen.headers["cookie"], "other=1", "{cookie}");
    }
    // Split over two Cookie headers (as HTTP/2 sends them).
    let r = c
        .get_with("/app/x", &[("cookie", junk), ("cookie", &ours)])
        .await;
    assert_eq!(r.status, 200);
    assert!(b.last().headers.get("cookie").is_none());
    // The origin check still applies to the one that authenticated.
    let post = |origin: &'static str| {
        let c = c.clone();
        let cookie = format!("{junk}; {ours}");
        async move {
            c.send(req(
                "POST",
                "/app/form",
                &[("cookie", &cookie), ("origin", origin)],
                "x=1",
            ))
            .await
            .status
        }
    };
    assert_eq!(post("http://evil.example").await, 403);
    assert_eq!(post("http://localhost").await, 200);
    // None live: refused and expired, as with one dead cookie.
    let r = c
        .get_with("/app/x", &[("cookie", &format!("{junk}; {unknown}"))])
        .await;
    assert_eq!(r.status, 401);
    assert!(expires(&r));
    // Bounded: a live one after four others is not looked for.
    let r = c
        .get_with(
            "/app/x",
            &[(
                "cookie",
                &format!("{unknown}; {unknown}; {junk}; {unknown}; {ours}"),
            )],
        )
        .await;
    assert_eq!(r.status, 401);
    gw.stop().await;
}

/// Logout with several cookies of the session name ends every session
/// they name: a cookie planted for the parent domain and sent first (junk,
/// unknown, or someone's live session) must not leave ours alive.
async fn logout_ends_every_session_cookie_not_only_the_first(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    let logout = |cookie: String| {
        let c = c.clone();
        async move {
            c.send(req(
                "POST",
                "/.gatehouse/logout",
                &[("cookie", &cookie), ("origin", "http://localhost")],
                "",
            ))
            .await
        }
    };
    let unknown = "gatehouse_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for planted in ["gatehouse_session=junk", unknown] {
        let ours = login(&c, "alice", ALICE_PW).await.unwrap();
        assert_eq!(get_app(&c, &format!("{planted}; {ours}")).await, 200);
        let r = logout(format!("{planted}; {ours}")).await;
        assert_eq!(r.status, 204, "{planted}");
        assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
        assert_eq!(get_app(&c, &ours).await, 401, "{planted}: still signed in");
    }
    // Two live sessions in one request (the first one planted): both end.
    let first = login(&c, "alice", ALICE_PW).await.unwrap();
    let second = login(&c, "alice", ALICE_PW).await.unwrap();
    assert_eq!(alice_sessions(&gw).await, 2);
    let r = logout(format!("{first}; other=1; {second}")).await;
    assert_eq!(r.status, 204);
    assert_eq!(get_app(&c, &first).await, 401);
    assert_eq!(get_app(&c, &second).await, 401);
    assert_eq!(alice_sessions(&gw).await, 0);
    // The origin check still guards them all.
    let ours = login(&c, "alice", ALICE_PW).await.unwrap();
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/logout",
            &[
                ("cookie", &format!("gatehouse_session=junk; {ours}")),
                ("origin", "http://evil.example"),
            ],
            "",
        ))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(get_app(&c, &ours).await, 200);
    gw.stop().await;
}

/// A TLS-terminating proxy in `trusted_proxies` in front of a plain
/// listener: the browser's origin is `https://host`, which its
/// `X-Forwarded-Proto: https` makes ours. From a peer that is not trusted
/// the header proves nothing.
async fn behind_a_trusted_tls_proxy_https_origins_are_same_origin(store: Store) {
    let b = Backend::start("app").await;
    let gw =
        session_gateway_with(&store, &b, "trusted_proxies = [\"127.0.0.0/8\"]\n", "", "").await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let post = |path: &'static str, cookie: String, h: Vec<(&'static str, &'static str)>| {
        let c = c.clone();
        async move {
            let mut headers: Vec<(&str, &str)> = vec![("cookie", cookie.as_str())];
            headers.extend(h);
            c.send(req("POST", path, &headers, "x=1")).await.status
        }
    };
    let https = vec![
        ("x-forwarded-proto", "https"),
        ("origin", "https://localhost"),
    ];
    assert_eq!(post("/app/form", cookie.clone(), https.clone()).await, 200);
    assert_eq!(
        post(
            "/app/form",
            cookie.clone(),
            vec![
                ("x-forwarded-proto", "https"),
                ("referer", "https://localhost/app/page"),
            ]
        )
        .await,
        200
    );
    // The scheme must still match what the proxy says the client used.
    assert_eq!(
        post(
            "/app/form",
            cookie.clone(),
            vec![
                ("x-forwarded-proto", "https"),
                ("origin", "http://localhost")
            ]
        )
        .await,
        403
    );
    assert_eq!(
        post(
            "/app/form",
            cookie.clone(),
            vec![("origin", "https://localhost")]
        )
        .await,
        403,
        "without the header the connection's scheme (http) counts"
    );
    // A login posted from the https page is not a cross-origin login.
    let (status, set) = login_with(
        &c,
        false,
        ALICE_PW,
        &[
            ("x-forwarded-proto", "https"),
            ("origin", "https://localhost"),
        ],
    )
    .await;
    assert_eq!((status, set), (303, true));
    gw.stop().await;

    // Not trusted: the same request is cross-site.
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let post = |h: Vec<(&'static str, &'static str)>| {
        let c = c.clone();
        let cookie = cookie.clone();
        async move {
            let mut headers: Vec<(&str, &str)> = vec![("cookie", cookie.as_str())];
            headers.extend(h);
            c.send(req("POST", "/app/form", &headers, "x=1"))
                .await
                .status
        }
    };
    assert_eq!(post(https.clone()).await, 403);
    let (status, set) = login_with(&c, false, ALICE_PW, &https).await;
    assert_eq!((status, set), (403, false));
    gw.stop().await;
}

async fn admin_lists_and_revokes_sessions(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    let admin = Client::plain(gw.admin());
    let auth = ("authorization", "Bearer admin-token-0123456789");
    let s1 = login(&c, "alice", ALICE_PW).await.unwrap();
    let s2 = login(&c, "alice", ALICE_PW).await.unwrap();
    let s3 = login(&c, "alice", ALICE_PW).await.unwrap();
    assert_eq!(admin.get("/admin/sessions?user=alice").await.status, 401);
    let list = admin
        .get_with("/admin/sessions?user=alice", &[auth])
        .await
        .json();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    let s = &sessions[0];
    assert_eq!(s["user"], "alice");
    assert_eq!(s["client_ip"], "127.0.0.1");
    assert_eq!(s["id"].as_str().unwrap().len(), 64);
    for k in ["created_at", "last_seen", "expires_at"] {
        assert!(s[k].as_u64().unwrap() > 1_700_000_000);
    }
    // The listed id is the SHA-256 of the cookie value, never the value.
    let hash_of = |cookie: &str| {
        gatehouse::crypto::hex(&gatehouse::crypto::sha256(
            cookie.split_once('=').unwrap().1.as_bytes(),
        ))
    };
    let ids: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&hash_of(&s1).as_str()));
    assert!(!list.to_string().contains(s1.split_once('=').unwrap().1));

    let r = admin
        .send(req(
            "DELETE",
            &format!("/admin/sessions/{}", hash_of(&s1)),
            &[auth],
            "",
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(get_app(&c, &s1).await, 401);
    assert_eq!(get_app(&c, &s2).await, 200);
    let r = admin
        .send(req("POST", "/admin/users/alice/revoke", &[auth], ""))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["sessions_revoked"], 2);
    assert_eq!(get_app(&c, &s2).await, 401);
    assert_eq!(get_app(&c, &s3).await, 401);
    let list = admin
        .get_with("/admin/sessions?user=alice", &[auth])
        .await
        .json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 0);
    gw.stop().await;
}

async fn userinfo_describes_the_caller(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    assert_eq!(c.get("/.gatehouse/userinfo").await.status, 401);
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let r = c
        .get_with("/.gatehouse/userinfo", &[("cookie", &cookie)])
        .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["sub"], "alice");
    assert_eq!(j["email"], "alice@example.com");
    assert_eq!(j["groups"], serde_json::json!(["staff", "ops"]));
    assert_eq!(j["method"], "session");
    assert!(j["expires_at"].as_u64().unwrap() > 1_700_000_000);
    gw.stop().await;
}

async fn authorization_by_group_gives_403(store: Store) {
    let b = Backend::start("app").await;
    let gw = session_gateway(&store, &b, "", "").await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    assert_eq!(
        c.get_with("/staff-only", &[("cookie", &cookie)])
            .await
            .status,
        403
    );
    assert_eq!(
        b.requests()
            .iter()
            .filter(|s| s.path_and_query.starts_with("/staff-only"))
            .count(),
        0
    );
    gw.stop().await;
}

#[tokio::test]
async fn memory_sessions_are_counted_in_metrics() {
    let b = Backend::start("app").await;
    let gw = session_gateway(&Store::Memory, &b, "", "").await;
    let c = gw.plain();
    for _ in 0..3 {
        login(&c, "alice", ALICE_PW).await.unwrap();
    }
    let m = Client::plain(gw.admin()).get("/metrics").await.text();
    assert!(m.contains("gatehouse_sessions_active 3"), "{m}");
    gw.stop().await;
}

#[tokio::test]
async fn two_replicas_share_sessions_and_revocations_through_redis() {
    let Some(redis) =
        RedisServer::start("two_replicas_share_sessions_and_revocations_through_redis")
    else {
        return;
    };
    let b = Backend::start("app").await;
    let store = Store::Redis(redis);
    // Same key prefix on both: one cluster of replicas.
    let a = session_gateway(&store, &b, "", "").await;
    let cfg_b = std::fs::read_to_string(&a.config_path).unwrap();
    let dir = tempdir();
    std::fs::copy(a.path().join("users.toml"), dir.path().join("users.toml")).unwrap();
    let gb = Gw::start_in(dir, &cfg_b).await;
    let (ca, cb) = (a.plain(), gb.plain());
    let cookie = login(&ca, "alice", ALICE_PW).await.unwrap();
    assert_eq!(get_app(&ca, &cookie).await, 200);
    assert_eq!(get_app(&cb, &cookie).await, 200, "a login on A works on B");
    // Logout on B: A rejects it well within a second (pub/sub), even though
    // A has the session in its local cache.
    assert_eq!(logout(&cb, &cookie).await, 204);
    assert!(
        poll(Duration::from_secs(1), || async {
            get_app(&ca, &cookie).await == 401
        })
        .await,
        "revocation not seen on A within 1 s"
    );
    a.stop().await;
    gb.stop().await;
}

#[tokio::test]
async fn redis_down_means_503_for_sessions_and_recovery_without_restart() {
    let Some(redis) =
        RedisServer::start("redis_down_means_503_for_sessions_and_recovery_without_restart")
    else {
        return;
    };
    let b = Backend::start("app").await;
    let mut store = Store::Redis(redis);
    let gw = session_gateway(&store, &b, "cache_ttl = \"200ms\"\n", "").await;
    let c = gw.plain();
    let admin = Client::plain(gw.admin());
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    assert_eq!(get_app(&c, &cookie).await, 200);
    let Store::Redis(r) = &mut store else {
        unreachable!()
    };
    r.kill();
    // Past cache_ttl (200 ms), with a little slack, the session is no
    // longer served from the local cache: lookups meet the dead server.
    assert!(
        poll(Duration::from_millis(300), || async {
            get_app(&c, &cookie).await == 503
        })
        .await,
        "the session was still served from the cache 300 ms after the kill"
    );
    // Session routes: 503, never a stale 200. Open routes keep working.
    assert_eq!(get_app(&c, &cookie).await, 503);
    assert_eq!(c.get("/open").await.status, 200);
    assert!(
        poll(Duration::from_secs(5), || async {
            admin.get("/readyz").await.status == 503
        })
        .await,
        "/readyz reports the store down"
    );
    r.restart();
    // Back without restarting the gateway; the session survived in Redis.
    assert!(
        poll(Duration::from_secs(10), || async {
            get_app(&c, &cookie).await == 200
        })
        .await,
        "session route did not recover after Redis came back"
    );
    assert_eq!(admin.get("/readyz").await.status, 200);
    gw.stop().await;
}

/// Config text for identity-sticky routing behind sessions over `backends`.
fn sticky_session_config(backends: &[&Backend], listen: &str, admin: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!(
        "[server]\nlisten = \"{listen}\"\n[log]\naccess_log = false\n[admin]\nlisten = \"{admin}\"\ntoken = \"admin-token-0123456789\"\n\
         [sessions]\nstore = \"memory\"\ncookie_secure = false\n[login]\nusers_file = \"users.toml\"\n\
         [[upstreams]]\nname = \"app\"\nbackends = [{}]\n  [upstreams.sticky]\n  mode = \"identity\"\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\nmethods = [\"session\"]\n",
        list.join(", ")
    )
}

#[tokio::test]
async fn identity_stickiness_with_sessions_survives_scale_out_and_moves_only_a_removed_backends_users(
) {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
        Backend::start("d").await,
        Backend::start("e").await,
    ];
    let dir = tempdir();
    let users: String = (0..12)
        .map(|i| {
            format!(
                "[[users]]\nusername = \"user{i}\"\npassword_hash = \"{}\"\n",
                alice_hash()
            )
        })
        .collect();
    std::fs::write(dir.path().join("users.toml"), users).unwrap();
    let three: Vec<&Backend> = backends[..3].iter().collect();
    let gw = Gw::start_in(
        dir,
        &sticky_session_config(&three, "127.0.0.1:0", "127.0.0.1:0"),
    )
    .await;
    let (listen, admin_addr) = (gw.addr().to_string(), gw.admin().to_string());
    let c = gw.plain();
    let admin = Client::plain(gw.admin());
    let reload = |cfg: String| {
        let admin = admin.clone();
        let path = gw.config_path.clone();
        async move {
            std::fs::write(&path, cfg).unwrap();
            let r = admin
                .send(req(
                    "POST",
                    "/admin/reload",
                    &[("authorization", "Bearer admin-token-0123456789")],
                    "",
                ))
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    let mut cookies = Vec::new();
    for i in 0..12 {
        cookies.push(login(&c, &format!("user{i}"), ALICE_PW).await.unwrap());
    }
    let where_is = |cookie: String| {
        let c = c.clone();
        async move {
            let r = c.get_with("/x", &[("cookie", &cookie)]).await;
            assert_eq!(r.status, 200);
            r.json()["backend"].as_str().unwrap().to_string()
        }
    };
    let mut home = Vec::new();
    for ck in &cookies {
        home.push(where_is(ck.clone()).await);
    }
    // Scale out to five backends: every logged-in user stays put.
    let five: Vec<&Backend> = backends.iter().collect();
    reload(sticky_session_config(&five, &listen, &admin_addr)).await;
    for (i, ck) in cookies.iter().enumerate() {
        assert_eq!(
            where_is(ck.clone()).await,
            home[i],
            "user{i} moved on scale-out"
        );
    }
    // Remove the backend of user0: only its users move, told so by the header.
    let gone = home[0].clone();
    let remaining: Vec<&Backend> = backends.iter().filter(|b| b.name != gone).collect();
    reload(sticky_session_config(&remaining, &listen, &admin_addr)).await;
    for (i, ck) in cookies.iter().enumerate() {
        let now = where_is(ck.clone()).await;
        if home[i] == gone {
            assert_ne!(now, gone);
            let b = backends.iter().find(|b| b.name == now).unwrap();
            assert_eq!(
                b.last()
                    .headers
                    .get("x-gatehouse-rehomed")
                    .map(|v| v.to_str().unwrap()),
                Some("1"),
                "user{i}"
            );
            // Re-pinned: the next request stays on the new backend, unmarked.
            assert_eq!(where_is(ck.clone()).await, now);
            assert!(b.last().headers.get("x-gatehouse-rehomed").is_none());
        } else {
            assert_eq!(now, home[i], "user{i} moved though its backend stayed");
        }
    }
    gw.stop().await;
}

/// SPEC 16: a users file over 1 MiB is refused by reload, naming it, and
/// the users already loaded stay; the same users in a small file load.
#[tokio::test]
async fn a_reload_with_a_users_file_over_1_mib_keeps_the_old_users() {
    let b = Backend::start("app").await;
    let gw = session_gateway(&Store::Memory, &b, "", "").await;
    let c = gw.plain();
    let users = gw.path().join("users.toml");
    let carol = format!(
        "[[users]]\nusername = \"carol\"\npassword_hash = \"{}\"\n",
        alice_hash()
    );
    // Valid TOML: the users, then a comment taking it past 1 MiB.
    let big = format!("{carol}# {}\n", "x".repeat(1 << 20));
    std::fs::write(&users, &big).unwrap();
    let reload = || async {
        Client::plain(gw.admin())
            .send(req(
                "POST",
                "/admin/reload",
                &[("authorization", "Bearer admin-token-0123456789")],
                "",
            ))
            .await
    };
    let r = reload().await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("login.users_file"), "{}", r.text());
    assert!(r.text().contains("users.toml"), "{}", r.text());
    assert!(r.text().contains("larger than 1 MiB"), "{}", r.text());
    assert!(login(&c, "alice", ALICE_PW).await.is_ok(), "old users kept");
    assert_eq!(login(&c, "carol", ALICE_PW).await, Err(401));
    // The same users without the padding: loaded.
    std::fs::write(&users, &carol).unwrap();
    assert_eq!(reload().await.status, 200);
    assert!(login(&c, "carol", ALICE_PW).await.is_ok());
    assert_eq!(login(&c, "alice", ALICE_PW).await, Err(401));
    gw.stop().await;
}
