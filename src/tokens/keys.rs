//! The gateway's own signing keys (`[login] signing_key_file`,
//! `previous_keys`): ES256 (P-256) or Ed25519 in PKCS#8 PEM. The `kid` is
//! the key's RFC 7638 JWK thumbprint, so it is stable across restarts and
//! replicas. Without a key file, one ephemeral P-256 key per process is
//! made (and warned about): tokens then die with the process and replicas
//! do not accept each other's.

use crate::auth::keys::KeySet;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Why a signing key file cannot be used. Each names the file; none
/// carries key material.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error(transparent)]
    Read(#[from] crate::config::read::FileError),
    #[error("{}: no PKCS#8 private key: {source}", .path.display())]
    NoKey {
        path: std::path::PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{}: expected a PKCS#8 key (\"BEGIN PRIVATE KEY\")", .path.display())]
    NotPkcs8 { path: std::path::PathBuf },
    #[error("{}: {kind}", .path.display())]
    Unsupported {
        path: std::path::PathBuf,
        kind: Unsupported,
    },
}

/// Which of `[login]`'s key files could not be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeysError {
    #[error(transparent)]
    Current(SigningKeyError),
    #[error(transparent)]
    Previous(SigningKeyError),
    /// The published key set of the loaded keys does not load back (a
    /// fault of this module, not of the files).
    #[error("the signing keys' JWKS: {0}")]
    Jwks(#[from] crate::auth::keys::KeyError),
}

impl SigningKeysError {
    /// The config key the problem is reported under.
    pub fn key_path(&self) -> &'static str {
        match self {
            SigningKeysError::Current(_) | SigningKeysError::Jwks(_) => "login.signing_key_file",
            SigningKeysError::Previous(_) => "login.previous_keys",
        }
    }
}

/// A PKCS#8 key that is not one the gateway signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("unexpected P-256 public key encoding")]
    P256Encoding,
    #[error("not an ES256 (P-256) or Ed25519 PKCS#8 private key")]
    KeyType,
}

/// A private key the gateway signs with.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public half as a JWK (with `kid`, `alg`, `use`).
    pub jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// From PKCS#8 DER: P-256 (ES256) or Ed25519 (EdDSA).
    fn from_pkcs8(der: &[u8]) -> Result<SigningKey, Unsupported> {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            let point = kp.public_key().as_ref();
            if point.len() != 65 || point[0] != 4 {
                return Err(Unsupported::P256Encoding);
            }
            let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
            // RFC 7638: the required members, lexicographic order, no spaces.
            let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            let kid = b64(&crate::crypto::sha256(canonical.as_bytes()));
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"});
            return Ok(SigningKey {
                kid,
                alg: Algorithm::ES256,
                encoding: EncodingKey::from_ec_der(der),
                jwk,
            });
        }
        if let Ok(kp) = Ed25519KeyPair::from_pkcs8(der)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(der))
        {
            let x = b64(kp.public_key().as_ref());
            let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
            let kid = b64(&crate::crypto::sha256(canonical.as_bytes()));
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"});
            return Ok(SigningKey {
                kid,
                alg: Algorithm::EdDSA,
                encoding: EncodingKey::from_ed_der(der),
                jwk,
            });
        }
        Err(Unsupported::KeyType)
    }

    pub fn load(path: &Path) -> Result<SigningKey, SigningKeyError> {
        let pem = crate::config::read::read_limited(path, crate::config::read::MAX_FILE_BYTES)?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|source| SigningKeyError::NoKey {
            path: path.into(),
            source,
        })?;
        match key {
            PrivateKeyDer::Pkcs8(der) => {
                SigningKey::from_pkcs8(der.secret_pkcs8_der()).map_err(|kind| {
                    SigningKeyError::Unsupported {
                        path: path.into(),
                        kind,
                    }
                })
            }
            _ => Err(SigningKeyError::NotPkcs8 { path: path.into() }),
        }
    }

    /// Signs `claims` as a compact JWS with this key's `kid` and `typ`.
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        h.typ = Some(typ.to_string());
        jsonwebtoken::encode(&h, claims, &self.encoding)
            .expect("signing with a loaded key cannot fail")
    }
}

fn ephemeral() -> &'static Arc<SigningKey> {
    static KEY: OnceLock<Arc<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("P-256 key generation");
        Arc::new(SigningKey::from_pkcs8(doc.as_ref()).expect("a generated key loads"))
    })
}

/// The current key, the previous ones, and what verification needs.
#[derive(Debug)]
pub struct SigningKeys {
    pub current: Arc<SigningKey>,
    /// Public JWKs of `previous_keys`: published and accepted, never used
    /// to sign.
    pub previous: Vec<Value>,
    pub ephemeral: bool,
    /// `{"keys": [...]}`: current first.
    pub jwks: String,
    /// The same keys for the verifier.
    pub verify_set: Arc<KeySet>,
}

impl SigningKeys {
    pub fn load(
        current: Option<&Path>,
        previous: &[std::path::PathBuf],
    ) -> Result<SigningKeys, SigningKeysError> {
        let (current, eph) = match current {
            Some(p) => (
                Arc::new(SigningKey::load(p).map_err(SigningKeysError::Current)?),
                false,
            ),
            None => (ephemeral().clone(), true),
        };
        let mut prev = Vec::new();
        for p in previous {
            let k = SigningKey::load(p).map_err(SigningKeysError::Previous)?;
            if k.kid != current.kid {
                prev.push(k.jwk.clone());
            }
        }
        let mut keys = vec![current.jwk.clone()];
        keys.extend(prev.iter().cloned());
        let jwks = json!({ "keys": keys }).to_string();
        let (verify_set, _) = KeySet::from_jwks(jwks.as_bytes())?;
        Ok(SigningKeys {
            current,
            previous: prev,
            ephemeral: eph,
            jwks,
            verify_set: Arc::new(verify_set),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_keys_sign_tokens_their_jwks_verifies() {
        let keys = SigningKeys::load(None, &[]).unwrap();
        assert!(keys.ephemeral);
        assert_eq!(keys.current.kid.len(), 43, "base64url SHA-256 thumbprint");
        let t = keys
            .current
            .sign("at+jwt", &json!({"sub": "alice", "exp": 4_000_000_000u64}));
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&keys.jwks).unwrap();
        let jwk = jwks.find(&keys.current.kid).unwrap();
        let dk = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.validate_aud = false;
        let d = jsonwebtoken::decode::<Value>(&t, &dk, &v).unwrap();
        assert_eq!(d.claims["sub"], "alice");
        assert_eq!(d.header.typ.as_deref(), Some("at+jwt"));
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example_shape() {
        // Same key twice: same kid (stable across loads and replicas).
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let a = SigningKey::from_pkcs8(doc.as_ref()).unwrap();
        let b = SigningKey::from_pkcs8(doc.as_ref()).unwrap();
        assert_eq!(a.kid, b.kid);
        assert_eq!(a.alg, Algorithm::EdDSA);
    }
}
