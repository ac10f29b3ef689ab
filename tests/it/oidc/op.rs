//! A test OpenID provider on 127.0.0.1 (plain HTTP: loopback issuers may
//! use it): discovery, authorize (consents at once and redirects back with
//! a code), token (checks client authentication, the code, the redirect
//! URI and the PKCE verifier), JWKS, userinfo and end_session. ID tokens
//! are real JWTs signed with keys made by the test, each with a fresh
//! `sid` (the provider's session); logout tokens (Back-Channel Logout 1.0)
//! are signed with the same keys. Every knob is in [`OpState`],
//! changeable at any time.

use crate::support::jwt::now;
use crate::support::keys::Key;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use gatehouse::login::parse_form;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

pub const CLIENT_ID: &str = "gatehouse";
pub const CLIENT_SECRET: &str = "client secret/with+odd:chars";

/// What an authorization request left for the token request.
#[derive(Debug, Clone)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
}

/// How the gateway authenticated at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenAuth {
    Basic,
    Post,
}

pub struct OpState {
    /// `token_endpoint_auth_methods_supported`; `None` leaves it out.
    pub auth_methods: Option<Vec<String>>,
    pub end_session: bool,
    pub userinfo: bool,
    /// Status of the discovery document (503 plays an outage).
    pub discovery_status: u16,
    /// Published keys, by kid.
    pub keys: Vec<(String, Arc<Key>)>,
    /// The kid ID tokens are signed with.
    pub signing_kid: String,
    /// The user: claims every ID token carries (sub, email, groups...).
    pub user: Value,
    /// Applied last to the ID token's claims; a `null` member removes it.
    pub overrides: Value,
    /// Claims userinfo adds beside `sub`.
    pub userinfo_claims: Value,
    codes: HashMap<String, Grant>,
    access_tokens: HashMap<String, String>,
    pub authorize_queries: Vec<BTreeMap<String, String>>,
    pub token_auth: Vec<SeenAuth>,
    pub token_calls: usize,
    pub userinfo_calls: usize,
    pub jwks_calls: usize,
    pub discovery_calls: usize,
    /// ID tokens issued, in order.
    pub issued: Vec<String>,
    pub logouts: Vec<BTreeMap<String, String>>,
}

pub struct Op {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<OpState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Op {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random() -> String {
    URL_SAFE_NO_PAD.encode(gatehouse::crypto::random_bytes::<16>())
}

fn with(mut base: Value, extra: &Value) -> Value {
    for (k, v) in extra.as_object().into_iter().flatten() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

impl Op {
    /// A provider signing with a fresh RS256 key `k1`, for user alice.
    pub async fn start() -> Op {
        let key = Arc::new(Key::rsa(jsonwebtoken::Algorithm::RS256));
        let state = Arc::new(Mutex::new(OpState {
            auth_methods: Some(vec![
                "client_secret_post".into(),
                "client_secret_basic".into(),
            ]),
            end_session: true,
            userinfo: true,
            discovery_status: 200,
            keys: vec![("k1".into(), key)],
            signing_kid: "k1".into(),
            user: json!({
                "sub": "alice-0001",
                "email": "alice@example.com",
                "email_verified": true,
                "groups": ["staff", "dev"],
                "name": "Alice",
            }),
            overrides: json!({}),
            userinfo_claims: json!({}),
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            authorize_queries: Vec::new(),
            token_auth: Vec::new(),
            token_calls: 0,
            userinfo_calls: 0,
            jwks_calls: 0,
            discovery_calls: 0,
            issued: Vec::new(),
            logouts: Vec::new(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(serve(addr, &s, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Op { addr, state, task }
    }

    /// The issuer as the discovery document and ID tokens say it.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, OpState> {
        self.state.lock().unwrap()
    }

    /// Publishes `key` as `kid` (alone, the old keys withdrawn) and signs
    /// with it from now on.
    pub fn rotate(&self, kid: &str, key: Key) {
        let mut s = self.lock();
        s.keys = vec![(kid.to_string(), Arc::new(key))];
        s.signing_kid = kid.to_string();
    }

    pub fn set_overrides(&self, v: Value) {
        self.lock().overrides = v;
    }

    pub fn token_calls(&self) -> usize {
        self.lock().token_calls
    }

    /// The `sid` of the `n`th ID token issued.
    pub fn sid(&self, n: usize) -> String {
        let token = self.lock().issued[n].clone();
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["sid"].as_str().unwrap().to_string()
    }

    /// A logout token signed with the current signing key: `claims` laid
    /// over iss, aud, iat (now), a fresh jti and the logout event (a
    /// `null` member removes one).
    pub fn logout_token(&self, claims: Value) -> String {
        let base = json!({
            "iss": self.issuer(),
            "aud": CLIENT_ID,
            "iat": now(),
            "jti": random(),
            "events": { gatehouse::login::oidc::backchannel::LOGOUT_EVENT: {} },
        });
        let claims = with(base, &claims);
        let s = self.lock();
        let key = s
            .keys
            .iter()
            .find(|(k, _)| *k == s.signing_kid)
            .map(|(_, k)| k.clone())
            .unwrap();
        let mut h = jsonwebtoken::Header::new(key.alg);
        h.kid = Some(s.signing_kid.clone());
        h.typ = Some("logout+jwt".into());
        key.sign_with(&h, &claims)
    }
}

fn json_response(status: u16, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn oauth_error(status: u16, error: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": error }))
}

async fn serve(
    addr: SocketAddr,
    state: &Mutex<OpState>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let issuer = format!("http://{addr}");
    let path = req.uri().path().to_string();
    let query = parse_form(req.uri().query().unwrap_or("").as_bytes());
    match path.as_str() {
        "/.well-known/openid-configuration" => {
            let mut s = state.lock().unwrap();
            s.discovery_calls += 1;
            let mut doc = json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "code_challenge_methods_supported": ["S256"],
            });
            if let Some(m) = &s.auth_methods {
                doc["token_endpoint_auth_methods_supported"] = json!(m);
            }
            if s.userinfo {
                doc["userinfo_endpoint"] = json!(format!("{issuer}/userinfo"));
            }
            if s.end_session {
                doc["end_session_endpoint"] = json!(format!("{issuer}/logout"));
            }
            json_response(s.discovery_status, &doc)
        }
        "/jwks" => {
            let mut s = state.lock().unwrap();
            s.jwks_calls += 1;
            let keys: Vec<Value> = s.keys.iter().map(|(kid, k)| k.jwk_with(kid)).collect();
            json_response(200, &json!({ "keys": keys }))
        }
        "/authorize" => authorize(state, query),
        "/token" => {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = req.into_body().collect().await.unwrap().to_bytes();
            token(&issuer, state, auth, parse_form(&body))
        }
        "/userinfo" => {
            let mut s = state.lock().unwrap();
            s.userinfo_calls += 1;
            let at = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            match s.access_tokens.get(at) {
                Some(sub) => {
                    let body = with(json!({ "sub": sub }), &s.userinfo_claims);
                    json_response(200, &body)
                }
                None => oauth_error(401, "invalid_token"),
            }
        }
        "/logout" => {
            state.lock().unwrap().logouts.push(query);
            let mut r = Response::new(Full::new(Bytes::from("signed out")));
            r.headers_mut()
                .insert("content-type", "text/plain".parse().unwrap());
            r
        }
        _ => oauth_error(404, "not_found"),
    }
}

/// Consents at once: redirects back with a fresh code and the state.
fn authorize(state: &Mutex<OpState>, q: BTreeMap<String, String>) -> Response<Full<Bytes>> {
    let mut s = state.lock().unwrap();
    s.authorize_queries.push(q.clone());
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code"
        || get("client_id") != CLIENT_ID
        || get("code_challenge_method") != "S256"
        || get("code_challenge").len() != 43
        || get("redirect_uri").is_empty()
        || !get("scope").split(' ').any(|x| x == "openid")
    {
        return oauth_error(400, "invalid_request");
    }
    let code = random();
    s.codes.insert(
        code.clone(),
        Grant {
            client_id: get("client_id"),
            redirect_uri: get("redirect_uri"),
            challenge: get("code_challenge"),
            nonce: q.get("nonce").cloned(),
        },
    );
    let mut location = format!(
        "{}?code={}",
        get("redirect_uri"),
        gatehouse::auth::url_encode(&code)
    );
    if let Some(st) = q.get("state") {
        location.push_str(&format!("&state={}", gatehouse::auth::url_encode(st)));
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut()
        .insert("location", location.parse().unwrap());
    r
}

/// Client authentication as the provider advertises it (basic preferred),
/// then the code, its redirect URI and the PKCE verifier.
fn token(
    issuer: &str,
    state: &Mutex<OpState>,
    auth: Option<String>,
    form: BTreeMap<String, String>,
) -> Response<Full<Bytes>> {
    let mut s = state.lock().unwrap();
    s.token_calls += 1;
    let basic_ok = s
        .auth_methods
        .as_ref()
        .is_none_or(|m| m.iter().any(|x| x == "client_secret_basic"));
    let seen = match (&auth, form.get("client_secret")) {
        (Some(h), None) => {
            let Some(creds) = h
                .strip_prefix("Basic ")
                .and_then(|b| STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
            else {
                return oauth_error(401, "invalid_client");
            };
            let (id, secret) = creds.split_once(':').unwrap_or(("", ""));
            let decode = |v: &str| gatehouse::login::percent_decode_form(v);
            if decode(id) != CLIENT_ID || decode(secret) != CLIENT_SECRET {
                return oauth_error(401, "invalid_client");
            }
            SeenAuth::Basic
        }
        (None, Some(secret)) => {
            if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || secret != CLIENT_SECRET
            {
                return oauth_error(401, "invalid_client");
            }
            SeenAuth::Post
        }
        _ => return oauth_error(401, "invalid_client"),
    };
    // Not the method this provider wants the client to pick.
    if (seen == SeenAuth::Basic) != basic_ok {
        return oauth_error(401, "invalid_client");
    }
    s.token_auth.push(seen);
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(400, "unsupported_grant_type");
    }
    let Some(grant) = form.get("code").and_then(|c| s.codes.remove(c)) else {
        return oauth_error(400, "invalid_grant");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let challenge = URL_SAFE_NO_PAD.encode(gatehouse::crypto::sha256(verifier.as_bytes()));
    if grant.client_id != CLIENT_ID
        || form.get("redirect_uri") != Some(&grant.redirect_uri)
        || challenge != grant.challenge
    {
        return oauth_error(400, "invalid_grant");
    }
    let n = now();
    let mut claims = json!({
        "iss": issuer,
        "aud": CLIENT_ID,
        "exp": n + 300,
        "iat": n,
        "auth_time": n,
        "sid": random(),
    });
    if let Some(nonce) = &grant.nonce {
        claims["nonce"] = json!(nonce);
    }
    let claims = with(with(claims, &s.user), &s.overrides);
    let kid = s.signing_kid.clone();
    let key = s
        .keys
        .iter()
        .find(|(k, _)| *k == kid)
        .map(|(_, k)| k.clone())
        .unwrap_or_else(|| Arc::new(Key::rsa(jsonwebtoken::Algorithm::RS256)));
    let id_token = key.sign(Some(&kid), &claims);
    s.issued.push(id_token.clone());
    let access_token = random();
    let sub = claims["sub"].as_str().unwrap_or("").to_string();
    s.access_tokens.insert(access_token.clone(), sub);
    json_response(
        200,
        &json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }),
    )
}
