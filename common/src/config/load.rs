//! Loading a configuration file, the same way for `cluster.toml` and `guest.toml`: read
//! it, parse it, resolve its relative paths, validate it, and return either the
//! configuration with its key and digest or every problem found.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::locate;
use super::rules::Problems;
use super::{ConfigErrors, ConfigProblem};

/// A validated configuration together with the key it names.
#[derive(Debug, Clone)]
pub struct Loaded<C> {
    /// The validated configuration (relative paths made absolute).
    pub config: C,
    /// The cluster key read from `key_file`.
    pub key: Vec<u8>,
    /// Digest peers compare to refuse a differing configuration.
    pub digest: [u8; 16],
}

/// What the loader needs from a configuration file's top-level struct.
pub(crate) trait ConfigFile: DeserializeOwned {
    /// Makes the paths the file gives relative to its directory `base` absolute.
    fn resolve_paths(&mut self, base: &Path);

    /// Adds every problem of the parsed file to `problems`; returns the key when it is
    /// readable.
    fn validate(&self, problems: &mut Problems<'_>) -> Option<Vec<u8>>;

    /// Digest of what every member of the cluster must agree on.
    fn digest(&self) -> [u8; 16];
}

/// Reads, parses and validates `path`.
pub(crate) fn load<C: ConfigFile>(path: &Path) -> Result<Loaded<C>, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        problems: vec![ConfigProblem {
            file: path.to_path_buf(),
            line: None,
            key: "(file)".into(),
            message: format!("cannot read the configuration: {e}"),
        }],
    })?;
    load_str(path, &text)
}

/// Parses and validates `text` as if read from `path`.
pub(crate) fn load_str<C: ConfigFile>(path: &Path, text: &str) -> Result<Loaded<C>, ConfigErrors> {
    let mut config: C = toml::from_str(text).map_err(|e| ConfigErrors {
        problems: vec![parse_problem(path, text, &e)],
    })?;
    config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
    let mut found = Problems::new(path, text);
    let key = config.validate(&mut found);
    let problems = found.into_sorted();
    if !problems.is_empty() {
        return Err(ConfigErrors { problems });
    }
    let digest = config.digest();
    Ok(Loaded {
        config,
        key: key.unwrap_or_default(),
        digest,
    })
}

/// Makes `path` absolute against `base` when it is relative.
pub(crate) fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

/// The first 16 bytes of the SHA-256 of `shared` in JSON.
pub(crate) fn digest_of(shared: &impl Serialize) -> [u8; 16] {
    use sha2::Digest;
    let bytes = serde_json::to_vec(shared).unwrap_or_default();
    let full = sha2::Sha256::digest(&bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn parse_problem(path: &Path, text: &str, e: &toml::de::Error) -> ConfigProblem {
    let line = e.span().map(|s| locate::line_at(text, s.start));
    let key = e
        .span()
        .and_then(|s| locate::key_at(text, s.start))
        .unwrap_or_else(|| "(syntax)".into());
    ConfigProblem {
        file: path.to_path_buf(),
        line,
        key,
        message: e.message().trim().to_string(),
    }
}
