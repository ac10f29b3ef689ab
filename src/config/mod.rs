//! Configuration: the TOML file (`file.rs`), its validation into the typed
//! [`Config`] (`validate.rs`), and where errors point (`locate.rs`).
//!
//! Two layers on purpose: the serde mirror rejects unknown keys and wrong
//! types with the parser's own line and column; validation then checks what
//! types cannot (a route naming a missing upstream, an unreadable key file)
//! and reports every problem at once with its key path.

pub mod file;
mod locate;
pub mod read;
pub mod reload;
pub mod sessions;
pub mod store;
pub mod units;
mod upstream;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use upstream::{
    Discovery, HashKey, Sticky, StickyMode, DEFAULT_AFFINITY_COOKIE, DEFAULT_DISCOVERY_INTERVAL,
    DEFAULT_LEARNED_TTL,
};
pub use validate::jwt::{
    parse_jwks_url, JwksLocation, JwksSource, JwksUrl, JwtIssuer, JwtKeys, TokenSource, UrlError,
    DEFAULT_JWKS_FILE_REFRESH, DEFAULT_JWKS_MIN_REFETCH, DEFAULT_JWKS_REFRESH,
    DEFAULT_JWT_ALGORITHMS, DEFAULT_JWT_CLAIMS_MAP, DEFAULT_JWT_LEEWAY,
    DEFAULT_JWT_REQUIRED_CLAIMS, DEFAULT_JWT_TOKEN_SOURCES, MIN_JWKS_INTERVAL,
};
pub use validate::oidc::{OidcProvider, DEFAULT_OIDC_SCOPES, DISCOVERY_PATH, MAX_PROVIDER_NAME};
pub use validate::validate;
pub use validate::OWN_ISSUER_NAME;

/// Defaults for keys the file leaves out (SPEC sections 2 and 11).
pub const DEFAULT_CONFIG_PATH: &str = "config/gatehouse.toml";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
pub const DEFAULT_ENDPOINT_PREFIX: &str = "/.gatehouse";
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for a whole request body, from the end of its head.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How often `[server.tls]` files are checked for changes on disk.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest `reload_interval` accepted (other than `"0s"`, off).
pub const MIN_TLS_RELOAD_INTERVAL: Duration = Duration::from_millis(100);
pub const DEFAULT_MAX_CONNECTIONS: usize = 25_000;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_MAX_IDLE_PER_BACKEND: usize = 256;
pub const DEFAULT_PASSIVE_FAILURES: u32 = 5;
pub const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(30);
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_STRIP: &[&str] = &["X-Auth-*", "X-Forwarded-User", "Remote-User"];
pub const DEFAULT_IDENTITY_HEADERS: &[(&str, &str)] = &[
    ("X-Auth-User", "sub"),
    ("X-Auth-Email", "email"),
    ("X-Auth-Groups", "groups"),
    ("X-Auth-Method", "method"),
];

/// The whole validated configuration. Built once per load or reload and
/// never mutated afterwards.
#[derive(Debug)]
pub struct Config {
    /// The file it came from; relative paths inside were resolved against
    /// its folder.
    pub path: PathBuf,
    pub server: Server,
    pub admin: Admin,
    pub log: Log,
    pub identity: Identity,
    /// `[sessions]`: defaults when absent (`enabled` false).
    pub sessions: sessions::Sessions,
    /// `[login]`: local users and token settings.
    pub login: Option<sessions::Login>,
    /// Single sign-on providers (`[[oidc]]`).
    pub oidc: Vec<Arc<OidcProvider>>,
    /// Accepted external token issuers (`[[jwt]]`).
    pub jwt: Vec<Arc<JwtIssuer>>,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    /// `[forward_auth]` with `enabled = true`; `None`: its endpoints answer 404.
    pub forward_auth: Option<ForwardAuth>,
    /// Signs the gateway's tokens: `[login]`'s keys, else an ephemeral key.
    pub signing: Arc<crate::tokens::keys::SigningKeys>,
    /// `iss` of the gateway's tokens (`login.issuer`, default `gatehouse`).
    pub token_issuer: String,
    /// Things worth telling the operator that do not stop the load.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct Server {
    pub listen: SocketAddr,
    pub endpoint_prefix: String,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The PROXY protocol versions accepted (SPEC 12); `None`: off.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Peers whose connections begin with a PROXY header.
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Deadline for receiving a whole request body (408 past it); `None`
    /// when configured as `0s`.
    pub request_body_timeout: Option<Duration>,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub worker_threads: Option<usize>,
    /// Root secret for derived signing keys (affinity and OIDC state cookies).
    pub secret: Secret,
    pub tls: Option<Tls>,
    pub redirect: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Tls {
    /// The rustls server config built from the files, certificates loaded.
    pub server_config: Arc<rustls::ServerConfig>,
    /// Files read (certificates, keys, client CA), in the order read.
    pub files: Vec<PathBuf>,
    /// SHA-256 over `files` and their contents exactly as loaded: the
    /// certificate watcher compares the files on disk against it.
    pub fingerprint: [u8; 32],
    /// How often the files are checked for changes; zero: never.
    pub reload_interval: Duration,
    /// Which certificate field is `sub` for the `mtls` method.
    pub client_identity: ClientIdentity,
}

/// `[server.tls] client_identity`: where an `mtls` identity's `sub` comes
/// from (SPEC 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIdentity {
    /// The subject's common name.
    Cn,
    /// The first rfc822Name subject alternative name.
    SanEmail,
    /// The first uniformResourceIdentifier subject alternative name.
    SanUri,
    /// The first dNSName subject alternative name.
    SanDns,
}

#[derive(Debug)]
pub struct Admin {
    pub listen: SocketAddr,
    /// Bearer token for `/admin/*`; `None` disables those endpoints.
    pub token: Option<Secret>,
}

/// Which PROXY protocol versions a listener accepts (SPEC 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
    Any,
}

impl ProxyProtocol {
    pub fn accepts_v1(self) -> bool {
        matches!(self, ProxyProtocol::V1 | ProxyProtocol::Any)
    }

    pub fn accepts_v2(self) -> bool {
        matches!(self, ProxyProtocol::V2 | ProxyProtocol::Any)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug)]
pub struct Log {
    pub format: LogFormat,
    pub access_log: bool,
}

#[derive(Debug)]
pub struct Identity {
    /// Header name -> identity field (`sub`, `email`, `groups`, `name`,
    /// `method`, or a `claims_map` key).
    pub headers: Vec<(http::HeaderName, String)>,
    /// Header patterns removed from every request; lowercase, `_` folded to
    /// `-`, an optional trailing `*`.
    pub strip: Vec<String>,
    pub strip_session_cookie: bool,
    pub strip_authorization: bool,
    /// `[identity.jwt]`: a short-lived JWT for backends that verify.
    pub jwt: Option<IdentityJwt>,
    /// `client_cert_header`: the verified client certificate, escaped PEM.
    pub client_cert_header: Option<http::HeaderName>,
}

#[derive(Debug, Clone)]
pub struct IdentityJwt {
    pub header: http::HeaderName,
    pub ttl: Duration,
    /// `None`: the upstream's name.
    pub audience: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    Random,
    Hash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// `host:port` as written: the label in metrics and the admin API.
    pub addr: String,
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub struct Health {
    /// Active checks run only when a path is configured.
    pub path: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
    pub passive_failures: u32,
    pub eject_for: Duration,
}

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub backends: Vec<BackendSpec>,
    pub balance: Balance,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retries: u32,
    pub max_idle_per_backend: usize,
    pub health: Health,
    /// With `balance = "hash"`: what is hashed (default `identity`).
    pub hash_key: Option<HashKey>,
    pub sticky: Option<Sticky>,
    /// Backends found by DNS, beside the fixed `backends`.
    pub discovery: Option<Discovery>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Optional,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Session,
    Jwt,
    Mtls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnauthenticated {
    Auto,
    Redirect,
    Status401,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Lowercase host, no port.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: exactly one more label.
    Wildcard(String),
}

#[derive(Debug, Clone, Default)]
pub struct Require {
    pub groups_any: Vec<String>,
    pub claims: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub host: HostMatch,
    pub path_prefix: String,
    /// Index into [`Config::upstreams`]; `None`: the route only answers
    /// forward-auth decisions (in-line it is 404).
    pub upstream: Option<usize>,
    pub auth: AuthMode,
    pub methods: Vec<AuthMethod>,
    pub on_unauthenticated: OnUnauthenticated,
    pub strip_prefix: bool,
    pub websocket: bool,
    /// `issuers`: the `[[jwt]]` names (and `gatehouse`, the gateway's own
    /// tokens) whose tokens this route accepts; empty accepts every one.
    pub issuers: Vec<String>,
    pub require: Require,
}

/// `[forward_auth]` (SPEC 14): decisions for a proxy that is already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuth {
    /// The central login page; `None`: `<scheme>://<original host><endpoint_prefix>/login`.
    pub login_url: Option<String>,
}

/// Secret bytes. Debug never prints them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// One problem found in a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `upstreams[1].backends[0]`; empty for the whole file.
    pub path: String,
    /// 1-based line and column, when known.
    pub line: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}", self.path)?;
            if let Some((l, c)) = self.line {
                write!(f, " (line {l}, column {c})")?;
            }
            write!(f, ": ")?;
        } else if let Some((l, c)) = self.line {
            write!(f, "line {l}, column {c}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a config could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {}", format_problems(.problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn format_problems(problems: &[Problem]) -> String {
    if problems.len() == 1 {
        return problems[0].to_string();
    }
    let mut s = format!("{} errors", problems.len());
    for p in problems {
        s.push_str("\n  ");
        s.push_str(&p.to_string());
    }
    s
}

/// Reads, parses and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read::read_limited_to_string(path, read::MAX_CONFIG_BYTES).map_err(|e| {
        ConfigError::Read {
            file: path.display().to_string(),
            source: e.into_io(),
        }
    })?;
    load_str(&text, path)
}

/// Parses and validates config text as if it were read from `path` (relative
/// paths inside resolve against `path`'s folder).
pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let parsed = parse(text).map_err(|p| ConfigError::Invalid {
        file: file.clone(),
        problems: vec![p],
    })?;
    validate(parsed, path).map_err(|mut problems| {
        for p in &mut problems {
            if p.line.is_none() {
                p.line = locate::line_of(text, &p.path);
            }
        }
        ConfigError::Invalid { file, problems }
    })
}

fn parse(text: &str) -> Result<file::FileConfig, Problem> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.span().map(|s| locate::line_col(text, s.start));
        let mut message = inner.message().trim().to_string();
        if message.is_empty() {
            // The parser says nothing for some characters (a control
            // character in a comment): name it rather than print nothing.
            message = match inner
                .span()
                .and_then(|s| text.get(s.start..)?.chars().next())
            {
                Some(c) => format!("unexpected character {:?} (U+{:04X})", c, c as u32),
                None => "invalid TOML".to_string(),
            };
        }
        Problem {
            path: if path == "." { String::new() } else { path },
            line,
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `config` fuzz target: the TOML parser gives no message
    /// for a control character in a comment.
    #[test]
    fn a_parse_error_always_says_something() {
        let e = load_str("# comment\u{5}\n[server]\n", Path::new("/x/g.toml")).unwrap_err();
        let p = &e.problems()[0];
        assert_eq!(p.line, Some((1, 10)));
        assert!(p.message.contains("U+0005"), "{}", p.message);
    }
}
