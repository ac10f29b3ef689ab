//! Every metric SPEC 8 names is exported, with the label names and label
//! values SPEC 11 gives it.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

/// `/metrics` parsed: sample name -> label sets, and family -> `# TYPE`.
pub struct Scrape {
    pub samples: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    pub types: BTreeMap<String, String>,
}

impl Scrape {
    pub async fn from(admin: SocketAddr) -> Scrape {
        let r = Client::plain(admin).get("/metrics").await;
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
        Scrape::parse(&r.text())
    }

    pub fn parse(text: &str) -> Scrape {
        let mut samples: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (name, kind) = t.split_once(' ').unwrap();
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => (name, labels(rest.strip_suffix('}').unwrap())),
            };
            samples.entry(name.to_string()).or_default().push(labels);
        }
        Scrape { samples, types }
    }

    /// The label names of `name`'s samples (all samples must agree).
    fn label_names(&self, name: &str) -> BTreeSet<String> {
        let sets: BTreeSet<BTreeSet<String>> = self
            .samples
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not exported"))
            .iter()
            .map(|l| l.keys().cloned().collect())
            .collect();
        assert_eq!(sets.len(), 1, "{name} has differing label names: {sets:?}");
        sets.into_iter().next().unwrap()
    }

    fn values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples[name]
            .iter()
            .map(|l| l[label].clone())
            .collect()
    }
}

/// `a="x",b="y"` (values here never hold `,` or escaped quotes).
fn labels(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// SPEC 8: family, type, label names.
pub const SPEC_METRICS: &[(&str, &str, &[&str])] = &[
    ("gatehouse_requests_total", "counter", &["route", "status"]),
    (
        "gatehouse_request_duration_seconds",
        "histogram",
        &["route"],
    ),
    ("gatehouse_auth_total", "counter", &["method", "result"]),
    (
        "gatehouse_upstream_requests_total",
        "counter",
        &["upstream", "backend", "status"],
    ),
    (
        "gatehouse_backend_healthy",
        "gauge",
        &["upstream", "backend"],
    ),
    ("gatehouse_sticky_repins_total", "counter", &["upstream"]),
    ("gatehouse_sessions_active", "gauge", &[]),
    ("gatehouse_jwt_cache_hits_total", "counter", &[]),
    ("gatehouse_config_reloads_total", "counter", &["result"]),
    ("gatehouse_connections_open", "gauge", &[]),
];

/// A gateway with an open route, a session-protected route and some
/// traffic on both, plus one reload; returns it with its scrape.
pub async fn gateway_after_traffic() -> (Gw, Backend, Scrape) {
    let b = Backend::start("b").await;
    let cfg = format!(
        "{}[sessions]\nstore = \"memory\"\ncookie_secure = false\n\n[login]\n\n\
[[upstreams]]\nname = \"app\"\nbackends = [\"{}\"]\n\n\
[[routes]]\nname = \"private\"\npath_prefix = \"/private\"\nupstream = \"app\"\nauth = \"required\"\nmethods = [\"session\"]\non_unauthenticated = \"401\"\n\n\
[[routes]]\nname = \"open\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        crate::support::base_config(),
        b.addr
    );
    let gw = Gw::start(&cfg).await;
    for i in 0..3 {
        assert_eq!(gw.plain().get(&format!("/open/{i}")).await.status, 200);
    }
    assert_eq!(gw.plain().get("/status/503").await.status, 503);
    assert_eq!(gw.plain().get("/private/x").await.status, 401);
    gw.running().gateway.reload().await.unwrap();
    let scrape = Scrape::from(gw.admin()).await;
    (gw, b, scrape)
}

#[tokio::test]
async fn every_spec_metric_is_exported_with_its_labels() {
    let (gw, b, m) = gateway_after_traffic().await;
    for (family, kind, label_names) in SPEC_METRICS {
        assert_eq!(
            m.types.get(*family).map(String::as_str),
            Some(*kind),
            "# TYPE of {family}"
        );
        if *kind == "histogram" {
            let mut with_le = set(label_names);
            with_le.insert("le".into());
            assert_eq!(m.label_names(&format!("{family}_bucket")), with_le);
            assert_eq!(m.label_names(&format!("{family}_sum")), set(label_names));
            assert_eq!(m.label_names(&format!("{family}_count")), set(label_names));
        } else {
            assert_eq!(m.label_names(family), set(label_names), "{family}");
        }
    }

    // Label values as SPEC 11 settles them.
    let statuses = m.values("gatehouse_requests_total", "status");
    assert!(
        statuses.is_superset(&set(&["200", "401", "503"])),
        "{statuses:?}"
    );
    assert!(m
        .values("gatehouse_requests_total", "route")
        .contains("private"));
    assert_eq!(
        m.values("gatehouse_upstream_requests_total", "backend"),
        set(&[&b.addr])
    );
    assert_eq!(
        m.values("gatehouse_upstream_requests_total", "status"),
        set(&["200", "503"])
    );
    let results = set(&[
        "ok",
        "missing",
        "expired",
        "invalid",
        "revoked",
        "forbidden",
        "locked",
        "error",
    ]);
    assert!(m
        .values("gatehouse_auth_total", "result")
        .is_subset(&results));
    assert!(m.samples["gatehouse_auth_total"]
        .iter()
        .any(|l| l["method"] == "session" && l["result"] == "missing"));
    assert_eq!(
        m.values("gatehouse_config_reloads_total", "result"),
        set(&["success", "failure"])
    );
    assert_eq!(
        m.values("gatehouse_backend_healthy", "upstream"),
        set(&["app"])
    );
    assert_eq!(
        m.values("gatehouse_sticky_repins_total", "upstream"),
        set(&["app"])
    );
    // Histogram buckets end in +Inf.
    assert!(m.samples["gatehouse_request_duration_seconds_bucket"]
        .iter()
        .any(|l| l["le"] == "+Inf" && l["route"] == "open"));
    gw.stop().await;
}

#[tokio::test]
async fn grafana_dashboard_uses_only_exported_metrics() {
    let (gw, _b, m) = gateway_after_traffic().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/grafana/gatehouse-dashboard.json");
    let dash: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("gatehouse_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            used.insert(name);
        }
    }
    for name in &used {
        assert!(
            m.samples.contains_key(name),
            "the dashboard queries {name}, which /metrics does not export"
        );
    }
    // Every SPEC metric has a panel.
    for (family, kind, _) in SPEC_METRICS {
        let sample = if *kind == "histogram" {
            format!("{family}_bucket")
        } else {
            family.to_string()
        };
        assert!(used.contains(&sample), "no panel uses {sample}");
    }
    gw.stop().await;
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
