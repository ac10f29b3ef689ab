//! Step 8's backend affinity, behind one read and one commit (SPEC 7):
//! the cookie, identity, client-address and learned pins of
//! `upstream::sticky`, plus what crosses replicas (learned app cookies in
//! the shared store) and what outlives the request (a session's pinned
//! backend).
//!
//! [`read`] runs before the rewrite (which replaces `X-Forwarded-For`) and
//! takes the gateway's affinity cookie out of the request: the backend has
//! no use for it. [`commit`] runs once a backend answered: it re-pins a
//! moved client, issues the affinity cookie, learns app cookies (here at
//! once, on other replicas a moment later) and records the backend in the
//! caller's session.

use crate::gateway::{Gateway, Snapshot};
use crate::server::ConnInfo;
use crate::session::{Record, SessionKey};
use crate::upstream::select::Decision;
use crate::upstream::{sticky, BackendSet, Upstream};

/// The affinity cookie's name when the upstream issues one (cookie mode).
pub(super) fn cookie_name(upstream: &Upstream) -> Option<&str> {
    match &upstream.sticky {
        Some(crate::config::Sticky {
            mode: crate::config::StickyMode::Cookie { cookie_name },
            ..
        }) => Some(cookie_name.as_str()),
        _ => None,
    }
}

/// One request's upstream and the backends it chooses among.
pub(super) struct Place<'a> {
    pub gw: &'a Gateway,
    pub upstream: &'a Upstream,
    pub set: &'a BackendSet,
}

impl Place<'_> {
    /// Where the request should go by affinity, if anywhere.
    pub(super) async fn read(
        &self,
        snap: &Snapshot,
        conn: &ConnInfo,
        parts: &mut http::request::Parts,
        identity: Option<&crate::auth::Identity>,
        session: Option<&Record>,
    ) -> sticky::Affinity {
        let (upstream, set) = (self.upstream, self.set);
        let client_ip = if upstream.sticky.is_some() || upstream.hash_key.is_some() {
            sticky::client_ip(
                conn.peer.ip(),
                &snap.config.server.trusted_proxies,
                &parts.headers,
            )
        } else {
            conn.peer.ip()
        };
        // Identity mode with a server-side session: the backend recorded
        // in the session wins over the hash, so adding backends moves
        // nobody.
        let pinned = session
            .and_then(|r| r.backends.get(&upstream.name))
            .map(String::as_str);
        let mut affinity = sticky::read(
            upstream,
            set,
            parts,
            identity,
            client_ip,
            pinned,
            &conn.sticky_memo,
        );
        // Learn mode across replicas: an app cookie another replica learned.
        if let Some(value) = sticky::learn_miss(upstream, parts, &affinity)
            .filter(|_| self.gw.store.shares_learned())
        {
            if let Some(addr) = self.gw.store.learned_get(&upstream.name, value).await {
                affinity.pin_learned(upstream, set, &addr);
            }
        }
        if let Some(name) = cookie_name(upstream) {
            sticky::remove_cookie(&mut parts.headers, name);
        }
        affinity
    }

    /// What the answering backend means for affinity; returns the cookie
    /// to set, if any (see the module doc). `secure`: the client used
    /// HTTPS.
    pub(super) async fn commit(
        &self,
        affinity: &sticky::Affinity,
        decision: Decision,
        response: &http::HeaderMap,
        secure: bool,
        session: Option<SessionKey>,
    ) -> Option<http::HeaderValue> {
        let (gw, upstream) = (self.gw, self.upstream);
        let out = sticky::write(upstream, self.set, affinity, decision, response, secure);
        if let Some(sticky) = upstream
            .sticky
            .as_ref()
            .filter(|_| gw.store.shares_learned())
        {
            for (value, addr) in out.learned {
                gw.store
                    .learned_put(&upstream.name, value, addr, sticky.ttl);
            }
        }
        if let (Some(backend), Some(key)) = (&out.record, session) {
            if let Err(e) = gw.store.pin_backend(key, &upstream.name, backend).await {
                tracing::warn!(error = %e, "could not record the sticky backend in the session");
            }
        }
        out.set_cookie
    }
}
