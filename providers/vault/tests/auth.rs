//! Login, renewal and re-login against a real Vault: AppRole with short TTLs (renewed before
//! they end, a new login when the max TTL caps renewal, a new login after the token is
//! revoked mid-run), a token file that Vault Agent would rewrite, a fixed token that is
//! revoked, and failed logins. Every store here runs under the least-privilege read-write
//! policy of the provider README, not as root.

mod support;

use std::time::{Duration, Instant};

use sealbox::store::{PutOptions, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use sealbox_vault::{AuthConfig, VaultKv};
use support::{VaultServer, name, secret};

/// The README's read-write policy for a store with `prefix: app` on `secret/`.
const RW_POLICY: &str = include_str!("../policies/sealbox-rw.hcl");

fn setup_policy(server: &VaultServer) {
    let file = server.home.path().join("sealbox-rw.hcl");
    std::fs::write(&file, RW_POLICY).unwrap();
    server.must(&["policy", "write", "sealbox-rw", file.to_str().unwrap()]);
}

/// An AppRole `app` with the policy and the TTLs given; writes its secret id to a file.
fn approle(server: &VaultServer, ttl: &str, max_ttl: &str) -> (String, std::path::PathBuf) {
    setup_policy(server);
    let _ = server.cli(&["auth", "enable", "approle"]);
    server.must(&[
        "write",
        "auth/approle/role/app",
        "token_policies=sealbox-rw",
        &format!("token_ttl={ttl}"),
        &format!("token_max_ttl={max_ttl}"),
    ]);
    let role_id = server.must(&["read", "-field=role_id", "auth/approle/role/app/role-id"]);
    let secret_id = server.must(&[
        "write",
        "-f",
        "-field=secret_id",
        "auth/approle/role/app/secret-id",
    ]);
    let file = server.home.path().join("secret-id");
    std::fs::write(&file, format!("{}\n", secret_id.trim())).unwrap();
    (role_id.trim().to_owned(), file)
}

async fn approle_store(server: &VaultServer, role_id: &str, file: &std::path::Path) -> VaultKv {
    let mut config = server.config("app");
    config.auth = Some(AuthConfig::Approle {
        role_id: role_id.to_owned(),
        secret_id: None,
        secret_id_file: Some(file.to_owned()),
        mount: None,
    });
    VaultKv::connect(&config).await.unwrap()
}

async fn round_trip(store: &VaultKv, value: &[u8]) {
    let n = name("svc/token");
    store
        .put(&n, &secret(value), &PutOptions::default())
        .await
        .unwrap();
    let got = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), value);
}

async fn sleep_until(start: Instant, at: Duration) {
    if let Some(left) = at.checked_sub(start.elapsed()) {
        tokio::time::sleep(left).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_tokens_are_renewed_before_their_ttl_and_replaced_near_their_max_ttl() {
    let Some(server) = VaultServer::start("approle renewal") else {
        return;
    };
    let (role_id, file) = approle(&server, "6s", "9s");
    let start = Instant::now();
    let store = approle_store(&server, &role_id, &file).await;
    let first = store.session().generation();
    // A call every 250 ms for 11 s, noting when each succeeded and under which login.
    let mut seen = Vec::new();
    let mut i = 0u32;
    while start.elapsed() < Duration::from_secs(11) {
        round_trip(&store, format!("v{i}").as_bytes()).await;
        seen.push((start.elapsed(), store.session().generation()));
        i += 1;
        sleep_until(start, Duration::from_millis(250) * i).await;
    }
    // Past the first token's 6 s TTL, calls still succeeded on that same token: renewed.
    assert!(
        seen.iter()
            .any(|(t, g)| *t > Duration::from_millis(6300) && *g == first),
        "no call on the first token after its TTL: {seen:?}"
    );
    // Near its 9 s max TTL, renewal is capped: the session logged in again, and calls after
    // the first token's end succeeded on the new one.
    assert!(
        seen.iter()
            .any(|(t, g)| *t > Duration::from_millis(9500) && *g > first),
        "no new login near the max TTL: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(t, g)| *t < Duration::from_millis(9000) || *g > first),
        "a call after the max TTL used the first token: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_mid_run_is_replaced_by_a_new_approle_login() {
    let Some(server) = VaultServer::start("approle revocation") else {
        return;
    };
    let (role_id, file) = approle(&server, "1h", "2h");
    let store = approle_store(&server, &role_id, &file).await;
    round_trip(&store, b"before").await;
    let before = store.session().generation();
    // Every token AppRole issued, ours included.
    server.must(&["token", "revoke", "-mode=path", "auth/approle"]);
    round_trip(&store, b"after").await;
    assert!(
        store.session().generation() > before,
        "a new login happened"
    );

    // A policy denial is not a revoked token: no new login, AccessDenied with Vault's text.
    let generation = store.session().generation();
    let mut outside = server.config("not-app");
    outside.auth = Some(AuthConfig::Approle {
        role_id: role_id.clone(),
        secret_id: None,
        secret_id_file: Some(file.clone()),
        mount: None,
    });
    let denied = VaultKv::connect(&outside).await.unwrap();
    let err = denied
        .get(&name("x"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert!(err.message().contains("permission denied"), "{err}");
    assert_eq!(store.session().generation(), generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_login_is_access_denied_with_vaults_text_and_no_secret_id() {
    let Some(server) = VaultServer::start("failed login") else {
        return;
    };
    let (role_id, file) = approle(&server, "1h", "2h");
    std::fs::write(&file, "not-the-secret-id-xyzzy\n").unwrap();
    let mut config = server.config("app");
    config.auth = Some(AuthConfig::Approle {
        role_id,
        secret_id: None,
        secret_id_file: Some(file),
        mount: None,
    });
    let err = VaultKv::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert!(
        err.message()
            .contains("approle login on auth/approle/login failed"),
        "{err}"
    );
    assert!(err.message().contains("invalid"), "Vault's own text: {err}");
    assert!(!format!("{err} {err:?}").contains("xyzzy"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_is_read_again_when_vault_refuses_the_token() {
    let Some(server) = VaultServer::start("token file") else {
        return;
    };
    setup_policy(&server);
    let token = |server: &VaultServer| {
        server
            .must(&[
                "token",
                "create",
                "-policy=sealbox-rw",
                "-ttl=1h",
                "-field=token",
            ])
            .trim()
            .to_owned()
    };
    let first = token(&server);
    let file = server.home.path().join("token");
    std::fs::write(&file, &first).unwrap();
    let mut config = server.config("app");
    config.auth = Some(AuthConfig::Token {
        token: None,
        token_file: Some(file.clone()),
    });
    let store = VaultKv::connect(&config).await.unwrap();
    round_trip(&store, b"one").await;
    // Vault Agent renders a new token and the old one is revoked.
    std::fs::write(&file, token(&server)).unwrap();
    server.must(&["token", "revoke", &first]);
    round_trip(&store, b"two").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_token_that_is_revoked_fails_with_access_denied() {
    let Some(server) = VaultServer::start("fixed token") else {
        return;
    };
    setup_policy(&server);
    let token = server
        .must(&["token", "create", "-policy=sealbox-rw", "-field=token"])
        .trim()
        .to_owned();
    let mut config = server.config("app");
    config.auth = Some(AuthConfig::Token {
        token: Some(token.clone()),
        token_file: None,
    });
    let store = VaultKv::connect(&config).await.unwrap();
    round_trip(&store, b"ok").await;
    server.must(&["token", "revoke", &token]);
    let err = store
        .get(&name("svc/token"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert!(!err.to_string().contains(&token), "{err}");
    // A token Vault does not know is refused at connect.
    config.auth = Some(AuthConfig::Token {
        token: Some(token.clone()),
        token_file: None,
    });
    let err = VaultKv::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert!(!err.to_string().contains(&token), "{err}");
}
