//! Host-to-guest messages a guest cannot forge or replay.
//!
//! Host-link frames are authenticated with the guest cluster's key, which every guest of
//! that cluster holds: on its own, a frame proves only that some member of the guest
//! cluster made it. What a host tells a guest (a host is DOWN, a partner was killed, a
//! migration begins) must come from a host, so once a link session is confirmed every
//! host → guest message travels sealed ([`LinkMessage::Sealed`]): signed with Ed25519 by
//! a key derived from the host cluster key ([`HostSigningKey::derive`], the same on every
//! host), checked by the guest with the matching public key from `guest.toml`
//! (`[host_link] host_public_key`).
//!
//! Each seal is bound to its session — the guest cluster, the guest's node id, the host's
//! nonce of the connection and the guest's own nonce of the connection — and numbered:
//! a sealed message recorded on one session is refused on any other (the guest picks a
//! new nonce for every connection), and on its own session it is refused twice or out
//! of order.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::hostlink::LinkMessage;

/// Salt of the derivation of the host-link signing key from the host cluster key.
const DERIVE_SALT: &[u8] = b"hvcluster host link";
/// What the derived key is for (HKDF info).
const DERIVE_INFO: &[u8] = b"host-to-guest ed25519 signing key v1";
/// Prefix of every signed text, so that no other signature of the key can pass for one.
const CONTEXT: &[u8] = b"hvcluster host-link message v1\0";
/// Prefix of a public key written as text.
const PUBLIC_PREFIX: &str = "ed25519:";

/// The hosts' key for sealing host → guest messages (secret: held by host agents only).
#[derive(Clone)]
pub struct HostSigningKey(SigningKey);

impl fmt::Debug for HostSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostSigningKey({})", self.public())
    }
}

impl HostSigningKey {
    /// The signing key every host of the cluster derives from the host cluster key.
    pub fn derive(host_cluster_key: &[u8]) -> HostSigningKey {
        let mut seed = [0u8; 32];
        Hkdf::<Sha256>::new(Some(DERIVE_SALT), host_cluster_key)
            .expand(DERIVE_INFO, &mut seed)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        HostSigningKey(SigningKey::from_bytes(&seed))
    }

    /// The public key guests check seals with.
    pub fn public(&self) -> HostPublicKey {
        HostPublicKey(self.0.verifying_key())
    }
}

/// The hosts' public key, as guests are configured with it (`ed25519:` and 64 hex digits).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HostPublicKey(VerifyingKey);

impl fmt::Debug for HostPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostPublicKey({self})")
    }
}

impl fmt::Display for HostPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PUBLIC_PREFIX)?;
        for b in self.0.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a text is not a host public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    /// Not `ed25519:` followed by 64 hexadecimal digits.
    #[error(
        "is not a host public key: expected \"ed25519:\" and 64 hexadecimal digits, as \
         `hvctl config host-link-key CLUSTER_TOML` prints it on a host"
    )]
    Format,
    /// The right shape, but not a point of the curve.
    #[error("is not a valid Ed25519 public key; copy it again from `hvctl config host-link-key`")]
    Invalid,
}

impl FromStr for HostPublicKey {
    type Err = PublicKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or(PublicKeyError::Format)?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PublicKeyError::Format);
        }
        let mut bytes = [0u8; 32];
        for (i, out) in bytes.iter_mut().enumerate() {
            *out = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| PublicKeyError::Format)?;
        }
        VerifyingKey::from_bytes(&bytes)
            .map(HostPublicKey)
            .map_err(|_| PublicKeyError::Invalid)
    }
}

/// What one link session is: whose link, and both ends' nonces of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionBinding {
    /// The guest cluster's id.
    pub cluster_id: u64,
    /// The guest's node id in it.
    pub node_id: u32,
    /// The host's nonce ([`LinkMessage::Registered`]).
    pub host_nonce: u64,
    /// The guest's nonce ([`LinkMessage::ConfirmSession`]).
    pub guest_nonce: u64,
}

impl SessionBinding {
    /// The text signed for message bytes `body`, number `sequence`, of this session.
    fn signed_text(&self, sequence: u64, body: &[u8]) -> Vec<u8> {
        let mut text = Vec::with_capacity(CONTEXT.len() + 36 + body.len());
        text.extend_from_slice(CONTEXT);
        text.extend_from_slice(&self.cluster_id.to_be_bytes());
        text.extend_from_slice(&self.node_id.to_be_bytes());
        text.extend_from_slice(&self.host_nonce.to_be_bytes());
        text.extend_from_slice(&self.guest_nonce.to_be_bytes());
        text.extend_from_slice(&sequence.to_be_bytes());
        text.extend_from_slice(body);
        text
    }
}

/// The host's end of a sealed session: seals what the host sends, in order.
#[derive(Debug, Clone)]
pub struct Sealer {
    key: HostSigningKey,
    binding: SessionBinding,
    sequence: u64,
}

impl Sealer {
    /// Starts sealing for `binding` with `key`.
    pub fn new(key: HostSigningKey, binding: SessionBinding) -> Sealer {
        Sealer {
            key,
            binding,
            sequence: 0,
        }
    }

    /// `message` sealed as the next of the session.
    pub fn seal(&mut self, message: &LinkMessage) -> LinkMessage {
        self.sequence += 1;
        let body = message.to_payload();
        let signature = self
            .key
            .0
            .sign(&self.binding.signed_text(self.sequence, &body));
        LinkMessage::Sealed {
            sequence: self.sequence,
            message: body,
            signature: signature.to_bytes().to_vec(),
        }
    }
}

/// Why a guest refused a message from its host link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not sealed, on a session whose messages must all be.
    #[error("an unsigned {0} on a signed host link (not from a host)")]
    Unsealed(&'static str),
    /// The signature does not match the hosts' public key and this session.
    #[error("a host-link message whose signature does not match the hosts' public key and this session (forged, or recorded on another session)")]
    BadSignature,
    /// Signed for this session, but not after the last one accepted.
    #[error("a signed host-link message out of order or repeated (sequence {got}, last accepted {last})")]
    Replayed {
        /// Its sequence.
        got: u64,
        /// The last accepted.
        last: u64,
    },
    /// Signed, but its content does not parse (or is itself sealed).
    #[error("a signed host-link message that cannot be read")]
    Unreadable,
}

/// The guest's end of a sealed session: opens what the host sent, refusing what a host
/// did not seal for this session, and anything twice or out of order.
#[derive(Debug, Clone)]
pub struct Opener {
    key: HostPublicKey,
    binding: SessionBinding,
    last: u64,
}

impl Opener {
    /// Starts checking seals of `binding` with the hosts' public key.
    pub fn new(key: HostPublicKey, binding: SessionBinding) -> Opener {
        Opener {
            key,
            binding,
            last: 0,
        }
    }

    /// The message inside `received`, if a host sealed it for this session, next.
    pub fn open(&mut self, received: LinkMessage) -> Result<LinkMessage, SealError> {
        let LinkMessage::Sealed {
            sequence,
            message,
            signature,
        } = received
        else {
            return Err(SealError::Unsealed(received.name()));
        };
        let signature: [u8; 64] = signature
            .as_slice()
            .try_into()
            .map_err(|_| SealError::BadSignature)?;
        let text = self.binding.signed_text(sequence, &message);
        self.key
            .0
            .verify_strict(&text, &Signature::from_bytes(&signature))
            .map_err(|_| SealError::BadSignature)?;
        if sequence <= self.last {
            return Err(SealError::Replayed {
                got: sequence,
                last: self.last,
            });
        }
        let inner = LinkMessage::from_payload(&message).map_err(|_| SealError::Unreadable)?;
        if matches!(inner, LinkMessage::Sealed { .. }) {
            return Err(SealError::Unreadable);
        }
        self.last = sequence;
        Ok(inner)
    }
}

#[cfg(test)]
mod tests;
