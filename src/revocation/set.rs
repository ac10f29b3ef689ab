//! Revoked tokens (SPEC 6): a `jti` denylist, each entry kept until the
//! token's own `exp`, and per-subject "revoked before" marks set by
//! revoke-all: a token whose `iat` is at or before its subject's mark
//! (whole seconds, SPEC 11) is dead whatever its signature says.
//!
//! Checked on every accepted token, verified-token cache hits included.
//! Who writes: the admin API and logout (later: the shared store's event
//! feed, so every replica learns at once). Who reads: every JWT request.
//! `DashMap`s for both, and a counter so the usual case (nothing revoked)
//! costs one atomic load.

use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Sweep expired `jti` entries every this many revocations.
const SWEEP_EVERY: usize = 1024;

/// What revocation looks at in a token.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    pub sub: &'a str,
    pub jti: Option<&'a str>,
    /// The refresh family (session) a gateway access token belongs to.
    pub sid: Option<&'a str>,
    /// Whole seconds.
    pub iat: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Revocations {
    /// jti -> unix seconds until which it is denied (the token's `exp`).
    jtis: DashMap<String, u64>,
    /// sub -> mark: tokens with `iat <= mark` are revoked.
    subjects: DashMap<String, u64>,
    /// sid -> unix seconds until which tokens of that family are denied.
    sids: DashMap<String, u64>,
    /// Entries ever added; zero means nothing to look up.
    added: AtomicUsize,
}

impl Revocations {
    /// Denies the token with this `jti` until `exp` (unix seconds).
    pub fn revoke_jti(&self, jti: &str, exp: u64, now: u64) {
        if exp <= now {
            return; // already dead by its own expiry
        }
        self.jtis
            .entry(jti.to_string())
            .and_modify(|e| *e = (*e).max(exp))
            .or_insert(exp);
        if self.added.fetch_add(1, Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
    }

    /// Denies every token carrying `sid` (a refresh family) until `until`.
    pub fn revoke_sid(&self, sid: &str, until: u64, now: u64) {
        if until <= now {
            return;
        }
        self.sids
            .entry(sid.to_string())
            .and_modify(|e| *e = (*e).max(until))
            .or_insert(until);
        self.added.fetch_add(1, Relaxed);
    }

    /// Revokes every token of `sub` issued at or before `mark` (revoke-all).
    /// Marks only move forward.
    pub fn revoke_subject(&self, sub: &str, mark: u64) {
        self.subjects
            .entry(sub.to_string())
            .and_modify(|m| *m = (*m).max(mark))
            .or_insert(mark);
        self.added.fetch_add(1, Relaxed);
    }

    /// The token is revoked. A token without `iat` cannot show it was
    /// issued after its subject's mark, so a mark revokes it too; one whose
    /// `iat` is up to `leeway` seconds after the mark is revoked as well
    /// (SPEC 16): its issuer's clock may run ahead of ours.
    pub fn is_revoked(&self, t: TokenFacts<'_>, now: u64, leeway: u64) -> bool {
        if self.added.load(Relaxed) == 0 {
            return false;
        }
        if let Some(jti) = t.jti {
            if self.jtis.get(jti).is_some_and(|until| *until > now) {
                return true;
            }
        }
        if let Some(sid) = t.sid {
            if self.sids.get(sid).is_some_and(|until| *until > now) {
                return true;
            }
        }
        match self.subjects.get(t.sub) {
            Some(mark) => t.iat.is_none_or(|iat| iat <= mark.saturating_add(leeway)),
            None => false,
        }
    }

    /// Drops `jti` entries whose token has expired anyway.
    pub fn sweep(&self, now: u64) {
        self.jtis.retain(|_, until| *until > now);
    }

    /// Denylisted `jti`s (for the admin API and tests).
    pub fn denied_jtis(&self) -> usize {
        self.jtis.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(sub: &'a str, jti: Option<&'a str>, iat: Option<u64>) -> TokenFacts<'a> {
        TokenFacts {
            sub,
            jti,
            sid: None,
            iat,
        }
    }

    #[test]
    fn nothing_revoked_by_default() {
        let r = Revocations::default();
        assert!(!r.is_revoked(t("alice", Some("j1"), Some(10)), 100, 0));
    }

    #[test]
    fn a_revoked_jti_is_denied_until_its_exp() {
        let r = Revocations::default();
        r.revoke_jti("j1", 200, 100);
        assert!(r.is_revoked(t("alice", Some("j1"), Some(10)), 100, 0));
        assert!(r.is_revoked(t("bob", Some("j1"), None), 199, 0));
        assert!(!r.is_revoked(t("alice", Some("j2"), Some(10)), 100, 0));
        assert!(!r.is_revoked(t("alice", None, Some(10)), 100, 0));
        // Past its exp the token is dead by expiry; the entry may go.
        assert!(!r.is_revoked(t("alice", Some("j1"), Some(10)), 200, 0));
        r.sweep(200);
        assert_eq!(r.denied_jtis(), 0);
        // Revoking an already expired token stores nothing.
        r.revoke_jti("old", 50, 100);
        assert_eq!(r.denied_jtis(), 0);
    }

    #[test]
    fn revoke_all_kills_tokens_issued_at_or_before_the_mark() {
        let r = Revocations::default();
        r.revoke_subject("alice", 1000);
        assert!(r.is_revoked(t("alice", None, Some(999)), 2000, 0));
        assert!(r.is_revoked(t("alice", None, Some(1000)), 2000, 0));
        assert!(!r.is_revoked(t("alice", None, Some(1001)), 2000, 0));
        assert!(r.is_revoked(t("alice", Some("x"), None), 2000, 0));
        assert!(!r.is_revoked(t("bob", None, Some(1)), 2000, 0));
        // An issuer whose clock runs ahead: iat up to leeway after the mark.
        assert!(r.is_revoked(t("alice", None, Some(1030)), 2000, 30));
        assert!(!r.is_revoked(t("alice", None, Some(1031)), 2000, 30));
        // Marks never move back.
        r.revoke_subject("alice", 500);
        assert!(r.is_revoked(t("alice", None, Some(800)), 2000, 0));
    }

    #[test]
    fn many_revocations_are_swept_as_they_expire() {
        let r = Revocations::default();
        for i in 0..(SWEEP_EVERY as u64) {
            r.revoke_jti(&format!("j{i}"), 101 + i, 100);
        }
        // The sweep at the 1024th revocation ran at now = 100: all alive.
        assert_eq!(r.denied_jtis(), SWEEP_EVERY);
        r.sweep(100 + SWEEP_EVERY as u64 / 2);
        assert!(r.denied_jtis() <= SWEEP_EVERY / 2);
    }
}
