//! The admin listener: probes, metrics, the token-protected API, reload.

use crate::support::*;

const TOKEN: &str = "test-admin-token-0123456789";

fn with_admin_token(cfg: &str) -> String {
    cfg.replace("[admin]\n", &format!("[admin]\ntoken = \"{TOKEN}\"\n"))
}

#[tokio::test]
async fn health_ready_and_metrics_are_open() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&simple_proxy_config(&[&b])).await;
    assert_eq!(gw.plain().get("/x").await.status, 200);
    assert_eq!(gw.plain().get("/.gatehouse/x").await.status, 404);
    let admin = Client::plain(gw.admin());
    assert_eq!(admin.get("/healthz").await.status, 200);
    assert_eq!(admin.get("/readyz").await.status, 200);
    let m = admin.get("/metrics").await;
    assert_eq!(m.status, 200);
    let text = m.text();
    assert!(
        text.contains("gatehouse_requests_total{route=\"app\",status=\"200\"} 1"),
        "{text}"
    );
    // The gateway's own endpoints count under their own label, not `""`.
    assert!(text.contains("gatehouse_requests_total{route=\"_gatehouse\",status=\"404\"} 1"));
    assert!(text.contains("gatehouse_request_duration_seconds_count{route=\"app\"} 1"));
    assert!(text.contains(&format!(
        "gatehouse_upstream_requests_total{{upstream=\"app\",backend=\"{}\",status=\"200\"}} 1",
        b.addr
    )));
    assert!(text.contains(&format!(
        "gatehouse_backend_healthy{{upstream=\"app\",backend=\"{}\"}} 1",
        b.addr
    )));
    assert!(text.contains("gatehouse_connections_open"));
    gw.stop().await;
}

#[tokio::test]
async fn admin_api_needs_the_bearer_token() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&with_admin_token(&simple_proxy_config(&[&b]))).await;
    let admin = Client::plain(gw.admin());
    assert_eq!(admin.get("/admin/upstreams").await.status, 401);
    assert_eq!(
        admin
            .get_with("/admin/upstreams", &[("authorization", "Bearer wrong")])
            .await
            .status,
        401
    );
    let auth = format!("Bearer {TOKEN}");
    let r = admin
        .get_with("/admin/upstreams", &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["upstreams"][0]["name"], "app");
    assert_eq!(j["upstreams"][0]["backends"][0]["addr"], b.addr);
    assert_eq!(j["upstreams"][0]["backends"][0]["healthy"], true);
    gw.stop().await;
}

#[tokio::test]
async fn drained_backend_gets_no_new_requests() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = Gw::start(&with_admin_token(&simple_proxy_config(&[&a, &b]))).await;
    let admin = Client::plain(gw.admin());
    let auth = format!("Bearer {TOKEN}");
    let path = format!(
        "/admin/upstreams/app/backends/{}/drain",
        a.addr.replace(':', "%3A")
    );
    let r = admin
        .send(client::req("POST", &path, &[("authorization", &auth)], ""))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..10 {
        assert_eq!(gw.plain().get("/").await.json()["backend"], "b");
    }
    assert_eq!(a.count(), 0);
    let path = format!("/admin/upstreams/app/backends/{}/undrain", a.addr);
    assert_eq!(
        admin
            .send(client::req("POST", &path, &[("authorization", &auth)], ""))
            .await
            .status,
        200
    );
    for _ in 0..4 {
        gw.plain().get("/").await;
    }
    assert!(a.count() > 0);
    gw.stop().await;
}

#[tokio::test]
async fn reload_swaps_a_valid_config_and_keeps_the_old_one_on_errors() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = Gw::start(&with_admin_token(&simple_proxy_config(&[&a]))).await;
    let admin = Client::plain(gw.admin());
    let auth = format!("Bearer {TOKEN}");
    assert_eq!(gw.plain().get("/").await.json()["backend"], "a");

    // A broken file: 400 with the errors, old config still serving.
    std::fs::write(&gw.config_path, "[server]\nlisten = 5\n").unwrap();
    let r = admin
        .send(client::req(
            "POST",
            "/admin/reload",
            &[("authorization", &auth)],
            "",
        ))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("server.listen"), "{}", r.text());
    assert_eq!(gw.plain().get("/").await.json()["backend"], "a");

    // A valid one pointing at b: swapped in.
    let listen = gw.addr();
    let admin_addr = gw.admin();
    let cfg = with_admin_token(&simple_proxy_config(&[&b]))
        .replacen("127.0.0.1:0", &listen.to_string(), 1)
        .replacen("127.0.0.1:0", &admin_addr.to_string(), 1);
    std::fs::write(&gw.config_path, cfg).unwrap();
    let r = admin
        .send(client::req(
            "POST",
            "/admin/reload",
            &[("authorization", &auth)],
            "",
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("restart"), "{}", r.text());
    assert_eq!(gw.plain().get("/").await.json()["backend"], "b");
    let m = admin.get("/metrics").await.text();
    assert!(m.contains("gatehouse_config_reloads_total{result=\"success\"} 1"));
    assert!(m.contains("gatehouse_config_reloads_total{result=\"failure\"} 1"));

    // A listener address change is reported as needing a restart.
    let moved =
        with_admin_token(&simple_proxy_config(&[&b])).replacen("127.0.0.1:0", "127.0.0.1:1", 1);
    std::fs::write(&gw.config_path, moved).unwrap();
    let r = admin
        .send(client::req(
            "POST",
            "/admin/reload",
            &[("authorization", &auth)],
            "",
        ))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("restart"), "{}", r.text());
    assert_eq!(
        gw.plain().get("/").await.status,
        200,
        "old listener keeps serving"
    );
    gw.stop().await;
}
