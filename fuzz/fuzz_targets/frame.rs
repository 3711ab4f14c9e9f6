//! The authenticated frame (`wire::decode`), as every agent receives it on a heartbeat
//! port or the host link. The first byte chooses who sent the rest:
//! - even: anyone (no key): the bytes as they are;
//! - odd: a holder of the key: the rest is a frame body (any header, any length field)
//!   signed with the key, so the checks after authentication are reached too.
//!
//! Decoding never panics; a frame it accepts encodes back to the same bytes.

#![no_main]

use hvcluster_common::wire::{self, WireError, HEADER_LEN, MAX_FRAME, TAG_LEN};
use hvcluster_fuzz::{sign, CLUSTER_ID, KEY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&who, rest)) = data.split_first() else {
        return;
    };
    let bytes = if who % 2 == 0 {
        rest.to_vec()
    } else {
        sign(rest)
    };
    match wire::decode(&bytes, KEY, CLUSTER_ID) {
        Ok(frame) => {
            assert!(bytes.len() <= MAX_FRAME);
            assert_eq!(frame.payload.len(), bytes.len() - HEADER_LEN - TAG_LEN);
            assert_eq!(frame.header.cluster_id, CLUSTER_ID);
            let again = wire::encode(&frame.header, frame.payload, KEY).expect("fits");
            // The reserved bytes are not checked on receipt; the encoder writes zeros.
            let mut expected = bytes.clone();
            expected[6] = 0;
            expected[7] = 0;
            if bytes[6..8] == [0, 0] {
                assert_eq!(again, expected, "a decoded frame encodes back to its bytes");
            } else {
                assert_eq!(again[..6], expected[..6]);
                assert_eq!(
                    again[8..again.len() - TAG_LEN],
                    expected[8..bytes.len() - TAG_LEN]
                );
            }
        }
        Err(WireError::BadTag) => {
            // Only a frame signed otherwise fails its tag.
            assert!(who % 2 == 0, "a frame signed with the key failed its tag");
        }
        Err(_) => {}
    }
});
