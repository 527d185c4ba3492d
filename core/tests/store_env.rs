//! The env store: the read-only conformance suite over fixed variables and over the real
//! process environment.

use sealbox::store::SecretStore;
use sealbox::store::env::EnvStore;
use zeroize::Zeroizing;

fn value(v: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(v.to_vec())
}

#[tokio::test]
async fn fixed_variables_pass_the_read_only_suite() {
    let db = br#"{"username":"predis","password":"pw","host":"db","port":5432}"#;
    let store = EnvStore::from_vars([
        ("DB_PASSWORD", value(db)),
        ("APP_API_TOKEN", value(b"tok-123")),
        ("APP_CACHE_KEY", value(&[0, 159, 255, 10])),
        ("UNRELATED", value(b"not mapped")),
    ])
    .map("predis/prod/database/password", "DB_PASSWORD")
    .unwrap()
    .prefix_for("app/", "APP_")
    .unwrap();
    let fixtures: [(&str, &[u8]); 3] = [
        ("predis/prod/database/password", db),
        ("app/api/token", b"tok-123"),
        ("app/cache/key", &[0, 159, 255, 10]),
    ];
    for prefix in ["", "app/", "predis/"] {
        sealbox_conformance::run_read_only(&store, store.capabilities(), prefix, &fixtures)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_process_environment_is_read_live() {
    // Cargo sets CARGO_MANIFEST_DIR and CARGO_PKG_NAME for test processes; reading them needs
    // no unsafe set_var. (One variable per name: `build/package` may not also read a
    // CARGO_PKG_ variable, which `cargo/pkg/...` reads.)
    let store = EnvStore::new()
        .map("build/manifest", "CARGO_MANIFEST_DIR")
        .unwrap()
        .prefix_for("cargo/pkg/", "CARGO_PKG_")
        .unwrap();
    let fixtures: [(&str, &[u8]); 2] = [
        ("build/manifest", env!("CARGO_MANIFEST_DIR").as_bytes()),
        ("cargo/pkg/name", env!("CARGO_PKG_NAME").as_bytes()),
    ];
    sealbox_conformance::run_read_only(&store, store.capabilities(), "cargo/pkg/", &fixtures)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unset_variable_is_not_found_and_names_the_variable() {
    let store = EnvStore::from_vars([("SET", value(b"x"))])
        .map("a/b", "SEALBOX_TEST_SURELY_UNSET")
        .unwrap();
    let err = store
        .get(&"a/b".parse().unwrap(), &Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), sealbox::ErrorKind::NotFound);
    assert!(err.message().contains("SEALBOX_TEST_SURELY_UNSET"), "{err}");
}
