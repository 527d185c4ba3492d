//! The behaviour suite every sealbox store runs: `pub async fn`s taking `&dyn SecretStore` plus
//! its capabilities. This crate is the one place that says what a store must do.
//!
//! Every check takes the store, the [`Capabilities`] it claims, and a name prefix (one or more
//! valid name segments, e.g. `conformance-3f9a`). All secrets a check creates live under
//! `PREFIX/<check>/...`, so runs against a shared server do not collide as long as each run uses
//! its own prefix. Checks clean up after themselves on a best-effort basis (force delete).
//!
//! Optional behaviour is gated by the capabilities: a store that says `versions: false` is not
//! asked to read old versions, one that says `write: false` is checked to refuse every write
//! with `Unsupported` instead. Nothing here depends on the shape of version ids: the suite only
//! uses the ids that the store itself returned.
//!
//! ```no_run
//! # async fn demo(store: &dyn sealbox::store::SecretStore) {
//! sealbox_conformance::run_all(store, store.capabilities(), "conformance-run-1")
//!     .await
//!     .unwrap();
//! # }
//! ```
//!
//! Read-only stores (env, file) cannot be seeded through the trait; their tests seed the
//! backing source and call [`run_read_only`] with the expected contents.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use futures::future::join_all;
use sealbox::store::{
    Capabilities, DeleteOptions, ListEntry, ListOptions, PutOptions, SecretName, SecretStore,
    SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};
use sealbox::{Error, ErrorKind, ExposeSecret, Secret};

/// A failed check: which one and what the store did wrong. Never contains a value (the suite's
/// values are test data, but messages only report lengths anyway).
pub struct Failure {
    /// The check that failed (`"compare_and_set"`, ...).
    pub check: &'static str,
    /// What was expected and what happened.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conformance check `{}` failed: {}",
            self.check, self.message
        )
    }
}

// `unwrap()` in a test prints Debug: make it as readable as Display.
impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {}

/// The result of one check.
pub type Outcome = Result<(), Failure>;

/// Runs every check that applies to a store with `caps`: the full writable suite when
/// `caps.write`, otherwise the parts of the read-only suite that need no seeded data.
pub async fn run_all(store: &dyn SecretStore, caps: Capabilities, prefix: &str) -> Outcome {
    if !caps.write {
        writes_unsupported(store, caps, prefix).await?;
        return missing_is_not_found(store, caps, prefix).await;
    }
    put_get_round_trip(store, caps, prefix).await?;
    versions_and_selectors(store, caps, prefix).await?;
    stage_moves(store, caps, prefix).await?;
    compare_and_set(store, caps, prefix).await?;
    idempotency_tokens(store, caps, prefix).await?;
    list_prefix_and_paging(store, caps, prefix).await?;
    delete_restore_force(store, caps, prefix).await?;
    not_found_kinds(store, caps, prefix).await?;
    large_and_binary_values(store, caps, prefix).await?;
    concurrent_writers(store, caps, prefix).await?;
    Ok(())
}

/// Runs the read-only suite: `fixtures` (full name, expected value) must be readable, `list`
/// under `prefix` must return each fixture that starts with it exactly once, missing names and
/// stages are `NotFound`, and every write is refused with `Unsupported` without changing
/// anything.
pub async fn run_read_only(
    store: &dyn SecretStore,
    caps: Capabilities,
    prefix: &str,
    fixtures: &[(&str, &[u8])],
) -> Outcome {
    let c = Check("read_only");
    for (raw, expected) in fixtures {
        let name = c.name(raw)?;
        let got = c.ok(
            store.get(&name, &VersionSelector::Current).await,
            &format!("get {name} (CURRENT)"),
        )?;
        c.same_value(&got, expected, &format!("get {name}"))?;
        let by_id = c.ok(
            store
                .get(&name, &VersionSelector::Version(got.version.clone()))
                .await,
            &format!("get {name} by the version id get returned"),
        )?;
        c.same_value(&by_id, expected, &format!("get {name} by id"))?;
        let meta = c.ok(store.describe(&name).await, &format!("describe {name}"))?;
        c.ensure(meta.name == name, || {
            format!("describe {name} returned metadata for {}", meta.name)
        })?;
    }
    let listed = c.list_all(store, caps, prefix, false).await?;
    let listed: BTreeSet<String> = listed.into_iter().map(|e| e.name.to_string()).collect();
    for (raw, _) in fixtures.iter().filter(|(n, _)| n.starts_with(prefix)) {
        c.ensure(listed.contains(*raw), || {
            format!("list({prefix:?}) does not return {raw}")
        })?;
    }
    for name in &listed {
        c.ensure(name.starts_with(prefix), || {
            format!("list({prefix:?}) returned {name}, which lacks the prefix")
        })?;
    }
    writes_unsupported(store, caps, prefix).await?;
    missing_is_not_found(store, caps, prefix).await?;
    // Refused writes must not have touched anything.
    for (raw, expected) in fixtures {
        let name = c.name(raw)?;
        let got = c.ok(
            store.get(&name, &VersionSelector::Current).await,
            &format!("get {name} after refused writes"),
        )?;
        c.same_value(&got, expected, &format!("get {name} after refused writes"))?;
    }
    Ok(())
}

/// A read-only store refuses `put`, `delete` (soft and force), `restore` and `set_stage` with
/// `Unsupported`. Skipped for writable stores.
pub async fn writes_unsupported(
    store: &dyn SecretStore,
    caps: Capabilities,
    prefix: &str,
) -> Outcome {
    if caps.write {
        return Ok(());
    }
    let c = Check("writes_unsupported");
    let name = c.name(&under(prefix, "conformance-write-probe"))?;
    let value = c.secret(b"probe")?;
    c.kind(
        store.put(&name, &value, &PutOptions::default()).await,
        ErrorKind::Unsupported,
        "put on a read-only store",
    )?;
    c.kind(
        store.delete(&name, &DeleteOptions::default()).await,
        ErrorKind::Unsupported,
        "soft delete on a read-only store",
    )?;
    let force = DeleteOptions {
        force: true,
        ..DeleteOptions::default()
    };
    c.kind(
        store.delete(&name, &force).await,
        ErrorKind::Unsupported,
        "force delete on a read-only store",
    )?;
    c.kind(
        store.restore(&name).await,
        ErrorKind::Unsupported,
        "restore on a read-only store",
    )?;
    c.kind(
        store
            .set_stage(&name, &Stage::Pending, Some(&VersionId::new("1")))
            .await,
        ErrorKind::Unsupported,
        "set_stage on a read-only store",
    )?;
    Ok(())
}

/// Reads of a name that does not exist are `NotFound` (`get` with every selector and
/// `describe`), on any store.
pub async fn missing_is_not_found(
    store: &dyn SecretStore,
    _caps: Capabilities,
    prefix: &str,
) -> Outcome {
    let c = Check("missing_is_not_found");
    let name = c.name(&under(prefix, "conformance-no-such-secret"))?;
    for selector in [
        VersionSelector::Current,
        VersionSelector::Stage(Stage::Pending),
        VersionSelector::Version(bogus_version()),
    ] {
        c.kind(
            store.get(&name, &selector).await,
            ErrorKind::NotFound,
            &format!("get of a missing secret with {selector:?}"),
        )?;
    }
    c.kind(
        store.describe(&name).await,
        ErrorKind::NotFound,
        "describe of a missing secret",
    )?;
    Ok(())
}

/// `put` then `get` returns the same bytes, the version `put` reported, and `CURRENT`;
/// `describe` shows the description and merged tags.
pub async fn put_get_round_trip(
    store: &dyn SecretStore,
    caps: Capabilities,
    prefix: &str,
) -> Outcome {
    let c = Check("put_get_round_trip");
    let name = c.name(&under(prefix, "round-trip/database"))?;
    let value = br#"{"username":"app","password":"pw-1","host":"db","port":5432}"#;
    let mut tags = BTreeMap::new();
    tags.insert("team".to_owned(), "platform".to_owned());
    let options = PutOptions {
        description: Some("conformance round trip".to_owned()),
        tags,
        ..PutOptions::default()
    };
    let info = c.put(store, &name, value, &options).await?;
    c.ensure(info.stages.contains(&Stage::Current), || {
        format!(
            "put of a new secret returned stages {:?}, without CURRENT",
            info.stages
        )
    })?;
    let got = c.get(store, &name, &VersionSelector::Current).await?;
    c.same_value(&got, value, "get after put")?;
    c.ensure(got.version == info.version, || {
        format!(
            "get returned version {} but put created {}",
            got.version, info.version
        )
    })?;
    c.ensure(got.stages.contains(&Stage::Current), || {
        format!("get returned stages {:?}, without CURRENT", got.stages)
    })?;

    let meta = c.ok(store.describe(&name).await, "describe after put")?;
    c.ensure(meta.name == name, || {
        format!("describe returned name {}", meta.name)
    })?;
    c.ensure(
        meta.description.as_deref() == Some("conformance round trip"),
        || format!("describe returned description {:?}", meta.description),
    )?;
    c.ensure(
        meta.tags.get("team").map(String::as_str) == Some("platform"),
        || format!("describe returned tags {:?}", meta.tags),
    )?;
    c.ensure(meta.deleted.is_none(), || {
        "a live secret is described as deleted".into()
    })?;
    c.ensure(
        meta.version_with_stage(&Stage::Current) == Some(&info.version),
        || {
            format!(
                "describe puts CURRENT on {:?}, put created {}",
                meta.version_with_stage(&Stage::Current),
                info.version
            )
        },
    )?;

    // A second put merges tags rather than replacing them.
    let mut more = BTreeMap::new();
    more.insert("tier".to_owned(), "gold".to_owned());
    let second = PutOptions {
        tags: more,
        ..PutOptions::default()
    };
    c.put(store, &name, b"second value", &second).await?;
    let meta = c.ok(store.describe(&name).await, "describe after second put")?;
    c.ensure(
        meta.tags.contains_key("team") && meta.tags.contains_key("tier"),
        || {
            format!(
                "tags after a second put are {:?}; expected team and tier",
                meta.tags
            )
        },
    )?;
    let _ = caps;
    c.cleanup(store, &[name]).await;
    Ok(())
}

/// Every put creates a distinct version; `Current` reads the newest; `Version(id)` reads old
/// ones (when `versions`); an unknown version id is `NotFound`.
pub async fn versions_and_selectors(
    store: &dyn SecretStore,
    caps: Capabilities,
    prefix: &str,
) -> Outcome {
    let c = Check("versions_and_selectors");
    let name = c.name(&under(prefix, "versions/token"))?;
    let values: [&[u8]; 3] = [b"value-a", b"value-b", b"value-c"];
    let mut ids = Vec::new();
    for v in values {
        ids.push(
            c.put(store, &name, v, &PutOptions::default())
                .await?
                .version,
        );
    }
    let distinct: BTreeSet<_> = ids.iter().collect();
    c.ensure(distinct.len() == ids.len(), || {
        format!("three puts returned version ids {ids:?}, not all distinct")
    })?;
    let got = c.get(store, &name, &VersionSelector::Current).await?;
    c.same_value(&got, values[2], "get Current after three puts")?;
    c.ensure(got.version == ids[2], || {
        format!(
            "Current is {}, the last put created {}",
            got.version, ids[2]
        )
    })?;
    if caps.versions {
        for (id, v) in ids.iter().zip(values) {
            let got = c
                .get(store, &name, &VersionSelector::Version(id.clone()))
                .await?;
            c.same_value(&got, v, &format!("get Version({id})"))?;
            c.ensure(&got.version == id, || {
                format!("get Version({id}) returned version {}", got.version)
            })?;
        }
        c.kind(
            store
                .get(&name, &VersionSelector::Version(bogus_version()))
                .await,
            ErrorKind::NotFound,
            "get of an unknown version id",
        )?;
        let meta = c.ok(store.describe(&name).await, "describe")?;
        // Stores may omit unstaged versions from describe, but never the current one.
        c.ensure(meta.versions.iter().any(|v| v.version == ids[2]), || {
            format!(
                "describe lists versions {:?} without the current one",
                meta.versions
            )
        })?;
    }
    c.cleanup(store, &[name]).await;
    Ok(())
}

/// Stage rules: a default put moves CURRENT to the new version and the old current to
/// PREVIOUS; a PENDING put leaves CURRENT alone; `set_stage` moves a stage (CURRENT pushes the
/// old current to PREVIOUS), removes one with `None`, refuses to remove CURRENT, and supports
/// custom labels.
pub async fn stage_moves(store: &dyn SecretStore, caps: Capabilities, prefix: &str) -> Outcome {
    if !caps.stages {
        return Ok(());
    }
    let c = Check("stage_moves");
    let name = c.name(&under(prefix, "stages/password"))?;
    let v1 = c
        .put(store, &name, b"one", &PutOptions::default())
        .await?
        .version;
    let v2 = c
        .put(store, &name, b"two", &PutOptions::default())
        .await?
        .version;
    c.stage_at(
        store,
        &name,
        &Stage::Current,
        Some(&v2),
        "after the second put",
    )
    .await?;
    c.stage_at(
        store,
        &name,
        &Stage::Previous,
        Some(&v1),
        "after the second put",
    )
    .await?;

    let pending = PutOptions {
        stages: vec![Stage::Pending],
        ..PutOptions::default()
    };
    let v3 = c.put(store, &name, b"three", &pending).await?;
    c.ensure(
        v3.stages.contains(&Stage::Pending) && !v3.stages.contains(&Stage::Current),
        || format!("a PENDING put returned stages {:?}", v3.stages),
    )?;
    let v3 = v3.version;
    c.stage_at(
        store,
        &name,
        &Stage::Current,
        Some(&v2),
        "after a PENDING put",
    )
    .await?;
    c.stage_at(
        store,
        &name,
        &Stage::Pending,
        Some(&v3),
        "after a PENDING put",
    )
    .await?;
    let got = c.get(store, &name, &VersionSelector::Current).await?;
    c.same_value(&got, b"two", "Current after a PENDING put")?;

    // Promote PENDING: CURRENT -> v3, PREVIOUS -> v2, v1 loses PREVIOUS.
    c.ok(
        store.set_stage(&name, &Stage::Current, Some(&v3)).await,
        "set_stage(CURRENT, pending version)",
    )?;
    c.stage_at(store, &name, &Stage::Current, Some(&v3), "after promotion")
        .await?;
    c.stage_at(store, &name, &Stage::Previous, Some(&v2), "after promotion")
        .await?;
    let got = c.get(store, &name, &VersionSelector::Current).await?;
    c.same_value(&got, b"three", "Current after promotion")?;
    let meta = c.ok(store.describe(&name).await, "describe after promotion")?;
    let holders: Vec<_> = meta
        .versions
        .iter()
        .filter(|v| v.stages.contains(&Stage::Previous))
        .collect();
    c.ensure(holders.len() == 1, || {
        format!(
            "PREVIOUS is on {} versions after promotion, expected one",
            holders.len()
        )
    })?;

    // Remove PENDING.
    c.ok(
        store.set_stage(&name, &Stage::Pending, None).await,
        "set_stage(PENDING, None)",
    )?;
    c.stage_at(
        store,
        &name,
        &Stage::Pending,
        None,
        "after removing PENDING",
    )
    .await?;

    // CURRENT can be moved but not removed.
    c.ensure(
        store.set_stage(&name, &Stage::Current, None).await.is_err(),
        || "set_stage(CURRENT, None) succeeded; CURRENT can only be moved".into(),
    )?;
    c.stage_at(
        store,
        &name,
        &Stage::Current,
        Some(&v3),
        "after refusing to remove CURRENT",
    )
    .await?;

    // Custom labels.
    let blue = Stage::Custom("blue".to_owned());
    c.ok(
        store.set_stage(&name, &blue, Some(&v1)).await,
        "set_stage(custom label)",
    )?;
    let got = c
        .get(store, &name, &VersionSelector::Stage(blue.clone()))
        .await?;
    c.same_value(&got, b"one", "get Stage(custom)")?;
    c.ok(
        store.set_stage(&name, &blue, Some(&v2)).await,
        "move custom label",
    )?;
    c.stage_at(
        store,
        &name,
        &blue,
        Some(&v2),
        "after moving a custom label",
    )
    .await?;

    // Unknown version or secret.
    c.kind(
        store
            .set_stage(&name, &Stage::Pending, Some(&bogus_version()))
            .await,
        ErrorKind::NotFound,
        "set_stage to an unknown version",
    )?;
    let missing = c.name(&under(prefix, "stages/missing"))?;
    c.kind(
        store.set_stage(&missing, &Stage::Pending, Some(&v1)).await,
        ErrorKind::NotFound,
        "set_stage on a missing secret",
    )?;
    c.cleanup(store, &[name]).await;
    Ok(())
}

/// `expected_current`: `Some(None)` creates only a new secret; `Some(Some(current))` succeeds;
/// a stale version or `Some(None)` on an existing secret is `Conflict` and changes nothing.
pub async fn compare_and_set(store: &dyn SecretStore, caps: Capabilities, prefix: &str) -> Outcome {
    if !caps.compare_and_set {
        return Ok(());
    }
    let c = Check("compare_and_set");
    let name = c.name(&under(prefix, "cas/counter"))?;
    let create = PutOptions {
        expected_current: Some(None),
        ..PutOptions::default()
    };
    let v1 = c.put(store, &name, b"1", &create).await?.version;
    c.kind(
        c.put_raw(store, &name, b"again", &create).await,
        ErrorKind::Conflict,
        "create-only put (expected_current = Some(None)) on an existing secret",
    )?;
    let on_v1 = PutOptions {
        expected_current: Some(Some(v1.clone())),
        ..PutOptions::default()
    };
    let v2 = c.put(store, &name, b"2", &on_v1).await?.version;
    c.kind(
        c.put_raw(store, &name, b"stale", &on_v1).await,
        ErrorKind::Conflict,
        "put with a stale expected_current",
    )?;
    c.kind(
        c.put_raw(
            store,
            &name,
            b"bogus",
            &PutOptions {
                expected_current: Some(Some(bogus_version())),
                ..PutOptions::default()
            },
        )
        .await,
        ErrorKind::Conflict,
        "put with an expected_current that never existed",
    )?;
    let got = c.get(store, &name, &VersionSelector::Current).await?;
    c.same_value(&got, b"2", "Current after refused CAS puts")?;
    c.ensure(got.version == v2, || {
        format!("Current moved to {} after refused CAS puts", got.version)
    })?;
    c.cleanup(store, &[name]).await;
    Ok(())
}

/// A put retried with the same idempotency token and value returns the first version and
/// creates nothing new (even when CURRENT has moved since, e.g. a CAS put whose reply was
/// lost); the same token with another value is `Conflict`.
pub async fn idempotency_tokens(
    store: &dyn SecretStore,
    caps: Capabilities,
    prefix: &str,
) -> Outcome {
    let c = Check("idempotency_tokens");
    let name = c.name(&under(prefix, "idempotency/key"))?;
    let v0 = c
        .put(store, &name, b"base", &PutOptions::default())
        .await?
        .version;
    let token = "conformance-token-0123456789abcdef-0123456789ab".to_owned();
    let with_token = PutOptions {
        idempotency_token: Some(token.clone()),
        expected_current: caps.compare_and_set.then(|| Some(v0.clone())),
        ..PutOptions::default()
    };
    let first = c.put(store, &name, b"retried", &with_token).await?.version;
    let again = c.put(store, &name, b"retried", &with_token).await?.version;
    c.ensure(first == again, || {
        format!("a retried put with the same token created version {again} after {first}")
    })?;
    let got = c.get(store, &name, &VersionSelector::Current).await?;
    c.same_value(&got, b"retried", "Current after a retried put")?;
    c.ensure(got.version == first, || {
        format!(
            "Current is {} after a retried put, expected {first}",
            got.version
        )
    })?;
    if caps.versions {
        let meta = c.ok(store.describe(&name).await, "describe")?;
        c.ensure(meta.versions.len() <= 2, || {
            format!(
                "{} versions after one put and a retried put",
                meta.versions.len()
            )
        })?;
    }
    c.kind(
        c.put_raw(store, &name, b"different", &with_token).await,
        ErrorKind::Conflict,
        "the same idempotency token with a different value",
    )?;
    c.cleanup(store, &[name]).await;
    Ok(())
}

/// `list(prefix)` returns exactly the names under the prefix; with a small page size it pages
/// (each page at most `page_size`, tokens followed to the end) with no duplicates and nothing
/// missing.
pub async fn list_prefix_and_paging(
    store: &dyn SecretStore,
    caps: Capabilities,
    prefix: &str,
) -> Outcome {
    let c = Check("list_prefix_and_paging");
    let mut expected = BTreeSet::new();
    let mut created = Vec::new();
    for i in 0..7 {
        let name = c.name(&under(prefix, &format!("list/item-{i}")))?;
        c.put(store, &name, b"listed", &PutOptions::default())
            .await?;
        expected.insert(name.to_string());
        created.push(name);
    }
    // Shares the string prefix `.../list` but not `.../list/`.
    let outside = c.name(&under(prefix, "list-outside"))?;
    c.put(store, &outside, b"not listed", &PutOptions::default())
        .await?;
    created.push(outside);

    let list_prefix = under(prefix, "list/");
    let entries = c.list_all(store, caps, &list_prefix, false).await?;
    let got: BTreeSet<String> = entries.iter().map(|e| e.name.to_string()).collect();
    c.ensure(got == expected, || {
        format!("list({list_prefix:?}) returned {got:?}; expected {expected:?}")
    })?;
    c.ensure(entries.iter().all(|e| !e.deleted), || {
        "list returned a live secret flagged deleted".into()
    })?;
    c.cleanup(store, &created).await;
    Ok(())
}

/// Soft delete hides a secret from `get` and `list` (but not from `list(include_deleted)` or
/// `describe`, which shows the purge time) until `restore`; force delete removes it for good;
/// delete and restore of a missing secret are `NotFound`; restore of a live one is `Conflict`.
pub async fn delete_restore_force(
    store: &dyn SecretStore,
    caps: Capabilities,
    prefix: &str,
) -> Outcome {
    let c = Check("delete_restore_force");
    let name = c.name(&under(prefix, "delete/secret"))?;
    let list_prefix = under(prefix, "delete/");
    c.put(store, &name, b"keep me", &PutOptions::default())
        .await?;
    let force = DeleteOptions {
        force: true,
        ..DeleteOptions::default()
    };
    if caps.soft_delete {
        c.kind(
            store.restore(&name).await,
            ErrorKind::Conflict,
            "restore of a secret that is not deleted",
        )?;
        c.ok(
            store.delete(&name, &DeleteOptions::default()).await,
            "soft delete",
        )?;
        c.kind(
            store.get(&name, &VersionSelector::Current).await,
            ErrorKind::NotFound,
            "get of a soft-deleted secret",
        )?;
        let live = c.list_all(store, caps, &list_prefix, false).await?;
        c.ensure(live.iter().all(|e| e.name != name), || {
            "list without include_deleted returned a soft-deleted secret".into()
        })?;
        let all = c.list_all(store, caps, &list_prefix, true).await?;
        c.ensure(all.iter().any(|e| e.name == name && e.deleted), || {
            format!("list with include_deleted returned {all:?}; expected {name} flagged deleted")
        })?;
        let meta = c.ok(
            store.describe(&name).await,
            "describe of a soft-deleted secret",
        )?;
        c.ensure(meta.deleted.is_some(), || {
            "describe of a soft-deleted secret has no deletion time".into()
        })?;
        c.ok(store.restore(&name).await, "restore")?;
        let got = c.get(store, &name, &VersionSelector::Current).await?;
        c.same_value(&got, b"keep me", "get after restore")?;
        let meta = c.ok(store.describe(&name).await, "describe after restore")?;
        c.ensure(meta.deleted.is_none(), || {
            "describe after restore still shows a deletion time".into()
        })?;
    }
    c.ok(store.delete(&name, &force).await, "force delete")?;
    c.kind(
        store.get(&name, &VersionSelector::Current).await,
        ErrorKind::NotFound,
        "get after force delete",
    )?;
    c.kind(
        store.describe(&name).await,
        ErrorKind::NotFound,
        "describe after force delete",
    )?;
    if caps.soft_delete {
        c.kind(
            store.restore(&name).await,
            ErrorKind::NotFound,
            "restore after force delete",
        )?;
    }
    let all = c.list_all(store, caps, &list_prefix, true).await?;
    c.ensure(all.iter().all(|e| e.name != name), || {
        "list(include_deleted) still returns a force-deleted secret".into()
    })?;
    c.kind(
        store.delete(&name, &force).await,
        ErrorKind::NotFound,
        "force delete of a missing secret",
    )?;
    // The name is free again.
    c.put(store, &name, b"reborn", &PutOptions::default())
        .await?;
    let got = c.get(store, &name, &VersionSelector::Current).await?;
    c.same_value(
        &got,
        b"reborn",
        "get after re-creating a force-deleted name",
    )?;
    c.cleanup(store, &[name]).await;
    Ok(())
}

/// `NotFound` for a missing secret (every read), a missing version id and a stage that no
/// version carries.
pub async fn not_found_kinds(store: &dyn SecretStore, caps: Capabilities, prefix: &str) -> Outcome {
    missing_is_not_found(store, caps, prefix).await?;
    let c = Check("not_found_kinds");
    let name = c.name(&under(prefix, "not-found/exists"))?;
    c.put(store, &name, b"here", &PutOptions::default()).await?;
    c.kind(
        store
            .get(&name, &VersionSelector::Version(bogus_version()))
            .await,
        ErrorKind::NotFound,
        "get of an unknown version of an existing secret",
    )?;
    if caps.stages {
        c.kind(
            store
                .get(&name, &VersionSelector::Stage(Stage::Pending))
                .await,
            ErrorKind::NotFound,
            "get of a stage no version carries",
        )?;
    }
    let missing = c.name(&under(prefix, "not-found/missing"))?;
    c.kind(
        store.delete(&missing, &DeleteOptions::default()).await,
        ErrorKind::NotFound,
        "delete of a missing secret",
    )?;
    c.cleanup(store, &[name]).await;
    Ok(())
}

/// Values up to `min(max_value_len, 64 KiB)` round-trip byte for byte; binary values (NUL,
/// 0xFF, invalid UTF-8) round-trip when `binary`; a value over `max_value_len` is
/// `InvalidInput` and stores nothing.
pub async fn large_and_binary_values(
    store: &dyn SecretStore,
    caps: Capabilities,
    prefix: &str,
) -> Outcome {
    let c = Check("large_and_binary_values");
    let name = c.name(&under(prefix, "large/blob"))?;
    let len = caps.max_value_len.min(64 * 1024);
    let large: Vec<u8> = if caps.binary {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    } else {
        (0..len).map(|i| b'a' + (i % 26) as u8).collect()
    };
    c.put(store, &name, &large, &PutOptions::default()).await?;
    let got = c.get(store, &name, &VersionSelector::Current).await?;
    c.same_value(&got, &large, &format!("get of a {len}-byte value"))?;
    if caps.binary {
        let binary = [0u8, 0xff, 0xfe, 0x80, b'\n', 0, 0xc3, 0x28];
        c.put(store, &name, &binary, &PutOptions::default()).await?;
        let got = c.get(store, &name, &VersionSelector::Current).await?;
        c.same_value(&got, &binary, "get of a binary value")?;
    }
    // Only probe the limit when the probe is a reasonable allocation.
    if caps.max_value_len < 8 << 20 {
        let before = c
            .get(store, &name, &VersionSelector::Current)
            .await?
            .version;
        let too_big = vec![b'x'; caps.max_value_len + 1];
        c.kind(
            c.put_raw(store, &name, &too_big, &PutOptions::default())
                .await,
            ErrorKind::InvalidInput,
            &format!("put of {} bytes (max_value_len + 1)", too_big.len()),
        )?;
        let after = c
            .get(store, &name, &VersionSelector::Current)
            .await?
            .version;
        c.ensure(before == after, || {
            "a refused oversized put changed the current version".into()
        })?;
    }
    c.cleanup(store, &[name]).await;
    Ok(())
}

/// Concurrent writers with compare-and-set: when N writers race on the same expected version
/// exactly one wins and the rest get `Conflict`; when each writer retries until it has written
/// W versions, all N*W writes land as distinct versions (no lost update) and each is readable
/// with its own value.
pub async fn concurrent_writers(
    store: &dyn SecretStore,
    caps: Capabilities,
    prefix: &str,
) -> Outcome {
    if !caps.compare_and_set {
        return Ok(());
    }
    const WRITERS: usize = 8;
    const WRITES_EACH: usize = 3;
    let c = Check("concurrent_writers");
    let name = c.name(&under(prefix, "race/cas"))?;
    let v0 = c
        .put(store, &name, b"start", &PutOptions::default())
        .await?
        .version;

    // Round 1: everyone races on v0.
    let values: Vec<Vec<u8>> = (0..WRITERS)
        .map(|i| format!("race-{i}").into_bytes())
        .collect();
    let on_v0 = PutOptions {
        expected_current: Some(Some(v0.clone())),
        ..PutOptions::default()
    };
    let results = join_all(values.iter().map(|v| c.put_raw(store, &name, v, &on_v0))).await;
    let mut winner = None;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(info) if winner.is_none() => winner = Some((i, info.version)),
            Ok(info) => {
                return Err(c.fail(format!(
                    "two CAS puts on the same expected version both succeeded ({} and writer {i}'s {})",
                    winner.map(|w| w.1).unwrap_or_else(|| VersionId::new("?")),
                    info.version
                )));
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => return Err(c.fail(format!("a losing CAS put failed with {e}, not Conflict"))),
        }
    }
    let (wi, wv) =
        winner.ok_or_else(|| c.fail("no CAS put on the current version succeeded".into()))?;
    let got = c.get(store, &name, &VersionSelector::Current).await?;
    c.same_value(&got, &values[wi], "Current after the race")?;
    c.ensure(got.version == wv, || {
        format!(
            "Current is {} after the race, the winner created {wv}",
            got.version
        )
    })?;

    // Round 2: everyone retries until it has written WRITES_EACH versions.
    let name = &name;
    let outcomes = join_all((0..WRITERS).map(|w| async move {
        let mut written = Vec::new();
        let mut attempts = 0;
        while written.len() < WRITES_EACH {
            attempts += 1;
            if attempts > 200 {
                return Err(c.fail(format!("writer {w} made no progress after 200 attempts")));
            }
            let current = c.get(store, name, &VersionSelector::Current).await?.version;
            let value = format!("writer-{w}-write-{}", written.len()).into_bytes();
            let options = PutOptions {
                expected_current: Some(Some(current)),
                ..PutOptions::default()
            };
            match c.put_raw(store, name, &value, &options).await {
                Ok(info) => written.push((info.version, value)),
                Err(e) if e.kind() == ErrorKind::Conflict => tokio::task::yield_now().await,
                Err(e) => return Err(c.fail(format!("writer {w}: CAS put failed with {e}"))),
            }
        }
        Ok(written)
    }))
    .await;
    let mut all = Vec::new();
    for o in outcomes {
        all.extend(o?);
    }
    let ids: BTreeSet<_> = all.iter().map(|(id, _)| id.clone()).collect();
    c.ensure(ids.len() == WRITERS * WRITES_EACH, || {
        format!(
            "{} successful CAS puts produced only {} distinct versions (lost update)",
            WRITERS * WRITES_EACH,
            ids.len()
        )
    })?;
    if caps.versions {
        for (id, value) in &all {
            let got = c
                .get(store, name, &VersionSelector::Version(id.clone()))
                .await?;
            c.same_value(
                &got,
                value,
                &format!("get Version({id}) written by a racing writer"),
            )?;
        }
    }
    let current = c.get(store, name, &VersionSelector::Current).await?;
    c.ensure(ids.contains(&current.version), || {
        format!(
            "Current {} is none of the racing writers' versions",
            current.version
        )
    })?;
    c.cleanup(store, std::slice::from_ref(name)).await;
    Ok(())
}

/// `rest` under the run's prefix; the prefix may be empty or end in `/` (as list prefixes do).
fn under(prefix: &str, rest: &str) -> String {
    match prefix.trim_end_matches('/') {
        "" => rest.to_owned(),
        p => format!("{p}/{rest}"),
    }
}

/// A version id no store hands out (shaped like a UUID so stores that validate the id format
/// still answer `NotFound` rather than `InvalidInput`).
fn bogus_version() -> VersionId {
    VersionId::new("00000000-0000-4000-8000-00000000dead")
}

/// Context for one check: its name goes into every failure.
#[derive(Clone, Copy)]
struct Check(&'static str);

impl Check {
    fn fail(self, message: String) -> Failure {
        Failure {
            check: self.0,
            message,
        }
    }

    fn ensure(self, cond: bool, message: impl FnOnce() -> String) -> Outcome {
        if cond {
            Ok(())
        } else {
            Err(self.fail(message()))
        }
    }

    fn ok<T>(self, r: sealbox::Result<T>, what: &str) -> Result<T, Failure> {
        r.map_err(|e| self.fail(format!("{what}: unexpected error {e}")))
    }

    fn kind<T>(self, r: sealbox::Result<T>, expected: ErrorKind, what: &str) -> Outcome {
        match r {
            Ok(_) => Err(self.fail(format!("{what}: succeeded; expected a {expected} error"))),
            Err(e) if e.kind() == expected => Ok(()),
            Err(e) => Err(self.fail(format!("{what}: got {e}; expected a {expected} error"))),
        }
    }

    fn name(self, raw: &str) -> Result<SecretName, Failure> {
        SecretName::new(raw).map_err(|e| self.fail(format!("bad test name {raw:?}: {e}")))
    }

    fn secret(self, bytes: &[u8]) -> Result<Secret, Failure> {
        secret(bytes).map_err(|e| self.fail(format!("allocating a test secret: {e}")))
    }

    async fn put_raw(
        self,
        store: &dyn SecretStore,
        name: &SecretName,
        value: &[u8],
        options: &PutOptions,
    ) -> sealbox::Result<VersionInfo> {
        let value = secret(value)?;
        store.put(name, &value, options).await
    }

    async fn put(
        self,
        store: &dyn SecretStore,
        name: &SecretName,
        value: &[u8],
        options: &PutOptions,
    ) -> Result<VersionInfo, Failure> {
        let r = self.put_raw(store, name, value, options).await;
        self.ok(r, &format!("put {name}"))
    }

    async fn get(
        self,
        store: &dyn SecretStore,
        name: &SecretName,
        selector: &VersionSelector,
    ) -> Result<SecretVersion, Failure> {
        self.ok(
            store.get(name, selector).await,
            &format!("get {name} {selector:?}"),
        )
    }

    fn same_value(self, got: &SecretVersion, expected: &[u8], what: &str) -> Outcome {
        let bytes = got.value.expose_secret();
        self.ensure(bytes == expected, || {
            format!(
                "{what}: value differs from what was written ({} bytes read, {} written)",
                bytes.len(),
                expected.len()
            )
        })
    }

    /// Checks that `stage` is on `expected` (or on no version) both through `describe` and
    /// through `get(Stage)`.
    async fn stage_at(
        self,
        store: &dyn SecretStore,
        name: &SecretName,
        stage: &Stage,
        expected: Option<&VersionId>,
        when: &str,
    ) -> Outcome {
        let meta = self.ok(store.describe(name).await, &format!("describe {when}"))?;
        let holders: Vec<&VersionId> = meta
            .versions
            .iter()
            .filter(|v| v.stages.contains(stage))
            .map(|v| &v.version)
            .collect();
        let want: Vec<&VersionId> = expected.into_iter().collect();
        self.ensure(holders == want, || {
            format!("{when}: describe puts {stage} on {holders:?}; expected {want:?}")
        })?;
        let got = store
            .get(name, &VersionSelector::Stage(stage.clone()))
            .await;
        match (expected, got) {
            (Some(id), Ok(v)) => self.ensure(&v.version == id, || {
                format!(
                    "{when}: get Stage({stage}) returned {}; expected {id}",
                    v.version
                )
            }),
            (None, Err(e)) if e.kind() == ErrorKind::NotFound => Ok(()),
            (Some(id), Err(e)) => Err(self.fail(format!(
                "{when}: get Stage({stage}) failed with {e}; expected version {id}"
            ))),
            (None, Ok(v)) => Err(self.fail(format!(
                "{when}: get Stage({stage}) returned {}; expected NotFound",
                v.version
            ))),
            (None, Err(e)) => Err(self.fail(format!(
                "{when}: get Stage({stage}) failed with {e}; expected NotFound"
            ))),
        }
    }

    /// Follows page tokens to the end with a small page size, checking page sizes and
    /// duplicates.
    async fn list_all(
        self,
        store: &dyn SecretStore,
        caps: Capabilities,
        prefix: &str,
        include_deleted: bool,
    ) -> Result<Vec<ListEntry>, Failure> {
        const PAGE: usize = 2;
        let mut out: Vec<ListEntry> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut token = None;
        for page_no in 0..10_000 {
            let options = ListOptions {
                prefix: prefix.to_owned(),
                page_size: Some(PAGE),
                page_token: token.take(),
                include_deleted,
            };
            let page = self.ok(
                store.list(&options).await,
                &format!("list({prefix:?}) page {page_no}"),
            )?;
            if caps.list_paging {
                self.ensure(page.entries.len() <= PAGE, || {
                    format!(
                        "list page {page_no} has {} entries with page_size {PAGE}",
                        page.entries.len()
                    )
                })?;
            }
            for e in page.entries {
                self.ensure(seen.insert(e.name.clone()), || {
                    format!("list({prefix:?}) returned {} twice", e.name)
                })?;
                out.push(e);
            }
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
        Err(self.fail(format!("list({prefix:?}) never returned a last page")))
    }

    /// Best effort: force-deletes what a check created so shared servers stay tidy.
    async fn cleanup(self, store: &dyn SecretStore, names: &[SecretName]) {
        let force = DeleteOptions {
            force: true,
            ..DeleteOptions::default()
        };
        for name in names {
            let _ = store.delete(name, &force).await;
        }
    }
}

fn secret(bytes: &[u8]) -> Result<Secret, Error> {
    Secret::init_with(bytes.len(), |dst| {
        dst.copy_from_slice(bytes);
        Ok(())
    })
}
