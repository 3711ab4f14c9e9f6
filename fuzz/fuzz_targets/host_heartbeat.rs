//! The payload of a host heartbeat (`membership::Heartbeat`: the membership header and
//! the sections, postcard varints), as a host decodes it once the frame is authentic:
//! decoding never panics, a decoded heartbeat encodes and decodes back to itself, and
//! its sections are read without panicking (a broken one is left out alone), written
//! again and read back the same.

#![no_main]

use hvcluster_common::host_heartbeat::HostSections;
use hvcluster_common::membership::Heartbeat;
use hvcluster_fuzz::postcard_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(hb) = postcard_round_trip::<Heartbeat>(data) else {
        return;
    };
    let (sections, _issues) = HostSections::read(&hb);
    let mut again = Heartbeat {
        sections: Vec::new(),
        ..hb
    };
    sections.write(&mut again);
    let (back, issues) = HostSections::read(&again);
    assert!(
        issues.is_empty(),
        "sections this build wrote do not read: {issues:?}"
    );
    assert_eq!(back, sections, "sections changed when written again");
});
