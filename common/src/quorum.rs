//! Quorum: may this partition act?
//!
//! Every host has one vote. A partition is quorate with a strict majority of all votes;
//! in two-node mode one vote is enough (fencing then decides who survives). With
//! wait-for-all, no partition is quorate until every host has been seen once since the
//! agent started, so a host that boots alone never acts on its own. A host that left
//! cleanly takes its vote out of the expected ones ([`QuorumRules::downscaled`]).

use serde::{Deserialize, Serialize};

/// The vote rules of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumRules {
    /// Votes of all configured hosts.
    pub total_votes: u32,
    /// One vote suffices (two-host clusters).
    pub two_node: bool,
    /// Not quorate before every host was seen once.
    pub wait_for_all: bool,
}

/// A partition's quorum as seen by one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumState {
    /// Whether this partition may act.
    pub quorate: bool,
    /// Votes present (this host plus the peers that are Up or Suspect).
    pub votes: u32,
    /// Votes needed to be quorate.
    pub needed: u32,
    /// True while wait-for-all still holds quorum back.
    pub waiting_for_all: bool,
}

impl QuorumRules {
    /// The rules once `left` hosts left cleanly: their votes are no longer expected
    /// (corosync's allow_downscale). At least one vote stays expected.
    pub fn downscaled(&self, left: u32) -> QuorumRules {
        QuorumRules {
            total_votes: self.total_votes.saturating_sub(left).max(1),
            ..*self
        }
    }

    /// Votes needed for quorum.
    pub fn needed(&self) -> u32 {
        if self.two_node {
            1
        } else {
            self.total_votes / 2 + 1
        }
    }

    /// Evaluates a partition with `votes` present; `all_seen` tells whether every host
    /// was heard at least once since start.
    pub fn evaluate(&self, votes: u32, all_seen: bool) -> QuorumState {
        let waiting_for_all = self.wait_for_all && !all_seen;
        QuorumState {
            quorate: !waiting_for_all && votes >= self.needed(),
            votes,
            needed: self.needed(),
            waiting_for_all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row: total two_node wait_for_all votes all_seen => quorate
    const TABLE: &str = "
        # total two_node wfa votes all_seen quorate
        3 no  no  3 yes yes
        3 no  no  2 yes yes
        3 no  no  1 yes no
        3 no  yes 2 no  no
        3 no  yes 2 yes yes
        4 no  no  2 yes no
        4 no  no  3 yes yes
        5 no  no  3 yes yes
        5 no  no  2 yes no
        2 yes yes 1 yes yes
        2 yes yes 1 no  no
        2 yes yes 2 no  no
        2 yes no  1 no  yes
        2 no  no  1 yes no
        2 no  no  2 yes yes
        1 no  no  1 yes yes
    ";

    fn flag(s: &str) -> bool {
        match s {
            "yes" => true,
            "no" => false,
            other => panic!("bad flag {other}"),
        }
    }

    #[test]
    fn quorum_table() {
        for (n, line) in TABLE.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            let rules = QuorumRules {
                total_votes: f[0].parse().unwrap(),
                two_node: flag(f[1]),
                wait_for_all: flag(f[2]),
            };
            let got = rules.evaluate(f[3].parse().unwrap(), flag(f[4]));
            assert_eq!(got.quorate, flag(f[5]), "table line {n}: {line}");
        }
    }

    #[test]
    fn a_clean_leave_takes_its_vote_out_of_the_expected_ones() {
        let five = QuorumRules {
            total_votes: 5,
            two_node: false,
            wait_for_all: false,
        };
        assert_eq!(five.needed(), 3);
        assert_eq!(five.downscaled(1).needed(), 3);
        assert_eq!(five.downscaled(2).needed(), 2);
        assert!(five.downscaled(2).evaluate(2, true).quorate);
        assert!(!five.downscaled(1).evaluate(2, true).quorate);
        assert_eq!(five.downscaled(4).needed(), 1);
        assert_eq!(five.downscaled(9).total_votes, 1);
    }
}
