//! Authentication as Key Vault does it: the challenge, the token from Entra ID, refusals.

mod support;

use sealbox::ErrorKind;
use sealbox::store::{PutOptions, SecretStore, VersionSelector};
use sealbox_azure::{AzureConfig, AzureKeyVault, CredentialConfig};
use support::{name, secret};

#[tokio::test]
async fn the_sdk_answers_the_challenge_with_a_token_from_the_configured_principal() {
    let local = support::start().await;
    let store = local.store("").await;
    store
        .put(&name("a/b"), &secret(b"v"), &PutOptions::default())
        .await
        .unwrap();
    let log = local.server.log();
    // First the unauthenticated probe the challenge answers, then the token, then the call.
    assert_eq!(log[0].1, "/secrets/a--b/versions", "{log:?}");
    assert!(log[1].1.ends_with("/oauth2/v2.0/token"), "{log:?}");
    assert_eq!(log[2].1, "/secrets/a--b/versions", "{log:?}");
}

#[tokio::test]
async fn a_wrong_client_secret_is_access_denied_and_never_echoed() {
    let local = support::start().await;
    std::fs::write(local.dir.path().join("wrong"), "not-the-secret-xyzzy").unwrap();
    let config = AzureConfig {
        credential: Some(CredentialConfig::ClientSecret {
            tenant_id: local.server.tenant(),
            client_id: support::CLIENT_ID.into(),
            client_secret_file: Some(local.dir.path().join("wrong")),
            client_secret_env: None,
            authority_host: Some(local.server.authority_host()),
        }),
        ..local.config()
    };
    let store = AzureKeyVault::connect(&config).await.unwrap();
    let err = store
        .get(&name("a"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert!(!format!("{err} {err:?}").contains("xyzzy"), "{err:?}");
}

#[tokio::test]
async fn a_server_certificate_the_client_does_not_trust_is_refused() {
    let local = support::start().await;
    let config = AzureConfig {
        ca_file: None,
        ..local.config()
    };
    let store = AzureKeyVault::connect(&config).await.unwrap();
    let err = store
        .get(&name("a"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(local.server.log().len(), 0, "no request got through TLS");
}

#[tokio::test]
async fn an_api_version_the_vault_does_not_know_is_refused_as_invalid_input() {
    let local = support::start().await;
    let config = AzureConfig {
        api_version: Some("1999-01-01".into()),
        ..local.config()
    };
    let store = AzureKeyVault::connect(&config).await.unwrap();
    let err = store
        .get(&name("a"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("1999-01-01"), "{err}");
    assert!(err.provider_request_id().is_some(), "{err:?}");
}
