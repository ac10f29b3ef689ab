//! Refresh-token families (OAuth 2.0 Security BCP, section 4.14): every
//! refresh token is single use; using it yields the next one of its family.
//! Presenting a used token again means it leaked (or a client is confused):
//! the whole family is revoked, except within `refresh_reuse_grace` after
//! its rotation, where the same new pair is handed out again, so two tabs
//! refreshing at once never log a user out.
//!
//! A refresh token reads `<family>.<secret>`, the secret being 128 random
//! bits and a MAC over them and the family (keyed by the server secret).
//! The family is the one record kept per login, whatever the number of
//! rotations (SPEC 16: a family's state stays bounded): the SHA-256 of its
//! one current token, the previous token's hash for the grace window, the
//! login time that bounds the whole family (`refresh_token_max_age`), and
//! `revoked`. A token whose MAC holds was minted here: if it is neither the
//! current nor the previous one, it is an old one coming back (reuse). One
//! whose MAC fails is a forgery and changes nothing, so knowing a family id
//! (it is the `sid` of every access token) is not enough to end the family.
//! Tokens are stored by hash, never in clear; the replayable pair lives
//! only for the grace window.
//!
//! A rotation is decided atomically (the family's shard lock here; one Lua
//! script in Redis), so concurrent refreshes of one token, on one replica
//! or several, produce exactly one new pair: the winner mints it, the
//! others wait for it. The family names only its user: every refresh
//! re-reads the user and mints from what the users file says now.

use serde::{Deserialize, Serialize};

/// A successor being minted for this long is given up for lost (its
/// request went away, or its store write failed): the current token wins
/// again rather than count as reused.
pub const MINT_TIMEOUT_MS: u64 = 10_000;

/// Who a new family is issued to, as the access tokens will say.
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

/// A presented refresh token, split into its family and the hash of the
/// whole token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub family: String,
    pub hash: [u8; 32],
}

impl Presented {
    /// `None` unless the token is one the gateway minted: 32 hex digits,
    /// `.`, the secret whose MAC holds under `mac`.
    pub fn parse(token: &str, mac: &crate::crypto::Mac) -> Option<Presented> {
        use base64::Engine;
        let (family, secret) = token.split_once('.')?;
        if family.len() != 32 || !family.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut raw = [0u8; 33];
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(secret, &mut raw)
            .ok()?;
        if n != 32 {
            return None;
        }
        let (random, tag) = raw[..32].split_at(16);
        let family = family.to_ascii_lowercase();
        let want = mac.sign_parts(&[family.as_bytes(), random]);
        crate::crypto::ct_eq(&want[..16], tag).then(|| Presented {
            family,
            hash: crate::crypto::sha256(token.as_bytes()),
        })
    }

    /// A new token of `family`: `<family>.<secret>` (see [`Presented::parse`]).
    pub fn mint(family: &str, mac: &crate::crypto::Mac) -> String {
        use base64::Engine;
        let random = crate::crypto::random_bytes::<16>();
        let tag = mac.sign_parts(&[family.as_bytes(), &random]);
        let mut raw = [0u8; 32];
        raw[..16].copy_from_slice(&random);
        raw[16..].copy_from_slice(&tag[..16]);
        format!(
            "{family}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        )
    }
}

/// The MAC key of refresh tokens, from the server secret.
pub fn token_mac(server_secret: &[u8]) -> crate::crypto::Mac {
    crate::crypto::Mac::derive(server_secret, "refresh-token")
}

/// A new family's first token.
#[derive(Debug, Clone)]
pub struct NewFamily<'a> {
    pub family: &'a str,
    pub user: &'a str,
    pub hash: [u8; 32],
    /// The token's expiry (unix ms).
    pub expires_ms: u64,
    /// No token of the family outlives this (login + max age; unix ms).
    pub ends_ms: u64,
}

/// What presenting a refresh token leads to.
#[derive(Debug)]
pub enum Rotation {
    /// First use: the caller mints the successor and calls `complete`.
    Won {
        family: String,
        user: String,
        /// The family's end (unix ms): the successor expires by then.
        ends_ms: u64,
    },
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
    //! Refresh families in process memory (the memory store's companion).
    //! Shared state: one DashMap entry per family, written by token
    //! requests, read by token requests and the sweeper (weak reference;
    //! ends with the store); an index of families per user for revoke-all.

    use super::{NewFamily, Pair, Presented, Rotation};
    use dashmap::DashMap;
    use std::sync::{Arc, Weak};
    use std::time::Duration;

    enum State {
        /// The current token is unused.
        Fresh,
        /// Its successor is being minted since this time (ms).
        Pending(u64),
    }

    struct Previous {
        hash: [u8; 32],
        rotated_ms: u64,
        /// Handed out again within the grace window, dropped after it.
        pair: Option<Pair>,
    }

    struct Family {
        user: String,
        current: [u8; 32],
        state: State,
        previous: Option<Previous>,
        expires_ms: u64,
        ends_ms: u64,
        revoked: bool,
    }

    #[derive(Default)]
    pub struct MemoryRefresh {
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
                    s.sweep(crate::clock::now_ms());
                }
            });
            s
        }

        pub fn sweep(&self, now: u64) {
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
            self.by_user.retain(|_, v| !v.is_empty());
        }

        /// Families held: one per login, whatever the rotations.
        #[cfg(test)]
        pub(super) fn len(&self) -> usize {
            self.families.len()
        }

        pub fn create(&self, f: &NewFamily<'_>) {
            self.families.insert(
                f.family.to_string(),
                Family {
                    user: f.user.to_string(),
                    current: f.hash,
                    state: State::Fresh,
                    previous: None,
                    expires_ms: f.expires_ms.min(f.ends_ms),
                    ends_ms: f.ends_ms,
                    revoked: false,
                },
            );
            self.by_user
                .entry(f.user.to_string())
                .or_default()
                .push(f.family.to_string());
        }

        pub fn rotate(&self, t: &Presented, now: u64, grace_ms: u64) -> Rotation {
            let Some(mut f) = self.families.get_mut(&t.family) else {
                return Rotation::Invalid;
            };
            if f.revoked || f.expires_ms <= now {
                return Rotation::Invalid;
            }
            let within = |at: u64| grace_ms > 0 && now.saturating_sub(at) <= grace_ms;
            if crate::crypto::ct_eq(&t.hash, &f.current) {
                // The current token is never a sign of a leak: it waits
                // for a successor being minted, or wins (again, when the
                // last winner gave up without completing).
                match f.state {
                    State::Pending(at) if now.saturating_sub(at) <= super::MINT_TIMEOUT_MS => {
                        return Rotation::Pending
                    }
                    _ => {
                        f.state = State::Pending(now);
                        return Rotation::Won {
                            family: t.family.clone(),
                            user: f.user.clone(),
                            ends_ms: f.ends_ms,
                        };
                    }
                }
            } else if let Some(p) = &f.previous {
                if crate::crypto::ct_eq(&t.hash, &p.hash) && within(p.rotated_ms) {
                    if let Some(pair) = &p.pair {
                        return Rotation::Replay(pair.clone());
                    }
                }
            }
            f.revoked = true;
            Rotation::Reused {
                family: t.family.clone(),
                user: f.user.clone(),
            }
        }

        /// The successor of `old` is `next` (expiring at `expires_ms`);
        /// `pair` is replayed for `old` within the grace window.
        pub fn complete(
            &self,
            old: &Presented,
            next: [u8; 32],
            expires_ms: u64,
            pair: Option<&Pair>,
            now: u64,
        ) {
            if let Some(mut f) = self.families.get_mut(&old.family) {
                if f.current != old.hash {
                    return;
                }
                f.previous = Some(Previous {
                    hash: old.hash,
                    rotated_ms: now,
                    pair: pair.cloned(),
                });
                f.current = next;
                f.state = State::Fresh;
                f.expires_ms = expires_ms.min(f.ends_ms);
            }
        }

        pub fn revoke_family(&self, family: &str) -> bool {
            match self.families.get_mut(family) {
                Some(mut f) => {
                    f.revoked = true;
                    // Nothing to replay from a dead family.
                    f.previous = None;
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

    const FAM: &str = "0123456789abcdef0123456789abcdef";

    fn mac() -> crate::crypto::Mac {
        token_mac(b"0123456789abcdef0123456789abcdef")
    }

    /// A minted token of `FAM` (each call a new one; `n` only names it).
    fn token(_n: u8) -> Presented {
        Presented::parse(&Presented::mint(FAM, &mac()), &mac()).unwrap()
    }

    fn family(first: &Presented, ends_ms: u64) -> NewFamily<'static> {
        NewFamily {
            family: FAM,
            user: "alice",
            hash: first.hash,
            expires_ms: 10_000,
            ends_ms,
        }
    }

    fn pair(n: &str) -> Pair {
        Pair {
            access_token: format!("a{n}"),
            refresh_token: format!("r{n}"),
            expires_in: 300,
        }
    }

    #[test]
    fn only_tokens_the_gateway_minted_parse() {
        let m = mac();
        assert!(Presented::parse("abc", &m).is_none());
        assert!(Presented::parse(&format!("{FAM}."), &m).is_none());
        let good = Presented::mint(FAM, &m);
        assert_eq!(Presented::parse(&good, &m).unwrap().family, FAM);
        // A family id alone (every access token's `sid`) forges nothing.
        assert!(Presented::parse(
            &format!("{FAM}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            &m
        )
        .is_none());
        let other_family = good.replacen(&FAM[..1], "f", 1);
        assert!(
            Presented::parse(&other_family, &m).is_none(),
            "the MAC binds the family"
        );
        let other_key = token_mac(b"another secret of 32 bytes......");
        assert!(Presented::parse(&good, &other_key).is_none());
        assert_ne!(token(1).hash, token(2).hash);
    }

    #[tokio::test]
    async fn rotation_is_single_use_with_a_grace_window_then_reuse_kills_the_family() {
        let s = MemoryRefresh::start();
        let (t1, t2) = (token(1), token(2));
        s.create(&family(&t1, u64::MAX));
        assert!(matches!(s.rotate(&t1, 1000, 100), Rotation::Won { .. }));
        assert!(
            matches!(s.rotate(&t1, 1001, 100), Rotation::Pending),
            "second caller waits for the winner"
        );
        s.complete(&t1, t2.hash, 20_000, Some(&pair("2")), 1002);
        assert!(matches!(s.rotate(&t1, 1050, 100), Rotation::Replay(p) if p == pair("2")));
        // Outside the grace window: reuse, and the whole family dies.
        assert!(matches!(s.rotate(&t1, 1200, 100), Rotation::Reused { .. }));
        assert!(
            matches!(s.rotate(&t2, 1201, 100), Rotation::Invalid),
            "the successor died with its family"
        );
    }

    #[tokio::test]
    async fn any_older_token_of_the_family_is_reuse_and_state_stays_one_record() {
        let s = MemoryRefresh::start();
        let mut current = token(0);
        s.create(&family(&current, u64::MAX));
        for n in 1..=200u8 {
            let next = token(n);
            assert!(matches!(
                s.rotate(&current, 1000 * n as u64, 10),
                Rotation::Won { .. }
            ));
            s.complete(
                &current,
                next.hash,
                u64::MAX,
                Some(&pair("x")),
                1000 * n as u64,
            );
            current = next;
        }
        assert_eq!(s.len(), 1, "one record however often it rotated");
        assert!(matches!(
            s.rotate(&token(7), 500_000, 10),
            Rotation::Reused { .. }
        ));
        assert!(matches!(s.rotate(&current, 500_001, 10), Rotation::Invalid));
    }

    #[tokio::test]
    async fn a_successor_never_completed_lets_the_current_token_win_again() {
        let s = MemoryRefresh::start();
        let t1 = token(1);
        s.create(&NewFamily {
            expires_ms: u64::MAX,
            ..family(&t1, u64::MAX)
        });
        assert!(matches!(s.rotate(&t1, 1000, 0), Rotation::Won { .. }));
        assert!(
            matches!(s.rotate(&t1, 1001, 0), Rotation::Pending),
            "no grace: still waits, never reuse"
        );
        assert!(matches!(
            s.rotate(&t1, 1000 + MINT_TIMEOUT_MS + 1, 0),
            Rotation::Won { .. }
        ));
    }

    #[tokio::test]
    async fn the_family_ends_at_its_max_age_whatever_the_rotations() {
        let s = MemoryRefresh::start();
        let (t1, t2) = (token(1), token(2));
        s.create(&family(&t1, 5_000));
        assert!(matches!(
            s.rotate(&t1, 1000, 0),
            Rotation::Won { ends_ms: 5_000, .. }
        ));
        // A successor asked to live past the family's end is cut to it.
        s.complete(&t1, t2.hash, 90_000, None, 1000);
        assert!(matches!(s.rotate(&t2, 5_000, 0), Rotation::Invalid));
    }

    #[tokio::test]
    async fn zero_grace_disables_replays_and_expired_tokens_are_invalid() {
        let s = MemoryRefresh::start();
        let (t1, t2) = (token(1), token(2));
        s.create(&family(&t1, u64::MAX));
        assert!(matches!(s.rotate(&t1, 1000, 0), Rotation::Won { .. }));
        s.complete(&t1, t2.hash, 5_000, None, 1000);
        assert!(matches!(s.rotate(&t1, 1000, 0), Rotation::Reused { .. }));
        let other = Presented::parse(
            &Presented::mint("ffffffffffffffffffffffffffffffff", &mac()),
            &mac(),
        )
        .unwrap();
        assert!(matches!(s.rotate(&other, 1, 0), Rotation::Invalid));
    }

    #[tokio::test]
    async fn revoke_user_revokes_every_family() {
        let s = MemoryRefresh::start();
        let t1 = token(1);
        s.create(&family(&t1, u64::MAX));
        let t2 = Presented::parse(
            &Presented::mint("11111111111111111111111111111111", &mac()),
            &mac(),
        )
        .unwrap();
        s.create(&NewFamily {
            family: "11111111111111111111111111111111",
            ..family(&t2, u64::MAX)
        });
        assert_eq!(s.revoke_user("alice").len(), 2);
        assert!(matches!(s.rotate(&t1, 1, 10), Rotation::Invalid));
        assert!(matches!(s.rotate(&t2, 1, 10), Rotation::Invalid));
    }
}
