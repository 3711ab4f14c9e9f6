//! The host link: what a guest agent and the host agent of the host it runs on say to
//! each other, over a byte stream (TCP, vsock or a virtio-serial port).
//!
//! Every message travels in an authenticated frame of kind [`Kind::HostLink`], signed
//! with the guest cluster's key and carrying the guest cluster's id: the host agent
//! knows the keys of the guest clusters it serves, so a guest can only speak for its
//! own guest cluster. Frames are self-delimiting (the header holds the payload length),
//! so a stream is a plain sequence of frames; [`FrameSplitter`] cuts one back into them.
//!
//! The exchange:
//! - the guest connects and sends [`LinkMessage::Register`]; the host answers
//!   [`LinkMessage::Registered`] with a fresh nonce, which the guest returns in
//!   [`LinkMessage::Confirm`] (or [`LinkMessage::Refused`], and closes);
//! - when a host is DOWN with proof, every surviving host agent sends each linked guest
//!   with a partner on it a [`LinkMessage::HostDown`] naming the partners that died with
//!   it; the guest answers [`LinkMessage::HostDownAck`] with the same epoch. The host
//!   repeats unacknowledged notices; the guest applies a notice once per epoch.
//!
//! A guest that answers with [`LinkMessage::ConfirmSession`] instead of `Confirm` gets a
//! sealed session: every host → guest message after it is [`LinkMessage::Sealed`],
//! signed by the hosts and bound to the session, so that a guest of the same guest
//! cluster cannot speak as a host and a recorded message cannot be replayed
//! ([`crate::hostseal`]).

mod sections;

use serde::{Deserialize, Serialize};

use crate::config::NodeId;
use crate::wire::{self, Kind, HEADER_LEN, MAX_FRAME, TAG_LEN};

pub use sections::{Domains, Guests, KillAnswers, KillOrders};

/// A message on the host link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkMessage {
    /// Guest → host, first message: who is speaking.
    Register {
        /// Guest cluster name.
        cluster: String,
        /// Node name in the guest cluster.
        node: String,
        /// Node id in the guest cluster.
        node_id: NodeId,
        /// The guest's domain (libvirt name or UUID), if it knows it.
        domain: Option<String>,
    },
    /// Host → guest: registration accepted once the guest answers with
    /// [`LinkMessage::Confirm`] carrying `nonce` (a recorded registration replayed on
    /// another connection cannot answer it).
    Registered {
        /// The host's name in the host cluster.
        host: String,
        /// Fresh for every connection.
        nonce: u64,
    },
    /// Guest → host: the answer to [`LinkMessage::Registered`]; the guest is linked.
    Confirm {
        /// The nonce the host sent.
        nonce: u64,
    },
    /// Host → guest: registration refused (the connection is closed after it).
    Refused {
        /// Why.
        reason: String,
    },
    /// Host → guest: `host` is DOWN with proof; the guest's partners on it died with it.
    HostDown {
        /// Identifies the notice; the guest acknowledges it and applies it once.
        epoch: u64,
        /// The host that is down.
        host: String,
        /// What proves it (power-off, kdump notice, operator).
        proof: String,
        /// Guests of the receiver's guest cluster that ran on it: node id and the
        /// incarnation they ran with (0 if unknown).
        guests: Vec<(NodeId, u64)>,
    },
    /// Guest → host: notice `epoch` received and applied.
    HostDownAck {
        /// The notice's epoch.
        epoch: u64,
    },
    /// Guest → host: kill node `node_id` of guest cluster `cluster` (silent, while its
    /// host is fine), wherever it runs, and say when it is dead.
    KillRequest {
        /// Identifies the request; the answer names it.
        request: u64,
        /// The target's guest cluster (the host refuses any other than the sender's).
        cluster: String,
        /// The target's node id.
        node_id: NodeId,
    },
    /// Host → guest: what became of a kill request.
    KillResult {
        /// The request.
        request: u64,
        /// The guest was destroyed (its death is proved).
        ok: bool,
        /// What happened.
        detail: String,
        /// Not now, ask again after this many ms (its host reports itself slow, so the
        /// guest may only be late); 0: final.
        retry_after_ms: u64,
    },
    /// Host → guest: the host is about to move this guest to another host (`id` names
    /// the migration). The guest answers [`LinkMessage::MigrationAnswer`]: refused while
    /// an application of its cluster is switching; accepted, it tells its cluster to
    /// hold every switchover and not to take its silence for a failure for up to
    /// `hold_ms` (or until [`LinkMessage::MigrationEnd`], or until it links from another
    /// host: then it has moved).
    MigrationPrepare {
        /// The migration.
        id: u64,
        /// Longest time it may last, ms.
        hold_ms: u64,
    },
    /// Guest → host: may the migration `id` begin.
    MigrationAnswer {
        /// The migration.
        id: u64,
        /// It may.
        ok: bool,
        /// Why not (or what the guest did).
        detail: String,
    },
    /// Host → guest: the migration `id` ended here (failed: the guest did not move).
    MigrationEnd {
        /// The migration.
        id: u64,
    },
    /// Either way, when nothing else was sent for a while: the link is alive.
    Keepalive,
    /// Host → guest, first on a virtio-serial channel of a domain migrating in: `host`
    /// is at this end now. A guest registered elsewhere registers again at once rather
    /// than after its link's silence timeout.
    Hello {
        /// The host's name.
        host: String,
    },
    /// Guest → host: the answer to [`LinkMessage::Registered`] that also asks for a
    /// sealed session: from then on every host → guest message is
    /// [`LinkMessage::Sealed`] for this session ([`crate::hostseal`]), the first being
    /// [`LinkMessage::Registered`] again. The guest picks `guest_nonce` afresh for every
    /// connection.
    ConfirmSession {
        /// The nonce the host sent.
        nonce: u64,
        /// The guest's own nonce of this connection.
        guest_nonce: u64,
    },
    /// Host → guest, on a sealed session: `message` (an encoded [`LinkMessage`]),
    /// number `sequence` of the session, signed by the hosts ([`crate::hostseal`]).
    Sealed {
        /// From 1, one more for each message of the session.
        sequence: u64,
        /// The message, encoded.
        message: Vec<u8>,
        /// Ed25519 signature over the session, the sequence and the message.
        signature: Vec<u8>,
    },
}

/// A domain running (or paused) on a host, as host agents tell each other in their
/// heartbeats: which VM runs where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DomainPresence {
    /// Domain name.
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// libvirt's state, in words (`Running`, `Paused`, ...).
    pub state: String,
    /// Its memory, KiB (what VM HA placement counts).
    pub memory_kib: u64,
    /// Its virtual CPUs.
    pub vcpus: u32,
}

/// What a host can give its domains, as its hypervisor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostCapacity {
    /// Memory, KiB.
    pub memory_kib: u64,
    /// CPUs.
    pub cpus: u32,
}

/// VM HA: the coordinator's decision that `host` starts the highly available domain
/// `name` (lost with a fenced host), repeated in its heartbeats until the domain runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HaAssignment {
    /// Domain UUID.
    pub uuid: String,
    /// Domain name.
    pub name: String,
    /// Host that starts it.
    pub host: NodeId,
}

/// VM HA: a highly available domain lost with a fenced host and not running anywhere
/// yet, as every host repeats it in its heartbeats (so a host whose agent restarted
/// learns it again, and the next coordinator knows it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HaLost {
    /// Domain UUID.
    pub uuid: String,
    /// Domain name.
    pub name: String,
    /// Its memory, KiB.
    pub memory_kib: u64,
    /// Its virtual CPUs.
    pub vcpus: u32,
    /// Restart order: lower first.
    pub priority: u32,
    /// The host it ran on.
    pub from: NodeId,
}

/// VM HA: a host could not start a domain it was assigned; repeated in its heartbeats
/// for `[vm_ha] retry_ms`, during which it is not assigned that domain again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HaFailure {
    /// Domain UUID.
    pub uuid: String,
    /// Why.
    pub detail: String,
}

/// A host's order to another host to destroy one of its guests, repeated in the
/// sender's heartbeats until answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KillOrder {
    /// Unique per sending host and incarnation.
    pub id: u64,
    /// Host that runs the guest.
    pub target_host: NodeId,
    /// The guest's cluster.
    pub cluster: String,
    /// The guest's node id there.
    pub node_id: NodeId,
}

/// A host's answer to a kill order, repeated in its heartbeats for a while.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KillAnswer {
    /// Host that gave the order.
    pub from_host: NodeId,
    /// The order's id.
    pub id: u64,
    /// The guest was destroyed.
    pub ok: bool,
    /// What happened.
    pub detail: String,
}

impl LinkMessage {
    /// The message's kind, in words (for logs and refusals).
    pub fn name(&self) -> &'static str {
        match self {
            LinkMessage::Register { .. } => "Register",
            LinkMessage::Registered { .. } => "Registered",
            LinkMessage::Confirm { .. } => "Confirm",
            LinkMessage::Refused { .. } => "Refused",
            LinkMessage::HostDown { .. } => "HostDown",
            LinkMessage::HostDownAck { .. } => "HostDownAck",
            LinkMessage::KillRequest { .. } => "KillRequest",
            LinkMessage::KillResult { .. } => "KillResult",
            LinkMessage::MigrationPrepare { .. } => "MigrationPrepare",
            LinkMessage::MigrationAnswer { .. } => "MigrationAnswer",
            LinkMessage::MigrationEnd { .. } => "MigrationEnd",
            LinkMessage::Keepalive => "Keepalive",
            LinkMessage::Hello { .. } => "Hello",
            LinkMessage::ConfirmSession { .. } => "ConfirmSession",
            LinkMessage::Sealed { .. } => "Sealed",
        }
    }

    /// Encodes the message as the payload of a host-link frame.
    pub fn to_payload(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("host-link messages always serialize")
    }

    /// Decodes a host-link frame's payload.
    pub fn from_payload(payload: &[u8]) -> Result<LinkMessage, postcard::Error> {
        postcard::from_bytes(payload)
    }

    /// The message in a signed frame.
    pub fn to_frame(
        &self,
        key: &[u8],
        cluster_id: u64,
        sender: u32,
        incarnation: u64,
        sequence: u64,
    ) -> Vec<u8> {
        let header = wire::Header {
            kind: Kind::HostLink,
            cluster_id,
            sender,
            incarnation,
            sequence,
        };
        wire::encode(&header, &self.to_payload(), key)
            .expect("host-link messages are far below the frame limit")
    }
}

/// A guest linked to a host, as host agents tell each other in their heartbeats: which
/// guests of which guest clusters run where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GuestPresence {
    /// Guest cluster name.
    pub cluster: String,
    /// Node id in the guest cluster.
    pub node_id: NodeId,
    /// Node name in the guest cluster.
    pub node: String,
    /// The guest agent's incarnation.
    pub incarnation: u64,
}

/// Why a stream cannot be cut into frames; the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The bytes do not start with the frame magic.
    #[error("not a host-link stream (bad frame magic)")]
    BadMagic,
    /// A frame header announces more than a frame may hold.
    #[error("frame too large")]
    TooLarge,
}

/// Cuts a byte stream into whole frames (still to be authenticated with
/// [`wire::decode`]). Holds at most one frame's bytes.
#[derive(Debug, Default)]
pub struct FrameSplitter {
    buf: Vec<u8>,
}

impl FrameSplitter {
    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        let magic_len = self.buf.len().min(wire::MAGIC.len());
        if self.buf[..magic_len] != wire::MAGIC[..magic_len] {
            return Err(StreamError::BadMagic);
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[36], self.buf[37], self.buf[38], self.buf[39]]);
        let total = HEADER_LEN + TAG_LEN + len as usize;
        if total > MAX_FRAME {
            return Err(StreamError::TooLarge);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn frame(m: &LinkMessage, seq: u64) -> Vec<u8> {
        m.to_frame(KEY, 7, 2, 1, seq)
    }

    #[test]
    fn messages_round_trip_through_signed_frames() {
        let m = LinkMessage::HostDown {
            epoch: 3,
            host: "h3".into(),
            proof: "power-off".into(),
            guests: vec![(1, 42)],
        };
        let bytes = frame(&m, 1);
        let f = wire::decode(&bytes, KEY, 7).unwrap();
        assert_eq!(f.header.kind, Kind::HostLink);
        assert_eq!(LinkMessage::from_payload(f.payload).unwrap(), m);
        assert!(wire::decode(&bytes, b"another key of sufficient size!!", 7).is_err());
    }

    /// Frames split across reads, or several in one read, come out whole and in order.
    #[test]
    fn splitter_reassembles_any_chunking() {
        let a = frame(&LinkMessage::Keepalive, 1);
        let b = frame(&LinkMessage::HostDownAck { epoch: 9 }, 2);
        let stream: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        for chunk in [1, 3, 40, 41, 1000] {
            let mut s = FrameSplitter::default();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                s.push(piece);
                while let Some(f) = s.next_frame().unwrap() {
                    out.push(f);
                }
            }
            assert_eq!(out, vec![a.clone(), b.clone()], "chunks of {chunk}");
        }
    }

    #[test]
    fn splitter_rejects_garbage_and_oversized_frames() {
        let mut s = FrameSplitter::default();
        s.push(b"GET / HTTP/1.1\r\n");
        assert_eq!(s.next_frame(), Err(StreamError::BadMagic));
        let mut big = frame(&LinkMessage::Keepalive, 1);
        big[36..40].copy_from_slice(&(MAX_FRAME as u32).to_be_bytes());
        let mut s = FrameSplitter::default();
        s.push(&big);
        assert_eq!(s.next_frame(), Err(StreamError::TooLarge));
        let mut s = FrameSplitter::default();
        s.push(b"HV");
        assert_eq!(s.next_frame(), Ok(None), "a partial magic waits for more");
    }

    #[test]
    fn garbage_payloads_are_errors_not_panics() {
        for bytes in [
            &[][..],
            &[0xff; 3][..],
            &[2, 0xff, 0xff, 0xff, 0xff, 0xff][..],
        ] {
            let _ = LinkMessage::from_payload(bytes);
        }
    }
}
