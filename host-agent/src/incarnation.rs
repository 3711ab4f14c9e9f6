//! The incarnation number: grows at every agent start, across restarts and reboots.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Next incarnation: larger than the one stored in `state_dir` and than the current
/// time in microseconds. Stored with fsync before use, so a restart never reuses one.
pub fn next(state_dir: &Path) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    let file = state_dir.join("incarnation");
    let stored = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let next = now.max(stored + 1);
    if let Err(e) = store(state_dir, &file, next) {
        tracing::warn!(file = %file.display(), cause = %e, "cannot store the incarnation; relying on the clock");
    }
    next
}

fn store(dir: &Path, file: &Path, value: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{value}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn grows_across_calls_even_if_the_clock_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::next(dir.path());
        std::fs::write(
            dir.path().join("incarnation"),
            format!("{}\n", a + 1_000_000_000),
        )
        .unwrap();
        let b = super::next(dir.path());
        assert_eq!(b, a + 1_000_000_001);
        assert!(super::next(dir.path()) > b);
    }
}
