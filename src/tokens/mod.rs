//! Gateway-issued tokens (SPEC 4 `/token`, `/jwks.json`; SPEC 6
//! revocation): short access JWTs verified locally like any other JWT,
//! opaque single-use refresh tokens kept server-side in families, and
//! revocation (one token, one family, everything a user holds) that every
//! replica applies at once through the shared store.
//!
//! ```text
//! client                 gatehouse                          store
//!   |-- POST /token password ->|-- argon2 + lockout           |
//!   |                          |-- new family, refresh hash --->|
//!   |<- access (5m) + refresh -|                                |
//!   |-- GET /api  Bearer AT -->|-- verify signature (cached) + revocations (local)
//!   |-- POST /token refresh -->|-- rotate: won? ---------------->|  (atomic)
//!   |<- new access + refresh --|   used again? replay in grace, else revoke family
//!   |-- POST /logout Bearer -->|-- deny jti + family --------->|-- publish to replicas
//! ```

pub mod keys;
pub mod refresh;

use crate::body::Body;
use crate::clock::unix_now;
use crate::error::GatewayError;
use crate::gateway::{Gateway, Snapshot};
use crate::login;
use crate::proxy::respond;
use crate::revocation::{Revoke, TokenFacts};
use crate::server::ConnInfo;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use refresh::{Grant, NewFamily, Pair, Presented, Rotation};
use serde_json::{json, Value};
use std::time::Duration;

fn store_err(e: crate::state::StoreError) -> GatewayError {
    GatewayError::StoreUnavailable(Box::new(e))
}

/// Applies `r` on this replica and announces it to every other.
pub async fn revoke(gw: &Gateway, r: Revoke) -> Result<(), GatewayError> {
    gw.store.revoke(r).await.map_err(store_err)
}

/// Mints an access token and a refresh token for `grant` in `family`;
/// returns them and the refresh token's hash.
fn mint(snap: &Snapshot, grant: &Grant, family: &str) -> Result<(Pair, [u8; 32]), GatewayError> {
    let login = snap.config.login.as_ref().ok_or(GatewayError::NotFound)?;
    let now = unix_now();
    let ttl = login.access_token_ttl.as_secs();
    let mut claims = json!({
        "iss": login.issuer,
        "sub": grant.user,
        "aud": login.issuer,
        "exp": now + ttl,
        "iat": now,
        "nbf": now,
        "jti": URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<16>()),
        "groups": grant.groups,
        "method": "password",
        "sid": family,
    });
    if let Some(e) = &grant.email {
        claims["email"] = json!(e);
    }
    if let Some(n) = &grant.name {
        claims["name"] = json!(n);
    }
    // RFC 9068: access tokens are typed `at+jwt`.
    let access_token = login.keys.current.sign("at+jwt", &claims);
    // `<family>.<secret>`: the store keeps one record per family and can
    // tell any older token of it (reuse) from a forgery (its MAC fails).
    let refresh_token = Presented::mint(family, &refresh::token_mac(&snap.config.server.secret.0));
    let hash = crate::crypto::sha256(refresh_token.as_bytes());
    Ok((
        Pair {
            access_token,
            refresh_token,
            expires_in: ttl,
        },
        hash,
    ))
}

/// What a user's access tokens say about them now: read from the users
/// file on every refresh (SPEC 16), `None` once they are unknown or
/// disabled.
fn current_grant(login: &crate::config::sessions::Login, user: &str) -> Option<Grant> {
    let u = login.users.get(user).filter(|u| !u.disabled)?;
    Some(Grant {
        user: u.username.clone(),
        email: u.email.clone(),
        groups: u.groups.clone(),
        name: u.name.clone(),
    })
}

/// An RFC 6749 section 5.2 error response.
fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let mut r = respond::json(
        status,
        json!({ "error": code, "error_description": description }).to_string(),
    );
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn token_response(pair: &Pair) -> Response<Body> {
    let body = json!({
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
    });
    let mut r = respond::json(StatusCode::OK, body.to_string());
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// `<prefix>/token` and `<prefix>/jwks.json`.
pub async fn handle(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    sub_path: &str,
) -> Result<Response<Body>, GatewayError> {
    let Some(login) = snap.config.login.as_ref() else {
        return Err(GatewayError::NotFound);
    };
    match (req.method(), sub_path) {
        (&Method::GET, "/jwks.json") => {
            let mut r = Response::new(Body::full(login.keys.jwks.clone()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            );
            // Short enough that a rotation reaches verifiers quickly.
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            Ok(r)
        }
        (&Method::POST, "/token") => token(gw, snap, conn, req).await,
        (_, "/token") => Err(GatewayError::MethodNotAllowed { allow: "POST" }),
        _ => Err(GatewayError::MethodNotAllowed { allow: "GET" }),
    }
}

/// Why a token request's body is refused with `invalid_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvalidRequest {
    MediaType,
    MalformedBody,
    /// RFC 6749 section 3.2: parameters must not be included more than once.
    Repeated,
}

impl InvalidRequest {
    /// The `error_description`.
    fn description(self) -> &'static str {
        match self {
            InvalidRequest::MediaType => {
                "the body must be application/x-www-form-urlencoded (or application/json)"
            }
            InvalidRequest::MalformedBody => "malformed request body",
            InvalidRequest::Repeated => "a parameter is repeated",
        }
    }
}

/// The parameters of a token request (RFC 6749 section 3.2): a form, or
/// (SPEC 4) a JSON object. `Err` with the reason for `invalid_request`:
/// another media type, a malformed body, or a parameter given twice. Any
/// `client_id` or client credentials are ignored: the endpoint serves the
/// gateway's own first-party clients and authenticates none.
async fn token_fields(
    req: Request<Incoming>,
) -> Result<Result<std::collections::BTreeMap<String, String>, InvalidRequest>, GatewayError> {
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let form = match media.as_deref() {
        Some("application/x-www-form-urlencoded") => true,
        Some("application/json") => false,
        _ => return Ok(Err(InvalidRequest::MediaType)),
    };
    if !form {
        return Ok(match login::read_fields(req).await {
            Ok((f, _)) => Ok(f),
            Err(e @ (GatewayError::BodyTooLarge | GatewayError::RequestTimeout)) => return Err(e),
            Err(_) => Err(InvalidRequest::MalformedBody),
        });
    }
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > login::MAX_FORM_BYTES {
            return Err(GatewayError::BodyTooLarge);
        }
    }
    let body = match login::read_body(req.into_body(), login::MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(e @ (GatewayError::BodyTooLarge | GatewayError::RequestTimeout)) => return Err(e),
        Err(_) => return Ok(Err(InvalidRequest::MalformedBody)),
    };
    let mut fields = std::collections::BTreeMap::new();
    for (k, v) in login::form_pairs(&body) {
        if fields.insert(k, v).is_some() {
            return Ok(Err(InvalidRequest::Repeated));
        }
    }
    Ok(Ok(fields))
}

async fn token(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let login = snap.config.login.as_ref().ok_or(GatewayError::NotFound)?;
    let fields = match token_fields(req).await? {
        Ok(f) => f,
        Err(why) => {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                why.description(),
            ))
        }
    };
    let field = |k: &str| fields.get(k).map(String::as_str).filter(|v| !v.is_empty());
    match field("grant_type") {
        None => Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        )),
        Some("password") => {
            let (Some(user), Some(pw)) = (field("username"), field("password")) else {
                return Ok(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "username and password are required",
                ));
            };
            let u = match login::check_password(gw, snap, conn, user, pw).await {
                Ok(u) => u,
                Err(GatewayError::Unauthenticated(_)) => {
                    return Ok(oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "invalid username or password",
                    ));
                }
                Err(GatewayError::UsernameTooLong) => {
                    return Ok(oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "username too long",
                    ));
                }
                // RFC 6749 has no code for "slow down" on this grant: a
                // registered code a client library understands, with the
                // status and Retry-After saying when to come back (SPEC 11).
                Err(GatewayError::Locked { retry_after }) => {
                    let mut r = oauth_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "invalid_grant",
                        "too many attempts, try again later",
                    );
                    r.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from(retry_after.as_secs().max(1)),
                    );
                    return Ok(r);
                }
                Err(e) => return Err(e),
            };
            let grant = Grant {
                user: u.username,
                email: u.email,
                groups: u.groups,
                name: u.name,
            };
            let family = crate::crypto::hex(&crate::crypto::random_bytes::<16>());
            let (pair, hash) = mint(snap, &grant, &family)?;
            let now = crate::clock::now_ms();
            gw.store
                .family_create(&NewFamily {
                    family: &family,
                    user: &grant.user,
                    hash,
                    expires_ms: now + login.refresh_token_ttl.as_millis() as u64,
                    ends_ms: now + login.refresh_token_max_age.as_millis() as u64,
                })
                .await?;
            gw.metrics.auth("token", crate::metrics::AuthResult::Ok);
            tracing::info!(user = %grant.user, family = %&family[..8], "tokens issued (password grant)");
            Ok(token_response(&pair))
        }
        Some("refresh_token") => {
            let Some(rt) = field("refresh_token") else {
                return Ok(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                ));
            };
            refresh(gw, snap, rt).await
        }
        Some(_) => Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use password or refresh_token",
        )),
    }
}

async fn refresh(
    gw: &Gateway,
    snap: &Snapshot,
    presented: &str,
) -> Result<Response<Body>, GatewayError> {
    let login = snap.config.login.as_ref().ok_or(GatewayError::NotFound)?;
    let grace = login.refresh_reuse_grace.as_millis() as u64;
    let invalid = || {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the refresh token is invalid, expired or revoked",
        )
    };
    let mac = refresh::token_mac(&snap.config.server.secret.0);
    let Some(token) = Presented::parse(presented, &mac) else {
        gw.metrics
            .auth("token", crate::metrics::AuthResult::Invalid);
        return Ok(invalid());
    };
    // A concurrent refresh of the same token is minting right now: wait for
    // its pair (bounded), rather than fail a legitimate second tab.
    for _ in 0..100 {
        match gw
            .store
            .family_rotate(&token, crate::clock::now_ms(), grace)
            .await?
        {
            Rotation::Won {
                family,
                user,
                ends_ms,
            } => {
                let Some(grant) = current_grant(login, &user) else {
                    // Deleted or disabled since the login: the family ends
                    // here, with every access token minted from it.
                    tracing::info!(user = %user, family = %&family[..8], "refresh refused: user unknown or disabled; family revoked");
                    revoke_family_everywhere(gw, login, &family).await?;
                    gw.metrics
                        .auth("token", crate::metrics::AuthResult::Revoked);
                    return Ok(invalid());
                };
                let (pair, next) = mint(snap, &grant, &family)?;
                let expires = crate::clock::now_ms() + login.refresh_token_ttl.as_millis() as u64;
                gw.store
                    .family_complete(&token, next, expires.min(ends_ms), &pair, grace)
                    .await?;
                gw.metrics.auth("token", crate::metrics::AuthResult::Ok);
                return Ok(token_response(&pair));
            }
            Rotation::Replay(pair) => return Ok(token_response(&pair)),
            Rotation::Pending => tokio::time::sleep(Duration::from_millis(10)).await,
            Rotation::Reused { family, user } => {
                // A used token came back: it leaked. Kill its family and
                // every access token minted from it.
                tracing::warn!(user = %user, family = %&family[..8], "refresh token reused: family revoked");
                let until = unix_now() + login.access_token_ttl.as_secs() + 60;
                revoke(gw, Revoke::Family { sid: family, until }).await?;
                gw.metrics
                    .auth("token", crate::metrics::AuthResult::Revoked);
                return Ok(invalid());
            }
            Rotation::Invalid => {
                gw.metrics
                    .auth("token", crate::metrics::AuthResult::Invalid);
                return Ok(invalid());
            }
        }
    }
    Ok(oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "try again",
    ))
}

/// Ends refresh family `family` in the store and denies its access tokens
/// on every replica.
async fn revoke_family_everywhere(
    gw: &Gateway,
    login: &crate::config::sessions::Login,
    family: &str,
) -> Result<(), GatewayError> {
    gw.store.family_revoke(family).await?;
    let until = unix_now() + login.access_token_ttl.as_secs() + 60;
    revoke(
        gw,
        Revoke::Family {
            sid: family.to_string(),
            until,
        },
    )
    .await
}

/// `POST /logout` with `Authorization: Bearer <access token>`: denies that
/// token's `jti` and, through its `sid`, its refresh family. Returns whether
/// a valid token was presented.
pub async fn logout_bearer(
    gw: &Gateway,
    snap: &Snapshot,
    headers: &http::HeaderMap,
) -> Result<bool, GatewayError> {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return Ok(false);
    };
    let Some(login) = snap.config.login.as_ref() else {
        return Ok(false);
    };
    let Ok(claims) = own_claims(login, token.trim()) else {
        return Ok(false);
    };
    let exp = claims["exp"].as_u64().unwrap_or(0);
    if let Some(jti) = claims["jti"].as_str() {
        revoke(
            gw,
            Revoke::Jti {
                jti: jti.to_string(),
                exp,
            },
        )
        .await?;
    }
    if let Some(sid) = claims["sid"].as_str() {
        revoke_family_everywhere(gw, login, sid).await?;
    }
    tracing::info!(user = %claims["sub"].as_str().unwrap_or(""), "access token logged out");
    Ok(true)
}

/// Verifies a token the gateway minted (signature, issuer, audience,
/// expiry) and returns its claims.
fn own_claims(login: &crate::config::sessions::Login, token: &str) -> Result<Value, ()> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| ())?;
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&login.keys.jwks).map_err(|_| ())?;
    let jwk = jwks.find(header.kid.as_deref().ok_or(())?).ok_or(())?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|_| ())?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[&login.issuer]);
    v.set_audience(&[&login.issuer]);
    // `exp` is checked below on the gateway's clock (jsonwebtoken would read
    // the system clock); `exp` stays required, so it must be present and
    // numeric.
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|_| ())?;
    // jsonwebtoken's rule, with its leeway: expired once exp < now - leeway.
    let exp = claims["exp"]
        .as_u64()
        .or_else(|| claims["exp"].as_f64().map(|f| f as u64))
        .ok_or(())?;
    if exp < unix_now().saturating_sub(v.leeway) {
        return Err(());
    }
    Ok(claims)
}

/// `POST /admin/users/{name}/revoke` beyond sessions: refresh families and
/// every token issued until now, on every replica.
pub async fn revoke_user_tokens(
    gw: &Gateway,
    snap: &Snapshot,
    user: &str,
) -> Result<usize, GatewayError> {
    let families = gw.store.families_revoke_user(user).await?;
    let until = unix_now()
        + snap
            .config
            .login
            .as_ref()
            .map_or(300, |l| l.access_token_ttl.as_secs())
        + 60;
    for f in &families {
        revoke(
            gw,
            Revoke::Family {
                sid: f.clone(),
                until,
            },
        )
        .await?;
    }
    revoke(
        gw,
        Revoke::Subject {
            sub: user.to_string(),
            mark: unix_now(),
        },
    )
    .await?;
    Ok(families.len())
}

/// Facts of a token for revocation checks, from its claims.
pub fn facts(claims: &Value) -> TokenFacts<'_> {
    TokenFacts {
        sub: claims["sub"].as_str().unwrap_or(""),
        jti: claims["jti"].as_str(),
        sid: claims["sid"].as_str(),
        iat: claims["iat"].as_u64(),
    }
}

/// `[identity.jwt]`: short-lived JWTs for backends that verify identity
/// themselves, minted once per identity and audience and reused until
/// shortly before they expire, so the request path does not sign.
#[derive(Default)]
pub struct IdentityTokens {
    cache: dashmap::DashMap<[u8; 32], (HeaderValue, u64)>,
}

/// Entries kept at most; past it the cache starts over.
const IDENTITY_TOKENS_MAX: usize = 100_000;

impl IdentityTokens {
    pub fn header_value(
        &self,
        cfg: &crate::config::Config,
        jcfg: &crate::config::IdentityJwt,
        id: &crate::auth::Identity,
        audience: &str,
    ) -> Option<HeaderValue> {
        use aws_lc_rs::digest;
        let mut h = digest::Context::new(&digest::SHA256);
        for part in [
            cfg.signing.current.kid.as_str(),
            audience,
            &id.sub,
            id.email.as_deref().unwrap_or(""),
            id.name.as_deref().unwrap_or(""),
            id.method.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        for g in &id.groups {
            h.update(g.as_bytes());
            h.update(&[1]);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(h.finish().as_ref());
        let now = unix_now();
        let ttl = jcfg.ttl.as_secs();
        // Reissue when less than a quarter of the lifetime (or 2 s) is left.
        let margin = (ttl / 4).max(2);
        if let Some(e) = self.cache.get(&key) {
            if now + margin < e.1 {
                return Some(e.0.clone());
            }
        }
        let mut claims = json!({
            "iss": cfg.token_issuer,
            "sub": id.sub,
            "aud": audience,
            "exp": now + ttl,
            "iat": now,
            "nbf": now,
            "jti": URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<16>()),
            "method": id.method.as_str(),
        });
        if let Some(e) = &id.email {
            claims["email"] = json!(e);
        }
        if !id.groups.is_empty() {
            claims["groups"] = json!(id.groups);
        }
        if let Some(n) = &id.name {
            claims["name"] = json!(n);
        }
        let v = HeaderValue::from_str(&cfg.signing.current.sign("JWT", &claims)).ok()?;
        if self.cache.len() >= IDENTITY_TOKENS_MAX {
            self.cache.clear();
        }
        self.cache.insert(key, (v.clone(), now + ttl));
        Some(v)
    }
}
