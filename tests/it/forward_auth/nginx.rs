//! A real nginx with `auth_request` in front of a backend, configured as
//! docs/forward-auth.md shows: the 401 carrying a `Location` becomes the
//! browser's redirect, a plain 401 keeps its `WWW-Authenticate`, and the
//! identity headers are copied with `auth_request_set`.

use super::{alice_token, gateway, seen};
use crate::support::proxies::{self, Proxy};
use crate::support::sessions::{login, logout, ALICE_PW};
use crate::support::*;

/// The server block of docs/forward-auth.md, for gateway `gw` and backend `b`.
fn server_body(gw: std::net::SocketAddr, b: &Backend) -> String {
    format!(
        r#"
    location /.gatehouse/ {{
      proxy_pass http://{gw};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
    location = /_gatehouse_auth {{
      internal;
      proxy_pass http://{gw}/.gatehouse/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
    }}
    location @gatehouse_401 {{
      if ($gatehouse_location) {{
        return 302 $gatehouse_location;
      }}
      add_header WWW-Authenticate $gatehouse_www_authenticate always;
      return 401;
    }}
    location / {{
      auth_request /_gatehouse_auth;
      auth_request_set $gatehouse_location $upstream_http_location;
      auth_request_set $gatehouse_www_authenticate $upstream_http_www_authenticate;
      auth_request_set $gatehouse_user $upstream_http_x_auth_user;
      auth_request_set $gatehouse_email $upstream_http_x_auth_email;
      auth_request_set $gatehouse_groups $upstream_http_x_auth_groups;
      auth_request_set $gatehouse_method $upstream_http_x_auth_method;
      error_page 401 = @gatehouse_401;
      proxy_set_header X-Auth-User $gatehouse_user;
      proxy_set_header X-Auth-Email $gatehouse_email;
      proxy_set_header X-Auth-Groups $gatehouse_groups;
      proxy_set_header X-Auth-Method $gatehouse_method;
      proxy_pass http://{b};
    }}
"#,
        b = b.addr
    )
}

async fn setup(test: &str) -> Option<(Gw, Backend, Proxy, Client)> {
    let gw = gateway("", "").await;
    let b = Backend::start("app").await;
    let nginx = proxies::nginx(test, &server_body(gw.addr(), &b)).await?;
    let c = Client::plain(nginx.addr);
    Some((gw, b, nginx, c))
}

#[tokio::test]
async fn nginx_sends_browsers_to_login_with_rd_and_api_clients_get_401() {
    let Some((gw, b, nginx, c)) = setup("nginx_sends_browsers_to_login").await else {
        return;
    };
    let r = c
        .get_with("/reports/q1?x=1&y=2", &[("accept", "text/html")])
        .await;
    assert_eq!(r.status, 302, "{}", nginx.log());
    assert_eq!(
        r.header("location"),
        Some("http://localhost/.gatehouse/login?rd=http%3A%2F%2Flocalhost%2Freports%2Fq1%3Fx%3D1%26y%3D2")
    );
    let r = c.get("/reports/q1").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );
    assert!(r.header("location").is_none());
    // A 401-only route answers browsers with the 401 too.
    let r = c.get_with("/api/x", &[("accept", "text/html")]).await;
    assert_eq!(r.status, 401);
    assert!(r.header("location").is_none());
    // The login page is reached through nginx.
    let r = c
        .get_with("/.gatehouse/login?rd=%2F", &[("accept", "text/html")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(b.count(), 0, "nothing reached the backend");
    gw.stop().await;
}

#[tokio::test]
async fn nginx_passes_the_identity_of_a_session_never_a_client_sent_one() {
    let Some((gw, b, _nginx, c)) = setup("nginx_passes_the_identity").await else {
        return;
    };
    let cookie = login(&c, "alice", ALICE_PW)
        .await
        .expect("login through nginx");
    let r = c
        .get_with(
            "/reports",
            &[
                ("cookie", &cookie),
                ("x-auth-user", "mallory"),
                ("x-auth-groups", "admins"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen(&b, "x-auth-user").as_deref(), Some("alice"));
    assert_eq!(
        seen(&b, "x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(seen(&b, "x-auth-groups").as_deref(), Some("staff,ops"));
    assert_eq!(seen(&b, "x-auth-method").as_deref(), Some("session"));
    // A group-restricted route: 403.
    let r = c.get_with("/admin/users", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 403);
    // auth = "none": allowed, and without identity, whatever the client says.
    let n = b.count();
    let r = c
        .get_with(
            "/public/x",
            &[("x-auth-user", "mallory"), ("X_Auth_User", "mallory")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(b.count(), n + 1);
    assert_eq!(seen(&b, "x-auth-user"), None);
    // After logout the same cookie is refused.
    assert_eq!(logout(&c, &cookie).await, 204);
    let r = c.get_with("/reports", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 401);
    let r = c
        .get_with("/reports", &[("cookie", &cookie), ("accept", "text/html")])
        .await;
    assert_eq!(r.status, 302);
    gw.stop().await;
}

#[tokio::test]
async fn nginx_allows_a_bearer_token() {
    let Some((gw, b, _nginx, c)) = setup("nginx_allows_a_bearer_token").await else {
        return;
    };
    let token = alice_token(&c).await;
    let auth = format!("Bearer {token}");
    let r = c.get_with("/api/orders", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(seen(&b, "x-auth-user").as_deref(), Some("alice"));
    assert_eq!(seen(&b, "x-auth-method").as_deref(), Some("jwt"));
    let r = c
        .get_with("/api/orders", &[("authorization", "Bearer not.a.token")])
        .await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.contains("invalid_token")));
    gw.stop().await;
}
