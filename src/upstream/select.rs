//! Backend selection as pure functions.
//!
//! Two steps, both free of I/O, clocks and shared state:
//!
//! - [`order`]: the balancing policy turns a snapshot of the backend set
//!   (weights, loads, a cursor, random draws, a hash key) into candidates
//!   in preference order.
//! - [`pinned`] and [`hashed`]: the sticky rules pick one candidate, given
//!   the client's affinity and what each backend can do for it ([`Fit`]).
//!
//! Health is decided outside and passed in as `fit`, so the rules read
//! the same whatever made a backend unusable (active checks, passive
//! ejection, drain, DNS removal, or a failed attempt of this very request).

use super::hash;

/// What a backend can do for this request, decided by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Unhealthy, ejected, or already tried for this request.
    No,
    /// Draining (by the admin API, or gone from DNS): keeps the sticky
    /// clients it has, takes no new ones.
    KeepOnly,
    /// Takes anyone.
    Yes,
}

/// A client's affinity, resolved against the current backend set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// No affinity (or a forged one, which counts as none).
    None,
    /// Pinned to this member of the set.
    Member(usize),
    /// A genuine affinity naming a backend that is no longer in the set.
    Gone,
}

/// The chosen backend, and whether a sticky client was moved to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub index: usize,
    /// The client had affinity elsewhere: the backend is told with
    /// `X-Gatehouse-Rehomed: 1` and the affinity is re-pinned.
    pub rehomed: bool,
}

/// How requests without a usable pin are spread over the set.
#[derive(Debug, Clone)]
pub enum Policy<'a> {
    /// Smooth weighted round robin: `schedule` lists member indices in
    /// order, each as often as its weight; `cursor` counts requests.
    RoundRobin { schedule: &'a [u16], cursor: usize },
    /// Fewest requests in flight per unit of weight; `loads` is
    /// (in flight, weight) per member. Ties rotate with `cursor`.
    LeastConn {
        loads: Vec<(u32, u32)>,
        cursor: usize,
    },
    /// Power of two choices: of the two members drawn, the less busy.
    Random { loads: Vec<u32>, draws: [usize; 2] },
    /// Consistent hash of `key` over `members` ((stable hash, weight) pairs).
    Hash { key: u64, members: &'a [(u64, u32)] },
}

/// Candidates in preference order. A member may appear more than once
/// (weighted schedules); callers take the first that fits.
pub enum Candidates<'a> {
    Schedule {
        schedule: &'a [u16],
        start: usize,
        k: usize,
    },
    Ranked(std::vec::IntoIter<usize>),
    /// Consistent-hash order, computed lazily: the top member costs one
    /// pass over the scores; the full ranking is sorted only if asked for.
    Hash {
        key: u64,
        members: &'a [(u64, u32)],
        top: Option<usize>,
        rest: Option<std::vec::IntoIter<usize>>,
    },
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            Candidates::Schedule { schedule, start, k } => {
                if *k >= schedule.len() {
                    return None;
                }
                let i = schedule[(*start + *k) % schedule.len()];
                *k += 1;
                Some(usize::from(i))
            }
            Candidates::Ranked(it) => it.next(),
            Candidates::Hash {
                key,
                members,
                top,
                rest,
            } => {
                if let Some(it) = rest {
                    return it.next();
                }
                match *top {
                    None => {
                        *top = hash::top(*key, members);
                        if top.is_none() {
                            *rest = Some(Vec::new().into_iter());
                        }
                        *top
                    }
                    Some(t) => {
                        let others: Vec<usize> = hash::ranking(*key, members)
                            .into_iter()
                            .filter(|&i| i != t)
                            .collect();
                        let mut it = others.into_iter();
                        let next = it.next();
                        *rest = Some(it);
                        next
                    }
                }
            }
        }
    }
}

/// Orders `n` members by `policy`.
pub fn order(n: usize, policy: Policy<'_>) -> Candidates<'_> {
    match policy {
        Policy::RoundRobin { schedule, cursor } => Candidates::Schedule {
            schedule,
            start: if schedule.is_empty() {
                0
            } else {
                cursor % schedule.len()
            },
            k: 0,
        },
        Policy::LeastConn { loads, cursor } => {
            let n = n.min(loads.len());
            let mut v: Vec<usize> = (0..n).map(|k| (cursor + k) % n.max(1)).collect();
            // Stable: equal loads keep the rotated order, so they share work.
            v.sort_by(|&a, &b| {
                let la = u64::from(loads[a].0) * u64::from(loads[b].1.max(1));
                let lb = u64::from(loads[b].0) * u64::from(loads[a].1.max(1));
                la.cmp(&lb)
            });
            Candidates::Ranked(v.into_iter())
        }
        Policy::Random { loads, draws } => {
            let n = n.min(loads.len());
            if n == 0 {
                return Candidates::Ranked(Vec::new().into_iter());
            }
            let (a, b) = (draws[0] % n, draws[1] % n);
            let (first, second) = if loads[b] < loads[a] { (b, a) } else { (a, b) };
            let mut v = Vec::with_capacity(n);
            v.push(first);
            if second != first {
                v.push(second);
            }
            v.extend((0..n).map(|k| (a + k) % n).filter(|&i| i != a && i != b));
            Candidates::Ranked(v.into_iter())
        }
        Policy::Hash { key, members } => Candidates::Hash {
            key,
            members,
            top: None,
            rest: None,
        },
    }
}

/// An affinity the client carries or the gateway recorded (affinity
/// cookie, learned app-cookie mapping, the backend stored in a session).
///
/// The pinned member keeps the client while it is healthy, draining or
/// not. Otherwise the first candidate of `order` that takes new clients
/// wins, and a client that had a pin is reported as moved.
///
/// `order` is called only when the pin cannot be kept.
pub fn pinned<I: IntoIterator<Item = usize>>(
    pin: Pin,
    order: impl FnOnce() -> I,
    fit: impl Fn(usize) -> Fit,
) -> Option<Decision> {
    if let Pin::Member(i) = pin {
        if fit(i) != Fit::No {
            return Some(Decision {
                index: i,
                rehomed: false,
            });
        }
    }
    let index = order().into_iter().find(|&i| fit(i) == Fit::Yes)?;
    Some(Decision {
        index,
        rehomed: pin != Pin::None,
    })
}

/// Identity placement: the key's consistent-hash `ranking` decides, so
/// every replica sends a caller to the same backend without shared state.
/// `last` is where this gateway last sent the caller, if it remembers.
///
/// - The top-ranked backend takes the caller when it takes new clients,
///   or when it is draining and the caller is already one of its clients.
/// - Otherwise the caller stays where it was last sent if that backend
///   still fits, else goes to the next backend in the ranking that takes
///   new clients.
/// - The caller counts as moved when it lands somewhere other than where
///   it was last sent; with no memory of it (another replica served it),
///   when its top backend is down rather than merely draining.
pub fn hashed(
    mut ranking: impl Iterator<Item = usize>,
    last: Pin,
    fit: impl Fn(usize) -> Fit,
) -> Option<Decision> {
    let top = ranking.next()?;
    let moved_to = |index: usize| Decision {
        index,
        rehomed: match last {
            Pin::Member(j) => j != index,
            Pin::Gone => true,
            Pin::None => false,
        },
    };
    match fit(top) {
        Fit::Yes => return Some(moved_to(top)),
        Fit::KeepOnly if last == Pin::Member(top) => return Some(moved_to(top)),
        _ => {}
    }
    if let Pin::Member(j) = last {
        if fit(j) != Fit::No {
            return Some(moved_to(j));
        }
    }
    let index = ranking.find(|&i| i != top && fit(i) == Fit::Yes)?;
    let mut d = moved_to(index);
    if last == Pin::None {
        d.rehomed = fit(top) == Fit::No;
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fits(v: &[Fit]) -> impl Fn(usize) -> Fit + '_ {
        move |i| v[i]
    }

    use Fit::{KeepOnly, No, Yes};

    #[test]
    fn round_robin_walks_the_schedule_from_the_cursor() {
        let schedule = [0u16, 0, 1, 0, 2];
        let got: Vec<usize> = order(
            3,
            Policy::RoundRobin {
                schedule: &schedule,
                cursor: 7,
            },
        )
        .collect();
        assert_eq!(got, vec![1, 0, 2, 0, 0]);
    }

    #[test]
    fn least_conn_orders_by_load_per_weight_and_rotates_ties() {
        let loads = [(4, 1), (4, 2), (1, 1), (2, 1)];
        let got: Vec<usize> = order(
            4,
            Policy::LeastConn {
                loads: loads.to_vec(),
                cursor: 0,
            },
        )
        .collect();
        assert_eq!(got, vec![2, 1, 3, 0]);
        let idle = [(0, 1), (0, 1), (0, 1)];
        let firsts: Vec<usize> = (0..3)
            .map(|c| {
                order(
                    3,
                    Policy::LeastConn {
                        loads: idle.to_vec(),
                        cursor: c,
                    },
                )
                .next()
                .unwrap()
            })
            .collect();
        assert_eq!(firsts, vec![0, 1, 2]);
    }

    #[test]
    fn random_two_choices_puts_the_less_busy_draw_first_then_everyone() {
        let loads = [5, 0, 9, 1];
        let got: Vec<usize> = order(
            4,
            Policy::Random {
                loads: loads.to_vec(),
                draws: [0, 3],
            },
        )
        .collect();
        assert_eq!(got, vec![3, 0, 1, 2]);
        let same: Vec<usize> = order(
            4,
            Policy::Random {
                loads: loads.to_vec(),
                draws: [2, 2],
            },
        )
        .collect();
        assert_eq!(same, vec![2, 3, 0, 1]);
    }

    #[test]
    fn a_pin_holds_while_healthy_even_when_draining() {
        let f = [KeepOnly, Yes, Yes];
        assert_eq!(
            pinned(Pin::Member(0), || [1, 2], fits(&f)),
            Some(Decision {
                index: 0,
                rehomed: false
            })
        );
    }

    #[test]
    fn a_pin_to_an_unusable_or_vanished_backend_moves_the_client() {
        let f = [No, KeepOnly, Yes];
        assert_eq!(
            pinned(Pin::Member(0), || [0, 1, 2], fits(&f)),
            Some(Decision {
                index: 2,
                rehomed: true
            })
        );
        assert_eq!(
            pinned(Pin::Gone, || [1, 2], fits(&f)),
            Some(Decision {
                index: 2,
                rehomed: true
            })
        );
        // Draining backends take no new clients.
        assert_eq!(
            pinned(Pin::None, || [1, 2], fits(&f)),
            Some(Decision {
                index: 2,
                rehomed: false
            })
        );
        assert_eq!(pinned(Pin::Member(0), || [0, 1], fits(&f)), None);
    }

    #[test]
    fn hashed_callers_go_to_their_top_backend() {
        let f = [Yes, Yes, Yes];
        let d = hashed([2, 0, 1].into_iter(), Pin::None, fits(&f)).unwrap();
        assert_eq!((d.index, d.rehomed), (2, false));
        // Back on its top backend after a move: moved again, and told.
        let d = hashed([2, 0, 1].into_iter(), Pin::Member(0), fits(&f)).unwrap();
        assert_eq!((d.index, d.rehomed), (2, true));
    }

    #[test]
    fn hashed_failover_is_a_move_but_draining_only_turns_new_callers_away() {
        let down = [Yes, Yes, No];
        let d = hashed([2, 0, 1].into_iter(), Pin::None, fits(&down)).unwrap();
        assert_eq!((d.index, d.rehomed), (0, true));
        // Already moved to 0 (remembered): staying there is no new move.
        let d = hashed([2, 0, 1].into_iter(), Pin::Member(0), fits(&down)).unwrap();
        assert_eq!((d.index, d.rehomed), (0, false));

        let draining = [Yes, Yes, KeepOnly];
        let d = hashed([2, 0, 1].into_iter(), Pin::Member(2), fits(&draining)).unwrap();
        assert_eq!((d.index, d.rehomed), (2, false), "existing client kept");
        let d = hashed([2, 0, 1].into_iter(), Pin::None, fits(&draining)).unwrap();
        assert_eq!((d.index, d.rehomed), (0, false), "new client sent on");
    }

    #[test]
    fn hashed_caller_of_a_removed_backend_is_moved() {
        let f = [Yes, Yes];
        let d = hashed([1, 0].into_iter(), Pin::Gone, fits(&f)).unwrap();
        assert_eq!((d.index, d.rehomed), (1, true));
        assert_eq!(hashed([1, 0].into_iter(), Pin::None, fits(&[No, No])), None);
        assert_eq!(hashed(std::iter::empty(), Pin::None, fits(&[])), None);
    }

    #[test]
    fn lazy_hash_candidates_equal_the_full_ranking() {
        let members: Vec<(u64, u32)> = (0..6)
            .map(|i| (hash::stable_hash(format!("b{i}").as_bytes()), 1 + i % 3))
            .collect();
        for k in 0..200u64 {
            let key = hash::mix(k);
            let lazy: Vec<usize> = order(
                6,
                Policy::Hash {
                    key,
                    members: &members,
                },
            )
            .collect();
            assert_eq!(lazy, hash::ranking(key, &members));
        }
        assert_eq!(
            order(
                0,
                Policy::Hash {
                    key: 1,
                    members: &[]
                }
            )
            .next(),
            None
        );
    }

    #[test]
    fn hash_policy_is_stable_when_a_member_leaves() {
        let members: Vec<(u64, u32)> = (0..5)
            .map(|i| (hash::stable_hash(format!("b{i}").as_bytes()), 1))
            .collect();
        let key = hash::stable_hash(b"tenant-42");
        let full: Vec<usize> = order(
            5,
            Policy::Hash {
                key,
                members: &members,
            },
        )
        .collect();
        // The top backend leaves: everyone else keeps their relative order.
        let rest: Vec<(u64, u32)> = members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != full[0])
            .map(|(_, m)| *m)
            .collect();
        let after: Vec<u64> = order(
            4,
            Policy::Hash {
                key,
                members: &rest,
            },
        )
        .map(|i| rest[i].0)
        .collect();
        let before: Vec<u64> = full[1..].iter().map(|&i| members[i].0).collect();
        assert_eq!(after, before);
    }
}
