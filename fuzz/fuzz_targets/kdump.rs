//! The fence_kdump panic notice (`kdump::parse_notice`), which anyone who can reach the
//! kdump port can send: never panics, and accepts exactly the 8-byte notice with the
//! magic and version 1 in either byte order.

#![no_main]

use hvcluster_common::kdump::{parse_notice, KDUMP_MAGIC, KDUMP_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ok = parse_notice(data).is_ok();
    let expected = data.len() == 8 && {
        let word = |i: usize| [data[i], data[i + 1], data[i + 2], data[i + 3]];
        let le = u32::from_le_bytes(word(0)) == KDUMP_MAGIC
            && u32::from_le_bytes(word(4)) == KDUMP_VERSION;
        let be = u32::from_be_bytes(word(0)) == KDUMP_MAGIC
            && u32::from_be_bytes(word(4)) == KDUMP_VERSION;
        le || be
    };
    assert_eq!(ok, expected, "notice {data:02x?}");
});
