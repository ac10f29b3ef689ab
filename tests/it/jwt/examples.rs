use std::path::Path;

/// Every example in `config/` loads as `gatehouse check` loads it (the JWT
/// example names a jwks_url, which check does not fetch).
#[test]
fn jwt_example_config_passes_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = gatehouse::config::load(&path) {
                panic!("{e}");
            }
            checked.push(path);
        }
    }
    let jwt = dir.join("jwt.toml");
    assert!(checked.contains(&jwt), "config/jwt.toml is an example");
    let cfg = gatehouse::config::load(&jwt).unwrap();
    assert!(!cfg.jwt.is_empty(), "the JWT example configures an issuer");
    assert!(cfg.routes.iter().any(|r| !r.require.groups_any.is_empty()));
}
