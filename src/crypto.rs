//! The few cryptographic primitives the gateway uses directly, all from the
//! one provider already in the binary for TLS (aws-lc-rs).

use aws_lc_rs::{constant_time, digest, hmac, rand};

/// `N` bytes from the OS-seeded CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // Failure here means the OS cannot give randomness: nothing secure can
    // be done, so refusing to continue is the only safe answer.
    rand::fill(&mut b).expect("the system random number generator failed");
    b
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Constant-time equality for secrets (admin token, signatures).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// A keyed MAC (HMAC-SHA256) with a purpose-bound key derived from the
/// server secret, so one root secret never signs two kinds of thing alike.
#[derive(Clone)]
pub struct Mac(hmac::Key);

impl Mac {
    pub fn derive(root: &[u8], purpose: &str) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, root);
        let sub = hmac::sign(&root, purpose.as_bytes());
        Mac(hmac::Key::new(hmac::HMAC_SHA256, sub.as_ref()))
    }

    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        self.sign_parts(&[data])
    }

    /// Signs the concatenation of `parts` without building it.
    pub fn sign_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.0, data, tag).is_ok()
    }
}

impl std::fmt::Debug for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mac(..)")
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_macs_differ_by_purpose_and_verify_their_own_tags() {
        let a = Mac::derive(b"root secret of thirty-two bytes!", "affinity");
        let b = Mac::derive(b"root secret of thirty-two bytes!", "oidc-state");
        let tag = a.sign(b"backend-1");
        assert!(a.verify(b"backend-1", &tag));
        assert!(!b.verify(b"backend-1", &tag));
        assert!(!a.verify(b"backend-2", &tag));
    }

    #[test]
    fn random_bytes_are_not_repeated() {
        assert_ne!(random_bytes::<32>(), random_bytes::<32>());
    }

    #[test]
    fn hex_encodes_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
