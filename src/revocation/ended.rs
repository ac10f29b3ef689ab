//! Sessions that ended (logout, admin revocation, revoke-all), here or on
//! another replica (through the shared store's event feed), so long-lived
//! connections can tell without a store round trip.
//!
//! Who writes: [`super::Revocation::apply`] only. Who reads: tunnels and
//! streamed responses ([`super::liveness`]), woken by their keys. Entries
//! are pruned once older than a day (no stream outlives its session's
//! absolute cap by that much in practice) or when the map is full.

use crate::clock::now_ms;
use crate::session::SessionKey;

#[derive(Default)]
pub struct Ended {
    sessions: dashmap::DashMap<SessionKey, u64>,
    users: dashmap::DashMap<String, u64>,
}

const ENDED_KEEP_MS: u64 = 24 * 3600 * 1000;
const ENDED_MAX: usize = 200_000;

impl Ended {
    pub(super) fn session(&self, key: SessionKey) {
        let now = now_ms();
        if self.sessions.len() >= ENDED_MAX {
            self.sessions
                .retain(|_, t| now.saturating_sub(*t) < ENDED_KEEP_MS);
        }
        self.sessions.insert(key, now);
    }

    /// Every session of `user` that existed until now has ended.
    pub(super) fn user(&self, user: &str) {
        let now = now_ms();
        if self.users.len() >= ENDED_MAX {
            self.users
                .retain(|_, t| now.saturating_sub(*t) < ENDED_KEEP_MS);
        }
        self.users.insert(user.to_string(), now);
    }

    pub fn has_ended(&self, key: SessionKey, user: &str, opened_ms: u64) -> bool {
        self.sessions.contains_key(&key) || self.users.get(user).is_some_and(|t| *t >= opened_ms)
    }
}
