//! The rotation engine over AWS Secrets Manager's staging labels (moto), as a specification:
//!
//! * a rotation leaves the labels as AWS's own rotation does: the new version `AWSCURRENT`,
//!   the one before it `AWSPREVIOUS`, the one before that no label, `AWSPENDING` on none,
//!   as `DescribeSecret` and `ListSecretVersionIds` show them to any AWS client;
//! * a secret whose last rotation was AWS's (a rotation function leaves `AWSPENDING` on the
//!   version it promoted) rotates to a new version, not "resumes" a finished one;
//! * an error from the rotator, or from the store before or after each of its calls (a call
//!   that failed, or one AWS applied whose answer was lost), leaves `AWSCURRENT` where it was,
//!   unless the promotion itself happened; the next run resumes the same `AWSPENDING`
//!   version and finishes, leaving no `AWSPENDING`;
//! * a rotating process killed with SIGKILL before each store call resumes from another
//!   process once its lease lapses;
//! * rollback moves `AWSCURRENT` back (and `AWSPREVIOUS` onto the undone version), or
//!   abandons an unfinished rotation, removing `AWSPENDING`;
//! * the lease holds on AWS, which has no conditional write: of engines racing for it exactly
//!   one rotates, in one process and across three; a secret that is not due is not written.
//!
//! Needs `SEALBOX_TEST_AWS_ENDPOINT` (`eval "$(scripts/moto.sh env)"`). The child processes
//! are this test binary re-executed with `SEALBOX_AWS_ROTATION_CHILD` set.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use sealbox::audit::AuditEvent;
use sealbox::rotation::{
    Generated, Generator, NewValue, RolledBack, RotationEngine, Rotator, Step, StepContext,
    record_name,
};
use sealbox::store::{
    Capabilities, DeleteOptions, ListOptions, ListPage, PutOptions, SecretMetadata, SecretName,
    SecretStore, SecretVersion, Stage, VersionId, VersionInfo, VersionSelector,
};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use sealbox_aws::{AwsConfig, AwsSecretsManager};

const CHILD_ENV: &str = "SEALBOX_AWS_ROTATION_CHILD";

fn name() -> SecretName {
    support::name("predis/prod/api/key")
}

fn secret(text: &str) -> Secret {
    let mut b = text.as_bytes().to_vec();
    Secret::from_mut_slice(&mut b).unwrap()
}

fn hex() -> NewValue {
    NewValue::Generate(Generator::Hex { bytes: 16 })
}

/// A store on moto under the prefix `prefix`.
async fn store_at(endpoint: &str, prefix: &str) -> Arc<AwsSecretsManager> {
    let config = AwsConfig {
        prefix: Some(prefix.to_owned()),
        ..support::moto_config(endpoint)
    };
    Arc::new(
        AwsSecretsManager::from_sdk_config(&support::sdk_config(&config).await, &config).unwrap(),
    )
}

/// A store under a fresh prefix, with the secret seeded (its first version, `AWSCURRENT`).
async fn seeded(endpoint: &str, tag: &str) -> (Arc<AwsSecretsManager>, String, VersionId) {
    let prefix = format!("sealbox-tests/{}", support::unique(tag));
    let store = store_at(endpoint, &prefix).await;
    let first = store
        .put(&name(), &secret("initial-key"), &PutOptions::default())
        .await
        .unwrap()
        .version;
    (store, prefix, first)
}

/// Every version's AWS labels, as `ListSecretVersionIds` (deprecated versions included)
/// shows them; checked against `DescribeSecret`'s `VersionIdsToStages`, which lists labelled
/// versions only.
async fn labels(store: &AwsSecretsManager) -> BTreeMap<String, Vec<String>> {
    let id = store.secret_id(&name());
    let client: &Client = store.sdk_client();
    let listed = client
        .list_secret_version_ids()
        .secret_id(&id)
        .include_deprecated(true)
        .send()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for v in listed.versions() {
        let mut l = v.version_stages().to_vec();
        l.sort();
        out.insert(v.version_id().unwrap().to_owned(), l);
    }
    let described = client
        .describe_secret()
        .secret_id(&id)
        .send()
        .await
        .unwrap();
    let mut staged = BTreeMap::new();
    // AWS lists labelled versions only; moto adds deprecated ones with no label.
    for (v, mut l) in described
        .version_ids_to_stages()
        .cloned()
        .unwrap_or_default()
    {
        if !l.is_empty() {
            l.sort();
            staged.insert(v, l);
        }
    }
    let labelled: BTreeMap<_, _> = out
        .iter()
        .filter(|(_, l)| !l.is_empty())
        .map(|(v, l)| (v.clone(), l.clone()))
        .collect();
    assert_eq!(
        labelled, staged,
        "DescribeSecret and ListSecretVersionIds agree"
    );
    out
}

/// The version holding `label`, if any, as AWS shows it.
async fn holder(store: &AwsSecretsManager, label: &str) -> Option<String> {
    labels(store)
        .await
        .into_iter()
        .find(|(_, l)| l.iter().any(|x| x == label))
        .map(|(v, _)| v)
}

/// `AWSCURRENT`'s version id and value, read with the SDK.
async fn aws_current(store: &AwsSecretsManager) -> (String, String) {
    let out = store
        .sdk_client()
        .get_secret_value()
        .secret_id(store.secret_id(&name()))
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    (
        out.version_id().unwrap().to_owned(),
        out.secret_string().unwrap().to_owned(),
    )
}

fn l(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|s| (*s).to_owned()).collect()
}

/// A rotator that fails the step it is told to, and counts the calls it gets.
#[derive(Debug, Default)]
struct Flaky {
    fail: Mutex<Option<Step>>,
    sets: AtomicUsize,
    tests: AtomicUsize,
    restored: Mutex<Vec<Vec<u8>>>,
    /// How long `set` takes (a slow target, to hold the lease).
    set_takes: Duration,
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
        tokio::time::sleep(self.set_takes).await;
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

/// Where an injected store failure falls relative to the call it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    /// The call is not made (the request never reached AWS).
    Before,
    /// The call is made and AWS applies it, but the caller gets an error (its answer lost).
    After,
}

/// The AWS store, failing its `fail_at`-th call (counting every call, the rotation record's
/// too) with `Unavailable`, before or after making it. With `pause_at` set it stops before
/// that call instead (prints `paused` and sleeps until killed).
#[derive(Debug)]
struct Faulty {
    inner: Arc<AwsSecretsManager>,
    calls: AtomicUsize,
    fail_at: usize,
    when: When,
    pause_at: Option<usize>,
}

impl Faulty {
    fn new(inner: Arc<AwsSecretsManager>, fail_at: usize, when: When) -> Faulty {
        Faulty {
            inner,
            calls: AtomicUsize::new(0),
            fail_at,
            when,
            pause_at: None,
        }
    }

    async fn call<T>(
        &self,
        op: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.pause_at == Some(n) {
            println!("paused");
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        let injected = || {
            Error::new(
                ErrorKind::Unavailable,
                format!("injected store failure at call {n} ({op})"),
            )
        };
        if n != self.fail_at {
            return f.await;
        }
        match self.when {
            When::Before => Err(injected()),
            When::After => {
                let _ = f.await;
                Err(injected())
            }
        }
    }
}

#[async_trait]
impl SecretStore for Faulty {
    fn kind(&self) -> &'static str {
        "faulty-aws"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, n: &SecretName, s: &VersionSelector) -> Result<SecretVersion> {
        self.call("get", self.inner.get(n, s)).await
    }
    async fn put(&self, n: &SecretName, v: &Secret, o: &PutOptions) -> Result<VersionInfo> {
        self.call("put", self.inner.put(n, v, o)).await
    }
    async fn describe(&self, n: &SecretName) -> Result<SecretMetadata> {
        self.call("describe", self.inner.describe(n)).await
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
        self.call("set_stage", self.inner.set_stage(n, s, v)).await
    }
}

#[tokio::test]
async fn a_rotation_leaves_the_labels_as_aws_rotation_does() {
    let Some(ep) = support::endpoint("a_rotation_leaves_the_labels_as_aws_rotation_does") else {
        return;
    };
    let (store, _, v0) = seeded(&ep, "rot-labels").await;
    let events = Arc::new(Mutex::new(Vec::<AuditEvent>::new()));
    let sink = events.clone();
    let engine =
        RotationEngine::new(store.clone(), "aws").on_event(move |e| sink.lock().unwrap().push(e));

    let first = engine.rotate(&name(), &Generated, hex()).await.unwrap();
    assert_eq!(first.previous.as_ref(), Some(&v0));
    let v1 = first.current.as_str().to_owned();
    assert_eq!(
        labels(&store).await,
        BTreeMap::from([
            (v0.as_str().to_owned(), l(&["AWSPREVIOUS"])),
            (v1.clone(), l(&["AWSCURRENT"])),
        ])
    );
    let (cur, value) = aws_current(&store).await;
    assert_eq!(cur, v1);
    assert_eq!(
        value.len(),
        32,
        "a 16-byte hex token, read by any AWS client"
    );
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
        ]
    );

    // The second: the first version loses its last label (AWS deprecates it), as AWS does.
    let second = engine.rotate(&name(), &Generated, hex()).await.unwrap();
    assert_eq!(
        second.previous.as_ref().map(VersionId::as_str),
        Some(v1.as_str())
    );
    assert_eq!(
        labels(&store).await,
        BTreeMap::from([
            (v0.as_str().to_owned(), vec![]),
            (v1, l(&["AWSPREVIOUS"])),
            (second.current.as_str().to_owned(), l(&["AWSCURRENT"])),
        ])
    );
    // The rotation record is a secret of its own, with AWSCURRENT on its last version.
    let rec = store.secret_id(&record_name(&name()).unwrap());
    let record = store
        .sdk_client()
        .get_secret_value()
        .secret_id(&rec)
        .send()
        .await
        .unwrap();
    let json = record.secret_string().unwrap();
    assert!(
        json.contains("last_rotated_ms") && !json.contains(&value),
        "{json}"
    );
    let status = engine.status(&name()).await.unwrap();
    assert!(status.pending.is_none() && status.lease.is_none());
}

/// AWS's rotation functions end with `AWSPENDING` still on the version they promoted to
/// `AWSCURRENT` (the label "might be attached to the same version as AWSCURRENT", says
/// RotateSecret). That is a finished rotation: the engine rotates to a new version.
#[tokio::test]
async fn a_secret_last_rotated_by_an_aws_rotation_function_rotates_afresh() {
    let Some(ep) =
        support::endpoint("a_secret_last_rotated_by_an_aws_rotation_function_rotates_afresh")
    else {
        return;
    };
    let (store, _, v0) = seeded(&ep, "rot-lambda").await;
    let id = store.secret_id(&name());
    let sdk = store.sdk_client();
    // What a rotation function's createSecret and finishSecret steps do.
    let token = "9b4f2c1e-0d6a-4e8b-a7c3-5f1e2d3c4b5a";
    sdk.put_secret_value()
        .secret_id(&id)
        .client_request_token(token)
        .secret_string("lambda-rotated")
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    sdk.update_secret_version_stage()
        .secret_id(&id)
        .version_stage("AWSCURRENT")
        .move_to_version_id(token)
        .remove_from_version_id(v0.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        labels(&store).await.get(token),
        Some(&l(&["AWSCURRENT", "AWSPENDING"]))
    );

    let engine = RotationEngine::new(store.clone(), "aws");
    let status = engine.status(&name()).await.unwrap();
    assert_eq!(status.pending, None, "a finished rotation is not pending");
    let done = engine.rotate(&name(), &Generated, hex()).await.unwrap();
    assert!(!done.resumed);
    assert_ne!(done.current.as_str(), token, "a new version was made");
    assert_eq!(done.previous.as_ref().map(VersionId::as_str), Some(token));
    let (cur, value) = aws_current(&store).await;
    assert_eq!(cur, done.current.as_str());
    assert_ne!(value, "lambda-rotated");
    assert_eq!(holder(&store, "AWSPENDING").await, None);
    assert_eq!(holder(&store, "AWSPREVIOUS").await.as_deref(), Some(token));
}

#[tokio::test]
async fn a_rotator_failure_leaves_awscurrent_and_the_next_run_resumes_the_same_pending() {
    let Some(ep) = support::endpoint(
        "a_rotator_failure_leaves_awscurrent_and_the_next_run_resumes_the_same_pending",
    ) else {
        return;
    };
    let (store, _, _) = seeded(&ep, "rot-rotator").await;
    let engine = RotationEngine::new(store.clone(), "aws");
    for failing in [Step::Set, Step::Test] {
        let before = aws_current(&store).await;
        let flaky = Flaky::failing(failing);
        let err = engine.rotate(&name(), &flaky, hex()).await.unwrap_err();
        assert!(
            err.message()
                .contains(&format!("failed at step {}", failing.as_str())),
            "{err}"
        );
        assert_eq!(aws_current(&store).await, before, "{failing:?}");
        let pending = holder(&store, "AWSPENDING")
            .await
            .expect("AWSPENDING staged");
        assert_ne!(pending, before.0);
        let status = engine.status(&name()).await.unwrap();
        assert_eq!(status.last_failure.unwrap().step, failing);

        let fixed = Flaky::default();
        let done = engine
            .rotate(&name(), &fixed, NewValue::Given(secret("unused")))
            .await
            .unwrap();
        assert!(done.resumed);
        assert_eq!(
            done.current.as_str(),
            pending,
            "the same AWSPENDING version"
        );
        let sets = usize::from(failing == Step::Set);
        assert_eq!(fixed.sets.load(Ordering::SeqCst), sets, "{failing:?}");
        assert_eq!(aws_current(&store).await.0, pending);
        assert_eq!(holder(&store, "AWSPENDING").await, None);
        assert_eq!(holder(&store, "AWSPREVIOUS").await, Some(before.0));
    }
}

/// Injects a failure at each store call of a rotation in turn, before the call and after it
/// (AWS applied it, the answer was lost), and resumes with a clean engine each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_at_every_call_leaves_awscurrent_and_resume_finishes() {
    let Some(ep) =
        support::endpoint("a_store_failure_at_every_call_leaves_awscurrent_and_resume_finishes")
    else {
        return;
    };
    for when in [When::Before, When::After] {
        let (inner, _, _) = seeded(&ep, "rot-store").await;
        let mut failed_calls = 0;
        for fail_at in 0.. {
            let before = aws_current(&inner).await;
            let faulty = Arc::new(Faulty::new(inner.clone(), fail_at, when));
            // A short lease: a failed release leaves it held until it lapses.
            let engine =
                RotationEngine::new(faulty.clone(), "aws").lease_ttl(Duration::from_millis(200));
            let result = engine.rotate(&name(), &Generated, hex()).await;
            if faulty.calls.load(Ordering::SeqCst) <= fail_at {
                result.unwrap();
                break; // every call of a rotation has had its failure
            }
            failed_calls += 1;
            let after = aws_current(&inner).await;
            let pending = holder(&inner, "AWSPENDING").await;
            match &result {
                Err(e) => {
                    assert_eq!(after, before, "{when:?} call {fail_at}: {e}");
                    if e.message().contains("failed at step") {
                        assert!(e.message().contains("CURRENT is unchanged"), "{e}");
                    }
                }
                // After the promotion (the commit point) the rotation has happened.
                Ok(done) => {
                    assert_eq!(after.0, done.current.as_str(), "{when:?} call {fail_at}");
                    assert!(pending.is_none() || pending.as_ref() == Some(&after.0));
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let clean = RotationEngine::new(inner.clone(), "aws");
            let done = clean
                .rotate(&name(), &Generated, hex())
                .await
                .unwrap_or_else(|e| {
                    panic!("{when:?} call {fail_at}: the clean run did not finish: {e}")
                });
            if let Some(p) = pending
                && p != after.0
            {
                assert_eq!(done.current.as_str(), p, "{when:?}: resume kept AWSPENDING");
                assert!(done.resumed);
            }
            assert_eq!(
                holder(&inner, "AWSPENDING").await,
                None,
                "{when:?} {fail_at}"
            );
            assert_ne!(aws_current(&inner).await.1, before.1);
            let status = clean.status(&name()).await.unwrap();
            assert!(status.pending.is_none() && status.lease.is_none());
        }
        assert!(failed_calls >= 10, "{when:?}: only {failed_calls} calls");
        println!("{when:?}: a failure injected at each of {failed_calls} store calls");
    }
}

#[tokio::test]
async fn rollback_moves_awscurrent_back_and_abandons_an_unfinished_rotation() {
    let Some(ep) =
        support::endpoint("rollback_moves_awscurrent_back_and_abandons_an_unfinished_rotation")
    else {
        return;
    };
    let (store, _, v0) = seeded(&ep, "rot-rollback").await;
    let engine = RotationEngine::new(store.clone(), "aws");
    let rotator = Flaky::default();
    let done = engine.rotate(&name(), &rotator, hex()).await.unwrap();
    let back = engine.rollback(&name(), &rotator).await.unwrap();
    assert_eq!(
        back,
        RolledBack::Finished {
            restored: v0.clone(),
            undone: done.current.clone()
        }
    );
    assert_eq!(
        labels(&store).await,
        BTreeMap::from([
            (v0.as_str().to_owned(), l(&["AWSCURRENT"])),
            (done.current.as_str().to_owned(), l(&["AWSPREVIOUS"])),
        ])
    );
    assert_eq!(aws_current(&store).await.1, "initial-key");
    assert_eq!(
        rotator.restored.lock().unwrap().as_slice(),
        [b"initial-key".to_vec()]
    );

    // Unfinished: the target gets AWSCURRENT's value back, AWSPENDING goes.
    engine
        .rotate(&name(), &Flaky::failing(Step::Test), hex())
        .await
        .unwrap_err();
    let pending = holder(&store, "AWSPENDING").await.unwrap();
    let back = engine.rollback(&name(), &rotator).await.unwrap();
    assert_eq!(
        back,
        RolledBack::Abandoned {
            pending: VersionId::new(pending.clone())
        }
    );
    assert_eq!(holder(&store, "AWSPENDING").await, None);
    assert_eq!(labels(&store).await.get(&pending), Some(&vec![]));
    assert_eq!(aws_current(&store).await.0, v0.as_str());
    // The next rotation starts afresh from AWSCURRENT.
    let next = engine.rotate(&name(), &rotator, hex()).await.unwrap();
    assert!(!next.resumed);
    assert_eq!(next.previous.as_ref(), Some(&v0));
}

/// AWS has no conditional write: the store checks the current version, then writes, and two
/// writers can both pass the check. The lease's record writes carry an idempotency token
/// made from the version they replace, and AWS lets a token name one version: of engines
/// racing for the lease from the same record, exactly one takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_racing_for_the_lease_on_aws_rotate_once() {
    let Some(ep) = support::endpoint("engines_racing_for_the_lease_on_aws_rotate_once") else {
        return;
    };
    let (store, _, _) = seeded(&ep, "rot-race").await;
    assert!(!store.capabilities().compare_and_set);
    // The record exists (its creation alone is atomic on AWS): the race is on its update.
    RotationEngine::new(store.clone(), "aws")
        .rotate(&name(), &Generated, hex())
        .await
        .unwrap();
    const ENGINES: usize = 6;
    for round in 0..3 {
        let before = store.describe(&name()).await.unwrap().versions.len();
        let slow = Flaky {
            set_takes: Duration::from_millis(300),
            ..Flaky::default()
        };
        let runs = (0..ENGINES).map(|_| {
            let engine = RotationEngine::new(store.clone(), "aws");
            let slow = &slow;
            async move { engine.rotate(&name(), slow, hex()).await }
        });
        let results = futures::future::join_all(runs).await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        for r in &results {
            if let Err(e) = r {
                assert_eq!(e.kind(), ErrorKind::Conflict, "round {round}: {e}");
            }
        }
        assert_eq!(won, 1, "round {round}: {results:?}");
        assert_eq!(
            slow.sets.load(Ordering::SeqCst),
            1,
            "one engine reached the target"
        );
        let after = store.describe(&name()).await.unwrap().versions.len();
        assert_eq!(after, before + 1, "round {round}: one new version");
        assert_eq!(holder(&store, "AWSPENDING").await, None);
    }
}

#[tokio::test]
async fn a_secret_that_is_not_due_is_not_written() {
    let Some(ep) = support::endpoint("a_secret_that_is_not_due_is_not_written") else {
        return;
    };
    let (store, _, _) = seeded(&ep, "rot-notdue").await;
    let engine = RotationEngine::new(store.clone(), "aws");
    let hour = Duration::from_secs(3600);
    let done = engine
        .rotate_if_due(&name(), &Generated, hex(), hour)
        .await
        .unwrap();
    assert!(done.is_none(), "written a moment ago: not due");
    engine.rotate(&name(), &Generated, hex()).await.unwrap();
    let rec = store.secret_id(&record_name(&name()).unwrap());
    let record_versions = || async {
        store
            .sdk_client()
            .list_secret_version_ids()
            .secret_id(&rec)
            .include_deprecated(true)
            .send()
            .await
            .unwrap()
            .versions()
            .len()
    };
    let versions = record_versions().await;
    for _ in 0..3 {
        let skipped = engine
            .rotate_if_due(&name(), &Generated, hex(), hour)
            .await
            .unwrap();
        assert!(skipped.is_none());
    }
    assert_eq!(
        record_versions().await,
        versions,
        "a timer that finds nothing due adds no version to the record"
    );
    let due = engine
        .rotate_if_due(&name(), &Generated, hex(), Duration::ZERO)
        .await
        .unwrap();
    assert!(due.is_some());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The child: rotates `name()` on moto at `SEALBOX_TEST_AWS_ENDPOINT`, under the prefix in
/// `SEALBOX_AWS_ROTATION_CHILD`. `SEALBOX_ROTATION_PAUSE=n` stops it before its `n`-th store
/// call (it prints `paused` and waits to be killed); `SEALBOX_ROTATION_START=ms` makes it run
/// `rotate_if_due` (1 hour) at that time and print `rotated` or `skipped`.
#[test]
fn rotation_child() {
    let Ok(prefix) = std::env::var(CHILD_ENV) else {
        return;
    };
    let endpoint = std::env::var(support::ENDPOINT_VAR).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = store_at(&endpoint, &prefix).await;
        if let Ok(start) = std::env::var("SEALBOX_ROTATION_START") {
            let start: u64 = start.parse().unwrap();
            while now_ms() < start {
                std::thread::sleep(Duration::from_millis(1));
            }
            let out = RotationEngine::new(store, "aws")
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
        let pausing = Arc::new(Faulty {
            pause_at: Some(pause),
            ..Faulty::new(store, usize::MAX, When::Before)
        });
        let engine = RotationEngine::new(pausing, "aws").lease_ttl(Duration::from_millis(500));
        engine.rotate(&name(), &Generated, hex()).await.unwrap();
        println!("finished");
    });
}

fn child(endpoint: &str, prefix: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "rotation_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, prefix)
    .env(support::ENDPOINT_VAR, endpoint)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_before_each_store_call_resumes_in_another_process() {
    let Some(ep) =
        support::endpoint("a_rotation_killed_before_each_store_call_resumes_in_another_process")
    else {
        return;
    };
    let (store, prefix, _) = seeded(&ep, "rot-kill").await;
    let mut kills = 0;
    for pause in 0.. {
        let before = aws_current(&store).await;
        assert_eq!(holder(&store, "AWSPENDING").await, None);
        let mut c = child(&ep, &prefix)
            .env("SEALBOX_ROTATION_PAUSE", pause.to_string())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(c.stdout.take().unwrap())
            .lines()
            .map(|l| l.unwrap());
        let line = lines
            // libtest writes `test rotation_child ... ` before the child's own output.
            .find(|l| l.ends_with("paused") || l.ends_with("finished"))
            .unwrap_or_default();
        if line.ends_with("finished") {
            lines.for_each(drop); // libtest's summary, so the child's last writes succeed
            assert!(c.wait().unwrap().success());
            break;
        }
        assert!(line.ends_with("paused"), "child said {line:?}");
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        kills += 1;

        let after = aws_current(&store).await;
        let pending = holder(&store, "AWSPENDING").await;
        if after != before {
            assert!(
                pending.is_none() || pending.as_ref() == Some(&after.0),
                "pause {pause}"
            );
        }
        // The dead child's lease blocks a rotation until it lapses, then it resumes.
        let engine = RotationEngine::new(store.clone(), "aws");
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
        let done = done.expect("the dead child's lease lapsed within 2 s");
        if let Some(p) = pending
            && p != after.0
        {
            assert_eq!(
                done.current.as_str(),
                p,
                "pause {pause}: resumed its AWSPENDING"
            );
        }
        assert_eq!(holder(&store, "AWSPENDING").await, None);
        assert_ne!(aws_current(&store).await.1, before.1);
    }
    assert!(kills >= 10, "killed {kills} times");
    println!("killed a rotating child before each of its {kills} store calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_rotate_a_due_secret_on_aws_exactly_once() {
    let Some(ep) = support::endpoint("three_processes_rotate_a_due_secret_on_aws_exactly_once")
    else {
        return;
    };
    let (store, prefix, _) = seeded(&ep, "rot-due").await;
    RotationEngine::new(store.clone(), "aws")
        .rotate(&name(), &Generated, hex())
        .await
        .unwrap();
    let rec = record_name(&name()).unwrap();
    for round in 0..3 {
        // Make it due: its last rotation is long past. (Written without the lease's token,
        // as an operator's edit would be.)
        store
            .put(
                &rec,
                &secret(r#"{"last_rotated_ms":0}"#),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        let versions_before = store.describe(&name()).await.unwrap().versions.len();
        let start = now_ms() + 1500;
        let children: Vec<_> = (0..3)
            .map(|_| {
                child(&ep, &prefix)
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
        assert_eq!(holder(&store, "AWSPENDING").await, None);
    }
}
