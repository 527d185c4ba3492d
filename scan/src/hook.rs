//! `sealbox scan install-hook`: writes the pre-commit hook (`scan/hooks/pre-commit`, which runs
//! `sealbox scan --staged`) where git looks for it, honouring `core.hooksPath` and worktrees.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sealbox::{Error, ErrorKind, Result};
use serde::Serialize;

use crate::staged::git;

/// The hook's text.
pub const PRE_COMMIT: &str = include_str!("../hooks/pre-commit");

/// What `install` did.
#[derive(Debug, Serialize)]
pub struct Installed {
    /// The hook file.
    pub hook: String,
    /// False when this very hook was already there.
    pub written: bool,
    /// Where another hook that was there has been moved (with `replace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

/// Installs the pre-commit hook in the git repository at (or above) `repo`. Another hook
/// already there is refused unless `replace`, which moves it aside as `pre-commit.sealbox-backup`.
pub fn install(repo: &Path, replace: bool) -> Result<Installed> {
    let out = git(repo, &["rev-parse", "--git-path", "hooks/pre-commit"])?;
    let rel = PathBuf::from(String::from_utf8_lossy(&out).trim_end_matches(['\n', '\r']));
    let hook = if rel.is_absolute() {
        rel
    } else {
        repo.join(rel)
    };
    let shown = hook.display().to_string();
    let mut backup = None;
    match std::fs::read(&hook) {
        Ok(existing) if existing == PRE_COMMIT.as_bytes() => {
            return Ok(Installed {
                hook: shown,
                written: false,
                backup: None,
            });
        }
        Ok(_) if !replace => {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{shown} is another pre-commit hook; add `sealbox scan --staged` to it, or \
                     give --replace to move it aside"
                ),
            ));
        }
        Ok(_) => {
            let mut aside = hook.clone().into_os_string();
            aside.push(".sealbox-backup");
            let aside = PathBuf::from(aside);
            if aside.exists() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{} exists; move it away first", aside.display()),
                ));
            }
            std::fs::rename(&hook, &aside)
                .map_err(|e| Error::io(format!("moving {shown} aside"), e))?;
            backup = Some(aside.display().to_string());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {shown}"), e)),
    }
    if let Some(dir) = hook.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&hook)
        .map_err(|e| Error::io(format!("creating {shown}"), e))?;
    f.write_all(PRE_COMMIT.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("writing {shown}"), e))?;
    // The umask may have taken the execute bits away; git skips a hook it cannot execute.
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(format!("making {shown} executable"), e))?;
    Ok(Installed {
        hook: shown,
        written: true,
        backup,
    })
}
