//! A `[[jwt]]` entry naming an `[[oidc]]` provider (`oidc = "corp"`): API
//! tokens from the identity provider the gateway already signs users in
//! with, checked with the provider's keys, fetched once for both.

use super::op::Op;
use super::*;
use crate::support::jwt::now;
use crate::support::keys::Key;
use serde_json::{json, Value};

/// The `[[jwt]]` entry (with `extra`) and a `/api` route that takes its
/// tokens.
fn api(extra: &str) -> String {
    let algorithms = if extra.contains("algorithms") {
        ""
    } else {
        "algorithms = [\"RS256\", \"ES256\"]\n"
    };
    format!(
        "[[jwt]]\nname = \"corp-api\"\noidc = \"corp\"\naudiences = [\"orders\"]\n{algorithms}{extra}\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\nmethods = [\"jwt\"]\n"
    )
}

/// Claims of an access token the provider issued for the API `orders`.
fn access(op: &Op) -> Value {
    let n = now();
    json!({"iss": op.issuer(), "sub": "svc-billing", "aud": "orders", "exp": n + 300, "iat": n,
           "email": "billing@example.com", "groups": ["orders-writers"]})
}

/// A token signed with the provider's current signing key.
fn signed(op: &Op, claims: &Value) -> String {
    let s = op.lock();
    let kid = s.signing_kid.clone();
    let key = s.keys.iter().find(|(k, _)| *k == kid).unwrap().1.clone();
    key.sign(Some(&kid), claims)
}

async fn get_api(gw: &Gw, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    gw.plain()
        .get_with("/api/orders", &[("authorization", auth.as_str())])
        .await
}

#[tokio::test]
async fn api_tokens_of_a_sign_in_provider_verify_with_its_keys_fetched_once() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = Gw::start(&config(&op, &b, "", "", &api(""))).await;
    wait_ready(&gw).await;
    assert_eq!(op.lock().jwks_calls, 1);

    let t = signed(&op, &access(&op));
    let r = get_api(&gw, &t).await;
    assert_eq!(r.status, 200, "{:?}", r.headers.get("www-authenticate"));
    let seen = b.last();
    assert_eq!(seen.headers["x-auth-user"], "svc-billing");
    assert_eq!(seen.headers["x-auth-method"], "jwt");
    // Sign-ins use the same keys: still the one fetch.
    let mut a = agent(&gw);
    assert_eq!(sign_in(&mut a, "/app").await.status, 303);
    assert_eq!(op.lock().jwks_calls, 1, "the JWKS was fetched twice");

    // Audiences are this entry's: an ID token for the gateway's own client
    // (aud = client_id) is not an API token.
    let id_token = op.lock().issued.last().unwrap().clone();
    assert_eq!(get_api(&gw, &id_token).await.status, 401);
    let other = signed(
        &op,
        &crate::support::jwt::with(access(&op), json!({"aud": "billing"})),
    );
    assert_eq!(get_api(&gw, &other).await.status, 401);
    // Not signed by the provider: refused.
    let forged = Key::rsa(jsonwebtoken::Algorithm::RS256).sign(Some("k1"), &access(&op));
    assert_eq!(get_api(&gw, &forged).await.status, 401);

    // The provider rotates: the first token with the new kid makes the
    // provider's keys be fetched again, and passes.
    op.rotate("k2", Key::ec(jsonwebtoken::Algorithm::ES256));
    let t2 = signed(&op, &access(&op));
    let r = get_api(&gw, &t2).await;
    assert_eq!(r.status, 200, "{:?}", r.headers.get("www-authenticate"));
    assert_eq!(op.lock().jwks_calls, 2);
    // That refetch counts against this entry's jwks_min_refetch (30s):
    // made-up kids fetch nothing more.
    for i in 0..5 {
        let mut c = access(&op);
        c["jti"] = json!(i);
        let key = op.lock().keys[0].1.clone();
        let t = key.sign(Some(&format!("forged-{i}")), &c);
        assert_eq!(get_api(&gw, &t).await.status, 401);
    }
    assert_eq!(op.lock().jwks_calls, 2);
    gw.stop().await;
}

/// Until the provider's discovery document (and so its keys) is in, the
/// entry's tokens get `issuer keys unavailable` and `/readyz` names the
/// entry; then they verify without a restart.
#[tokio::test]
async fn until_the_provider_is_discovered_its_api_tokens_are_unavailable() {
    let op = Op::start().await;
    op.lock().discovery_status = 503;
    let b = Backend::start("app").await;
    let gw = Gw::start(&config(&op, &b, "", "", &api(""))).await;
    let t = signed(&op, &access(&op));
    let r = get_api(&gw, &t).await;
    assert_eq!(r.status, 401);
    let www = r.header("www-authenticate").unwrap_or("");
    assert!(www.contains("issuer keys unavailable"), "{www}");
    let ready = Client::plain(gw.admin()).get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.text().contains("jwt issuer `corp-api`"),
        "{}",
        ready.text()
    );

    op.lock().discovery_status = 200;
    wait_ready(&gw).await;
    let r = get_api(&gw, &t).await;
    assert_eq!(r.status, 200, "{:?}", r.headers.get("www-authenticate"));
    assert_eq!(op.lock().jwks_calls, 1);
    gw.stop().await;
}

/// `oidc` takes the provider's issuer and keys: any other key source, or
/// another issuer, is refused with the key's path; an unknown provider
/// too. Everything about the tokens themselves stays per entry.
#[tokio::test]
async fn an_entry_naming_a_provider_refuses_its_own_keys_and_issuer() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let check = |extra: &str| {
        let text = config(&op, &b, "", "", &api(extra));
        let dir = tempdir();
        let path = dir.path().join("gatehouse.toml");
        std::fs::write(&path, &text).unwrap();
        match gatehouse::config::load(&path) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    for (extra, path) in [
        (
            "jwks_url = \"https://idp.example.com/jwks\"",
            "jwt[0].jwks_url",
        ),
        ("jwks_file = \"keys.json\"", "jwt[0].jwks_file"),
        ("public_key_file = \"k.pem\"", "jwt[0].public_key_file"),
        (
            "secret = \"0123456789abcdef0123456789abcdef\"",
            "jwt[0].secret",
        ),
        ("jwks_refresh = \"5m\"", "jwt[0].jwks_refresh"),
    ] {
        let e = check(extra);
        assert!(
            e.contains(path) && e.contains("not with `oidc`") && e.contains("provider `corp`"),
            "{extra}: {e}"
        );
    }
    let e = check("issuer = \"https://elsewhere.example.com/\"");
    assert!(
        e.contains("jwt[0].issuer") && e.contains("is not the issuer of [[oidc]] provider `corp`"),
        "{e}"
    );
    let e = check("algorithms = [\"HS256\"]");
    assert!(
        e.contains("jwt[0].algorithms") && e.contains("need a shared secret"),
        "{e}"
    );
    let e = config(&op, &b, "", "", &api("")).replace("oidc = \"corp\"", "oidc = \"nope\"");
    let dir = tempdir();
    let path = dir.path().join("gatehouse.toml");
    std::fs::write(&path, &e).unwrap();
    let e = gatehouse::config::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("jwt[0].oidc") && e.contains("no [[oidc]] provider named `nope`"),
        "{e}"
    );
    // The issuer may be given when it is the provider's (trailing `/`
    // aside), and jwks_min_refetch is this entry's.
    assert_eq!(
        check(&format!(
            "issuer = \"{}\"\njwks_min_refetch = \"1m\"",
            op.issuer()
        )),
        ""
    );
}
