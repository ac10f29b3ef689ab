use std::path::Path;

/// The JWT example loads as `gatehouse check` loads it (it names a
/// jwks_url, which check does not fetch). Every other example is loaded by
/// `config::every_example_config_passes_check`.
#[test]
fn jwt_example_config_passes_check() {
    let jwt = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/jwt.toml");
    let cfg = gatehouse::config::load(&jwt).unwrap_or_else(|e| panic!("{e}"));
    assert!(!cfg.jwt.is_empty(), "the JWT example configures an issuer");
    assert!(cfg.routes.iter().any(|r| !r.require.groups_any.is_empty()));
}
