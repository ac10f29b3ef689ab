//! Single-use markers in process memory: OIDC states (and any other value
//! that may be presented once), each kept until it would have expired
//! anyway.
//!
//! Who writes and reads: the callers of `Shared::first_use`, once per
//! presented value. A `DashMap` keyed by the value's digest, no lock
//! across an await; expired entries are swept every [`SWEEP_EVERY`]
//! insertions, so the map holds at most the values used within their
//! lifetime plus one sweep's worth.

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Insertions between sweeps of expired entries.
pub const SWEEP_EVERY: u64 = 256;

#[derive(Default)]
pub struct OnceMarks {
    seen: DashMap<[u8; 32], u64>,
    inserts: AtomicU64,
}

impl OnceMarks {
    /// Records `digest` as used until `until` (unix seconds); `false` if it
    /// already was.
    pub fn first_use(&self, digest: [u8; 32], until: u64, now: u64) -> bool {
        if self.inserts.fetch_add(1, Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.seen.retain(|_, u| *u > now);
        }
        match self.seen.entry(digest) {
            dashmap::Entry::Occupied(mut e) => {
                if *e.get() > now {
                    false
                } else {
                    e.insert(until);
                    true
                }
            }
            dashmap::Entry::Vacant(v) => {
                v.insert(until);
                true
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> [u8; 32] {
        crate::crypto::sha256(s.as_bytes())
    }

    #[test]
    fn a_value_is_used_once_until_it_expires() {
        let used = OnceMarks::default();
        assert!(used.first_use(d("s1"), 100, 10));
        assert!(!used.first_use(d("s1"), 100, 50));
        assert!(used.first_use(d("s2"), 100, 50));
        // Past its expiry the entry means nothing (the value is refused
        // anyway) and the sweep removes it.
        for i in 0..SWEEP_EVERY {
            used.first_use(d(&format!("x{i}")), 150, 120);
        }
        assert!(used.len() < SWEEP_EVERY as usize + 3);
        assert!(used.first_use(d("s1"), 300, 200));
    }
}
