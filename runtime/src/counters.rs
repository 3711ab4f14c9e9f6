//! Counters of what arrived and what was dropped, with rate-limited logging: anything
//! the network can trigger is logged at most once per period with the count since.
//! Clones share the counters, so receiving tasks count what they drop themselves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Minimum time between two log lines about the same counter.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Named counters; `bump_logged` also decides whether to log.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    values: BTreeMap<String, u64>,
    logged: BTreeMap<String, (Instant, u64)>,
}

impl Counters {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Counting never panics while holding the lock; a poisoned one is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one to `name`.
    pub fn bump(&self, name: &str) {
        self.add(name, 1);
    }

    /// Adds `n` to `name`; a counter appears only once something was counted.
    pub fn add(&self, name: &str, n: u64) {
        if n > 0 {
            let mut inner = self.lock();
            match inner.values.get_mut(name) {
                Some(v) => *v += n,
                None => {
                    inner.values.insert(name.to_string(), n);
                }
            }
        }
    }

    /// Adds one to `name`; returns `Some(count since the last log line)` when a log line
    /// is due now.
    pub fn bump_logged(&self, name: &str, now: Instant) -> Option<u64> {
        self.bump(name);
        let mut inner = self.lock();
        let total = inner.values[name];
        match inner.logged.get(name) {
            Some((at, _)) if now.duration_since(*at) < LOG_EVERY => None,
            prev => {
                let since = total - prev.map(|p| p.1).unwrap_or(0);
                inner.logged.insert(name.to_string(), (now, total));
                Some(since)
            }
        }
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.lock().values.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_period_with_count_since() {
        let c = Counters::default();
        let t0 = Instant::now();
        assert_eq!(c.bump_logged("bad_tag", t0), Some(1));
        assert_eq!(c.bump_logged("bad_tag", t0 + Duration::from_secs(1)), None);
        assert_eq!(c.bump_logged("bad_tag", t0 + Duration::from_secs(2)), None);
        assert_eq!(
            c.bump_logged("bad_tag", t0 + Duration::from_secs(11)),
            Some(3)
        );
        assert_eq!(c.snapshot()["bad_tag"], 4);
    }

    #[test]
    fn clones_share_the_counts() {
        let c = Counters::default();
        let task = c.clone();
        task.bump("frames_dropped_unknown_source");
        assert_eq!(c.snapshot()["frames_dropped_unknown_source"], 1);
    }
}
