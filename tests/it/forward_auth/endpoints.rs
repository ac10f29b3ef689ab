//! The decision endpoints called directly, as each kind of proxy calls
//! them: `/authz/<path>` as Envoy `ext_authz` (and Gateway API
//! `ExternalAuth`) does, `/auth` with `X-Forwarded-*` as Traefik does and
//! with `X-Original-URL` as nginx does.

use super::{alice_token, config, gateway, write_users};
use crate::support::client::req;
use crate::support::process::GwProcess;
use crate::support::redis::RedisServer;
use crate::support::sessions::{login, ALICE_PW};
use crate::support::*;
use std::time::Duration;

/// `/auth` as Traefik's forwardAuth (and Caddy's forward_auth) asks it.
fn traefik<'a>(
    method: &'a str,
    proto: &'a str,
    host: &'a str,
    uri: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("x-forwarded-method", method),
        ("x-forwarded-proto", proto),
        ("x-forwarded-host", host),
        ("x-forwarded-uri", uri),
    ]
}

fn with<'a>(
    mut base: Vec<(&'a str, &'a str)>,
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    base.extend_from_slice(more);
    base
}

#[tokio::test]
async fn authz_answers_as_envoy_ext_authz_expects() {
    let gw = gateway("", "").await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    // Allowed: 200, empty, the identity headers.
    let r = c
        .get_with(
            "/.gatehouse/authz/reports/q1?x=1",
            &[
                ("host", "app.test"),
                ("cookie", &cookie),
                ("x-auth-user", "mallory"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty());
    assert_eq!(r.header("x-auth-user"), Some("alice"));
    assert_eq!(r.header("x-auth-email"), Some("alice@example.com"));
    assert_eq!(r.header("x-auth-groups"), Some("staff,ops"));
    assert_eq!(r.header("x-auth-method"), Some("session"));
    // A browser without a session: 302 to the login page on the original
    // host, coming back to the original absolute URL (scheme from
    // X-Forwarded-Proto, which Envoy sets).
    let r = c
        .get_with(
            "/.gatehouse/authz/reports/q1?x=1",
            &[
                ("host", "app.test"),
                ("accept", "text/html"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://app.test/.gatehouse/login?rd=https%3A%2F%2Fapp.test%2Freports%2Fq1%3Fx%3D1")
    );
    // An API client: 401 with WWW-Authenticate, no Location.
    let r = c
        .get_with("/.gatehouse/authz/reports", &[("host", "app.test")])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );
    assert!(r.header("location").is_none());
    // The original method is the request's own; the root path is `/authz`.
    let r = c
        .send(req(
            "DELETE",
            "/.gatehouse/authz",
            &[("host", "app.test"), ("cookie", &cookie)],
            "",
        ))
        .await;
    assert_eq!(r.status, 403, "a cross-site DELETE with a session cookie");
    let r = c
        .get_with(
            "/.gatehouse/authz/admin/x",
            &[("host", "app.test"), ("cookie", &cookie)],
        )
        .await;
    assert_eq!(r.status, 403, "alice is not in admins");
    let r = c
        .get_with("/.gatehouse/authz/public/x", &[("host", "app.test")])
        .await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-auth-user").is_none());
    gw.stop().await;
}

#[tokio::test]
async fn auth_answers_as_traefik_forward_auth_expects() {
    let gw = gateway("", "").await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let token = alice_token(&c).await;
    let bearer = format!("Bearer {token}");
    let desc = traefik("GET", "https", "app.test", "/reports?x=1");
    // Browser without credentials: a 302 Traefik passes on as it is.
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(desc.clone(), &[("accept", "text/html")]),
        )
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://app.test/.gatehouse/login?rd=https%3A%2F%2Fapp.test%2Freports%3Fx%3D1")
    );
    let r = c.get_with("/.gatehouse/auth", &desc).await;
    assert_eq!(r.status, 401);
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(desc.clone(), &[("cookie", &cookie)]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-auth-user"), Some("alice"));
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(desc.clone(), &[("authorization", &bearer)]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-auth-method"), Some("jwt"));
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(
                desc.clone(),
                &[
                    ("authorization", "Bearer x.y.z"),
                    ("accept", "application/json"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    // The route is the original host and path's: a 401-only route, and a
    // host no route serves.
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(
                traefik("GET", "https", "app.test", "/api/x"),
                &[("accept", "text/html")],
            ),
        )
        .await;
    assert_eq!(r.status, 401);
    gw.stop().await;
}

#[tokio::test]
async fn nginx_style_auth_answers_401_with_location_for_browsers() {
    let gw = gateway("", "").await;
    let c = gw.plain();
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &[
                ("x-original-url", "http://app.test:8080/reports?x=1"),
                ("x-original-method", "GET"),
                ("accept", "text/html"),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("location"),
        Some("http://app.test:8080/.gatehouse/login?rd=http%3A%2F%2Fapp.test%3A8080%2Freports%3Fx%3D1")
    );
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &[("x-original-url", "http://app.test/reports")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.header("location").is_none());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_central_login_url_and_a_shared_cookie_domain() {
    let dir = tempdir();
    write_users(dir.path());
    let gw = Gw::start_in(
        dir,
        &config(
            "store = \"memory\"\ncookie_domain = \"apps.test\"\n",
            "login_url = \"https://login.apps.test/.gatehouse/login\"",
            "",
        )
        .replace(
            "name = \"app\"\npath_prefix = \"/\"",
            "name = \"app\"\nhost = \"*.apps.test\"\npath_prefix = \"/\"",
        ),
    )
    .await;
    let c = gw.plain();
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(
                traefik("GET", "https", "wiki.apps.test", "/page"),
                &[("accept", "text/html")],
            ),
        )
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://login.apps.test/.gatehouse/login?rd=https%3A%2F%2Fwiki.apps.test%2Fpage")
    );
    // Logging in on the login host: the cookie is for the whole domain,
    // and rd may name any host a route matches (a wildcard route here).
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/login",
            &[
                ("host", "login.apps.test"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &format!(
                "username=alice&password={}&rd=http%3A%2F%2Fwiki.apps.test%2Fpage",
                ALICE_PW.replace(' ', "+")
            ),
        ))
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("http://wiki.apps.test/page"));
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.to_ascii_lowercase().contains("domain=apps.test"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap();
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(
                traefik("GET", "https", "wiki.apps.test", "/page"),
                &[("cookie", cookie)],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-auth-user"), Some("alice"));
    // An rd elsewhere still falls back to `/`.
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/login",
            &[
                ("host", "login.apps.test"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &format!(
                "username=alice&password={}&rd=http%3A%2F%2Fevil.test%2F",
                ALICE_PW.replace(' ', "+")
            ),
        ))
        .await;
    assert_eq!(r.header("location"), Some("/"));
    gw.stop().await;
}

#[tokio::test]
async fn csrf_applies_with_the_original_method_scheme_and_host() {
    let gw = gateway("", "").await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let post = traefik("POST", "https", "app.test", "/orders");
    let ask = |more: Vec<(&'static str, String)>| {
        let c = c.clone();
        let mut h: Vec<(String, String)> = post
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        h.push(("cookie".into(), cookie.clone()));
        h.extend(more.into_iter().map(|(k, v)| (k.to_string(), v)));
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            c.get_with("/.gatehouse/auth", &h).await.status
        }
    };
    assert_eq!(ask(vec![]).await, 403, "no Origin or Referer");
    assert_eq!(ask(vec![("origin", "https://app.test".into())]).await, 200);
    assert_eq!(
        ask(vec![("origin", "http://app.test".into())]).await,
        403,
        "another scheme"
    );
    assert_eq!(ask(vec![("origin", "https://evil.test".into())]).await, 403);
    assert_eq!(
        ask(vec![("referer", "https://app.test/form".into())]).await,
        200
    );
    // The same through the nginx form; the request to /auth itself is a GET.
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &[
                ("x-original-url", "https://app.test/orders"),
                ("x-original-method", "DELETE"),
                ("cookie", &cookie),
                ("origin", "https://evil.test"),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    // A safe original method needs no Origin.
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(
                traefik("GET", "https", "app.test", "/orders"),
                &[("cookie", &cookie)],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_store_that_is_down_fails_closed_with_503() {
    let Some(mut redis) = RedisServer::start("a_store_that_is_down_fails_closed_with_503") else {
        return;
    };
    let dir = tempdir();
    write_users(dir.path());
    let store = format!("store = \"redis\"\nredis_url = \"{}\"\n", redis.url());
    let gw = Gw::start_in(dir, &config(&store, "", "")).await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let token = alice_token(&c).await;
    let bearer = format!("Bearer {token}");
    let desc = traefik("GET", "https", "app.test", "/reports");
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(desc.clone(), &[("cookie", &cookie)]),
        )
        .await;
    assert_eq!(r.status, 200);
    redis.kill();
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(desc.clone(), &[("cookie", &cookie)]),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    // Tokens need no store, as in-line.
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(desc.clone(), &[("authorization", &bearer)]),
        )
        .await;
    assert_eq!(r.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn original_paths_are_normalised_and_refused_as_in_line() {
    let gw = gateway("", "").await;
    let c = gw.plain();
    let nginx = |url: &'static str| {
        let c = c.clone();
        async move {
            c.get_with("/.gatehouse/auth", &[("x-original-url", url)])
                .await
                .status
        }
    };
    // `/public/../admin` is `/admin`, never the open `/public`.
    assert_eq!(nginx("http://app.test/public/../admin").await, 401);
    assert_eq!(nginx("http://app.test/public/%2e%2e/admin").await, 401);
    assert_eq!(nginx("http://app.test/public//x").await, 200);
    // Paths in-line refuses: ambiguous for a lenient backend, malformed.
    assert_eq!(nginx("http://app.test/public/..%2Fadmin").await, 400);
    assert_eq!(nginx("http://app.test/public/..;/admin").await, 400);
    assert_eq!(nginx("http://app.test/PUBLIC/x").await, 400);
    assert_eq!(nginx("http://user@app.test/public/x").await, 400);
    assert_eq!(nginx("app.test/public").await, 400);
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &traefik("GET", "http", "app.test", "/public/..%2Fadmin"),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .get_with(
            "/.gatehouse/authz/public/..%2Fadmin",
            &[("host", "app.test")],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .get_with("/.gatehouse/authz/public/../admin", &[("host", "app.test")])
        .await;
    assert_ne!(r.status, 200);
    // No describing headers at all: 400.
    let r = c.get("/.gatehouse/auth").await;
    assert_eq!(r.status, 400);
    // The gateway's own pages stay reachable through the asking proxy.
    assert_eq!(nginx("http://app.test/.gatehouse/login?rd=%2F").await, 200);
    // No route for the original host and path: 404.
    let dir = tempdir();
    write_users(dir.path());
    let only_host = config("store = \"memory\"\n", "", "").replace(
        "name = \"app\"\npath_prefix = \"/\"",
        "name = \"app\"\nhost = \"app.test\"\npath_prefix = \"/\"",
    );
    let gw2 = Gw::start_in(dir, &only_host).await;
    let r = gw2
        .plain()
        .get_with(
            "/.gatehouse/auth",
            &traefik("GET", "https", "other.test", "/x"),
        )
        .await;
    assert_eq!(r.status, 404);
    gw2.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn without_forward_auth_the_endpoints_are_404_and_routes_need_an_upstream() {
    let b = Backend::start("b").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    let c = gw.plain();
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &[("x-original-url", "http://localhost/x")],
        )
        .await;
    assert_eq!(r.status, 404);
    let r = c.get("/.gatehouse/authz/x").await;
    assert_eq!(r.status, 404);
    assert_eq!(b.count(), 0);
    gw.stop().await;
    // enabled = false is the same as absent.
    let text = config("store = \"memory\"\n", "", "").replace("enabled = true", "enabled = false");
    let err = gatehouse::config::load_str(&text, std::path::Path::new("/tmp/g.toml"))
        .expect_err("routes without upstream need [forward_auth]")
        .to_string();
    assert!(err.contains("routes[0].upstream"), "{err}");
    assert!(err.contains("[forward_auth]"), "{err}");
    // A central login page must be an absolute http(s) URL.
    for bad in [
        "/login",
        "javascript:alert(1)",
        "https://",
        "ftp://login.test/",
    ] {
        let text = config(
            "store = \"memory\"\n",
            &format!("login_url = \"{bad}\""),
            "",
        );
        let err = gatehouse::config::load_str(&text, std::path::Path::new("/tmp/g.toml"))
            .expect_err(bad)
            .to_string();
        assert!(err.contains("forward_auth.login_url"), "{bad}: {err}");
    }
}

#[tokio::test]
async fn decision_only_routes_are_404_in_line_and_the_identity_jwt_names_the_route() {
    let gw = gateway(
        "",
        "[identity.jwt]\nheader = \"X-Auth-Jwt\"\nttl = \"60s\"\n",
    )
    .await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let r = c.get_with("/reports", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 404, "in-line there is nothing to proxy to");
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(
                traefik("GET", "https", "app.test", "/reports"),
                &[("cookie", &cookie)],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let jwt = r.header("x-auth-jwt").expect("the identity JWT");
    let payload = jwt.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "app");
    gw.stop().await;
}

#[tokio::test(start_paused = true)]
async fn sessions_slide_and_dead_cookies_are_expired_as_in_line() {
    // The memory store's idle deadline runs on the gateway's own clock.
    let _clock = ManualClock::hold();
    let dir = tempdir();
    write_users(dir.path());
    let gw = Gw::start_in(
        dir,
        &config("store = \"memory\"\nidle_timeout = \"2s\"\n", "", ""),
    )
    .await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let desc = traefik("GET", "https", "app.test", "/reports");
    // Asked every 0.8 s for 3.2 s, past the 2 s idle timeout: each
    // decision extends the session.
    for _ in 0..4 {
        pass(Duration::from_millis(800)).await;
        let r = c
            .get_with(
                "/.gatehouse/auth",
                &with(desc.clone(), &[("cookie", &cookie)]),
            )
            .await;
        assert_eq!(r.status, 200, "the session slides");
    }
    // A cookie naming no live session is expired on the answer.
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(
                desc.clone(),
                &[("cookie", "gatehouse_session=bm90LWEtc2Vzc2lvbg")],
            ),
        )
        .await;
    assert_eq!(r.status, 401);
    let set = r.header("set-cookie").expect("the dead cookie is expired");
    assert!(set.starts_with("gatehouse_session=;"), "{set}");
    assert!(set.contains("Max-Age=0"), "{set}");
    gw.stop().await;
}

#[tokio::test]
async fn decisions_are_counted_and_logged_with_the_original_request() {
    let users = tempdir();
    write_users(users.path());
    let text = config("store = \"memory\"\n", "", "")
        .replace("access_log = false", "access_log = true")
        .replace(
            "users_file = \"users.toml\"",
            &format!(
                "users_file = \"{}\"",
                users.path().join("users.toml").display()
            ),
        );
    let gw = GwProcess::spawn(&text, None).await;
    let c = Client::plain(gw.listen);
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &with(
                traefik("PATCH", "https", "app.test", "/orders/7?secret=1"),
                &[("cookie", &cookie), ("origin", "https://app.test")],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .get_with(
            "/.gatehouse/authz/admin/x",
            &[("host", "app.test"), ("cookie", &cookie)],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = c
        .get_with(
            "/.gatehouse/auth",
            &traefik("GET", "https", "app.test", "/x"),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        gw.metric("gatehouse_forward_auth_total{route=\"app\",result=\"allowed\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric("gatehouse_forward_auth_total{route=\"admin\",result=\"forbidden\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric("gatehouse_forward_auth_total{route=\"app\",result=\"missing\"}")
            .await,
        Some(1.0)
    );
    let found = poll(Duration::from_secs(5), || async {
        gw.log().lines().any(|l| {
            l.contains("method=PATCH")
                && l.contains("host=app.test")
                && l.contains("path=/orders/7")
                && l.contains("status=200")
        })
    })
    .await;
    let log = gw.log();
    assert!(found, "{log}");
    assert!(!log.contains("secret=1"), "the query is not logged");
}

#[tokio::test]
async fn optional_routes_and_redirect_routes_decide_as_in_line() {
    let dir = tempdir();
    write_users(dir.path());
    let text = config("store = \"memory\"\n", "", "").replace(
        "[[routes]]\nname = \"public\"",
        "[[routes]]\nname = \"maybe\"\npath_prefix = \"/maybe\"\nauth = \"optional\"\n\n\
         [[routes]]\nname = \"portal\"\npath_prefix = \"/portal\"\non_unauthenticated = \"redirect\"\n\n\
         [[routes]]\nname = \"public\"",
    );
    let gw = Gw::start_in(dir, &text).await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let ask = |uri: &'static str, more: Vec<(&'static str, String)>| {
        let c = c.clone();
        async move {
            let mut h: Vec<(&str, &str)> = traefik("GET", "https", "app.test", uri);
            h.extend(more.iter().map(|(k, v)| (*k, v.as_str())));
            c.get_with("/.gatehouse/auth", &h).await
        }
    };
    // optional without credentials: allowed, anonymous.
    let r = ask("/maybe/x", vec![]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-auth-user").is_none());
    // optional with a session: allowed as alice; with a bad token: 401.
    let r = ask("/maybe/x", vec![("cookie", cookie.clone())]).await;
    assert_eq!(r.header("x-auth-user"), Some("alice"));
    let r = ask("/maybe/x", vec![("authorization", "Bearer x.y.z".into())]).await;
    assert_eq!(r.status, 401);
    // on_unauthenticated = "redirect": an API client is sent to login too.
    let r = ask("/portal", vec![("accept", "application/json".into())]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://app.test/.gatehouse/login?rd=https%3A%2F%2Fapp.test%2Fportal")
    );
    gw.stop().await;
}
