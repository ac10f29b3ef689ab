//! `GET <prefix>/callback`: the provider sends the browser back here with
//! a code. The state is checked before anything reaches the provider; then
//! the code is exchanged, the ID token checked, userinfo asked for what it
//! lacks, the email domain applied, and a session created.

use super::provider::{ClientAuth, Metadata};
use super::state::{self, FlowState};
use super::{host_of, state_mac};
use crate::auth::jwt::claims::{self, claim_at, Claims};
use crate::auth::jwt::Reject;
use crate::body::Body;
use crate::clock::{now_ms, unix_now};
use crate::config::OidcProvider;
use crate::error::GatewayError;
use crate::fetch::{self as client, Outgoing};
use crate::gateway::{Gateway, Snapshot};
use crate::login::{html_response, query_param};
use crate::metrics::AuthResult;
use crate::proxy::headers::is_safe_value;
use crate::proxy::respond;
use crate::server::ConnInfo;
use crate::session::{self, IdTokenHint, Record};
use base64::Engine;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Longest ID token accepted (a token with many groups can be large).
pub const MAX_ID_TOKEN_BYTES: usize = 64 * 1024;

/// Why a sign-in failed: the metric's result and the log's reason. The
/// user only ever sees the generic page.
#[derive(Debug)]
pub(crate) struct Failure {
    pub result: AuthResult,
    pub reason: Cow<'static, str>,
}

fn fail(result: AuthResult, reason: impl Into<Cow<'static, str>>) -> Failure {
    Failure {
        result,
        reason: reason.into(),
    }
}

/// Text from the provider, fit for a log line: short, plain characters.
fn loggable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(120)
        .collect()
}

/// What a successful callback made.
struct SignedIn {
    cookie: String,
    rd: String,
}

/// What the state cookie said, once it checked out, for the answer to a
/// sign-in that then failed.
#[derive(Default)]
struct Known {
    provider: Option<String>,
    /// Where the sign-in was to return (checked at `/start`, and signed).
    rd: Option<String>,
}

/// `GET <prefix>/callback`: finishes a sign-in. Always answers itself
/// (never an error for the generic handler) so the state cookie is
/// cleared on every path. `request_id` is the response's `X-Request-Id`:
/// a failure shows it and logs it, so a user's report can be matched
/// with the reason in the log.
pub async fn callback(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    html: bool,
    request_id: &HeaderValue,
) -> Result<Response<Body>, GatewayError> {
    if snap.oidc.is_empty() {
        return Err(GatewayError::NotFound);
    }
    let (parts, _body) = req.into_parts();
    let mut known = Known::default();
    let outcome = finish(gw, snap, conn, &parts, &mut known).await;
    let mut resp = match outcome {
        Ok(done) => {
            gw.metrics.auth("oidc", AuthResult::Ok);
            let mut r = Response::new(Body::Empty);
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut().insert(
                header::LOCATION,
                HeaderValue::from_str(&done.rd).unwrap_or(HeaderValue::from_static("/")),
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(v) = HeaderValue::from_str(&done.cookie) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(f) => {
            gw.metrics.auth("oidc", f.result);
            let provider = known.provider.as_deref().unwrap_or("-");
            let request_id = request_id.to_str().unwrap_or("");
            if f.result == AuthResult::Error {
                tracing::warn!(provider, reason = %f.reason, result = f.result.label(), request_id, "OIDC sign-in failed");
            } else {
                tracing::info!(provider, reason = %f.reason, result = f.result.label(), peer = %conn.peer.ip(), request_id, "OIDC sign-in refused");
            }
            // The way back keeps where the user was going, re-checked
            // against this request as the login page would.
            let rd = known.rd.as_deref().map(|rd| {
                crate::login::safe_redirect(
                    rd,
                    host_of(&parts),
                    snap,
                    !crate::auth::client_used_https(snap, conn, &parts.headers),
                )
            });
            failure_page(snap, html, request_id, rd.as_deref())
        }
    };
    if let Ok(v) = HeaderValue::from_str(&state::clear_cookie(
        &snap.config.sessions,
        &snap.config.server.endpoint_prefix,
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// The one page a failed sign-in shows: 401, nothing about why, but the
/// request id to quote (the reason is logged under it), and a way back to
/// the login page that still leads to `rd`.
fn failure_page(snap: &Snapshot, html: bool, request_id: &str, rd: Option<&str>) -> Response<Body> {
    if !html {
        let body = serde_json::json!({"error": "sign-in failed", "request_id": request_id});
        return respond::json(StatusCode::UNAUTHORIZED, body.to_string());
    }
    let mut login = format!("{}/login", snap.config.server.endpoint_prefix);
    if let Some(rd) = rd.filter(|rd| *rd != "/") {
        login.push_str("?rd=");
        login.push_str(&crate::auth::url_encode(rd));
    }
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Sign-in failed</title>\
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:15vh auto;padding:0 1rem}}\
small{{color:#777}}</style>\
</head><body><h1>Sign-in failed</h1><p>The sign-in could not be completed.</p>\
<p><a href=\"{}\">Try again</a></p><p><small>Request id: {}</small></p></body></html>\n",
        respond::html_escape(&login),
        respond::html_escape(request_id)
    );
    html_response(StatusCode::UNAUTHORIZED, body)
}

/// The callback's steps, in the order that matters: nothing reaches the
/// provider until the state checks out.
async fn finish(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    parts: &http::request::Parts,
    known: &mut Known,
) -> Result<SignedIn, Failure> {
    let now = unix_now();
    let query = parts.uri.query();

    // 1. The state cookie: ours, intact, not expired.
    let raw = session::cookie_value(&parts.headers, state::STATE_COOKIE)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| fail(AuthResult::Missing, "no state cookie"))?;
    let flow = FlowState::decode(raw, &state_mac(snap), now).map_err(|e| {
        let result = match e {
            state::CookieError::Expired => AuthResult::Expired,
            _ => AuthResult::Invalid,
        };
        fail(result, e.describe())
    })?;
    known.provider = Some(flow.provider.clone());
    known.rd = Some(flow.rd.clone());

    // 2. The `state` the provider returned is the cookie's (RFC 6749
    // section 10.12: binds the response to this browser).
    let returned = query_param(query, "state")
        .ok_or_else(|| fail(AuthResult::Invalid, "no state parameter"))?;
    if !crate::crypto::ct_eq(returned.as_bytes(), flow.state.as_bytes()) {
        return Err(fail(AuthResult::Invalid, "state does not match the cookie"));
    }
    let provider = snap
        .oidc
        .get(&flow.provider)
        .ok_or_else(|| fail(AuthResult::Invalid, "provider no longer configured"))?;
    let cfg = &provider.cfg;

    // 3. Single use, across replicas when the store is shared.
    match first_use(gw, &flow, now).await {
        Ok(true) => {}
        Ok(false) => return Err(fail(AuthResult::Invalid, "state already used (replay)")),
        Err(e) => {
            return Err(fail(
                AuthResult::Error,
                format!("cannot record the state as used: {e}"),
            ))
        }
    }

    // 4. The provider's answer.
    if let Some(e) = query_param(query, "error") {
        let desc = query_param(query, "error_description").unwrap_or_default();
        let result = if e == "access_denied" {
            AuthResult::Forbidden
        } else {
            AuthResult::Invalid
        };
        return Err(fail(
            result,
            format!(
                "the provider answered error `{}` ({})",
                loggable(&e),
                loggable(&desc)
            ),
        ));
    }
    let code = query_param(query, "code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| fail(AuthResult::Invalid, "no code parameter"))?;
    let meta = provider
        .metadata()
        .ok_or_else(|| fail(AuthResult::Error, "no discovery document"))?;

    // 5. Code for tokens.
    let tokens = exchange_code(cfg, &meta, &flow, &code).await?;

    // 6. The ID token.
    let (mut id_claims, times) =
        check_id_token(cfg, &meta, &tokens.id_token, &flow.nonce, now).await?;

    // 7. Userinfo, for mapped claims the ID token lacks.
    if let (Some(_), Some(access)) = (&meta.userinfo_endpoint, &tokens.access_token) {
        let lacking = cfg
            .claims_map
            .iter()
            .any(|(_, path)| claim_at(&id_claims, path).is_none());
        if lacking {
            let extra = fetch_userinfo(cfg, &meta, access).await?;
            if extra.get("sub") != id_claims.get("sub") {
                return Err(fail(
                    AuthResult::Invalid,
                    "userinfo `sub` differs from the ID token's",
                ));
            }
            for (k, v) in extra {
                id_claims.entry(k).or_insert(v);
            }
        }
    }

    // 8. Who it is, and whether they may in.
    let mut identity = claims::identity(&meta.id_tokens.cfg, id_claims, times);
    let id_claims = identity.claims.take().unwrap_or_default();
    // An address with two `@` has no single domain: backends (and this
    // check) could each read another one out of it (SPEC 16).
    if identity
        .email
        .as_deref()
        .is_some_and(|e| e.bytes().filter(|&b| b == b'@').count() > 1)
    {
        return Err(fail(AuthResult::Invalid, "the email has more than one @"));
    }
    if !cfg.allowed_email_domains.is_empty() {
        if email_unverified(&id_claims) {
            return Err(fail(
                AuthResult::Forbidden,
                "email not verified by the provider (email_verified is not true)",
            ));
        }
        if !email_allowed(&cfg.allowed_email_domains, identity.email.as_deref()) {
            return Err(fail(
                AuthResult::Forbidden,
                match identity.email.as_deref().map(|e| e.rsplit_once('@')) {
                    Some(Some((_, domain))) => {
                        format!("email domain not allowed: {}", loggable(domain))
                    }
                    Some(None) => "the email has no domain".into(),
                    None => "no email, and allowed_email_domains is set".into(),
                },
            ));
        }
    }
    let fields_safe = is_safe_value(&identity.sub)
        && identity.email.as_deref().is_none_or(is_safe_value)
        && identity.name.as_deref().is_none_or(is_safe_value)
        && identity.groups.iter().all(|g| is_safe_value(g))
        && identity.extra.iter().all(|(_, v)| is_safe_value(v));
    if !fields_safe {
        return Err(fail(
            AuthResult::Invalid,
            "an identity value has a control character",
        ));
    }

    // The provider's session, for back-channel logout (SPEC 15). One that
    // is not a short string cannot be matched and is not kept.
    let sid = match id_claims.get("sid") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= super::MAX_SID_BYTES => {
            Some(s.clone())
        }
        None => None,
        Some(_) => {
            tracing::warn!(provider = %cfg.name, "ID token `sid` is not a string of 1 to {} bytes; back-channel logout by sid will not find this session", super::MAX_SID_BYTES);
            None
        }
    };

    // 9. A session, fresh id, like a local login.
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let record = Record {
        user: identity.sub,
        email: identity.email,
        groups: identity.groups,
        name: identity.name,
        created_ms: now_ms(),
        client_ip: conn.peer.ip().to_string(),
        user_agent: user_agent.chars().take(256).collect(),
        login: format!("oidc:{}", cfg.name),
        backends: BTreeMap::new(),
        extra: identity.extra,
        id_token: Some(IdTokenHint(tokens.id_token)),
        sid,
    };
    let (id, _view) = crate::login::store_session(gw, snap, record)
        .await
        .map_err(|e| fail(AuthResult::Error, format!("cannot create the session: {e}")))?;
    Ok(SignedIn {
        cookie: session::session_cookie(&snap.config.sessions, &id),
        rd: flow.rd,
    })
}

/// Marks the flow's state used; `false` when it already was, here or (with
/// the Redis store) on any replica.
async fn first_use(
    gw: &Gateway,
    flow: &FlowState,
    now: u64,
) -> Result<bool, crate::state::StoreError> {
    gw.store
        .first_use("oidc-state", &flow.state, flow.expires, now)
        .await
}

/// What the token endpoint gave.
struct Tokens {
    id_token: String,
    access_token: Option<String>,
}

/// The token request (OpenID Connect Core 3.1.3.1, RFC 7636 4.5).
async fn exchange_code(
    cfg: &OidcProvider,
    meta: &Metadata,
    flow: &FlowState,
    code: &str,
) -> Result<Tokens, Failure> {
    let mut fields: Vec<(&str, &[u8])> = vec![
        ("grant_type", b"authorization_code"),
        ("code", code.as_bytes()),
        ("redirect_uri", flow.redirect_uri.as_bytes()),
        ("code_verifier", flow.verifier.as_bytes()),
    ];
    if meta.client_auth == ClientAuth::Post {
        fields.push(("client_id", cfg.client_id.as_bytes()));
        fields.push(("client_secret", &cfg.client_secret.0));
    }
    let mut out = Outgoing::form(&meta.token_endpoint, &fields);
    if meta.client_auth == ClientAuth::Basic {
        // RFC 6749 section 2.3.1: both parts form-encoded, then Basic.
        let pair = format!(
            "{}:{}",
            client::form_encode(&cfg.client_id),
            client::encode_bytes(&cfg.client_secret.0)
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(pair);
        let v = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
            fail(
                AuthResult::Error,
                "client credentials not usable in a header",
            )
        })?;
        out = out.header(header::AUTHORIZATION, v);
    }
    let reply = client::send(&cfg.tls, out)
        .await
        .map_err(|e| fail(AuthResult::Error, format!("token endpoint: {e}")))?;
    let body = reply.json();
    if reply.status != 200 {
        let err = body
            .as_ref()
            .ok()
            .and_then(|m| m.get("error"))
            .and_then(Value::as_str)
            .map(loggable)
            .unwrap_or_default();
        // invalid_grant: a bad, used or expired code (or verifier).
        let result = if reply.status == 400 && err == "invalid_grant" {
            AuthResult::Invalid
        } else {
            AuthResult::Error
        };
        return Err(fail(
            result,
            format!("token endpoint answered {} {err}", reply.status),
        ));
    }
    let body = body.map_err(|e| fail(AuthResult::Error, format!("token endpoint: {e}")))?;
    let id_token = match body.get("id_token") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => {
            return Err(fail(
                AuthResult::Invalid,
                "the token response has no id_token",
            ))
        }
    };
    let access_token = match (body.get("access_token"), body.get("token_type")) {
        (Some(Value::String(a)), Some(Value::String(t))) if t.eq_ignore_ascii_case("bearer") => {
            Some(a.clone())
        }
        _ => None,
    };
    Ok(Tokens {
        id_token,
        access_token,
    })
}

/// ID token validation (OpenID Connect Core 3.1.3.7) with the same
/// verifier as `[[jwt]]` tokens, then what is particular to ID tokens.
pub(crate) async fn check_id_token(
    cfg: &OidcProvider,
    meta: &Metadata,
    token: &str,
    nonce: &str,
    now: u64,
) -> Result<(Claims, claims::Times), Failure> {
    if token.len() > MAX_ID_TOKEN_BYTES {
        return Err(fail(AuthResult::Invalid, "ID token too large"));
    }
    let (claims, times) = meta
        .id_tokens
        .verify_direct(token, now)
        .await
        .map_err(|r| {
            let result = match r {
                Reject::Expired => AuthResult::Expired,
                Reject::KeysUnavailable => AuthResult::Error,
                _ => AuthResult::Invalid,
            };
            fail(result, format!("ID token: {}", r.description()))
        })?;
    // A missing nonce is refused like a wrong one (SPEC 11).
    match claims.get("nonce") {
        Some(Value::String(n)) if crate::crypto::ct_eq(n.as_bytes(), nonce.as_bytes()) => {}
        Some(_) => return Err(fail(AuthResult::Invalid, "ID token nonce does not match")),
        None => return Err(fail(AuthResult::Invalid, "ID token has no nonce")),
    }
    match claims.get("azp") {
        None => {}
        Some(Value::String(a)) if *a == cfg.client_id => {}
        Some(_) => {
            return Err(fail(
                AuthResult::Invalid,
                "ID token azp is not our client_id",
            ))
        }
    }
    match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err(fail(AuthResult::Invalid, "ID token has no sub")),
    }
    Ok((claims, times))
}

/// The userinfo response (OpenID Connect Core 5.3), JSON only.
async fn fetch_userinfo(
    cfg: &OidcProvider,
    meta: &Metadata,
    access_token: &str,
) -> Result<Claims, Failure> {
    let Some(url) = &meta.userinfo_endpoint else {
        return Ok(Claims::new());
    };
    let auth = HeaderValue::from_str(&format!("Bearer {access_token}"))
        .map_err(|_| fail(AuthResult::Invalid, "access token not usable in a header"))?;
    let reply = client::send(
        &cfg.tls,
        Outgoing::get(url).header(header::AUTHORIZATION, auth),
    )
    .await
    .map_err(|e| fail(AuthResult::Error, format!("userinfo: {e}")))?;
    if reply.status != 200 {
        return Err(fail(
            AuthResult::Error,
            format!("userinfo answered {}", reply.status),
        ));
    }
    reply
        .json()
        .map_err(|e| fail(AuthResult::Error, format!("userinfo: {e}")))
}

/// `email_verified` is present and not true (SPEC 16). `true` may come as
/// a boolean or, as some providers send it, a string; anything else
/// present (`false`, `"false"`, `null`, `0`) is not a yes. Absent is
/// allowed: several providers never send it and verify every address.
pub(crate) fn email_unverified(claims: &Claims) -> bool {
    match claims.get("email_verified") {
        None => false,
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => !s.eq_ignore_ascii_case("true"),
        Some(_) => true,
    }
}

/// `allowed_email_domains` (SPEC 11): the part after the `@`, exactly,
/// case-insensitive. No email, an empty local part, or more than one `@`
/// is no match.
pub(crate) fn email_allowed(domains: &[String], email: Option<&str>) -> bool {
    let Some((local, domain)) = email.and_then(|e| e.split_once('@')) else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
}
