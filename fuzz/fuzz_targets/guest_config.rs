//! `guest.toml` (`GuestConfig::load_str`): loading never panics, whatever the text;
//! what it loads has a key of at least 16 bytes; every problem it reports names the
//! file, a key, a line inside the text (when it gives one) and what is wrong. Texts
//! that name files outside the fuzz directory are skipped (see `reads_only_own_files`).

#![no_main]

use hvcluster_common::config::guest::GuestConfig;
use hvcluster_fuzz::{check_errors, config_dir, reads_only_own_files};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !reads_only_own_files(text) {
        return;
    }
    let path = config_dir().join("guest.toml");
    match GuestConfig::load_str(&path, text) {
        Ok(loaded) => {
            assert!(
                loaded.key.len() >= 16,
                "loaded with a key of {} bytes",
                loaded.key.len()
            );
            let _ = loaded.config.digest();
        }
        Err(errors) => check_errors(&path, text, &errors),
    }
});
