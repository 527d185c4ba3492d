//! The PKCS#11 master key against a real SoftHSM2 token: each test makes its own token (its own
//! config and token directory, and its own copy of the module, so its state is its own) with
//! `softhsm2-util`, then seals a local vault with a key inside it.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use sealbox::config::{Config, ProviderRegistry};
use sealbox::keys::KeyProvider;
use sealbox::store::local::LocalVault;
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Secret, SecretString};
use sealbox_pkcs11::{Pkcs11Config, Pkcs11MasterKey, TokenSelector};

const PIN: &str = "user-pin-4711";
const SO_PIN: &str = "so-pin-0815";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Where Debian puts the module.
fn system_module() -> Option<PathBuf> {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// One SoftHSM2 token of one test.
struct Hsm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    module: PathBuf,
    label: String,
    /// Keeps this test's copy of the module loaded (dropping the last handle would unload it).
    ctx: Pkcs11,
}

/// `SOFTHSM2_CONF` is read by `C_Initialize`; tests set it one at a time, each right before
/// initialising its own copy of the module.
static ENV: Mutex<()> = Mutex::new(());

impl Hsm {
    /// A fresh token labelled `label`, or `None` (printed) without SoftHSM2 outside CI.
    fn new(label: &str) -> Option<Hsm> {
        let Some(system) = system_module() else {
            assert!(
                !in_ci(),
                "SoftHSM2 is not installed but CI is: .ci/run installs softhsm2"
            );
            eprintln!("SKIPPED: SoftHSM2 is not installed (apt-get install softhsm2)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let module = dir.path().join("libsofthsm2.so");
        std::fs::copy(&system, &module).unwrap();
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", PIN, "--so-pin", SO_PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("running softhsm2-util");
        assert!(out.status.success(), "{out:?}");
        let ctx = {
            let _one = ENV.lock().unwrap_or_else(|p| p.into_inner());
            // SAFETY: set under ENV, and every test reads it only under ENV (when its module
            // copy initialises, below); std's own readers take the environment lock.
            unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
            let ctx = Pkcs11::new(&module).unwrap();
            ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
                .unwrap();
            ctx
        };
        Some(Hsm {
            dir,
            conf,
            module,
            label: label.to_owned(),
            ctx,
        })
    }

    fn config(&self, key_label: &str) -> Pkcs11Config {
        self.config_with_pin(key_label, PIN)
    }

    fn config_with_pin(&self, key_label: &str, pin: &str) -> Pkcs11Config {
        Pkcs11Config {
            module: self.module.clone(),
            token: TokenSelector::Label(self.label.clone()),
            pin: SecretString::from_string(pin.to_owned()).unwrap(),
            key_label: key_label.to_owned(),
            key_id: None,
        }
    }

    fn provider(&self, key_label: &str) -> Arc<dyn KeyProvider> {
        Arc::new(Pkcs11MasterKey::open(self.config(key_label)).unwrap())
    }

    /// The labels and attributes of the token's AES keys, read with a session of our own.
    fn keys(&self) -> Vec<(String, bool, bool)> {
        let slot = self
            .ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| self.ctx.get_token_info(*s).unwrap().label() == self.label)
            .unwrap();
        let s = self.ctx.open_ro_session(slot).unwrap();
        match s.login(UserType::User, Some(&AuthPin::from(PIN.to_owned()))) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => panic!("{e}"),
        }
        let found = s
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
            ])
            .unwrap();
        let mut keys: Vec<_> = found
            .into_iter()
            .map(|h| {
                let attrs = s
                    .get_attributes(
                        h,
                        &[
                            AttributeType::Label,
                            AttributeType::Extractable,
                            AttributeType::Sensitive,
                        ],
                    )
                    .unwrap();
                let mut k = (String::new(), true, false);
                for a in attrs {
                    match a {
                        Attribute::Label(l) => k.0 = String::from_utf8(l).unwrap(),
                        Attribute::Extractable(e) => k.1 = e,
                        Attribute::Sensitive(v) => k.2 = v,
                        _ => {}
                    }
                }
                k
            })
            .collect();
        keys.sort();
        keys
    }

    /// `softhsm2-util --delete-token`, as an operator (or a failing HSM) would, from outside.
    fn delete_token(&self) {
        let out = Command::new("softhsm2-util")
            .args(["--delete-token", "--token", &self.label])
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .expect("running softhsm2-util");
        assert!(out.status.success(), "{out:?}");
    }

    fn yaml(&self, body: &str) -> PathBuf {
        let p = self.dir.path().join("sealbox.yaml");
        std::fs::write(&p, body).unwrap();
        p
    }
}

fn secret(bytes: &[u8]) -> Secret {
    let mut b = bytes.to_vec();
    Secret::from_mut_slice(&mut b).unwrap()
}

fn name(s: &str) -> SecretName {
    SecretName::new(s).unwrap()
}

fn registry() -> ProviderRegistry {
    let mut r = ProviderRegistry::with_builtins();
    sealbox_pkcs11::register(&mut r);
    r
}

async fn read(vault: &LocalVault, n: &str) -> Vec<u8> {
    let got = vault
        .get(&name(n), &VersionSelector::Current)
        .await
        .unwrap();
    got.value.expose_secret().to_vec()
}

#[tokio::test]
async fn a_vault_sealed_by_the_token_opens_again_through_yaml_and_the_rust_api() {
    let Some(hsm) = Hsm::new("vault-open") else {
        return;
    };
    let vault_dir = hsm.dir.path().join("vault");
    let cfg = hsm.yaml(&format!(
        "secrets:\n  provider: local\n  config:\n    path: {}\n    master_key:\n      provider: pkcs11\n      module: {}\n      token_label: {}\n      pin: ${{HSM_PIN}}\n      key_label: sealbox-master\n",
        vault_dir.display(),
        hsm.module.display(),
        hsm.label
    ));
    let env = |v: &str| (v == "HSM_PIN").then(|| PIN.to_owned());
    let config = Config::from_path_with_env(&cfg, &env).unwrap();
    assert!(!format!("{config:?}").contains(PIN), "{config:?}");
    let client = config.build(&registry()).await.unwrap();
    // A new vault generated its key in the token, where it can never leave.
    assert_eq!(hsm.keys(), vec![("sealbox-master".to_owned(), false, true)]);
    client
        .put(
            "predis/prod/database/password",
            &secret(b"sealed-by-the-hsm"),
        )
        .await
        .unwrap();
    drop(client);

    // The same vault through the Rust API, with a fresh provider: the KEK comes back
    // through C_Decrypt in the token.
    let vault = LocalVault::open(&vault_dir, hsm.provider("sealbox-master"))
        .await
        .unwrap();
    assert_eq!(
        read(&vault, "predis/prod/database/password").await,
        b"sealed-by-the-hsm"
    );
    drop(vault);

    // And through YAML again, with the PIN from a file.
    let pin_file = hsm.dir.path().join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let cfg = hsm.yaml(&format!(
        "secrets:\n  provider: local\n  config:\n    path: {}\n    create: false\n    master_key: {{provider: pkcs11, module: {}, token_label: {}, pin_file: {}, key_label: sealbox-master}}\n",
        vault_dir.display(),
        hsm.module.display(),
        hsm.label,
        pin_file.display()
    ));
    let client = sealbox::Sealbox::from_config_with(&cfg, &registry())
        .await
        .unwrap();
    let h = client.get("predis/prod/database/password").await.unwrap();
    assert_eq!(h.expose_secret(), b"sealed-by-the-hsm");
}

#[tokio::test]
async fn rotating_the_master_adds_a_key_version_in_the_token_and_everything_still_opens() {
    let Some(hsm) = Hsm::new("rotate") else {
        return;
    };
    let key = Arc::new(Pkcs11MasterKey::create(hsm.config("m")).unwrap());
    let vault_dir = hsm.dir.path().join("vault");
    let vault = LocalVault::create(&vault_dir, key.clone()).await.unwrap();
    vault
        .put(&name("a/b/before"), &secret(b"one"), &PutOptions::default())
        .await
        .unwrap();
    let v2 = vault.rotate_master().await.unwrap();
    assert_eq!(v2.get(), 2);
    assert_eq!(key.current_version().await.unwrap(), v2);
    assert_eq!(
        hsm.keys(),
        vec![
            ("m".to_owned(), false, true),
            ("m.v2".to_owned(), false, true)
        ]
    );
    vault
        .put(&name("c/d/after"), &secret(b"two"), &PutOptions::default())
        .await
        .unwrap();
    drop(vault);

    // A new process's view: the provider finds version 2 as current by its label.
    let fresh = hsm.provider("m");
    assert_eq!(fresh.current_version().await.unwrap(), v2);
    let vault = LocalVault::open(&vault_dir, fresh).await.unwrap();
    assert_eq!(read(&vault, "a/b/before").await, b"one");
    assert_eq!(read(&vault, "c/d/after").await, b"two");
    assert_eq!(vault.rotate_master().await.unwrap().get(), 3);
    drop(vault);
    let vault = LocalVault::open(&vault_dir, hsm.provider("m"))
        .await
        .unwrap();
    assert_eq!(read(&vault, "a/b/before").await, b"one");
}

#[tokio::test]
async fn a_wrong_pin_is_access_denied_and_the_pin_is_never_in_the_message() {
    let Some(hsm) = Hsm::new("wrong-pin") else {
        return;
    };
    Pkcs11MasterKey::create(hsm.config("m")).unwrap();
    let wrong = "not-the-pin-9931";
    let e = Pkcs11MasterKey::open(hsm.config_with_pin("m", wrong)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(e.message().contains("CKR_PIN_INCORRECT"), "{e}");
    assert!(!e.to_string().contains(wrong), "{e}");

    // Through YAML: the same kind, the PIN nowhere in the text.
    let cfg = hsm.yaml(&format!(
        "secrets:\n  provider: local\n  config: {{path: ./v, master_key: {{provider: pkcs11, module: {}, token_label: {}, pin: {wrong}, key_label: m}}}}\n",
        hsm.module.display(),
        hsm.label
    ));
    let e = sealbox::Sealbox::from_config_with(&cfg, &registry())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(!e.to_string().contains(wrong), "{e}");
}

#[tokio::test]
async fn a_missing_module_is_a_config_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-hsm/libvendor-pkcs11.so");
    let config = Pkcs11Config {
        module: missing.clone(),
        token: TokenSelector::Label("t".into()),
        pin: SecretString::from_string(PIN.into()).unwrap(),
        key_label: "m".into(),
        key_id: None,
    };
    let e = Pkcs11MasterKey::open(config).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains(&missing.display().to_string()), "{e}");

    // A file that is not a loadable library: also Config, with the loader's reason.
    let junk = dir.path().join("junk.so");
    std::fs::write(&junk, b"not an ELF file").unwrap();
    let cfg = dir.path().join("sealbox.yaml");
    std::fs::write(
        &cfg,
        format!(
            "secrets:\n  provider: local\n  config: {{path: ./v, master_key: {{provider: pkcs11, module: {}, slot: 0, pin: {PIN}, key_label: m}}}}\n",
            junk.display()
        ),
    )
    .unwrap();
    let e = sealbox::Sealbox::from_config_with(&cfg, &registry())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("junk.so"), "{e}");
    assert!(
        !dir.path().join("v").exists(),
        "no vault is made without its key"
    );
}

#[tokio::test]
async fn a_key_label_or_token_or_slot_that_is_not_there_is_not_found() {
    let Some(hsm) = Hsm::new("not-found") else {
        return;
    };
    let present = Arc::new(Pkcs11MasterKey::create(hsm.config("present")).unwrap());
    let e = Pkcs11MasterKey::open(hsm.config("absent")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("\"absent\""), "{e}");

    // Through YAML, for a vault that exists: NotFound, and no key is generated in its place.
    let vault_dir = hsm.dir.path().join("vault");
    LocalVault::create(&vault_dir, present).await.unwrap();
    let cfg = hsm.yaml(&format!(
        "secrets: {{provider: local, config: {{path: {}, master_key: {{provider: pkcs11, module: {}, token_label: {}, pin: \"{PIN}\", key_label: absent}}}}}}\n",
        vault_dir.display(),
        hsm.module.display(),
        hsm.label
    ));
    let e = sealbox::Sealbox::from_config_with(&cfg, &registry())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(hsm.keys(), vec![("present".to_owned(), false, true)]);

    let mut other_token = hsm.config("present");
    other_token.token = TokenSelector::Label("no-such-token".into());
    let e = Pkcs11MasterKey::open(other_token).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        e.message().contains("\"not-found\""),
        "lists the tokens: {e}"
    );

    let mut broken_slot = hsm.config("present");
    broken_slot.token = TokenSelector::Slot(0xdead_beef);
    let e = Pkcs11MasterKey::open(broken_slot).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("0xdeadbeef"), "{e}");

    // A second create of the same label is refused rather than shadowing the first key.
    let e = Pkcs11MasterKey::create(hsm.config("present")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
}

#[tokio::test]
async fn a_token_removed_mid_run_gives_typed_errors_and_no_panic() {
    let Some(hsm) = Hsm::new("removed") else {
        return;
    };
    Pkcs11MasterKey::create(hsm.config("m")).unwrap();
    let vault_dir = hsm.dir.path().join("vault");
    let vault = LocalVault::create(&vault_dir, hsm.provider("m"))
        .await
        .unwrap();
    vault
        .put(&name("a/b/c"), &secret(b"v"), &PutOptions::default())
        .await
        .unwrap();
    drop(vault);
    let key = hsm.provider("m");
    let vault = LocalVault::open(&vault_dir, key.clone()).await.unwrap();

    hsm.delete_token();

    // A new namespace needs a KEK wrapped in the token; the token is gone.
    let e = vault
        .put(&name("x/y/z"), &secret(b"w"), &PutOptions::default())
        .await
        .unwrap_err();
    eprintln!("put after removal: {e}");
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::NotFound),
        "{:?}: {e}",
        e.kind()
    );
    let e = key.rotate().await.unwrap_err();
    eprintln!("rotate after removal: {e}");
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::NotFound),
        "{:?}: {e}",
        e.kind()
    );
    drop(vault);
    // Opening again: the token is not there.
    let e = Pkcs11MasterKey::open(hsm.config("m")).unwrap_err();
    eprintln!("open after removal: {e}");
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::NotFound),
        "{:?}: {e}",
        e.kind()
    );
}

#[test]
fn a_forked_child_is_refused_before_it_touches_the_token() {
    let Some(hsm) = Hsm::new("fork") else {
        return;
    };
    let key = Pkcs11MasterKey::create(hsm.config("m")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let wrapped = rt.block_on(key.wrap(b"ctx", &secret(&[7u8; 32]))).unwrap();
    // SAFETY: the child polls one future (which answers without waiting: the process check
    // comes first) with a no-op waker, makes no runtime or thread, and leaves with _exit,
    // never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut unwrap = std::pin::pin!(key.unwrap(b"ctx", &wrapped));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let code = match unwrap.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Err(e))
                if e.kind() == sealbox::ErrorKind::Forked
                    && e.message().contains("forked child") =>
            {
                0
            }
            std::task::Poll::Ready(Err(_)) => 2,
            std::task::Poll::Ready(Ok(_)) => 3,
            std::task::Poll::Pending => 4,
        };
        // SAFETY: ends the child at once, without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child crashed: {status:#x}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "2 = another error, 3 = it succeeded, 4 = it waited"
    );
    // The parent still works.
    let back = rt.block_on(key.unwrap(b"ctx", &wrapped)).unwrap();
    assert_eq!(back.expose_secret(), &[7u8; 32]);
}

#[test]
fn wrapped_keys_are_bound_to_their_context_and_fresh_each_time() {
    let Some(hsm) = Hsm::new("context") else {
        return;
    };
    let key = Pkcs11MasterKey::create(hsm.config("m")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let kek = secret(&[9u8; 32]);
    let a = rt.block_on(key.wrap(b"ns=a", &kek)).unwrap();
    let b = rt.block_on(key.wrap(b"ns=a", &kek)).unwrap();
    assert_ne!(a.ciphertext, b.ciphertext, "a fresh IV per wrap");
    assert!(!a.ciphertext.windows(32).any(|w| w == [9u8; 32]));
    let e = rt.block_on(key.unwrap(b"ns=b", &a)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    let mut tampered = a.clone();
    let last = tampered.ciphertext.len() - 1;
    tampered.ciphertext[last] ^= 1;
    let e = rt.block_on(key.unwrap(b"ns=a", &tampered)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    let e = rt
        .block_on(key.unwrap(b"ns=a", &{
            let mut t = a.clone();
            t.ciphertext.truncate(20);
            t
        }))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
}

#[test]
fn threads_share_one_provider_each_on_its_own_session() {
    let Some(hsm) = Hsm::new("threads") else {
        return;
    };
    let key = Pkcs11MasterKey::create(hsm.config("m")).unwrap();
    std::thread::scope(|scope| {
        for t in 0u8..8 {
            let key = &key;
            scope.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                for i in 0u8..40 {
                    let kek = secret(&[t.wrapping_mul(41) ^ i; 32]);
                    let context = [t, i];
                    let w = rt.block_on(key.wrap(&context, &kek)).unwrap();
                    let back = rt.block_on(key.unwrap(&context, &w)).unwrap();
                    assert!(back.ct_eq(&kek), "thread {t}, round {i}");
                }
            });
        }
    });
}
