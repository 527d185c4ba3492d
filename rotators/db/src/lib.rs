//! Rotators for [`sealbox`] that change a database user's password: [`Postgres`]
//! (`ALTER ROLE .. PASSWORD`, feature `postgres`) and [`Mysql`] (`ALTER USER .. IDENTIFIED BY`,
//! MySQL and MariaDB, feature `mysql`).
//!
//! They live in a crate of their own so that the core, and every program that embeds it, does
//! not carry two database drivers and their TLS and protocol stacks unless it rotates database
//! passwords.
//!
//! The secret a database rotator rotates is a JSON object, as AWS's rotation functions keep
//! it: `{"username": "app", "password": "..."}` (readers take both with
//! `sb.get_fields(name, &["username", "password"])`). Two strategies, as AWS offers them:
//!
//! * [`Strategy::SingleUser`]: the user's password changes in place. From the moment the
//!   `set` step runs, a new login with the old password fails; connections already open stay
//!   open. A reader whose login fails refreshes the secret once (`sb.refresh_now(name)`, then
//!   reads again) and logs in with the new value, which is `CURRENT` once the rotation's `test`
//!   step passed (a few milliseconds after `set`).
//! * [`Strategy::AlternatingUsers`]: two users, `NAME` and `NAME_clone`, take turns. A rotation
//!   changes the password of the user that is not `CURRENT` and makes it `CURRENT`; the other
//!   keeps its password until the next rotation, so readers never fail provided a value read is
//!   used within one rotation period.
//!
//! From a config file, a rotation schedule names them as `rotator: {postgres: {...}}` or
//! `{mysql: {...}}` once [`register_global`] (or [`register`]) has added them to the rotator
//! registry; the settings are described in the `config` module's source and the README.
//!
//! Use [`Postgres::new_value`] / [`Mysql::new_value`] as the rotation's value: it reads the
//! current value under the rotation's lease to pick the user (see
//! [`NewValue::FromCurrent`](sealbox::rotation::NewValue::FromCurrent)).
//!
//! Passwords stay in sealbox's locked [`Secret`](sealbox::Secret)s except where a driver needs its own copy
//! (said per rotator), are never sent to the server in clear (each rotator sends the server's
//! password hash, not the password), and never appear in an error or a log line.

mod config;
mod credential;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;

pub use config::{NAMES, register, register_global};
pub use credential::Strategy;
#[cfg(feature = "mysql")]
pub use mysql::Mysql;
#[cfg(feature = "postgres")]
pub use postgres::Postgres;
