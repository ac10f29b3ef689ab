//! `Cookie` header parsing (`src/cookies.rs`) and its users: the session
//! cookie, the JWT cookie source and the affinity cookie.
//!
//! Checked: the lookups agree with each other and with a reference
//! reading; removing a cookie leaves none of that name and every other
//! pair untouched and in order; removal is idempotent.
#![no_main]

use gatehouse::cookies;
use http::header::{HeaderMap, HeaderValue, COOKIE};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 5] = ["gatehouse_session", "sid", "a", "access_token", ""];

fn trim(b: &[u8]) -> &[u8] {
    let mut b = b;
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// RFC 6265 section 5.2, read plainly: (name, value) pairs.
fn reference_pairs(h: &HeaderMap) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for v in h.get_all(COOKIE) {
        for pair in v.as_bytes().split(|&b| b == b';') {
            let pair = trim(pair);
            if pair.is_empty() {
                continue;
            }
            match pair.iter().position(|&b| b == b'=') {
                Some(i) => out.push((trim(&pair[..i]).to_vec(), trim(&pair[i + 1..]).to_vec())),
                None => out.push((Vec::new(), pair.to_vec())),
            }
        }
    }
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&sel, rest)) = input.split_first() else {
        return;
    };
    let name = NAMES[sel as usize % NAMES.len()];
    let mut h = HeaderMap::new();
    for part in rest.split(|&b| b == b'\n').take(4) {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            h.append(COOKIE, v);
        }
    }

    let pairs = reference_pairs(&h);
    let got: Vec<(Vec<u8>, Vec<u8>)> = cookies::pairs(&h)
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    assert_eq!(got, pairs, "pairs differ from the reference reading");

    let values: Vec<&str> = cookies::values(&h, name).collect();
    let first = cookies::value(&h, name);
    assert_eq!(first, values.first().copied());
    for v in &values {
        assert!(!v.contains(';'), "a value spans pairs: {v:?}");
    }
    // Every user of the parser sees the same cookie.
    assert_eq!(gatehouse::session::cookie_value(&h, name), first);
    assert_eq!(
        gatehouse::upstream::sticky::cookie_values(&h, name).collect::<Vec<_>>(),
        values
    );
    assert_eq!(
        gatehouse::auth::jwt::source::cookie(&h, name),
        first.filter(|v| !v.is_empty())
    );

    let mut stripped = h.clone();
    cookies::remove(&mut stripped, name);
    assert!(
        !cookies::pairs(&stripped).any(|(k, _)| k == name.as_bytes()),
        "a cookie named {name:?} survived removal"
    );
    let others: Vec<_> = pairs
        .iter()
        .filter(|(k, _)| k.as_slice() != name.as_bytes())
        .cloned()
        .collect();
    assert_eq!(reference_pairs(&stripped), others, "other cookies changed");
    assert!(stripped.get_all(COOKIE).iter().count() <= h.get_all(COOKIE).iter().count());
    let mut again = stripped.clone();
    cookies::remove(&mut again, name);
    assert_eq!(again, stripped, "removal is not idempotent");
});
