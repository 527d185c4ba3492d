//! Client: routing across named stores, references, listing, principals, metrics, alerts.

use std::sync::{Arc, Mutex};

use sealbox::monitor::{AlertKind, MonitorConfig};
use sealbox::policy::{Capability, Policy, Rule};
use sealbox::store::memory::MemoryStore;
use sealbox::store::{PutOptions, SecretName, SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Principal, Sealbox, Secret};

fn secret(v: &str) -> Secret {
    Secret::from_mut_slice(&mut v.as_bytes().to_vec()).unwrap()
}

async fn seeded(names: &[(&str, &str)]) -> Arc<MemoryStore> {
    let s = Arc::new(MemoryStore::new());
    for (n, v) in names {
        s.put(
            &SecretName::new(*n).unwrap(),
            &secret(v),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    }
    s
}

#[tokio::test]
async fn names_route_by_prefix_and_references_pick_a_store() {
    let main = seeded(&[
        ("predis/staging/db", "main-staging"),
        ("predis/prod/db", "main-prod"),
    ])
    .await;
    let aws = seeded(&[("predis/prod/db", "aws-prod")]).await;
    let c = Sealbox::builder()
        .named_store("main", main.clone())
        .named_store("aws", aws.clone())
        .route("predis/prod", "aws")
        .default_store("main")
        .build()
        .unwrap();
    let v = |h: sealbox::SecretHandle| String::from_utf8(h.expose_secret().to_vec()).unwrap();
    assert_eq!(v(c.get("predis/prod/db").await.unwrap()), "aws-prod");
    assert_eq!(v(c.get("predis/staging/db").await.unwrap()), "main-staging");
    assert_eq!(
        v(c.get("sb://main/predis/prod/db").await.unwrap()),
        "main-prod"
    );
    assert_eq!(
        c.get("sb://main/predis/prod/db").await.unwrap().store(),
        "main"
    );
    assert_eq!(
        c.get("sb://gcp/predis/prod/db").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        c.get("../etc/passwd").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        c.get("predis/prod/db#password").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    // writes go where reads come from
    c.put("predis/prod/new", &secret("n")).await.unwrap();
    assert!(
        aws.describe(&SecretName::new("predis/prod/new").unwrap())
            .await
            .is_ok()
    );
    assert!(
        main.describe(&SecretName::new("predis/prod/new").unwrap())
            .await
            .is_err()
    );
    // listing merges the stores a prefix spans, each name from the store it routes to
    let names: Vec<String> = c
        .list("predis/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(
        names,
        vec!["predis/prod/db", "predis/prod/new", "predis/staging/db"]
    );
    let names: Vec<String> = c
        .list("sb://main/predis/prod")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, vec!["predis/prod/db"]);
}

#[tokio::test]
async fn versions_describe_and_principals() {
    let s = seeded(&[("app/key", "v1")]).await;
    let c = Sealbox::builder()
        .store(s)
        .principal(Principal::new("svc:a"))
        .build()
        .unwrap();
    let first = c.get("app/key").await.unwrap().version().clone();
    c.put("app/key", &secret("v2")).await.unwrap();
    let old = c
        .get_version("app/key", &VersionSelector::Version(first.clone()))
        .await
        .unwrap();
    assert_eq!(old.expose_secret(), b"v1");
    assert_eq!(c.get("app/key").await.unwrap().expose_secret(), b"v2");
    let meta = c.describe("app/key").await.unwrap();
    assert_eq!(meta.versions.len(), 2);
    assert_eq!(c.principal().as_str(), "svc:a");
    assert_eq!(
        c.as_principal(Principal::new("svc:b")).principal().as_str(),
        "svc:b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_access_bursts_reach_hooks_and_the_audit_log() {
    let s = seeded(&[("app/key", "v1")]).await;
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (a, l) = (alerts.clone(), lines.clone());
    let c = Sealbox::builder()
        .store(s)
        .policy(Policy::new(vec![
            Rule::allow(&["svc:ok"], &[Capability::Read], &["app/*"]).unwrap(),
        ]))
        .monitor(MonitorConfig {
            failed_burst: 5,
            ..MonitorConfig::default()
        })
        .alert_hook(move |alert| a.lock().unwrap().push(alert.clone()))
        .audit(sealbox::audit::AuditLog::builder().callback(move |r| {
            l.lock().unwrap().push(r.line.to_owned());
            Ok(())
        }))
        .principal(Principal::new("svc:eve"))
        .build()
        .unwrap();
    for _ in 0..6 {
        assert_eq!(
            c.get("app/key").await.unwrap_err().kind(),
            ErrorKind::AccessDenied
        );
    }
    c.flush_audit().await.unwrap();
    // Hooks run on their own thread, after the alert is logged.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while alerts.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let alerts = alerts.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, AlertKind::FailedAccessBurst);
    assert_eq!(alerts[0].principal.as_str(), "svc:eve");
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 7, "6 denies and 1 alert");
    assert!(
        lines[5].contains("\"event\":\"alert.failed_burst\""),
        "{}",
        lines[5]
    );
    assert!(lines[5].contains("\"level\":\"alert\""));
    assert_eq!(c.metrics().alerts, 1);
    assert_eq!(c.metrics().denies, 6);
}

#[tokio::test]
async fn metrics_render_as_prometheus_text() {
    let s = seeded(&[("app/key", "v1")]).await;
    let c = Sealbox::builder().store(s).build().unwrap();
    c.get("app/key").await.unwrap();
    c.get("app/key").await.unwrap();
    assert_eq!(
        c.get("app/none").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let text = c.render_prometheus();
    assert!(text.contains("sealbox_gets_total 3\n"), "{text}");
    assert!(text.contains("sealbox_cache_hits_total 1\n"), "{text}");
    assert!(text.contains("sealbox_cache_misses_total 1\n"), "{text}");
    assert!(
        text.contains("sealbox_store_errors_total{kind=\"not_found\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("sealbox_store_latency_seconds_count 2"),
        "{text}"
    );
    c.publish_metrics();
}

#[test]
fn a_config_without_stores_cannot_build() {
    let e = Sealbox::builder().build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn a_put_without_any_stage_is_refused_and_writes_nothing() {
    let store = seeded(&[("app/db", "v1")]).await;
    let c = Sealbox::builder().store(store.clone()).build().unwrap();
    let options = PutOptions {
        stages: vec![],
        ..PutOptions::default()
    };
    let e = c
        .put_with("app/db", &secret("v2"), &options)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = c
        .put_with("app/new", &secret("v"), &options)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let meta = store
        .describe(&SecretName::new("app/db").unwrap())
        .await
        .unwrap();
    assert_eq!(meta.versions.len(), 1);
    assert!(c.get("app/new").await.is_err());
}
