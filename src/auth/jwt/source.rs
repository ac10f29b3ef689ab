//! Finding the token in a request: `Authorization: Bearer` (RFC 6750
//! section 2.1), a named header, a cookie, or a query parameter (RFC 6750
//! section 2.3; removed from the forwarded URL, since backends and their
//! access logs have no business with it).

use crate::config::TokenSource;
use http::header::{self, HeaderMap};
use http::Uri;
use percent_encoding::percent_decode_str;

/// The token of an `Authorization: Bearer` header; the scheme is
/// case-insensitive (RFC 9110 section 11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(rest.trim()).filter(|t| !t.is_empty())
}

/// The value of cookie `name` (RFC 6265 section 5.4; HTTP/2 may split
/// cookies over several headers).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    crate::cookies::value(headers, name).filter(|v| !v.is_empty())
}

/// Removes every query parameter named in `names` from `uri`, returning
/// the first value of each that was present, as `(name, value)`.
pub fn take_query_tokens(uri: &mut Uri, names: &[String]) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    let Some(q) = uri.query() else {
        return found;
    };
    let is_token = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        names.iter().any(|n| n == name)
    };
    // The usual case, no token in the query: nothing allocated.
    if !q.split('&').any(is_token) {
        return found;
    }
    let mut kept: Vec<&str> = Vec::new();
    for pair in q.split('&') {
        if !is_token(pair) {
            kept.push(pair);
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !found.iter().any(|(n, _)| n == name) {
            // A `%` without two hex digits stays as it is; bytes that
            // are not UTF-8 become U+FFFD (no token has any).
            let value = percent_decode_str(value).decode_utf8_lossy();
            found.push((name.to_string(), value.into_owned()));
        }
    }
    let mut pq = uri.path().to_string();
    if !kept.is_empty() {
        pq.push('?');
        pq.push_str(&kept.join("&"));
    }
    let mut parts = std::mem::take(uri).into_parts();
    // The new path and query is a sub-sequence of the old, so it parses.
    parts.path_and_query = pq.parse().ok();
    *uri = Uri::from_parts(parts).unwrap_or_default();
    found
}

/// The first token present, in `sources` order, with its source.
pub fn find<'s, 'h>(
    sources: &'s [TokenSource],
    headers: &'h HeaderMap,
    query: &'h [(String, String)],
) -> Option<(&'s TokenSource, &'h str)> {
    sources.iter().find_map(|s| {
        let t = match s {
            TokenSource::Bearer => bearer(headers),
            TokenSource::Header(h) => headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|t| !t.is_empty()),
            TokenSource::Cookie(name) => cookie(headers, name),
            TokenSource::Query(name) => query
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .filter(|t| !t.is_empty()),
        };
        t.map(|t| (s, t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_absent() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bEaReR  abc ")])),
            Some("abc")
        );
        assert_eq!(bearer(&headers(&[("authorization", "Basic YTpi")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearerabc")])), None);
        assert_eq!(bearer(&headers(&[])), None);
    }

    #[test]
    fn cookies_are_found_across_headers() {
        let h = headers(&[("cookie", "a=1; tok=xyz"), ("cookie", "b=2; t=\"q\"")]);
        assert_eq!(cookie(&h, "tok"), Some("xyz"));
        assert_eq!(cookie(&h, "t"), Some("q"));
        assert_eq!(cookie(&h, "to"), None);
        assert_eq!(cookie(&h, "b"), Some("2"));
    }

    #[test]
    fn query_tokens_are_taken_out_of_the_uri_and_the_rest_kept() {
        let names = vec!["access_token".to_string()];
        let mut u: Uri = "/p/a?x=1&access_token=a%2Eb.c&y=&access_token=zzz&&z=3"
            .parse()
            .unwrap();
        let found = take_query_tokens(&mut u, &names);
        assert_eq!(found, vec![("access_token".into(), "a.b.c".into())]);
        assert_eq!(u.to_string(), "/p/a?x=1&y=&&z=3");

        let mut u: Uri = "https://h.example/p?access_token=t".parse().unwrap();
        take_query_tokens(&mut u, &names);
        assert_eq!(u.to_string(), "https://h.example/p");

        let mut u: Uri = "/p?other=1".parse().unwrap();
        assert!(take_query_tokens(&mut u, &names).is_empty());
        assert_eq!(u.to_string(), "/p?other=1");
    }

    #[test]
    fn the_first_source_with_a_token_wins() {
        let sources = vec![
            TokenSource::Bearer,
            TokenSource::Cookie("tok".into()),
            TokenSource::Query("t".into()),
            TokenSource::Header(http::HeaderName::from_static("x-token")),
        ];
        let q = vec![("t".to_string(), "from-query".to_string())];
        let h = headers(&[("cookie", "tok=from-cookie"), ("x-token", "from-header")]);
        let (s, t) = find(&sources, &h, &q).unwrap();
        assert_eq!((s, t), (&sources[1], "from-cookie"));
        let h = headers(&[("x-token", " from-header ")]);
        assert_eq!(find(&sources, &h, &q).unwrap().1, "from-query");
        assert_eq!(find(&sources, &h, &[]).unwrap().1, "from-header");
        assert!(find(&sources, &HeaderMap::new(), &[]).is_none());
    }
}
