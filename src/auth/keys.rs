//! Verification keys of a `[[jwt]]` issuer: a shared secret, a PEM public
//! key, or a JSON Web Key Set (RFC 7517) from a file or an HTTPS URL.
//!
//! A [`KeySet`] is immutable once built; a JWKS that changes is replaced
//! whole (see [`jwks::RemoteKeys`]). Every key records its [`KeyKind`], and
//! a token's `alg` must fit the kind of the key it is checked with: an
//! RSA public key is never used as an HMAC secret (RFC 8725 section 3.1).

pub mod jwks;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Every supported signature algorithm, in the order error messages list them.
pub const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The name of `alg` as JOSE writes it (`"RS256"`).
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        // `Algorithm` is non-exhaustive; a newer jsonwebtoken may add one.
        _ => "unsupported",
    }
}

/// The algorithm named `name`, among [`ALGORITHMS`] (case-sensitive, as
/// RFC 7518 names them).
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    ALGORITHMS.iter().copied().find(|a| alg_name(*a) == name)
}

/// Smallest RSA modulus accepted (NIST SP 800-131A; aws-lc-rs verifies
/// 2048 to 8192 bits).
pub const MIN_RSA_BITS: u32 = 2048;

/// What a key is, which decides the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// `alg` may be verified with a key of this kind.
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Hmac => matches!(alg, HS256 | HS384 | HS512),
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            KeyKind::Hmac => "a shared secret",
            KeyKind::Rsa => "an RSA public key",
            KeyKind::EcP256 => "an EC P-256 public key",
            KeyKind::EcP384 => "an EC P-384 public key",
            KeyKind::Ed25519 => "an Ed25519 public key",
        }
    }
}

/// One verification key.
#[derive(Clone)]
pub struct Key {
    /// `kid` from the JWKS; keys from a secret or a PEM file have none.
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, when it names one: then only that algorithm.
    pub alg: Option<Algorithm>,
    pub decoding: DecodingKey,
}

impl Key {
    /// A token signed with `alg` may be checked with this key.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Generation numbers of key sets: a verified-token cache entry names the
/// set it was checked with, so it stops matching when the set is replaced.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// An issuer's keys at one moment.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Key>,
    generation: u64,
    /// SHA-256 of the material the set was built from: a refetch that
    /// brings the same JWKS keeps the current set (and its cache entries).
    digest: [u8; 32],
}

/// Outcome of looking a token's key up.
#[derive(Debug)]
pub enum Lookup<'a> {
    Found(&'a Key),
    /// The token names a `kid` this set does not have: a JWKS may have
    /// rotated, worth a (rate-limited) refetch.
    UnknownKid,
    /// No key fits (several keys and no `kid`, or none for this `alg`).
    NoFit,
}

/// Why a public key, a JWK or a JWKS cannot verify signatures. The text
/// says what to give instead; it never quotes key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM file (not text)")]
    NotText,
    #[error("holds a private key; give the issuer's public key (-----BEGIN PUBLIC KEY-----)")]
    PrivateKey,
    #[error("holds a certificate; give the public key (-----BEGIN PUBLIC KEY-----)")]
    Certificate,
    #[error("not a PEM public key (RSA, EC P-256/P-384 or Ed25519, -----BEGIN PUBLIC KEY-----)")]
    NotPublicKey,
    #[error("{0}")]
    Decoding(jsonwebtoken::errors::Error),
    /// The key does not parse as the named kind (`RSA`, `P-256`, ...).
    #[error("not a valid {0} public key")]
    Invalid(&'static str),
    #[error("the RSA key has {0} bits; at least {MIN_RSA_BITS} are required")]
    ShortRsaPem(u32),
    #[error("unsupported EC curve (P-256 and P-384 are supported)")]
    EcCurve,
    #[error("not a JWKS (invalid JSON: {0})")]
    NotJson(serde_json::Error),
    #[error("not a JWKS (no `keys` list)")]
    NoKeyList,
    /// With why each key was skipped.
    #[error("the JWKS has no usable signing key{}", skipped_list(.0))]
    NoUsableKey(Vec<String>),
    #[error("use is `{0}`, not `sig`")]
    Use(String),
    #[error("alg `{0}` is not supported")]
    UnsupportedAlg(String),
    #[error("kid is not a string")]
    KidNotString,
    #[error("no `{0}`")]
    Missing(&'static str),
    #[error("`{0}` is not base64url")]
    NotBase64(&'static str),
    #[error("RSA key of {0} bits (at least {MIN_RSA_BITS})")]
    ShortRsa(u32),
    #[error("empty `e`")]
    EmptyExponent,
    #[error("curve {0} is not supported")]
    Curve(String),
    #[error("coordinates of the wrong length")]
    Coordinates,
    #[error("only the Ed25519 curve is supported for OKP keys")]
    OkpCurve,
    #[error("symmetric keys are not taken from a JWKS")]
    Symmetric,
    #[error("key type {0} is not supported")]
    KeyType(String),
    #[error("alg {alg} does not fit {kind}")]
    AlgMismatch {
        alg: &'static str,
        kind: &'static str,
    },
}

fn skipped_list(skipped: &[String]) -> String {
    if skipped.is_empty() {
        String::new()
    } else {
        format!(" ({})", skipped.join("; "))
    }
}

impl KeySet {
    fn new(keys: Vec<Key>, material: &[u8]) -> KeySet {
        KeySet {
            keys,
            generation: GENERATION.fetch_add(1, Relaxed),
            digest: crate::crypto::sha256(material),
        }
    }

    /// An HMAC secret (HS256/384/512).
    pub fn from_secret(secret: &[u8]) -> KeySet {
        let key = Key {
            kid: None,
            kind: KeyKind::Hmac,
            alg: None,
            decoding: DecodingKey::from_secret(secret),
        };
        KeySet::new(vec![key], secret)
    }

    /// A PEM public key: RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`), EC P-256
    /// or P-384, or Ed25519 (`PUBLIC KEY`).
    pub fn from_public_pem(pem: &[u8]) -> Result<KeySet, KeyError> {
        let text = std::str::from_utf8(pem).map_err(|_| KeyError::NotText)?;
        if text.contains("PRIVATE KEY-----") {
            return Err(KeyError::PrivateKey);
        }
        if text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(KeyError::Certificate);
        }
        let (kind, decoding) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            let der = k.try_get_as_bytes().map_err(KeyError::Decoding)?;
            let bits = aws_lc_rs::signature::RsaParameters::public_modulus_len(der)
                .map_err(|_| KeyError::Invalid("RSA"))?;
            if bits < MIN_RSA_BITS {
                return Err(KeyError::ShortRsaPem(bits));
            }
            (KeyKind::Rsa, k)
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            let point = k.try_get_as_bytes().map_err(KeyError::Decoding)?;
            (ec_kind(point)?, k)
        } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
            let raw = k.try_get_as_bytes().map_err(KeyError::Decoding)?;
            check_point(&aws_lc_rs::signature::ED25519, raw, "Ed25519")?;
            (KeyKind::Ed25519, k)
        } else {
            return Err(KeyError::NotPublicKey);
        };
        let key = Key {
            kid: None,
            kind,
            alg: None,
            decoding,
        };
        Ok(KeySet::new(vec![key], pem))
    }

    /// A JWKS document. Keys that cannot verify signatures (encryption
    /// keys, unknown types or curves, short RSA keys, symmetric `oct` keys,
    /// which have no business in a published key set) are skipped and
    /// reported in the second value. A set with no usable key is an error.
    pub fn from_jwks(json: &[u8]) -> Result<(KeySet, Vec<String>), KeyError> {
        let doc: serde_json::Value = serde_json::from_slice(json).map_err(KeyError::NotJson)?;
        let list = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or(KeyError::NoKeyList)?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, jwk) in list.iter().enumerate() {
            match jwk_to_key(jwk) {
                Ok(k) => keys.push(k),
                Err(why) => {
                    let kid = jwk.get("kid").and_then(|k| k.as_str()).unwrap_or("-");
                    skipped.push(format!("key {i} (kid {kid}) skipped: {why}"));
                }
            }
        }
        if keys.is_empty() {
            return Err(KeyError::NoUsableKey(skipped));
        }
        Ok((KeySet::new(keys, json), skipped))
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn same_material(&self, other: &KeySet) -> bool {
        self.digest == other.digest
    }

    /// The key for a token with header `kid` and `alg`: the key with that
    /// `kid`, or the only fitting key when the token names none (or names
    /// one while the only fitting key has none, as a PEM key or a secret).
    pub fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        let fitting = || self.keys.iter().filter(|k| k.accepts(alg));
        if let Some(kid) = kid {
            if let Some(k) = fitting().find(|k| k.kid.as_deref() == Some(kid)) {
                return Lookup::Found(k);
            }
            let mut unnamed = fitting().filter(|k| k.kid.is_none());
            if let (Some(k), None) = (unnamed.next(), unnamed.next()) {
                return Lookup::Found(k);
            }
            if !self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
                return Lookup::UnknownKid;
            }
            return Lookup::NoFit;
        }
        let mut all = fitting();
        match (all.next(), all.next()) {
            (Some(k), None) => Lookup::Found(k),
            _ => Lookup::NoFit,
        }
    }
}

fn ec_kind(point: &[u8]) -> Result<KeyKind, KeyError> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED};
    match point.len() {
        65 => check_point(&ECDSA_P256_SHA256_FIXED, point, "P-256").map(|_| KeyKind::EcP256),
        97 => check_point(&ECDSA_P384_SHA384_FIXED, point, "P-384").map(|_| KeyKind::EcP384),
        _ => Err(KeyError::EcCurve),
    }
}

/// Parses the public key once, so a broken key is refused when loaded
/// rather than failing every signature later.
fn check_point(
    alg: &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), KeyError> {
    aws_lc_rs::signature::ParsedPublicKey::new(alg, bytes)
        .map(|_| ())
        .map_err(|_| KeyError::Invalid(what))
}

fn b64(jwk: &serde_json::Value, field: &'static str) -> Result<Vec<u8>, KeyError> {
    let s = jwk
        .get(field)
        .and_then(|v| v.as_str())
        .ok_or(KeyError::Missing(field))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| KeyError::NotBase64(field))
}

fn jwk_to_key(jwk: &serde_json::Value) -> Result<Key, KeyError> {
    let str_of = |f: &str| jwk.get(f).and_then(|v| v.as_str());
    if let Some(u) = str_of("use") {
        if u != "sig" {
            return Err(KeyError::Use(u.into()));
        }
    }
    let alg = match jwk.get("alg") {
        None | Some(serde_json::Value::Null) => None,
        Some(a) => {
            let name = a.as_str().unwrap_or("");
            Some(parse_alg(name).ok_or_else(|| KeyError::UnsupportedAlg(name.into()))?)
        }
    };
    let kid = match jwk.get("kid") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(KeyError::KidNotString),
    };
    let (kind, decoding) = match str_of("kty") {
        Some("RSA") => {
            let n = b64(jwk, "n")?;
            let e = b64(jwk, "e")?;
            let bits = rsa_bits(&n);
            if bits < MIN_RSA_BITS {
                return Err(KeyError::ShortRsa(bits));
            }
            if e.is_empty() {
                return Err(KeyError::EmptyExponent);
            }
            (KeyKind::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        Some("EC") => {
            let x = b64(jwk, "x")?;
            let y = b64(jwk, "y")?;
            let size = match str_of("crv") {
                Some("P-256") => 32,
                Some("P-384") => 48,
                other => return Err(KeyError::Curve(other.unwrap_or("-").into())),
            };
            if x.len() != size || y.len() != size {
                return Err(KeyError::Coordinates);
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let kind = ec_kind(&point)?;
            (kind, DecodingKey::from_ec_der(&point))
        }
        Some("OKP") => {
            if str_of("crv") != Some("Ed25519") {
                return Err(KeyError::OkpCurve);
            }
            let x = b64(jwk, "x")?;
            check_point(&aws_lc_rs::signature::ED25519, &x, "Ed25519")?;
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
        }
        Some("oct") => return Err(KeyError::Symmetric),
        other => return Err(KeyError::KeyType(other.unwrap_or("-").into())),
    };
    if let Some(a) = alg {
        if !kind.fits(a) {
            return Err(KeyError::AlgMismatch {
                alg: alg_name(a),
                kind: kind.describe(),
            });
        }
    }
    Ok(Key {
        kid,
        kind,
        alg,
        decoding,
    })
}

/// Bit length of a big-endian unsigned integer.
fn rsa_bits(n: &[u8]) -> u32 {
    let n = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => return 0,
    };
    (n.len() as u32 - 1) * 8 + (8 - n[0].leading_zeros())
}

#[cfg(test)]
mod tests;
