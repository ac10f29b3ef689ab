//! Request `Cookie` headers (RFC 6265 section 5.4): finding a cookie by
//! name and removing one before a request is forwarded. One place for the
//! session cookie, the affinity cookie and token cookies.

use http::header::{self, HeaderMap, HeaderValue};

/// Every `(name, value)` pair across all `Cookie` fields (HTTP/2 may send
/// several), values without surrounding quotes.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            let v = v.trim();
            Some((
                k.trim(),
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v),
            ))
        })
}

/// Every value of cookie `name`.
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    pairs(headers)
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The first value of cookie `name`.
pub fn value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    pairs(headers).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// Removes cookie `name`, keeping the others in one `Cookie` field (or
/// none when nothing is left).
pub fn remove(headers: &mut HeaderMap, name: &str) {
    if value(headers, name).is_none() {
        return;
    }
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.split_once('=').is_none_or(|(k, _)| k.trim() != name))
        .collect();
    let joined = kept.join("; ");
    headers.remove(header::COOKIE);
    if !joined.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(header::COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_across_fields_and_removed() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; gatehouse_session=abc; b=\"2\"".parse().unwrap(),
        );
        h.append(header::COOKIE, "c=3".parse().unwrap());
        assert_eq!(value(&h, "gatehouse_session"), Some("abc"));
        assert_eq!(value(&h, "b"), Some("2"));
        assert_eq!(value(&h, "c"), Some("3"));
        assert_eq!(value(&h, "gatehouse"), None);
        remove(&mut h, "gatehouse_session");
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=\"2\"; c=3");
        let mut only = HeaderMap::new();
        only.insert(header::COOKIE, "x=1".parse().unwrap());
        remove(&mut only, "x");
        assert!(!only.contains_key(header::COOKIE));
    }
}
