//! Retries and error mapping against a scripted AWS endpoint on loopback: throttling and 5xx
//! are retried with backoff, client errors are not, and what finally fails keeps its kind and
//! the AWS request id. Needs no moto, so it always runs.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sealbox::store::{SecretStore, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret};
use sealbox_aws::{AwsConfig, AwsSecretsManager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One scripted answer: HTTP status and AWS error code (`None` = a successful GetSecretValue).
#[derive(Clone, Copy)]
struct Answer {
    status: u16,
    code: Option<&'static str>,
}

const THROTTLED: Answer = Answer {
    status: 400,
    code: Some("ThrottlingException"),
};
const UNAVAILABLE: Answer = Answer {
    status: 503,
    code: Some("ServiceUnavailable"),
};
const NOT_FOUND: Answer = Answer {
    status: 400,
    code: Some("ResourceNotFoundException"),
};
const DENIED: Answer = Answer {
    status: 400,
    code: Some("AccessDeniedException"),
};
const OK: Answer = Answer {
    status: 200,
    code: None,
};

/// A loopback server answering requests in script order (the last answer repeats), counting
/// requests. It reads one HTTP/1.1 request per answer and keeps connections alive.
struct ScriptedAws {
    endpoint: String,
    requests: Arc<AtomicUsize>,
}

impl ScriptedAws {
    async fn start(script: Vec<Answer>) -> ScriptedAws {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let script = Arc::new(script);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, script.clone(), counter.clone()));
            }
        });
        ScriptedAws { endpoint, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve(mut conn: TcpStream, script: Arc<Vec<Answer>>, counter: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    loop {
        // Read headers, then the body by Content-Length.
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < header_end + body_len {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..header_end + body_len);

        let n = counter.fetch_add(1, Ordering::SeqCst);
        let answer = script[n.min(script.len() - 1)];
        let body = match answer.code {
            Some(code) => format!(r#"{{"__type":"{code}","message":"scripted {code}"}}"#),
            None => r#"{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:s-AbCdEf","Name":"s","VersionId":"11111111-2222-3333-4444-555555555555","SecretString":"scripted-value","VersionStages":["AWSCURRENT"],"CreatedDate":1.7E9}"#.to_owned(),
        };
        let reason = if answer.status == 200 { "OK" } else { "Error" };
        let response = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/x-amz-json-1.1\r\n\
             x-amzn-requestid: req-{n}\r\ncontent-length: {}\r\n\r\n{body}",
            answer.status,
            body.len()
        );
        if conn.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn store_at(endpoint: &str, max_attempts: u32) -> AwsSecretsManager {
    let config = AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.to_owned()),
        max_attempts: Some(max_attempts),
        initial_backoff: Some(Duration::from_millis(5)),
        max_backoff: Some(Duration::from_millis(50)),
        attempt_timeout: Some(Duration::from_secs(2)),
        operation_timeout: Some(Duration::from_secs(5)),
        ..AwsConfig::default()
    };
    let sdk = config
        .load_sdk_config_with(Some(support::test_credentials()))
        .await
        .unwrap();
    AwsSecretsManager::from_sdk_config(&sdk, &config).unwrap()
}

#[tokio::test]
async fn throttling_and_5xx_answers_are_retried_until_success() {
    let aws = ScriptedAws::start(vec![THROTTLED, UNAVAILABLE, OK]).await;
    let store = store_at(&aws.endpoint, 3).await;
    let got = store
        .get(&support::name("s"), &VersionSelector::Current)
        .await
        .unwrap();
    assert_eq!(got.value.expose_secret(), b"scripted-value");
    assert_eq!(aws.requests(), 3);
}

#[tokio::test]
async fn persistent_throttling_ends_as_unavailable_with_the_request_id() {
    let aws = ScriptedAws::start(vec![THROTTLED]).await;
    let store = store_at(&aws.endpoint, 3).await;
    let err = store
        .get(&support::name("s"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(aws.requests(), 3, "max_attempts bounds the retries");
    assert_eq!(err.request_id(), Some("req-2"), "the last attempt's id");
    assert!(err.message().contains("ThrottlingException"), "{err}");
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    for (answer, kind) in [
        (NOT_FOUND, ErrorKind::NotFound),
        (DENIED, ErrorKind::AccessDenied),
    ] {
        let aws = ScriptedAws::start(vec![answer, OK]).await;
        let store = store_at(&aws.endpoint, 3).await;
        let err = store
            .get(&support::name("s"), &VersionSelector::Current)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(aws.requests(), 1, "{kind:?} must not be retried");
        assert_eq!(err.request_id(), Some("req-0"));
    }
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_within_the_operation_timeout() {
    // A port nobody listens on: connection refused on every attempt.
    let port = support::free_port();
    let store = store_at(&format!("http://127.0.0.1:{port}"), 3).await;
    let started = Instant::now();
    let err = store
        .get(&support::name("s"), &VersionSelector::Current)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_fails_unavailable_within_the_operation_timeout() {
    // Accepts connections and reads, but never answers: only the timeouts can end the call.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let config = AwsConfig {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint),
        max_attempts: Some(3),
        initial_backoff: Some(Duration::from_millis(5)),
        attempt_timeout: Some(Duration::from_millis(300)),
        operation_timeout: Some(Duration::from_millis(800)),
        ..AwsConfig::default()
    };
    let sdk = config
        .load_sdk_config_with(Some(support::test_credentials()))
        .await
        .unwrap();
    let store = AwsSecretsManager::from_sdk_config(&sdk, &config).unwrap();
    let started = Instant::now();
    let err = store
        .get(&support::name("s"), &VersionSelector::Current)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("timed out"), "{err}");
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_millis(1500),
        "the operation timeout (800ms) ends the call: {elapsed:?}"
    );
}
