//! Commands on secrets: put, get, list, describe, delete, restore, versions, stage.
//!
//! Each works on any [`SecretStore`], so the tests beside them run on the memory store and the
//! binary runs them on the local vault.

use std::collections::BTreeMap;
use std::time::Duration;

use sealbox::store::{
    DeleteOptions, ListOptions, PutOptions, SecretMetadata, SecretName, SecretStore, Stage,
    VersionId, VersionInfo, VersionSelector,
};
use sealbox::{Error, ExposeSecret, Result};
use serde::Serialize;

use super::Io;
use crate::args::{DeleteArgs, GetArgs, ListArgs, PutArgs, StageArgs};
use crate::output::{Outcome, Report, time_text, timestamp};
use crate::value_input::{ValueSource, read_value};
use crate::value_output::write_private_file;

fn name(text: &str) -> Result<SecretName> {
    SecretName::new(text)
}

fn stage_names(stages: &[Stage]) -> Vec<String> {
    stages.iter().map(|s| s.as_str().to_owned()).collect()
}

fn stages_text(stages: &[String]) -> String {
    if stages.is_empty() {
        "-".to_owned()
    } else {
        stages.join(",")
    }
}

/// One version, as reports show it.
#[derive(Debug, Serialize)]
pub struct VersionRow {
    version: String,
    stages: Vec<String>,
    created: Option<String>,
}

impl From<&VersionInfo> for VersionRow {
    fn from(v: &VersionInfo) -> VersionRow {
        VersionRow {
            version: v.version.to_string(),
            stages: stage_names(&v.stages),
            created: timestamp(v.created),
        }
    }
}

fn version_table(rows: &[VersionRow]) -> String {
    let width = rows
        .iter()
        .map(|r| r.version.len())
        .chain(["VERSION".len()])
        .max()
        .unwrap_or(7);
    let swidth = rows
        .iter()
        .map(|r| stages_text(&r.stages).len())
        .chain(["STAGES".len()])
        .max()
        .unwrap_or(6);
    let mut out = format!("{:width$}  {:swidth$}  CREATED\n", "VERSION", "STAGES");
    for r in rows {
        out.push_str(&format!(
            "{:width$}  {:swidth$}  {}\n",
            r.version,
            stages_text(&r.stages),
            time_text(&r.created)
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------- put

#[derive(Debug, Serialize)]
struct PutReport {
    name: String,
    version: String,
    stages: Vec<String>,
    created: Option<String>,
}

impl Report for PutReport {
    fn human(&self) -> String {
        format!(
            "stored {} version {} ({})\n",
            self.name,
            self.version,
            stages_text(&self.stages)
        )
    }
}

/// `sealbox put`.
pub async fn put(store: &dyn SecretStore, args: PutArgs, io: &mut Io<'_>) -> Result<Outcome> {
    let name = name(&args.name)?;
    let mut options = PutOptions::default();
    if !args.stages.is_empty() {
        options.stages = args
            .stages
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<Stage>>>()?;
    }
    if let Some(v) = args.expect_version {
        options.expected_current = Some(Some(VersionId::new(v)));
    } else if args.create_only {
        options.expected_current = Some(None);
    }
    options.description = args.description;
    options.tags = parse_tags(&args.tags)?;

    let source = match (args.file.as_deref(), args.value) {
        (Some(path), _) => ValueSource::File(path),
        (None, Some(value)) => ValueSource::Argv(value),
        (None, None) => ValueSource::Stdin {
            reader: &mut *io.stdin,
            is_terminal: io.stdin_is_terminal,
        },
    };
    let max_len = store.capabilities().max_value_len;
    let value = read_value(source, max_len, args.trim_newline, &mut *io.stderr)?;
    let info = store.put(&name, &value, &options).await?;
    Ok(Outcome::report(&PutReport {
        name: name.to_string(),
        version: info.version.to_string(),
        stages: stage_names(&info.stages),
        created: timestamp(info.created),
    }))
}

fn parse_tags(tags: &[String]) -> Result<BTreeMap<String, String>> {
    tags.iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(Error::invalid_input(format!(
                "tag {t:?} must look like KEY=VALUE"
            ))),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------- get

#[derive(Debug, Serialize)]
struct GetReport {
    name: String,
    version: String,
    stages: Vec<String>,
    created: Option<String>,
    field: Option<String>,
    /// Length of the value (or field) in bytes; the value itself is never in a report.
    length: usize,
    /// Where the value was written, if anywhere.
    written_to: Option<String>,
}

impl Report for GetReport {
    fn human(&self) -> String {
        let mut out = format!(
            "name:     {}\nversion:  {}\nstages:   {}\ncreated:  {}\n",
            self.name,
            self.version,
            stages_text(&self.stages),
            time_text(&self.created)
        );
        if let Some(f) = &self.field {
            out.push_str(&format!("field:    {f}\n"));
        }
        out.push_str(&format!("length:   {} bytes\n", self.length));
        match &self.written_to {
            Some(path) => out.push_str(&format!("value:    written to {path} (mode 0600)\n")),
            None => out.push_str("value:    not shown (use --reveal, or --out FILE)\n"),
        }
        out
    }
}

/// `sealbox get`.
pub async fn get(store: &dyn SecretStore, args: GetArgs, io: &mut Io<'_>) -> Result<Outcome> {
    let name = name(&args.name)?;
    let selector = match (args.version, args.stage) {
        (Some(v), _) => VersionSelector::Version(VersionId::new(v)),
        (None, Some(s)) => VersionSelector::Stage(s.parse()?),
        (None, None) => VersionSelector::Current,
    };
    let got = store.get(&name, &selector).await?;
    let field = match &args.field {
        Some(f) => Some(got.value.json_field(f)?),
        None => None,
    };
    let bytes: &[u8] = match &field {
        Some(f) => f.as_secret().expose_secret(),
        None => got.value.expose_secret(),
    };
    if args.reveal {
        io.stdout
            .write_all(bytes)
            .and_then(|()| io.stdout.flush())
            .map_err(|e| Error::io("writing the value to standard output", e))?;
        return Ok(Outcome::Written);
    }
    let written_to = match &args.out {
        Some(path) => {
            write_private_file(path, bytes, args.overwrite)?;
            Some(path.display().to_string())
        }
        None => None,
    };
    Ok(Outcome::report(&GetReport {
        name: name.to_string(),
        version: got.version.to_string(),
        stages: stage_names(&got.stages),
        created: timestamp(got.created),
        field: args.field,
        length: bytes.len(),
        written_to,
    }))
}

// --------------------------------------------------------------------------------------- list

#[derive(Debug, Serialize)]
struct ListRow {
    name: String,
    updated: Option<String>,
    deleted: bool,
}

#[derive(Debug, Serialize)]
struct ListReport {
    secrets: Vec<ListRow>,
}

impl Report for ListReport {
    fn human(&self) -> String {
        let mut out = String::new();
        for row in &self.secrets {
            out.push_str(&row.name);
            if row.deleted {
                out.push_str("  (deleted)");
            }
            out.push('\n');
        }
        out
    }
}

/// `sealbox list`.
pub async fn list(store: &dyn SecretStore, args: ListArgs) -> Result<Outcome> {
    let mut options = ListOptions {
        prefix: args.prefix.unwrap_or_default(),
        include_deleted: args.deleted,
        ..ListOptions::default()
    };
    let mut secrets = Vec::new();
    loop {
        let page = store.list(&options).await?;
        secrets.extend(page.entries.into_iter().map(|e| ListRow {
            name: e.name.to_string(),
            updated: timestamp(e.updated),
            deleted: e.deleted,
        }));
        match page.next_page_token {
            Some(token) => options.page_token = Some(token),
            None => break,
        }
    }
    Ok(Outcome::report(&ListReport { secrets }))
}

// ----------------------------------------------------------------------------------- describe

#[derive(Debug, Serialize)]
struct DescribeReport {
    name: String,
    description: Option<String>,
    created: Option<String>,
    updated: Option<String>,
    last_rotated: Option<String>,
    rotation_period_seconds: Option<u64>,
    deleted_purge_at: Option<String>,
    tags: BTreeMap<String, String>,
    versions: Vec<VersionRow>,
}

impl DescribeReport {
    fn new(m: &SecretMetadata) -> DescribeReport {
        DescribeReport {
            name: m.name.to_string(),
            description: m.description.clone(),
            created: timestamp(m.created),
            updated: timestamp(m.updated),
            last_rotated: timestamp(m.last_rotated),
            rotation_period_seconds: m.rotation_period.map(|d| d.as_secs()),
            deleted_purge_at: timestamp(m.deleted),
            tags: m.tags.clone(),
            versions: m.versions.iter().map(VersionRow::from).collect(),
        }
    }
}

impl Report for DescribeReport {
    fn human(&self) -> String {
        let mut out = format!("name:          {}\n", self.name);
        if let Some(d) = &self.description {
            out.push_str(&format!("description:   {d}\n"));
        }
        out.push_str(&format!(
            "created:       {}\nupdated:       {}\nlast rotated:  {}\n",
            time_text(&self.created),
            time_text(&self.updated),
            time_text(&self.last_rotated)
        ));
        if let Some(p) = self.rotation_period_seconds {
            out.push_str(&format!("rotation:      every {p} s\n"));
        }
        if let Some(d) = &self.deleted_purge_at {
            out.push_str(&format!("deleted:       yes, purged at {d}\n"));
        }
        for (k, v) in &self.tags {
            out.push_str(&format!("tag:           {k}={v}\n"));
        }
        out.push('\n');
        out.push_str(&version_table(&self.versions));
        out
    }
}

/// `sealbox describe`.
pub async fn describe(store: &dyn SecretStore, name_text: &str) -> Result<Outcome> {
    let m = store.describe(&name(name_text)?).await?;
    Ok(Outcome::report(&DescribeReport::new(&m)))
}

// ----------------------------------------------------------------------------------- versions

#[derive(Debug, Serialize)]
struct VersionsReport {
    name: String,
    versions: Vec<VersionRow>,
}

impl Report for VersionsReport {
    fn human(&self) -> String {
        version_table(&self.versions)
    }
}

/// `sealbox versions`.
pub async fn versions(store: &dyn SecretStore, name_text: &str) -> Result<Outcome> {
    let m = store.describe(&name(name_text)?).await?;
    Ok(Outcome::report(&VersionsReport {
        name: m.name.to_string(),
        versions: m.versions.iter().map(VersionRow::from).collect(),
    }))
}

// ------------------------------------------------------------------------- delete and restore

#[derive(Debug, Serialize)]
struct DeleteReport {
    name: String,
    /// `true` when destroyed at once, `false` when restorable.
    destroyed: bool,
    recovery_days: Option<u32>,
}

impl Report for DeleteReport {
    fn human(&self) -> String {
        match self.recovery_days {
            Some(days) if !self.destroyed => format!(
                "deleted {}; restorable for {days} days with `sealbox restore {}`\n",
                self.name, self.name
            ),
            _ => format!("destroyed {} (not recoverable)\n", self.name),
        }
    }
}

const DEFAULT_RECOVERY_DAYS: u32 = 30;

/// `sealbox delete`.
pub async fn delete(store: &dyn SecretStore, args: DeleteArgs) -> Result<Outcome> {
    let name = name(&args.name)?;
    let days = args.recovery_days.unwrap_or(DEFAULT_RECOVERY_DAYS);
    let options = DeleteOptions {
        force: args.force,
        recovery_window: Duration::from_secs(u64::from(days) * 24 * 3600),
    };
    store.delete(&name, &options).await?;
    Ok(Outcome::report(&DeleteReport {
        name: name.to_string(),
        destroyed: args.force,
        recovery_days: (!args.force).then_some(days),
    }))
}

#[derive(Debug, Serialize)]
struct RestoreReport {
    name: String,
    restored: bool,
}

impl Report for RestoreReport {
    fn human(&self) -> String {
        format!("restored {}\n", self.name)
    }
}

/// `sealbox restore`.
pub async fn restore(store: &dyn SecretStore, name_text: &str) -> Result<Outcome> {
    let name = name(name_text)?;
    store.restore(&name).await?;
    Ok(Outcome::report(&RestoreReport {
        name: name.to_string(),
        restored: true,
    }))
}

// -------------------------------------------------------------------------------------- stage

#[derive(Debug, Serialize)]
struct StageReport {
    name: String,
    stage: String,
    /// The version now carrying the stage; `None` when it was removed.
    version: Option<String>,
}

impl Report for StageReport {
    fn human(&self) -> String {
        match &self.version {
            Some(v) => format!("{} of {} is now version {v}\n", self.stage, self.name),
            None => format!("removed {} from {}\n", self.stage, self.name),
        }
    }
}

/// `sealbox stage`.
pub async fn stage(store: &dyn SecretStore, args: StageArgs) -> Result<Outcome> {
    let name = name(&args.name)?;
    let stage: Stage = args.stage.parse()?;
    let version = if args.remove {
        None
    } else {
        args.version.map(VersionId::new)
    };
    store.set_stage(&name, &stage, version.as_ref()).await?;
    Ok(Outcome::report(&StageReport {
        name: name.to_string(),
        stage: stage.as_str().to_owned(),
        version: version.map(|v| v.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;
    use sealbox::ErrorKind;
    use sealbox::store::memory::MemoryStore;

    /// Runs one command line against `store` with `stdin`, returning (outcome as JSON or the
    /// raw stdout, stderr).
    async fn run(
        store: &MemoryStore,
        argv: &[&str],
        stdin: &[u8],
    ) -> Result<(serde_json::Value, Vec<u8>, String)> {
        let cli = Cli::try_parse_from(std::iter::once("sealbox").chain(argv.iter().copied()))
            .map_err(|e| Error::invalid_input(e.to_string()))?;
        let mut input = stdin;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut io = Io {
            stdin: &mut input,
            stdin_is_terminal: false,
            stdout: &mut stdout,
            stderr: &mut stderr,
        };
        let outcome = match cli.command {
            Command::Put(a) => put(store, a, &mut io).await,
            Command::Get(a) => get(store, a, &mut io).await,
            Command::List(a) => list(store, a).await,
            Command::Describe(a) => describe(store, &a.name).await,
            Command::Versions(a) => versions(store, &a.name).await,
            Command::Delete(a) => delete(store, a).await,
            Command::Restore(a) => restore(store, &a.name).await,
            Command::Stage(a) => stage(store, a).await,
            other => panic!("not a secrets command: {other:?}"),
        }?;
        let json = match &outcome {
            Outcome::Report { json, .. } => json.clone(),
            Outcome::Written => serde_json::Value::Null,
        };
        Ok((json, stdout, String::from_utf8(stderr).unwrap()))
    }

    const NAME: &str = "predis/prod/api/auth-token";

    #[tokio::test]
    async fn put_then_get_reports_metadata_but_no_value() {
        let store = MemoryStore::new();
        let (put, _, _) = run(&store, &["put", NAME], b"t0ken-value").await.unwrap();
        assert_eq!(put["version"], "1");
        assert_eq!(put["stages"][0], "CURRENT");

        let (got, stdout, _) = run(&store, &["get", NAME], b"").await.unwrap();
        assert_eq!(got["length"], 11);
        assert_eq!(got["written_to"], serde_json::Value::Null);
        assert!(stdout.is_empty());
        assert!(!got.to_string().contains("t0ken-value"));
    }

    #[tokio::test]
    async fn reveal_writes_exactly_the_value() {
        let store = MemoryStore::new();
        run(&store, &["put", NAME], b"t0ken\n").await.unwrap();
        let (_, stdout, _) = run(&store, &["get", NAME, "--reveal"], b"").await.unwrap();
        assert_eq!(stdout, b"t0ken\n");
    }

    #[tokio::test]
    async fn out_writes_a_private_file() {
        let store = MemoryStore::new();
        run(&store, &["put", NAME], b"t0ken").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let p = path.to_str().unwrap();
        let (got, stdout, _) = run(&store, &["get", NAME, "--out", p], b"").await.unwrap();
        assert!(stdout.is_empty());
        assert_eq!(got["written_to"], p);
        assert_eq!(std::fs::read(&path).unwrap(), b"t0ken");
    }

    #[tokio::test]
    async fn versions_and_stages_follow_new_puts() {
        let store = MemoryStore::new();
        run(&store, &["put", NAME], b"one").await.unwrap();
        run(&store, &["put", NAME, "--stage", "pending"], b"two")
            .await
            .unwrap();
        let (v, _, _) = run(&store, &["versions", NAME], b"").await.unwrap();
        assert_eq!(v["versions"][0]["stages"][0], "CURRENT");
        assert_eq!(v["versions"][1]["stages"][0], "PENDING");

        run(&store, &["stage", NAME, "CURRENT", "2"], b"")
            .await
            .unwrap();
        let (v, _, _) = run(&store, &["versions", NAME], b"").await.unwrap();
        assert_eq!(v["versions"][0]["stages"][0], "PREVIOUS");
        assert!(
            v["versions"][1]["stages"]
                .as_array()
                .unwrap()
                .contains(&"CURRENT".into())
        );

        run(&store, &["stage", NAME, "PREVIOUS", "--remove"], b"")
            .await
            .unwrap();
        let (v, _, _) = run(&store, &["versions", NAME], b"").await.unwrap();
        assert_eq!(v["versions"][0]["stages"], serde_json::json!([]));

        let (_, stdout, _) = run(&store, &["get", NAME, "--version", "1", "--reveal"], b"")
            .await
            .unwrap();
        assert_eq!(stdout, b"one");
    }

    #[tokio::test]
    async fn compare_and_set_conflicts_are_reported_as_conflicts() {
        let store = MemoryStore::new();
        run(&store, &["put", NAME, "--create-only"], b"one")
            .await
            .unwrap();
        let err = run(&store, &["put", NAME, "--create-only"], b"two")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        run(&store, &["put", NAME, "--expect-version", "1"], b"two")
            .await
            .unwrap();
        let err = run(&store, &["put", NAME, "--expect-version", "1"], b"three")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
    }

    #[tokio::test]
    async fn list_delete_restore() {
        let store = MemoryStore::new();
        run(&store, &["put", "predis/prod/a"], b"1").await.unwrap();
        run(&store, &["put", "predis/dev/b"], b"2").await.unwrap();
        let (l, _, _) = run(&store, &["list", "predis/prod/"], b"").await.unwrap();
        assert_eq!(l["secrets"].as_array().unwrap().len(), 1);
        assert_eq!(l["secrets"][0]["name"], "predis/prod/a");

        let (d, _, _) = run(&store, &["delete", "predis/prod/a"], b"")
            .await
            .unwrap();
        assert_eq!(d["recovery_days"], 30);
        let err = run(&store, &["get", "predis/prod/a"], b"")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let (l, _, _) = run(&store, &["list", "--deleted"], b"").await.unwrap();
        assert_eq!(l["secrets"].as_array().unwrap().len(), 2);

        run(&store, &["restore", "predis/prod/a"], b"")
            .await
            .unwrap();
        run(&store, &["get", "predis/prod/a"], b"").await.unwrap();

        run(&store, &["delete", "predis/prod/a", "--force"], b"")
            .await
            .unwrap();
        let err = run(&store, &["restore", "predis/prod/a"], b"")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn describe_shows_tags_and_description() {
        let store = MemoryStore::new();
        let argv = [
            "put",
            NAME,
            "--description",
            "API token",
            "--tag",
            "team=cache",
        ];
        run(&store, &argv, b"v").await.unwrap();
        let (d, _, _) = run(&store, &["describe", NAME], b"").await.unwrap();
        assert_eq!(d["description"], "API token");
        assert_eq!(d["tags"]["team"], "cache");
        assert_eq!(d["versions"][0]["version"], "1");
    }

    #[tokio::test]
    async fn bad_input_is_invalid_input() {
        let store = MemoryStore::new();
        for argv in [
            &["put", "../etc/passwd"][..],
            &["put", NAME, "--tag", "novalue"],
            &["put", NAME, "--stage", "bad label"],
            &["get", "a b"],
        ] {
            let err = run(&store, argv, b"v").await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{argv:?}");
        }
    }
}
