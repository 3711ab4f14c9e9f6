//! hv-guestd, the guest agent: a tokio driver around the guest core of
//! `hvcluster-common` (`hvcluster_common::guest::GuestCore`), which makes every
//! decision. It feeds the core heartbeats, host-link messages, resource outcomes,
//! operator commands and ticks, and performs what the core returns: frames, messages to
//! the host agent, resource operations run as child processes, state writes, events.

mod agent;
mod describe;
mod link;

pub use hvcluster_runtime::resources;

use std::path::PathBuf;

use hvcluster_common::config::guest::GuestConfig;
use hvcluster_runtime::daemon::{self, PathOverrides};

pub use agent::Agent;

/// What the command line says.
#[derive(Debug, Clone)]
pub struct Options {
    /// Path of `guest.toml`.
    pub config: PathBuf,
    /// This node's name in the configuration.
    pub node: String,
    /// Admin socket and state directory overrides.
    pub paths: PathOverrides,
    /// Host link address override.
    pub host_link_address: Option<std::net::IpAddr>,
}

/// Loads the configuration and runs the agent until SIGTERM or SIGINT; then stops the
/// applications running here (reason SHUT) before exiting.
pub fn run(options: Options) -> anyhow::Result<()> {
    let mut loaded = GuestConfig::load(&options.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = &mut loaded.config;
    options
        .paths
        .apply(&mut config.admin.socket, &mut config.cluster.state_dir);
    if let Some(a) = options.host_link_address {
        config.host_link.address = Some(a);
    }
    let names = config.nodes.iter().map(|n| n.name.as_str());
    daemon::require_member(&options.config, "[[node]]", &options.node, names)?;
    daemon::raise_fd_limit();
    daemon::runtime("hv-guestd")?.block_on(async move {
        // Before anything that takes time: a SIGTERM from now on is a clean stop.
        let shutdown = daemon::shutdown_signal();
        for warning in resources::fill_defaults(&mut loaded.config.applications).await {
            tracing::warn!("{warning}");
        }
        let agent = Agent::start(loaded, &options.node).await?;
        agent.run_until(shutdown).await
    })
}
