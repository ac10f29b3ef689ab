//! Keys generated per test (aws-lc-rs), as the files an operator would
//! configure (PEM public keys, JWKS) and as signing keys for minting.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, KeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub struct Key {
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    /// PEM `PUBLIC KEY` (empty for HMAC).
    pub public_pem: String,
    /// The public JWK, without `kid`.
    pub jwk: Value,
}

impl Key {
    pub fn rsa(alg: Algorithm) -> Key {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).unwrap();
        let comps = signature::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
        Key {
            alg,
            encoding: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
                .unwrap(),
            public_pem: pem("PUBLIC KEY", kp.public_key().as_der().unwrap().as_ref()),
            jwk: json!({"kty": "RSA", "n": b64(&comps.n), "e": b64(&comps.e)}),
        }
    }

    pub fn ec(alg: Algorithm) -> Key {
        let (signing, crv, size) = match alg {
            Algorithm::ES256 => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
            _ => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
        };
        let kp = signature::EcdsaKeyPair::generate(signing).unwrap();
        let point = kp.public_key().as_ref().to_vec();
        Key {
            alg,
            encoding: EncodingKey::from_ec_der(kp.to_pkcs8v1().unwrap().as_ref()),
            public_pem: pem("PUBLIC KEY", kp.public_key().as_der().unwrap().as_ref()),
            jwk: json!({"kty": "EC", "crv": crv,
                "x": b64(&point[1..1 + size]), "y": b64(&point[1 + size..])}),
        }
    }

    pub fn ed25519() -> Key {
        let kp = signature::Ed25519KeyPair::generate().unwrap();
        Key {
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(kp.to_pkcs8().unwrap().as_ref()),
            public_pem: pem("PUBLIC KEY", kp.public_key().as_der().unwrap().as_ref()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(kp.public_key().as_ref())}),
        }
    }

    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Key {
        Key {
            alg,
            encoding: EncodingKey::from_secret(secret),
            public_pem: String::new(),
            jwk: Value::Null,
        }
    }

    pub fn jwk_with(&self, kid: &str) -> Value {
        let mut j = self.jwk.clone();
        j["kid"] = kid.into();
        j["use"] = "sig".into();
        j
    }

    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = kid.map(str::to_string);
        self.sign_with(&h, claims)
    }

    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).unwrap()
    }
}

pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// A token with the given raw header and claims JSON and a signature made
/// with `key` (HMAC) over them: for headers the encoder would not write.
pub fn raw_hmac(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{input}.{sig}")
}

/// `header.payload.` with an unsigned `alg: none` header.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}
