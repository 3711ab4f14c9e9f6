//! The host agent's own state files (the migration lock, the maintenance state), written
//! off the driver loop by a [`StateWriter`] thread. A change that must be on disk before
//! it takes effect (a migration begins, a host enters or leaves maintenance) waits for
//! its save's result, which comes back as [`Input::StateSaved`]; a disk that does not
//! answer within [`SAVE_LIMIT`](hvcluster_common::host::maintenance::SAVE_LIMIT) calls
//! the change off, with heartbeats, detection and the admin socket going on meanwhile.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::mpsc;

use super::{Agent, Input};
use crate::state_writer::{StateWriter, WriteFn};

/// One write's result.
#[derive(Debug)]
pub(super) struct Saved {
    pub(super) file: PathBuf,
    /// The number of the save written (covers every earlier save of the file).
    pub(super) seq: u64,
    pub(super) result: Result<(), String>,
}

/// The writer and the results it has not handed over yet.
#[derive(Debug)]
pub(super) struct Saves {
    writer: StateWriter,
    done: Arc<Mutex<Vec<Saved>>>,
}

impl Saves {
    /// Starts the writer thread; each result wakes the loop with [`Input::StateSaved`].
    pub(super) fn spawn(tx: mpsc::Sender<Input>) -> Self {
        Self::spawn_with(tx, Box::new(crate::state_writer::write_file))
    }

    /// [`Saves::spawn`] with the files written by `write` (tests: a disk that blocks).
    pub(super) fn spawn_with(tx: mpsc::Sender<Input>, write: WriteFn) -> Self {
        let done: Arc<Mutex<Vec<Saved>>> = Arc::default();
        let theirs = done.clone();
        let writer = StateWriter::spawn_with(
            "hv-control",
            Box::new(move |file, seq, result| {
                if let Ok(mut d) = theirs.lock() {
                    d.push(Saved {
                        file: file.to_path_buf(),
                        seq,
                        result,
                    });
                }
                // Never blocks the writer: a full queue is drained at the next tick.
                let _ = tx.try_send(Input::StateSaved);
            }),
            write,
        );
        Saves { writer, done }
    }

    /// Queues `value` as JSON for `file`; the save's number, or why it cannot be encoded.
    pub(super) fn save_json(
        &mut self,
        file: &Path,
        value: &impl serde::Serialize,
    ) -> Result<u64, String> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| format!("cannot encode the content of {}: {e}", file.display()))?;
        Ok(self.writer.save(file, bytes))
    }

    /// Queues the removal of `file`.
    pub(super) fn remove(&mut self, file: &Path) -> u64 {
        self.writer.remove(file)
    }

    /// The results that came since the last call.
    fn take(&self) -> Vec<Saved> {
        self.done
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }
}

impl Agent {
    /// Hands the writes' results to what waits for them; a failed write is counted
    /// (`state_not_saved`) and reported at most once every 10 s. Also called every tick,
    /// so that a result whose wake-up was lost is not left behind.
    pub(super) fn on_saved(&mut self) {
        for saved in self.saves.take() {
            if let Err(e) = &saved.result {
                let file = saved.file.display().to_string();
                let me = self.member.own_name.clone();
                tracing::error!(file = %file, cause = %e, "cannot save a state file");
                self.member.record_limited(
                    "state_not_saved",
                    Some(&me),
                    "state_not_saved",
                    |n| match n {
                        1 => format!("cannot save {file}: {e}"),
                        n => format!(
                            "cannot save {file}: {e} ({n} failed writes since the last report)"
                        ),
                    },
                    json!({ "file": file, "why": e }),
                );
            }
            if saved.file == self.migrations.journal {
                self.migration_saved(saved.seq, saved.result);
            } else if saved.file == self.maintenance.file {
                self.maintenance_saved(saved.seq, saved.result);
            }
        }
    }

    /// Calls off the changes whose save did not complete within the limit
    /// ([`SAVE_LIMIT`](hvcluster_common::host::maintenance::SAVE_LIMIT)).
    pub(super) fn saves_tick(&mut self) {
        self.on_saved();
        self.migration_save_overdue();
        self.maintenance_save_overdue();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use super::*;

    /// A disk whose writes each wait for a go.
    fn blocked_disk() -> (WriteFn, std_mpsc::Sender<Result<(), String>>) {
        let (go_tx, go_rx) = std_mpsc::channel::<Result<(), String>>();
        let write: WriteFn = Box::new(move |_, _| go_rx.recv().map_err(|e| e.to_string())?);
        (write, go_tx)
    }

    fn wait_for(saves: &Saves, n: usize) -> Vec<Saved> {
        let mut got = Vec::new();
        for _ in 0..200 {
            got.extend(saves.take());
            if got.len() >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        got
    }

    #[test]
    fn a_save_returns_at_once_and_its_result_comes_back_numbered() {
        let (tx, mut rx) = mpsc::channel(4);
        let (write, go) = blocked_disk();
        let mut saves = Saves::spawn_with(tx, write);
        let file = PathBuf::from("/state/maintenance.json");
        let seq = saves.save_json(&file, &json!({ "on": true })).unwrap();
        assert!(
            saves.take().is_empty(),
            "nothing is written while the disk blocks"
        );
        go.send(Err("No space left on device".into())).unwrap();
        let got = wait_for(&saves, 1);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((&got[0].file, got[0].seq), (&file, seq));
        assert_eq!(got[0].result, Err("No space left on device".into()));
        assert!(
            matches!(rx.try_recv(), Ok(Input::StateSaved)),
            "the loop is woken"
        );
    }

    #[test]
    fn a_full_loop_queue_never_holds_the_writer() {
        // The loop does not read its queue: the writer goes on, and the results wait
        // for the next tick.
        let (tx, _rx) = mpsc::channel(1);
        let (write, go) = blocked_disk();
        let mut saves = Saves::spawn_with(tx, write);
        let (a, b) = (PathBuf::from("/s/a.json"), PathBuf::from("/s/b.json"));
        let mut seqs = Vec::new();
        for file in [&a, &b, &a, &b] {
            seqs.push(saves.save_json(file, &json!(1)).unwrap());
            go.send(Ok(())).unwrap();
            // Each write completes before the next save: none coalesces.
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let got = wait_for(&saves, 4);
        let mut numbers: Vec<u64> = got.iter().map(|s| s.seq).collect();
        numbers.sort();
        assert_eq!(numbers, seqs);
        assert!(got.iter().all(|s| s.result.is_ok()));
        let removal = saves.remove(&a);
        go.send(Ok(())).unwrap();
        let got = wait_for(&saves, 1);
        assert_eq!(got.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![removal]);
    }
}
