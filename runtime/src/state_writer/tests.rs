use std::sync::mpsc;
use std::time::Duration;

use super::*;

type Results = mpsc::Receiver<(PathBuf, u64, Result<(), String>)>;

/// A writer whose results come back on a channel and whose writes go through `write`.
fn writer(write: WriteFn) -> (StateWriter, Results) {
    let (tx, rx) = mpsc::channel();
    let w = StateWriter::spawn_with(
        "test-state",
        Box::new(move |file, seq, result| {
            let _ = tx.send((file.to_path_buf(), seq, result));
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
        let _ = wrote_tx.send(bytes.unwrap_or_default().to_vec());
        Ok(())
    }));
    let file = PathBuf::from("/state/applications.json");
    // The caller (the driver loop) is never held: each save returns while the first
    // write is stuck on the blocked disk.
    let (done_tx, done_rx) = mpsc::channel();
    let caller = {
        let file = file.clone();
        std::thread::spawn(move || {
            assert_eq!(w.save(&file, b"1".to_vec()), 1);
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(w.save(&file, b"2".to_vec()), 2);
            assert_eq!(w.save(&file, b"3".to_vec()), 3);
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
    // Each result names the save it wrote: 2 is covered by 3's.
    assert_eq!(results, vec![(file.clone(), 1, Ok(())), (file, 3, Ok(()))]);
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
    let (f, _, r) = results.recv_timeout(Duration::from_secs(20)).unwrap();
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
    let (_, _, r) = results.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(r, Ok(()));
    assert_eq!(std::fs::read(&file).unwrap(), b"new");
    assert!(!file.with_extension("json.tmp").exists());
}

#[test]
fn a_removal_replaces_a_pending_write_and_removes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("migration.json");
    let (mut w, results) = writer(Box::new(write_file));
    assert_eq!(w.save(&file, b"lock".to_vec()), 1);
    let (_, seq, r) = results.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!((seq, r), (1, Ok(())));
    assert!(file.exists());
    assert_eq!(w.remove(&file), 2);
    let (_, seq, r) = results.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!((seq, r), (2, Ok(())));
    assert!(!file.exists());
    // Removing what is not there is no error.
    assert_eq!(w.remove(&file), 3);
    let (_, seq, r) = results.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!((seq, r), (3, Ok(())));
}
