//! A provider at run time: its discovery document (OpenID Connect
//! Discovery 1.0), fetched in the background at start and refreshed, and
//! the key set its ID tokens are checked with.
//!
//! Shared state, who touches it and why:
//! - `meta`: written by the discovery task only, read by `/start` and
//!   `/callback` (`ArcSwapOption`: a load is a few atomics). A failed
//!   refresh never clears it: the last good document stays.
//! - `status`: a std mutex around the last error, held for a few
//!   instructions, never across an await.
//! - the task holds only a `Weak` while it sleeps and ends through `stop`
//!   when the provider is dropped (a reload replaced it and its last
//!   request finished). The ID-token keys are a [`RemoteKeys`] with its
//!   own refresh task, carried over from one document to the next while
//!   `jwks_uri` stays the same.

use crate::auth::jwt::Issuer;
use crate::auth::keys::jwks::RemoteKeys;
use crate::auth::keys::{parse_alg, KeyKind};
use crate::config::{
    parse_jwks_url, JwksLocation, JwksSource, JwksUrl, JwtIssuer, JwtKeys, OidcProvider,
    DEFAULT_JWKS_REFRESH, DEFAULT_JWT_LEEWAY, MIN_JWKS_INTERVAL,
};
use crate::fetch::{self as client, Outgoing};
use crate::metrics::Metrics;
use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// How often a good discovery document is fetched again.
pub const DISCOVERY_REFRESH: Duration = Duration::from_secs(3600);
/// First retry after a failed fetch; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Claims every ID token must have (OpenID Connect Core 2).
pub const ID_TOKEN_REQUIRED_CLAIMS: &[&str] = &["sub", "exp", "iat"];
/// Claims every logout token must have (OpenID Connect Back-Channel
/// Logout 1.0 section 2.4; `sid` or `sub` is checked by the endpoint).
pub const LOGOUT_TOKEN_REQUIRED_CLAIMS: &[&str] = &["iat", "jti", "events"];

/// How the gateway authenticates to the token endpoint (OpenID Connect
/// Core 9; RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// The parts of a discovery document the gateway uses, checked, with the
/// keys its ID tokens are verified with.
pub struct Metadata {
    /// Exactly as the document says: ID tokens' `iss` must equal it.
    pub issuer: String,
    /// Where browsers are sent; its own query string is kept.
    pub authorization_endpoint: String,
    pub token_endpoint: JwksUrl,
    pub userinfo_endpoint: Option<JwksUrl>,
    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
    pub end_session_endpoint: Option<String>,
    pub client_auth: ClientAuth,
    /// The document lists PKCE methods without `S256` (it is sent anyway).
    pub pkce_unadvertised: bool,
    /// Verifies ID tokens: issuer, audience = client_id, allowed
    /// algorithms, keys from `jwks_uri`.
    pub id_tokens: Arc<Issuer>,
    /// Verifies back-channel logout tokens: the same issuer, audience,
    /// algorithms and keys, other required claims (no `sub`, no `exp`).
    pub logout_tokens: Arc<Issuer>,
    /// The document it was made from.
    document: Checked,
}

impl Metadata {
    pub fn keys(&self) -> &Arc<RemoteKeys> {
        self.id_tokens
            .remote_keys()
            .expect("provider keys come from jwks_uri")
    }
}

/// The document as served; unknown members are ignored.
#[derive(Debug, Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    end_session_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    id_token_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

/// A checked document, before its keys are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: JwksUrl,
    pub userinfo_endpoint: Option<JwksUrl>,
    pub end_session_endpoint: Option<String>,
    pub jwks_uri: JwksUrl,
    pub client_auth: ClientAuth,
    pub algorithms: Vec<Algorithm>,
    pub pkce_unadvertised: bool,
}

/// Why a provider's discovery document could not be used; kept (as text)
/// as the provider's last error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("not a discovery document: {0}")]
    NotJson(serde_json::Error),
    #[error("the document's issuer `{found}` is not the configured `{configured}`")]
    Issuer { found: String, configured: String },
    #[error("{name}: {source}")]
    Endpoint {
        name: &'static str,
        source: crate::config::UrlError,
    },
    #[error("{0} has a fragment")]
    Fragment(&'static str),
    #[error("the token endpoint takes neither client_secret_basic nor client_secret_post (it lists {0})")]
    ClientAuth(String),
    #[error("none of id_token_signing_alg_values_supported is a supported public-key algorithm")]
    NoAlgorithm,
}

fn endpoint(name: &'static str, url: &str) -> Result<JwksUrl, DiscoveryError> {
    parse_jwks_url(url).map_err(|source| DiscoveryError::Endpoint { name, source })
}

/// Checks a discovery document against the configured provider.
pub(crate) fn check_document(cfg: &OidcProvider, body: &[u8]) -> Result<Checked, DiscoveryError> {
    let doc: Document = serde_json::from_slice(body).map_err(DiscoveryError::NotJson)?;
    // OpenID Connect Discovery 1.0 section 4.3: the document's issuer is
    // the one it was fetched for (a trailing `/` is not worth a failure).
    if doc.issuer.trim_end_matches('/') != cfg.issuer.trim_end_matches('/') {
        return Err(DiscoveryError::Issuer {
            found: doc.issuer,
            configured: cfg.issuer.clone(),
        });
    }
    let authorization = endpoint("authorization_endpoint", &doc.authorization_endpoint)?;
    if doc.authorization_endpoint.contains('#') {
        return Err(DiscoveryError::Fragment("authorization_endpoint"));
    }
    let token_endpoint = endpoint("token_endpoint", &doc.token_endpoint)?;
    let jwks_uri = endpoint("jwks_uri", &doc.jwks_uri)?;
    let userinfo_endpoint = doc
        .userinfo_endpoint
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| endpoint("userinfo_endpoint", u))
        .transpose()?;
    let end_session_endpoint = match doc.end_session_endpoint.as_deref() {
        None | Some("") => None,
        Some(u) if u.contains('#') => return Err(DiscoveryError::Fragment("end_session_endpoint")),
        Some(u) => Some(endpoint("end_session_endpoint", u)?.text),
    };
    // Absent means client_secret_basic (OpenID Connect Discovery 1.0
    // section 3); basic is preferred whenever offered (SPEC 11).
    let client_auth = match &doc.token_endpoint_auth_methods_supported {
        None => ClientAuth::Basic,
        Some(m) if m.iter().any(|x| x == "client_secret_basic") => ClientAuth::Basic,
        Some(m) if m.iter().any(|x| x == "client_secret_post") => ClientAuth::Post,
        Some(m) => return Err(DiscoveryError::ClientAuth(m.join(", "))),
    };
    // ID tokens are checked with the provider's published keys: only
    // public-key algorithms; RS256 is the default (Core 3.1.3.7).
    let algorithms: Vec<Algorithm> = match &doc.id_token_signing_alg_values_supported {
        None => vec![Algorithm::RS256],
        Some(names) => names
            .iter()
            .filter_map(|n| parse_alg(n))
            .filter(|a| !KeyKind::Hmac.fits(*a))
            .collect(),
    };
    if algorithms.is_empty() {
        return Err(DiscoveryError::NoAlgorithm);
    }
    let pkce_unadvertised = doc
        .code_challenge_methods_supported
        .as_ref()
        .is_some_and(|m| !m.iter().any(|x| x == "S256"));
    Ok(Checked {
        issuer: doc.issuer,
        authorization_endpoint: authorization.text,
        token_endpoint,
        userinfo_endpoint,
        end_session_endpoint,
        jwks_uri,
        client_auth,
        algorithms,
        pkce_unadvertised,
    })
}

#[derive(Default)]
struct Status {
    failures: u32,
    last_error: Option<String>,
}

/// One `[[oidc]]` entry at run time.
pub struct Provider {
    pub cfg: Arc<OidcProvider>,
    meta: ArcSwapOption<Metadata>,
    status: Mutex<Status>,
    stop: watch::Sender<()>,
    started: AtomicBool,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.cfg.name)
            .field("discovered", &self.meta.load().is_some())
            .finish()
    }
}

impl Provider {
    pub fn new(cfg: Arc<OidcProvider>) -> Provider {
        Provider {
            cfg,
            meta: ArcSwapOption::empty(),
            status: Mutex::new(Status::default()),
            stop: watch::channel(()).0,
            started: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The discovery document, once one has arrived.
    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        self.meta.load_full()
    }

    /// Generation of the ID-token key set (0: none yet). Cheap: no
    /// refcount (checked on every cached token of a `[[jwt]]` entry that
    /// shares these keys).
    pub fn key_generation(&self) -> u64 {
        self.meta
            .load()
            .as_ref()
            .map_or(0, |m| m.keys().generation())
    }

    /// Why this provider cannot sign anyone in yet, if it cannot.
    pub fn not_ready(&self) -> Option<String> {
        let name = &self.cfg.name;
        match self.meta.load_full() {
            None => Some(match &self.lock().last_error {
                Some(e) => format!(
                    "oidc provider `{name}`: no discovery document yet from {} (last error: {e})",
                    self.cfg.discovery_url.text
                ),
                None => format!(
                    "oidc provider `{name}`: discovery document from {} not fetched yet",
                    self.cfg.discovery_url.text
                ),
            }),
            Some(m) if m.keys().current().is_none() => Some(format!(
                "oidc provider `{name}`: signing keys from {} not fetched yet",
                m.keys().source.describe()
            )),
            Some(_) => None,
        }
    }

    /// Starts the background discovery (once; later calls do nothing).
    pub fn start(self: &Arc<Self>, metrics: &Arc<Metrics>) {
        if self.started.swap(true, Relaxed) {
            return;
        }
        // Keys carried over from the provider this one replaced.
        if let Some(m) = self.metadata() {
            m.keys().start(metrics.clone());
        }
        tokio::spawn(discovery_loop(
            Arc::downgrade(self),
            self.stop.subscribe(),
            metrics.clone(),
        ));
    }

    /// One fetch of the discovery document; returns when to fetch next.
    async fn discover(&self, metrics: &Arc<Metrics>) -> Duration {
        let url = &self.cfg.discovery_url;
        let fetched = client::send(&self.cfg.tls, Outgoing::get(url))
            .await
            .map_err(DiscoveryError::from)
            .and_then(|r| match r.status {
                200 => Ok(r.body),
                s => Err(DiscoveryError::Status(s)),
            })
            .and_then(|body| check_document(&self.cfg, &body));
        match fetched {
            Ok(checked) => {
                let previous = self.meta.load_full();
                let changed = previous.as_ref().is_none_or(|p| p.document != checked);
                if changed {
                    let meta = self.attach_keys(checked, previous.as_deref(), metrics);
                    if meta.pkce_unadvertised {
                        tracing::warn!(provider = %self.cfg.name, "the provider does not list PKCE S256; sending it anyway");
                    }
                    tracing::info!(provider = %self.cfg.name, issuer = %meta.issuer, "OIDC discovery document loaded");
                    self.meta.store(Some(Arc::new(meta)));
                }
                let mut st = self.lock();
                st.failures = 0;
                st.last_error = None;
                DISCOVERY_REFRESH
            }
            Err(e) => {
                if self.meta.load().is_some() {
                    tracing::warn!(provider = %self.cfg.name, url = %url.text, error = %e, "OIDC discovery failed; keeping what was loaded before");
                } else {
                    tracing::warn!(provider = %self.cfg.name, url = %url.text, error = %e, "OIDC discovery failed; sign-in with this provider is unavailable until it succeeds");
                }
                let mut st = self.lock();
                st.failures = st.failures.saturating_add(1);
                st.last_error = Some(e.to_string());
                FIRST_RETRY
                    .saturating_mul(1 << st.failures.min(16).saturating_sub(1))
                    .min(MAX_RETRY)
            }
        }
    }

    /// Where this provider's ID-token keys come from, per `checked`.
    fn key_source(&self, checked: &Checked) -> JwksSource {
        JwksSource {
            location: JwksLocation::Url {
                url: checked.jwks_uri.clone(),
                tls: self.cfg.tls.clone(),
            },
            refresh: DEFAULT_JWKS_REFRESH,
            // ID tokens come from the provider itself, never from a
            // client, so a rotation may be picked up at once.
            min_refetch: MIN_JWKS_INTERVAL,
        }
    }

    /// The metadata for `checked`, keeping the ID-token keys of `previous`
    /// when `jwks_uri` did not change (no refetch, no gap).
    fn attach_keys(
        &self,
        checked: Checked,
        previous: Option<&Metadata>,
        metrics: &Arc<Metrics>,
    ) -> Metadata {
        let keys = match previous.map(|p| p.keys()) {
            Some(k) if k.source.same_location(&self.key_source(&checked)) => k.clone(),
            _ => {
                let k = Arc::new(RemoteKeys::new(
                    &format!("oidc:{}", self.cfg.name),
                    self.key_source(&checked),
                    None,
                ));
                k.start(metrics.clone());
                k
            }
        };
        self.assemble(checked, keys)
    }

    /// Metadata from a checked document and its keys, for this provider's
    /// client: audience, claims map.
    pub(crate) fn assemble(&self, checked: Checked, keys: Arc<RemoteKeys>) -> Metadata {
        let cfg = &self.cfg;
        let issuer = |required: &[&str]| JwtIssuer {
            name: format!("oidc:{}", cfg.name),
            issuer: checked.issuer.clone(),
            audiences: vec![cfg.client_id.clone()],
            algorithms: checked.algorithms.clone(),
            keys: JwtKeys::Remote(keys.source.clone()),
            leeway: DEFAULT_JWT_LEEWAY,
            required_claims: required.iter().map(|s| s.to_string()).collect(),
            token_sources: Vec::new(),
            claims_map: cfg.claims_map.clone(),
            fingerprint: [0; 32],
        };
        let logout_tokens = Arc::new(Issuer::for_provider(
            Arc::new(issuer(LOGOUT_TOKEN_REQUIRED_CLAIMS)),
            keys.clone(),
        ));
        let issuer = issuer(ID_TOKEN_REQUIRED_CLAIMS);
        Metadata {
            issuer: checked.issuer.clone(),
            authorization_endpoint: checked.authorization_endpoint.clone(),
            token_endpoint: checked.token_endpoint.clone(),
            userinfo_endpoint: checked.userinfo_endpoint.clone(),
            end_session_endpoint: checked.end_session_endpoint.clone(),
            client_auth: checked.client_auth,
            pkce_unadvertised: checked.pkce_unadvertised,
            id_tokens: Arc::new(Issuer::for_provider(Arc::new(issuer), keys)),
            logout_tokens,
            document: checked,
        }
    }

    /// A provider for a changed entry (new scopes, secret, claims map...)
    /// that keeps `prev`'s document and keys while its discovery URL is
    /// the same, so sign-ins do not answer 503 after a reload. The
    /// document is fetched again at once all the same.
    fn succeeding(cfg: Arc<OidcProvider>, prev: &Provider) -> Provider {
        let p = Provider::new(cfg);
        if prev.cfg.discovery_url == p.cfg.discovery_url {
            if let Some(m) = prev.metadata() {
                let keys = Arc::new(RemoteKeys::new(
                    &format!("oidc:{}", p.cfg.name),
                    p.key_source(&m.document),
                    Some(m.keys()),
                ));
                let meta = p.assemble(m.document.clone(), keys);
                p.meta.store(Some(Arc::new(meta)));
            }
        }
        p
    }
}

async fn discovery_loop(
    provider: Weak<Provider>,
    mut stop: watch::Receiver<()>,
    metrics: Arc<Metrics>,
) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Only ever an error: the sender went away with its provider.
            _ = stop.changed() => return,
        }
        let Some(p) = provider.upgrade() else { return };
        wait = p.discover(&metrics).await;
    }
}

/// The providers of one config snapshot.
#[derive(Debug, Default)]
pub struct Providers {
    list: Vec<Arc<Provider>>,
}

impl Providers {
    /// Builds the providers of `cfgs`; one whose entry, secret and CA are
    /// unchanged since `previous` is kept as it was (document, keys), and
    /// a changed one starts from its predecessor's document.
    pub fn build(cfgs: &[Arc<OidcProvider>], previous: Option<&Providers>) -> Providers {
        let prev: &[Arc<Provider>] = previous.map_or(&[], |p| &p.list);
        let list = cfgs
            .iter()
            .map(|cfg| match prev.iter().find(|p| p.cfg.name == cfg.name) {
                Some(same) if same.cfg.fingerprint == cfg.fingerprint => same.clone(),
                Some(changed) => Arc::new(Provider::succeeding(cfg.clone(), changed)),
                None => Arc::new(Provider::new(cfg.clone())),
            })
            .collect();
        Providers { list }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| p.cfg.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.list.iter()
    }

    /// Starts background discovery (idempotent per provider).
    pub fn start(&self, metrics: &Arc<Metrics>) {
        for p in &self.list {
            p.start(metrics);
        }
    }

    /// Providers that cannot sign anyone in yet, as `/readyz` reasons.
    pub fn not_ready(&self) -> Vec<String> {
        self.list.iter().filter_map(|p| p.not_ready()).collect()
    }
}
