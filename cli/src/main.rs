//! `sealbox`: the operator's command for the sealbox local vault.
//!
//! Errors are printed as `sealbox: <kind>: <message>` and mapped to the exit codes in
//! [`exit`]; no value is ever printed except by `get --reveal`.

mod args;
mod client_store;
mod commands;
mod exit;
mod logging;
mod output;
mod providers;
mod session;
mod usage;
mod value_input;
mod value_output;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with success; usage errors to stderr, without
            // repeating anything typed (it may be a secret in the wrong place).
            match usage::redacted_message(&e) {
                Some(message) => eprint!("{message}"),
                None => {
                    let _ = e.print();
                }
            }
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    logging::install();
    let json = cli.json;
    // `scan` has its own exit codes (0 clean, 1 found, 2 error), as scanners in CI have.
    let scan = matches!(cli.command, args::Command::Scan(_));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sealbox: io: cannot start the async runtime: {e}");
            return ExitCode::from(exit::GENERIC);
        }
    };
    let stdin = std::io::stdin();
    let stdin_is_terminal = stdin.is_terminal();
    let mut stdin = stdin.lock();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let mut io = commands::Io {
        stdin: &mut stdin,
        stdin_is_terminal,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    let result = runtime.block_on(commands::run(cli, &mut io));
    let result = result.and_then(|mut outcome| {
        let failure = outcome.take_failure();
        outcome
            .print(json, &mut stdout)
            .map_err(|e| sealbox::Error::io("writing to standard output", e))?;
        failure.map_or(Ok(outcome.exit_code()), Err)
    });
    match result {
        Ok(code) => ExitCode::from(code.unwrap_or(exit::OK)),
        // The reader went away (`sealbox list | head -1`): nothing left to tell anyone.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(exit::OK),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "sealbox: {e}");
            ExitCode::from(if scan {
                exit::SCAN_ERROR
            } else {
                exit::for_kind(e.kind())
            })
        }
    }
}

fn is_broken_pipe(e: &sealbox::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
