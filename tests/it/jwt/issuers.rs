//! Issuers do not share one namespace (SPEC 16): a route can name the
//! issuers it accepts, the backend can be told which issuer vouched for a
//! caller, and revoke-all reaches tokens stamped by a clock that runs ahead.

use super::*;

const OTHER_ISS: &str = "https://other-idp.example.test/";
const OTHER_SECRET: &str = "another-HS-secret-for-tests-only:0123456789abcdef0123456789abcdef";

fn two_issuers() -> String {
    format!(
        "{}[[jwt]]\nname = \"partner\"\nissuer = \"{OTHER_ISS}\"\naudiences = [\"app\"]\nalgorithms = [\"HS256\"]\nsecret = \"{OTHER_SECRET}\"\n\
         [identity]\nheaders = {{ \"X-Auth-User\" = \"sub\", \"X-Auth-Groups\" = \"groups\", \"X-Auth-Issuer\" = \"iss\" }}\n",
        hs_issuer()
    )
}

fn partner_token(extra: Value) -> String {
    let key = keys::Key::hmac(jsonwebtoken::Algorithm::HS256, OTHER_SECRET.as_bytes());
    key.sign(
        None,
        &with(claims(), with(json!({"iss": OTHER_ISS}), extra)),
    )
}

#[tokio::test]
async fn a_route_accepts_only_the_issuers_it_names_and_the_backend_learns_the_issuer() {
    let b = Backend::start("b1").await;
    let routes = "[[routes]]\nname = \"admin\"\npath_prefix = \"/admin\"\nupstream = \"app\"\nmethods = [\"jwt\"]\nissuers = [\"idp\"]\n  [routes.require]\n  groups_any = [\"admins\"]\n\
                  [[routes]]\nname = \"any\"\npath_prefix = \"/\"\nupstream = \"app\"\nmethods = [\"jwt\"]\n";
    let gw = Gw::start(&config(&b, routes, &two_issuers())).await;
    // The partner's "alice" in "admins" is not the corporate alice.
    let partner = partner_token(json!({"groups": ["admins"]}));
    let r = get_bearer(&gw, "/admin/x", &partner, &[]).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""),
        "{:?}",
        r.headers
    );
    let corp = hs_key().sign(None, &with(claims(), json!({"groups": ["admins"]})));
    assert_eq!(get_bearer(&gw, "/admin/x", &corp, &[]).await.status, 200);
    assert_eq!(b.last().headers["x-auth-issuer"], ISS);

    // Routes without `issuers` take both; the backend can tell them apart,
    // and a client cannot claim an issuer.
    let r = get_bearer(&gw, "/x", &partner, &[("x-auth-issuer", ISS)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(b.last().headers["x-auth-issuer"], OTHER_ISS);
    assert_eq!(b.last().headers.get_all("x-auth-issuer").iter().count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn route_issuers_must_name_configured_issuers() {
    let b = Backend::start("b1").await;
    let routes = "[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"app\"\nmethods = [\"jwt\"]\nissuers = [\"idp\", \"nobody\"]\n";
    let dir = tempdir();
    let path = dir.path().join("gatehouse.toml");
    std::fs::write(&path, config(&b, routes, &hs_issuer())).unwrap();
    let e = gatehouse::config::load(&path).unwrap_err().to_string();
    assert!(e.contains("routes[0].issuers[1]"), "{e}");
    // `gatehouse` is the gateway's own name, not a [[jwt]] name.
    let own = hs_issuer().replace("name = \"idp\"", "name = \"gatehouse\"");
    std::fs::write(&path, config(&b, JWT_ROUTE, &own)).unwrap();
    let e = gatehouse::config::load(&path).unwrap_err().to_string();
    assert!(e.contains("jwt[0].name"), "{e}");
}

#[tokio::test]
async fn revoke_all_also_refuses_tokens_stamped_up_to_leeway_after_the_mark() {
    let b = Backend::start("b1").await;
    let rest = format!("{}leeway = \"30s\"\n", hs_issuer());
    let cfg = config(&b, JWT_ROUTE, &rest).replacen(
        "[admin]\n",
        "[admin]\ntoken = \"admin-token-0123456789\"\n",
        1,
    );
    let gw = Gw::start(&cfg).await;
    // The issuer's clock runs 20 s ahead of ours.
    let ahead = hs_key().sign(None, &with(claims(), json!({"iat": now() + 20})));
    assert_eq!(get_bearer(&gw, "/x", &ahead, &[]).await.status, 200);
    let r = Client::plain(gw.admin())
        .send(crate::support::client::req(
            "POST",
            "/admin/users/alice/revoke",
            &[("authorization", "Bearer admin-token-0123456789")],
            "",
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        get_bearer(&gw, "/x", &ahead, &[]).await.status,
        401,
        "issued before the revocation by the issuer's clock"
    );
    // Anywhere within the leeway.
    let later = hs_key().sign(
        None,
        &with(claims(), json!({"iat": now() + 29, "jti": "b"})),
    );
    assert_eq!(get_bearer(&gw, "/x", &later, &[]).await.status, 401);
    gw.stop().await;
}

#[tokio::test]
async fn a_local_login_session_names_the_gateways_issuer() {
    use crate::support::sessions::{login, session_gateway, Store, ALICE_PW};
    let b = Backend::start("b1").await;
    let gw = session_gateway(
        &Store::Memory,
        &b,
        "",
        "issuer = \"https://gate.example.test\"\n\
         [identity]\nheaders = { \"X-Auth-User\" = \"sub\", \"X-Auth-Issuer\" = \"iss\" }\n",
    )
    .await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let r = c
        .get_with(
            "/app/x",
            &[("cookie", &cookie), ("x-auth-issuer", "forged")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        b.last().headers["x-auth-issuer"],
        "https://gate.example.test"
    );
    gw.stop().await;
}
