//! OpenID Connect single sign-on (SPEC 4 and 11) against a test provider
//! on a real socket, driven through the gateway by a cookie-keeping agent.

mod agent;
mod api_tokens;
mod backchannel;
mod failures;
mod flows;
pub mod op;
mod tokens;

use crate::support::*;
use agent::Agent;
use gatehouse::metrics::AuthResult;
use op::Op;
use std::time::Duration;

/// The host the browser uses for the gateway; the agent maps it to a
/// gateway's socket (a load balancer, in effect).
pub const GW: &str = "gw.test";
const SERVER_SECRET: &str = "oidc tests: a shared server secret of 32+ bytes";

/// A gateway signing in with `op`: `/app` needs a session, `/` is open.
/// `oidc` and `sessions` add keys to those sections; `rest` adds tables
/// (its routes come first).
pub fn config(op: &Op, b: &Backend, oidc: &str, sessions: &str, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nsecret = \"{SERVER_SECRET}\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n[log]\naccess_log = false\n\n\
         [sessions]\ncookie_secure = false\n{sessions}\n\n\
         [[oidc]]\nname = \"corp\"\nissuer = \"{issuer}/\"\nclient_id = \"{id}\"\nclient_secret = \"{secret}\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n{oidc}\n\n\
         [[upstreams]]\nname = \"app\"\nbackends = [\"{b}\"]\n\n{rest}\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/app\"\nupstream = \"app\"\nauth = \"required\"\nmethods = [\"session\"]\n\n\
         [[routes]]\nname = \"open\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        issuer = op.issuer(),
        id = op::CLIENT_ID,
        secret = op::CLIENT_SECRET,
        b = b.addr,
    )
}

/// Waits until `/readyz` says yes (discovery document and keys in).
pub async fn wait_ready(gw: &Gw) {
    let admin = Client::plain(gw.admin());
    let ready = poll(Duration::from_secs(10), || async {
        admin.get("/readyz").await.status == 200
    })
    .await;
    assert!(ready, "not ready: {}", admin.get("/readyz").await.text());
}

/// A ready gateway for `op`.
pub async fn start(op: &Op, b: &Backend, oidc: &str, sessions: &str) -> Gw {
    let gw = Gw::start(&config(op, b, oidc, sessions, "")).await;
    wait_ready(&gw).await;
    gw
}

/// An agent whose `gw.test` is `gw`.
pub fn agent(gw: &Gw) -> Agent {
    let mut a = Agent::new();
    a.map(GW, gw.addr());
    a
}

pub fn url(path: &str) -> String {
    format!("http://{GW}{path}")
}

/// Starts a sign-in and lets the provider consent: returns the callback
/// URL the provider sent the browser to (not yet followed).
pub async fn to_callback(a: &mut Agent, rd: &str) -> String {
    let start = url(&format!(
        "/.gatehouse/start/corp?rd={}",
        gatehouse::auth::url_encode(rd)
    ));
    let r = a.get(&start).await;
    assert_eq!(r.status, 302, "start: {}", r.text());
    let authorize = Agent::location(&start, &r);
    let r = a.get(&authorize).await;
    assert_eq!(r.status, 302, "authorize: {}", r.text());
    let callback = Agent::location(&authorize, &r);
    assert!(
        callback.starts_with(&url("/.gatehouse/callback?")),
        "{callback}"
    );
    callback
}

/// A whole sign-in; returns the callback's answer.
pub async fn sign_in(a: &mut Agent, rd: &str) -> Resp {
    let cb = to_callback(a, rd).await;
    a.get(&cb).await
}

pub fn oidc_count(gw: &Gw, result: AuthResult) -> u64 {
    gw.running().gateway.metrics.auth_count("oidc", result)
}

/// The callback refused the sign-in: generic 401 page, state cookie
/// cleared, no session.
pub fn assert_refused(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert!(r.text().contains("Sign-in failed"), "{what}: {}", r.text());
    let cookies: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("gatehouse_oidc=;") && c.contains("Max-Age=0")),
        "{what}: state cookie not cleared: {cookies:?}"
    );
    assert!(
        !cookies.iter().any(|c| c.starts_with("gatehouse_session=")),
        "{what}: a session was created: {cookies:?}"
    );
}
