//! `sealbox scan`: hard-coded credentials in files, staged changes or git history, and which of them are
//! values stored in the vault. Output shows a masked preview of each value, never the value.

use std::io::Read;
use std::path::PathBuf;

use std::collections::BTreeMap;

use sealbox::store::{PutOptions, SecretName, SecretStore};
use sealbox::{Error, ErrorKind, Result, Secret};
use sealbox_scan::fix::{self, Edit};
use sealbox_scan::{Finding, Rules, ScanReport, VaultIndex, WalkOptions};
use serde::Serialize;

use crate::args::{ScanAction, ScanArgs, ScanFormat};
use crate::commands::Io;
use crate::exit;
use crate::output::{Outcome, Report};
use crate::session::{Locations, Session};

/// What the vault side of a scan looked at.
#[derive(Debug, Serialize)]
struct VaultSummary {
    secrets: u64,
    versions: u64,
    unreadable: u64,
}

#[derive(Debug, Serialize)]
struct ScanOutput {
    #[serde(flatten)]
    report: ScanReport,
    /// Findings left out as listed in --baseline.
    #[serde(skip_serializing_if = "is_zero")]
    baselined: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    vault: Option<VaultSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<FixReport>,
}

/// What `--fix` did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Serialize)]
struct FixReport {
    dry_run: bool,
    /// Findings rewritten to a reference.
    fixed: Vec<Fixed>,
    /// Findings left as they are, with why.
    left: Vec<Left>,
    /// Backups of the rewritten files.
    backups: Vec<String>,
    /// The change, values masked.
    diff: String,
}

#[derive(Debug, Serialize)]
struct Fixed {
    #[serde(flatten)]
    edit: Edit,
    /// The secret now holding the value.
    name: String,
    /// Whether --fix stored it (false: it was already the secret's CURRENT value).
    stored: bool,
}

#[derive(Debug, Serialize)]
struct Left {
    path: String,
    line: usize,
    reason: &'static str,
}

impl Report for ScanOutput {
    fn human(&self) -> String {
        let r = &self.report;
        let mut s = String::new();
        for f in &r.findings {
            s.push_str(&f.human());
            s.push('\n');
        }
        for e in &r.errors {
            s.push_str(&format!("error: {e}\n"));
        }
        let files: std::collections::BTreeSet<&str> =
            r.findings.iter().map(|f| f.path.as_str()).collect();
        s.push_str(&format!(
            "{} finding{} in {} file{}; scanned {} files ({} bytes), skipped {} binary and {} \
             too large",
            r.findings.len(),
            plural(r.findings.len() as u64),
            files.len(),
            plural(files.len() as u64),
            r.files_scanned,
            r.bytes_scanned,
            r.skipped_binary,
            r.skipped_large,
        ));
        if self.baselined > 0 {
            s.push_str(&format!("; {} accepted by the baseline", self.baselined));
        }
        if let Some(v) = &self.vault {
            s.push_str(&format!(
                "; compared with {} versions of {} secrets in the vault",
                v.versions, v.secrets
            ));
            if v.unreadable > 0 {
                s.push_str(&format!(" ({} could not be read)", v.unreadable));
            }
        }
        s.push('\n');
        if let Some(fix) = &self.fix {
            s.push_str(&fix.diff);
            let verb = if fix.dry_run { "would move" } else { "moved" };
            for f in &fix.fixed {
                let how = if f.stored {
                    "stored as"
                } else {
                    "already stored as"
                };
                s.push_str(&format!(
                    "{verb} {}:{} into the vault ({how} {}); the line now reads {}\n",
                    f.edit.path, f.edit.line, f.name, f.edit.reference
                ));
            }
            for l in &fix.left {
                s.push_str(&format!("left {}:{}: {}\n", l.path, l.line, l.reason));
            }
            for b in &fix.backups {
                s.push_str(&format!("backup: {b}\n"));
            }
        }
        s
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The path findings in standard input are reported at (`sealbox scan -`).
const STDIN_PATH: &str = "<stdin>";

/// Runs a scan; opens the vault only when --vault or --config names one.
pub async fn run(locations: &Locations, args: ScanArgs, io: &mut Io<'_>) -> Result<Outcome> {
    if let Some(ScanAction::InstallHook { repo, replace }) = &args.action {
        let repo = repo.clone().unwrap_or_else(|| PathBuf::from("."));
        return Ok(Outcome::report(&HookReport(sealbox_scan::hook::install(
            &repo, *replace,
        )?)));
    }
    let has_vault = locations.vault.is_some() || locations.config.is_some();
    if args.fix && !has_vault {
        return Err(Error::config(
            "--fix stores values in a vault: give --vault and --key-file, or --config",
        ));
    }
    let rules = Rules::load(args.rules.as_deref())?;
    let repo = args.repo.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut report = if args.staged {
        sealbox_scan::staged::scan_staged(&rules, &repo, args.max_file_size)?
    } else if args.history {
        sealbox_scan::history::scan_history(
            &rules,
            &repo,
            args.since.as_deref(),
            args.max_file_size,
        )?
    } else if args.paths.iter().any(|p| p.as_os_str() == "-") {
        if args.paths.len() > 1 || args.fix {
            return Err(Error::invalid_input(
                "`-` scans standard input alone, and --fix cannot rewrite it; give `-` by itself \
                 without --fix",
            ));
        }
        scan_stdin(&rules, io.stdin, args.max_file_size)?
    } else {
        let paths = if args.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            args.paths.clone()
        };
        for p in &paths {
            if std::fs::symlink_metadata(p).is_err() {
                return Err(Error::not_found(format!(
                    "{} does not exist; give files or directories to scan",
                    p.display()
                )));
            }
        }
        let options = WalkOptions {
            no_ignore: args.no_ignore,
            max_file_size: args.max_file_size,
            threads: 0,
        };
        sealbox_scan::scan_paths(&rules, &paths, &options)?
    };
    sealbox_scan::baseline::assign(&mut report.findings);
    let mut baselined = 0;
    if let Some(path) = &args.baseline {
        let accepted = sealbox_scan::baseline::load(path)?;
        let before = report.findings.len();
        report
            .findings
            .retain(|f| !accepted.contains(&f.fingerprint));
        baselined = before - report.findings.len();
    }
    if let Some(path) = &args.write_baseline {
        std::fs::write(path, sealbox_scan::baseline::render(&report.findings))
            .map_err(|e| Error::io(format!("writing the baseline {}", path.display()), e))?;
    }
    let mut fixed = None;
    let vault = if has_vault {
        let session = Session::open(locations).await?;
        let result = async {
            let index = VaultIndex::build(session.store()).await?;
            index.annotate(&mut report.findings);
            if args.fix {
                fixed = Some(
                    fix_findings(
                        session.store(),
                        &report.findings,
                        args.prefix.as_deref(),
                        args.dry_run,
                    )
                    .await?,
                );
            }
            Ok::<_, Error>(index)
        }
        .await;
        let flushed = session.finish().await;
        let index = result?;
        flushed?;
        Some(VaultSummary {
            secrets: index.secrets,
            versions: index.versions,
            unreadable: index.unreadable,
        })
    } else {
        None
    };
    // After a real --fix, only the findings it left are still hard-coded.
    let remaining = match &fixed {
        Some(f) if !f.dry_run => report.findings.len() - f.fixed.len(),
        _ => report.findings.len(),
    };
    let code = if !report.errors.is_empty() {
        exit::SCAN_ERROR
    } else if remaining > 0 && args.write_baseline.is_none() {
        exit::SCAN_FOUND
    } else {
        exit::OK
    };
    let output = ScanOutput {
        report,
        baselined,
        vault,
        fix: fixed,
    };
    let outcome = match args.format {
        Some(ScanFormat::Sarif) => {
            Outcome::report(&Document(sealbox_scan::sarif::log(&output.report, &rules)))
        }
        Some(ScanFormat::Json) => Outcome::report(&Document(
            serde_json::to_value(&output).unwrap_or(serde_json::Value::Null),
        )),
        Some(ScanFormat::Text) | None => Outcome::report(&output),
    };
    Ok(outcome.with_exit_code(code))
}

/// What `scan install-hook` did.
#[derive(Serialize)]
#[serde(transparent)]
struct HookReport(sealbox_scan::hook::Installed);

impl Report for HookReport {
    fn human(&self) -> String {
        let h = &self.0;
        let mut s = match &h.backup {
            Some(b) => format!("moved the pre-commit hook that was there to {b}\n"),
            None => String::new(),
        };
        s.push_str(&if h.written {
            format!(
                "wrote {}: each commit is now scanned (`sealbox scan --staged`); it needs `sealbox` \
                 on PATH\n",
                h.hook
            )
        } else {
            format!("{} is already this hook; nothing to do\n", h.hook)
        });
        s
    }
}

/// An output already in its final form (a SARIF log, or the JSON --format json asked for):
/// printed as this JSON whether or not --json is given.
#[derive(Serialize)]
#[serde(transparent)]
struct Document(serde_json::Value);

impl Report for Document {
    fn human(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.0).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Scans what standard input holds (up to `max` bytes; more is an error, not a silent cut).
fn scan_stdin(rules: &Rules, stdin: &mut dyn Read, max: u64) -> Result<ScanReport> {
    let mut text = Vec::new();
    stdin
        .take(max.saturating_add(1))
        .read_to_end(&mut text)
        .map_err(|e| Error::io("reading standard input", e))?;
    if text.len() as u64 > max {
        return Err(Error::invalid_input(format!(
            "standard input is larger than --max-file-size ({max} bytes); raise it or scan a file"
        )));
    }
    let mut report = ScanReport::default();
    if text[..text.len().min(8192)].contains(&0) {
        report.skipped_binary = 1;
        return Ok(report);
    }
    report.files_scanned = 1;
    report.bytes_scanned = text.len() as u64;
    report.findings = rules.scan_bytes(STDIN_PATH, &text)?;
    Ok(report)
}

/// Moves the findings that have a reference form (env-style assignments, whole YAML and JSON
/// string values) into the vault and rewrites their files; with `dry_run`, only plans it.
async fn fix_findings(
    store: &dyn SecretStore,
    findings: &[Finding],
    prefix: Option<&str>,
    dry_run: bool,
) -> Result<FixReport> {
    let mut out = FixReport {
        dry_run,
        ..FixReport::default()
    };
    let mut by_file: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        by_file.entry(f.path.as_str()).or_default().push(f);
    }
    // Names this run stored, with their values, so a value seen twice is stored once and two
    // different values never share a name.
    let mut stored: Vec<(String, &Secret)> = Vec::new();
    for (path, found) in by_file {
        let text = std::fs::read(path).map_err(|e| Error::io(format!("reading {path}"), e))?;
        let hidden: Vec<(usize, usize)> =
            found.iter().filter_map(|f| fix::span(f, &text)).collect();
        let mut edits = Vec::new();
        for f in found {
            let Some(mut edit) = fix::plan(f, &text) else {
                out.left.push(Left {
                    path: path.to_owned(),
                    line: f.line,
                    reason: "no reference form here (only a KEY=value line of an env-style file \
                             or a whole string value in YAML or JSON has one); move it by hand",
                });
                continue;
            };
            let known = f
                .vault
                .iter()
                .find(|m| m.current && m.field.is_none())
                .map(|m| m.name.clone());
            let (name, store_it) = match known {
                Some(name) => (name, false),
                None => {
                    let prefix = prefix.ok_or_else(|| {
                        Error::invalid_input(format!(
                            "{path}:{}: the value is not in the vault; give --prefix to name \
                             the new secrets (e.g. --prefix app/dev)",
                            f.line
                        ))
                    })?;
                    (
                        format!("{}/{}", prefix.trim_end_matches('/'), edit.name_hint()),
                        true,
                    )
                }
            };
            let name_ok = SecretName::new(&name)?;
            let mut put = store_it;
            if let Some((_, earlier)) = stored.iter().find(|(n, _)| *n == name) {
                if !earlier.ct_eq(f.value()) {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "{path}:{}: another value found in this scan goes to {name} too; \
                             rename one of the keys or fix the files one at a time",
                            f.line
                        ),
                    ));
                }
                put = false;
            }
            if put && !dry_run {
                let options = PutOptions {
                    expected_current: Some(None),
                    description: Some(format!("moved from {path} by sealbox scan --fix")),
                    ..PutOptions::default()
                };
                store
                    .put(&name_ok, f.value(), &options)
                    .await
                    .map_err(|e| match e.kind() {
                        ErrorKind::Conflict | ErrorKind::AlreadyExists => Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "{name} already exists in the vault with another value; nothing \
                                 was rewritten in {path}; choose another --prefix"
                            ),
                        ),
                        _ => e,
                    })?;
            }
            if put {
                stored.push((name.clone(), f.value()));
            }
            edit.refer_to(&name);
            edits.push(edit.clone());
            out.fixed.push(Fixed {
                edit,
                name,
                stored: store_it,
            });
        }
        if edits.is_empty() {
            continue;
        }
        out.diff.push_str(&fix::masked_diff(&text, &edits, &hidden));
        if !dry_run {
            let backup = fix::rewrite_with_backup(
                std::path::Path::new(path),
                &text,
                &fix::apply(&text, &edits),
            )?;
            out.backups.push(backup.display().to_string());
        }
    }
    Ok(out)
}
