//! Responses the gateway writes itself: short JSON, or a small HTML page
//! for browsers. They name no backend, key, token or internal error.

use crate::body::Body;
use crate::error::{Challenge, GatewayError};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

/// A browser: its `Accept` contains `text/html` (SPEC 11).
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

fn json_escape(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The response for an error, with the headers its status calls for.
pub fn error(e: &GatewayError, request_id: &HeaderValue, html: bool) -> Response<Body> {
    let status = e.status();
    let msg = e.public_message();
    let rid = request_id.to_str().unwrap_or("");
    let (ctype, body) = if html {
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code} {reason}</title>\
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:15vh auto;padding:0 1rem;color:#222}}\
small{{color:#777}}</style></head><body><h1>{code} {reason}</h1><p>{msg}.</p>\
<p><small>Request id: {rid}</small></p></body></html>\n",
                code = status.as_u16(),
                reason = status.canonical_reason().unwrap_or(""),
                msg = html_escape(msg),
                rid = html_escape(rid),
            ),
        )
    } else {
        (
            "application/json",
            format!(
                "{{\"error\":{},\"request_id\":{}}}\n",
                json_escape(msg),
                json_escape(rid)
            ),
        )
    };
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match e {
        GatewayError::Unauthenticated(Challenge::Missing) => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gatehouse\""),
            );
        }
        GatewayError::Unauthenticated(Challenge::InvalidToken(why)) => {
            let v = format!(
                "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"{why}\""
            );
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        GatewayError::Unauthenticated(Challenge::Login { location }) => {
            if let Ok(v) = HeaderValue::from_str(location) {
                h.insert(header::LOCATION, v);
            }
        }
        GatewayError::Locked { retry_after } => {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        GatewayError::MethodNotAllowed { allow } => {
            h.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        _ => {}
    }
    resp
}

/// A plain JSON response with `Cache-Control: no-store`.
pub fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
