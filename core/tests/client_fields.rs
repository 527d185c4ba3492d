//! `get_fields`: a structured credential (several fields of one JSON secret) read with one
//! store call or cache hit and one audit event, each field in its own locked handle, and
//! errors that name a field but never show a value.

use std::sync::{Arc, Mutex};

use sealbox::audit::{AuditKey, AuditLog};
use sealbox::store::memory::MemoryStore;
use sealbox::{ErrorKind, ExposeSecret, Principal, Sealbox, Secret};

const CREDS: &str = r#"{"access_key_id":"AKIA-EXAMPLE","secret_access_key":"SK-never-shown-42","session_token":"TOKEN-never-shown-43","port":9440}"#;

fn secret(v: &str) -> Secret {
    Secret::from_mut_slice(&mut v.as_bytes().to_vec()).unwrap()
}

/// A client without a cache (every read is a store call) auditing into `lines`.
fn client(lines: &Arc<Mutex<Vec<String>>>) -> Sealbox {
    let sink = lines.clone();
    let mut raw = [9u8; 32];
    let key = AuditKey::new(&Secret::from_mut_slice(&mut raw).unwrap()).unwrap();
    Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .no_cache()
        .audit(AuditLog::builder().key(key).callback(move |r| {
            sink.lock().unwrap().push(r.line.to_owned());
            Ok(())
        }))
        .principal(Principal::new("svc:app"))
        .build()
        .unwrap()
}

#[tokio::test]
async fn several_fields_come_from_one_store_read_each_in_its_own_locked_handle() {
    let lines = Arc::default();
    let c = client(&lines);
    c.put("app/aws", &secret(CREDS)).await.unwrap();
    let before = c.metrics();
    let fields = c
        .get_fields(
            "app/aws",
            &[
                "secret_access_key",
                "access_key_id",
                "session_token",
                "port",
            ],
        )
        .await
        .unwrap();
    let after = c.metrics();
    assert_eq!(
        after.latency_count - before.latency_count,
        1,
        "one store call"
    );
    assert_eq!(after.gets - before.gets, 1, "one read");
    c.flush_audit().await.unwrap();
    let reads = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("\"secret.read\""))
        .count();
    assert_eq!(reads, 1, "one audit event for the whole credential");

    let values: Vec<&[u8]> = fields.iter().map(|h| h.expose_secret()).collect();
    assert_eq!(
        values,
        [
            &b"SK-never-shown-42"[..],
            b"AKIA-EXAMPLE",
            b"TOKEN-never-shown-43",
            b"9440"
        ]
    );
    for h in &fields {
        assert!(h.secret().is_locked());
        assert_eq!(h.name().as_str(), "app/aws");
        assert_eq!(h.version(), fields[0].version());
    }
    // Each field has its own buffer: no handle sees the whole document.
    let whole = c.get("app/aws").await.unwrap();
    for h in &fields {
        assert_ne!(h.expose_secret().as_ptr(), whole.expose_secret().as_ptr());
        assert!(h.expose_secret().len() < whole.expose_secret().len());
    }
}

#[test]
fn the_blocking_facade_reads_fields_from_the_cache_too() {
    let c = Sealbox::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap()
        .blocking()
        .unwrap();
    c.put("app/aws", &secret(CREDS)).unwrap();
    c.get("app/aws").unwrap();
    let hits = c.client().metrics().hits;
    let f = c
        .get_fields("app/aws", &["access_key_id", "session_token"])
        .unwrap();
    assert_eq!(c.client().metrics().hits, hits + 1, "a cache hit");
    assert_eq!(f[0].expose_secret(), b"AKIA-EXAMPLE");
    assert_eq!(f[1].expose_secret(), b"TOKEN-never-shown-43");
}

#[tokio::test]
async fn a_missing_field_or_a_non_json_secret_is_a_typed_error_without_any_value() {
    let lines = Arc::default();
    let c = client(&lines);
    c.put("app/aws", &secret(CREDS)).await.unwrap();
    c.put("app/plain", &secret("plain-never-shown-44"))
        .await
        .unwrap();

    let missing = c
        .get_fields("app/aws", &["access_key_id", "region", "secret_access_key"])
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(missing.message().contains("`region`"), "{missing}");

    let not_json = c.get_fields("app/plain", &["password"]).await.unwrap_err();
    assert_eq!(not_json.kind(), ErrorKind::InvalidInput);

    let nothing_asked = c.get_fields("app/aws", &[]).await.unwrap_err();
    assert_eq!(nothing_asked.kind(), ErrorKind::InvalidInput);

    for e in [&missing, &not_json, &nothing_asked] {
        let shown = format!("{e} {e:?}");
        for value in ["AKIA", "never-shown"] {
            assert!(!shown.contains(value), "{shown}");
        }
    }
}
