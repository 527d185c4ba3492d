//! The rotation engine under faults, as a specification:
//!
//! * a rotation promotes its `PENDING` version to `CURRENT` and the old one to `PREVIOUS`,
//!   each step an audit event;
//! * an error from the rotator or from the store at any step leaves `CURRENT` as it was
//!   (only a failure after the promotion, while removing `PENDING`, leaves the new version
//!   current) and records the attempt; the next run resumes with the same `PENDING` version
//!   and finishes; none leaves a `PENDING` behind;
//! * a rotating process killed with SIGKILL before each store call of the rotation resumes
//!   from another process once its lease expires;
//! * `rollback` undoes a finished rotation and abandons an unfinished one;
//! * three processes rotating one due secret at once rotate it exactly once.
//!
//! Runs over the memory store and the local vault. The child processes are this test binary
//! re-executed with `SEALBOX_ROTATION_CHILD` set.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sealbox::audit::AuditEvent;
use sealbox::keys::{KeyId, KeyProvider, LocalKeyFile};
use sealbox::rotation::{
    Generated, Generator, NewValue, RolledBack, RotationEngine, Rotator, Step, StepContext,
    record_name,
};
use sealbox::store::local::LocalVault;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{
    Capabilities, DeleteOptions, ListOptions, ListPage, PutOptions, SecretMetadata, SecretName,
    SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};

const CHILD_ENV: &str = "SEALBOX_ROTATION_CHILD";

fn name() -> SecretName {
    "predis/prod/api/key".parse().unwrap()
}

fn secret(text: &str) -> Secret {
    Secret::init_with(text.len(), |d| {
        d.copy_from_slice(text.as_bytes());
        Ok(())
    })
    .unwrap()
}

fn key(dir: &Path) -> Arc<dyn KeyProvider> {
    Arc::new(
        LocalKeyFile::open_or_create(KeyId::new("local").unwrap(), dir.join("master.key")).unwrap(),
    )
}

async fn vault(dir: &Path) -> Arc<dyn SecretStore> {
    Arc::new(LocalVault::open_or_create(dir, key(dir)).await.unwrap())
}

fn hex() -> NewValue {
    NewValue::Generate(Generator::Hex { bytes: 16 })
}

async fn current_value(store: &dyn SecretStore) -> (VersionId, Vec<u8>) {
    let v = store.get(&name(), &VersionSelector::Current).await.unwrap();
    (v.version, v.value.expose_secret().to_vec())
}

async fn staged(store: &dyn SecretStore, stage: Stage) -> Option<VersionId> {
    store
        .describe(&name())
        .await
        .unwrap()
        .version_with_stage(&stage)
        .cloned()
}

async fn seed(store: &dyn SecretStore) -> VersionId {
    store
        .put(&name(), &secret("initial-key"), &PutOptions::default())
        .await
        .unwrap()
        .version
}

/// The two stores every in-process test runs over.
async fn stores(dir: &Path) -> Vec<(&'static str, Arc<dyn SecretStore>)> {
    vec![
        (
            "memory",
            Arc::new(MemoryStore::new()) as Arc<dyn SecretStore>,
        ),
        ("local", vault(dir).await),
    ]
}

/// A rotator that fails the step it is told to, and counts the calls it gets.
#[derive(Debug, Default)]
struct Flaky {
    fail: Mutex<Option<Step>>,
    sets: AtomicUsize,
    tests: AtomicUsize,
    restored: Mutex<Vec<Vec<u8>>>,
}

impl Flaky {
    fn failing(step: Step) -> Flaky {
        Flaky {
            fail: Mutex::new(Some(step)),
            ..Flaky::default()
        }
    }
    fn check(&self, step: Step) -> Result<()> {
        if *self.fail.lock().unwrap() == Some(step) {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("target refused at {}", step.as_str()),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Rotator for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    async fn set(&self, _s: &StepContext<'_>, _v: &Secret) -> Result<()> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        self.check(Step::Set)
    }
    async fn test(&self, _s: &StepContext<'_>, _v: &Secret) -> Result<()> {
        self.tests.fetch_add(1, Ordering::SeqCst);
        self.check(Step::Test)
    }
    async fn restore(&self, _s: &StepContext<'_>, v: &Secret) -> Result<()> {
        self.check(Step::Rollback)?;
        self.restored
            .lock()
            .unwrap()
            .push(v.expose_secret().to_vec());
        Ok(())
    }
}

/// A store that fails its `n`-th call (counting every call, the rotation record's too) with
/// `Unavailable`, and counts calls.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn SecretStore>,
    calls: AtomicUsize,
    fail_at: usize,
}

impl Faulty {
    fn tick(&self, op: &str) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n == self.fail_at {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("injected store failure at call {n} ({op})"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl SecretStore for Faulty {
    fn kind(&self) -> &'static str {
        "faulty"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, n: &SecretName, s: &VersionSelector) -> Result<SecretVersion> {
        self.tick("get")?;
        self.inner.get(n, s).await
    }
    async fn put(&self, n: &SecretName, v: &Secret, o: &PutOptions) -> Result<VersionInfo> {
        self.tick("put")?;
        self.inner.put(n, v, o).await
    }
    async fn describe(&self, n: &SecretName) -> Result<SecretMetadata> {
        self.tick("describe")?;
        self.inner.describe(n).await
    }
    async fn list(&self, o: &ListOptions) -> Result<ListPage> {
        self.inner.list(o).await
    }
    async fn delete(&self, n: &SecretName, o: &DeleteOptions) -> Result<()> {
        self.inner.delete(n, o).await
    }
    async fn restore(&self, n: &SecretName) -> Result<()> {
        self.inner.restore(n).await
    }
    async fn set_stage(&self, n: &SecretName, s: &Stage, v: Option<&VersionId>) -> Result<()> {
        self.tick("set_stage")?;
        self.inner.set_stage(n, s, v).await
    }
}

#[tokio::test]
async fn a_rotation_promotes_pending_and_audits_every_step() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, store) in stores(dir.path()).await {
        let old = seed(store.as_ref()).await;
        let events = Arc::new(Mutex::new(Vec::<AuditEvent>::new()));
        let sink = events.clone();
        let engine = RotationEngine::new(store.clone(), kind)
            .on_event(move |e| sink.lock().unwrap().push(e));
        let done = engine.rotate(&name(), &Generated, hex()).await.unwrap();
        assert_eq!(done.previous.as_ref(), Some(&old), "{kind}");
        assert!(!done.resumed);
        let (cur, value) = current_value(store.as_ref()).await;
        assert_eq!(cur, done.current);
        assert_eq!(value.len(), 32, "{kind}: a 16-byte hex token");
        assert!(value.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(staged(store.as_ref(), Stage::Previous).await, Some(old));
        assert_eq!(staged(store.as_ref(), Stage::Pending).await, None);
        let names: Vec<_> = events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.event_name())
            .collect();
        assert_eq!(
            names,
            [
                "rotation_started",
                "rotation_set",
                "rotation_tested",
                "rotation_finished"
            ],
            "{kind}"
        );
        for e in events.lock().unwrap().iter() {
            assert_eq!(&*e.resource.name, name().as_str());
            assert!(e.success);
        }
        let status = engine.status(&name()).await.unwrap();
        assert!(status.last_rotated.is_some() && status.lease.is_none());
        assert_eq!((status.pending, status.failures), (None, 0));
    }
}

#[tokio::test]
async fn a_rotator_failure_leaves_current_and_the_next_run_resumes_the_same_pending() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, store) in stores(dir.path()).await {
        seed(store.as_ref()).await;
        for failing in [Step::Set, Step::Test] {
            let before = current_value(store.as_ref()).await;
            let events = Arc::new(Mutex::new(Vec::<AuditEvent>::new()));
            let sink = events.clone();
            let engine = RotationEngine::new(store.clone(), kind)
                .on_event(move |e| sink.lock().unwrap().push(e));
            let flaky = Flaky::failing(failing);
            let err = engine.rotate(&name(), &flaky, hex()).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unavailable);
            assert!(
                err.message()
                    .contains(&format!("failed at step {}", failing.as_str())),
                "{err}"
            );
            assert_eq!(current_value(store.as_ref()).await, before, "{kind}");
            let pending = staged(store.as_ref(), Stage::Pending).await.unwrap();
            let failed = events.lock().unwrap().last().cloned().unwrap();
            assert_eq!(failed.event_name(), "rotation_failed");
            assert!(!failed.success);
            assert_eq!(failed.level, sealbox::audit::Level::Alert);
            let status = engine.status(&name()).await.unwrap();
            assert_eq!(status.failures, 1);
            assert_eq!(status.last_failure.unwrap().step, failing);
            assert_eq!(status.pending.as_ref().map(|p| &p.0), Some(&pending));

            // Resumed: the same pending version, the steps already done not repeated.
            let fixed = Flaky::default();
            let done = engine
                .rotate(&name(), &fixed, NewValue::Given(secret("unused")))
                .await
                .unwrap();
            assert!(done.resumed, "{kind}");
            assert_eq!(done.current, pending);
            assert_eq!(done.previous.as_ref(), Some(&before.0));
            let sets = if failing == Step::Test { 0 } else { 1 };
            assert_eq!(
                fixed.sets.load(Ordering::SeqCst),
                sets,
                "{kind} {failing:?}"
            );
            assert_eq!(fixed.tests.load(Ordering::SeqCst), 1);
            assert_eq!(staged(store.as_ref(), Stage::Pending).await, None);
            assert_eq!(engine.status(&name()).await.unwrap().failures, 0);
        }
    }
}

#[tokio::test]
async fn a_store_failure_at_every_call_of_a_rotation_leaves_current_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, inner) in stores(dir.path()).await {
        seed(inner.as_ref()).await;
        let mut failed_calls = 0;
        for fail_at in 0.. {
            let before = current_value(inner.as_ref()).await;
            let faulty = Arc::new(Faulty {
                inner: inner.clone(),
                calls: AtomicUsize::new(0),
                fail_at,
            });
            // A short lease: a failed release leaves it held until it lapses.
            let engine =
                RotationEngine::new(faulty.clone(), kind).lease_ttl(Duration::from_millis(30));
            let result = engine.rotate(&name(), &Generated, hex()).await;
            if faulty.calls.load(Ordering::SeqCst) <= fail_at {
                result.unwrap();
                break; // every call of a rotation has had its failure
            }
            failed_calls += 1;
            let after = current_value(inner.as_ref()).await;
            let pending = staged(inner.as_ref(), Stage::Pending).await;
            match &result {
                Err(e) => {
                    assert_eq!(after, before, "{kind} call {fail_at}: {e}");
                    // Past the lease, the error names its step and says CURRENT is as it was.
                    if e.message().contains("failed at step") {
                        assert!(e.message().contains("CURRENT is unchanged"), "{e}");
                    }
                }
                // A failure after the promotion (the commit point) is the clean-up's: the
                // rotation happened, PENDING may still be on the new current version.
                Ok(done) => {
                    assert_eq!(after.0, done.current, "{kind} call {fail_at}");
                    assert!(pending.is_none() || pending.as_ref() == Some(&after.0));
                }
            }
            // The next run (no faults) resumes and finishes; nothing pending is left.
            tokio::time::sleep(Duration::from_millis(40)).await;
            let clean = RotationEngine::new(inner.clone(), kind);
            let done = clean.rotate(&name(), &Generated, hex()).await.unwrap();
            if let Some(p) = pending {
                assert_eq!(done.current, p, "{kind}: resume kept the pending version");
                assert!(done.resumed);
            }
            assert_eq!(staged(inner.as_ref(), Stage::Pending).await, None);
            assert_ne!(current_value(inner.as_ref()).await.1, before.1);
            let status = clean.status(&name()).await.unwrap();
            assert!(status.pending.is_none() && status.lease.is_none(), "{kind}");
        }
        assert!(failed_calls >= 10, "{kind}: only {failed_calls} calls");
        println!("{kind}: a failure injected at each of {failed_calls} store calls");
    }
}

#[tokio::test]
async fn rollback_undoes_a_finished_rotation_and_abandons_an_unfinished_one() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, store) in stores(dir.path()).await {
        let old = seed(store.as_ref()).await;
        let engine = RotationEngine::new(store.clone(), kind);
        let rotator = Flaky::default();
        let done = engine.rotate(&name(), &rotator, hex()).await.unwrap();
        let back = engine.rollback(&name(), &rotator).await.unwrap();
        assert_eq!(
            back,
            RolledBack::Finished {
                restored: old.clone(),
                undone: done.current.clone()
            }
        );
        assert_eq!(current_value(store.as_ref()).await.1, b"initial-key");
        assert_eq!(
            rotator.restored.lock().unwrap().as_slice(),
            [b"initial-key".to_vec()]
        );

        // Unfinished: the target gets CURRENT back, PENDING goes.
        let failing = Flaky::failing(Step::Test);
        engine.rotate(&name(), &failing, hex()).await.unwrap_err();
        let pending = staged(store.as_ref(), Stage::Pending).await.unwrap();
        let back = engine.rollback(&name(), &rotator).await.unwrap();
        assert_eq!(back, RolledBack::Abandoned { pending });
        assert_eq!(staged(store.as_ref(), Stage::Pending).await, None);
        assert_eq!(current_value(store.as_ref()).await.0, old, "{kind}");
        assert_eq!(rotator.restored.lock().unwrap().len(), 2);

        // A failing rollback changes nothing.
        let done = engine.rotate(&name(), &rotator, hex()).await.unwrap();
        let refuse = Flaky::failing(Step::Rollback);
        engine.rollback(&name(), &refuse).await.unwrap_err();
        assert_eq!(current_value(store.as_ref()).await.0, done.current);
    }
}

#[tokio::test]
async fn a_held_lease_refuses_a_second_rotation_until_it_expires() {
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    seed(store.as_ref()).await;
    let slow = RotationEngine::new(store.clone(), "memory").lease_ttl(Duration::from_millis(400));
    // The first engine stops mid-rotation (its rotator fails at test) but a crashed holder is
    // modelled by writing its lease and never releasing it: the record says it holds it.
    let rec = record_name(&name()).unwrap();
    let until = std::time::SystemTime::now() + Duration::from_millis(400);
    let ms = until
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let json = format!(r#"{{"lease":{{"holder":"1@elsewhere/x","expires_ms":{ms}}}}}"#);
    store
        .put(&rec, &secret(&json), &PutOptions::default())
        .await
        .unwrap();
    let err = slow.rotate(&name(), &Generated, hex()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.message().contains("1@elsewhere/x"), "{err}");
    assert_eq!(staged(store.as_ref(), Stage::Pending).await, None);
    tokio::time::sleep(Duration::from_millis(450)).await;
    slow.rotate(&name(), &Generated, hex()).await.unwrap();
}

/// The child: rotates `name()` in the vault at `SEALBOX_ROTATION_CHILD`.
/// `SEALBOX_ROTATION_PAUSE=n` stops it before its `n`-th store call (it prints `paused`
/// and waits to be killed); `SEALBOX_ROTATION_DUE=1` runs `rotate_if_due` (1 hour) and prints
/// `rotated` or `skipped`.
#[test]
fn rotation_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = Path::new(&dir);
        let store = vault(dir).await;
        if std::env::var("SEALBOX_ROTATION_DUE").is_ok() {
            let start: u64 = std::env::var("SEALBOX_ROTATION_START")
                .unwrap()
                .parse()
                .unwrap();
            while now_ms() < start {
                std::thread::sleep(Duration::from_millis(1));
            }
            let engine = RotationEngine::new(store, "local");
            let out = engine
                .rotate_if_due(&name(), &Generated, hex(), Duration::from_secs(3600))
                .await
                .unwrap();
            println!("{}", if out.is_some() { "rotated" } else { "skipped" });
            return;
        }
        let pause: usize = std::env::var("SEALBOX_ROTATION_PAUSE")
            .unwrap()
            .parse()
            .unwrap();
        let pausing = Arc::new(Pausing {
            inner: store,
            calls: AtomicUsize::new(0),
            pause_at: pause,
        });
        let engine = RotationEngine::new(pausing, "local").lease_ttl(Duration::from_millis(500));
        engine.rotate(&name(), &Generated, hex()).await.unwrap();
        println!("finished");
    });
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The child's store: before its `pause_at`-th call it prints `paused` and sleeps until
/// killed.
#[derive(Debug)]
struct Pausing {
    inner: Arc<dyn SecretStore>,
    calls: AtomicUsize,
    pause_at: usize,
}

impl Pausing {
    fn tick(&self) {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.pause_at {
            println!("paused");
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    }
}

#[async_trait]
impl SecretStore for Pausing {
    fn kind(&self) -> &'static str {
        "local"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, n: &SecretName, s: &VersionSelector) -> Result<SecretVersion> {
        self.tick();
        self.inner.get(n, s).await
    }
    async fn put(&self, n: &SecretName, v: &Secret, o: &PutOptions) -> Result<VersionInfo> {
        self.tick();
        self.inner.put(n, v, o).await
    }
    async fn describe(&self, n: &SecretName) -> Result<SecretMetadata> {
        self.tick();
        self.inner.describe(n).await
    }
    async fn list(&self, o: &ListOptions) -> Result<ListPage> {
        self.inner.list(o).await
    }
    async fn delete(&self, n: &SecretName, o: &DeleteOptions) -> Result<()> {
        self.inner.delete(n, o).await
    }
    async fn restore(&self, n: &SecretName) -> Result<()> {
        self.inner.restore(n).await
    }
    async fn set_stage(&self, n: &SecretName, s: &Stage, v: Option<&VersionId>) -> Result<()> {
        self.tick();
        self.inner.set_stage(n, s, v).await
    }
}

fn child(dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "rotation_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_before_each_store_call_resumes_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = vault(dir.path()).await;
    seed(store.as_ref()).await;
    let mut kills = 0;
    for pause in 0.. {
        let before = current_value(store.as_ref()).await;
        let pending_before = staged(store.as_ref(), Stage::Pending).await;
        assert_eq!(pending_before, None);
        let mut c = child(dir.path())
            .env("SEALBOX_ROTATION_PAUSE", pause.to_string())
            .spawn()
            .unwrap();
        let line = BufReader::new(c.stdout.take().unwrap())
            .lines()
            .map(|l| l.unwrap())
            // libtest writes `test rotation_child ... ` before the child's own output.
            .find(|l| l.ends_with("paused") || l.ends_with("finished"))
            .unwrap_or_default();
        if line.ends_with("finished") {
            c.wait().unwrap();
            break;
        }
        assert!(line.ends_with("paused"), "child said {line:?}");
        // SAFETY: kill(2) on the child's pid, which we spawned and have not waited for.
        unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
        c.wait().unwrap();
        kills += 1;

        let after = current_value(store.as_ref()).await;
        let pending = staged(store.as_ref(), Stage::Pending).await;
        if after != before {
            // Killed after the promotion: the new version is current, PENDING is on it or gone.
            assert!(
                pending.is_none() || pending.as_ref() == Some(&after.0),
                "pause {pause}"
            );
        }
        // The dead child's lease blocks a rotation until it expires, then it resumes.
        let engine = RotationEngine::new(store.clone(), "local");
        let mut done = None;
        for _ in 0..40 {
            match engine.rotate(&name(), &Generated, hex()).await {
                Ok(d) => {
                    done = Some(d);
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("resume after kill at call {pause}: {e}"),
            }
        }
        let done = done.expect("the dead child's lease expired within 2 s");
        if let Some(p) = pending {
            assert_eq!(
                done.current, p,
                "pause {pause}: resumed the child's PENDING"
            );
        }
        assert_eq!(staged(store.as_ref(), Stage::Pending).await, None);
        assert_ne!(current_value(store.as_ref()).await.1, before.1);
    }
    assert!(
        kills >= 10,
        "a rotation makes at least 10 store calls; killed {kills}"
    );
    println!("killed a rotating child before each of its {kills} store calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_rotate_a_due_secret_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = vault(dir.path()).await;
    seed(store.as_ref()).await;
    for round in 0..4 {
        // Make it due: its last rotation is long past.
        let rec = record_name(&name()).unwrap();
        store
            .put(
                &rec,
                &secret(r#"{"last_rotated_ms":0}"#),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        let versions_before = store.describe(&name()).await.unwrap().versions.len();
        let start = now_ms() + 700;
        let children: Vec<_> = (0..3)
            .map(|_| {
                child(dir.path())
                    .env("SEALBOX_ROTATION_DUE", "1")
                    .env("SEALBOX_ROTATION_START", start.to_string())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let said: Vec<String> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                assert!(out.status.success(), "round {round}");
                String::from_utf8(out.stdout).unwrap()
            })
            .collect();
        let rotated = said.iter().filter(|s| s.contains("rotated")).count();
        let skipped = said.iter().filter(|s| s.contains("skipped")).count();
        assert_eq!((rotated, skipped), (1, 2), "round {round}: {said:?}");
        let versions = store.describe(&name()).await.unwrap().versions.len();
        assert_eq!(versions, versions_before + 1, "round {round}");
        assert_eq!(staged(store.as_ref(), Stage::Pending).await, None);
    }
}

/// `NewValue::FromCurrent` gets the value `CURRENT` holds when `PENDING` is written, and is
/// not called again when a failed rotation resumes.
#[tokio::test]
async fn a_value_made_from_the_current_one_sees_it_and_is_made_once() {
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    seed(store.as_ref()).await;
    let engine = RotationEngine::new(store.clone(), "memory");
    let calls = Arc::new(AtomicUsize::new(0));
    let derive = |calls: Arc<AtomicUsize>| {
        NewValue::FromCurrent(Box::new(move |current| {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut next = match current {
                Some(v) => v.expose_secret().to_vec(),
                None => b"none".to_vec(),
            };
            next.extend_from_slice(b"+next");
            Ok(secret(std::str::from_utf8(&next).unwrap()))
        }))
    };
    engine
        .rotate(&name(), &Generated, derive(calls.clone()))
        .await
        .unwrap();
    assert_eq!(current_value(store.as_ref()).await.1, b"initial-key+next");
    let flaky = Flaky::failing(Step::Set);
    engine
        .rotate(&name(), &flaky, derive(calls.clone()))
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    *flaky.fail.lock().unwrap() = None;
    engine
        .rotate(&name(), &flaky, derive(calls.clone()))
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the resumed rotation kept its PENDING value"
    );
    assert_eq!(
        current_value(store.as_ref()).await.1,
        b"initial-key+next+next"
    );
}
