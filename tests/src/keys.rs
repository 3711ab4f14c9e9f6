//! The lab's key files: written private to root, as the agents require, and the faults
//! a scenario plays with them (a key opened to others, an agent that must refuse it).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cluster::LabCluster;

/// The host cluster's key, in the lab's directory.
pub const CLUSTER_KEY_FILE: &str = "cluster.key";

/// Writes `bytes` to `path` readable by its owner only (the mode is set before any
/// byte is written).
pub fn write_key(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

impl LabCluster {
    /// Sets the permission bits of the lab's key file `file` (a name in the lab's
    /// directory, e.g. `cluster.key`).
    pub fn chmod_key(&self, file: &str, mode: u32) -> anyhow::Result<()> {
        if file.contains('/') {
            bail!("key file {file:?}: give a file name of the lab's directory");
        }
        let path = self.dir.join(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot change the mode of {}", path.display()))
    }

    /// Starts the agent of `name` (host or guest), which must refuse to run: it must
    /// exit with a failure within `within`. Returns what it printed. An agent still
    /// running at the limit is stopped and reported.
    pub fn start_refused(&mut self, name: &str, within: Duration) -> anyhow::Result<String> {
        let log = self.log(name);
        let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut child = if self.is_guest(name) {
            self.spawn_guest_agent(name)?
        } else {
            self.spawn_host_agent(name)?
        };
        let status = crate::lab::spawn::wait_timeout(&mut child, within)?;
        let text = std::fs::read(&log).unwrap_or_default();
        let said = String::from_utf8_lossy(text.get(before as usize..).unwrap_or_default())
            .trim()
            .to_string();
        match status {
            None => bail!(
                "the agent of {name} was still running after {} ms (stopped); it said: {said}",
                within.as_millis()
            ),
            Some(s) if s.success() => bail!("the agent of {name} exited 0; it said: {said}"),
            Some(_) => Ok(said),
        }
    }
}
