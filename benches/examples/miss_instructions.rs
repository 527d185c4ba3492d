//! A driver for counting the instructions of a cache miss over the local vault, which on a
//! shared VM are steadier than times. Run it under callgrind with `none`, `direct` and
//! `client` and the same count; the differences of the totals, divided by the count, are the
//! cost of an invalidation, a direct `LocalVault::get` and a client miss (`first`: a first
//! read, the cache emptied before each; read its cost off `Sealbox::get`'s inclusive count):
//!
//! ```text
//! cargo build --release -p sealbox-benches --example miss_instructions
//! valgrind --tool=callgrind target/release/examples/miss_instructions client 20000
//! callgrind_annotate --inclusive=yes --tree=calling callgrind.out.<pid>
//! ```
use sealbox::store::{SecretName, SecretStore, VersionSelector};
use sealbox::{Principal, Sealbox};
use sealbox_benches::{filled_vault, mode_and_count, name};

fn main() {
    let (mode, n_iter) =
        mode_and_count("miss_instructions", &["none", "direct", "client", "first"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vault = rt.block_on(filled_vault(dir.path(), 1024)).unwrap();
    let cached = Sealbox::builder()
        .store(vault.clone())
        .principal(Principal::new("svc:bench"))
        .build()
        .unwrap();
    let n = name(7);
    let sn = SecretName::new(n.clone()).unwrap();
    for _ in 0..n_iter {
        if mode == "first" {
            cached.cache().unwrap().clear();
        } else {
            cached.cache().unwrap().invalidate("default", &sn);
        }
        if mode == "client" || mode == "first" {
            std::hint::black_box(rt.block_on(cached.get(&n)).unwrap());
        } else if mode == "direct" {
            std::hint::black_box(
                rt.block_on(vault.get(&sn, &VersionSelector::Current))
                    .unwrap(),
            );
        }
    }
}
