//! File-level journal tests: reopen, torn tails, damage in the middle, locking.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::codec::{self, HEADER_LEN};
use super::{read_only, Flaw, Journal, JournalError, Record, MAX_RECORD_BYTES};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Entry {
    Fenced { host: String, level: u8 },
    HostDown { host: String, reason: String },
}

fn entry(i: u64) -> Entry {
    match i % 2 {
        0 => Entry::Fenced {
            host: format!("hv{i}"),
            level: (i % 3) as u8,
        },
        _ => Entry::HostDown {
            host: format!("hv{i}"),
            reason: "no heartbeat on any interconnect".repeat((i % 4) as usize),
        },
    }
}

fn bodies(records: &[Record<Entry>]) -> Vec<Entry> {
    records.iter().map(|r| r.body.clone()).collect()
}

/// A journal of `n` records in a fresh directory, and the offset where each record starts.
fn journal_with(n: u64) -> (tempfile::TempDir, PathBuf, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (mut journal, records) = Journal::<Entry>::open(&path).unwrap();
    assert!(records.is_empty());
    let mut starts = Vec::new();
    for i in 1..=n {
        starts.push(std::fs::metadata(&path).unwrap().len());
        assert_eq!(journal.append(&entry(i)).unwrap(), i);
    }
    (dir, path, starts)
}

fn open(path: &Path) -> Result<(Journal<Entry>, Vec<Record<Entry>>), JournalError> {
    Journal::open(path)
}

#[test]
fn records_come_back_in_order_across_reopen_and_sequence_numbers_continue() {
    let (_dir, path, _) = journal_with(200);
    let (mut journal, records) = open(&path).unwrap();
    assert_eq!(records.len(), 200);
    assert_eq!(bodies(&records), (1..=200).map(entry).collect::<Vec<_>>());
    assert!(records.iter().zip(1..).all(|(r, seq)| r.seq == seq));
    assert!(records.iter().all(|r| r.unix_ms > 1_600_000_000_000));
    assert_eq!(journal.next_seq(), 201);
    for i in 201..=250 {
        assert_eq!(journal.append(&entry(i)).unwrap(), i);
    }
    drop(journal);
    let (journal, records) = open(&path).unwrap();
    assert_eq!(bodies(&records), (1..=250).map(entry).collect::<Vec<_>>());
    assert_eq!(journal.next_seq(), 251);
}

#[test]
fn a_new_file_starts_with_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (journal, records) = open(&path).unwrap();
    assert!(records.is_empty());
    assert_eq!(journal.next_seq(), 1);
    assert_eq!(std::fs::read(&path).unwrap(), codec::header());
}

#[test]
fn a_record_cut_at_any_byte_is_dropped_and_appending_goes_on() {
    let (dir, path, starts) = journal_with(5);
    let full = std::fs::read(&path).unwrap();
    let last = starts[4] as usize;
    for cut in last..full.len() {
        let copy = dir.path().join(format!("cut-{cut}"));
        std::fs::write(&copy, &full[..cut]).unwrap();
        let (mut journal, records) = open(&copy).unwrap();
        assert_eq!(bodies(&records), (1..=4).map(entry).collect::<Vec<_>>());
        assert_eq!(std::fs::read(&copy).unwrap(), full[..last], "cut at {cut}");
        assert_eq!(journal.append(&entry(50)).unwrap(), 5);
        drop(journal);
        let (_, records) = open(&copy).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(records[4].body, entry(50));
    }
}

#[test]
fn a_flipped_byte_anywhere_in_the_last_record_drops_only_that_record() {
    let (dir, path, starts) = journal_with(5);
    let full = std::fs::read(&path).unwrap();
    let last = starts[4] as usize;
    for at in last..full.len() {
        let mut bytes = full.clone();
        bytes[at] ^= 0x5a;
        let copy = dir.path().join(format!("flip-{at}"));
        std::fs::write(&copy, &bytes).unwrap();
        let (_, records) = open(&copy).unwrap();
        assert_eq!(records.len(), 4, "flip at {at}");
        assert_eq!(std::fs::read(&copy).unwrap(), full[..last]);
    }
}

#[test]
fn a_flipped_byte_in_a_middle_record_is_a_hard_error_and_the_file_is_untouched() {
    let (dir, path, starts) = journal_with(5);
    let full = std::fs::read(&path).unwrap();
    let (third, fourth) = (starts[2] as usize, starts[3] as usize);
    for at in third..fourth {
        let mut bytes = full.clone();
        bytes[at] ^= 0x5a;
        let copy = dir.path().join(format!("flip-{at}"));
        std::fs::write(&copy, &bytes).unwrap();
        let err = open(&copy).unwrap_err();
        match &err {
            JournalError::Corrupt {
                path,
                record,
                offset,
                valid_records_follow,
                ..
            } => {
                assert_eq!(path, &copy);
                assert_eq!((*record, *offset), (3, third as u64), "flip at {at}");
                assert!(valid_records_follow);
            }
            other => panic!("flip at {at}: expected Corrupt, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("record 3"), "{message}");
        assert!(message.contains(&format!("byte {third}")), "{message}");
        assert!(message.contains("move the file aside"), "{message}");
        assert_eq!(std::fs::read(&copy).unwrap(), bytes, "flip at {at}");
    }
}

#[test]
fn a_whole_last_record_of_another_type_is_never_dropped() {
    let (_dir, path, _) = journal_with(3);
    let before = std::fs::read(&path).unwrap();
    let err = Journal::<u64>::open(&path).unwrap_err();
    assert!(matches!(
        err,
        JournalError::Corrupt {
            record: 1,
            cause: Flaw::Undecodable(_),
            ..
        }
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn an_oversize_record_is_refused_and_costs_no_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let (mut journal, _) = Journal::<String>::open(&path).unwrap();
    let err = journal.append(&"x".repeat(MAX_RECORD_BYTES)).unwrap_err();
    assert!(matches!(err, JournalError::TooLarge { limit, .. } if limit == MAX_RECORD_BYTES));
    assert_eq!(
        journal.append(&"y".repeat(MAX_RECORD_BYTES - 100)).unwrap(),
        1
    );
    assert_eq!(journal.append(&"small".to_string()).unwrap(), 2);
    drop(journal);
    let (_, records) = Journal::<String>::open(&path).unwrap();
    assert_eq!(records.len(), 2);
}

#[test]
fn a_second_open_while_the_first_is_alive_fails_as_held_by_another() {
    let (_dir, path, _) = journal_with(1);
    let (first, _) = open(&path).unwrap();
    let err = open(&path).unwrap_err();
    assert!(matches!(&err, JournalError::HeldByAnother { path: p } if p == &path));
    assert!(err.to_string().contains("held by another process"));
    // Readers such as hvctl do not need the lock.
    assert_eq!(read_only::<Entry>(&path).unwrap().records.len(), 1);
    drop(first);
    assert!(open(&path).is_ok());
}

#[test]
fn read_only_reports_a_torn_tail_without_cutting_it() {
    let (_dir, path, starts) = journal_with(3);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&path, &bytes).unwrap();
    let contents = read_only::<Entry>(&path).unwrap();
    assert_eq!(contents.records.len(), 2);
    let damage = contents.damage.unwrap();
    assert_eq!((damage.record, damage.offset), (3, starts[2]));
    assert!(damage.is_torn_tail());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn foreign_files_and_versions_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    std::fs::write(&path, b"[cluster]\nname = \"x\"\n").unwrap();
    assert!(matches!(open(&path), Err(JournalError::NotAJournal { .. })));
    std::fs::write(&path, b"HVJRNL\x09\x00").unwrap();
    assert!(matches!(
        open(&path),
        Err(JournalError::UnsupportedVersion { found: 9, .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"HVJRNL\x09\x00");
}

#[test]
fn an_unfinished_header_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    std::fs::write(&path, &codec::header()[..3]).unwrap();
    let (mut journal, records) = open(&path).unwrap();
    assert!(records.is_empty());
    assert_eq!(journal.append(&entry(1)).unwrap(), 1);
    assert_eq!(std::fs::read(&path).unwrap()[..HEADER_LEN], codec::header());
}

/// Bytes a crash or a bad disk might leave after the last good record.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..600),
        proptest::collection::vec(Just(0u8), 1..600),
        // Frame-like bytes: small lengths and JSON punctuation.
        proptest::collection::vec(
            proptest::sample::select(b"\x00\x01\x10{}\":,sequnix_msbody1".to_vec()),
            1..300
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn garbage_after_valid_records_never_panics_nor_loses_one(
        bodies in proptest::collection::vec(".{0,40}", 0..8),
        tail in garbage(),
        cut_last in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut bytes = codec::header().to_vec();
        for (i, body) in bodies.iter().enumerate() {
            bytes.extend(codec::encode_record(i as u64 + 1, 1, body).unwrap().0);
        }
        // Sometimes the garbage starts inside a record that was being written.
        if cut_last {
            let frame = codec::encode_record(bodies.len() as u64 + 1, 1, &"torn").unwrap().0;
            bytes.extend(&frame[..frame.len() / 2]);
        }
        bytes.extend(&tail);
        std::fs::write(&path, &bytes).unwrap();

        let seen = read_only::<String>(&path).unwrap();
        prop_assert_eq!(seen.records.iter().map(|r| &r.body).collect::<Vec<_>>(),
            bodies.iter().collect::<Vec<_>>());
        prop_assert!(seen.damage.is_some());

        let (mut journal, records) = Journal::<String>::open(&path).unwrap();
        prop_assert_eq!(records.into_iter().map(|r| r.body).collect::<Vec<_>>(), bodies.clone());
        let seq = journal.append(&"after".to_string()).unwrap();
        prop_assert_eq!(seq, bodies.len() as u64 + 1);
        drop(journal);
        let (_, records) = Journal::<String>::open(&path).unwrap();
        prop_assert_eq!(records.len(), bodies.len() + 1);
    }
}
