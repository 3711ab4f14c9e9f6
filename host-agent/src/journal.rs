//! The host agent's append-only journal: fencing history, node-down decisions and later
//! migration locks and operator commands. An append returns only after fsync, so an agent
//! killed with SIGKILL or a host that loses power keeps every record it acknowledged, and
//! a restarted agent reads them back in order.
//!
//! A torn last write is cut away with a warning; damage with intact records after it is
//! a hard error that leaves the file as it is, because only an operator can tell what the
//! lost record meant. The format is in [`codec`]: JSON payloads, so an operator can read
//! a journal with `strings` or `jq` after skipping each 8-byte frame header.

mod codec;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::marker::PhantomData;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use codec::{Damage, Flaw, Record, MAX_RECORD_BYTES};
use codec::{HeaderCheck, HEADER_LEN};

/// What the journal asks operators to do when it cannot go on by itself.
const MOVE_ASIDE: &str = "move the file aside and restart to start a new journal; \
                          the old one keeps the history";

/// Everything that can go wrong with a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A system call on the journal file or its directory failed.
    #[error("journal {}: cannot {action}: {cause}; check that the state directory exists, \
             belongs to root and has free space", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        cause: std::io::Error,
    },
    /// Another process holds the journal's lock.
    #[error("journal {} is held by another process (another hv-hostd on this host?); \
             stop it first, or give this agent its own state directory", .path.display())]
    HeldByAnother { path: PathBuf },
    /// The file does not start with a journal header.
    #[error("{} is not an hvcluster journal (no HVJRNL header at byte 0); it was left \
             unchanged: check the path, or move the file aside", .path.display())]
    NotAJournal { path: PathBuf },
    /// The file was written in a format version this agent does not read.
    #[error("journal {} has format version {found}, this agent reads version {supported}; \
             run the agent version that wrote it, or {MOVE_ASIDE}", .path.display())]
    UnsupportedVersion {
        path: PathBuf,
        found: u16,
        supported: u16,
    },
    /// A record is damaged where it cannot be a torn last write.
    #[error("journal {}: record {record} at byte {offset} is damaged: {cause}{}; the file \
             was left unchanged: {MOVE_ASIDE}", .path.display(),
             if *.valid_records_follow { ", and intact records follow it" } else { "" })]
    Corrupt {
        path: PathBuf,
        record: u64,
        offset: u64,
        cause: Flaw,
        valid_records_follow: bool,
    },
    /// A record is over [`MAX_RECORD_BYTES`] once encoded.
    #[error("journal {}: a record of {size} bytes is over the limit of {limit} bytes and \
             was not written; journal a summary and keep bulk data elsewhere", .path.display())]
    TooLarge {
        path: PathBuf,
        size: usize,
        limit: usize,
    },
    /// The record could not be encoded as JSON.
    #[error("journal {}: cannot encode the record: {cause}", .path.display())]
    Encode {
        path: PathBuf,
        #[source]
        cause: serde_json::Error,
    },
    /// An earlier write or fsync failed, so what is on disk is no longer known.
    #[error("journal {} refuses records since a write at byte {offset} failed; restart \
             the agent so it reads the journal back from disk", .path.display())]
    Poisoned { path: PathBuf, offset: u64 },
}

/// An open journal of records of type `T`, locked against other processes.
#[derive(Debug)]
pub struct Journal<T> {
    path: PathBuf,
    file: Flock<File>,
    /// Byte offset where the next record goes.
    end: u64,
    next_seq: u64,
    /// Set when a failed write or fsync leaves the file's state unknown.
    poisoned: bool,
    _records: PhantomData<fn(&T)>,
}

/// What [`read_only`] found: the intact records and the damage that stopped reading.
#[derive(Debug)]
pub struct Contents<T> {
    /// Every intact record before any damage, in order.
    pub records: Vec<Record<T>>,
    /// The first damaged record, if any (a torn tail or worse: see [`Damage`]).
    pub damage: Option<Damage>,
}

impl<T: Serialize + DeserializeOwned> Journal<T> {
    /// Opens or creates the journal at `path`, cuts away a torn last write, and returns
    /// the journal with every record in it.
    pub fn open(path: &Path) -> Result<(Self, Vec<Record<T>>), JournalError> {
        let io = |action: &'static str| {
            move |cause: std::io::Error| JournalError::Io {
                path: path.to_path_buf(),
                action,
                cause,
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            // Never truncate on open: the records in it are the point.
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io("open"))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(JournalError::HeldByAnother {
                    path: path.to_path_buf(),
                })
            }
            Err((_, errno)) => return Err(io("lock")(errno.into())),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read"))?;

        match check_header(path, &bytes)? {
            HeaderCheck::Valid => {}
            _ => {
                if !bytes.is_empty() {
                    tracing::warn!(file = %path.display(), bytes = bytes.len(),
                        "journal header was never finished; writing it again");
                }
                file.write_all_at(&codec::header(), 0)
                    .map_err(io("write the header of"))?;
                file.set_len(HEADER_LEN as u64)
                    .map_err(io("write the header of"))?;
                file.sync_all().map_err(io("fsync"))?;
                bytes.clear();
            }
        }
        // Every open, not only at creation: an agent killed between creating the file and
        // syncing the directory leaves a file that the next power loss could still unlink.
        sync_parent_dir(path).map_err(io("fsync the directory of"))?;

        let scan = codec::scan::<T>(&bytes, HEADER_LEN);
        let end = if bytes.is_empty() {
            HEADER_LEN as u64
        } else {
            scan.valid_end
        };
        if let Some(damage) = scan.damage {
            if !damage.is_torn_tail() {
                return Err(corrupt(path, damage));
            }
            tracing::warn!(file = %path.display(), offset = damage.offset,
                record = damage.record, dropped_bytes = bytes.len() as u64 - end,
                cause = %damage.flaw, "cutting a torn last write off the journal");
            file.set_len(end).map_err(io("cut the torn tail of"))?;
            file.sync_all().map_err(io("fsync"))?;
        }
        let next_seq = scan.records.last().map_or(1, |r| r.seq + 1);
        let journal = Journal {
            path: path.to_path_buf(),
            file,
            end,
            next_seq,
            poisoned: false,
            _records: PhantomData,
        };
        Ok((journal, scan.records))
    }

    /// Appends one record and returns its sequence number once it is on disk (fsync).
    pub fn append(&mut self, body: &T) -> Result<u64, JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned {
                path: self.path.clone(),
                offset: self.end,
            });
        }
        let seq = self.next_seq;
        let (frame, size) =
            codec::encode_record(seq, unix_ms(), body).map_err(|cause| JournalError::Encode {
                path: self.path.clone(),
                cause,
            })?;
        if size > MAX_RECORD_BYTES {
            return Err(JournalError::TooLarge {
                path: self.path.clone(),
                size,
                limit: MAX_RECORD_BYTES,
            });
        }
        let io = |action: &'static str, cause| JournalError::Io {
            path: self.path.clone(),
            action,
            cause,
        };
        if let Err(cause) = self.file.write_all_at(&frame, self.end) {
            // Take the partial frame back: the next append would otherwise bury it in the
            // middle of the file, where reopening refuses to drop it.
            if self.file.set_len(self.end).is_err() {
                self.poisoned = true;
            }
            return Err(io("append a record to", cause));
        }
        if let Err(cause) = self.file.sync_data() {
            // After a failed fsync Linux may drop the dirty pages and report a retry as a
            // success, so nothing written later could be trusted.
            self.poisoned = true;
            return Err(io("fsync", cause));
        }
        self.end += frame.len() as u64;
        self.next_seq += 1;
        Ok(seq)
    }

    /// The sequence number the next append will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Where the journal lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a journal without locking or changing it, for tools such as `hvctl`; a running
/// agent's half-written last record shows up as damage.
pub fn read_only<T: DeserializeOwned>(path: &Path) -> Result<Contents<T>, JournalError> {
    let bytes = std::fs::read(path).map_err(|cause| JournalError::Io {
        path: path.to_path_buf(),
        action: "read",
        cause,
    })?;
    match check_header(path, &bytes)? {
        HeaderCheck::Valid => {
            let scan = codec::scan(&bytes, HEADER_LEN);
            Ok(Contents {
                records: scan.records,
                damage: scan.damage,
            })
        }
        _ => Ok(Contents {
            records: Vec::new(),
            damage: (!bytes.is_empty()).then_some(Damage {
                record: 1,
                offset: 0,
                flaw: Flaw::Incomplete {
                    needed: HEADER_LEN as u64,
                    available: bytes.len() as u64,
                },
                valid_records_follow: false,
            }),
        }),
    }
}

/// Checks the file header, turning a foreign file or version into an error.
fn check_header(path: &Path, bytes: &[u8]) -> Result<HeaderCheck, JournalError> {
    match codec::check_header(bytes) {
        HeaderCheck::NotAJournal => Err(JournalError::NotAJournal {
            path: path.to_path_buf(),
        }),
        HeaderCheck::Version(found) => Err(JournalError::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: codec::VERSION,
        }),
        ok => Ok(ok),
    }
}

fn corrupt(path: &Path, damage: Damage) -> JournalError {
    JournalError::Corrupt {
        path: path.to_path_buf(),
        record: damage.record,
        offset: damage.offset,
        cause: damage.flaw,
        valid_records_follow: damage.valid_records_follow,
    }
}

fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
