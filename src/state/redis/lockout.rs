//! Login lockout counters in Redis (SPEC 13): the same rule as the memory
//! counters (`state/memory/lockout.rs`), counted across every replica, so
//! N replicas give an attacker no more attempts than one.
//!
//! A counter is a hash (`failures`, `window_start`, `locked_until`, unix
//! ms) and a sorted set of the checks in flight, one hash tag (see
//! `keys.rs`); both scripts run on that one slot. A reservation carries a
//! random id and an abandon time: a replica that dies mid-check leaves a
//! reservation that stops counting after [`ABANDON_AFTER`].

use super::RedisStore;
use crate::state::memory::lockout::Policy;
use crate::state::LockoutRefusal;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// A reservation no replica settled (it died mid-check) stops counting
/// after this long: far beyond any password check.
const ABANDON_AFTER: Duration = Duration::from_secs(60);

/// `Retry-After` when the budget is taken by checks still running.
const IN_FLIGHT_RETRY: Duration = Duration::from_secs(1);

/// KEYS: counter, running. ARGV: now, window, lockout, max_failures,
/// attempt id, abandon after (ms). Returns `{"ok"}`, `{"locked", ms}` or
/// `{"busy"}`.
const BEGIN: &str = r#"
local now, window, lockout, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local h = redis.call('HMGET', KEYS[1], 'failures', 'window_start', 'locked_until')
local failures, ws, lu = tonumber(h[1]) or 0, tonumber(h[2]) or now, tonumber(h[3]) or 0
if lu > now then return {'locked', tostring(lu - now)} end
if lu > 0 then
  failures, lu, ws = 0, 0, now
elseif now - ws >= window then
  failures, ws = 0, now
end
redis.call('HSET', KEYS[1], 'failures', failures, 'window_start', ws, 'locked_until', lu)
local keep = math.max(window, lockout) + tonumber(ARGV[6])
redis.call('PEXPIRE', KEYS[1], keep)
if failures + redis.call('ZCARD', KEYS[2]) >= max then return {'busy'} end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[5])
redis.call('PEXPIRE', KEYS[2], keep)
return {'ok'}
"#;

/// KEYS: counter, running. ARGV: now, lockout, max_failures, attempt id,
/// failed (1/0). A right password clears the count unless a lockout began
/// meanwhile (other attempts failed): it stands.
const SETTLE: &str = r#"
if redis.call('ZREM', KEYS[2], ARGV[4]) == 0 then return 0 end
local h = redis.call('HMGET', KEYS[1], 'failures', 'locked_until')
local failures, lu = tonumber(h[1]) or 0, tonumber(h[2]) or 0
if ARGV[5] == '1' then
  failures = failures + 1
  if failures >= tonumber(ARGV[3]) and lu == 0 then lu = tonumber(ARGV[1]) + tonumber(ARGV[2]) end
  redis.call('HSET', KEYS[1], 'failures', failures, 'locked_until', lu)
  if lu > 0 then redis.call('PEXPIRE', KEYS[1], math.max(redis.call('PTTL', KEYS[1]), lu - tonumber(ARGV[1]))) end
elseif lu == 0 then
  redis.call('HSET', KEYS[1], 'failures', 0)
end
return 1
"#;

/// A reservation held in Redis; see `crate::state::Attempt`.
pub struct Attempt {
    store: Arc<RedisStore>,
    keys: (String, String),
    id: String,
    policy: Policy,
    settled: bool,
}

fn counter_digest(user: &str, ip: IpAddr) -> [u8; 32] {
    crate::crypto::sha256(format!("{user}\0{ip}").as_bytes())
}

pub async fn begin(
    store: &Arc<RedisStore>,
    user: &str,
    ip: IpAddr,
    policy: Policy,
) -> Result<Attempt, LockoutRefusal> {
    let keys = store.keys.lockout(&counter_digest(user, ip));
    let id = crate::crypto::hex(&crate::crypto::random_bytes::<16>());
    let mut p = redis::pipe();
    p.cmd("EVAL")
        .arg(BEGIN)
        .arg(2)
        .arg(&keys.0)
        .arg(&keys.1)
        .arg(crate::clock::now_ms())
        .arg(policy.window.as_millis() as u64)
        .arg(policy.lockout.as_millis() as u64)
        .arg(policy.max_failures)
        .arg(&id)
        .arg(ABANDON_AFTER.as_millis() as u64);
    let (r,): (Vec<String>,) = store.run(&p).await.map_err(LockoutRefusal::Store)?;
    match r.first().map(String::as_str) {
        Some("ok") => Ok(Attempt {
            store: store.clone(),
            keys,
            id,
            policy,
            settled: false,
        }),
        Some("locked") => Err(LockoutRefusal::RetryAfter(Duration::from_millis(
            r.get(1).and_then(|ms| ms.parse().ok()).unwrap_or(1000),
        ))),
        _ => Err(LockoutRefusal::RetryAfter(IN_FLIGHT_RETRY)),
    }
}

impl Attempt {
    fn script(&self, failed: bool) -> redis::Pipeline {
        let mut p = redis::pipe();
        p.cmd("EVAL")
            .arg(SETTLE)
            .arg(2)
            .arg(&self.keys.0)
            .arg(&self.keys.1)
            .arg(crate::clock::now_ms())
            .arg(self.policy.lockout.as_millis() as u64)
            .arg(self.policy.max_failures)
            .arg(&self.id)
            .arg(if failed { "1" } else { "0" })
            .ignore();
        p
    }

    pub async fn settle(mut self, failed: bool) {
        self.settled = true;
        if let Err(e) = self.store.run::<()>(&self.script(failed)).await {
            // The reservation stops counting after ABANDON_AFTER.
            tracing::warn!(error = %e, "could not settle a login attempt in Redis");
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            // Dropped mid-check (the client went away): the check ran, so
            // it counts as a failure, settled off the dropping task.
            let (store, p) = (self.store.clone(), self.script(true));
            tokio::spawn(async move {
                let _ = store.run::<()>(&p).await;
            });
        }
    }
}
