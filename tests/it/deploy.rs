//! The deployment files under deploy/: every gatehouse config there passes
//! `gatehouse check` as committed (with its EXAMPLE certificates, keys and
//! users beside it), so the examples cannot rot. YAML and Kubernetes schema
//! checks live in .ci/check-deploy (they need Python).

use std::path::{Path, PathBuf};

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

#[test]
fn deploy_configs_pass_check() {
    let mut tomls = Vec::new();
    files_under(&deploy_dir(), "toml", &mut tomls);
    // Users files are read through the configs that name them.
    let configs: Vec<_> = tomls
        .iter()
        .filter(|p| !p.ends_with("users.toml"))
        .collect();
    for path in &configs {
        let c = gatehouse::config::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            c.warnings.is_empty(),
            "{}: an example should load without warnings: {:?}",
            path.display(),
            c.warnings
        );
    }
    let names: Vec<String> = configs
        .iter()
        .map(|p| p.strip_prefix(deploy_dir()).unwrap().display().to_string())
        .collect();
    for expected in [
        "compose/gatehouse/gatehouse.toml",
        "forward-auth/gatehouse/gatehouse.toml",
        "kubernetes/sidecar/gatehouse.toml",
        "kubernetes/standalone/base/gatehouse.toml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
}

#[test]
fn deploy_users_files_are_named_by_a_config() {
    // A users.toml no config names would be checked by nothing.
    let mut tomls = Vec::new();
    files_under(&deploy_dir(), "toml", &mut tomls);
    let named: Vec<PathBuf> = tomls
        .iter()
        .filter(|p| !p.ends_with("users.toml"))
        .filter_map(|p| gatehouse::config::load(p).ok()?.login?.users_file)
        .collect();
    for users in tomls.iter().filter(|p| p.ends_with("users.toml")) {
        assert!(
            named.iter().any(|n| n == users),
            "{} is named by no config under deploy/",
            users.display()
        );
    }
}
