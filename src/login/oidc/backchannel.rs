//! `POST <prefix>/backchannel-logout` (OpenID Connect Back-Channel Logout
//! 1.0; SPEC 15): a provider says that one of its sessions (`sid`), or
//! every session of a user (`sub`), ended; the gatehouse sessions it
//! created from them end too, on every replica.
//!
//! ```text
//! logout_token (form field)
//!   -> `iss`, read unverified only to choose the provider: the `[[oidc]]`
//!      entry with that issuer (trailing `/` aside), its client_id in `aud`
//!      when several share the issuer; backchannel_logout not turned off
//!   -> signature (the provider's JWKS and algorithms), `iss` exactly the
//!      discovery document's, `aud` contains client_id, `iat` present, not
//!      in the future beyond leeway and not older than MAX_LOGOUT_TOKEN_AGE,
//!      `exp` when present
//!   -> `jti`, the `events` member, `sid` or `sub`, no `nonce`
//!   -> `jti` used once, across replicas (`state::Shared::first_use`)
//!   -> sessions by (provider, sid) or (provider, sub) -> `Shared::delete`
//!      each: gone from the store, ended here and, through the store's
//!      event feed, on every replica; their WebSockets and streams close
//! 200 no-store (also when nothing matched)
//! 400 {"error":"invalid_request"} no-store; the reason only in the log
//! 503 when the provider's keys or the store cannot be reached
//! ```
//!
//! State: none of its own. Used `jti`s are single-use markers of
//! `crate::state` (kind `logout-jti`), kept as long as a token with that
//! `jti` could still be accepted; the sessions and their indexes belong to
//! the store.

use super::provider::Provider;
use super::MAX_SID_BYTES;
use crate::auth::jwt::claims::Claims;
use crate::auth::jwt::Reject;
use crate::body::Body;
use crate::error::GatewayError;
use crate::gateway::{Gateway, Snapshot};
use crate::proxy::respond;
use crate::session::unix_now;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// The `events` member that makes a JWT a logout token (section 2.4).
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A logout token issued longer ago than this (beyond the leeway) is
/// refused: its `jti` is remembered only this long, so an older token
/// could otherwise be replayed. Providers send logout tokens the moment
/// the session ends.
pub const MAX_LOGOUT_TOKEN_AGE: Duration = Duration::from_secs(600);

/// Longest logout token read (the same bound as an ID token's).
const MAX_LOGOUT_TOKEN_BYTES: usize = super::MAX_ID_TOKEN_BYTES;

/// The single-use marker kind of logout-token `jti`s.
const JTI_KIND: &str = "logout-jti";

/// Why a logout token did not end anything.
enum Refusal {
    /// 400 `invalid_request`: the token is not a valid logout token for
    /// any provider that takes them.
    Invalid(Cow<'static, str>),
    /// 503: it could not be checked or acted on now (keys or store).
    Unavailable(GatewayError, Cow<'static, str>),
}

fn invalid(reason: impl Into<Cow<'static, str>>) -> Refusal {
    Refusal::Invalid(reason.into())
}

/// What an accepted logout token names.
struct Accepted {
    provider: Arc<Provider>,
    jti: String,
    /// Until when (unix seconds) the token could be accepted: how long its
    /// `jti` must be remembered.
    acceptable_until: u64,
    sid: Option<String>,
    sub: Option<String>,
}

/// `POST <prefix>/backchannel-logout`. Not there without `[[oidc]]`.
pub async fn backchannel_logout(
    gw: &Gateway,
    snap: &Snapshot,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    if snap.oidc.is_empty() {
        return Err(GatewayError::NotFound);
    }
    let (fields, _) = crate::login::read_fields(req).await?;
    let token = fields.get("logout_token").map(String::as_str).unwrap_or("");
    let mut provider_name: Option<String> = None;
    let outcome = match check(snap, token, unix_now(), &mut provider_name).await {
        Ok(accepted) => end_sessions(gw, accepted).await,
        Err(r) => Err(r),
    };
    let provider = provider_name.as_deref().unwrap_or("-");
    // Indexes of `metrics::BACKCHANNEL_RESULTS`.
    let count = |i: usize| gw.metrics.backchannel_logouts[i].fetch_add(1, Relaxed);
    match outcome {
        Ok(_) => {
            count(0);
            let mut r = Response::new(Body::Empty);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(r)
        }
        Err(Refusal::Invalid(reason)) => {
            count(1);
            tracing::info!(provider, %reason, "back-channel logout refused");
            let body = serde_json::json!({ "error": "invalid_request" });
            Ok(respond::json(StatusCode::BAD_REQUEST, body.to_string()))
        }
        Err(Refusal::Unavailable(e, reason)) => {
            count(2);
            tracing::warn!(provider, %reason, "back-channel logout could not be carried out");
            Err(e)
        }
    }
}

/// Every check of SPEC 15 but the `jti`'s single use, in order; nothing
/// read before the signature check is trusted beyond choosing the
/// provider.
async fn check(
    snap: &Snapshot,
    token: &str,
    now: u64,
    provider_name: &mut Option<String>,
) -> Result<Accepted, Refusal> {
    if token.is_empty() {
        return Err(invalid("no logout_token"));
    }
    if token.len() > MAX_LOGOUT_TOKEN_BYTES {
        return Err(invalid("logout token too large"));
    }
    let unverified = peek_claims(token).ok_or_else(|| invalid("logout token: malformed"))?;
    let iss = match unverified.get("iss") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(invalid("logout token has no iss")),
    };
    let provider = choose_provider(snap, iss, &unverified)
        .ok_or_else(|| invalid("logout token iss names no [[oidc]] provider"))?;
    *provider_name = Some(provider.cfg.name.clone());
    if !provider.cfg.backchannel_logout {
        return Err(invalid("backchannel_logout is off for this provider"));
    }
    let meta = provider.metadata().ok_or_else(|| {
        Refusal::Unavailable(
            GatewayError::ProviderUnavailable,
            "no discovery document yet".into(),
        )
    })?;
    let verifier = &meta.logout_tokens;
    let (claims, times) = verifier
        .verify_direct(token, now)
        .await
        .map_err(|r| match r {
            Reject::KeysUnavailable => Refusal::Unavailable(
                GatewayError::ProviderUnavailable,
                "the provider's keys are not available".into(),
            ),
            r => invalid(format!("logout token: {}", r.description())),
        })?;
    // Present: a required claim.
    let iat = times.iat.unwrap_or(0);
    let leeway = verifier.cfg.leeway.as_secs();
    if iat + MAX_LOGOUT_TOKEN_AGE.as_secs() + leeway < now {
        return Err(invalid("logout token too old (iat)"));
    }
    match claims.get("events") {
        Some(Value::Object(events)) if events.get(LOGOUT_EVENT).is_some_and(Value::is_object) => {}
        Some(Value::Object(_)) => return Err(invalid("logout token events lack the logout event")),
        _ => return Err(invalid("logout token events is not an object")),
    }
    // A nonce would make it look like an ID token (section 2.4).
    if claims.contains_key("nonce") {
        return Err(invalid("logout token has a nonce"));
    }
    let jti = text_claim(&claims, "jti")?.ok_or_else(|| invalid("logout token has no jti"))?;
    let sid = text_claim(&claims, "sid")?;
    let sub = text_claim(&claims, "sub")?;
    if sid.is_none() && sub.is_none() {
        return Err(invalid("logout token has neither sid nor sub"));
    }
    Ok(Accepted {
        provider: provider.clone(),
        jti: jti.to_string(),
        acceptable_until: iat + MAX_LOGOUT_TOKEN_AGE.as_secs() + 2 * leeway,
        sid: sid.map(str::to_string),
        sub: sub.map(str::to_string),
    })
}

/// Marks the token's `jti` used (a replay, here or on any replica, is
/// refused), then ends the sessions it names. Returns how many ended.
async fn end_sessions(gw: &Gateway, a: Accepted) -> Result<usize, Refusal> {
    let name = a.provider.cfg.name.as_str();
    let store_down = |e: crate::state::StoreError, what: &'static str| {
        Refusal::Unavailable(GatewayError::StoreUnavailable(Box::new(e)), what.into())
    };
    let marker = format!("{name}\0{}", a.jti);
    match gw
        .store
        .first_use(JTI_KIND, &marker, a.acceptable_until, unix_now())
        .await
    {
        Ok(true) => {}
        Ok(false) => return Err(invalid("logout token jti already used (replay)")),
        Err(e) => return Err(store_down(e, "cannot record the jti as used")),
    }
    let sessions = match (&a.sid, &a.sub) {
        (Some(sid), sub) => {
            let mut found = gw
                .store
                .sessions_by_sid(name, sid)
                .await
                .map_err(|e| store_down(e, "cannot look the sessions up"))?;
            // With both, the session must be that subject's too.
            if let Some(sub) = sub {
                found.retain(|(_, v)| v.record.user == *sub);
            }
            found
        }
        (None, Some(sub)) => gw
            .store
            .sessions_by_sub(name, sub)
            .await
            .map_err(|e| store_down(e, "cannot look the sessions up"))?,
        (None, None) => Vec::new(),
    };
    let mut ended = 0;
    for (key, _) in sessions {
        if gw
            .store
            .delete(key)
            .await
            .map_err(|e| store_down(e, "cannot end a session"))?
            .is_some()
        {
            ended += 1;
        }
    }
    gw.metrics
        .backchannel_sessions_ended
        .fetch_add(ended as u64, Relaxed);
    tracing::info!(
        provider = name,
        by = if a.sid.is_some() { "sid" } else { "sub" },
        sub = a.sub.as_deref().unwrap_or("-"),
        sessions = ended,
        "back-channel logout"
    );
    Ok(ended)
}

/// A claim that must be a non-empty string of at most [`MAX_SID_BYTES`]
/// when present.
fn text_claim<'c>(claims: &'c Claims, name: &'static str) -> Result<Option<&'c str>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SID_BYTES => Ok(Some(s)),
        Some(_) => Err(invalid(format!(
            "logout token {name} is not a string of 1 to {MAX_SID_BYTES} bytes"
        ))),
    }
}

/// The claims of a JWT, unverified: only to choose whose keys check it.
fn peek_claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_, payload) = (parts.next()?, parts.next()?);
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The provider a token from `iss` is for: the `[[oidc]]` entries with
/// that issuer (trailing `/` aside, as discovery has it; the signature
/// check then holds `iss` to the discovery document's exactly), the one
/// whose client_id the unverified `aud` names when several share it.
fn choose_provider<'s>(
    snap: &'s Snapshot,
    iss: &str,
    unverified: &Claims,
) -> Option<&'s Arc<Provider>> {
    let aud_names = |id: &str| match unverified.get("aud") {
        Some(Value::String(a)) => a == id,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(id)),
        _ => false,
    };
    let mut first = None;
    for p in snap.oidc.iter() {
        if p.cfg.issuer.trim_end_matches('/') != iss.trim_end_matches('/') {
            continue;
        }
        if aud_names(&p.cfg.client_id) {
            return Some(p);
        }
        first.get_or_insert(p);
    }
    first
}
