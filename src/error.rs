//! Every per-request failure, and the one place it becomes a status code.

use http::StatusCode;
use std::time::Duration;

/// Why a request was not proxied. Mapped to HTTP by [`GatewayError::status`]
/// (one exhaustive match, pinned by a table test); the response body never
/// carries the source, which may name a backend.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// What was malformed says [`Malformed`]; always 400.
    #[error("malformed request: {0}")]
    BadRequest(Malformed),
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("request body too large")]
    BodyTooLarge,
    /// The client did not send its whole body in time.
    #[error("request body timed out")]
    RequestTimeout,
    /// The client's body broke off or was malformed while being relayed.
    #[error("request body incomplete")]
    ClientBody,
    #[error("no route")]
    NoRoute,
    #[error("not found")]
    NotFound,
    /// With the methods the resource takes, for `Allow` (RFC 9110 15.5.6).
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("authentication required")]
    Unauthenticated(Challenge),
    #[error("forbidden")]
    Forbidden,
    #[error("too many attempts")]
    Locked { retry_after: Duration },
    /// A login or token request naming a user over 256 bytes (SPEC 16).
    #[error("username too long")]
    UsernameTooLong,
    #[error("no healthy backend")]
    NoHealthyBackend,
    #[error("session store unavailable")]
    StoreUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A single sign-on provider whose discovery document has not arrived.
    #[error("identity provider unavailable")]
    ProviderUnavailable,
    #[error("backend connection failed")]
    BackendConnect(#[source] std::io::Error),
    #[error("backend failed")]
    BackendFailed(#[source] hyper::Error),
    #[error("backend timed out")]
    BackendTimeout,
    /// The backend switched protocols where it must not: a `101` to a
    /// request that is no WebSocket upgrade, or without the
    /// `Sec-WebSocket-Accept` the request's key calls for (SPEC 16).
    #[error("backend switched protocols unasked")]
    UnexpectedSwitch,
}

/// What made a request malformed (400). Each says what the client got
/// wrong; the text is the public body, so it names no backend or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A Transfer-Encoding other than plain `chunked` on HTTP/1.
    TransferEncoding,
    /// Two or more Host fields.
    DuplicateHost,
    /// A Host field that is not text.
    HostNotText,
    /// No usable host where one is needed (an https redirect, an OIDC
    /// callback URL built from the request).
    MissingHost,
    /// A path that does not normalise (bad percent-encoding, `..` above
    /// the root, ...).
    Path,
    /// A path another route could be read as by a backend.
    AmbiguousPath,
    /// The rewritten request target is not a valid URI.
    Target,
    /// An identity value the backend header could be split by.
    IdentityValue,
    /// A small body (login form, token request) that broke off.
    UnreadableBody,
    Json,
    JsonNotObject,
    /// The request asks for a redirect that cannot be a `Location`.
    Redirect,
    /// A cookie value built from the request cannot be a `Set-Cookie`.
    Cookie,
    /// Forward-auth (SPEC 14): a header describing the original request
    /// that is not text.
    ForwardAuthHeader,
    /// Forward-auth: the original request's method, scheme, host or path
    /// is not one.
    OriginalMethod,
    OriginalScheme,
    OriginalHost,
    OriginalPath,
    /// Forward-auth: `X-Original-URL` does not parse, or is not absolute.
    OriginalUrl,
    OriginalUrlNotAbsolute,
    /// Forward-auth `/authz/...`: the request names no host.
    NoHost,
    /// Forward-auth `/auth`: nothing describes the original request.
    NoOriginal,
}

impl Malformed {
    /// The short, client-safe text for the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::TransferEncoding => "unsupported Transfer-Encoding",
            Malformed::DuplicateHost => "more than one Host header",
            Malformed::HostNotText => "malformed Host header",
            Malformed::MissingHost => "missing or invalid Host header",
            Malformed::Path => "malformed path",
            Malformed::AmbiguousPath => "ambiguous path",
            Malformed::Target => "malformed request target",
            Malformed::IdentityValue => "identity value not allowed in a header",
            Malformed::UnreadableBody => "could not read the request body",
            Malformed::Json => "malformed JSON body",
            Malformed::JsonNotObject => "expected a JSON object",
            Malformed::Redirect => "invalid redirect",
            Malformed::Cookie => "cookie",
            Malformed::ForwardAuthHeader => "malformed forward-auth header",
            Malformed::OriginalMethod => "malformed original method",
            Malformed::OriginalScheme => "malformed original scheme",
            Malformed::OriginalHost => "malformed original host",
            Malformed::OriginalPath => "malformed original path",
            Malformed::OriginalUrl => "malformed X-Original-URL",
            Malformed::OriginalUrlNotAbsolute => "X-Original-URL is not absolute",
            Malformed::NoHost => "no Host",
            Malformed::NoOriginal => {
                "no X-Original-URL or X-Forwarded-Host describing the original request"
            }
        }
    }
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a 401 asks the client to do (RFC 6750 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No credentials: `WWW-Authenticate: Bearer realm="gatehouse"`.
    Missing,
    /// Bad credentials: `Bearer error="invalid_token"` with a short reason.
    InvalidToken(&'static str),
    /// A browser is sent to the login page instead of a 401.
    Login { location: String },
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::ClientBody => StatusCode::BAD_REQUEST,
            GatewayError::NoRoute | GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Unauthenticated(Challenge::Login { .. }) => StatusCode::FOUND,
            GatewayError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden => StatusCode::FORBIDDEN,
            GatewayError::Locked { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::UsernameTooLong => StatusCode::BAD_REQUEST,
            GatewayError::NoHealthyBackend
            | GatewayError::StoreUnavailable(_)
            | GatewayError::ProviderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::BackendConnect(_)
            | GatewayError::BackendFailed(_)
            | GatewayError::UnexpectedSwitch => StatusCode::BAD_GATEWAY,
            GatewayError::BackendTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether the client's HTTP/1.1 connection may carry another request
    /// after this answer (Pingora's `fail_to_proxy` decides reuse with the
    /// error the same way). Not after anything that leaves the rest of the
    /// connection unframed as we read it — a malformed, oversized or
    /// timed-out request, a body broken off — nor after a refused protocol
    /// switch (the client may already be sending what it meant for the
    /// tunnel). Each variant says so here, so a new one must decide.
    pub fn can_reuse_connection(&self) -> bool {
        match self {
            GatewayError::BadRequest(_)
            | GatewayError::HeadersTooLarge
            | GatewayError::BodyTooLarge
            | GatewayError::RequestTimeout
            | GatewayError::ClientBody
            | GatewayError::UsernameTooLong
            | GatewayError::UnexpectedSwitch => false,
            GatewayError::NoRoute
            | GatewayError::NotFound
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::Unauthenticated(_)
            | GatewayError::Forbidden
            | GatewayError::Locked { .. }
            | GatewayError::NoHealthyBackend
            | GatewayError::StoreUnavailable(_)
            | GatewayError::ProviderUnavailable
            | GatewayError::BackendConnect(_)
            | GatewayError::BackendFailed(_)
            | GatewayError::BackendTimeout => true,
        }
    }

    /// The short, client-safe text for the error body.
    pub fn public_message(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(m) => m.as_str(),
            GatewayError::HeadersTooLarge => "request header fields too large",
            GatewayError::BodyTooLarge => "request body too large",
            GatewayError::RequestTimeout => "request body not received in time",
            GatewayError::ClientBody => "request body incomplete or malformed",
            GatewayError::NoRoute | GatewayError::NotFound => "not found",
            GatewayError::MethodNotAllowed { .. } => "method not allowed",
            GatewayError::Unauthenticated(Challenge::InvalidToken(_)) => "invalid credentials",
            GatewayError::Unauthenticated(_) => "authentication required",
            GatewayError::Forbidden => "forbidden",
            GatewayError::Locked { .. } => "too many attempts, try again later",
            GatewayError::UsernameTooLong => "username too long",
            GatewayError::NoHealthyBackend => "no healthy backend",
            GatewayError::StoreUnavailable(_) => "service unavailable",
            GatewayError::ProviderUnavailable => "sign-in provider unavailable, try again shortly",
            GatewayError::BackendConnect(_)
            | GatewayError::BackendFailed(_)
            | GatewayError::UnexpectedSwitch => "bad gateway",
            GatewayError::BackendTimeout => "gateway timeout",
        }
    }
}

/// A shared store that cannot answer: 503 (fail closed).
impl From<crate::state::StoreError> for GatewayError {
    fn from(e: crate::state::StoreError) -> Self {
        GatewayError::StoreUnavailable(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_contract_status() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let table: Vec<(GatewayError, u16)> = vec![
            (GatewayError::BadRequest(Malformed::Path), 400),
            (GatewayError::HeadersTooLarge, 431),
            (GatewayError::BodyTooLarge, 413),
            (GatewayError::RequestTimeout, 408),
            (GatewayError::ClientBody, 400),
            (GatewayError::NoRoute, 404),
            (GatewayError::NotFound, 404),
            (GatewayError::MethodNotAllowed { allow: "GET" }, 405),
            (GatewayError::Unauthenticated(Challenge::Missing), 401),
            (
                GatewayError::Unauthenticated(Challenge::InvalidToken("expired")),
                401,
            ),
            (
                GatewayError::Unauthenticated(Challenge::Login {
                    location: "/".into(),
                }),
                302,
            ),
            (GatewayError::Forbidden, 403),
            (
                GatewayError::Locked {
                    retry_after: Duration::from_secs(1),
                },
                429,
            ),
            (GatewayError::UsernameTooLong, 400),
            (GatewayError::NoHealthyBackend, 503),
            (GatewayError::StoreUnavailable(Box::new(io())), 503),
            (GatewayError::ProviderUnavailable, 503),
            (GatewayError::BackendConnect(io()), 502),
            (GatewayError::UnexpectedSwitch, 502),
            (GatewayError::BackendTimeout, 504),
        ];
        for (e, status) in table {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert!(!e.public_message().is_empty());
            // Every 400, 408, 413 and 431 ends an HTTP/1.1 connection.
            if matches!(status, 400 | 408 | 413 | 431) {
                assert!(!e.can_reuse_connection(), "{e:?}");
            }
        }
        assert!(!GatewayError::UnexpectedSwitch.can_reuse_connection());
    }
}
