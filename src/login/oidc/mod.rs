//! OpenID Connect single sign-on (SPEC 4 and 11): the authorization code
//! flow with PKCE, ending in a session exactly like a local login.
//!
//! ```text
//! GET <prefix>/start/<provider>?rd=/x
//!   -> state, nonce, PKCE verifier (random) in a signed cookie (10 min)
//!   -> 302 authorization_endpoint?response_type=code&client_id&redirect_uri
//!          &scope&state&nonce&code_challenge&code_challenge_method=S256
//! GET <prefix>/callback?code&state          (the provider sends the browser back)
//!   -> cookie signature and expiry, state == cookie's, state not used before
//!      (all of this before any call to the provider)
//!   -> POST token_endpoint (client_secret_basic, or _post), code + verifier
//!   -> ID token: signature (jwks_uri), iss, aud, azp, exp/iat, nonce
//!   -> userinfo for mapped claims the ID token lacks
//!   -> allowed_email_domains -> session (fresh id) -> 303 rd
//! ```
//!
//! Every callback answer clears the state cookie. A failure shows the user
//! one generic page; the reason goes to the log and to
//! `gatehouse_auth_total{method="oidc",result}`.

pub mod backchannel;
mod callback;
pub mod provider;
pub mod state;

pub use backchannel::backchannel_logout;
pub use callback::{callback, MAX_ID_TOKEN_BYTES};
pub use provider::{Provider, Providers};

use self::provider::Metadata;
use self::state::FlowState;
use super::{query_param, safe_redirect};
use crate::auth::url_encode;
use crate::body::Body;
use crate::clock::unix_now;
use crate::config::OidcProvider;
use crate::crypto::Mac;
use crate::error::{GatewayError, Malformed};
use crate::gateway::Snapshot;
use crate::server::ConnInfo;
use crate::session::Record;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

/// Longest `rd` carried through the provider; a longer one becomes `/`.
pub const MAX_RD_BYTES: usize = 1024;

/// Longest ID-token or logout-token `sid` the gateway keeps and matches.
pub const MAX_SID_BYTES: usize = 1024;

/// The link that starts a sign-in with `provider`, returning to `rd`.
pub fn start_href(snap: &Snapshot, provider: &str, rd: &str) -> String {
    format!(
        "{}/start/{provider}?rd={}",
        snap.config.server.endpoint_prefix,
        url_encode(rd)
    )
}

/// The scheme the client used: ours, or a trusted proxy's
/// `X-Forwarded-Proto`.
fn scheme(snap: &Snapshot, conn: &ConnInfo, headers: &http::HeaderMap) -> &'static str {
    if crate::auth::client_used_https(snap, conn, headers) {
        "https"
    } else {
        "http"
    }
}

/// A Host value fit to be put in a URL: a name or address and a port.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn host_of(parts: &http::request::Parts) -> &str {
    crate::route::request_authority(&parts.headers, &parts.uri)
}

/// `url` with `params` appended to its query string.
fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(url.len() + 512);
    out.push_str(url);
    let mut sep = if url.contains('?') { '&' } else { '?' };
    if url.ends_with(['?', '&']) {
        sep = '\0';
    }
    for (k, v) in params {
        if sep != '\0' {
            out.push(sep);
        }
        sep = '&';
        out.push_str(&url_encode(k));
        out.push('=');
        out.push_str(&url_encode(v));
    }
    out
}

/// The authorization request (OpenID Connect Core 3.1.2.1, RFC 7636 4.3).
pub(crate) fn authorization_url(cfg: &OidcProvider, meta: &Metadata, flow: &FlowState) -> String {
    let scope = cfg.scopes.join(" ");
    let challenge = state::pkce_challenge(&flow.verifier);
    with_query(
        &meta.authorization_endpoint,
        &[
            ("response_type", "code"),
            ("client_id", &cfg.client_id),
            ("redirect_uri", &flow.redirect_uri),
            ("scope", &scope),
            ("state", &flow.state),
            ("nonce", &flow.nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
}

fn state_mac(snap: &Snapshot) -> Mac {
    Mac::derive(&snap.config.server.secret.0, state::MAC_PURPOSE)
}

/// `GET <prefix>/start/<provider>`: sends the browser to the provider.
/// Unknown provider: 404; discovery document not there yet: 503.
pub fn start(
    snap: &Snapshot,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    name: &str,
) -> Result<Response<Body>, GatewayError> {
    let provider = snap.oidc.get(name).ok_or(GatewayError::NotFound)?;
    let meta = provider
        .metadata()
        .ok_or(GatewayError::ProviderUnavailable)?;
    let host = crate::route::request_authority(req.headers(), req.uri());
    let rd = query_param(req.uri().query(), "rd").unwrap_or_else(|| "/".into());
    let plain = !crate::auth::client_used_https(snap, conn, req.headers());
    let mut rd = safe_redirect(&rd, host, snap, plain);
    if rd.len() > MAX_RD_BYTES {
        rd = "/".into();
    }
    let prefix = &snap.config.server.endpoint_prefix;
    let redirect_uri = match &provider.cfg.redirect_url {
        Some(u) => u.clone(),
        None if valid_host(host) => format!(
            "{}://{host}{prefix}/callback",
            scheme(snap, conn, req.headers())
        ),
        None => return Err(GatewayError::BadRequest(Malformed::MissingHost)),
    };
    let flow = FlowState {
        provider: provider.cfg.name.clone(),
        state: state::random_token(),
        nonce: state::random_token(),
        verifier: state::random_token(),
        rd,
        redirect_uri,
        expires: unix_now() + state::STATE_TTL.as_secs(),
    };
    let location = authorization_url(&provider.cfg, &meta, &flow);
    let cookie = state::set_cookie(
        &snap.config.sessions,
        prefix,
        &flow.encode(&state_mac(snap)),
    );
    let mut r = Response::new(Body::Empty);
    *r.status_mut() = StatusCode::FOUND;
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location)
            .map_err(|_| GatewayError::BadRequest(Malformed::Redirect))?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.append(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| GatewayError::BadRequest(Malformed::Cookie))?,
    );
    Ok(r)
}

/// Where logging out of `record` goes: the provider's
/// `end_session_endpoint` with `id_token_hint` and
/// `post_logout_redirect_uri` = `<scheme>://<host>/` (SPEC 11), when the
/// session came from a provider that advertises one.
pub fn logout_location(
    snap: &Snapshot,
    conn: &ConnInfo,
    parts: &http::request::Parts,
    record: &Record,
) -> Option<HeaderValue> {
    let name = record.login.strip_prefix("oidc:")?;
    let provider = snap.oidc.get(name)?;
    let meta = provider.metadata()?;
    let end = meta.end_session_endpoint.as_deref()?;
    let host = host_of(parts);
    if !valid_host(host) {
        return None;
    }
    let back = format!("{}://{host}/", scheme(snap, conn, &parts.headers));
    let mut params: Vec<(&str, &str)> = Vec::new();
    if let Some(t) = &record.id_token {
        params.push(("id_token_hint", &t.0));
    }
    params.push(("post_logout_redirect_uri", &back));
    params.push(("client_id", &provider.cfg.client_id));
    HeaderValue::from_str(&with_query(end, &params)).ok()
}

#[cfg(test)]
mod tests;
