//! The payload of a host heartbeat (`membership::Heartbeat`, postcard), as a host
//! decodes it once the frame is authentic: decoding never panics, and a decoded
//! heartbeat encodes and decodes back to itself.

#![no_main]

use hvcluster_common::membership::Heartbeat;
use hvcluster_fuzz::postcard_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = postcard_round_trip::<Heartbeat>(data);
});
