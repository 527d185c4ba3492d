//! The `mysql` rotator against a real MariaDB (Debian's), as a specification:
//!
//! * alternating users: 50 rotations while 4 readers log in in a loop with the credential they
//!   read through sealbox; not one login fails, and the users take turns;
//! * single user: the password changes in place, so a reader holding the old value fails its
//!   next login; after `refresh_now` it reads the new value and logs in;
//! * an account name and a password full of quotes and backslashes are passed safely, and the
//!   password never reaches the server's general query log, nor an error.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sealbox::rotation::NewValue;
use sealbox::store::memory::MemoryStore;
use sealbox::store::{PutOptions, SecretName, SecretStore, Stage, VersionSelector};
use sealbox::{ErrorKind, ExposeSecret, Sealbox, Secret};
use sealbox_db_rotators::{Mysql, Strategy};
use support::{ADMIN_PASSWORD, Server};

const NAME: &str = "predis/prod/mysql/app";

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

async fn login(port: u16, user: &str, password: &str) -> Result<String, mysql_async::Error> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await?;
    let who: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
    conn.disconnect().await?;
    let who = who.unwrap_or_default();
    Ok(who
        .rsplit_once('@')
        .map_or(who.clone(), |(u, _)| u.to_owned()))
}

fn is_auth_failure(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1045)
}

/// Creates account `user@'%'` with `password`, both quoted by the server.
async fn create_user(port: u16, user: &str, password: &str) {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("admin"))
        .pass(Some(ADMIN_PASSWORD))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await.unwrap();
    conn.exec_drop("SET @u = ?, @p = ?", (user, password))
        .await
        .unwrap();
    for sql in [
        "SET @s = CONCAT('CREATE USER ', QUOTE(@u), '@''%'' IDENTIFIED BY ', QUOTE(@p))",
        "PREPARE s FROM @s",
        "EXECUTE s",
    ] {
        conn.query_drop(sql).await.unwrap();
    }
    conn.disconnect().await.unwrap();
}

struct Setup {
    server: Server,
    store: Arc<MemoryStore>,
    sb: Sealbox,
    rotator: Mysql,
}

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
    let server = tokio::task::spawn_blocking(support::mariadb).await.unwrap();
    create_user(server.port, "app", "initial-app").await;
    create_user(server.port, "app_clone", "initial-clone").await;
    let store = Arc::new(MemoryStore::new());
    seed(&store, NAME, "app", "initial-app").await;
    let sb = Sealbox::builder().store(store.clone()).build().unwrap();
    let rotator = Mysql::new(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alternating_users_rotate_while_4_readers_never_fail() {
    let s = setup(Strategy::AlternatingUsers).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (sb, stop, port) = (s.sb.clone(), stop.clone(), s.server.port);
            tokio::spawn(async move {
                let (mut logins, mut failures, mut users) = (0u64, 0u64, BTreeSet::new());
                while !stop.load(Ordering::Relaxed) {
                    let f = sb
                        .get_fields(NAME, &["username", "password"])
                        .await
                        .unwrap();
                    let user = std::str::from_utf8(f[0].secret().expose_secret()).unwrap();
                    let pw = std::str::from_utf8(f[1].secret().expose_secret()).unwrap();
                    match login(port, user, pw).await {
                        Ok(who) => {
                            assert_eq!(who, user);
                            logins += 1;
                            users.insert(who);
                        }
                        Err(e) if is_auth_failure(&e) => failures += 1,
                        Err(e) => panic!("a reader's login failed for another reason: {e}"),
                    }
                }
                (logins, failures, users)
            })
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (mut logins, mut failures, mut users) = (0, 0, BTreeSet::new());
    for r in readers {
        let (l, f, u) = r.await.unwrap();
        assert!(l > 0, "every reader logged in");
        logins += l;
        failures += f;
        users.extend(u);
    }
    eprintln!(
        "50 alternating rotations in {elapsed:?}; readers: {logins} logins, {failures} auth \
         failures"
    );
    assert_eq!(failures, 0, "readers never fail");
    assert_eq!(
        users,
        BTreeSet::from(["app".to_owned(), "app_clone".to_owned()])
    );
    for stage in [Stage::Current, Stage::Previous] {
        let (user, password) = value_of(&s.store, stage).await;
        assert_eq!(login(s.server.port, &user, &password).await.unwrap(), user);
    }
    let log = s.server.log_text();
    assert!(
        log.contains("IDENTIFIED BY PASSWORD"),
        "the general log is on"
    );
    for p in &passwords {
        assert!(!log.contains(p.as_str()), "a password is in the server log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_user_old_password_fails_until_a_refresh_reads_the_new_one() {
    let s = setup(Strategy::SingleUser).await;
    let other = Sealbox::builder().store(s.store.clone()).build().unwrap();
    let held = other.get_field(NAME, "password").await.unwrap();
    s.sb.rotation()
        .rotate_with(NAME, &s.rotator, s.rotator.new_value())
        .await
        .unwrap();
    let e = login(s.server.port, "app", held.expose_secret())
        .await
        .unwrap_err();
    assert!(is_auth_failure(&e), "the old password is refused: {e}");
    let cached = other.get_field(NAME, "password").await.unwrap();
    assert_eq!(cached.expose_secret(), held.expose_secret(), "cached");
    other.refresh_now(NAME).await.unwrap();
    let fresh = other.get_field(NAME, "password").await.unwrap();
    assert_ne!(fresh.expose_secret(), held.expose_secret());
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
            let (sb, stop, port) = (other.clone(), stop.clone(), s.server.port);
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
async fn quotes_in_account_and_password_are_passed_safely_and_never_shown() {
    let s = setup(Strategy::SingleUser).await;
    let user = "o'brien\\\"x";
    create_user(s.server.port, user, "first").await;
    let nasty = "it's \"q\"\\' OR 1=1; DROP USER admin; -- zz";
    let rotator = Mysql::new(
        "127.0.0.1",
        s.server.port,
        "admin",
        secret(ADMIN_PASSWORD),
        user,
        Strategy::SingleUser,
    );
    seed(&s.store, "predis/prod/mysql/weird", user, "first").await;
    s.sb.rotation()
        .rotate_with(
            "predis/prod/mysql/weird",
            &rotator,
            NewValue::Given(credential(user, nasty)),
        )
        .await
        .unwrap();
    assert_eq!(login(s.server.port, user, nasty).await.unwrap(), user);
    assert_eq!(
        login(s.server.port, "admin", ADMIN_PASSWORD).await.unwrap(),
        "admin"
    );

    let ghost = Mysql::new(
        "127.0.0.1",
        s.server.port,
        "admin",
        secret(ADMIN_PASSWORD),
        "ghost",
        Strategy::SingleUser,
    );
    let pw = "ghost-password-zz-1234";
    seed(&s.store, "predis/prod/mysql/ghost", "ghost", "unused-first").await;
    let e =
        s.sb.rotation()
            .rotate_with(
                "predis/prod/mysql/ghost",
                &ghost,
                NewValue::Given(credential("ghost", pw)),
            )
            .await
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(!e.to_string().contains(pw) && !format!("{e:?}").contains(pw));
    assert!(
        !s.server.log_text().contains(nasty),
        "the password reached the log"
    );
}
