//! Reading a key file. A key signs every frame of its cluster, so a key that anyone but
//! its owner can read is refused rather than used: whoever reads it can speak as any
//! member of the cluster.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Permission bits a key file must not have: any access for its group or for others.
pub const KEY_MODE_OPEN_BITS: u32 = 0o077;

/// Why a key file was not read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The key file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Its group or others may read or write it.
    #[error(
        "{} has mode {mode:04o}, open to its group or others; a key must be private to \
         its owner (fix it with: chmod 600 {})",
        path.display(),
        path.display()
    )]
    OpenToOthers {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Whether permission bits `mode` keep a key private to its owner.
pub fn key_mode_is_private(mode: u32) -> bool {
    mode & KEY_MODE_OPEN_BITS == 0
}

/// Reads the key at `path` when the file is private to its owner; line ends at its end
/// do not count. The mode checked is that of the file opened (after symbolic links),
/// so it is the file whose bytes are read.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let unreadable = |source| KeyFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mode = file.metadata().map_err(unreadable)?.permissions().mode() & 0o7777;
    if !key_mode_is_private(mode) {
        return Err(KeyFileError::OpenToOthers {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(unreadable)?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    Ok(bytes)
}

/// Writes a key file private to its owner, as an operator should (test fixtures).
#[cfg(test)]
pub(crate) fn write_test_key(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_with_mode(dir: &Path, mode: u32) -> PathBuf {
        let p = dir.join(format!("k{mode:o}.key"));
        std::fs::write(&p, b"0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn modes_private_to_the_owner() {
        for (mode, private) in [
            (0o600, true),
            (0o400, true),
            (0o700, true),
            (0o640, false),
            (0o604, false),
            (0o644, false),
            (0o660, false),
            (0o602, false),
            (0o610, false),
        ] {
            assert_eq!(key_mode_is_private(mode), private, "{mode:o}");
        }
    }

    #[test]
    fn private_key_is_read_without_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let p = key_with_mode(dir.path(), 0o600);
        assert_eq!(read_key_file(&p).unwrap(), b"0123456789abcdef");
    }

    #[test]
    fn key_open_to_others_is_refused_naming_file_mode_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604] {
            let p = key_with_mode(dir.path(), mode);
            let err = read_key_file(&p).unwrap_err();
            assert!(
                matches!(err, KeyFileError::OpenToOthers { mode: m, .. } if m == mode),
                "{err}"
            );
            let text = err.to_string();
            assert!(text.contains(&p.display().to_string()), "{text}");
            assert!(text.contains(&format!("mode 0{mode:o}")), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", p.display())),
                "{text}"
            );
        }
    }

    #[test]
    fn symbolic_link_is_judged_by_the_key_it_reaches() {
        let dir = tempfile::tempdir().unwrap();
        let open = key_with_mode(dir.path(), 0o644);
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        assert!(matches!(
            read_key_file(&link),
            Err(KeyFileError::OpenToOthers { .. })
        ));
    }
}
