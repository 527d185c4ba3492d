//! The `mysql` rotator (MySQL and MariaDB): `ALTER USER .. IDENTIFIED BY PASSWORD` through an
//! admin connection, tested by logging in with the new password.
//!
//! The password is hashed here into its `mysql_native_password` hash (`*` and the hex of
//! SHA1(SHA1(password)), what the server stores), so the server, its general query log and
//! `SHOW PROCESSLIST` never see it: MariaDB writes `ALTER USER .. IDENTIFIED BY 'password'`
//! to its general log as it is. The account and the hash reach the server as bind parameters
//! and are quoted there (`QUOTE()`, then `PREPARE` of the statement the server built), so no
//! SQL is ever built from a value. The account must use `mysql_native_password` (MariaDB's
//! default; on MySQL 8 create it `IDENTIFIED WITH mysql_native_password`).
//!
//! The driver (`mysql_async`) keeps its own copy of a password it logs in with, in its
//! connection options, freed without wiping when the login ends; sealbox's copy stays locked.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use sealbox::rotation::{Generator, NewValue, Rotator, StepContext};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use sha1::{Digest, Sha1};
use zeroize::{Zeroize, Zeroizing};

use crate::credential::{Login, Strategy, Users, without_password};

/// Rotates a MySQL or MariaDB account's password. See the module documentation.
#[derive(Clone, Debug)]
pub struct Mysql {
    host: String,
    port: u16,
    account_host: String,
    admin_user: String,
    admin_password: Arc<Secret>,
    users: Users,
    generator: Generator,
    connect_timeout: Duration,
}

impl Mysql {
    /// A rotator for account `user@'%'` (and `user_clone@'%'` with
    /// [`Strategy::AlternatingUsers`]) on the server at `host:port`, changed through
    /// `admin_user`, an account with `CREATE USER` (or `UPDATE` on `mysql.*`).
    pub fn new(
        host: impl Into<String>,
        port: u16,
        admin_user: impl Into<String>,
        admin_password: Secret,
        user: impl Into<String>,
        strategy: Strategy,
    ) -> Mysql {
        Mysql {
            host: host.into(),
            port,
            account_host: "%".into(),
            admin_user: admin_user.into(),
            admin_password: Arc::new(admin_password),
            users: Users {
                user: user.into(),
                strategy,
            },
            generator: Generator::soc2_password(),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The host part of the rotated accounts (`%` by default).
    pub fn account_host(mut self, host: impl Into<String>) -> Mysql {
        self.account_host = host.into();
        self
    }

    /// How new passwords are made (a 24-character SOC2 password by default).
    pub fn generator(mut self, generator: Generator) -> Mysql {
        self.generator = generator;
        self
    }

    /// How long a login may take before the step fails.
    pub fn connect_timeout(mut self, timeout: Duration) -> Mysql {
        self.connect_timeout = timeout;
        self
    }

    /// The value a rotation with this rotator stages: the strategy's next user with a new
    /// password, made from the current value under the rotation's lease.
    pub fn new_value(&self) -> NewValue {
        let users = self.users.clone();
        let generator = self.generator.clone();
        NewValue::FromCurrent(Box::new(move |current| users.next(&generator, current)))
    }

    async fn connect(&self, user: &str, password: &[u8]) -> Result<mysql_async::Conn> {
        let what = format!(
            "logging in to MySQL at {}:{} as {user}",
            self.host, self.port
        );
        let text = std::str::from_utf8(password).map_err(|_| {
            Error::invalid_input(format!(
                "{what}: the password is not UTF-8, which the MySQL driver requires"
            ))
        })?;
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(text))
            .prefer_socket(false);
        match tokio::time::timeout(self.connect_timeout, mysql_async::Conn::new(opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(error(&what, &e, Some(password))),
            Err(_) => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{what} timed out after {} s; check that the server is up and reachable",
                    self.connect_timeout.as_secs()
                ),
            )),
        }
    }
}

/// A driver error as a sealbox error: the server's code and message, never the driver's
/// debug text; withheld if it held the password.
fn error(what: &str, e: &mysql_async::Error, password: Option<&[u8]>) -> Error {
    let mysql_async::Error::Server(server) = e else {
        let text = without_password(&e.to_string(), password);
        return Error::new(
            ErrorKind::Unavailable,
            format!("{what} failed: {text}; check that the server is up and reachable"),
        );
    };
    let kind = match server.code {
        // ER_ACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR, ER_SPECIFIC_ACCESS_DENIED_ERROR
        1045 | 1044 | 1227 => ErrorKind::AccessDenied,
        // ER_CANNOT_USER: ALTER USER of an account that does not exist
        1396 => ErrorKind::NotFound,
        _ => ErrorKind::Unavailable,
    };
    let text = without_password(&server.message, password);
    Error::new(
        kind,
        format!(
            "{what} failed: the server says {text} (error {})",
            server.code
        ),
    )
}

/// `*` and the uppercase hex of SHA1(SHA1(password)), in a buffer wiped on drop.
fn native_hash(password: &[u8]) -> Zeroizing<String> {
    let mut stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1.as_slice());
    stage1.as_mut_slice().zeroize();
    let mut out = Zeroizing::new(String::with_capacity(41));
    out.push('*');
    for b in stage2 {
        out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
    }
    out
}

#[async_trait]
impl Rotator for Mysql {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    /// The strategy's next user with a new password from this rotator's generator (which a
    /// config-built rotator takes from the schedule): see [`Mysql::new_value`].
    fn pending_value(&self, _generator: Generator) -> NewValue {
        self.new_value()
    }

    async fn set(&self, _step: &StepContext<'_>, value: &Secret) -> Result<()> {
        let login = Login::parse(value)?;
        self.users.check(&login.username)?;
        let hash = native_hash(login.password.expose_secret().as_bytes());
        let mut admin = self
            .connect(&self.admin_user, self.admin_password.expose_secret())
            .await?;
        let what = format!("changing the password of MySQL account {}", login.username);
        let fail = |e: mysql_async::Error| error(&what, &e, None);
        // ALTER USER takes no placeholders: the values go in as session variables, and the
        // server quotes them into the statement it prepares.
        admin
            .exec_drop(
                "SET @sealbox_user = ?, @sealbox_host = ?, @sealbox_hash = ?",
                (
                    login.username.as_str(),
                    self.account_host.as_str(),
                    hash.as_str(),
                ),
            )
            .await
            .map_err(fail)?;
        for sql in [
            "SET @sealbox_stmt = CONCAT('ALTER USER ', QUOTE(@sealbox_user), '@', \
             QUOTE(@sealbox_host), ' IDENTIFIED BY PASSWORD ', QUOTE(@sealbox_hash))",
            "PREPARE sealbox_alter FROM @sealbox_stmt",
            "EXECUTE sealbox_alter",
            "DEALLOCATE PREPARE sealbox_alter",
            "SET @sealbox_hash = NULL, @sealbox_stmt = NULL",
        ] {
            admin.query_drop(sql).await.map_err(fail)?;
        }
        let _ = admin.disconnect().await;
        Ok(())
    }

    async fn test(&self, _step: &StepContext<'_>, value: &Secret) -> Result<()> {
        let login = Login::parse(value)?;
        self.users.check(&login.username)?;
        let mut conn = self
            .connect(&login.username, login.password.expose_secret().as_bytes())
            .await?;
        let who: Option<String> = conn
            .query_first("SELECT CURRENT_USER()")
            .await
            .map_err(|e| error("querying MySQL with the new password", &e, None))?;
        let _ = conn.disconnect().await;
        let who = who.unwrap_or_default();
        let user = who.rsplit_once('@').map_or(who.as_str(), |(u, _)| u);
        if user != login.username {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "logged in to MySQL as {} but the server says the session is {who}",
                    login.username
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_native_hash_is_the_servers() {
        // SELECT PASSWORD('password') on MariaDB.
        assert_eq!(
            super::native_hash(b"password").as_str(),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
    }
}
