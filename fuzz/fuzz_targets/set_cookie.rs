//! A backend's `Set-Cookie` against the gateway's own cookie names
//! (`src/cookies.rs`: `set_cookie_name`, `sets_any`; their user
//! `proxy::headers::drop_own_set_cookies`).
//!
//! Checked against an independent reading of RFC 6265bis: how a browser
//! parses the header (section 5.6) and sends the cookie back (section
//! 5.8.3), read back by the gateway's own `Cookie` parser. (1) A header
//! that makes a browser send back a cookie the gateway reads as one of its
//! own names is always dropped. (2) Nothing else is dropped but a nameless
//! cookie whose bare value is one of those names. (3) Dropping through a
//! header map removes exactly those values and keeps the others in order.
#![no_main]

use gatehouse::cookies;
use gatehouse::proxy::headers::drop_own_set_cookies;
use http::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};
use libfuzzer_sys::fuzz_target;

const OWN: [&str; 3] = ["gatehouse_session", "gh_aff", "gatehouse_oidc"];

fn trim_wsp(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// RFC 6265bis section 5.6: the (name, value) a browser stores, or `None`
/// when it ignores the header.
fn browser_parse(v: &[u8]) -> Option<(&[u8], &[u8])> {
    // Step 1: a control character other than HTAB: ignored.
    if v.iter().any(|&c| (c < 0x20 && c != b'\t') || c == 0x7f) {
        return None;
    }
    let pair = match v.iter().position(|&c| c == b';') {
        Some(i) => &v[..i],
        None => v,
    };
    let (name, value) = match pair.iter().position(|&c| c == b'=') {
        Some(i) => (&pair[..i], &pair[i + 1..]),
        None => (&b""[..], pair),
    };
    let (name, value) = (trim_wsp(name), trim_wsp(value));
    if name.is_empty() && value.is_empty() {
        return None;
    }
    if name.len() + value.len() > 4096 {
        return None;
    }
    Some((name, value))
}

/// Section 5.8.3: `name=value`, or the value alone for a nameless cookie.
fn sent_back(name: &[u8], value: &[u8]) -> Vec<u8> {
    if name.is_empty() {
        return value.to_vec();
    }
    let mut out = name.to_vec();
    out.push(b'=');
    out.extend_from_slice(value);
    out
}

fn is_own(name: &[u8]) -> bool {
    OWN.iter().any(|n| n.as_bytes() == name)
}

fuzz_target!(|input: &[u8]| {
    let dropped = cookies::sets_any(input, &OWN);
    if let Some((name, value)) = browser_parse(input) {
        // (1) What the gateway reads back from the browser.
        if let Ok(back) = HeaderValue::from_bytes(&sent_back(name, value)) {
            let mut h = HeaderMap::new();
            h.insert(COOKIE, back);
            if cookies::pairs(&h).any(|(k, _)| is_own(k)) {
                assert!(dropped, "sets an own cookie, kept: {input:?}");
            }
        }
        // (2) Dropped only for an own name, or a nameless cookie whose
        // value is (or starts with) one.
        let named = if name.is_empty() {
            trim_wsp(value.split(|&c| c == b'=').next().unwrap_or(value))
        } else {
            name
        };
        assert_eq!(dropped, is_own(named), "{input:?}");
    }
    // (3) Through a header map, beside a cookie that always stays.
    if let Ok(v) = HeaderValue::from_bytes(input) {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("app=1"));
        h.append(SET_COOKIE, v.clone());
        h.append(SET_COOKIE, HeaderValue::from_static("gatehouse_session=x"));
        drop_own_set_cookies(&mut h, &OWN);
        let left: Vec<&HeaderValue> = h.get_all(SET_COOKIE).iter().collect();
        if dropped {
            assert_eq!(left, vec![&HeaderValue::from_static("app=1")]);
        } else {
            assert_eq!(left, vec![&HeaderValue::from_static("app=1"), &v]);
        }
    }
});
