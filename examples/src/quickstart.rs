//! sealbox quickstart: keep real secrets in an encrypted local vault, with no cloud account.
//!
//! ```sh
//! cargo run -p sealbox-examples --bin quickstart            # in a temporary directory
//! cargo run -p sealbox-examples --bin quickstart -- ./demo  # in ./demo (kept afterwards)
//! ```
//!
//! It creates a vault and a master key, stores a database secret as JSON and an API token,
//! reads them back through the store and through the `Sealbox` client, adds versions and moves
//! stages, rotates the master key and verifies that everything still decrypts, then erases a
//! second tenant's namespace and shows it is gone. It prints what it does at each step and never
//! a value: only lengths, versions, stages and constant-time comparisons.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use sealbox::store::{PutOptions, SecretName, SecretStore, Stage, VersionSelector};
use sealbox::{Error, Result, Sealbox};

mod generate;
mod local;

const DB: &str = "predis/prod/database/password";
const TOKEN: &str = "predis/prod/api/auth-token";
const TENANT_KEY: &str = "acme/prod/api/key";

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("quickstart: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(std::env::args_os().nth(1).map(PathBuf::from))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Holds a temporary directory alive (and removes it at the end), or names a kept directory.
enum Workdir {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Workdir {
    fn path(&self) -> &Path {
        match self {
            Workdir::Temporary(t) => t.path(),
            Workdir::Kept(p) => p,
        }
    }
}

fn step(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

async fn run(dir: Option<PathBuf>) -> Result<()> {
    println!("sealbox quickstart: no value is ever printed, only lengths, versions and stages.");

    // -- 1 ---------------------------------------------------------------------------------
    step(1, "Create a local vault and its master key");
    let workdir = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            Workdir::Kept(dir)
        }
        None => Workdir::Temporary(
            tempfile::tempdir().map_err(|e| Error::io("creating a temporary directory", e))?,
        ),
    };
    let vault_path = workdir.path().join("vault.db");
    let key_path = workdir.path().join("master.key");
    let vault = local::create(&vault_path, &key_path).await?;
    let kept = match &workdir {
        Workdir::Temporary(_) => "temporary, removed at the end",
        Workdir::Kept(_) => "kept",
    };
    println!("   directory:  {} ({kept})", workdir.path().display());
    println!(
        "   master key: {} (random 256-bit key, mode 0600)",
        key_path.display()
    );
    println!(
        "   vault:      {} (SQLite, every value encrypted)",
        vault_path.display()
    );
    let store: Arc<dyn SecretStore> = vault.clone();

    // -- 2 ---------------------------------------------------------------------------------
    step(2, "Store a database secret (JSON) and an API token");
    let password = generate::password(24)?;
    let db_secret = generate::database_json("predis", &password, "db.internal", 5432)?;
    let token = generate::hex_token(32)?;
    let db = SecretName::new(DB)?;
    let tok = SecretName::new(TOKEN)?;
    let v = store.put(&db, &db_secret, &PutOptions::default()).await?;
    println!(
        "   put {DB}: version {}, {} bytes of JSON {{username, password, host, port}}, \
         password of {} generated characters",
        v.version,
        db_secret.len(),
        password.len()
    );
    let v = store.put(&tok, &token, &PutOptions::default()).await?;
    println!(
        "   put {TOKEN}: version {}, {} bytes (hex)",
        v.version,
        token.len()
    );

    // -- 3 ---------------------------------------------------------------------------------
    step(3, "Read them back through the store");
    let got = store.get(&db, &VersionSelector::Current).await?;
    println!(
        "   {DB}: version {} {}, {} bytes, matches: {}",
        got.version,
        stages(&got.stages),
        got.value.len(),
        got.value.ct_eq(&db_secret)
    );
    let got = store.get(&tok, &VersionSelector::Current).await?;
    println!(
        "   {TOKEN}: version {} {}, {} bytes, matches: {}",
        got.version,
        stages(&got.stages),
        got.value.len(),
        got.value.ct_eq(&token)
    );

    // -- 4 ---------------------------------------------------------------------------------
    step(4, "Read one field through the Sealbox client");
    let client = Sealbox::builder().store(store.clone()).build()?;
    let field = client.get_field(DB, "password").await?;
    println!(
        "   get_field(\"{DB}\", \"password\"): {} bytes, matches: {}",
        field.len(),
        field.as_secret().ct_eq(&password)
    );

    // -- 5 ---------------------------------------------------------------------------------
    step(
        5,
        "Rotate the password: a new PENDING version, then promote it",
    );
    let new_password = generate::password(24)?;
    let new_db_secret = generate::database_json("predis", &new_password, "db.internal", 5432)?;
    let pending = PutOptions {
        stages: vec![Stage::Pending],
        ..PutOptions::default()
    };
    let v2 = store.put(&db, &new_db_secret, &pending).await?;
    println!(
        "   put version {} as PENDING; readers still get CURRENT:",
        v2.version
    );
    print_versions(store.as_ref(), &db).await?;
    store
        .set_stage(&db, &Stage::Current, Some(&v2.version))
        .await?;
    store.set_stage(&db, &Stage::Pending, None).await?;
    println!(
        "   promoted version {} to CURRENT (the old one is now PREVIOUS):",
        v2.version
    );
    print_versions(store.as_ref(), &db).await?;
    // The client caches values; the stage moved behind its back (straight on the store), so it
    // serves the cached version until the entry expires or is refreshed.
    let cached = client.get(DB).await?;
    if *cached.version() == v2.version {
        println!("   the client already serves version {}", v2.version);
    } else {
        println!(
            "   the client's cache still serves version {} until its TTL; refresh_now re-reads it",
            cached.version()
        );
    }
    drop(cached);
    client.refresh_now(DB).await?;
    let current = client.get_field(DB, "password").await?;
    println!(
        "   the client now reads the new password: {}",
        current.as_secret().ct_eq(&new_password)
    );
    let previous = store
        .get(&db, &VersionSelector::Stage(Stage::Previous))
        .await?;
    println!(
        "   PREVIOUS (for rollback) is version {}, matches the first secret: {}",
        previous.version,
        previous.value.ct_eq(&db_secret)
    );

    // -- 6 ---------------------------------------------------------------------------------
    step(
        6,
        "A second tenant, acme, in its own namespace (its own key)",
    );
    let tenant = SecretName::new(TENANT_KEY)?;
    let tenant_value = generate::hex_token(32)?;
    let v = store
        .put(&tenant, &tenant_value, &PutOptions::default())
        .await?;
    println!(
        "   put {TENANT_KEY}: version {}, {} bytes",
        v.version,
        tenant_value.len()
    );

    // -- 7 ---------------------------------------------------------------------------------
    step(
        7,
        "Rotate the master key and verify that everything still decrypts",
    );
    let rotated = local::rotate_master(&vault).await?;
    println!("   {rotated}");
    let verified = local::verify(&vault).await?;
    println!("   verify: {verified}");
    let got = store.get(&db, &VersionSelector::Current).await?;
    println!(
        "   {DB} after rotation: version {}, matches: {}",
        got.version,
        got.value.ct_eq(&new_db_secret)
    );

    // -- 8 ---------------------------------------------------------------------------------
    step(
        8,
        "Erase the acme namespace (crypto-shredding) and show it is gone",
    );
    let erased = local::erase_namespace(&vault, "acme").await?;
    println!("   {erased}");
    match store.get(&tenant, &VersionSelector::Current).await {
        Ok(_) => {
            return Err(Error::internal(
                "the erased tenant's secret is still readable",
            ));
        }
        Err(e) => println!("   get {TENANT_KEY}: {} ({})", e.kind(), e.message()),
    }
    let got = store.get(&db, &VersionSelector::Current).await?;
    println!(
        "   {DB} is untouched: version {}, matches: {}",
        got.version,
        got.value.ct_eq(&new_db_secret)
    );
    let verified = local::verify(&vault).await?;
    println!("   verify: {verified}");

    println!("\nDone.");
    match &workdir {
        Workdir::Kept(_) => println!(
            "   The vault is kept; try the CLI on it:\n   \
             cargo run -p sealbox-cli -- --vault {} --key-file {} list",
            vault_path.display(),
            key_path.display()
        ),
        Workdir::Temporary(_) => println!(
            "   The temporary directory is removed now; pass a directory to keep the vault \
             and try the CLI on it."
        ),
    }
    Ok(())
}

fn stages(stages: &[Stage]) -> String {
    let names: Vec<&str> = stages.iter().map(Stage::as_str).collect();
    format!("[{}]", names.join(","))
}

async fn print_versions(store: &dyn SecretStore, name: &SecretName) -> Result<()> {
    let meta = store.describe(name).await?;
    for v in &meta.versions {
        println!("     version {:>3}  {}", v.version, stages(&v.stages));
    }
    Ok(())
}
