//! Commands on the vault itself: init, key rotation, namespace erasure and verify.

use std::path::Path;

use sealbox::audit::Action;
use sealbox::config::LOCAL_MASTER_KEY_ID;
use sealbox::keys::{KeyId, LocalKeyFile};
use sealbox::store::local::{LocalVault, VerifyReport, database_path};
use sealbox::{Error, ErrorKind, Result};
use serde::Serialize;

use crate::args::{KeysCommand, NamespaceCommand};
use crate::output::{Outcome, Report};
use crate::session::{Locations, Session, open_key_file};

// --------------------------------------------------------------------------------------- init

#[derive(Debug, Serialize)]
struct InitReport {
    vault: String,
    key_file: String,
    /// `false` when an existing key file was reused.
    key_created: bool,
    store_id: String,
}

impl Report for InitReport {
    fn human(&self) -> String {
        let key = if self.key_created {
            format!(
                "created master key file {} (mode 0600); keep it apart from the vault's backups\n",
                self.key_file
            )
        } else {
            format!("using the existing master key file {}\n", self.key_file)
        };
        format!("created vault {} (mode 0600)\n{key}", self.vault)
    }
}

/// `sealbox init`: a new vault and, unless one exists, a new master key file.
pub async fn init(locations: &Locations) -> Result<Outcome> {
    let (vault_path, key_path) = locations.vault_and_key()?;
    let db = database_path(vault_path);
    // Checked before any key is made, so a repeated init leaves no stray key file behind.
    if db.exists() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "a vault already exists at {}; nothing was changed",
                db.display()
            ),
        ));
    }
    let key_created = !key_path.exists();
    let key = if key_created {
        create_key_file(key_path)?
    } else {
        open_key_file(key_path)?
    };
    let vault = match LocalVault::create(vault_path, key).await {
        Ok(v) => v,
        Err(e) => {
            if key_created {
                // A key that protects nothing is only a liability.
                let _ = std::fs::remove_file(key_path);
            }
            return Err(e);
        }
    };
    Ok(Outcome::report(&InitReport {
        vault: vault.path().display().to_string(),
        key_file: key_path.display().to_string(),
        key_created,
        store_id: vault.store_id().to_owned(),
    }))
}

fn create_key_file(path: &Path) -> Result<std::sync::Arc<LocalKeyFile>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    Ok(std::sync::Arc::new(LocalKeyFile::open_or_create(
        KeyId::new(LOCAL_MASTER_KEY_ID)?,
        path,
    )?))
}

// --------------------------------------------------------------------------------------- keys

#[derive(Debug, Serialize)]
struct MasterRotationReport {
    master_version: u32,
}

impl Report for MasterRotationReport {
    fn human(&self) -> String {
        format!(
            "rotated the master key: now version {}; every namespace key was rewrapped\n",
            self.master_version
        )
    }
}

#[derive(Debug, Serialize)]
struct KekRotationReport {
    namespace: String,
    kek_version: u32,
    data_keys_rewrapped: u64,
}

impl Report for KekRotationReport {
    fn human(&self) -> String {
        format!(
            "rotated the key of namespace {}: now version {}; {} data keys rewrapped\n",
            self.namespace, self.kek_version, self.data_keys_rewrapped
        )
    }
}

/// `sealbox keys ...`.
pub async fn keys(session: &Session, command: KeysCommand) -> Result<Outcome> {
    let vault = session.vault().await?;
    match command {
        KeysCommand::RotateMaster => {
            let result = vault.rotate_master().await;
            session.audit(Action::Key, "master", &result)?;
            Ok(Outcome::report(&MasterRotationReport {
                master_version: result?.get(),
            }))
        }
        KeysCommand::RotateKek { namespace } => {
            let result = vault.rotate_kek(&namespace).await;
            session.audit(Action::Key, &namespace, &result)?;
            let rotation = result?;
            Ok(Outcome::report(&KekRotationReport {
                namespace,
                kek_version: rotation.version.get(),
                data_keys_rewrapped: rotation.rewrapped,
            }))
        }
    }
}

// ---------------------------------------------------------------------------------- namespace

#[derive(Debug, Serialize)]
struct EraseReport {
    namespace: String,
    secrets_erased: u64,
    key_versions_destroyed: u64,
    /// The namespace key in the master key file was destroyed.
    provider_key_destroyed: bool,
    /// Vault copies taken before the erase can no longer read the namespace with the
    /// current key file.
    backups_covered: bool,
    #[serde(skip)]
    summary: String,
}

impl Report for EraseReport {
    fn human(&self) -> String {
        format!("{}\n", self.summary)
    }
}

/// The error for `namespace erase` without `--yes`.
pub fn erase_needs_confirmation() -> Error {
    Error::invalid_input(
        "erasing a namespace destroys its keys and every secret in it for ever; \
         add --yes to confirm",
    )
}

/// `sealbox namespace ...`.
pub async fn namespace(session: &Session, command: NamespaceCommand) -> Result<Outcome> {
    let NamespaceCommand::Erase { namespace, yes } = command;
    if !yes {
        return Err(erase_needs_confirmation());
    }
    // The library audits the erasure (through --config's client).
    let erasure = session.erase_namespace(&namespace).await?;
    Ok(Outcome::report(&EraseReport {
        namespace,
        secrets_erased: erasure.secrets_erased,
        key_versions_destroyed: erasure.key_versions_destroyed,
        provider_key_destroyed: erasure.provider_key_destroyed,
        backups_covered: erasure.backups_covered,
        summary: erasure.summary(),
    }))
}

// ------------------------------------------------------------------------------------- verify

#[derive(Debug, Serialize)]
struct FailureRow {
    name: String,
    version: Option<i64>,
    kind: &'static str,
    message: String,
}

#[derive(Debug, Serialize)]
struct VaultVerifyReport {
    ok: bool,
    secrets: u64,
    versions_ok: u64,
    /// Versions left under destroyed keys by an interrupted erasure (not a failure).
    versions_shredded: u64,
    failures: Vec<FailureRow>,
}

impl Report for VaultVerifyReport {
    fn human(&self) -> String {
        let mut out = format!(
            "{}: {} secrets, {} versions decrypted and authenticated",
            if self.ok { "ok" } else { "FAILED" },
            self.secrets,
            self.versions_ok
        );
        if self.versions_shredded > 0 {
            out.push_str(&format!(
                ", {} versions under erased keys (run the erasure again to finish it)",
                self.versions_shredded
            ));
        }
        out.push('\n');
        for f in &self.failures {
            let version = f
                .version
                .map_or("key".to_owned(), |v| format!("version {v}"));
            out.push_str(&format!(
                "  {} {version}: {}: {}\n",
                f.name, f.kind, f.message
            ));
        }
        out
    }
}

fn verify_outcome(report: &VerifyReport) -> Outcome {
    let rendered = VaultVerifyReport {
        ok: report.is_ok(),
        secrets: report.secrets,
        versions_ok: report.versions_ok,
        versions_shredded: report.versions_shredded,
        failures: report
            .failures
            .iter()
            .map(|f| FailureRow {
                name: f.name.clone(),
                version: f.version,
                kind: f.kind.as_str(),
                message: f.message.clone(),
            })
            .collect(),
    };
    match report.failures.first() {
        None => Outcome::report(&rendered),
        Some(first) => Outcome::failed_report(
            &rendered,
            Error::new(
                first.kind,
                format!(
                    "{} item(s) failed verification, first {}",
                    report.failures.len(),
                    first.name
                ),
            ),
        ),
    }
}

/// `sealbox verify`.
pub async fn verify(session: &Session) -> Result<Outcome> {
    let report = session.vault().await?.verify().await?;
    Ok(verify_outcome(&report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealbox::store::local::VerifyFailure;

    #[test]
    fn a_failed_verification_prints_the_report_and_exits_with_the_first_kind() {
        let report = VerifyReport {
            secrets: 2,
            versions_ok: 3,
            versions_shredded: 0,
            failures: vec![VerifyFailure {
                name: "predis/prod/db".into(),
                version: Some(2),
                kind: ErrorKind::Integrity,
                message: "authentication failed".into(),
            }],
        };
        let mut outcome = verify_outcome(&report);
        let failure = outcome.take_failure().expect("a failure");
        assert_eq!(failure.kind(), ErrorKind::Integrity);
        let Outcome::Report { json, human, .. } = outcome else {
            panic!("a report")
        };
        assert_eq!(json["ok"], false);
        assert_eq!(json["failures"][0]["version"], 2);
        assert!(
            human.contains("predis/prod/db version 2: integrity"),
            "{human}"
        );
    }
}
