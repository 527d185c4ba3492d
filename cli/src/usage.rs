//! Usage errors that never repeat what was typed.
//!
//! clap's own messages quote the offending argument (`unexpected argument 'hunter2' found`),
//! and the most common stray argument is a secret typed where a name goes (`sealbox put
//! NAME VALUE`) or a value glued to a mistyped flag (`--valeu=hunter2`). Those messages land in
//! terminals, CI logs and shell scrollback, so for every error that may quote user input we
//! print our own message, built only from the command's definition (flag names, usage line,
//! suggested subcommands and flags). Errors that quote only the definition are printed as clap
//! renders them.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// What to print for `e`: `None` when clap's own rendering quotes nothing that was typed.
pub fn redacted_message(e: &clap::Error) -> Option<String> {
    let what = match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::MissingRequiredArgument
        | ErrorKind::MissingSubcommand
        | ErrorKind::ArgumentConflict => return None,
        ErrorKind::UnknownArgument => unknown_argument(e),
        ErrorKind::InvalidSubcommand => {
            let mut out = "unknown command (not repeated here)".to_owned();
            if let Some(s) = strings(e, ContextKind::SuggestedSubcommand).first() {
                out.push_str(&format!("; did you mean '{s}'?"));
            }
            out
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let mut out = format!("invalid value for {} (not repeated here)", arg_of(e));
            let valid = strings(e, ContextKind::ValidValue);
            if !valid.is_empty() {
                out.push_str(&format!("; possible values: {}", valid.join(", ")));
            }
            out
        }
        ErrorKind::TooManyValues => format!("{} was given a value it does not take", arg_of(e)),
        ErrorKind::WrongNumberOfValues | ErrorKind::NoEquals => {
            format!("{} was given the wrong number of values", arg_of(e))
        }
        ErrorKind::InvalidUtf8 => "an argument is not valid UTF-8".to_owned(),
        _ => "the command line could not be parsed".to_owned(),
    };
    let mut out = format!("error: {what}\n");
    if let Some(usage) = e.get(ContextKind::Usage) {
        out.push_str(&format!("\n{usage}\n"));
    }
    out.push_str("\nFor more information, try '--help'.\n");
    Some(out)
}

fn unknown_argument(e: &clap::Error) -> String {
    let typed = strings(e, ContextKind::InvalidArg)
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut out = if typed.starts_with('-') {
        // `--flag=value`: the part after `=` may be the secret. The flag itself is shown only
        // when it looks like a flag name rather than a value that happens to start with dashes.
        let flag = typed.split('=').next().unwrap_or_default();
        if looks_like_a_flag(flag) {
            format!("unknown option '{flag}'")
        } else {
            "unknown option (not repeated here)".to_owned()
        }
    } else {
        "unexpected extra argument (not repeated here, in case it is a secret); values are \
         read from standard input or --file, never from an extra argument"
            .to_owned()
    };
    if let Some(s) = strings(e, ContextKind::SuggestedArg).first() {
        out.push_str(&format!("; did you mean '{s}'?"));
    }
    out
}

fn looks_like_a_flag(s: &str) -> bool {
    s.strip_prefix("--").is_some_and(|name| {
        (2..=24).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '-')
    })
}

/// The argument an error is about, as the command defines it (`'--recovery-days <N>'`).
fn arg_of(e: &clap::Error) -> String {
    match strings(e, ContextKind::InvalidArg).first() {
        Some(a) => format!("'{a}'"),
        None => "an argument".to_owned(),
    }
}

fn strings(e: &clap::Error, kind: ContextKind) -> Vec<String> {
    match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Cli;
    use clap::Parser;

    const SECRET: &str = "s3cr3t-VALUE-123";

    fn message(args: &[&str]) -> String {
        let e = Cli::try_parse_from(args).expect_err("a usage error");
        redacted_message(&e).unwrap_or_else(|| e.render().to_string())
    }

    #[test]
    fn no_usage_error_repeats_a_typed_value() {
        let cases: [&[&str]; 13] = [
            &["sealbox", "put", "a/b", SECRET],
            &["sealbox", "get", "a/b", SECRET],
            &["sealbox", "describe", "a/b", SECRET],
            &["sealbox", "restore", "a/b", SECRET],
            &["sealbox", "put", "a/b", &format!("--valeu={SECRET}")],
            &["sealbox", "put", "a/b", &format!("--create-only={SECRET}")],
            &["sealbox", "put", "a/b", &format!("--{SECRET}")],
            &["sealbox", "put", "a/b", &format!("-{SECRET}")],
            &["sealbox", SECRET],
            &["sealbox", "delete", "a/b", "--recovery-days", SECRET],
            &["sealbox", "stage", "a/b", "PENDING", "3", SECRET],
            &["sealbox", "audit", "verify", "log", SECRET],
            &["sealbox", "put", "a/b", "--file", "f", "--value", SECRET],
        ];
        for args in cases {
            let m = message(args);
            assert!(!m.contains(SECRET), "{args:?} echoed the value: {m}");
            assert!(!m.to_lowercase().contains("s3cr3t"), "{args:?}: {m}");
        }
    }

    #[test]
    fn the_messages_still_say_what_to_do() {
        let m = message(&["sealbox", "put", "a/b", SECRET]);
        assert!(m.contains("standard input or --file"), "{m}");
        assert!(m.contains("Usage: sealbox put"), "{m}");
        let m = message(&["sealbox", "put", "a/b", "--valeu=x"]);
        assert!(m.contains("unknown option '--valeu'"), "{m}");
        assert!(m.contains("did you mean '--value'?"), "{m}");
        let m = message(&["sealbox", "restor"]);
        assert!(m.contains("did you mean 'restore'?"), "{m}");
        let m = message(&["sealbox", "delete", "a/b", "--recovery-days", "0"]);
        assert!(m.contains("invalid value for '--recovery-days <N>'"), "{m}");
    }
}
