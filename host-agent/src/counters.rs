//! Counters of what arrived and what was dropped, with rate-limited logging: anything
//! the network can trigger is logged at most once per period with the count since.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Minimum time between two log lines about the same counter.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Named counters; `bump_logged` also decides whether to log.
#[derive(Debug, Default)]
pub struct Counters {
    values: BTreeMap<String, u64>,
    logged: BTreeMap<String, (Instant, u64)>,
}

impl Counters {
    /// Adds one to `name`.
    pub fn bump(&mut self, name: &str) {
        self.add(name, 1);
    }

    /// Adds `n` to `name`; a counter appears only once something was counted.
    pub fn add(&mut self, name: &str, n: u64) {
        if n > 0 {
            *self.values.entry(name.to_string()).or_default() += n;
        }
    }

    /// Adds one to `name`; returns `Some(count since the last log line)` when a log line
    /// is due now.
    pub fn bump_logged(&mut self, name: &str, now: Instant) -> Option<u64> {
        self.bump(name);
        let total = self.values[name];
        match self.logged.get(name) {
            Some((at, _)) if now.duration_since(*at) < LOG_EVERY => None,
            prev => {
                let since = total - prev.map(|p| p.1).unwrap_or(0);
                self.logged.insert(name.to_string(), (now, total));
                Some(since)
            }
        }
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.values.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_period_with_count_since() {
        let mut c = Counters::default();
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
}
