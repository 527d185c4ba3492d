//! The file store: the read-only conformance suite over a directory (CSI-mount layout) and a
//! single file, change detection, permission checks and symlink containment.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use sealbox::store::file::{FileStore, PermissionCheck};
use sealbox::store::{SecretName, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};

fn write(path: &Path, value: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, value).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn name(s: &str) -> SecretName {
    s.parse().unwrap()
}

/// Builds the layout the Secrets Store CSI driver / kubelet atomic writer produces: real files
/// in a timestamped hidden directory, `..data` pointing at it, and top-level symlinks.
fn csi_mount(root: &Path) {
    let ts = root.join("..2026_11_23_11_00_00.123");
    write(&ts.join("api-token"), b"tok-abc", 0o600);
    write(&ts.join("binary-key"), &[0, 255, 1, 254], 0o600);
    symlink("..2026_11_23_11_00_00.123", root.join("..data")).unwrap();
    symlink("..data/api-token", root.join("api-token")).unwrap();
    symlink("..data/binary-key", root.join("binary-key")).unwrap();
    write(
        &root.join("predis/prod/database/password"),
        br#"{"username":"predis","password":"pw"}"#,
        0o600,
    );
}

#[tokio::test]
async fn a_csi_style_directory_passes_the_read_only_suite() {
    let dir = tempfile::tempdir().unwrap();
    csi_mount(dir.path());
    let store = FileStore::dir(dir.path())
        .unwrap()
        .permissions(PermissionCheck::Refuse);
    let fixtures: [(&str, &[u8]); 3] = [
        ("api-token", b"tok-abc"),
        ("binary-key", &[0, 255, 1, 254]),
        (
            "predis/prod/database/password",
            br#"{"username":"predis","password":"pw"}"#,
        ),
    ];
    for prefix in ["", "predis/", "api"] {
        sealbox_conformance::run_read_only(&store, store.capabilities(), prefix, &fixtures)
            .await
            .unwrap();
    }
    // Kubernetes' hidden machinery is neither listed nor readable.
    let err = store
        .get(&name("..data/api-token"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn a_single_file_passes_the_read_only_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db_password");
    write(&path, b"hunter2-but-longer", 0o600);
    let store = FileStore::file("predis/prod/database/password", &path).unwrap();
    let fixtures: [(&str, &[u8]); 1] = [("predis/prod/database/password", b"hunter2-but-longer")];
    sealbox_conformance::run_read_only(&store, store.capabilities(), "", &fixtures)
        .await
        .unwrap();
    let err = store
        .get(&name("other"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn a_replaced_file_is_re_read_and_gets_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("token"), b"first", 0o600);
    let store = FileStore::dir(dir.path()).unwrap();
    let n = name("token");
    let v1 = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(v1.value.expose_secret(), b"first");

    // Atomic replacement, as rotation tooling and the kubelet do it.
    write(&dir.path().join("token.tmp"), b"second", 0o600);
    fs::rename(dir.path().join("token.tmp"), dir.path().join("token")).unwrap();
    let v2 = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(v2.value.expose_secret(), b"second");
    assert_ne!(v1.version, v2.version);
    let err = store
        .get(&n, &VersionSelector::Version(v1.version.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // In-place rewrite with another length.
    fs::write(dir.path().join("token"), b"third, longer").unwrap();
    let v3 = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(v3.value.expose_secret(), b"third, longer");

    // Unchanged file: same version, served from the cache.
    let again = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(again.version, v3.version);

    // Removed file: gone.
    fs::remove_file(dir.path().join("token")).unwrap();
    let err = store.get(&n, &VersionSelector::Current).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn world_readable_files_are_refused_on_request_and_read_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("open"), b"value", 0o644);
    let n = name("open");
    let strict = FileStore::dir(dir.path())
        .unwrap()
        .permissions(PermissionCheck::Refuse);
    let err = strict.get(&n, &VersionSelector::Current).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.message().contains("644"), "{err}");
    for check in [PermissionCheck::Warn, PermissionCheck::Allow] {
        let store = FileStore::dir(dir.path()).unwrap().permissions(check);
        let got = store.get(&n, &VersionSelector::Current).await.unwrap();
        assert_eq!(got.value.expose_secret(), b"value");
    }
}

#[tokio::test]
async fn symlinks_out_of_the_root_are_neither_listed_nor_read() {
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("shadow"), b"outside", 0o600);
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("inside"), b"inside", 0o600);
    symlink(outside.path().join("shadow"), dir.path().join("escape")).unwrap();
    let store = FileStore::dir(dir.path()).unwrap();
    let err = store
        .get(&name("escape"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied);
    let page = store.list(&Default::default()).await.unwrap();
    let names: Vec<_> = page.entries.iter().map(|e| e.name.to_string()).collect();
    assert_eq!(names, ["inside"]);
}

#[tokio::test]
async fn oversized_files_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("big"), &[b'x'; 100], 0o600);
    let store = FileStore::dir(dir.path()).unwrap().max_value_len(64);
    let err = store
        .get(&name("big"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn a_missing_root_is_a_config_error() {
    let err = FileStore::dir("/nonexistent/sealbox/root").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

/// One generation's value: its number, repeated, so a torn or mixed read cannot pass for
/// a value that was written.
fn generation_value(n: u64) -> Vec<u8> {
    format!("generation-{n:010};").repeat(40).into_bytes()
}

/// One rotation exactly as the kubelet's atomic writer does it: the files go into a new
/// timestamped directory, `..data_tmp` is linked to it and renamed over `..data`, then the
/// old directory is removed. Returns the new directory's name.
fn atomic_writer_swap(root: &Path, n: u64, old: Option<&str>) -> String {
    let ts = format!("..2026_12_07_04_00_00.{n:010}");
    write(
        &root.join(&ts).join("db-password"),
        &generation_value(n),
        0o600,
    );
    symlink(&ts, root.join("..data_tmp")).unwrap();
    fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    if let Some(old) = old {
        fs::remove_dir_all(root.join(old)).unwrap();
    }
    ts
}

/// The Secrets Store CSI driver rotates a mount with the kubelet's atomic writer: the name's
/// resolution can point at a directory that the swap removes before the open. Readers racing
/// a swap every half millisecond must still see every read succeed with a whole value.
#[test]
fn reads_racing_a_csi_data_swap_never_fail_nor_tear() {
    race_the_atomic_writer(|root| FileStore::dir(root).unwrap(), "db-password");
}

/// The same for one file of such a mount given as a single-file store (`file: .../password`).
#[test]
fn a_single_file_store_over_a_csi_mount_survives_the_swap_too() {
    race_the_atomic_writer(
        |root| FileStore::file("predis/prod/db", root.join("db-password")).unwrap(),
        "predis/prod/db",
    );
}

/// Two readers read `name` from the store `open` makes over a kubelet-style mount while a
/// writer rotates it, for three seconds and at least 300 swaps and 1,000 reads each (a loaded
/// machine gets up to 30 s for that): no read may fail, and every value must be one written.
fn race_the_atomic_writer(open: impl Fn(&Path) -> FileStore, name_read: &'static str) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let mut current = atomic_writer_swap(&root, 0, None);
    // The user-visible name is created once and never touched again.
    symlink("..data/db-password", root.join("db-password")).unwrap();
    let store = Arc::new(open(&root).permissions(PermissionCheck::Refuse));
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let reads_done: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);

    let writer = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                current = atomic_writer_swap(&root, n, Some(&current));
                swaps.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let (store, stop, reads_done) = (store.clone(), stop.clone(), reads_done.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let n = name(name_read);
                let (mut reads, mut errors, mut torn) = (0u64, Vec::new(), 0u64);
                while !stop.load(Ordering::Relaxed) {
                    reads += 1;
                    reads_done[i].store(reads, Ordering::Relaxed);
                    match rt.block_on(store.get(&n, &VersionSelector::Current)) {
                        Ok(v) => {
                            let bytes = v.value.expose_secret();
                            let generation = std::str::from_utf8(bytes)
                                .ok()
                                .and_then(|s| s.strip_prefix("generation-"))
                                .and_then(|s| s.get(..10))
                                .and_then(|s| s.parse::<u64>().ok());
                            if generation.is_none_or(|g| bytes != generation_value(g)) {
                                torn += 1;
                            }
                        }
                        Err(e) => errors.push(format!("{}: {}", e.kind(), e.message())),
                    }
                }
                (reads, errors, torn)
            })
        })
        .collect();

    let start = Instant::now();
    let enough = || {
        swaps.load(Ordering::Relaxed) >= 300
            && reads_done.iter().all(|r| r.load(Ordering::Relaxed) >= 1000)
    };
    while start.elapsed() < Duration::from_secs(3)
        || (!enough() && start.elapsed() < Duration::from_secs(30))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let swaps = swaps.load(Ordering::Relaxed);
    assert!(swaps >= 300, "the writer swapped ..data only {swaps} times");
    for reader in readers {
        let (reads, errors, torn) = reader.join().unwrap();
        assert!(reads >= 1000, "a reader read only {reads} times");
        assert!(
            errors.is_empty(),
            "{} of {reads} reads failed during {swaps} swaps, first: {}",
            errors.len(),
            errors[0]
        );
        assert_eq!(
            torn, 0,
            "{torn} of {reads} reads returned a value never written"
        );
        eprintln!("{reads} reads, {swaps} swaps: no error, no torn value");
    }
}

#[tokio::test]
async fn a_dangling_symlink_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    csi_mount(dir.path());
    symlink("..data/removed", dir.path().join("removed")).unwrap();
    let store = FileStore::dir(dir.path()).unwrap();
    let err = store
        .get(&name("removed"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = store.describe(&name("removed")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}
