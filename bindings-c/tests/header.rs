//! The checked-in `include/sealbox.h` is exactly what the pinned cbindgen generates now, and
//! its version defines match Cargo.toml.
//!
//! After changing the C ABI, regenerate with
//! `cbindgen --config bindings-c/cbindgen.toml --crate sealbox-c --output bindings-c/include/sealbox.h bindings-c`
//! (cbindgen 0.29.4; `scripts/test-c.sh` installs it).

use std::path::Path;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn checked_in_header() -> String {
    std::fs::read_to_string(crate_dir().join("include/sealbox.h")).unwrap_or_default()
}

#[test]
fn checked_in_header_matches_a_fresh_generation() {
    let config = cbindgen::Config::from_file(crate_dir().join("cbindgen.toml"))
        .expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir())
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("header is UTF-8");
    let checked_in = checked_in_header();
    if fresh != checked_in {
        let first_diff = fresh
            .lines()
            .zip(checked_in.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "length differs".to_owned(),
                |i| format!("line {}", i + 1),
            );
        panic!(
            "include/sealbox.h is stale ({first_diff}); regenerate it with cbindgen 0.29.4 (see this file's header)"
        );
    }
}

#[test]
fn version_defines_match_cargo_toml() {
    let header = checked_in_header();
    for (define, expected) in [
        ("SB_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("SB_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("SB_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        let line = format!("#define {define} {expected}");
        assert!(
            header.lines().any(|l| l.trim() == line),
            "include/sealbox.h lacks `{line}`"
        );
    }
}
