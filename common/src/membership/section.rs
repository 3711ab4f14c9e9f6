//! Heartbeat sections: what a capability shares in every heartbeat, beside the
//! membership header, in a layout the capability owns and versions itself.
//!
//! A section is `(id, version, bytes)`. Its bytes are fields one after the other, each
//! in postcard; a list of records is a count, then each record as a length-prefixed byte
//! string (so that a record can grow as well). The rules that let agents of two releases
//! read each other's sections (`docs/protocol.md`, "Heartbeat sections"):
//!
//! - a new version only appends fields, at the end of the section or at the end of a
//!   record of a list; it never removes, reorders or retypes one;
//! - a reader decodes the fields it knows and ignores the rest;
//! - a field appended in version N is read with [`FieldReader::field_or_default`] (absent
//!   from an older writer), or the older version is decoded with its own layout;
//! - an enum of a published layout never gains a variant: a new case is a new field;
//! - an unknown section id is skipped and counted, never an error; a section that does
//!   not decode is dropped alone, counted, and the rest of the heartbeat still counts.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A section's id, unique among the sections of a heartbeat (`docs/protocol.md` lists them).
pub type SectionId = u16;

/// What a capability shares in heartbeats, with its layout.
pub trait HeartbeatSection: Sized {
    /// The section's id.
    const ID: SectionId;
    /// The layout version this build writes.
    const VERSION: u16;
    /// Its name, in counters and logs.
    const NAME: &'static str;

    /// Writes the fields of the layout of [`HeartbeatSection::VERSION`].
    fn write(&self, out: &mut FieldWriter);

    /// Reads a section a writer of layout `version` wrote (older, the same or newer).
    fn read(version: u16, fields: &mut FieldReader<'_>) -> Result<Self, SectionError>;
}

/// Implements [`HeartbeatSection`] for a newtype over a list of records, layout version
/// 1: the records, as [`FieldWriter::records`] writes them.
macro_rules! record_list_section {
    ($section:ident, $id:expr, $name:expr) => {
        impl $crate::membership::section::HeartbeatSection for $section {
            const ID: $crate::membership::section::SectionId = $id;
            const VERSION: u16 = 1;
            const NAME: &'static str = $name;

            fn write(&self, out: &mut $crate::membership::section::FieldWriter) {
                out.records(&self.0);
            }

            fn read(
                _version: u16,
                fields: &mut $crate::membership::section::FieldReader<'_>,
            ) -> Result<Self, $crate::membership::section::SectionError> {
                Ok($section(fields.records()?))
            }
        }
    };
}
pub(crate) use record_list_section;

/// Why a section does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SectionError {
    /// It ends inside a field or a record.
    #[error("it ends inside a field")]
    Truncated,
    /// A field does not decode as its type.
    #[error("a field does not decode")]
    BadField,
    /// A count or a length larger than what is left.
    #[error("a count or length exceeds the section")]
    TooLong,
}

/// Encodes `value` as the bytes of its section.
pub fn encode<S: HeartbeatSection>(value: &S) -> Vec<u8> {
    let mut out = FieldWriter::default();
    value.write(&mut out);
    out.0
}

/// Decodes the bytes of a section of layout `version`.
pub fn decode<S: HeartbeatSection>(version: u16, bytes: &[u8]) -> Result<S, SectionError> {
    S::read(version, &mut FieldReader::new(bytes))
}

/// The fields of a section (or of a header), appended one after the other.
#[derive(Debug, Default)]
pub struct FieldWriter(Vec<u8>);

impl FieldWriter {
    /// Appends one field.
    pub fn field<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        // Serializing into a vector fails only for types postcard cannot express
        // (maps without a length), which no section uses.
        let bytes = postcard::to_allocvec(value).expect("a section field serializes");
        self.0.extend_from_slice(&bytes);
        self
    }

    /// Appends a list of records: the count, then each record with its length.
    pub fn records<T: Serialize>(&mut self, list: &[T]) -> &mut Self {
        put_varint(&mut self.0, list.len() as u64);
        for record in list {
            let bytes = postcard::to_allocvec(record).expect("a section record serializes");
            put_varint(&mut self.0, bytes.len() as u64);
            self.0.extend_from_slice(&bytes);
        }
        self
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Reads the fields of a section (or of a header) in order; what follows the fields a
/// reader knows is left unread.
#[derive(Debug)]
pub struct FieldReader<'a> {
    rest: &'a [u8],
}

impl<'a> FieldReader<'a> {
    /// A reader of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        FieldReader { rest: bytes }
    }

    /// Reads the next field.
    pub fn field<T: DeserializeOwned>(&mut self) -> Result<T, SectionError> {
        if self.rest.is_empty() {
            return Err(SectionError::Truncated);
        }
        let (value, rest) = postcard::take_from_bytes(self.rest).map_err(field_error)?;
        self.rest = rest;
        Ok(value)
    }

    /// Reads the next field, or its default when the writer's layout ended before it (a
    /// field appended in a later version than the writer's).
    pub fn field_or_default<T: DeserializeOwned + Default>(&mut self) -> Result<T, SectionError> {
        if self.rest.is_empty() {
            return Ok(T::default());
        }
        self.field()
    }

    /// Reads a list of records; of each, the fields `T` knows (a newer writer's record
    /// may carry more, which are skipped).
    pub fn records<T: DeserializeOwned>(&mut self) -> Result<Vec<T>, SectionError> {
        self.records_with(|r| {
            let (value, _newer_fields) = postcard::take_from_bytes(r.rest).map_err(field_error)?;
            Ok(value)
        })
    }

    /// Reads a list of records, each with `read` (for a record that gained fields:
    /// [`FieldReader::field_or_default`] reads those of an older writer's records).
    pub fn records_with<T>(
        &mut self,
        mut read: impl FnMut(&mut FieldReader<'_>) -> Result<T, SectionError>,
    ) -> Result<Vec<T>, SectionError> {
        let count = self.varint()?;
        // Every record takes at least its length byte: a count beyond what is left is
        // a lie, refused before anything is allocated for it.
        if count > self.rest.len() as u64 {
            return Err(SectionError::TooLong);
        }
        let mut out = Vec::new();
        for _ in 0..count {
            let len = self.varint()?;
            if len > self.rest.len() as u64 {
                return Err(SectionError::TooLong);
            }
            let (record, rest) = self.rest.split_at(len as usize);
            self.rest = rest;
            out.push(read(&mut FieldReader::new(record))?);
        }
        Ok(out)
    }

    /// Whether every byte was read (what a newer writer appended is left).
    pub fn is_done(&self) -> bool {
        self.rest.is_empty()
    }

    fn varint(&mut self) -> Result<u64, SectionError> {
        let (value, used) = take_varint(self.rest)?;
        self.rest = &self.rest[used..];
        Ok(value)
    }
}

fn field_error(e: postcard::Error) -> SectionError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => SectionError::Truncated,
        _ => SectionError::BadField,
    }
}

/// Appends `value` as a little-endian base-128 varint (postcard's integer encoding).
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a varint from the front of `bytes`: the value and the bytes it took.
fn take_varint(bytes: &[u8]) -> Result<(u64, usize), SectionError> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if bytes.len() < 10 {
        Err(SectionError::Truncated)
    } else {
        Err(SectionError::BadField)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_as_postcard_writes_them() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, postcard::to_allocvec(&v).unwrap(), "{v}");
            assert_eq!(take_varint(&out).unwrap(), (v, out.len()));
            assert_eq!(
                take_varint(&out[..out.len() - 1]),
                Err(SectionError::Truncated)
            );
        }
    }

    #[test]
    fn a_count_larger_than_the_section_is_refused() {
        let mut bytes = Vec::new();
        put_varint(&mut bytes, 1 << 40);
        assert_eq!(
            FieldReader::new(&bytes).records::<u32>(),
            Err(SectionError::TooLong)
        );
    }

    #[test]
    fn a_record_that_grew_is_read_for_the_fields_known() {
        let mut w = FieldWriter::default();
        w.records(&[(1u32, "new field"), (2, "another")])
            .field(&9u8);
        let bytes = w.into_bytes();
        let mut r = FieldReader::new(&bytes);
        assert_eq!(r.records::<u32>().unwrap(), vec![1, 2]);
        assert_eq!(r.field::<u8>().unwrap(), 9);
        assert!(r.is_done());
        assert_eq!(r.field_or_default::<u64>().unwrap(), 0);
        assert_eq!(r.field::<u64>(), Err(SectionError::Truncated));
    }
}
