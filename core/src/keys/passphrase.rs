//! [`PassphraseKey`]: a master key derived from a passphrase with Argon2id.
//!
//! The salt and cost parameters are not secret but are needed to derive the same key again.
//! They live in a [`PassphraseParams`] record, together with a key-check value that makes a
//! wrong passphrase an immediate [`ErrorKind::WrongKey`]. Persisting the record is the
//! caller's choice: [`PassphraseKey::create`] returns it (store it anywhere, e.g. beside the
//! vault), or [`PassphraseKey::create_file`] / [`PassphraseKey::open_file`] keep it in a small
//! JSON file (0600). Because the key-check value covers the derived key, editing the cost
//! parameters in the file cannot silently weaken anything: the passphrase then no longer
//! checks out.
//!
//! A passphrase-derived key has one version; [`KeyProvider::rotate`](super::KeyProvider::rotate)
//! returns `Unsupported`. To change the passphrase, open a keyring with the old provider and
//! rewrap under a new one.
//!
//! Erasure: it holds no namespace keys, so erasing a namespace destroys its KEKs in the vault
//! file only and reports `backups_covered: false`: a copy of the vault taken before, with the
//! same passphrase, still reads the namespace. Use the local key file where erasure must
//! reach backups.
//!
//! Cost: the default is RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes), and
//! [`PassphraseKey::create`] refuses anything below [`PassphraseCost::FLOOR`]. A record created
//! with weaker parameters (by an older build) still opens, since its parameters are stored
//! with it, but logs a warning naming them.
//!
//! Argon2's working memory (64 MiB at the default cost) is allocated here, not by the crate,
//! and wiped after every derivation, as are the crate's internal hashes (its `zeroize`
//! feature); the derived key itself goes straight into locked memory.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::data_key::{DataKey, KEY_LEN};
use super::ids::{KeyId, KeyVersion};
use super::provider::{KeyCheck, MasterKeys, local_provider};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::{Secret, SecretString};

const SALT_LEN: usize = 16;
const PARAMS_FORMAT: u32 = 1;

/// Argon2id cost. The default is RFC 9106's second recommendation (64 MiB, 3 passes, 4
/// lanes), which is also the floor [`PassphraseKey::create`] enforces (see
/// [`PassphraseCost::meets_floor`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassphraseCost {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl PassphraseCost {
    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes.
    pub const FLOOR: PassphraseCost = PassphraseCost {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 4,
    };

    /// Whether this cost is at least [`PassphraseCost::FLOOR`]: at least 64 MiB of memory, and
    /// memory times passes at least the floor's (64 MiB x 3), so more memory may buy fewer
    /// passes (RFC 9106's first option, 2 GiB and 1 pass, qualifies). Lanes are not part of
    /// the floor: they split the same memory and passes for parallelism and do not change
    /// what a guess costs.
    pub fn meets_floor(&self) -> bool {
        let floor = Self::FLOOR;
        self.m_cost_kib >= floor.m_cost_kib
            && u64::from(self.m_cost_kib) * u64::from(self.t_cost)
                >= u64::from(floor.m_cost_kib) * u64::from(floor.t_cost)
    }
}

impl Default for PassphraseCost {
    fn default() -> Self {
        PassphraseCost::FLOOR
    }
}

impl std::fmt::Display for PassphraseCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} KiB, {} passes, {} lanes",
            self.m_cost_kib, self.t_cost, self.p_cost
        )
    }
}

/// What is needed, besides the passphrase, to derive the master key again. Not secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PassphraseParams {
    /// Record format (1).
    pub format: u32,
    /// Always `"argon2id"` in format 1.
    pub algorithm: String,
    /// Argon2 version (19 = 0x13).
    pub argon2_version: u32,
    /// Cost parameters.
    #[serde(flatten)]
    pub cost: PassphraseCost,
    /// Base64 salt (16 random bytes).
    pub salt: String,
    /// Key-check value of the derived key.
    pub key_check: KeyCheck,
}

/// A master key derived from a passphrase (Argon2id). One version.
#[derive(Debug)]
pub struct PassphraseKey {
    keys: MasterKeys,
}

impl PassphraseKey {
    /// Derives a new master key with a fresh random salt; persist the returned parameters.
    /// A `cost` below [`PassphraseCost::FLOOR`] is refused with [`ErrorKind::InvalidInput`].
    pub fn create(
        id: KeyId,
        passphrase: &SecretString,
        cost: PassphraseCost,
    ) -> Result<(PassphraseKey, PassphraseParams)> {
        if !cost.meets_floor() {
            return Err(Error::invalid_input(format!(
                "Argon2id cost ({cost}) is below sealbox's floor: at least {} KiB of memory \
                 and memory x passes at least {} KiB x {} (RFC 9106's second recommendation); \
                 use PassphraseCost::default()",
                PassphraseCost::FLOOR.m_cost_kib,
                PassphraseCost::FLOOR.m_cost_kib,
                PassphraseCost::FLOOR.t_cost
            )));
        }
        Self::create_unchecked(id, passphrase, cost)
    }

    fn create_unchecked(
        id: KeyId,
        passphrase: &SecretString,
        cost: PassphraseCost,
    ) -> Result<(PassphraseKey, PassphraseParams)> {
        if passphrase.is_empty() {
            return Err(Error::invalid_input("the passphrase must not be empty"));
        }
        let mut salt = [0u8; SALT_LEN];
        // From the OS, not a userspace generator a forked process shares with its parent.
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| Error::internal("the operating system's random source failed"))?;
        let material = derive(passphrase, &salt, cost)?;
        let params = PassphraseParams {
            format: PARAMS_FORMAT,
            algorithm: "argon2id".to_owned(),
            argon2_version: 0x13,
            cost,
            salt: STANDARD.encode(salt),
            key_check: KeyCheck::compute(&material),
        };
        Ok((Self::from_material(id, material)?, params))
    }

    /// Derives the master key again from stored parameters. A passphrase that does not match
    /// the parameters' key-check value gives [`ErrorKind::WrongKey`]. Parameters below
    /// [`PassphraseCost::FLOOR`] still open (they are what the key was derived with) but log
    /// a warning.
    pub fn open(
        id: KeyId,
        passphrase: &SecretString,
        params: &PassphraseParams,
    ) -> Result<PassphraseKey> {
        if params.format != PARAMS_FORMAT
            || params.algorithm != "argon2id"
            || params.argon2_version != 0x13
        {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "passphrase parameters format {} / {} v{} are not supported by this build",
                    params.format, params.algorithm, params.argon2_version
                ),
            ));
        }
        let salt = STANDARD
            .decode(params.salt.as_bytes())
            .map_err(|_| Error::config("passphrase parameters: salt is not valid base64"))?;
        let material = derive(passphrase, &salt, params.cost)?;
        if !KeyCheck::compute(&material).matches(&params.key_check) {
            return Err(Error::new(
                ErrorKind::WrongKey,
                "wrong passphrase: it does not derive the master key these parameters were \
                 created with",
            ));
        }
        if !params.cost.meets_floor() {
            tracing::warn!(
                key = %id,
                cost = %params.cost,
                floor = %PassphraseCost::FLOOR,
                "passphrase key was derived with an Argon2id cost below sealbox's floor; \
                 derive a new passphrase key with the default cost and rewrap the keyring \
                 under it"
            );
        }
        Self::from_material(id, material)
    }

    /// [`PassphraseKey::create`] and write the parameters to a new JSON file (0600).
    pub fn create_file(
        id: KeyId,
        passphrase: &SecretString,
        cost: PassphraseCost,
        path: impl AsRef<Path>,
    ) -> Result<PassphraseKey> {
        let path = path.as_ref();
        let (key, params) = Self::create(id, passphrase, cost)?;
        let json = serde_json::to_vec_pretty(&params)
            .map_err(|e| Error::internal(format!("encoding passphrase parameters: {e}")))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(key)
    }

    /// Reads the parameters file and [`PassphraseKey::open`]s.
    pub fn open_file(
        id: KeyId,
        passphrase: &SecretString,
        path: impl AsRef<Path>,
    ) -> Result<PassphraseKey> {
        let path = path.as_ref();
        // Checked on the descriptor that is read, opened without following a symlink.
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => Error::config(format!(
                    "passphrase parameters file {} is a symlink, which sealbox refuses; point \
                     sealbox at the file itself",
                    path.display()
                )),
                _ => Error::io(format!("reading {}", path.display()), e),
            })?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if !meta.file_type().is_file() {
            return Err(Error::config(format!(
                "passphrase parameters file {} is not a regular file",
                path.display()
            )));
        }
        super::check_owner(path, "passphrase parameters file", meta.uid())?;
        if meta.mode() & 0o022 != 0 {
            return Err(Error::config(format!(
                "passphrase parameters file {} is writable by group or others; run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        // serde_json errors can quote input; the file holds no secret, but keep messages plain.
        let params: PassphraseParams = serde_json::from_slice(&bytes).map_err(|e| {
            Error::config(format!(
                "{} is not a passphrase parameters file (line {}, column {})",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        Self::open(id, passphrase, &params)
    }

    fn from_material(id: KeyId, material: Secret) -> Result<PassphraseKey> {
        let key = DataKey::from_secret(id.clone(), KeyVersion::FIRST, material)?;
        Ok(PassphraseKey {
            keys: MasterKeys::new(
                id,
                KeyVersion::FIRST,
                BTreeMap::from([(KeyVersion::FIRST, Arc::new(key))]),
            )?,
        })
    }
}

local_provider!(PassphraseKey, |this| Err(Error::new(
    crate::ErrorKind::Unsupported,
    format!(
        "passphrase key {} has one version and cannot rotate; derive a new key from a new passphrase and rewrap the keyring under it",
        this.keys.id()
    )
)));

fn derive(passphrase: &SecretString, salt: &[u8], cost: PassphraseCost) -> Result<Secret> {
    let params = Params::new(cost.m_cost_kib, cost.t_cost, cost.p_cost, Some(KEY_LEN))
        .map_err(|e| Error::config(format!("invalid Argon2id cost parameters: {e}")))?;
    // Our own working memory, so it can be wiped: the crate frees its own without wiping,
    // and its last blocks determine the derived key.
    let mut blocks: Vec<Block> = Vec::new();
    blocks
        .try_reserve_exact(params.block_count())
        .map_err(|_| {
            Error::config(format!(
                "cannot allocate Argon2id working memory for cost {cost}; free memory or lower \
             the cost"
            ))
        })?;
    blocks.resize(params.block_count(), Block::new());
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let derived = Secret::key_with(KEY_LEN, |out| {
        argon
            .hash_password_into_with_memory(
                passphrase.expose_secret().as_bytes(),
                salt,
                out,
                &mut blocks[..],
            )
            .map_err(|e| Error::config(format!("Argon2id derivation failed: {e}")))
    });
    blocks.zeroize();
    derived
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass() -> SecretString {
        SecretString::from_string("pass phrase".into()).unwrap()
    }

    #[test]
    fn the_floor_admits_more_memory_for_fewer_passes_but_never_less_memory() {
        let cost = |m_cost_kib, t_cost| PassphraseCost {
            m_cost_kib,
            t_cost,
            p_cost: 1,
        };
        assert!(PassphraseCost::default().meets_floor());
        assert!(cost(64 * 1024, 3).meets_floor());
        assert!(cost(2 * 1024 * 1024, 1).meets_floor()); // RFC 9106's first option
        assert!(cost(96 * 1024, 2).meets_floor());
        assert!(!cost(64 * 1024, 2).meets_floor());
        assert!(!cost(32 * 1024, 100).meets_floor());
        assert!(!cost(19 * 1024, 2).meets_floor());
    }

    #[test]
    fn parameters_below_the_floor_written_by_an_older_build_still_open() {
        // What an older build (19 MiB, 2 passes by default, or cheaper) stored.
        let weak = PassphraseCost {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        };
        let (key, params) =
            PassphraseKey::create_unchecked(KeyId::new("pp").unwrap(), &pass(), weak).unwrap();
        assert_eq!(params.cost, weak);
        let reopened = PassphraseKey::open(KeyId::new("pp").unwrap(), &pass(), &params).unwrap();
        let (a, b) = (
            key.keys.key_check(KeyVersion::FIRST).unwrap(),
            reopened.keys.key_check(KeyVersion::FIRST).unwrap(),
        );
        assert!(a.matches(&b));
    }
}
