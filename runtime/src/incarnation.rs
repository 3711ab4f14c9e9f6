//! The incarnation number: grows at every agent start, across restarts and reboots.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Next incarnation: larger than the one stored in `state_dir` and than the current
/// time in microseconds. Stored with fsync before use, so a restart never reuses one.
pub fn next(state_dir: &Path) -> u64 {
    let (next, problem) = next_checked(state_dir);
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
    next
}

/// [`next`], with what was wrong with the stored value: a file that is not a number is
/// moved aside (`incarnation.bad-<unix ms>`) and the clock alone gives the number.
pub fn next_checked(state_dir: &Path) -> (u64, Option<String>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    let file = state_dir.join("incarnation");
    let mut problem = None;
    let stored = match std::fs::read_to_string(&file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            problem = Some(format!("cannot read {}: {e}", file.display()));
            0
        }
        Ok(s) => s.trim().parse::<u64>().unwrap_or_else(|e| {
            let kept = match crate::apps::set_aside::set_aside(&file) {
                Ok(aside) => format!("kept as {}", aside.display()),
                Err(why) => why,
            };
            problem = Some(format!(
                "{} is unreadable ({e}); {kept}; the incarnation comes from the clock alone \
                 (if the clock went back, the other hosts refuse this one until it passes \
                 the last incarnation they heard)",
                file.display()
            ));
            0
        }),
    };
    let next = now.max(stored + 1);
    if let Err(e) = store(state_dir, &file, next) {
        let msg = format!(
            "cannot store the incarnation in {}: {e}; relying on the clock",
            file.display()
        );
        problem = Some(problem.map_or(msg.clone(), |p| format!("{p}; {msg}")));
    }
    (next, problem)
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

    #[test]
    fn an_unreadable_file_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::next(dir.path());
        std::fs::write(dir.path().join("incarnation"), b"\x00garbage").unwrap();
        let (b, problem) = super::next_checked(dir.path());
        assert!(problem.unwrap().contains("unreadable"));
        assert!(b > a);
        let (c, problem) = super::next_checked(dir.path());
        assert!(problem.is_none() && c > b, "stored again");
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                n.to_string_lossy().starts_with("incarnation.bad-")
            })
            .count();
        assert_eq!(aside, 1);
    }
}
