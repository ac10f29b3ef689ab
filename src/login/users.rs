//! The local user database (`users_file`, SPEC 5) and password checks.
//!
//! Passwords are verified with argon2id on tokio's blocking pool behind a
//! semaphore: a hash takes tens of milliseconds of CPU by design, and must
//! neither stall the async workers nor let a login flood take every core.
//! An unknown user is checked against a fixed dummy hash, so it costs the
//! same time as a wrong password.

use crate::config::read;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<User>,
}

/// Why a users file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error(transparent)]
    Read(#[from] read::FileError),
    #[error("{}: {problem}", .file.display())]
    Invalid {
        file: std::path::PathBuf,
        problem: UsersProblem,
    },
}

/// What is wrong inside a users file, by its key path in that file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsersProblem {
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("users[{index}].password_hash: `{algorithm}` is not argon2id (use `gatehouse hash-password`)")]
    NotArgon2id { index: usize, algorithm: String },
    #[error(
        "users[{index}].password_hash: not a PHC string ({reason}); use `gatehouse hash-password`"
    )]
    NotPhc { index: usize, reason: String },
    #[error("users[{index}].username: empty or contains control characters")]
    BadUsername { index: usize },
    #[error("users[{index}].username: duplicate user `{name}`")]
    Duplicate { index: usize, name: String },
}

#[derive(Debug, Default)]
pub struct Users {
    by_name: HashMap<String, User>,
}

impl Users {
    /// Reads and checks the file: at most 1 MiB (SPEC 16), unique names,
    /// argon2id PHC hashes.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text = read::read_limited_to_string(path, read::MAX_FILE_BYTES)?;
        Self::parse(&text).map_err(|problem| UsersError::Invalid {
            file: path.into(),
            problem,
        })
    }

    pub fn parse(text: &str) -> Result<Users, UsersProblem> {
        let f: UsersFile = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| UsersProblem::Syntax {
                path: e.path().to_string(),
                message: e.into_inner().message().trim().to_string(),
            })?;
        let mut by_name = HashMap::new();
        for (index, u) in f.users.into_iter().enumerate() {
            match PasswordHash::new(&u.password_hash) {
                Ok(h) if h.algorithm.as_str() == "argon2id" => {}
                Ok(h) => {
                    return Err(UsersProblem::NotArgon2id {
                        index,
                        algorithm: h.algorithm.to_string(),
                    })
                }
                Err(e) => {
                    return Err(UsersProblem::NotPhc {
                        index,
                        reason: e.to_string(),
                    })
                }
            }
            if u.username.is_empty() || u.username.bytes().any(|b| b.is_ascii_control()) {
                return Err(UsersProblem::BadUsername { index });
            }
            if by_name.contains_key(&u.username) {
                return Err(UsersProblem::Duplicate {
                    index,
                    name: u.username,
                });
            }
            by_name.insert(u.username.clone(), u);
        }
        Ok(Users { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }
}

/// Hashes a password as an argon2id PHC string (OWASP parameters:
/// m=19456 KiB, t=2, p=1), with a salt from the OS CSPRNG.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&crate::crypto::random_bytes::<16>())
        .expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

/// A hash of a random password: unknown users are checked against it.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&crate::crypto::hex(&crate::crypto::random_bytes::<16>())))
}

/// At most this many argon2 computations at once; the rest wait.
fn limiter() -> &'static Arc<Semaphore> {
    static SEM: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SEM.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(cores.max(1)))
    })
}

/// A turn at the password checker: at most one per core at once.
pub struct CheckSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Waits for a turn. Callers take it before anything else that a check
/// costs (the lockout's bookkeeping included), so attempts that are
/// waiting, or give up while waiting, cost nothing but the wait.
pub async fn slot() -> Option<CheckSlot> {
    limiter()
        .clone()
        .acquire_owned()
        .await
        .ok()
        .map(|p| CheckSlot { _permit: p })
}

/// Checks `password` for `username`. `Some(user)` only for an enabled user
/// with the right password; the work done is the same either way. The slot
/// is held by the check itself, so a caller that goes away mid-check does
/// not free it before the hash ends.
pub async fn verify(
    slot: CheckSlot,
    users: Arc<Users>,
    username: String,
    password: String,
) -> Option<User> {
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let user = users.get(&username);
        let phc = user.map_or(dummy_hash(), |u| u.password_hash.as_str());
        let ok = PasswordHash::new(phc)
            .map(|h| verify_phc(password.as_bytes(), &h))
            .unwrap_or(false);
        match user {
            Some(u) if ok && !u.disabled => Some(u.clone()),
            _ => None,
        }
    })
    .await
    .ok()
    .flatten()
}

/// The working area of one check is allocated at least this large (SPEC
/// 16: a check's memory is given back). argon2id with OWASP's parameters
/// fills 19 MiB; glibc serves a freed block of that size from its heap the
/// next time and keeps it, per thread arena, so every blocking thread that
/// ever checked a password would hold ~19 MiB for good (10 failed logins
/// took a process from 10 to 206 MB). Requests over 32 MiB are always
/// mapped and unmapped on free (glibc caps its dynamic mmap threshold
/// there; musl maps large blocks too), so the area is reserved at 33 MiB
/// and only the blocks the hash uses are ever touched.
const WORK_AREA_BLOCKS: usize = 33 * 1024;

/// `argon2::PasswordVerifier::verify_password`, with a working area that
/// goes back to the OS when the check ends.
fn verify_phc(password: &[u8], hash: &PasswordHash<'_>) -> bool {
    use argon2::{Algorithm, Block, Params, Version};
    let (Ok(alg), Some(salt), Some(expected)) =
        (Algorithm::try_from(hash.algorithm), hash.salt, hash.hash)
    else {
        return false;
    };
    let Ok(version) = hash.version.map_or(Ok(Version::V0x13), Version::try_from) else {
        return false;
    };
    // Also takes the output length from the stored hash.
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let expected = expected.as_bytes();
    let blocks = params.block_count();
    let mut area: Vec<Block> = Vec::with_capacity(blocks.max(WORK_AREA_BLOCKS));
    area.resize(blocks, Block::default());
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(alg, version, params);
    argon
        .hash_password_into_with_memory(password, salt, &mut out, &mut area[..])
        .is_ok()
        && crate::crypto::ct_eq(&out, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_unknown_and_disabled_users_fail() {
        let h = hash_password("s3cret");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let text = format!(
            "[[users]]\nusername = \"alice\"\npassword_hash = \"{h}\"\nemail = \"a@example.com\"\ngroups = [\"staff\"]\n\n\
             [[users]]\nusername = \"bob\"\npassword_hash = \"{h}\"\ndisabled = true\n"
        );
        let users = Arc::new(Users::parse(&text).unwrap());
        let ok = verify(
            slot().await.unwrap(),
            users.clone(),
            "alice".into(),
            "s3cret".into(),
        )
        .await
        .unwrap();
        assert_eq!(ok.groups, vec!["staff"]);
        assert!(verify(
            slot().await.unwrap(),
            users.clone(),
            "alice".into(),
            "wrong".into()
        )
        .await
        .is_none());
        assert!(verify(
            slot().await.unwrap(),
            users.clone(),
            "mallory".into(),
            "s3cret".into()
        )
        .await
        .is_none());
        assert!(
            verify(slot().await.unwrap(), users, "bob".into(), "s3cret".into())
                .await
                .is_none()
        );
    }

    #[test]
    fn bad_hashes_and_duplicates_are_refused() {
        let e =
            Users::parse("[[users]]\nusername = \"a\"\npassword_hash = \"plain\"\n").unwrap_err();
        assert!(matches!(e, UsersProblem::NotPhc { index: 0, .. }), "{e:?}");
        assert!(e.to_string().contains("users[0].password_hash"), "{e}");
        let h = hash_password("x");
        let dup = format!("[[users]]\nusername = \"a\"\npassword_hash = \"{h}\"\n[[users]]\nusername = \"a\"\npassword_hash = \"{h}\"\n");
        let e = Users::parse(&dup).unwrap_err();
        assert!(
            matches!(e, UsersProblem::Duplicate { index: 1, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("duplicate"), "{e}");
        assert!(Users::parse("[[users]]\nusername = \"a\"\npasword_hash = \"x\"\n").is_err());
    }
}
