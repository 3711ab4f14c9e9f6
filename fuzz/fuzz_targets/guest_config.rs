//! `guest.toml` (`GuestConfig::load_str`): loading never panics, whatever the text;
//! what it loads has a key of at least 16 bytes; every problem it reports names the
//! file, a key, a line inside the text (when it gives one) and what is wrong. Texts
//! that name files outside the fuzz directory are skipped (see `reads_only_own_files`).

#![no_main]

use hvcluster_common::config::guest::GuestConfig;
use hvcluster_fuzz::check_config_load;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_config_load(
        data,
        "guest.toml",
        GuestConfig::load_str,
        |l| l.key.len(),
        |l| {
            let _ = l.config.digest();
        },
    );
});
