//! Percent-escapes (RFC 3986 section 2.1), on the `percent-encoding`
//! crate: what counts as an escape is decided here and nowhere else.
//!
//! An escape is `%` and exactly two hex digits. Parsing the digits with
//! `u8::from_str_radix` would also take a sign (`%+1` as byte 1), which a
//! backend or a browser would read as three characters: so the digits are
//! checked byte by byte and the crate decodes.
//!
//! Callers differ in what a malformed escape means: form fields and query
//! tokens keep it as text (the crate's `percent_decode_str` as it is),
//! admin path segments and request paths refuse it ([`decode_strict`],
//! [`escape`]).

use percent_encoding::{percent_decode, percent_decode_str};

/// The byte that the escape at the start of `s` stands for; `None` when
/// `s` does not start with `%` and two hex digits.
pub fn escape(s: &[u8]) -> Option<u8> {
    let e = s
        .get(..3)
        .filter(|e| e[0] == b'%' && e[1].is_ascii_hexdigit() && e[2].is_ascii_hexdigit())?;
    percent_decode(e).next()
}

/// True when every `%` in `s` starts an escape.
pub fn well_formed(s: &[u8]) -> bool {
    s.iter()
        .enumerate()
        .all(|(i, &b)| b != b'%' || escape(&s[i..]).is_some())
}

/// `s` with its escapes decoded; `None` when one is malformed or the
/// bytes are not UTF-8.
pub fn decode_strict(s: &str) -> Option<String> {
    if !well_formed(s.as_bytes()) {
        return None;
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escape_is_percent_and_exactly_two_hex_digits() {
        assert_eq!(escape(b"%41"), Some(b'A'));
        assert_eq!(escape(b"%2fx"), Some(b'/'));
        assert_eq!(escape(b"%Ff"), Some(0xff));
        for bad in [&b"%+1"[..], b"%-1", b"% 1", b"%4", b"%", b"%zz", b"41", b""] {
            assert_eq!(escape(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(well_formed(b"/a%2Fb%41"));
        assert!(!well_formed(b"/a%2"));
        assert!(!well_formed(b"/a%+1"));
    }

    #[test]
    fn strict_decoding_refuses_what_it_cannot_read() {
        assert_eq!(
            decode_strict("10.0.0.1%3A8080").as_deref(),
            Some("10.0.0.1:8080")
        );
        assert_eq!(decode_strict("al%C3%ADce").as_deref(), Some("alíce"));
        assert_eq!(decode_strict("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode_strict("%+1"), None, "no sign: not \\x01");
        assert_eq!(decode_strict("%zz"), None);
        assert_eq!(decode_strict("x%4"), None);
        assert_eq!(decode_strict("%FF"), None, "not UTF-8");
    }
}
