//! The whole Redis keyspace of gatehouse, in one place. Every key starts
//! with `sessions.key_prefix` (default `gatehouse:`, which may not contain
//! braces) and carries a Redis Cluster hash tag (`{...}`): every script and
//! every pipeline the gateway sends touches the keys of one tag only, so it
//! lands on one hash slot, whichever shard that is (SPEC 13).
//!
//! | key | type | what | expires |
//! |---|---|---|---|
//! | `{s:<hex>}` | hash | a session: `data` (the record, JSON), `last_seen` (unix ms), `pin:<upstream>` (sticky backend) | with the session (sliding) |
//! | `{u:<user>}:sessions` | set | the user's session hexes (listing, revoke-all; a back-channel logout token naming only `sub` reads it too, keeping its provider's sessions) | at the absolute end of the user's last session |
//! | `{o:<provider>:sid:<sha256 of sid>}` | set | session hexes of an OIDC provider's session `sid` (back-channel logout, SPEC 15) | at the absolute end of its last session |
//! | `{u:<user>}:families` | set | the user's refresh families (revoke-all) | with the user's longest family |
//! | `{f:<family>}` | hash | a refresh family: `user`, `cur`, `state`, `at`, `prev`, `prev_at`, `exp`, `ends`, `revoked` | with its current token |
//! | `{f:<family>}:replay` | string | the pair handed out again for `prev` within the reuse grace | after the grace |
//! | `{revocations}` | sorted set | token revocations in force: member = event text, score = until (unix s) | members pruned past their score |
//! | `{l:<upstream>:<sha256 of app cookie>}` | string | a learned sticky mapping: backend `host:port` | sticky `ttl` |
//! | `{once:<kind>:<sha256>}` | string | a single-use marker (`oidc-state`; `logout-jti`: a logout token's provider and `jti`) | the value's own lifetime |
//! | `{lock:<sha256 of user, IP>}` | hash | lockout: `failures`, `window_start`, `locked_until` (unix ms) | window or lockout, the later |
//! | `{lock:<...>}:running` | sorted set | password checks in flight: member = attempt id, score = when it counts as abandoned (ms) | with the hash |
//!
//! Channel `events` (Redis Cluster broadcasts a PUBLISH to every node;
//! the client routes it by the channel name as if it were a key, so a
//! PUBLISH always goes alone): `session:<hex>`, `user:<name>`, `jti:<exp>:<jti>`,
//! `sid:<until>:<family>`, `sub:<mark>:<user>` — see
//! `crate::revocation::Event`.
//!
//! The session's and the user's keys have different tags (a cookie names a
//! session, not its user), so writes that touch both are two pipelines.

use crate::session::SessionKey;

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    pub fn session(&self, key: SessionKey) -> String {
        self.session_hex(&key.hex())
    }

    pub fn session_hex(&self, hex: &str) -> String {
        format!("{}{{s:{hex}}}", self.prefix)
    }

    pub fn user_sessions(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:sessions", self.prefix)
    }

    /// The sessions of OIDC provider `provider` with ID-token `sid`. The
    /// sid is the provider's text, of any length and any characters (a
    /// `}` would end the tag early): its digest keeps the key short and
    /// the tag whole. Provider names are URL-safe (config validation).
    pub fn oidc_sid(&self, provider: &str, sid: &str) -> String {
        format!(
            "{}{{o:{provider}:sid:{}}}",
            self.prefix,
            crate::crypto::hex(&crate::crypto::sha256(sid.as_bytes()))
        )
    }

    pub fn user_families(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:families", self.prefix)
    }

    /// A family and its replay pair: one tag, one slot (the rotation
    /// scripts touch both).
    pub fn family(&self, family: &str) -> (String, String) {
        let k = format!("{}{{f:{family}}}", self.prefix);
        let r = format!("{k}:replay");
        (k, r)
    }

    pub fn revocations(&self) -> String {
        format!("{}{{revocations}}", self.prefix)
    }

    pub fn learned(&self, upstream: &str, app_cookie: &str) -> String {
        format!(
            "{}{{l:{upstream}:{}}}",
            self.prefix,
            crate::crypto::hex(&crate::crypto::sha256(app_cookie.as_bytes()))
        )
    }

    pub fn once(&self, kind: &str, digest: &[u8; 32]) -> String {
        format!(
            "{}{{once:{kind}:{}}}",
            self.prefix,
            crate::crypto::hex(digest)
        )
    }

    /// A lockout counter and its in-flight checks: one tag.
    pub fn lockout(&self, digest: &[u8; 32]) -> (String, String) {
        let k = format!("{}{{lock:{}}}", self.prefix, crate::crypto::hex(digest));
        let r = format!("{k}:running");
        (k, r)
    }
}

/// The hash tag of a key: what Redis Cluster hashes (the text between the
/// first `{` and the next `}`, when not empty; else the whole key).
pub fn tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_used_together_share_their_tag() {
        let k = Keys::new("gatehouse:");
        let (f, r) = k.family("abc");
        assert_eq!(tag(&f), "f:abc");
        assert_eq!(tag(&f), tag(&r));
        assert_eq!(
            tag(&k.user_sessions("al}ice")),
            tag(&k.user_families("al}ice"))
        );
        let (l, run) = k.lockout(&[7; 32]);
        assert_eq!(tag(&l), tag(&run));
        let s = crate::session::SessionId::generate().key();
        assert_eq!(tag(&k.session(s)), format!("s:{}", s.hex()));
        assert_eq!(k.session(s), k.session_hex(&s.hex()));
        let sid = k.oidc_sid("corp", "a}b");
        assert!(tag(&sid).starts_with("o:corp:sid:"), "{sid}");
        assert_eq!(tag(&sid).len(), "o:corp:sid:".len() + 64);
        // Nothing outside a tag: the prefix cannot smuggle one in (config
        // validation refuses braces in it).
        assert!(k.revocations().starts_with("gatehouse:{"));
    }
}
