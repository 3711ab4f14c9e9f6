//! Validation of `guest.toml`.

use std::path::Path;

use super::GuestConfig;
use crate::config::ConfigProblem;

pub(super) fn validate(
    config: &GuestConfig,
    path: &Path,
    _text: &str,
) -> (Vec<ConfigProblem>, Option<Vec<u8>>) {
    let mut problems = Vec::new();
    let key = match std::fs::read(&config.cluster.key_file) {
        Ok(k) => Some(k),
        Err(e) => {
            problems.push(ConfigProblem {
                file: path.to_path_buf(),
                line: None,
                key: "cluster.key_file".into(),
                message: format!("cannot read {}: {e}", config.cluster.key_file.display()),
            });
            None
        }
    };
    (problems, key)
}
