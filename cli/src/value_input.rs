//! Where `put` takes a value from: standard input (the default), a file, or, only when asked
//! for explicitly, the command line.
//!
//! Values are read into one buffer allocated at full size up front, so reading never
//! reallocates and leaves partial copies behind; the buffer is wiped when it is dropped, after
//! the value has moved into locked memory.

use std::io::{Read, Write};
use std::path::Path;

use sealbox::{Error, Result, Secret};

use crate::args::ArgvValue;
use zeroize::Zeroizing;

/// Printed to stderr when `--value` is used.
pub const ARGV_WARNING: &str = "sealbox: warning: --value puts the secret on the command line, \
where other users can see it (ps, /proc) and your shell may keep it in its history; \
prefer standard input or --file";

/// Where the value comes from.
pub enum ValueSource<'a> {
    /// Standard input (`is_terminal`: whether a person would be typing it, echoed).
    Stdin {
        /// The reader.
        reader: &'a mut dyn Read,
        /// Whether stdin is a terminal.
        is_terminal: bool,
    },
    /// A file.
    File(&'a Path),
    /// The command line (`--value`).
    Argv(ArgvValue),
}

impl std::fmt::Debug for ValueSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueSource::Stdin { is_terminal, .. } => f
                .debug_struct("Stdin")
                .field("is_terminal", is_terminal)
                .finish_non_exhaustive(),
            ValueSource::File(path) => f.debug_tuple("File").field(path).finish(),
            // Never the value itself.
            ValueSource::Argv(_) => f.write_str("Argv([REDACTED])"),
        }
    }
}

/// Reads the value from `source` into locked memory. `max_len` is the store's limit;
/// `trim_newline` drops one trailing `\n` or `\r\n`; `warnings` receives the `--value` warning.
pub fn read_value(
    source: ValueSource<'_>,
    max_len: usize,
    trim_newline: bool,
    warnings: &mut dyn Write,
) -> Result<Secret> {
    let mut buf = match source {
        ValueSource::Stdin {
            is_terminal: true, ..
        } => {
            // Typing a secret into a terminal echoes it on screen and into scrollback.
            return Err(Error::invalid_input(
                "standard input is a terminal: pipe the value in \
                 (e.g. `printf %s \"$VALUE\" | sealbox put NAME`) or use --file PATH",
            ));
        }
        ValueSource::Stdin { reader, .. } => read_bounded(reader, max_len, "standard input")?,
        ValueSource::File(path) => {
            let mut file = std::fs::File::open(path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            read_bounded(&mut file, max_len, &path.display().to_string())?
        }
        ValueSource::Argv(value) => {
            // A failed warning must not stop the command; the value is used either way.
            let _ = writeln!(warnings, "{ARGV_WARNING}");
            value.into_bytes()
        }
    };
    let mut len = buf.len();
    if trim_newline && buf.ends_with(b"\n") {
        len -= 1;
        if buf[..len].ends_with(b"\r") {
            len -= 1;
        }
    }
    if len == 0 {
        return Err(Error::invalid_input(
            "the value is empty; nothing was stored",
        ));
    }
    if len > max_len {
        return Err(Error::invalid_input(format!(
            "the value is longer than the store's limit of {max_len} bytes"
        )));
    }
    Secret::from_mut_slice(&mut buf[..len])
}

fn read_bounded(reader: &mut dyn Read, max_len: usize, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    // One byte more than allowed tells "too long" from "exactly the limit"; capacity covers it
    // so read_to_end never has to grow (and copy) the buffer.
    let mut buf = Zeroizing::new(Vec::with_capacity(max_len + 1));
    reader
        .take(max_len as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(format!("reading the value from {what}"), e))?;
    if buf.len() > max_len {
        return Err(Error::invalid_input(format!(
            "the value in {what} is longer than the store's limit of {max_len} bytes"
        )));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealbox::{ErrorKind, ExposeSecret};

    fn from_stdin(bytes: &[u8], trim: bool) -> Result<Secret> {
        let mut reader = bytes;
        let source = ValueSource::Stdin {
            reader: &mut reader,
            is_terminal: false,
        };
        read_value(source, 16, trim, &mut Vec::new())
    }

    #[test]
    fn stdin_is_taken_verbatim() {
        let s = from_stdin(b"line\n", false).unwrap();
        assert_eq!(s.expose_secret(), b"line\n");
        let s = from_stdin(&[0, 255, 10], false).unwrap();
        assert_eq!(s.expose_secret(), &[0, 255, 10]);
    }

    #[test]
    fn trim_newline_drops_exactly_one_line_ending() {
        assert_eq!(from_stdin(b"v\n", true).unwrap().expose_secret(), b"v");
        assert_eq!(from_stdin(b"v\r\n", true).unwrap().expose_secret(), b"v");
        assert_eq!(from_stdin(b"v\n\n", true).unwrap().expose_secret(), b"v\n");
        assert_eq!(from_stdin(b"v", true).unwrap().expose_secret(), b"v");
    }

    #[test]
    fn empty_and_oversized_values_are_refused() {
        assert_eq!(
            from_stdin(b"", false).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            from_stdin(b"\n", true).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(from_stdin(&[b'x'; 16], false).is_ok());
        let err = from_stdin(&[b'x'; 17], false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains("16 bytes"));
    }

    #[test]
    fn a_terminal_is_refused_so_nothing_is_echoed() {
        let mut reader: &[u8] = b"typed";
        let source = ValueSource::Stdin {
            reader: &mut reader,
            is_terminal: true,
        };
        let err = read_value(source, 16, false, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn argv_values_warn() {
        let mut warnings = Vec::new();
        let s = read_value(
            ValueSource::Argv("v4lue".parse().unwrap()),
            16,
            false,
            &mut warnings,
        )
        .unwrap();
        assert_eq!(s.expose_secret(), b"v4lue");
        let text = String::from_utf8(warnings).unwrap();
        assert!(text.contains("warning: --value"), "{text}");
        assert!(!text.contains("v4lue"));
    }

    #[test]
    fn files_are_read_and_missing_files_are_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        std::fs::write(&path, b"from-file").unwrap();
        let s = read_value(ValueSource::File(&path), 16, false, &mut Vec::new()).unwrap();
        assert_eq!(s.expose_secret(), b"from-file");
        let missing = dir.path().join("missing");
        let err = read_value(ValueSource::File(&missing), 16, false, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
    }
}
