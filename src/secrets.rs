//! Secret files hab writes (the generated API token, fleets' generated RPC
//! passwords): readable by habd's user only, from the first byte on, and
//! never seen half-written.
//!
//! A secret is written to a temporary file in the same folder, created with
//! mode 0600 (never wider, not even for a moment), synced to disk, then
//! moved into place. A generated secret is made once: the file is linked
//! into place only if nothing is there yet, so two callers racing both end
//! up with the one that was stored, and a write that fails is an error, not
//! a new secret.

use std::{
    fs::{self, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// Random bytes in a generated password (hex: 36 characters).
pub const PASSWORD_BYTES: usize = 18;

/// Numbers the temporary files of this process.
static SEQ: AtomicU64 = AtomicU64::new(0);

fn with_path(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// The folder a secret goes into, made (mode 0700) when missing.
fn folder_of(path: &Path) -> io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| with_path(&dir, "cannot create the folder", e))?;
    Ok(dir)
}

/// Writes `bytes` to a new temporary file (mode 0600) next to `path`,
/// synced to disk; returns its path. On failure nothing is left behind.
fn write_temp(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "secret".into());
    let tmp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(with_path(path, "cannot write", e))
        }
    }
}

/// Makes a rename or link in `dir` durable (best effort: not every
/// filesystem lets a folder be synced).
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path`, readable and writable by the owner only (mode
/// 0600), atomically: a reader sees the old content or the new one, never
/// part of it, and a failure leaves the old file as it was. The folder is
/// made (mode 0700) when missing.
///
/// # Errors
/// The folder cannot be made, or the file cannot be written or moved into
/// place; the error names the path.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = folder_of(path)?;
    let tmp = write_temp(&dir, path, bytes)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(with_path(path, "cannot move into place", e));
    }
    sync_dir(&dir);
    Ok(())
}

/// A new random secret: `bytes` bytes from the system's random source, as
/// hex.
///
/// # Errors
/// `/dev/urandom` cannot be read.
pub fn random_hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| with_path(Path::new("/dev/urandom"), "cannot read", e))?;
    Ok(hex::encode(buf))
}

/// The secret stored in `path` (its content, trimmed); when there is no
/// such file, a new random one of `bytes` bytes (hex) is stored there (mode
/// 0600) and returned. Made once: when two callers race, both get the one
/// that was stored first, and a secret that could not be stored is never
/// returned. The flag is true when this call stored it.
///
/// # Errors
/// The file cannot be read, is empty, or cannot be written (the error names
/// the path and why).
pub fn read_or_create(path: &Path, bytes: usize) -> io::Result<(String, bool)> {
    if let Some(existing) = read_existing(path)? {
        return Ok((existing, false));
    }
    let secret = random_hex(bytes)?;
    let dir = folder_of(path)?;
    let tmp = write_temp(&dir, path, format!("{secret}\n").as_bytes())?;
    // A hard link puts the file in place only if nothing is there yet
    // (rename would replace what a racing caller stored and handed out).
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(&dir);
            Ok((secret, true))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_existing(path)? {
            Some(stored) => Ok((stored, false)),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} vanished while it was being made", path.display()),
            )),
        },
        Err(e) => Err(with_path(path, "cannot store", e)),
    }
}

/// [`read_or_create`] with a password's length ([`PASSWORD_BYTES`]).
///
/// # Errors
/// As [`read_or_create`].
pub fn read_or_create_password(path: &Path) -> io::Result<String> {
    read_or_create(path, PASSWORD_BYTES).map(|(p, _)| p)
}

/// The trimmed content of `path`; None when there is no such file.
fn read_existing(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => {
            let s = s.trim();
            if s.is_empty() {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is empty: put the secret in it, or delete it to have one generated",
                        path.display()
                    ),
                ))
            } else {
                Ok(Some(s.to_string()))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(with_path(path, "cannot read", e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn written_private_and_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/secret");
        write_private(&f, b"one\n").unwrap();
        assert_eq!(mode(&f), 0o600);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"two\n").unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "two\n");
        assert_eq!(mode(&f), 0o600);
        assert_eq!(mode(&dir.path().join("sub")), 0o700);
        // Nothing but the secret is left in the folder.
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        fs::write(&not_a_dir, "x").unwrap();
        let e = write_private(&not_a_dir.join("secret"), b"s").unwrap_err();
        assert!(e.to_string().contains("file"), "{e}");
        let e = read_or_create_password(&not_a_dir.join("pw")).unwrap_err();
        assert!(e.to_string().contains("file"), "{e}");
        assert_eq!(fs::read_to_string(&not_a_dir).unwrap(), "x");
    }

    #[test]
    fn a_password_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("fleets/a.rpc-password");
        let first = read_or_create_password(&f).unwrap();
        assert_eq!(first.len(), 2 * PASSWORD_BYTES);
        assert_eq!(mode(&f), 0o600);
        assert_eq!(read_or_create_password(&f).unwrap(), first);
        fs::write(&f, "  chosen by the operator \n").unwrap();
        assert_eq!(
            read_or_create_password(&f).unwrap(),
            "chosen by the operator"
        );
        fs::write(&f, "\n").unwrap();
        let e = read_or_create_password(&f).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
    }

    #[test]
    fn racing_callers_get_the_same_password() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("pw");
            let got: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| read_or_create_password(&f).unwrap()))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(got.iter().all(|p| p == &got[0]), "{got:?}");
            assert_eq!(fs::read_to_string(&f).unwrap().trim(), got[0]);
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }
}
