//! `cluster.toml` (`ClusterConfig::load_str`): loading never panics, whatever the text;
//! every problem it reports renders. Texts that name files outside the fuzz directory
//! are skipped (see `reads_only_own_files`).

#![no_main]

use hvcluster_common::config::ClusterConfig;
use hvcluster_fuzz::{config_dir, reads_only_own_files};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !reads_only_own_files(text) {
        return;
    }
    match ClusterConfig::load_str(&config_dir().join("cluster.toml"), text) {
        Ok(loaded) => {
            let _ = loaded.config.digest();
            let _ = loaded.config.two_node();
        }
        Err(errors) => {
            assert!(!errors.problems.is_empty(), "an error without a problem");
            let _ = errors.to_string();
        }
    }
});
