//! CSRF `origin` for JWTs read from cookies (SPEC 16): a browser attaches
//! a `cookie:` token to cross-site requests by itself, as it does the
//! session cookie, so unsafe methods authenticated by one need the
//! gateway's own origin. A token in a header was put there by code that
//! chose to send it, and is not checked.

use super::*;
use crate::support::client::req;

fn cookie_issuer() -> String {
    format!(
        "{}token_sources = [\"header:Authorization\", \"cookie:access_token\", \"header:X-Api-Token\"]\n",
        hs_issuer()
    )
}

/// `method /x` with `headers` (and a small body on unsafe methods);
/// returns the status.
async fn send(gw: &Gw, method: &str, headers: &[(&str, &str)]) -> u16 {
    let body = if matches!(method, "GET" | "HEAD" | "OPTIONS") {
        ""
    } else {
        "a=1"
    };
    gw.plain()
        .send(req(method, "/x", headers, body))
        .await
        .status
}

/// `cookie` as the Cookie header, then `extra`.
fn with_cookie<'a>(cookie: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![("cookie", cookie)];
    h.extend_from_slice(extra);
    h
}

#[tokio::test]
async fn unsafe_methods_with_a_cookie_token_need_the_same_origin() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&config(&b, JWT_ROUTE, &cookie_issuer())).await;
    let t = hs_key().sign(None, &claims());
    let cookie = format!("theme=dark; access_token={t}");

    // Cross-site, or saying nothing: refused before the backend.
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for extra in [
            &[("origin", "http://evil.example")][..],
            &[("origin", "null")],
            &[("origin", "https://localhost")],
            &[("referer", "http://evil.example/page")],
            &[],
        ] {
            assert_eq!(
                send(&gw, method, &with_cookie(&cookie, extra)).await,
                403,
                "{method} {extra:?}"
            );
        }
    }
    assert_eq!(b.count(), 0);
    assert_eq!(auth_count(&gw, AuthResult::Forbidden), 20);

    // Same origin: let through, with the identity.
    assert_eq!(
        send(
            &gw,
            "POST",
            &with_cookie(&cookie, &[("origin", "http://localhost")])
        )
        .await,
        200
    );
    assert_eq!(b.last().headers["x-auth-user"], "alice");
    assert_eq!(
        send(
            &gw,
            "DELETE",
            &with_cookie(&cookie, &[("referer", "http://localhost/app/page")])
        )
        .await,
        200
    );
    // Safe methods need nothing.
    for method in ["GET", "HEAD", "OPTIONS"] {
        assert_eq!(
            send(
                &gw,
                method,
                &with_cookie(&cookie, &[("origin", "http://evil.example")])
            )
            .await,
            200,
            "{method}"
        );
    }

    // Tokens in headers are not cookie-borne: no origin needed.
    let bearer = format!("Bearer {t}");
    for h in [
        [
            ("authorization", bearer.as_str()),
            ("origin", "http://evil.example"),
        ],
        [
            ("x-api-token", t.as_str()),
            ("origin", "http://evil.example"),
        ],
    ] {
        assert_eq!(send(&gw, "POST", &h).await, 200, "{h:?}");
    }
    // Both present: the header comes first in token_sources and is the one
    // used, so the cookie's origin rule does not apply.
    assert_eq!(
        send(
            &gw,
            "POST",
            &with_cookie(
                &cookie,
                &[
                    ("authorization", &bearer),
                    ("origin", "http://evil.example")
                ]
            )
        )
        .await,
        200
    );
    // An invalid cookie token is still an invalid token (401), not a 403.
    let bad = hs_key().sign(None, &with(claims(), json!({"aud": "nope"})));
    let r = gw
        .plain()
        .send(req(
            "POST",
            "/x",
            &[
                ("cookie", &format!("access_token={bad}")),
                ("origin", "http://evil.example"),
            ],
            "",
        ))
        .await;
    assert_invalid_token(&r, &bad, "bad cookie token");
    assert_eq!(auth_count(&gw, AuthResult::Forbidden), 20);
    gw.stop().await;
}

/// `[sessions] csrf = "off"` turns the check off for cookie tokens too.
#[tokio::test]
async fn csrf_off_lets_cross_site_cookie_tokens_through() {
    let b = Backend::start("b1").await;
    let rest = format!("[sessions]\ncsrf = \"off\"\n\n{}", cookie_issuer());
    let gw = Gw::start(&config(&b, JWT_ROUTE, &rest)).await;
    let t = hs_key().sign(None, &claims());
    let cookie = format!("access_token={t}");
    let status = send(
        &gw,
        "POST",
        &[("cookie", &cookie), ("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(status, 200);
    gw.stop().await;
}
