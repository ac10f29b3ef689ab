//! A gateway with sessions and local users (alice, and bob who is
//! disabled), run against either store, and a JSON login.

use crate::support::client::req;
use crate::support::redis::RedisServer;
use crate::support::*;
use std::sync::OnceLock;

pub const ALICE_PW: &str = "correct horse battery staple";

pub fn hash(pw: &str) -> String {
    gatehouse::login::users::hash_password(pw)
}

pub fn alice_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash(ALICE_PW))
}

/// Which store a test body runs against.
pub enum Store {
    Memory,
    Redis(RedisServer),
    /// Any other `[sessions]` store lines (Sentinel, Cluster, TLS...),
    /// with whatever must live as long as the store.
    Lines(String, Box<dyn std::any::Any + Send + Sync>),
}

impl Store {
    pub fn toml(&self) -> String {
        match self {
            Store::Memory => "store = \"memory\"\n".into(),
            Store::Redis(r) => format!("store = \"redis\"\nredis_url = \"{}\"\n", r.url()),
            Store::Lines(lines, _) => lines.clone(),
        }
    }
}

/// A gateway with sessions: users alice and bob (disabled), a protected
/// route `/app` (sessions), an open route `/`.
pub async fn session_gateway(
    store: &Store,
    backend: &Backend,
    sessions_extra: &str,
    login_extra: &str,
) -> Gw {
    session_gateway_with(store, backend, "", sessions_extra, login_extra).await
}

/// [`session_gateway`] with `server_extra` added to `[server]`.
pub async fn session_gateway_with(
    store: &Store,
    backend: &Backend,
    server_extra: &str,
    sessions_extra: &str,
    login_extra: &str,
) -> Gw {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("users.toml"),
        format!(
            "[[users]]\nusername = \"alice\"\npassword_hash = \"{h}\"\nemail = \"alice@example.com\"\ngroups = [\"staff\", \"ops\"]\n\n\
             [[users]]\nusername = \"bob\"\npassword_hash = \"{h}\"\ndisabled = true\n",
            h = alice_hash()
        ),
    )
    .unwrap();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n[log]\naccess_log = false\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"admin-token-0123456789\"\n\n[sessions]\n{store}cookie_secure = false\nkey_prefix = \"gh-{prefix}:\"\n{sessions_extra}\n\n\
         [login]\nusers_file = \"users.toml\"\n{login_extra}\n\n\
         [[upstreams]]\nname = \"app\"\nbackends = [\"{b}\"]\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/app\"\nupstream = \"app\"\nauth = \"required\"\nmethods = [\"session\"]\n\n\
         [[routes]]\nname = \"staff\"\npath_prefix = \"/staff-only\"\nupstream = \"app\"\nauth = \"required\"\nmethods = [\"session\"]\n  [routes.require]\n  groups_any = [\"admins\"]\n\n\
         [[routes]]\nname = \"open\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        store = store.toml(),
        prefix = gatehouse::crypto::hex(&gatehouse::crypto::random_bytes::<4>()),
        b = backend.addr,
    );
    Gw::start_in(dir, &cfg).await
}

/// Logs in with JSON and returns `name=value` of the session cookie.
pub async fn login(c: &Client, user: &str, pw: &str) -> Result<String, u16> {
    let body = serde_json::json!({ "username": user, "password": pw }).to_string();
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/login",
            &[("content-type", "application/json")],
            &body,
        ))
        .await;
    if r.status != 200 {
        return Err(r.status);
    }
    let set = r.header("set-cookie").expect("a session cookie");
    Ok(set.split(';').next().unwrap().to_string())
}

/// `POST /.gatehouse/logout` with the session cookie, from the page's own
/// origin (plain HTTP, `localhost`); the status.
pub async fn logout(c: &Client, cookie: &str) -> u16 {
    c.send(req(
        "POST",
        "/.gatehouse/logout",
        &[("cookie", cookie), ("origin", "http://localhost")],
        "",
    ))
    .await
    .status
}
