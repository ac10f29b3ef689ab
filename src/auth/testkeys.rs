//! Test keys made at run time (aws-lc-rs), as PEM and JWK, with signing
//! keys for minting tokens.

#![allow(dead_code)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, KeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(crate) struct TestKey {
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub public_pem: String,
    pub private_pem: String,
    /// The public key as a JWK (without `kid`).
    pub jwk: serde_json::Value,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

impl TestKey {
    pub(crate) fn rsa(alg: Algorithm) -> TestKey {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).unwrap();
        let private_pem = pem("PRIVATE KEY", pkcs8.as_ref());
        let spki = kp.public_key().as_der().unwrap();
        let comps = signature::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
        TestKey {
            alg,
            encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
            private_pem,
            jwk: serde_json::json!({"kty": "RSA", "n": b64(&comps.n), "e": b64(&comps.e)}),
        }
    }

    pub(crate) fn ec(alg: Algorithm) -> TestKey {
        let (signing, crv, size) = match alg {
            Algorithm::ES256 => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
            _ => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
        };
        let kp = signature::EcdsaKeyPair::generate(signing).unwrap();
        let pkcs8 = kp.to_pkcs8v1().unwrap();
        let point = kp.public_key().as_ref().to_vec();
        let spki = kp.public_key().as_der().unwrap();
        TestKey {
            alg,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
            private_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
            jwk: serde_json::json!({"kty": "EC", "crv": crv,
                "x": b64(&point[1..1 + size]), "y": b64(&point[1 + size..])}),
        }
    }

    pub(crate) fn ed25519() -> TestKey {
        let kp = signature::Ed25519KeyPair::generate().unwrap();
        let pkcs8 = kp.to_pkcs8().unwrap();
        let spki = kp.public_key().as_der().unwrap();
        TestKey {
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
            private_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
            jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519",
                "x": b64(kp.public_key().as_ref())}),
        }
    }

    pub(crate) fn hmac(alg: Algorithm, secret: &[u8]) -> TestKey {
        TestKey {
            alg,
            encoding: EncodingKey::from_secret(secret),
            public_pem: String::new(),
            private_pem: String::new(),
            jwk: serde_json::Value::Null,
        }
    }

    /// The JWK with `kid` (and `alg`, `use`).
    pub(crate) fn jwk_with(&self, kid: &str) -> serde_json::Value {
        let mut j = self.jwk.clone();
        j["kid"] = kid.into();
        j["use"] = "sig".into();
        j
    }

    pub(crate) fn sign(&self, kid: Option<&str>, claims: &serde_json::Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
    }

    pub(crate) fn sign_with(&self, header: &Header, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).unwrap()
    }
}

pub(crate) fn jwks(keys: &[serde_json::Value]) -> String {
    serde_json::json!({ "keys": keys }).to_string()
}
