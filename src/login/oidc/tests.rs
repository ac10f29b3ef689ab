use super::callback::{email_allowed, email_unverified};
use super::provider::{check_document, ClientAuth, DiscoveryError};
use super::state::{
    clear_cookie, pkce_challenge, random_token, set_cookie, CookieError, FlowState,
};
use super::*;
use crate::config::sessions::Sessions as SessionsConfig;
use crate::config::{load_str, Config};
use crate::cookies::set_cookie_parts as parts;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::sync::Arc;

const ROOT: &[u8] = b"0123456789abcdef0123456789abcdef";

fn flow() -> FlowState {
    FlowState {
        provider: "corp".into(),
        state: random_token(),
        nonce: random_token(),
        verifier: random_token(),
        rd: "/app?x=1".into(),
        redirect_uri: "https://app.example.com/.gatehouse/callback".into(),
        expires: 1_700_000_600,
    }
}

fn mac() -> Mac {
    Mac::derive(ROOT, state::MAC_PURPOSE)
}

#[test]
fn state_cookies_round_trip_and_refuse_tampering_other_keys_and_age() {
    let f = flow();
    let v = f.encode(&mac());
    assert!(v.len() < 1024, "{}", v.len());
    assert_eq!(FlowState::decode(&v, &mac(), 1_700_000_000), Ok(f.clone()));
    // Another server secret, or the affinity key of the same secret.
    let other = Mac::derive(b"another root secret of 32 bytes!", state::MAC_PURPOSE);
    assert_eq!(
        FlowState::decode(&v, &other, 1_700_000_000),
        Err(CookieError::BadSignature)
    );
    let affinity = Mac::derive(ROOT, "affinity");
    assert_eq!(
        FlowState::decode(&v, &affinity, 1_700_000_000),
        Err(CookieError::BadSignature)
    );
    // A payload changed under a kept signature.
    let (payload, tag) = v.split_once('.').unwrap();
    let mut forged = f.clone();
    forged.rd = "https://evil.example/".into();
    let forged_payload = forged.encode(&mac());
    let (fp, _) = forged_payload.split_once('.').unwrap();
    assert_eq!(
        FlowState::decode(&format!("{fp}.{tag}"), &mac(), 1_700_000_000),
        Err(CookieError::BadSignature)
    );
    assert_eq!(
        FlowState::decode(payload, &mac(), 1_700_000_000),
        Err(CookieError::Malformed)
    );
    assert_eq!(
        FlowState::decode("", &mac(), 1_700_000_000),
        Err(CookieError::Malformed)
    );
    assert_eq!(
        FlowState::decode(&v, &mac(), 1_700_000_600),
        Err(CookieError::Expired)
    );
}

#[test]
fn state_cookie_attributes_follow_the_spec() {
    let cfg = SessionsConfig::default();
    let c = set_cookie(&cfg, "/.gatehouse", "v");
    assert_eq!(
        parts(&c),
        parts("gatehouse_oidc=v; Max-Age=600; Path=/.gatehouse; HttpOnly; SameSite=Lax; Secure")
    );
    // Lax even when sessions are Strict; Secure only per cookie_secure.
    let cfg = SessionsConfig {
        cookie_secure: false,
        cookie_same_site: crate::config::sessions::SameSite::Strict,
        ..SessionsConfig::default()
    };
    let c = clear_cookie(&cfg, "/gh");
    assert_eq!(
        parts(&c),
        parts("gatehouse_oidc=; Max-Age=0; Path=/gh; HttpOnly; SameSite=Lax")
    );
}

#[test]
fn pkce_s256_matches_rfc_7636_appendix_b() {
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let t = random_token();
    assert_eq!(t.len(), 43);
    assert_ne!(t, random_token());
}

#[test]
fn email_domains_match_exactly_after_the_only_at() {
    let d = vec!["example.com".to_string()];
    assert!(email_allowed(&d, Some("alice@example.com")));
    assert!(email_allowed(&d, Some("Alice@EXAMPLE.com")));
    assert!(!email_allowed(&d, Some("alice@sub.example.com")));
    assert!(!email_allowed(&d, Some("alice@example.com.evil.net")));
    assert!(!email_allowed(&d, Some("alice@evilexample.com")));
    assert!(!email_allowed(&d, Some("example.com")));
    assert!(!email_allowed(&d, Some("@example.com")));
    assert!(!email_allowed(&d, Some("a@example.com@evil.net")));
    // A quoted local part may hold an `@` (RFC 5321), but a backend that
    // splits at the first one reads the domain `evil.net"`: refused.
    assert!(!email_allowed(&d, Some("\"a@evil.net\"@example.com")));
    assert!(!email_allowed(&d, Some("a@@example.com")));
    assert!(!email_allowed(&d, None));
    let claims = |v: Value| v.as_object().unwrap().clone();
    assert!(email_unverified(&claims(json!({"email_verified": false}))));
    assert!(email_unverified(&claims(
        json!({"email_verified": "false"})
    )));
    assert!(!email_unverified(&claims(json!({"email_verified": true}))));
    assert!(!email_unverified(&claims(
        json!({"email_verified": "True"})
    )));
    assert!(!email_unverified(&claims(json!({}))));
    // Present but not a yes: not verified.
    for v in [json!(null), json!(0), json!("no"), json!(""), json!([true])] {
        assert!(
            email_unverified(&claims(json!({ "email_verified": v }))),
            "{v}"
        );
    }
}

fn config(issuer: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[oidc]]\nname = \"corp\"\nissuer = \"{issuer}\"\nclient_id = \"gate house\"\nclient_secret = \"s\"\n\
         scopes = [\"openid\", \"email\", \"groups\"]\n"
    );
    load_str(&text, &dir.path().join("g.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn doc(issuer: &str, extra: Value) -> Vec<u8> {
    let mut d = json!({
        "issuer": issuer,
        "authorization_endpoint": "https://idp.example.com/auth?tenant=x",
        "token_endpoint": "https://idp.example.com/token",
        "jwks_uri": "https://idp.example.com/keys",
        "userinfo_endpoint": "https://idp.example.com/userinfo",
        "response_types_supported": ["code"],
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            d.as_object_mut().unwrap().remove(k);
        } else {
            d[k] = v.clone();
        }
    }
    d.to_string().into_bytes()
}

#[test]
fn discovery_documents_are_checked_against_the_configured_issuer() {
    let cfg = config("https://idp.example.com/");
    let p = &cfg.oidc[0];
    // Trailing slash aside, the issuer must be the configured one.
    let c = check_document(p, &doc("https://idp.example.com", json!({}))).unwrap();
    assert_eq!(c.issuer, "https://idp.example.com");
    assert_eq!(c.client_auth, ClientAuth::Basic);
    assert_eq!(c.algorithms, vec![Algorithm::RS256]);
    assert!(c.end_session_endpoint.is_none());
    assert!(!c.pkce_unadvertised);
    let e = check_document(p, &doc("https://other.example.com/", json!({}))).unwrap_err();
    assert!(e.to_string().contains("not the configured"), "{e}");
    let e = check_document(p, &doc("https://idp.example.com/x", json!({}))).unwrap_err();
    assert!(e.to_string().contains("not the configured"), "{e}");
    // Endpoints: https only (http on loopback).
    let e = check_document(
        p,
        &doc(
            "https://idp.example.com/",
            json!({"token_endpoint": "http://idp.example.com/token"}),
        ),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            DiscoveryError::Endpoint {
                name: "token_endpoint",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("token_endpoint"), "{e}");
    let e = check_document(
        p,
        &doc("https://idp.example.com/", json!({"jwks_uri": null})),
    )
    .unwrap_err();
    assert!(e.to_string().contains("jwks_uri"), "{e}");
    assert!(check_document(p, b"<html>").is_err());
}

#[test]
fn client_authentication_and_algorithms_follow_the_document() {
    let cfg = config("https://idp.example.com/");
    let p = &cfg.oidc[0];
    let with = |extra: Value| check_document(p, &doc("https://idp.example.com/", extra));
    let c = with(json!({"token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"]})).unwrap();
    assert_eq!(c.client_auth, ClientAuth::Basic, "basic is preferred");
    let c = with(
        json!({"token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_post"]}),
    )
    .unwrap();
    assert_eq!(c.client_auth, ClientAuth::Post);
    let e =
        with(json!({"token_endpoint_auth_methods_supported": ["private_key_jwt"]})).unwrap_err();
    assert!(matches!(e, DiscoveryError::ClientAuth(_)), "{e:?}");
    assert!(e.to_string().contains("neither"), "{e}");
    let c = with(json!({"id_token_signing_alg_values_supported": ["HS256", "ES256", "RS256", "none", "XY1"]})).unwrap();
    assert_eq!(c.algorithms, vec![Algorithm::ES256, Algorithm::RS256]);
    let e = with(json!({"id_token_signing_alg_values_supported": ["HS256", "none"]})).unwrap_err();
    assert!(e.to_string().contains("public-key"), "{e}");
    let c = with(json!({"code_challenge_methods_supported": ["plain"], "end_session_endpoint": "https://idp.example.com/logout"})).unwrap();
    assert!(c.pkce_unadvertised);
    assert_eq!(
        c.end_session_endpoint.as_deref(),
        Some("https://idp.example.com/logout")
    );
}

#[test]
fn the_authorization_request_carries_every_parameter() {
    let cfg = config("https://idp.example.com/");
    let p = cfg.oidc[0].clone();
    let checked = check_document(&p, &doc("https://idp.example.com/", json!({}))).unwrap();
    let keys = Arc::new(crate::auth::keys::jwks::RemoteKeys::new(
        "t",
        crate::config::JwksSource {
            location: crate::config::JwksLocation::Url {
                url: checked.jwks_uri.clone(),
                tls: p.tls.clone(),
            },
            refresh: std::time::Duration::from_secs(600),
            min_refetch: std::time::Duration::from_secs(1),
        },
        None,
    ));
    let meta = Provider::new(p.clone()).assemble(checked, keys);
    let f = flow();
    let url = authorization_url(&p, &meta, &f);
    let (base, query) = url.split_once('?').unwrap();
    assert_eq!(base, "https://idp.example.com/auth");
    let q: std::collections::BTreeMap<String, String> = crate::login::parse_form(query.as_bytes());
    assert_eq!(q["tenant"], "x", "the endpoint's own query is kept");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "gate house");
    assert_eq!(q["redirect_uri"], f.redirect_uri);
    assert_eq!(q["scope"], "openid email groups");
    assert_eq!(q["state"], f.state);
    assert_eq!(q["nonce"], f.nonce);
    assert_eq!(q["code_challenge"], pkce_challenge(&f.verifier));
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(!url.contains(&f.verifier), "the verifier never leaves");
    assert!(!query.contains(' ') && !query.contains('+'), "{query}");
}

#[test]
fn query_strings_are_appended_properly() {
    assert_eq!(
        with_query("https://a/x", &[("k", "a b")]),
        "https://a/x?k=a%20b"
    );
    assert_eq!(
        with_query("https://a/x?t=1", &[("k", "v"), ("l", "/")]),
        "https://a/x?t=1&k=v&l=%2F"
    );
    assert_eq!(with_query("https://a/x?", &[("k", "v")]), "https://a/x?k=v");
}

#[test]
fn hosts_fit_for_a_redirect_uri() {
    assert!(valid_host("app.example.com"));
    assert!(valid_host("127.0.0.1:8443"));
    assert!(valid_host("[::1]:8443"));
    assert!(!valid_host(""));
    assert!(!valid_host("evil.com/x"));
    assert!(!valid_host("a b"));
    assert!(!valid_host("user@host"));
}
