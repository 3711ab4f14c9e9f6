//! The warning a torn journal tail leaves for the operator names the file and the
//! offset. In a test binary of its own: tracing caches per call site whether anyone
//! listens, and tests running alongside without a subscriber could make it skip ours.

use hvcluster_host_agent::journal::Journal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    host: String,
}

#[test]
fn cutting_a_tail_logs_the_file_and_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let mut starts = Vec::new();
    {
        let (mut journal, _) = Journal::<Entry>::open(&path).unwrap();
        for i in 1..=2 {
            starts.push(std::fs::metadata(&path).unwrap().len());
            journal
                .append(&Entry {
                    host: format!("hv{i}"),
                })
                .unwrap();
        }
    }
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&path, &bytes).unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || Writer(sink.clone()))
        .finish();
    let records =
        tracing::subscriber::with_default(subscriber, || Journal::<Entry>::open(&path).unwrap().1);
    assert_eq!(records.len(), 1, "the whole first record stays");
    let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains(&format!("offset={}", starts[1])), "{text}");
}

struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
