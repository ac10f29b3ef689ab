//! Forward-auth (SPEC 14): the decision endpoints called as each proxy
//! calls them, and real nginx and Caddy in front of a backend.

mod caddy;
mod endpoints;
mod nginx;

use crate::support::sessions::alice_hash;
use crate::support::*;

/// Users alice (groups staff, ops) in `dir`/users.toml.
pub fn write_users(dir: &std::path::Path) {
    std::fs::write(
        dir.join("users.toml"),
        format!(
            "[[users]]\nusername = \"alice\"\npassword_hash = \"{}\"\nemail = \"alice@example.com\"\ngroups = [\"staff\", \"ops\"]\n",
            alice_hash()
        ),
    )
    .unwrap();
}

/// The config of a forward-auth gateway: sessions (`store` lines),
/// alice, and decision-only routes: `/public` (`auth = "none"`),
/// `/admin` (group `admins`, which alice is not in), `/api` (401 only),
/// `/` (sessions and tokens). `fa_extra` goes into `[forward_auth]`,
/// `extra` at the end (more sections).
pub fn config(store: &str, fa_extra: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[log]\naccess_log = false\n\n\
         [sessions]\n{store}cookie_secure = false\nkey_prefix = \"gh-fa-{prefix}:\"\n\n\
         [login]\nusers_file = \"users.toml\"\n\n\
         [forward_auth]\nenabled = true\n{fa_extra}\n\n\
         [[routes]]\nname = \"public\"\npath_prefix = \"/public\"\nauth = \"none\"\n\n\
         [[routes]]\nname = \"admin\"\npath_prefix = \"/admin\"\nmethods = [\"session\", \"jwt\"]\n  [routes.require]\n  groups_any = [\"admins\"]\n\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nmethods = [\"jwt\", \"session\"]\non_unauthenticated = \"401\"\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nmethods = [\"session\", \"jwt\"]\n\n{extra}\n",
        prefix = gatehouse::crypto::hex(&gatehouse::crypto::random_bytes::<4>()),
    )
}

/// A forward-auth gateway (see [`config`]) with the memory store.
pub async fn gateway(fa_extra: &str, extra: &str) -> Gw {
    let dir = tempdir();
    write_users(dir.path());
    Gw::start_in(dir, &config("store = \"memory\"\n", fa_extra, extra)).await
}

/// An access token for alice from the password grant, through `c`.
pub async fn alice_token(c: &Client) -> String {
    crate::support::tokens::password_grant(c).await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The backend's view of the last request: a header's value, if sent.
pub fn seen(b: &Backend, name: &str) -> Option<String> {
    b.last()
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}
