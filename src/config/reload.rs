//! What a reload can apply and what needs a restart, decided field by
//! field from the diff of the old and the new [`Config`].
//!
//! Every field of [`Config`] and of its sections (`[server]`, `[admin]`,
//! `[log]`, `[sessions]`, `[identity]`, `[login]`) is named below in a
//! destructuring without `..`: a field added to any of them does not
//! compile until it is classified here. Routes, upstreams, `[[jwt]]` and
//! `[[oidc]]` entries are classified whole: each reload builds them anew,
//! background tasks included. A field is one of
//! - live: read from the snapshot on every use, so the swap applies it;
//! - applied: the reload pushes it into what outlives the snapshot
//!   (`Gateway::reload` does, for `server.max_connections` and
//!   `sessions.cache_ttl`);
//! - restart-only: fixed when the process started (listeners, the runtime,
//!   the log format, the session store); a change is reported with its key
//!   path and the old value keeps running.
//!
//! No state: a pure function of the two configs and the bound addresses,
//! called by `Gateway::reload` only.

use std::net::SocketAddr;

use super::sessions::{Login, Sessions};
use super::{Admin, Config, Identity, Log, Server};

/// Where the listeners actually are (port 0 in the file resolved), when
/// they are bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct Running {
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// A changed setting that a reload could not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedsRestart {
    /// The key path as written in the file, e.g. `server.worker_threads`.
    pub key: &'static str,
    /// What to tell the operator (names `key`).
    pub message: String,
}

/// The restart-only settings that differ between `old` and `new`, in the
/// order of the file's sections.
pub fn needs_restart(old: &Config, new: &Config, running: Running) -> Vec<NeedsRestart> {
    let mut out = Vec::new();
    let mut restart = |key: &'static str, changed: bool, message: String| {
        if changed {
            out.push(NeedsRestart { key, message });
        }
    };
    let Config {
        server,
        admin,
        log,
        sessions,
        identity,
        login,
        // Live: routes, upstreams, issuers and providers are rebuilt into
        // the new snapshot with everything in them (their background
        // tasks too), and so are the signing keys.
        path: _,
        oidc: _,
        jwt: _,
        upstreams: _,
        routes: _,
        signing: _,
        token_issuer: _,
        // Live: read from the snapshot by every forward-auth request.
        forward_auth: _,
        warnings: _,
    } = new;

    let Server {
        listen,
        worker_threads,
        tls,
        redirect,
        // Applied by the reload (the connection limit outlives snapshots).
        max_connections: _,
        // Live: read per connection or per request from the snapshot.
        endpoint_prefix: _,
        trusted_proxies: _,
        proxy_protocol: _,
        proxy_protocol_from: _,
        max_header_bytes: _,
        header_read_timeout: _,
        idle_timeout: _,
        request_body_timeout: _,
        shutdown_grace: _,
        secret: _,
    } = server;
    // Port 0 in the new file means "wherever": the bound port stays.
    let moved = |configured: SocketAddr, bound: Option<SocketAddr>| match bound {
        Some(b) => configured != b && !(configured.port() == 0 && configured.ip() == b.ip()),
        None => false,
    };
    restart(
        "server.listen",
        moved(*listen, running.listen),
        format!(
            "server.listen changed to {listen}: restart gatehouse to move the listener (still serving on {})",
            running.listen.unwrap_or(old.server.listen)
        ),
    );
    restart(
        "server.worker_threads",
        *worker_threads != old.server.worker_threads,
        "server.worker_threads changed: restart gatehouse to resize the runtime".into(),
    );
    // The certificates and keys themselves are live (each handshake takes
    // the snapshot's); only switching between HTTP and HTTPS is not.
    restart(
        "server.tls",
        tls.is_some() != old.server.tls.is_some(),
        "[server.tls] was added or removed: restart gatehouse to switch between HTTP and HTTPS"
            .into(),
    );
    restart(
        "server.redirect",
        *redirect != old.server.redirect,
        "server.redirect changed: restart gatehouse to apply it".into(),
    );

    // Wholly live, but named field by field all the same: these settings
    // sit beside state that outlives snapshots (the lockout table, the
    // identity-token cache), so a new one must be looked at.
    let Identity {
        headers: _,
        strip: _,
        strip_session_cookie: _,
        strip_authorization: _,
        jwt: _,
        client_cert_header: _,
    } = identity;
    if let Some(Login {
        users_file: _,
        users: _,
        keys: _,
        issuer: _,
        access_token_ttl: _,
        refresh_token_ttl: _,
        refresh_token_max_age: _,
        refresh_reuse_grace: _,
        // Read from the snapshot at each attempt, not by the lockout
        // table itself.
        max_failures: _,
        failure_window: _,
        lockout: _,
    }) = login
    {}

    let Admin {
        listen: admin_listen,
        // Live: the admin API reads it from the snapshot.
        token: _,
    } = admin;
    restart(
        "admin.listen",
        moved(*admin_listen, running.admin),
        "admin.listen changed: restart gatehouse to move the admin listener".into(),
    );

    let Log {
        format,
        // Live: read per request.
        access_log: _,
    } = log;
    restart(
        "log.format",
        *format != old.log.format,
        "log.format changed: restart gatehouse to switch the log format".into(),
    );

    let Sessions {
        store,
        key_prefix,
        // Applied by the reload to the running store.
        cache_ttl: _,
        // Live: read from the snapshot per request.
        enabled: _,
        cookie_name: _,
        cookie_domain: _,
        cookie_secure: _,
        cookie_same_site: _,
        idle_timeout: _,
        absolute_timeout: _,
        csrf: _,
    } = sessions;
    restart(
        "sessions.store",
        *store != old.sessions.store,
        "sessions.store changed: restart gatehouse to switch stores (the old one keeps serving)"
            .into(),
    );
    restart(
        "sessions.key_prefix",
        *key_prefix != old.sessions.key_prefix,
        "sessions.key_prefix changed: restart gatehouse to use it (the old one keeps serving)"
            .into(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(extra_server: &str, rest: &str) -> Config {
        load_at("127.0.0.1:8443", extra_server, rest)
    }

    fn load_at(listen: &str, extra_server: &str, rest: &str) -> Config {
        let text = format!(
            "[server]\nlisten = \"{listen}\"\n{extra_server}\n[admin]\nlisten = \"127.0.0.1:9901\"\n{rest}\n\
             [[upstreams]]\nname = \"app\"\nbackends = [\"127.0.0.1:9\"]\n\n\
             [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n"
        );
        crate::config::load_str(&text, Path::new("/tmp/g.toml")).unwrap()
    }

    fn keys(old: &Config, new: &Config, running: Running) -> Vec<&'static str> {
        needs_restart(old, new, running)
            .into_iter()
            .map(|n| {
                assert!(n.message.contains("restart"), "{}", n.message);
                n.key
            })
            .collect()
    }

    #[test]
    fn restart_only_changes_are_named_by_key_path() {
        let old = load("", "");
        let new = load(
            "worker_threads = 3\nmax_connections = 7",
            "[log]\nformat = \"json\"\n[sessions]\ncache_ttl = \"9s\"\nkey_prefix = \"other:\"\n\
             store = \"redis\"\nredis_url = \"redis://127.0.0.1:9\"\n",
        );
        assert_eq!(
            keys(&old, &new, Running::default()),
            [
                "server.worker_threads",
                "log.format",
                "sessions.store",
                "sessions.key_prefix"
            ]
        );
        // Nothing changed: nothing to restart.
        assert!(keys(&old, &load("", ""), Running::default()).is_empty());
    }

    #[test]
    fn live_changes_need_no_restart() {
        let old = load("", "");
        let new = load(
            "max_connections = 7\nidle_timeout = \"5s\"\nmax_header_bytes = \"9KiB\"",
            "[sessions]\ncache_ttl = \"9s\"\nidle_timeout = \"1h\"\n",
        );
        assert!(keys(&old, &new, Running::default()).is_empty());
    }

    #[test]
    fn listeners_compare_with_where_they_are_bound() {
        let bound: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        let admin: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        let running = Running {
            listen: Some(bound),
            admin: Some(admin),
        };
        let old = load("", "");
        // The file still says 8443, the listener is at 41234: moved.
        let moved = needs_restart(&old, &old, running);
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(moved[0].key, "server.listen");
        assert!(moved[0].message.contains("127.0.0.1:41234"), "{moved:?}");
        // Port 0 means wherever: the bound port stays.
        assert!(keys(&old, &load_at("127.0.0.1:0", "", ""), running).is_empty());
        // The file names where it is bound: nothing moved.
        assert!(keys(&old, &load_at("127.0.0.1:41234", "", ""), running).is_empty());
    }
}
