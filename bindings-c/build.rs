//! Gives the shared library the SONAME C users link against (`libsealbox.so.MAJOR.MINOR`),
//! whatever file name cargo builds it under (`libsealbox_c.so`, see Cargo.toml).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
        let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsealbox.so.{major}.{minor}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
