//! Admission of host-link connections before authentication: how many connections the
//! host agent holds at once, in all and from one source address, and how long it waits
//! before accepting again after the listener failed (out of file descriptors, say).
//!
//! Pure: the driver asks [`Admission::admit`] for each accepted connection, closes it at
//! once when refused, and calls [`Admission::release`] when an admitted one ends.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// Default of `[host_link] max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;
/// Default of `[host_link] max_per_source`.
pub const DEFAULT_MAX_PER_SOURCE: u32 = 8;

/// The caps, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Connections held at once, from every source together.
    pub max_connections: u32,
    /// Connections held at once from one source address.
    pub max_per_source: u32,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_source: DEFAULT_MAX_PER_SOURCE,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source already holds `max_per_source` connections.
    PerSource {
        /// The cap.
        cap: u32,
    },
    /// The host agent already holds `max_connections` connections.
    Total {
        /// The cap.
        cap: u32,
    },
}

impl Refusal {
    /// The counter a refusal of this kind is counted in.
    pub fn counter(self) -> &'static str {
        match self {
            Refusal::PerSource { .. } => "host_links_refused_per_source",
            Refusal::Total { .. } => "host_links_refused_total",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::PerSource { cap } => write!(
                f,
                "{cap} connections from this address already ([host_link] max_per_source)"
            ),
            Refusal::Total { cap } => write!(
                f,
                "{cap} host-link connections already ([host_link] max_connections)"
            ),
        }
    }
}

/// The connections held, by source address.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    limits: AdmissionLimits,
    by_source: BTreeMap<IpAddr, u32>,
    total: u32,
}

impl Admission {
    /// No connection held yet.
    pub fn new(limits: AdmissionLimits) -> Self {
        Admission {
            limits,
            by_source: BTreeMap::new(),
            total: 0,
        }
    }

    /// Takes a place for a connection from `source`, or says why there is none. The
    /// per-source cap is checked first: one noisy source is told it is the noisy one.
    pub fn admit(&mut self, source: IpAddr) -> Result<(), Refusal> {
        let held = self.by_source.get(&source).copied().unwrap_or(0);
        if held >= self.limits.max_per_source {
            return Err(Refusal::PerSource {
                cap: self.limits.max_per_source,
            });
        }
        if self.total >= self.limits.max_connections {
            return Err(Refusal::Total {
                cap: self.limits.max_connections,
            });
        }
        *self.by_source.entry(source).or_default() += 1;
        self.total += 1;
        Ok(())
    }

    /// Gives back the place of an admitted connection from `source` that ended.
    pub fn release(&mut self, source: IpAddr) {
        if let Some(n) = self.by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&source);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    /// Connections held, from every source.
    pub fn held(&self) -> u32 {
        self.total
    }

    /// Connections held from `source`.
    pub fn held_from(&self, source: IpAddr) -> u32 {
        self.by_source.get(&source).copied().unwrap_or(0)
    }
}

/// First wait after a failed accept.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait between two accepts that fail.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The wait before accepting again after a failed accept: doubles with each failure in
/// a row, from [`ACCEPT_BACKOFF_MIN`] to [`ACCEPT_BACKOFF_MAX`], and starts over after
/// an accept that works. A listener out of file descriptors fails at once every time
/// (the connection stays queued); this keeps it from spinning.
#[derive(Debug, Clone, Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    /// An accept failed: how long to wait before the next.
    pub fn failed(&mut self) -> Duration {
        let wait = ACCEPT_BACKOFF_MIN
            .saturating_mul(1u32 << self.failures.min(16))
            .min(ACCEPT_BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// An accept worked.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failed accepts in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 32, last])
    }

    /// Each line: an operation (`+N` admit from .N, `-N` release from .N) and the
    /// expected outcome (`ok`, `per-source`, `total`) with the connections held after.
    #[test]
    fn caps_per_source_and_in_all_from_a_table() {
        let table = "
            +1 ok 1
            +1 ok 2
            +1 per-source 2
            +2 ok 3
            +3 ok 4
            +4 total 4
            +1 per-source 4
            -2 - 3
            +4 ok 4
            -1 - 3
            +1 ok 4
            +1 per-source 4
            -9 - 4
        ";
        let mut a = Admission::new(AdmissionLimits {
            max_connections: 4,
            max_per_source: 2,
        });
        for (n, line) in table
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let who = ip(f[0][1..].parse().unwrap());
            let got = if f[0].starts_with('+') {
                match a.admit(who) {
                    Ok(()) => "ok",
                    Err(Refusal::PerSource { cap: 2 }) => "per-source",
                    Err(Refusal::Total { cap: 4 }) => "total",
                    Err(other) => panic!("line {n}: {other:?}"),
                }
            } else {
                a.release(who);
                "-"
            };
            assert_eq!(got, f[1], "line {n}: {line}");
            assert_eq!(a.held().to_string(), f[2], "line {n}: {line}");
        }
        assert_eq!(a.held_from(ip(1)), 2);
        assert_eq!(a.held_from(ip(2)), 0);
    }

    #[test]
    fn refusals_name_their_key_and_counter() {
        let r = Refusal::PerSource { cap: 8 };
        assert!(r.to_string().contains("max_per_source"), "{r}");
        assert_eq!(r.counter(), "host_links_refused_per_source");
        let r = Refusal::Total { cap: 256 };
        assert!(r.to_string().contains("max_connections"), "{r}");
        assert_eq!(r.counter(), "host_links_refused_total");
    }

    #[test]
    fn accept_backoff_doubles_to_its_bound_and_starts_over() {
        let mut b = AcceptBackoff::default();
        let waits: Vec<u128> = (0..10).map(|_| b.failed().as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        for _ in 0..100 {
            assert_eq!(b.failed(), ACCEPT_BACKOFF_MAX);
        }
        b.succeeded();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.failed(), ACCEPT_BACKOFF_MIN);
    }
}
