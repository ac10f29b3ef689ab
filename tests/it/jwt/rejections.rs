use super::keys::{jwks, raw_hmac, unsigned, Key};
use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Header};

/// Every way a token can be bad gets 401 `invalid_token`, and the backend
/// never hears of it.
#[tokio::test]
async fn each_bad_token_gets_401_with_invalid_token() {
    let b = Backend::start("b1").await;
    let rsa = Key::rsa(Algorithm::RS256);
    let other_rsa = Key::rsa(Algorithm::RS256);
    let ec = Key::ec(Algorithm::ES256);
    let dir = tempdir();
    std::fs::write(dir.path().join("rsa.pem"), &rsa.public_pem).unwrap();
    std::fs::write(dir.path().join("ec.json"), jwks(&[ec.jwk_with("k1")])).unwrap();
    let jwt = format!(
        "{}[[jwt]]\nname = \"rsa\"\nissuer = \"https://rsa.test/\"\naudiences = [\"app\"]\npublic_key_file = \"rsa.pem\"\n\
         [[jwt]]\nname = \"ec\"\nissuer = \"https://ec.test/\"\nalgorithms = [\"ES256\"]\njwks_file = \"ec.json\"\n",
        hs_issuer()
    );
    let gw = Gw::start_in(dir, &config(&b, JWT_ROUTE, &jwt)).await;
    let hs = hs_key();
    let n = now();
    let rsa_claims = with(claims(), json!({"iss": "https://rsa.test/"}));
    let ec_claims = with(claims(), json!({"iss": "https://ec.test/"}));
    let good = hs.sign(None, &claims());
    let seg: Vec<&str> = good.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        seg[0],
        URL_SAFE_NO_PAD.encode(with(claims(), json!({"sub": "root"})).to_string()),
        seg[2]
    );
    let mut jku = Header::new(Algorithm::HS256);
    jku.jku = Some("https://evil.example/jwks.json".into());
    let mut x5u = Header::new(Algorithm::HS256);
    x5u.x5u = Some("https://evil.example/cert.pem".into());
    let mut crit = Header::new(Algorithm::HS256);
    crit.crit = Some(vec!["x-unknown".into()]);
    crit.extras.insert("x-unknown", true);
    let oversized = hs.sign(None, &with(claims(), json!({"pad": "x".repeat(9000)})));
    let cases: Vec<(&str, String, AuthResult)> = vec![
        (
            "expired",
            hs.sign(None, &with(claims(), json!({"exp": n - 3600}))),
            AuthResult::Expired,
        ),
        (
            "nbf in the future",
            hs.sign(None, &with(claims(), json!({"nbf": n + 3600}))),
            AuthResult::Invalid,
        ),
        (
            "iat in the future",
            hs.sign(None, &with(claims(), json!({"iat": n + 3600}))),
            AuthResult::Invalid,
        ),
        (
            "wrong iss",
            hs.sign(None, &with(claims(), json!({"iss": "https://evil.test/"}))),
            AuthResult::Invalid,
        ),
        (
            "wrong aud",
            hs.sign(None, &with(claims(), json!({"aud": "other-app"}))),
            AuthResult::Invalid,
        ),
        (
            "missing sub",
            hs.sign(None, &with(claims(), json!({"sub": null}))),
            AuthResult::Invalid,
        ),
        ("tampered payload", tampered, AuthResult::Invalid),
        (
            "wrong key",
            other_rsa.sign(None, &rsa_claims),
            AuthResult::Invalid,
        ),
        ("alg none", unsigned(&claims()), AuthResult::Invalid),
        (
            "alg none with a signature",
            raw_hmac(&json!({"alg": "none"}), &claims(), SECRET.as_bytes()),
            AuthResult::Invalid,
        ),
        (
            "HS256 keyed with the RSA public key PEM",
            Key::hmac(Algorithm::HS256, rsa.public_pem.as_bytes()).sign(None, &rsa_claims),
            AuthResult::Invalid,
        ),
        (
            "unknown kid",
            ec.sign(Some("k2"), &ec_claims),
            AuthResult::Invalid,
        ),
        (
            "algorithm outside the allowlist",
            rsa.sign_with(&Header::new(Algorithm::PS256), &rsa_claims),
            AuthResult::Invalid,
        ),
        (
            "jku header",
            hs.sign_with(&jku, &claims()),
            AuthResult::Invalid,
        ),
        (
            "x5u header",
            hs.sign_with(&x5u, &claims()),
            AuthResult::Invalid,
        ),
        (
            "jwk header",
            raw_hmac(
                &json!({"alg": "HS256", "jwk": ec.jwk}),
                &claims(),
                SECRET.as_bytes(),
            ),
            AuthResult::Invalid,
        ),
        (
            "unknown crit",
            hs.sign_with(&crit, &claims()),
            AuthResult::Invalid,
        ),
        (
            "malformed base64",
            format!("{}.{}!.{}", seg[0], seg[1], seg[2]),
            AuthResult::Invalid,
        ),
        ("garbage", "not-a-token-at-all".into(), AuthResult::Invalid),
        (
            "two segments",
            format!("{}.{}", seg[0], seg[1]),
            AuthResult::Invalid,
        ),
        (
            "four segments",
            format!("{good}.{}", seg[2]),
            AuthResult::Invalid,
        ),
        ("oversized", oversized, AuthResult::Invalid),
    ];
    let mut expected_invalid = 0;
    for (what, token, result) in &cases {
        let before = auth_count(&gw, *result);
        let r = get_bearer(&gw, "/private", token, &[]).await;
        assert_invalid_token(&r, token, what);
        assert_eq!(auth_count(&gw, *result), before + 1, "{what}: metric");
        if *result == AuthResult::Invalid {
            expected_invalid += 1;
        }
    }
    assert_eq!(auth_count(&gw, AuthResult::Invalid), expected_invalid);
    assert_eq!(b.count(), 0, "a refused request reached the backend");
    // The valid tokens of the same issuers pass: the refusals were not
    // a misconfiguration.
    for t in [
        good,
        rsa.sign(None, &rsa_claims),
        ec.sign(Some("k1"), &ec_claims),
    ] {
        assert_eq!(get_bearer(&gw, "/", &t, &[]).await.status, 200);
    }
    gw.stop().await;
}

/// `leeway` covers clock skew on exp, nbf and iat, and no more.
#[tokio::test]
async fn leeway_is_honoured_both_ways() {
    let b = Backend::start("b1").await;
    let jwt = format!("{}leeway = \"60s\"\n", hs_issuer());
    let gw = Gw::start(&config(&b, JWT_ROUTE, &jwt)).await;
    let hs = hs_key();
    let n = now();
    let status = |c: Value| {
        let t = hs.sign(None, &with(claims(), c));
        let gw = &gw;
        async move { get_bearer(gw, "/", &t, &[]).await.status }
    };
    assert_eq!(
        status(json!({"exp": n - 30})).await,
        200,
        "expired within leeway"
    );
    assert_eq!(
        status(json!({"exp": n - 90})).await,
        401,
        "expired beyond leeway"
    );
    assert_eq!(
        status(json!({"nbf": n + 30})).await,
        200,
        "nbf within leeway"
    );
    assert_eq!(
        status(json!({"nbf": n + 90})).await,
        401,
        "nbf beyond leeway"
    );
    assert_eq!(
        status(json!({"iat": n + 30})).await,
        200,
        "iat within leeway"
    );
    assert_eq!(
        status(json!({"iat": n + 90})).await,
        401,
        "iat beyond leeway"
    );
    gw.stop().await;
}

/// No token: `Bearer realm`, or the login page for a browser; a bad
/// token: `invalid_token` for an API client.
#[tokio::test]
async fn missing_or_bad_tokens_get_401_or_the_login_page_by_accept() {
    let b = Backend::start("b1").await;
    let routes = "[[routes]]\nname = \"auto\"\npath_prefix = \"/auto\"\nupstream = \"app\"\nmethods = [\"jwt\"]\n\
                  [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\nmethods = [\"jwt\"]\non_unauthenticated = \"401\"\n\
                  [[routes]]\nname = \"web\"\npath_prefix = \"/web\"\nupstream = \"app\"\nmethods = [\"jwt\"]\non_unauthenticated = \"redirect\"\n";
    let gw = Gw::start(&config(&b, routes, &hs_issuer())).await;
    let html = [("accept", "text/html,application/xhtml+xml")];
    let c = gw.plain();

    let r = c.get("/auto/x?y=1").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );
    let r = c.get_with("/auto/x?y=1", &html).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/.gatehouse/login?rd=%2Fauto%2Fx%3Fy%3D1")
    );
    let r = c.get_with("/api/x", &html).await;
    assert_eq!(r.status, 401);
    let r = c.get("/web/x").await;
    assert_eq!(r.status, 302);
    // A bad token: 401 invalid_token for APIs, the login page for browsers.
    let bad = hs_key().sign(None, &with(claims(), json!({"exp": now() - 3600})));
    assert_invalid_token(
        &get_bearer(&gw, "/auto/x", &bad, &[]).await,
        &bad,
        "expired",
    );
    let r = get_bearer(&gw, "/auto/x", &bad, &html).await;
    assert_eq!(r.status, 302);
    assert!(r.header("www-authenticate").is_none());
    // Not a Bearer credential at all: treated as missing.
    let r = c
        .get_with("/api/x", &[("authorization", "Basic YWxpY2U6cHc=")])
        .await;
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );
    assert_eq!(auth_count(&gw, AuthResult::Missing), 5);
    assert_eq!(b.count(), 0);
    gw.stop().await;
}

/// `optional`: no token is anonymous, a bad token is still refused.
#[tokio::test]
async fn optional_routes_take_anonymous_callers_but_not_bad_tokens() {
    let b = Backend::start("b1").await;
    let routes = "[[routes]]\nname = \"opt\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"optional\"\nmethods = [\"jwt\"]\n";
    let gw = Gw::start(&config(&b, routes, &hs_issuer())).await;
    let r = gw
        .plain()
        .get_with("/", &[("x-auth-user", "mallory")])
        .await;
    assert_eq!(r.status, 200);
    assert!(b.last().headers.get("x-auth-user").is_none());
    assert!(b.last().headers.get("x-auth-method").is_none());
    let bad = hs_key().sign(None, &with(claims(), json!({"aud": "nope"})));
    assert_invalid_token(&get_bearer(&gw, "/", &bad, &[]).await, &bad, "bad aud");
    let good = hs_key().sign(None, &claims());
    assert_eq!(get_bearer(&gw, "/", &good, &[]).await.status, 200);
    assert_eq!(b.last().headers["x-auth-user"], "alice");
    gw.stop().await;
}
