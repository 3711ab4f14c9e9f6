//! The authenticated frame every agent-to-agent message travels in.
//!
//! ```text
//! offset size field
//!      0    4 magic "HVC1"
//!      4    1 version (1)
//!      5    1 kind
//!      6    2 reserved, zero
//!      8    8 cluster id
//!     16    4 sender node id
//!     20    8 sender incarnation (grows at every agent start)
//!     28    8 sequence number (per incarnation and receiver, from 1)
//!     36    4 payload length
//!     40    n payload
//!   40+n   32 HMAC-SHA256 over bytes 0..40+n with the cluster key
//! ```
//! All integers are big-endian. Decoding is a pure function that never panics, whatever
//! the bytes; [`ReplayWindow`] rejects old incarnations and repeated sequence numbers.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Frame magic.
pub const MAGIC: [u8; 4] = *b"HVC1";
/// Protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 40;
/// Bytes of the authentication tag.
pub const TAG_LEN: usize = 32;
/// Largest frame accepted or produced.
pub const MAX_FRAME: usize = 65_000;
/// Largest payload that fits a frame.
pub const MAX_PAYLOAD: usize = MAX_FRAME - HEADER_LEN - TAG_LEN;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Periodic host heartbeat with a membership summary.
    Heartbeat = 1,
    /// Periodic guest heartbeat: membership summary, placements, application reports.
    GuestHeartbeat = 2,
    /// A message between a guest agent and its host agent ([`crate::hostlink`]).
    HostLink = 3,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Kind::Heartbeat),
            2 => Some(Kind::GuestHeartbeat),
            3 => Some(Kind::HostLink),
            _ => None,
        }
    }
}

/// The header fields of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload kind.
    pub kind: Kind,
    /// Cluster the sender belongs to.
    pub cluster_id: u64,
    /// Sender's node id.
    pub sender: u32,
    /// Sender's incarnation.
    pub incarnation: u64,
    /// Sequence number within the incarnation.
    pub sequence: u64,
}

/// A decoded, authenticated frame borrowing its payload from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Header fields.
    pub header: Header,
    /// Payload bytes, authenticated but not yet parsed.
    pub payload: &'a [u8],
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// Shorter than a header and a tag, or its length field disagrees with its size.
    #[error("malformed frame")]
    Malformed,
    /// Not an hvcluster frame.
    #[error("bad magic")]
    BadMagic,
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// A kind this build does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// From another cluster.
    #[error("frame of a foreign cluster")]
    ForeignCluster,
    /// The tag does not match: wrong key or tampered frame.
    #[error("bad authentication tag")]
    BadTag,
    /// Payload larger than a frame can hold.
    #[error("payload too large")]
    TooLarge,
}

/// Encodes a frame, appending the HMAC tag.
pub fn encode(header: &Header, payload: &[u8], key: &[u8]) -> Result<Vec<u8>, WireError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(WireError::TooLarge);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(header.kind as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&header.cluster_id.to_be_bytes());
    out.extend_from_slice(&header.sender.to_be_bytes());
    out.extend_from_slice(&header.incarnation.to_be_bytes());
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let tag = mac(key).chain_update(&out).finalize().into_bytes();
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Decodes and authenticates a frame of cluster `cluster_id`.
pub fn decode<'a>(buf: &'a [u8], key: &[u8], cluster_id: u64) -> Result<Frame<'a>, WireError> {
    if buf.len() < HEADER_LEN + TAG_LEN || buf.len() > MAX_FRAME {
        return Err(WireError::Malformed);
    }
    if buf[0..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if buf[4] != VERSION {
        return Err(WireError::Version(buf[4]));
    }
    let len = u32::from_be_bytes(field(buf, 36)) as usize;
    if HEADER_LEN + len + TAG_LEN != buf.len() {
        return Err(WireError::Malformed);
    }
    let frame_cluster = u64::from_be_bytes(field(buf, 8));
    if frame_cluster != cluster_id {
        return Err(WireError::ForeignCluster);
    }
    let (body, tag) = buf.split_at(HEADER_LEN + len);
    mac(key)
        .chain_update(body)
        .verify_slice(tag)
        .map_err(|_| WireError::BadTag)?;
    let kind = Kind::from_u8(buf[5]).ok_or(WireError::UnknownKind(buf[5]))?;
    Ok(Frame {
        header: Header {
            kind,
            cluster_id: frame_cluster,
            sender: u32::from_be_bytes(field(buf, 16)),
            incarnation: u64::from_be_bytes(field(buf, 20)),
            sequence: u64::from_be_bytes(field(buf, 28)),
        },
        payload: &body[HEADER_LEN..],
    })
}

fn field<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Why the replay window refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ReplayError {
    /// The sender has restarted since; this frame is from its previous life.
    #[error("frame from an old incarnation")]
    OldIncarnation,
    /// The sequence number was seen already, or is older than the window.
    #[error("replayed or too old sequence number")]
    Replayed,
}

/// What accepting a frame told about its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The same incarnation as before.
    Same,
    /// First frame ever seen from this sender.
    First,
    /// The sender restarted: its incarnation grew.
    NewIncarnation {
        /// The incarnation seen before.
        previous: u64,
    },
}

/// Sliding-window replay protection for one sender.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    incarnation: Option<u64>,
    highest: u64,
    seen: u128,
}

/// Width of the replay window in sequence numbers.
pub const WINDOW: u64 = 128;

impl ReplayWindow {
    /// Checks `(incarnation, sequence)` and records it when accepted.
    pub fn accept(&mut self, incarnation: u64, sequence: u64) -> Result<Accepted, ReplayError> {
        let verdict = match self.incarnation {
            None => Accepted::First,
            Some(cur) if incarnation < cur => return Err(ReplayError::OldIncarnation),
            Some(cur) if incarnation > cur => Accepted::NewIncarnation { previous: cur },
            Some(_) => Accepted::Same,
        };
        if verdict != Accepted::Same {
            // Anything older than the first frame of an incarnation is refused: it can
            // only be a delayed duplicate or a replay.
            self.incarnation = Some(incarnation);
            self.highest = sequence;
            self.seen = u128::MAX;
            return Ok(verdict);
        }
        if sequence > self.highest {
            let shift = sequence - self.highest;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = sequence;
            return Ok(Accepted::Same);
        }
        let age = self.highest - sequence;
        if age >= WINDOW || self.seen & (1u128 << age) != 0 {
            return Err(ReplayError::Replayed);
        }
        self.seen |= 1u128 << age;
        Ok(Accepted::Same)
    }

    /// The incarnation currently accepted, if any.
    pub fn incarnation(&self) -> Option<u64> {
        self.incarnation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const CID: u64 = 0xC1u64;

    fn header(seq: u64) -> Header {
        Header {
            kind: Kind::Heartbeat,
            cluster_id: CID,
            sender: 3,
            incarnation: 77,
            sequence: seq,
        }
    }

    #[test]
    fn round_trip() {
        let buf = encode(&header(5), b"hello", KEY).unwrap();
        let f = decode(&buf, KEY, CID).unwrap();
        assert_eq!(f.header, header(5));
        assert_eq!(f.payload, b"hello");
    }

    #[test]
    fn wrong_key_and_foreign_cluster_are_rejected() {
        let buf = encode(&header(5), b"hello", KEY).unwrap();
        assert_eq!(
            decode(&buf, b"another key of some length", CID),
            Err(WireError::BadTag)
        );
        assert_eq!(decode(&buf, KEY, CID + 1), Err(WireError::ForeignCluster));
    }

    #[test]
    fn replay_window_rules() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(10, 5), Ok(Accepted::First));
        assert_eq!(
            w.accept(10, 4),
            Err(ReplayError::Replayed),
            "older than the first frame"
        );
        assert_eq!(w.accept(10, 5), Err(ReplayError::Replayed));
        assert_eq!(w.accept(10, 3), Err(ReplayError::Replayed));
        assert_eq!(w.accept(10, 6), Ok(Accepted::Same));
        assert_eq!(w.accept(10, 1), Err(ReplayError::Replayed));
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(10, 1), Ok(Accepted::First));
        assert_eq!(w.accept(10, 3), Ok(Accepted::Same));
        assert_eq!(
            w.accept(10, 2),
            Ok(Accepted::Same),
            "late but inside the window"
        );
        assert_eq!(w.accept(10, 2), Err(ReplayError::Replayed));
        assert_eq!(w.accept(10, 3 + WINDOW), Ok(Accepted::Same));
        assert_eq!(
            w.accept(10, 3),
            Err(ReplayError::Replayed),
            "fell out of the window"
        );
        assert_eq!(w.accept(9, 1000), Err(ReplayError::OldIncarnation));
        assert_eq!(
            w.accept(11, 1),
            Ok(Accepted::NewIncarnation { previous: 10 })
        );
        assert_eq!(w.accept(10, 5000), Err(ReplayError::OldIncarnation));
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes, KEY, CID);
        }

        #[test]
        fn decoder_never_panics_on_plausible_headers(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            len_field in any::<u32>(),
            kind in any::<u8>(),
        ) {
            let mut buf = encode(&header(1), &payload, KEY).unwrap();
            buf[5] = kind;
            buf[36..40].copy_from_slice(&len_field.to_be_bytes());
            let _ = decode(&buf, KEY, CID);
        }

        #[test]
        fn any_single_bit_flip_is_rejected(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            seq in any::<u64>(),
            bit in any::<usize>(),
        ) {
            let mut buf = encode(&header(seq), &payload, KEY).unwrap();
            let i = bit % (buf.len() * 8);
            buf[i / 8] ^= 1 << (i % 8);
            prop_assert!(decode(&buf, KEY, CID).is_err());
        }

        #[test]
        fn truncation_or_extension_is_rejected(
            payload in proptest::collection::vec(any::<u8>(), 1..64),
            cut in 1usize..40,
            extra in proptest::collection::vec(any::<u8>(), 1..8),
        ) {
            let buf = encode(&header(1), &payload, KEY).unwrap();
            prop_assert!(decode(&buf[..buf.len() - cut.min(buf.len())], KEY, CID).is_err());
            let mut longer = buf.clone();
            longer.extend_from_slice(&extra);
            prop_assert!(decode(&longer, KEY, CID).is_err());
        }

        #[test]
        fn window_never_accepts_a_pair_twice(seqs in proptest::collection::vec(0u64..400, 1..200)) {
            let mut w = ReplayWindow::default();
            let mut accepted = std::collections::HashSet::new();
            for s in seqs {
                if w.accept(1, s).is_ok() {
                    prop_assert!(accepted.insert(s), "sequence {} accepted twice", s);
                }
            }
        }
    }
}
