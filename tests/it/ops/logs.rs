//! What operators read: log lines as plain text fields (error chains, not
//! Rust's Debug form; request ids unquoted; durations as written), and a
//! reload that applies what it can and names the rest once.

use super::*;
use crate::support::client::req;
use crate::support::process::GwProcess;
use std::time::Duration;

/// A gateway logging in `format` with a route to a dead backend and one
/// to a live one, after a request to each (`/dead/x`: 502, `/fine`: 200):
/// the gateway, the dead address, and the failed request's id.
async fn failed_then_fine(format: &str) -> (GwProcess, std::net::SocketAddr, String) {
    let b = Backend::start("b").await;
    let dead = dead_addr();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"{format}\"\n\
         [[upstreams]]\nname = \"dead\"\nbackends = [\"{dead}\"]\n\
         [[upstreams]]\nname = \"ok\"\nbackends = [\"{}\"]\n\
         [[routes]]\nname = \"dead\"\npath_prefix = \"/dead\"\nupstream = \"dead\"\nauth = \"none\"\n\
         [[routes]]\nname = \"ok\"\npath_prefix = \"/\"\nupstream = \"ok\"\nauth = \"none\"\n",
        b.addr
    );
    let gw = GwProcess::spawn(&cfg, None).await;
    let c = Client::plain(gw.listen);
    let failed = c.get("/dead/x").await;
    assert_eq!(failed.status, 502);
    let rid = failed.header("x-request-id").unwrap().to_string();
    assert_eq!(c.get("/fine").await.status, 200);
    (gw, dead, rid)
}

#[tokio::test]
async fn json_logs_carry_plain_request_ids_error_chains_and_short_durations() {
    let (gw, dead, rid) = failed_then_fine("json").await;
    let mut lines: Vec<serde_json::Value> = Vec::new();
    assert!(
        poll(Duration::from_secs(5), || {
            lines = gw
                .log()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            std::future::ready(lines.iter().any(|l| l["path"] == "/fine"))
        })
        .await,
        "{}",
        gw.log()
    );
    let warn = lines
        .iter()
        .find(|l| l["message"] == "request failed")
        .unwrap_or_else(|| panic!("no failure line: {}", gw.log()));
    assert_eq!(warn["request_id"], rid.as_str(), "{warn}");
    // Lines logged while serving a request carry its span: id, route and
    // the backend it was sent to.
    assert_eq!(warn["span"]["request_id"], rid.as_str(), "{warn}");
    assert_eq!(warn["span"]["route"], "dead", "{warn}");
    assert_eq!(warn["span"]["backend"], dead.to_string().as_str(), "{warn}");
    let error = warn["error"].as_str().unwrap();
    assert!(error.starts_with("backend connection failed: "), "{error}");
    assert!(
        !error.contains("Some(") && !error.contains("Custom {"),
        "{error}"
    );
    for access in lines.iter().filter(|l| l["status"].is_number()) {
        let d = access["duration_ms"].to_string();
        let decimals = d.split_once('.').map_or(0, |(_, f)| f.len());
        assert!(decimals <= 3, "duration_ms = {d}");
    }
}

/// Text lines logged while serving a request name it (`request{...}:`,
/// with the route and backend once known); the access line, written once
/// the request is done, carries its fields itself and no span; lines from
/// other requests and outside requests carry none.
#[tokio::test]
async fn text_lines_inside_a_request_carry_its_span_and_no_other_line_does() {
    let (gw, dead, rid) = failed_then_fine("text").await;
    let mut log = String::new();
    assert!(
        poll(Duration::from_secs(5), || {
            log = gw.log();
            std::future::ready(log.contains("path=/fine"))
        })
        .await,
        "{log}"
    );
    let warn = log
        .lines()
        .find(|l| l.contains("request failed"))
        .unwrap_or_else(|| panic!("no failure line: {log}"));
    let span = format!("request{{request_id=\"{rid}\" route=\"dead\" backend=\"{dead}\"}}: ");
    assert!(warn.contains(&span), "{warn}");
    assert_eq!(log.matches("request{").count(), 1, "{log}");
}

#[tokio::test]
async fn reload_applies_max_connections_and_names_what_needs_a_restart_once() {
    let b = Backend::start("b").await;
    let admin_cfg = format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n");
    let cfg = |extra: &str| {
        simple_proxy_config(&[&b])
            .replacen("[admin]\nlisten = \"127.0.0.1:0\"\n", &admin_cfg, 1)
            .replacen("[server]\n", &format!("[server]\n{extra}"), 1)
    };
    let gw = Gw::start(&cfg("max_connections = 1\n")).await;
    let c = gw.plain();
    // The one permitted connection, kept open.
    let (mut first, _) = c.connect().await.unwrap();
    assert_eq!(
        first.send(req("GET", "/", &[], "")).await.unwrap().status,
        200
    );
    // A second one waits in the accept backlog.
    let mut waiting = tokio::spawn({
        let c = c.clone();
        async move { c.get("/").await.status }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "max_connections = 1 let a second in"
    );

    let listen = gw.addr();
    let admin = gw.admin();
    std::fs::write(
        &gw.config_path,
        cfg("max_connections = 3\nworker_threads = 3\n")
            .replacen("127.0.0.1:0", &listen.to_string(), 1)
            .replacen("127.0.0.1:0", &admin.to_string(), 1)
            .replace(
                "access_log = false",
                "access_log = false\nformat = \"json\"",
            ),
    )
    .unwrap();
    let r = Client::plain(admin)
        .send(req(
            "POST",
            "/admin/reload",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            "",
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let warnings: Vec<&str> = j["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("server.worker_threads")),
        "{j}"
    );
    assert!(warnings.iter().any(|w| w.contains("log.format")), "{j}");
    // Exactly those two need a restart: max_connections was applied.
    let restarts: Vec<_> = warnings.iter().filter(|w| w.contains("restart")).collect();
    assert_eq!(restarts.len(), 2, "{j}");
    assert!(
        !warnings.iter().any(|w| w.contains("max_connections")),
        "{j}"
    );
    assert!(j["summary"].get("warnings").is_none(), "warnings once: {j}");
    // The waiting connection is let in by the larger limit.
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("max_connections = 3 was applied")
        .unwrap();
    assert_eq!(status, 200);
    drop(first);
    gw.stop().await;
}

#[tokio::test]
async fn the_gateways_own_endpoints_have_their_own_route_label() {
    let b = Backend::start("b").await;
    let gw = Gw::start(
        &simple_proxy_config(&[&b]).replace("path_prefix = \"/\"", "path_prefix = \"/app\""),
    )
    .await;
    let c = gw.plain();
    assert_eq!(c.get("/.gatehouse/nothing-here").await.status, 404);
    assert_eq!(c.get("/nowhere").await.status, 404);
    let m = Client::plain(gw.admin()).get("/metrics").await.text();
    assert!(
        m.contains("gatehouse_requests_total{route=\"_gatehouse\",status=\"404\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("gatehouse_requests_total{route=\"\",status=\"404\"} 1"),
        "{m}"
    );
    gw.stop().await;
}
