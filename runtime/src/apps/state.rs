//! What the engine must keep across restarts (placements, persistent faults), in
//! `<state_dir>/applications.json`, written atomically and synced.

use std::path::{Path, PathBuf};

use hvcluster_common::application::Persistent;

/// The state file of `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("applications.json")
}

/// Reads the saved state. A missing file is an empty state; an unreadable one is moved
/// aside (`applications.json.bad-<unix ms>`) and reported, and the agent starts empty:
/// placements are learnt again from the peers, and nothing starts before they answer.
pub fn load(file: &Path) -> (Persistent, Option<String>) {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Persistent::default(), None),
        Err(e) => {
            return (
                Persistent::default(),
                Some(format!("cannot read {}: {e}", file.display())),
            )
        }
    };
    match serde_json::from_str(&text) {
        Ok(p) => (p, None),
        Err(e) => {
            let kept = match super::set_aside::set_aside(file) {
                Ok(aside) => format!("kept as {}", aside.display()),
                Err(why) => why,
            };
            (
                Persistent::default(),
                Some(format!(
                    "{} is unreadable ({e}); {kept}; starting without it: placements are \
                     learnt again from the other hosts",
                    file.display(),
                )),
            )
        }
    }
}

/// The state as the bytes of its file.
pub fn encode(state: &Persistent) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec_pretty(state)
}

/// Writes the state: a temporary file, fsync, rename, fsync of the directory.
pub fn save(file: &Path, state: &Persistent) -> anyhow::Result<()> {
    save_json(file, state)
}

/// Writes `value` as JSON to `file` so that a crash leaves the old file or the new one,
/// never a mix: a temporary file, fsync, rename, fsync of the directory. Used by every
/// journal of the agent (applications, migration lock, host maintenance).
pub fn save_json(file: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    crate::state_writer::write_atomic(file, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvcluster_common::application::Placement;

    #[test]
    fn round_trip_and_corrupt_file_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        assert_eq!(load(&file), (Persistent::default(), None));
        let mut state = Persistent::default();
        state.placements.insert("app1".into(), Placement::default());
        state.faults.insert("app1".into(), ("r0: check".into(), 3));
        save(&file, &state).unwrap();
        assert_eq!(load(&file), (state, None));
        std::fs::write(&file, b"{ not json").unwrap();
        let (loaded, problem) = load(&file);
        assert_eq!(loaded, Persistent::default());
        assert!(problem.unwrap().contains("unreadable"));
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            kept.iter().any(|n| n.starts_with("applications.json.bad-")),
            "{kept:?}"
        );
        assert!(!file.exists());
    }
}
