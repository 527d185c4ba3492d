//! The `postgres` rotator: `ALTER ROLE .. PASSWORD` through an admin connection, tested by
//! logging in with the new password.
//!
//! The password is hashed here into a SCRAM-SHA-256 verifier (as `psql`'s `\password` does),
//! so the server, its statement log and `pg_stat_activity` never see it. The role name and the
//! verifier reach the server as bind parameters and are quoted there (`format('%I', '%L')`
//! inside a `DO` block), so no SQL is ever built from a value.
//!
//! The driver (`tokio-postgres`) keeps its own copy of a password it logs in with, in its
//! connection `Config`, freed without wiping when the login ends; sealbox's copy stays locked.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sealbox::rotation::{Generator, NewValue, Rotator, StepContext};
use sealbox::{Error, ErrorKind, ExposeSecret, Result, Secret};
use tokio_postgres::error::SqlState;
use zeroize::Zeroizing;

use crate::credential::{Login, Strategy, Users, without_password};

/// Rotates a PostgreSQL role's password. See the module documentation.
#[derive(Clone, Debug)]
pub struct Postgres {
    host: String,
    port: u16,
    dbname: String,
    admin_user: String,
    admin_password: Arc<Secret>,
    users: Users,
    generator: Generator,
    connect_timeout: Duration,
}

impl Postgres {
    /// A rotator for role `user` (and `user_clone` with [`Strategy::AlternatingUsers`]) on the
    /// server at `host:port` (a host name, an IP address, or a Unix socket directory), changed
    /// through `admin_user`, a role with `CREATEROLE` (or a superuser).
    pub fn new(
        host: impl Into<String>,
        port: u16,
        admin_user: impl Into<String>,
        admin_password: Secret,
        user: impl Into<String>,
        strategy: Strategy,
    ) -> Postgres {
        Postgres {
            host: host.into(),
            port,
            dbname: "postgres".into(),
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

    /// The database logins connect to (`postgres` by default).
    pub fn dbname(mut self, dbname: impl Into<String>) -> Postgres {
        self.dbname = dbname.into();
        self
    }

    /// How new passwords are made (a 24-character SOC2 password by default).
    pub fn generator(mut self, generator: Generator) -> Postgres {
        self.generator = generator;
        self
    }

    /// How long a login may take before the step fails.
    pub fn connect_timeout(mut self, timeout: Duration) -> Postgres {
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

    async fn connect(&self, user: &str, password: &[u8]) -> Result<tokio_postgres::Client> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.dbname)
            .user(user)
            .password(password)
            .connect_timeout(self.connect_timeout)
            .application_name("sealbox-rotation");
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
            self.error(
                &format!(
                    "logging in to PostgreSQL at {}:{} as {user}",
                    self.host, self.port
                ),
                &e,
                Some(password),
            )
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A driver error as a sealbox error: the server's message and SQLSTATE, never the
    /// driver's debug text; withheld if it held the password.
    fn error(&self, what: &str, e: &tokio_postgres::Error, password: Option<&[u8]>) -> Error {
        let Some(db) = e.as_db_error() else {
            let text = without_password(&e.to_string(), password);
            return Error::new(
                ErrorKind::Unavailable,
                format!("{what} failed: {text}; check that the server is up and reachable"),
            );
        };
        let code = db.code();
        let kind = if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            || *code == SqlState::INSUFFICIENT_PRIVILEGE
        {
            ErrorKind::AccessDenied
        } else if *code == SqlState::UNDEFINED_OBJECT {
            ErrorKind::NotFound
        } else {
            ErrorKind::Unavailable
        };
        let text = without_password(db.message(), password);
        Error::new(
            kind,
            format!(
                "{what} failed: PostgreSQL says {text} (SQLSTATE {})",
                code.code()
            ),
        )
    }
}

#[async_trait]
impl Rotator for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    /// The strategy's next user with a new password from this rotator's generator (which a
    /// config-built rotator takes from the schedule): see [`Postgres::new_value`].
    fn pending_value(&self, _generator: Generator) -> NewValue {
        self.new_value()
    }

    async fn set(&self, _step: &StepContext<'_>, value: &Secret) -> Result<()> {
        let login = Login::parse(value)?;
        self.users.check(&login.username)?;
        let verifier = Zeroizing::new(postgres_protocol::password::scram_sha_256(
            login.password.expose_secret().as_bytes(),
        ));
        let mut admin = self
            .connect(&self.admin_user, self.admin_password.expose_secret())
            .await?;
        let what = format!(
            "changing the password of PostgreSQL role {}",
            login.username
        );
        let fail = |e: tokio_postgres::Error| self.error(&what, &e, None);
        let tx = admin.transaction().await.map_err(fail)?;
        // Utility statements take no bind parameters: the values go in as transaction-local
        // settings, and the server quotes them into the statement it runs.
        tx.query_one(
            "SELECT set_config('sealbox.rotate_role', $1, true), \
                    set_config('sealbox.rotate_verifier', $2, true)",
            &[&login.username, &verifier.as_str()],
        )
        .await
        .map_err(fail)?;
        tx.batch_execute(
            "DO $sealbox$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', \
             current_setting('sealbox.rotate_role'), current_setting('sealbox.rotate_verifier')); \
             END $sealbox$",
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)
    }

    async fn test(&self, _step: &StepContext<'_>, value: &Secret) -> Result<()> {
        let login = Login::parse(value)?;
        self.users.check(&login.username)?;
        let client = self
            .connect(&login.username, login.password.expose_secret().as_bytes())
            .await?;
        let row = client
            .query_one("SELECT current_user::text", &[])
            .await
            .map_err(|e| self.error("querying PostgreSQL with the new password", &e, None))?;
        let who: String = row.get(0);
        if who != login.username {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "logged in to PostgreSQL as {} but the server says the session is {who}",
                    login.username
                ),
            ));
        }
        Ok(())
    }
}
