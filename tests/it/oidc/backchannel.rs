//! Back-channel logout (SPEC 15): the test provider signs logout tokens
//! with its ID-token key and posts them to the gateway, which ends the
//! sessions they name, here and on every replica sharing Redis; the
//! sessions' WebSockets close. Every refusal leaves the sessions alone.

use super::agent::Agent;
use super::op::{Op, CLIENT_ID, CLIENT_SECRET};
use super::*;
use crate::support::client::req;
use crate::support::jwt::now;
use crate::support::keys::Key;
use crate::support::redis::RedisServer;
use serde_json::{json, Value};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ENDPOINT: &str = "/.gatehouse/backchannel-logout";
const ALICE: &str = "alice-0001";

/// Posts `token` as the provider would: a form with `logout_token`.
async fn post_token(gw: &Gw, token: &str) -> Resp {
    let body = format!("logout_token={}", gatehouse::auth::url_encode(token));
    gw.plain()
        .send(req(
            "POST",
            ENDPOINT,
            &[("content-type", "application/x-www-form-urlencoded")],
            &body,
        ))
        .await
}

fn assert_accepted(r: &Resp) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

fn assert_invalid(r: &Resp, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
    // The reason is only in the log.
    assert_eq!(r.json(), json!({"error": "invalid_request"}), "{what}");
}

/// Whether the agent's session still opens `/app` on its gateway.
async fn has_session(a: &mut Agent) -> bool {
    let r = a.get(&url("/app/x")).await;
    match r.status {
        200 => true,
        302 => false,
        s => panic!("unexpected {s}: {}", r.text()),
    }
}

/// A sign-in through provider `provider` (`corp` or another entry).
async fn sign_in_at(a: &mut Agent, provider: &str) {
    let start = url(&format!("/.gatehouse/start/{provider}?rd=%2Fapp"));
    let r = a.get(&start).await;
    assert_eq!(r.status, 302, "start: {}", r.text());
    let authorize = Agent::location(&start, &r);
    let r = a.get(&authorize).await;
    assert_eq!(r.status, 302, "authorize: {}", r.text());
    let callback = Agent::location(&authorize, &r);
    let r = a.get(&callback).await;
    assert_eq!(r.status, 303, "callback: {}", r.text());
}

/// Opens a WebSocket to `/app/ws` with the agent's session cookie.
async fn open_ws(addr: std::net::SocketAddr, a: &Agent) -> tokio::net::TcpStream {
    let cookie = a.cookie(GW, "gatehouse_session").expect("a session cookie");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /app/ws HTTP/1.1\r\nHost: {GW}\r\nCookie: gatehouse_session={cookie}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        got.push(byte[0]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s
}

/// Whether the gateway closes `s` within `limit`.
async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// The ID token's `sid` is kept in the session, with its provider and
/// subject; a logout token naming it ends the session on this replica and
/// closes the WebSocket opened with it. Nothing matched is a 200 too.
#[tokio::test]
async fn a_logout_token_with_the_sid_ends_the_session_and_its_websocket() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    let mut a = agent(&gw);
    assert_eq!(sign_in(&mut a, "/app").await.status, 303);
    let mut other = agent(&gw);
    assert_eq!(sign_in(&mut other, "/app").await.status, 303);
    let (sid, other_sid) = (op.sid(0), op.sid(1));
    assert_ne!(sid, other_sid);

    let store = &gw.running().gateway.store;
    let sessions = store.list_user(ALICE).await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(sessions
        .iter()
        .all(|(_, v)| v.record.login == "oidc:corp" && v.record.user == ALICE));
    let by_sid = store.sessions_by_sid("corp", &sid).await.unwrap();
    assert_eq!(by_sid.len(), 1);
    assert_eq!(by_sid[0].1.record.sid.as_deref(), Some(sid.as_str()));
    assert!(store
        .sessions_by_sid("other", &sid)
        .await
        .unwrap()
        .is_empty());

    let mut ws = open_ws(gw.addr(), &a).await;
    assert!(
        !closed_within(&mut ws, Duration::from_millis(300)).await,
        "open while the session lives"
    );

    // A sid nobody has: accepted, nothing ends.
    assert_accepted(&post_token(&gw, &op.logout_token(json!({"sid": "no-such-sid"}))).await);
    assert!(has_session(&mut a).await);

    // The sid with another subject: not that session.
    assert_accepted(&post_token(&gw, &op.logout_token(json!({"sid": sid, "sub": "bob"}))).await);
    assert!(has_session(&mut a).await);

    let r = post_token(&gw, &op.logout_token(json!({"sid": sid, "sub": ALICE}))).await;
    assert_accepted(&r);
    assert!(r.body.is_empty());
    assert!(
        closed_within(&mut ws, Duration::from_secs(2)).await,
        "the WebSocket outlived its session"
    );
    assert!(
        !has_session(&mut a).await,
        "the session outlived the logout"
    );
    assert!(has_session(&mut other).await, "another sid was ended too");
    assert!(store
        .sessions_by_sid("corp", &sid)
        .await
        .unwrap()
        .is_empty());

    let m = &gw.running().gateway.metrics;
    assert_eq!(
        m.backchannel_logouts[0].load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    assert_eq!(
        m.backchannel_sessions_ended
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let text = Client::plain(gw.admin()).get("/metrics").await.text();
    assert!(
        text.contains("gatehouse_backchannel_logouts_total{result=\"ok\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("gatehouse_backchannel_logout_sessions_total 1"),
        "{text}"
    );
}

/// A token naming only `sub` ends every session of that subject from that
/// provider, and none from another provider with the same subject.
#[tokio::test]
async fn a_logout_token_with_only_sub_ends_that_providers_sessions_of_the_subject() {
    let op = Op::start().await;
    let op2 = Op::start().await;
    let b = Backend::start("app").await;
    let second = format!(
        "[[oidc]]\nname = \"other\"\nissuer = \"{}/\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n",
        op2.issuer()
    );
    let gw = Gw::start(&config(&op, &b, "", "", &second)).await;
    wait_ready(&gw).await;
    let mut corp1 = agent(&gw);
    let mut corp2 = agent(&gw);
    let mut elsewhere = agent(&gw);
    sign_in_at(&mut corp1, "corp").await;
    sign_in_at(&mut corp2, "corp").await;
    sign_in_at(&mut elsewhere, "other").await;
    assert_eq!(
        gw.running()
            .gateway
            .store
            .sessions_by_sub("corp", ALICE)
            .await
            .unwrap()
            .len(),
        2
    );

    // Another subject: nothing ends.
    assert_accepted(&post_token(&gw, &op.logout_token(json!({"sub": "bob-0002"}))).await);
    assert!(has_session(&mut corp1).await);

    assert_accepted(&post_token(&gw, &op.logout_token(json!({"sub": ALICE}))).await);
    assert!(!has_session(&mut corp1).await);
    assert!(!has_session(&mut corp2).await);
    assert!(
        has_session(&mut elsewhere).await,
        "another provider's session of the same subject ended"
    );

    // The other provider's own token ends its session.
    assert_accepted(&post_token(&gw, &op2.logout_token(json!({"sub": ALICE}))).await);
    assert!(!has_session(&mut elsewhere).await);
}

/// Every malformed, forged, replayed or misdirected token is refused with
/// 400 and leaves the session alone; then a good one still works.
#[tokio::test]
async fn every_invalid_logout_token_is_refused_and_ends_nothing() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    let mut a = agent(&gw);
    assert_eq!(sign_in(&mut a, "/app").await.status, 303);
    let sid = op.sid(0);
    let id_token = op.lock().issued[0].clone();
    let good = |extra: Value| {
        let mut claims = json!({"sid": sid, "sub": ALICE});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        op.logout_token(claims)
    };
    // The same claims, signed by someone else under the provider's kid.
    let forged = {
        let token = good(json!({}));
        let payload = token.split('.').nth(1).unwrap().to_string();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        Key::rsa(jsonwebtoken::Algorithm::RS256).sign(Some("k1"), &claims)
    };
    // Someone else's provider at another address.
    let stranger = Op::start().await;
    let stranger_token = stranger.logout_token(json!({"sid": sid}));
    let mut tampered = good(json!({}))
        .split('.')
        .map(str::to_string)
        .collect::<Vec<_>>();
    tampered[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        json!({"iss": op.issuer(), "aud": CLIENT_ID, "iat": now(), "jti": "x", "sub": ALICE,
               "events": {gatehouse::login::oidc::backchannel::LOGOUT_EVENT: {}}})
        .to_string(),
    );
    let tampered = tampered.join(".");

    // Replay: a first use (of a sid nobody has) is accepted...
    let once = op.logout_token(json!({"sid": "unrelated", "jti": "jti-1"}));
    assert_accepted(&post_token(&gw, &once).await);

    let cases: Vec<(&str, String)> = vec![
        ("replayed token", once.clone()),
        (
            "replayed jti naming the session",
            good(json!({"jti": "jti-1"})),
        ),
        ("no events", good(json!({"events": null}))),
        ("events not an object", good(json!({"events": "logout"}))),
        (
            "events without the logout member",
            good(json!({"events": {"http://example.com/other": {}}})),
        ),
        ("nonce present", good(json!({"nonce": "n-1"}))),
        ("wrong aud", good(json!({"aud": "someone-else"}))),
        ("aud list without us", good(json!({"aud": ["a", "b"]}))),
        (
            "wrong iss (no such provider)",
            good(json!({"iss": "http://127.0.0.1:9"})),
        ),
        ("another provider's token", stranger_token),
        ("bad signature", forged),
        ("tampered payload", tampered),
        ("iat in the future", good(json!({"iat": now() + 600}))),
        ("no iat", good(json!({"iat": null}))),
        (
            "iat too old to be checked for replay",
            good(json!({"iat": now() - 7200})),
        ),
        ("expired", good(json!({"exp": now() - 600}))),
        ("no jti", good(json!({"jti": null}))),
        (
            "neither sid nor sub",
            good(json!({"sid": null, "sub": null})),
        ),
        ("sid not a string", good(json!({"sid": 7}))),
        ("the ID token itself", id_token),
        ("not a JWT", "not-a-jwt".to_string()),
        ("empty", String::new()),
    ];
    for (what, token) in &cases {
        assert_invalid(&post_token(&gw, token).await, what);
        assert!(has_session(&mut a).await, "{what}: the session ended");
    }
    // No logout_token field at all.
    let r = gw
        .plain()
        .send(req(
            "POST",
            ENDPOINT,
            &[("content-type", "application/x-www-form-urlencoded")],
            "token=x",
        ))
        .await;
    assert_invalid(&r, "no logout_token field");
    // Only POST.
    let r = gw.plain().get(ENDPOINT).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let refused = gw.running().gateway.metrics.backchannel_logouts[1]
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused as usize, cases.len() + 1);

    // The same claims, well formed: the session ends.
    assert_accepted(&post_token(&gw, &good(json!({}))).await);
    assert!(!has_session(&mut a).await);
}

#[tokio::test]
async fn backchannel_logout_false_refuses_the_providers_tokens() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "backchannel_logout = false", "").await;
    let mut a = agent(&gw);
    assert_eq!(sign_in(&mut a, "/app").await.status, 303);
    let token = op.logout_token(json!({"sid": op.sid(0)}));
    assert_invalid(&post_token(&gw, &token).await, "backchannel_logout = false");
    assert!(has_session(&mut a).await);
}

/// Two replicas sharing Redis: a logout token posted to one ends the
/// session on the other (timed and printed), closes the WebSocket opened
/// there, and its `jti` is spent on both.
#[tokio::test]
async fn with_redis_a_logout_on_one_replica_ends_the_session_on_another() {
    let Some(redis) = RedisServer::start("backchannel_redis_replicas") else {
        return;
    };
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let store = format!(
        "store = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"bcl-{}:\"\n",
        redis.url(),
        gatehouse::crypto::hex(&gatehouse::crypto::random_bytes::<4>())
    );
    let gw_a = start(&op, &b, "", &store).await;
    let gw_b = start(&op, &b, "", &store).await;
    let mut on_a = agent(&gw_a);
    assert_eq!(sign_in(&mut on_a, "/app").await.status, 303);
    let sid = op.sid(0);
    let mut on_b = agent(&gw_a);
    let cookie = on_a.cookie(GW, "gatehouse_session").unwrap();
    on_b.set_cookie(GW, "gatehouse_session", &cookie, "/");
    on_b.map(GW, gw_b.addr());
    // B knows the session (and caches it).
    assert!(has_session(&mut on_b).await);
    assert!(has_session(&mut on_b).await);
    let by_sid = gw_b
        .running()
        .gateway
        .store
        .sessions_by_sid("corp", &sid)
        .await
        .unwrap();
    assert_eq!(by_sid.len(), 1, "the sid index is shared");
    let mut ws = open_ws(gw_b.addr(), &on_b).await;
    assert!(!closed_within(&mut ws, Duration::from_millis(300)).await);

    let token = op.logout_token(json!({"sid": sid}));
    // B is polled as fast as it answers from before the token is sent, so
    // the time to enforcement there is not bounded below by A's answer.
    let plain_b = gw_b.plain();
    let session_cookie = format!("gatehouse_session={cookie}");
    let sent = Instant::now();
    let poll_b = async {
        loop {
            let r = plain_b
                .send(req(
                    "GET",
                    "/app/x",
                    &[("host", GW), ("cookie", &session_cookie)],
                    "",
                ))
                .await;
            // An API client without a session: 401.
            if r.status == 401 {
                return sent.elapsed();
            }
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(
                sent.elapsed() < Duration::from_secs(5),
                "replica B still takes the session 5 s after the logout"
            );
        }
    };
    let post_a = async {
        let r = post_token(&gw_a, &token).await;
        (r, sent.elapsed())
    };
    let (enforced, (r, answered)) = tokio::join!(poll_b, post_a);
    assert_accepted(&r);
    println!(
        "back-channel logout: replica A answered {answered:?} after the token was sent; replica B refused the session {enforced:?} after it was sent"
    );
    assert!(
        closed_within(&mut ws, Duration::from_secs(2)).await,
        "the WebSocket on B outlived the session"
    );
    assert!(!has_session(&mut on_a).await);
    // The jti is spent on every replica.
    assert_invalid(
        &post_token(&gw_b, &token).await,
        "replay on the other replica",
    );
    assert!(gw_a
        .running()
        .gateway
        .store
        .sessions_by_sid("corp", &sid)
        .await
        .unwrap()
        .is_empty());
}
