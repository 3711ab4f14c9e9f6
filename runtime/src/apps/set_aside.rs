//! State files that cannot be read are moved aside, never silently taken as empty: the
//! bad file is kept for an operator as `NAME.bad-<unix ms>`, and the caller reports it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Renames `file` to `NAME.bad-<unix ms>` in the same directory and syncs the
/// directory; returns the new path, or why it could not be moved.
pub fn set_aside(file: &Path) -> Result<PathBuf, String> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".bad-{ms}"));
    let aside = file.with_file_name(name);
    std::fs::rename(file, &aside)
        .map_err(|e| format!("cannot move {} aside: {e}", file.display()))?;
    sync_dir(file);
    Ok(aside)
}

/// Removes `file` (a missing one is fine) and syncs its directory, so the removal
/// survives a power loss.
pub fn remove(file: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => {
            sync_dir(file);
            Ok(())
        }
    }
}

fn sync_dir(file: &Path) {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bad_file_is_kept_under_a_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("maintenance.json");
        std::fs::write(&file, b"{ not json").unwrap();
        let aside = super::set_aside(&file).unwrap();
        assert!(!file.exists());
        let name = aside.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with("maintenance.json.bad-"), "{name}");
        assert_eq!(std::fs::read(&aside).unwrap(), b"{ not json");
        super::remove(&aside).unwrap();
        super::remove(&aside).unwrap();
        assert!(!aside.exists());
    }
}
