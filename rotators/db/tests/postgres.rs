//! The `postgres` rotator against a real PostgreSQL (Debian's), as a specification:
//!
//! * alternating users: 50 rotations while 4 readers log in in a loop with the credential
//!   they read through sealbox; not one login fails, and the users take turns;
//! * single user: the password changes in place, so a reader holding the old value fails its
//!   next login; after `refresh_now` it reads the new value and logs in;
//! * a role name and a password full of quotes, backslashes and dollar signs are passed
//!   safely (nothing is string-formatted into SQL), and the password never reaches the
//!   server's statement log, nor an error or the rotation status.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sealbox::rotation::NewValue;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{PutOptions, SecretName, SecretStore, Stage, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Sealbox, Secret};
use sealbox_db_rotators::{Postgres, Strategy};
use support::{ADMIN_PASSWORD, Server};
use tokio_postgres::error::SqlState;

const NAME: &str = "predis/prod/postgres/app";

fn secret(text: &str) -> Secret {
    Secret::init_with(text.len(), |d| {
        d.copy_from_slice(text.as_bytes());
        Ok(())
    })
    .unwrap()
}

fn credential(user: &str, password: &str) -> Secret {
    secret(&serde_json::json!({"username": user, "password": password}).to_string())
}

async fn login(port: u16, user: &str, password: &str) -> Result<String, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .dbname("postgres")
        .user(user)
        .password(password)
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(conn);
    let row = client.query_one("SELECT current_user::text", &[]).await?;
    Ok(row.get(0))
}

/// Runs `sql` as the admin with `$1` quoted by the server as an identifier (`%I`).
async fn admin_ident(port: u16, template: &str, ident: &str) {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .dbname("postgres")
        .user("admin")
        .password(ADMIN_PASSWORD)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one("SELECT format($1, $2::text)", &[&template, &ident])
        .await
        .unwrap();
    let sql: String = row.get(0);
    client.batch_execute(&sql).await.unwrap();
}

fn is_auth_failure(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::INVALID_PASSWORD)
}

struct Setup {
    server: Server,
    store: Arc<MemoryStore>,
    sb: Sealbox,
    rotator: Postgres,
}

/// A server with roles `app` (and `app_clone`), the secret holding `app`'s password.
/// Writes the first version of a credential secret.
async fn seed(store: &MemoryStore, name: &str, user: &str, password: &str) {
    store
        .put(
            &name.parse().unwrap(),
            &credential(user, password),
            &PutOptions::default(),
        )
        .await
        .unwrap();
}

async fn setup(strategy: Strategy) -> Setup {
    let server = tokio::task::spawn_blocking(support::postgres)
        .await
        .unwrap();
    admin_ident(
        server.port,
        "CREATE ROLE %I LOGIN PASSWORD 'initial-app'",
        "app",
    )
    .await;
    admin_ident(
        server.port,
        "CREATE ROLE %I LOGIN PASSWORD 'initial-clone'",
        "app_clone",
    )
    .await;
    let store = Arc::new(MemoryStore::new());
    seed(&store, NAME, "app", "initial-app").await;
    let sb = Sealbox::builder().store(store.clone()).build().unwrap();
    let rotator = Postgres::new(
        "127.0.0.1",
        server.port,
        "admin",
        secret(ADMIN_PASSWORD),
        "app",
        strategy,
    );
    Setup {
        server,
        store,
        sb,
        rotator,
    }
}

async fn value_of(store: &MemoryStore, stage: Stage) -> (String, String) {
    let name: SecretName = NAME.parse().unwrap();
    let v = store
        .get(&name, &VersionSelector::Stage(stage))
        .await
        .unwrap()
        .value;
    let f = v.json_fields(&["username", "password"]).unwrap();
    (
        f[0].expose_secret().to_owned(),
        f[1].expose_secret().to_owned(),
    )
}

#[derive(Default, Debug)]
struct ReaderStats {
    logins: u64,
    auth_failures: u64,
    users: BTreeSet<String>,
}

/// Reads the credential through sealbox and logs in with it, until `stop`.
async fn alternating_reader(sb: Sealbox, port: u16, stop: Arc<AtomicBool>) -> ReaderStats {
    let mut stats = ReaderStats::default();
    while !stop.load(Ordering::Relaxed) {
        let f = sb
            .get_fields(NAME, &["username", "password"])
            .await
            .unwrap();
        let user = std::str::from_utf8(f[0].secret().expose_secret()).unwrap();
        let password = std::str::from_utf8(f[1].secret().expose_secret()).unwrap();
        match login(port, user, password).await {
            Ok(who) => {
                assert_eq!(who, user);
                stats.logins += 1;
                stats.users.insert(who);
            }
            Err(e) if is_auth_failure(&e) => stats.auth_failures += 1,
            Err(e) => panic!("a reader's login failed for another reason: {e}"),
        }
    }
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alternating_users_rotate_50_times_while_4_readers_never_fail() {
    let s = setup(Strategy::AlternatingUsers).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(alternating_reader(
                s.sb.clone(),
                s.server.port,
                stop.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    let mut passwords = Vec::new();
    let mut last_user = value_of(&s.store, Stage::Current).await.0;
    for _ in 0..50 {
        s.sb.rotation()
            .rotate_with(NAME, &s.rotator, s.rotator.new_value())
            .await
            .unwrap();
        let (user, password) = value_of(&s.store, Stage::Current).await;
        assert_ne!(user, last_user, "each rotation switches to the other user");
        last_user = user;
        passwords.push(password);
        // A reader uses what it read within one rotation period; this one is 50 ms.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut total = ReaderStats::default();
    for r in readers {
        let r = r.await.unwrap();
        assert!(r.logins > 0, "every reader logged in: {r:?}");
        total.logins += r.logins;
        total.auth_failures += r.auth_failures;
        total.users.extend(r.users);
    }
    eprintln!(
        "50 alternating rotations in {elapsed:?}; readers: {} logins, {} auth failures",
        total.logins, total.auth_failures
    );
    assert_eq!(total.auth_failures, 0, "readers never fail");
    assert_eq!(
        total.users,
        BTreeSet::from(["app".to_owned(), "app_clone".to_owned()])
    );
    // Both users work after the last rotation: CURRENT's and PREVIOUS's.
    for stage in [Stage::Current, Stage::Previous] {
        let (user, password) = value_of(&s.store, stage).await;
        assert_eq!(login(s.server.port, &user, &password).await.unwrap(), user);
    }
    // The server was only ever sent SCRAM verifiers, never a password.
    let log = s.server.log_text();
    assert!(log.contains("ALTER ROLE"), "statement logging is on");
    for p in &passwords {
        assert!(!log.contains(p.as_str()), "a password is in the server log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_user_old_password_fails_until_a_refresh_reads_the_new_one() {
    let s = setup(Strategy::SingleUser).await;
    // Another process's client, whose cache the rotation does not drop.
    let other = Sealbox::builder().store(s.store.clone()).build().unwrap();
    let held = other
        .get_fields(NAME, &["username", "password"])
        .await
        .unwrap();
    let held_password = std::str::from_utf8(held[1].secret().expose_secret())
        .unwrap()
        .to_owned();
    s.sb.rotation()
        .rotate_with(NAME, &s.rotator, s.rotator.new_value())
        .await
        .unwrap();
    let e = login(s.server.port, "app", &held_password)
        .await
        .unwrap_err();
    assert!(is_auth_failure(&e), "the old password is refused: {e}");
    let cached = other.get_field(NAME, "password").await.unwrap();
    assert_eq!(
        cached.expose_secret(),
        held_password,
        "the cache still holds it"
    );
    other.refresh_now(NAME).await.unwrap();
    let fresh = other.get_field(NAME, "password").await.unwrap();
    assert_ne!(fresh.expose_secret(), held_password);
    assert_eq!(
        login(s.server.port, "app", fresh.expose_secret())
            .await
            .unwrap(),
        "app"
    );

    // Under load: 4 readers on `other` client's cache, 15 rotations. Every auth failure is
    // followed by refresh_now and a read; a read that gets a newer version logs in.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let sb = other.clone();
            let stop = stop.clone();
            let port = s.server.port;
            tokio::spawn(async move {
                let (mut failures, mut recovered, mut logins) = (0u64, 0u64, 0u64);
                let mut slowest = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let h = sb.get(NAME).await.unwrap();
                    let password = h.secret().json_field("password").unwrap();
                    match login(port, "app", password.expose_secret()).await {
                        Ok(_) => logins += 1,
                        Err(e) if is_auth_failure(&e) => {
                            failures += 1;
                            let failed_at = Instant::now();
                            // Between the rotation's set and its promotion the store still
                            // has the old value: refresh until a newer version is there.
                            let fresh = loop {
                                sb.refresh_now(NAME).await.unwrap();
                                let f = sb.get(NAME).await.unwrap();
                                if f.version() != h.version() {
                                    break f;
                                }
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            };
                            let password = fresh.secret().json_field("password").unwrap();
                            login(port, "app", password.expose_secret())
                                .await
                                .expect("the login after a refresh succeeds");
                            recovered += 1;
                            slowest = slowest.max(failed_at.elapsed());
                        }
                        Err(e) => panic!("a login failed for another reason: {e}"),
                    }
                }
                (failures, recovered, logins, slowest)
            })
        })
        .collect();
    for _ in 0..15 {
        s.sb.rotation()
            .rotate_with(NAME, &s.rotator, s.rotator.new_value())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut failures, mut recovered, mut logins, mut slowest) = (0, 0, 0, Duration::ZERO);
    for r in readers {
        let (f, rec, l, s) = r.await.unwrap();
        failures += f;
        recovered += rec;
        logins += l;
        slowest = slowest.max(s);
    }
    eprintln!(
        "single user, 15 rotations: {logins} logins, {failures} auth failures, all recovered \
         after a refresh (slowest {slowest:?})"
    );
    assert_eq!(failures, recovered);
    assert!(logins > 0);
    assert!(
        failures > 0,
        "the readers' cache kept the old value, so their logins failed before a refresh"
    );
}

#[tokio::test]
async fn quotes_in_role_and_password_are_passed_safely_and_never_shown() {
    let s = setup(Strategy::SingleUser).await;
    let role = "o'brien \"app\"; DROP ROLE admin; --";
    admin_ident(s.server.port, "CREATE ROLE %I LOGIN", role).await;
    let nasty = "it's \"q\"\\ $$ $sealbox$ '; DROP ROLE admin; -- zz";
    let name = "predis/prod/postgres/weird";
    seed(&s.store, name, role, "unused-first").await;
    let rotator = Postgres::new(
        "127.0.0.1",
        s.server.port,
        "admin",
        secret(ADMIN_PASSWORD),
        role,
        Strategy::SingleUser,
    );
    s.sb.rotation()
        .rotate_with(name, &rotator, NewValue::Given(credential(role, nasty)))
        .await
        .unwrap();
    assert_eq!(login(s.server.port, role, nasty).await.unwrap(), role);
    assert_eq!(
        login(s.server.port, "admin", ADMIN_PASSWORD).await.unwrap(),
        "admin",
        "nothing in a value ran as SQL"
    );

    // A role that does not exist: the error names the role, not the password.
    let ghost = Postgres::new(
        "127.0.0.1",
        s.server.port,
        "admin",
        secret(ADMIN_PASSWORD),
        "ghost",
        Strategy::SingleUser,
    );
    let pw = "ghost-password-zz-1234";
    seed(
        &s.store,
        "predis/prod/postgres/ghost",
        "ghost",
        "unused-first",
    )
    .await;
    let e =
        s.sb.rotation()
            .rotate_with(
                "predis/prod/postgres/ghost",
                &ghost,
                NewValue::Given(credential("ghost", pw)),
            )
            .await
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains("ghost"), "{e}");
    assert!(!e.to_string().contains(pw) && !format!("{e:?}").contains(pw));
    let status =
        s.sb.rotation()
            .status_of("predis/prod/postgres/ghost")
            .await
            .unwrap();
    let failure = status.last_failure.expect("the failure is recorded");
    assert!(!failure.reason.contains(pw), "{}", failure.reason);

    // A wrong admin password: AccessDenied, and no password in the message.
    let bad_admin = Postgres::new(
        "127.0.0.1",
        s.server.port,
        "admin",
        secret("not-the-admin-password"),
        "app",
        Strategy::SingleUser,
    );
    let e =
        s.sb.rotation()
            .rotate_with(NAME, &bad_admin, bad_admin.new_value())
            .await
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(!e.to_string().contains("not-the-admin-password"));
    assert!(
        !s.server.log_text().contains(nasty),
        "the password reached the log"
    );
}
