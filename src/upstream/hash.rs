//! Consistent hashing: weighted rendezvous (highest random weight) hashing.
//!
//! Every (key, backend) pair gets a pseudo-random score scaled by the
//! backend's weight; a key goes to the highest score, and the rest of the
//! ranking is its fallback order. Removing a backend moves only the keys it
//! held (about 1/N of them), adding one takes about 1/N from the others, and
//! nothing else moves: the ranking of the other backends is unchanged.
//!
//! Why rendezvous rather than a ring or Maglev: it needs no table to rebuild
//! when the backend set changes, it yields a full preference order for free
//! (failover candidates in order), and weights are exact with the
//! logarithmic method (Schindelhauer and Schomaker, "Weighted distributed
//! hash tables", 2005): score = -weight / ln(u), u uniform in (0, 1).
//! The cost is O(N) per request, a few nanoseconds per backend.
//!
//! The hashes are fixed functions (FNV-1a, then a 64-bit finaliser), never
//! seeded per process: replicas must agree on where a key goes.

/// FNV-1a, 64-bit: a stable hash of bytes (not collision resistant; used
/// for placement only, never for security).
pub fn stable_hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// The murmur3 64-bit finaliser: spreads every input bit over the output.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// The score of `member` (its stable hash and weight) for `key`.
pub fn score(key: u64, member: u64, weight: u32) -> f64 {
    let h = mix(key ^ mix(member.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    // 53 random bits as a float in (0, 1]: never 0, so ln is finite.
    let u = ((h >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let ln = u.ln();
    if ln == 0.0 {
        return f64::INFINITY;
    }
    -f64::from(weight.max(1)) / ln
}

/// The index of the best member for `key` (`None` when empty).
/// `members` are (stable hash, weight) pairs.
pub fn top(key: u64, members: &[(u64, u32)]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, (h, w)) in members.iter().enumerate() {
        let s = score(key, *h, *w);
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

/// Every member index, best first: the key's preference order.
pub fn ranking(key: u64, members: &[(u64, u32)]) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> = members
        .iter()
        .enumerate()
        .map(|(i, (h, w))| (score(key, *h, *w), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<(u64, u32)> {
        (0..n)
            .map(|i| (stable_hash(format!("10.0.0.{i}:8080").as_bytes()), 1))
            .collect()
    }

    fn keys(n: usize) -> impl Iterator<Item = u64> {
        (0..n).map(|i| stable_hash(format!("user-{i}").as_bytes()))
    }

    #[test]
    fn removing_one_of_five_backends_moves_only_its_keys() {
        let all = members(5);
        let without: Vec<(u64, u32)> = all.iter().copied().filter(|m| *m != all[3]).collect();
        let mut moved = 0;
        for k in keys(10_000) {
            let before = all[top(k, &all).unwrap()];
            let after = without[top(k, &without).unwrap()];
            if before != after {
                moved += 1;
                assert_eq!(before, all[3], "a key moved off a backend that stayed");
            }
        }
        // About 1/5 of the keys lived on the removed backend.
        assert!(
            moved <= 10_000 * 3 / 10,
            "moved {moved} of 10000 (limit 1.5/N)"
        );
        assert!(
            moved >= 10_000 / 10,
            "moved only {moved}: placement is not spread"
        );
    }

    #[test]
    fn adding_a_sixth_backend_takes_about_a_sixth_of_keys() {
        let five = members(5);
        let six = members(6);
        let moved = keys(10_000)
            .filter(|k| five[top(*k, &five).unwrap()] != six[top(*k, &six).unwrap()])
            .count();
        assert!(moved <= 10_000 * 15 / 60, "moved {moved}");
        assert!(
            keys(10_000).all(|k| {
                let after = six[top(k, &six).unwrap()];
                after == six[5] || after == five[top(k, &five).unwrap()]
            }),
            "keys moved between old backends"
        );
    }

    #[test]
    fn distribution_follows_weights_within_15_percent() {
        let weights = [1u32, 2, 3, 4];
        let ms: Vec<(u64, u32)> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (stable_hash(format!("backend-{i}").as_bytes()), *w))
            .collect();
        let mut counts = [0usize; 4];
        let n = 10_000;
        for k in keys(n) {
            counts[top(k, &ms).unwrap()] += 1;
        }
        let total_w: u32 = weights.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            let expected = n as f64 * f64::from(*w) / f64::from(total_w);
            let got = counts[i] as f64;
            assert!(
                (got - expected).abs() <= expected * 0.15,
                "backend {i} (weight {w}): {got} keys, expected {expected} ±15% ({counts:?})"
            );
        }
    }

    #[test]
    fn equal_weights_spread_evenly() {
        let ms = members(5);
        let mut counts = [0usize; 5];
        for k in keys(10_000) {
            counts[top(k, &ms).unwrap()] += 1;
        }
        for c in counts {
            assert!((1700..=2300).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn ranking_starts_with_top_and_lists_everyone_once() {
        let ms = members(7);
        for k in keys(100) {
            let r = ranking(k, &ms);
            assert_eq!(r[0], top(k, &ms).unwrap());
            let mut sorted = r.clone();
            sorted.sort();
            assert_eq!(sorted, (0..7).collect::<Vec<_>>());
        }
    }

    #[test]
    fn hashes_are_stable_across_processes() {
        // Replicas must agree: these values are part of the placement
        // contract and may not change between releases.
        assert_eq!(stable_hash(b""), mix(0xcbf2_9ce4_8422_2325));
        let ms = members(3);
        let k = stable_hash(b"sub:alice");
        assert_eq!(top(k, &ms), top(k, &members(3)));
    }
}
