use super::claims::{claim_at, render};
use super::*;
use crate::auth::testkeys::TestKey;
use crate::config::{load_str, Config};
use jsonwebtoken::Header;
use serde_json::json;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://idp.test/";

struct Fixture {
    cfg: Config,
    issuers: Issuers,
    cache: TokenCache,
    revocations: Revocations,
    metrics: Metrics,
    _dir: tempfile::TempDir,
}

/// `jwt` is the body of one `[[jwt]]` table after name and issuer.
fn fixture(jwt: &str, files: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    for (n, t) in files {
        std::fs::write(dir.path().join(n), t).unwrap();
    }
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[upstreams]]\nname = \"app\"\nbackends = [\"127.0.0.1:1\"]\n\
         [[routes]]\nname = \"r\"\nupstream = \"app\"\nmethods = [\"jwt\"]\n\
         [[jwt]]\nname = \"idp\"\nissuer = \"{ISS}\"\n{jwt}"
    );
    let cfg = load_str(&text, &dir.path().join("g.toml")).unwrap_or_else(|e| panic!("{e}"));
    let issuers = Issuers::build(&cfg.jwt, None, &Default::default());
    Fixture {
        cfg,
        issuers,
        cache: TokenCache::default(),
        revocations: Revocations::default(),
        metrics: Metrics::default(),
        _dir: dir,
    }
}

fn hs256() -> Fixture {
    fixture(
        &format!(
            "algorithms = [\"HS256\"]\nsecret = \"{}\"\naudiences = [\"app\"]\n\
             claims_map = {{ groups = \"realm_access.roles\", tenant = \"org.id\" }}\n",
            std::str::from_utf8(SECRET).unwrap()
        ),
        &[],
    )
}

impl Fixture {
    fn verifier(&self) -> Verifier<'_> {
        Verifier {
            issuers: &self.issuers,
            cache: &self.cache,
            revocations: &self.revocations,
            metrics: &self.metrics,
        }
    }

    fn verify_at(&self, token: &str, now: u64) -> Result<Arc<Identity>, Reject> {
        block_on(self.verifier().verify(&TokenSource::Bearer, token, now))
    }

    fn verify(&self, token: &str) -> Result<Arc<Identity>, Reject> {
        self.verify_at(token, NOW)
    }

    fn hits(&self) -> u64 {
        self.metrics.jwt_cache_hits.load(Relaxed)
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "alice", "aud": "app", "exp": NOW + 600, "iat": NOW - 10})
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn hmac() -> TestKey {
    TestKey::hmac(Algorithm::HS256, SECRET)
}

/// A compact token from raw header and claims JSON, signed with HS256.
fn raw_token(header: &Value, claims: &Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{h}.{p}");
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{input}.{sig}")
}

#[test]
fn a_valid_token_is_verified_once_then_served_from_the_cache() {
    let f = hs256();
    let t = hmac().sign(None, &claims());
    let id = f.verify(&t).unwrap();
    assert_eq!(id.sub, "alice");
    assert_eq!(id.method, crate::auth::Method::Jwt);
    assert_eq!(id.expires_at, Some(NOW + 600));
    assert_eq!(f.hits(), 0);
    assert_eq!(f.cache.len(), 1);
    let again = f.verify(&t).unwrap();
    assert!(Arc::ptr_eq(&id, &again));
    assert_eq!(f.hits(), 1);
}

#[test]
fn time_claims_are_checked_with_leeway_both_ways() {
    let f = hs256();
    let k = hmac();
    let ok = |c: Value| f.verify(&k.sign(None, &with(claims(), c)));
    // Leeway is 30 s by default.
    assert!(ok(json!({"exp": NOW - 20})).is_ok());
    assert_eq!(ok(json!({"exp": NOW - 30})).unwrap_err(), Reject::Expired);
    assert_eq!(ok(json!({"exp": NOW - 3600})).unwrap_err(), Reject::Expired);
    assert!(ok(json!({"nbf": NOW + 20})).is_ok());
    assert_eq!(
        ok(json!({"nbf": NOW + 40})).unwrap_err(),
        Reject::NotYetValid
    );
    assert!(ok(json!({"iat": NOW + 20})).is_ok());
    assert_eq!(
        ok(json!({"iat": NOW + 40})).unwrap_err(),
        Reject::IssuedInFuture
    );
    assert!(ok(json!({"exp": (NOW + 60) as f64 + 0.5})).is_ok());
    assert_eq!(
        ok(json!({"exp": "tomorrow"})).unwrap_err(),
        Reject::BadClaims
    );
    assert_eq!(ok(json!({"nbf": [1]})).unwrap_err(), Reject::BadClaims);
}

#[test]
fn audience_string_or_list_must_contain_a_configured_one() {
    let f = hs256();
    let k = hmac();
    let ok = |c: Value| f.verify(&k.sign(None, &with(claims(), c)));
    assert!(ok(json!({"aud": ["other", "app"]})).is_ok());
    assert_eq!(
        ok(json!({"aud": "other"})).unwrap_err(),
        Reject::WrongAudience
    );
    assert_eq!(
        ok(json!({"aud": ["other"]})).unwrap_err(),
        Reject::WrongAudience
    );
    assert_eq!(ok(json!({"aud": null})).unwrap_err(), Reject::WrongAudience);
    // Without configured audiences, `aud` is not looked at.
    let g = fixture(
        &format!(
            "algorithms = [\"HS256\"]\nsecret = \"{}\"\n",
            std::str::from_utf8(SECRET).unwrap()
        ),
        &[],
    );
    assert!(g
        .verify(&k.sign(None, &with(claims(), json!({"aud": "anything"}))))
        .is_ok());
}

#[test]
fn required_claims_are_enforced_and_exp_can_be_made_optional() {
    let f = hs256();
    let k = hmac();
    for missing in ["sub", "exp"] {
        let t = k.sign(None, &with(claims(), json!({ missing: null })));
        assert_eq!(f.verify(&t).unwrap_err(), Reject::MissingClaim, "{missing}");
    }
    let g = fixture(
        &format!(
            "algorithms = [\"HS256\"]\nsecret = \"{}\"\nrequired_claims = [\"sub\", \"org.id\"]\n",
            std::str::from_utf8(SECRET).unwrap()
        ),
        &[],
    );
    let t = k.sign(
        None,
        &with(claims(), json!({"exp": null, "org": {"id": 7}})),
    );
    let id = g.verify(&t).unwrap();
    assert_eq!(id.expires_at, None);
    let t = k.sign(None, &with(claims(), json!({"org": {"name": "x"}})));
    assert_eq!(g.verify(&t).unwrap_err(), Reject::MissingClaim);
    // A `sub` that is not a string is not an identity.
    let t = k.sign(None, &with(claims(), json!({"sub": 42})));
    assert_eq!(f.verify(&t).unwrap_err(), Reject::BadClaims);
}

#[test]
fn dangerous_headers_and_unsigned_tokens_are_refused() {
    let f = hs256();
    let base = json!({"alg": "HS256", "typ": "JWT"});
    for (k, v) in [
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/cert")),
        ("jwk", json!({"kty": "oct", "k": "AAAA"})),
        ("crit", json!(["exp"])),
        ("crit", json!(["x-custom"])),
    ] {
        let t = raw_token(&with(base.clone(), json!({ k: v })), &claims());
        assert_eq!(f.verify(&t).unwrap_err(), Reject::UnsupportedHeader, "{k}");
    }
    for alg in ["none", "None", "NONE", "HS1", "RSA-OAEP"] {
        let t = raw_token(&json!({ "alg": alg }), &claims());
        assert_eq!(f.verify(&t).unwrap_err(), Reject::BadAlgorithm, "{alg}");
    }
    let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims().to_string());
    assert_eq!(
        f.verify(&format!("{h}.{p}.")).unwrap_err(),
        Reject::Malformed
    );
    let t = raw_token(&json!({"typ": "JWT"}), &claims());
    assert_eq!(f.verify(&t).unwrap_err(), Reject::Malformed);
    let t = raw_token(&json!({"alg": "HS256", "kid": 5}), &claims());
    assert_eq!(f.verify(&t).unwrap_err(), Reject::Malformed);
}

#[test]
fn structure_issuer_algorithm_and_signature_are_checked() {
    let f = hs256();
    let good = hmac().sign(None, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    for bad in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.@@@.###",
        &format!("{}.{}", parts[0], parts[1]),
        &format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        &format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
    ] {
        assert_eq!(f.verify(bad).unwrap_err(), Reject::Malformed, "{bad}");
    }
    // Tampered payload, signature kept.
    let evil = URL_SAFE_NO_PAD.encode(with(claims(), json!({"sub": "root"})).to_string());
    let t = format!("{}.{evil}.{}", parts[0], parts[2]);
    assert_eq!(f.verify(&t).unwrap_err(), Reject::BadSignature);
    // Wrong key.
    let other = TestKey::hmac(Algorithm::HS256, &[7u8; 64]);
    assert_eq!(
        f.verify(&other.sign(None, &claims())).unwrap_err(),
        Reject::BadSignature
    );
    // Wrong issuer, missing issuer.
    let t = hmac().sign(None, &with(claims(), json!({"iss": "https://evil/"})));
    assert_eq!(f.verify(&t).unwrap_err(), Reject::UnknownIssuer);
    let t = hmac().sign(None, &with(claims(), json!({"iss": null})));
    assert_eq!(f.verify(&t).unwrap_err(), Reject::UnknownIssuer);
    // HS384 is a fine algorithm, but not on this issuer's list.
    let k384 = TestKey::hmac(Algorithm::HS384, SECRET);
    assert_eq!(
        f.verify(&k384.sign(None, &claims())).unwrap_err(),
        Reject::AlgorithmNotAllowed
    );
    // Oversized.
    let big = hmac().sign(
        None,
        &with(claims(), json!({"pad": "x".repeat(MAX_TOKEN_BYTES)})),
    );
    assert_eq!(f.verify(&big).unwrap_err(), Reject::TooLarge);
}

#[test]
fn an_rsa_public_key_is_never_an_hmac_secret() {
    let rsa = TestKey::rsa(Algorithm::RS256);
    let f = fixture(
        "algorithms = [\"RS256\", \"PS256\"]\npublic_key_file = \"k.pem\"\n",
        &[("k.pem", &rsa.public_pem)],
    );
    assert!(f.verify(&rsa.sign(None, &claims())).is_ok());
    let ps = Header::new(Algorithm::PS256);
    assert!(f.verify(&rsa.sign_with(&ps, &claims())).is_ok());
    let other = TestKey::rsa(Algorithm::PS256);
    assert_eq!(
        f.verify(&other.sign(None, &claims())).unwrap_err(),
        Reject::BadSignature
    );
    // The classic confusion: HS256 keyed with the public PEM text.
    let confused = TestKey::hmac(Algorithm::HS256, rsa.public_pem.as_bytes());
    let t = confused.sign(None, &claims());
    assert_eq!(f.verify(&t).unwrap_err(), Reject::AlgorithmNotAllowed);
    // Even were HS256 allowed, no HMAC key exists to check it with.
    let set = KeySet::from_public_pem(rsa.public_pem.as_bytes()).unwrap();
    assert!(matches!(set.lookup(None, Algorithm::HS256), Lookup::NoFit));
}

/// A `jwks_file` verifies with the keys the config check read, at once;
/// an unknown kid reads the file again (SPEC 16), once per
/// `jwks_min_refetch`.
#[test]
fn a_jwks_file_verifies_at_once_and_an_unknown_kid_reads_it_again() {
    let ec = TestKey::ec(Algorithm::ES256);
    let ec2 = TestKey::ec(Algorithm::ES256);
    let jwks = crate::auth::testkeys::jwks;
    let f = fixture(
        "algorithms = [\"ES256\"]\njwks_file = \"k.json\"\n",
        &[("k.json", &jwks(&[ec.jwk_with("k1")]))],
    );
    let path = f._dir.path().join("k.json");
    block_on(async {
        let v = f.verifier();
        let verify = |t: String| async move { v.verify(&TokenSource::Bearer, &t, NOW).await };
        assert!(verify(ec.sign(Some("k1"), &claims())).await.is_ok());
        assert!(verify(ec.sign(None, &claims())).await.is_ok());
        f.issuers.start(&Arc::new(Metrics::default()));
        std::fs::write(&path, jwks(&[ec.jwk_with("k1"), ec2.jwk_with("k2")])).unwrap();
        assert!(verify(ec2.sign(Some("k2"), &claims())).await.is_ok());
        let started = std::time::Instant::now();
        assert_eq!(
            verify(ec.sign(Some("k3"), &claims())).await.unwrap_err(),
            Reject::UnknownKey
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "no second read within jwks_min_refetch"
        );
    });
}

#[test]
fn revocation_applies_to_cached_tokens() {
    let f = hs256();
    let k = hmac();
    let t1 = k.sign(None, &with(claims(), json!({"jti": "j-1"})));
    let t2 = k.sign(
        None,
        &with(claims(), json!({"jti": "j-2", "iat": NOW - 50})),
    );
    assert!(f.verify(&t1).is_ok());
    assert!(f.verify(&t2).is_ok());
    assert_eq!(f.cache.len(), 2);
    f.revocations.revoke_jti("j-1", NOW + 600, NOW);
    assert_eq!(f.verify(&t1).unwrap_err(), Reject::Revoked);
    assert!(f.verify(&t2).is_ok());
    // Revoke-all for alice at NOW - 50: t2 (iat NOW - 50) dies, and so
    // does one stamped within the issuer's leeway (30 s) after the mark
    // (its clock may run ahead); a token issued later lives.
    f.revocations.revoke_subject("alice", NOW - 50);
    assert_eq!(f.verify(&t2).unwrap_err(), Reject::Revoked);
    let ahead = k.sign(
        None,
        &with(claims(), json!({"jti": "j-5", "iat": NOW - 20})),
    );
    assert_eq!(f.verify(&ahead).unwrap_err(), Reject::Revoked);
    let t3 = k.sign(
        None,
        &with(claims(), json!({"jti": "j-3", "iat": NOW - 19})),
    );
    assert!(f.verify(&t3).is_ok());
    // Revoked before it was ever cached: refused on the full path too.
    let t4 = k.sign(None, &with(claims(), json!({"jti": "j-1", "iat": NOW})));
    assert_eq!(f.verify(&t4).unwrap_err(), Reject::Revoked);
}

#[test]
fn cache_entries_end_at_exp_and_with_their_issuer() {
    let f = hs256();
    let k = hmac();
    let t = k.sign(None, &with(claims(), json!({"exp": NOW + 10})));
    assert!(f.verify(&t).is_ok());
    assert!(f.verify_at(&t, NOW + 9).is_ok());
    assert_eq!(f.hits(), 1);
    // At exp the entry is gone; within leeway the token is re-verified.
    assert!(f.verify_at(&t, NOW + 10).is_ok());
    assert_eq!(f.hits(), 1);
    assert_eq!(f.verify_at(&t, NOW + 40).unwrap_err(), Reject::Expired);

    let t = k.sign(None, &claims());
    assert!(f.verify(&t).is_ok());
    // A reload with the same entry keeps the issuer, so the entry answers.
    let same = Issuers::build(&f.cfg.jwt, Some(&f.issuers), &Default::default());
    let v = Verifier {
        issuers: &same,
        ..f.verifier()
    };
    let before = f.hits();
    assert!(block_on(v.verify(&TokenSource::Bearer, &t, NOW)).is_ok());
    assert_eq!(f.hits(), before + 1);
    // A changed issuer does not answer from entries made for the old one.
    let changed = hs256();
    let v = Verifier {
        issuers: &changed.issuers,
        ..f.verifier()
    };
    assert!(block_on(v.verify(&TokenSource::Bearer, &t, NOW)).is_ok());
    assert_eq!(f.hits(), before + 1);
}

#[test]
fn the_source_must_be_one_the_issuer_takes() {
    let f = fixture(
        &format!(
            "algorithms = [\"HS256\"]\nsecret = \"{}\"\ntoken_sources = [\"cookie:tok\"]\n",
            std::str::from_utf8(SECRET).unwrap()
        ),
        &[],
    );
    let t = hmac().sign(None, &claims());
    let cookie = TokenSource::Cookie("tok".into());
    assert!(block_on(f.verifier().verify(&cookie, &t, NOW)).is_ok());
    assert_eq!(
        block_on(f.verifier().verify(&TokenSource::Bearer, &t, NOW)).unwrap_err(),
        Reject::SourceNotAccepted
    );
}

#[test]
fn identity_comes_from_the_claims_map() {
    let f = hs256();
    let t = hmac().sign(
        None,
        &with(
            claims(),
            json!({"email": "a@example.com", "name": "Alice Liddell",
                   "realm_access": {"roles": ["staff", "ops"]}, "org": {"id": 42},
                   "groups": ["ignored: groups come from realm_access.roles"]}),
        ),
    );
    let id = f.verify(&t).unwrap();
    assert_eq!(id.email.as_deref(), Some("a@example.com"));
    assert_eq!(id.name.as_deref(), Some("Alice Liddell"));
    assert_eq!(id.groups, ["staff", "ops"]);
    assert_eq!(id.field("groups").unwrap(), "staff,ops");
    assert_eq!(id.field("tenant").unwrap(), "42");
    assert_eq!(id.field("method").unwrap(), "jwt");
    assert!(id.claims.as_ref().unwrap().contains_key("realm_access"));
    // A single string is one group.
    let t = hmac().sign(
        None,
        &with(claims(), json!({"realm_access": {"roles": "solo"}})),
    );
    assert_eq!(f.verify(&t).unwrap().groups, ["solo"]);
}

#[test]
fn claim_paths_and_rendering() {
    let c = json!({
        "a": {"b": {"c": "deep"}, "n": 5}, "https://x.example/r": ["p", "q"],
        "dot.ted": "literal", "list": [1, true, null, "s", {"k": 1}], "f": 1.5
    });
    let c = c.as_object().unwrap();
    assert_eq!(claim_at(c, "a.b.c"), Some(&json!("deep")));
    assert_eq!(claim_at(c, "a.n"), Some(&json!(5)));
    assert_eq!(claim_at(c, "a.b.c.d"), None);
    assert_eq!(claim_at(c, "a.x"), None);
    assert_eq!(claim_at(c, "dot.ted"), Some(&json!("literal")));
    assert_eq!(claim_at(c, "https://x.example/r"), Some(&json!(["p", "q"])));
    assert_eq!(claim_at(c, ""), None);
    assert_eq!(render(&c["list"]).unwrap(), "1,true,s,{\"k\":1}");
    assert_eq!(render(&c["f"]).unwrap(), "1.5");
    assert_eq!(render(&json!(null)), None);
    assert_eq!(render(&json!("a\r\nb")).unwrap(), "a\r\nb");
}

#[test]
fn a_list_element_with_a_comma_is_left_out_of_the_joined_header() {
    // SPEC 16: a backend splitting on `,` must never see `admin` here.
    assert_eq!(
        render(&json!(["staff", "admin,ops", "dev"])).unwrap(),
        "staff,dev"
    );
    assert_eq!(render(&json!(["a,b"])).unwrap(), "");
    assert_eq!(render(&json!([{"x": 1, "y": 2}, "k"])).unwrap(), "k");
    let f = hs256();
    let t = hmac().sign(
        None,
        &with(
            claims(),
            json!({"realm_access": {"roles": ["staff", "admin,ops"]}}),
        ),
    );
    let id = f.verify(&t).unwrap();
    // The identity keeps the group as the issuer named it (for
    // `[routes.require] groups`); only the header leaves it out.
    assert_eq!(id.groups, ["staff", "admin,ops"]);
    assert_eq!(id.field("groups").unwrap(), "staff");
    let t = hmac().sign(
        None,
        &with(claims(), json!({"realm_access": {"roles": ["admin,ops"]}})),
    );
    assert_eq!(f.verify(&t).unwrap().field("groups"), None);
}

#[test]
fn header_unsafe_claim_values_are_caught_before_forwarding() {
    // Rendering keeps values as they are; the proxy refuses (400) any
    // identity value that `is_safe_value` rejects.
    let f = hs256();
    for evil in ["bob\r\nX-Admin: 1", "bob\nx", "bob\0"] {
        let t = hmac().sign(None, &with(claims(), json!({"email": evil})));
        let id = f.verify(&t).unwrap();
        assert!(!crate::proxy::headers::is_safe_value(
            &id.field("email").unwrap()
        ));
    }
}

#[test]
fn reject_descriptions_fit_in_a_quoted_string() {
    use Reject::*;
    for r in [
        Malformed,
        TooLarge,
        UnsupportedHeader,
        BadAlgorithm,
        UnknownIssuer,
        SourceNotAccepted,
        AlgorithmNotAllowed,
        UnknownKey,
        KeysUnavailable,
        BadSignature,
        Expired,
        NotYetValid,
        IssuedInFuture,
        WrongAudience,
        MissingClaim,
        BadClaims,
        Revoked,
    ] {
        let d = r.description();
        assert!(
            !d.is_empty()
                && d.bytes()
                    .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        );
    }
    assert_eq!(Expired.result(), AuthResult::Expired);
    assert_eq!(Revoked.result(), AuthResult::Revoked);
    assert_eq!(KeysUnavailable.result(), AuthResult::Error);
    assert_eq!(BadSignature.result(), AuthResult::Invalid);
}

#[test]
fn a_full_cache_evicts_instead_of_growing() {
    let cache = TokenCache::with_capacity(100);
    let f = hs256();
    let issuer = Arc::downgrade(&f.issuers.list[0]);
    let id = Arc::new(claims::identity(
        &f.issuers.list[0].cfg,
        serde_json::Map::new(),
        claims::Times {
            exp: None,
            iat: None,
        },
    ));
    for i in 0..1000u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_le_bytes());
        let key = crate::crypto::sha256(&key);
        let deadline = if i % 3 == 0 { NOW + 1 } else { NOW + 100 };
        cache.insert(
            key,
            Entry {
                identity: id.clone(),
                deadline,
                issuer: issuer.clone(),
                key_generation: 0,
                jti: None,
                sid: None,
                iat: None,
            },
            if i < 500 { NOW } else { NOW + 2 },
        );
        assert!(cache.len() <= 100, "{} entries", cache.len());
    }
}

/// xorshift64*: deterministic, good enough to shake a parser.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Feeds thousands of random and mutated tokens to the verifier: none may
/// panic, none may pass.
#[test]
fn fuzzed_tokens_never_panic_and_never_pass() {
    let ec = TestKey::ec(Algorithm::ES256);
    let doc = crate::auth::testkeys::jwks(&[ec.jwk_with("k1")]);
    let f = fixture(
        "algorithms = [\"ES256\"]\njwks_file = \"k.json\"\naudiences = [\"app\"]\n",
        &[("k.json", &doc)],
    );
    let g = hs256();
    let valid_ec = ec.sign(Some("k1"), &claims());
    let valid_hs = hmac().sign(None, &claims());
    assert!(f.verify(&valid_ec).is_ok());
    assert!(g.verify(&valid_hs).is_ok());

    let alphabet: Vec<char> =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\":,\u{0}\u{7f}é€"
            .chars()
            .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A jwks_file is re-read on an unknown kid: its task must run here.
    rt.block_on(async { f.issuers.start(&Arc::new(Metrics::default())) });
    let mut checked = 0;
    for round in 0..6000 {
        let base = if round % 2 == 0 { &valid_ec } else { &valid_hs };
        let mut t: Vec<char> = base.chars().collect();
        match rng.below(8) {
            // Fully random strings.
            0 => {
                let len = rng.below(400);
                t = (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect();
            }
            // Replace a few characters.
            1 | 2 => {
                for _ in 0..=rng.below(3) {
                    let i = rng.below(t.len());
                    t[i] = alphabet[rng.below(alphabet.len())];
                }
            }
            // Delete a range.
            3 => {
                let i = rng.below(t.len());
                let j = (i + 1 + rng.below(20)).min(t.len());
                t.drain(i..j);
            }
            // Insert characters (dots often).
            4 => {
                for _ in 0..=rng.below(3) {
                    let i = rng.below(t.len() + 1);
                    let c = if rng.below(2) == 0 {
                        '.'
                    } else {
                        alphabet[rng.below(alphabet.len())]
                    };
                    t.insert(i, c);
                }
            }
            // Truncate.
            5 => t.truncate(rng.below(t.len())),
            // Swap segments between the two valid tokens.
            6 => {
                let a: Vec<&str> = valid_ec.split('.').collect();
                let b: Vec<&str> = valid_hs.split('.').collect();
                let pick = |k: usize, r: &mut Rng| if r.below(2) == 0 { a[k] } else { b[k] };
                let s = format!(
                    "{}.{}.{}",
                    pick(0, &mut rng),
                    pick(1, &mut rng),
                    pick(2, &mut rng)
                );
                t = s.chars().collect();
            }
            // Flip one bit of one character (stays ASCII or becomes junk).
            _ => {
                let i = rng.below(t.len());
                let c = t[i] as u32 ^ (1 << rng.below(7));
                t[i] = char::from_u32(c).unwrap_or('?');
            }
        }
        let s: String = t.into_iter().collect();
        if s == valid_ec || s == valid_hs {
            continue;
        }
        for fx in [&f, &g] {
            let r = rt.block_on(fx.verifier().verify(&TokenSource::Bearer, &s, NOW));
            assert!(r.is_err(), "mutated token passed: {s}");
            checked += 1;
        }
    }
    assert!(checked > 10_000, "{checked}");
}
