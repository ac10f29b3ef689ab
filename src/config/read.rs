//! Reading the files a config names (secrets, the users file, keys,
//! certificates, CA bundles, JWKS files, the config itself) with a bound
//! (SPEC 16).
//!
//! Without one, `secret_file = "/dev/zero"` makes `check` and reload read
//! until memory runs out, and a FIFO makes them wait forever for a writer.
//! So a file must be a regular file (looked at before it is opened, since
//! opening a FIFO blocks) and at most `limit` bytes; at most `limit + 1`
//! bytes are ever read, whatever the file turns into between the look and
//! the read.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

const MIB: u64 = 1024 * 1024;

/// Secrets (`*_file`), the users file, private and public keys, server
/// certificate chains and JWKS files: all a few KiB at most in practice.
pub const MAX_FILE_BYTES: u64 = MIB;

/// CA bundles (`client_ca`, `ca_file`, an upstream's `ca`): a whole public
/// root store in PEM is about 200 KiB, and private bundles with many
/// intermediates can be larger than the 1 MiB of the other files.
pub const MAX_CA_BUNDLE_BYTES: u64 = 4 * MIB;

/// The config file itself: generated configs with thousands of routes are
/// well under this.
pub const MAX_CONFIG_BYTES: u64 = 4 * MIB;

/// Why a file could not be used. The message names the path and never
/// anything read from the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {}: not a regular file", .path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot read {}: larger than {}", .path.display(), size(*.limit))]
    TooLarge { path: PathBuf, limit: u64 },
}

impl FileError {
    /// The reason alone, without the path, as an I/O error (for callers
    /// that name the file themselves).
    pub fn into_io(self) -> io::Error {
        match self {
            FileError::Io { source, .. } => source,
            FileError::NotAFile { .. } => {
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
            }
            FileError::TooLarge { limit, .. } => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {}", size(limit)),
            ),
        }
    }
}

fn size(bytes: u64) -> String {
    if bytes > 0 && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// The contents of the regular file at `path`, if it holds at most `limit`
/// bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let io_err = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_a_file = || FileError::NotAFile {
        path: path.to_path_buf(),
    };
    let too_large = || FileError::TooLarge {
        path: path.to_path_buf(),
        limit,
    };
    // Before opening: a FIFO would block the open itself. Symlinks are
    // followed (a Kubernetes Secret is a symlink to a regular file).
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(not_a_file());
    }
    if meta.len() > limit {
        return Err(too_large());
    }
    // What was opened may not be what was looked at (the path was swapped
    // in between): look again at the open file, and read no more than one
    // byte past the limit in any case.
    // Non-blocking, so a FIFO swapped in since cannot hang the open either.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(io_err)?
    };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(not_a_file());
    }
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// [`read_limited`] for text: the contents must be UTF-8.
pub fn read_limited_to_string(path: &Path, limit: u64) -> Result<String, FileError> {
    let bytes = read_limited(path, limit)?;
    String::from_utf8(bytes).map_err(|_| FileError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_regular_files_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, b"secret\n").unwrap();
        assert_eq!(read_limited(&p, 7).unwrap(), b"secret\n");
        assert_eq!(read_limited_to_string(&p, 100).unwrap(), "secret\n");
        std::fs::write(&p, b"").unwrap();
        assert!(read_limited(&p, 0).unwrap().is_empty());
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'a'; 8]).unwrap();
        let e = read_limited(&p, 7).unwrap_err();
        assert!(matches!(e, FileError::TooLarge { limit: 7, .. }), "{e:?}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        let e = read_limited(&p, 0).unwrap_err().to_string();
        assert!(e.ends_with("larger than 0 bytes"), "{e}");
        std::fs::write(&p, vec![b'a'; (MIB + 1) as usize]).unwrap();
        let e = read_limited(&p, MAX_FILE_BYTES).unwrap_err().to_string();
        assert!(e.ends_with("larger than 1 MiB"), "{e}");
    }

    #[test]
    fn devices_directories_and_missing_files_are_refused() {
        for p in ["/dev/zero", "/dev/null", "/"] {
            let e = read_limited(Path::new(p), MAX_FILE_BYTES).unwrap_err();
            assert!(matches!(e, FileError::NotAFile { .. }), "{p}: {e:?}");
            assert_eq!(
                e.to_string(),
                format!("cannot read {p}: not a regular file")
            );
        }
        // A FIFO: refused before the open, which would wait for a writer.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        if std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success())
        {
            let e = read_limited(&fifo, MAX_FILE_BYTES).unwrap_err();
            assert!(matches!(e, FileError::NotAFile { .. }), "{e:?}");
        }
        let e = read_limited(Path::new("/nonexistent/x"), MAX_FILE_BYTES).unwrap_err();
        assert!(matches!(e, FileError::Io { .. }), "{e:?}");
        assert!(e.to_string().starts_with("cannot read /nonexistent/x: "));
    }

    #[test]
    fn text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        let e = read_limited_to_string(&p, 10).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }
}
