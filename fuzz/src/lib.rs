//! What the fuzz targets share: the key and cluster id frames are signed with, signing
//! of arbitrary frame bodies (what a holder of the key can send), the round-trip check
//! of postcard payloads, and a directory with key files for the configuration loaders.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hmac::{Hmac, KeyInit, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

/// The key every fuzzed frame is checked with.
pub const KEY: &[u8] = b"hvcluster fuzz key, 32 bytes ok!";
/// The cluster id every fuzzed frame is checked against.
pub const CLUSTER_ID: u64 = 0x00C1_0057_E4F0_22ED;

/// `body` (a frame's header and payload, whatever they say) followed by its valid tag:
/// what a sender holding the key can produce.
pub fn sign(body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(KEY).expect("any key length");
    mac.update(body);
    let mut out = body.to_vec();
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

/// Decodes `bytes` as a `T` with postcard; when that works, the value encodes and
/// decodes back to itself.
pub fn postcard_round_trip<T>(bytes: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = postcard::from_bytes(bytes).ok()?;
    let again = postcard::to_allocvec(&value).expect("a decoded value encodes");
    let back: T = postcard::from_bytes(&again).expect("an encoded value decodes");
    assert_eq!(back, value, "postcard round trip changed the value");
    Some(value)
}

/// A private directory holding the files the seed configurations name (keys of 32
/// bytes, a password file), where the configuration targets pretend their file lives.
pub fn config_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hvcluster-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzz config directory");
        for name in ["cluster.key", "guest.key", "web-guests.key", "ipmi-h2.pass"] {
            std::fs::write(dir.join(name), b"0123456789abcdef0123456789abcdef\n")
                .expect("write a key file");
        }
        dir
    })
}

/// Whether loading `text` as a configuration can only read files inside
/// [`config_dir`]: the loaders read the files named by `key_file` and `password_file`
/// (nothing else, beyond looking up resource agents' metadata), and a fuzzed name such
/// as `/dev/zero` or a FIFO would hang the run rather than find a bug. So those keys
/// must hold relative names without `..`. A text that is not TOML at all is safe (the
/// loader stops at parsing).
pub fn reads_only_own_files(text: &str) -> bool {
    match text.parse::<toml::Table>() {
        Ok(table) => safe_table(&table),
        Err(_) => true,
    }
}

fn safe_table(table: &toml::Table) -> bool {
    table.iter().all(|(key, value)| {
        let read = matches!(key.as_str(), "key_file" | "password_file");
        safe_value(value, read)
    })
}

fn safe_value(value: &toml::Value, read: bool) -> bool {
    match value {
        toml::Value::String(s) => !read || (!s.starts_with('/') && !s.contains("..")),
        toml::Value::Array(a) => a.iter().all(|v| safe_value(v, read)),
        toml::Value::Table(t) => !read && safe_table(t),
        _ => true,
    }
}

/// Checks a configuration's refusal: at least one problem, each saying where and what
/// ([`check_problem`]).
pub fn check_errors(path: &Path, text: &str, errors: &hvcluster_common::config::ConfigErrors) {
    assert!(!errors.problems.is_empty(), "an error without a problem");
    let _ = errors.to_string();
    for p in &errors.problems {
        check_problem(path, text, p);
    }
}

/// Checks that a configuration problem says where and what: the file it was given, a
/// key, a line inside `text` when it names one, and a message.
pub fn check_problem(path: &Path, text: &str, p: &hvcluster_common::config::ConfigProblem) {
    assert_eq!(p.file, path, "a problem names another file: {p:?}");
    assert!(!p.key.trim().is_empty(), "a problem without a key: {p:?}");
    assert!(
        !p.message.trim().is_empty(),
        "a problem without a message: {p:?}"
    );
    if let Some(line) = p.line {
        let lines = text.lines().count().max(1);
        assert!(
            (1..=lines + 1).contains(&line),
            "a problem at line {line} of a text of {lines} lines: {p:?}"
        );
    }
}

/// One configuration fuzz input: `data` as the text of the file `file_name` in
/// [`config_dir`], loaded with `load`. Loading never panics; what loads has a key of at
/// least 16 bytes (`key_len`) and passes `more`; every refusal says where and what
/// ([`check_errors`]). Inputs that are not UTF-8, or that name files outside the
/// directory ([`reads_only_own_files`]), are skipped.
pub fn check_config_load<T>(
    data: &[u8],
    file_name: &str,
    load: impl FnOnce(&Path, &str) -> Result<T, hvcluster_common::config::ConfigErrors>,
    key_len: impl FnOnce(&T) -> usize,
    more: impl FnOnce(&T),
) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !reads_only_own_files(text) {
        return;
    }
    let path = config_dir().join(file_name);
    match load(&path, text) {
        Ok(loaded) => {
            let len = key_len(&loaded);
            assert!(len >= 16, "loaded with a key of {len} bytes");
            more(&loaded);
        }
        Err(errors) => check_errors(&path, text, &errors),
    }
}
