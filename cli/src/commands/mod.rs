//! Running a parsed command line: opening what it needs and dispatching to the command.

pub mod audit;
pub mod policy;
pub mod rotation;
pub mod scan;
pub mod secrets;
pub mod vault;

use std::io::{Read, Write};

use sealbox::{Error, Result};

use crate::args::{Cli, Command};
use crate::output::Outcome;
use crate::session::Session;

/// The process's standard streams, passed in so tests can run commands in-process.
pub struct Io<'a> {
    /// Standard input (values for `put`).
    pub stdin: &'a mut dyn Read,
    /// Whether standard input is a terminal (values are then refused: they would be echoed).
    pub stdin_is_terminal: bool,
    /// Standard output (reports, and the value for `get --reveal`).
    pub stdout: &'a mut dyn Write,
    /// Standard error (warnings).
    pub stderr: &'a mut dyn Write,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("stdin_is_terminal", &self.stdin_is_terminal)
            .finish_non_exhaustive()
    }
}

/// Runs `cli`.
pub async fn run(cli: Cli, io: &mut Io<'_>) -> Result<Outcome> {
    let locations = crate::session::Locations {
        vault: cli.vault,
        key_file: cli.key_file,
        config: cli.config,
    };
    match cli.command {
        Command::Init => vault::init(&locations).await,
        Command::Audit(cmd) => audit::run(cmd, locations.config.as_deref()).await,
        // Refuse an unconfirmed erasure before touching the vault at all.
        Command::Namespace(crate::args::NamespaceCommand::Erase { yes: false, .. }) => {
            Err(vault::erase_needs_confirmation())
        }
        // An older copy of the vault does not open as a session; these read or replace it.
        Command::Backup(crate::args::BackupCommand::Restore { file }) => {
            vault::restore(&locations, &file).await
        }
        Command::Verify if locations.config.is_none() => vault::verify_file(&locations).await,
        Command::Scan(args) => scan::run(&locations, args, io).await,
        command => {
            let session = Session::open(&locations).await?;
            let result = run_on_session(&session, command, io).await;
            // Flush the audit trail even when the command failed: failures are audited too.
            let flushed = session.finish().await;
            let outcome = result?;
            flushed.map(|()| outcome)
        }
    }
}

async fn run_on_session(session: &Session, command: Command, io: &mut Io<'_>) -> Result<Outcome> {
    let store = session.store();
    match command {
        Command::Put(a) => secrets::put(store, a, io).await,
        Command::Get(a) => secrets::get(store, a, io).await,
        Command::List(a) => secrets::list(store, a).await,
        Command::Describe(a) => secrets::describe(store, &a.name).await,
        Command::Delete(a) => secrets::delete(store, a).await,
        Command::Restore(a) => secrets::restore(store, &a.name).await,
        Command::Versions(a) => secrets::versions(store, &a.name).await,
        Command::Stage(a) => secrets::stage(store, a).await,
        Command::Rotate(a) => rotation::rotate(session, a).await,
        Command::Rotation(cmd) => rotation::run(session, cmd).await,
        Command::Policy(cmd) => policy::run(store, cmd).await,
        Command::Keys(cmd) => vault::keys(session, cmd).await,
        Command::Namespace(cmd) => vault::namespace(session, cmd).await,
        Command::Verify => vault::verify(session).await,
        Command::Backup(cmd) => vault::backup(session, cmd).await,
        Command::Init | Command::Audit(_) | Command::Scan(_) => Err(Error::internal(
            "init, audit and scan run without a session; dispatch is out of step",
        )),
    }
}
