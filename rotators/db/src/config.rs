//! The `postgres` and `mysql` rotators from a config file's rotation schedule:
//!
//! ```yaml
//! rotation:
//!   secrets:
//!     "predis/prod/postgres/app":
//!       type: user_password
//!       rotator:
//!         postgres:
//!           host: db1.internal          # a host name, an IP address or a socket directory
//!           port: 5432                  # default 5432 (mysql: 3306)
//!           dbname: postgres            # postgres only; the database logins connect to
//!           admin_user: sealbox_admin   # a role with CREATEROLE / an account with CREATE USER
//!           admin_password_file: /run/secrets/pg-admin
//!           user: app                   # the user rotated (and app_clone, alternating)
//!           strategy: alternating_users # or single_user (the default)
//!           connect_timeout: 10s
//! ```
//!
//! The admin password is given one way of three: `admin_password_file` (a file holding it),
//! `admin_password_secret` (a sealbox secret read through the rotating client, `NAME` or
//! `NAME#FIELD`), or `admin_password` (inline, for `${VAR}`). New passwords come from the
//! schedule's generator for the secret's type (`length` sets their length).

use std::sync::Arc;
use std::time::Duration;

use sealbox::rotation::{Rotator, RotatorRegistry, RotatorSettings};
use sealbox::{Error, Result, Secret};
use serde::Deserialize;

use crate::credential::Strategy;

/// The settings both rotators share (`dbname` is PostgreSQL's, `account_host` MySQL's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DbSettings {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    dbname: Option<String>,
    #[serde(default)]
    account_host: Option<String>,
    admin_user: String,
    // Read by `RotatorSettings::secret`; named here so that `deny_unknown_fields` accepts them.
    #[serde(default, rename = "admin_password")]
    _inline: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "admin_password_file")]
    _file: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "admin_password_secret")]
    _secret: Option<serde::de::IgnoredAny>,
    user: String,
    #[serde(default)]
    strategy: StrategyName,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
}

#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StrategyName {
    #[default]
    SingleUser,
    AlternatingUsers,
}

impl From<StrategyName> for Strategy {
    fn from(s: StrategyName) -> Strategy {
        match s {
            StrategyName::SingleUser => Strategy::SingleUser,
            StrategyName::AlternatingUsers => Strategy::AlternatingUsers,
        }
    }
}

/// The settings of `rotator`, and its admin password.
async fn read(settings: &RotatorSettings, rotator: &str) -> Result<(DbSettings, Secret)> {
    let db: DbSettings = settings.config().deserialize()?;
    let at = settings.config().key_path();
    if db.dbname.is_some() && rotator != "postgres" {
        return Err(Error::config(format!(
            "{at}.dbname: only the postgres rotator connects to a database by name"
        )));
    }
    if db.account_host.is_some() && rotator != "mysql" {
        return Err(Error::config(format!(
            "{at}.account_host: only the mysql rotator has account hosts"
        )));
    }
    let password = settings.secret("admin_password").await?.ok_or_else(|| {
        Error::config(format!(
            "{at}: the admin password is missing; set admin_password_file (a file holding \
             it), admin_password_secret (a sealbox secret) or admin_password"
        ))
    })?;
    Ok((db, password))
}

#[cfg(feature = "postgres")]
async fn postgres(settings: RotatorSettings) -> Result<Arc<dyn Rotator>> {
    let (db, password) = read(&settings, "postgres").await?;
    let mut rotator = crate::Postgres::new(
        db.host,
        db.port.unwrap_or(5432),
        db.admin_user,
        password,
        db.user,
        db.strategy.into(),
    )
    .generator(settings.generator().clone());
    if let Some(name) = db.dbname {
        rotator = rotator.dbname(name);
    }
    if let Some(t) = db.connect_timeout {
        rotator = rotator.connect_timeout(t);
    }
    Ok(Arc::new(rotator))
}

#[cfg(feature = "mysql")]
async fn mysql(settings: RotatorSettings) -> Result<Arc<dyn Rotator>> {
    let (db, password) = read(&settings, "mysql").await?;
    let mut rotator = crate::Mysql::new(
        db.host,
        db.port.unwrap_or(3306),
        db.admin_user,
        password,
        db.user,
        db.strategy.into(),
    )
    .generator(settings.generator().clone());
    if let Some(host) = db.account_host {
        rotator = rotator.account_host(host);
    }
    if let Some(t) = db.connect_timeout {
        rotator = rotator.connect_timeout(t);
    }
    Ok(Arc::new(rotator))
}

/// Registers the rotators this crate is built with (`postgres`, `mysql`) in `registry`.
pub fn register(registry: &mut RotatorRegistry) {
    #[cfg(feature = "postgres")]
    registry.register("postgres", postgres);
    #[cfg(feature = "mysql")]
    registry.register("mysql", mysql);
    let _ = registry;
}

/// Registers them in the process-wide registry that `Sealbox::rotation()` reads.
pub fn register_global() -> Result<()> {
    let mut registry = RotatorRegistry::global()
        .write()
        .map_err(|_| Error::internal("the rotator registry's lock was poisoned"))?;
    register(&mut registry);
    Ok(())
}

/// The names `register` adds.
pub const NAMES: &[&str] = &[
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "mysql")]
    "mysql",
];
