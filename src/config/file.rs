//! The serde mirror of the TOML file (SPEC section 2).
//!
//! Every struct here denies unknown keys: a typo such as `audiance` must be
//! an error, never a silently disabled check. Values stay close to the text
//! (durations and sizes as strings); `validate.rs` turns them into a typed
//! [`super::Config`].

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub admin: AdminFile,
    #[serde(default)]
    pub log: LogFile,
    #[serde(default)]
    pub sessions: Option<SessionsFile>,
    #[serde(default)]
    pub login: Option<LoginFile>,
    #[serde(default)]
    pub oidc: Vec<OidcFile>,
    #[serde(default)]
    pub jwt: Vec<JwtFile>,
    #[serde(default)]
    pub identity: IdentityFile,
    #[serde(default)]
    pub upstreams: Vec<UpstreamFile>,
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    #[serde(default)]
    pub forward_auth: Option<ForwardAuthFile>,
}

/// `[forward_auth]` (SPEC 14).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthFile {
    pub enabled: Option<bool>,
    pub login_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub listen: Option<String>,
    pub endpoint_prefix: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub proxy_protocol: Option<String>,
    pub proxy_protocol_from: Option<Vec<String>>,
    pub max_header_bytes: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub request_body_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    pub max_connections: Option<usize>,
    pub worker_threads: Option<usize>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub secret_env: Option<String>,
    pub tls: Option<TlsFile>,
    pub redirect: Option<RedirectFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: String,
    pub key: String,
    pub min_version: Option<String>,
    pub alpn: Option<Vec<String>>,
    pub client_ca: Option<String>,
    pub client_auth: Option<String>,
    /// `cn` | `san_email` | `san_uri` | `san_dns`: the `mtls` identity's `sub`.
    pub client_identity: Option<String>,
    /// How often the certificate and key files are checked for changes.
    pub reload_interval: Option<String>,
    #[serde(default)]
    pub certificates: Vec<SniCertFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertFile {
    pub hosts: Vec<String>,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectFile {
    pub listen: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub listen: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    pub format: Option<String>,
    pub access_log: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsFile {
    pub store: Option<String>,
    pub redis_url: Option<String>,
    pub redis_sentinel: Option<super::store::SentinelFile>,
    pub redis_cluster: Option<Vec<String>>,
    pub redis_username: Option<String>,
    pub redis_password: Option<String>,
    pub redis_password_file: Option<String>,
    pub redis_password_env: Option<String>,
    pub redis_tls: Option<bool>,
    pub redis_ca_file: Option<String>,
    pub sentinel_password: Option<String>,
    pub sentinel_password_file: Option<String>,
    pub sentinel_password_env: Option<String>,
    pub key_prefix: Option<String>,
    pub cookie_name: Option<String>,
    pub cookie_domain: Option<String>,
    pub cookie_secure: Option<bool>,
    pub cookie_same_site: Option<String>,
    pub idle_timeout: Option<String>,
    pub absolute_timeout: Option<String>,
    pub cache_ttl: Option<String>,
    pub csrf: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFile {
    pub users_file: Option<String>,
    pub issuer: Option<String>,
    pub signing_key_file: Option<String>,
    pub previous_keys: Option<Vec<String>>,
    pub access_token_ttl: Option<String>,
    pub refresh_token_ttl: Option<String>,
    pub refresh_token_max_age: Option<String>,
    pub refresh_reuse_grace: Option<String>,
    pub max_failures: Option<u32>,
    pub failure_window: Option<String>,
    pub lockout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub client_secret_env: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub allowed_email_domains: Option<Vec<String>>,
    pub claims_map: Option<BTreeMap<String, String>>,
    pub redirect_url: Option<String>,
    pub ca_file: Option<String>,
    pub backchannel_logout: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtFile {
    pub name: String,
    /// Required, unless `oidc` names a provider (then its issuer).
    #[serde(default)]
    pub issuer: String,
    /// An `[[oidc]]` provider whose issuer and keys this entry shares.
    pub oidc: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub algorithms: Option<Vec<String>>,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    pub public_key_file: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub secret_env: Option<String>,
    pub ca_file: Option<String>,
    pub jwks_refresh: Option<String>,
    pub jwks_min_refetch: Option<String>,
    pub leeway: Option<String>,
    pub required_claims: Option<Vec<String>>,
    pub token_sources: Option<Vec<String>>,
    pub claims_map: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    pub headers: Option<BTreeMap<String, String>>,
    pub strip: Option<Vec<String>>,
    pub strip_session_cookie: Option<bool>,
    pub strip_authorization: Option<bool>,
    pub jwt: Option<IdentityJwtFile>,
    pub client_cert_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityJwtFile {
    pub header: Option<String>,
    pub ttl: Option<String>,
    pub audience: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BackendFile {
    Addr(String),
    Weighted(WeightedBackendFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedBackendFile {
    pub addr: String,
    pub weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryFile {
    pub dns: String,
    pub interval: Option<String>,
    /// `IP[:PORT]` of the DNS server; default: /etc/resolv.conf's name servers.
    pub resolver: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub name: String,
    #[serde(default)]
    pub backends: Vec<BackendFile>,
    pub discovery: Option<DiscoveryFile>,
    pub balance: Option<String>,
    pub hash_key: Option<String>,
    pub tls: Option<bool>,
    pub ca: Option<String>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub retries: Option<u32>,
    pub max_idle_per_backend: Option<usize>,
    pub sticky: Option<StickyFile>,
    pub health: Option<HealthFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyFile {
    pub mode: String,
    pub cookie_name: Option<String>,
    pub ttl: Option<String>,
    pub app_cookie: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub unhealthy_after: Option<u32>,
    pub healthy_after: Option<u32>,
    pub passive_failures: Option<u32>,
    pub eject_for: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub name: String,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    /// Absent: a decision-only route (forward-auth, SPEC 14).
    pub upstream: Option<String>,
    pub auth: Option<String>,
    pub methods: Option<Vec<String>>,
    pub on_unauthenticated: Option<String>,
    pub strip_prefix: Option<bool>,
    pub websocket: Option<bool>,
    pub issuers: Option<Vec<String>>,
    pub require: Option<RequireFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireFile {
    pub groups_any: Option<Vec<String>>,
    pub claims: Option<BTreeMap<String, toml::Value>>,
}
