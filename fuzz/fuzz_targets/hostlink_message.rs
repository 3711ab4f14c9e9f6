//! A host-link message (`hostlink::LinkMessage::from_payload`), as the host agent reads
//! a guest's and the guest agent its host's: decoding never panics, and a decoded
//! message encodes and decodes back to itself.

#![no_main]

use hvcluster_common::hostlink::LinkMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = LinkMessage::from_payload(data) {
        let again = message.to_payload();
        assert_eq!(LinkMessage::from_payload(&again).ok(), Some(message));
    }
});
