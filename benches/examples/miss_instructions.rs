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
use sealbox::store::{SecretStore, VersionSelector};
use sealbox_benches::{MissRig, mode_and_count};

fn main() {
    let (mode, n_iter) =
        mode_and_count("miss_instructions", &["none", "direct", "client", "first"]);
    let rig = MissRig::new();
    for _ in 0..n_iter {
        rig.prepare(mode == "first");
        if mode == "client" || mode == "first" {
            std::hint::black_box(rig.rt.block_on(rig.client.get(&rig.name)).unwrap());
        } else if mode == "direct" {
            std::hint::black_box(
                rig.rt
                    .block_on(rig.vault.get(&rig.secret_name, &VersionSelector::Current))
                    .unwrap(),
            );
        }
    }
}
