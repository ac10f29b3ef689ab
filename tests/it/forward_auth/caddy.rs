//! A real Caddy with `forward_auth` and `copy_headers` in front of a
//! backend: the gateway's 302 goes straight to the browser, and with a
//! session the backend sees the identity.

use super::{gateway, seen};
use crate::support::proxies;
use crate::support::sessions::{login, ALICE_PW};
use crate::support::*;

#[tokio::test]
async fn caddy_passes_the_redirect_through_and_the_identity_on() {
    let gw = gateway("", "").await;
    let b = Backend::start("app").await;
    let site = format!(
        "  handle /.gatehouse/* {{\n    reverse_proxy {gw}\n  }}\n\
         \x20 handle {{\n    forward_auth {gw} {{\n      uri /.gatehouse/auth\n      \
         copy_headers X-Auth-User X-Auth-Email X-Auth-Groups\n    }}\n    reverse_proxy {b}\n  }}\n",
        gw = gw.addr(),
        b = b.addr
    );
    let Some(caddy) = proxies::caddy("caddy_passes_the_redirect_through", &site).await else {
        return;
    };
    let c = Client::plain(caddy.addr);
    let r = c.get_with("/reports?x=1", &[("accept", "text/html")]).await;
    assert_eq!(
        r.status,
        302,
        "{} {:?} {}",
        caddy.log(),
        r.headers,
        r.text()
    );
    assert_eq!(
        r.header("location"),
        Some("http://localhost/.gatehouse/login?rd=http%3A%2F%2Flocalhost%2Freports%3Fx%3D1")
    );
    let r = c.get("/reports").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );
    assert_eq!(b.count(), 0);

    let cookie = login(&c, "alice", ALICE_PW)
        .await
        .expect("login through caddy");
    let r = c
        .get_with(
            "/reports",
            &[("cookie", &cookie), ("x-auth-groups", "admins")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen(&b, "x-auth-user").as_deref(), Some("alice"));
    assert_eq!(
        seen(&b, "x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(seen(&b, "x-auth-groups").as_deref(), Some("staff,ops"));
    let r = c.get_with("/admin", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 403);
    gw.stop().await;
}
