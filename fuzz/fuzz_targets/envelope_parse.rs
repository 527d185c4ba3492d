//! Envelope parsing is total: any input gives a view or a typed error, never a panic, and
//! opening with a fixed key never succeeds on input the fuzzer made up (it cannot forge a tag),
//! never panics and fails with one of the documented kinds.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sealbox::ErrorKind;
use sealbox::keys::{DataKey, Envelope, KeyId, KeyVersion, WrappedDek};

static KEY: LazyLock<DataKey> = LazyLock::new(|| {
    let id = KeyId::new("fuzz").expect("static id is valid");
    let material = sealbox::Secret::init_with(32, |b| {
        b.copy_from_slice(&[0x42; 32]);
        Ok(())
    })
    .expect("locked memory for the fuzz key");
    DataKey::from_secret(id, KeyVersion::FIRST, material).expect("32-byte key")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(view) = Envelope::parse(data) {
        assert_eq!(view.header().len() + view.plaintext_len() + 16, data.len());
        assert!(KeyId::new(view.key_id()).is_ok());
    }
    match Envelope::open(&KEY, b"fuzz context", data) {
        Ok(_) => panic!("opened an envelope the fuzzer forged"),
        Err(e) => assert!(matches!(
            e.kind(),
            ErrorKind::Truncated
                | ErrorKind::Integrity
                | ErrorKind::UnsupportedVersion
                | ErrorKind::WrongKey
        )),
    }
    let _ = WrappedDek::from_bytes(data);
});
