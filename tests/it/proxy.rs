use crate::support::*;

#[tokio::test]
async fn proxies_a_request_and_sets_forwarding_headers() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    let r = gw
        .plain()
        .get_with("/hello?x=1", &[("host", "app.example.com:8080")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["backend"], "b1");
    let seen = b.last();
    assert_eq!(seen.path_and_query, "/hello?x=1");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "app.example.com:8080");
    assert_eq!(seen.headers["host"], "app.example.com:8080");
    let rid = r
        .header("x-request-id")
        .expect("request id on the response");
    assert_eq!(seen.headers["x-request-id"], rid);
    gw.stop().await;
}
