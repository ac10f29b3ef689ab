//! `[sessions]` with `store = "redis"` (SPEC 13): which Redis, and how to
//! reach it — standalone (`redis_url`), Sentinel (`redis_sentinel`) or
//! Cluster (`redis_cluster`), TLS, an ACL user and the passwords.
//!
//! Secrets never leave this module in printable form: [`RedisSettings`]'s
//! Debug and [`RedisSettings::describe`] drop passwords and a URL's
//! userinfo, so the settings can appear in `check` output, logs and
//! `/readyz`.

use super::file::SessionsFile;
use super::validate::Check;
use super::Secret;
use serde::Deserialize;
use std::fmt;

/// `redis_sentinel = { master = "...", nodes = [...], db = 0 }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SentinelFile {
    #[serde(default)]
    pub master: String,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub db: i64,
}

/// Which Redis.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisForm {
    /// `redis://` or `rediss://` (TLS).
    Standalone { url: String },
    /// Ask these sentinels for the master of `master`.
    Sentinel {
        master: String,
        nodes: Vec<String>,
        db: i64,
    },
    /// Seed nodes of a Redis Cluster.
    Cluster { nodes: Vec<String> },
}

#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub form: RedisForm,
    pub username: Option<String>,
    /// `redis_password*`; wins over a password in `redis_url`.
    pub password: Option<Secret>,
    /// TLS to Redis (and to the sentinels): `redis_tls`, or `rediss://`.
    pub tls: bool,
    /// `redis_ca_file`'s PEM bytes; none: the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub sentinel_password: Option<Secret>,
}

impl RedisSettings {
    /// The form and its addresses, safe to print (no credentials).
    pub fn describe(&self) -> String {
        match &self.form {
            RedisForm::Standalone { url } => format!("standalone {}", redact_url(url)),
            RedisForm::Sentinel { master, nodes, .. } => {
                format!("sentinel master `{master}` via {}", nodes.join(", "))
            }
            RedisForm::Cluster { nodes } => format!("cluster seeds {}", nodes.join(", ")),
        }
    }

    pub fn form_name(&self) -> &'static str {
        match self.form {
            RedisForm::Standalone { .. } => "standalone",
            RedisForm::Sentinel { .. } => "sentinel",
            RedisForm::Cluster { .. } => "cluster",
        }
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("form", &self.describe())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `scheme://user:pass@host/..` without the userinfo.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_start = rest.find('@').map_or(0, |i| i + 1);
            // Only a userinfo before the first `/` is one.
            let slash = rest.find('/').unwrap_or(rest.len());
            if host_start > 0 && host_start <= slash {
                format!("{scheme}://{}", &rest[host_start..])
            } else {
                url.to_string()
            }
        }
        None => "<not a URL>".to_string(),
    }
}

fn host_port(c: &mut Check<'_>, path: &str, node: &str) {
    let ok = node
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        c.err(path, format!("`{node}` is not HOST:PORT"));
    }
}

/// The Redis settings of `[sessions]`, when its store is Redis; problems
/// go to `c` under `sessions.*`.
pub(super) fn settings(c: &mut Check<'_>, s: &SessionsFile) -> Option<RedisSettings> {
    let given = [
        s.redis_url.is_some(),
        s.redis_sentinel.is_some(),
        s.redis_cluster.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        c.err(
            "sessions",
            if given == 0 {
                "store = \"redis\" needs one of redis_url, redis_sentinel and redis_cluster"
            } else {
                "give only one of redis_url, redis_sentinel and redis_cluster"
            },
        );
        return None;
    }
    let mut tls = s.redis_tls.unwrap_or(false);
    let form = if let Some(url) = &s.redis_url {
        match crate::state::redis::url_uses_tls(url) {
            // The crate's message may quote the URL: not repeated here.
            None => c.err(
                "sessions.redis_url",
                format!(
                    "`{}` is not a Redis URL (redis://HOST:PORT/DB or rediss://...)",
                    redact_url(url)
                ),
            ),
            Some(is_tls) => {
                if s.redis_tls == Some(false) && is_tls {
                    c.err(
                        "sessions.redis_tls",
                        "redis_tls = false contradicts a rediss:// URL",
                    );
                }
                tls |= is_tls;
            }
        }
        RedisForm::Standalone { url: url.clone() }
    } else if let Some(sen) = &s.redis_sentinel {
        if sen.master.trim().is_empty() {
            c.err("sessions.redis_sentinel.master", "must name the master");
        }
        if sen.nodes.is_empty() {
            c.err(
                "sessions.redis_sentinel.nodes",
                "must list at least one sentinel (HOST:PORT)",
            );
        }
        for (i, n) in sen.nodes.iter().enumerate() {
            host_port(c, &format!("sessions.redis_sentinel.nodes[{i}]"), n);
        }
        if sen.db < 0 {
            c.err("sessions.redis_sentinel.db", "must be 0 or more");
        }
        RedisForm::Sentinel {
            master: sen.master.clone(),
            nodes: sen.nodes.clone(),
            db: sen.db,
        }
    } else {
        let nodes = s.redis_cluster.clone().unwrap_or_default();
        if nodes.is_empty() {
            c.err(
                "sessions.redis_cluster",
                "must list at least one seed node (HOST:PORT)",
            );
        }
        for (i, n) in nodes.iter().enumerate() {
            host_port(c, &format!("sessions.redis_cluster[{i}]"), n);
        }
        RedisForm::Cluster { nodes }
    };
    if s.redis_ca_file.is_some() && !tls {
        c.err(
            "sessions.redis_ca_file",
            "a CA without TLS: set redis_tls = true or use a rediss:// URL",
        );
    }
    let ca_pem = s.redis_ca_file.as_ref().and_then(|f| {
        let full = c.file_path(f);
        match super::read::read_limited(&full, super::read::MAX_CA_BUNDLE_BYTES) {
            // The same parse as every other CA bundle; the bytes go to the
            // Redis client as they are.
            Ok(bytes) => match crate::server::tls::parse_certs(&bytes, &full) {
                Ok(_) => Some(bytes),
                Err(e) => {
                    c.err("sessions.redis_ca_file", e.to_string());
                    None
                }
            },
            Err(e) => {
                c.err("sessions.redis_ca_file", e.to_string());
                None
            }
        }
    });
    let password = c.secret(
        "sessions",
        "redis_password",
        &s.redis_password,
        &s.redis_password_file,
        &s.redis_password_env,
    );
    let sentinel_password = c.secret(
        "sessions",
        "sentinel_password",
        &s.sentinel_password,
        &s.sentinel_password_file,
        &s.sentinel_password_env,
    );
    if sentinel_password.is_some() && s.redis_sentinel.is_none() {
        c.err(
            "sessions.sentinel_password",
            "only for redis_sentinel (the sentinels' own password)",
        );
    }
    if let Some(u) = &s.redis_username {
        if u.is_empty() || u.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            c.err(
                "sessions.redis_username",
                "must be a non-empty name without spaces",
            );
        }
    }
    Some(RedisSettings {
        form,
        username: s.redis_username.clone(),
        password,
        tls,
        ca_pem,
        sentinel_password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_userinfo_when_printed() {
        assert_eq!(
            redact_url("redis://user:s3cret@10.0.0.5:6379/0"),
            "redis://10.0.0.5:6379/0"
        );
        assert_eq!(redact_url("rediss://:pw@h:1"), "rediss://h:1");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        let s = RedisSettings {
            form: RedisForm::Standalone {
                url: "redis://u:topsecret@h:1/0".into(),
            },
            username: Some("u".into()),
            password: Some(Secret(b"alsosecret".to_vec())),
            tls: false,
            ca_pem: None,
            sentinel_password: Some(Secret(b"sentinelsecret".to_vec())),
        };
        let printed = format!("{s:?} {}", s.describe());
        for secret in ["topsecret", "alsosecret", "sentinelsecret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    fn check(sessions: &str) -> String {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[sessions]\nstore = \"redis\"\n{sessions}\n\
             [[upstreams]]\nname = \"a\"\nbackends = [\"127.0.0.1:1\"]\n\
             [[routes]]\nname = \"a\"\npath_prefix = \"/\"\nupstream = \"a\"\nauth = \"none\"\n"
        );
        match crate::config::load_str(&text, std::path::Path::new("/nonexistent/gatehouse.toml")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn check_refuses_what_spec_13_lists() {
        assert!(
            check("").contains("needs one of redis_url"),
            "{}",
            check("")
        );
        let two = check("redis_url = \"redis://h:1\"\nredis_cluster = [\"h:2\"]");
        assert!(two.contains("only one of"), "{two}");
        let e = check("redis_sentinel = { master = \"\", nodes = [] }");
        assert!(e.contains("sessions.redis_sentinel.master"), "{e}");
        assert!(e.contains("sessions.redis_sentinel.nodes"), "{e}");
        let e = check("redis_cluster = []");
        assert!(e.contains("sessions.redis_cluster"), "{e}");
        let e = check("redis_cluster = [\"nohost\"]");
        assert!(e.contains("sessions.redis_cluster[0]"), "{e}");
        let e = check("redis_url = \"rediss://h:1\"\nredis_ca_file = \"missing-ca.pem\"");
        assert!(e.contains("sessions.redis_ca_file"), "{e}");
        let e = check("redis_url = \"redis://h:1\"\nredis_password_file = \"missing\"");
        assert!(e.contains("sessions.redis_password_file"), "{e}");
        let e = check("redis_url = \"redis://u:pw-in-url@h:1\"\nredis_password = \"a\"\nredis_password_env = \"B\"");
        assert!(e.contains("only one of `redis_password`"), "{e}");
        assert!(!e.contains("pw-in-url"), "{e}");
        let e = check("redis_url = \"redis://u:pw-in-url@h:1\"\nkey_prefix = \"{x}:\"");
        assert!(e.contains("sessions.key_prefix"), "{e}");
        assert!(!e.contains("pw-in-url"), "{e}");
        assert_eq!(
            check("redis_sentinel = { master = \"m\", nodes = [\"h:26379\"] }"),
            ""
        );
        assert_eq!(check("redis_cluster = [\"h:7000\", \"h:7001\"]"), "");
    }
}
