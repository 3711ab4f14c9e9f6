//! The fencing journal's writer: a thread of its own appends and fsyncs, so a slow or
//! failing disk never holds up the driver loop (heartbeats, detection, the admin
//! socket). The driver queues records in order and hears how each write went as an
//! [`Input::Journaled`]; a DOWN is acted on only after its write succeeded.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;

use hvcluster_common::fencing::{DownRecord, FenceEvent};
use tokio::sync::mpsc;

use crate::agent::Input;
use crate::journal::Journal;

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
                ordinary_priority();
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

/// Drops the real-time priority the thread inherited: waiting on a disk is no reason
/// to hold a CPU ahead of everything else on the host.
fn ordinary_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall wrapper on the calling thread with a valid parameter.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
    }
}

#[cfg(test)]
mod tests;
