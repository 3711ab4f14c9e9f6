//! hv-hostd, the host agent: a tokio driver around the membership core of
//! `hvcluster-common`. It performs the core's actions (send heartbeats, report events)
//! and feeds it what arrives: heartbeat frames, kdump notices, watchdog verdicts, ticks.
//! The runtime it shares with the guest agent (sockets, intake, admin server, host link,
//! resource runners, state files) is `hvcluster-runtime`; what is here only a host needs.

/// The admin socket: the runtime's server and the host agent's dispatcher.
pub mod admin {
    pub use crate::dispatch::HostDispatch;
    pub use hvcluster_runtime::admin::*;
}
mod agent;
mod describe;
mod dispatch;
mod fence;
mod fence_journal;
pub mod fence_runner;
pub mod hv_call;
pub use hvcluster_libvirt as hypervisor;
pub mod journal;
mod kdump;
mod operator;
mod watchdog;

// The runtime both agents share, under the names the host agent's modules use.
pub use hvcluster_runtime::{
    apps, audit, child, counters, daemon, events, incarnation, intake, link, member, net, outbox,
    port, process, resources, service, state_writer,
};

use std::path::PathBuf;

use hvcluster_common::config::ClusterConfig;

pub use agent::Agent;

/// What the command line says.
#[derive(Debug, Clone)]
pub struct Options {
    /// Path of `cluster.toml`.
    pub config: PathBuf,
    /// This host's name in the configuration.
    pub host: String,
    /// Admin socket and state directory overrides.
    pub paths: daemon::PathOverrides,
    /// Pressure file override.
    pub psi_source: Option<PathBuf>,
}

/// Loads the configuration, prepares the process and runs the agent until SIGTERM or
/// SIGINT.
pub fn run(options: Options) -> anyhow::Result<()> {
    let mut loaded = ClusterConfig::load(&options.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = &mut loaded.config;
    options
        .paths
        .apply(&mut config.admin.socket, &mut config.cluster.state_dir);
    if let Some(p) = &options.psi_source {
        config.load_watchdog.psi_source = p.clone();
    }
    let names = config.hosts.iter().map(|h| h.name.as_str());
    daemon::require_member(&options.config, "[[host]]", &options.host, names)?;
    daemon::raise_fd_limit();
    // Before the runtime starts, so every thread inherits the scheduling class.
    let prepared = process::prepare(&config.load_watchdog);
    daemon::runtime("hv-hostd")?.block_on(async move {
        // Before anything that takes time: a SIGTERM from now on is a clean stop.
        let shutdown = daemon::shutdown_signal();
        for warning in resources::fill_defaults(&mut loaded.config.applications).await {
            tracing::warn!("{warning}");
        }
        let agent = Agent::start(loaded, &options.host, prepared).await?;
        agent.run_until(shutdown).await
    })
}
