//! The HTTP/1.1 smuggling guard (`src/server/framing.rs`), which rewrites
//! bytes as they arrive from the socket.
//!
//! Checked: (1) the result does not depend on how the bytes were split
//! into reads (TCP segmentation must not hide a header from it); (2) it
//! changes at most one byte, a `:` into NUL; (3) a first request head that
//! plainly carries both `Content-Length` and `Transfer-Encoding` is always
//! poisoned at the colon of the second of them.
#![no_main]

use gatehouse::fuzzing::framing_scan;
use libfuzzer_sys::fuzz_target;

/// Where the guard must poison the first head, by a plain reading of it:
/// CRLF lines, names compared case-insensitively, no bare CR anywhere in
/// the head, no obs-fold. `None` when that reading finds no CL+TE pair or
/// the head is not plain.
fn expected_poison(data: &[u8]) -> Option<usize> {
    let mut at = 0;
    // Blank lines before the request line are allowed.
    while data[at..].starts_with(b"\r\n") {
        at += 2;
    }
    let mut first = true;
    let (mut cl, mut te) = (false, false);
    loop {
        let rel = data[at..].windows(2).position(|w| w == b"\r\n")?;
        let line = &data[at..at + rel];
        if line.contains(&b'\r') || line.contains(&b'\n') {
            return None;
        }
        if first {
            if line.is_empty() || line.starts_with(b"PRI * ") {
                return None;
            }
            first = false;
        } else {
            if line.is_empty() {
                return None; // end of head, no pair
            }
            if line[0] == b' ' || line[0] == b'\t' {
                return None;
            }
            let colon = line.iter().position(|&b| b == b':')?;
            let name = &line[..colon];
            if name.eq_ignore_ascii_case(b"content-length") {
                if te {
                    return Some(at + colon);
                }
                cl = true;
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                if cl {
                    return Some(at + colon);
                }
                te = true;
            }
        }
        at += rel + 2;
    }
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    // The first bytes choose read sizes; the rest is what the client sent.
    let n = (input[0] % 8) as usize;
    if input.len() < 1 + n {
        return;
    }
    let sizes: Vec<usize> = input[1..1 + n].iter().map(|&b| b as usize % 17).collect();
    let data = &input[1 + n..];

    let whole = framing_scan(data, &[usize::MAX]);
    let bytewise = framing_scan(data, &[1]);
    let chunked = framing_scan(data, &sizes);
    assert_eq!(whole, bytewise, "result depends on read boundaries");
    assert_eq!(whole, chunked, "result depends on read boundaries");

    let changed: Vec<usize> = (0..data.len()).filter(|&i| whole[i] != data[i]).collect();
    assert!(
        changed.len() <= 1,
        "more than one byte changed: {changed:?}"
    );
    if let Some(&i) = changed.first() {
        assert_eq!((data[i], whole[i]), (b':', 0), "only a colon becomes NUL");
    }
    if let Some(at) = expected_poison(data) {
        assert_eq!(changed, vec![at], "CL+TE head not poisoned where expected");
    }
});
