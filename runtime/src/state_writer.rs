//! The writer of the host agent's state files (applications, migration lock,
//! maintenance): a thread of its own writes each file atomically and syncs it, so a slow
//! or failing disk never holds up the driver loop (heartbeats, detection, the admin
//! socket). Writes to the same file coalesce: while one is pending, a newer content (or
//! a removal) replaces it and only the latest is written. Each save is numbered; a
//! result carries the number of the content it wrote, so that a caller waiting for its
//! own save knows it is on disk once a result of that number or a later one says so.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;

/// Told how each write went: the file, the number of the save written, and `Ok` or
/// what went wrong.
pub type OnResult = Box<dyn FnMut(&Path, u64, Result<(), String>) + Send>;

/// Writes one file (`None`: removes it); the real one is [`write_file`], tests use
/// fakes that block.
pub type WriteFn = Box<dyn FnMut(&Path, Option<&[u8]>) -> Result<(), String> + Send>;

/// [`write_atomic`] (or a synced removal) with its error as one line.
pub fn write_file(file: &Path, bytes: Option<&[u8]>) -> Result<(), String> {
    match bytes {
        Some(bytes) => write_atomic(file, bytes).map_err(|e| format!("{e:#}")),
        None => crate::apps::set_aside::remove(file)
            .map_err(|e| format!("cannot remove {}: {e}", file.display())),
    }
}

/// Contents waiting to be written (`None`: a removal), by file, with their numbers.
#[derive(Default)]
struct Pending {
    files: BTreeMap<PathBuf, (u64, Option<Vec<u8>>)>,
    closed: bool,
}

type Shared = Arc<(Mutex<Pending>, Condvar)>;

/// The sending end of the writer thread; dropping it writes what is pending and ends
/// the thread.
pub struct StateWriter {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
    /// Used when no thread could be started: the writes are then made by the caller.
    inline: Option<(OnResult, WriteFn)>,
    /// Number of the last save.
    seq: u64,
}

impl std::fmt::Debug for StateWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateWriter")
            .field("threaded", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl StateWriter {
    /// Starts the writer thread `name`; `on_result` hears how each write went, on that
    /// thread. If no thread can be started, writes are made by [`StateWriter::save`].
    pub fn spawn(name: &str, on_result: OnResult) -> Self {
        Self::spawn_with(name, on_result, Box::new(write_file))
    }

    /// [`StateWriter::spawn`] with the files written by `write`.
    pub fn spawn_with(name: &str, on_result: OnResult, write: WriteFn) -> Self {
        let shared: Shared = Arc::default();
        let slot = Arc::new(Mutex::new(Some((on_result, write))));
        let (theirs, their_slot) = (shared.clone(), slot.clone());
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                crate::process::ordinary_priority();
                let on_result = their_slot.lock().ok().and_then(|mut s| s.take());
                if let Some((on_result, write)) = on_result {
                    run(&theirs, on_result, write);
                }
            });
        match spawned {
            Ok(thread) => StateWriter {
                shared,
                thread: Some(thread),
                inline: None,
                seq: 0,
            },
            Err(e) => {
                tracing::error!(cause = %e, "cannot start the state writer thread; state files are written on the driver loop");
                let inline = slot.lock().ok().and_then(|mut s| s.take());
                StateWriter {
                    shared,
                    thread: None,
                    inline,
                    seq: 0,
                }
            }
        }
    }

    /// Queues `bytes` to be written to `file`, replacing any content still waiting for
    /// it. Returns at once (unless no thread could be started) with the save's number.
    pub fn save(&mut self, file: &Path, bytes: Vec<u8>) -> u64 {
        self.queue(file, Some(bytes))
    }

    /// Queues the removal of `file`, like [`StateWriter::save`].
    pub fn remove(&mut self, file: &Path) -> u64 {
        self.queue(file, None)
    }

    fn queue(&mut self, file: &Path, bytes: Option<Vec<u8>>) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        if let Some((on_result, write)) = &mut self.inline {
            on_result(file, seq, write(file, bytes.as_deref()));
            return seq;
        }
        let (lock, ready) = &*self.shared;
        if let Ok(mut p) = lock.lock() {
            p.files.insert(file.to_path_buf(), (seq, bytes));
            ready.notify_one();
        }
        seq
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        let (lock, ready) = &*self.shared;
        if let Ok(mut p) = lock.lock() {
            p.closed = true;
            ready.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: writes the latest content of each file until closed and drained.
fn run(shared: &Shared, mut on_result: OnResult, mut write: WriteFn) {
    let (lock, ready) = &**shared;
    loop {
        let next = {
            let Ok(mut p) = lock.lock() else { return };
            while p.files.is_empty() && !p.closed {
                p = match ready.wait(p) {
                    Ok(p) => p,
                    Err(_) => return,
                };
            }
            match p.files.pop_first() {
                Some(next) => next,
                None => return,
            }
        };
        let (file, (seq, bytes)) = next;
        on_result(&file, seq, write(&file, bytes.as_deref()));
    }
}

/// Writes `bytes` to `file` so that a crash leaves the old file or the new one, never a
/// mix: a temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = file.with_extension("json.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot replace {}", file.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests;
