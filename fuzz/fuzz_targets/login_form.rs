//! Login and token request bodies (`src/login/mod.rs`): form decoding, and
//! the `rd` redirect check that keeps the login page from being an open
//! redirect.
//!
//! Checked: `parse_form` and `percent_decode_form` agree with a reference
//! `application/x-www-form-urlencoded` decoder (WHATWG URL, section 5.1:
//! `+` is a space, `%` and exactly two hex digits is a byte, anything else
//! stays); `safe_redirect` only ever answers `/`, a relative path that no
//! browser reads as another host, or an https URL whose host is the
//! request's or a routed one.
#![no_main]

use gatehouse::gateway::Snapshot;
use gatehouse::login::{parse_form, percent_decode_form, safe_redirect};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::OnceLock;

fn reference_decode(s: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if s[i] == b'+' {
            out.push(b' ');
        } else if s[i] == b'%'
            && i + 2 < s.len()
            && hex(s[i + 1]).is_some()
            && hex(s[i + 2]).is_some()
        {
            out.push((hex(s[i + 1]).unwrap() * 16 + hex(s[i + 2]).unwrap()) as u8);
            i += 3;
            continue;
        } else {
            out.push(s[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn snapshot() -> &'static Snapshot {
    static S: OnceLock<Snapshot> = OnceLock::new();
    S.get_or_init(|| {
        let toml = "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
            [[upstreams]]\nname = \"app\"\nbackends = [\"127.0.0.1:9\"]\n\
            [[routes]]\nname = \"app\"\nhost = \"app.example.com\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n\
            [[routes]]\nname = \"any\"\nhost = \"*.example.org\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n";
        let cfg = gatehouse::config::load_str(toml, std::path::Path::new("/nonexistent/g.toml"))
            .expect("the fuzz config loads");
        Snapshot::build(cfg, &Default::default(), None)
    })
}

/// The host a browser would go to for an absolute URL, given what follows
/// its scheme: up to the first `/`, `\`, `?` or `#`, after any userinfo,
/// without the port, lowercased.
fn browser_host(rest: &str) -> String {
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.to_ascii_lowercase()
}

fuzz_target!(|input: &[u8]| {
    // Form bodies.
    let form = parse_form(input);
    let mut want = BTreeMap::new();
    for pair in String::from_utf8_lossy(input)
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        want.insert(
            reference_decode(k.as_bytes()),
            reference_decode(v.as_bytes()),
        );
    }
    assert_eq!(form, want, "form fields differ from the reference decoder");
    if let Ok(s) = std::str::from_utf8(input) {
        assert_eq!(percent_decode_form(s), reference_decode(input));
    }

    // The redirect after login; the first line is the Host header.
    let text = String::from_utf8_lossy(input);
    let (host, rd) = text.split_once('\n').unwrap_or(("app.example.com", &text));
    // Whether the login arrived over plain HTTP (then `http://` may pass).
    let plain = input.first().is_some_and(|b| b & 1 == 1);
    let out = safe_redirect(rd, host, snapshot(), plain);
    assert!(
        out.bytes().all(|b| (0x21..0x7f).contains(&b)),
        "control or non-ASCII byte in {out:?}"
    );
    if out == "/" {
        return;
    }
    if out.starts_with('/') {
        // Browsers read `//x` and `/\x` as another host.
        let second = out.as_bytes().get(1).copied();
        assert!(second != Some(b'/') && second != Some(b'\\'), "{out:?}");
        assert_eq!(out, rd, "a relative rd is passed on as it is");
        return;
    }
    let scheme_len = if out.starts_with("https://") {
        "https://".len()
    } else {
        assert!(plain && out.starts_with("http://"), "{out:?}");
        "http://".len()
    };
    assert_eq!(out, rd);
    let target = browser_host(&out[scheme_len..]);
    let this = gatehouse::route::host_without_port(host).to_ascii_lowercase();
    let authority = out[scheme_len..]
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    assert!(!authority.contains('@'), "userinfo in {out:?}");
    assert!(
        !target.is_empty()
            && (target == this
                || target == "app.example.com"
                || target
                    .strip_suffix(".example.org")
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))),
        "rd {out:?} sends the browser to {target:?} (request host {host:?})"
    );
});
