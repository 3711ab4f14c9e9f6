//! VM HA placement: where the highly available domains of a fenced host start again.
//! Pure: the host agent gives it the domains to place and what every surviving host has
//! room for; it answers, in priority order, a host for each domain or why none fits.

mod sections;

use serde::{Deserialize, Serialize};

use crate::config::NodeId;

pub use sections::{Capacity, HaFailures, HaLostDomains, HaPlan};

/// A domain to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// Domain name.
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// Its memory, KiB.
    pub memory_kib: u64,
    /// Its virtual CPUs.
    pub vcpus: u32,
    /// Restart order: lower first.
    pub priority: u32,
    /// Hosts it must not go to (its start failed there).
    pub excluded: Vec<NodeId>,
}

/// What a host can give, and what its domains use already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// The host.
    pub host: NodeId,
    /// Its memory, KiB.
    pub memory_kib: u64,
    /// Its CPUs.
    pub cpus: u32,
    /// Memory of the domains it runs (and those placed on it), KiB.
    pub used_memory_kib: u64,
    /// Virtual CPUs of the domains it runs (and those placed on it).
    pub used_vcpus: u32,
}

impl Room {
    /// Whether `d` fits without overcommitting memory and within the vCPU ratio.
    fn fits(&self, d: &Lost, vcpu_ratio: f64) -> bool {
        self.used_memory_kib + d.memory_kib <= self.memory_kib
            && f64::from(self.used_vcpus + d.vcpus) <= vcpu_ratio * f64::from(self.cpus)
    }

    /// Memory left, KiB.
    pub fn free_memory_kib(&self) -> u64 {
        self.memory_kib.saturating_sub(self.used_memory_kib)
    }
}

/// Where one domain goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// Start it on this host.
    On(NodeId),
    /// It fits on no host now; `roomiest` is the host with the most free memory and
    /// how much it has (KiB), if any host may take it at all.
    Nowhere {
        /// Host with the most free memory among those allowed, and that memory.
        roomiest: Option<(NodeId, u64)>,
    },
}

/// Places `lost` in priority order (then by name) on `rooms`, each on the allowed host
/// with the most memory left after it (spreading the load), so that no host overcommits
/// memory or exceeds `vcpu_ratio` virtual CPUs per CPU. `rooms` is updated with every
/// placement. Returns the UUID of each domain with its placement.
pub fn plan(lost: &[Lost], rooms: &mut [Room], vcpu_ratio: f64) -> Vec<(String, Placement)> {
    let mut order: Vec<&Lost> = lost.iter().collect();
    order.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    let mut out = Vec::new();
    for d in order {
        let allowed = || rooms.iter().filter(|r| !d.excluded.contains(&r.host));
        let best = allowed()
            .filter(|r| r.fits(d, vcpu_ratio))
            .max_by_key(|r| (r.free_memory_kib(), std::cmp::Reverse(r.host)))
            .map(|r| r.host);
        let placement = match best {
            Some(host) => {
                if let Some(r) = rooms.iter_mut().find(|r| r.host == host) {
                    r.used_memory_kib += d.memory_kib;
                    r.used_vcpus += d.vcpus;
                }
                Placement::On(host)
            }
            None => Placement::Nowhere {
                roomiest: allowed()
                    .max_by_key(|r| (r.free_memory_kib(), std::cmp::Reverse(r.host)))
                    .map(|r| (r.host, r.free_memory_kib())),
            },
        };
        out.push((d.uuid.clone(), placement));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024;

    fn lost(name: &str, gib: f64, priority: u32) -> Lost {
        Lost {
            name: name.into(),
            uuid: format!("uuid-{name}"),
            memory_kib: (gib * GIB as f64) as u64,
            vcpus: 1,
            priority,
            excluded: Vec::new(),
        }
    }

    fn room(host: NodeId, used_gib: u64) -> Room {
        Room {
            host,
            memory_kib: 3 * GIB,
            cpus: 16,
            used_memory_kib: used_gib * GIB,
            used_vcpus: used_gib as u32,
        }
    }

    #[test]
    fn domains_spread_in_priority_order_and_one_that_fits_nowhere_waits() {
        let mut rooms = [room(2, 1), room(3, 1)];
        let placed = plan(
            &[lost("c", 2.5, 1), lost("a", 1.0, 2), lost("b", 1.0, 2)],
            &mut rooms,
            4.0,
        );
        assert_eq!(
            placed,
            vec![
                (
                    "uuid-c".to_string(),
                    Placement::Nowhere {
                        roomiest: Some((2, 2 * GIB))
                    }
                ),
                ("uuid-a".to_string(), Placement::On(2)),
                ("uuid-b".to_string(), Placement::On(3)),
            ]
        );
        assert_eq!(rooms[0].used_memory_kib, 2 * GIB);
        assert_eq!(rooms[1].used_memory_kib, 2 * GIB);
    }

    #[test]
    fn memory_is_never_overcommitted_nor_the_vcpu_ratio_exceeded() {
        let mut rooms = [room(2, 0)];
        let placed = plan(
            &[
                lost("a", 1.0, 1),
                lost("b", 1.0, 1),
                lost("c", 1.0, 1),
                lost("d", 0.5, 1),
            ],
            &mut rooms,
            4.0,
        );
        let on = placed
            .iter()
            .filter(|(_, p)| matches!(p, Placement::On(_)))
            .count();
        assert_eq!(on, 3, "{placed:?}");
        assert_eq!(rooms[0].used_memory_kib, 3 * GIB);

        // A ratio of 0.125 on 16 CPUs allows 2 vCPUs.
        let mut rooms = [room(2, 0)];
        let placed = plan(
            &[lost("a", 0.1, 1), lost("b", 0.1, 1), lost("c", 0.1, 1)],
            &mut rooms,
            0.125,
        );
        assert!(
            matches!(placed[2].1, Placement::Nowhere { .. }),
            "{placed:?}"
        );
    }

    #[test]
    fn an_excluded_host_is_not_chosen() {
        let mut rooms = [room(2, 0), room(3, 2)];
        let mut d = lost("a", 0.5, 1);
        d.excluded = vec![2];
        assert_eq!(plan(&[d.clone()], &mut rooms, 4.0)[0].1, Placement::On(3));
        d.excluded = vec![2, 3];
        assert_eq!(
            plan(&[d], &mut rooms, 4.0)[0].1,
            Placement::Nowhere { roomiest: None }
        );
    }
}
