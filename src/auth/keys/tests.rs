use super::*;
use crate::auth::testkeys::{jwks, TestKey};

#[test]
fn key_kinds_fit_only_their_algorithms() {
    use Algorithm::*;
    for alg in ALGORITHMS {
        let fitting: Vec<KeyKind> = [
            KeyKind::Hmac,
            KeyKind::Rsa,
            KeyKind::EcP256,
            KeyKind::EcP384,
            KeyKind::Ed25519,
        ]
        .into_iter()
        .filter(|k| k.fits(alg))
        .collect();
        assert_eq!(fitting.len(), 1, "{alg:?} fits exactly one kind");
    }
    assert!(KeyKind::Rsa.fits(PS512));
    assert!(!KeyKind::Rsa.fits(HS256));
    assert!(!KeyKind::Hmac.fits(RS256));
    assert!(!KeyKind::EcP256.fits(ES384));
}

#[test]
fn algorithm_names_round_trip_and_none_is_unknown() {
    for alg in ALGORITHMS {
        assert_eq!(parse_alg(alg_name(alg)), Some(alg));
    }
    assert_eq!(parse_alg("none"), None);
    assert_eq!(parse_alg("rs256"), None);
}

#[test]
fn pem_public_keys_of_every_type_load_with_their_kind() {
    let cases = [
        (TestKey::rsa(Algorithm::RS256), KeyKind::Rsa),
        (TestKey::ec(Algorithm::ES256), KeyKind::EcP256),
        (TestKey::ec(Algorithm::ES384), KeyKind::EcP384),
        (TestKey::ed25519(), KeyKind::Ed25519),
    ];
    for (k, kind) in cases {
        let set = KeySet::from_public_pem(k.public_pem.as_bytes()).unwrap();
        assert_eq!(set.keys().len(), 1);
        assert_eq!(set.keys()[0].kind, kind);
        assert!(set.keys()[0].kid.is_none());
    }
}

#[test]
fn private_keys_certificates_and_garbage_are_not_public_keys() {
    let k = TestKey::rsa(Algorithm::RS256);
    let e = KeySet::from_public_pem(k.private_pem.as_bytes()).unwrap_err();
    assert!(matches!(e, KeyError::PrivateKey), "{e:?}");
    assert!(e.to_string().contains("private key"), "{e}");
    let e =
        KeySet::from_public_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
    assert!(matches!(e, KeyError::Certificate), "{e:?}");
    assert!(e.to_string().contains("certificate"), "{e}");
    assert!(KeySet::from_public_pem(b"hello").is_err());
    assert!(KeySet::from_public_pem(&[0xff, 0xfe]).is_err());
}

#[test]
fn jwks_keeps_signing_keys_and_reports_the_rest() {
    let rsa = TestKey::rsa(Algorithm::RS256);
    let ec = TestKey::ec(Algorithm::ES256);
    let ed = TestKey::ed25519();
    let mut enc = rsa.jwk_with("enc");
    enc["use"] = "enc".into();
    let mut wrong_alg = ec.jwk_with("wrong");
    wrong_alg["alg"] = "RS256".into();
    let doc = jwks(&[
        rsa.jwk_with("r1"),
        ec.jwk_with("e1"),
        ed.jwk_with("d1"),
        enc,
        wrong_alg,
        serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}),
        serde_json::json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"}),
        serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny"}),
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "short"}),
        serde_json::json!("not an object"),
    ]);
    let (set, skipped) = KeySet::from_jwks(doc.as_bytes()).unwrap();
    let kids: Vec<_> = set.keys().iter().map(|k| k.kid.clone().unwrap()).collect();
    assert_eq!(kids, ["r1", "e1", "d1"]);
    assert_eq!(skipped.len(), 7, "{skipped:?}");
    assert!(skipped
        .iter()
        .any(|s| s.contains("sym") && s.contains("symmetric")));
}

#[test]
fn jwks_without_usable_keys_or_not_json_is_an_error() {
    assert!(KeySet::from_jwks(b"{\"keys\": []}").is_err());
    assert!(KeySet::from_jwks(b"{}").is_err());
    assert!(KeySet::from_jwks(b"<html>").is_err());
}

#[test]
fn lookup_by_kid_or_the_only_fitting_key() {
    let a = TestKey::rsa(Algorithm::RS256);
    let b = TestKey::rsa(Algorithm::RS256);
    let ec = TestKey::ec(Algorithm::ES256);
    let (set, _) =
        KeySet::from_jwks(jwks(&[a.jwk_with("a"), b.jwk_with("b"), ec.jwk_with("e")]).as_bytes())
            .unwrap();
    let kid = |l: Lookup<'_>| match l {
        Lookup::Found(k) => k.kid.clone().unwrap(),
        other => format!("{other:?}"),
    };
    assert_eq!(kid(set.lookup(Some("b"), Algorithm::RS256)), "b");
    assert_eq!(kid(set.lookup(Some("b"), Algorithm::PS256)), "b");
    // A kid naming a key of another type does not match.
    assert!(matches!(
        set.lookup(Some("e"), Algorithm::RS256),
        Lookup::NoFit
    ));
    assert!(matches!(
        set.lookup(Some("zz"), Algorithm::RS256),
        Lookup::UnknownKid
    ));
    // No kid: only when exactly one key fits.
    assert!(matches!(set.lookup(None, Algorithm::RS256), Lookup::NoFit));
    assert_eq!(kid(set.lookup(None, Algorithm::ES256)), "e");
    assert!(matches!(set.lookup(None, Algorithm::HS256), Lookup::NoFit));

    // A PEM key has no kid and matches whatever kid the token names.
    let pem = KeySet::from_public_pem(a.public_pem.as_bytes()).unwrap();
    assert!(matches!(
        pem.lookup(Some("any"), Algorithm::RS256),
        Lookup::Found(_)
    ));
    assert!(matches!(
        pem.lookup(None, Algorithm::RS512),
        Lookup::Found(_)
    ));
    assert!(matches!(pem.lookup(None, Algorithm::HS256), Lookup::NoFit));
}

#[test]
fn same_material_keeps_its_digest_but_gets_a_new_generation() {
    let a = TestKey::ed25519();
    let doc = jwks(&[a.jwk_with("a")]);
    let (s1, _) = KeySet::from_jwks(doc.as_bytes()).unwrap();
    let (s2, _) = KeySet::from_jwks(doc.as_bytes()).unwrap();
    assert!(s1.same_material(&s2));
    assert_ne!(s1.generation(), s2.generation());
    assert_eq!(rsa_bits(&[0, 0x80, 0]), 16);
    assert_eq!(rsa_bits(&[1]), 1);
}
