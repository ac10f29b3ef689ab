use super::keys::Key;
use super::*;
use jsonwebtoken::{Algorithm, Header};

/// One issuer per key type, each with the algorithms that fit it; a token
/// of every algorithm passes and the backend learns who called.
#[tokio::test]
async fn every_algorithm_family_is_accepted() {
    let b = Backend::start("b1").await;
    let rsa = Key::rsa(Algorithm::RS256);
    let p256 = Key::ec(Algorithm::ES256);
    let p384 = Key::ec(Algorithm::ES384);
    let ed = Key::ed25519();
    let dir = tempdir();
    for (f, k) in [
        ("rsa.pem", &rsa),
        ("p256.pem", &p256),
        ("p384.pem", &p384),
        ("ed.pem", &ed),
    ] {
        std::fs::write(dir.path().join(f), &k.public_pem).unwrap();
    }
    let issuer = |name: &str, algs: &str, key: &str| {
        format!("[[jwt]]\nname = \"{name}\"\nissuer = \"https://{name}.test/\"\nalgorithms = [{algs}]\n{key}\n")
    };
    let jwt = [
        issuer(
            "hs",
            "\"HS256\", \"HS384\", \"HS512\"",
            &format!("secret = \"{SECRET}\""),
        ),
        issuer(
            "rsa",
            "\"RS256\", \"RS384\", \"RS512\", \"PS256\", \"PS384\", \"PS512\"",
            "public_key_file = \"rsa.pem\"",
        ),
        issuer("es256", "\"ES256\"", "public_key_file = \"p256.pem\""),
        issuer("es384", "\"ES384\"", "public_key_file = \"p384.pem\""),
        issuer("eddsa", "\"EdDSA\"", "public_key_file = \"ed.pem\""),
    ]
    .concat();
    let gw = Gw::start_in(dir, &config(&b, JWT_ROUTE, &jwt)).await;
    let hs = Key::hmac(Algorithm::HS256, SECRET.as_bytes());
    let cases: Vec<(&str, &Key, Algorithm)> = vec![
        ("hs", &hs, Algorithm::HS256),
        ("hs", &hs, Algorithm::HS384),
        ("hs", &hs, Algorithm::HS512),
        ("rsa", &rsa, Algorithm::RS256),
        ("rsa", &rsa, Algorithm::RS384),
        ("rsa", &rsa, Algorithm::RS512),
        ("rsa", &rsa, Algorithm::PS256),
        ("rsa", &rsa, Algorithm::PS384),
        ("rsa", &rsa, Algorithm::PS512),
        ("es256", &p256, Algorithm::ES256),
        ("es384", &p384, Algorithm::ES384),
        ("eddsa", &ed, Algorithm::EdDSA),
    ];
    for (name, key, alg) in cases {
        let c = with(
            claims(),
            json!({"iss": format!("https://{name}.test/"), "sub": format!("{alg:?}-user")}),
        );
        let t = key.sign_with(&Header::new(alg), &c);
        let r = get_bearer(&gw, "/hello", &t, &[]).await;
        assert_eq!(r.status, 200, "{alg:?}: {}", r.text());
        assert_eq!(b.last().headers["x-auth-user"], format!("{alg:?}-user"));
        assert_eq!(b.last().headers["x-auth-method"], "jwt");
    }
    assert_eq!(auth_count(&gw, AuthResult::Ok), 12);
    gw.stop().await;
}

/// A repeated token costs a cache lookup: the second request is a hit.
#[tokio::test]
async fn a_repeated_token_is_served_from_the_cache() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&config(&b, JWT_ROUTE, &hs_issuer())).await;
    let t = hs_key().sign(None, &claims());
    for _ in 0..3 {
        assert_eq!(get_bearer(&gw, "/", &t, &[]).await.status, 200);
    }
    let m = &gw.running().gateway.metrics;
    assert_eq!(
        m.jwt_cache_hits.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let text = Client::plain(gw.admin()).get("/metrics").await.text();
    assert!(text.contains("gatehouse_jwt_cache_hits_total 2"), "{text}");
    assert!(
        text.contains("gatehouse_auth_total{method=\"jwt\",result=\"ok\"} 3"),
        "{text}"
    );
    gw.stop().await;
}
