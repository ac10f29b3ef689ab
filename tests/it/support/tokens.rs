//! A gateway with its own tokens (users, a signing key, a JWT-only API
//! route and a session route) and the token endpoint's grants, shared by
//! the token, forward-auth and scale-out tests.

use crate::support::client::req;
use crate::support::sessions::ALICE_PW;
use crate::support::*;
use serde_json::Value;

pub fn alice_users() -> String {
    let h = gatehouse::login::users::hash_password(ALICE_PW);
    format!("[[users]]\nusername = \"alice\"\npassword_hash = \"{h}\"\nemail = \"alice@example.com\"\ngroups = [\"staff\"]\n")
}

pub fn signing_key() -> String {
    rcgen::KeyPair::generate().unwrap().serialize_pem()
}

/// A gateway with local users, its own signing key, a JWT-only API route
/// and a session route.
pub async fn token_gateway(
    b: &Backend,
    store: &str,
    login_extra: &str,
    dir: tempfile::TempDir,
) -> Gw {
    if !dir.path().join("users.toml").exists() {
        std::fs::write(dir.path().join("users.toml"), alice_users()).unwrap();
    }
    if !dir.path().join("signing.pem").exists() {
        std::fs::write(dir.path().join("signing.pem"), signing_key()).unwrap();
    }
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"admin-token-0123456789\"\n\
         [sessions]\n{store}cookie_secure = false\n\
         [login]\nusers_file = \"users.toml\"\nsigning_key_file = \"signing.pem\"\nissuer = \"https://gate.example.com\"\n{login_extra}\n\
         [[upstreams]]\nname = \"app\"\nbackends = [\"{}\"]\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\nauth = \"required\"\nmethods = [\"jwt\"]\n\
         [[routes]]\nname = \"web\"\npath_prefix = \"/web\"\nupstream = \"app\"\nauth = \"required\"\nmethods = [\"session\"]\n",
        b.addr
    );
    Gw::start_in(dir, &cfg).await
}

pub async fn grant(c: &Client, body: &str) -> (u16, Value) {
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            body,
        ))
        .await;
    if r.status == 200 {
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

pub async fn password_grant(c: &Client) -> Value {
    let (s, j) = grant(
        c,
        &format!(
            "grant_type=password&username=alice&password={}",
            ALICE_PW.replace(' ', "+")
        ),
    )
    .await;
    assert_eq!(s, 200, "{j}");
    j
}

pub async fn refresh(c: &Client, rt: &str) -> (u16, Value) {
    grant(c, &format!("grant_type=refresh_token&refresh_token={rt}")).await
}

pub async fn api(c: &Client, at: &str) -> u16 {
    c.get_with("/api/x", &[("authorization", &format!("Bearer {at}"))])
        .await
        .status
}
