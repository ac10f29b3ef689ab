//! From the serde mirror to the typed [`Config`]: every check that types
//! alone cannot express, with every problem reported at once.

use super::file::*;
use super::read;
use super::units::{parse_duration, parse_size};
use super::*;
use crate::server::tls;
use std::collections::HashSet;

// `[[jwt]]` lives in its own file, as a child module so it shares `Check`.
#[path = "jwt.rs"]
pub(super) mod jwt;
// `[[oidc]]` likewise.
#[path = "oidc.rs"]
pub(super) mod oidc;

/// Collects problems while converting; each carries its key path.
pub(super) struct Check<'a> {
    base: &'a Path,
    problems: Vec<Problem>,
    pub(super) warnings: Vec<String>,
}

impl Check<'_> {
    pub(super) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            line: None,
            message: message.into(),
        });
    }

    pub(super) fn duration(
        &mut self,
        path: &str,
        v: &Option<String>,
        default: Duration,
    ) -> Duration {
        match v {
            None => default,
            Some(t) => parse_duration(t).unwrap_or_else(|m| {
                self.err(path, m.to_string());
                default
            }),
        }
    }

    fn size(&mut self, path: &str, v: &Option<String>, default: usize) -> usize {
        match v {
            None => default,
            Some(t) => match parse_size(t) {
                Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
                Err(m) => {
                    self.err(path, m.to_string());
                    default
                }
            },
        }
    }

    fn addr(&mut self, path: &str, v: Option<&str>, default: &str) -> SocketAddr {
        let text = v.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.err(
                path,
                format!("`{text}` is not an address (use IP:PORT, e.g. \"0.0.0.0:8443\" or \"[::]:8443\")"),
            );
            ([0, 0, 0, 0], 0).into()
        })
    }

    /// The TLS client config for a fetch from `<path>` (JWKS, OIDC
    /// provider): the public roots plus `ca_file` when given, whose bytes
    /// also go into `material` (a changed CA file is a changed entry).
    fn client_tls(
        &mut self,
        path: &str,
        ca_file: Option<&String>,
        material: &mut aws_lc_rs::digest::Context,
    ) -> Option<Arc<rustls::ClientConfig>> {
        let ca = ca_file.map(|f| self.file_path(f));
        if let Some(ca) = &ca {
            // An unreadable or oversized bundle is reported by the loader.
            if let Ok(bytes) = read::read_limited(ca, read::MAX_CA_BUNDLE_BYTES) {
                material.update(&bytes);
            }
        }
        match crate::server::tls::load_client_config_extra_ca(ca.as_deref()) {
            Ok(t) => Some(t),
            Err(m) => {
                self.err(format!("{path}.ca_file"), m.to_string());
                None
            }
        }
    }

    pub(super) fn file_path(&self, p: &str) -> PathBuf {
        self.base.join(p)
    }

    /// One secret from its three forms (SPEC 11): inline, `*_file`, `*_env`.
    pub(super) fn secret(
        &mut self,
        path: &str,
        name: &str,
        inline: &Option<String>,
        file: &Option<String>,
        env: &Option<String>,
    ) -> Option<Secret> {
        let given = [inline.is_some(), file.is_some(), env.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given > 1 {
            self.err(
                path,
                format!("give only one of `{name}`, `{name}_file` and `{name}_env`"),
            );
            return None;
        }
        if let Some(s) = inline {
            return Some(Secret(s.as_bytes().to_vec()));
        }
        if let Some(f) = file {
            let full = self.file_path(f);
            return match read::read_limited(&full, read::MAX_FILE_BYTES) {
                Ok(mut bytes) => {
                    if bytes.last() == Some(&b'\n') {
                        bytes.pop();
                        if bytes.last() == Some(&b'\r') {
                            bytes.pop();
                        }
                    }
                    Some(Secret(bytes))
                }
                Err(e) => {
                    self.err(format!("{path}.{name}_file"), e.to_string());
                    None
                }
            };
        }
        if let Some(var) = env {
            return match std::env::var(var) {
                Ok(v) => Some(Secret(v.into_bytes())),
                Err(_) => {
                    self.err(
                        format!("{path}.{name}_env"),
                        format!("environment variable `{var}` is not set"),
                    );
                    None
                }
            };
        }
        None
    }
}

/// Validates a parsed file. `path` is the config file; relative paths in it
/// resolve against its folder.
pub fn validate(f: FileConfig, path: &Path) -> Result<Config, Vec<Problem>> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut c = Check {
        base,
        problems: Vec::new(),
        warnings: Vec::new(),
    };

    let server = server(&mut c, &f.server);
    let admin = admin(&mut c, &f.admin);
    let log = Log {
        format: match f.log.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(o) => {
                c.err(
                    "log.format",
                    format!("`{o}`: expected \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        },
        access_log: f.log.access_log.unwrap_or(true),
    };
    let identity = identity(&mut c, &f.identity);

    // Sections whose features land in later releases are parsed (so typos are
    // caught) but refused, never silently ignored.
    let mut sessions = super::sessions::sessions(&mut c.problems, f.sessions.as_ref());
    if let Some(file) = f
        .sessions
        .as_ref()
        .filter(|s| s.store.as_deref() == Some("redis"))
    {
        if let Some(r) = super::store::settings(&mut c, file) {
            sessions.store = super::sessions::StoreKind::Redis(std::sync::Arc::new(r));
        }
    }
    let login = super::sessions::login(&mut c.problems, f.login.as_ref(), base);
    let oidc = oidc::providers(&mut c, &f.oidc);
    // Logins (local or single sign-on) end in a session: `[sessions]`
    // defaults apply when the section is absent.
    sessions.enabled |= !f.oidc.is_empty() || login.is_some();
    let mut jwt = jwt::issuers(&mut c, &f.jwt, &identity, &f.oidc);
    if let Some(l) = &login {
        if l.keys.ephemeral {
            c.warnings.push(
                "no [login] signing_key_file: tokens are signed with an ephemeral key; they die with this \
                 process and other replicas will not accept them"
                    .into(),
            );
        }
        // The gateway's own tokens are accepted without a [[jwt]] entry.
        if jwt.iter().any(|j| j.issuer == l.issuer) {
            c.err(
                "login.issuer",
                format!(
                    "`{}` is also a [[jwt]] issuer; the gateway's own issuer must be distinct",
                    l.issuer
                ),
            );
        } else {
            jwt.push(own_issuer(l));
        }
    }

    let upstreams = upstreams(&mut c, &f.upstreams, &server.secret);
    let sessions_creatable = login.is_some() || !f.oidc.is_empty();
    let issuer_names: Vec<&str> = jwt.iter().map(|j| j.name.as_str()).collect();
    let forward_auth = forward_auth(&mut c, f.forward_auth.as_ref());
    let routes = routes(
        &mut c,
        &f.routes,
        &upstreams,
        sessions_creatable,
        &issuer_names,
    );
    for (i, r) in routes.iter().enumerate() {
        if r.upstream.is_none() && forward_auth.is_none() && f.routes[i].upstream.is_none() {
            c.err(
                format!("routes[{i}].upstream"),
                format!(
                    "route `{}` has no upstream; only [forward_auth] (enabled = true) allows a decision-only route",
                    r.name
                ),
            );
        }
    }
    mtls_needs_client_ca(&mut c, &f);

    let signing = match &login {
        Some(l) => l.keys.clone(),
        None => Arc::new(
            crate::tokens::keys::SigningKeys::load(None, &[])
                .expect("an ephemeral key always loads"),
        ),
    };
    let token_issuer = login.as_ref().map_or_else(
        || super::sessions::DEFAULT_ISSUER.to_string(),
        |l| l.issuer.clone(),
    );
    if login.is_none() && identity.jwt.is_some() {
        c.warnings.push("[identity.jwt] without [login] signing_key_file: backend tokens are signed with an ephemeral key".into());
    }
    if c.problems.is_empty() {
        Ok(Config {
            signing,
            token_issuer,
            path: path.to_path_buf(),
            server,
            admin,
            log,
            identity,
            sessions,
            login,
            oidc,
            jwt,
            upstreams,
            routes,
            forward_auth,
            warnings: c.warnings,
        })
    } else {
        Err(c.problems)
    }
}

/// `[forward_auth]`: `None` unless `enabled = true`. A `login_url` must be
/// an absolute http(s) URL: the login redirect is sent to another host.
fn forward_auth(c: &mut Check<'_>, f: Option<&ForwardAuthFile>) -> Option<ForwardAuth> {
    let f = f?;
    let login_url = f.login_url.clone().filter(|u| !u.is_empty());
    if let Some(u) = &login_url {
        let ok = (u.starts_with("https://") || u.starts_with("http://"))
            && u.parse::<http::Uri>()
                .is_ok_and(|p| p.host().is_some_and(|h| !h.is_empty()))
            && !u.contains('#');
        if !ok {
            c.err(
                "forward_auth.login_url",
                format!("`{u}`: an absolute http(s) URL such as https://login.example.com/.gatehouse/login"),
            );
        }
    }
    f.enabled
        .unwrap_or(false)
        .then_some(ForwardAuth { login_url })
}

fn server(c: &mut Check<'_>, s: &ServerFile) -> Server {
    let listen = c.addr("server.listen", s.listen.as_deref(), DEFAULT_LISTEN);
    let endpoint_prefix = s
        .endpoint_prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_ENDPOINT_PREFIX.into());
    if !endpoint_prefix.starts_with('/')
        || endpoint_prefix.len() < 2
        || endpoint_prefix.ends_with('/')
    {
        c.err(
            "server.endpoint_prefix",
            format!(
                "`{endpoint_prefix}`: must start with `/`, not end with `/`, and not be `/` alone"
            ),
        );
    }
    let mut trusted_proxies = Vec::new();
    for (i, t) in s.trusted_proxies.iter().flatten().enumerate() {
        let parsed = t
            .parse::<ipnet::IpNet>()
            .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => trusted_proxies.push(n),
            Err(_) => c.err(
                format!("server.trusted_proxies[{i}]"),
                format!("`{t}` is not an IP address or CIDR range"),
            ),
        }
    }
    let proxy_protocol = match s.proxy_protocol.as_deref() {
        None | Some("off") => None,
        Some("v1") => Some(ProxyProtocol::V1),
        Some("v2") => Some(ProxyProtocol::V2),
        Some("any") => Some(ProxyProtocol::Any),
        Some(o) => {
            c.err(
                "server.proxy_protocol",
                format!("`{o}`: expected \"off\", \"v1\", \"v2\" or \"any\""),
            );
            None
        }
    };
    let mut proxy_protocol_from = Vec::new();
    for (i, t) in s.proxy_protocol_from.iter().flatten().enumerate() {
        let parsed = t
            .parse::<ipnet::IpNet>()
            .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => proxy_protocol_from.push(n),
            Err(_) => c.err(
                format!("server.proxy_protocol_from[{i}]"),
                format!("`{t}` is not an IP address or CIDR range"),
            ),
        }
    }
    if s.proxy_protocol_from.is_none() {
        proxy_protocol_from = trusted_proxies.clone();
    }
    if proxy_protocol.is_some() && proxy_protocol_from.is_empty() {
        c.err(
            "server.proxy_protocol_from",
            "proxy_protocol is on but no peer may send it: list the balancers here (or in trusted_proxies)",
        );
    }
    let max_header_bytes = c.size(
        "server.max_header_bytes",
        &s.max_header_bytes,
        DEFAULT_MAX_HEADER_BYTES,
    );
    if max_header_bytes < 1024 {
        c.err("server.max_header_bytes", "must be at least 1KiB");
    }
    let header_read_timeout = c.duration(
        "server.header_read_timeout",
        &s.header_read_timeout,
        DEFAULT_HEADER_READ_TIMEOUT,
    );
    let idle_timeout = c.duration("server.idle_timeout", &s.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    let request_body_timeout = Some(c.duration(
        "server.request_body_timeout",
        &s.request_body_timeout,
        DEFAULT_REQUEST_BODY_TIMEOUT,
    ))
    .filter(|d| !d.is_zero());
    let shutdown_grace = c.duration(
        "server.shutdown_grace",
        &s.shutdown_grace,
        DEFAULT_SHUTDOWN_GRACE,
    );
    for (key, d) in [
        ("server.header_read_timeout", header_read_timeout),
        ("server.idle_timeout", idle_timeout),
    ] {
        if d.is_zero() {
            c.err(key, "must be more than 0");
        }
    }
    let max_connections = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        c.err("server.max_connections", "must be at least 1");
    }
    if s.worker_threads == Some(0) {
        c.err("server.worker_threads", "must be at least 1");
    }
    let secret = match c.secret("server", "secret", &s.secret, &s.secret_file, &s.secret_env) {
        Some(sec) => {
            if sec.0.len() < 32 {
                c.err(
                    "server.secret_file",
                    "the server secret must be at least 32 bytes",
                );
            }
            sec
        }
        None => {
            c.warnings.push(
                "no [server] secret_file: using a random secret for this process; \
                 replicas will not agree on affinity cookies or each other's refresh tokens"
                    .into(),
            );
            // One per process, not per load: a reload must not invalidate
            // affinity cookies and refresh tokens.
            static PROCESS_SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
            Secret(
                PROCESS_SECRET
                    .get_or_init(crate::crypto::random_bytes::<32>)
                    .to_vec(),
            )
        }
    };
    let tls = s
        .tls
        .as_ref()
        .and_then(|t| match tls::load_server_config(t, c.base) {
            Ok(tls) => Some(tls),
            Err(problems) => {
                for (path, msg) in problems {
                    c.err(format!("server.tls{path}"), msg);
                }
                None
            }
        });
    let redirect = s
        .redirect
        .as_ref()
        .map(|r| c.addr("server.redirect.listen", Some(&r.listen), ""));
    if redirect.is_some() && s.tls.is_none() {
        c.err(
            "server.redirect",
            "a redirect listener needs [server.tls] (it sends clients to https)",
        );
    }
    Server {
        listen,
        endpoint_prefix,
        trusted_proxies,
        proxy_protocol,
        proxy_protocol_from,
        max_header_bytes,
        header_read_timeout,
        idle_timeout,
        request_body_timeout,
        shutdown_grace,
        max_connections,
        worker_threads: s.worker_threads,
        secret,
        tls,
        redirect,
    }
}

fn admin(c: &mut Check<'_>, a: &AdminFile) -> Admin {
    let listen = c.addr("admin.listen", a.listen.as_deref(), DEFAULT_ADMIN_LISTEN);
    let token = c.secret("admin", "token", &a.token, &a.token_file, &a.token_env);
    if let Some(t) = &token {
        if t.0.len() < 16 {
            c.err(
                "admin.token_file",
                "the admin token must be at least 16 bytes",
            );
        }
    }
    Admin { listen, token }
}

/// The `[[jwt]]`-style name of the gateway's own tokens (route `issuers`).
pub const OWN_ISSUER_NAME: &str = "gatehouse";

/// The verifier's view of the gateway's own access tokens: its issuer as
/// both `iss` and `aud` (identity tokens minted for backends carry another
/// audience, so they are not accepted back at the edge).
fn own_issuer(l: &super::sessions::Login) -> Arc<super::JwtIssuer> {
    use jsonwebtoken::Algorithm;
    let mut material = l.issuer.as_bytes().to_vec();
    material.extend_from_slice(l.keys.jwks.as_bytes());
    Arc::new(super::JwtIssuer {
        name: OWN_ISSUER_NAME.into(),
        issuer: l.issuer.clone(),
        audiences: vec![l.issuer.clone()],
        algorithms: vec![Algorithm::ES256, Algorithm::EdDSA],
        keys: super::JwtKeys::Static(l.keys.verify_set.clone()),
        leeway: super::DEFAULT_JWT_LEEWAY,
        required_claims: vec!["sub".into(), "exp".into()],
        token_sources: vec![super::TokenSource::Bearer],
        claims_map: super::DEFAULT_JWT_CLAIMS_MAP
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        fingerprint: crate::crypto::sha256(&material),
    })
}

/// Lowercases and folds `_` into `-`: the form header names are compared in.
pub(crate) fn fold_header_name(name: &str) -> String {
    name.chars()
        .map(|ch| {
            if ch == '_' {
                '-'
            } else {
                ch.to_ascii_lowercase()
            }
        })
        .collect()
}

fn identity(c: &mut Check<'_>, i: &IdentityFile) -> Identity {
    let mut headers = Vec::new();
    let pairs: Vec<(String, String)> = match &i.headers {
        Some(h) => h.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        None => DEFAULT_IDENTITY_HEADERS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    for (name, field) in pairs {
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => headers.push((h, field)),
            Err(_) => c.err(
                format!("identity.headers.\"{name}\""),
                format!("`{name}` is not a valid header name"),
            ),
        }
    }
    let strip: Vec<String> = match &i.strip {
        Some(s) => s.clone(),
        None => DEFAULT_STRIP.iter().map(|s| s.to_string()).collect(),
    };
    let mut folded = Vec::new();
    for (n, pat) in strip.iter().enumerate() {
        let body = pat.strip_suffix('*').unwrap_or(pat);
        if body.contains('*')
            || http::HeaderName::from_bytes(body.as_bytes()).is_err() && !body.is_empty()
        {
            c.err(
                format!("identity.strip[{n}]"),
                format!("`{pat}`: a header name, optionally ending in `*`"),
            );
        }
        if body.is_empty() {
            c.err(
                format!("identity.strip[{n}]"),
                "`*` alone would strip every header",
            );
        }
        folded.push(fold_header_name(pat));
    }
    let jwt = i.jwt.as_ref().map(|j| {
        let name = j.header.clone().unwrap_or_else(|| "X-Auth-Jwt".into());
        let header = http::HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|_| {
            c.err(
                "identity.jwt.header",
                format!("`{name}` is not a valid header name"),
            );
            http::HeaderName::from_static("x-auth-jwt")
        });
        let ttl = c.duration(
            "identity.jwt.ttl",
            &j.ttl,
            std::time::Duration::from_secs(60),
        );
        if ttl < std::time::Duration::from_secs(2) {
            c.err("identity.jwt.ttl", "must be at least 2s");
        }
        // A client must never be able to send this header itself.
        folded.push(fold_header_name(header.as_str()));
        IdentityJwt {
            header,
            ttl,
            audience: j.audience.clone(),
        }
    });
    let client_cert_header = i.client_cert_header.as_ref().and_then(|name| {
        match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => {
                // Only the gateway sets it: a client's own copy is stripped
                // like an identity header (SPEC 15).
                folded.push(fold_header_name(h.as_str()));
                Some(h)
            }
            Err(_) => {
                c.err(
                    "identity.client_cert_header",
                    format!("`{name}` is not a valid header name"),
                );
                None
            }
        }
    });
    Identity {
        headers,
        strip: folded,
        strip_session_cookie: i.strip_session_cookie.unwrap_or(true),
        strip_authorization: i.strip_authorization.unwrap_or(false),
        jwt,
        client_cert_header,
    }
}

/// A route naming `mtls` needs client certificates to be asked for and
/// verified (SPEC 15): `[server.tls] client_ca`, with `client_auth` not
/// `"none"`. Otherwise the method could never accept anyone, which is a
/// configuration mistake better caught by `check` than met as 401s.
fn mtls_needs_client_ca(c: &mut Check<'_>, f: &FileConfig) {
    let verifies = f
        .server
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca.is_some() && t.client_auth.as_deref() != Some("none"));
    if verifies {
        return;
    }
    for (i, r) in f.routes.iter().enumerate() {
        for (j, m) in r.methods.iter().flatten().enumerate() {
            if m == "mtls" {
                c.err(
                    format!("routes[{i}].methods[{j}]"),
                    "`mtls` needs [server.tls] client_ca (and client_auth \"optional\" or \"required\")",
                );
            }
        }
    }
}

/// `host:port` with a non-zero port; the host may be an IP or a DNS name.
fn valid_backend_addr(addr: &str) -> bool {
    if addr.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(['/', ' ', '[', ']'])
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

fn upstreams(c: &mut Check<'_>, list: &[UpstreamFile], secret: &Secret) -> Vec<Upstream> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, u) in list.iter().enumerate() {
        let p = format!("upstreams[{i}]");
        if !names.insert(u.name.clone()) {
            c.err(
                format!("{p}.name"),
                format!("duplicate upstream name `{}`", u.name),
            );
        }
        let mut backends = Vec::new();
        for (j, b) in u.backends.iter().enumerate() {
            let (addr, weight) = match b {
                BackendFile::Addr(a) => (a.clone(), 1),
                BackendFile::Weighted(w) => (w.addr.clone(), w.weight.unwrap_or(1)),
            };
            if !valid_backend_addr(&addr) {
                c.err(
                    format!("{p}.backends[{j}]"),
                    format!("`{addr}` is not host:port"),
                );
            }
            if weight == 0 || weight > 1000 {
                c.err(
                    format!("{p}.backends[{j}].weight"),
                    "weight must be 1 to 1000",
                );
            }
            if backends.iter().any(|x: &BackendSpec| x.addr == addr) {
                c.err(
                    format!("{p}.backends[{j}]"),
                    format!("duplicate backend `{addr}`"),
                );
            }
            backends.push(BackendSpec { addr, weight });
        }
        let discovery = u
            .discovery
            .as_ref()
            .and_then(|d| super::upstream::discovery(c, &format!("{p}.discovery"), d));
        if u.discovery.is_none() && backends.is_empty() {
            c.err(
                format!("{p}.backends"),
                format!("upstream `{}` has no backends", u.name),
            );
        }
        let balance = match u.balance.as_deref() {
            None | Some("round_robin") => Balance::RoundRobin,
            Some("least_conn") => Balance::LeastConn,
            Some("random") => Balance::Random,
            Some("hash") => Balance::Hash,
            Some(o) => {
                c.err(
                    format!("{p}.balance"),
                    format!(
                        "`{o}`: expected \"round_robin\", \"least_conn\", \"random\" or \"hash\""
                    ),
                );
                Balance::RoundRobin
            }
        };
        if u.hash_key.is_some() && balance != Balance::Hash {
            c.err(
                format!("{p}.hash_key"),
                "hash_key only applies with balance = \"hash\"",
            );
        }
        let hash_key = match (balance, u.hash_key.as_deref()) {
            (Balance::Hash, None) => Some(HashKey::Identity),
            (Balance::Hash, Some(k)) => super::upstream::hash_key(c, &format!("{p}.hash_key"), k),
            _ => None,
        };
        let sticky = u.sticky.as_ref().and_then(|s| {
            super::upstream::sticky(c, &format!("{p}.sticky"), s, u.balance.as_deref(), secret)
        });
        let tls = if u.tls.unwrap_or(false) {
            match tls::load_client_config(u.ca.as_deref().map(|ca| c.file_path(ca)).as_deref()) {
                Ok(cfg) => Some(cfg),
                Err(m) => {
                    c.err(format!("{p}.ca"), m.to_string());
                    None
                }
            }
        } else {
            if u.ca.is_some() {
                c.err(format!("{p}.ca"), "`ca` needs `tls = true`");
            }
            None
        };
        let h = u.health.as_ref();
        let hp = format!("{p}.health");
        let health = Health {
            path: h.and_then(|h| h.path.clone()),
            interval: c.duration(
                &format!("{hp}.interval"),
                &h.and_then(|h| h.interval.clone()),
                DEFAULT_HEALTH_INTERVAL,
            ),
            timeout: c.duration(
                &format!("{hp}.timeout"),
                &h.and_then(|h| h.timeout.clone()),
                DEFAULT_HEALTH_TIMEOUT,
            ),
            unhealthy_after: h.and_then(|h| h.unhealthy_after).unwrap_or(2).max(1),
            healthy_after: h.and_then(|h| h.healthy_after).unwrap_or(2).max(1),
            passive_failures: h
                .and_then(|h| h.passive_failures)
                .unwrap_or(DEFAULT_PASSIVE_FAILURES),
            eject_for: c.duration(
                &format!("{hp}.eject_for"),
                &h.and_then(|h| h.eject_for.clone()),
                DEFAULT_EJECT_FOR,
            ),
        };
        if let Some(path) = &health.path {
            if !path.starts_with('/') {
                c.err(format!("{hp}.path"), "must start with `/`");
            }
            if health.interval.is_zero() || health.timeout.is_zero() {
                c.err(
                    format!("{hp}.interval"),
                    "interval and timeout must be more than 0",
                );
            }
        }
        let connect_timeout = c.duration(
            &format!("{p}.connect_timeout"),
            &u.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        );
        let request_timeout = c.duration(
            &format!("{p}.request_timeout"),
            &u.request_timeout,
            DEFAULT_REQUEST_TIMEOUT,
        );
        if connect_timeout.is_zero() || request_timeout.is_zero() {
            c.err(
                format!("{p}.connect_timeout"),
                "timeouts must be more than 0",
            );
        }
        out.push(Upstream {
            name: u.name.clone(),
            backends,
            balance,
            tls,
            connect_timeout,
            request_timeout,
            retries: u.retries.unwrap_or(DEFAULT_RETRIES),
            max_idle_per_backend: u
                .max_idle_per_backend
                .unwrap_or(DEFAULT_MAX_IDLE_PER_BACKEND),
            health,
            hash_key,
            sticky,
            discovery,
        });
    }
    super::upstream::check_cookie_names(c, &out);
    out
}

fn routes(
    c: &mut Check<'_>,
    list: &[RouteFile],
    upstreams: &[Upstream],
    sessions_creatable: bool,
    issuer_names: &[&str],
) -> Vec<Route> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let p = format!("routes[{i}]");
        if !names.insert(r.name.clone()) {
            c.err(
                format!("{p}.name"),
                format!("duplicate route name `{}`", r.name),
            );
        } else if r.name == crate::proxy::OWN_ENDPOINT_ROUTE {
            c.err(
                format!("{p}.name"),
                "`_gatehouse` is the route label of the gateway's own endpoints; pick another name",
            );
        }
        let upstream = match r.upstream.as_deref() {
            None => None,
            Some(name) => match upstreams.iter().position(|u| u.name == name) {
                Some(u) => Some(u),
                None => {
                    c.err(
                        format!("{p}.upstream"),
                        format!(
                            "route `{}` names upstream `{name}`, which is not defined",
                            r.name
                        ),
                    );
                    None
                }
            },
        };
        let host = match r.host.as_deref() {
            None | Some("") => HostMatch::Any,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                if let Some(rest) = h.strip_prefix("*.") {
                    if rest.is_empty() || rest.contains('*') {
                        c.err(
                            format!("{p}.host"),
                            format!("`{h}`: a wildcard is `*.example.com`"),
                        );
                    }
                    HostMatch::Wildcard(format!(".{rest}"))
                } else {
                    if h.contains(['*', ':', '/', ' ']) {
                        c.err(
                            format!("{p}.host"),
                            format!("`{h}`: a host name without port, or `*.example.com`"),
                        );
                    }
                    HostMatch::Exact(h)
                }
            }
        };
        let path_prefix = r.path_prefix.clone().unwrap_or_else(|| "/".into());
        if !path_prefix.starts_with('/') {
            c.err(format!("{p}.path_prefix"), "must start with `/`");
        } else if crate::route::normalize_path(&path_prefix).as_deref() != Ok(path_prefix.as_str())
        {
            c.err(
                format!("{p}.path_prefix"),
                format!("`{path_prefix}` is not a normalised path (no `.`/`..` segments, `//` or needless %-escapes)"),
            );
        }
        let auth = match r.auth.as_deref() {
            None | Some("required") => AuthMode::Required,
            Some("optional") => AuthMode::Optional,
            Some("none") => AuthMode::None,
            Some(o) => {
                c.err(
                    format!("{p}.auth"),
                    format!("`{o}`: expected \"required\", \"optional\" or \"none\""),
                );
                AuthMode::Required
            }
        };
        let mut methods = Vec::new();
        for (j, m) in r
            .methods
            .clone()
            .unwrap_or_else(|| vec!["session".into(), "jwt".into()])
            .iter()
            .enumerate()
        {
            match m.as_str() {
                "session" => methods.push(AuthMethod::Session),
                "jwt" => methods.push(AuthMethod::Jwt),
                "mtls" => methods.push(AuthMethod::Mtls),
                o => c.err(
                    format!("{p}.methods[{j}]"),
                    format!("`{o}`: expected \"session\", \"jwt\" or \"mtls\""),
                ),
            }
        }
        if auth != AuthMode::None && methods.is_empty() {
            c.err(
                format!("{p}.methods"),
                "an authenticated route needs at least one method",
            );
        }
        let on_unauthenticated = match r.on_unauthenticated.as_deref() {
            None | Some("auto") => OnUnauthenticated::Auto,
            Some("redirect") => OnUnauthenticated::Redirect,
            Some("401") => OnUnauthenticated::Status401,
            Some(o) => {
                c.err(
                    format!("{p}.on_unauthenticated"),
                    format!("`{o}`: expected \"auto\", \"redirect\" or \"401\""),
                );
                OnUnauthenticated::Auto
            }
        };
        let mut require = Require::default();
        if let Some(req) = &r.require {
            require.groups_any = req.groups_any.clone().unwrap_or_default();
            for (k, v) in req.claims.iter().flatten() {
                match serde_json::to_value(v) {
                    Ok(j) if !j.is_object() && !j.is_array() => {
                        require.claims.insert(k.clone(), j);
                    }
                    _ => c.err(
                        format!("{p}.require.claims.\"{k}\""),
                        "a claim requirement is a string, number or boolean",
                    ),
                }
            }
            if auth == AuthMode::None
                && (!require.groups_any.is_empty() || !require.claims.is_empty())
            {
                c.err(
                    format!("{p}.require"),
                    "`require` needs auth = \"required\" or \"optional\"",
                );
            }
        }
        if auth != AuthMode::None && methods.contains(&AuthMethod::Session) && !sessions_creatable {
            c.warnings.push(format!(
                "route `{}` accepts sessions, but nothing creates them (no [login] or [[oidc]])",
                r.name
            ));
        }
        let issuers = r.issuers.clone().unwrap_or_default();
        for (j, name) in issuers.iter().enumerate() {
            if !issuer_names.contains(&name.as_str()) {
                c.err(
                    format!("{p}.issuers[{j}]"),
                    format!(
                        "`{name}` is not a [[jwt]] name{}",
                        if issuer_names.contains(&OWN_ISSUER_NAME) {
                            " (or `gatehouse`, the gateway's own tokens)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        if r.issuers.as_ref().is_some_and(Vec::is_empty) {
            c.err(
                format!("{p}.issuers"),
                "an empty list would accept no token; leave it out to accept every issuer",
            );
        }
        out.push(Route {
            name: r.name.clone(),
            host,
            path_prefix,
            upstream,
            auth,
            methods,
            on_unauthenticated,
            strip_prefix: r.strip_prefix.unwrap_or(false),
            websocket: r.websocket.unwrap_or(true),
            issuers,
            require,
        });
    }
    out
}
