//! Refresh families in process memory (the memory store's companion).
//! Shared state: one DashMap entry per family, written by token
//! requests, read by token requests and the sweeper (weak reference;
//! ends with the store); an index of families per user for revoke-all.

use crate::tokens::refresh::{NewFamily, Pair, Presented, Rotation};
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
    pub(crate) fn len(&self) -> usize {
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
                State::Pending(at)
                    if now.saturating_sub(at) <= crate::tokens::refresh::MINT_TIMEOUT_MS =>
                {
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
