//! hv-guestd, the guest agent: a tokio driver around the membership machine and the
//! userApplication engine of `hvcluster-common`. It runs resource operations as child
//! processes and feeds their outcomes, heartbeats, operator commands and ticks back.

pub mod resources;

use std::path::PathBuf;

/// What the command line says.
#[derive(Debug, Clone)]
pub struct Options {
    /// Path of `guest.toml`.
    pub config: PathBuf,
    /// This node's name in the configuration.
    pub node: String,
    /// Admin socket override.
    pub admin_socket: Option<PathBuf>,
    /// State directory override.
    pub state_dir: Option<PathBuf>,
}

/// Loads the configuration and runs the agent until SIGTERM or SIGINT.
pub fn run(options: Options) -> anyhow::Result<()> {
    anyhow::bail!(
        "{}: the guest agent is not wired yet",
        options.config.display()
    )
}
