//! Shared helpers for the benches.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::store::local::LocalVault;
use sealbox::store::{SecretName, SecretStore, VersionSelector};
use sealbox::{Principal, Result, Sealbox, Secret};

/// The name of the `i`th bench secret.
pub fn name(i: usize) -> String {
    format!("predis/prod/service-{i:04}/api-key")
}

/// A 64-byte bench value.
pub fn value() -> Secret {
    Secret::init_with(64, |b| {
        b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8);
        Ok(())
    })
    .expect("a 64-byte secret")
}

/// A new local vault in `dir` (master key file included) holding `count` secrets, named by
/// [`name`], each [`value`].
pub async fn filled_vault(dir: &Path, count: usize) -> Result<Arc<LocalVault>> {
    let key: Arc<dyn KeyProvider> = Arc::new(LocalKeyFile::open_or_create(
        KeyId::new("local")?,
        dir.join("master.key"),
    )?);
    let vault = Arc::new(LocalVault::create(dir, key).await?);
    let items = (0..count)
        .map(|i| Ok((SecretName::new(name(i))?, value())))
        .collect::<Result<_>>()?;
    vault.import(items).await?;
    Ok(vault)
}

/// The `MODE COUNT` arguments of an instruction-count driver (`benches/examples`), `MODE`
/// one of `modes`; anything else prints the usage and exits with status 2.
pub fn mode_and_count(program: &str, modes: &[&str]) -> (String, usize) {
    let mut args = std::env::args().skip(1);
    match (args.next(), args.next().and_then(|n| n.parse().ok())) {
        (Some(mode), Some(count)) if modes.contains(&mode.as_str()) => (mode, count),
        _ => {
            eprintln!("usage: {program} {} COUNT", modes.join("|"));
            std::process::exit(2);
        }
    }
}

/// The miss benchmarks' rig: a local vault of 1024 secrets, a client with the default cache
/// over it, and the secret both read. The `cache` bench and the miss drivers in
/// `benches/examples` share it, so their figures stay comparable.
#[derive(Debug)]
pub struct MissRig {
    /// The runtime both sides run on (one thread, as a blocking caller's).
    pub rt: tokio::runtime::Runtime,
    /// The vault, read directly by the baseline.
    pub vault: Arc<LocalVault>,
    /// The client over `vault`.
    pub client: Sealbox,
    /// The secret's name, as the client is given it.
    pub name: String,
    /// The same, as the store is given it.
    pub secret_name: SecretName,
    _dir: tempfile::TempDir,
}

impl MissRig {
    /// A new rig (in a temporary directory, removed on drop).
    pub fn new() -> MissRig {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let vault = rt
            .block_on(filled_vault(dir.path(), 1024))
            .expect("a filled vault");
        let client = Sealbox::builder()
            .store(vault.clone())
            .principal(Principal::new("svc:bench"))
            .build()
            .expect("a client");
        let name = name(7);
        let secret_name = SecretName::new(name.clone()).expect("a valid name");
        MissRig {
            rt,
            vault,
            client,
            name,
            secret_name,
            _dir: dir,
        }
    }

    /// Makes the client's next read a miss: the cache emptied (`first`: a first read, which
    /// routes and inserts a new entry), or the secret's entry invalidated (refreshed in place).
    pub fn prepare(&self, first: bool) {
        let cache = self.client.cache().expect("the rig's client has a cache");
        if first {
            cache.clear();
        } else {
            cache.invalidate("default", &self.secret_name);
        }
    }

    /// A client get (`client`) or a direct `LocalVault::get`, after an untimed
    /// [`MissRig::prepare`]; only the call is timed, not the drop of what it returned.
    pub fn timed(&self, client: bool, first: bool) -> Duration {
        self.prepare(first);
        let start = Instant::now();
        if client {
            let got = self.rt.block_on(self.client.get(&self.name));
            let elapsed = start.elapsed();
            drop(black_box(got.expect("a client read")));
            elapsed
        } else {
            let got = self
                .rt
                .block_on(self.vault.get(&self.secret_name, &VersionSelector::Current));
            let elapsed = start.elapsed();
            drop(black_box(got.expect("a direct read")));
            elapsed
        }
    }
}

impl Default for MissRig {
    fn default() -> Self {
        MissRig::new()
    }
}

/// Times `pairs` direct/client pairs, alternating which goes first, and returns each side's
/// times in nanoseconds, sorted. `timed(client)` times one call of either side. Machine drift
/// over seconds moves both sides of a pair alike, so their percentiles' ratios hold steady
/// where separately timed windows do not.
pub fn paired_times(pairs: usize, timed: impl Fn(bool) -> Duration) -> (Vec<u128>, Vec<u128>) {
    let (mut direct, mut client) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
    for i in 0..pairs {
        for client_turn in [i % 2 == 0, i % 2 != 0] {
            let t = timed(client_turn).as_nanos();
            if client_turn {
                client.push(t);
            } else {
                direct.push(t);
            }
        }
    }
    direct.sort_unstable();
    client.sort_unstable();
    (direct, client)
}
