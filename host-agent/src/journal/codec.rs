//! The journal's on-disk format as pure functions over byte buffers; no file is touched
//! here, so every damage case can be tested on plain `Vec<u8>`s.
//!
//! Layout: an 8-byte file header (`HVJRNL`, format version as u16 LE), then records, each
//! `length: u32 LE | crc32: u32 LE | payload`, where the CRC-32 (IEEE) covers the payload
//! and the payload is one JSON object `{"seq":…,"unix_ms":…,"body":…}`.

use std::fmt;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

/// The first six bytes of every journal file.
const MAGIC: [u8; 6] = *b"HVJRNL";
/// Format version written after the magic; bump it when the framing changes.
pub const VERSION: u16 = 1;
/// Bytes of the file header (magic and version).
pub const HEADER_LEN: usize = 8;
/// Bytes before each payload: length and checksum.
const FRAME_HEADER_LEN: usize = 8;
/// Largest payload the journal writes or accepts, in bytes.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// One journal entry: the journal's sequence number and time around the caller's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<T> {
    /// Position in the journal: 1 for the first record, then one more per record.
    pub seq: u64,
    /// Wall-clock time of the append, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// What the caller appended.
    pub body: T,
}

/// The borrowed form of [`Record`] that `append` serializes, so callers keep their value.
#[derive(Serialize)]
struct Envelope<'a, T> {
    seq: u64,
    unix_ms: u64,
    body: &'a T,
}

/// The envelope fields alone: enough to recognise a record without knowing its body type.
#[derive(Deserialize)]
struct Probe {
    #[allow(dead_code)]
    seq: u64,
    #[allow(dead_code)]
    unix_ms: u64,
    #[allow(dead_code)]
    body: IgnoredAny,
}

/// The file header for this format version.
pub fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..6].copy_from_slice(&MAGIC);
    h[6..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// What the first bytes of a file say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCheck {
    /// A complete header of this version.
    Valid,
    /// Empty, or a prefix of a header: a crash while the file was being created.
    Unfinished,
    /// The magic is wrong: some other file.
    NotAJournal,
    /// The magic is right but the version is another one.
    Version(u16),
}

/// Checks the file header at the start of `bytes`.
pub fn check_header(bytes: &[u8]) -> HeaderCheck {
    let expected = header();
    if bytes.len() < HEADER_LEN {
        return if expected.starts_with(bytes) {
            HeaderCheck::Unfinished
        } else {
            HeaderCheck::NotAJournal
        };
    }
    if bytes[..6] != MAGIC {
        return HeaderCheck::NotAJournal;
    }
    match u16::from_le_bytes([bytes[6], bytes[7]]) {
        VERSION => HeaderCheck::Valid,
        other => HeaderCheck::Version(other),
    }
}

/// Encodes one record as a frame ready to append; returns the frame and its payload size.
pub fn encode_record<T: Serialize>(
    seq: u64,
    unix_ms: u64,
    body: &T,
) -> Result<(Vec<u8>, usize), serde_json::Error> {
    let payload = serde_json::to_vec(&Envelope { seq, unix_ms, body })?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    // A payload over the limit is refused by the caller before it is written, so the
    // cast only saturates for frames that never reach the disk.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok((frame, payload.len()))
}

/// What is wrong with the bytes where a record should start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flaw {
    /// Fewer bytes remain than the frame needs: a write cut short.
    Incomplete { needed: u64, available: u64 },
    /// The stated payload length is zero or over the limit.
    BadLength(u32),
    /// The payload does not match its checksum.
    ChecksumMismatch { stored: u32, computed: u32 },
    /// The checksum holds but the payload is not a record of the expected type.
    Undecodable(String),
    /// The checksum holds but the sequence number does not follow the previous record.
    SequenceBreak { expected: u64, found: u64 },
}

impl Flaw {
    /// Whether this is what a torn or rotted write looks like, as opposed to a record that
    /// was written whole: only those may ever be dropped.
    fn is_damaged_write(&self) -> bool {
        matches!(
            self,
            Flaw::Incomplete { .. } | Flaw::BadLength(_) | Flaw::ChecksumMismatch { .. }
        )
    }
}

impl fmt::Display for Flaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flaw::Incomplete { needed, available } => {
                write!(f, "only {available} of its {needed} bytes are present")
            }
            Flaw::BadLength(len) => write!(
                f,
                "its stated length {len} is not between 1 and {MAX_RECORD_BYTES}"
            ),
            Flaw::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum {stored:08x} is stored but the payload gives {computed:08x}"
            ),
            Flaw::Undecodable(cause) => write!(
                f,
                "the checksum holds but the payload is not a record this agent reads: {cause}"
            ),
            Flaw::SequenceBreak { expected, found } => write!(
                f,
                "sequence number {found} stands where {expected} was expected"
            ),
        }
    }
}

/// The first damaged record of a journal and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// 1-based position of the damaged record in the file.
    pub record: u64,
    /// Byte offset in the file where the damaged record starts.
    pub offset: u64,
    /// What is wrong with it.
    pub flaw: Flaw,
    /// Whether an intact record was found after it.
    pub valid_records_follow: bool,
}

impl Damage {
    /// Whether this is a torn or rotted last write, safe to cut away: nothing intact after
    /// it, and nothing intact in it.
    pub fn is_torn_tail(&self) -> bool {
        self.flaw.is_damaged_write() && !self.valid_records_follow
    }
}

/// The records read from a journal's bytes and where reading stopped.
#[derive(Debug)]
pub struct Scan<T> {
    /// The intact records before any damage, in order.
    pub records: Vec<Record<T>>,
    /// Byte offset just after the last intact record.
    pub valid_end: u64,
    /// The damage that stopped reading, if any.
    pub damage: Option<Damage>,
}

/// Reads the frame at `pos`: its payload and the offset of the next frame.
fn read_frame(bytes: &[u8], pos: usize) -> Result<(&[u8], usize), Flaw> {
    let rest = bytes.get(pos..).unwrap_or_default();
    if rest.len() < FRAME_HEADER_LEN {
        return Err(Flaw::Incomplete {
            needed: FRAME_HEADER_LEN as u64,
            available: rest.len() as u64,
        });
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    if len == 0 || len as usize > MAX_RECORD_BYTES {
        return Err(Flaw::BadLength(len));
    }
    let end = FRAME_HEADER_LEN + len as usize;
    if rest.len() < end {
        return Err(Flaw::Incomplete {
            needed: end as u64,
            available: rest.len() as u64,
        });
    }
    let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let payload = &rest[FRAME_HEADER_LEN..end];
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(Flaw::ChecksumMismatch { stored, computed });
    }
    Ok((payload, pos + end))
}

/// Whether an intact record of any body type starts at `pos`.
fn intact_record_at(bytes: &[u8], pos: usize) -> bool {
    // Cheap filters first: this runs at every byte after a damaged record. JSON text
    // never holds the zero bytes a small length needs, so a record's own payload cannot
    // pass for a frame here.
    let Some(head) = bytes.get(pos..pos + FRAME_HEADER_LEN) else {
        return false;
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let start = pos + FRAME_HEADER_LEN;
    let Some(payload) = bytes.get(start..start.saturating_add(len)) else {
        return false;
    };
    if len == 0 || len > MAX_RECORD_BYTES || payload[0] != b'{' || payload[len - 1] != b'}' {
        return false;
    }
    read_frame(bytes, pos).is_ok() && serde_json::from_slice::<Probe>(payload).is_ok()
}

/// Reads every record from `start` (just after the file header) to the first damage.
pub fn scan<T: DeserializeOwned>(bytes: &[u8], start: usize) -> Scan<T> {
    let mut records: Vec<Record<T>> = Vec::new();
    let mut pos = start;
    while pos < bytes.len() {
        let flaw = match read_frame(bytes, pos) {
            Err(flaw) => flaw,
            Ok((payload, next)) => match serde_json::from_slice::<Record<T>>(payload) {
                Err(e) => Flaw::Undecodable(e.to_string()),
                Ok(record) => match records.last().map(|r| r.seq + 1) {
                    Some(expected) if record.seq != expected => Flaw::SequenceBreak {
                        expected,
                        found: record.seq,
                    },
                    _ => {
                        records.push(record);
                        pos = next;
                        continue;
                    }
                },
            },
        };
        let valid_records_follow = (pos + 1..bytes.len()).any(|p| intact_record_at(bytes, p));
        let damage = Damage {
            record: records.len() as u64 + 1,
            offset: pos as u64,
            flaw,
            valid_records_follow,
        };
        return Scan {
            records,
            valid_end: pos as u64,
            damage: Some(damage),
        };
    }
    Scan {
        records,
        valid_end: pos as u64,
        damage: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal_bytes(bodies: &[&str]) -> Vec<u8> {
        let mut bytes = header().to_vec();
        for (i, body) in bodies.iter().enumerate() {
            bytes.extend(encode_record(i as u64 + 1, 7, body).unwrap().0);
        }
        bytes
    }

    #[test]
    fn header_checks() {
        assert_eq!(check_header(&header()), HeaderCheck::Valid);
        assert_eq!(check_header(b""), HeaderCheck::Unfinished);
        assert_eq!(check_header(b"HVJ"), HeaderCheck::Unfinished);
        assert_eq!(check_header(b"{\"seq\""), HeaderCheck::NotAJournal);
        assert_eq!(check_header(b"HVJRNL\x02\x00"), HeaderCheck::Version(2));
    }

    #[test]
    fn zero_filled_tail_is_a_torn_tail() {
        // What some filesystems show after a power loss: the size grew, the data did not.
        let mut bytes = journal_bytes(&["a", "b"]);
        let end = bytes.len() as u64;
        bytes.extend([0u8; 4096]);
        let scan = scan::<String>(&bytes, HEADER_LEN);
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.valid_end, end);
        let damage = scan.damage.unwrap();
        assert_eq!(damage.flaw, Flaw::BadLength(0));
        assert!(damage.is_torn_tail());
    }

    #[test]
    fn a_whole_record_out_of_sequence_is_never_a_torn_tail() {
        let mut bytes = journal_bytes(&["a"]);
        bytes.extend(encode_record(5, 7, &"e").unwrap().0);
        let damage = scan::<String>(&bytes, HEADER_LEN).damage.unwrap();
        assert_eq!(
            damage.flaw,
            Flaw::SequenceBreak {
                expected: 2,
                found: 5
            }
        );
        assert!(!damage.is_torn_tail());
    }
}
