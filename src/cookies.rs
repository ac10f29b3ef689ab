//! The request's `Cookie` header(s), read as bytes (RFC 6265 section 5.4;
//! HTTP/2 may split cookies over several headers, RFC 9113 section 8.2.3).
//!
//! Bytes, not `&str`: browsers send cookie values that apps set with raw
//! UTF-8 in them, and a header that is not visible ASCII must not hide the
//! gateway's own cookies in it: they would neither authenticate nor be
//! removed before the request reaches a backend. Names and values are
//! trimmed of spaces and tabs (RFC 6265 section 5.2); a value in double
//! quotes is returned without them.
//!
//! The gateway's own `Set-Cookie` values (session, affinity, sign-in
//! state) start from [`build`].

use cookie::{Cookie, CookieBuilder};
use http::header::{self, HeaderMap, HeaderValue};

fn trim(b: &[u8]) -> &[u8] {
    let is_ws = |c: &u8| *c == b' ' || *c == b'\t';
    let start = b.iter().position(|c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !is_ws(c)).map_or(start, |i| i + 1);
    &b[start..end]
}

/// Every `name=value` pair of every `Cookie` header, in order, trimmed.
/// A pair without `=` has an empty name (RFC 6265 section 5.2 step 3).
pub fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = trim(pair);
            if pair.is_empty() {
                return None;
            }
            Some(match pair.iter().position(|&b| b == b'=') {
                Some(i) => (trim(&pair[..i]), trim(&pair[i + 1..])),
                None => (&pair[..0], pair),
            })
        })
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// Values of cookie `name`, in order; values that are not UTF-8 are
/// skipped (no cookie the gateway issues or reads is).
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    pairs(headers)
        .filter(move |(k, _)| *k == name.as_bytes())
        .filter_map(|(_, v)| std::str::from_utf8(unquote(v)).ok())
}

/// The first value of cookie `name`.
pub fn value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    pairs(headers)
        .filter(|(k, _)| *k == name.as_bytes())
        .find_map(|(_, v)| std::str::from_utf8(unquote(v)).ok())
}

/// Removes every cookie called `name`, leaving the others (bytes as they
/// came) in one `Cookie` header, or none when nothing is left.
pub fn remove(headers: &mut HeaderMap, name: &str) {
    if !pairs(headers).any(|(k, _)| k == name.as_bytes()) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        for pair in v.as_bytes().split(|&b| b == b';') {
            let pair = trim(pair);
            let key = pair
                .iter()
                .position(|&b| b == b'=')
                .map_or(&pair[..0], |i| trim(&pair[..i]));
            if pair.is_empty() || key == name.as_bytes() {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        // Made of bytes of valid header values, trimmed and joined.
        if let Ok(v) = HeaderValue::from_bytes(&kept) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// Whether `s` may be a cookie name: an RFC 6265 (section 4.1.1) `token`,
/// that is one or more visible ASCII characters other than the separators
/// `()<>@,;:\"/[]?={}` (RFC 9110 section 5.6.2's `tchar`). Every cookie
/// name in the config (session, affinity, JWT source, hash key) is checked
/// with it.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A `Set-Cookie` for one of the gateway's own cookies: `HttpOnly`, and
/// `Secure` exactly when `secure`. Set either way, since left unset the
/// crate would add `Secure` to a `SameSite=None` cookie by itself.
pub fn build<'c>(name: &'c str, value: &'c str, secure: bool) -> CookieBuilder<'c> {
    Cookie::build((name, value)).http_only(true).secure(secure)
}

/// `Max-Age` of `secs` seconds, for [`CookieBuilder::max_age`].
pub fn max_age(secs: u64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// The `name=value` pair of a `Set-Cookie` value and its attributes, in
/// no particular order: what tests compare, since the order of attributes
/// means nothing to a browser.
#[cfg(test)]
pub(crate) fn set_cookie_parts(v: &str) -> (&str, std::collections::BTreeSet<&str>) {
    let mut parts = v.split("; ");
    let pair = parts.next().unwrap_or_default();
    (pair, parts.collect())
}

/// The name of the cookie a `Set-Cookie` value sets, as the gateway would
/// read it back from the browser's `Cookie` header.
///
/// A browser takes the text before the first `;`, splits it at the first
/// `=` and trims spaces and tabs from both sides (RFC 6265bis section
/// 5.6): `" sid =x"` sets `sid`. A pair with an empty name (`=sid=x`), or
/// with no `=` at all, sets a nameless cookie, which the browser sends
/// back as its bare value: `sid=x`, which reads as cookie `sid`. So for a
/// nameless cookie the name is that of its value, read the same way.
pub fn set_cookie_name(value: &[u8]) -> &[u8] {
    let pair = value.split(|&b| b == b';').next().unwrap_or(value);
    let name = match pair.iter().position(|&b| b == b'=') {
        Some(i) => trim(&pair[..i]),
        None => &pair[..0],
    };
    if !name.is_empty() {
        return name;
    }
    let value = match pair.iter().position(|&b| b == b'=') {
        Some(i) => trim(&pair[i + 1..]),
        None => trim(pair),
    };
    let inner = value.split(|&b| b == b'=').next().unwrap_or(value);
    trim(inner)
}

/// Whether a `Set-Cookie` value sets (or overwrites) one of the cookies
/// named in `own`: the gateway's session, affinity and sign-in state
/// cookies, which a backend must never set (SPEC 16). Names compare
/// exactly, as browsers compare them.
pub fn sets_any(value: &[u8], own: &[&str]) -> bool {
    let name = set_cookie_name(value);
    !name.is_empty() && own.iter().any(|n| n.as_bytes() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn cookie_names_are_tokens() {
        for c in (0u8..0x80).map(char::from).chain(['é']) {
            let token = c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
            assert_eq!(is_name(&c.to_string()), token, "{c:?}");
        }
        assert!(is_name("__Host-gatehouse_session"));
        assert!(!is_name(""));
        assert!(!is_name("a b"));
        assert!(!is_name("sid=x"));
    }

    #[test]
    fn values_are_found_across_headers_trimmed_and_unquoted() {
        let h = headers(&[b"a=1; s = x ; q=\"y\"", b"s=z;;b"]);
        assert_eq!(value(&h, "a"), Some("1"));
        assert_eq!(values(&h, "s").collect::<Vec<_>>(), vec!["x", "z"]);
        assert_eq!(value(&h, "q"), Some("y"));
        assert_eq!(value(&h, "b"), None, "a bare value has no name");
        assert_eq!(value(&h, ""), Some("b"));
    }

    #[test]
    fn a_utf8_cookie_beside_ours_hides_nothing() {
        let h = headers(&["name=José; sid=abc".as_bytes()]);
        assert!(h.get(header::COOKIE).unwrap().to_str().is_err());
        assert_eq!(value(&h, "sid"), Some("abc"));
        assert_eq!(value(&h, "name"), Some("José"));
        let mut h = h;
        remove(&mut h, "sid");
        assert_eq!(
            h.get(header::COOKIE).unwrap().as_bytes(),
            "name=José".as_bytes()
        );
    }

    #[test]
    fn set_cookie_names_are_read_as_a_browser_sends_them_back() {
        for (value, name) in [
            (&b"sid=x; Path=/"[..], &b"sid"[..]),
            (b" sid =x", b"sid"),
            (b"\tsid\t=x", b"sid"),
            (b"=sid=x", b"sid"),
            (b" = sid = x; Path=/", b"sid"),
            (b"=sid", b"sid"),
            (b"sid", b"sid"),
            (b" sid ; Path=/", b"sid"),
            (b"=", b""),
            (b"", b""),
            (b"a=sid=x", b"a"),
            (b"sid_other=1", b"sid_other"),
        ] {
            assert_eq!(
                set_cookie_name(value),
                name,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        let own = ["gatehouse_session", "gatehouse_oidc"];
        assert!(sets_any(b"=gatehouse_session=x", &own));
        assert!(sets_any(b" gatehouse_oidc =x; Max-Age=600", &own));
        assert!(!sets_any(b"app=gatehouse_session", &own));
        assert!(!sets_any(b"Gatehouse_Session=x", &own));
        assert!(!sets_any(b"=", &own));
    }

    /// Every value made of up to five of these pieces: whenever a browser
    /// (RFC 6265bis sections 5.6 and 5.8.3) would send back a cookie the
    /// gateway reads as `sid`, `sets_any` says so. (The `set_cookie` fuzz
    /// target checks the same over arbitrary bytes.)
    #[test]
    fn every_short_spelling_that_sets_an_own_cookie_is_caught() {
        const PIECES: [&[u8]; 7] = [b"sid", b"=", b" ", b"\t", b";", b"x", b"sid="];
        fn browser(v: &[u8]) -> Option<Vec<u8>> {
            let pair = v.split(|&b| b == b';').next().unwrap_or(v);
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (trim(&pair[..i]), trim(&pair[i + 1..])),
                None => (&pair[..0], trim(pair)),
            };
            if name.is_empty() && value.is_empty() {
                return None;
            }
            Some(if name.is_empty() {
                value.to_vec()
            } else {
                [name, b"=", value].concat()
            })
        }
        let mut values: Vec<Vec<u8>> = vec![Vec::new()];
        let mut checked = 0;
        for _ in 0..5 {
            let longer: Vec<Vec<u8>> = values
                .iter()
                .flat_map(|v| PIECES.iter().map(move |p| [v.as_slice(), p].concat()))
                .collect();
            for v in &longer {
                let Some(back) = browser(v) else { continue };
                let h = headers(&[&back]);
                if pairs(&h).any(|(k, _)| k == b"sid") {
                    assert!(sets_any(v, &["sid"]), "{:?}", String::from_utf8_lossy(v));
                    checked += 1;
                }
            }
            values = longer;
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn remove_takes_every_spelling_of_the_name_and_keeps_the_rest() {
        let mut h = headers(&[b"a=1; sid=x; sid =y", b" sid=z; b=2"]);
        remove(&mut h, "sid");
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        let mut h = headers(&[b"sid=x"]);
        remove(&mut h, "sid");
        assert!(!h.contains_key(header::COOKIE));
        let mut h = headers(&[b"a=1;  b=2"]);
        remove(&mut h, "sid");
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1;  b=2", "untouched");
    }
}
