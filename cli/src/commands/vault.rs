//! Commands on the vault itself: init, key status, rotation and retirement, namespace erasure
//! and verify.

use std::path::Path;

use sealbox::audit::Action;
use sealbox::config::LOCAL_MASTER_KEY_ID;
use std::time::SystemTime;

use sealbox::keys::{KeyId, LocalKeyFile};
use sealbox::store::SecretName;
use sealbox::store::local::{
    DekRotation, KeyInfo, KeyStatus, LocalVault, LocalVaultOptions, VerifyReport, database_path,
};
use sealbox::{Error, ErrorKind, Result};
use serde::Serialize;

use crate::args::{BackupCommand, KeysCommand, NamespaceCommand};
use crate::output::{Outcome, Report, time_text, timestamp};
use crate::session::{Locations, Session, open_key_file, vault_location};

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
    data_keys_rotated: u64,
}

impl Report for KekRotationReport {
    fn human(&self) -> String {
        format!(
            "rotated the key of namespace {}: now version {}; {} data keys replaced by fresh \
             ones (values re-encrypted); run `sealbox keys retire` to destroy the old version\n",
            self.namespace, self.kek_version, self.data_keys_rotated
        )
    }
}

#[derive(Debug, Serialize)]
struct KeyRow {
    role: &'static str,
    id: String,
    namespace: Option<String>,
    secret: Option<String>,
    version: u32,
    state: &'static str,
    created: Option<String>,
    age_seconds: Option<u64>,
    uses: Option<u64>,
    max_uses: Option<u64>,
    due: Option<String>,
    is_due: bool,
}

#[derive(Debug, Serialize)]
struct Periods {
    master_seconds: u64,
    kek_seconds: u64,
    dek_seconds: u64,
    session_seconds: u64,
}

#[derive(Debug, Serialize)]
struct StatusReport {
    at: Option<String>,
    schedule: Periods,
    keys: Vec<KeyRow>,
}

impl Report for StatusReport {
    fn human(&self) -> String {
        let mut out = format!(
            "{:<6} {:<28} {:>7} {:<9} {:>8} {:>12}  {:<20}  due\n",
            "role", "id", "version", "state", "age", "uses", "due at"
        );
        for k in &self.keys {
            let id = match &k.secret {
                Some(secret) => secret.clone(),
                None => k.id.clone(),
            };
            let age = k
                .age_seconds
                .map_or("-".to_owned(), |s| format!("{:.1}d", s as f64 / 86_400.0));
            let uses = k.uses.map_or("-".to_owned(), |u| u.to_string());
            out.push_str(&format!(
                "{:<6} {:<28} {:>7} {:<9} {:>8} {:>12}  {:<20}  {}\n",
                k.role,
                id,
                k.version,
                k.state,
                age,
                uses,
                time_text(&k.due),
                if k.is_due { "DUE" } else { "-" }
            ));
        }
        out
    }
}

fn key_row(k: &KeyInfo, now: SystemTime) -> KeyRow {
    KeyRow {
        role: k.role.as_str(),
        id: k.id.clone(),
        namespace: k.namespace.clone(),
        secret: k.secret.clone(),
        version: k.version.get(),
        state: k.state.as_str(),
        created: timestamp(k.created),
        age_seconds: k
            .created
            .map(|c| now.duration_since(c).map_or(0, |d| d.as_secs())),
        uses: k.uses,
        max_uses: k.max_uses,
        due: timestamp(k.due),
        is_due: k.is_due,
    }
}

fn status_report(status: &KeyStatus, at: Option<String>) -> StatusReport {
    StatusReport {
        at,
        schedule: Periods {
            master_seconds: status.schedule.master.0.as_secs(),
            kek_seconds: status.schedule.kek.0.as_secs(),
            dek_seconds: status.schedule.dek.0.as_secs(),
            session_seconds: status.schedule.session.0.as_secs(),
        },
        keys: status.keys.iter().map(|k| key_row(k, status.now)).collect(),
    }
}

#[derive(Debug, Serialize)]
struct DekRow {
    secret: String,
    dek_version: u32,
    kek_version: u32,
    versions_reencrypted: u64,
}

impl From<&DekRotation> for DekRow {
    fn from(r: &DekRotation) -> Self {
        DekRow {
            secret: r.name.clone(),
            dek_version: r.dek_version.get(),
            kek_version: r.kek_version.get(),
            versions_reencrypted: r.versions,
        }
    }
}

#[derive(Debug, Serialize)]
struct RotateReport {
    master_version: Option<u32>,
    namespaces: Vec<KekRotationReport>,
    data_keys: Vec<DekRow>,
}

impl Report for RotateReport {
    fn human(&self) -> String {
        let mut out = String::new();
        if let Some(v) = self.master_version {
            out.push_str(&format!("rotated the master key: now version {v}\n"));
        }
        for ns in &self.namespaces {
            out.push_str(&ns.human());
        }
        for d in &self.data_keys {
            out.push_str(&format!(
                "rotated the data key of {}: version {}, {} versions re-encrypted\n",
                d.secret, d.dek_version, d.versions_reencrypted
            ));
        }
        if out.is_empty() {
            out.push_str("no key is due\n");
        }
        out
    }
}

#[derive(Debug, Serialize)]
struct RetiredRow {
    namespace: String,
    kek_version_kept: u32,
    kek_versions_destroyed: Vec<u32>,
    data_keys_rotated: u64,
    versions_verified: u64,
}

#[derive(Debug, Serialize)]
struct RetireReport {
    namespaces: Vec<RetiredRow>,
    /// The master version every KEK is wrapped under after retirement.
    master_version_kept: Option<u32>,
    /// Master versions removed from the key file.
    master_versions_destroyed: Vec<u32>,
    /// Why master versions were not retired (a provider that cannot remove versions).
    master_not_retired: Option<String>,
}

impl Report for RetireReport {
    fn human(&self) -> String {
        let mut out = String::new();
        if self.namespaces.is_empty() {
            out.push_str("no old namespace key versions to retire\n");
        }
        for r in &self.namespaces {
            let destroyed: Vec<String> = r
                .kek_versions_destroyed
                .iter()
                .map(u32::to_string)
                .collect();
            out.push_str(&format!(
                "namespace {}: {} versions decrypted under key version {}; destroyed key \
                 version(s) {}\n",
                r.namespace,
                r.versions_verified,
                r.kek_version_kept,
                destroyed.join(", ")
            ));
        }
        match (&self.master_not_retired, self.master_version_kept) {
            (Some(why), _) => out.push_str(&format!("master key versions not retired: {why}\n")),
            (None, Some(kept)) if self.master_versions_destroyed.is_empty() => {
                out.push_str(&format!(
                    "no old master key versions to retire (current version {kept})\n"
                ));
            }
            (None, Some(kept)) => {
                let destroyed: Vec<String> = self
                    .master_versions_destroyed
                    .iter()
                    .map(u32::to_string)
                    .collect();
                out.push_str(&format!(
                    "master key: every namespace key wrapped under version {kept}; removed \
                     version(s) {} from the key file\n",
                    destroyed.join(", ")
                ));
            }
            (None, None) => {}
        }
        out
    }
}

/// `--at` as a time, or now.
fn evaluation_time(at: Option<&str>) -> Result<SystemTime> {
    let Some(text) = at else {
        return Ok(SystemTime::now());
    };
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .map_err(|_| {
            Error::invalid_input(format!(
                "--at {text:?} is not an RFC 3339 time; write it like 2027-01-31T00:00:00Z"
            ))
        })
}

/// `sealbox keys ...`.
pub async fn keys(session: &Session, command: KeysCommand) -> Result<Outcome> {
    if let KeysCommand::Status { at } = &command {
        // Checked before the vault is opened, like any other malformed argument.
        evaluation_time(at.as_deref())?;
    }
    if let KeysCommand::Rotate { at, .. } = &command {
        evaluation_time(at.as_deref())?;
    }
    // What the keys the command changes protect: the policy's `admin` is checked on it
    // before the vault is opened.
    let covers = match &command {
        KeysCommand::Status { .. } => None,
        KeysCommand::RotateKek { namespace } => Some(format!("{namespace}/*")),
        KeysCommand::Rotate {
            due: false,
            secret: Some(name),
            ..
        } => Some(name.clone()),
        KeysCommand::Rotate {
            due: false,
            namespace: Some(ns),
            ..
        } if !ns.is_empty() => Some(format!("{ns}/*")),
        KeysCommand::RotateMaster | KeysCommand::Rotate { .. } | KeysCommand::Retire => {
            Some("*".to_owned())
        }
    };
    if let Some(covers) = covers {
        session.authorize_keys(&covers).await?;
    }
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
                data_keys_rotated: rotation.deks_rotated,
            }))
        }
        KeysCommand::Status { at } => {
            let now = evaluation_time(at.as_deref())?;
            let status = vault.key_status(now).await?;
            Ok(Outcome::report(&status_report(&status, at)))
        }
        KeysCommand::Rotate {
            due,
            at,
            secret,
            namespace,
        } => {
            let report = if due {
                let now = evaluation_time(at.as_deref())?;
                let result = vault.rotate_due(now).await;
                session.audit(Action::Key, "due", &result)?;
                let done = result?;
                RotateReport {
                    master_version: done.master.map(|v| v.get()),
                    namespaces: done
                        .keks
                        .iter()
                        .map(|(ns, r)| KekRotationReport {
                            namespace: ns.clone(),
                            kek_version: r.version.get(),
                            data_keys_rotated: r.deks_rotated,
                        })
                        .collect(),
                    data_keys: done.deks.iter().map(DekRow::from).collect(),
                }
            } else if let Some(name) = secret {
                let name: SecretName = name.parse()?;
                let result = vault.rotate_dek(&name).await;
                session.audit(Action::Key, name.as_str(), &result)?;
                RotateReport {
                    master_version: None,
                    namespaces: Vec::new(),
                    data_keys: vec![DekRow::from(&result?)],
                }
            } else {
                let namespace = namespace.unwrap_or_default();
                let ns = KeyId::new(namespace.as_str())?;
                let result = vault.rotate_deks(ns.as_str()).await;
                session.audit(Action::Key, &namespace, &result)?;
                let count = result?;
                return Ok(Outcome::report(&NamespaceDeksReport {
                    namespace,
                    data_keys_rotated: count,
                }));
            };
            Ok(Outcome::report(&report))
        }
        KeysCommand::Retire => {
            let result = vault.retire_keks().await;
            session.audit(Action::Key, "retire", &result)?;
            let keks = result?;
            // KEKs first: retiring master versions rewraps KEKs, and then only the current
            // KEK versions are left to rewrap.
            let master = vault.retire_master().await;
            session.audit(Action::Key, "retire-master", &master)?;
            let (master_version_kept, master_versions_destroyed, master_not_retired) = match master
            {
                Ok(m) => (
                    Some(m.current.get()),
                    m.retired.iter().map(|v| v.get()).collect(),
                    None,
                ),
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    (None, Vec::new(), Some(e.message().to_owned()))
                }
                Err(e) => return Err(e),
            };
            Ok(Outcome::report(&RetireReport {
                master_version_kept,
                master_versions_destroyed,
                master_not_retired,
                namespaces: keks
                    .into_iter()
                    .map(|r| RetiredRow {
                        namespace: r.namespace,
                        kek_version_kept: r.kept.get(),
                        kek_versions_destroyed: r.destroyed.iter().map(|v| v.get()).collect(),
                        data_keys_rotated: r.deks_rotated,
                        versions_verified: r.versions_verified,
                    })
                    .collect(),
            }))
        }
    }
}

#[derive(Debug, Serialize)]
struct NamespaceDeksReport {
    namespace: String,
    data_keys_rotated: u64,
}

impl Report for NamespaceDeksReport {
    fn human(&self) -> String {
        format!(
            "rotated the data keys of namespace {}: {} secrets re-encrypted under fresh keys\n",
            self.namespace, self.data_keys_rotated
        )
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
    /// Whether an older copy put in the vault's place is detected (needs the local key file).
    rollback_detection: bool,
    /// The file's write counter.
    write_count: u64,
    /// How many writes the file is behind the counter recorded in the key file.
    writes_behind: u64,
    /// The file is a backup made by `sealbox backup create`.
    backup: bool,
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
        match (self.rollback_detection, self.writes_behind, self.backup) {
            (false, _, _) => out.push_str(
                "rollback detection: off (the master key provider keeps no write counter; \
                 only the local key file does)\n",
            ),
            (true, 0, _) => out.push_str(&format!(
                "rollback detection: on; the file is current (write {})\n",
                self.write_count
            )),
            (true, n, true) => out.push_str(&format!(
                "backup: {n} writes behind the vault's key file (restore it with `sealbox \
                 backup restore FILE`)\n"
            )),
            (true, n, false) => out.push_str(&format!(
                "ROLLED BACK: the file is {n} writes behind its key file: an older copy of the \
                 vault was put in its place\n"
            )),
        }
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
        rollback_detection: report.rollback_detection,
        write_count: report.write_count,
        writes_behind: report.writes_behind,
        backup: report.is_backup,
    };
    match report.failures.first() {
        None if !report.is_ok() => Outcome::failed_report(
            &rendered,
            Error::new(
                ErrorKind::Integrity,
                format!(
                    "the vault file is {} writes behind its key file: it was replaced by an \
                     older copy of itself",
                    report.writes_behind
                ),
            ),
        ),
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

/// `sealbox verify` through `--config`.
pub async fn verify(session: &Session) -> Result<Outcome> {
    let report = session.vault().await?.verify().await?;
    Ok(verify_outcome(&report))
}

/// `sealbox --vault FILE verify`: the file is opened even when it is an older copy of the
/// vault (a backup), so that the report says how far behind it is.
pub async fn verify_file(locations: &Locations) -> Result<Outcome> {
    let (vault_path, key) = vault_location(locations).await?;
    let options = LocalVaultOptions {
        allow_rollback: true,
        ..LocalVaultOptions::default()
    };
    let report = LocalVault::open_with(&vault_path, key, options)
        .await?
        .verify()
        .await?;
    Ok(verify_outcome(&report))
}

// ------------------------------------------------------------------------------------- backup

#[derive(Debug, Serialize)]
struct BackupReport {
    file: String,
    bytes: u64,
    store_id: String,
}

impl Report for BackupReport {
    fn human(&self) -> String {
        format!(
            "wrote backup {} ({} bytes, mode 0600); it opens with the vault's master key file \
             (check it with `sealbox --vault {} verify`)\n",
            self.file, self.bytes, self.file
        )
    }
}

/// `sealbox backup ...`.
pub async fn backup(session: &Session, command: BackupCommand) -> Result<Outcome> {
    let vault = session.vault().await?;
    match command {
        BackupCommand::Create { file } => {
            let resource = file.display().to_string();
            // A backup holds every secret of the vault: `admin` on all of it under a policy.
            let result = match session.authorize_keys("*").await {
                Ok(()) => vault.backup_to(&file).await,
                Err(e) => Err(e),
            };
            session.audit(Action::Read, &format!("backup:{resource}"), &result)?;
            let info = result?;
            Ok(Outcome::report(&BackupReport {
                file: info.path.display().to_string(),
                bytes: info.bytes,
                store_id: vault.store_id().to_owned(),
            }))
        }
        BackupCommand::Restore { .. } => Err(Error::internal(
            "backup restore runs without a session; dispatch is out of step",
        )),
    }
}

#[derive(Debug, Serialize)]
struct RestoreReport {
    vault: String,
    backup: String,
    secrets: u64,
    versions: u64,
    write_count: u64,
    writes_discarded: u64,
}

impl Report for RestoreReport {
    fn human(&self) -> String {
        format!(
            "restored {} into {}: {} secrets, {} versions verified; {} writes made since the \
             backup were discarded and the key file's write counter reset to {}\n",
            self.backup,
            self.vault,
            self.secrets,
            self.versions,
            self.writes_discarded,
            self.write_count
        )
    }
}

/// `sealbox backup restore FILE`: runs before a session opens (the vault in place may be an
/// older copy that refuses to open), then records the restore in the session's audit log.
/// Through `--config` it first needs `admin` on the whole local store under the policy.
pub async fn restore(locations: &Locations, file: &Path) -> Result<Outcome> {
    let (vault_path, key) = vault_location(locations).await?;
    if let Some(config) = &locations.config {
        crate::session::authorize_restore(config).await?;
    }
    let result =
        LocalVault::restore_backup(&vault_path, file, key, LocalVaultOptions::default()).await;
    if locations.config.is_some() {
        let session = Session::open(locations).await;
        match session {
            Ok(session) => {
                let resource = format!("backup-restore:{}", file.display());
                session.audit(Action::Write, &resource, &result)?;
                session.finish().await?;
            }
            // Nothing was restored and the vault still does not open: that is the error.
            Err(_) if result.is_err() => {}
            Err(e) => return Err(e),
        }
    }
    let info = result?;
    Ok(Outcome::report(&RestoreReport {
        vault: info.vault.display().to_string(),
        backup: file.display().to_string(),
        secrets: info.secrets,
        versions: info.versions,
        write_count: info.write_count,
        writes_discarded: info.writes_discarded,
    }))
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
            rollback_detection: true,
            write_count: 4,
            writes_behind: 0,
            is_backup: false,
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
