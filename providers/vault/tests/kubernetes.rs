//! Kubernetes auth against a real Vault whose `kubernetes` auth method points at a local
//! TokenReview stub (the Kubernetes API call Vault makes to check a service-account token).
//! The service-account JWT is signed here with an ES256 key whose public half is configured in
//! Vault (`pem_keys`), so Vault checks the signature as well as asking the stub. The stub
//! accepts only the JWT currently in the pod's token file, as a cluster accepts only live
//! tokens: after the JWT is rotated and the Vault token revoked, the store logs in again with
//! the new JWT, read afresh from the file.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use sealbox::store::{PutOptions, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use sealbox_vault::{AuthConfig, VaultKv};
use support::{VaultServer, name, secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

const REVIEWER_JWT: &str = "reviewer-token-for-vault";

struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Signer {
    fn new() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Signer { key, rng }
    }

    /// The public key as a PEM SubjectPublicKeyInfo, as `pem_keys` wants it.
    fn public_pem(&self) -> String {
        // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING <point> }
        let mut der = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
        der.extend_from_slice(self.key.public_key().as_ref());
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    /// A legacy service-account token for `prod/predis`, numbered so each is distinct.
    fn service_account_jwt(&self, n: u32) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": "kubernetes/serviceaccount",
            "sub": "system:serviceaccount:prod:predis",
            "kubernetes.io/serviceaccount/namespace": "prod",
            "kubernetes.io/serviceaccount/secret.name": format!("predis-token-{n}"),
            "kubernetes.io/serviceaccount/service-account.name": "predis",
            "kubernetes.io/serviceaccount/service-account.uid": "7d2b5c4e-uid",
        });
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let signing_input = format!("{header}.{body}");
        let sig = self.key.sign(&self.rng, signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The TokenReview stub: `POST /apis/authentication.k8s.io/v1/tokenreviews` with the
/// reviewer's bearer token; authenticated only for the JWT in `live`.
struct TokenReview {
    port: u16,
    live: Arc<Mutex<String>>,
    reviews: Arc<AtomicUsize>,
}

impl TokenReview {
    async fn start() -> TokenReview {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let live = Arc::new(Mutex::new(String::new()));
        let reviews = Arc::new(AtomicUsize::new(0));
        let (l, r) = (live.clone(), reviews.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (live, reviews) = (l.clone(), r.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head, body) = loop {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let head = text[..end].to_owned();
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break (head, buf[end + 4..end + 4 + len].to_vec());
                            }
                        }
                    };
                    reviews.fetch_add(1, Ordering::SeqCst);
                    let review: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let token = review["spec"]["token"].as_str().unwrap_or("");
                    let right_path =
                        head.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews ");
                    let reviewer = head.lines().any(|l| {
                        l.to_ascii_lowercase().starts_with("authorization:")
                            && l.ends_with(&format!("Bearer {REVIEWER_JWT}"))
                    });
                    let authenticated =
                        right_path && reviewer && !token.is_empty() && *live.lock().await == token;
                    let answer = serde_json::json!({
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenReview",
                        "status": if authenticated {
                            serde_json::json!({"authenticated": true, "user": {
                                "username": "system:serviceaccount:prod:predis",
                                "uid": "7d2b5c4e-uid",
                                "groups": ["system:serviceaccounts", "system:serviceaccounts:prod"]}})
                        } else {
                            serde_json::json!({"authenticated": false})
                        },
                    })
                    .to_string();
                    let response = format!(
                        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        TokenReview {
            port,
            live,
            reviews,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_login_uses_the_service_account_jwt_and_reads_it_again_after_rotation() {
    let Some(server) = VaultServer::start("kubernetes auth") else {
        return;
    };
    let stub = TokenReview::start().await;
    let signer = Signer::new();
    let dir = server.home.path();
    let pem = dir.join("sa.pub.pem");
    std::fs::write(&pem, signer.public_pem()).unwrap();
    let policy = dir.join("rw.hcl");
    std::fs::write(&policy, include_str!("../policies/sealbox-rw.hcl")).unwrap();
    server.must(&["policy", "write", "sealbox-rw", policy.to_str().unwrap()]);
    server.must(&["auth", "enable", "kubernetes"]);
    server.must(&[
        "write",
        "auth/kubernetes/config",
        &format!("kubernetes_host=http://127.0.0.1:{}", stub.port),
        &format!("token_reviewer_jwt={REVIEWER_JWT}"),
        &format!("pem_keys=@{}", pem.display()),
        "disable_local_ca_jwt=true",
    ]);
    server.must(&[
        "write",
        "auth/kubernetes/role/predis",
        "bound_service_account_names=predis",
        "bound_service_account_namespaces=prod",
        "token_policies=sealbox-rw",
        "token_ttl=1h",
    ]);

    let jwt_file = dir.join("token");
    let first = signer.service_account_jwt(1);
    std::fs::write(&jwt_file, &first).unwrap();
    *stub.live.lock().await = first;
    let mut config = server.config("app");
    config.auth = Some(AuthConfig::Kubernetes {
        role: "predis".into(),
        jwt_file: Some(jwt_file.clone()),
        mount: None,
    });
    let store = VaultKv::connect(&config).await.unwrap();
    assert_eq!(
        stub.reviews.load(Ordering::SeqCst),
        1,
        "Vault asked TokenReview"
    );
    let n = name("svc/api-key");
    store
        .put(&n, &secret(b"k8s-1"), &PutOptions::default())
        .await
        .unwrap();

    // The kubelet rotates the JWT (the old one is no longer live), and the Vault token is
    // revoked: the next call logs in again with the JWT read afresh from the file.
    let second = signer.service_account_jwt(2);
    std::fs::write(&jwt_file, &second).unwrap();
    *stub.live.lock().await = second;
    let generation = store.session().generation();
    server.must(&["token", "revoke", "-mode=path", "auth/kubernetes"]);
    let got = store.get(&n, &VersionSelector::Current).await.unwrap();
    assert_eq!(got.value.expose_secret(), b"k8s-1");
    assert!(store.session().generation() > generation);
    assert_eq!(stub.reviews.load(Ordering::SeqCst), 2);

    // A JWT the cluster no longer accepts: login fails with AccessDenied and Vault's text.
    std::fs::write(&jwt_file, signer.service_account_jwt(1)).unwrap();
    let err = VaultKv::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert!(
        err.message()
            .contains("kubernetes login on auth/kubernetes/login failed"),
        "{err}"
    );
    // Vault hides why a Kubernetes login failed; its text is all there is.
    assert!(
        err.message().contains("permission denied"),
        "Vault's own text: {err}"
    );
    // A JWT signed by another key is refused by Vault before any TokenReview.
    let reviews = stub.reviews.load(Ordering::SeqCst);
    std::fs::write(&jwt_file, Signer::new().service_account_jwt(2)).unwrap();
    let err = VaultKv::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert_eq!(stub.reviews.load(Ordering::SeqCst), reviews);
}
