//! Revocation, in one place (SPEC 6, 10): what has been revoked, how a
//! revocation travels between replicas, and how it reaches the long-lived
//! connections it ends.
//!
//! ```text
//! logout / admin / refresh reuse / another replica's event
//!   -> state::Shared (persists and announces it; the Redis feed delivers
//!      other replicas' events back here)
//!   -> Revocation::apply: the token set (set.rs) or the ended sessions
//!      (ended.rs) first, then the doorbell (liveness.rs) for exactly the
//!      connections registered under the revoked keys
//! ```
//!
//! Who owns what: [`Revocation`] owns the three pieces of per-replica
//! state; only [`Revocation::apply`] writes them (and [`Revocation::resync`]
//! rings every doorbell after a gap in the feed). Every request reads the
//! token set (one atomic load while nothing is revoked); tunnels and
//! watched streams read the rest. The shared store (`crate::state`) is the
//! transport between replicas and never decides anything here.

pub mod ended;
pub mod liveness;
pub mod set;

use crate::clock::unix_now;
use crate::session::SessionKey;
use liveness::{Key, Watchers};
use std::sync::Arc;
use std::time::Duration;

pub use set::{Revocations, TokenFacts};

/// How long a revoke-all mark is kept: longer than any token it could
/// still have to refuse (access tokens live minutes, external ones hours).
pub const SUBJECT_MARK_TTL: Duration = Duration::from_secs(7 * 86400);

/// One token revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    /// One access token, until its `exp`.
    Jti { jti: String, exp: u64 },
    /// Every access token of a refresh family (`sid` claim).
    Family { sid: String, until: u64 },
    /// Every token of a subject issued at or before `mark`.
    Subject { sub: String, mark: u64 },
}

impl Revoke {
    /// Until when (unix seconds) the revocation matters: the shared store
    /// keeps it that long, for replicas that reconnect.
    pub fn until(&self) -> u64 {
        match self {
            Revoke::Jti { exp, .. } => *exp,
            Revoke::Family { until, .. } => *until,
            Revoke::Subject { mark, .. } => mark + SUBJECT_MARK_TTL.as_secs(),
        }
    }
}

/// Everything that travels between replicas: a session or a user's
/// sessions ended, or a token revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Session(SessionKey),
    User(String),
    Token(Revoke),
}

impl Event {
    /// The wire text: `session:<hex>`, `user:<name>`, or
    /// `<jti|sid|sub>:<number>:<name>` (the name may hold `:`).
    pub fn encode(&self) -> String {
        match self {
            Event::Session(k) => format!("session:{}", k.hex()),
            Event::User(u) => format!("user:{u}"),
            Event::Token(Revoke::Jti { jti, exp }) => format!("jti:{exp}:{jti}"),
            Event::Token(Revoke::Family { sid, until }) => format!("sid:{until}:{sid}"),
            Event::Token(Revoke::Subject { sub, mark }) => format!("sub:{mark}:{sub}"),
        }
    }

    pub fn parse(text: &str) -> Option<Event> {
        let (kind, rest) = text.split_once(':')?;
        match kind {
            "session" => SessionKey::from_hex(rest).map(Event::Session),
            "user" => Some(Event::User(rest.to_string())),
            _ => {
                let (n, name) = rest.split_once(':')?;
                let n: u64 = n.parse().ok()?;
                let name = name.to_string();
                Some(Event::Token(match kind {
                    "jti" => Revoke::Jti { jti: name, exp: n },
                    "sid" => Revoke::Family {
                        sid: name,
                        until: n,
                    },
                    "sub" => Revoke::Subject { sub: name, mark: n },
                    _ => return None,
                }))
            }
        }
    }
}

/// This replica's revocation state (see the module doc).
#[derive(Default)]
pub struct Revocation {
    tokens: Revocations,
    ended: ended::Ended,
    watchers: Arc<Watchers>,
}

impl Revocation {
    /// Puts the revocation in place on this replica, then wakes the
    /// long-lived connections it may end (they look again and find it).
    /// Idempotent: a replica hears its own announcements too.
    pub fn apply(&self, event: &Event) {
        let key = match event {
            Event::Session(k) => {
                self.ended.session(*k);
                Key::Session(*k)
            }
            Event::User(u) => {
                self.ended.user(u);
                Key::User(u.as_str().into())
            }
            Event::Token(r) => {
                let now = unix_now();
                match r {
                    Revoke::Jti { jti, exp } => {
                        self.tokens.revoke_jti(jti, *exp, now);
                        Key::Jti(jti.as_str().into())
                    }
                    Revoke::Family { sid, until } => {
                        self.tokens.revoke_sid(sid, *until, now);
                        Key::Sid(sid.as_str().into())
                    }
                    Revoke::Subject { sub, mark } => {
                        self.tokens.revoke_subject(sub, *mark);
                        Key::User(sub.as_str().into())
                    }
                }
            }
        };
        self.watchers.fire(&key);
    }

    /// The feed between replicas had a gap (a reconnect): revocations made
    /// meanwhile were not heard, so every watched connection looks again.
    pub fn resync(&self) {
        self.watchers.fire_all();
    }

    /// Revoked tokens, checked on every accepted JWT.
    pub fn tokens(&self) -> &Revocations {
        &self.tokens
    }

    /// Sessions and users that ended.
    pub fn ended(&self) -> &ended::Ended {
        &self.ended
    }

    /// Where long-lived connections register to be woken.
    pub fn watchers(&self) -> &Arc<Watchers> {
        &self.watchers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_names_with_colons() {
        let key = crate::session::SessionId::generate().key();
        for e in [
            Event::Token(Revoke::Jti {
                jti: "a:b".into(),
                exp: 5,
            }),
            Event::Token(Revoke::Family {
                sid: "f".into(),
                until: 7,
            }),
            Event::Token(Revoke::Subject {
                sub: "user:x".into(),
                mark: 9,
            }),
            Event::Session(key),
            Event::User("a:b".into()),
        ] {
            assert_eq!(Event::parse(&e.encode()), Some(e));
        }
        assert!(Event::parse("session:abc").is_none());
        assert!(Event::parse("jti:notanumber:x").is_none());
        assert!(Event::parse("other:1:x").is_none());
    }

    #[test]
    fn applying_an_event_records_it_and_rings_its_key() {
        let r = Revocation::default();
        let key = crate::session::SessionId::generate().key();
        let reg = r.watchers().register(vec![Key::Session(key)]);
        // A registration starts rung; wait for a fresh ring.
        let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(reg.signal().poll_fired(&mut cx));
        assert!(!reg.signal().poll_fired(&mut cx));
        r.apply(&Event::Session(key));
        assert!(r.ended().has_ended(key, "alice", 0));
        assert!(reg.signal().poll_fired(&mut cx));
        r.apply(&Event::Token(Revoke::Jti {
            jti: "j".into(),
            exp: unix_now() + 60,
        }));
        let facts = TokenFacts {
            sub: "bob",
            jti: Some("j"),
            sid: None,
            iat: None,
        };
        assert!(r.tokens().is_revoked(facts, unix_now(), 0));
    }
}
