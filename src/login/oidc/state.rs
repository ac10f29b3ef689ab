//! The state of one sign-in while the browser is away at the provider: a
//! short-lived cookie signed with a key derived from the server secret, so
//! any replica with the same secret can finish a flow another began, and a
//! memory of used states, so a cookie and `state` pair works only once.
//!
//! ```text
//! cookie value = base64url(JSON) "." base64url(HMAC-SHA256(k, "v1." base64url(JSON)))
//! k            = Mac::derive(server secret, "oidc-state")
//! JSON         = {p: provider, s: state, n: nonce, v: PKCE verifier,
//!                 r: rd, u: redirect_uri, e: expiry (unix seconds)}
//! ```
//!
//! The cookie is signed, not encrypted: it holds nothing a thief of the
//! browser's cookie jar could not use anyway, and the PKCE verifier only
//! matters to whoever also holds the authorization code, which the
//! provider sends to this same browser.

use crate::config::sessions::Sessions as SessionsConfig;
use crate::crypto::Mac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The state cookie's name.
pub const STATE_COOKIE: &str = "gatehouse_oidc";
/// How long a sign-in may take, and the cookie's `Max-Age` (SPEC 11: at
/// most 10 minutes).
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// The purpose the cookie's signing key is derived for.
pub const MAC_PURPOSE: &str = "oidc-state";
/// Longest cookie value accepted; ours are well under 2 KiB.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// What the cookie carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    /// Provider name.
    #[serde(rename = "p")]
    pub provider: String,
    /// The `state` sent to the provider (RFC 6749 section 10.12).
    #[serde(rename = "s")]
    pub state: String,
    /// The `nonce` the ID token must carry (OpenID Connect Core 3.1.2.1).
    #[serde(rename = "n")]
    pub nonce: String,
    /// PKCE `code_verifier` (RFC 7636).
    #[serde(rename = "v")]
    pub verifier: String,
    /// Where to go after the sign-in (already checked by `safe_redirect`).
    #[serde(rename = "r")]
    pub rd: String,
    /// The `redirect_uri` of the authorization request; the token request
    /// must repeat it exactly (RFC 6749 section 4.1.3).
    #[serde(rename = "u")]
    pub redirect_uri: String,
    /// Unix seconds after which the flow is refused.
    #[serde(rename = "e")]
    pub expires: u64,
}

/// Why a state cookie was refused (for the log and the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    Malformed,
    BadSignature,
    Expired,
}

impl CookieError {
    pub fn describe(self) -> &'static str {
        match self {
            CookieError::Malformed => "malformed state cookie",
            CookieError::BadSignature => "state cookie signature invalid",
            CookieError::Expired => "state cookie expired",
        }
    }
}

fn signed_input(payload: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 3);
    v.extend_from_slice(b"v1.");
    v.extend_from_slice(payload.as_bytes());
    v
}

impl FlowState {
    pub fn encode(&self, mac: &Mac) -> String {
        let json = serde_json::to_vec(self).expect("a FlowState serialises");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = mac.sign(&signed_input(&payload));
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The state in a cookie value, if it is ours, intact and not expired
    /// at `now` (unix seconds). The signature is checked before anything
    /// in the payload is read.
    pub fn decode(value: &str, mac: &Mac, now: u64) -> Result<FlowState, CookieError> {
        if value.len() > MAX_COOKIE_BYTES {
            return Err(CookieError::Malformed);
        }
        let (payload, tag) = value.split_once('.').ok_or(CookieError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CookieError::Malformed)?;
        if !mac.verify(&signed_input(payload), &tag) {
            return Err(CookieError::BadSignature);
        }
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CookieError::Malformed)?;
        let state: FlowState = serde_json::from_slice(&json).map_err(|_| CookieError::Malformed)?;
        if now >= state.expires {
            return Err(CookieError::Expired);
        }
        Ok(state)
    }
}

/// A state cookie (SPEC 11): HttpOnly, Secure per `cookie_secure`, always
/// `SameSite=Lax` (a Strict cookie would not come back on the provider's
/// redirect), the path of the gateway's own endpoints only, `Domain` as
/// the session cookie's.
fn state_cookie(cfg: &SessionsConfig, endpoint_prefix: &str, value: &str, max_age: u64) -> String {
    let c = crate::cookies::build(STATE_COOKIE, value, cfg.cookie_secure)
        .max_age(crate::cookies::max_age(max_age))
        .path(endpoint_prefix)
        .same_site(cookie::SameSite::Lax);
    match &cfg.cookie_domain {
        Some(d) => c.domain(d.as_str()),
        None => c,
    }
    .to_string()
}

/// `Set-Cookie` carrying a new flow's state.
pub fn set_cookie(cfg: &SessionsConfig, endpoint_prefix: &str, value: &str) -> String {
    state_cookie(cfg, endpoint_prefix, value, STATE_TTL.as_secs())
}

/// `Set-Cookie` that removes the state cookie: every callback answer
/// carries it, success or not (single use).
pub fn clear_cookie(cfg: &SessionsConfig, endpoint_prefix: &str) -> String {
    state_cookie(cfg, endpoint_prefix, "", 0)
}

/// 32 random bytes, base64url: `state`, `nonce` and the PKCE verifier
/// (43 characters, within RFC 7636's 43 to 128).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>())
}

/// PKCE `S256` challenge: BASE64URL(SHA256(ASCII(code_verifier)))
/// (RFC 7636 section 4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(crate::crypto::sha256(verifier.as_bytes()))
}
