//! Gateway-issued tokens: the password and refresh grants, rotation and
//! reuse detection, JWKS, key rotation, revocation on every replica.

use crate::support::client::req;
use crate::support::redis::RedisServer;
use crate::support::sessions::{login, logout, ALICE_PW};
use crate::support::tokens::*;
use crate::support::*;
use serde_json::Value;
use std::time::Duration;

const ADMIN: (&str, &str) = ("authorization", "Bearer admin-token-0123456789");

/// The `[sessions]` lines for the Redis store `r`.
fn redis_store(r: &RedisServer) -> String {
    format!("store = \"redis\"\nredis_url = \"{}\"\n", r.url())
}

#[tokio::test]
async fn password_grant_issues_tokens_that_verify_against_jwks_and_open_jwt_routes() {
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, "", "access_token_ttl = \"5m\"\n", tempdir()).await;
    let c = gw.plain();
    let j = password_grant(&c).await;
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["expires_in"], 300);
    let at = j["access_token"].as_str().unwrap();
    // `<family>.<secret>`: 32 hex digits, then 256 random bits.
    let (family, secret) = j["refresh_token"]
        .as_str()
        .unwrap()
        .split_once('.')
        .unwrap();
    assert_eq!((family.len(), secret.len()), (32, 43));

    // A standard JWT library verifies it with the published keys.
    let jwks_resp = c.get("/.gatehouse/jwks.json").await;
    assert!(jwks_resp
        .header("cache-control")
        .unwrap()
        .contains("max-age"));
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&jwks_resp.body).unwrap();
    let header = jsonwebtoken::decode_header(at).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&["https://gate.example.com"]);
    v.set_issuer(&["https://gate.example.com"]);
    let claims =
        jsonwebtoken::decode::<Value>(at, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["staff"]));
    for k in ["exp", "iat", "nbf", "jti", "sid"] {
        assert!(!claims[k].is_null(), "{k} missing");
    }

    // Accepted on a jwt route with no [[jwt]] entry at all.
    assert_eq!(api(&c, at).await, 200);
    assert_eq!(b.last().headers["x-auth-user"], "alice");
    assert_eq!(b.last().headers["x-auth-method"], "jwt");
    gw.stop().await;
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc_6749() {
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, "", "", tempdir()).await;
    let c = gw.plain();
    assert_eq!(
        grant(&c, "").await,
        (
            400,
            serde_json::json!({"error": "invalid_request", "error_description": "grant_type is required"})
        )
    );
    assert_eq!(
        grant(&c, "grant_type=client_credentials").await.1["error"],
        "unsupported_grant_type"
    );
    assert_eq!(
        grant(&c, "grant_type=password&username=alice").await.1["error"],
        "invalid_request"
    );
    assert_eq!(
        grant(&c, "grant_type=password&username=alice&password=nope").await,
        (
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "invalid username or password"})
        )
    );
    assert_eq!(
        grant(&c, "grant_type=refresh_token&refresh_token=forged")
            .await
            .1["error"],
        "invalid_grant"
    );
    // JSON bodies work too.
    let body =
        serde_json::json!({"grant_type": "password", "username": "alice", "password": ALICE_PW})
            .to_string();
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/token",
            &[("content-type", "application/json")],
            &body,
        ))
        .await;
    assert_eq!(r.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn token_endpoint_refuses_repeats_other_media_types_and_other_methods() {
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, "", "", tempdir()).await;
    let c = gw.plain();
    let (s, j) = grant(
        &c,
        &format!(
            "grant_type=password&username=alice&username=bob&password={}",
            ALICE_PW.replace(' ', "+")
        ),
    )
    .await;
    assert_eq!(
        (s, j["error"].as_str()),
        (400, Some("invalid_request")),
        "{j}"
    );
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/token",
            &[("content-type", "text/plain")],
            &format!("grant_type=password&username=alice&password={ALICE_PW}"),
        ))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = c.get("/.gatehouse/token").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = c.send(req("POST", "/.gatehouse/jwks.json", &[], "")).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    let r = c.send(req("PUT", "/.gatehouse/login", &[], "")).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, POST")));
    gw.stop().await;
}

async fn rotation_and_reuse(store: &str) {
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, store, "refresh_reuse_grace = \"1s\"\n", tempdir()).await;
    let c = gw.plain();
    let first = password_grant(&c).await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_string();

    // Two tabs refresh at once: one new pair, handed to both.
    let (a, b2) = tokio::join!(refresh(&c, &rt1), refresh(&c, &rt1));
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b2.0, 200, "{}", b2.1);
    assert_eq!(a.1, b2.1, "concurrent refreshes get the same pair");
    let second = a.1;
    let rt2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt2, rt1);
    let at2 = second["access_token"].as_str().unwrap().to_string();
    assert_eq!(api(&c, &at2).await, 200);
    // The rotated token works again inside the grace window (same pair)...
    assert_eq!(refresh(&c, &rt1).await.1, second);
    // ...but after it, its reuse revokes the whole family.
    pass(Duration::from_millis(1200)).await;
    assert_eq!(refresh(&c, &rt1).await.1["error"], "invalid_grant");
    assert_eq!(
        refresh(&c, &rt2).await.1["error"],
        "invalid_grant",
        "the successor died with its family"
    );
    assert_eq!(
        api(&c, &at2).await,
        401,
        "access tokens of the family are revoked too"
    );
    gw.stop().await;
}

// In-process state only: paused time (support::ManualClock).
#[tokio::test(start_paused = true)]
async fn refresh_rotates_replays_inside_grace_and_reuse_revokes_the_family_memory() {
    let _clock = ManualClock::hold();
    rotation_and_reuse("").await;
}

#[tokio::test]
async fn refresh_rotates_replays_inside_grace_and_reuse_revokes_the_family_redis() {
    let Some(r) = RedisServer::start("refresh_rotation_redis") else {
        return;
    };
    rotation_and_reuse(&redis_store(&r)).await;
}

#[tokio::test]
async fn refresh_rotates_replays_inside_grace_and_reuse_revokes_the_family_redis_cluster() {
    let Some(cluster) = crate::support::redis_ha::Cluster::start("refresh_rotation_cluster") else {
        return;
    };
    rotation_and_reuse(&cluster.store_lines()).await;
}

#[tokio::test]
async fn previous_keys_still_verify_after_a_key_rotation() {
    let b = Backend::start("app").await;
    let dir = tempdir();
    std::fs::write(dir.path().join("old.pem"), signing_key()).unwrap();
    std::fs::copy(dir.path().join("old.pem"), dir.path().join("signing.pem")).unwrap();
    let gw = token_gateway(&b, "", "", dir).await;
    let c = gw.plain();
    let old_at = password_grant(&c).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let old_kid = jsonwebtoken::decode_header(&old_at).unwrap().kid.unwrap();
    // Rotate: a new signing key, the old one kept as previous.
    std::fs::write(gw.path().join("signing.pem"), signing_key()).unwrap();
    let cfg = std::fs::read_to_string(&gw.config_path)
        .unwrap()
        .replacen("127.0.0.1:0", &gw.addr().to_string(), 1)
        .replacen("127.0.0.1:0", &gw.admin().to_string(), 1)
        .replace(
            "signing_key_file = \"signing.pem\"",
            "signing_key_file = \"signing.pem\"\nprevious_keys = [\"old.pem\"]",
        );
    std::fs::write(&gw.config_path, cfg).unwrap();
    let r = Client::plain(gw.admin())
        .send(req("POST", "/admin/reload", &[ADMIN], ""))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let new_at = password_grant(&c).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let new_kid = jsonwebtoken::decode_header(&new_at).unwrap().kid.unwrap();
    assert_ne!(new_kid, old_kid);
    let jwks: Value = c.get("/.gatehouse/jwks.json").await.json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        vec![new_kid.as_str(), old_kid.as_str()],
        "current first, previous still published"
    );
    assert_eq!(
        api(&c, &old_at).await,
        200,
        "a token from the previous key still verifies"
    );
    assert_eq!(api(&c, &new_at).await, 200);
    gw.stop().await;
}

#[tokio::test]
async fn admin_revokes_one_token_and_everything_a_user_holds() {
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, "", "", tempdir()).await;
    let c = gw.plain();
    let admin = Client::plain(gw.admin());
    let one = password_grant(&c).await;
    let at1 = one["access_token"].as_str().unwrap().to_string();
    let other = password_grant(&c).await;
    let at2 = other["access_token"].as_str().unwrap().to_string();
    assert_eq!(api(&c, &at1).await, 200, "now in the verified-token cache");
    let claims = claims_of(&at1);
    let body = serde_json::json!({"jti": claims["jti"], "exp": claims["exp"]}).to_string();
    assert_eq!(
        admin
            .send(req("POST", "/admin/tokens/revoke", &[], &body))
            .await
            .status,
        401
    );
    let r = admin
        .send(req("POST", "/admin/tokens/revoke", &[ADMIN], &body))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(api(&c, &at1).await, 401, "revoked though cached");
    assert_eq!(api(&c, &at2).await, 200, "other tokens unaffected");

    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    assert_eq!(
        c.get_with("/web/x", &[("cookie", &cookie)]).await.status,
        200
    );
    let r = admin
        .send(req("POST", "/admin/users/alice/revoke", &[ADMIN], ""))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let revoked_at = gatehouse::clock::unix_now();
    assert_eq!(api(&c, &at2).await, 401);
    assert_eq!(
        refresh(&c, other["refresh_token"].as_str().unwrap())
            .await
            .1["error"],
        "invalid_grant"
    );
    assert_eq!(
        c.get_with("/web/x", &[("cookie", &cookie)]).await.status,
        401
    );
    // Tokens issued after the revocation work (marks are whole seconds).
    next_second_after(revoked_at).await;
    let fresh = password_grant(&c).await;
    assert_eq!(api(&c, fresh["access_token"].as_str().unwrap()).await, 200);
    gw.stop().await;
}

#[tokio::test]
async fn logout_with_a_bearer_token_revokes_it_and_its_family() {
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, "", "", tempdir()).await;
    let c = gw.plain();
    let j = password_grant(&c).await;
    let at = j["access_token"].as_str().unwrap();
    assert_eq!(api(&c, at).await, 200);
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/logout",
            &[("authorization", &format!("Bearer {at}"))],
            "",
        ))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(api(&c, at).await, 401);
    assert_eq!(
        refresh(&c, j["refresh_token"].as_str().unwrap()).await.1["error"],
        "invalid_grant"
    );
    gw.stop().await;
}

/// A TCP relay to Redis that a test can cut and restore: a replica behind
/// it is "disconnected" while the others are not.
struct Relay {
    addr: std::net::SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start_on(addr: &str, target: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut rx2 = rx.clone();
            loop {
                let accepted =
                    tokio::select! { a = listener.accept() => a, _ = rx2.changed() => break };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Relay { addr, stop }
    }

    fn cut(&self) {
        let _ = self.stop.send(true);
    }
}

#[tokio::test]
async fn revocations_reach_every_replica_even_one_that_was_disconnected() {
    let Some(redis) = RedisServer::start("revocations_reach_every_replica") else {
        return;
    };
    let b = Backend::start("app").await;
    let relay = Relay::start_on("127.0.0.1:0", redis.port).await;
    let prefix = format!(
        "key_prefix = \"t{}:\"\n",
        gatehouse::crypto::hex(&gatehouse::crypto::random_bytes::<4>())
    );
    let dir_a = tempdir();
    std::fs::write(dir_a.path().join("users.toml"), alice_users()).unwrap();
    std::fs::write(dir_a.path().join("signing.pem"), signing_key()).unwrap();
    let dir_b = tempdir();
    for f in ["users.toml", "signing.pem"] {
        std::fs::copy(dir_a.path().join(f), dir_b.path().join(f)).unwrap();
    }
    let a = token_gateway(
        &b,
        &format!(
            "store = \"redis\"\nredis_url = \"{}\"\n{prefix}",
            redis.url()
        ),
        "",
        dir_a,
    )
    .await;
    let gb = token_gateway(
        &b,
        &format!(
            "store = \"redis\"\nredis_url = \"redis://{}/0\"\n{prefix}",
            relay.addr
        ),
        "",
        dir_b,
    )
    .await;
    let (ca, cb) = (a.plain(), gb.plain());

    // Revoke-all on A: B refuses the access token (already in its cache),
    // and the refresh token, within a second.
    let j = password_grant(&ca).await;
    let at = j["access_token"].as_str().unwrap().to_string();
    assert_eq!(api(&cb, &at).await, 200);
    let r = Client::plain(a.admin())
        .send(req("POST", "/admin/users/alice/revoke", &[ADMIN], ""))
        .await;
    assert_eq!(r.status, 200);
    let revoked_at = gatehouse::clock::unix_now();
    assert!(
        poll(Duration::from_secs(1), || async {
            api(&cb, &at).await == 401
        })
        .await,
        "B still accepts a revoked token"
    );
    assert_eq!(
        refresh(&cb, j["refresh_token"].as_str().unwrap()).await.1["error"],
        "invalid_grant"
    );

    // B cut off from Redis while A revokes a token; B applies it once back.
    // First the next second: revoke-all marks whole seconds, and a token
    // minted in the mark's second counts as revoked.
    next_second_after(revoked_at).await;
    let j = password_grant(&ca).await;
    let at = j["access_token"].as_str().unwrap().to_string();
    assert_eq!(api(&cb, &at).await, 200);
    relay.cut();
    // Cut once the relay refuses new connections: its listener and, woken
    // by the same signal before it, its open connections are gone.
    assert!(
        poll(Duration::from_secs(2), || async {
            tokio::net::TcpStream::connect(relay.addr).await.is_err()
        })
        .await,
        "the relay still accepts"
    );
    let lo = ca
        .send(req(
            "POST",
            "/.gatehouse/logout",
            &[("authorization", &format!("Bearer {at}"))],
            "",
        ))
        .await;
    assert_eq!(lo.status, 204);
    assert_eq!(
        api(&cb, &at).await,
        200,
        "B missed the announcement while cut off"
    );
    let _relay2 = Relay::start_on(&relay.addr.to_string(), redis.port).await;
    assert!(
        poll(Duration::from_secs(10), || async {
            api(&cb, &at).await == 401
        })
        .await,
        "B did not reload revocations after reconnecting"
    );
    a.stop().await;
    gb.stop().await;
}

#[tokio::test]
async fn backends_get_a_verifiable_identity_jwt_minted_once_per_identity() {
    let b = Backend::start("app").await;
    let dir = tempdir();
    std::fs::write(dir.path().join("users.toml"), alice_users()).unwrap();
    std::fs::write(dir.path().join("signing.pem"), signing_key()).unwrap();
    let gw = token_gateway(&b, "", "", dir).await;
    // Add [identity.jwt] and an open route, then reload.
    let cfg = std::fs::read_to_string(&gw.config_path)
        .unwrap()
        .replacen("127.0.0.1:0", &gw.addr().to_string(), 1)
        .replacen("127.0.0.1:0", &gw.admin().to_string(), 1)
        .replace("[sessions]", "[identity.jwt]\nheader = \"X-Auth-Jwt\"\nttl = \"60s\"\n\n[sessions]")
        + "[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"app\"\nauth = \"none\"\n";
    std::fs::write(&gw.config_path, cfg).unwrap();
    assert_eq!(
        Client::plain(gw.admin())
            .send(req("POST", "/admin/reload", &[ADMIN], ""))
            .await
            .status,
        200
    );
    let c = gw.plain();
    let at = password_grant(&c).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(api(&c, &at).await, 200);
    let first = b.last().headers["x-auth-jwt"].to_str().unwrap().to_string();
    assert_eq!(api(&c, &at).await, 200);
    assert_eq!(
        b.last().headers["x-auth-jwt"].to_str().unwrap(),
        first,
        "reused, not re-signed per request"
    );
    // The backend verifies it with the gateway's JWKS; audience = upstream.
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(&c.get("/.gatehouse/jwks.json").await.body).unwrap();
    let h = jsonwebtoken::decode_header(&first).unwrap();
    assert_eq!(h.typ.as_deref(), Some("JWT"));
    let mut v = jsonwebtoken::Validation::new(h.alg);
    v.set_audience(&["app"]);
    v.set_issuer(&["https://gate.example.com"]);
    let key =
        jsonwebtoken::DecodingKey::from_jwk(jwks.find(h.kid.as_deref().unwrap()).unwrap()).unwrap();
    let claims = jsonwebtoken::decode::<Value>(&first, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() == 60);
    // A backend token is not an access token: refused at the edge.
    assert_eq!(api(&c, &first).await, 401);
    // And a client can never send one itself, on any route.
    assert_eq!(
        c.get_with("/open/x", &[("x-auth-jwt", &first)])
            .await
            .status,
        200
    );
    assert!(b.last().headers.get("x-auth-jwt").is_none());
    gw.stop().await;
}

/// Opens a WebSocket through the gateway with `auth` headers; returns the
/// socket after the 101.
async fn open_ws(
    addr: std::net::SocketAddr,
    path: &str,
    auth: (&str, &str),
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{}: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        auth.0, auth.1
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    closed_after(s, limit).await.is_some()
}

/// Reads until the server closes, within `limit`; what it sent last (a
/// WebSocket close frame, say), or `None` if it did not close in time.
async fn closed_after(s: &mut tokio::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn open_websockets_close_when_their_session_or_token_is_revoked() {
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, "", "", tempdir()).await;
    let c = gw.plain();
    // Session: logout closes it within a second.
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let mut ws = open_ws(gw.addr(), "/web/ws", ("cookie", &cookie)).await;
    assert!(
        !closed_within(&mut ws, Duration::from_millis(400)).await,
        "open while the session lives"
    );
    assert_eq!(logout(&c, &cookie).await, 204);
    assert!(
        closed_within(&mut ws, Duration::from_secs(1)).await,
        "still open after logout"
    );

    // Access token: the user's revoke-all closes it within a second.
    let at = password_grant(&c).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ws = open_ws(
        gw.addr(),
        "/api/ws",
        ("authorization", &format!("Bearer {at}")),
    )
    .await;
    assert!(!closed_within(&mut ws, Duration::from_millis(400)).await);
    let r = Client::plain(gw.admin())
        .send(req("POST", "/admin/users/alice/revoke", &[ADMIN], ""))
        .await;
    assert_eq!(r.status, 200);
    assert!(
        closed_within(&mut ws, Duration::from_secs(1)).await,
        "still open after revoke-all"
    );
    gw.stop().await;
}

/// Reads a streamed response until it ends; `Ok(chunks)` when it ended
/// normally, `Err(chunks)` when it was cut off.
async fn read_stream(
    addr: std::net::SocketAddr,
    path: &str,
    auth: (&str, &str),
    seen: tokio::sync::mpsc::Sender<()>,
) -> Result<usize, usize> {
    use http_body_util::BodyExt;
    let (mut s, c) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(
        tokio::net::TcpStream::connect(addr).await.unwrap(),
    ))
    .await
    .unwrap();
    tokio::spawn(c);
    let r = s.send_request(req("GET", path, &[auth], "")).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.into_body();
    let mut n = 0;
    loop {
        match body.frame().await {
            None => return Ok(n),
            Some(Ok(_)) => {
                n += 1;
                let _ = seen.try_send(());
            }
            Some(Err(_)) => return Err(n),
        }
    }
}

#[tokio::test]
async fn streamed_responses_end_when_their_session_or_token_is_revoked() {
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, "", "", tempdir()).await;
    let c = gw.plain();
    // A session stream: 50 chunks over 5 s; logout after the first ones.
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let addr = gw.addr();
    let ck = cookie.clone();
    let stream =
        tokio::spawn(async move { read_stream(addr, "/web/stream/50", ("cookie", &ck), tx).await });
    rx.recv().await.unwrap();
    let start = std::time::Instant::now();
    assert_eq!(logout(&c, &cookie).await, 204);
    let out = stream.await.unwrap();
    assert!(
        out.is_err(),
        "the stream ran to its end after logout: {out:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "cut after {:?}",
        start.elapsed()
    );

    // A token stream: revoke-all cuts it.
    let at = password_grant(&c).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let bearer = format!("Bearer {at}");
    let stream = tokio::spawn(async move {
        read_stream(addr, "/api/stream/50", ("authorization", &bearer), tx).await
    });
    rx.recv().await.unwrap();
    let start = std::time::Instant::now();
    let r = Client::plain(gw.admin())
        .send(req("POST", "/admin/users/alice/revoke", &[ADMIN], ""))
        .await;
    assert_eq!(r.status, 200);
    let revoked_at = gatehouse::clock::unix_now();
    assert!(stream.await.unwrap().is_err());
    assert!(start.elapsed() < Duration::from_secs(1));

    // An unrevoked stream runs to its end (a token of a later second than
    // the revoke-all mark).
    next_second_after(revoked_at).await;
    let at = password_grant(&c).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (tx, _rx) = tokio::sync::mpsc::channel(64);
    let bearer = format!("Bearer {at}");
    assert_eq!(
        read_stream(addr, "/api/stream/5", ("authorization", &bearer), tx).await,
        Ok(5)
    );
    gw.stop().await;
}

fn claims_of(at: &str) -> Value {
    serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            at.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap()
}

async fn reload(gw: &Gw) {
    let r = Client::plain(gw.admin())
        .send(req("POST", "/admin/reload", &[ADMIN], ""))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn every_refresh_rereads_the_user_and_a_deleted_or_disabled_user_loses_the_family() {
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, "", "", tempdir()).await;
    let c = gw.plain();
    let users = gw.dir.path().join("users.toml");
    let first = password_grant(&c).await;

    // New groups reach the next access token, not the ones from the login.
    std::fs::write(
        &users,
        alice_users().replace("[\"staff\"]", "[\"staff\", \"admins\"]"),
    )
    .unwrap();
    reload(&gw).await;
    let (s, second) = refresh(&c, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{second}");
    let at2 = second["access_token"].as_str().unwrap();
    assert_eq!(
        claims_of(at2)["groups"],
        serde_json::json!(["staff", "admins"])
    );
    assert_eq!(api(&c, at2).await, 200);

    // Disabled: the refresh fails and the family's access tokens die too.
    std::fs::write(
        &users,
        alice_users().replace("groups =", "disabled = true\ngroups ="),
    )
    .unwrap();
    reload(&gw).await;
    let rt2 = second["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&c, rt2).await.1["error"], "invalid_grant");
    assert_eq!(api(&c, at2).await, 401, "the family is revoked");

    // Enabled again: that family stays dead; a deleted user likewise.
    std::fs::write(&users, alice_users()).unwrap();
    reload(&gw).await;
    assert_eq!(refresh(&c, rt2).await.1["error"], "invalid_grant");
    let third = password_grant(&c).await;
    std::fs::write(&users, "").unwrap();
    reload(&gw).await;
    assert_eq!(
        refresh(&c, third["refresh_token"].as_str().unwrap())
            .await
            .1["error"],
        "invalid_grant"
    );
    assert_eq!(api(&c, third["access_token"].as_str().unwrap()).await, 401);
    gw.stop().await;
}

async fn max_age(store: &str) {
    let b = Backend::start("app").await;
    let gw = token_gateway(
        &b,
        store,
        "refresh_token_ttl = \"1h\"\nrefresh_token_max_age = \"3s\"\n",
        tempdir(),
    )
    .await;
    let c = gw.plain();
    // The family starts inside the grant: after `asked`, before `granted`.
    let asked = tokio::time::Instant::now();
    let mut rt = password_grant(&c).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let granted = tokio::time::Instant::now();
    // Each rotation used to renew the token for another refresh_token_ttl.
    // Rotations every 250 ms for 2 s, all inside the 3 s max age.
    for at in (0..=2000).step_by(250) {
        pass_until(asked + Duration::from_millis(at)).await;
        let (s, j) = refresh(&c, &rt).await;
        assert_eq!(s, 200, "at {at} ms: {j}");
        rt = j["refresh_token"].as_str().unwrap().to_string();
    }
    // Past the family's end, the freshest token is dead.
    pass_until(granted + Duration::from_millis(3100)).await;
    assert_eq!(refresh(&c, &rt).await.1["error"], "invalid_grant");
    gw.stop().await;
}

// In-process state only: paused time (support::ManualClock).
#[tokio::test(start_paused = true)]
async fn a_refresh_family_ends_at_its_max_age_whatever_the_rotations_memory() {
    let _clock = ManualClock::hold();
    max_age("").await;
}

#[tokio::test]
async fn a_refresh_family_ends_at_its_max_age_whatever_the_rotations_redis() {
    let Some(r) = RedisServer::start("refresh_max_age_redis") else {
        return;
    };
    max_age(&redis_store(&r)).await;
}

#[tokio::test]
async fn a_familys_stored_state_stays_bounded_however_often_it_rotates_redis() {
    let Some(r) = RedisServer::start("refresh_bounded_redis") else {
        return;
    };
    let b = Backend::start("app").await;
    let gw = token_gateway(
        &b,
        &redis_store(&r),
        "refresh_reuse_grace = \"1m\"\n",
        tempdir(),
    )
    .await;
    let c = gw.plain();
    let mut rt = password_grant(&c).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, j) = refresh(&c, &rt).await;
    rt = j["refresh_token"].as_str().unwrap().to_string();
    let after_one = r.dbsize();
    let first_rotated = rt.clone();
    for _ in 0..50 {
        let (s, j) = refresh(&c, &rt).await;
        assert_eq!(s, 200, "{j}");
        rt = j["refresh_token"].as_str().unwrap().to_string();
    }
    assert_eq!(
        r.dbsize(),
        after_one,
        "50 more rotations stored nothing more"
    );
    // An old token of the family still gives its reuse away.
    assert_eq!(
        refresh(&c, &first_rotated).await.1["error"],
        "invalid_grant"
    );
    assert_eq!(refresh(&c, &rt).await.1["error"], "invalid_grant");
    gw.stop().await;
}

/// A silent WebSocket: no frame from either side. Its session's logout
/// wakes it (no polling): the client gets a close frame with status 1008
/// (policy violation), then the TCP close.
#[tokio::test]
async fn a_silent_websocket_gets_a_1008_close_moments_after_its_session_ends() {
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, "", "", tempdir()).await;
    let c = gw.plain();
    let cookie = login(&c, "alice", ALICE_PW).await.unwrap();
    let mut ws = open_ws(gw.addr(), "/web/ws", ("cookie", &cookie)).await;
    assert_eq!(logout(&c, &cookie).await, 204);
    let answered = std::time::Instant::now();
    let last = closed_after(&mut ws, Duration::from_secs(2))
        .await
        .expect("the WebSocket was not closed");
    let took = answered.elapsed();
    eprintln!("silent WebSocket closed {took:?} after the logout answer");
    assert_eq!(
        last, b"\x88\x09\x03\xf0revoked",
        "a 1008 close frame, then EOF"
    );
    gw.stop().await;
}

/// A silent HTTP/2 stream: the backend sent its first chunk and then
/// nothing. Revoking the token ends the stream (RST_STREAM) at once; the
/// connection's other streams are not affected.
#[tokio::test]
async fn a_silent_http2_stream_ends_moments_after_its_token_is_revoked() {
    use http_body_util::BodyExt;
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, "", "", tempdir()).await;
    let c = gw.plain();
    let at = password_grant(&c).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::builder()
            .uri(format!("http://localhost{path}"))
            .header("authorization", format!("Bearer {at}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let r = h2.send_request(get("/api/silent")).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "hello\n");
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/logout",
            &[("authorization", &format!("Bearer {at}"))],
            "",
        ))
        .await;
    assert_eq!(r.status, 204);
    let answered = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the revoked stream stayed open");
    let took = answered.elapsed();
    eprintln!("silent HTTP/2 stream ended {took:?} after the logout answer");
    assert!(
        matches!(end, Some(Err(_))),
        "ended with an error (reset), not a clean end: {end:?}"
    );
    // The connection itself still serves.
    let other = h2.send_request(get("/api/x")).await.unwrap();
    assert_eq!(
        other.status(),
        401,
        "the token is revoked, the connection is fine"
    );
    gw.stop().await;
}

/// The family id is every access token's `sid`, so anyone who saw one
/// access token (a backend, a log) knows it. A refresh token made up from
/// it is a forgery, not a reuse: the family lives on.
#[tokio::test]
async fn a_refresh_token_forged_from_a_known_family_id_ends_nothing() {
    let b = Backend::start("app").await;
    let gw = token_gateway(&b, "", "", tempdir()).await;
    let c = gw.plain();
    let first = password_grant(&c).await;
    let at = first["access_token"].as_str().unwrap();
    let sid = claims_of(at)["sid"].as_str().unwrap().to_string();
    let forged = format!("{sid}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(refresh(&c, &forged).await.1["error"], "invalid_grant");
    assert_eq!(api(&c, at).await, 200, "the family's access tokens live on");
    let (s, j) = refresh(&c, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{j}");
    gw.stop().await;
}
