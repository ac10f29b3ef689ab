//! Config loading: the examples pass, and errors say where and what.

use gatehouse::config::{load, load_str};
use std::path::Path;

fn errors(text: &str) -> String {
    match load_str(text, Path::new("/etc/gatehouse/test.toml")) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_example_config_passes_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") && !path.ends_with("users.toml") {
            load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 2, "expected example configs in config/");
}

#[test]
fn unknown_keys_are_errors_with_path_and_line() {
    let e = errors("[server]\nlisten = \"127.0.0.1:0\"\n\n[[upstreams]]\nname = \"a\"\nbackends = [\"127.0.0.1:1\"]\nretrys = 2\n");
    assert!(e.contains("/etc/gatehouse/test.toml"), "{e}");
    assert!(e.contains("upstreams[0]"), "{e}");
    assert!(e.contains("retrys"), "{e}");
    assert!(e.contains("line 7"), "{e}");
}

#[test]
fn toml_syntax_errors_give_line_and_column() {
    let e = errors("[server]\nlisten = \"127.0.0.1:0\n");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn semantic_errors_are_all_reported_with_key_paths_and_lines() {
    let e = errors(
        r#"[server]
listen = "127.0.0.1:0"
idle_timeout = "30"

[[upstreams]]
name = "a"
backends = ["127.0.0.1:1", "nohostport"]

[[upstreams]]
name = "empty"

[[upstreams]]
name = "a"
backends = ["127.0.0.1:2"]

[[routes]]
name = "r"
upstream = "missing"
"#,
    );
    assert!(e.contains("server.idle_timeout (line 3"), "{e}");
    assert!(e.contains("upstreams[0].backends[1] (line 7"), "{e}");
    assert!(e.contains("upstreams[1].backends"), "{e}");
    assert!(e.contains("has no backends"), "{e}");
    assert!(e.contains("upstreams[2].name"), "{e}");
    assert!(e.contains("duplicate upstream name"), "{e}");
    assert!(e.contains("routes[0].upstream"), "{e}");
    assert!(e.contains("`missing`"), "{e}");
}

#[test]
fn secrets_come_inline_from_files_or_from_env() {
    let dir = crate::support::tempdir();
    std::fs::write(
        dir.path().join("secret"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let path = dir.path().join("g.toml");
    let c = load_str("[server]\nsecret_file = \"secret\"\n", &path).unwrap();
    assert_eq!(
        c.server.secret.0, b"0123456789abcdef0123456789abcdef",
        "one trailing newline trimmed"
    );
    std::env::set_var(
        "GATEHOUSE_TEST_SECRET_X",
        "abcdefghijabcdefghijabcdefghij12",
    );
    let c = load_str(
        "[server]\nsecret_env = \"GATEHOUSE_TEST_SECRET_X\"\n",
        &path,
    )
    .unwrap();
    assert_eq!(c.server.secret.0, b"abcdefghijabcdefghijabcdefghij12");
    let e = errors("[server]\nsecret_env = \"GATEHOUSE_TEST_UNSET_VAR\"\n");
    assert!(e.contains("server.secret_env"), "{e}");
    let e = errors("[server]\nsecret = \"x\"\nsecret_env = \"Y\"\n");
    assert!(e.contains("only one of"), "{e}");
    let e = errors("[server]\nsecret = \"short\"\n");
    assert!(e.contains("at least 32 bytes"), "{e}");
}

#[test]
fn unreadable_certificates_are_reported() {
    let e = errors("[server.tls]\ncert = \"nope.crt\"\nkey = \"nope.key\"\n");
    assert!(e.contains("server.tls.cert"), "{e}");
    assert!(e.contains("nope.crt"), "{e}");
}

#[test]
fn route_and_host_values_are_checked() {
    let e = errors(
        "[[upstreams]]\nname = \"a\"\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nname = \"r\"\nupstream = \"a\"\nhost = \"*.*.x\"\npath_prefix = \"/a/../b\"\nauth = \"maybe\"\n",
    );
    assert!(e.contains("routes[0].host"), "{e}");
    assert!(e.contains("routes[0].path_prefix"), "{e}");
    assert!(e.contains("routes[0].auth"), "{e}");
}

#[test]
fn proxy_protocol_values_and_senders_are_checked() {
    let e = errors("[server]\nproxy_protocol = \"v3\"\nproxy_protocol_from = [\"10.0.0.0/33\"]\n");
    assert!(e.contains("server.proxy_protocol ("), "{e}");
    assert!(e.contains("server.proxy_protocol_from[0]"), "{e}");
    // On, with nobody allowed to send it.
    let e = errors("[server]\nproxy_protocol = \"any\"\n");
    assert!(e.contains("server.proxy_protocol_from"), "{e}");
    // trusted_proxies is the default sender list.
    assert!(load_str(
        "[server]\nproxy_protocol = \"v2\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        Path::new("/etc/gatehouse/test.toml"),
    )
    .is_ok());
}

/// Writes `size` bytes to `dir/name`: `head`, then `#` comment lines (so
/// TOML and PEM files stay well-formed; JSON gets spaces instead).
fn padded(dir: &Path, name: &str, head: &str, size: usize, pad: u8) -> std::path::PathBuf {
    let mut bytes = head.as_bytes().to_vec();
    while bytes.len() < size {
        bytes.push(pad);
        if bytes.len() % 100 == 0 && pad == b'#' {
            bytes.push(b'\n');
        }
    }
    bytes.truncate(size);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// SPEC 16: every secret file, the users file and every key, certificate
/// and CA file is refused over its bound, naming the key and the path:
/// 1 MiB, 4 MiB for CA bundles (and for the config file itself).
#[test]
fn every_file_a_config_names_is_refused_over_its_bound_naming_it() {
    const MIB: usize = 1 << 20;
    let dir = crate::support::tempdir();
    let d = dir.path();
    let big = padded(d, "big", "#\n", 2 * MIB, b'#');
    let huge = padded(d, "huge", "#\n", 5 * MIB, b'#');
    let jwks = padded(d, "jwks.json", "{\"keys\": []}", 2 * MIB, b' ');
    let ca = padded(
        d,
        "ca.pem",
        &crate::support::Pki::new().ca_pem,
        2 * MIB,
        b'#',
    );
    let jwt = "[[jwt]]\nname = \"i\"\nissuer = \"i\"\n";
    let oidc =
        "[[oidc]]\nname = \"corp\"\nissuer = \"https://idp.example.com/\"\nclient_id = \"c\"\n";
    let upstream = "[[upstreams]]\nname = \"a\"\nbackends = [\"127.0.0.1:1\"]\ntls = true\n";
    let cases: Vec<(&str, String, &Path, &str)> = vec![
        (
            "server.secret_file",
            "[server]\nsecret_file = \"big\"\n".into(),
            &big,
            "1 MiB",
        ),
        (
            "admin.token_file",
            "[admin]\ntoken_file = \"big\"\n".into(),
            &big,
            "1 MiB",
        ),
        (
            "jwt[0].secret_file",
            format!("{jwt}algorithms = [\"HS256\"]\nsecret_file = \"big\"\n"),
            &big,
            "1 MiB",
        ),
        (
            "jwt[0].jwks_file",
            format!("{jwt}jwks_file = \"jwks.json\"\n"),
            &jwks,
            "1 MiB",
        ),
        (
            "jwt[0].public_key_file",
            format!("{jwt}public_key_file = \"big\"\n"),
            &big,
            "1 MiB",
        ),
        (
            "oidc[0].client_secret_file",
            format!("{oidc}client_secret_file = \"big\"\n"),
            &big,
            "1 MiB",
        ),
        (
            "login.users_file",
            "[login]\nusers_file = \"big\"\n".into(),
            &big,
            "1 MiB",
        ),
        (
            "login.signing_key_file",
            "[login]\nsigning_key_file = \"big\"\n".into(),
            &big,
            "1 MiB",
        ),
        (
            "login.previous_keys",
            "[login]\nprevious_keys = [\"big\"]\n".into(),
            &big,
            "1 MiB",
        ),
        (
            "server.tls.cert",
            "[server.tls]\ncert = \"big\"\nkey = \"big\"\n".into(),
            &big,
            "1 MiB",
        ),
        (
            "server.tls.client_ca",
            "[server.tls]\ncert = \"big\"\nkey = \"big\"\nclient_ca = \"huge\"\n".into(),
            &huge,
            "4 MiB",
        ),
        (
            "jwt[0].ca_file",
            format!("{jwt}jwks_url = \"https://idp.example.com/jwks\"\nca_file = \"huge\"\n"),
            &huge,
            "4 MiB",
        ),
        (
            "oidc[0].ca_file",
            format!("{oidc}client_secret = \"s\"\nca_file = \"huge\"\n"),
            &huge,
            "4 MiB",
        ),
        (
            "upstreams[0].ca",
            format!("{upstream}ca = \"huge\"\n"),
            &huge,
            "4 MiB",
        ),
    ];
    let config = d.join("g.toml");
    for (key, text, file, limit) in cases {
        let e = match load_str(&text, &config) {
            Ok(_) => panic!("{key}: accepted"),
            Err(e) => e.to_string(),
        };
        let want = format!("cannot read {}: larger than {limit}", file.display());
        assert!(
            e.lines().any(|l| l.contains(key) && l.contains(&want)),
            "{key}: {e}"
        );
    }
    // A CA bundle may be larger than the other files.
    let ok = format!("{upstream}ca = \"ca.pem\"\n");
    load_str(&ok, &config).unwrap_or_else(|e| panic!("a 2 MiB CA bundle: {e}"));
    assert!(std::fs::metadata(&ca).unwrap().len() > MIB as u64);
    // The config file itself.
    let cfg = padded(d, "huge.toml", "[server]\n", 5 * MIB, b'#');
    let e = load(&cfg).unwrap_err().to_string();
    assert!(
        e.contains(&cfg.display().to_string()) && e.contains("larger than 4 MiB"),
        "{e}"
    );
}

/// A `__Host-` or `__Secure-` session cookie whose attributes break the
/// prefix's rules would be dropped by every browser: refused at load.
#[test]
fn prefixed_session_cookie_names_need_the_attributes_browsers_require() {
    for (sessions, ok) in [
        ("cookie_name = \"__Host-gatehouse_session\"\n", true),
        (
            "cookie_name = \"__Secure-gatehouse_session\"\ncookie_domain = \"example.com\"\n",
            true,
        ),
        ("cookie_name = \"__Host-s\"\ncookie_secure = false\n", false),
        (
            "cookie_name = \"__host-s\"\ncookie_domain = \"example.com\"\n",
            false,
        ),
        (
            "cookie_name = \"__Secure-s\"\ncookie_secure = false\n",
            false,
        ),
    ] {
        let text = format!("[sessions]\n{sessions}");
        let r = load_str(&text, Path::new("/etc/gatehouse/test.toml"));
        match (r, ok) {
            (Ok(_), true) => {}
            (Err(e), false) => {
                let e = e.to_string();
                assert!(
                    e.contains("sessions.cookie_name") && e.contains("browsers refuse"),
                    "{e}"
                );
            }
            (r, _) => panic!("{sessions}: {:?}", r.map(|_| "accepted")),
        }
    }
}
