//! Fuzzes the YAML config parser: any input must give a config or a `Config` error, never a
//! panic, and a parsed config's `Debug` must not fail. Variables resolve from a fixed table so
//! runs are reproducible; `*_FILE`-style reads are not reached (they happen in providers).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealbox::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "SET" => Some("value".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    match Config::from_yaml_str_with_env(text, &env) {
        Ok(config) => {
            let _ = format!("{config:?}");
            let _ = config.store_configs();
        }
        Err(e) => assert_eq!(e.kind(), sealbox::ErrorKind::Config, "{e}"),
    }
});
