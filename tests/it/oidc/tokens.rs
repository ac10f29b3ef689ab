//! ID token validation through the real flow: each case reaches the token
//! endpoint with a good state and gets an ID token that must be refused
//! (or, for the near misses, accepted).

use super::op::Op;
use super::*;
use crate::support::jwt::now;
use crate::support::keys::Key;
use serde_json::json;

/// Signs in once with the ID token changed by `overrides`.
async fn attempt(op: &Op, gw: &Gw, overrides: serde_json::Value) -> Resp {
    op.set_overrides(overrides);
    let mut a = agent(gw);
    sign_in(&mut a, "/app").await
}

#[tokio::test]
async fn a_wrong_or_missing_nonce_is_refused() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    let r = attempt(
        &op,
        &gw,
        json!({"nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
    )
    .await;
    assert_refused(&r, "wrong nonce");
    let r = attempt(&op, &gw, json!({"nonce": null})).await;
    assert_refused(&r, "no nonce");
    assert_eq!(op.token_calls(), 2);
    assert_eq!(oidc_count(&gw, AuthResult::Invalid), 2);
    // The same provider, untouched: fine.
    assert_eq!(attempt(&op, &gw, json!({})).await.status, 303);
}

#[tokio::test]
async fn an_expired_id_token_is_refused_beyond_the_leeway() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    let n = now();
    let r = attempt(&op, &gw, json!({"exp": n - 120, "iat": n - 900})).await;
    assert_refused(&r, "expired");
    assert_eq!(oidc_count(&gw, AuthResult::Expired), 1);
    // Issued in the future beyond the leeway: refused too.
    let r = attempt(&op, &gw, json!({"iat": n + 600, "exp": n + 900})).await;
    assert_refused(&r, "issued in the future");
    // Within the 30 s leeway: accepted.
    let r = attempt(&op, &gw, json!({"exp": n - 5})).await;
    assert_eq!(r.status, 303, "{}", r.text());
}

#[tokio::test]
async fn the_audience_must_contain_our_client_id_and_azp_must_be_it() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    assert_refused(
        &attempt(&op, &gw, json!({"aud": "another-app"})).await,
        "wrong aud",
    );
    assert_refused(
        &attempt(&op, &gw, json!({"aud": ["another-app", "third"]})).await,
        "aud list without us",
    );
    assert_refused(&attempt(&op, &gw, json!({"aud": null})).await, "no aud");
    assert_refused(
        &attempt(
            &op,
            &gw,
            json!({"aud": ["another-app", op::CLIENT_ID], "azp": "another-app"}),
        )
        .await,
        "azp of another client",
    );
    assert_eq!(oidc_count(&gw, AuthResult::Ok), 0);
    // A list containing us, with azp = us or absent: accepted.
    let r = attempt(
        &op,
        &gw,
        json!({"aud": ["another-app", op::CLIENT_ID], "azp": op::CLIENT_ID}),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let r = attempt(&op, &gw, json!({"aud": [op::CLIENT_ID]})).await;
    assert_eq!(r.status, 303, "{}", r.text());
}

#[tokio::test]
async fn another_issuer_or_a_bad_signature_is_refused() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    assert_refused(
        &attempt(&op, &gw, json!({"iss": "http://127.0.0.1:1"})).await,
        "other iss",
    );
    // Signed with a key the provider never published under kid k1.
    op.lock().keys[0].1 = std::sync::Arc::new(Key::rsa(jsonwebtoken::Algorithm::RS256));
    assert_refused(&attempt(&op, &gw, json!({})).await, "bad signature");
}

#[tokio::test]
async fn allowed_email_domains_match_exactly_and_need_an_email() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "allowed_email_domains = [\"example.com\"]\n", "").await;
    for (email, ok) in [
        (json!("mallory@evil.test"), false),
        (json!("mallory@sub.example.com"), false),
        (json!("mallory@example.com.evil.test"), false),
        (json!(null), false),
        (json!("Alice@EXAMPLE.com"), true),
    ] {
        let r = attempt(&op, &gw, json!({"email": email})).await;
        if ok {
            assert_eq!(r.status, 303, "{email}: {}", r.text());
        } else {
            assert_refused(&r, &format!("email {email}"));
        }
    }
    // Without an email in the ID token, userinfo is asked; it has none.
    assert!(op.lock().userinfo_calls >= 1);
    // An address the provider says it has not verified.
    assert_refused(
        &attempt(&op, &gw, json!({"email_verified": false})).await,
        "unverified email",
    );
    assert_eq!(oidc_count(&gw, AuthResult::Forbidden), 5);
    assert_eq!(oidc_count(&gw, AuthResult::Ok), 1);
}

/// The provider rotates its signing key: the next ID token names a kid
/// the gateway has not seen, and the gateway fetches the new JWKS.
#[tokio::test]
async fn a_rotated_provider_key_is_picked_up() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;
    let mut a = agent(&gw);
    assert_eq!(sign_in(&mut a, "/app").await.status, 303);
    let fetched = op.lock().jwks_calls;

    op.rotate("k2", Key::ec(jsonwebtoken::Algorithm::ES256));
    let mut a = agent(&gw);
    let r = sign_in(&mut a, "/app").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(
        op.lock().jwks_calls > fetched,
        "the new key set was fetched"
    );
    assert_eq!(a.get(&url("/app")).await.status, 200);
    assert_eq!(oidc_count(&gw, AuthResult::Ok), 2);
}

/// SPEC 16: with an allowlist, an address the provider does not say is
/// verified is refused, whatever form the "no" takes; an absent
/// `email_verified` is no statement (some providers never send it).
/// Without an allowlist the claim is not looked at.
#[tokio::test]
async fn email_verified_must_not_be_anything_but_true_with_an_allowlist() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "allowed_email_domains = [\"example.com\"]\n", "").await;
    for v in [
        json!(false),
        json!("false"),
        json!("no"),
        json!(0),
        json!({}),
    ] {
        assert_refused(
            &attempt(&op, &gw, json!({ "email_verified": v })).await,
            &format!("email_verified = {v}"),
        );
    }
    assert_eq!(oidc_count(&gw, AuthResult::Forbidden), 5);
    for v in [json!(true), json!("true"), json!(null)] {
        let r = attempt(&op, &gw, json!({ "email_verified": v })).await;
        assert_eq!(r.status, 303, "email_verified = {v}: {}", r.text());
    }
    gw.stop().await;

    let gw = start(&op, &b, "", "").await;
    let r = attempt(&op, &gw, json!({"email_verified": false})).await;
    assert_eq!(r.status, 303, "no allowlist: {}", r.text());
    gw.stop().await;
}

/// SPEC 16: an `email` with more than one `@` is refused, with or without
/// an allowlist: the allowlist and a backend splitting at the first `@`
/// would read different domains out of it.
#[tokio::test]
async fn an_email_with_more_than_one_at_is_refused() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    for oidc in ["allowed_email_domains = [\"example.com\"]\n", ""] {
        let gw = start(&op, &b, oidc, "").await;
        for email in [
            "\"mallory@evil.test\"@example.com",
            "mallory@evil.test@example.com",
            "mallory@@example.com",
        ] {
            assert_refused(
                &attempt(&op, &gw, json!({ "email": email })).await,
                &format!("{oidc:?}: email {email}"),
            );
        }
        assert_eq!(oidc_count(&gw, AuthResult::Ok), 0, "{oidc:?}");
        let r = attempt(&op, &gw, json!({"email": "alice@example.com"})).await;
        assert_eq!(r.status, 303, "{oidc:?}: {}", r.text());
        gw.stop().await;
    }
}
