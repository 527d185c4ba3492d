//! A local GCP Secret Manager: the v1 REST API over HTTP/1.1 on 127.0.0.1, for tests.
//!
//! It follows the published API (google/cloud/secretmanager/v1/service.proto and
//! resources.proto, their HTTP bindings, and the documented behaviour of etags, aliases,
//! CRC32C and expiry): resource names use the project *number* as the service does, enums are
//! numbers when the client asks for `$alt=json;enum-encoding=int` (both official clients do)
//! and names otherwise, int64 values are JSON strings, errors are `google.rpc.Status` bodies
//! (`{"error": {"code", "message", "status", "details"}}`) with a `google.rpc.RequestInfo`
//! detail, lists are newest first and paged with opaque tokens, an etag mismatch is
//! `FAILED_PRECONDITION` (HTTP 400), access to a disabled or destroyed version is
//! `FAILED_PRECONDITION`, an existing id is `ALREADY_EXISTS` (409), anything missing is
//! `NOT_FOUND` (404). Known differences from the real service are listed in
//! `providers/gcp/README.md`.
//!
//! Tests can inject faults (an HTTP status with optional `Retry-After`, a delay, a truncated
//! body), stop and restart the server on the same port with its data, and require real
//! credentials: self-signed service-account JWTs (RS256, checked against the public key the
//! test registered) and access tokens the server's own `generateAccessToken` (the IAM
//! Credentials API) issued for an impersonated account.
//!
//! The crate `sealbox-gcp`'s tests start it in-process ([`LocalSecretManager::start`]); the
//! Python and C binding tests and the `gcp` bench run it as a process, the binary
//! `local-secret-manager` (`src/main.rs`), which prints its endpoint and serves until killed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// GCP's payload limit.
const MAX_PAYLOAD: usize = 65_536;
/// GCP's page size cap.
const MAX_PAGE: usize = 25_000;
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A fault applied to the next request(s), in order.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this HTTP status and its `google.rpc.Status` (429 -> RESOURCE_EXHAUSTED,
    /// 503 -> UNAVAILABLE, 500 -> INTERNAL), with a `Retry-After` header when given.
    Status { http: u16, retry_after: Option<u32> },
    /// Wait this long, then serve the request normally.
    Delay(Duration),
    /// Serve the request, but send only half of the response body and close.
    Truncate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VersionState {
    Enabled = 1,
    Disabled = 2,
    Destroyed = 3,
}

impl VersionState {
    fn name(self) -> &'static str {
        match self {
            VersionState::Enabled => "ENABLED",
            VersionState::Disabled => "DISABLED",
            VersionState::Destroyed => "DESTROYED",
        }
    }
}

struct VersionRec {
    number: i64,
    created: OffsetDateTime,
    destroyed: Option<OffsetDateTime>,
    state: VersionState,
    data: Vec<u8>,
    crc: u32,
    etag: String,
    client_checksum: bool,
}

struct SecretRec {
    seq: u64,
    created: OffsetDateTime,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    aliases: BTreeMap<String, i64>,
    replication: Option<Value>,
    cmek: Option<Value>,
    expire: Option<OffsetDateTime>,
    etag: String,
    versions: Vec<VersionRec>,
}

/// Key: (project number, location or "", secret id).
type Key = (String, String, String);

#[derive(Default)]
struct State {
    secrets: BTreeMap<Key, SecretRec>,
    projects: HashMap<String, String>,
    seq: u64,
}

/// Who may call: anyone, or holders of credentials the test registered.
#[derive(Default)]
struct Auth {
    required: bool,
    /// Service account email -> PEM public key (PKCS#1 or SPKI).
    service_accounts: HashMap<String, rsa::RsaPublicKey>,
    /// Source account -> accounts it may impersonate.
    may_impersonate: HashMap<String, Vec<String>>,
    /// Access tokens this server issued -> the account they act as.
    issued: HashMap<String, String>,
}

struct Shared {
    state: Mutex<State>,
    faults: Mutex<VecDeque<Fault>>,
    auth: Mutex<Auth>,
    requests: AtomicU64,
    /// (method, path, principal) of each request served, for assertions.
    log: Mutex<Vec<(String, String, Option<String>)>>,
    next_id: AtomicU64,
}

/// The running server. Stopped on drop.
pub struct LocalSecretManager {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LocalSecretManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSecretManager")
            .field("addr", &self.addr)
            .field("running", &self.task.is_some())
            .finish_non_exhaustive()
    }
}

impl LocalSecretManager {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> LocalSecretManager {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            faults: Mutex::new(VecDeque::new()),
            auth: Mutex::new(Auth::default()),
            requests: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = Some(tokio::spawn(serve(listener, shared.clone())));
        LocalSecretManager { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and drops every open connection (like a killed process).
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.stop();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.task = Some(tokio::spawn(serve(listener, self.shared.clone())));
    }

    /// Queues `fault` for the next `times` requests.
    pub fn inject(&self, fault: Fault, times: usize) {
        let mut q = self.shared.faults.lock().unwrap();
        for _ in 0..times {
            q.push_back(fault.clone());
        }
    }

    /// Requests received so far (faulted ones included).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// (method, path, principal) of every request served.
    pub fn log(&self) -> Vec<(String, String, Option<String>)> {
        self.shared.log.lock().unwrap().clone()
    }

    /// From now on every Secret Manager call needs valid credentials.
    pub fn require_auth(&self) {
        self.shared.auth.lock().unwrap().required = true;
    }

    /// Accepts self-signed JWTs of `email` signed with the key whose public half is `key`.
    pub fn add_service_account(&self, email: &str, key: rsa::RsaPublicKey) {
        self.shared
            .auth
            .lock()
            .unwrap()
            .service_accounts
            .insert(email.to_owned(), key);
    }

    /// Lets `source` get tokens for `target` through `generateAccessToken`.
    pub fn allow_impersonation(&self, source: &str, target: &str) {
        self.shared
            .auth
            .lock()
            .unwrap()
            .may_impersonate
            .entry(source.to_owned())
            .or_default()
            .push(target.to_owned());
    }

    /// The project number the server shows for a project id.
    pub fn project_number(&self, project: &str) -> String {
        project_number(&mut self.shared.state.lock().unwrap(), project)
    }

    /// Overwrites the stored bytes of a version (the CRC32C stays): damage at rest.
    pub fn corrupt(&self, project: &str, secret_id: &str, version: i64) {
        let mut st = self.shared.state.lock().unwrap();
        let number = project_number(&mut st, project);
        let rec = st
            .secrets
            .get_mut(&(number, String::new(), secret_id.to_owned()))
            .expect("secret to corrupt");
        let v = rec
            .versions
            .iter_mut()
            .find(|v| v.number == version)
            .expect("version to corrupt");
        v.data[0] ^= 1;
    }

    /// Secret ids of `project`'s global secrets.
    pub fn secret_ids(&self, project: &str) -> Vec<String> {
        let mut st = self.shared.state.lock().unwrap();
        let number = project_number(&mut st, project);
        st.secrets
            .keys()
            .filter(|(p, l, _)| *p == number && l.is_empty())
            .map(|(_, _, id)| id.clone())
            .collect()
    }
}

impl Drop for LocalSecretManager {
    fn drop(&mut self) {
        self.stop();
    }
}

fn project_number(st: &mut State, project: &str) -> String {
    if project.bytes().all(|b| b.is_ascii_digit()) {
        return project.to_owned();
    }
    let next = 100_000_000_000u64 + st.projects.len() as u64 * 7919 + 4242;
    st.projects
        .entry(project.to_owned())
        .or_insert_with(|| next.to_string())
        .clone()
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(connection(stream, shared.clone()));
        // Reap finished connections; aborting `serve` aborts the set and closes them all.
        while connections.try_join_next().is_some() {}
    }
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

struct Response {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buf.len() < body_start + len {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[body_start..body_start + len].to_vec();
    buf.drain(..body_start + len);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(Request {
        method,
        path: percent_decode(path),
        query,
        headers,
        body,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut stream, &mut buf).await {
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let fault = shared.faults.lock().unwrap().pop_front();
        let mut truncate = false;
        let response = match fault {
            Some(Fault::Status { http, retry_after }) => {
                let (code, status) = match http {
                    429 => (8, "RESOURCE_EXHAUSTED"),
                    503 => (14, "UNAVAILABLE"),
                    _ => (13, "INTERNAL"),
                };
                let mut r = error_body(
                    &shared,
                    http,
                    code,
                    status,
                    "injected by the test (local server fault)",
                );
                if let Some(s) = retry_after {
                    r.headers.push(("Retry-After".into(), s.to_string()));
                }
                r
            }
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                handle(&shared, &req)
            }
            Some(Fault::Truncate) => {
                truncate = true;
                handle(&shared, &req)
            }
            None => handle(&shared, &req),
        };
        let reason = match response.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            409 => "Conflict",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json; charset=UTF-8\r\n\
             Content-Length: {}\r\n",
            response.status,
            response.body.len()
        );
        for (k, v) in &response.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let body: &[u8] = if truncate {
            &response.body[..response.body.len() / 2]
        } else {
            &response.body
        };
        if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(body).await.is_err()
        {
            return;
        }
        if truncate {
            let _ = stream.shutdown().await;
            return;
        }
        let close = req
            .headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if close {
            return;
        }
    }
}

fn error_body(shared: &Shared, http: u16, code: i32, status: &str, message: &str) -> Response {
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let body = json!({"error": {
        "code": http,
        "message": message,
        "status": status,
        "details": [{
            "@type": "type.googleapis.com/google.rpc.RequestInfo",
            "requestId": format!("local-{id:08x}"),
        }],
    }});
    let _ = code;
    Response {
        status: http,
        body: serde_json::to_vec(&body).unwrap(),
        headers: Vec::new(),
    }
}

/// A handler's failure: (HTTP status, gRPC status name, message).
type Fail = (u16, &'static str, String);

fn not_found(msg: String) -> Fail {
    (404, "NOT_FOUND", msg)
}
fn invalid(msg: impl Into<String>) -> Fail {
    (400, "INVALID_ARGUMENT", msg.into())
}
fn precondition(msg: impl Into<String>) -> Fail {
    (400, "FAILED_PRECONDITION", msg.into())
}

fn code_of(status: &str) -> i32 {
    match status {
        "INVALID_ARGUMENT" => 3,
        "NOT_FOUND" => 5,
        "ALREADY_EXISTS" => 6,
        "PERMISSION_DENIED" => 7,
        "RESOURCE_EXHAUSTED" => 8,
        "FAILED_PRECONDITION" => 9,
        "UNIMPLEMENTED" => 12,
        "UNAVAILABLE" => 14,
        "UNAUTHENTICATED" => 16,
        _ => 13,
    }
}

fn handle(shared: &Shared, req: &Request) -> Response {
    let principal = match authenticate(shared, req) {
        Ok(p) => p,
        Err((http, status, msg)) => return error_body(shared, http, code_of(status), status, &msg),
    };
    shared
        .log
        .lock()
        .unwrap()
        .push((req.method.clone(), req.path.clone(), principal.clone()));
    match route(shared, req, principal.as_deref()) {
        Ok(v) => Response {
            status: 200,
            body: serde_json::to_vec(&v).unwrap(),
            headers: Vec::new(),
        },
        Err((http, status, msg)) => error_body(shared, http, code_of(status), status, &msg),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn new_etag(shared: &Shared) -> String {
    let n = shared.next_id.fetch_add(1, Ordering::SeqCst);
    format!(
        "\"{:x}{:013x}\"",
        now().unix_timestamp_nanos() as u64 & 0xffff_ffff,
        n
    )
}

// ---- authentication --------------------------------------------------------------------

fn bearer(req: &Request) -> Option<&str> {
    req.headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn unauthenticated(msg: &str) -> Fail {
    (
        401,
        "UNAUTHENTICATED",
        format!(
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. ({msg})"
        ),
    )
}

/// Checks a self-signed service-account JWT; the email it speaks for.
fn verify_jwt(auth: &Auth, token: &str) -> Result<String, Fail> {
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthenticated("not a JWT"));
    };
    let decode = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| unauthenticated("bad base64"))
    };
    let header: Value =
        serde_json::from_slice(&decode(h)?).map_err(|_| unauthenticated("bad header"))?;
    let claims: Value =
        serde_json::from_slice(&decode(c)?).map_err(|_| unauthenticated("bad claims"))?;
    if header["alg"] != "RS256" {
        return Err(unauthenticated("alg is not RS256"));
    }
    let iss = claims["iss"].as_str().unwrap_or_default();
    if claims["sub"].as_str() != Some(iss) {
        return Err(unauthenticated("sub differs from iss"));
    }
    let key = auth
        .service_accounts
        .get(iss)
        .ok_or_else(|| unauthenticated("unknown service account"))?;
    let sig =
        Signature::try_from(decode(s)?.as_slice()).map_err(|_| unauthenticated("bad signature"))?;
    VerifyingKey::<rsa::sha2::Sha256>::new(key.clone())
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| unauthenticated("signature does not verify"))?;
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if exp <= now().unix_timestamp() {
        return Err(unauthenticated("token expired"));
    }
    let scoped = claims["scope"]
        .as_str()
        .is_some_and(|s| s.split(' ').any(|x| x == CLOUD_PLATFORM));
    let audience = claims["aud"]
        .as_str()
        .is_some_and(|a| a.contains("googleapis.com"));
    if !(scoped || audience) {
        return Err(unauthenticated("no cloud-platform scope or audience"));
    }
    Ok(iss.to_owned())
}

/// The principal of a request, or an error when credentials are required and missing/bad.
fn authenticate(shared: &Shared, req: &Request) -> Result<Option<String>, Fail> {
    let auth = shared.auth.lock().unwrap();
    let token = bearer(req);
    let who = match token {
        Some(t) if auth.issued.contains_key(t) => Some(auth.issued[t].clone()),
        Some(t) if t.matches('.').count() == 2 => match verify_jwt(&auth, t) {
            Ok(email) => Some(email),
            Err(e) if auth.required => return Err(e),
            Err(_) => None,
        },
        _ => None,
    };
    if auth.required && who.is_none() {
        return Err(unauthenticated("no valid credentials"));
    }
    Ok(who)
}

// ---- routing -----------------------------------------------------------------------------

fn route(shared: &Shared, req: &Request, principal: Option<&str>) -> Result<Value, Fail> {
    let Some(rest) = req.path.strip_prefix("/v1/") else {
        return Err(not_found(format!("no route for {}", req.path)));
    };
    let (rest, verb) = match rest.rsplit_once(':') {
        Some((r, v)) if !v.contains('/') => (r, Some(v)),
        _ => (rest, None),
    };
    let seg: Vec<&str> = rest.split('/').collect();
    let ints = req
        .query
        .iter()
        .any(|(k, v)| k == "$alt" && v.contains("enum-encoding=int"));
    let m = req.method.as_str();
    if let ["projects", "-", "serviceAccounts", email] = seg.as_slice() {
        return match (m, verb) {
            ("POST", Some("generateAccessToken")) => {
                generate_access_token(shared, req, principal, email)
            }
            _ => Err(not_found(format!("no route for {}", req.path))),
        };
    }
    let (project, location, tail) = match seg.as_slice() {
        ["projects", p, "locations", l, tail @ ..] => (*p, *l, tail),
        ["projects", p, tail @ ..] => (*p, "", tail),
        _ => return Err(not_found(format!("no route for {}", req.path))),
    };
    let mut st = shared.state.lock().unwrap();
    let number = project_number(&mut st, project);
    purge_expired(&mut st);
    let parent = if location.is_empty() {
        format!("projects/{number}")
    } else {
        format!("projects/{number}/locations/{location}")
    };
    let ctx = Ctx {
        shared,
        number,
        location: location.to_owned(),
        parent,
        ints,
    };
    match (m, tail, verb) {
        ("GET", ["secrets"], None) => ctx.list_secrets(&st, req),
        ("POST", ["secrets"], None) => ctx.create_secret(&mut st, req),
        ("GET", ["secrets", id], None) => ctx.with_secret(&st, id, |r| Ok(ctx.secret_json(id, r))),
        ("PATCH", ["secrets", id], None) => ctx.update_secret(&mut st, id, req),
        ("DELETE", ["secrets", id], None) => ctx.delete_secret(&mut st, id, req),
        ("POST", ["secrets", id], Some("addVersion")) => ctx.add_version(&mut st, id, req),
        ("GET", ["secrets", id, "versions"], None) => ctx.list_versions(&st, id, req),
        ("GET", ["secrets", id, "versions", v], None) => {
            let rec = ctx.secret(&st, id)?;
            let ver = ctx.version(id, rec, v)?;
            Ok(ctx.version_json(id, rec, ver))
        }
        ("GET", ["secrets", id, "versions", v], Some("access")) => {
            let rec = ctx.secret(&st, id)?;
            let ver = ctx.version(id, rec, v)?;
            if ver.state != VersionState::Enabled {
                return Err(precondition(format!(
                    "Secret Version [{}] is in {} state.",
                    ctx.version_name(id, ver.number),
                    ver.state.name()
                )));
            }
            Ok(json!({
                "name": ctx.version_name(id, ver.number),
                "payload": {"data": STANDARD.encode(&ver.data), "dataCrc32c": ver.crc.to_string()},
            }))
        }
        (
            "POST",
            ["secrets", id, "versions", v],
            Some(action @ ("enable" | "disable" | "destroy")),
        ) => ctx.change_version(&mut st, id, v, action, req),
        _ => Err(not_found(format!("no route for {} {}", m, req.path))),
    }
}

fn purge_expired(st: &mut State) {
    let t = now();
    st.secrets.retain(|_, s| s.expire.is_none_or(|e| e > t));
}

struct Ctx<'a> {
    shared: &'a Shared,
    number: String,
    location: String,
    parent: String,
    ints: bool,
}

fn body_json(req: &Request) -> Result<Value, Fail> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| invalid(format!("Invalid JSON payload received. {e}")))
}

fn query<'r>(req: &'r Request, key: &str) -> Option<&'r str> {
    req.query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn string_map(v: &Value, what: &str) -> Result<BTreeMap<String, String>, Fail> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(invalid(format!("{what}.{k} must be a string"))),
            })
            .collect(),
        _ => Err(invalid(format!("{what} must be a map"))),
    }
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), Fail> {
    let part = |c: char| c.is_lowercase() || c.is_numeric() || c == '_' || c == '-';
    if labels.len() > 64 {
        return Err(invalid(
            "No more than 64 labels can be assigned to a given resource.",
        ));
    }
    for (k, v) in labels {
        let key_ok = (1..=63).contains(&k.chars().count())
            && k.starts_with(char::is_lowercase)
            && k.chars().all(part);
        if !key_ok || v.chars().count() > 63 || !v.chars().all(part) {
            return Err(invalid(format!("Invalid label {k:?}: {v:?}.")));
        }
    }
    Ok(())
}

fn check_annotations(a: &BTreeMap<String, String>) -> Result<(), Fail> {
    let mut total = 0;
    for (k, v) in a {
        let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        let ok = (1..=63).contains(&k.len())
            && k.starts_with(|c: char| c.is_ascii_alphanumeric())
            && k.ends_with(|c: char| c.is_ascii_alphanumeric())
            && k.chars().all(inner);
        if !ok {
            return Err(invalid(format!("Invalid annotation key {k:?}.")));
        }
        total += k.len() + v.len();
    }
    if total >= 16 * 1024 {
        return Err(invalid(
            "The total size of annotations must be less than 16KiB.",
        ));
    }
    Ok(())
}

fn parse_aliases(v: &Value) -> Result<BTreeMap<String, i64>, Fail> {
    let Value::Object(m) = v else {
        return if v.is_null() {
            Ok(BTreeMap::new())
        } else {
            Err(invalid("versionAliases must be a map"))
        };
    };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let n = match v {
            Value::String(s) => s.parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
        .ok_or_else(|| invalid(format!("versionAliases.{k} must be an int64")))?;
        let ok = k.len() <= 63
            && k.starts_with(|c: char| c.is_ascii_alphabetic())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && k != "latest"
            && k != "NEW";
        if !ok {
            return Err(invalid(format!("Invalid version alias {k:?}.")));
        }
        out.insert(k.clone(), n);
    }
    if out.len() > 50 {
        return Err(invalid(
            "No more than 50 aliases can be assigned to a given secret.",
        ));
    }
    Ok(out)
}

fn parse_time(v: &Value, what: &str) -> Result<Option<OffsetDateTime>, Fail> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map(Some)
            .map_err(|_| invalid(format!("{what} is not an RFC 3339 timestamp"))),
        _ => Err(invalid(format!("{what} must be a timestamp string"))),
    }
}

fn parse_duration(v: &Value) -> Result<Option<Duration>, Fail> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => s
            .strip_suffix('s')
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|n| *n >= 0.0)
            .map(|n| Some(Duration::from_secs_f64(n)))
            .ok_or_else(|| invalid("ttl must be a duration like \"3600s\"")),
        _ => Err(invalid("ttl must be a duration string")),
    }
}

/// The expiry a Secret body asks for (`expireTime` or `ttl`; both is an error).
fn expiry(body: &Value) -> Result<Option<OffsetDateTime>, Fail> {
    let at = parse_time(&body["expireTime"], "expireTime")?;
    let ttl = parse_duration(&body["ttl"])?;
    match (at, ttl) {
        (Some(_), Some(_)) => Err(invalid("Only one of expire_time and ttl may be set.")),
        (Some(t), None) => {
            if t <= now() {
                return Err(invalid("expire_time must be in the future."));
            }
            Ok(Some(t))
        }
        (None, Some(d)) => Ok(Some(now() + d)),
        (None, None) => Ok(None),
    }
}

fn camel_to_snake(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn page_args(req: &Request) -> Result<(usize, Option<u64>), Fail> {
    let size = match query(req, "pageSize") {
        None | Some("") | Some("0") => MAX_PAGE,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (n as usize).min(MAX_PAGE))
            .ok_or_else(|| invalid("page_size must be positive"))?,
    };
    let token = match query(req, "pageToken") {
        None | Some("") => None,
        Some(t) => Some(
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("after:").and_then(|n| n.parse().ok()))
                .ok_or_else(|| invalid("Invalid page token."))?,
        ),
    };
    if query(req, "filter").is_some_and(|f| !f.is_empty()) {
        return Err((
            501,
            "UNIMPLEMENTED",
            "the local Secret Manager does not implement list filters".into(),
        ));
    }
    Ok((size, token))
}

fn page_token(after: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("after:{after}"))
}

impl Ctx<'_> {
    fn key(&self, id: &str) -> Key {
        (self.number.clone(), self.location.clone(), id.to_owned())
    }

    fn secret_name(&self, id: &str) -> String {
        format!("{}/secrets/{id}", self.parent)
    }

    fn version_name(&self, id: &str, n: i64) -> String {
        format!("{}/secrets/{id}/versions/{n}", self.parent)
    }

    fn secret<'s>(&self, st: &'s State, id: &str) -> Result<&'s SecretRec, Fail> {
        st.secrets.get(&self.key(id)).ok_or_else(|| {
            not_found(format!(
                "Secret [{}] not found or has no versions.",
                self.secret_name(id)
            ))
        })
    }

    fn with_secret(
        &self,
        st: &State,
        id: &str,
        f: impl FnOnce(&SecretRec) -> Result<Value, Fail>,
    ) -> Result<Value, Fail> {
        f(self.secret(st, id)?)
    }

    fn version<'s>(&self, id: &str, rec: &'s SecretRec, v: &str) -> Result<&'s VersionRec, Fail> {
        let number = match v {
            "latest" => rec.versions.last().map(|v| v.number),
            v => v
                .parse::<i64>()
                .ok()
                .or_else(|| rec.aliases.get(v).copied()),
        };
        number
            .and_then(|n| rec.versions.iter().find(|x| x.number == n))
            .ok_or_else(|| {
                not_found(format!(
                    "Secret Version [{}/versions/{v}] not found.",
                    self.secret_name(id)
                ))
            })
    }

    fn enum_value(&self, s: VersionState) -> Value {
        if self.ints {
            json!(s as i32)
        } else {
            json!(s.name())
        }
    }

    fn secret_json(&self, id: &str, r: &SecretRec) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.secret_name(id)));
        if let Some(rep) = &r.replication {
            m.insert("replication".into(), rep.clone());
        }
        m.insert("createTime".into(), json!(ts(r.created)));
        if !r.labels.is_empty() {
            m.insert("labels".into(), json!(r.labels));
        }
        if let Some(e) = r.expire {
            m.insert("expireTime".into(), json!(ts(e)));
        }
        m.insert("etag".into(), json!(r.etag));
        if !r.aliases.is_empty() {
            let a: Map<String, Value> = r
                .aliases
                .iter()
                .map(|(k, v)| (k.clone(), json!(v.to_string())))
                .collect();
            m.insert("versionAliases".into(), Value::Object(a));
        }
        if !r.annotations.is_empty() {
            m.insert("annotations".into(), json!(r.annotations));
        }
        if let Some(c) = &r.cmek {
            m.insert("customerManagedEncryption".into(), c.clone());
        }
        Value::Object(m)
    }

    fn version_json(&self, id: &str, r: &SecretRec, v: &VersionRec) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.version_name(id, v.number)));
        m.insert("createTime".into(), json!(ts(v.created)));
        if let Some(d) = v.destroyed {
            m.insert("destroyTime".into(), json!(ts(d)));
        }
        m.insert("state".into(), self.enum_value(v.state));
        match r.replication.as_ref().and_then(|x| x.get("userManaged")) {
            Some(um) => {
                let replicas: Vec<Value> = um["replicas"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| json!({"location": x["location"]}))
                    .collect();
                m.insert(
                    "replicationStatus".into(),
                    json!({"userManaged": {"replicas": replicas}}),
                );
            }
            None if r.replication.is_some() => {
                m.insert("replicationStatus".into(), json!({"automatic": {}}));
            }
            None => {}
        }
        m.insert("etag".into(), json!(v.etag));
        if v.client_checksum {
            m.insert("clientSpecifiedPayloadChecksum".into(), json!(true));
        }
        Value::Object(m)
    }

    fn list_secrets(&self, st: &State, req: &Request) -> Result<Value, Fail> {
        let (size, after) = page_args(req)?;
        let mut all: Vec<(&Key, &SecretRec)> = st
            .secrets
            .iter()
            .filter(|((p, l, _), _)| *p == self.number && *l == self.location)
            .collect();
        let total = all.len();
        // Newest first (reverse creation), as the API documents.
        all.sort_by_key(|b| std::cmp::Reverse(b.1.seq));
        let rest: Vec<_> = all
            .into_iter()
            .filter(|(_, r)| after.is_none_or(|a| r.seq < a))
            .collect();
        let page: Vec<_> = rest.iter().take(size).collect();
        let mut out = Map::new();
        out.insert(
            "secrets".into(),
            Value::Array(
                page.iter()
                    .map(|(k, r)| self.secret_json(&k.2, r))
                    .collect(),
            ),
        );
        if rest.len() > size
            && let Some((_, last)) = page.last()
        {
            out.insert("nextPageToken".into(), json!(page_token(last.seq)));
        }
        out.insert("totalSize".into(), json!(total));
        if page.is_empty() {
            out.remove("secrets");
        }
        Ok(Value::Object(out))
    }

    fn create_secret(&self, st: &mut State, req: &Request) -> Result<Value, Fail> {
        let id = query(req, "secretId").unwrap_or_default().to_owned();
        let id_ok = (1..=255).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(invalid(format!(
                "Secret ID [{id}] must contain only letters, numbers, underscores and hyphens, \
                 and be at most 255 characters."
            )));
        }
        let body = body_json(req)?;
        let replication = match &body["replication"] {
            Value::Null => None,
            r => Some(r.clone()),
        };
        if self.location.is_empty() {
            let Some(r) = &replication else {
                return Err(invalid("Secret.replication is required."));
            };
            let automatic = r.get("automatic").is_some();
            let user = r
                .get("userManaged")
                .and_then(|u| u["replicas"].as_array())
                .is_some_and(|a| !a.is_empty() && a.iter().all(|x| x["location"].is_string()));
            if automatic == user {
                return Err(invalid(
                    "Secret.replication must set exactly one of automatic or userManaged with \
                     at least one replica.",
                ));
            }
        } else if replication.is_some() {
            return Err(invalid("Regional secrets cannot set a replication policy."));
        }
        let labels = string_map(&body["labels"], "labels")?;
        check_labels(&labels)?;
        let annotations = string_map(&body["annotations"], "annotations")?;
        check_annotations(&annotations)?;
        if !parse_aliases(&body["versionAliases"])?.is_empty() {
            return Err(invalid("A new secret has no versions for aliases to name."));
        }
        let expire = expiry(&body)?;
        let key = self.key(&id);
        if st.secrets.contains_key(&key) {
            return Err((
                409,
                "ALREADY_EXISTS",
                format!("Secret [{}] already exists.", self.secret_name(&id)),
            ));
        }
        st.seq += 1;
        let rec = SecretRec {
            seq: st.seq,
            created: now(),
            labels,
            annotations,
            aliases: BTreeMap::new(),
            replication,
            cmek: match &body["customerManagedEncryption"] {
                Value::Null => None,
                c => Some(c.clone()),
            },
            expire,
            etag: new_etag(self.shared),
            versions: Vec::new(),
        };
        let out = self.secret_json(&id, &rec);
        st.secrets.insert(key, rec);
        Ok(out)
    }

    fn update_secret(&self, st: &mut State, id: &str, req: &Request) -> Result<Value, Fail> {
        let body = body_json(req)?;
        let mask = query(req, "updateMask").unwrap_or_default();
        if mask.is_empty() {
            return Err(invalid("update_mask is required."));
        }
        let rec = st
            .secrets
            .get_mut(&self.key(id))
            .ok_or_else(|| not_found(format!("Secret [{}] not found.", self.secret_name(id))))?;
        if let Some(etag) = body["etag"].as_str()
            && !etag.is_empty()
            && etag != rec.etag
        {
            return Err(precondition(format!(
                "The etag provided in the request does not match the etag of Secret [{}].",
                self.secret_name(id)
            )));
        }
        // Validate everything first: an update is all or nothing.
        let mut labels = None;
        let mut annotations = None;
        let mut aliases = None;
        let mut expire = None;
        for field in mask.split(',').map(camel_to_snake) {
            match field.as_str() {
                "labels" => {
                    let l = string_map(&body["labels"], "labels")?;
                    check_labels(&l)?;
                    labels = Some(l);
                }
                "annotations" => {
                    let a = string_map(&body["annotations"], "annotations")?;
                    check_annotations(&a)?;
                    annotations = Some(a);
                }
                "version_aliases" => {
                    let a = parse_aliases(&body["versionAliases"])?;
                    for (k, n) in &a {
                        if !rec.versions.iter().any(|v| v.number == *n) {
                            return Err(invalid(format!(
                                "Alias {k} refers to version {n}, which does not exist."
                            )));
                        }
                    }
                    aliases = Some(a);
                }
                "expire_time" | "ttl" => expire = Some(expiry(&body)?),
                "topics" | "rotation" | "version_destroy_ttl" | "customer_managed_encryption" => {
                    return Err((
                        501,
                        "UNIMPLEMENTED",
                        format!("the local Secret Manager does not implement updating {field}"),
                    ));
                }
                other => return Err(invalid(format!("Invalid update_mask path: {other}."))),
            }
        }
        if let Some(l) = labels {
            rec.labels = l;
        }
        if let Some(a) = annotations {
            rec.annotations = a;
        }
        if let Some(a) = aliases {
            rec.aliases = a;
        }
        if let Some(e) = expire {
            rec.expire = e;
        }
        rec.etag = new_etag(self.shared);
        let rec = &st.secrets[&self.key(id)];
        Ok(self.secret_json(id, rec))
    }

    fn delete_secret(&self, st: &mut State, id: &str, req: &Request) -> Result<Value, Fail> {
        let rec = self.secret(st, id)?;
        if let Some(etag) = query(req, "etag")
            && !etag.is_empty()
            && etag != rec.etag
        {
            return Err(precondition(format!(
                "The etag provided in the request does not match the etag of Secret [{}].",
                self.secret_name(id)
            )));
        }
        st.secrets.remove(&self.key(id));
        Ok(json!({}))
    }

    fn add_version(&self, st: &mut State, id: &str, req: &Request) -> Result<Value, Fail> {
        let body = body_json(req)?;
        let data = match &body["payload"]["data"] {
            Value::Null => Vec::new(),
            Value::String(s) => STANDARD
                .decode(s)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
                .map_err(|_| invalid("payload.data is not base64"))?,
            _ => return Err(invalid("payload.data must be a base64 string")),
        };
        if data.len() > MAX_PAYLOAD {
            return Err(invalid(format!(
                "Secret Payload cannot be larger than 64KiB; got {} bytes.",
                data.len()
            )));
        }
        let crc = crc32c::crc32c(&data);
        let given = match &body["payload"]["dataCrc32c"] {
            Value::Null => None,
            Value::String(s) => Some(s.parse::<i64>().map_err(|_| invalid("bad dataCrc32c"))?),
            Value::Number(n) => n.as_i64(),
            _ => return Err(invalid("bad dataCrc32c")),
        };
        if let Some(g) = given
            && g != i64::from(crc)
        {
            return Err(invalid(
                "Checksum mismatch: the data_crc32c sent does not match the payload data.",
            ));
        }
        let etag = new_etag(self.shared);
        let rec = st
            .secrets
            .get_mut(&self.key(id))
            .ok_or_else(|| not_found(format!("Secret [{}] not found.", self.secret_name(id))))?;
        let number = rec.versions.last().map_or(1, |v| v.number + 1);
        rec.versions.push(VersionRec {
            number,
            created: now(),
            destroyed: None,
            state: VersionState::Enabled,
            data,
            crc,
            etag,
            client_checksum: given.is_some(),
        });
        let rec = &st.secrets[&self.key(id)];
        Ok(self.version_json(id, rec, rec.versions.last().unwrap()))
    }

    fn list_versions(&self, st: &State, id: &str, req: &Request) -> Result<Value, Fail> {
        let (size, after) = page_args(req)?;
        let rec = self.secret(st, id)?;
        let rest: Vec<&VersionRec> = rec
            .versions
            .iter()
            .rev()
            .filter(|v| after.is_none_or(|a| (v.number as u64) < a))
            .collect();
        let page: Vec<_> = rest.iter().take(size).collect();
        let mut out = Map::new();
        if !page.is_empty() {
            out.insert(
                "versions".into(),
                Value::Array(page.iter().map(|v| self.version_json(id, rec, v)).collect()),
            );
        }
        if rest.len() > size
            && let Some(last) = page.last()
        {
            out.insert(
                "nextPageToken".into(),
                json!(page_token(last.number as u64)),
            );
        }
        out.insert("totalSize".into(), json!(rec.versions.len()));
        Ok(Value::Object(out))
    }

    fn change_version(
        &self,
        st: &mut State,
        id: &str,
        v: &str,
        action: &str,
        req: &Request,
    ) -> Result<Value, Fail> {
        let body = body_json(req)?;
        let number = {
            let rec = self.secret(st, id)?;
            self.version(id, rec, v)?.number
        };
        let etag = new_etag(self.shared);
        let rec = st.secrets.get_mut(&self.key(id)).unwrap();
        let ver = rec
            .versions
            .iter_mut()
            .find(|x| x.number == number)
            .unwrap();
        if let Some(e) = body["etag"].as_str()
            && !e.is_empty()
            && e != ver.etag
        {
            return Err(precondition(format!(
                "The etag provided in the request does not match the etag of Secret Version [{}].",
                self.version_name(id, number)
            )));
        }
        if ver.state == VersionState::Destroyed {
            return Err(precondition(format!(
                "Secret Version [{}] is in DESTROYED state.",
                self.version_name(id, number)
            )));
        }
        match action {
            "enable" => ver.state = VersionState::Enabled,
            "disable" => ver.state = VersionState::Disabled,
            _ => {
                ver.state = VersionState::Destroyed;
                ver.destroyed = Some(now());
                ver.data.clear();
            }
        }
        ver.etag = etag;
        let rec = &st.secrets[&self.key(id)];
        let ver = rec.versions.iter().find(|x| x.number == number).unwrap();
        Ok(self.version_json(id, rec, ver))
    }
}

fn generate_access_token(
    shared: &Shared,
    req: &Request,
    principal: Option<&str>,
    target: &str,
) -> Result<Value, Fail> {
    let mut auth = shared.auth.lock().unwrap();
    let source = match principal {
        Some(p) => p.to_owned(),
        None => match bearer(req) {
            Some(t) => verify_jwt(&auth, t)?,
            None => return Err(unauthenticated("no credentials")),
        },
    };
    let allowed = auth
        .may_impersonate
        .get(&source)
        .is_some_and(|t| t.iter().any(|x| x == target));
    if !allowed {
        return Err((
            403,
            "PERMISSION_DENIED",
            format!(
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may \
                 not exist): {source} cannot impersonate {target}."
            ),
        ));
    }
    let body = body_json(req)?;
    let scoped = body["scope"]
        .as_array()
        .is_some_and(|s| s.iter().any(|x| x == CLOUD_PLATFORM));
    if !scoped {
        return Err(invalid("scope must include cloud-platform"));
    }
    let n = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let token = format!("ya29.local-{n:016x}-{}", now().unix_timestamp_nanos());
    auth.issued.insert(token.clone(), target.to_owned());
    Ok(json!({
        "accessToken": token,
        "expireTime": ts(now() + Duration::from_secs(3600)),
    }))
}
