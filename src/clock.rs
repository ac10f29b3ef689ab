//! The one clock: every expiry, deadline and timestamp in the gateway reads
//! it (sessions, refresh families, revocation marks, lockout windows, the
//! verified-token cache, JWKS refresh, health and ejection timers, the
//! sign-in state, `exp`/`iat` of the tokens it mints).
//!
//! Two readings, one source:
//! - [`Instant`] is tokio's `time::Instant`. In production it is the OS
//!   monotonic clock; under a paused tokio runtime (tests with
//!   `#[tokio::test(start_paused = true)]`) it moves only with
//!   `tokio::time::advance` or the runtime's auto-advance, so expiry tests
//!   run without waiting (as mini-redis's `db.rs` does).
//! - [`now_ms`] / [`unix_now`] are wall time, what goes into Redis, into
//!   tokens and to other replicas. They are derived from the same
//!   monotonic reading: wall = monotonic + an offset (wall minus monotonic,
//!   both read from the OS together). So paused tests see wall time advance
//!   with tokio's clock, and production pays one monotonic read, the same
//!   cost as the `SystemTime::now()` it replaces.
//!
//! Why the offset is re-measured (every [`RESYNC`]): the monotonic clock is
//! slewed by NTP like the wall clock, but it does not follow a step (an NTP
//! step after boot, an operator's `date -s`) and it stops during a suspend.
//! A base taken once would leave this replica's `exp`, `iat` and session
//! deadlines off by that step for the rest of its life, and replicas must
//! agree on wall time. Re-measuring from the real clocks (not from tokio's
//! paused one) leaves paused tests undisturbed: only the offset between the
//! two OS clocks is refreshed, never the paused reading.
//!
//! State: two process-wide atomics (the offset and when it was measured);
//! whoever reads the clock after [`RESYNC`] has passed re-measures them. No
//! lock; a race between two re-measurers writes two equally good offsets.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use tokio::time::Instant;

/// How often the wall-minus-monotonic offset is re-measured.
pub const RESYNC: Duration = Duration::from_secs(1);

/// A fixed point of the monotonic clock: readings are kept as signed
/// nanoseconds from it.
fn origin() -> std::time::Instant {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    *ORIGIN.get_or_init(std::time::Instant::now)
}

/// Wall time minus monotonic time, in nanoseconds (`i64::MIN`: not yet
/// measured).
static OFFSET_NS: AtomicI64 = AtomicI64::new(i64::MIN);
/// The monotonic reading (ns from [`origin`]) at the last measurement.
static MEASURED_AT_NS: AtomicI64 = AtomicI64::new(0);

/// Signed nanoseconds from [`origin`] to `t`.
fn mono_ns(t: std::time::Instant) -> i64 {
    let o = origin();
    match t.checked_duration_since(o) {
        Some(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        None => -(o.duration_since(t).as_nanos().min(i64::MAX as u128) as i64),
    }
}

/// Reads both OS clocks and stores their difference.
fn measure() -> i64 {
    let real_mono = mono_ns(std::time::Instant::now());
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64);
    let offset = wall.saturating_sub(real_mono);
    OFFSET_NS.store(offset, Relaxed);
    MEASURED_AT_NS.store(real_mono, Relaxed);
    offset
}

/// Wall time at the monotonic instant `t`, in nanoseconds since the epoch.
fn wall_ns_at(t: Instant) -> i64 {
    let mono = mono_ns(t.into_std());
    let mut offset = OFFSET_NS.load(Relaxed);
    // `mono` is tokio's reading: the real monotonic clock in production, a
    // paused one in tests. Either way it tells roughly when to re-measure;
    // the measurement itself reads the real clocks.
    if offset == i64::MIN || mono.abs_diff(MEASURED_AT_NS.load(Relaxed)) >= RESYNC.as_nanos() as u64
    {
        offset = measure();
    }
    offset.saturating_add(mono).max(0)
}

/// The wall clock in milliseconds since the Unix epoch (0 for a clock set
/// before 1970): what session records and refresh tokens store.
pub fn now_ms() -> u64 {
    (wall_ns_at(Instant::now()) / 1_000_000) as u64
}

/// The same clock in whole seconds: what JWT claims (`exp`, `iat`), the
/// sign-in state and token revocations use.
pub fn unix_now() -> u64 {
    now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_matches_the_system_clock() {
        let sys = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let ours = Duration::from_millis(now_ms());
        let diff = ours.abs_diff(sys);
        assert!(diff < Duration::from_millis(50), "{ours:?} vs {sys:?}");
        assert_eq!(unix_now(), now_ms() / 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn paused_time_moves_wall_time_and_only_by_the_advance() {
        let before = now_ms();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let after = now_ms();
        // Re-measuring the offset on the way (an hour is past RESYNC) must
        // not pull the clock back to the real wall time.
        assert!(
            (3_600_000..3_600_050).contains(&(after - before)),
            "{before} -> {after}"
        );
        tokio::time::advance(Duration::from_millis(1500)).await;
        let later = now_ms();
        assert!(
            (1500..1550).contains(&(later - after)),
            "{after} -> {later}"
        );
    }
}
