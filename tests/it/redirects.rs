//! Where a login sends the browser (`rd`, SPEC 11): relative paths, this
//! host, and hosts a route names or matches by wildcard; `http://` only
//! when the login itself arrived over plain HTTP.

use crate::support::client::req;
use crate::support::sessions::{session_gateway, Store, ALICE_PW};
use crate::support::*;

/// A form login carrying `rd`; the `Location` it answers with.
async fn login_to(c: &Client, rd: &str) -> String {
    let body = format!(
        "username=alice&password={}&rd={}",
        ALICE_PW.replace(' ', "+"),
        gatehouse::auth::url_encode(rd)
    );
    let r = c
        .send(req(
            "POST",
            "/.gatehouse/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", "http://localhost"),
            ],
            &body,
        ))
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    r.header("location").unwrap().to_string()
}

#[tokio::test]
async fn rd_may_name_a_wildcard_routes_host_and_http_only_over_plain_http() {
    let b = Backend::start("app").await;
    let wildcard = "[[routes]]\nname = \"corp\"\nhost = \"*.corp.test\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n";
    let gw = session_gateway(&Store::Memory, &b, "", wildcard).await;
    let c = gw.plain();
    assert_eq!(
        login_to(&c, "https://wiki.corp.test/page?x=1").await,
        "https://wiki.corp.test/page?x=1"
    );
    // This login came over plain HTTP: http:// is where the user was.
    assert_eq!(
        login_to(&c, "http://wiki.corp.test/").await,
        "http://wiki.corp.test/"
    );
    for bad in [
        "https://corp.test/",
        "https://a.b.corp.test/",
        "https://evil.test/",
        "https://wiki.corp.test.evil.test/",
        "https://evil.test@wiki.corp.test/",
        "//wiki.corp.test/",
        "javascript:alert(1)",
    ] {
        assert_eq!(login_to(&c, bad).await, "/", "{bad}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn rd_authorities_that_parsers_could_read_apart_fall_back_to_root() {
    let b = Backend::start("app").await;
    let wildcard = "[[routes]]\nname = \"corp\"\nhost = \"*.corp.test\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n";
    let gw = session_gateway(&Store::Memory, &b, "", wildcard).await;
    let c = gw.plain();
    // Found by the login_form fuzz target: `evil:x.corp.test` ends with
    // `.corp.test` and has one label before it, yet a browser reads the
    // host as `evil`.
    for bad in [
        "https://evil:x.corp.test/",
        "https://evil.test:x.corp.test/",
        "https://wiki.corp.test:/",
        "https://wiki.corp.test:80x/",
        "https://wiki%2ecorp.test/",
        "https://[::1/",
    ] {
        assert_eq!(login_to(&c, bad).await, "/", "{bad}");
    }
    assert_eq!(
        login_to(&c, "https://wiki.corp.test:8443/x").await,
        "https://wiki.corp.test:8443/x"
    );
    gw.stop().await;
}
