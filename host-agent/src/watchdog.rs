//! The load watchdog: a thread that measures how late its own wake-ups are and reads
//! the host's CPU pressure, and turns both into an ok / slow / hung verdict that the
//! agent puts in its heartbeats.
//!
//! It runs on its own thread (with the agent's real-time priority when granted) so it
//! measures the scheduler, not the async runtime's queue.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hvcluster_common::config::WatchdogSection;
use hvcluster_common::membership::WatchdogVerdict;
use tokio::sync::mpsc;

use crate::agent::Input;

/// How long a late wake-up keeps counting towards "slow".
const RECENT: Duration = Duration::from_secs(2);

/// Thresholds of the verdict.
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// Sleep between wake-ups.
    pub interval: Duration,
    /// Lateness that makes the host slow.
    pub slow_lateness: Duration,
    /// Lateness that makes the host hung.
    pub hung_lateness: Duration,
    /// `some avg10` percent that makes the host slow.
    pub slow_psi: f64,
    /// Pressure file.
    pub psi_source: PathBuf,
}

impl From<&WatchdogSection> for Thresholds {
    fn from(w: &WatchdogSection) -> Self {
        Thresholds {
            interval: Duration::from_millis(w.interval_ms),
            slow_lateness: Duration::from_millis(w.slow_lateness_ms),
            hung_lateness: Duration::from_millis(w.hung_lateness_ms),
            slow_psi: w.slow_psi_percent,
            psi_source: w.psi_source.clone(),
        }
    }
}

/// The verdict logic, apart from the thread so it can be tested with made-up times.
#[derive(Debug)]
pub struct Judge {
    t: Thresholds,
    recent_late: Option<(Instant, Duration)>,
    hung_since: Option<Instant>,
}

impl Judge {
    /// A judge with thresholds `t`.
    pub fn new(t: Thresholds) -> Self {
        Judge {
            t,
            recent_late: None,
            hung_since: None,
        }
    }

    /// The verdict after a wake-up at `now` that came `lateness` late, with CPU
    /// pressure `psi` (percent, if readable).
    pub fn judge(&mut self, now: Instant, lateness: Duration, psi: Option<f64>) -> WatchdogVerdict {
        if lateness >= self.t.hung_lateness {
            self.hung_since
                .get_or_insert(now.checked_sub(lateness).unwrap_or(now));
        } else {
            self.hung_since = None;
        }
        let keep = self
            .recent_late
            .filter(|(at, l)| now.duration_since(*at) < RECENT && *l >= lateness);
        self.recent_late = Some(keep.unwrap_or((now, lateness)));
        if let Some(since) = self.hung_since {
            return WatchdogVerdict::Hung {
                for_ms: now.duration_since(since).as_millis() as u32,
            };
        }
        let worst = self.recent_late.map(|r| r.1).unwrap_or_default();
        let psi = psi.unwrap_or(0.0);
        if worst >= self.t.slow_lateness || psi >= self.t.slow_psi {
            WatchdogVerdict::Slow {
                lateness_ms: (worst.as_millis() as u32 / 10) * 10,
                psi_percent: psi.clamp(0.0, 100.0) as u8,
            }
        } else {
            WatchdogVerdict::Ok
        }
    }
}

/// `some avg10` of a PSI file, in percent.
pub fn read_psi(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_psi(&text)
}

fn parse_psi(text: &str) -> Option<f64> {
    let some = text.lines().find(|l| l.starts_with("some "))?;
    some.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))
        .and_then(|v| v.parse().ok())
}

/// Starts the watchdog thread; verdict changes go to `tx`.
pub fn spawn(
    t: Thresholds,
    tx: mpsc::Sender<Input>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    if read_psi(&t.psi_source).is_none() {
        tracing::warn!(source = %t.psi_source.display(), "cannot read CPU pressure; the load watchdog uses lateness only");
    }
    std::thread::Builder::new()
        .name("load-watchdog".into())
        .spawn(move || {
            crate::process::enter_agent_thread();
            let mut judge = Judge::new(t.clone());
            let mut last = WatchdogVerdict::Ok;
            loop {
                let before = Instant::now();
                std::thread::sleep(t.interval);
                let now = Instant::now();
                let lateness = now.duration_since(before).saturating_sub(t.interval);
                let verdict = judge.judge(now, lateness, read_psi(&t.psi_source));
                if verdict != last {
                    last = verdict;
                    match tx.try_send(Input::Watchdog(verdict)) {
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                        _ => continue,
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge() -> Judge {
        Judge::new(Thresholds {
            interval: Duration::from_millis(50),
            slow_lateness: Duration::from_millis(100),
            hung_lateness: Duration::from_millis(500),
            slow_psi: 80.0,
            psi_source: PathBuf::from("/nonexistent"),
        })
    }

    #[test]
    fn verdicts_follow_lateness_and_pressure() {
        let mut j = judge();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(j.judge(t0, ms(1), Some(5.0)), WatchdogVerdict::Ok);
        assert_eq!(
            j.judge(t0 + ms(50), ms(2), Some(85.0)),
            WatchdogVerdict::Slow {
                lateness_ms: 0,
                psi_percent: 85
            }
        );
        assert_eq!(
            j.judge(t0 + ms(100), ms(150), None),
            WatchdogVerdict::Slow {
                lateness_ms: 150,
                psi_percent: 0
            }
        );
        // A late wake-up keeps the host slow for a while.
        assert!(matches!(
            j.judge(t0 + ms(200), ms(1), None),
            WatchdogVerdict::Slow {
                lateness_ms: 150,
                ..
            }
        ));
        assert_eq!(j.judge(t0 + ms(3000), ms(1), None), WatchdogVerdict::Ok);
        assert_eq!(
            j.judge(t0 + ms(4000), ms(600), None),
            WatchdogVerdict::Hung { for_ms: 600 }
        );
        assert_eq!(
            j.judge(t0 + ms(4600), ms(550), None),
            WatchdogVerdict::Hung { for_ms: 1200 }
        );
        assert_eq!(
            j.judge(t0 + ms(4700), ms(1), None),
            WatchdogVerdict::Slow {
                lateness_ms: 600,
                psi_percent: 0
            }
        );
    }

    #[test]
    fn parses_psi() {
        let text = "some avg10=12.50 avg60=3.00 avg300=0.50 total=123\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=5\n";
        assert_eq!(parse_psi(text), Some(12.5));
        assert_eq!(parse_psi("garbage"), None);
    }
}
