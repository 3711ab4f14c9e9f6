//! The replay window every receiver keeps per sender: whatever `(incarnation, sequence)`
//! pairs arrive, in whatever order, no pair is accepted twice, no older incarnation is
//! accepted after a newer one, and nothing panics.

#![no_main]

use std::collections::HashSet;

use hvcluster_common::wire::{Accepted, ReplayWindow};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut window = ReplayWindow::default();
    let mut accepted = HashSet::new();
    let mut newest: Option<u64> = None;
    for pair in data.chunks_exact(4) {
        // Small incarnations and sequences that sometimes jump far, so both the window
        // and its edges are reached.
        let incarnation = u64::from(pair[0] % 4);
        let sequence = match pair[1] {
            0xff => u64::MAX - u64::from(pair[2]),
            0xfe => u64::from(u32::from_be_bytes([pair[1], pair[2], pair[3], 0])),
            _ => u64::from(u16::from_be_bytes([pair[2], pair[3]])) % 600,
        };
        if let Ok(verdict) = window.accept(incarnation, sequence) {
            assert!(
                accepted.insert((incarnation, sequence)),
                "({incarnation}, {sequence}) accepted twice"
            );
            assert!(
                newest.is_none_or(|n| incarnation >= n),
                "an old incarnation came back"
            );
            match verdict {
                Accepted::First => assert!(newest.is_none()),
                Accepted::NewIncarnation { previous } => {
                    assert_eq!(Some(previous), newest);
                    assert!(incarnation > previous);
                }
                Accepted::Same => assert_eq!(newest, Some(incarnation)),
            }
            newest = Some(incarnation);
            assert_eq!(window.incarnation(), newest);
        }
    }
});
