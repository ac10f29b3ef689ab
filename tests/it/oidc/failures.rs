//! A failed sign-in can be traced and retried: the page shows the request
//! id its response carries (and the log line names), and "Try again"
//! still leads where the user was going.

use super::op::Op;
use super::*;
use crate::support::process::GwProcess;
use serde_json::json;

/// The "Try again" link of a failure page.
fn try_again(page: &str) -> String {
    let at = page.find("\">Try again</a>").expect("a Try again link");
    let start = page[..at].rfind("href=\"").unwrap() + "href=\"".len();
    page[start..at].to_string()
}

#[tokio::test]
async fn the_failure_page_shows_the_request_id_and_try_again_keeps_rd() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let gw = start(&op, &b, "", "").await;

    // Refused after the state checked out (a wrong nonce).
    op.set_overrides(json!({"nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}));
    let mut a = agent(&gw);
    let r = sign_in(&mut a, "/app/page?x=1").await;
    assert_refused(&r, "wrong nonce");
    let rid = r.header("x-request-id").unwrap().to_string();
    assert!(
        r.text().contains(&format!("Request id: {rid}")),
        "{}",
        r.text()
    );
    let back = try_again(&r.text());
    assert_eq!(back, "/.gatehouse/login?rd=%2Fapp%2Fpage%3Fx%3D1");
    // It leads to the provider's button with the same rd, and from there
    // (the provider fixed) to the page the user wanted.
    op.set_overrides(json!({}));
    let page = a.get(&url(&back)).await;
    assert_eq!(page.status, 200);
    assert!(page
        .text()
        .contains("href=\"/.gatehouse/start/corp?rd=%2Fapp%2Fpage%3Fx%3D1\""));
    let r = sign_in(&mut a, "/app/page?x=1").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/app/page?x=1"));

    // An rd that /start refused is not brought back either.
    op.set_overrides(json!({"nonce": null}));
    let mut a = agent(&gw);
    let r = sign_in(&mut a, "https://evil.example/steal").await;
    assert_refused(&r, "no nonce");
    assert_eq!(try_again(&r.text()), "/.gatehouse/login");

    // No state cookie: nothing is known of rd; the id is still shown.
    let mut a = agent(&gw);
    let r = a
        .get(&url(
            "/.gatehouse/callback?code=c&state=s&rd=%2F%2Fevil.example",
        ))
        .await;
    assert_refused(&r, "no cookie");
    assert_eq!(try_again(&r.text()), "/.gatehouse/login");
    let rid = r.header("x-request-id").unwrap();
    assert!(r.text().contains(&format!("Request id: {rid}")));

    // An API client gets it in the JSON body, as with the gateway's other
    // errors.
    let r = gw
        .plain()
        .get_with("/.gatehouse/callback?code=c&state=s", &[("host", GW)])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["request_id"],
        r.header("x-request-id").unwrap(),
        "{}",
        r.text()
    );
    gw.stop().await;
}

/// The log line of a refused sign-in carries the request id of the
/// response the user saw.
#[tokio::test]
async fn the_refusal_log_line_names_the_request_id() {
    let op = Op::start().await;
    let b = Backend::start("app").await;
    let cfg = config(&op, &b, "", "", "").replace(
        "[log]\naccess_log = false",
        "[log]\nformat = \"json\"\naccess_log = false",
    );
    let gw = GwProcess::spawn(&cfg, None).await;
    let admin = Client::plain(gw.admin);
    assert!(
        crate::support::poll(Duration::from_secs(10), || async {
            admin.get("/readyz").await.status == 200
        })
        .await,
        "never ready: {}",
        gw.log()
    );
    op.set_overrides(json!({"nonce": null}));
    let mut a = Agent::new();
    a.map(GW, gw.listen);
    let r = sign_in(&mut a, "/app").await;
    assert_refused(&r, "no nonce");
    let rid = r.header("x-request-id").unwrap().to_string();
    let mut line = None;
    assert!(
        poll(Duration::from_secs(5), || {
            line = gw
                .log()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|l| l["message"] == "OIDC sign-in refused");
            std::future::ready(line.is_some())
        })
        .await,
        "{}",
        gw.log()
    );
    let line = line.unwrap();
    assert_eq!(line["request_id"], rid.as_str(), "{line}");
    assert_eq!(line["provider"], "corp", "{line}");
}
