//! Writing a value to a file that only its owner can read (`get --out`).
//!
//! The file is created with mode 0600 from the start (never created wider and narrowed after),
//! and an existing file is replaced only with `--overwrite`, by renaming a fresh 0600 file over
//! it, so a reader never sees a partly written value and the old file's mode is not inherited.
//!
//! Only regular files are written or replaced. A symlink at the path is never followed (it could
//! lead anywhere, `/dev/stdout` included), and a FIFO, socket, device or directory is refused
//! rather than replaced: renaming over `/dev/null` would leave the secret in a 0600 file where
//! every program expects a bit bucket.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sealbox::{Error, ErrorKind, Result};

/// Writes `value` to `path` with mode 0600. Without `overwrite`, an existing file is an
/// `AlreadyExists` error and is left untouched; anything but a regular file is refused and left
/// untouched either way.
pub fn write_private_file(path: &Path, value: &[u8], overwrite: bool) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => Err(not_regular(path, &m)),
        Ok(m) if overwrite => replace(path, &m, value),
        Ok(_) => Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} already exists; remove it or pass --overwrite",
                path.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path, value),
        Err(e) => Err(Error::io(format!("inspecting {}", path.display()), e)),
    }
}

/// Creates `path`, which did not exist a moment ago. `O_EXCL` fails on anything that appeared
/// meanwhile, a symlink included, so nothing is followed or replaced.
fn create(path: &Path, value: &[u8]) -> Result<()> {
    let file = create_private(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{} appeared while the value was being written; nothing was written to it",
                    path.display()
                ),
            )
        } else {
            Error::io(format!("creating {}", path.display()), e)
        }
    })?;
    fill(file, path, value).inspect_err(|_| {
        // A half-written value file is worse than none.
        let _ = std::fs::remove_file(path);
    })
}

/// Replaces the regular file at `path` (seen as `seen` by `lstat`) with a new 0600 file.
fn replace(path: &Path, seen: &Metadata, value: &[u8]) -> Result<()> {
    // Check what is really there through a descriptor: opened with `O_PATH` (no read access
    // needed, no FIFO or device is really opened) and without following a symlink, it must be
    // the very regular file `lstat` saw.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .and_then(|f| f.metadata())
        .map_err(|e| Error::io(format!("opening {} to check it", path.display()), e))?;
    if !opened.file_type().is_file() {
        return Err(not_regular(path, &opened));
    }
    if (opened.dev(), opened.ino()) != (seen.dev(), seen.ino()) {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{} was replaced while sealbox checked it; nothing was written, try again",
                path.display()
            ),
        ));
    }
    let tmp = temp_path(path);
    let file =
        create_private(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    fill(file, &tmp, value)
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .map_err(|e| Error::io(format!("replacing {}", path.display()), e))
        })
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

fn not_regular(path: &Path, m: &Metadata) -> Error {
    let t = m.file_type();
    let what = if t.is_symlink() {
        "a symbolic link (sealbox never follows one when writing a value)"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Error::invalid_input(format!(
        "{} is {what}; --out writes only regular files, so it was left untouched (give a new \
         file's path, or use --reveal to write the value to standard output)",
        path.display()
    ))
}

fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn fill(mut file: File, path: &Path, value: &[u8]) -> Result<()> {
    file.write_all(value)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "value".to_owned());
    path.with_file_name(format!(".{name}.sealbox-{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_an_owner_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        write_private_file(&path, b"v", false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"v");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn refuses_to_replace_without_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"old").unwrap();
        let err = write_private_file(&path, b"new", false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn overwrite_replaces_a_wide_file_with_an_owner_only_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&path, b"new", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }
}
