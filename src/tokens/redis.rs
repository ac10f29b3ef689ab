//! Refresh-token families and revocations in Redis (the replicas' shared
//! store). Keys, under `key_prefix`:
//! - `rt:<sha256 hex>`: a refresh token (family, grant, expiry, state),
//!   expiring with the token; `rtr:<hex>`: its replayable successor pair,
//!   kept only for `refresh_reuse_grace`.
//! - `fam:<id>`: a family (`user`, `revoked`); `ufam:<user>`: its families.
//! - `revoked:<kind>:<name>`: revocations, expiring when they stop
//!   mattering; also announced on `<key_prefix>events`.

use super::refresh::{Grant, Pair, Rotation};
use crate::session::redis::RedisStore;
use crate::session::StoreError;

/// Decides a rotation atomically. Returns `{"won", family, grant}`,
/// `{"replay", pair}`, `{"pending"}`, `{"reused", family, user}` or
/// `{"invalid"}`.
const ROTATE: &str = r#"
local t = redis.call('HMGET', KEYS[1], 'fam', 'state', 'exp', 'at', 'grant', 'user')
if not t[1] then return {'invalid'} end
local now, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
if tonumber(t[3]) <= now then return {'invalid'} end
local famk = ARGV[3] .. 'fam:' .. t[1]
if redis.call('HGET', famk, 'revoked') ~= '0' then return {'invalid'} end
if t[2] == 'fresh' then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'at', ARGV[1])
  return {'won', t[1], t[5]}
end
local within = grace > 0 and (now - tonumber(t[4])) <= grace
if within then
  local replay = redis.call('GET', KEYS[2])
  if replay then return {'replay', replay} end
  if t[2] == 'pending' then return {'pending'} end
end
redis.call('HSET', famk, 'revoked', '1')
return {'reused', t[1], t[6]}
"#;

fn hex(h: &[u8; 32]) -> String {
    crate::crypto::hex(h)
}

pub async fn insert(
    s: &RedisStore,
    hash: [u8; 32],
    family: &str,
    grant: &Grant,
    expires_ms: u64,
) -> Result<(), StoreError> {
    let p = &s.prefix;
    let (rt, fam, ufam) = (
        format!("{p}rt:{}", hex(&hash)),
        format!("{p}fam:{family}"),
        format!("{p}ufam:{}", grant.user),
    );
    let json = serde_json::to_string(grant).map_err(StoreError::Corrupt)?;
    let mut pipe = redis::pipe();
    pipe.cmd("HSET")
        .arg(&rt)
        .arg("fam")
        .arg(family)
        .arg("state")
        .arg("fresh")
        .arg("exp")
        .arg(expires_ms)
        .arg("at")
        .arg(0)
        .arg("grant")
        .arg(&json)
        .arg("user")
        .arg(&grant.user)
        .ignore()
        .cmd("PEXPIREAT")
        .arg(&rt)
        .arg(expires_ms)
        .ignore()
        .cmd("HSETNX")
        .arg(&fam)
        .arg("revoked")
        .arg("0")
        .ignore()
        .cmd("HSET")
        .arg(&fam)
        .arg("user")
        .arg(&grant.user)
        .ignore()
        .cmd("PEXPIREAT")
        .arg(&fam)
        .arg(expires_ms)
        .arg("GT")
        .ignore()
        .cmd("PEXPIREAT")
        .arg(&fam)
        .arg(expires_ms)
        .arg("NX")
        .ignore()
        .cmd("SADD")
        .arg(&ufam)
        .arg(family)
        .ignore()
        .cmd("PEXPIREAT")
        .arg(&ufam)
        .arg(expires_ms)
        .arg("GT")
        .ignore()
        .cmd("PEXPIREAT")
        .arg(&ufam)
        .arg(expires_ms)
        .arg("NX")
        .ignore();
    s.run::<()>(&pipe).await
}

pub async fn rotate(
    s: &RedisStore,
    hash: &[u8; 32],
    now_ms: u64,
    grace_ms: u64,
) -> Result<Rotation, StoreError> {
    let p = &s.prefix;
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg(ROTATE)
        .arg(2)
        .arg(format!("{p}rt:{}", hex(hash)))
        .arg(format!("{p}rtr:{}", hex(hash)))
        .arg(now_ms)
        .arg(grace_ms)
        .arg(p);
    let (r,): (Vec<String>,) = s.run(&pipe).await?;
    Ok(match r.first().map(String::as_str) {
        Some("won") if r.len() == 3 => Rotation::Won {
            family: r[1].clone(),
            grant: serde_json::from_str(&r[2]).map_err(StoreError::Corrupt)?,
        },
        Some("replay") if r.len() == 2 => {
            Rotation::Replay(serde_json::from_str(&r[1]).map_err(StoreError::Corrupt)?)
        }
        Some("pending") => Rotation::Pending,
        Some("reused") if r.len() == 3 => Rotation::Reused {
            family: r[1].clone(),
            user: r[2].clone(),
        },
        _ => Rotation::Invalid,
    })
}

pub async fn complete(
    s: &RedisStore,
    hash: &[u8; 32],
    pair: &Pair,
    grace_ms: u64,
) -> Result<(), StoreError> {
    let p = &s.prefix;
    let mut pipe = redis::pipe();
    if grace_ms > 0 {
        let json = serde_json::to_string(pair).map_err(StoreError::Corrupt)?;
        pipe.cmd("SET")
            .arg(format!("{p}rtr:{}", hex(hash)))
            .arg(json)
            .arg("PX")
            .arg(grace_ms)
            .ignore();
    }
    pipe.cmd("HSET")
        .arg(format!("{p}rt:{}", hex(hash)))
        .arg("state")
        .arg("rotated")
        .ignore();
    s.run::<()>(&pipe).await
}

pub async fn revoke_family(s: &RedisStore, family: &str) -> Result<(), StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("EVAL")
        .arg("if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'revoked', '1') end return 0")
        .arg(1)
        .arg(format!("{}fam:{family}", s.prefix))
        .ignore();
    s.run::<()>(&pipe).await
}

pub async fn revoke_user(s: &RedisStore, user: &str) -> Result<Vec<String>, StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("SMEMBERS").arg(format!("{}ufam:{user}", s.prefix));
    let (families,): (Vec<String>,) = s.run(&pipe).await?;
    for f in &families {
        revoke_family(s, f).await?;
    }
    Ok(families)
}

/// Persists a revocation until `until` (unix seconds) and announces it.
pub async fn publish_revocation(s: &RedisStore, event: &str, until: u64) -> Result<(), StoreError> {
    let now = crate::session::now_ms() / 1000;
    let ttl_ms = until.saturating_sub(now).max(1) * 1000;
    let mut pipe = redis::pipe();
    pipe.cmd("SET")
        .arg(format!("{}revoked:{event}", s.prefix))
        .arg(1)
        .arg("PX")
        .arg(ttl_ms)
        .ignore()
        .cmd("PUBLISH")
        .arg(s.channel())
        .arg(event)
        .ignore();
    s.run::<()>(&pipe).await
}

/// Every revocation still in force, as event texts.
pub async fn load_revocations(s: &RedisStore) -> Result<Vec<String>, StoreError> {
    let pattern = format!("{}revoked:*", s.prefix);
    let strip = format!("{}revoked:", s.prefix);
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let mut pipe = redis::pipe();
        pipe.cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000);
        let ((next, keys),): ((u64, Vec<String>),) = s.run(&pipe).await?;
        out.extend(
            keys.iter()
                .filter_map(|k| k.strip_prefix(&strip).map(str::to_string)),
        );
        cursor = next;
        if cursor == 0 || out.len() > 1_000_000 {
            break;
        }
    }
    Ok(out)
}
