//! The command line, as clap derive types. Names, stages and versions stay plain strings here
//! and are validated by the commands, so a bad name is an `invalid_input` error (exit 8) with
//! sealbox's own message rather than a usage error.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit;

/// sealbox: keep secrets in an encrypted local vault and manage them.
///
/// Values are read from standard input or a file, never from the command line unless
/// `--value` is given; they are printed only by `get --reveal`.
#[derive(Debug, Parser)]
#[command(name = "sealbox", version, after_help = exit::HELP_TABLE)]
pub struct Cli {
    /// The local vault file (or a directory holding `vault.sqlite3`).
    #[arg(long, global = true, env = "SEALBOX_VAULT", value_name = "PATH")]
    pub vault: Option<PathBuf>,

    /// The vault's master key file (random 256-bit keys, mode 0600).
    #[arg(long, global = true, env = "SEALBOX_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// A sealbox YAML config file (instead of --vault and --key-file).
    #[arg(long, global = true, env = "SEALBOX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every `sealbox` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new vault and its master key file (both mode 0600).
    Init,
    /// Store a new version of a secret (value from stdin, --file, or --value).
    Put(PutArgs),
    /// Read a secret: metadata by default, the value only with --reveal or --out.
    Get(GetArgs),
    /// List secret names.
    List(ListArgs),
    /// Show a secret's metadata (never its value).
    Describe(NameArg),
    /// Delete a secret (recoverable for a while unless --force).
    Delete(DeleteArgs),
    /// Undo a soft delete.
    Restore(NameArg),
    /// List a secret's versions and their stages.
    Versions(NameArg),
    /// Move a stage (CURRENT, PENDING, PREVIOUS or a custom label) to a version, or remove it.
    Stage(StageArgs),
    /// Rotate a secret now (create PENDING, set, test, promote), or every due one (--due).
    Rotate(RotateArgs),
    /// Rotation schedules and state.
    #[command(subcommand)]
    Rotation(RotationCommand),
    /// Credential policy checks of stored secrets.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Key operations.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Namespace operations.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Decrypt every version of every secret in the vault and report problems.
    Verify,
    /// Audit log operations.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Online backups of the vault, and restoring one on purpose.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Find hard-coded credentials in files, staged changes or git history (and, with --vault or --config,
    /// which ones are values stored in the vault). Exit 0: none found; 1: found; 2: error.
    #[command(after_help = SCAN_HELP)]
    Scan(ScanArgs),
}

/// The end of `sealbox scan --help`.
const SCAN_HELP: &str = "\
Exit codes of scan (its own, for CI and hooks):
  0  no credential found
  1  credentials found (each printed with its file, line, rule and a masked preview)
  2  error (bad arguments, unreadable rules file or files, git failure, vault error)

Accept a finding with a `sealbox:allow` comment on its line, or allowlist values or paths in a
rules file (--rules). As a git pre-commit hook: `sealbox scan install-hook` writes .git/hooks/pre-commit:
  #!/bin/sh
  exec sealbox scan --staged";

/// `sealbox scan`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ScanArgs {
    /// Instead of scanning: set scanning up.
    #[command(subcommand)]
    pub action: Option<ScanAction>,

    /// Files or directories to scan (default: the current directory); `-` alone scans
    /// standard input.
    #[arg(value_name = "PATH", conflicts_with_all = ["staged", "history"])]
    pub paths: Vec<PathBuf>,

    /// Scan the changes staged for the next commit (lines they add) in the git repository of
    /// the current directory, or of --repo.
    #[arg(long, conflicts_with = "history")]
    pub staged: bool,

    /// Scan the lines every commit reachable from HEAD added (each finding names its commit).
    #[arg(long)]
    pub history: bool,

    /// With --history: only the commits after REF (`REF..HEAD`).
    #[arg(long, value_name = "REF", requires = "history")]
    pub since: Option<String>,

    /// Move each value found into the vault and rewrite it to a reference where the file's
    /// format has one: a `KEY=value` line of an env-style file (.env, *.env, shell) becomes
    /// `KEY=${KEY}`; a whole string value in YAML or JSON becomes `sb:///NAME` (for a sealbox
    /// client to resolve). Only the value's bytes change; the original file is kept as
    /// FILE.sealbox-backup. A value already stored as a secret's CURRENT value keeps that name;
    /// others are stored as PREFIX/key (see --prefix). Needs --vault/--key-file or --config.
    #[arg(long, conflicts_with_all = ["staged", "history"])]
    pub fix: bool,

    /// With --fix: show what would be stored and the diff (values masked), change nothing.
    #[arg(long, requires = "fix")]
    pub dry_run: bool,

    /// With --fix: where new secrets go, e.g. avesa/dev (CLICKHOUSE_PASSWORD becomes
    /// avesa/dev/clickhouse-password; YAML's spring.datasource.password becomes
    /// avesa/dev/spring-datasource-password).
    #[arg(long, value_name = "NAME", requires = "fix")]
    pub prefix: Option<String>,

    /// With --staged or --history: the repository (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,

    /// A TOML rules file adding to (or replacing, by id) the built-in rules and allowlist.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Also scan files that .gitignore and .ignore files leave out.
    #[arg(long)]
    pub no_ignore: bool,

    /// Skip files larger than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_file_size: u64,

    /// Leave out the findings this baseline file lists (accepted ones, by fingerprint; never
    /// values). Findings not in it are reported as usual.
    #[arg(long, value_name = "FILE", conflicts_with = "write_baseline")]
    pub baseline: Option<PathBuf>,

    /// Write every finding's fingerprint to FILE as a baseline of accepted findings (for
    /// --baseline), and exit 0 unless the scan failed.
    #[arg(long, value_name = "FILE", conflicts_with = "fix")]
    pub write_baseline: Option<PathBuf>,

    /// Output: text for people (the default), json (as --json), or sarif (SARIF 2.1.0, for
    /// code-scanning uploads such as GitHub's upload-sarif). Every form shows a masked preview
    /// of each value, never the value.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ScanFormat>,
}

/// `sealbox scan ACTION`.
#[derive(Debug, Subcommand)]
pub enum ScanAction {
    /// Write the pre-commit hook (it runs `sealbox scan --staged`) into the git repository of
    /// the current directory or --repo, where git looks for hooks (core.hooksPath honoured).
    /// For the pre-commit framework, use the `sealbox-scan` hook of .pre-commit-hooks.yaml.
    InstallHook {
        /// The repository (default: the current directory).
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
        /// Move another pre-commit hook that is there aside (as pre-commit.sealbox-backup).
        #[arg(long)]
        replace: bool,
    },
}

/// `sealbox scan --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScanFormat {
    /// One line per finding, then a summary.
    Text,
    /// One JSON document (what --json prints).
    Json,
    /// A SARIF 2.1.0 log.
    Sarif,
}

/// One secret name.
#[derive(Debug, Args)]
pub struct NameArg {
    /// The secret name, e.g. predis/prod/database/password.
    pub name: String,
}

/// `sealbox put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The secret name, e.g. predis/prod/database/password.
    pub name: String,

    /// Read the value from this file instead of stdin.
    #[arg(long, value_name = "PATH", conflicts_with = "value")]
    pub file: Option<PathBuf>,

    /// The value itself. Unsafe: command lines are visible to other users (`ps`) and kept in
    /// shell history. Prefer stdin or --file.
    #[arg(long, value_name = "VALUE")]
    pub value: Option<ArgvValue>,

    /// Remove one trailing newline (`\n` or `\r\n`) from the value, as `echo` adds one.
    #[arg(long)]
    pub trim_newline: bool,

    /// Stage to put on the new version (repeatable). Default: CURRENT.
    #[arg(long = "stage", value_name = "STAGE")]
    pub stages: Vec<String>,

    /// Compare-and-set: fail with a conflict unless the CURRENT version is this one.
    #[arg(long, value_name = "VERSION", conflicts_with = "create_only")]
    pub expect_version: Option<String>,

    /// Compare-and-set: fail with a conflict if the secret already exists.
    #[arg(long)]
    pub create_only: bool,

    /// Description of the secret.
    #[arg(long)]
    pub description: Option<String>,

    /// A tag KEY=VALUE to merge into the secret's tags (repeatable; never put secrets in tags).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
}

/// A value given on the command line (`--value`): redacted in `Debug`, wiped on drop. (The
/// process's own copy of argv cannot be wiped; that is why `--value` warns.)
#[derive(Clone)]
pub struct ArgvValue(String);

impl ArgvValue {
    /// Takes the text out, leaving nothing behind in `self` for `Drop` to wipe.
    pub fn into_bytes(mut self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(std::mem::take(&mut self.0).into_bytes())
    }
}

impl std::str::FromStr for ArgvValue {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ArgvValue(s.to_owned()))
    }
}

impl std::fmt::Debug for ArgvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArgvValue([REDACTED])")
    }
}

impl Drop for ArgvValue {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// `sealbox get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The secret name.
    pub name: String,

    /// Read this version id instead of CURRENT.
    #[arg(long, value_name = "VERSION", conflicts_with = "stage")]
    pub version: Option<String>,

    /// Read the version carrying this stage instead of CURRENT.
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<String>,

    /// Only this top-level field of a JSON secret (e.g. password).
    #[arg(long, value_name = "FIELD")]
    pub field: Option<String>,

    /// Write the value to standard output.
    #[arg(long, conflicts_with = "out")]
    pub reveal: bool,

    /// Write the value to this file, created with mode 0600.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,

    /// With --out, replace an existing file.
    #[arg(long, requires = "out")]
    pub overwrite: bool,
}

/// `sealbox list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only names starting with this prefix.
    pub prefix: Option<String>,

    /// Include soft-deleted secrets.
    #[arg(long)]
    pub deleted: bool,
}

/// `sealbox delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The secret name.
    pub name: String,

    /// Destroy at once, with no recovery window. Irreversible.
    #[arg(long, conflicts_with = "recovery_days")]
    pub force: bool,

    /// Days the secret stays restorable (default 30).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=365))]
    pub recovery_days: Option<u32>,
}

/// `sealbox stage`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["version", "remove"])))]
pub struct StageArgs {
    /// The secret name.
    pub name: String,
    /// The stage: CURRENT, PENDING, PREVIOUS or a custom label.
    pub stage: String,
    /// The version to put the stage on.
    pub version: Option<String>,
    /// Remove the stage from whichever version has it.
    #[arg(long)]
    pub remove: bool,
}

/// `sealbox keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Rotate the master key: rewrap every namespace key under a new master key version.
    RotateMaster,
    /// Rotate a namespace's key (KEK): every secret of the namespace gets a fresh data key
    /// under the new KEK and its versions are re-encrypted.
    RotateKek {
        /// The namespace (first path segment of its secrets, e.g. predis).
        namespace: String,
    },
    /// Every key with its role, id, version, age, uses and due date (schedule: master 90
    /// days, namespace keys 90 days, data keys 30 days).
    Status {
        /// Evaluate the schedule at this RFC 3339 time instead of now (what will be due then).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Rotate keys: whatever is due (--due), one secret's data key (--secret) or the data keys
    /// of a namespace (--namespace). A data key rotation re-encrypts the secret's versions.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["due", "secret", "namespace"])))]
    Rotate {
        /// Rotate every key that `keys status` reports as due.
        #[arg(long)]
        due: bool,
        /// With --due: evaluate the schedule at this RFC 3339 time instead of now.
        #[arg(long, value_name = "TIME", requires = "due")]
        at: Option<String>,
        /// Rotate this secret's data key.
        #[arg(long, value_name = "NAME")]
        secret: Option<String>,
        /// Rotate the data key of every secret of this namespace.
        #[arg(long, value_name = "NAMESPACE")]
        namespace: Option<String>,
    },
    /// Destroy old key versions: secrets still under an old namespace key get a fresh data
    /// key, every version is decrypted under the current keys, then the old namespace key
    /// versions are removed from the vault and the old master versions from the key file (a
    /// copy of the vault made before the last master rotation then cannot be opened with it).
    Retire,
}

/// `sealbox namespace ...`.
#[derive(Debug, Subcommand)]
pub enum NamespaceCommand {
    /// Destroy a namespace's keys and delete its secrets, for good: its namespace key is
    /// removed from the master key file and its wrapped keys from the vault, whose journal
    /// is then truncated. A backup of the vault taken before cannot read the namespace with
    /// the current key file; a copy of the key file taken before the erase, with such a
    /// backup, still can.
    Erase {
        /// The namespace to erase.
        namespace: String,
        /// Confirm the irreversible erasure.
        #[arg(long)]
        yes: bool,
    },
}

/// `sealbox backup ...`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write a consistent copy of the vault to a new file (mode 0600) while it stays in use.
    /// The copy opens and verifies with the same master key file: `sealbox --vault FILE verify`.
    Create {
        /// The backup file to create (never overwritten).
        file: PathBuf,
    },
    /// Put a backup (or any older copy of this vault) in place of the vault, on purpose: it is
    /// verified first, copied over the vault, and the write counter kept in the key file is
    /// reset to the backup's, so the vault opens again. Writes made since the backup are lost;
    /// stop other processes using the vault first. Through --config it needs `admin` on the
    /// whole store, as `backup create` does.
    Restore {
        /// The backup file to restore.
        file: PathBuf,
    },
}

/// `sealbox audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check an audit log's hash chain and report the first broken, missing, reordered or edited
    /// line.
    Verify {
        /// The audit log (JSON lines): its active file, whose rotated files (FILE.NNNN...)
        /// are verified first as one chain, or a directory holding one log.
        file: PathBuf,
        /// The audit chain key file.
        #[arg(long, env = "SEALBOX_AUDIT_KEY_FILE", value_name = "PATH")]
        audit_key_file: Option<PathBuf>,
        /// Accept a log without its FILE.head anchor (only for a log that never had one: a
        /// deleted anchor is how a cut-off tail is hidden).
        #[arg(long)]
        allow_unanchored: bool,
        /// Check the log against every checkpoint published as a version of the secret NAME in
        /// the store STORE of --config (a log cut or rolled back below one fails).
        #[arg(long, value_name = "STORE/NAME")]
        checkpoints: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("8  invalid input"), "{help}");
    }

    #[test]
    fn stage_needs_a_version_or_remove() {
        assert!(Cli::try_parse_from(["sealbox", "stage", "a/b", "PENDING"]).is_err());
        assert!(Cli::try_parse_from(["sealbox", "stage", "a/b", "PENDING", "3"]).is_ok());
        assert!(Cli::try_parse_from(["sealbox", "stage", "a/b", "PENDING", "--remove"]).is_ok());
        assert!(
            Cli::try_parse_from(["sealbox", "stage", "a/b", "PENDING", "3", "--remove"]).is_err()
        );
    }

    #[test]
    fn argv_values_never_show_in_debug() {
        let cli = Cli::try_parse_from(["sealbox", "put", "a/b", "--value", "hunter2"]).unwrap();
        let debug = format!("{cli:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
    }

    #[test]
    fn reveal_and_out_exclude_each_other() {
        let r = Cli::try_parse_from(["sealbox", "get", "a/b", "--reveal", "--out", "f"]);
        assert!(r.is_err());
    }
}

/// `sealbox rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The secret to rotate (not with --due).
    #[arg(required_unless_present = "due", conflicts_with = "due")]
    pub name: Option<String>,
    /// Rotate every secret of the config's rotation schedule whose period has passed.
    #[arg(long)]
    pub due: bool,
    /// Undo the secret's last rotation (or abandon its unfinished one) instead.
    #[arg(long, requires = "name")]
    pub rollback: bool,
}

/// `sealbox policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Report every stored secret whose CURRENT value breaks the credential policy (SOC2 by
    /// default: 16 characters or more, upper, lower, digit and special, no repeated character,
    /// no dictionary word, estimated strength 90 bits or more), naming the rules it breaks and
    /// never a value. A JSON credential's `password` field is checked. Exit 0: none breaks it;
    /// 1: some do; other codes: errors, as for every command.
    Check {
        /// Check only the secrets under these name prefixes (default: every secret).
        #[arg(value_name = "PREFIX")]
        prefixes: Vec<String>,
        /// Check only a minimum length (API keys and tokens) instead of the SOC2 rules.
        #[arg(long, value_name = "CHARS")]
        min_length: Option<usize>,
    },
}

/// `sealbox rotation ...`.
#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Last rotated, next due and last failure of every scheduled secret.
    Status,
}
