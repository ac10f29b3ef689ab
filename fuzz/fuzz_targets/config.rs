//! Config parsing and validation (`src/config/`): TOML text to a typed
//! `Config` or a list of problems.
//!
//! Checked: no panic on any text; errors carry a message, and a line and
//! column inside the text when they carry one. The example configs and the
//! files they name (certificates, keys, users) are copied into the folder
//! the text is read as coming from, so valid inputs validate all the way.
//!
//! Inputs naming `/dev`, `/proc` or `/sys` are skipped: a `*_file` there
//! (`/dev/zero`, `/dev/stdin`) reads without end, which is the operator's
//! own machine to break, not an input an attacker controls.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn config_path() -> &'static PathBuf {
    static P: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &P.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        copy_dir(&examples, dir.path());
        let path = dir.path().join("gatehouse.toml");
        (dir, path)
    })
    .1
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    match gatehouse::config::load_str(text, config_path()) {
        Ok(cfg) => {
            assert!(!cfg.routes.iter().any(|r| r.upstream.is_some_and(|u| u >= cfg.upstreams.len())));
        }
        Err(e) => {
            let problems = e.problems();
            assert!(!problems.is_empty(), "an error without problems: {e}");
            let lines = text.lines().count() + 1;
            for p in problems {
                assert!(
                    !p.message.is_empty(),
                    "a problem without a message at {:?}: {e}",
                    p.path
                );
                if let Some((line, col)) = p.line {
                    assert!(line >= 1 && line <= lines, "line {line} of {lines}: {p}");
                    assert!(col >= 1, "column {col}: {p}");
                }
            }
            let _ = e.to_string();
        }
    }
});
