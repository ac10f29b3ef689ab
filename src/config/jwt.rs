//! `[[jwt]]`: the external token issuers the gateway accepts (SPEC 2, 6,
//! 11), validated into [`JwtIssuer`]s.
//!
//! Declared as a child of `validate` so it shares that module's problem
//! collector (`Check`) without widening its visibility.

use super::Check;
use crate::auth::keys::{alg_name, parse_alg, KeyKind, KeySet, ALGORITHMS};
use crate::config::file::{JwtFile, OidcFile};
use crate::config::read;
use crate::config::Identity;
use jsonwebtoken::Algorithm;
use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_JWT_ALGORITHMS: &[&str] = &["RS256"];
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
pub const DEFAULT_JWT_REQUIRED_CLAIMS: &[&str] = &["sub", "exp"];
pub const DEFAULT_JWT_TOKEN_SOURCES: &[&str] = &["header:Authorization"];
pub const DEFAULT_JWT_CLAIMS_MAP: &[(&str, &str)] =
    &[("email", "email"), ("groups", "groups"), ("name", "name")];
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(600);
/// `jwks_refresh` of a `jwks_file`: reading a small local file costs
/// nothing, and a key removed from it (a compromised one) should stop
/// verifying about as soon as the kubelet has synced the mount (about a
/// minute), not ten minutes later.
pub const DEFAULT_JWKS_FILE_REFRESH: Duration = Duration::from_secs(60);
pub const DEFAULT_JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);
/// Shortest `jwks_refresh` / `jwks_min_refetch`: anything faster would
/// hammer the identity provider.
pub const MIN_JWKS_INTERVAL: Duration = Duration::from_secs(1);

/// One accepted external issuer.
#[derive(Debug)]
pub struct JwtIssuer {
    pub name: String,
    /// Must equal the token's `iss`.
    pub issuer: String,
    /// The token's `aud` must contain one of them; empty: not checked.
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: JwtKeys,
    pub leeway: Duration,
    pub required_claims: Vec<String>,
    pub token_sources: Vec<TokenSource>,
    /// Identity field -> claim name or dotted path, defaults merged in.
    pub claims_map: Vec<(String, String)>,
    /// SHA-256 over the entry and its key material: a reload keeps the
    /// running issuer (and its verified tokens) when this is unchanged.
    pub fingerprint: [u8; 32],
}

/// Where an issuer's keys come from.
#[derive(Debug)]
pub enum JwtKeys {
    /// Loaded with the config: `secret*`, `public_key_file`.
    Static(Arc<KeySet>),
    /// `jwks_url` or `jwks_file`: loaded again in the background every
    /// `jwks_refresh` and on an unknown `kid`.
    Remote(JwksSource),
    /// `oidc = "NAME"`: the keys of that `[[oidc]]` provider, from its
    /// discovery document's `jwks_uri` (one fetch for sign-ins and API
    /// tokens alike).
    Provider {
        name: String,
        /// `jwks_min_refetch`: how often this entry's tokens may ask the
        /// provider's keys to be fetched again. Clients can forge `kid`s;
        /// the provider's own, shorter window is for its ID tokens.
        min_refetch: Duration,
    },
}

/// A key set that is loaded again while the gateway runs.
#[derive(Debug, Clone)]
pub struct JwksSource {
    pub location: JwksLocation,
    pub refresh: Duration,
    pub min_refetch: Duration,
}

/// Where a refreshed key set is read from.
#[derive(Debug, Clone)]
pub enum JwksLocation {
    /// `jwks_url` (or an OpenID provider's `jwks_uri`), fetched over HTTP.
    Url {
        url: JwksUrl,
        /// System roots, or only `ca_file` when given.
        tls: Arc<rustls::ClientConfig>,
    },
    /// `jwks_file` (resolved against the config's folder): a mounted
    /// Secret or ConfigMap changes on disk while the gateway runs.
    File {
        path: std::path::PathBuf,
        /// What `check` read, in use until the first re-read: the issuer
        /// verifies tokens from the start, as with any file key.
        read: Arc<KeySet>,
    },
}

impl JwksSource {
    /// The same URL or file as `other` (a reload keeps what was loaded).
    pub fn same_location(&self, other: &JwksSource) -> bool {
        match (&self.location, &other.location) {
            (JwksLocation::Url { url: a, .. }, JwksLocation::Url { url: b, .. }) => a == b,
            (JwksLocation::File { path: a, .. }, JwksLocation::File { path: b, .. }) => a == b,
            _ => false,
        }
    }

    /// The URL or path, for logs and `/readyz`.
    pub fn describe(&self) -> std::borrow::Cow<'_, str> {
        match &self.location {
            JwksLocation::Url { url, .. } => url.text.as_str().into(),
            JwksLocation::File { path, .. } => path.to_string_lossy(),
        }
    }
}

/// A checked `jwks_url`.
#[derive(Clone, PartialEq, Eq)]
pub struct JwksUrl {
    pub text: String,
    pub https: bool,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// The authority as written, for the `Host` header.
    pub authority: String,
    pub path_and_query: String,
}

impl fmt::Debug for JwksUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where a token is looked for in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `header:Authorization`: `Bearer <token>` (RFC 6750 section 2.1).
    Bearer,
    /// `header:NAME`: the whole value is the token.
    Header(http::HeaderName),
    /// `cookie:NAME`.
    Cookie(String),
    /// `query:NAME`: removed from the URL before forwarding.
    Query(String),
}

/// HMAC keys must be at least as long as the hash (RFC 7518 section 3.2).
fn min_secret_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS256 => 32,
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 0,
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a key set, issuer or provider endpoint URL is refused. Each quotes
/// the URL as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{0}` is not a URL")]
    NotAUrl(String),
    #[error("`{0}`: expected an https:// URL")]
    Scheme(String),
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("`{0}`: credentials in the URL are not supported")]
    Credentials(String),
    #[error("`{0}`: must be https:// (http:// is allowed only for loopback hosts: 127.0.0.0/8, ::1, localhost)")]
    PlainHttp(String),
}

/// `https://` always; `http://` only for loopback hosts (SPEC 11).
pub fn parse_jwks_url(text: &str) -> Result<JwksUrl, UrlError> {
    let uri: http::Uri = text.parse().map_err(|_| UrlError::NotAUrl(text.into()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(UrlError::Scheme(text.into())),
    };
    let auth = uri
        .authority()
        .ok_or_else(|| UrlError::NoHost(text.into()))?;
    if auth.as_str().contains('@') {
        return Err(UrlError::Credentials(text.into()));
    }
    let host = auth
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(UrlError::NoHost(text.into()));
    }
    if !https && !is_loopback(&host) {
        return Err(UrlError::PlainHttp(text.into()));
    }
    Ok(JwksUrl {
        text: text.to_string(),
        https,
        port: auth.port_u16().unwrap_or(if https { 443 } else { 80 }),
        authority: auth.as_str().to_string(),
        host,
        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
    })
}

/// Why a `token_sources` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum TokenSourceError {
    #[error("use `cookie:NAME` for a token in a cookie")]
    CookieHeader,
    #[error("`{0}` is not a header name")]
    HeaderName(String),
    #[error("`{0}` is not a cookie name")]
    CookieName(String),
    #[error("`{0}` is not a query parameter name")]
    QueryName(String),
    #[error("`{0}`: expected \"header:NAME\", \"cookie:NAME\" or \"query:NAME\"")]
    Kind(String),
}

fn parse_token_source(s: &str) -> Result<TokenSource, TokenSourceError> {
    let (kind, name) = s.split_once(':').unwrap_or((s, ""));
    match kind {
        "header" => match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if h == http::header::AUTHORIZATION => Ok(TokenSource::Bearer),
            Ok(h) if h == http::header::COOKIE => Err(TokenSourceError::CookieHeader),
            Ok(h) => Ok(TokenSource::Header(h)),
            Err(_) => Err(TokenSourceError::HeaderName(name.into())),
        },
        "cookie" if crate::cookies::is_name(name) => Ok(TokenSource::Cookie(name.to_string())),
        "cookie" => Err(TokenSourceError::CookieName(name.into())),
        "query"
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"&=#%+".contains(&b)) =>
        {
            Ok(TokenSource::Query(name.to_string()))
        }
        "query" => Err(TokenSourceError::QueryName(name.into())),
        _ => Err(TokenSourceError::Kind(s.into())),
    }
}

/// A header the gateway removes from every request before authentication
/// (SPEC 3 step 5) can never carry a token.
fn stripped_before_auth(name: &str, identity: &Identity) -> bool {
    let folded = super::fold_header_name(name);
    identity.strip.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => folded.starts_with(prefix),
        None => folded == *p,
    }) || identity
        .headers
        .iter()
        .any(|(h, _)| super::fold_header_name(h.as_str()) == folded)
}

/// Issuers compare exactly, except that one shared with an `[[oidc]]`
/// provider is the same issuer with or without a trailing `/` (as the
/// provider's discovery check has it).
fn same_issuer(a: (&str, bool), b: (&str, bool)) -> bool {
    a.0 == b.0 || ((a.1 || b.1) && a.0.trim_end_matches('/') == b.0.trim_end_matches('/'))
}

/// The issuer of an entry: its own, or with `oidc`, the provider's (which
/// `issuer`, when given, must equal, trailing `/` aside).
fn effective_issuer(c: &mut Check<'_>, p: &str, j: &JwtFile, oidc: &[OidcFile]) -> Option<String> {
    let Some(name) = &j.oidc else {
        if j.issuer.is_empty() {
            c.err(format!("{p}.issuer"), "must not be empty");
            return None;
        }
        return Some(j.issuer.clone());
    };
    let Some(provider) = oidc.iter().find(|o| o.name == *name) else {
        c.err(
            format!("{p}.oidc"),
            format!("no [[oidc]] provider named `{name}`"),
        );
        return None;
    };
    if j.issuer.is_empty() {
        Some(provider.issuer.clone())
    } else if same_issuer((&j.issuer, true), (&provider.issuer, true)) {
        Some(j.issuer.clone())
    } else {
        c.err(
            format!("{p}.issuer"),
            format!(
                "`{}` is not the issuer of [[oidc]] provider `{name}` (`{}`); leave issuer out to use the provider's",
                j.issuer, provider.issuer
            ),
        );
        None
    }
}

/// Validates every `[[jwt]]` entry; `oidc` is the `[[oidc]]` section, for
/// entries that name a provider.
pub(super) fn issuers(
    c: &mut Check<'_>,
    list: &[JwtFile],
    identity: &Identity,
    oidc: &[OidcFile],
) -> Vec<Arc<JwtIssuer>> {
    let mut names = HashSet::new();
    let mut iss_seen: Vec<(String, bool)> = Vec::new();
    let mut out = Vec::new();
    for (i, j) in list.iter().enumerate() {
        let p = format!("jwt[{i}]");
        if j.name.trim().is_empty() {
            c.err(format!("{p}.name"), "must not be empty");
        } else if j.name == super::OWN_ISSUER_NAME {
            c.err(
                format!("{p}.name"),
                "`gatehouse` names the gateway's own tokens (route `issuers`); pick another name",
            );
        } else if !names.insert(j.name.clone()) {
            c.err(
                format!("{p}.name"),
                format!("duplicate jwt name `{}`", j.name),
            );
        }
        let issuer = effective_issuer(c, &p, j, oidc);
        if let Some(iss) = &issuer {
            let shared = j.oidc.is_some();
            if iss_seen
                .iter()
                .any(|(seen, s)| same_issuer((seen, *s), (iss, shared)))
            {
                c.err(
                    format!("{p}.issuer"),
                    format!("duplicate issuer `{iss}`: tokens pick their [[jwt]] entry by `iss`"),
                );
            }
            iss_seen.push((iss.clone(), shared));
        }
        if let Some(issuer) = one(c, &p, j, identity, issuer) {
            out.push(Arc::new(issuer));
        }
    }
    out
}

fn one(
    c: &mut Check<'_>,
    p: &str,
    j: &JwtFile,
    identity: &Identity,
    issuer: Option<String>,
) -> Option<JwtIssuer> {
    let before = c.problems.len();
    let mut material = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    material.update(format!("{j:?}").as_bytes());

    let audiences = j.audiences.clone().unwrap_or_default();
    for (k, a) in audiences.iter().enumerate() {
        if a.is_empty() {
            c.err(format!("{p}.audiences[{k}]"), "must not be empty");
        }
    }

    let mut algorithms = Vec::new();
    let names: Vec<String> = match &j.algorithms {
        Some(a) => a.clone(),
        None => DEFAULT_JWT_ALGORITHMS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    if names.is_empty() {
        c.err(format!("{p}.algorithms"), "list at least one algorithm");
    }
    for (k, name) in names.iter().enumerate() {
        match parse_alg(name) {
            Some(a) => {
                if !algorithms.contains(&a) {
                    algorithms.push(a);
                }
            }
            None if name.eq_ignore_ascii_case("none") => c.err(
                format!("{p}.algorithms[{k}]"),
                "\"none\" is never accepted: unsigned tokens prove nothing (RFC 8725 section 3.1)",
            ),
            None => c.err(
                format!("{p}.algorithms[{k}]"),
                format!(
                    "unknown algorithm `{name}` (expected one of {})",
                    ALGORITHMS.map(alg_name).join(", ")
                ),
            ),
        }
    }

    // Exactly one key source.
    let has_secret = j.secret.is_some() || j.secret_file.is_some() || j.secret_env.is_some();
    let given: Vec<&str> = [
        (has_secret, "secret"),
        (j.public_key_file.is_some(), "public_key_file"),
        (j.jwks_file.is_some(), "jwks_file"),
        (j.jwks_url.is_some(), "jwks_url"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    if let Some(name) = &j.oidc {
        // The provider's keys, fetched by the provider: nothing here may
        // say otherwise.
        let refused = [
            ("jwks_url", j.jwks_url.is_some()),
            ("jwks_file", j.jwks_file.is_some()),
            ("public_key_file", j.public_key_file.is_some()),
            ("secret", j.secret.is_some()),
            ("secret_file", j.secret_file.is_some()),
            ("secret_env", j.secret_env.is_some()),
            ("ca_file", j.ca_file.is_some()),
            ("jwks_refresh", j.jwks_refresh.is_some()),
        ];
        for (key, _) in refused.iter().filter(|(_, set)| *set) {
            c.err(
                format!("{p}.{key}"),
                format!("not with `oidc`: the keys are those of [[oidc]] provider `{name}`, from its discovery document's jwks_uri"),
            );
        }
        if j.audiences.as_ref().is_none_or(|a| a.is_empty()) {
            c.warnings.push(format!(
                "{p}: without audiences, every token provider `{name}` signs is accepted, ID tokens issued to any of its clients (the gateway's own sign-ins included); set audiences to your API's"
            ));
        }
    } else if given.is_empty() {
        c.err(
            p,
            "no key source: give one of jwks_url, jwks_file, public_key_file or secret (secret_file, secret_env), or oidc",
        );
    } else if given.len() > 1 {
        c.err(
            p,
            format!(
                "more than one key source ({}): give exactly one",
                given.join(", ")
            ),
        );
    }
    // (With `oidc` these were dealt with above.)
    if j.oidc.is_none() {
        if j.ca_file.is_some() && j.jwks_url.is_none() {
            c.err(format!("{p}.ca_file"), "only applies with jwks_url");
        }
        for (key, set) in [
            ("jwks_refresh", j.jwks_refresh.is_some()),
            ("jwks_min_refetch", j.jwks_min_refetch.is_some()),
        ] {
            if set && j.jwks_url.is_none() && j.jwks_file.is_none() {
                c.err(
                    format!("{p}.{key}"),
                    "only applies with jwks_url or jwks_file",
                );
            }
        }
    }

    let hmac: Vec<Algorithm> = algorithms
        .iter()
        .copied()
        .filter(|a| KeyKind::Hmac.fits(*a))
        .collect();
    let keys = if let Some(name) = &j.oidc {
        if !hmac.is_empty() {
            c.err(
                format!("{p}.algorithms"),
                "HS256, HS384 and HS512 need a shared secret; a provider's published keys never are one",
            );
        }
        let min_refetch = c.duration(
            &format!("{p}.jwks_min_refetch"),
            &j.jwks_min_refetch,
            DEFAULT_JWKS_MIN_REFETCH,
        );
        if min_refetch < MIN_JWKS_INTERVAL {
            c.err(format!("{p}.jwks_min_refetch"), "must be at least 1s");
        }
        Some(JwtKeys::Provider {
            name: name.clone(),
            min_refetch,
        })
    } else if given.len() != 1 {
        None
    } else if has_secret {
        let secret = c.secret(p, "secret", &j.secret, &j.secret_file, &j.secret_env);
        for a in algorithms.iter().filter(|a| !KeyKind::Hmac.fits(**a)) {
            c.err(
                format!("{p}.algorithms"),
                format!(
                    "{} needs a public key, but this issuer has a shared secret (only HS256, HS384, HS512 fit a secret)",
                    alg_name(*a)
                ),
            );
        }
        secret.and_then(|s| {
            material.update(&s.0);
            for a in &hmac {
                if s.0.len() < min_secret_len(*a) {
                    c.err(
                        format!("{p}.secret"),
                        format!(
                            "the secret is {} bytes; {} needs at least {} (RFC 7518 section 3.2)",
                            s.0.len(),
                            alg_name(*a),
                            min_secret_len(*a)
                        ),
                    );
                    return None;
                }
            }
            Some(JwtKeys::Static(Arc::new(KeySet::from_secret(&s.0))))
        })
    } else {
        if !hmac.is_empty() {
            c.err(
                format!("{p}.algorithms"),
                format!(
                    "{} needs a shared secret, but this issuer has public keys: an HMAC key must never be a public key",
                    hmac.iter().map(|a| alg_name(*a)).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        if let Some(f) = &j.public_key_file {
            let key = format!("{p}.public_key_file");
            read(c, &key, f, &mut material).and_then(|bytes| {
                match KeySet::from_public_pem(&bytes) {
                    Ok(set) => {
                        let kind = set.keys()[0].kind;
                        for a in algorithms
                            .iter()
                            .filter(|a| !kind.fits(**a) && !hmac.contains(a))
                        {
                            c.err(
                                format!("{p}.algorithms"),
                                format!(
                                    "{} does not fit the key in {f}, which is {}",
                                    alg_name(*a),
                                    kind.describe()
                                ),
                            );
                        }
                        Some(JwtKeys::Static(Arc::new(set)))
                    }
                    Err(m) => {
                        c.err(key, format!("{f}: {m}"));
                        None
                    }
                }
            })
        } else if let Some(f) = &j.jwks_file {
            let key = format!("{p}.jwks_file");
            let (refresh, min_refetch) = intervals(c, p, j, DEFAULT_JWKS_FILE_REFRESH);
            read(c, &key, f, &mut material).and_then(|bytes| match KeySet::from_jwks(&bytes) {
                Ok((set, skipped)) => {
                    for s in skipped {
                        c.warnings.push(format!("{key}: {f}: {s}"));
                    }
                    if !set
                        .keys()
                        .iter()
                        .any(|k| algorithms.iter().any(|a| k.accepts(*a)))
                    {
                        c.err(
                            format!("{p}.algorithms"),
                            format!("no key in {f} fits any of the allowed algorithms"),
                        );
                    }
                    Some(JwtKeys::Remote(JwksSource {
                        location: JwksLocation::File {
                            path: c.file_path(f),
                            read: Arc::new(set),
                        },
                        refresh,
                        min_refetch,
                    }))
                }
                Err(m) => {
                    c.err(key, format!("{f}: {m}"));
                    None
                }
            })
        } else if let Some(u) = &j.jwks_url {
            remote(c, p, j, u, &mut material)
        } else {
            None
        }
    };

    let leeway = c.duration(&format!("{p}.leeway"), &j.leeway, DEFAULT_JWT_LEEWAY);
    let required_claims: Vec<String> = j.required_claims.clone().unwrap_or_else(|| {
        DEFAULT_JWT_REQUIRED_CLAIMS
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    for (k, r) in required_claims.iter().enumerate() {
        if r.is_empty() {
            c.err(format!("{p}.required_claims[{k}]"), "must not be empty");
        }
    }

    let mut token_sources = Vec::new();
    let sources: Vec<String> = j.token_sources.clone().unwrap_or_else(|| {
        DEFAULT_JWT_TOKEN_SOURCES
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    if sources.is_empty() {
        c.err(
            format!("{p}.token_sources"),
            "list at least one token source",
        );
    }
    for (k, s) in sources.iter().enumerate() {
        match parse_token_source(s) {
            Ok(src) => {
                let header = match &src {
                    TokenSource::Bearer => Some("authorization"),
                    TokenSource::Header(h) => Some(h.as_str()),
                    _ => None,
                };
                if header.is_some_and(|h| stripped_before_auth(h, identity)) {
                    c.err(
                        format!("{p}.token_sources[{k}]"),
                        format!("`{s}`: that header is removed from every request before authentication ([identity] strip / headers); choose another"),
                    );
                }
                if !token_sources.contains(&src) {
                    token_sources.push(src);
                }
            }
            Err(m) => c.err(format!("{p}.token_sources[{k}]"), m.to_string()),
        }
    }

    let claims_map = claims_map(c, p, j.claims_map.as_ref());

    let keys = keys?;
    let issuer = issuer?;
    if c.problems.len() > before {
        return None;
    }
    Some(JwtIssuer {
        name: j.name.clone(),
        issuer,
        audiences,
        algorithms,
        keys,
        leeway,
        required_claims,
        token_sources,
        claims_map,
        fingerprint: material.finish().as_ref().try_into().unwrap_or([0; 32]),
    })
}

/// Reads a key file (relative to the config), adding it to the fingerprint.
fn read(
    c: &mut Check<'_>,
    key: &str,
    file: &str,
    material: &mut aws_lc_rs::digest::Context,
) -> Option<Vec<u8>> {
    let full = c.file_path(file);
    match read::read_limited(&full, read::MAX_FILE_BYTES) {
        Ok(bytes) => {
            material.update(&bytes);
            Some(bytes)
        }
        Err(e) => {
            c.err(key, e.to_string());
            None
        }
    }
}

fn remote(
    c: &mut Check<'_>,
    p: &str,
    j: &JwtFile,
    url: &str,
    material: &mut aws_lc_rs::digest::Context,
) -> Option<JwtKeys> {
    let url = match parse_jwks_url(url) {
        Ok(u) => Some(u),
        Err(m) => {
            c.err(format!("{p}.jwks_url"), m.to_string());
            None
        }
    };
    let tls = c.client_tls(p, j.ca_file.as_ref(), material);
    let (refresh, min_refetch) = intervals(c, p, j, DEFAULT_JWKS_REFRESH);
    Some(JwtKeys::Remote(JwksSource {
        location: JwksLocation::Url {
            url: url?,
            tls: tls?,
        },
        refresh,
        min_refetch,
    }))
}

/// `jwks_refresh` (default `refresh`) and `jwks_min_refetch`, each at
/// least [`MIN_JWKS_INTERVAL`].
fn intervals(c: &mut Check<'_>, p: &str, j: &JwtFile, refresh: Duration) -> (Duration, Duration) {
    let refresh = c.duration(&format!("{p}.jwks_refresh"), &j.jwks_refresh, refresh);
    let min_refetch = c.duration(
        &format!("{p}.jwks_min_refetch"),
        &j.jwks_min_refetch,
        DEFAULT_JWKS_MIN_REFETCH,
    );
    for (key, d) in [("jwks_refresh", refresh), ("jwks_min_refetch", min_refetch)] {
        if d < MIN_JWKS_INTERVAL {
            c.err(format!("{p}.{key}"), "must be at least 1s");
        }
    }
    (refresh, min_refetch)
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;

/// `claims_map` (identity field -> claim name or dotted path) over the
/// defaults, for `[[jwt]]` and `[[oidc]]` alike; `sub` and `method` are the
/// gateway's own and cannot be remapped.
pub(super) fn claims_map(
    c: &mut Check<'_>,
    p: &str,
    given: Option<&std::collections::BTreeMap<String, String>>,
) -> Vec<(String, String)> {
    let mut claims_map: Vec<(String, String)> = DEFAULT_JWT_CLAIMS_MAP
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (field, path) in given.into_iter().flatten() {
        let at = format!("{p}.claims_map.\"{field}\"");
        if field == "sub" || field == "method" {
            c.err(
                at,
                format!("`{field}` is set by the gateway (sub is always the token's `sub`)"),
            );
            continue;
        }
        if field.is_empty() || path.is_empty() {
            c.err(at, "field and claim must not be empty");
            continue;
        }
        match claims_map.iter_mut().find(|(f, _)| f == field) {
            Some(entry) => entry.1 = path.clone(),
            None => claims_map.push((field.clone(), path.clone())),
        }
    }
    claims_map
}
