use super::*;
use crate::config::DEFAULT_JWT_CLAIMS_MAP;
use crate::config::{load_str, Config, ConfigError};

fn base() -> String {
    "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
     [[upstreams]]\nname = \"app\"\nbackends = [\"127.0.0.1:1\"]\n\
     [[routes]]\nname = \"r\"\nupstream = \"app\"\nmethods = [\"session\"]\n"
        .to_string()
}

/// Loads `oidc` (one or more `[[oidc]]` tables) with files in a temp folder.
fn load(oidc: &str, files: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let text = format!("{}{oidc}", base());
    load_str(&text, &dir.path().join("gatehouse.toml"))
}

fn problems(oidc: &str) -> Vec<String> {
    match load(oidc, &[]) {
        Ok(_) => panic!("expected errors for:\n{oidc}"),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

fn has(problems: &[String], path: &str, text: &str) -> bool {
    problems
        .iter()
        .any(|p| p.starts_with(path) && p.contains(text))
}

const MINIMAL: &str = "[[oidc]]\nname = \"corp\"\nissuer = \"https://idp.example.com/realms/corp/\"\nclient_id = \"gatehouse\"\nclient_secret = \"s3cret\"\n";

#[test]
fn a_minimal_provider_gets_the_documented_defaults_and_enables_sessions() {
    let c = load(MINIMAL, &[]).unwrap();
    let p = &c.oidc[0];
    assert_eq!(p.name, "corp");
    assert_eq!(
        p.discovery_url.text,
        "https://idp.example.com/realms/corp/.well-known/openid-configuration"
    );
    assert!(p.discovery_url.https);
    assert_eq!(p.scopes, DEFAULT_OIDC_SCOPES);
    assert!(p.allowed_email_domains.is_empty());
    let map: Vec<(&str, &str)> = p
        .claims_map
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(map, DEFAULT_JWT_CLAIMS_MAP);
    assert_eq!(p.client_secret.0, b"s3cret");
    assert!(p.redirect_url.is_none());
    assert!(c.sessions.enabled, "SSO ends in sessions: defaults apply");
    assert!(
        !c.warnings
            .iter()
            .any(|w| w.contains("nothing creates them")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn every_setting_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "from-a-file\n").unwrap();
    let text = format!(
        "{}[[oidc]]\nname = \"corp\"\nissuer = \"http://127.0.0.1:9/\"\nclient_id = \"gh\"\n\
         client_secret_file = \"secret\"\nscopes = [\"openid\", \"groups\", \"openid\"]\n\
         allowed_email_domains = [\"Example.COM\"]\n\
         claims_map = {{ groups = \"realm_access.roles\", tenant = \"tid\" }}\n\
         redirect_url = \"https://app.example.com/.gatehouse/callback\"\n",
        base()
    );
    let c = load_str(&text, &dir.path().join("g.toml")).unwrap_or_else(|e| panic!("{e}"));
    let p = &c.oidc[0];
    assert_eq!(
        p.discovery_url.text,
        "http://127.0.0.1:9/.well-known/openid-configuration"
    );
    assert_eq!(p.client_secret.0, b"from-a-file");
    assert_eq!(p.scopes, ["openid", "groups"]);
    assert_eq!(p.allowed_email_domains, ["example.com"]);
    assert!(p
        .claims_map
        .contains(&("groups".into(), "realm_access.roles".into())));
    assert!(p.claims_map.contains(&("tenant".into(), "tid".into())));
    assert_eq!(
        p.redirect_url.as_deref(),
        Some("https://app.example.com/.gatehouse/callback")
    );
}

#[test]
fn the_client_secret_comes_from_the_environment_too() {
    std::env::set_var("GATEHOUSE_TEST_OIDC_SECRET", "env-secret");
    let c = load(
        "[[oidc]]\nname = \"corp\"\nissuer = \"https://idp.example.com\"\nclient_id = \"gh\"\nclient_secret_env = \"GATEHOUSE_TEST_OIDC_SECRET\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.oidc[0].client_secret.0, b"env-secret");
}

#[test]
fn bad_entries_are_reported_with_their_key_paths() {
    let p = problems(
        "[[oidc]]\nname = \"a b\"\nissuer = \"http://idp.example.com/\"\nclient_id = \"\"\n\
         scopes = [\"email\", \"has space\"]\nallowed_email_domains = [\"@example.com\"]\n\
         claims_map = { sub = \"email\" }\nredirect_url = \"/relative\"\n",
    );
    assert!(has(&p, "oidc[0].name", "A-Z a-z 0-9"), "{p:?}");
    assert!(has(&p, "oidc[0].issuer", "must be https://"), "{p:?}");
    assert!(has(&p, "oidc[0].client_id", "must not be empty"), "{p:?}");
    assert!(has(&p, "oidc[0]", "no client secret"), "{p:?}");
    assert!(has(&p, "oidc[0].scopes[1]", "not a scope"), "{p:?}");
    assert!(
        has(&p, "oidc[0].scopes", "must include \"openid\""),
        "{p:?}"
    );
    assert!(
        has(&p, "oidc[0].allowed_email_domains[0]", "a domain"),
        "{p:?}"
    );
    assert!(
        has(&p, "oidc[0].claims_map.\"sub\"", "set by the gateway"),
        "{p:?}"
    );
    assert!(has(&p, "oidc[0].redirect_url", "absolute"), "{p:?}");
}

#[test]
fn names_are_unique_and_issuers_plain() {
    let twice = format!("{MINIMAL}{MINIMAL}");
    assert!(has(&problems(&twice), "oidc[1].name", "duplicate"));
    let p = problems(
        "[[oidc]]\nname = \"x\"\nissuer = \"https://idp.example.com/?tenant=1\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
    );
    assert!(has(&p, "oidc[0].issuer", "no query"), "{p:?}");
    let p = problems(
        "[[oidc]]\nname = \"x\"\nissuer = \"idp.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
    );
    assert!(has(&p, "oidc[0].issuer", ""), "{p:?}");
}

#[test]
fn secret_forms_are_exclusive_and_files_must_exist() {
    let p = problems(
        "[[oidc]]\nname = \"x\"\nissuer = \"https://idp.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\nclient_secret_env = \"Y\"\n",
    );
    assert!(has(&p, "oidc[0]", "only one of"), "{p:?}");
    let p = problems(
        "[[oidc]]\nname = \"x\"\nissuer = \"https://idp.example.com\"\nclient_id = \"c\"\nclient_secret_file = \"missing\"\nca_file = \"missing-ca.pem\"\n",
    );
    assert!(
        has(&p, "oidc[0].client_secret_file", "cannot read"),
        "{p:?}"
    );
    assert!(has(&p, "oidc[0].ca_file", "missing-ca.pem"), "{p:?}");
}

#[test]
fn a_redirect_url_elsewhere_than_callback_is_a_warning() {
    let c = load(
        &format!("{MINIMAL}redirect_url = \"https://app.example.com/auth\"\n"),
        &[],
    )
    .unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("oidc[0].redirect_url")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn the_fingerprint_follows_the_entry_and_its_secret() {
    let a = load(MINIMAL, &[]).unwrap().oidc[0].fingerprint;
    let b = load(MINIMAL, &[]).unwrap().oidc[0].fingerprint;
    assert_eq!(a, b);
    let other = MINIMAL.replace("s3cret", "other");
    let c = load(&other, &[]).unwrap().oidc[0].fingerprint;
    assert_ne!(a, c);
}
