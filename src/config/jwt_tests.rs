use super::*;
use crate::auth::testkeys::{jwks, TestKey};
use crate::config::{load_str, Config, ConfigError};

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn base() -> String {
    "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
     [[upstreams]]\nname = \"app\"\nbackends = [\"127.0.0.1:1\"]\n\
     [[routes]]\nname = \"r\"\nupstream = \"app\"\nmethods = [\"jwt\"]\n"
        .to_string()
}

/// Loads `jwt` (one or more `[[jwt]]` tables) with files in a temp folder.
fn load(jwt: &str, files: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let text = format!("{}{jwt}", base());
    load_str(&text, &dir.path().join("gatehouse.toml"))
}

fn problems(jwt: &str, files: &[(&str, &str)]) -> Vec<String> {
    match load(jwt, files) {
        Ok(_) => panic!("expected errors for:\n{jwt}"),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

fn has(problems: &[String], path: &str, text: &str) -> bool {
    problems
        .iter()
        .any(|p| p.starts_with(path) && p.contains(text))
}

#[test]
fn a_minimal_jwks_url_issuer_gets_the_documented_defaults() {
    let c = load(
        "[[jwt]]\nname = \"idp\"\nissuer = \"https://idp.example.com/\"\njwks_url = \"https://idp.example.com/jwks.json\"\n",
        &[],
    )
    .unwrap();
    let j = &c.jwt[0];
    assert_eq!(j.algorithms, vec![Algorithm::RS256]);
    assert_eq!(j.leeway, Duration::from_secs(30));
    assert_eq!(j.required_claims, vec!["sub", "exp"]);
    assert_eq!(j.token_sources, vec![TokenSource::Bearer]);
    assert!(j.audiences.is_empty());
    let map: Vec<(&str, &str)> = j
        .claims_map
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(map, DEFAULT_JWT_CLAIMS_MAP);
    let JwtKeys::Remote(src) = &j.keys else {
        panic!("remote keys")
    };
    let JwksLocation::Url { url, .. } = &src.location else {
        panic!("a URL")
    };
    assert_eq!(src.refresh, Duration::from_secs(600));
    assert_eq!(src.min_refetch, Duration::from_secs(30));
    assert_eq!(url.host, "idp.example.com");
    assert_eq!(url.port, 443);
    assert_eq!(url.path_and_query, "/jwks.json");
}

#[test]
fn every_key_source_loads() {
    let rsa = TestKey::rsa(Algorithm::RS256);
    let ed = TestKey::ed25519();
    let doc = jwks(&[ed.jwk_with("k1")]);
    std::env::set_var("GATEHOUSE_TEST_JWT_SECRET", SECRET);
    let c = load(
        &format!(
            "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"HS256\", \"HS512\"]\nsecret = \"{SECRET}\"\n\
             [[jwt]]\nname = \"b\"\nissuer = \"b\"\nalgorithms = [\"HS384\"]\nsecret_file = \"hmac\"\n\
             [[jwt]]\nname = \"c\"\nissuer = \"c\"\nalgorithms = [\"HS256\"]\nsecret_env = \"GATEHOUSE_TEST_JWT_SECRET\"\n\
             [[jwt]]\nname = \"d\"\nissuer = \"d\"\nalgorithms = [\"RS256\", \"PS512\"]\npublic_key_file = \"rsa.pem\"\n\
             [[jwt]]\nname = \"e\"\nissuer = \"e\"\nalgorithms = [\"EdDSA\"]\njwks_file = \"keys.json\"\n\
             claims_map = {{ groups = \"realm_access.roles\", tenant = \"org.id\" }}\n\
             token_sources = [\"cookie:access_token\", \"query:access_token\", \"header:X-Token\", \"header:authorization\"]\n"
        ),
        &[("hmac", &format!("{SECRET}\n")), ("rsa.pem", &rsa.public_pem), ("keys.json", &doc)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.jwt.len(), 5);
    let JwtKeys::Static(set) = &c.jwt[1].keys else {
        panic!()
    };
    assert_eq!(set.keys()[0].kind, KeyKind::Hmac);
    let e = &c.jwt[4];
    assert!(e
        .claims_map
        .contains(&("groups".into(), "realm_access.roles".into())));
    assert!(e.claims_map.contains(&("email".into(), "email".into())));
    assert!(e.claims_map.contains(&("tenant".into(), "org.id".into())));
    assert_eq!(
        e.token_sources,
        vec![
            TokenSource::Cookie("access_token".into()),
            TokenSource::Query("access_token".into()),
            TokenSource::Header(http::HeaderName::from_static("x-token")),
            TokenSource::Bearer,
        ]
    );
}

/// SPEC 16: `jwks_refresh` and `jwks_min_refetch` apply to `jwks_file`
/// too; a file is re-read every minute by default. Elsewhere they are
/// refused like `ca_file` away from a URL.
#[test]
fn a_jwks_file_is_refreshed_and_takes_the_refresh_settings() {
    let ed = TestKey::ed25519();
    let doc = jwks(&[ed.jwk_with("k1")]);
    let c = load(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"EdDSA\"]\njwks_file = \"k.json\"\n\
         [[jwt]]\nname = \"b\"\nissuer = \"b\"\nalgorithms = [\"EdDSA\"]\njwks_file = \"k.json\"\n\
         jwks_refresh = \"5s\"\njwks_min_refetch = \"2s\"\n",
        &[("k.json", &doc)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = |i: usize| {
        let JwtKeys::Remote(src) = &c.jwt[i].keys else {
            panic!("refreshed keys")
        };
        let JwksLocation::File { path, read } = &src.location else {
            panic!("a file")
        };
        assert!(path.ends_with("k.json"), "{path:?}");
        assert_eq!(read.keys().len(), 1);
        (src.refresh, src.min_refetch)
    };
    assert_eq!(
        file(0),
        (DEFAULT_JWKS_FILE_REFRESH, DEFAULT_JWKS_MIN_REFETCH)
    );
    assert_eq!(file(1), (Duration::from_secs(5), Duration::from_secs(2)));
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"EdDSA\"]\njwks_file = \"k.json\"\n\
         jwks_refresh = \"500ms\"\nca_file = \"ca.pem\"\n",
        &[("k.json", &doc)],
    );
    assert!(has(&p, "jwt[0].jwks_refresh", "at least 1s"), "{p:?}");
    assert!(
        has(&p, "jwt[0].ca_file", "only applies with jwks_url"),
        "{p:?}"
    );
}

#[test]
fn key_source_count_is_exactly_one() {
    let p = problems("[[jwt]]\nname = \"a\"\nissuer = \"a\"\n", &[]);
    assert!(has(&p, "jwt[0]", "no key source"), "{p:?}");
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\njwks_url = \"https://x/j\"\njwks_file = \"j.json\"\n",
        &[],
    );
    assert!(
        has(
            &p,
            "jwt[0]",
            "more than one key source (jwks_file, jwks_url)"
        ),
        "{p:?}"
    );
    let p = problems(
        &format!("[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\nsecret_env = \"X\"\n"),
        &[],
    );
    assert!(has(&p, "jwt[0]", "give only one of `secret`"), "{p:?}");
}

#[test]
fn algorithms_must_fit_the_key_type() {
    let rsa = TestKey::rsa(Algorithm::RS256);
    let ec = TestKey::ec(Algorithm::ES256);
    // RS* (the default) with a secret.
    let p = problems(
        &format!("[[jwt]]\nname = \"a\"\nissuer = \"a\"\nsecret = \"{SECRET}\"\n"),
        &[],
    );
    assert!(
        has(&p, "jwt[0].algorithms", "RS256 needs a public key"),
        "{p:?}"
    );
    // HS* with a public key: the algorithm-confusion door stays shut.
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"RS256\", \"HS256\"]\npublic_key_file = \"k.pem\"\n",
        &[("k.pem", &rsa.public_pem)],
    );
    assert!(
        has(&p, "jwt[0].algorithms", "HS256 needs a shared secret"),
        "{p:?}"
    );
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"HS256\"]\njwks_url = \"https://idp/j\"\n",
        &[],
    );
    assert!(
        has(&p, "jwt[0].algorithms", "HS256 needs a shared secret"),
        "{p:?}"
    );
    // ES384 with a P-256 key; RS256 with an EC key.
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"ES256\", \"ES384\", \"RS256\"]\npublic_key_file = \"k.pem\"\n",
        &[("k.pem", &ec.public_pem)],
    );
    assert!(has(&p, "jwt[0].algorithms", "ES384 does not fit"), "{p:?}");
    assert!(has(&p, "jwt[0].algorithms", "RS256 does not fit"), "{p:?}");
    assert!(!has(&p, "jwt[0].algorithms", "ES256 does not fit"), "{p:?}");
    // A JWKS file none of whose keys fits.
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"ES256\"]\njwks_file = \"k.json\"\n",
        &[("k.json", &jwks(&[rsa.jwk_with("r")]))],
    );
    assert!(
        has(&p, "jwt[0].algorithms", "no key in k.json fits"),
        "{p:?}"
    );
}

#[test]
fn none_unknown_and_empty_algorithm_lists_are_refused() {
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"RS256\", \"none\", \"RS1\"]\njwks_url = \"https://i/j\"\n",
        &[],
    );
    assert!(has(&p, "jwt[0].algorithms[1]", "never accepted"), "{p:?}");
    assert!(
        has(&p, "jwt[0].algorithms[2]", "unknown algorithm `RS1`"),
        "{p:?}"
    );
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = []\njwks_url = \"https://i/j\"\n",
        &[],
    );
    assert!(has(&p, "jwt[0].algorithms", "at least one"), "{p:?}");
}

#[test]
fn short_hmac_secrets_are_refused() {
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"HS256\"]\nsecret = \"short\"\n",
        &[],
    );
    assert!(has(&p, "jwt[0].secret", "needs at least 32"), "{p:?}");
    let p = problems(
        &format!(
            "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"HS512\"]\nsecret = \"{}\"\n",
            &SECRET[..48]
        ),
        &[],
    );
    assert!(has(&p, "jwt[0].secret", "HS512 needs at least 64"), "{p:?}");
}

#[test]
fn jwks_url_must_be_https_except_on_loopback() {
    for ok in [
        "https://idp.example.com/jwks",
        "http://127.0.0.1:8080/jwks",
        "http://127.9.9.9/jwks",
        "http://[::1]:9/jwks",
        "http://localhost:9/jwks",
    ] {
        assert!(parse_jwks_url(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://idp.example.com/jwks",
        "http://10.0.0.1/jwks",
        "ftp://idp/jwks",
        "idp.example.com/jwks",
        "https://user:pw@idp/jwks",
        "http://localhost.evil.com/jwks",
    ] {
        assert!(parse_jwks_url(bad).is_err(), "{bad}");
    }
    let u = parse_jwks_url("http://[::1]:9/k?x=1").unwrap();
    assert_eq!((u.host.as_str(), u.port), ("::1", 9));
    assert_eq!(u.authority, "[::1]:9");
    assert_eq!(u.path_and_query, "/k?x=1");
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\njwks_url = \"http://idp.example.com/jwks\"\n",
        &[],
    );
    assert!(has(&p, "jwt[0].jwks_url", "must be https://"), "{p:?}");
}

#[test]
fn duplicate_names_and_issuers_are_refused() {
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"x\"\njwks_url = \"https://i/j\"\n\
         [[jwt]]\nname = \"a\"\nissuer = \"x\"\njwks_url = \"https://i/j\"\n",
        &[],
    );
    assert!(has(&p, "jwt[1].name", "duplicate jwt name `a`"), "{p:?}");
    assert!(has(&p, "jwt[1].issuer", "duplicate issuer `x`"), "{p:?}");
}

#[test]
fn misplaced_and_malformed_settings_are_refused() {
    let p = problems(
        &format!(
            "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n\
             ca_file = \"ca.pem\"\njwks_refresh = \"1m\"\nleeway = \"soon\"\n\
             token_sources = [\"header:X-Auth-Token\", \"body:token\", \"cookie:a b\", \"query:\"]\n\
             claims_map = {{ sub = \"user\" }}\n"
        ),
        &[],
    );
    assert!(
        has(&p, "jwt[0].ca_file", "only applies with jwks_url"),
        "{p:?}"
    );
    assert!(
        has(&p, "jwt[0].jwks_refresh", "only applies with jwks_url"),
        "{p:?}"
    );
    assert!(has(&p, "jwt[0].leeway", "soon"), "{p:?}");
    // X-Auth-* is stripped before authentication: a token there would vanish.
    assert!(
        has(&p, "jwt[0].token_sources[0]", "removed from every request"),
        "{p:?}"
    );
    assert!(has(&p, "jwt[0].token_sources[1]", "expected"), "{p:?}");
    assert!(
        has(&p, "jwt[0].token_sources[2]", "not a cookie name"),
        "{p:?}"
    );
    assert!(
        has(&p, "jwt[0].token_sources[3]", "not a query parameter"),
        "{p:?}"
    );
    assert!(
        has(&p, "jwt[0].claims_map.\"sub\"", "set by the gateway"),
        "{p:?}"
    );
    let p = problems(
        "[[jwt]]\nname = \"a\"\nissuer = \"a\"\njwks_url = \"https://i/j\"\njwks_min_refetch = \"100ms\"\nca_file = \"missing.pem\"\n",
        &[],
    );
    assert!(has(&p, "jwt[0].jwks_min_refetch", "at least 1s"), "{p:?}");
    assert!(has(&p, "jwt[0].ca_file", "missing.pem"), "{p:?}");
}

#[test]
fn problems_point_at_the_line_of_the_key() {
    let e = load(
        "\n[[jwt]]\nname = \"a\"\nissuer = \"a\"\njwks_url = \"https://i/j\"\nalgorithms = [\"none\"]\n",
        &[],
    )
    .unwrap_err();
    let p = &e.problems()[0];
    assert_eq!(p.path, "jwt[0].algorithms[0]");
    assert!(p.line.is_some_and(|(l, _)| l > 10), "{p:?}");
}

#[test]
fn fingerprint_follows_settings_and_key_material() {
    let k1 = TestKey::ed25519();
    let k2 = TestKey::ed25519();
    let jwt = "[[jwt]]\nname = \"a\"\nissuer = \"a\"\nalgorithms = [\"EdDSA\"]\npublic_key_file = \"k.pem\"\n";
    let f = |pem: &str, extra: &str| {
        load(&format!("{jwt}{extra}"), &[("k.pem", pem)])
            .unwrap()
            .jwt[0]
            .fingerprint
    };
    assert_eq!(f(&k1.public_pem, ""), f(&k1.public_pem, ""));
    assert_ne!(f(&k1.public_pem, ""), f(&k2.public_pem, ""));
    assert_ne!(
        f(&k1.public_pem, ""),
        f(&k1.public_pem, "leeway = \"5s\"\n")
    );
}
