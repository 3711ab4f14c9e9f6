//! The payload of a guest heartbeat (`application::GuestHeartbeat`, postcard), which any
//! guest holding its guest cluster's key can send its partners: decoding never panics,
//! and a decoded heartbeat encodes and decodes back to itself.

#![no_main]

use hvcluster_common::application::GuestHeartbeat;
use hvcluster_fuzz::postcard_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = postcard_round_trip::<GuestHeartbeat>(data);
});
