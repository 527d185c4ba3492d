//! Rendering command results: text for people by default, one JSON document for scripts with
//! `--json`. Reports carry names, versions, stages, times and counts, never a value.

use std::io::{self, Write};
use std::time::SystemTime;

use serde::Serialize;

/// A command's result, renderable both ways.
pub trait Report: Serialize {
    /// The text shown to people, ending with a newline.
    fn human(&self) -> String;
}

/// What a command produced.
#[derive(Debug)]
pub enum Outcome {
    /// A report, printed as text or JSON.
    Report {
        /// The JSON form.
        json: serde_json::Value,
        /// The text form.
        human: String,
        /// Set when the report describes a failure (a verification that found a problem): the
        /// report is printed, then the error, and the exit code is the error's.
        failure: Option<sealbox::Error>,
        /// An exit code the command chose for a successful run (`scan`: 1 when it found
        /// credentials); `None` is 0.
        exit_code: Option<u8>,
    },
    /// The command already wrote its output (`get --reveal` writes raw bytes).
    Written,
}

impl Outcome {
    /// Renders `report` both ways now, so the command's borrowed data can go.
    pub fn report(report: &impl Report) -> Outcome {
        Outcome::Report {
            // Reports are plain structs of strings and numbers; serialising them cannot fail,
            // but if it ever did the text form is still useful, so fall back to null.
            json: serde_json::to_value(report).unwrap_or(serde_json::Value::Null),
            human: report.human(),
            failure: None,
            exit_code: None,
        }
    }

    /// Like [`Outcome::report`] for a report of a failed check: printed, then `failure` decides
    /// the exit code.
    pub fn failed_report(report: &impl Report, failure: sealbox::Error) -> Outcome {
        match Outcome::report(report) {
            Outcome::Report { json, human, .. } => Outcome::Report {
                json,
                human,
                failure: Some(failure),
                exit_code: None,
            },
            written => written,
        }
    }

    /// The same report, exiting with `code` after it is printed.
    pub fn with_exit_code(mut self, code: u8) -> Outcome {
        if let Outcome::Report { exit_code, .. } = &mut self {
            *exit_code = Some(code);
        }
        self
    }

    /// The exit code the command chose, if any.
    pub fn exit_code(&self) -> Option<u8> {
        match self {
            Outcome::Report { exit_code, .. } => *exit_code,
            Outcome::Written => None,
        }
    }

    /// Takes the failure out, if any, leaving the report printable.
    pub fn take_failure(&mut self) -> Option<sealbox::Error> {
        match self {
            Outcome::Report { failure, .. } => failure.take(),
            Outcome::Written => None,
        }
    }

    /// Writes the outcome to `out` in the chosen format.
    pub fn print(&self, json: bool, out: &mut dyn Write) -> io::Result<()> {
        match self {
            Outcome::Report { json: value, .. } if json => {
                serde_json::to_writer_pretty(&mut *out, value)?;
                out.write_all(b"\n")
            }
            Outcome::Report { human, .. } => out.write_all(human.as_bytes()),
            Outcome::Written => Ok(()),
        }
        .and_then(|()| out.flush())
    }
}

/// RFC 3339 UTC text for a time, or `None` when the store did not give one.
pub fn timestamp(t: Option<SystemTime>) -> Option<String> {
    let t = time::OffsetDateTime::from(t?);
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A time for text output: RFC 3339, or `-` when unknown.
pub fn time_text(t: &Option<String>) -> &str {
    t.as_deref().unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Serialize)]
    struct Sample {
        name: &'static str,
    }

    impl Report for Sample {
        fn human(&self) -> String {
            format!("name: {}\n", self.name)
        }
    }

    #[test]
    fn prints_text_or_json() {
        let outcome = Outcome::report(&Sample { name: "a/b" });
        let mut text = Vec::new();
        outcome.print(false, &mut text).unwrap();
        assert_eq!(text, b"name: a/b\n");
        let mut json = Vec::new();
        outcome.print(true, &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["name"], "a/b");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
        assert_eq!(timestamp(Some(t)).as_deref(), Some("1970-01-02T00:00:00Z"));
        assert_eq!(timestamp(None), None);
    }
}
