//! `[[oidc]]`: OpenID Connect single sign-on providers (SPEC 2, 4, 11),
//! validated into [`OidcProvider`]s.
//!
//! Declared as a child of `validate` (like `jwt.rs`) so it shares that
//! module's problem collector (`Check`). Nothing here talks to the
//! provider: `gatehouse check` stays offline, and the running gateway
//! fetches the discovery document in the background (`login::oidc`).

use super::Check;
use crate::config::file::OidcFile;
use crate::config::validate::jwt::{parse_jwks_url, JwksUrl};
use crate::config::Secret;
use std::collections::HashSet;
use std::sync::Arc;

/// Scopes asked for when `scopes` is not given.
pub const DEFAULT_OIDC_SCOPES: &[&str] = &["openid", "email", "profile"];
/// Appended to the issuer (without its trailing `/`) to find the
/// discovery document (OpenID Connect Discovery 1.0, section 4; SPEC 11).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Longest provider name: it travels in URLs and cookies.
pub const MAX_PROVIDER_NAME: usize = 64;

/// One single sign-on provider.
#[derive(Debug)]
pub struct OidcProvider {
    /// URL-safe: the login page links to `<prefix>/start/<name>`.
    pub name: String,
    /// As configured; the discovery document's `issuer` must equal it,
    /// trailing `/` aside.
    pub issuer: String,
    /// `<issuer without trailing />/.well-known/openid-configuration`.
    pub discovery_url: JwksUrl,
    pub client_id: String,
    pub client_secret: Secret,
    /// Always contains `openid`.
    pub scopes: Vec<String>,
    /// Lowercase domains; empty: any email (or none) is accepted.
    pub allowed_email_domains: Vec<String>,
    /// Identity field -> claim name or dotted path, defaults merged in.
    pub claims_map: Vec<(String, String)>,
    /// Fixed `redirect_uri`; `None`: built from the request's scheme and
    /// Host (SPEC 11).
    pub redirect_url: Option<String>,
    /// HTTPS to the provider: the system roots plus `ca_file`.
    pub tls: Arc<rustls::ClientConfig>,
    /// Whether `<prefix>/backchannel-logout` takes this provider's logout
    /// tokens (SPEC 15; default true).
    pub backchannel_logout: bool,
    /// SHA-256 over the entry, its secret and its CA: a reload keeps the
    /// running provider (discovery document, keys) when this is unchanged.
    pub fingerprint: [u8; 32],
}

/// URL-safe (RFC 3986 unreserved characters), non-empty, bounded.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PROVIDER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A scope token (RFC 6749 section 3.3): printable ASCII without space,
/// `"` or `\`.
fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Validates every `[[oidc]]` entry.
pub(super) fn providers(c: &mut Check<'_>, list: &[OidcFile]) -> Vec<Arc<OidcProvider>> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, o) in list.iter().enumerate() {
        let p = format!("oidc[{i}]");
        if !valid_name(&o.name) {
            c.err(
                format!("{p}.name"),
                format!(
                    "`{}`: a provider name is 1 to {MAX_PROVIDER_NAME} of A-Z a-z 0-9 - . _ ~ (it appears in URLs)",
                    o.name
                ),
            );
        } else if !names.insert(o.name.clone()) {
            c.err(
                format!("{p}.name"),
                format!("duplicate oidc name `{}`", o.name),
            );
        }
        if let Some(provider) = one(c, &p, o) {
            out.push(Arc::new(provider));
        }
    }
    out
}

fn one(c: &mut Check<'_>, p: &str, o: &OidcFile) -> Option<OidcProvider> {
    let before = c.problems.len();
    let mut material = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    material.update(format!("{o:?}").as_bytes());

    let discovery_url = issuer(c, p, &o.issuer);

    if o.client_id.is_empty() {
        c.err(format!("{p}.client_id"), "must not be empty");
    }
    let client_secret = c.secret(
        p,
        "client_secret",
        &o.client_secret,
        &o.client_secret_file,
        &o.client_secret_env,
    );
    match &client_secret {
        Some(s) if s.0.is_empty() => c.err(format!("{p}.client_secret"), "must not be empty"),
        Some(s) => material.update(&s.0),
        None if o.client_secret.is_none()
            && o.client_secret_file.is_none()
            && o.client_secret_env.is_none() =>
        {
            c.err(
                p,
                "no client secret: give client_secret, client_secret_file or client_secret_env \
                 (gatehouse is a confidential client)",
            )
        }
        None => {}
    }

    let scopes: Vec<String> = match &o.scopes {
        Some(s) => s.clone(),
        None => DEFAULT_OIDC_SCOPES.iter().map(|s| s.to_string()).collect(),
    };
    for (k, s) in scopes.iter().enumerate() {
        if !valid_scope(s) {
            c.err(
                format!("{p}.scopes[{k}]"),
                format!("`{s}` is not a scope (no spaces, quotes or backslashes)"),
            );
        }
    }
    if !scopes.iter().any(|s| s == "openid") {
        c.err(
            format!("{p}.scopes"),
            "must include \"openid\" (without it the provider sends no ID token)",
        );
    }
    let mut deduped: Vec<String> = Vec::new();
    for s in scopes {
        if !deduped.contains(&s) {
            deduped.push(s);
        }
    }

    let mut allowed_email_domains = Vec::new();
    for (k, d) in o.allowed_email_domains.iter().flatten().enumerate() {
        let at = format!("{p}.allowed_email_domains[{k}]");
        if d.is_empty() || d.contains(['@', ' ', '/', '*']) || d.starts_with('.') {
            c.err(
                at,
                format!("`{d}`: a domain such as \"example.com\" (matched exactly after the @)"),
            );
        } else {
            allowed_email_domains.push(d.to_ascii_lowercase());
        }
    }

    let claims_map = super::jwt::claims_map(c, p, o.claims_map.as_ref());

    if let Some(r) = &o.redirect_url {
        redirect_url(c, p, r);
    }

    let tls = c.client_tls(p, o.ca_file.as_ref(), &mut material);

    if c.problems.len() > before {
        return None;
    }
    Some(OidcProvider {
        name: o.name.clone(),
        issuer: o.issuer.clone(),
        discovery_url: discovery_url?,
        client_id: o.client_id.clone(),
        client_secret: client_secret?,
        scopes: deduped,
        allowed_email_domains,
        claims_map,
        redirect_url: o.redirect_url.clone(),
        tls: tls?,
        backchannel_logout: o.backchannel_logout.unwrap_or(true),
        fingerprint: material.finish().as_ref().try_into().unwrap_or([0; 32]),
    })
}

/// The issuer: an https URL (http only on loopback, SPEC 11) without
/// query or fragment. Returns the discovery URL.
fn issuer(c: &mut Check<'_>, p: &str, issuer: &str) -> Option<JwksUrl> {
    let at = format!("{p}.issuer");
    if issuer.contains(['?', '#']) {
        c.err(
            at,
            format!("`{issuer}`: an issuer has no query or fragment"),
        );
        return None;
    }
    if let Err(m) = parse_jwks_url(issuer) {
        c.err(at, m.to_string());
        return None;
    }
    let url = format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/'));
    match parse_jwks_url(&url) {
        Ok(u) => Some(u),
        Err(m) => {
            c.err(at, m.to_string());
            None
        }
    }
}

/// `redirect_url`: an absolute http(s) URL. Its path should be the
/// gateway's `<endpoint_prefix>/callback` (or reach it through a proxy).
fn redirect_url(c: &mut Check<'_>, p: &str, r: &str) {
    let at = format!("{p}.redirect_url");
    let uri: Result<http::Uri, _> = r.parse();
    let ok = match &uri {
        Ok(u) => {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.authority().is_some_and(|a| !a.host().is_empty())
                && !r.contains(['#', '@'])
        }
        Err(_) => false,
    };
    if !ok {
        c.err(
            at,
            format!("`{r}`: an absolute http(s) URL such as \"https://app.example.com/.gatehouse/callback\""),
        );
        return;
    }
    if uri.is_ok_and(|u| !u.path().ends_with("/callback")) {
        c.warnings.push(format!(
            "{at}: `{r}` does not end in /callback; the gateway answers the provider at <endpoint_prefix>/callback"
        ));
    }
}

#[cfg(test)]
#[path = "oidc_tests.rs"]
mod tests;
