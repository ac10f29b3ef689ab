//! JWT parsing and validation (`src/auth/jwt.rs`, `claims.rs`): the
//! `Verifier` of two issuers, one HMAC (HS256/HS384, audience `app`,
//! header or cookie) and one ES256 (public key file, header only).
//!
//! Input: a mode byte, a source byte, two bytes of clock offset, then
//! either a raw token (mode 0) or a JOSE header and a claims set separated
//! by 0xFF, which the target signs itself: with the right HMAC secret, the
//! right EC key, a wrong secret, the EC public key used as an HMAC secret
//! (algorithm confusion), or not at all.
//!
//! Checked: an accepted token meets every rule on its own terms (checked
//! here independently: structure, header, issuer, algorithm allowlist and
//! key type, signature with the issuer's real key, exp/nbf/iat with
//! leeway, audience, required claims, source); forged signatures are never
//! accepted; the answer is the same the second time (verified-token cache).
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::FutureExt;
use gatehouse::auth::jwt::{Issuers, TokenCache, Verifier};
use gatehouse::revocation::Revocations;
use gatehouse::config::TokenSource;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use std::sync::OnceLock;

const SECRET: &str = "fuzzing-hmac-secret:0123456789abcdef0123456789abcdef0123456789ab";
const HS_ISS: &str = "https://hs.test/";
const EC_ISS: &str = "https://ec.test/";
const BASE_NOW: u64 = 1_700_000_000;
const LEEWAY: f64 = 30.0;

struct World {
    issuers: Issuers,
    revocations: Revocations,
    metrics: gatehouse::metrics::Metrics,
    ec_private: EncodingKey,
    ec_public_pem: String,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let kp = rcgen::KeyPair::generate().unwrap();
        let ec_public_pem = kp.public_key_pem();
        std::fs::write(dir.path().join("ec.pem"), &ec_public_pem).unwrap();
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[jwt]]\nname = \"hs\"\nissuer = \"{HS_ISS}\"\naudiences = [\"app\"]\nalgorithms = [\"HS256\", \"HS384\"]\n\
             secret = \"{SECRET}\"\ntoken_sources = [\"header:Authorization\", \"cookie:tok\"]\n\
             claims_map = {{ email = \"email\", groups = \"groups\", name = \"name\", dept = \"org.dept\" }}\n\
             [[jwt]]\nname = \"ec\"\nissuer = \"{EC_ISS}\"\nalgorithms = [\"ES256\"]\npublic_key_file = \"ec.pem\"\n\
             required_claims = [\"sub\", \"exp\", \"nbf\"]\n"
        );
        let cfg = gatehouse::config::load_str(&toml, &dir.path().join("g.toml"))
            .unwrap_or_else(|e| panic!("fuzz config: {e}"));
        World {
            issuers: Issuers::build(&cfg.jwt, None, &Default::default()),
            revocations: Revocations::default(),
            metrics: Default::default(),
            ec_private: EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
            ec_public_pem,
            _dir: dir,
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Signer {
    Raw,
    HsRight,
    EsRight,
    HsWrongSecret,
    EcPublicKeyAsHmacSecret,
    Unsigned,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn number(c: &Map<String, Value>, k: &str) -> Result<Option<f64>, ()> {
    match c.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(()),
        Some(_) => Err(()),
    }
}

/// Everything an accepted token must satisfy, checked from scratch.
fn assert_acceptable(w: &World, token: &str, source: &TokenSource, now: u64, sub: &str) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a token that is not three parts");
    assert!(
        parts.iter().all(|p| !p.is_empty()),
        "accepted an empty part"
    );
    let header = object(parts[0]).expect("accepted a header that is not a JSON object");
    let claims = object(parts[1]).expect("accepted claims that are not a JSON object");
    for k in ["jku", "x5u", "jwk", "crit"] {
        assert!(!header.contains_key(k), "accepted a header with {k}");
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .expect("accepted without alg");
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .expect("accepted without iss");
    let (allowed, key, required): (&[&str], DecodingKey, &[&str]) = match iss {
        HS_ISS => {
            assert!(matches!(
                source,
                TokenSource::Bearer | TokenSource::Cookie(_)
            ));
            (
                &["HS256", "HS384"],
                DecodingKey::from_secret(SECRET.as_bytes()),
                &["sub", "exp"],
            )
        }
        EC_ISS => {
            assert_eq!(
                *source,
                TokenSource::Bearer,
                "ec tokens come from the header only"
            );
            (
                &["ES256"],
                DecodingKey::from_ec_pem(w.ec_public_pem.as_bytes()).unwrap(),
                &["sub", "exp", "nbf"],
            )
        }
        other => panic!("accepted issuer {other:?}"),
    };
    assert!(allowed.contains(&alg), "accepted alg {alg} for {iss}");
    let alg: Algorithm = alg.parse().unwrap();
    let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
    assert_eq!(
        jsonwebtoken::crypto::verify(parts[2], signing_input.as_bytes(), &key, alg).ok(),
        Some(true),
        "accepted a signature that does not verify"
    );
    for r in required {
        assert!(
            claims.get(*r).is_some_and(|v| !v.is_null()),
            "accepted without {r}"
        );
    }
    let now = now as f64;
    let exp = number(&claims, "exp")
        .expect("exp not a number")
        .expect("no exp");
    assert!(now < exp + LEEWAY, "accepted an expired token");
    if let Some(nbf) = number(&claims, "nbf").expect("nbf not a number") {
        assert!(now + LEEWAY >= nbf, "accepted before nbf");
    }
    if let Some(iat) = number(&claims, "iat").expect("iat not a number") {
        assert!(iat <= now + LEEWAY, "accepted iat in the future");
    }
    if iss == HS_ISS {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == "app",
            Some(Value::Array(l)) => l.iter().any(|a| a.as_str() == Some("app")),
            _ => false,
        };
        assert!(ok, "accepted a wrong audience");
    }
    assert_eq!(
        Some(sub),
        claims.get("sub").and_then(Value::as_str),
        "identity sub"
    );
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 4 {
        return;
    }
    let w = world();
    let signer = match input[0] % 8 {
        0 | 6 | 7 => Signer::Raw,
        1 => Signer::HsRight,
        2 => Signer::EsRight,
        3 => Signer::HsWrongSecret,
        4 => Signer::EcPublicKeyAsHmacSecret,
        _ => Signer::Unsigned,
    };
    let source = match input[1] % 3 {
        0 | 1 => TokenSource::Bearer,
        _ => TokenSource::Cookie("tok".into()),
    };
    let offset = i16::from_le_bytes([input[2], input[3]]);
    let now = BASE_NOW.saturating_add_signed(i64::from(offset));
    let rest = &input[4..];

    let token = if signer == Signer::Raw {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_string(),
            Err(_) => return,
        }
    } else {
        let at = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
        let (h, c) = (&rest[..at], rest.get(at + 1..).unwrap_or_default());
        let signing_input = format!("{}.{}", b64(h), b64(c));
        let alg = || {
            serde_json::from_slice::<Value>(h)
                .ok()
                .and_then(|v| v.get("alg")?.as_str()?.parse::<Algorithm>().ok())
        };
        let sign = |key: &EncodingKey, alg: Algorithm| {
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, alg).ok()
        };
        let hs_alg = match alg() {
            Some(a @ (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)) => a,
            _ => Algorithm::HS256,
        };
        let signature = match signer {
            Signer::HsRight => sign(&EncodingKey::from_secret(SECRET.as_bytes()), hs_alg),
            Signer::EsRight => sign(&w.ec_private, Algorithm::ES256),
            Signer::HsWrongSecret => sign(&EncodingKey::from_secret(b"not the secret"), hs_alg),
            Signer::EcPublicKeyAsHmacSecret => sign(
                &EncodingKey::from_secret(w.ec_public_pem.as_bytes()),
                hs_alg,
            ),
            Signer::Unsigned | Signer::Raw => Some(String::new()),
        };
        let Some(signature) = signature else { return };
        format!("{signing_input}.{signature}")
    };

    // A cache per input: one shared across inputs would see the clock jump
    // back and forth, which a running gateway's clock does not.
    let cache = TokenCache::with_capacity(16);
    let v = Verifier {
        issuers: &w.issuers,
        cache: &cache,
        revocations: &w.revocations,
        metrics: &w.metrics,
    };
    // Static keys: verification never waits, so one poll completes it.
    let run = |src: &TokenSource| {
        v.verify(src, &token, now)
            .now_or_never()
            .expect("verification with static keys completes at once")
    };
    let first = run(&source);
    let second = run(&source);
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(a.sub, b.sub),
        (Err(a), Err(b)) => assert_eq!(a, b, "a different answer the second time"),
        _ => panic!("a different answer the second time: {first:?} then {second:?}"),
    }
    if let Ok(id) = &first {
        assert!(
            matches!(signer, Signer::Raw | Signer::HsRight | Signer::EsRight),
            "a forged signature ({signer:?}) was accepted"
        );
        assert_acceptable(w, &token, &source, now, &id.sub);
    }
    // The same token from the cookie: only the HMAC issuer takes cookies.
    if let Ok(id) = run(&TokenSource::Cookie("tok".into())) {
        assert_acceptable(w, &token, &TokenSource::Cookie("tok".into()), now, &id.sub);
    }
});
