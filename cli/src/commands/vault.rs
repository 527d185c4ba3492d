//! Commands on the vault itself: init, key rotation, namespace erasure, verify; and audit log
//! verification.

use sealbox::{Error, ErrorKind, Result};

use crate::args::{KeysCommand, NamespaceCommand};
use crate::output::Outcome;
use crate::session::{Locations, Session};

fn not_built(what: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("{what} is not in this build yet"),
    )
}

/// `sealbox init`.
pub async fn init(locations: &Locations) -> Result<Outcome> {
    let _ = locations.vault_and_key()?;
    Err(not_built("creating a local vault"))
}

/// `sealbox keys ...`.
pub async fn keys(session: &Session, command: KeysCommand) -> Result<Outcome> {
    let _ = (session, command);
    Err(not_built("key rotation"))
}

/// `sealbox namespace ...`.
pub async fn namespace(session: &Session, command: NamespaceCommand) -> Result<Outcome> {
    let NamespaceCommand::Erase { yes, .. } = &command;
    if !yes {
        return Err(erase_needs_confirmation());
    }
    let _ = session;
    Err(not_built("namespace erasure"))
}

/// The error for `namespace erase` without `--yes`.
pub fn erase_needs_confirmation() -> Error {
    Error::invalid_input(
        "erasing a namespace destroys its keys and every secret in it for ever; \
         add --yes to confirm",
    )
}

/// `sealbox verify`.
pub async fn verify(session: &Session) -> Result<Outcome> {
    let _ = session;
    Err(not_built("vault verification"))
}
