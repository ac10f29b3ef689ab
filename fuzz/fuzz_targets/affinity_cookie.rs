//! The signed affinity cookie (`src/upstream/sticky.rs`, `Token`).
//!
//! Checked: only canonical values decode (a decoded value re-encodes to
//! exactly itself, so nothing is malleable); a value for one upstream is
//! never accepted for another or under another key; encode/decode round
//! trips; any one-character change of a genuine value is refused.
#![no_main]

use gatehouse::crypto::Mac;
use gatehouse::upstream::sticky::Token;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn keys() -> &'static (Mac, Mac) {
    static K: OnceLock<(Mac, Mac)> = OnceLock::new();
    K.get_or_init(|| {
        (
            Mac::derive(b"fuzzing secret: 32 bytes or more!", "affinity"),
            Mac::derive(b"another secret, also 32+ bytes...", "affinity"),
        )
    })
}

fuzz_target!(|input: &[u8]| {
    let (key, other_key) = keys();
    if let Ok(value) = std::str::from_utf8(input) {
        if let Some(t) = Token::decode(value, key, "app") {
            assert_eq!(t.encode(key, "app"), value, "a non-canonical value decoded");
            assert_eq!(
                Token::decode(value, key, "other"),
                None,
                "crossed upstreams"
            );
            assert_eq!(Token::decode(value, other_key, "app"), None, "crossed keys");
        }
    }
    // Round trip of a token built from the input, then one change to it.
    if input.len() >= 15 {
        let mut t = Token::new([0; 8]);
        t.backend.copy_from_slice(&input[..8]);
        t.nonce.copy_from_slice(&input[8..14]);
        let v = t.encode(key, "app");
        assert_eq!(Token::decode(&v, key, "app"), Some(t));
        let at = input[14] as usize % v.len();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let replacement = alphabet[input.get(15).copied().unwrap_or(0) as usize % 64];
        let mut changed = v.clone().into_bytes();
        if changed[at] != replacement {
            changed[at] = replacement;
            let changed = String::from_utf8(changed).unwrap();
            assert_eq!(
                Token::decode(&changed, key, "app"),
                None,
                "tampered value accepted"
            );
        }
    }
});
