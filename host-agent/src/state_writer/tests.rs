use std::sync::mpsc;
use std::time::Duration;

use super::*;

type Results = mpsc::Receiver<(PathBuf, Result<(), String>)>;

/// A writer whose results come back on a channel and whose writes go through `write`.
fn writer(write: WriteFn) -> (StateWriter, Results) {
    let (tx, rx) = mpsc::channel();
    let w = StateWriter::spawn_with(
        "test-state",
        Box::new(move |file, result| {
            let _ = tx.send((file.to_path_buf(), result));
        }),
        write,
    );
    (w, rx)
}

#[test]
fn save_returns_while_the_disk_blocks_and_the_latest_content_wins() {
    // A disk that does not answer: each write waits for a go, and says what it wrote.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (wrote_tx, wrote_rx) = mpsc::channel::<Vec<u8>>();
    let (mut w, results) = writer(Box::new(move |_, bytes| {
        go_rx.recv().map_err(|e| e.to_string())?;
        let _ = wrote_tx.send(bytes.to_vec());
        Ok(())
    }));
    let file = PathBuf::from("/state/applications.json");
    // The caller (the driver loop) is never held: each save returns while the first
    // write is stuck on the blocked disk.
    let (done_tx, done_rx) = mpsc::channel();
    let caller = {
        let file = file.clone();
        std::thread::spawn(move || {
            w.save(&file, b"1".to_vec());
            std::thread::sleep(Duration::from_millis(200));
            w.save(&file, b"2".to_vec());
            w.save(&file, b"3".to_vec());
            done_tx.send(()).unwrap();
            w
        })
    };
    let held = done_rx.recv_timeout(Duration::from_secs(5));
    // Let the disk answer in any case, so that a failure does not hang the test.
    for _ in 0..3 {
        let _ = go_tx.send(());
    }
    held.expect("save() held the caller while the disk did not answer");
    let w = caller.join().unwrap();
    drop(w); // writes what is pending, then ends
    let wrote: Vec<Vec<u8>> = wrote_rx.try_iter().collect();
    assert_eq!(
        wrote,
        vec![b"1".to_vec(), b"3".to_vec()],
        "2 and 3 coalesce"
    );
    let results: Vec<_> = results.try_iter().collect();
    assert_eq!(results, vec![(file.clone(), Ok(())), (file, Ok(()))]);
}

#[test]
fn a_failed_write_is_reported_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // The state directory is a file: nothing can be created under it.
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, b"").unwrap();
    let file = blocker.join("applications.json");
    let (mut w, results) = writer(Box::new(write_file));
    w.save(&file, b"{}".to_vec());
    let (f, r) = results.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(f, file);
    let why = r.unwrap_err();
    assert!(why.contains("cannot create"), "{why}");
    assert!(why.contains("state"), "{why}");
}

#[test]
fn a_write_replaces_the_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("applications.json");
    std::fs::write(&file, b"old").unwrap();
    let (mut w, results) = writer(Box::new(write_file));
    w.save(&file, b"new".to_vec());
    let (_, r) = results.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(r, Ok(()));
    assert_eq!(std::fs::read(&file).unwrap(), b"new");
    assert!(!file.with_extension("json.tmp").exists());
}
