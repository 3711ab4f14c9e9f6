//! The application engine's heartbeat sections. Its gossip (placements, this node's
//! reports, the nodes it holds proved dead) travels in host heartbeats for the host-side
//! applications and in guest heartbeats; guest heartbeats also carry the proofs of death
//! and the migration hold.
//!
//! A guest heartbeat is a membership header with these three sections
//! ([`GuestHeartbeat`] keeps its fields; only its encoding is sectioned). Unknown
//! sections (a newer guest agent's) are skipped; a known one that does not decode makes
//! the whole heartbeat refused, as a payload that does not decode (`bad_payload`): the
//! engine's start guard needs its peers' reports, and takes no heartbeat without them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DownProof, Gossip};
use crate::membership::section::{
    record_list_section, FieldReader, FieldWriter, HeartbeatSection, SectionError, SectionId,
};
use crate::membership::Heartbeat;

/// The payload of a guest heartbeat frame: the membership header and the engine's
/// sections (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestHeartbeat {
    /// The membership part, as between hosts.
    pub membership: Heartbeat,
    /// Placements and this node's application reports.
    pub gossip: Gossip,
    /// Nodes the sender holds proved dead.
    pub proofs: Vec<DownProof>,
    /// The sender is being migrated: for this many more ms, hold every switchover and
    /// do not take its silence for a failure (0: it is not).
    pub migrating_ms: u64,
}

impl HeartbeatSection for Gossip {
    const ID: SectionId = 10;
    const VERSION: u16 = 1;
    const NAME: &'static str = "gossip";

    fn write(&self, out: &mut FieldWriter) {
        out.records(&self.placements)
            .records(&self.reports)
            .field(&self.held_down);
    }

    fn read(_version: u16, fields: &mut FieldReader<'_>) -> Result<Self, SectionError> {
        Ok(Gossip {
            placements: fields.records()?,
            reports: fields.records()?,
            held_down: fields.field()?,
        })
    }
}

/// Guest heartbeats: the nodes the sender holds proved dead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proofs(pub Vec<DownProof>);

record_list_section!(Proofs, 13, "proofs");

/// Guest heartbeats: the sender is being migrated, for this many more ms (0: it is not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Migrating(pub u64);

impl HeartbeatSection for Migrating {
    const ID: SectionId = 14;
    const VERSION: u16 = 1;
    const NAME: &'static str = "migrating";

    fn write(&self, out: &mut FieldWriter) {
        out.field(&self.0);
    }

    fn read(_version: u16, fields: &mut FieldReader<'_>) -> Result<Self, SectionError> {
        Ok(Migrating(fields.field()?))
    }
}

impl Serialize for GuestHeartbeat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut hb = self.membership.clone();
        hb.put(&self.gossip);
        hb.put(&Proofs(self.proofs.clone()));
        hb.put(&Migrating(self.migrating_ms));
        hb.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GuestHeartbeat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut membership = Heartbeat::deserialize(deserializer)?;
        let gossip: Gossip = required(&membership)?;
        let proofs: Proofs = required(&membership)?;
        let migrating: Migrating = required(&membership)?;
        membership
            .sections
            .retain(|s| ![Gossip::ID, Proofs::ID, Migrating::ID].contains(&s.id));
        Ok(GuestHeartbeat {
            membership,
            gossip,
            proofs: proofs.0,
            migrating_ms: migrating.0,
        })
    }
}

/// The section `S` of a guest heartbeat: its default when absent, an error when broken.
fn required<S: HeartbeatSection + Default, E: serde::de::Error>(hb: &Heartbeat) -> Result<S, E> {
    match hb.read::<S>() {
        None => Ok(S::default()),
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(E::custom(format_args!(
            "guest heartbeat section {} does not decode: {e}",
            S::NAME
        ))),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::application::{Activity, AppReport, Placement, Version};
    use crate::membership::{HostState, PeerView, Section};

    fn guest_heartbeat(proofs: Vec<DownProof>, migrating_ms: u64) -> GuestHeartbeat {
        GuestHeartbeat {
            membership: Heartbeat {
                interconnect: 0,
                quorate: true,
                votes: 2,
                view: vec![PeerView {
                    node: 2,
                    incarnation: 9,
                    state: HostState::Up,
                }],
                ..Heartbeat::default()
            },
            gossip: Gossip {
                placements: vec![Placement {
                    target: Some(1),
                    ..Placement::default()
                }],
                reports: vec![AppReport {
                    activity: Activity::Online,
                    seen: Version {
                        epoch: 1,
                        issuer: 1,
                    },
                    fault: None,
                    maintenance: false,
                    leaving: false,
                }],
                held_down: vec![3],
            },
            proofs,
            migrating_ms,
        }
    }

    fn decode(bytes: &[u8]) -> Result<GuestHeartbeat, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    proptest! {
        #[test]
        fn a_guest_heartbeat_round_trips(
            proofs in prop::collection::vec((any::<u32>(), any::<u64>()), 0..6),
            migrating_ms in any::<u64>(),
        ) {
            let ghb = guest_heartbeat(
                proofs.into_iter().map(|(node, incarnation)| DownProof { node, incarnation }).collect(),
                migrating_ms,
            );
            let bytes = postcard::to_allocvec(&ghb).unwrap();
            prop_assert_eq!(decode(&bytes).unwrap(), ghb);
        }
    }

    /// A newer guest agent's heartbeat: an unknown section, a proof record with a field
    /// appended, a newer version of the migration hold with one more field.
    #[test]
    fn a_newer_guest_heartbeat_decodes() {
        let ghb = guest_heartbeat(
            vec![DownProof {
                node: 3,
                incarnation: 4,
            }],
            500,
        );
        let mut hb = ghb.membership.clone();
        hb.put(&ghb.gossip);
        let mut proofs = FieldWriter::default();
        proofs.records(&[(3u32, 4u64, "appended")]);
        let mut migrating = FieldWriter::default();
        migrating.field(&500u64).field(&"appended");
        hb.sections.extend([
            Section {
                id: Proofs::ID,
                version: 2,
                bytes: proofs.into_bytes(),
            },
            Section {
                id: Migrating::ID,
                version: 2,
                bytes: migrating.into_bytes(),
            },
            Section {
                id: 4000,
                version: 1,
                bytes: vec![1, 2, 3],
            },
        ]);
        let got = decode(&postcard::to_allocvec(&hb).unwrap()).unwrap();
        assert_eq!(got.gossip, ghb.gossip);
        assert_eq!(got.proofs, ghb.proofs);
        assert_eq!(got.migrating_ms, 500);
        // The unknown section is skipped, kept out of the way of the known ones.
        assert_eq!(got.membership.sections.len(), 1);
        assert_eq!(got.membership.sections[0].id, 4000);
    }

    /// The engine takes no guest heartbeat without its peers' reports.
    #[test]
    fn a_broken_gossip_refuses_the_guest_heartbeat() {
        let ghb = guest_heartbeat(Vec::new(), 0);
        let mut hb = ghb.membership.clone();
        hb.put(&ghb.gossip);
        hb.sections[0].bytes.pop();
        assert!(decode(&postcard::to_allocvec(&hb).unwrap()).is_err());
    }
}
