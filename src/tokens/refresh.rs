//! Refresh-token families (OAuth 2.0 Security BCP, section 4.14): every
//! refresh token is single use; using it yields the next one of its family.
//! Presenting a used token again means it leaked (or a client is confused):
//! the whole family is revoked, except within `refresh_reuse_grace` after
//! its rotation, where the same new pair is handed out again, so two tabs
//! refreshing at once never log a user out.
//!
//! Tokens are stored by SHA-256, never in clear. A rotation is decided
//! atomically (one shard lock here; one Lua script in Redis), so concurrent
//! refreshes of one token, on one replica or several, produce exactly one
//! new pair: the winner mints it, the others wait for it.

use serde::{Deserialize, Serialize};

/// Who the family was issued to, as the access tokens will say.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// A token response, kept for replays inside the grace window.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pair(..)")
    }
}

/// What presenting a refresh token leads to.
#[derive(Debug)]
pub enum Rotation {
    /// First use: the caller mints the successor and calls `complete`.
    Won { family: String, grant: Grant },
    /// Used moments ago: the same successor again.
    Replay(Pair),
    /// Another request is minting the successor right now: ask again.
    Pending,
    /// Used before, outside the grace window: the family is now revoked.
    Reused { family: String, user: String },
    /// Unknown, expired, or its family revoked.
    Invalid,
}

pub mod memory {
    //! Refresh tokens in process memory (the memory store's companion).
    //! Shared state: DashMaps written by token requests, read by token
    //! requests and the sweeper (weak reference; ends with the store).

    use super::{Grant, Pair, Rotation};
    use dashmap::DashMap;
    use std::sync::{Arc, Weak};
    use std::time::Duration;

    enum State {
        Fresh,
        Pending(u64),
        Rotated(u64, Option<Pair>),
    }

    struct Token {
        family: String,
        grant: Arc<Grant>,
        expires_ms: u64,
        state: State,
    }

    struct Family {
        user: String,
        revoked: bool,
        expires_ms: u64,
    }

    #[derive(Default)]
    pub struct MemoryRefresh {
        tokens: DashMap<[u8; 32], Token>,
        families: DashMap<String, Family>,
        by_user: DashMap<String, Vec<String>>,
    }

    impl MemoryRefresh {
        pub fn start() -> Arc<MemoryRefresh> {
            let s = Arc::new(MemoryRefresh::default());
            let weak: Weak<MemoryRefresh> = Arc::downgrade(&s);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    let Some(s) = weak.upgrade() else { break };
                    s.sweep(crate::session::now_ms());
                }
            });
            s
        }

        pub fn sweep(&self, now: u64) {
            self.tokens.retain(|_, t| t.expires_ms > now);
            let mut gone = Vec::new();
            self.families.retain(|id, f| {
                let keep = f.expires_ms > now;
                if !keep {
                    gone.push((f.user.clone(), id.clone()));
                }
                keep
            });
            for (user, id) in gone {
                if let Some(mut v) = self.by_user.get_mut(&user) {
                    v.retain(|f| *f != id);
                }
            }
        }

        pub fn insert(&self, hash: [u8; 32], family: &str, grant: &Grant, expires_ms: u64) {
            let is_new = !self.families.contains_key(family);
            self.families
                .entry(family.to_string())
                .and_modify(|f| f.expires_ms = f.expires_ms.max(expires_ms))
                .or_insert(Family {
                    user: grant.user.clone(),
                    revoked: false,
                    expires_ms,
                });
            if is_new {
                self.by_user
                    .entry(grant.user.clone())
                    .or_default()
                    .push(family.to_string());
            }
            self.tokens.insert(
                hash,
                Token {
                    family: family.to_string(),
                    grant: Arc::new(grant.clone()),
                    expires_ms,
                    state: State::Fresh,
                },
            );
        }

        pub fn rotate(&self, hash: &[u8; 32], now: u64, grace_ms: u64) -> Rotation {
            let Some(mut t) = self.tokens.get_mut(hash) else {
                return Rotation::Invalid;
            };
            if t.expires_ms <= now || self.families.get(&t.family).is_none_or(|f| f.revoked) {
                return Rotation::Invalid;
            }
            let within = |at: u64| grace_ms > 0 && now.saturating_sub(at) <= grace_ms;
            match &t.state {
                State::Fresh => {
                    t.state = State::Pending(now);
                    Rotation::Won {
                        family: t.family.clone(),
                        grant: (*t.grant).clone(),
                    }
                }
                State::Pending(at) if within(*at) => Rotation::Pending,
                State::Rotated(at, Some(p)) if within(*at) => Rotation::Replay(p.clone()),
                _ => {
                    let family = t.family.clone();
                    let user = t.grant.user.clone();
                    drop(t);
                    self.revoke_family(&family);
                    Rotation::Reused { family, user }
                }
            }
        }

        pub fn complete(&self, hash: &[u8; 32], pair: &Pair, now: u64) {
            if let Some(mut t) = self.tokens.get_mut(hash) {
                t.state = State::Rotated(now, Some(pair.clone()));
            }
        }

        pub fn revoke_family(&self, family: &str) -> bool {
            match self.families.get_mut(family) {
                Some(mut f) => {
                    f.revoked = true;
                    true
                }
                None => false,
            }
        }

        /// Revokes every family of `user`; returns their ids.
        pub fn revoke_user(&self, user: &str) -> Vec<String> {
            let ids = self
                .by_user
                .get(user)
                .map(|v| v.clone())
                .unwrap_or_default();
            for id in &ids {
                self.revoke_family(id);
            }
            ids
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryRefresh;
    use super::*;

    fn grant() -> Grant {
        Grant {
            user: "alice".into(),
            email: None,
            groups: vec![],
            name: None,
        }
    }

    fn pair(n: &str) -> Pair {
        Pair {
            access_token: format!("a{n}"),
            refresh_token: format!("r{n}"),
            expires_in: 300,
        }
    }

    #[tokio::test]
    async fn rotation_is_single_use_with_a_grace_window_then_reuse_kills_the_family() {
        let s = MemoryRefresh::start();
        let (h1, h2) = ([1u8; 32], [2u8; 32]);
        s.insert(h1, "fam", &grant(), 10_000);
        assert!(matches!(s.rotate(&h1, 1000, 100), Rotation::Won { .. }));
        assert!(
            matches!(s.rotate(&h1, 1001, 100), Rotation::Pending),
            "second caller waits for the winner"
        );
        s.complete(&h1, &pair("2"), 1002);
        s.insert(h2, "fam", &grant(), 10_000);
        assert!(matches!(s.rotate(&h1, 1050, 100), Rotation::Replay(p) if p == pair("2")));
        // Outside the grace window: reuse, and the whole family dies.
        assert!(matches!(s.rotate(&h1, 1200, 100), Rotation::Reused { .. }));
        assert!(
            matches!(s.rotate(&h2, 1201, 100), Rotation::Invalid),
            "the successor died with its family"
        );
    }

    #[tokio::test]
    async fn zero_grace_disables_replays_and_expired_tokens_are_invalid() {
        let s = MemoryRefresh::start();
        s.insert([3u8; 32], "f", &grant(), 5_000);
        assert!(matches!(
            s.rotate(&[3u8; 32], 1000, 0),
            Rotation::Won { .. }
        ));
        s.complete(&[3u8; 32], &pair("x"), 1000);
        assert!(matches!(
            s.rotate(&[3u8; 32], 1000, 0),
            Rotation::Reused { .. }
        ));
        s.insert([4u8; 32], "g", &grant(), 5_000);
        assert!(matches!(s.rotate(&[4u8; 32], 5_000, 0), Rotation::Invalid));
        assert!(matches!(s.rotate(&[9u8; 32], 1, 0), Rotation::Invalid));
    }

    #[tokio::test]
    async fn revoke_user_revokes_every_family() {
        let s = MemoryRefresh::start();
        s.insert([5u8; 32], "f1", &grant(), 9_000);
        s.insert([6u8; 32], "f2", &grant(), 9_000);
        assert_eq!(s.revoke_user("alice").len(), 2);
        assert!(matches!(s.rotate(&[5u8; 32], 1, 10), Rotation::Invalid));
        assert!(matches!(s.rotate(&[6u8; 32], 1, 10), Rotation::Invalid));
    }
}
