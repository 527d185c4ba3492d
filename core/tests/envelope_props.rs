//! Properties of the envelope format and the key hierarchy, over generated inputs.

use std::sync::Arc;

use proptest::prelude::*;
use sealbox::keys::{
    DataKey, Envelope, KeyId, KeyVersion, Keyring, LocalKeyFile, MemoryKeyStorage,
};
use sealbox::{ErrorKind, ExposeSecret};

fn key(id: &str, version: u32) -> DataKey {
    DataKey::generate(KeyId::new(id).unwrap(), KeyVersion::new(version).unwrap()).unwrap()
}

fn key_id() -> impl Strategy<Value = String> {
    "[a-z0-9/._-]{1,40}"
}

/// The kinds a damaged envelope may produce. `WrongKey` appears when the damage lands in the
/// key id or key version field: the envelope then names a different key than the one given.
fn is_damage_kind(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Integrity
            | ErrorKind::Truncated
            | ErrorKind::UnsupportedVersion
            | ErrorKind::WrongKey
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn round_trip_for_any_data_context_and_key(
        id in key_id(),
        version in 1u32..,
        data in prop::collection::vec(any::<u8>(), 0..2048),
        context in prop::collection::vec(any::<u8>(), 0..700),
    ) {
        let k = key(&id, version);
        let env = Envelope::seal(&k, &context, &data).unwrap();
        prop_assert_eq!(env.len(), Envelope::sealed_len(&k, data.len()));
        let view = Envelope::parse(&env).unwrap();
        prop_assert_eq!(view.key_id(), id.as_str());
        prop_assert_eq!(view.key_version().get(), version);
        let plain = Envelope::open(&k, &context, &env).unwrap();
        prop_assert_eq!(plain.expose_secret(), &data[..]);
    }

    #[test]
    fn any_single_bit_flip_fails_with_a_typed_error(
        id in key_id(),
        data in prop::collection::vec(any::<u8>(), 0..256),
        context in prop::collection::vec(any::<u8>(), 0..64),
        bit in any::<prop::sample::Index>(),
    ) {
        let k = key(&id, 1);
        let mut env = Envelope::seal(&k, &context, &data).unwrap();
        let at = bit.index(env.len() * 8);
        env[at / 8] ^= 1 << (at % 8);
        let err = Envelope::open(&k, &context, &env).unwrap_err();
        prop_assert!(is_damage_kind(err.kind()), "bit {} gave {:?}", at, err);
    }

    #[test]
    fn every_truncation_fails_with_a_typed_error(
        data in prop::collection::vec(any::<u8>(), 0..128),
        cut in any::<prop::sample::Index>(),
    ) {
        let k = key("ns/dek", 7);
        let env = Envelope::seal(&k, b"ctx", &data).unwrap();
        let len = cut.index(env.len());
        let err = Envelope::open(&k, b"ctx", &env[..len]).unwrap_err();
        prop_assert!(
            matches!(err.kind(), ErrorKind::Truncated | ErrorKind::Integrity),
            "len {} gave {:?}", len, err
        );
    }

    #[test]
    fn a_different_context_fails_integrity(
        data in prop::collection::vec(any::<u8>(), 0..256),
        context in prop::collection::vec(any::<u8>(), 0..64),
        other in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assume!(context != other);
        let k = key("k", 1);
        let env = Envelope::seal(&k, &context, &data).unwrap();
        prop_assert_eq!(Envelope::open(&k, &other, &env).unwrap_err().kind(), ErrorKind::Integrity);
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        valid_prefix in any::<bool>(),
    ) {
        let mut input = if valid_prefix { b"SBXE\x01\x01".to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        let k = key("k", 1);
        if let Ok(view) = Envelope::parse(&input) {
            prop_assert!(view.header().len() + view.plaintext_len() + 16 == input.len());
        }
        let opened = Envelope::open(&k, b"", &input);
        prop_assert!(opened.is_err());
        prop_assert!(is_damage_kind(opened.unwrap_err().kind()));
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write,
    RotateKek,
    RotateMaster,
    RewrapAll,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Write),
        2 => Just(Op::RotateKek),
        1 => Just(Op::RotateMaster),
        1 => Just(Op::RewrapAll),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Whatever sequence of writes, rotations and rewraps happens, every value stays readable,
    /// and once everything is rewrapped, retiring old KEK versions loses nothing.
    #[test]
    fn rotations_and_rewraps_keep_all_data_readable(ops in prop::collection::vec(op(), 1..12)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("master.key");
            let storage = Arc::new(MemoryKeyStorage::new());
            let open = || async {
                let p = Arc::new(LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), &path).unwrap());
                Keyring::open(p, storage.clone()).await.unwrap()
            };
            let ns = KeyId::new("ns").unwrap();
            let mut keyring = open().await;
            let mut written = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Op::Write => {
                        let name = format!("secret-{i}");
                        let (dek, wrapped) = keyring.new_dek(&ns, KeyId::new(&name).unwrap()).await.unwrap();
                        let env = Envelope::seal(&dek, name.as_bytes(), name.as_bytes()).unwrap();
                        written.push((name, wrapped, env));
                    }
                    Op::RotateKek => { keyring.rotate_kek(&ns).await.unwrap(); }
                    Op::RotateMaster => { keyring.rotate_master().await.unwrap(); }
                    Op::RewrapAll => {
                        for (_, wrapped, _) in &mut written {
                            *wrapped = keyring.rewrap_dek(&ns, wrapped).await.unwrap();
                        }
                    }
                    Op::Restart => { keyring = open().await; }
                }
                for (name, wrapped, env) in &written {
                    let dek = keyring.unwrap_dek(&ns, wrapped).await.unwrap();
                    assert_eq!(Envelope::open(&dek, name.as_bytes(), env).unwrap().expose_secret(), name.as_bytes());
                }
            }
            // Rewrap everything, retire all older KEKs: still all readable.
            let current = keyring.current_kek(&ns).await.unwrap().version();
            for (_, wrapped, _) in &mut written {
                *wrapped = keyring.rewrap_dek(&ns, wrapped).await.unwrap();
            }
            keyring.set_min_decryption_version(&ns, current).await.unwrap();
            for (name, wrapped, env) in &written {
                let dek = keyring.unwrap_dek(&ns, wrapped).await.unwrap();
                assert_eq!(Envelope::open(&dek, name.as_bytes(), env).unwrap().expose_secret(), name.as_bytes());
            }
        });
    }
}
