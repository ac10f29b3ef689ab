//! The `jwt` method (SPEC 6): bearer tokens from external issuers,
//! verified per RFC 7519 and the RFC 8725 best practices.
//!
//! ```text
//! token (source order) -> size limit -> cache (sha256 of the token) -- hit --> revocation -> identity
//!                                          | miss
//!   split in 3, decode header (no jku/x5u/jwk/crit, alg known, never "none")
//!   -> decode claims, pick the issuer by `iss` (unverified: only to choose)
//!   -> alg in the issuer's allowlist -> key by kid, fitting the alg's key type
//!      (unknown kid on a jwks_url: one rate-limited refetch)
//!   -> signature -> exp/nbf/iat with leeway, aud, required claims
//!   -> revocation -> identity from claims_map -> cache until exp
//! ```
//!
//! Nothing read before the signature check is trusted for anything but
//! choosing which issuer and key to check it with.

mod cache;
pub mod claims;
pub mod source;

pub use cache::TokenCache;

use super::keys::jwks::RemoteKeys;
use super::keys::{parse_alg, KeySet, Lookup};
use super::{Attempt, Identity};
use crate::config::{JwtIssuer, JwtKeys, TokenSource};
use crate::gateway::{Gateway, Snapshot};
use crate::login::oidc::{Provider, Providers};
use crate::metrics::{AuthResult, Metrics};
use crate::revocation::{Revocations, TokenFacts};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cache::{Entry, Hit};
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Longest token considered; anything longer is refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was refused. The description goes into the
/// `WWW-Authenticate` error_description (RFC 6750 section 3): short, fixed
/// text, never anything from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Malformed,
    TooLarge,
    /// `jku`, `x5u`, `jwk` or `crit` in the header.
    UnsupportedHeader,
    /// `alg` unknown, or `none`.
    BadAlgorithm,
    UnknownIssuer,
    /// The issuer does not take tokens from where this one was found.
    SourceNotAccepted,
    AlgorithmNotAllowed,
    UnknownKey,
    /// A `jwks_url` issuer whose keys have not arrived yet.
    KeysUnavailable,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongAudience,
    MissingClaim,
    BadClaims,
    Revoked,
    /// Valid, but from an issuer the route does not accept.
    IssuerNotAccepted,
}

impl Reject {
    pub fn description(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed token",
            Reject::TooLarge => "token too large",
            Reject::UnsupportedHeader => "unsupported token header",
            Reject::BadAlgorithm => "unsupported algorithm",
            Reject::UnknownIssuer => "unknown issuer",
            Reject::SourceNotAccepted => "token not accepted from this source",
            Reject::AlgorithmNotAllowed => "algorithm not allowed",
            Reject::UnknownKey => "unknown signing key",
            Reject::KeysUnavailable => "issuer keys unavailable",
            Reject::BadSignature => "invalid signature",
            Reject::Expired => "token expired",
            Reject::NotYetValid => "token not yet valid",
            Reject::IssuedInFuture => "token issued in the future",
            Reject::WrongAudience => "invalid audience",
            Reject::MissingClaim => "missing required claim",
            Reject::BadClaims => "invalid claims",
            Reject::Revoked => "token revoked",
            Reject::IssuerNotAccepted => "issuer not accepted on this route",
        }
    }

    /// The `gatehouse_auth_total{result}` label.
    pub fn result(self) -> AuthResult {
        match self {
            Reject::Expired => AuthResult::Expired,
            Reject::Revoked => AuthResult::Revoked,
            Reject::KeysUnavailable => AuthResult::Error,
            _ => AuthResult::Invalid,
        }
    }
}

enum IssuerKeys {
    Static(Arc<KeySet>),
    Remote(Arc<RemoteKeys>),
    /// `oidc = "NAME"`: whatever keys that provider has loaded.
    Provider(ProviderKeys),
}

/// The keys of an `[[oidc]]` provider, shared by a `[[jwt]]` entry: one
/// discovery document, one `jwks_uri` fetch for sign-ins and API tokens.
/// Until the document and keys are in, the entry's tokens get `issuer
/// keys unavailable`.
struct ProviderKeys {
    provider: Arc<Provider>,
    /// This entry's `jwks_min_refetch` window over the refetches its
    /// tokens ask for (clients can forge `kid`s); the provider's own
    /// window, one second, is for the ID tokens it hands the gateway.
    min_refetch: std::time::Duration,
    last_triggered: std::sync::Mutex<Option<crate::clock::Instant>>,
}

impl ProviderKeys {
    /// Takes this entry's refetch window if it is open.
    fn may_refetch(&self) -> bool {
        let mut last = self
            .last_triggered
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return false;
        }
        *last = Some(crate::clock::Instant::now());
        true
    }
}

/// What a token naming an unknown `kid` may do to a `jwks_url` key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refetch {
    /// One refetch at most per `jwks_min_refetch`; a token arriving sooner
    /// is refused. For tokens from clients, who could forge `kid`s.
    RateLimited,
    /// Waits for the `jwks_min_refetch` window, then refetches. For tokens
    /// the gateway got from the issuer itself (OIDC ID tokens).
    AfterWindow,
}

/// One `[[jwt]]` entry at run time: its config and its keys.
pub struct Issuer {
    pub cfg: Arc<JwtIssuer>,
    keys: IssuerKeys,
    refetch: Refetch,
}

impl Issuer {
    /// The ID-token signer of an OpenID Connect provider: not in any
    /// `[[jwt]]` list (its tokens never authenticate a request by
    /// themselves), keys from the provider's `jwks_uri`.
    pub(crate) fn for_provider(cfg: Arc<JwtIssuer>, keys: Arc<RemoteKeys>) -> Issuer {
        Issuer {
            cfg,
            keys: IssuerKeys::Remote(keys),
            refetch: Refetch::AfterWindow,
        }
    }

    /// The live key set behind a `jwks_url`, `jwks_file` (or `jwks_uri`)
    /// issuer.
    pub(crate) fn remote_keys(&self) -> Option<&Arc<RemoteKeys>> {
        match &self.keys {
            IssuerKeys::Remote(r) => Some(r),
            IssuerKeys::Static(_) | IssuerKeys::Provider(_) => None,
        }
    }

    /// Verifies a token for this issuer alone, as a request's token is
    /// verified once its issuer is chosen: header checks, `iss` equal to
    /// the issuer, algorithm allowlist, key by `kid`, signature, then
    /// `exp`/`nbf`/`iat` with leeway, `aud` and required claims. No cache
    /// and no revocation: for tokens the gateway fetched itself (an OIDC
    /// ID token), whose further checks (nonce, azp) the caller makes on the
    /// returned claims.
    pub(crate) async fn verify_direct(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(claims::Claims, claims::Times), Reject> {
        let parsed = parse(token)?;
        match parsed.claims.get("iss") {
            Some(Value::String(s)) if *s == self.cfg.issuer => {}
            _ => return Err(Reject::UnknownIssuer),
        }
        let (_, times) = checked(self, &parsed, now).await?;
        Ok((parsed.claims, times))
    }

    fn key_set(&self) -> Option<Arc<KeySet>> {
        match &self.keys {
            IssuerKeys::Static(s) => Some(s.clone()),
            IssuerKeys::Remote(r) => r.current(),
            IssuerKeys::Provider(p) => p.provider.metadata()?.keys().current(),
        }
    }

    fn key_generation(&self) -> u64 {
        match &self.keys {
            IssuerKeys::Static(s) => s.generation(),
            IssuerKeys::Remote(r) => r.generation(),
            IssuerKeys::Provider(p) => p.provider.key_generation(),
        }
    }

    /// Whether a token's `iss` names this issuer. Exact, except for an
    /// entry sharing an `[[oidc]]` provider, which is chosen trailing `/`
    /// aside (as the provider's discovery check has it) and then held to
    /// the discovery document's issuer exactly (see [`key_set`]).
    fn is_named_by(&self, iss: &str) -> bool {
        self.cfg.issuer == iss
            || (matches!(self.keys, IssuerKeys::Provider(_))
                && self.cfg.issuer.trim_end_matches('/') == iss.trim_end_matches('/'))
    }

    fn accepts(&self, source: &TokenSource) -> bool {
        self.cfg.token_sources.contains(source)
    }
}

/// The issuers of one config snapshot.
#[derive(Default)]
pub struct Issuers {
    list: Vec<Arc<Issuer>>,
    /// Every issuer's token sources, in config order, without repeats.
    sources: Vec<TokenSource>,
    /// Names of `query:` sources, removed from forwarded URLs.
    query_names: Vec<String>,
}

impl Issuers {
    /// Builds the issuers of `cfgs`. An issuer whose entry and key material
    /// are unchanged since `previous` is kept as it was (keys, fetch
    /// schedule, cached tokens); a changed one with the same `jwks_url`
    /// starts from the keys already fetched. Entries naming an `[[oidc]]`
    /// provider use `providers`' (this snapshot's), so they are built
    /// after them.
    pub fn build(
        cfgs: &[Arc<JwtIssuer>],
        previous: Option<&Issuers>,
        providers: &Providers,
    ) -> Issuers {
        let prev: &[Arc<Issuer>] = previous.map_or(&[], |p| &p.list);
        let mut out = Issuers::default();
        for cfg in cfgs {
            // A kept issuer must not hold on to a provider this snapshot
            // replaced.
            let kept = prev.iter().find(|i| {
                i.cfg.fingerprint == cfg.fingerprint
                    && match (&i.keys, &cfg.keys) {
                        (IssuerKeys::Provider(p), JwtKeys::Provider { name, .. }) => providers
                            .get(name)
                            .is_some_and(|now| Arc::ptr_eq(now, &p.provider)),
                        _ => true,
                    }
            });
            let issuer = match kept {
                Some(same) => same.clone(),
                None => {
                    let keys = match &cfg.keys {
                        JwtKeys::Provider { name, min_refetch } => {
                            let Some(provider) = providers.get(name) else {
                                // The config check makes sure it exists.
                                tracing::error!(issuer = %cfg.name, provider = %name, "jwt issuer names an unknown oidc provider; its tokens are refused");
                                continue;
                            };
                            IssuerKeys::Provider(ProviderKeys {
                                provider: provider.clone(),
                                min_refetch: *min_refetch,
                                last_triggered: std::sync::Mutex::new(None),
                            })
                        }
                        JwtKeys::Static(set) => IssuerKeys::Static(set.clone()),
                        JwtKeys::Remote(src) => {
                            let old = prev.iter().find_map(|i| match &i.keys {
                                IssuerKeys::Remote(r) if r.source.same_location(src) => Some(r),
                                _ => None,
                            });
                            IssuerKeys::Remote(Arc::new(RemoteKeys::new(
                                &cfg.name,
                                src.clone(),
                                old.map(|r| r.as_ref()),
                            )))
                        }
                    };
                    Arc::new(Issuer {
                        cfg: cfg.clone(),
                        keys,
                        refetch: Refetch::RateLimited,
                    })
                }
            };
            for s in &issuer.cfg.token_sources {
                if !out.sources.contains(s) {
                    out.sources.push(s.clone());
                    if let TokenSource::Query(name) = s {
                        out.query_names.push(name.clone());
                    }
                }
            }
            out.list.push(issuer);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Starts background key fetches (idempotent per key source; a
    /// provider's keys are started by the provider).
    pub fn start(&self, metrics: &Arc<Metrics>) {
        for i in &self.list {
            if let IssuerKeys::Remote(r) = &i.keys {
                r.start(metrics.clone());
            }
        }
    }

    /// Issuers that cannot verify tokens yet, as `/readyz` reasons.
    pub fn not_ready(&self) -> Vec<String> {
        self.list
            .iter()
            .filter_map(|i| match &i.keys {
                IssuerKeys::Remote(r) => r.not_ready(),
                IssuerKeys::Provider(p) if i.key_set().is_none() => Some(format!(
                    "jwt issuer `{}`: no signing keys yet from oidc provider `{}`",
                    i.cfg.name, p.provider.cfg.name
                )),
                IssuerKeys::Provider(_) | IssuerKeys::Static(_) => None,
            })
            .collect()
    }

    fn by_iss(&self, iss: &str) -> Option<&Arc<Issuer>> {
        self.list.iter().find(|i| i.is_named_by(iss))
    }
}

/// A token split and decoded, not yet verified.
struct Parsed<'t> {
    /// `header.payload`, what the signature covers.
    signing_input: &'t str,
    signature: &'t str,
    alg: Algorithm,
    kid: Option<String>,
    claims: claims::Claims,
}

fn decode_json(segment: &str) -> Result<claims::Claims, Reject> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Reject::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Reject::Malformed)
}

/// JWS compact serialisation (RFC 7515 section 7.1), header checks first.
fn parse(token: &str) -> Result<Parsed<'_>, Reject> {
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(Reject::Malformed);
    };
    // An empty signature is an unsigned token, whatever `alg` claims.
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(Reject::Malformed);
    }
    let header = decode_json(h)?;
    // Keys or key locations carried by the token itself are never trusted
    // (RFC 8725 section 3.10), and no `crit` extension is implemented, so
    // a token that requires one must be refused (RFC 7515 section 4.1.11).
    if ["jku", "x5u", "jwk", "crit"]
        .iter()
        .any(|k| header.contains_key(*k))
    {
        return Err(Reject::UnsupportedHeader);
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => parse_alg(a).ok_or(Reject::BadAlgorithm)?,
        _ => return Err(Reject::Malformed),
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Reject::Malformed),
    };
    Ok(Parsed {
        signing_input: &token[..h.len() + 1 + p.len()],
        signature: s,
        alg,
        kid,
        claims: decode_json(p)?,
    })
}

/// What verification needs from the gateway: the snapshot's issuers and
/// the process-wide cache, revocations and metrics.
#[derive(Clone, Copy)]
pub struct Verifier<'a> {
    pub issuers: &'a Issuers,
    pub cache: &'a TokenCache,
    pub revocations: &'a Revocations,
    pub metrics: &'a Metrics,
}

impl Verifier<'_> {
    /// Verifies `token`, found at `source`, at `now` (unix seconds).
    pub async fn verify(
        &self,
        source: &TokenSource,
        token: &str,
        now: u64,
    ) -> Result<Arc<Identity>, Reject> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Reject::TooLarge);
        }
        let key = crate::crypto::sha256(token.as_bytes());
        if let Hit::Fresh(r) = self.cache.get(&key, |e| self.cached(e, source, now)) {
            if r.is_ok() {
                self.metrics.jwt_cache_hits.fetch_add(1, Relaxed);
            }
            return r;
        }

        let parsed = parse(token)?;
        let iss = match parsed.claims.get("iss") {
            Some(Value::String(s)) => s.as_str(),
            _ => return Err(Reject::UnknownIssuer),
        };
        let issuer = self.issuers.by_iss(iss).ok_or(Reject::UnknownIssuer)?;
        if !issuer.accepts(source) {
            return Err(Reject::SourceNotAccepted);
        }
        let cfg = &issuer.cfg;
        let (set, times) = checked(issuer, &parsed, now).await?;
        let jti = match parsed.claims.get("jti") {
            Some(Value::String(j)) => Some(j.as_str()),
            _ => None,
        };
        let sub = match parsed.claims.get("sub") {
            Some(Value::String(s)) => s.as_str(),
            _ => "",
        };
        let sid = match parsed.claims.get("sid") {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        let facts = TokenFacts {
            sub,
            jti,
            sid,
            iat: times.iat,
        };
        if self.revocations.is_revoked(facts, now, revoke_leeway(cfg)) {
            return Err(Reject::Revoked);
        }
        let jti: Option<Box<str>> = jti.map(Into::into);
        let sid: Option<Box<str>> = sid.map(Into::into);
        let identity = Arc::new(claims::identity(cfg, parsed.claims, times));
        self.cache.insert(
            key,
            Entry {
                identity: identity.clone(),
                deadline: times.exp.unwrap_or(now + cache::NO_EXP_TTL),
                issuer: Arc::downgrade(issuer),
                key_generation: set.generation(),
                jti,
                sid,
                iat: times.iat,
            },
            now,
        );
        Ok(identity)
    }

    /// A cache entry's answer, or `None` when it no longer answers.
    fn cached(
        &self,
        e: &Entry,
        source: &TokenSource,
        now: u64,
    ) -> Option<Result<Arc<Identity>, Reject>> {
        if now >= e.deadline {
            return None;
        }
        let issuer = self
            .issuers
            .list
            .iter()
            .find(|i| std::ptr::eq(Arc::as_ptr(i), e.issuer.as_ptr()))?;
        if issuer.key_generation() != e.key_generation {
            return None;
        }
        if !issuer.accepts(source) {
            return Some(Err(Reject::SourceNotAccepted));
        }
        let facts = TokenFacts {
            sub: &e.identity.sub,
            jti: e.jti.as_deref(),
            sid: e.sid.as_deref(),
            iat: e.iat,
        };
        if self
            .revocations
            .is_revoked(facts, now, revoke_leeway(&issuer.cfg))
        {
            return Some(Err(Reject::Revoked));
        }
        Some(Ok(e.identity.clone()))
    }
}

/// How far after a revoke-all mark a token's `iat` may lie and still be
/// revoked (SPEC 16): an issuer's `leeway`, since its clock may run that
/// far ahead. Not for the gateway's own tokens: every one carries its
/// refresh family (`sid`), and revoke-all revokes the user's families
/// too, so a token minted before the mark by a replica whose clock runs
/// ahead is refused through its family; and a user revoked by mistake can
/// sign in again at once (SPEC 11: `iat <= mark`).
fn revoke_leeway(cfg: &JwtIssuer) -> u64 {
    if cfg.name == crate::config::OWN_ISSUER_NAME {
        OWN_REVOKE_LEEWAY
    } else {
        cfg.leeway.as_secs()
    }
}

/// [`revoke_leeway`] of the issuer named `name` in `cfg`; the largest
/// when it is gone from the config (fail closed).
pub fn revoke_leeway_of(cfg: &crate::config::Config, name: &str) -> u64 {
    match cfg.jwt.iter().find(|j| j.name == name) {
        Some(j) => revoke_leeway(j),
        None => cfg
            .jwt
            .iter()
            .map(|j| revoke_leeway(j))
            .max()
            .unwrap_or(OWN_REVOKE_LEEWAY),
    }
}

/// See [`revoke_leeway`] (seconds).
pub const OWN_REVOKE_LEEWAY: u64 = 0;

/// Every check once the issuer is chosen: algorithm allowlist, key,
/// signature, registered claims. Returns the key set used (cache entries
/// name its generation) and the token's times.
async fn checked(
    issuer: &Issuer,
    parsed: &Parsed<'_>,
    now: u64,
) -> Result<(Arc<KeySet>, claims::Times), Reject> {
    let cfg = &issuer.cfg;
    if !cfg.algorithms.contains(&parsed.alg) {
        return Err(Reject::AlgorithmNotAllowed);
    }
    let set = key_set(issuer, parsed).await?;
    let Lookup::Found(k) = set.lookup(parsed.kid.as_deref(), parsed.alg) else {
        return Err(Reject::UnknownKey);
    };
    // `lookup` only yields keys whose type fits `alg`; the signature is
    // then checked with exactly that algorithm.
    let valid = jsonwebtoken::crypto::verify(
        parsed.signature,
        parsed.signing_input.as_bytes(),
        &k.decoding,
        parsed.alg,
    );
    if !matches!(valid, Ok(true)) {
        return Err(Reject::BadSignature);
    }
    let times = claims::check(cfg, &parsed.claims, now)?;
    Ok((set, times))
}

/// The key set to check `parsed` with. For a `jwks_url` issuer, a token
/// naming an unknown `kid` (or arriving before any keys) asks for one
/// refetch, which is rate-limited per issuer (see [`Refetch`]).
async fn key_set(issuer: &Issuer, parsed: &Parsed<'_>) -> Result<Arc<KeySet>, Reject> {
    if let IssuerKeys::Provider(p) = &issuer.keys {
        return provider_key_set(p, parsed).await;
    }
    let mut refetched = false;
    loop {
        let set = issuer.key_set();
        let missing = match &set {
            None => Reject::KeysUnavailable,
            Some(s) => match s.lookup(parsed.kid.as_deref(), parsed.alg) {
                Lookup::UnknownKid => Reject::UnknownKey,
                _ => return set.ok_or(Reject::KeysUnavailable),
            },
        };
        match &issuer.keys {
            IssuerKeys::Remote(r) if !refetched => {
                refetched = true;
                let look_again = match issuer.refetch {
                    Refetch::RateLimited => r.refetch().await,
                    // Someone else's fetch may have brought the key while
                    // this one waited: look again whatever it answers.
                    Refetch::AfterWindow => {
                        r.refetch_after_window().await;
                        true
                    }
                };
                if !look_again {
                    return Err(missing);
                }
            }
            _ => return Err(missing),
        }
    }
}

/// [`key_set`] for an entry sharing an `[[oidc]]` provider's keys: the
/// token's `iss` must be the discovery document's issuer exactly, as an ID
/// token's; an unknown `kid` asks the provider's keys for a refetch, at
/// most once per this entry's `jwks_min_refetch`.
async fn provider_key_set(p: &ProviderKeys, parsed: &Parsed<'_>) -> Result<Arc<KeySet>, Reject> {
    let meta = p.provider.metadata().ok_or(Reject::KeysUnavailable)?;
    match parsed.claims.get("iss") {
        Some(Value::String(s)) if *s == meta.issuer => {}
        _ => return Err(Reject::UnknownIssuer),
    }
    let keys = meta.keys();
    let mut refetched = false;
    loop {
        let missing = match keys.current() {
            None => Reject::KeysUnavailable,
            Some(s) => match s.lookup(parsed.kid.as_deref(), parsed.alg) {
                Lookup::UnknownKid => Reject::UnknownKey,
                _ => return Ok(s),
            },
        };
        if refetched || !p.may_refetch() || !keys.refetch().await {
            return Err(missing);
        }
        refetched = true;
    }
}

/// The `jwt` method for one request. Query-parameter tokens are removed
/// from the URL whatever happens next; with `identity.strip_authorization`
/// a validated `Authorization` header is removed too.
///
/// `accepted` is the route's `issuers` (empty: any): a valid token from an
/// issuer the route does not name is refused like an invalid one (SPEC 16),
/// since `sub: alice` from one issuer is not alice of another.
pub(crate) async fn authenticate(
    gw: &Gateway,
    snap: &Snapshot,
    parts: &mut http::request::Parts,
    accepted: &[String],
) -> Attempt {
    let issuers = &snap.jwt;
    if issuers.is_empty() {
        return Attempt::Absent;
    }
    let query = source::take_query_tokens(&mut parts.uri, &issuers.query_names);
    let Some((src, token)) = source::find(&issuers.sources, &parts.headers, &query) else {
        return Attempt::Absent;
    };
    let verifier = Verifier {
        issuers,
        cache: &gw.token_cache,
        revocations: gw.revocation.tokens(),
        metrics: &gw.metrics,
    };
    let result = verifier
        .verify(src, token, crate::clock::unix_now())
        .await
        .and_then(|identity| {
            let name = identity.issuer.as_deref().unwrap_or("");
            if accepted.is_empty() || accepted.iter().any(|a| a == name) {
                Ok(identity)
            } else {
                Err(Reject::IssuerNotAccepted)
            }
        });
    match result {
        Ok(identity) => {
            gw.metrics.auth("jwt", AuthResult::Ok);
            if *src == TokenSource::Bearer && snap.config.identity.strip_authorization {
                parts.headers.remove(http::header::AUTHORIZATION);
            }
            Attempt::Accepted {
                identity,
                from_cookie: matches!(src, TokenSource::Cookie(_)),
            }
        }
        Err(r) => {
            gw.metrics.auth("jwt", r.result());
            tracing::debug!(reason = r.description(), "JWT refused");
            Attempt::Rejected(r.description())
        }
    }
}

#[cfg(test)]
mod tests;
