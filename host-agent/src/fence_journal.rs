//! The fencing journal's writer: a thread of its own appends and fsyncs, so a slow or
//! failing disk never holds up the driver loop (heartbeats, detection, the admin
//! socket). The driver queues records in order and hears how each write went as an
//! [`Input::Journaled`]; a DOWN is acted on only after its write succeeded.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;

use hvcluster_common::fencing::{DownRecord, FenceEvent};
use tokio::sync::mpsc;

use crate::agent::Input;
use crate::journal::{Journal, JournalError};

/// Where fencing records go; the real one is [`FileStore`], tests use fakes that block
/// or fail.
pub trait Store: Send + 'static {
    /// Appends `event` durably; returns its sequence number, or what went wrong.
    fn append(&mut self, event: &FenceEvent) -> Result<u64, String>;
}

/// The journal file. After a failed write the file is closed and opened again for the
/// next one, so a disk that recovers (space freed, remounted writable) is used again
/// without a restart, and what is on disk is read back rather than assumed.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    journal: Option<Journal<FenceEvent>>,
}

impl FileStore {
    /// A store around a journal already opened at start-up.
    pub fn new(journal: Journal<FenceEvent>) -> Self {
        FileStore {
            path: journal.path().to_path_buf(),
            journal: Some(journal),
        }
    }
}

impl Store for FileStore {
    fn append(&mut self, event: &FenceEvent) -> Result<u64, String> {
        let journal = match &mut self.journal {
            Some(j) => j,
            None => {
                let (j, _) = Journal::open(&self.path).map_err(|e| e.to_string())?;
                self.journal.insert(j)
            }
        };
        journal.append(event).map_err(|e| {
            // Closing releases the lock; the next write opens the file afresh.
            self.journal = None;
            e.to_string()
        })
    }
}

/// The journal opened at start-up, its records, and what was wrong with it.
pub type Opened = (
    Journal<FenceEvent>,
    Vec<crate::journal::Record<FenceEvent>>,
    Option<String>,
);

/// Opens the journal at `path` at start-up. A journal damaged where it cannot be a torn
/// last write (or that is not a journal at all) is moved aside (`NAME.bad-<unix ms>`) and
/// a new one started, holding the DOWN decisions that still stand in the intact records
/// before the damage; what was lost after it is not guessed at (a host still off is
/// fenced again, a host back is heard). Returns the journal, its records and what was
/// done, for an event. Any other error (another agent holds it, a newer format, the
/// disk) is returned as it is.
pub fn open_or_set_aside(path: &std::path::Path) -> Result<Opened, JournalError> {
    let why = match Journal::open(path) {
        Ok((journal, records)) => return Ok((journal, records, None)),
        Err(e @ (JournalError::Corrupt { .. } | JournalError::NotAJournal { .. })) => e,
        Err(e) => return Err(e),
    };
    let intact = crate::journal::read_only::<FenceEvent>(path)
        .map(|c| c.records)
        .unwrap_or_default();
    let standing = crate::fence::standing_downs(&intact);
    let aside = crate::apps::set_aside::set_aside(path).map_err(|_| why_again(path, &why))?;
    let (mut journal, _) = Journal::open(path)?;
    for d in &standing {
        journal.append(&FenceEvent::Down(d.clone()))?;
    }
    let (journal, records) = {
        drop(journal);
        Journal::open(path)?
    };
    let kept = if standing.is_empty() {
        "no DOWN decision stood in the intact records before the damage".to_string()
    } else {
        format!(
            "{} DOWN decision(s) of the intact records before the damage carried over",
            standing.len()
        )
    };
    let damage = match &why {
        JournalError::Corrupt {
            record,
            offset,
            cause,
            ..
        } => format!("record {record} at byte {offset} is damaged: {cause}"),
        _ => "it does not start with a journal header".to_string(),
    };
    let problem = format!(
        "the fencing journal {} cannot be read ({damage}); it was moved aside as {} and a new \
         journal started; {kept}. Hosts whose later records were lost are judged afresh: a \
         host still off is fenced again, one that answers is Up",
        path.display(),
        aside.display()
    );
    Ok((journal, records, Some(problem)))
}

/// The error `why` again, for when the damaged file cannot even be moved aside.
fn why_again(path: &std::path::Path, why: &JournalError) -> JournalError {
    JournalError::Io {
        path: path.to_path_buf(),
        action: "move aside the damaged",
        cause: std::io::Error::other(why.to_string()),
    }
}

/// One record to write.
#[derive(Debug)]
struct Write {
    event: FenceEvent,
    /// Set when the fencing core waits for this write to make the host DOWN.
    down: Option<DownRecord>,
}

/// The sending end of the writer thread.
#[derive(Debug)]
pub struct Writer {
    tx: std_mpsc::Sender<Write>,
}

impl Writer {
    /// Starts the writer thread; each result goes to `results` as [`Input::Journaled`].
    pub fn spawn(mut store: impl Store, results: mpsc::Sender<Input>) -> std::io::Result<Writer> {
        let (tx, rx) = std_mpsc::channel::<Write>();
        std::thread::Builder::new()
            .name("hv-journal".into())
            .spawn(move || {
                crate::process::ordinary_priority();
                while let Ok(w) = rx.recv() {
                    let result = store.append(&w.event).map(|_| ());
                    let input = Input::Journaled {
                        down: w.down,
                        result,
                    };
                    if results.blocking_send(input).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Writer { tx })
    }

    /// Queues `event`; `down` is the record the fencing core waits for, if any.
    pub fn write(&self, event: FenceEvent, down: Option<DownRecord>) {
        // The thread ends only with the agent.
        let _ = self.tx.send(Write { event, down });
    }
}

#[cfg(test)]
mod tests;
