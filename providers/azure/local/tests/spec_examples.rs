//! The local Key Vault against Microsoft's own examples (`tests/spec_examples/`, copied from
//! `Azure/azure-rest-api-specs`, see the README there): each example's request, replayed after
//! the state it presumes is set up, must get the example's status and a body with every field
//! of the example's, of the same JSON type, with ids of the same shape and, for fields that do
//! not depend on randomness or the clock, the same value.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sealbox_azure_local::{LocalKeyVault, Request, Response};
use serde_json::{Value, json};

const EXAMPLE_HOST: &str = "https://myvault.vault.azure.net";

fn example(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/spec_examples")
        .join(file);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn request(method: &str, path: &str, query: &[(&str, &str)], body: Option<&Value>) -> Request {
    let mut q: Vec<(String, String)> = vec![("api-version".into(), "7.5".into())];
    q.extend(
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Request {
        method: method.into(),
        path: path.into(),
        query: q,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default(),
    }
}

/// `https://HOST/secrets/NAME/<32 hex>` with the host and any 32-hex segment made generic.
fn shape(s: &str, base: &str) -> String {
    let s = s.replace(EXAMPLE_HOST, "HOST").replace(base, "HOST");
    s.split('/')
        .map(|seg| {
            if seg.len() == 32 && seg.bytes().all(|b| b.is_ascii_hexdigit()) {
                "<version>"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Checks `ours` against `expected`; `random` names fields whose values are the service's own
/// (ids, keys, ciphertexts), compared by shape or type only.
fn conforms(expected: &Value, ours: &Value, at: &str, base: &str, random: &[&str]) {
    match (expected, ours) {
        (Value::Object(e), Value::Object(o)) => {
            for (k, ev) in e {
                let ov = o
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}.{k} missing from {ours}"));
                conforms(ev, ov, &format!("{at}.{k}"), base, random);
            }
        }
        (Value::Array(e), Value::Array(o)) => {
            assert_eq!(e.is_empty(), o.is_empty(), "{at}: {ours}");
            if let (Some(e0), Some(o0)) = (e.first(), o.first()) {
                conforms(e0, o0, &format!("{at}[0]"), base, random);
            }
            if e.iter().all(Value::is_string) {
                assert_eq!(e, o, "{at}");
            }
        }
        (Value::String(e), Value::String(o)) => {
            let field = at.rsplit('.').next().unwrap_or_default();
            if field == "nextLink" {
                assert!(o.starts_with(base), "{at}: {o}");
                assert!(o.contains("$skiptoken="), "{at}: {o}");
            } else if matches!(field, "id" | "kid" | "recoveryId") {
                assert_eq!(shape(e, base), shape(o, base), "{at}");
            } else if random.contains(&field) {
                assert_eq!(e.len(), o.len(), "{at}: same length");
            } else {
                assert_eq!(e, o, "{at}");
            }
        }
        (Value::Number(_), Value::Number(_)) => {}
        (Value::Bool(e), Value::Bool(o)) => assert_eq!(e, o, "{at}"),
        _ => panic!("{at}: expected {expected}, got {ours}"),
    }
}

fn check(server: &LocalKeyVault, file: &str, got: &Response, random: &[&str]) {
    check_against(server, file, &example(file), got, random);
}

fn check_against(server: &LocalKeyVault, file: &str, ex: &Value, got: &Response, random: &[&str]) {
    let (status, body) = ex["responses"].as_object().unwrap().iter().next().unwrap();
    assert_eq!(
        got.status.to_string(),
        *status,
        "{file}: {}",
        got.body_json()
    );
    assert!(
        got.headers.iter().any(|(k, _)| k == "x-ms-request-id"),
        "{file}: no request id"
    );
    if let Some(expected) = body.get("body") {
        let base = server.vault_url();
        conforms(
            expected,
            &got.body_json(),
            file,
            base.trim_end_matches('/'),
            random,
        );
    }
}

fn version_of(r: &Response) -> String {
    let v = r.body_json();
    let id = v["id"]
        .as_str()
        .or(v["key"]["kid"].as_str())
        .unwrap()
        .to_owned();
    id.rsplit('/').next().unwrap().to_owned()
}

async fn server() -> LocalKeyVault {
    let s = LocalKeyVault::start().await;
    s.allow_anonymous();
    s
}

fn params(file: &str) -> Value {
    example(file)["parameters"]["parameters"].clone()
}

#[tokio::test]
async fn secret_examples_set_get_update_and_list_versions() {
    let s = server().await;
    let set = s.handle(&request(
        "PUT",
        "/secrets/crpsecret",
        &[],
        Some(&params("SetSecret-example.json")),
    ));
    check(&s, "SetSecret-example.json", &set, &[]);

    let put = s.handle(&request(
        "PUT",
        "/secrets/mysecretname",
        &[],
        Some(&json!({"value": "mysecretvalue"})),
    ));
    let get = s.handle(&request(
        "GET",
        &format!("/secrets/mysecretname/{}", version_of(&put)),
        &[],
        None,
    ));
    check(&s, "GetSecret-example.json", &get, &[]);

    let update = s.handle(&request(
        "PATCH",
        &format!("/secrets/crpsecret/{}", version_of(&set)),
        &[],
        Some(&params("UpdateSecret-example.json")),
    ));
    check(&s, "UpdateSecret-example.json", &update, &[]);

    for _ in 0..2 {
        s.handle(&request(
            "PUT",
            "/secrets/listsecretversionstest",
            &[],
            Some(&json!({"value": "v"})),
        ));
    }
    let versions = s.handle(&request(
        "GET",
        "/secrets/listsecretversionstest/versions",
        &[("maxresults", "1")],
        None,
    ));
    check(&s, "GetSecretVersions-example.json", &versions, &[]);
}

#[tokio::test]
async fn the_secrets_list_example_pages_with_a_next_link() {
    let s = server().await;
    for name in ["listsecrettest0", "listsecrettest1"] {
        s.handle(&request(
            "PUT",
            &format!("/secrets/{name}"),
            &[],
            Some(&json!({"value": "v", "contentType": "plainText"})),
        ));
    }
    let list = s.handle(&request("GET", "/secrets", &[("maxresults", "1")], None));
    check(&s, "GetSecrets-example.json", &list, &[]);
}

#[tokio::test]
async fn deletion_examples_delete_get_deleted_recover_and_purge() {
    let s = server().await;
    let put = |name: &str| {
        s.handle(&request(
            "PUT",
            &format!("/secrets/{name}"),
            &[],
            Some(&json!({"value": "v"})),
        ))
    };
    put("GetDeletedSecretTest");
    let deleted = s.handle(&request(
        "DELETE",
        "/secrets/GetDeletedSecretTest",
        &[],
        None,
    ));
    check(&s, "DeleteSecret-example.json", &deleted, &[]);
    let got = s.handle(&request(
        "GET",
        "/deletedsecrets/GetDeletedSecretTest",
        &[],
        None,
    ));
    check(&s, "GetDeletedSecret-example.json", &got, &[]);

    put("SecretCreateDeleteRecoverPurgeTest");
    s.handle(&request(
        "DELETE",
        "/secrets/SecretCreateDeleteRecoverPurgeTest",
        &[],
        None,
    ));
    let recovered = s.handle(&request(
        "POST",
        "/deletedsecrets/SecretCreateDeleteRecoverPurgeTest/recover",
        &[],
        None,
    ));
    check(&s, "RecoverDeletedSecret-example.json", &recovered, &[]);

    put("testsecret");
    s.handle(&request("DELETE", "/secrets/testsecret", &[], None));
    let purged = s.handle(&request("DELETE", "/deletedsecrets/testsecret", &[], None));
    check(&s, "PurgeDeletedSecret-example.json", &purged, &[]);
    assert!(purged.body.is_empty());
}

#[tokio::test]
async fn key_examples_create_rotate_and_wrap_with_a_real_rsa_key() {
    let s = server().await;
    let created = s.handle(&request(
        "POST",
        "/keys/CreateSoftKeyTest/create",
        &[],
        Some(&params("CreateKey-example.json")),
    ));
    check(&s, "CreateKey-example.json", &created, &["n"]);

    // Rotation keeps type, operations and tags; the example's kid names another key (an
    // error in the published example), so only its shape is compared.
    s.handle(&request(
        "POST",
        "/keys/Key01/create",
        &[],
        Some(&params("CreateKey-example.json")),
    ));
    let rotated = s.handle(&request("POST", "/keys/Key01/rotate", &[], None));
    let mut expected = example("RotateKey-example.json");
    expected["responses"]["200"]["body"]["key"]["kid"] =
        json!("https://myvault.vault.azure.net/keys/Key01/78deebed173b48e48f55abf87ed4cf71");
    check_against(&s, "RotateKey-example.json", &expected, &rotated, &["n"]);
    assert_ne!(version_of(&rotated), version_of(&created));

    let key = s.handle(&request(
        "POST",
        "/keys/sdktestkey/create",
        &[],
        Some(&json!({"kty": "RSA", "key_size": 2048})),
    ));
    let version = version_of(&key);
    let wrap_params = params("wrapKey-example.json");
    let wrapped = s.handle(&request(
        "POST",
        &format!("/keys/sdktestkey/{version}/wrapkey"),
        &[],
        Some(&wrap_params),
    ));
    check(&s, "wrapKey-example.json", &wrapped, &["value"]);
    // The wrapped value unwraps to the example's plaintext with the same key version.
    let unwrapped = s.handle(&request(
        "POST",
        &format!("/keys/sdktestkey/{version}/unwrapkey"),
        &[],
        Some(&json!({"alg": "RSA1_5", "value": wrapped.body_json()["value"]})),
    ));
    assert_eq!(unwrapped.status, 200, "{}", unwrapped.body_json());
    assert_eq!(unwrapped.body_json()["value"], wrap_params["value"]);
}

#[tokio::test]
async fn rsa_oaep_256_wraps_with_one_version_and_only_that_version_unwraps() {
    let s = server().await;
    let v1 = version_of(&s.handle(&request(
        "POST",
        "/keys/master/create",
        &[],
        Some(&json!({"kty": "RSA", "key_size": 2048, "key_ops": ["wrapKey", "unwrapKey"]})),
    )));
    let kek = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let wrap = |v: &str| {
        s.handle(&request(
            "POST",
            &format!("/keys/master/{v}/wrapkey"),
            &[],
            Some(&json!({"alg": "RSA-OAEP-256", "value": kek})),
        ))
    };
    let unwrap = |v: &str, value: &Value| {
        s.handle(&request(
            "POST",
            &format!("/keys/master/{v}/unwrapkey"),
            &[],
            Some(&json!({"alg": "RSA-OAEP-256", "value": value})),
        ))
    };
    let w1 = wrap(&v1).body_json()["value"].clone();
    let v2 = version_of(&s.handle(&request("POST", "/keys/master/rotate", &[], None)));
    assert_ne!(v1, v2);
    // The old version still unwraps what it wrapped; the new one cannot.
    assert_eq!(unwrap(&v1, &w1).body_json()["value"], json!(kek));
    let wrong = unwrap(&v2, &w1);
    assert_eq!(wrong.status, 400, "{}", wrong.body_json());
    assert_eq!(wrong.body_json()["error"]["code"], "BadParameter");
    // An operation the key does not allow is Forbidden, as on the service.
    let sign_only = s.handle(&request(
        "POST",
        "/keys/signer/create",
        &[],
        Some(&json!({"kty": "RSA", "key_ops": ["sign"]})),
    ));
    let denied = s.handle(&request(
        "POST",
        &format!("/keys/signer/{}/wrapkey", version_of(&sign_only)),
        &[],
        Some(&json!({"alg": "RSA-OAEP-256", "value": kek})),
    ));
    assert_eq!(denied.status, 403);
}

#[tokio::test]
async fn errors_use_key_vaults_body_and_status_codes() {
    let s = server().await;
    let missing = s.handle(&request("GET", "/secrets/nope", &[], None));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body_json()["error"]["code"], "SecretNotFound");
    let bad_name = s.handle(&request(
        "PUT",
        "/secrets/bad_name",
        &[],
        Some(&json!({"value": "v"})),
    ));
    assert_eq!(bad_name.status, 400);
    assert_eq!(bad_name.body_json()["error"]["code"], "BadParameter");
    s.handle(&request(
        "PUT",
        "/secrets/gone",
        &[],
        Some(&json!({"value": "v"})),
    ));
    s.handle(&request("DELETE", "/secrets/gone", &[], None));
    let reuse = s.handle(&request(
        "PUT",
        "/secrets/gone",
        &[],
        Some(&json!({"value": "v"})),
    ));
    assert_eq!(reuse.status, 409);
    assert_eq!(
        reuse.body_json()["error"]["innererror"]["code"],
        "ObjectIsDeletedButRecoverable"
    );
    let disabled = s.handle(&request(
        "PUT",
        "/secrets/off",
        &[],
        Some(&json!({"value": "v", "attributes": {"enabled": false}})),
    ));
    let read = s.handle(&request(
        "GET",
        &format!("/secrets/off/{}", version_of(&disabled)),
        &[],
        None,
    ));
    assert_eq!(read.status, 403);
    assert_eq!(
        read.body_json()["error"]["innererror"]["code"],
        "SecretDisabled"
    );
    let mut no_version = request("GET", "/secrets/off", &[], None);
    no_version.query.clear();
    let refused = s.handle(&no_version);
    assert_eq!(refused.status, 400);
}

#[tokio::test]
async fn a_call_without_a_token_gets_the_bearer_challenge() {
    let s = LocalKeyVault::start().await;
    let r = s.handle(&request("GET", "/secrets/x", &[], None));
    assert_eq!(r.status, 401);
    let challenge = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        challenge.starts_with("Bearer authorization=\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("resource=\"https://vault.azure.net\""),
        "{challenge}"
    );
    assert_eq!(r.body_json()["error"]["code"], "Unauthorized");
}
