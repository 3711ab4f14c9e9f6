//! The heartbeat: a membership header (what the failure detector and quorum need) and
//! the sections of the capabilities the sender runs, each owned and versioned by its
//! capability ([`HeartbeatSection`]). Membership reads the header only.
//!
//! ```text
//! heartbeat = header version   varint (HEADER_VERSION)
//!             header           varint length, then its fields in order
//!             section count    varint
//!             per section      id varint, version varint, varint length, bytes
//! header v1 = interconnect u8, watchdog, quorate, votes, config digest [16],
//!             domains version, view (records of PeerView), probe (list of node ids)
//! header v2 = v1, then leaving bool
//! ```
//!
//! Integers are postcard varints. The header follows the rules of a section: a newer
//! header version only appends fields, which an older reader skips (the header carries
//! its length); anything after the section list is ignored.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::section::{self, FieldReader, FieldWriter, HeartbeatSection, SectionError, SectionId};
use super::HostState;
use crate::config::NodeId;

/// The layout version of the membership header this build writes.
pub const HEADER_VERSION: u16 = 2;

/// The load watchdog's verdict about its own host, carried in heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchdogVerdict {
    /// Scheduling is on time and pressure is low.
    #[default]
    Ok,
    /// Late or under pressure, still working.
    Slow {
        /// Worst recent lateness of the watchdog's wake-ups.
        lateness_ms: u32,
        /// Recent CPU pressure (`some avg10`), percent.
        psi_percent: u8,
    },
    /// Late beyond the hung threshold for `for_ms`.
    Hung {
        /// How long it has been hung.
        for_ms: u32,
    },
}

/// One host's state as another host sees it, as carried in heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// The host described.
    pub node: NodeId,
    /// Its incarnation as known by the sender (0 if never heard).
    pub incarnation: u64,
    /// Its state in the sender's view.
    pub state: HostState,
}

/// One section as carried: which, in which layout, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// The section's id.
    pub id: SectionId,
    /// The layout version its writer used.
    pub version: u16,
    /// Its fields, encoded.
    pub bytes: Vec<u8>,
}

/// The payload of a heartbeat frame: the membership header (every field but
/// `sections`) and the capabilities' sections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// Index of the interconnect it was sent on.
    pub interconnect: u8,
    /// The sender's own load-watchdog verdict.
    pub watchdog: WatchdogVerdict,
    /// Whether the sender's partition is quorate.
    pub quorate: bool,
    /// Votes present in the sender's partition.
    pub votes: u32,
    /// Digest of the sender's configuration; a mismatch is refused.
    pub config_digest: [u8; 16],
    /// Version of the sender's running-domain list.
    pub domains_version: u64,
    /// The sender's view of every other host.
    pub view: Vec<PeerView>,
    /// Hosts the sender asks to answer at once with heartbeats of their own: a panic
    /// notice named them, and it counts only if they stay silent.
    pub probe: Vec<NodeId>,
    /// The sender leaves the cluster: its agent stops cleanly (header version 2; false
    /// from a version 1 writer).
    pub leaving: bool,
    /// What the sender's capabilities share, one section each, as received.
    pub sections: Vec<Section>,
}

impl Heartbeat {
    /// Sets the section of `S` to `value` (in place of any earlier one).
    pub fn put<S: HeartbeatSection>(&mut self, value: &S) {
        let section = Section {
            id: S::ID,
            version: S::VERSION,
            bytes: section::encode(value),
        };
        match self.sections.iter_mut().find(|s| s.id == S::ID) {
            Some(old) => *old = section,
            None => self.sections.push(section),
        }
    }

    /// The section of `S`, decoded: `None` when the heartbeat has none.
    pub fn read<S: HeartbeatSection>(&self) -> Option<Result<S, SectionError>> {
        self.sections
            .iter()
            .find(|s| s.id == S::ID)
            .map(|s| section::decode(s.version, &s.bytes))
    }

    /// The section of `S`, or its default when absent or broken (the caller counts
    /// broken ones with [`Heartbeat::read`]).
    pub fn section<S: HeartbeatSection + Default>(&self) -> S {
        self.read().and_then(Result::ok).unwrap_or_default()
    }

    /// Leaves out the section `id`.
    pub fn remove(&mut self, id: SectionId) {
        self.sections.retain(|s| s.id != id);
    }

    /// Leaves out every section but those of `keep`.
    pub fn retain(&mut self, keep: &[SectionId]) {
        self.sections.retain(|s| keep.contains(&s.id));
    }

    /// The header as its fields.
    fn write_header(&self) -> Vec<u8> {
        let mut w = FieldWriter::default();
        w.field(&self.interconnect)
            .field(&self.watchdog)
            .field(&self.quorate)
            .field(&self.votes)
            .field(&self.config_digest)
            .field(&self.domains_version)
            .records(&self.view)
            .field(&self.probe)
            .field(&self.leaving);
        w.into_bytes()
    }

    /// Reads a header of layout `version` (1 or newer) into a heartbeat without sections.
    fn read_header(version: u16, bytes: &[u8]) -> Result<Heartbeat, SectionError> {
        if version == 0 {
            return Err(SectionError::BadField);
        }
        let mut r = FieldReader::new(bytes);
        Ok(Heartbeat {
            interconnect: r.field()?,
            watchdog: r.field()?,
            quorate: r.field()?,
            votes: r.field()?,
            config_digest: r.field()?,
            domains_version: r.field()?,
            view: r.records()?,
            probe: r.field()?,
            leaving: r.field_or_default()?,
            sections: Vec::new(),
        })
    }
}

/// The heartbeat as written (see the module's layout).
#[derive(Serialize)]
struct WireOut<'a> {
    header_version: u16,
    header: &'a [u8],
    sections: &'a [Section],
}

/// The heartbeat as read.
#[derive(Deserialize)]
struct WireIn {
    header_version: u16,
    header: Vec<u8>,
    sections: Vec<Section>,
}

impl Serialize for Heartbeat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireOut {
            header_version: HEADER_VERSION,
            header: &self.write_header(),
            sections: &self.sections,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Heartbeat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireIn::deserialize(deserializer)?;
        let mut hb = Heartbeat::read_header(wire.header_version, &wire.header).map_err(|e| {
            serde::de::Error::custom(format_args!("heartbeat header does not decode: {e}"))
        })?;
        hb.sections = wire.sections;
        Ok(hb)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::membership::FailReason;

    fn state() -> impl Strategy<Value = HostState> {
        prop_oneof![
            Just(HostState::Unknown),
            Just(HostState::Joining),
            Just(HostState::Up),
            Just(HostState::Suspect),
            Just(HostState::Failed(FailReason::Silent)),
            Just(HostState::Failed(FailReason::Panic)),
            Just(HostState::Failed(FailReason::Hung)),
        ]
    }

    fn watchdog() -> impl Strategy<Value = WatchdogVerdict> {
        prop_oneof![
            Just(WatchdogVerdict::Ok),
            (any::<u32>(), any::<u8>()).prop_map(|(lateness_ms, psi_percent)| {
                WatchdogVerdict::Slow {
                    lateness_ms,
                    psi_percent,
                }
            }),
            any::<u32>().prop_map(|for_ms| WatchdogVerdict::Hung { for_ms }),
        ]
    }

    prop_compose! {
        fn heartbeat()(
            interconnect in any::<u8>(),
            watchdog in watchdog(),
            quorate in any::<bool>(),
            votes in any::<u32>(),
            config_digest in any::<[u8; 16]>(),
            domains_version in any::<u64>(),
            view in prop::collection::vec((any::<u32>(), any::<u64>(), state()), 0..6),
            probe in prop::collection::vec(any::<u32>(), 0..3),
            leaving in any::<bool>(),
            sections in prop::collection::vec(
                (any::<u16>(), any::<u16>(), prop::collection::vec(any::<u8>(), 0..20)),
                0..4,
            ),
        ) -> Heartbeat {
            Heartbeat {
                interconnect,
                watchdog,
                quorate,
                votes,
                config_digest,
                domains_version,
                view: view
                    .into_iter()
                    .map(|(node, incarnation, state)| PeerView { node, incarnation, state })
                    .collect(),
                probe,
                leaving,
                sections: sections
                    .into_iter()
                    .map(|(id, version, bytes)| Section { id, version, bytes })
                    .collect(),
            }
        }
    }

    proptest! {
        /// The header and the sections, whatever they hold, come back as they were;
        /// any shorter prefix of the bytes is refused, never misread.
        #[test]
        fn a_heartbeat_round_trips(hb in heartbeat()) {
            let bytes = postcard::to_allocvec(&hb).unwrap();
            prop_assert_eq!(postcard::from_bytes::<Heartbeat>(&bytes).unwrap(), hb);
            for cut in 0..bytes.len() {
                prop_assert!(postcard::from_bytes::<Heartbeat>(&bytes[..cut]).is_err(), "cut at {}", cut);
            }
        }
    }

    /// The example payload of `docs/protocol.md`, "Heartbeat payload".
    #[test]
    fn the_documented_example_is_what_is_sent() {
        let hb = Heartbeat {
            interconnect: 0,
            watchdog: WatchdogVerdict::Ok,
            quorate: true,
            votes: 3,
            config_digest: [
                0xda, 0x14, 0x02, 0x8a, 0x02, 0x61, 0x8d, 0xe7, 0xb8, 0xfa, 0x8b, 0xa6, 0x5f, 0xcd,
                0x5b, 0x47,
            ],
            domains_version: 0,
            view: vec![
                PeerView {
                    node: 2,
                    incarnation: 1732266701907733,
                    state: HostState::Up,
                },
                PeerView {
                    node: 3,
                    incarnation: 1732266719550012,
                    state: HostState::Up,
                },
            ],
            probe: Vec::new(),
            leaving: false,
            sections: Vec::new(),
        };
        let bytes = postcard::to_allocvec(&hb).unwrap();
        let mut expected = vec![0x02, 0x2e, 0x00, 0x00, 0x01, 0x03];
        expected.extend_from_slice(&hb.config_digest);
        expected.extend_from_slice(&[0x00, 0x02]);
        expected.extend_from_slice(&[
            0x0a, 0x02, 0x95, 0xce, 0xb1, 0xab, 0xcc, 0xef, 0x89, 0x03, 0x02,
        ]);
        expected.extend_from_slice(&[
            0x0a, 0x03, 0xbc, 0xb4, 0xe6, 0xb3, 0xcc, 0xef, 0x89, 0x03, 0x02,
        ]);
        expected.extend_from_slice(&[0x00, 0x00, 0x00]);
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), 49);
    }

    #[test]
    fn header_version_0_is_refused() {
        let mut bytes = postcard::to_allocvec(&Heartbeat::default()).unwrap();
        assert_eq!(bytes[0], HEADER_VERSION as u8);
        assert!(postcard::from_bytes::<Heartbeat>(&bytes).is_ok());
        bytes[0] = 0;
        assert!(postcard::from_bytes::<Heartbeat>(&bytes).is_err());
    }

    #[test]
    fn put_replaces_and_remove_leaves_out() {
        #[derive(Debug, PartialEq)]
        struct Note(u32);
        impl HeartbeatSection for Note {
            const ID: SectionId = 900;
            const VERSION: u16 = 3;
            const NAME: &'static str = "note";
            fn write(&self, out: &mut FieldWriter) {
                out.field(&self.0);
            }
            fn read(_: u16, fields: &mut FieldReader<'_>) -> Result<Self, SectionError> {
                Ok(Note(fields.field()?))
            }
        }
        let mut hb = Heartbeat::default();
        assert_eq!(hb.read::<Note>(), None);
        hb.put(&Note(1));
        hb.put(&Note(2));
        assert_eq!(hb.sections.len(), 1);
        assert_eq!(hb.sections[0].version, 3);
        assert_eq!(hb.read::<Note>(), Some(Ok(Note(2))));
        hb.sections[0].bytes.clear();
        assert_eq!(hb.read::<Note>(), Some(Err(SectionError::Truncated)));
        hb.remove(Note::ID);
        assert!(hb.sections.is_empty());
    }
}
