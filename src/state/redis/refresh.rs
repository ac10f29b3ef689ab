//! Refresh-token families and token revocations in Redis (keys: see
//! `keys.rs`). A family's hash and its replay pair share one hash tag, so
//! the rotation scripts run on one slot; the user's family index is a
//! separate write (another tag).

use super::RedisStore;
use crate::revocation::Event;
use crate::state::StoreError;
use crate::tokens::refresh::{NewFamily, Pair, Presented, Rotation};
/// Decides a rotation atomically. KEYS: family, replay pair. ARGV: the
/// presented token's hash, now, grace, the mint timeout (the current token
/// waits for a successor being minted, or wins again once that was given
/// up). Returns `{"won", user, ends}`,
/// `{"replay", pair}`, `{"pending"}`, `{"reused", user}` or `{"invalid"}`.
const ROTATE: &str = r#"
local f = redis.call('HMGET', KEYS[1], 'revoked', 'exp', 'cur', 'state', 'at', 'prev', 'prev_at', 'user', 'ends')
if f[1] ~= '0' then return {'invalid'} end
local now, grace = tonumber(ARGV[2]), tonumber(ARGV[3])
if tonumber(f[2]) <= now then return {'invalid'} end
local function within(at) return grace > 0 and at and (now - tonumber(at)) <= grace end
if ARGV[1] == f[3] then
  if f[4] == 'pending' and (now - tonumber(f[5])) <= tonumber(ARGV[4]) then return {'pending'} end
  redis.call('HSET', KEYS[1], 'state', 'pending', 'at', ARGV[2])
  return {'won', f[8], f[9]}
elseif ARGV[1] == f[6] and within(f[7]) then
  local replay = redis.call('GET', KEYS[2])
  if replay then return {'replay', replay} end
end
redis.call('HSET', KEYS[1], 'revoked', '1')
redis.call('DEL', KEYS[2])
return {'reused', f[8]}
"#;

/// Moves a family to its next token, if `old` is still its current one.
/// KEYS: family, replay pair. ARGV: old hash, new hash, now, expiry,
/// pair JSON (empty: none), grace.
const COMPLETE: &str = r#"
if redis.call('HGET', KEYS[1], 'cur') ~= ARGV[1] then return 0 end
local exp = math.min(tonumber(ARGV[4]), tonumber(redis.call('HGET', KEYS[1], 'ends')))
redis.call('HSET', KEYS[1], 'cur', ARGV[2], 'state', 'fresh', 'at', '0', 'prev', ARGV[1], 'prev_at', ARGV[3], 'exp', exp)
redis.call('PEXPIREAT', KEYS[1], exp)
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
end
return 1
"#;

fn hex(h: &[u8; 32]) -> String {
    crate::crypto::hex(h)
}

pub async fn create(s: &RedisStore, f: &NewFamily<'_>) -> Result<(), StoreError> {
    let (fam, _) = s.keys.family(f.family);
    let exp = f.expires_ms.min(f.ends_ms);
    // The index first (another tag): a family is never unlisted, so
    // revoke-all always finds it.
    let ufam = s.keys.user_families(f.user);
    let mut index = redis::pipe();
    index
        .cmd("SADD")
        .arg(&ufam)
        .arg(f.family)
        .ignore()
        // The index lives as long as the longest family could: rotations
        // extend a family up to its end, never past it.
        .cmd("PEXPIREAT")
        .arg(&ufam)
        .arg(f.ends_ms)
        .arg("GT")
        .ignore()
        .cmd("PEXPIREAT")
        .arg(&ufam)
        .arg(f.ends_ms)
        .arg("NX")
        .ignore();
    s.run::<()>(&index).await?;
    let mut pipe = redis::pipe();
    pipe.cmd("HSET")
        .arg(&fam)
        .arg("user")
        .arg(f.user)
        .arg("cur")
        .arg(hex(&f.hash))
        .arg("state")
        .arg("fresh")
        .arg("at")
        .arg(0)
        .arg("exp")
        .arg(exp)
        .arg("ends")
        .arg(f.ends_ms)
        .arg("revoked")
        .arg("0")
        .ignore()
        .cmd("PEXPIREAT")
        .arg(&fam)
        .arg(exp)
        .ignore();
    s.run::<()>(&pipe).await
}

pub async fn rotate(
    s: &RedisStore,
    t: &Presented,
    now_ms: u64,
    grace_ms: u64,
) -> Result<Rotation, StoreError> {
    let (fam, replay) = s.keys.family(&t.family);
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(ROTATE)
        .arg(2)
        .arg(fam)
        .arg(replay)
        .arg(hex(&t.hash))
        .arg(now_ms)
        .arg(grace_ms)
        .arg(crate::tokens::refresh::MINT_TIMEOUT_MS);
    let (r,): (Vec<String>,) = s.run(&pipe).await?;
    Ok(match r.first().map(String::as_str) {
        Some("won") if r.len() == 3 => Rotation::Won {
            family: t.family.clone(),
            user: r[1].clone(),
            ends_ms: r[2].parse().unwrap_or(0),
        },
        Some("replay") if r.len() == 2 => {
            Rotation::Replay(serde_json::from_str(&r[1]).map_err(StoreError::Corrupt)?)
        }
        Some("pending") => Rotation::Pending,
        Some("reused") if r.len() == 2 => Rotation::Reused {
            family: t.family.clone(),
            user: r[1].clone(),
        },
        _ => Rotation::Invalid,
    })
}

pub async fn complete(
    s: &RedisStore,
    old: &Presented,
    next: [u8; 32],
    expires_ms: u64,
    pair: Option<&Pair>,
    now_ms: u64,
    grace_ms: u64,
) -> Result<(), StoreError> {
    let (fam, replay) = s.keys.family(&old.family);
    let json = match pair {
        Some(p) if grace_ms > 0 => serde_json::to_string(p).map_err(StoreError::Corrupt)?,
        _ => String::new(),
    };
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(COMPLETE)
        .arg(2)
        .arg(fam)
        .arg(replay)
        .arg(hex(&old.hash))
        .arg(hex(&next))
        .arg(now_ms)
        .arg(expires_ms)
        .arg(json)
        .arg(grace_ms.max(1))
        .ignore();
    s.run::<()>(&pipe).await
}

pub async fn revoke_family(s: &RedisStore, family: &str) -> Result<(), StoreError> {
    let (fam, replay) = s.keys.family(family);
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg("if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'revoked', '1') end redis.call('DEL', KEYS[2]) return 0")
        .arg(2)
        .arg(fam)
        .arg(replay)
        .ignore();
    s.run::<()>(&pipe).await
}

pub async fn revoke_user(s: &RedisStore, user: &str) -> Result<Vec<String>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("SMEMBERS").arg(s.keys.user_families(user));
    let (families,): (Vec<String>,) = s.run(&pipe).await?;
    for f in &families {
        revoke_family(s, f).await?;
    }
    Ok(families)
}

/// Persists a token revocation until it stops mattering and announces it
/// to every replica. Members past their time are pruned on the way.
/// `event` is the encoded token revocation, in force until `until` (unix
/// seconds).
pub async fn publish_revocation(s: &RedisStore, event: &str, until: u64) -> Result<(), StoreError> {
    let now = crate::clock::unix_now();
    let key = s.keys.revocations();
    let mut pipe = redis::pipe();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(&key)
        .arg("-inf")
        .arg(now)
        .ignore()
        .cmd("ZADD")
        .arg(&key)
        .arg("GT")
        .arg(until)
        .arg(event)
        .ignore()
        // The set lives as long as its longest entry.
        .cmd("EXPIREAT")
        .arg(&key)
        .arg(until)
        .arg("GT")
        .ignore()
        .cmd("EXPIREAT")
        .arg(&key)
        .arg(until)
        .arg("NX")
        .ignore();
    s.run::<()>(&pipe).await?;
    // Alone: in a cluster the channel name routes like a key.
    s.publish(event).await
}

/// Every token revocation still in force.
pub async fn load_revocations(s: &RedisStore) -> Result<Vec<Event>, StoreError> {
    let now = crate::clock::unix_now();
    let mut pipe = redis::pipe();
    pipe.cmd("ZRANGE")
        .arg(s.keys.revocations())
        .arg(format!("({now}"))
        .arg("+inf")
        .arg("BYSCORE");
    let (events,): (Vec<String>,) = s.run(&pipe).await?;
    Ok(events.iter().filter_map(|e| Event::parse(e)).collect())
}
